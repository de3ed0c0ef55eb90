//! The live restore, SPEC §7 steps 3–7. Each destructive step is written to the
//! journal before it is taken; any failure before the commit point is rolled
//! back from the journal (see `rollback`), after it only clean-up remains.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use abssd_proto::{CreateParams, EventKind, Phase, RestoreResult};
use serde_json::{Value, json};

use super::{Job, instance_metadata, mode, remove_tree, rollback};
use crate::config::{site_name, unit_name};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::{Journal, Step};
use crate::nginx;
use crate::progress::{Progress, Reporter};
use crate::registry::{Instance, Registry};
use crate::systemd::Units;

/// What the forward path produced, for the result and the clean-up.
#[derive(Debug, Default)]
struct Done {
    sha256: String,
    entries: u64,
    content_bytes: u64,
    assets: Vec<String>,
    nginx_reloaded: bool,
    /// Paths to remove once committed.
    leftovers: Vec<PathBuf>,
    warnings: Vec<String>,
}

pub(super) async fn run<U: Units>(job: &Job<'_>, units: &U) -> Result<RestoreResult> {
    let instance = job.plan.instance.clone();
    let unit = unit_name(&instance);
    let _lock = job
        .ctx
        .locks
        .acquire(false, &[instance.as_str()], job.progress)
        .await?;
    // The state that counts is the one under the lock.
    let was_active = units.state(&unit).await?.is_active();
    let running_after = job.params.restart.unwrap_or(was_active);

    let pre_backup = if job.params.no_pre_backup {
        None
    } else {
        pre_backup(job).await?
    };

    let mut journal = job.journal(Some(was_active))?;
    let forward = forward(job, units, &mut journal, &unit, was_active, running_after).await;
    let mut done = match forward {
        Ok(done) => done,
        Err(cause) => {
            let record = journal.record().clone();
            let report =
                rollback::rollback(&job.ctx.config, Some(units), &record, job.progress).await;
            return Err(report.into_error(cause, journal));
        }
    };
    let outcome = job.outcome(&done.sha256, pre_backup.clone());
    journal.commit(outcome.clone())?;
    crash_point!("restore::after-commit");

    job.progress.phase(Phase::Cleanup);
    let leftovers = std::mem::take(&mut done.leftovers);
    let removed = tokio::task::spawn_blocking(move || {
        leftovers
            .iter()
            .filter_map(|p| remove_path(p).err().map(|e| e.to_string()))
            .collect::<Vec<_>>()
    })
    .await?;
    for e in removed {
        done.warnings.push(format!("clean-up: {e}"));
    }
    crash_point!("restore::after-cleanup");
    let restored_at = match job.annotate_index(&outcome).await {
        Ok(at) => at,
        Err(e) => {
            done.warnings.push(format!(
                "the restore is complete but the index was not annotated: {e}"
            ));
            fsutil::now_utc()
        }
    };
    for w in &done.warnings {
        job.progress.warn(w.clone());
    }
    crash_point!("restore::after-annotate");
    journal.close()?;
    Ok(RestoreResult {
        id: job.plan.id.clone(),
        instance,
        mode: mode(job.params),
        destination: job.pre.target.display().to_string(),
        pre_restore_backup: pre_backup,
        restored_at,
        checksum: done.sha256,
        entries: done.entries,
        content_bytes: done.content_bytes,
        assets: done.assets,
        unit_running: Some(running_after),
        nginx_reloaded: done.nginx_reloaded,
        warnings: done.warnings,
    })
}

/// Steps 4–6, each journaled before it is taken.
async fn forward<U: Units>(
    job: &Job<'_>,
    units: &U,
    journal: &mut Journal,
    unit: &str,
    was_active: bool,
    running_after: bool,
) -> Result<Done> {
    let cfg = &job.ctx.config;
    let extracted = job.stage(journal).await?;
    let payload = job.payload();
    let mut done = Done {
        sha256: extracted.sha256,
        entries: extracted.entries,
        content_bytes: extracted.content_bytes,
        leftovers: vec![job.staging.clone()],
        ..Done::default()
    };

    if was_active {
        job.progress.phase(Phase::StopUnit);
        journal.begin(Step::StopUnit {
            unit: unit.to_owned(),
        })?;
        crash_point!("restore::before-stop-unit");
        units.stop(unit).await?;
        crash_point!("restore::after-stop-unit");
        job.progress.info(format!("stopped {unit}"));
    }

    job.progress.phase(Phase::Swap);
    let live = job.pre.target.clone();
    let aside = suffixed(&live, &format!(".pre-restore-{}", job.stamp));
    if std::fs::symlink_metadata(&aside).is_ok() {
        return Err(Error::Environment(format!(
            "{} already exists; not overwriting it",
            aside.display()
        )));
    }
    if std::fs::symlink_metadata(&live).is_ok() {
        journal.begin(Step::MoveAside {
            live: live.clone(),
            aside: aside.clone(),
        })?;
        crash_point!("restore::before-move-aside");
        std::fs::rename(&live, &aside).at("moving the live data aside to", &aside)?;
        crash_point!("restore::after-move-aside");
        done.leftovers.push(aside);
    }
    let staged = payload.join("data");
    journal.begin(Step::PlaceData {
        from: staged.clone(),
        to: live.clone(),
    })?;
    crash_point!("restore::before-place-data");
    std::fs::rename(&staged, &live).at("moving the restored data into", &live)?;
    fsutil::sync_dir(live.parent().unwrap_or(Path::new("/")))?;
    crash_point!("restore::after-place-data");

    let mut site_changed = false;
    if !job.data_only {
        job.progress.phase(Phase::Assets);
        let name = &job.plan.instance;
        let unit_src = payload.join("systemd").join(unit_name(name));
        let unit_file = cfg.layout.unit_file(name);
        if let Some(path) =
            install_file(job, journal, &unit_src, &unit_file, Asset::Unit, &mut done)?
        {
            done.assets.push(path);
        }
        let site_src = payload.join("nginx").join(site_name(name));
        if site_src.exists() {
            let site = cfg.layout.site_file(name);
            if let Some(path) =
                install_file(job, journal, &site_src, &site, Asset::Site, &mut done)?
            {
                done.assets.push(path);
                site_changed = true;
            }
            let enabled = payload.join("nginx-enabled").join(site_name(name)).exists();
            if let Some(path) = set_link(
                job,
                journal,
                &cfg.layout.site_link(name),
                &site,
                enabled,
                &mut done,
            )? {
                done.assets.push(path);
                site_changed = true;
            }
        }
        job.progress.phase(Phase::DaemonReload);
        journal.begin(Step::DaemonReload)?;
        crash_point!("restore::before-daemon-reload");
        units.daemon_reload().await?;
        crash_point!("restore::after-daemon-reload");
    }

    job.progress.phase(Phase::Registry);
    update_registry(job, journal, &payload).await?;

    if running_after {
        job.progress.phase(Phase::StartUnit);
        journal.begin(Step::StartUnit {
            unit: unit.to_owned(),
        })?;
        crash_point!("restore::before-start-unit");
        units.start(unit).await?;
        crash_point!("restore::after-start-unit");
        job.progress.info(format!("started {unit}"));
    } else if was_active {
        job.progress
            .info(format!("{unit} left stopped (--no-restart)"));
    }

    if site_changed {
        job.progress.phase(Phase::Nginx);
        nginx::test(&cfg.services.nginx_test_command).await?;
        let nginx_unit = &cfg.services.nginx_unit;
        if units.state(nginx_unit).await?.is_active() {
            journal.begin(Step::ReloadNginx)?;
            crash_point!("restore::before-nginx-reload");
            units.reload(nginx_unit).await?;
            crash_point!("restore::after-nginx-reload");
            done.nginx_reloaded = true;
        } else {
            done.warnings.push(format!(
                "{nginx_unit} is not running, so it was not reloaded; the new site takes effect when it starts"
            ));
        }
    }
    Ok(done)
}

/// Pre-restore backup (SPEC §7 step 3), under the instance lock already held.
async fn pre_backup(job: &Job<'_>) -> Result<Option<String>> {
    if std::fs::symlink_metadata(&job.pre.target).is_err() {
        job.progress.warn(format!(
            "no pre-restore backup: the live data directory {} does not exist",
            job.pre.target.display()
        ));
        return Ok(None);
    }
    job.progress.phase(Phase::PreBackup);
    let params = CreateParams {
        instance: job.plan.instance.clone(),
        message: Some(
            job.params
                .backup_message
                .clone()
                .unwrap_or_else(|| format!("pre-restore backup before restoring {}", job.plan.id)),
        ),
        labels: vec!["pre-restore".into()],
        data_only: job.data_only,
        ..CreateParams::default()
    };
    let nested = Reporter::new(Nested(job.progress.clone()));
    let (plan, _) =
        crate::ops::create::run_under_lock(job.ctx, &params, job.actor, &nested).await?;
    job.progress.info(format!(
        "pre-restore backup {} written to {}",
        plan.id, plan.archive
    ));
    Ok(Some(plan.id))
}

/// The pre-restore backup's events, minus its plan (the operation's plan is the
/// restore's).
struct Nested(Reporter);

impl Progress for Nested {
    fn emit(&self, event: EventKind) {
        if !matches!(event, EventKind::Plan { .. }) {
            self.0.emit(event);
        }
    }
    fn changed(&self, backup_id: &str) {
        self.0.changed(backup_id);
    }
    fn op_id(&self) -> String {
        self.0.op_id()
    }
}

/// Which service asset [`install_file`] replaces (names its crash points).
#[derive(Debug, Clone, Copy)]
enum Asset {
    Unit,
    Site,
}

/// Install the archived `src` at `dest` when it differs (journaled, the previous
/// file kept as `.bak-<ts>`). Returns the path when it changed.
fn install_file(
    job: &Job<'_>,
    journal: &mut Journal,
    src: &Path,
    dest: &Path,
    asset: Asset,
    done: &mut Done,
) -> Result<Option<String>> {
    let Ok(meta) = std::fs::symlink_metadata(src) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err(Error::Archive(format!(
            "{} in the archive is not a regular file",
            src.display()
        )));
    }
    let content = std::fs::read(src).at("reading", src)?;
    if std::fs::read(dest).ok().as_deref() == Some(&content[..]) {
        return Ok(None);
    }
    let dir = dest.parent().unwrap_or(Path::new("/"));
    fsutil::ensure_dir(dir)?;
    let file_name = dest.file_name().unwrap_or_default().to_string_lossy();
    let new = dir.join(format!(".{file_name}.new-{}", job.stamp));
    let backup = std::fs::symlink_metadata(dest)
        .is_ok()
        .then(|| suffixed(dest, &format!(".bak-{}", job.stamp)));
    refuse_existing(backup.as_deref())?;
    journal.begin(Step::Replace {
        path: dest.to_owned(),
        backup: backup.clone(),
        new: Some(new.clone()),
    })?;
    match asset {
        Asset::Unit => crash_point!("restore::before-unit-file"),
        Asset::Site => crash_point!("restore::before-site-file"),
    }
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.permissions().mode() & 0o777)
            .open(&new)
            .at("creating", &new)?;
        f.write_all(&content).at("writing", &new)?;
        f.sync_all().at("syncing", &new)?;
        if let Ok(m) = std::fs::metadata(src) {
            let _ = std::fs::set_permissions(&new, m.permissions());
        }
    }
    if let Some(b) = &backup {
        std::fs::rename(dest, b).at("keeping the previous file as", b)?;
        done.leftovers.push(b.clone());
    }
    std::fs::rename(&new, dest).at("installing", dest)?;
    fsutil::sync_dir(dir)?;
    match asset {
        Asset::Unit => crash_point!("restore::after-unit-file"),
        Asset::Site => crash_point!("restore::after-site-file"),
    }
    Ok(Some(dest.display().to_string()))
}

/// Make `link` a symlink to `site` (`enabled`) or absent. The previous entry is
/// kept as a hidden `.bak-<ts>` (nginx's `sites-enabled/*` does not match dot
/// files). Returns the link's path when it changed.
fn set_link(
    job: &Job<'_>,
    journal: &mut Journal,
    link: &Path,
    site: &Path,
    enabled: bool,
    done: &mut Done,
) -> Result<Option<String>> {
    let current = std::fs::symlink_metadata(link).ok();
    let already = match &current {
        Some(m) if m.file_type().is_symlink() => {
            enabled && std::fs::read_link(link).ok().as_deref() == Some(site)
        }
        Some(_) => false,
        None => !enabled,
    };
    if already {
        return Ok(None);
    }
    let dir = link.parent().unwrap_or(Path::new("/"));
    fsutil::ensure_dir(dir)?;
    let file_name = link.file_name().unwrap_or_default().to_string_lossy();
    let backup = current
        .is_some()
        .then(|| dir.join(format!(".{file_name}.bak-{}", job.stamp)));
    let new = enabled.then(|| dir.join(format!(".{file_name}.new-{}", job.stamp)));
    refuse_existing(backup.as_deref())?;
    journal.begin(Step::Replace {
        path: link.to_owned(),
        backup: backup.clone(),
        new: new.clone(),
    })?;
    crash_point!("restore::before-site-link");
    if let Some(new) = &new {
        std::os::unix::fs::symlink(site, new).at("creating", new)?;
    }
    if let Some(b) = &backup {
        std::fs::rename(link, b).at("keeping the previous link as", b)?;
        done.leftovers.push(b.clone());
    }
    if let Some(new) = &new {
        std::fs::rename(new, link).at("enabling", link)?;
    }
    fsutil::sync_dir(dir)?;
    crash_point!("restore::after-site-link");
    Ok(Some(link.display().to_string()))
}

/// Step 6: the registry entry gets the archive's paths, version and domain
/// (unless data-only) and `metadata.last_restored_at/by`; under the global lock.
async fn update_registry(job: &Job<'_>, journal: &mut Journal, payload: &Path) -> Result<()> {
    let _global = job.ctx.locks.acquire(true, &[], job.progress).await?;
    let file = job.ctx.config.layout.registry_file();
    let name = job.plan.instance.clone();
    let mut registry = Registry::load(&file)?;
    let entry = registry.get_mut(&name).ok_or_else(|| {
        Error::Environment(format!(
            "instance {name} disappeared from {} during the restore",
            file.display()
        ))
    })?;
    let before = serde_json::to_value(&*entry)
        .map_err(|e| Error::Internal(format!("encoding registry entry: {e}")))?;
    let archived = if job.data_only {
        None
    } else {
        instance_metadata(payload)?
    };
    if let Some(meta) = &archived {
        apply_archived(job, entry, meta);
    }
    entry
        .metadata
        .insert("last_restored_at".into(), json!(fsutil::now_utc()));
    entry
        .metadata
        .insert("last_restored_by".into(), json!(job.actor.user));
    journal.begin(Step::Registry {
        instance: name,
        before,
    })?;
    crash_point!("restore::before-registry");
    registry.save(&file)?;
    crash_point!("restore::after-registry");
    Ok(())
}

/// `paths`, `version` and `domain` from the archived entry. The data root stays
/// where the data was just restored.
fn apply_archived(job: &Job<'_>, entry: &mut Instance, meta: &serde_json::Map<String, Value>) {
    if let Some(Value::String(v)) = meta.get("version") {
        entry.version = Some(v.clone());
    }
    if let Some(Value::String(d)) = meta.get("domain") {
        entry.domain = Some(d.clone());
    }
    if let Some(paths) = meta.get("paths")
        && let Ok(mut paths) =
            serde_json::from_value::<crate::registry::InstancePaths>(paths.clone())
    {
        let restored_to = job.pre.target.display().to_string();
        if let Some(root) = paths.root.as_deref()
            && root != restored_to
        {
            job.progress.warn(
                format!(
                    "the archive's paths.root {root:?} differs from where the data was restored ({restored_to}); keeping the current data root"
                ),
            );
        }
        paths.root = entry.paths.root.clone();
        entry.paths = paths;
    }
}

/// A `.bak-*` name that is taken is never overwritten (it may be the only copy
/// of an earlier file).
fn refuse_existing(path: Option<&Path>) -> Result<()> {
    match path {
        Some(p) if std::fs::symlink_metadata(p).is_ok() => Err(Error::Environment(format!(
            "{} already exists; not overwriting it",
            p.display()
        ))),
        _ => Ok(()),
    }
}

/// `path` with `suffix` appended to its last component.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Remove a file, symlink or directory tree.
pub(super) fn remove_path(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path).map(|_| ()),
        Ok(_) => std::fs::remove_file(path).at("removing", path),
        Err(_) => Ok(()),
    }
}
