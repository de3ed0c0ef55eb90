//! `backup.prune`: parameters, plan and result.
//!
//! A prune applies a retention policy per instance: every backup in scope gets
//! a decision, keep or remove, with the rules that keep it ([`PruneItem`]).
//! The policy comes from the request when it names any rule, else from the
//! daemon's config (`backups.retention`); a policy with no rule is refused.
//! Safety rules (the newest verified backup, protected backups, backups a
//! running operation reads, young pre-restore backups) keep a backup whatever
//! the policy says.

use serde::{Deserialize, Serialize};

/// `backup.prune` parameters (flags of `abssctl backup prune`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneParams {
    /// `--instance`: only this instance's backups.
    #[serde(default)]
    pub instance: Option<String>,
    /// `--keep-last N`: the newest N restorable backups.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// `--keep-hourly N`: the newest backup of each of the newest N hours.
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    /// `--keep-daily N`.
    #[serde(default)]
    pub keep_daily: Option<u32>,
    /// `--keep-weekly N` (ISO weeks, Monday to Sunday).
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    /// `--keep-monthly N`.
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    /// `--keep-yearly N`.
    #[serde(default)]
    pub keep_yearly: Option<u32>,
    /// `--keep-within DURATION` in restic's notation (`7d`, `2y5m`, `36h`;
    /// `m` is months): every backup made within it before the instance's newest.
    #[serde(default)]
    pub keep_within: Option<String>,
    /// The Python tool's `--keep N`: the same as `keep_last` (both given: the
    /// larger counts).
    #[serde(default)]
    pub keep: Option<u32>,
    /// The Python tool's `--older-than DAYS`, made safe: keeps every backup
    /// newer than DAYS days, and never removes one another rule keeps (alone,
    /// it removes every older backup the safety rules do not keep).
    #[serde(default)]
    pub older_than: Option<u32>,
    /// `--dry-run`: the plan only; nothing changes.
    #[serde(default)]
    pub dry_run: bool,
    /// Confirmation (`--yes` or the client's prompt). Without it (and without
    /// `dry_run`) the call is refused and changes nothing.
    #[serde(default)]
    pub yes: bool,
    /// `--purge-index DAYS`: also drop the index entries with status `removed`
    /// whose `removed_at` is more than DAYS days old.
    #[serde(default)]
    pub purge_index: Option<u32>,
    /// The `digest` of the plan the operator confirmed (the client sends the
    /// dry run's after asking). When the plan made now differs (a backup was
    /// made, removed, protected or verified in between), the prune is refused
    /// and changes nothing, rather than remove what nobody saw.
    #[serde(default)]
    pub expect_digest: Option<String>,
    /// Return `{op_id}` at once instead of waiting for the result.
    #[serde(default)]
    pub detach: bool,
    /// `--remote NAME`: prune the copies in that remote (by its own
    /// `remotes.NAME.retention` when no rule is given) instead of the local
    /// archives. The local archives and entries are left as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

impl PruneParams {
    /// Whether the request names a retention rule (else the config's policy
    /// applies). A rule given as zero counts: it is the request's policy, and
    /// an empty one is refused rather than replaced.
    pub fn has_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
            || self.keep.is_some()
            || self.older_than.is_some()
    }
}

/// Where a prune's policy came from.
pub mod policy_source {
    /// The request's rules.
    pub const REQUEST: &str = "request";
    /// The daemon's `backups.retention`.
    pub const CONFIG: &str = "config";
}

/// What a prune will (or, on a dry run, would) do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// The policy, for people (e.g. `keep-last 3, keep-daily 7`).
    pub policy: String,
    /// [`policy_source`]: `request` or `config`.
    pub policy_source: String,
    /// The time zone of the calendar buckets (the host's).
    pub time_zone: String,
    /// `--instance`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The decisions, grouped by instance, newest first within one: every
    /// backup in scope (entries already `removed` excepted), or, beyond
    /// [`crate::limits::PLAN_ROWS`], that many, chosen removals first and
    /// then kept ones, still in plan order (`unlisted` counts the others;
    /// `keep`, `remove`, `freed_bytes` and `digest` are of the whole plan).
    pub backups: Vec<PruneItem>,
    /// Decisions not in `backups`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted: u64,
    /// How many are kept.
    pub keep: u64,
    /// How many are to be removed.
    pub remove: u64,
    /// What removing them frees, in bytes.
    pub freed_bytes: u64,
    /// Ids of the `removed` entries `purge_index` drops from the index.
    #[serde(default)]
    pub purge: Vec<String>,
    /// sha256 (hex) of what the plan changes: the ids it removes and purges,
    /// in order. Equal digests, the same changes (see `expect_digest`).
    #[serde(default)]
    pub digest: String,
    /// The remote whose copies this plan prunes (`--remote`); absent for
    /// the local archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// The decision on one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneItem {
    /// Backup id.
    pub id: String,
    /// Its instance.
    pub instance: String,
    /// When it was made (RFC 3339), when the entry's time is readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Its index status.
    pub status: String,
    /// Kept (`true`) or to be removed.
    pub keep: bool,
    /// Every rule that keeps it, each an object tagged by `rule`
    /// (`{"rule":"last","rank":1}`,
    /// `{"rule":"bucket","period":"daily","bucket":"2024-10-27"}`,
    /// `{"rule":"protected"}`, …; docs/API.md lists them); empty exactly when
    /// it is to be removed.
    pub reasons: Vec<serde_json::Value>,
    /// The reasons for people, joined with `, `; `no rule keeps it` when none.
    pub why: String,
    /// Its archive's size: what removing it frees.
    pub size_bytes: u64,
}

/// What became of one planned removal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneOutcome {
    /// Backup id.
    pub id: String,
    /// Its instance.
    pub instance: String,
    /// The entry now says `removed` and its files are gone.
    pub removed: bool,
    /// The entry's `removed_at`, when removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
    /// Bytes the archive and its sidecar took (0 when kept).
    pub bytes: u64,
    /// Why it was kept after all, for people (it changed, became protected
    /// or in use since the plan; or its removal failed); absent when removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The same, for programs; absent when removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<KeptReason>,
}

/// Why a planned removal did not happen ([`PruneOutcome::kept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptReason {
    /// The entry is protected now.
    Protected,
    /// A running restore or verify reads its archive.
    InUse,
    /// Its path or checksum is not the planned one.
    Changed,
    /// It is no longer in the index.
    Gone,
    /// Another prune (ours or the Python tool's) removed it meanwhile.
    AlreadyRemoved,
    /// Its archive is not a file beneath the backups root (left alone).
    Unsafe,
    /// Deleting its archive failed; the entry was put back as it was.
    Failed,
    /// A reason a newer daemon gives.
    #[serde(other)]
    Other,
}

impl KeptReason {
    /// Whether a person must look: the backup should have gone and could not
    /// (`abssctl backup prune` then exits 3). The others are the world
    /// moving on since the plan, and the next prune decides again.
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            KeptReason::Unsafe | KeptReason::Failed | KeptReason::Other
        )
    }
}

impl PruneResult {
    /// The result of removals whose outcomes are `items` (in plan order),
    /// listing at most [`crate::limits::PLAN_ROWS`] of them: those kept after
    /// all first (they may need a person), then removed ones.
    pub fn new(items: Vec<PruneOutcome>, removed_bytes: u64, purged: u64) -> PruneResult {
        let (removed, kept) = (
            items.iter().filter(|i| i.removed).count(),
            items.iter().filter(|i| !i.removed).count(),
        );
        let items = crate::limits::rows(items, |i| !i.removed);
        let listed_removed = items.iter().filter(|i| i.removed).count();
        PruneResult {
            unlisted_removed: (removed - listed_removed) as u64,
            unlisted_kept: (kept - (items.len() - listed_removed)) as u64,
            items,
            removed_bytes,
            purged,
        }
    }

    /// How many backups were removed, listed or not.
    pub fn removed(&self) -> u64 {
        self.items.iter().filter(|i| i.removed).count() as u64 + self.unlisted_removed
    }

    /// Some planned removal could not be done and needs a person.
    pub fn has_problems(&self) -> bool {
        self.items
            .iter()
            .any(|i| i.kept.is_some_and(KeptReason::needs_operator))
    }
}

/// `backup.prune` result (absent on a dry run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneResult {
    /// One per backup the plan removes, in plan order; beyond
    /// [`crate::limits::PLAN_ROWS`], every one kept after all first, then
    /// removed ones, that many in all.
    pub items: Vec<PruneOutcome>,
    /// Backups removed that are not in `items`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted_removed: u64,
    /// Planned removals kept after all that are not in `items`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted_kept: u64,
    /// Bytes freed.
    pub removed_bytes: u64,
    /// Index entries dropped by `purge_index`.
    pub purged: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_and_rules_are_seen() {
        assert!(serde_json::from_str::<PruneParams>(r#"{"keep_lats":1}"#).is_err());
        let p: PruneParams = serde_json::from_str(r#"{"dry_run":true}"#).unwrap();
        assert!(!p.has_rules());
        let p: PruneParams = serde_json::from_str(r#"{"older_than":0}"#).unwrap();
        assert!(p.has_rules());
    }
}
