//! `abssctl op list | watch`: operations the daemon owns.

use abssd_proto::methods::OpList;
use abssd_proto::methods::call::call;
use abssd_proto::{OpListParams, WireError};
use jsonrpsee::core::client::Client;

use super::{Exit, follow_and_show, show_finished};
use crate::args::OpCommand;
use crate::follow::Interrupt;
use crate::render::{self, Output};

/// Run one `op` verb.
pub async fn run(client: &Client, out: Output, cmd: OpCommand) -> Result<Exit, WireError> {
    match cmd {
        OpCommand::List(args) if args.all => {
            // Newest pages first; each page is oldest first, so the pages
            // go in front of what was read before.
            let mut all: Vec<abssd_proto::OpInfo> = Vec::new();
            let mut before = None;
            loop {
                let params = OpListParams {
                    running: args.running,
                    limit: Some(abssd_proto::limits::OP_PAGE_MAX),
                    before: before.take(),
                };
                let mut page = call::<OpList>(client, &params).await?;
                page.operations.append(&mut all);
                all = page.operations;
                match page.next_before {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
            let answer = abssd_proto::OpListResult {
                operations: all,
                next_before: None,
            };
            out.show(&answer, || render::ops::list(&answer.operations));
            Ok(Exit::Success)
        }
        OpCommand::List(args) => {
            let answer = call::<OpList>(
                client,
                &OpListParams {
                    running: args.running,
                    limit: args.limit.map(usize::from),
                    before: args.before,
                },
            )
            .await?;
            out.show(&answer, || {
                let mut table = render::ops::list(&answer.operations);
                if let Some(before) = &answer.next_before {
                    if !table.ends_with('\n') {
                        table.push('\n');
                    }
                    // The same question, one page further back.
                    let mut next = String::from("abssctl op list");
                    if args.running {
                        next.push_str(" --running");
                    }
                    if let Some(limit) = args.limit {
                        next.push_str(&format!(" --limit {limit}"));
                    }
                    table.push_str(&format!("older operations: {next} --before {before}\n"));
                }
                table
            });
            Ok(Exit::Success)
        }
        OpCommand::Watch(args) => {
            let mut interrupt = Interrupt::install();
            follow_and_show(client, out, &args.op_id, &mut interrupt, show_finished).await
        }
    }
}
