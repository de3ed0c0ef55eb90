//! The steps of one instance's job, each the existing operation called
//! as it is, one after the other; a step after a failed one is `skipped`.

use abssd_proto::{
    Actor, CreateParams, JobStep, JobStepOutcome, JobStepStatus, Phase, PruneParams,
    ReconcileParams, RunPlan, VerifyParams, WireError, status,
};

use super::observer::TailLines;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ops::{Ctx, create, prune, push, reconcile, verify};
use crate::progress::{Progress, Reporter};
use crate::text::cut;

/// Bytes of one step's message in the summary and the record.
pub(super) const MESSAGE_BYTES: usize = 600;

/// The steps of one instance's job, as they go.
pub(super) struct Job<'a> {
    pub ctx: &'a Ctx,
    pub instance: &'a str,
    /// The operation, through the instance's [`Tail`](super::observer::Tail).
    pub progress: &'a Reporter,
    /// The instance's log tail, which each step's outcome joins.
    pub lines: &'a TailLines,
    /// Each step's outcome so far.
    pub steps: Vec<JobStepOutcome>,
    /// Drift the reconcile found.
    pub warnings: Vec<String>,
    /// The first failure; once set, the steps left are skipped.
    pub failure: Option<WireError>,
}

impl Job<'_> {
    /// Begin `step`, unless an earlier one failed (then it is `skipped`).
    fn begin(&mut self, step: JobStep) -> bool {
        if self.failure.is_some() {
            self.end(
                step,
                JobStepStatus::Skipped,
                "an earlier step failed".into(),
            );
            return false;
        }
        self.progress
            .phase(Phase::Job(self.instance.to_owned(), step));
        true
    }

    fn end(&mut self, step: JobStep, status: JobStepStatus, message: String) {
        let message = cut(message, MESSAGE_BYTES);
        let word = match status {
            JobStepStatus::Ok => "ok",
            JobStepStatus::Failed => "failed",
            JobStepStatus::Skipped => "skipped",
        };
        self.lines.push(format!(
            "{}: {} {word}: {message}",
            self.instance,
            step.name()
        ));
        self.steps.push(JobStepOutcome {
            step,
            status,
            message,
        });
    }

    /// What an observer reported as warnings: the operation's and the
    /// summary's.
    pub fn heard(&mut self, warnings: Vec<String>) {
        for w in warnings {
            self.progress.warn(w.clone());
            self.warnings.push(w);
        }
    }

    pub fn fail(&mut self, step: JobStep, error: WireError) {
        self.progress.warn(format!(
            "backup job of {}: {} failed: {}",
            self.instance,
            step.name(),
            error.message
        ));
        self.end(step, JobStepStatus::Failed, error.message.clone());
        self.failure = Some(error);
    }

    pub async fn create(&mut self, actor: &Actor) -> Option<String> {
        if !self.begin(JobStep::Create) {
            return None;
        }
        let params = CreateParams {
            instance: self.instance.to_owned(),
            labels: vec!["job".to_owned()],
            ..CreateParams::default()
        };
        match create::run(self.ctx, &params, actor, self.progress).await {
            Ok((_, Some(made))) => {
                let mut message = format!(
                    "created {} ({} bytes, {})",
                    made.id,
                    made.size_bytes,
                    made.capture.as_str()
                );
                if !made.warnings.is_empty() {
                    message.push_str(&format!("; {} warning(s)", made.warnings.len()));
                }
                self.end(JobStep::Create, JobStepStatus::Ok, message);
                Some(made.id)
            }
            Ok((_, None)) => {
                let e = Error::Internal("create answered without a result".into());
                self.fail(JobStep::Create, e.to_wire());
                None
            }
            Err(e) => {
                self.fail(JobStep::Create, e.to_wire());
                None
            }
        }
    }

    pub async fn prune(&mut self, configured: bool) {
        if !configured {
            if self.failure.is_none() {
                self.end(
                    JobStep::Prune,
                    JobStepStatus::Skipped,
                    "no retention policy configured (backups.retention in abssd.yml)".into(),
                );
            } else {
                self.end(
                    JobStep::Prune,
                    JobStepStatus::Skipped,
                    "an earlier step failed".into(),
                );
            }
            return;
        }
        if !self.begin(JobStep::Prune) {
            return;
        }
        let params = PruneParams {
            instance: Some(self.instance.to_owned()),
            // The job is the operator's standing order: confirmed here.
            yes: true,
            ..PruneParams::default()
        };
        match prune::run(self.ctx, &params, self.progress).await {
            Ok((_, Some(result))) if result.has_problems() => {
                // Backups that should have gone and could not (an archive
                // not a regular file, a deletion that failed): a person must
                // look, and a nightly job must not say ok (as `backup prune`
                // exits 3).
                let stuck: Vec<String> = result
                    .items
                    .iter()
                    .filter(|i| i.kept.is_some_and(abssd_proto::KeptReason::needs_operator))
                    .map(|i| format!("{} ({})", i.id, i.reason.as_deref().unwrap_or("kept")))
                    .collect();
                self.fail(
                    JobStep::Prune,
                    WireError::new(
                        abssd_proto::ErrorKind::Environment,
                        format!(
                            "{} backup(s) could not be removed: {}",
                            stuck.len(),
                            cut(stuck.join("; "), MESSAGE_BYTES)
                        ),
                    ),
                );
            }
            Ok((plan, result)) => {
                let (removed, freed) = result.map_or((0, 0), |r| (r.removed(), r.removed_bytes));
                self.end(
                    JobStep::Prune,
                    JobStepStatus::Ok,
                    format!(
                        "policy {}: kept {}, removed {removed} ({freed} bytes freed)",
                        plan.policy, plan.keep
                    ),
                );
            }
            Err(e) => self.fail(JobStep::Prune, e.to_wire()),
        }
    }

    pub async fn verify(&mut self, new: Option<&str>, plan: &RunPlan) {
        if !self.begin(JobStep::Verify) {
            return;
        }
        let Some(new) = new else {
            // Not reached: a job without a backup failed at create.
            self.end(
                JobStep::Verify,
                JobStepStatus::Skipped,
                "no new backup".into(),
            );
            return;
        };
        let sample = match self.sample(new, plan.verify_sample).await {
            Ok(ids) => ids,
            Err(e) => return self.fail(JobStep::Verify, e.to_wire()),
        };
        let mut checked = 0usize;
        let mut problems = Vec::new();
        for id in std::iter::once(new.to_owned()).chain(sample) {
            let params = VerifyParams {
                id: Some(id.clone()),
                deep: plan.deep,
                ..VerifyParams::default()
            };
            match verify::run(self.ctx, &params, self.progress).await {
                Ok((_, result)) => {
                    checked += 1;
                    for item in result.results {
                        if item.status != status::AVAILABLE {
                            problems.push(format!("{} {}: {}", item.id, item.status, item.message));
                        }
                    }
                }
                // An older one removed or being removed meanwhile (a prune of
                // the Python tool's, say): not this job's problem.
                Err(e @ Error::NotFound { .. }) if id != new => {
                    self.progress.info(format!("{id} not verified: {e}"));
                }
                Err(e) => return self.fail(JobStep::Verify, e.to_wire()),
            }
        }
        if problems.is_empty() {
            let deep = if plan.deep { " (deep)" } else { "" };
            self.end(
                JobStep::Verify,
                JobStepStatus::Ok,
                format!("{checked} backup(s) verified{deep}, all available"),
            );
        } else {
            // As `backup verify` exits 3 for it: an environment problem.
            let e = Error::Environment(format!(
                "{} of {checked} verified backup(s) with problems: {}",
                problems.len(),
                problems.join("; ")
            ));
            self.fail(JobStep::Verify, e.to_wire());
        }
    }

    /// Push the new backup to each remote with `auto_push: true`; no step
    /// at all on a host with no such remote (so its records stay as they
    /// were).
    pub async fn push(&mut self, new: Option<&str>) {
        if !push::any_auto(self.ctx) || !self.begin(JobStep::Push) {
            return;
        }
        let Some(new) = new else {
            // Not reached: a job without a backup failed at create.
            self.end(
                JobStep::Push,
                JobStepStatus::Skipped,
                "no new backup".into(),
            );
            return;
        };
        let mut done = Vec::new();
        for (remote, pushed) in push::auto(self.ctx, new, self.progress).await {
            match pushed {
                Ok(result) => done.push(match result.items.first() {
                    Some(item) => format!("{remote}: {}", item.outcome.as_str()),
                    None => format!("{remote}: nothing"),
                }),
                Err(e) => return self.fail(JobStep::Push, e.to_wire()),
            }
        }
        self.end(JobStep::Push, JobStepStatus::Ok, done.join(", "));
    }

    /// The `n` available backups of the instance, other than `new`, whose
    /// last verification is oldest (never verified first; then the oldest
    /// made).
    async fn sample(&self, new: &str, n: u32) -> Result<Vec<String>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let file = self.ctx.config.layout.index_file.clone();
        let (instance, new) = (self.instance.to_owned(), new.to_owned());
        tokio::task::spawn_blocking(move || {
            let index = Index::load(&file)?;
            let mut candidates: Vec<(Option<String>, String, String)> = index
                .backups
                .iter()
                .filter(|e| e.instance == instance && e.id != new && e.status == status::AVAILABLE)
                .map(|e| {
                    let verified = e
                        .checksum
                        .as_ref()
                        .and_then(|c| c.last_verified.clone())
                        .or_else(|| e.verified_at.clone());
                    (verified, e.created_at.clone(), e.id.clone())
                })
                .collect();
            candidates.sort();
            Ok(candidates
                .into_iter()
                .take(n as usize)
                .map(|(_, _, id)| id)
                .collect())
        })
        .await?
    }

    pub async fn reconcile(&mut self, actor: &Actor) {
        if !self.begin(JobStep::Reconcile) {
            return;
        }
        let params = ReconcileParams {
            instance: Some(self.instance.to_owned()),
            ..ReconcileParams::default()
        };
        match reconcile::run(self.ctx, &params, actor, self.progress).await {
            Ok((_, found)) => {
                let message = if found.in_sync() {
                    "index and archives agree".to_owned()
                } else {
                    let [missing, orphaned, mismatched, sidecars] = found.counts();
                    let drift = format!(
                        "drift: {} missing, {} orphaned, {} mismatched, {} without sidecar; not fixed by the job: see `abssctl backup reconcile --instance {}`",
                        missing, orphaned, mismatched, sidecars, self.instance
                    );
                    self.progress.warn(format!("{}: {drift}", self.instance));
                    self.warnings.push(drift.clone());
                    drift
                };
                self.end(JobStep::Reconcile, JobStepStatus::Ok, message);
            }
            Err(e) => self.fail(JobStep::Reconcile, e.to_wire()),
        }
    }
}
