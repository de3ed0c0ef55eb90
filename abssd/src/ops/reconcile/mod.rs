//! `backup reconcile`: keep the index honest (SPEC §7).
//!
//! 1. Walk the backups root (`scan`): directory entries and one `lstat` per
//!    archive; no archive is opened.
//! 2. Read the index and the set of archives creates are writing, together,
//!    under the global lock: an archive renamed into place but not yet indexed
//!    is then in one or the other, never taken for an orphan. The index is
//!    read one entry at a time (`classify::walk`): only the entries there is
//!    something to say or do about are kept, and a hash of every id.
//! 3. Classify (`classify`): missing, orphaned, mismatched; present archives
//!    without their sidecar (`sidecars`); stray sidecars.
//! 4. `--verify`: re-hash every present archive in scope (`--apply`: at least
//!    those without a sidecar); `--adopt`: read each orphan through
//!    (`apply::adoption`). Both without any lock.
//! 5. `--apply`: under the global lock, re-read the index and write every
//!    change that still holds in one atomic replace (`apply::write`), then the
//!    sidecars.
//!
//! * `scan`     — the walk, and what an archive's path says (its id, instance,
//!   date; the archive a sidecar belongs to).
//! * `classify` — index against disk: findings and the changes that fix them.
//! * `sidecars` — present archives without their sidecar, and when one may be
//!   written back.
//! * `apply`    — adoption of orphans, the index write, sidecars written back.
//!
//! Each imports only those above it: `classify` the walk, `sidecars` both,
//! `apply` all three.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use abssd_proto::{
    Actor, EventKind, Phase, ReconcileItem, ReconcileParams, ReconcilePlan, ReconcileResult,
};

use crate::error::{Error, Result};
use crate::ops::claims::InUse;
use crate::ops::{Ctx, verify};
use crate::progress::{Progress, Reporter};
use crate::registry::validate_name;

mod apply;
mod classify;
pub mod remote;
mod scan;
mod sidecars;

use classify::{Category, Change, Located, Orphan, Planned, Verdict};

/// Run `backup reconcile`.
pub async fn run(
    ctx: &Ctx,
    params: &ReconcileParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(ReconcilePlan, ReconcileResult)> {
    if params.adopt && !params.apply {
        return Err(Error::validation(
            "--adopt writes index entries, so it needs --apply as well",
        ));
    }
    if params.deep && !params.verify {
        return Err(Error::validation(
            "--deep checks what each re-hashed archive holds, so it needs --verify as well",
        ));
    }
    if let Some(instance) = &params.instance {
        validate_name(instance)?;
    }
    if let Some(name) = &params.remote {
        return remote::run(ctx, params, name, actor, progress).await;
    }
    let scope = params.instance.clone();
    let config = &ctx.config;

    progress.phase(Phase::Scan);
    let (root, skip) = (
        config.layout.backups_root.clone(),
        vec![config.layout.restores_root.clone()],
    );
    let scanned = tokio::task::spawn_blocking(move || scan::scan(&root, &skip)).await??;
    for s in &scanned.skipped {
        progress.warn(format!("not considered: {s}"));
    }
    if scanned.deeper > 0 {
        progress.warn(format!(
            "{} director{} below the instance directories of {} not looked into: reconcile finds archives only in the backups root and the directories directly in it (<root>/<instance>/<archive>)",
            scanned.deeper,
            if scanned.deeper == 1 { "y" } else { "ies" },
            config.layout.backups_root.display()
        ));
    }

    // One pass through the index under the global lock, with the set of
    // archives being written taken at the same time.
    let scanned = Arc::new(scanned);
    let rehashing = (params.verify || params.apply).then_some(params.verify);
    let (walked, in_flight) = {
        let _global = ctx.locks.acquire(true, &[], progress).await?;
        let (file, s, sc) = (
            config.layout.index_file.clone(),
            Arc::clone(&scanned),
            scope.clone(),
        );
        let walked = tokio::task::spawn_blocking(move || {
            classify::walk(&file, &s, sc.as_deref(), rehashing)
        })
        .await??;
        (walked, ctx.in_flight.snapshot())
    };
    let classify::Walked {
        entries,
        located,
        known_missing,
        claimed,
        ids,
        named_sidecars,
    } = walked;
    let ids = Arc::new(ids);
    let (s2, i2, sc2) = (Arc::clone(&scanned), Arc::clone(&ids), scope.clone());
    let (orphans, writing, strays) = tokio::task::spawn_blocking(move || {
        let (orphans, writing) = classify::orphans(&s2, &claimed, &i2, &in_flight, sc2.as_deref())?;
        let strays = classify::stray_sidecars(&s2, &named_sidecars, sc2.as_deref());
        Ok::<_, Error>((orphans, writing, strays))
    })
    .await??;
    let scan_ref = scanned;
    if !writing.is_empty() {
        progress.info(format!(
            "{} archive(s) being written by running creates were left out: {}",
            writing.len(),
            writing.join(", ")
        ));
    }

    // `--apply` hashes the archives without a sidecar that the index has a
    // checksum for, to write their sidecars from a verified hash.
    let hashed = |l: &&Located| {
        params.verify
            || (params.apply && l.lacking && l.entry.sha256().is_some_and(|v| !v.is_empty()))
    };
    let rehash: u64 = located.iter().filter(hashed).filter_map(|l| l.size).sum();
    let adopt: u64 = if params.adopt {
        orphans
            .iter()
            .filter(|o| o.adoptable)
            .map(|o| scan_ref.archives[o.archive].size)
            .sum()
    } else {
        0
    };
    let plan = ReconcilePlan {
        backups_root: config.layout.backups_root.display().to_string(),
        index: config.layout.index_file.display().to_string(),
        instance: scope.clone(),
        archives: scan_ref.archives.len() as u64,
        index_entries: entries,
        partial_files: scan_ref.partials,
        read_bytes: rehash + adopt,
        apply: params.apply,
        adopt: params.adopt,
        verify: params.verify,
        deep: params.deep,
        remote: None,
    };
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(&plan),
    });

    let mut result = ReconcileResult {
        stray_sidecars: strays,
        known_missing,
        ..ReconcileResult::default()
    };
    let rehash = (params.verify || params.apply).then(|| Rehash {
        all: params.verify,
        max_entries: config.daemon.max_restore_entries,
        deep: params.deep.then(|| config.layout.state_dir.clone()),
    });
    let mut planned = judge_entries(
        located,
        (rehash, &ctx.in_use),
        &scan_ref,
        progress,
        &mut result,
    )
    .await?;
    planned.extend(
        orphan_findings(
            orphans,
            params.adopt.then_some(config.daemon.max_restore_entries),
            scope,
            (&scan_ref, &ids),
            actor,
            progress,
            &mut result,
        )
        .await?,
    );

    // The scan goes before the index is read again for the write.
    drop((scan_ref, ids));
    if params.apply {
        let applied = write(ctx, planned, progress, &mut result).await?;
        apply::record_applied(&mut result, applied, params.adopt, |i| i.path.as_str());
    }
    result.count_unresolved();
    result.cap();
    Ok((plan, result))
}

/// How `--verify` re-hashes (and `--apply` the archives without a sidecar).
#[derive(Debug, Clone)]
struct Rehash {
    /// `--verify`: every present archive, not only those without a sidecar.
    all: bool,
    /// `daemon.max_restore_entries`.
    max_entries: u64,
    /// `--deep`: the state directory, for the deep check's copies.
    deep: Option<PathBuf>,
}

/// Judge every entry in scope, re-hashing present archives first under
/// `--verify` (and deep-checking them under `--deep`), and under `--apply`
/// those in `lacking` (no sidecar); findings go into `result`, fixes are
/// returned.
async fn judge_entries(
    located: Vec<Located>,
    (rehash, in_use): (Option<Rehash>, &InUse),
    scan: &Arc<scan::Scan>,
    progress: &Reporter,
    result: &mut ReconcileResult,
) -> Result<Vec<Planned>> {
    let lone: HashSet<&str> = scan
        .lone_sidecars
        .iter()
        .map(|s| scan::archive_of(s))
        .collect();
    let mut planned = Vec::new();
    for Located {
        entry,
        size,
        lacking: no_sidecar,
    } in located
    {
        let entry = &entry;
        let wanted = rehash
            .as_ref()
            .filter(|r| r.all || (no_sidecar && entry.sha256().is_some_and(|v| !v.is_empty())));
        let finding = if let (Some(r), Some(_)) = (wanted, size) {
            // Claimed while the archive is read, as verify does, so no prune
            // removes it meanwhile; one being removed is left out.
            let _reading = match in_use.claim(&entry.id) {
                Ok(claim) => claim,
                Err(e) => {
                    progress.info(format!("not checked: {e}"));
                    continue;
                }
            };
            let (entry, progress, r) = (entry.clone(), progress.clone(), r.clone());
            Some(
                tokio::task::spawn_blocking(move || {
                    // Claimed, about to read: tests race a prune here.
                    hook_point!("reconcile::claimed");
                    verify::check(&entry, r.max_entries, &progress, r.deep.as_deref())
                })
                .await?,
            )
        } else {
            None
        };
        let (id, path) = (entry.id.clone(), entry.path.clone());
        if let (true, Some(size)) = (no_sidecar, size) {
            let hashed = finding.as_ref().map(|f| sidecars::Hashed {
                observed: f.observed.as_deref(),
                message: &f.item.message,
            });
            let (item, change) = sidecars::judge(entry, size, hashed);
            result.missing_sidecars.push(item);
            if let Some(change) = change {
                planned.push(Planned {
                    id: id.clone(),
                    path: path.clone(),
                    item: Some((Category::MissingSidecar, result.missing_sidecars.len() - 1)),
                    change,
                });
            }
        }
        let sidecar_left = lone.contains(entry.path.as_str());
        match classify::judge(entry, size, finding, sidecar_left) {
            Verdict::Fine => {}
            Verdict::KnownMissing => result.known_missing += 1,
            Verdict::RecordOnly(change) => planned.push(Planned {
                id,
                path,
                item: None,
                change,
            }),
            Verdict::Finding(category, item, change) => {
                let list = list_mut(result, category);
                list.push(item);
                if let Some(change) = change {
                    planned.push(Planned {
                        id,
                        path,
                        item: Some((category, list.len() - 1)),
                        change,
                    });
                }
            }
        }
    }
    Ok(planned)
}

/// Orphans into `result`; under `--adopt` (`adopt`: the most entries an
/// archive may hold, `daemon.max_restore_entries`), each adoptable one read
/// through and its adoption returned.
async fn orphan_findings(
    orphans: Vec<Orphan>,
    adopt: Option<u64>,
    scope: Option<String>,
    (scan, ids): (&Arc<scan::Scan>, &Arc<crate::index::IdSet>),
    actor: &Actor,
    progress: &Reporter,
    result: &mut ReconcileResult,
) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for Orphan {
        archive,
        mut item,
        adoptable,
    } in orphans
    {
        if let (Some(max_entries), true) = (adopt, adoptable) {
            let (s, i, progress, a, sc) = (
                scan.clone(),
                ids.clone(),
                progress.clone(),
                actor.clone(),
                scope.clone(),
            );
            let limits = crate::extract::Limits {
                max_entries,
                recorded_bytes: None,
            };
            let prepared = tokio::task::spawn_blocking(move || {
                apply::adoption(
                    &s.archives[archive],
                    sc.as_deref(),
                    limits,
                    &i,
                    &a,
                    &progress,
                )
            })
            .await?;
            match prepared {
                Ok(adoption) => {
                    if !adoption.notes.is_empty() {
                        item.reason = format!("{}; {}", item.reason, adoption.notes.join("; "));
                    }
                    item.id = adoption.entry.id.clone();
                    item.instance = Some(adoption.entry.instance.clone());
                    planned.push(Planned {
                        id: item.id.clone(),
                        path: item.path.clone(),
                        item: Some((Category::Orphaned, result.orphaned.len())),
                        change: Change::Adopt(Box::new(adoption)),
                    });
                }
                Err(why) => {
                    item.reason = format!("{}; not adopted: {why}", item.reason);
                    item.action = None;
                }
            }
        }
        result.orphaned.push(item);
    }
    Ok(planned)
}

/// Write the planned changes under the global lock; mark what they fixed and
/// return the `applied` list.
async fn write(
    ctx: &Ctx,
    planned: Vec<Planned>,
    progress: &Reporter,
    result: &mut ReconcileResult,
) -> Result<Vec<ReconcileItem>> {
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    progress.phase(Phase::Index);
    // Adoptions also take their instances' locks: a create holds its instance
    // lock (ours in memory, the Python tool's as a flock) from before its
    // archive exists until its entry is written, so under these locks no
    // create can index the same archive after we have. One acquire takes
    // them in the order every operation does (see `crate::locks`).
    let mut adopting: Vec<&str> = planned
        .iter()
        .filter_map(|p| match &p.change {
            Change::Adopt(a) => Some(a.entry.instance.as_str()),
            _ => None,
        })
        .collect();
    adopting.sort_unstable();
    adopting.dedup();
    let _locks = ctx.locks.acquire(true, &adopting, progress).await?;
    let in_flight: HashSet<PathBuf> = ctx.in_flight.snapshot();
    let file = ctx.config.layout.index_file.clone();
    let (planned, done) = tokio::task::spawn_blocking(move || {
        let done = apply::write(&file, &planned, &in_flight)?;
        Ok::<_, Error>((planned, done))
    })
    .await??;
    let mut applied = Vec::new();
    for (p, written) in planned.into_iter().zip(done) {
        let why = match written {
            apply::Applied::Done => None,
            apply::Applied::Stale => Some("changed since it was looked at, not applied".to_owned()),
            apply::Applied::Failed(e) => Some(format!("not applied: {e}")),
        };
        if let Some(why) = why {
            if let Some((category, at)) = p.item {
                let item = &mut list_mut(result, category)[at];
                item.reason = format!("{}; {why}", item.reason);
            }
            continue;
        }
        progress.changed(&p.id);
        if !matches!(p.change, Change::WriteSidecar { .. }) {
            result.updates_applied += 1;
        }
        let Some((category, at)) = p.item else {
            continue;
        };
        let item = &mut list_mut(result, category)[at];
        let new_status = match &p.change {
            Change::MarkMissing => abssd_proto::status::MISSING.to_owned(),
            Change::MarkAvailable => abssd_proto::status::AVAILABLE.to_owned(),
            Change::Record { finding, .. } => finding.item.status.clone(),
            Change::Adopt(a) => a.entry.status.clone(),
            Change::WriteSidecar { .. } => item.status.clone(),
        };
        // A re-hash that found damage is recorded, but the archive is still bad.
        item.resolved = match &p.change {
            Change::Record { finding, .. } => finding.item.status == abssd_proto::status::AVAILABLE,
            _ => true,
        };
        let mut done = item.clone();
        done.status = new_status;
        applied.push(done);
    }
    Ok(applied)
}

fn list_mut(result: &mut ReconcileResult, category: Category) -> &mut Vec<ReconcileItem> {
    match category {
        Category::Missing => &mut result.missing,
        Category::Orphaned => &mut result.orphaned,
        Category::Mismatched => &mut result.mismatched,
        Category::MissingSidecar => &mut result.missing_sidecars,
    }
}
