//! The pre-restore backup (SPEC §7 step 3): a `backup create` of the live
//! instance, under the instance lock the restore already holds, reporting into
//! the restore's own events.

use abssd_proto::{CreateParams, EventKind, Phase};

use super::job::Job;
use crate::error::Result;
use crate::progress::{Progress, Reporter};

/// The pre-restore backup's label.
pub(crate) const LABEL: &str = "pre-restore";
/// The label the Python tool gives its pre-restore backup.
pub(crate) const PYTHON_LABEL: &str = "pre-backup-restore";

/// Back up the live data; `None` (with a warning) when there is none.
pub(super) async fn take(job: &Job<'_>) -> Result<Option<String>> {
    if std::fs::symlink_metadata(&job.pre.target).is_err() {
        job.progress.warn(format!(
            "no pre-restore backup: the live data directory {} does not exist",
            job.pre.target.display()
        ));
        return Ok(None);
    }
    job.progress.phase(Phase::PreBackup);
    let params = CreateParams {
        instance: job.plan.instance.clone(),
        message: Some(
            job.params
                .backup_message
                .clone()
                .unwrap_or_else(|| format!("pre-restore backup before restoring {}", job.plan.id)),
        ),
        // Ours, and the Python tool's (`pre-` + its operation's name), so
        // either tool's listing filters it the same way.
        labels: vec![LABEL.into(), PYTHON_LABEL.into()],
        data_only: job.data_only,
        ..CreateParams::default()
    };
    let nested = Reporter::new(Nested(job.progress.clone()));
    let (plan, _) =
        crate::ops::create::run_under_lock(job.ctx, &params, job.actor, &nested).await?;
    job.progress.info(format!(
        "pre-restore backup {} written to {}",
        plan.id, plan.archive
    ));
    Ok(Some(plan.id))
}

/// The pre-restore backup's events, minus its plan (the operation's plan is the
/// restore's).
struct Nested(Reporter);

impl Progress for Nested {
    fn emit(&self, event: EventKind) {
        if !matches!(event, EventKind::Plan { .. }) {
            self.0.emit(event);
        }
    }
    fn changed(&self, backup_id: &str) {
        self.0.changed(backup_id);
    }
    fn op_id(&self) -> String {
        self.0.op_id()
    }
}
