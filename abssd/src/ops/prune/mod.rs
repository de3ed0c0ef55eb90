//! `backup prune`: which backups a retention policy keeps (`policy`, a pure
//! function of the index and a clock), and removing the rest (`remove`,
//! journaled and crash-safe). [`run`] is the operation: it takes the policy
//! from the request or the config, plans on a fresh read of the index with
//! what running operations read, and removes what no rule keeps.

pub mod plan;
pub mod policy;
pub mod remote;
pub mod remove;

use std::collections::HashSet;
use std::sync::Arc;

use abssd_proto::{
    Phase, PruneOutcome, PruneParams, PrunePlan, PruneResult, policy_source, status,
};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::error::{Error, Result};
use crate::index::Index;
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use remove::Outcome;

/// Plan, and unless `dry_run`, remove what the plan removes and purge the
/// index. The plan is emitted as the `plan` event before anything changes.
pub async fn run(
    ctx: &Ctx,
    params: &PruneParams,
    progress: &Reporter,
) -> Result<(PrunePlan, Option<PruneResult>)> {
    // The handler refuses this too; here it guards every other caller.
    if !params.dry_run && !params.yes {
        return Err(not_confirmed());
    }
    if let Some(name) = &params.remote {
        return remote::run(ctx, params, name, progress).await;
    }
    let (rules, source) = if params.has_rules() {
        (
            plan::request_policy(params)?,
            policy_source::REQUEST.to_owned(),
        )
    } else {
        (
            plan::config_policy(&ctx.config.daemon.retention, "backups.retention")?,
            policy_source::CONFIG.to_owned(),
        )
    };
    let min_age = SignedDuration::try_from(ctx.config.daemon.pre_restore_min_age)
        .map_err(|e| Error::validation(format!("backups.pre_restore_min_age: {e}")))?;
    let in_use = ctx.in_use.snapshot();
    let file = ctx.config.layout.index_file.clone();
    let p = params.clone();
    let now = Timestamp::now();
    let tz = TimeZone::system();
    let (plan, entries, rules) = {
        let tz = tz.clone();
        tokio::task::spawn_blocking(move || {
            let entries = plan::slims(&file)?;
            let source = source.clone();
            let (plan, removals) =
                plan::plan(&entries, &p, &rules, source, &in_use, now, &tz, min_age)?;
            Ok::<_, Error>((plan, removals, rules))
        })
        .await??
    };
    if plan::shown(&plan, params, progress)? {
        return Ok((plan, None));
    }

    // The same policy on the same clock, asked again on the fresh index of
    // each batch of removals (what running operations read, the removal
    // claims decide there).
    let p = params.clone();
    let recheck: remove::Recheck = Arc::new(move |index: &Index| {
        let entries: Vec<plan::Slim> = index.backups.iter().map(plan::Slim::of).collect();
        let (_, removals) = plan::plan(
            &entries,
            &p,
            &rules,
            String::new(),
            &HashSet::new(),
            now,
            &tz,
            min_age,
        )?;
        Ok(removals.into_iter().map(|r| r.id).collect())
    });
    let removed = remove::remove(ctx, entries, recheck, progress).await?;
    let removed_bytes = remove::removed_bytes(&removed);
    let items = removed
        .into_iter()
        .map(|r| {
            let (removed, removed_at, bytes, reason, kept) = match r.outcome {
                Outcome::Removed { removed_at, bytes } => {
                    (true, Some(removed_at), bytes, None, None)
                }
                Outcome::Kept { reason, detail } => (false, None, 0, Some(detail), Some(reason)),
            };
            PruneOutcome {
                id: r.id,
                instance: r.instance,
                removed,
                removed_at,
                bytes,
                reason,
                kept,
            }
        })
        .collect();
    let purged = if plan.purge.is_empty() {
        0
    } else {
        purge(ctx, &plan.purge, progress).await?
    };
    Ok((plan, Some(PruneResult::new(items, removed_bytes, purged))))
}

/// The refusal of a prune neither confirmed nor a dry run.
pub fn not_confirmed() -> Error {
    Error::validation(
        "a prune removes backups; confirm with yes: true (abssctl: --yes), \
         or use dry_run to see the plan",
    )
}

/// Drop the planned `ids` from the index, under the global lock on a fresh
/// read, in one atomic write: only those still `removed` (one the Python
/// tool re-added meanwhile stays).
async fn purge(ctx: &Ctx, ids: &[String], progress: &Reporter) -> Result<u64> {
    progress.phase(Phase::Index);
    let _global = ctx.locks.acquire(true, &[], progress).await?;
    let file = ctx.config.layout.index_file.clone();
    let ids: HashSet<String> = ids.iter().cloned().collect();
    let purged = tokio::task::spawn_blocking(move || {
        let purged = crate::index::stream::rewrite(
            &file,
            |e| {
                Ok(if e.status == status::REMOVED && ids.contains(&e.id) {
                    crate::index::stream::Edit::Drop
                } else {
                    crate::index::stream::Edit::Keep(e)
                })
            },
            || Ok(Vec::new()),
        )?;
        Ok::<_, Error>(purged)
    })
    .await??;
    progress.info(format!("dropped {purged} removed entries from the index"));
    Ok(purged)
}
