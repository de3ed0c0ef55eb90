//! `abssctl backup pull ID [--remote NAME]`: start the pull and follow it
//! (a byte progress bar), then print where the archive is.

use abssd_proto::methods::BackupPull;
use abssd_proto::methods::call::call;
use abssd_proto::{PullParams, PullResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::json;

use super::{Exit, decode, follow_and_show, show_started};
use crate::args::PullArgs;
use crate::follow::{Finished, Interrupt};
use crate::render::{self, Output};

/// Run `backup pull`.
pub async fn run(client: &Client, out: Output, args: PullArgs) -> Result<Exit, WireError> {
    let params = PullParams {
        id: args.id,
        remote: args.remote,
        // Progress comes from following the operation.
        detach: true,
    };
    let mut interrupt = Interrupt::install();
    let started = call::<BackupPull>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    follow_and_show(client, out, &started.op_id, &mut interrupt, show_pulled).await
}

/// Print a finished pull: `{op_id, result}` or a summary.
pub fn show_pulled(out: Output, finished: Finished) -> Result<Exit, WireError> {
    if out.json {
        out.document(&json!({ "op_id": finished.op_id, "result": finished.result }));
    } else {
        let result: PullResult = decode("pull result", finished.result)?;
        out.text(&render::remote::pulled(&result));
    }
    Ok(Exit::Success)
}
