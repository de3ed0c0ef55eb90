//! `backup.run`: the backup job. For each instance in scope, in name order:
//! create, prune by the configured policy, verify the new archive (and a
//! sample of older ones), reconcile the instance's entries read-only. One
//! operation, one summary; each instance's outcome is also written as its
//! [`JobRecord`](crate::JobRecord).

use serde::{Deserialize, Serialize};

use crate::job::JobStepOutcome;

/// `backup.run` parameters (flags of `abssctl backup run`). Exactly one of
/// `instance` and `all`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// `--instance`: run the job for this instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// `--all`: run it for every instance of the registry, in name order.
    #[serde(default)]
    pub all: bool,
    /// Return `{op_id}` at once instead of waiting for the summary.
    #[serde(default)]
    pub detach: bool,
}

/// What a job is about to do (its `plan` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    /// The instances, in the order they run.
    pub instances: Vec<String>,
    /// Whether a prune runs (`backups.retention` names a rule); when not,
    /// every prune step is `skipped`.
    pub prune: bool,
    /// Older backups verified beside the new one (`backups.job.verify_sample`).
    pub verify_sample: u32,
    /// Whether the verifications are deep (`backups.job.deep`).
    pub deep: bool,
}

/// How one instance's job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInstance {
    /// The instance.
    pub instance: String,
    /// Every step succeeded or was skipped on purpose.
    pub ok: bool,
    /// The backup it created, when the create step succeeded.
    #[serde(default)]
    pub backup_id: Option<String>,
    /// Each step, in order (create, prune, verify, push when a remote
    /// pushes automatically, reconcile).
    pub steps: Vec<JobStepOutcome>,
    /// What the operator should look at though the step succeeded (e.g.
    /// reconcile drift, which the job reports and does not fix).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `backup.run` result: one entry per instance. When any instance failed, the
/// call fails instead, and this summary is the error's `detail.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Each instance, in the order they ran.
    pub instances: Vec<RunInstance>,
    /// Every instance's job succeeded.
    pub ok: bool,
}
