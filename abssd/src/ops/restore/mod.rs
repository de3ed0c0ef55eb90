//! `backup restore` (SPEC §7): bring an instance back from an archive made by
//! this project, the Python tool or GNU tar, so that a failure never leaves it
//! half restored.
//!
//! * `plan`     — pre-flight checks and the plan (the whole `--dry-run` answer).
//! * `live`     — the live restore: lock, pre-restore backup, staging, swap,
//!   assets, registry, unit, nginx, clean-up; every destructive step journaled
//!   first ([`crate::journal`]).
//! * `rollback` — undo from the journal, reporting what was put back and what
//!   could not be.
//! * `dest`     — `--dest`: the data only, into a new directory.
//! * `recover`  — start-up recovery of a restore the daemon stopped during.
//! * `guards`   — pre-flight checks of the filesystem around the target: one
//!   mount for the swap's renames, and what earlier restores left there.
//!
//! Extraction itself is [`crate::extract`]: every entry is created by us beneath
//! the staging directory, and the archive is hashed in the same pass.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use abssd_proto::{
    Actor, EventKind, RestoreMode, RestoreParams, RestorePlan, RestoreRecord, RestoreResult, status,
};
use serde_json::Value;

use crate::config::unit_name;
use crate::error::{Error, IoContext, Result};
use crate::extract::{self, Expect, Extracted, Limits, Reserve};
use crate::fsutil;
use crate::index::Index;
use crate::journal::{Journal, Outcome, Record, Step};
use crate::ops::{ByteProgress, Ctx, LockEvents, Progress, Sink};
use crate::systemd::{Systemd, Units};

mod dest;
mod guards;
mod live;
pub mod plan;
pub mod recover;
pub mod rollback;

/// Run `backup restore`. Returns the plan, and the result unless `dry_run`.
pub async fn run(
    ctx: &Ctx,
    params: &RestoreParams,
    actor: &Actor,
    progress: &Sink,
) -> Result<(RestorePlan, Option<RestoreResult>)> {
    check_flags(params)?;
    phase(&**progress, "preflight");
    let (config, p) = (ctx.config.clone(), params.clone());
    let pre = tokio::task::spawn_blocking(move || plan::preflight(&config, &p)).await??;
    let live = params.dest.is_none();
    let data_only = !live || params.data_only || pre.entry.metadata.data_only;

    let units = if live {
        Some(Systemd::connect(ctx.config.bus_address.as_deref()).await?)
    } else {
        None
    };
    let unit_before = match &units {
        Some(u) => Some(u.state(&unit_name(&pre.entry.instance)).await?),
        None => None,
    };
    let stamp = stamp(&progress.op_id());
    let staging = plan::staging_dir(&pre.target, &stamp);
    let pre_backup_dir = (live && !params.no_pre_backup)
        .then(|| ctx.config.instance_backup_dir(&pre.entry.instance));
    let plan = plan::build(
        &ctx.config,
        plan::PlanInput {
            pre: &pre,
            params,
            unit: unit_before.as_ref(),
            staging: &staging,
            pre_backup_dir,
            data_only,
        },
    )?;
    progress.emit(EventKind::Plan {
        plan: serde_json::to_value(&plan).unwrap_or_default(),
    });
    for w in &plan.warnings {
        message(&**progress, "warning", w.clone());
    }
    let short = plan.space.available_bytes
        < plan
            .space
            .needed_bytes
            .saturating_add(plan.space.reserve_bytes);
    if params.dry_run {
        if short {
            message(&**progress, "warning", no_space(&plan).to_string());
        }
        return Ok((plan, None));
    }
    if live && !params.yes {
        return Err(Error::validation(format!(
            "a live restore replaces the data of instance {} in {}; confirm with yes: true (abssctl: --yes), or use --dry-run to see the plan",
            plan.instance, plan.target
        )));
    }
    if short {
        return Err(no_space(&plan));
    }
    if params.verify_deep {
        verify_deep(ctx, &pre.entry, progress).await?;
    }

    let job = Job {
        ctx,
        params,
        actor,
        progress,
        pre: &pre,
        plan: &plan,
        staging,
        stamp,
        data_only,
    };
    let result = match units {
        Some(units) => live::run(&job, &units).await?,
        None => dest::run(&job).await?,
    };
    Ok((plan, Some(result)))
}

/// `--verify-deep`: the deep check of the archive, before anything changes
/// (no pre-restore backup, no staging yet), recorded in the index like
/// `backup verify --deep`; any problem refuses the restore. The extraction
/// that follows checks the same sha256, so it unpacks the bytes checked here.
async fn verify_deep(ctx: &Ctx, entry: &abssd_proto::BackupEntry, progress: &Sink) -> Result<()> {
    let (entry, sink) = (entry.clone(), Arc::clone(progress));
    let (max_entries, state_dir) = (ctx.config.max_restore_entries, ctx.config.state_dir.clone());
    let finding = tokio::task::spawn_blocking(move || {
        crate::ops::verify::check(&entry, max_entries, &*sink, Some(&state_dir))
    })
    .await?;
    let finding = crate::ops::verify::record(ctx, vec![finding], progress)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the deep check's finding went missing".into()))?;
    let item = finding.item;
    match item.status.as_str() {
        status::AVAILABLE => {
            message(&**progress, "info", item.message);
            Ok(())
        }
        // Our side (space, the scratch directory, reading the archive): the
        // archive is not known to be bad, and the error says what to do.
        status::ERROR => Err(Error::Environment(format!(
            "the deep check of backup {} did not finish: {}; nothing was changed",
            item.id, item.message
        ))),
        _ => Err(Error::Archive(format!(
            "refusing to restore backup {}: {}; nothing was changed (the index now marks it {}). Restore another backup, or leave out --verify-deep to restore it as it is",
            item.id, item.message, item.status
        ))),
    }
}

/// Flags that contradict each other are refused before anything is read.
fn check_flags(params: &RestoreParams) -> Result<()> {
    if params.dest.is_some() {
        if params.restart.is_some() {
            return Err(Error::validation(
                "--restart/--no-restart apply to live restores; --dest never touches the unit",
            ));
        }
        if params.no_pre_backup || params.backup_message.is_some() {
            return Err(Error::validation(
                "--no-pre-backup/--backup-message apply to live restores; --dest changes nothing live, so no pre-restore backup is taken",
            ));
        }
    }
    if params.no_pre_backup && params.backup_message.is_some() {
        return Err(Error::validation(
            "--backup-message names the pre-restore backup, which --no-pre-backup skips",
        ));
    }
    if let Some(m) = &params.backup_message {
        crate::ops::check_message("--backup-message", m)?;
    }
    Ok(())
}

fn no_space(plan: &RestorePlan) -> Error {
    Error::Environment(format!(
        "not enough free space on {}: the restore needs {} bytes (max of archive × 1.2 and content × 1.1) and leaves {} free (daemon.restore_reserve_percent); {} are available. Free some space there or restore elsewhere with --dest",
        plan.space.filesystem,
        plan.space.needed_bytes,
        plan.space.reserve_bytes,
        plan.space.available_bytes
    ))
}

/// `<ts>` of `.pre-restore-<ts>` / `.bak-<ts>`: UTC time plus the start of the
/// operation id, so two restores in one second never share a name.
fn stamp(op_id: &str) -> String {
    let short: String = op_id
        .chars()
        .filter(|c| *c != '-')
        .skip(8)
        .take(6)
        .collect();
    format!("{}-{short}", fsutil::compact(jiff::Timestamp::now()))
}

/// Everything one restore run works with.
#[allow(missing_debug_implementations)]
pub(crate) struct Job<'a> {
    ctx: &'a Ctx,
    params: &'a RestoreParams,
    actor: &'a Actor,
    progress: &'a Sink,
    pre: &'a plan::Preflight,
    plan: &'a RestorePlan,
    staging: PathBuf,
    stamp: String,
    data_only: bool,
}

impl Job<'_> {
    /// A fresh journal for this run.
    fn journal(&self, unit_was_active: Option<bool>) -> Result<Journal> {
        Journal::create(
            &self.ctx.config.state_dir,
            Record {
                version: 1,
                op_id: self.progress.op_id(),
                command: abssd_proto::Command::BackupRestore,
                instance: self.plan.instance.clone(),
                backup_id: self.plan.id.clone(),
                started_at: fsutil::now_utc(),
                unit_was_active,
                steps: Vec::new(),
                outcome: None,
            },
        )
    }

    /// What a committed restore records for its index annotation.
    fn outcome(&self, sha256: &str, pre_restore_backup: Option<String>) -> Outcome {
        Outcome {
            sha256: sha256.to_owned(),
            pre_restore_backup,
            by: self.actor.clone(),
            destination: self.pre.target.clone(),
        }
    }

    /// The payload's top directory inside staging: `<staging>/<id>`.
    fn payload(&self) -> PathBuf {
        self.staging.join(&self.plan.id)
    }

    /// Create the staging directory (journaled) and extract into it, hashing the
    /// archive in the same pass. A mismatch fails here, before anything live.
    async fn stage(&self, journal: &mut Journal) -> Result<Extracted> {
        journal.begin(Step::Staging {
            dir: self.staging.clone(),
        })?;
        crash_point!("restore::before-staging");
        let parent = self.staging.parent().unwrap_or(Path::new("/")).to_owned();
        fsutil::ensure_dir(&parent)?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&self.staging)
                .at("creating staging directory", &self.staging)?;
        }
        let config = &self.ctx.config;
        let expect = Expect {
            algorithm: self.pre.algorithm,
            sha256: self.pre.expected_sha256.clone(),
            top: self.plan.id.clone(),
            max_bytes: self
                .plan
                .space
                .available_bytes
                .saturating_sub(self.plan.space.reserve_bytes),
            limits: Limits {
                max_entries: config.max_restore_entries,
                recorded_bytes: self.pre.entry.metadata.uncompressed_bytes,
            },
            reserve: Reserve {
                percent: config.restore_reserve_percent,
            },
            same_owner: rustix::process::geteuid().is_root(),
        };
        let (archive, staging) = (self.pre.archive.clone(), self.staging.clone());
        let sink: Sink = Arc::clone(self.progress);
        let total = self.plan.archive_bytes;
        let extracted = tokio::task::spawn_blocking(move || {
            let mut bytes = ByteProgress::start(&*sink, "extract", total);
            extract::extract(&archive, &staging, &expect, &mut |n| bytes.add(n))
        })
        .await??;
        phase(&**self.progress, "validate");
        let payload = self.payload();
        let instance = self.plan.instance.clone();
        tokio::task::spawn_blocking(move || validate(&payload, &instance)).await??;
        crash_point!("restore::after-extract");
        Ok(extracted)
    }

    /// Record the restore on the index entry (SPEC §5), under the global lock.
    async fn annotate_index(&self, outcome: &Outcome) -> Result<String> {
        phase(&**self.progress, "index");
        let _global = self
            .ctx
            .locks
            .acquire(true, &[], &LockEvents(&**self.progress))
            .await?;
        let index_file = self.ctx.config.index_file.clone();
        let now = fsutil::now_utc();
        let (id, op_id, outcome, at) = (
            self.plan.id.clone(),
            self.progress.op_id(),
            outcome.clone(),
            now.clone(),
        );
        tokio::task::spawn_blocking(move || annotate(&index_file, &id, &op_id, &outcome, &at))
            .await??;
        self.progress.changed(&self.plan.id);
        Ok(now)
    }
}

/// Record restore `op_id` of backup `id` on its index entry (SPEC §5):
/// `last_restored_at`, `last_restore_destination`, `restored_by`, the
/// `restores` history, and the verification the extraction amounted to.
/// Blocking; the caller holds the global lock. Idempotent: a restore already in
/// the history is not added again (start-up recovery may repeat it).
pub(crate) fn annotate(
    index_file: &Path,
    id: &str,
    op_id: &str,
    outcome: &Outcome,
    at: &str,
) -> Result<()> {
    let mut index = Index::load(index_file)?;
    let entry = index.get_mut(id).ok_or_else(|| {
        Error::Environment(format!(
            "backup {id} disappeared from the index during the restore"
        ))
    })?;
    if entry.restores.iter().any(|r| r.op_id == op_id) {
        return Ok(());
    }
    let destination = outcome.destination.to_string_lossy().into_owned();
    entry.last_restored_at = Some(at.to_owned());
    entry.last_restore_destination = Some(destination.clone());
    entry.restored_by = Some(outcome.by.clone());
    entry.restores.push(RestoreRecord {
        at: at.to_owned(),
        by: outcome.by.clone(),
        destination,
        op_id: op_id.to_owned(),
        pre_restore_backup: outcome.pre_restore_backup.clone(),
        extra: serde_json::Map::new(),
    });
    // The whole archive was just hashed and matched. A deep check that found
    // a problem in these same bytes still stands: restoring them did not make
    // a malformed database whole, so the entry stays as that check left it.
    let deep_problem = entry.metadata.verification.as_ref().is_some_and(|v| !v.ok);
    if !deep_problem {
        entry.metadata.verification_error = None;
        entry.status = status::AVAILABLE.into();
    }
    entry.verified_at = Some(at.to_owned());
    if let Some(c) = entry.checksum.as_mut() {
        c.last_verified = Some(at.to_owned());
        c.observed = Some(outcome.sha256.clone());
    }
    index.save(index_file)
}

/// The payload must hold `data/` (a directory); metadata, when present, must be
/// readable JSON naming the same instance (when it names one): what the archive
/// says about itself never makes it another instance's backup.
fn validate(payload: &Path, instance: &str) -> Result<()> {
    let data = payload.join("data");
    match std::fs::symlink_metadata(&data) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(Error::Archive(format!(
                "the archive has no {}/data/ directory; it is not an abssctl backup",
                payload.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
    }
    if let Some(meta) = instance_metadata(payload)?
        && let Some(named) = meta.get("name")
        && named.as_str() != Some(instance)
    {
        return Err(Error::Archive(format!(
            "the archive's metadata/instance.json names instance {}, not {instance}; refusing to restore it into {instance}",
            crate::error::shown(&named.to_string())
        )));
    }
    Ok(())
}

/// `metadata/instance.json` from the payload, when present.
fn instance_metadata(payload: &Path) -> Result<Option<serde_json::Map<String, Value>>> {
    let path = payload.join("metadata/instance.json");
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(Error::Archive(format!(
                "metadata/instance.json in the archive is not a JSON object ({})",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at("reading", &path),
    }
}

fn phase(progress: &dyn Progress, name: &str) {
    progress.emit(EventKind::Phase {
        name: name.to_owned(),
        total_bytes: None,
    });
}

fn message(progress: &dyn Progress, level: &str, text: String) {
    progress.emit(EventKind::Message {
        level: level.to_owned(),
        text,
    });
}

/// Remove a directory tree if it exists; `Ok(false)` when it was not there.
fn remove_tree(path: &Path) -> Result<bool> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).at("removing", path),
    }
}

/// The mode the result reports.
fn mode(params: &RestoreParams) -> RestoreMode {
    if params.dest.is_some() {
        RestoreMode::Dest
    } else {
        RestoreMode::Live
    }
}
