//! `restore --dest`: the archive's data into a new (or empty) directory. No
//! lock on the instance, no unit, asset or registry change; only the staging
//! directory and the final rename are journaled.

use abssd_proto::{Phase, RestoreResult};

use super::{Job, mode, remove_tree, rollback};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::Step;
use crate::progress::Progress;

pub(super) async fn run(job: &Job<'_>) -> Result<RestoreResult> {
    let mut journal = job.journal(None)?;
    let placed = place(job, &mut journal).await;
    let extracted = match placed {
        Ok(x) => x,
        Err(cause) => {
            let record = journal.record().clone();
            let report = rollback::rollback::<crate::systemd::Systemd>(
                &job.ctx.config,
                None,
                &record,
                job.progress,
            )
            .await;
            return Err(report.into_error(cause, journal));
        }
    };
    let outcome = job.outcome(&extracted.sha256, None);
    journal.commit(outcome.clone())?;
    let mut warnings = Vec::new();
    let staging = job.staging.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || remove_tree(&staging)).await? {
        warnings.push(format!("could not remove the staging directory: {e}"));
    }
    let target = job.pre.target.clone();
    let restored_at = match job.annotate_index(&outcome).await {
        Ok(at) => at,
        Err(e) => {
            warnings.push(format!(
                "the restore is complete but the index was not annotated: {e}"
            ));
            fsutil::now_utc()
        }
    };
    journal.close()?;
    Ok(RestoreResult {
        id: job.plan.id.clone(),
        instance: job.plan.instance.clone(),
        mode: mode(job.params),
        destination: target.display().to_string(),
        pre_restore_backup: None,
        restored_at,
        checksum: extracted.sha256,
        entries: extracted.entries,
        content_bytes: extracted.content_bytes,
        assets: Vec::new(),
        unit_running: None,
        nginx_reloaded: false,
        warnings,
    })
}

async fn place(
    job: &Job<'_>,
    journal: &mut crate::journal::Journal,
) -> Result<crate::extract::Extracted> {
    let extracted = job.stage(journal).await?;
    job.progress.phase(Phase::Place);
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
        fsutil::sync_dir(target.parent().unwrap_or(std::path::Path::new("/")))
    })
    .await??;
    Ok(extracted)
}
