//! `backup create`: plan, then one streaming pass into `<archive>.partial`,
//! rename, sidecar, index entry (SPEC §7).
//!
//! The instance lock is held for the whole run; the global lock only around the
//! index write. On any failure the partial archive and sidecar are removed and no
//! index entry is written.
//!
//! * `plan` — validation, the walk of the sources, and the archive's name.
//! * `stop` — `--consistency stop`: the unit stopped (journaled) around the
//!   walk and the archive pass, and started again.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use abssd_proto::{
    Actor, BackupEntry, Capture, CreateParams, CreatePlan, CreateResult, EntryMetadata, EventKind,
    Phase,
};
use serde_json::Value;

use crate::archive::{self, Codec, Member};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::index::Index;
use crate::journal::{Journal, Record, Step};
use crate::ops::{Ctx, InFlightClaim};
use crate::progress::{Progress, Reporter};
use crate::registry::validate_name;
use crate::systemd::Units;

mod plan;
mod stop;

use plan::{Reading, build_plan, effective_level, out_dir};
pub use stop::recover_unit;

/// Run `backup create`. Returns the plan, and the result unless `dry_run`.
pub async fn run(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    let resolved = resolve(ctx, params)?;
    let _instance_lock = ctx
        .locks
        .acquire(false, &[params.instance.as_str()], progress)
        .await?;
    run_locked(ctx, params, actor, progress, resolved).await
}

/// What [`run`] resolves before it takes the lock.
#[derive(Debug)]
struct Resolved {
    /// `auto` resolved.
    algorithm: abssd_proto::Algorithm,
    /// The effective level (validated for the algorithm).
    level: Option<i32>,
    /// Where the archive goes (normalised, under the backups root).
    out_dir: PathBuf,
    /// Split, trimmed, deduplicated.
    labels: Vec<String>,
    /// `--consistency`, or `daemon.consistency`.
    mode: abssd_proto::Consistency,
}

/// A create for an instance whose lock the caller already holds (the restore's
/// pre-restore backup).
pub async fn run_under_lock(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    let resolved = resolve(ctx, params)?;
    run_locked(ctx, params, actor, progress, resolved).await
}

/// Validate the parameters and settle algorithm, level, directory and labels.
fn resolve(ctx: &Ctx, params: &CreateParams) -> Result<Resolved> {
    validate_name(&params.instance)?;
    if let Some(m) = &params.message {
        crate::ops::check_message("--message", m)?;
    }
    let labels = split_labels(&params.labels)?;
    let algorithm = match params.compression {
        abssd_proto::Compression::Auto => ctx.config.daemon.default_compression.algorithm(),
        other => other.algorithm(),
    };
    let level = effective_level(
        algorithm,
        params.compression_level.or(ctx.config.daemon.default_level),
    )?;
    let out_dir = out_dir(ctx, params)?;
    Ok(Resolved {
        algorithm,
        level,
        out_dir,
        labels,
        mode: params.consistency.unwrap_or(ctx.config.daemon.consistency),
    })
}

/// The unit's state, asked of systemd, and the connection it was asked on;
/// `None`s when systemd cannot be reached (a host or test without it).
async fn unit_running(ctx: &Ctx, unit: &str) -> (Option<Box<dyn Units>>, Option<bool>) {
    let asked = async {
        let systemd = ctx.systemd.connect().await?;
        let state = systemd.state(unit).await?;
        Ok::<_, Error>((systemd, state))
    };
    match asked.await {
        Ok((systemd, state)) => (Some(systemd), Some(state.is_active())),
        Err(e) => {
            tracing::info!("not asking systemd whether {unit} runs: {e}");
            (None, None)
        }
    }
}

async fn run_locked(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
    resolved: Resolved,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    let unit = crate::config::unit_name(&params.instance);
    // Asked under the instance lock: a restore cannot start or stop it now.
    let (systemd, running) = unit_running(ctx, &unit).await;
    let reading = Reading::decide(resolved.mode, running, &unit)?;
    if reading.capture == Capture::Stop && !params.dry_run {
        // `stop` is only decided on systemd's word, so the connection is there.
        let systemd =
            systemd.ok_or_else(|| Error::Internal("stop mode decided without systemd".into()))?;
        let job = stop::Job {
            ctx,
            units: &*systemd,
            unit: &unit,
            params,
            actor,
            progress,
        };
        return job.run(resolved, reading).await;
    }
    let mut journal = None;
    let result = match pass(ctx, params, progress, resolved, reading, &mut journal).await {
        Ok(Pass::Planned(plan)) => Ok((plan, None)),
        Ok(Pass::Written(w)) => index(ctx, &w, params, actor, progress)
            .await
            .map(|r| (w.plan, Some(r))),
        Err(e) => Err(e),
    };
    end(journal, result)
}

/// What [`pass`] ends with.
enum Pass<'a> {
    /// A dry run: the plan only.
    Planned(CreatePlan),
    /// The archive and its sidecar are in place; no index entry yet.
    Written(Written<'a>),
}

/// A written archive on its way into the index.
struct Written<'a> {
    plan: CreatePlan,
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
async fn pass<'a>(
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
        plan: serde_json::to_value(&plan).unwrap_or_default(),
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
            Record {
                version: 1,
                op_id: progress.op_id(),
                command: abssd_proto::Command::BackupCreate,
                instance: plan.instance.clone(),
                backup_id: plan.id.clone(),
                started_at: fsutil::now_utc(),
                unit_was_active: None,
                steps: Vec::new(),
                outcome: None,
            },
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
async fn index(
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
fn end<T>(journal: Option<Journal>, result: Result<T>) -> Result<T> {
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

/// Start-up recovery of a create the daemon stopped during (see
/// [`crate::recovery`]). When its index entry was written it had finished and
/// `Ok(None)` is returned; otherwise its `.partial` file, archive and sidecar
/// are removed and listed. Blocking.
pub fn recover(index_file: &Path, record: &Record) -> Result<Option<Vec<String>>> {
    if Index::load(index_file)?.get(&record.backup_id).is_some() {
        return Ok(None);
    }
    let mut removed = Vec::new();
    for step in &record.steps {
        if let Step::Archive {
            partial,
            archive,
            sidecar,
        } = step
        {
            for path in [partial, archive, sidecar] {
                match std::fs::remove_file(path) {
                    Ok(()) => removed.push(format!("removed {}", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).at("removing", path),
                }
            }
            if !removed.is_empty()
                && let Some(dir) = archive.parent()
            {
                fsutil::sync_dir(dir)?;
            }
        }
    }
    Ok(Some(removed))
}

/// Labels from repeated and comma-separated values; empty ones dropped, order
/// kept, duplicates removed.
pub fn split_labels(raw: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for label in raw
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if label.chars().any(char::is_control) || label.len() > 100 {
            return Err(Error::validation(format!("invalid label {label:?}")));
        }
        if !out.iter().any(|l| l == label) {
            out.push(label.to_owned());
        }
    }
    Ok(out)
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
            let mut index = Index::load(&index_file)?;
            if index.get(&entry.id).is_some() {
                return Err(Error::Internal(format!(
                    "backup id {} is already in the index",
                    entry.id
                )));
            }
            index.backups.push(entry);
            index.save(&index_file)
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

#[cfg(test)]
mod tests {
    use abssd_proto::{Level, VerifyParams};

    use super::*;
    use crate::config::{Config, Overrides};
    use crate::progress::Recorder;

    /// A context under a temporary prefix with one instance, `alpha`, whose
    /// data is one small file; systemd cannot be reached, whatever the host.
    pub(super) fn one_instance(dir: &Path) -> std::sync::Arc<Ctx> {
        let over = Overrides {
            prefix: Some(dir.into()),
            bus_address: Some(format!("unix:path={}", dir.join("no-bus").display())),
            ..Overrides::default()
        };
        let config = Config::load_with_env(&over, &Default::default()).unwrap();
        let data = config.layout.instance_root.join("alpha");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("budget.txt"), "x".repeat(3000)).unwrap();
        let registry = config.layout.registry_file();
        std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
        std::fs::write(&registry, "instances:\n- name: alpha\n").unwrap();
        Ctx::new(config)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_reports_its_phases_in_order_and_a_verify_of_it_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = one_instance(dir.path());
        let actor = Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        };
        let params = CreateParams {
            instance: "alpha".into(),
            data_only: true,
            ..CreateParams::default()
        };

        let (rec, progress) = Recorder::start("op-create");
        let (plan, result) = run(&ctx, &params, &actor, &progress).await.unwrap();
        let result = result.unwrap();
        assert_eq!(rec.phases(), [Phase::Archive, Phase::Index]);
        assert!(matches!(rec.events()[0], EventKind::Plan { .. }));
        assert_eq!(
            rec.progress_of(&Phase::Archive).last(),
            Some(&(result.uncompressed_bytes, plan.total_bytes)),
            "the last count is every content byte archived"
        );
        assert!(result.uncompressed_bytes >= 3000);
        assert_eq!(rec.messages(Level::Warning), plan.warnings);
        assert_eq!(rec.messages(Level::Info), plan.notes);
        assert_eq!(rec.changed_backups(), std::slice::from_ref(&result.id));

        let (rec, progress) = Recorder::start("op-verify");
        let verify = VerifyParams {
            id: Some(result.id.clone()),
            ..VerifyParams::default()
        };
        let (_, verified) = crate::ops::verify::run(&ctx, &verify, &progress)
            .await
            .unwrap();
        assert_eq!(verified.results[0].status, abssd_proto::status::AVAILABLE);
        assert_eq!(rec.phases(), [Phase::Verify(result.id.clone())]);
        assert_eq!(
            rec.progress_of(&Phase::Verify(result.id.clone())).last(),
            Some(&(result.size_bytes, result.size_bytes)),
            "every byte of the archive was read"
        );
        assert!(rec.warnings().is_empty());
        assert_eq!(rec.changed_backups(), [result.id]);
    }

    #[test]
    fn labels_split_on_commas_and_dedupe() {
        let raw = vec![
            "a,b".to_owned(),
            " c ".to_owned(),
            "a".to_owned(),
            ",".to_owned(),
        ];
        assert_eq!(split_labels(&raw).unwrap(), ["a", "b", "c"]);
        assert!(split_labels(&["bad\nlabel".to_owned()]).is_err());
    }
}
