//! The record of an instance's last backup job (`backup.run`), which
//! `daemon.health` (`abssctl doctor`) reads: one JSON file per instance,
//! `state_dir/jobs/<instance>.json`, replaced atomically at the end of each
//! job, whatever its outcome.

use serde::{Deserialize, Serialize};

/// A step of a backup job, in the order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStep {
    /// `backup create`.
    Create,
    /// `backup prune` by the configured policy.
    Prune,
    /// `backup verify` of the new archive (and a sample of older ones).
    Verify,
    /// `backup push` of the new backup to each remote with `auto_push`;
    /// only in the records of jobs on hosts with such a remote.
    Push,
    /// `backup reconcile` of the instance's entries.
    Reconcile,
}

impl JobStep {
    /// Every step, in the order a job runs them.
    pub const ALL: [JobStep; 5] = [
        JobStep::Create,
        JobStep::Prune,
        JobStep::Verify,
        JobStep::Push,
        JobStep::Reconcile,
    ];

    /// The wire name (`create`, `prune`, `verify`, `push`, `reconcile`).
    pub fn name(self) -> &'static str {
        match self {
            JobStep::Create => "create",
            JobStep::Prune => "prune",
            JobStep::Verify => "verify",
            JobStep::Push => "push",
            JobStep::Reconcile => "reconcile",
        }
    }

    /// The step named `name`.
    pub fn named(name: &str) -> Option<JobStep> {
        JobStep::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// How one step of a job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStepOutcome {
    /// Which step.
    pub step: JobStep,
    /// `ok`, `failed`, or `skipped` (e.g. prune with no policy configured,
    /// or every step after a failed create).
    pub status: JobStepStatus,
    /// One line for people: what it did, or why it failed or was skipped.
    pub message: String,
}

/// [`JobStepOutcome::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStepStatus {
    /// Done.
    Ok,
    /// Failed; the job failed.
    Failed,
    /// Not run, on purpose.
    Skipped,
}

/// The last job of one instance (`state_dir/jobs/<instance>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The instance.
    pub instance: String,
    /// The `backup.run` operation it was part of.
    pub op_id: String,
    /// When the instance's job began (RFC 3339, UTC).
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// Every step succeeded (or was skipped on purpose).
    pub ok: bool,
    /// The backup it created, when the create step succeeded.
    #[serde(default)]
    pub backup_id: Option<String>,
    /// Each step, in order.
    pub steps: Vec<JobStepOutcome>,
}
