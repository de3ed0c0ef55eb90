//! The two halves every create runs, whatever its mode: the archive pass
//! (walk, plan, journal, archive and sidecar written) and the index entry; and
//! the end of the operation's journal.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use abssd_proto::{
    Actor, BackupEntry, CreateParams, CreatePlan, CreateResult, EntryMetadata, EventKind, Phase,
};
use serde_json::Value;

use super::plan::{Reading, build_plan};
use crate::archive::{self, Codec, Member};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::{Journal, Record, Step};
use crate::ops::{Ctx, InFlightClaim};
use crate::progress::{Progress, Reporter};

/// What [`super::run`] resolves before it takes the lock.
#[derive(Debug)]
pub(super) struct Resolved {
    /// `auto` resolved.
    pub(super) algorithm: abssd_proto::Algorithm,
    /// The effective level (validated for the algorithm).
    pub(super) level: Option<i32>,
    /// Where the archive goes (normalised, under the backups root).
    pub(super) out_dir: PathBuf,
    /// Split, trimmed, deduplicated.
    pub(super) labels: Vec<String>,
    /// `--consistency`, or `daemon.consistency`.
    pub(super) mode: abssd_proto::Consistency,
}

/// What [`pass`] ends with.
pub(super) enum Pass<'a> {
    /// A dry run: the plan only.
    Planned(CreatePlan),
    /// The archive and its sidecar are in place; no index entry yet.
    Written(Written<'a>),
}

/// A written archive on its way into the index.
pub(super) struct Written<'a> {
    pub(super) plan: CreatePlan,
    written: archive::Written,
    labels: Vec<String>,
    /// Until the index entry is written, reconcile must not take the archive
    /// for an orphan.
    _claim: InFlightClaim<'a>,
}

/// The archive half of a create: walk, plan, and (unless a dry run) journal
/// and write the archive and its sidecar. `journal` is the operation's journal
/// when it already has one (a `stop`-mode create journals the stop before the
/// walk); otherwise one is started here. On failure nothing half-made is left
/// and the journal stays with the caller, who closes it.
pub(super) async fn pass<'a>(
    ctx: &'a Ctx,
    params: &CreateParams,
    progress: &Reporter,
    Resolved {
        algorithm,
        level,
        out_dir,
        labels,
        ..
    }: Resolved,
    reading: Reading,
    journal: &mut Option<Journal>,
) -> Result<Pass<'a>> {
    let config = ctx.config.clone();
    let p = params.clone();
    let (plan, members) = tokio::task::spawn_blocking(move || {
        build_plan(&config, &p, algorithm, level, &out_dir, reading)
    })
    .await??;
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(&plan),
    });
    for note in &plan.notes {
        progress.info(note.clone());
    }
    for w in &plan.warnings {
        progress.warn(w.clone());
    }
    if params.dry_run {
        return Ok(Pass::Planned(plan));
    }

    let codec = Codec {
        algorithm,
        level: level.unwrap_or(0),
        workers: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
            .min(8),
    };
    let claim = ctx.in_flight.claim(Path::new(&plan.archive));
    // What a crash would leave (a `.partial`, an archive and sidecar without an
    // entry) is journaled first; start-up recovery removes it.
    let journal = match journal {
        Some(j) => {
            j.set_backup_id(&plan.id)?;
            j
        }
        None => journal.insert(Journal::create(
            &ctx.config.layout.state_dir,
            Record::new(
                progress.op_id(),
                abssd_proto::Command::BackupCreate,
                plan.instance.clone(),
                plan.id.clone(),
            ),
        )?),
    };
    journal.begin(Step::Archive {
        partial: PathBuf::from(format!("{}.partial", plan.archive)),
        archive: PathBuf::from(&plan.archive),
        sidecar: PathBuf::from(&plan.checksum_file),
    })?;
    crash_point!("create::before-partial");
    let (progress2, plan2) = (progress.clone(), plan.clone());
    let written = tokio::task::spawn_blocking(move || produce(&plan2, &members, codec, &progress2))
        .await
        .map_err(Error::from)
        .and_then(|w| w)
        .inspect_err(|_| discard(&plan))?;
    for w in archive::warnings(&written.skipped) {
        progress.warn(w);
    }
    Ok(Pass::Written(Written {
        plan,
        written,
        labels,
        _claim: claim,
    }))
}

/// The index entry of a written archive. On failure the archive and sidecar
/// are removed: nothing half-made survives a failed index update.
pub(super) async fn index(
    ctx: &Ctx,
    w: &Written<'_>,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<CreateResult> {
    let r = finish(
        ctx,
        &w.plan,
        &w.written,
        params,
        w.labels.clone(),
        actor,
        progress,
    )
    .await
    .inspect_err(|_| discard(&w.plan))?;
    crash_point!("create::after-index");
    Ok(r)
}

/// Remove what a failed create wrote.
fn discard(plan: &CreatePlan) {
    let _ = std::fs::remove_file(&plan.archive);
    let _ = std::fs::remove_file(&plan.checksum_file);
}

/// The operation is over: close its journal. A journal that cannot be removed
/// fails a create that otherwise succeeded (the next start would undo it);
/// after a failure the first error is the one returned.
pub(super) fn end<T>(journal: Option<Journal>, result: Result<T>) -> Result<T> {
    let Some(journal) = journal else {
        return result;
    };
    match result {
        Ok(v) => {
            journal.close()?;
            Ok(v)
        }
        Err(e) => {
            if let Err(close) = journal.close() {
                tracing::warn!("{close}");
            }
            Err(e)
        }
    }
}

/// Stream into `<archive>.partial`, fsync, rename it into place, then write the
/// `.sha256` sidecar. Blocking. On failure none of the three remains.
fn produce(
    plan: &CreatePlan,
    members: &[Member],
    codec: Codec,
    progress: &Reporter,
) -> Result<archive::Written> {
    // The walk is done and nothing is read yet: tests swap files here.
    hook_point!("create::after-walk");
    let archive = PathBuf::from(&plan.archive);
    let partial = PathBuf::from(format!("{}.partial", plan.archive));
    let dir = archive.parent().unwrap_or(Path::new("/"));
    fsutil::ensure_dir(dir)?;
    if archive.exists() {
        return Err(Error::Environment(format!(
            "{} already exists; not overwriting it",
            archive.display()
        )));
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .open(&partial)
        .at("creating", &partial)?;
    let mut bytes = progress.bytes(Phase::Archive, plan.total_bytes);
    let written = archive::write(file, members, codec, &mut |n| bytes.add(n)).and_then(|w| {
        crash_point!("create::before-rename");
        std::fs::rename(&partial, &archive).at("renaming", &partial)?;
        fsutil::sync_dir(dir)?;
        crash_point!("create::archive-in-place");
        Ok(w)
    });
    let written = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sidecar = PathBuf::from(&plan.checksum_file);
    fsutil::atomic_write(
        &sidecar,
        archive::sidecar::line(&written.sha256, &name).as_bytes(),
    )
    .inspect_err(|_| {
        let _ = std::fs::remove_file(&archive);
    })?;
    crash_point!("create::after-sidecar");
    Ok(written)
}

/// Sidecar, then the index entry under the global lock.
async fn finish(
    ctx: &Ctx,
    plan: &CreatePlan,
    written: &archive::Written,
    params: &CreateParams,
    labels: Vec<String>,
    actor: &Actor,
    progress: &Reporter,
) -> Result<CreateResult> {
    progress.phase(Phase::Index);
    let created_at = plan.created_at.clone();
    let mut entry = BackupEntry::new(
        plan.id.clone(),
        plan.instance.clone(),
        created_at.clone(),
        plan.archive.clone(),
        plan.algorithm.as_str(),
        written.size,
        written.sha256.clone(),
    );
    entry.compression_level = plan.compression_level.map(i64::from);
    entry.message = params.message.clone();
    entry.created_by = Some(serde_json::to_value(actor).unwrap_or(Value::Null));
    entry.metadata = EntryMetadata {
        data_only: params.data_only,
        labels: labels.clone(),
        uncompressed_bytes: Some(written.content_bytes),
        consistency: Some(plan.capture.as_str().to_owned()),
        ..EntryMetadata::default()
    };
    let index_file = ctx.config.layout.index_file.clone();
    {
        let _global = ctx.locks.acquire(true, &[], progress).await?;
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || {
            // Appended, the file streamed through one entry at a time.
            let id = entry.id.clone();
            crate::index::stream::rewrite(
                &index_file,
                |e| {
                    if e.id == id {
                        return Err(Error::Internal(format!(
                            "backup id {id} is already in the index"
                        )));
                    }
                    Ok(crate::index::stream::Edit::Keep(e))
                },
                || Ok(vec![entry]),
            )
        })
        .await??;
    }
    progress.changed(&plan.id);
    Ok(CreateResult {
        id: plan.id.clone(),
        archive: plan.archive.clone(),
        checksum: written.sha256.clone(),
        checksum_file: plan.checksum_file.clone(),
        size_bytes: written.size,
        algorithm: plan.algorithm,
        compression_level: plan.compression_level,
        message: params.message.clone(),
        labels,
        data_only: params.data_only,
        uncompressed_bytes: written.content_bytes,
        created_at,
        capture: plan.capture,
        snapshots: written.snapshots,
        downtime_ms: None,
        warnings: plan
            .warnings
            .iter()
            .cloned()
            .chain(archive::warnings(&written.skipped))
            .collect(),
    })
}
