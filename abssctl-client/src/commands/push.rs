//! `abssctl backup push`: start the push, follow it (a byte progress bar per
//! backup), then print a table of outcomes. A push in which a backup failed
//! ends as an error whose detail holds the same summary; the table is
//! printed from there before the error.

use abssd_proto::methods::BackupPush;
use abssd_proto::methods::call::call;
use abssd_proto::{PushOutcome, PushParams, PushResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::json;

use super::{Exit, decode, follow_summed_up, show_started};
use crate::args::PushArgs;
use crate::follow::{Finished, Interrupt};
use crate::render::{self, Output};

/// Run `backup push`.
pub async fn run(client: &Client, out: Output, args: PushArgs) -> Result<Exit, WireError> {
    let params = PushParams {
        ids: args.ids,
        instance: args.instance,
        all: args.all,
        remote: args.remote,
        // Progress comes from following the operation.
        detach: true,
    };
    let mut interrupt = Interrupt::install();
    let started = call::<BackupPush>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    // A backup named by its id that was not copied is a problem of this
    // command; one passed by in an instance's or the index's scope is not.
    let present = if params.ids.is_empty() {
        show_pushed
    } else {
        show_pushed_named
    };
    follow_summed_up(
        client,
        out,
        &started.op_id,
        &mut interrupt,
        present,
        render::push::summary,
    )
    .await
}

/// [`show_pushed`], exiting 3 when a backup was skipped.
fn show_pushed_named(out: Output, finished: Finished) -> Result<Exit, WireError> {
    let result: PushResult = decode("push result", finished.result.clone())?;
    let skipped = result
        .items
        .iter()
        .any(|i| i.outcome == PushOutcome::Skipped);
    let exit = show_pushed(out, finished)?;
    Ok(if skipped { Exit::Problems } else { exit })
}

/// Print a finished push: `{op_id, plan, result}` or the table.
pub fn show_pushed(out: Output, finished: Finished) -> Result<Exit, WireError> {
    if out.json {
        out.document(
            &json!({ "op_id": finished.op_id, "plan": finished.plan, "result": finished.result }),
        );
    } else {
        let result: PushResult = decode("push result", finished.result)?;
        out.text(&render::push::summary(&result));
    }
    Ok(Exit::Success)
}
