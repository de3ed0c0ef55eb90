//! `abssctl schedule enable | disable | show`: the timers that run backup jobs.

use abssd_proto::methods::call::call;
use abssd_proto::methods::{ScheduleDisable, ScheduleEnable, ScheduleShow};
use abssd_proto::{ErrorKind, ScheduleParams, ScheduleShowParams, WireError};
use jsonrpsee::core::client::Client;
use serde_json::json;

use super::Exit;
use crate::args::{ScheduleCommand, ScheduleTarget};
use crate::render::{self, Output};

/// Run one `schedule` verb.
pub async fn run(client: &Client, out: Output, cmd: ScheduleCommand) -> Result<Exit, WireError> {
    let (answer, enabling) = match cmd {
        ScheduleCommand::Enable(args) => {
            let params = params(args.target, args.calendar);
            (call::<ScheduleEnable>(client, &params).await?, true)
        }
        ScheduleCommand::Disable(target) => {
            let params = params(target, None);
            (call::<ScheduleDisable>(client, &params).await?, false)
        }
        ScheduleCommand::Show(args) => {
            let answer = call::<ScheduleShow>(
                client,
                &ScheduleShowParams {
                    instance: args.name,
                },
            )
            .await?;
            out.show(&answer, || render::schedule::timers(&answer));
            return Ok(Exit::Success);
        }
    };
    let result = answer
        .result
        .ok_or_else(|| WireError::new(ErrorKind::Internal, "abssd answered without a result"))?;
    out.show(&json!({ "op_id": answer.op_id, "result": result }), || {
        if enabling {
            render::schedule::enabled(&result)
        } else {
            render::schedule::disabled(&result)
        }
    });
    Ok(Exit::Success)
}

fn params(target: ScheduleTarget, calendar: Option<String>) -> ScheduleParams {
    ScheduleParams {
        instance: target.name,
        all: target.all,
        calendar,
    }
}
