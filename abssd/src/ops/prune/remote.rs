//! `backup prune --remote NAME`: the copies a remote holds, pruned by that
//! remote's own policy (`remotes.NAME.retention`, or the request's rules),
//! which may keep longer than the local one. The local archives and their
//! entries are never touched: only the copy's objects and its record in the
//! entry's `remotes`.
//!
//! The plan is the local prune's ([`plan::plan`]) over the entries that
//! record a copy in the remote, each seen as that copy (its key, its size;
//! available, since the copy is there whatever the local archive's status):
//! the same rules, reasons and safety — the newest verified copy, protected
//! backups, backups a running operation reads (a pull reading the copy),
//! young pre-restore backups.
//!
//! Removal, in batches under the global lock: the journal names each copy's
//! objects, then the copy's record leaves the index (one write per batch),
//! then the objects are deleted. A crash after the record went leaves
//! objects no entry names: start-up recovery ([`recover`]) deletes them.
//! A crash before changes nothing. The policy is asked again on the fresh
//! index of each batch, as the local prune does.

use std::collections::HashSet;

use abssd_proto::{
    BackupEntry, Command, Phase, PruneOutcome, PruneParams, PrunePlan, PruneResult, policy_source,
    status,
};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::plan;
use crate::config::RemoteSettings;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::journal::{Journal, Record, Step};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::remote::{self, layout};

/// Copies removed per hold of the global lock (one index write each).
const BATCH: usize = 256;

/// Plan, and unless `dry_run`, remove the copies the plan removes.
pub async fn run(
    ctx: &Ctx,
    params: &PruneParams,
    name: &str,
    progress: &Reporter,
) -> Result<(PrunePlan, Option<PruneResult>)> {
    let remote = ctx.config.remotes.pick(Some(name))?.clone();
    if params.purge_index.is_some() {
        return Err(Error::validation(
            "--purge-index drops local index entries: it does not go with --remote",
        ));
    }
    let (rules, source) = if params.has_rules() {
        (
            plan::request_policy(params)?,
            policy_source::REQUEST.to_owned(),
        )
    } else {
        let key = format!("remotes.{}.retention", remote.name);
        let rules = plan::config_policy(&remote.retention, &key)?;
        if rules.0.is_empty() {
            return Err(Error::validation(format!(
                "no retention policy for remote {:?}: give rules (--keep-last, --keep-daily, …) or set {key}",
                remote.name
            )));
        }
        (rules, policy_source::CONFIG.to_owned())
    };
    let min_age = SignedDuration::try_from(ctx.config.daemon.pre_restore_min_age)
        .map_err(|e| Error::validation(format!("backups.pre_restore_min_age: {e}")))?;
    let in_use = ctx.in_use.snapshot();
    let file = ctx.config.layout.index_file.clone();
    let now = Timestamp::now();
    let tz = TimeZone::system();
    let planned = {
        let (p, rules, tz, name) = (
            params.clone(),
            rules.clone(),
            tz.clone(),
            remote.name.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let view = copies(&Index::load(&file)?, &name);
            plan::plan(&view, &p, &rules, source, &in_use, now, &tz, min_age)
        })
        .await??
    };
    let (mut shown, removals) = planned;
    shown.remote = Some(remote.name.clone());
    if plan::shown(&shown, params, progress)? {
        return Ok((shown, None));
    }
    let mut items = Vec::new();
    let mut removed_bytes = 0;
    let ids: Vec<String> = removals.into_iter().map(|r| r.id).collect();
    for batch in ids.chunks(BATCH) {
        let recheck = |index: &Index| -> Result<HashSet<String>> {
            let (_, again) = plan::plan(
                &copies(index, &remote.name),
                params,
                &rules,
                String::new(),
                &HashSet::new(),
                now,
                &tz,
                min_age,
            )?;
            Ok(again.into_iter().map(|r| r.id).collect())
        };
        for outcome in remove_batch(ctx, &remote, batch, &recheck, progress).await? {
            removed_bytes += outcome.bytes;
            items.push(outcome);
        }
    }
    Ok((shown, Some(PruneResult::new(items, removed_bytes, 0))))
}

/// The entries that record a copy in `remote`, each as that copy: the
/// copy's key as its path, the copy's size, and available (the copy is
/// there whatever became of the local archive). Removed entries whose copy
/// is still recorded count too: the copy outlives the local prune.
pub fn copies(index: &Index, remote: &str) -> Vec<plan::Slim> {
    index
        .backups
        .iter()
        .filter_map(|e| {
            let copy = e.remote_copy(remote)?;
            let mut seen = e.clone();
            seen.path = copy.key.clone();
            seen.size_bytes = Some(copy.size_bytes);
            // The copy was checked against the entry's checksum as it went
            // up: what became of the local archive since says nothing of it.
            seen.status = status::AVAILABLE.to_owned();
            Some(plan::Slim::of(&seen))
        })
        .collect()
}

/// One batch: journal the copies' objects, take their records out of the
/// index (those the policy still removes on the fresh index, and no
/// running operation reads), then delete their objects.
async fn remove_batch(
    ctx: &Ctx,
    remote: &RemoteSettings,
    ids: &[String],
    recheck: &(dyn Fn(&Index) -> Result<HashSet<String>> + Sync),
    progress: &Reporter,
) -> Result<Vec<PruneOutcome>> {
    progress.phase(Phase::Index);
    let global = ctx.locks.acquire(true, &[], progress).await?;
    let file = ctx.config.layout.index_file.clone();
    let index = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || Index::load(&file)).await??
    };
    let still = recheck(&index)?;
    let mut outcomes = Vec::new();
    let mut going: Vec<(BackupEntry, Vec<String>)> = Vec::new();
    let mut claims = Vec::new();
    for id in ids {
        let kept = |why: &str| PruneOutcome {
            id: id.clone(),
            instance: index
                .get(id)
                .map(|e| e.instance.clone())
                .unwrap_or_default(),
            removed: false,
            removed_at: None,
            bytes: 0,
            reason: Some(why.to_owned()),
            kept: None,
        };
        let Some(entry) = index.get(id) else {
            outcomes.push(kept("its entry left the index meanwhile"));
            continue;
        };
        let Some(copy) = entry.remote_copy(&remote.name) else {
            outcomes.push(kept("its copy is no longer recorded"));
            continue;
        };
        if !still.contains(id) {
            outcomes.push(kept("the policy keeps it now (the index changed)"));
            continue;
        }
        let Some(claim) = ctx.in_use.begin_removal(id) else {
            outcomes.push(kept("a running operation reads it"));
            continue;
        };
        // Only the objects a push makes for this backup: a record naming any
        // other key is not deleted on its word.
        let keys = match layout::recorded(remote, entry, copy) {
            Ok(k) => vec![k.archive, k.sidecar, k.entry],
            Err(e) => {
                outcomes.push(kept(&format!("{e}; its objects are left alone")));
                continue;
            }
        };
        claims.push(claim);
        going.push((entry.clone(), keys));
    }
    if going.is_empty() {
        return Ok(outcomes);
    }
    let mut journal = {
        let record = Record::new(
            progress.op_id(),
            Command::BackupPrune,
            String::new(),
            String::new(),
        );
        let state_dir = ctx.config.layout.state_dir.clone();
        let steps: Vec<Step> = going
            .iter()
            .map(|(e, keys)| Step::RemoveRemoteCopy {
                remote: remote.name.clone(),
                id: e.id.clone(),
                keys: keys.clone(),
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut journal = Journal::create(&state_dir, record)?;
            journal.begin_all(steps)?;
            Ok::<_, Error>(journal)
        })
        .await??
    };
    crash_point!("prune-remote::journaled");
    let gone: HashSet<String> = going.iter().map(|(e, _)| e.id.clone()).collect();
    let name = remote.name.clone();
    tokio::task::spawn_blocking(move || {
        let mut index = Index::load(&file)?;
        for e in index.backups.iter_mut().filter(|e| gone.contains(&e.id)) {
            drop_record(e, &name);
        }
        index.save(&file)
    })
    .await??;
    drop(global);
    crash_point!("prune-remote::unrecorded");
    let s3 = {
        let remote = remote.clone();
        tokio::task::spawn_blocking(move || remote::connect(&remote)).await??
    };
    let s3 = std::sync::Arc::new(s3);
    let removed_at = crate::fsutil::now_utc();
    let mut done = Vec::new();
    for (entry, keys) in going {
        let bytes = entry.remote_copy(&remote.name).map_or(0, |c| c.size_bytes);
        let deleted = {
            let (s3, keys) = (s3.clone(), keys.clone());
            tokio::task::spawn_blocking(move || keys.iter().try_for_each(|k| s3.delete(k))).await?
        };
        match deleted {
            Ok(()) => {
                done.push(Step::Removed {
                    id: entry.id.clone(),
                });
                progress.info(format!(
                    "removed the copy of backup {} in remote {:?} ({bytes} bytes)",
                    entry.id, remote.name
                ));
                progress.changed(&entry.id);
                outcomes.push(PruneOutcome {
                    id: entry.id.clone(),
                    instance: entry.instance.clone(),
                    removed: true,
                    removed_at: Some(removed_at.clone()),
                    bytes,
                    reason: None,
                    kept: None,
                });
            }
            Err(e) => {
                progress.warn(format!(
                    "the copy of backup {} in remote {:?} left the index, but deleting its objects failed ({e}); abssd deletes them at its next start",
                    entry.id, remote.name
                ));
                outcomes.push(PruneOutcome {
                    id: entry.id.clone(),
                    instance: entry.instance.clone(),
                    removed: true,
                    removed_at: Some(removed_at.clone()),
                    bytes: 0,
                    reason: Some(format!("its objects are deleted at the next start: {e}")),
                    kept: None,
                });
            }
        }
    }
    drop(claims);
    let all_done = done.len() == outcomes.iter().filter(|o| o.removed).count();
    tokio::task::spawn_blocking(move || {
        journal.begin_all(done)?;
        if all_done {
            journal.close()?;
        }
        Ok::<_, Error>(())
    })
    .await??;
    Ok(outcomes)
}

/// The objects of `entry`'s copy whose archive is `archive_key`: the
/// archive, its sidecar and the entry object.
/// Takes `remote`'s copy out of `entry`'s `remotes` (the key goes when no
/// copy is left, so an entry never pushed reads as before).
fn drop_record(entry: &mut BackupEntry, remote: &str) {
    use abssd_proto::Lenient;
    if let Some(Lenient::Typed(list)) = &mut entry.remotes {
        list.retain(|c| c.typed().is_none_or(|c| c.name != remote));
        if list.is_empty() {
            entry.remotes = None;
        }
    }
}

/// What start-up recovery did and could not do.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Lines for the log.
    pub done: Vec<String>,
    /// What is left for the next start.
    pub left: Vec<String>,
}

/// Finishes the remote removals of a prune's journal (blocking): a copy
/// whose record left the index loses its objects; one still recorded was
/// never removed and stays.
/// A remote that fails is marked in `unreachable` and not asked again in
/// this start-up pass; each request is tried once, briefly.
pub fn recover(
    config: &crate::Config,
    record: &Record,
    unreachable: &remote::Unreachable,
) -> Result<Recovered> {
    let finished = record.finished_removals();
    let pending: Vec<(&String, &String, &Vec<String>)> = record
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::RemoveRemoteCopy { remote, id, keys } if !finished.contains(id.as_str()) => {
                Some((remote, id, keys))
            }
            _ => None,
        })
        .collect();
    let mut out = Recovered::default();
    if pending.is_empty() {
        return Ok(out);
    }
    let index = Index::load(&config.layout.index_file)?;
    for (name, id, keys) in pending {
        if unreachable.has(name) {
            out.left.push(format!(
                "the objects of backup {id}'s copy in remote {name:?} are still to delete (the remote failed)"
            ));
            continue;
        }
        if index.get(id).is_some_and(|e| e.remote_copy(name).is_some()) {
            out.done.push(format!(
                "the copy of backup {id} in remote {name:?} was not removed (the daemon stopped before its record left the index); it is kept"
            ));
            continue;
        }
        let deleted = config
            .remotes
            .pick(Some(name))
            .and_then(|r| remote::connect_with(r, remote::Patience::START_UP))
            .and_then(|s3| {
                keys.iter()
                    .try_for_each(|k| s3.delete(k))
                    .map_err(Error::from)
            });
        match deleted {
            Ok(()) => out.done.push(format!(
                "deleted the objects of backup {id}'s copy in remote {name:?}, whose record had left the index"
            )),
            Err(e) => {
                unreachable.mark(name);
                out.left.push(format!(
                    "the objects of backup {id}'s copy in remote {name:?} are still to delete: {e}"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use abssd_proto::{Lenient, RemoteCopy};

    use super::*;

    fn entry(id: &str, status: &str, remotes: &[&str]) -> BackupEntry {
        let mut e: BackupEntry = serde_json::from_value(serde_json::json!({
            "id": id, "instance": "alpha", "created_at": "2026-01-01T00:00:00Z",
            "path": format!("/b/alpha/{id}.tar.zst"), "status": status, "size_bytes": 5,
        }))
        .unwrap();
        if !remotes.is_empty() {
            e.remotes = Some(Lenient::Typed(
                remotes
                    .iter()
                    .map(|r| {
                        Lenient::Typed(RemoteCopy {
                            name: (*r).into(),
                            key: format!("{r}/alpha/{id}.tar.zst"),
                            sha256: "ab".into(),
                            size_bytes: 9,
                            uploaded_at: "2026-01-01T00:00:01Z".into(),
                            encrypted: false,
                            extra: Default::default(),
                        })
                    })
                    .collect(),
            ));
        }
        e
    }

    #[test]
    fn the_view_holds_the_copies_of_that_remote_as_available() {
        let index = Index {
            backups: vec![
                entry("a", status::REMOVED, &["off"]),
                entry("b", status::AVAILABLE, &["other"]),
                entry("c", status::MISSING, &["off", "other"]),
                entry("d", status::CORRUPT, &["off"]),
            ],
            extra: Default::default(),
        };
        let view = copies(&index, "off");
        let seen: Vec<(&str, &str, &str, u64)> = view
            .iter()
            .map(|e| {
                (
                    e.candidate.id.as_str(),
                    e.candidate.status.as_str(),
                    e.path.as_str(),
                    e.candidate.size_bytes,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a", "available", "off/alpha/a.tar.zst", 9),
                ("c", "available", "off/alpha/c.tar.zst", 9),
                ("d", "available", "off/alpha/d.tar.zst", 9),
            ]
        );
    }

    #[test]
    fn dropping_a_record_keeps_the_other_remotes_and_leaves_no_empty_list() {
        let mut e = entry("c", status::AVAILABLE, &["off", "other"]);
        drop_record(&mut e, "off");
        assert_eq!(
            e.remote_copies()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["other"]
        );
        drop_record(&mut e, "other");
        assert!(e.remotes.is_none());
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains("remotes"), "{text}");
    }
}
