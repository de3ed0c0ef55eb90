//! Calling the backup job (`backup.run`) from tests: its parameters for one
//! instance or all, and the call with its summary.

use abssd_proto::methods::BackupRun;
use abssd_proto::methods::call::call;
use abssd_proto::{RunParams, RunResult, WireError};
use jsonrpsee::core::client::Client;

/// `backup.run` of every instance.
pub fn all() -> RunParams {
    RunParams {
        all: true,
        ..RunParams::default()
    }
}

/// `backup.run` of `instance`.
pub fn only(instance: &str) -> RunParams {
    RunParams {
        instance: Some(instance.into()),
        ..RunParams::default()
    }
}

/// Run the job and wait for it: its op id and summary, or its error.
pub async fn job(c: &Client, params: &RunParams) -> Result<(String, RunResult), WireError> {
    call::<BackupRun>(c, params)
        .await
        .map(|out| (out.op_id, out.result.expect("a job result")))
}
