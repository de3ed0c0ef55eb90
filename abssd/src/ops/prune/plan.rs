//! A prune's plan: the policy from the request or the configuration, the
//! candidates as the rules see them, every backup's decision with its
//! reasons, what the removals free, and the plan's digest. Pure functions of
//! the index, the claims, a clock and a time zone ([`plan`]); `run` and the
//! remote prune act on what they return.

use std::collections::{HashMap, HashSet};

use abssd_proto::{BackupEntry, EventKind, PruneItem, PruneParams, PrunePlan, status};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::policy::{self, Candidate, Decision, Policy};
use super::remove::Removal;
use crate::config::Retention;
use crate::error::{Error, Result};
use crate::progress::{Progress, Reporter};

/// The labels a restore gives the backup it takes first: ours and the
/// Python tool's.
const PRE_RESTORE_LABELS: [&str; 2] = [
    crate::ops::restore::PRE_RESTORE_LABEL,
    crate::ops::restore::PYTHON_PRE_RESTORE_LABEL,
];

/// Emits `plan` as the operation's `plan` event; whether that is all the
/// request asked (a dry run). A confirmed request whose plan differs from
/// the one the operator saw (`expect_digest`) is refused.
pub fn shown(plan: &PrunePlan, params: &PruneParams, progress: &Reporter) -> Result<bool> {
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(plan),
    });
    if params.dry_run {
        return Ok(true);
    }
    if let Some(expected) = &params.expect_digest
        && !expected.eq_ignore_ascii_case(&plan.digest)
    {
        return Err(Error::validation(
            "the prune plan changed since it was shown (a backup was made, pushed, removed, \
             protected or verified meanwhile, or time moved a backup past a rule or a \
             pre-restore backup past its minimum age); nothing changed: run the prune again \
             to see the new plan",
        ));
    }
    Ok(false)
}

/// The request's rules; `keep` (the Python tool's) is `keep_last`, and when
/// both are given the larger keeps more.
pub fn request_policy(p: &PruneParams) -> Result<(Policy, String)> {
    let keep_within = p
        .keep_within
        .as_deref()
        .map(|t| Ok::<_, Error>((t, policy::parse_keep_within(t)?)))
        .transpose()?;
    let keep_last = match (p.keep_last, p.keep) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let policy = Policy {
        keep_last,
        keep_hourly: p.keep_hourly,
        keep_daily: p.keep_daily,
        keep_weekly: p.keep_weekly,
        keep_monthly: p.keep_monthly,
        keep_yearly: p.keep_yearly,
        keep_within: keep_within.map(|(_, s)| s),
        older_than_days: p.older_than,
    };
    let text = describe(&policy, keep_within.map(|(t, _)| t));
    Ok((policy, text))
}

/// `backups.retention`; its `keep_within` is read here, where the notation is
/// known, and a bad one is refused naming the key.
pub fn config_policy(r: &Retention, key: &str) -> Result<(Policy, String)> {
    let keep_within = r
        .keep_within
        .as_deref()
        .map(|t| {
            policy::parse_keep_within(t)
                .map(|s| (t, s))
                .map_err(|e| Error::validation(format!("{key}.keep_within: {e}")))
        })
        .transpose()?;
    let policy = Policy {
        keep_last: r.keep_last,
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
        keep_within: keep_within.map(|(_, s)| s),
        older_than_days: None,
    };
    let text = describe(&policy, keep_within.map(|(t, _)| t));
    Ok((policy, text))
}

/// The policy for people, in flag names: `keep-last 3, keep-within 30d`.
fn describe(p: &Policy, keep_within: Option<&str>) -> String {
    let mut parts: Vec<String> = [
        ("keep-last", p.keep_last),
        ("keep-hourly", p.keep_hourly),
        ("keep-daily", p.keep_daily),
        ("keep-weekly", p.keep_weekly),
        ("keep-monthly", p.keep_monthly),
        ("keep-yearly", p.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(name, n)| n.map(|n| format!("{name} {n}")))
    .collect();
    if let Some(t) = keep_within {
        parts.push(format!("keep-within {t}"));
    }
    if let Some(days) = p.older_than_days {
        parts.push(format!("older-than {days} days"));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// What a plan needs of one index entry: ~400 bytes where the parsed entry
/// takes ~3 KB, so a plan over 100 000 entries holds them all at once.
#[derive(Debug, Clone)]
pub struct Slim {
    /// What the rules see (`in_use` is filled in by [`plan`]).
    pub candidate: Candidate,
    /// The archive path.
    pub path: String,
    /// The recorded sha256, if any.
    pub sha256: Option<String>,
    /// `removed_at` of a `removed` entry, when readable.
    pub removed_at: Option<Timestamp>,
}

impl Slim {
    /// What a plan needs of `entry`.
    pub fn of(entry: &BackupEntry) -> Slim {
        Slim {
            candidate: candidate(entry),
            path: entry.path.clone(),
            sha256: entry.sha256().map(str::to_owned),
            removed_at: entry
                .extra
                .get("removed_at")
                .and_then(|v| v.as_str())
                .and_then(|t| t.parse::<Timestamp>().ok()),
        }
    }

    fn removal(&self) -> Removal {
        Removal {
            id: self.candidate.id.clone(),
            instance: self.candidate.instance.clone(),
            path: self.path.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

/// Every entry of the index at `file`, read one at a time. Blocking.
pub fn slims(file: &std::path::Path) -> Result<Vec<Slim>> {
    let mut out = Vec::new();
    crate::index::stream::each(file, |entry| {
        out.push(Slim::of(&entry));
        Ok(())
    })?;
    Ok(out)
}

/// The plan over `entries` (a pure function of its inputs), and the removals
/// it implies, each as the index has the entry now.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    entries: &[Slim],
    params: &PruneParams,
    (policy, text): &(Policy, String),
    source: String,
    in_use: &HashSet<String>,
    now: Timestamp,
    tz: &TimeZone,
    min_age: SignedDuration,
) -> Result<(PrunePlan, Vec<Removal>)> {
    let in_scope = |e: &Slim| {
        params
            .instance
            .as_deref()
            .is_none_or(|i| e.candidate.instance == i)
    };
    let scope: Vec<&Slim> = entries.iter().filter(|e| in_scope(e)).collect();
    // An entry out of the scope with an id of the scope goes in too: the id
    // is then a duplicate to the policy, which keeps it (a removal by id
    // could hit the other instance's entry). Its own decision is dropped.
    let scope_ids: HashSet<&str> = scope.iter().map(|e| e.candidate.id.as_str()).collect();
    let candidates: Vec<Candidate> = entries
        .iter()
        .filter(|e| in_scope(e) || scope_ids.contains(e.candidate.id.as_str()))
        .map(|e| Candidate {
            in_use: in_use.contains(&e.candidate.id),
            ..e.candidate.clone()
        })
        .collect();
    let mut decisions = policy::plan(policy, &candidates, now, tz, min_age)?;
    if let Some(only) = params.instance.as_deref() {
        decisions.retain(|d| d.instance == only);
    }
    let freed_bytes = policy::freed_bytes(&decisions);

    // A duplicated id is always kept, so the first entry of an id is the one
    // any removal means.
    let mut by_id: HashMap<&str, &Slim> = HashMap::with_capacity(scope.len());
    for e in &scope {
        by_id.entry(e.candidate.id.as_str()).or_insert(e);
    }
    let removals: Vec<Removal> = decisions
        .iter()
        .filter(|d| !d.keep)
        .filter_map(|d| by_id.get(d.id.as_str()).map(|e| e.removal()))
        .collect();
    let purge = match params.purge_index {
        Some(days) => {
            let back = SignedDuration::from_hours(i64::from(days) * 24);
            let before = now.checked_sub(back).map_err(|e| {
                Error::validation(format!("purge_index {days} reaches too far back: {e}"))
            })?;
            purgeable(&scope, before)
        }
        None => Vec::new(),
    };
    let keep = decisions.iter().filter(|d| d.keep).count() as u64;
    let digest = digest(&removals, &purge);
    let total = decisions.len() as u64;
    let listed = abssd_proto::limits::rows(decisions, |d| !d.keep);
    let unlisted = total - listed.len() as u64;
    let plan = PrunePlan {
        policy: text.clone(),
        policy_source: source,
        time_zone: tz.iana_name().unwrap_or("system").to_owned(),
        instance: params.instance.clone(),
        remove: total - keep,
        keep,
        freed_bytes,
        backups: listed.into_iter().map(item).collect(),
        unlisted,
        purge,
        digest,
        remote: None,
    };
    Ok((plan, removals))
}

/// What a plan changes, as one sha256: each removal's id, then each purged
/// id, each as a tag, its length and its bytes (so no id, whatever it holds,
/// can make two different plans read alike). Two plans with one digest remove
/// and purge the same.
fn digest(removals: &[Removal], purge: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let ids = removals
        .iter()
        .map(|r| (b'r', r.id.as_str()))
        .chain(purge.iter().map(|id| (b'p', id.as_str())));
    for (tag, id) in ids {
        hasher.update([tag]);
        hasher.update((id.len() as u64).to_le_bytes());
        hasher.update(id.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What the rules need to know of `entry` (not yet whether it is in use).
fn candidate(entry: &BackupEntry) -> Candidate {
    let verified_good = entry.status == status::AVAILABLE
        && entry.metadata.verification_error.is_none()
        && entry.checksum.as_ref().is_some_and(|c| {
            c.last_verified.is_some() && c.observed.as_ref().is_none_or(|o| *o == c.value)
        });
    Candidate {
        id: entry.id.clone(),
        instance: entry.instance.clone(),
        created_at: entry.created_at.parse().ok(),
        status: entry.status.clone(),
        verified_good,
        protected: entry.protected,
        pre_restore: entry
            .metadata
            .labels
            .iter()
            .any(|l| PRE_RESTORE_LABELS.contains(&l.as_str())),
        in_use: false,
        // What removing it frees: nothing when its archive is known gone.
        size_bytes: if entry.status == status::MISSING {
            0
        } else {
            entry.size_bytes.unwrap_or(0)
        },
    }
}

fn item(d: Decision) -> PruneItem {
    let why = if d.reasons.is_empty() {
        "no rule keeps it".to_owned()
    } else {
        d.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    PruneItem {
        id: d.id,
        instance: d.instance,
        created_at: d.created_at.map(crate::fsutil::utc),
        status: d.status,
        keep: d.keep,
        reasons: d
            .reasons
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect(),
        why,
        size_bytes: d.size_bytes,
    }
}

/// Ids of the `removed` entries removed before `before`; an entry whose
/// `removed_at` is unreadable stays (its age is unknown).
fn purgeable(entries: &[&Slim], before: Timestamp) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.candidate.status == status::REMOVED)
        .filter(|e| e.removed_at.is_some_and(|at| at < before))
        .map(|e| e.candidate.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    fn removal(id: &str) -> Removal {
        Removal {
            id: id.into(),
            instance: "alpha".into(),
            path: format!("/b/alpha/{id}.tar.zst"),
            sha256: None,
        }
    }

    /// The digest tells plans apart by what they change, whatever the ids
    /// hold: ids that would join into the same text, a removal and a purge of
    /// one id, and another order all differ.
    #[test]
    fn digests_differ_whenever_the_changes_do() {
        let d = |r: &[&str], p: &[&str]| {
            let removals: Vec<Removal> = r.iter().map(|id| removal(id)).collect();
            let purge: Vec<String> = p.iter().map(|id| (*id).to_owned()).collect();
            digest(&removals, &purge)
        };
        let plans = [
            d(&["a", "b"], &[]),
            d(&["a\nremove b"], &[]),
            d(&["ab"], &[]),
            d(&["b", "a"], &[]),
            d(&["a"], &["b"]),
            d(&[], &["a", "b"]),
            d(&[], &[]),
        ];
        for (i, x) in plans.iter().enumerate() {
            for y in &plans[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(
            d(&["a", "b"], &[]),
            plans[0],
            "and equal changes, equal digests"
        );
    }

    fn entry(id: &str, created_at: &str) -> BackupEntry {
        BackupEntry::new(
            id.into(),
            "alpha".into(),
            created_at.into(),
            format!("/b/alpha/{id}.tar.zst"),
            "zstd",
            100,
            "ab".repeat(32),
        )
    }

    #[test]
    fn verified_good_needs_a_recorded_verification_that_matched() {
        let mut e = entry("a", "2025-01-01T00:00:00Z");
        assert!(!candidate(&e).verified_good, "never verified");
        e.checksum.as_mut().unwrap().last_verified = Some("2025-01-02T00:00:00Z".into());
        assert!(candidate(&e).verified_good);
        e.checksum.as_mut().unwrap().observed = Some("cd".repeat(32));
        assert!(!candidate(&e).verified_good, "observed differs");
        e.checksum.as_mut().unwrap().observed = Some("ab".repeat(32));
        assert!(candidate(&e).verified_good, "observed matches");
        e.metadata.verification_error = Some("deep check found a problem".into());
        assert!(!candidate(&e).verified_good, "deep check failed");
        e.metadata.verification_error = None;
        e.status = status::UNKNOWN.into();
        assert!(!candidate(&e).verified_good, "not available now");
    }

    #[test]
    fn candidates_carry_labels_protection_and_an_unreadable_time_as_none() {
        let mut e = entry("a", "2025-01-01T00:00:00+02:00");
        let c = candidate(&e);
        assert_eq!(c.created_at, Some("2024-12-31T22:00:00Z".parse().unwrap()));
        assert!(!c.pre_restore && !c.in_use && !c.protected);
        assert_eq!(c.size_bytes, 100);
        for label in ["pre-restore", "pre-backup-restore"] {
            e.metadata.labels = vec!["x".into(), label.into()];
            assert!(candidate(&e).pre_restore, "{label}");
        }
        e.created_at = "yesterday".into();
        e.protected = true;
        e.size_bytes = None;
        let c = candidate(&e);
        assert_eq!(c.created_at, None);
        assert!(c.protected);
        assert_eq!(c.size_bytes, 0);
    }

    #[test]
    fn the_python_keep_is_keep_last_and_the_larger_counts() {
        let p = PruneParams {
            keep: Some(5),
            keep_last: Some(2),
            older_than: Some(30),
            keep_within: Some("2y5m".into()),
            ..Default::default()
        };
        let (policy, text) = request_policy(&p).unwrap();
        assert_eq!(policy.keep_last, Some(5));
        assert_eq!(policy.older_than_days, Some(30));
        assert_eq!(text, "keep-last 5, keep-within 2y5m, older-than 30 days");
        let bad = PruneParams {
            keep_within: Some("5 minutes".into()),
            ..Default::default()
        };
        assert!(request_policy(&bad).is_err());
        let bad = Retention {
            keep_within: Some("5x".into()),
            ..Retention::default()
        };
        let e = config_policy(&bad, "backups.retention")
            .unwrap_err()
            .to_string();
        assert!(e.contains("backups.retention.keep_within"), "{e}");
    }

    /// An id another instance's entry also has is kept by a prune of one
    /// instance: a removal by id could mark the other's entry.
    #[test]
    fn an_id_shared_with_an_entry_out_of_scope_is_kept() {
        let mut theirs = entry("x", "2025-01-01T00:00:00Z");
        theirs.instance = "beta".into();
        let index = Index {
            backups: vec![
                theirs,
                entry("x", "2025-01-01T00:00:00Z"),
                entry("new", "2025-01-02T00:00:00Z"),
            ],
            ..Index::default()
        };
        let params = PruneParams {
            instance: Some("alpha".into()),
            keep_last: Some(1),
            ..Default::default()
        };
        let rules = request_policy(&params).unwrap();
        let (plan, removals) = plan(
            &index.backups.iter().map(Slim::of).collect::<Vec<_>>(),
            &params,
            &rules,
            "request".into(),
            &HashSet::new(),
            "2025-01-10T00:00:00Z".parse().unwrap(),
            &TimeZone::UTC,
            SignedDuration::ZERO,
        )
        .unwrap();
        let decided: Vec<(&str, &str, bool)> = plan
            .backups
            .iter()
            .map(|b| (b.instance.as_str(), b.id.as_str(), b.keep))
            .collect();
        assert_eq!(decided, [("alpha", "new", true), ("alpha", "x", true)]);
        assert_eq!(plan.backups[1].why, "duplicate id");
        assert!(removals.is_empty());
    }

    #[test]
    fn the_plan_removes_what_no_rule_keeps_and_lists_old_removed_entries_to_purge() {
        let mut index = Index {
            backups: vec![
                entry("old", "2025-01-01T00:00:00Z"),
                entry("new", "2025-01-02T00:00:00Z"),
                entry("gone", "2024-01-01T00:00:00Z"),
                entry("gone-late", "2024-01-02T00:00:00Z"),
                entry("gone-unreadable", "2024-01-03T00:00:00Z"),
            ],
            ..Index::default()
        };
        for (e, at) in index.backups[2..].iter_mut().zip([
            "2025-01-01T00:00:00Z",
            "2025-01-09T00:00:00Z",
            "whenever",
        ]) {
            e.status = status::REMOVED.into();
            e.extra.insert("removed_at".into(), at.into());
        }
        let params = PruneParams {
            keep_last: Some(1),
            purge_index: Some(3),
            ..Default::default()
        };
        let rules = request_policy(&params).unwrap();
        let now: Timestamp = "2025-01-10T00:00:00Z".parse().unwrap();
        let (plan, removals) = plan(
            &index.backups.iter().map(Slim::of).collect::<Vec<_>>(),
            &params,
            &rules,
            "request".into(),
            &HashSet::new(),
            now,
            &TimeZone::UTC,
            SignedDuration::ZERO,
        )
        .unwrap();
        let decided: Vec<(&str, bool)> = plan
            .backups
            .iter()
            .map(|b| (b.id.as_str(), b.keep))
            .collect();
        assert_eq!(decided, [("new", true), ("old", false)]);
        assert_eq!(removals, [Removal::of(&index.backups[0])]);
        assert_eq!((plan.keep, plan.remove, plan.freed_bytes), (1, 1, 100));
        assert_eq!(plan.purge, ["gone"]);
        assert_eq!(plan.time_zone, "UTC");
        assert_eq!(plan.backups[1].why, "no rule keeps it");
        assert_eq!(
            plan.backups[0].reasons[0],
            serde_json::json!({"rule": "last", "rank": 1})
        );
    }
}
