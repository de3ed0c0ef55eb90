//! `backup push`: copy backups to a remote. Per backup, in this
//! order, each object created only if its key is free (nothing is ever
//! overwritten):
//!
//! 1. the archive, streamed from disk (encrypted with age when the remote
//!    has recipients), its SHA-256 checked against the index entry's before
//!    the object becomes visible ([`transfer::upload`]);
//! 2. its sidecar, in `sha256sum`'s format: the plain archive's line and,
//!    for an encrypted copy, the stored object's line;
//! 3. the index entry as JSON (encrypted like the archive);
//! 4. then, under the global lock, on a fresh read of the index, the copy
//!    is recorded in the entry's `remotes` list. The index never records a
//!    copy whose objects are not all in the bucket.
//!
//! A backup whose archive key is taken is checked against the sidecar
//! there: the same SHA-256s mean the copy is this backup's, made by an
//! earlier push (`already`); anything else is in the way, and that backup
//! fails, nothing overwritten. The global lock is never held while bytes
//! move; an in-use claim keeps a prune from removing the archive meanwhile.
//!
//! Each upload is journaled ([`crate::journal::Step::RemoteArchive`]) before
//! it starts and again once its multipart upload exists, so start-up
//! recovery ([`recover`]) can abandon the upload and delete an archive
//! object no sidecar followed.
//!
//! * `copy`    — one backup's objects, blocking.
//! * `record`  — the copy in the index entry.
//! * `recover` — start-up recovery of an interrupted push.

mod copy;
mod record;
pub mod recover;

use std::sync::Arc;

use abssd_proto::{
    BackupEntry, ErrorKind, EventKind, PushItem, PushOutcome, PushParams, PushPlan, PushResult,
    status,
};

use crate::config::remotes::{RemoteSettings, check_name};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::registry::validate_name;
use crate::remote::{self, S3};

/// Bytes of one backup's message in the result.
const MESSAGE_BYTES: usize = 600;
/// Failed backups named in the error's message (the summary has them all).
const NAMED_FAILURES: usize = 8;

/// Check the parameters: exactly one of `ids`, `instance` and `all`; names
/// and ids well formed.
pub fn validate(params: &PushParams) -> Result<()> {
    let scopes = usize::from(!params.ids.is_empty())
        + usize::from(params.instance.is_some())
        + usize::from(params.all);
    match scopes {
        0 => {
            return Err(Error::validation(
                "give backup ids, --instance NAME or --all",
            ));
        }
        1 => {}
        _ => {
            return Err(Error::validation(
                "give backup ids, --instance NAME or --all: only one of them",
            ));
        }
    }
    for id in &params.ids {
        crate::index::check_id(id)?;
    }
    if let Some(name) = &params.instance {
        validate_name(name)?;
    }
    if let Some(name) = &params.remote {
        check_name(name).map_err(Error::Validation)?;
    }
    Ok(())
}

/// Run `backup push`. `Ok` when no backup failed; otherwise
/// [`Error::JobFailed`] carrying the summary ([`PushResult`]).
pub async fn run(
    ctx: &Ctx,
    params: &PushParams,
    progress: &Reporter,
) -> Result<(PushPlan, PushResult)> {
    validate(params)?;
    let remote = ctx.config.remotes.pick(params.remote.as_deref())?.clone();
    let entries = select(ctx, params).await?;
    let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
    let total_bytes = tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
            .sum()
    })
    .await?;
    let plan = PushPlan {
        remote: remote.name.clone(),
        encrypted: remote.encrypted(),
        ids: entries.iter().map(|e| e.id.clone()).collect(),
        total_bytes,
    };
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(&plan),
    });
    if entries.is_empty() {
        progress.info("no backups in scope: nothing to push".into());
    }
    let pushed = push_entries(ctx, &remote, entries, progress).await?;
    match failure(&pushed) {
        None => Ok((plan, pushed.result)),
        Some(e) => Err(e),
    }
}

/// Push backup `id` to every remote with `auto_push: true` (after a create,
/// and as a backup job's push step): each remote's result, or why it could
/// not be pushed at all. Empty when no remote pushes automatically.
pub async fn auto(ctx: &Ctx, id: &str, progress: &Reporter) -> Vec<(String, Result<PushResult>)> {
    let mut out = Vec::new();
    for remote in ctx.config.remotes.all().iter().filter(|r| r.auto_push) {
        let params = PushParams {
            ids: vec![id.to_owned()],
            remote: Some(remote.name.clone()),
            ..PushParams::default()
        };
        let pushed = match select(ctx, &params).await {
            Ok(entries) => push_entries(ctx, remote, entries, progress).await,
            Err(e) => Err(e),
        };
        let pushed = pushed.and_then(|p| match failure(&p) {
            Some(e) => Err(e),
            None => Ok(p.result),
        });
        out.push((remote.name.clone(), pushed));
    }
    out
}

/// Whether any remote pushes automatically.
pub fn any_auto(ctx: &Ctx) -> bool {
    ctx.config.remotes.all().iter().any(|r| r.auto_push)
}

/// The error of a push in which a backup failed: the kind of the first
/// failure, the summary in the detail.
fn failure(pushed: &Pushed) -> Option<Error> {
    let result = &pushed.result;
    let failed: Vec<&PushItem> = result
        .items
        .iter()
        .filter(|i| i.outcome == PushOutcome::Failed)
        .collect();
    let first = failed.first()?;
    let mut names = failed
        .iter()
        .take(NAMED_FAILURES)
        .map(|i| i.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if failed.len() > NAMED_FAILURES {
        names.push_str(&format!(" and {} more", failed.len() - NAMED_FAILURES));
    }
    Some(Error::JobFailed {
        kind: pushed.first_kind.unwrap_or(ErrorKind::Environment),
        message: format!(
            "{} of {} backup(s) could not be pushed to {}: {names}; first failure: {}",
            failed.len(),
            result.items.len(),
            result.remote,
            first.message
        ),
        summary: Box::new(serde_json::to_value(result).unwrap_or_default()),
    })
}

/// The entries in scope, in the order they are pushed: the ids as given;
/// an instance's or every backup, oldest first, less those a prune removed.
async fn select(ctx: &Ctx, params: &PushParams) -> Result<Vec<BackupEntry>> {
    let file = ctx.config.layout.index_file.clone();
    let p = params.clone();
    tokio::task::spawn_blocking(move || {
        let index = Index::load(&file)?;
        if !p.ids.is_empty() {
            let mut seen = std::collections::HashSet::new();
            return p
                .ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .map(|id| index.require(id, &file).cloned())
                .collect();
        }
        let mut entries: Vec<BackupEntry> = index
            .newest_first(p.instance.as_deref())
            .into_iter()
            .filter(|e| e.status != status::REMOVED)
            .collect();
        entries.reverse();
        Ok(entries)
    })
    .await?
}

/// A push's result, and the kind of its first failure.
struct Pushed {
    result: PushResult,
    first_kind: Option<ErrorKind>,
}

/// Push `entries` to `remote`, one after the other; a failed one does not
/// stop the others. `Err` only when the remote cannot be used at all (its
/// credentials cannot be read).
async fn push_entries(
    ctx: &Ctx,
    remote: &RemoteSettings,
    entries: Vec<BackupEntry>,
    progress: &Reporter,
) -> Result<Pushed> {
    if entries.is_empty() {
        return Ok(Pushed {
            result: PushResult::new(remote.name.clone(), Vec::new()),
            first_kind: None,
        });
    }
    let settings = remote.clone();
    let s3 = Arc::new(tokio::task::spawn_blocking(move || remote::connect(&settings)).await??);
    let mut items = Vec::with_capacity(entries.len());
    let mut first_kind = None;
    for entry in entries {
        let (item, kind) = one(ctx, remote, &s3, entry, progress).await;
        first_kind = first_kind.or(kind);
        match item.outcome {
            PushOutcome::Failed => progress.warn(format!(
                "{} not pushed to {}: {}",
                item.id, item.remote, item.message
            )),
            _ => progress.info(format!(
                "{} {}: {}",
                item.id,
                item.outcome.as_str(),
                item.message
            )),
        }
        items.push(item);
    }
    Ok(Pushed {
        result: PushResult::new(remote.name.clone(), items),
        first_kind,
    })
}

/// One backup: its item, and the kind of its failure.
async fn one(
    ctx: &Ctx,
    remote: &RemoteSettings,
    s3: &Arc<S3>,
    entry: BackupEntry,
    progress: &Reporter,
) -> (PushItem, Option<ErrorKind>) {
    let mut item = PushItem {
        id: entry.id.clone(),
        instance: entry.instance.clone(),
        remote: remote.name.clone(),
        outcome: PushOutcome::Skipped,
        key: None,
        size_bytes: None,
        encrypted: remote.encrypted(),
        message: String::new(),
    };
    if let Some(copy) = entry.remote_copy(&remote.name) {
        item.outcome = PushOutcome::Already;
        item.key = Some(copy.key.clone());
        item.size_bytes = Some(copy.size_bytes);
        item.encrypted = copy.encrypted;
        item.message = format!("recorded in {} already: nothing sent", remote.name);
        return (item, None);
    }
    if entry.status == status::REMOVED {
        item.message = "removed by a prune: there is no archive to push".into();
        return (item, None);
    }
    if entry.sha256().is_none() {
        item.message =
            "its index entry records no checksum to check a copy against: run backup verify".into();
        return (item, None);
    }
    let keys = match remote::layout::keys(
        remote,
        &entry.instance,
        &entry.id,
        &entry.path,
        remote.encrypted(),
    ) {
        Ok(k) => k,
        Err(e) => return failed(item, e),
    };
    item.key = Some(keys.archive.clone());
    let Some(_pushing) = ctx
        .pushing
        .claim((remote.name.clone(), keys.archive.clone()))
    else {
        item.message = format!("another push of it to {} runs now", remote.name);
        return (item, None);
    };
    // Held while the archive is read, so no prune removes it meanwhile.
    let _reading = match ctx.in_use.claim(&entry.id) {
        Ok(claim) => claim,
        Err(e) => {
            item.message = format!("not pushed: {e}");
            return (item, None);
        }
    };
    // A stat of a file that may be on a slow disk: off the async workers.
    let path = entry.path.clone();
    let meta = tokio::task::spawn_blocking(move || std::fs::symlink_metadata(path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    match meta {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            item.message = format!("{} is not a regular file: not pushed", entry.path);
            return (item, None);
        }
        Err(e) => {
            item.message = format!("archive {} cannot be read ({e}): not pushed", entry.path);
            return (item, None);
        }
    }
    let job = copy::Job {
        s3: s3.clone(),
        remote: remote.clone(),
        entry: entry.clone(),
        keys,
        state_dir: ctx.config.layout.state_dir.clone(),
        op_id: progress.op_id(),
        progress: progress.clone(),
    };
    let copied = match tokio::task::spawn_blocking(move || copy::copy(job)).await {
        Ok(c) => c,
        Err(e) => return failed(item, Error::from(e)),
    };
    let (done, journal) = match copied {
        Ok(c) => c,
        Err(e) => return failed(item, e),
    };
    let (outcome, copy) = match done {
        copy::Done::Pushed(c) => (PushOutcome::Pushed, c),
        copy::Done::Already(c) => (PushOutcome::Already, c),
    };
    item.size_bytes = Some(copy.size_bytes);
    item.encrypted = copy.encrypted;
    if let Err(e) = record::record(ctx, &entry.id, copy, progress).await {
        // The objects are complete in the bucket: the next push finds
        // them and records them (`already`). Nothing to undo.
        if let Some(j) = journal {
            let _ = tokio::task::spawn_blocking(move || j.close()).await;
        }
        return failed(item, e);
    }
    if let Some(j) = journal {
        match tokio::task::spawn_blocking(move || j.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => progress.warn(format!("the journal of the push was not removed: {e}")),
            Err(e) => progress.warn(format!("the journal of the push was not removed: {e}")),
        }
    }
    item.outcome = outcome;
    item.message = match outcome {
        PushOutcome::Pushed => format!(
            "{} bytes stored{}",
            item.size_bytes.unwrap_or(0),
            if item.encrypted { ", encrypted" } else { "" }
        ),
        _ => format!(
            "{} held this copy already (an earlier push): nothing sent; recorded",
            remote.name
        ),
    };
    (item, None)
}

fn failed(mut item: PushItem, e: Error) -> (PushItem, Option<ErrorKind>) {
    item.outcome = PushOutcome::Failed;
    item.message = crate::text::cut(e.to_string(), MESSAGE_BYTES);
    (item, Some(e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_exclusive_and_names_checked() {
        let ok = |p: PushParams| validate(&p).is_ok();
        assert!(!ok(PushParams::default()));
        assert!(ok(PushParams {
            all: true,
            ..PushParams::default()
        }));
        assert!(!ok(PushParams {
            all: true,
            instance: Some("alpha".into()),
            ..PushParams::default()
        }));
        assert!(!ok(PushParams {
            instance: Some("../x".into()),
            ..PushParams::default()
        }));
        assert!(!ok(PushParams {
            all: true,
            remote: Some("Bad Name".into()),
            ..PushParams::default()
        }));
        assert!(!ok(PushParams {
            ids: vec!["../../etc".into()],
            ..PushParams::default()
        }));
    }
}
