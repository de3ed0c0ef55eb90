//! `abssctl backup run`: start the backup job, follow it (progress like
//! create's), then print its summary: a table of instances and steps. A job
//! in which an instance failed ends as an error whose detail holds the same
//! summary; the table is printed from there before the error.

use abssd_proto::methods::BackupRun;
use abssd_proto::methods::call::call;
use abssd_proto::{RunParams, RunResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::json;

use super::{Exit, decode, follow_summed_up, show_started};
use crate::args::RunArgs;
use crate::follow::{Finished, Interrupt};
use crate::render::{self, Output};

/// Run `backup run`.
pub async fn run(client: &Client, out: Output, args: RunArgs) -> Result<Exit, WireError> {
    let params = RunParams {
        instance: args.instance,
        all: args.all,
        // Progress comes from following the operation.
        detach: true,
    };
    let mut interrupt = Interrupt::install();
    let started = call::<BackupRun>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    follow_summed_up(
        client,
        out,
        &started.op_id,
        &mut interrupt,
        show_ran,
        render::run::summary,
    )
    .await
}

/// Print a finished job: `{op_id, plan, result}` or the table.
pub fn show_ran(out: Output, finished: Finished) -> Result<Exit, WireError> {
    if out.json {
        out.document(
            &json!({ "op_id": finished.op_id, "plan": finished.plan, "result": finished.result }),
        );
    } else {
        let result: RunResult = decode("backup job result", finished.result)?;
        out.text(&render::run::summary(&result));
    }
    Ok(Exit::Success)
}
