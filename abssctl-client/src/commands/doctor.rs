//! `abssctl doctor`: the daemon's health report, exiting with its code.

use abssd_proto::methods::DaemonHealth;
use abssd_proto::methods::call::call;
use abssd_proto::{HealthParams, WireError};
use jsonrpsee::core::client::Client;

use super::Exit;
use crate::args::DoctorArgs;
use crate::render::{self, Output};

/// Ask for the report, print it, exit with its summary's code.
pub async fn run(client: &Client, out: Output, args: DoctorArgs) -> Result<Exit, WireError> {
    let params = HealthParams {
        instance: args.instance,
    };
    let report = call::<DaemonHealth>(client, &params).await?;
    out.show(&report, || render::health::report(&report));
    Ok(Exit::Report(report.summary.exit_code))
}
