//! `abssctl remote list | test NAME | ls NAME`.

use abssd_proto::methods::call::call;
use abssd_proto::methods::{RemoteList, RemoteLs, RemoteTest};
use abssd_proto::{NoParams, RemoteLsParams, RemoteTestParams, WireError};
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
        RemoteCommand::Ls(args) => {
            let params = RemoteLsParams {
                remote: args.name,
                instance: args.instance,
            };
            let listed = call::<RemoteLs>(client, &params).await?;
            out.show(&listed, || render::remote_ls::listed(&listed));
            Ok(Exit::Success)
        }
    }
}
