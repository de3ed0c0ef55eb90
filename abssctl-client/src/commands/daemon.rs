//! `abssctl daemon status`.

use abssd_proto::methods::DaemonStatusMethod;
use abssd_proto::methods::call::call;
use abssd_proto::{NoParams, WireError};
use jsonrpsee::core::client::Client;

use super::Exit;
use crate::args::DaemonCommand;
use crate::render::{self, Output};

/// Run one `daemon` verb.
pub async fn run(client: &Client, out: Output, cmd: DaemonCommand) -> Result<Exit, WireError> {
    match cmd {
        DaemonCommand::Status => {
            let status = call::<DaemonStatusMethod>(client, &NoParams {}).await?;
            out.show(&status, || render::ops::status(&status));
            Ok(Exit::Success)
        }
    }
}
