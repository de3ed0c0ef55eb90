//! `abssctl remote list | test NAME`.

use abssd_proto::methods::call::call;
use abssd_proto::methods::{RemoteList, RemoteTest};
use abssd_proto::{NoParams, RemoteTestParams, WireError};
use jsonrpsee::core::client::Client;

use super::Exit;
use crate::args::RemoteCommand;
use crate::render::{self, Output};

/// Run one `remote` verb.
pub async fn run(client: &Client, out: Output, cmd: RemoteCommand) -> Result<Exit, WireError> {
    match cmd {
        RemoteCommand::List => {
            let answer = call::<RemoteList>(client, &NoParams {}).await?;
            out.show(&answer, || render::remote::list(&answer.remotes));
            Ok(Exit::Success)
        }
        RemoteCommand::Test(args) => {
            let answer = call::<RemoteTest>(client, &RemoteTestParams { name: args.name }).await?;
            out.show(&answer, || render::remote::tested(&answer));
            // A step that failed is the environment's (network, credentials,
            // bucket): exit 3, as the ADR has it.
            Ok(if answer.ok {
                Exit::Success
            } else {
                Exit::Problems
            })
        }
    }
}
