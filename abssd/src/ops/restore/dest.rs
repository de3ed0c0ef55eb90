//! `restore --dest`: the archive's data into a new (or empty) directory. No
//! lock on the instance, no unit, asset or registry change; only the staging
//! directory and the final rename are journaled.

use std::path::Path;

use abssd_proto::RestoreResult;

use super::job::{Done, Job};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::{Journal, Step};

/// Restore `job`'s data into its `--dest` directory.
pub(super) async fn run(job: &Job<'_>) -> Result<RestoreResult> {
    let mut journal = job.journal(None)?;
    match place(job, &mut journal).await {
        Ok(done) => job.finish(journal, done).await,
        Err(cause) => Err(job.roll_back(journal, None, cause).await),
    }
}

/// Extract into staging, then rename the data into the destination.
async fn place(job: &Job<'_>, journal: &mut Journal) -> Result<Done> {
    let done = job.stage(journal).await?;
    job.phase("place");
    let target = job.pre.target.clone();
    let from = job.payload().join("data");
    journal.begin(Step::PlaceData {
        from: from.clone(),
        to: target.clone(),
    })?;
    tokio::task::spawn_blocking(move || {
        // Checked empty in pre-flight; refuse if something appeared since.
        match std::fs::remove_dir(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => {
                return Err(Error::validation(format!(
                    "--dest {} is no longer empty",
                    target.display()
                )));
            }
        }
        std::fs::rename(&from, &target).at("moving the restored data to", &target)?;
        fsutil::sync_dir(target.parent().unwrap_or(Path::new("/")))
    })
    .await??;
    Ok(done)
}
