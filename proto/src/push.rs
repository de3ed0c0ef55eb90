//! `backup.push`: copy backups to a remote (S3-compatible object storage).
//! Per backup, the archive (age-encrypted when the remote has recipients),
//! its checksum sidecar and its index entry go under
//! `<prefix>/<instance>/` of the remote's bucket, each created only if its
//! key is free; then the copy is recorded in the entry's `remotes` list.

use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::limits::{Bounded, ID, NAME, list, opt};

/// The most backup ids one call names.
pub const PUSH_IDS: usize = 1000;

/// `backup.push` parameters (flags of `abssctl backup push`). Exactly one of
/// `ids` (non-empty), `instance` and `all`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushParams {
    /// These backups, in this order.
    #[serde(default)]
    pub ids: Vec<String>,
    /// `--instance`: every backup of this instance, oldest first.
    #[serde(default)]
    pub instance: Option<String>,
    /// `--all`: every backup of the index, oldest first.
    #[serde(default)]
    pub all: bool,
    /// `--remote`: the remote's name; optional when only one is configured.
    #[serde(default)]
    pub remote: Option<String>,
    /// Return `{op_id}` at once.
    #[serde(default)]
    pub detach: bool,
}

impl Bounded for PushParams {
    fn check(&self) -> Result<(), WireError> {
        list("ids", &self.ids, PUSH_IDS, ID)?;
        opt("instance", self.instance.as_ref(), NAME)?;
        opt("remote", self.remote.as_ref(), NAME)
    }
}

/// What a push will do (its `plan` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushPlan {
    /// The remote.
    pub remote: String,
    /// Whether copies are encrypted (the remote has age recipients).
    pub encrypted: bool,
    /// The backups considered, in order.
    pub ids: Vec<String>,
    /// Sum of their archives' sizes on disk (progress total).
    pub total_bytes: u64,
}

/// How one backup's push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushOutcome {
    /// Its objects were uploaded and the copy recorded.
    Pushed,
    /// The remote already held this copy: nothing was sent (the record was
    /// added if it was missing).
    Already,
    /// It could not be copied; nothing was recorded (see `message`).
    Failed,
    /// Not a backup that can be copied (removed, no archive, no checksum).
    Skipped,
}

impl PushOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PushOutcome::Pushed => "pushed",
            PushOutcome::Already => "already",
            PushOutcome::Failed => "failed",
            PushOutcome::Skipped => "skipped",
        }
    }
}

/// One backup of a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushItem {
    /// The backup.
    pub id: String,
    /// Its instance.
    pub instance: String,
    /// The remote.
    pub remote: String,
    /// How it ended.
    pub outcome: PushOutcome,
    /// The archive object's key (when one was worked out).
    #[serde(default)]
    pub key: Option<String>,
    /// Bytes stored (pushed or already there).
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Whether the copy is encrypted.
    pub encrypted: bool,
    /// One line for people: what was done, or why not.
    pub message: String,
}

/// `backup.push` result. When any backup failed, the call fails instead,
/// and this summary is the error's `detail.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResult {
    /// The remote.
    pub remote: String,
    /// Each backup, in order.
    pub items: Vec<PushItem>,
    /// How many were pushed.
    pub pushed: usize,
    /// How many were there already.
    pub already: usize,
    /// How many failed.
    pub failed: usize,
    /// How many were skipped.
    pub skipped: usize,
    /// Bytes uploaded by this push.
    pub pushed_bytes: u64,
}

impl PushResult {
    /// The result over `items`, totals counted.
    pub fn new(remote: String, items: Vec<PushItem>) -> PushResult {
        let count = |o: PushOutcome| items.iter().filter(|i| i.outcome == o).count();
        PushResult {
            remote,
            pushed: count(PushOutcome::Pushed),
            already: count(PushOutcome::Already),
            failed: count(PushOutcome::Failed),
            skipped: count(PushOutcome::Skipped),
            pushed_bytes: items
                .iter()
                .filter(|i| i.outcome == PushOutcome::Pushed)
                .filter_map(|i| i.size_bytes)
                .sum(),
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_bounded_and_strict() {
        let many = PushParams {
            ids: vec!["x".into(); PUSH_IDS + 1],
            ..PushParams::default()
        };
        assert!(many.check().is_err());
        let long = PushParams {
            remote: Some("r".repeat(NAME + 1)),
            ..PushParams::default()
        };
        assert!(long.check().is_err());
        assert!(serde_json::from_str::<PushParams>(r#"{"id":"x"}"#).is_err());
        let p: PushParams = serde_json::from_str(r#"{"all":true}"#).unwrap();
        assert!(p.all && p.ids.is_empty() && p.check().is_ok());
    }

    #[test]
    fn totals_count_outcomes_and_pushed_bytes() {
        let item = |outcome, size| PushItem {
            id: "i".into(),
            instance: "a".into(),
            remote: "r".into(),
            outcome,
            key: None,
            size_bytes: size,
            encrypted: false,
            message: String::new(),
        };
        let r = PushResult::new(
            "r".into(),
            vec![
                item(PushOutcome::Pushed, Some(10)),
                item(PushOutcome::Already, Some(5)),
                item(PushOutcome::Failed, None),
            ],
        );
        assert_eq!((r.pushed, r.already, r.failed, r.skipped), (1, 1, 1, 0));
        assert_eq!(r.pushed_bytes, 10);
        assert_eq!(
            serde_json::to_value(PushOutcome::Already).unwrap(),
            serde_json::json!("already")
        );
    }
}
