//! `abssctl backup push`: start the push, follow it (a byte progress bar per
//! backup), then print a table of outcomes. A push in which a backup failed
//! ends as an error whose detail holds the same summary; the table is
//! printed from there before the error.

use abssd_proto::methods::BackupPush;
use abssd_proto::methods::call::call;
use abssd_proto::{PushParams, PushResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

use super::{Exit, decode, follow_and_show, show_started};
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
    let ended = follow_and_show(client, out, &started.op_id, &mut interrupt, show_pushed).await;
    match ended {
        Err(mut err) if failed_summary(&err).is_some() => {
            if !out.json
                && let Some(summary) = failed_summary(&err)
            {
                out.text(&render::push::summary(&summary));
            }
            if let Some(Value::Object(detail)) = err.detail.as_mut() {
                detail
                    .entry("op_id")
                    .or_insert_with(|| Value::String(started.op_id.clone()));
            }
            Err(err)
        }
        other => other,
    }
}

/// The summary a failed push's error carries, when it is one.
fn failed_summary(err: &WireError) -> Option<PushResult> {
    let summary = err.detail.as_ref()?.get("summary")?.clone();
    serde_json::from_value(summary).ok()
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
