//! `abssctl remote ls`: what a remote holds, per backup.

use abssd_proto::methods::RemoteLs;
use abssd_proto::methods::call::call;
use abssd_proto::{RemoteLsParams, WireError};
use jsonrpsee::core::client::Client;

use super::Exit;
use crate::args::RemoteCommand;
use crate::render::{self, Output};

/// Run one `remote` verb.
pub async fn run(client: &Client, out: Output, cmd: RemoteCommand) -> Result<Exit, WireError> {
    match cmd {
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
