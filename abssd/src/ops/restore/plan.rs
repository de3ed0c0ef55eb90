//! Pre-flight: everything a restore checks before it takes a lock, and the plan
//! it returns (the whole answer to `--dry-run`). Nothing here changes anything.

use std::path::{Component, Path, PathBuf};

use abssd_proto::{
    Algorithm, BackupEntry, ChecksumPlan, Phase, PullSource, RestoreMode, RestoreParams,
    RestorePlan, RestoreStep, SpacePlan, UnitPlan,
};

use super::guards;
use crate::archive::sidecar;
use crate::config::{Config, site_name, unit_name};
use crate::error::{Error, IoContext, Result};
use crate::extract::Reserve;
use crate::index;
use crate::registry::paths::ServicePaths;
use crate::registry::{Instance, Registry, validate_name};
use crate::systemd::UnitState;

/// What pre-flight found, beyond the plan itself.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The index entry.
    pub entry: BackupEntry,
    /// The registry entry (live restores).
    pub instance: Option<Instance>,
    /// Where the unit file, site and link go (live restores that install
    /// them): the registry entry's recorded paths, else the defaults.
    pub assets: Option<ServicePaths>,
    /// Archive path.
    pub archive: PathBuf,
    /// Digest the archive must have.
    pub expected_sha256: String,
    /// The archive has no `.sha256` sidecar: `expected_sha256` is the index's,
    /// and the restore writes the sidecar back once it has succeeded.
    pub sidecar_missing: bool,
    /// Compression.
    pub algorithm: Algorithm,
    /// Where the data ends up.
    pub target: PathBuf,
    /// Free bytes on the target's filesystem.
    pub available: u64,
    /// Of those, the bytes the restore leaves free ([`crate::extract::Reserve`]).
    pub reserve: u64,
    /// What earlier restores left beside the target (kept, never reused).
    pub leftovers: Vec<String>,
    /// The archive is missing here and is pulled from this remote copy first.
    pub pull: Option<PullSource>,
    /// The archive's size (the size it will have, when it is pulled first).
    pub archive_bytes: u64,
}

/// Load the entry and check archive, sidecar and algorithm (SPEC §7 step 1), the
/// target (live data root or `--dest`: one mount with where it is staged) and
/// free space (step 2), and list what earlier restores left. The unit state is
/// filled in by the caller.
pub fn preflight(config: &Config, params: &RestoreParams) -> Result<Preflight> {
    if let Some(name) = &params.instance {
        validate_name(name)?;
    }
    let entry = index::require(&config.layout.index_file, &params.id)?;
    if let Some(name) = &params.instance
        && name != &entry.instance
    {
        return Err(Error::validation(format!(
            "backup {} belongs to instance {:?}, not {name:?}",
            entry.id, entry.instance
        )));
    }
    validate_name(&entry.instance)?;
    // An id in the standard form names its instance: an entry that says
    // otherwise was not made for this instance (a planted or edited entry).
    if let Some(named) = index::instance_of_id(&entry.id)
        && named != entry.instance
    {
        return Err(Error::validation(format!(
            "backup {} names instance {named:?} in its id, but its index entry says {:?}; refusing to restore it (check the index entry)",
            entry.id, entry.instance
        )));
    }

    let archive = PathBuf::from(&entry.path);
    if !archive.is_absolute() {
        return Err(Error::Environment(format!(
            "backup {} has a relative archive path {:?} in the index",
            entry.id, entry.path
        )));
    }
    let mut pull = None;
    let archive_bytes = match std::fs::metadata(&archive) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            return Err(Error::Environment(format!(
                "{} is not a regular file",
                archive.display()
            )));
        }
        // A remote holds a copy: the plan says it is pulled first.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && entry.remote_copies().next().is_some() =>
        {
            let source = crate::ops::pull::choose(&config.remotes, &entry, None)
                .and_then(|r| crate::ops::pull::source(r, &entry))
                .map_err(|e| Error::NotFound {
                    what: "archive",
                    name: archive.display().to_string(),
                    hint: format!(
                        " (backup {} is in the index and has a remote copy, which cannot be pulled: {e})",
                        entry.id
                    ),
                })?;
            let bytes = entry.size_bytes.or(source.size_bytes).unwrap_or(0);
            pull = Some(source);
            bytes
        }
        // Not found, as the Python tool answers it (exit 2).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                what: "archive",
                name: archive.display().to_string(),
                hint: format!(
                    " (backup {} is in the index; run `abssctl backup reconcile`)",
                    entry.id
                ),
            });
        }
        Err(e) => return Err(e).at("reading", &archive),
    };
    let sidecar = sidecar::path(&archive);
    let indexed = entry
        .sha256()
        .filter(|v| !v.is_empty())
        .map(str::to_ascii_lowercase);
    let (expected_sha256, sidecar_missing) = match (read_sidecar(&sidecar)?, indexed) {
        (Some(hex), Some(indexed)) if hex != indexed => {
            return Err(Error::Environment(format!(
                "the checksum file {} ({hex}) disagrees with the index ({indexed}) for backup {}; run `abssctl backup verify {}`",
                sidecar.display(),
                entry.id,
                entry.id
            )));
        }
        (Some(hex), _) => (hex, false),
        // The Python tool restores from the index's checksum alone; the
        // extraction checks it all the same, so the sidecar is not needed to
        // trust the archive, and is written back once the restore succeeds.
        (None, Some(indexed)) => (indexed, true),
        (None, None) => {
            return Err(Error::Environment(format!(
                "the checksum file {} is missing and the index records no checksum for backup {}: nothing says what the archive must hash to (run `abssctl backup verify {}` to check it)",
                sidecar.display(),
                entry.id,
                entry.id
            )));
        }
    };
    let algorithm = match entry.algorithm.as_deref() {
        Some(name) => Algorithm::from_name(name).ok_or_else(|| {
            Error::Environment(format!(
                "backup {} has an unknown algorithm {name:?} in the index",
                entry.id
            ))
        })?,
        None => Algorithm::from_file_name(&entry.path).ok_or_else(|| {
            Error::Environment(format!(
                "cannot tell the compression of {} (expected .tar.zst, .tar.gz or .tar)",
                entry.path
            ))
        })?,
    };

    let (instance, target) = match &params.dest {
        Some(dest) => (None, dest_dir(config, dest)?),
        None => {
            let registry = Registry::load(&config.layout.registry_file())?;
            let instance = registry
                .require(&entry.instance, &config.layout.registry_file())?
                .clone();
            registry.check_editable(&config.layout.registry_file(), &instance)?;
            let root = instance.data_root(config);
            (Some(instance), root)
        }
    };
    let live = params.dest.is_none();
    // Checked before anything changes: a recorded path that is refused stops
    // the restore here, with nothing touched.
    let assets = match &instance {
        Some(i) if !params.data_only && !entry.metadata.data_only => Some(i.service_paths(config)?),
        _ => None,
    };
    guards::one_mount(&target, live)?;
    let leftovers = guards::leftovers(&entry.instance, &target, live, assets.as_ref());
    let (available, size) = space(&target)?;
    let reserve = Reserve {
        percent: config.daemon.restore_reserve_percent,
    }
    .bytes(size);
    Ok(Preflight {
        entry,
        instance,
        assets,
        archive,
        expected_sha256,
        sidecar_missing,
        algorithm,
        target,
        available,
        reserve,
        leftovers,
        pull,
        archive_bytes,
    })
}

/// The digest named by a sidecar (`<hex>  <name>`); `None` when there is no
/// sidecar. One that cannot be read or does not start with a digest is an
/// error: something is wrong beside the archive, and a person should look.
fn read_sidecar(path: &Path) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("reading", path),
    };
    let hex = sidecar::digest(&text).ok_or_else(|| {
        Error::Environment(format!(
            "{} does not start with a sha256 digest",
            path.display()
        ))
    })?;
    Ok(Some(hex.to_ascii_lowercase()))
}

/// Check `--dest`: absolute, no `..`, under the instance root or the restores
/// root (after resolving symlinks in the part that exists), and either absent or
/// an empty directory that is not a symlink.
pub fn dest_dir(config: &Config, dest: &str) -> Result<PathBuf> {
    let path = PathBuf::from(dest);
    if !path.is_absolute() {
        return Err(Error::validation(format!(
            "--dest must be an absolute path, not {dest:?}"
        )));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(Error::validation(format!(
            "--dest must not contain '.' or '..' components: {dest:?}"
        )));
    }
    let roots = [&config.layout.instance_root, &config.layout.restores_root];
    let lexically_inside = |p: &Path, roots: &[PathBuf]| {
        roots
            .iter()
            .any(|r| p.starts_with(r) && p.components().count() > r.components().count())
    };
    if !lexically_inside(&path, &roots.map(|r| r.clone())) {
        return Err(Error::validation(format!(
            "--dest {dest} must lie under the instance root {} or the restores root {}",
            config.layout.instance_root.display(),
            config.layout.restores_root.display()
        )));
    }
    // Symlinks in the existing part must not lead elsewhere.
    let (existing, rest) = nearest_existing(&path);
    let real = existing.canonicalize().at("resolving", &existing)?;
    let real_roots: Vec<PathBuf> = roots.iter().map(|r| real_path(r)).collect();
    let real_dest = real.join(rest);
    if !lexically_inside(&real_dest, &real_roots) {
        return Err(Error::validation(format!(
            "--dest {dest} resolves to {} through a symlink, outside the allowed roots",
            real_dest.display()
        )));
    }
    refuse_owned(config, dest, &real_dest)?;
    refuse_swappable(dest, &real)?;
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at("reading", &path),
        Ok(m) if m.is_dir() => {
            let mut entries = std::fs::read_dir(&path).at("reading", &path)?;
            if entries.next().is_some() {
                return Err(Error::validation(format!(
                    "--dest {dest} is not empty; choose a new or empty directory"
                )));
            }
        }
        Ok(_) => {
            return Err(Error::validation(format!(
                "--dest {dest} exists and is not a directory"
            )));
        }
    }
    Ok(path)
}

/// `--dest` may not lie in a directory the daemon owns, even one under the
/// instance root (the default backups root is `/srv/backups`, under `/srv`):
/// restored data is whatever the instance's user put in their data directory,
/// and there it would become archives reconcile adopts, a registry, a journal
/// or a unit. The restores root is the one exception when it lies inside the
/// backups root (reconcile never looks into it). `real_dest` has its symlinks
/// resolved; the directories are compared resolved too.
fn refuse_owned(config: &Config, dest: &str, real_dest: &Path) -> Result<()> {
    let restores = real_path(&config.layout.restores_root);
    if real_dest.starts_with(&restores) && real_dest != restores {
        return Ok(());
    }
    let owned: [(&str, &Path); 10] = [
        ("the backups root", &config.layout.backups_root),
        (
            "the backup index's directory",
            config.layout.index_file.parent().unwrap_or(Path::new("/")),
        ),
        ("the state directory", &config.layout.state_dir),
        ("the registry directory", &config.layout.registry_dir),
        ("the logs directory", &config.layout.logs_dir),
        ("the runtime directory", &config.layout.runtime_dir),
        ("the systemd unit directory", &config.layout.unit_dir),
        ("nginx's sites-available", &config.layout.sites_available),
        ("nginx's sites-enabled", &config.layout.sites_enabled),
        (
            "the configuration directory",
            config.layout.config_file.parent().unwrap_or(Path::new("/")),
        ),
    ];
    for (what, dir) in owned {
        if real_dest.starts_with(real_path(dir)) {
            return Err(Error::validation(format!(
                "--dest {dest} lies inside {what} ({}), which abssd manages; choose a directory under {} (the restores root) or the instance root outside it",
                dir.display(),
                config.layout.restores_root.display()
            )));
        }
    }
    Ok(())
}

/// `--dest` is reached by path (staging beside it, the final rename), so no one
/// but root may be able to change the directories on that path: an instance's
/// user owning one of them could swap it for a symlink while the restore runs
/// and have root place data where it likes. `existing` is the deepest existing
/// directory, resolved; it and every directory above it must be owned by root
/// (or abssd's user) and writable by no one else — except that a sticky
/// directory (`/tmp`) may be, above a root-owned one, which there no one else
/// may rename or remove.
fn refuse_swappable(dest: &str, existing: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    for (depth, dir) in existing.ancestors().enumerate() {
        let meta = std::fs::symlink_metadata(dir).at("reading", dir)?;
        let ours = meta.uid() == 0 || meta.uid() == me;
        let others_write =
            meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && meta.gid() != 0);
        let sticky = meta.mode() & 0o1000 != 0;
        // Above the first directory, its child on the path is root's (checked
        // one step earlier): in a sticky directory no one else can move it.
        let safe = ours && (!others_write || (sticky && depth > 0));
        if !safe {
            return Err(Error::validation(format!(
                "--dest {dest}: {} can be changed by a user other than root (owner uid {}, mode {:o}), \
                 who could redirect the restore; choose a directory under the restores root",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// `path` with its symlinks resolved as far as it exists.
fn real_path(path: &Path) -> PathBuf {
    let (existing, rest) = nearest_existing(path);
    match existing.canonicalize() {
        Ok(real) => real.join(rest),
        Err(_) => path.to_owned(),
    }
}

/// The longest existing ancestor of `path` (or `path` itself) and the rest.
fn nearest_existing(path: &Path) -> (PathBuf, PathBuf) {
    let mut existing = path.to_owned();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_owned();
            }
            _ => break,
        }
    }
    let rest: PathBuf = rest.iter().rev().collect();
    (existing, rest)
}

/// Free bytes (for an unprivileged writer) on the filesystem that holds `path`
/// or would hold it, and its size.
pub fn space(path: &Path) -> Result<(u64, u64)> {
    let (existing, _) = nearest_existing(path);
    let st = rustix::fs::statvfs(&existing)
        .map_err(std::io::Error::from)
        .at("checking free space on", &existing)?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// SPEC §7 step 2: max(archive × 1.2, uncompressed × 1.1).
pub fn space_needed(archive_bytes: u64, uncompressed: Option<u64>) -> u64 {
    let a = archive_bytes.saturating_mul(6) / 5;
    let u = uncompressed.unwrap_or(0).saturating_mul(11) / 10;
    a.max(u)
}

/// The staging directory for a target: a hidden sibling on the same filesystem.
pub fn staging_dir(target: &Path, stamp: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    guards::work_dir(target).join(format!(".{name}.restore-{stamp}"))
}

/// The steps a restore's plan can list, each named as its [`Phase`], in one
/// list: [`PlanStep`], [`PlanStep::ALL`] and [`PlanStep::phase`] are made
/// from it, so a step cannot be added to the enum and left out of the order,
/// and `build`'s exhaustive match over [`PlanStep`] makes each one say
/// whether it is planned.
macro_rules! plan_steps {
    ($($(#[$doc:meta])* $step:ident,)*) => {
        /// A step a restore's plan can list. A restore reports each step it
        /// runs as the phase of that name ([`PlanStep::phase`]): `lock`
        /// reports none; `verify_deep` reports `verify-deep:<id>`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum PlanStep {
            $($(#[$doc])* $step,)*
        }

        impl PlanStep {
            /// Every step, in the order restores take them.
            pub const ALL: &[PlanStep] = &[$(PlanStep::$step,)*];

            /// The phase that names this step, in plans and when it runs.
            pub fn phase(self) -> Phase {
                match self {
                    $(PlanStep::$step => Phase::$step,)*
                }
            }
        }
    };
}

plan_steps! {
    /// Pull the archive from a remote first (it is missing here).
    Pull,
    /// Read the archive through and check its content first (`--verify-deep`).
    DeepCheck,
    /// Take the instance lock (live).
    Lock,
    /// Back up the live instance first (live).
    PreBackup,
    /// Unpack the archive into staging.
    Extract,
    /// Check the unpacked payload.
    Validate,
    /// Move the data into `--dest`.
    Place,
    /// Stop a running unit (live).
    StopUnit,
    /// Move the live data aside and the restored data in (live).
    Swap,
    /// Install the archived unit file, site and link (live, not data-only).
    Assets,
    /// Have systemd reload its units (live, not data-only).
    DaemonReload,
    /// Update the registry entry (live).
    Registry,
    /// Start the unit when it is to run (live).
    StartUnit,
    /// Check and reload nginx (live, not data-only).
    Nginx,
    /// Remove what the restore replaced (live).
    Cleanup,
    /// Record the restore in the index.
    Index,
}

/// Everything the plan reports.
#[derive(Debug)]
pub struct PlanInput<'a> {
    /// Pre-flight results.
    pub pre: &'a Preflight,
    /// Request.
    pub params: &'a RestoreParams,
    /// The unit before the restore (live restores).
    pub unit: Option<&'a UnitState>,
    /// Staging directory.
    pub staging: &'a Path,
    /// Where a pre-restore backup goes, when one is taken.
    pub pre_backup_dir: Option<PathBuf>,
    /// Whether the restore leaves service assets alone.
    pub data_only: bool,
}

/// Build the plan.
pub fn build(config: &Config, input: PlanInput<'_>) -> Result<RestorePlan> {
    let PlanInput {
        pre,
        params,
        unit,
        staging,
        pre_backup_dir,
        data_only,
    } = input;
    let entry = &pre.entry;
    let archive_bytes = pre.archive_bytes;
    let uncompressed = entry.metadata.uncompressed_bytes;
    let mode = if params.dest.is_some() {
        RestoreMode::Dest
    } else {
        RestoreMode::Live
    };
    let running_after = unit.map(|u| params.restart.unwrap_or(u.is_active()));
    let sidecar = sidecar::path(&pre.archive);
    let target = pre.target.display().to_string();
    let live = mode == RestoreMode::Live;
    let unit_name = unit_name(&entry.instance);
    let steps = PlanStep::ALL
        .iter()
        .filter_map(|&step| {
            let detail = match step {
                PlanStep::Pull => pre.pull.as_ref().map(|src| pull_step(src, archive_bytes, &pre.archive)),
                PlanStep::DeepCheck => params.verify_deep.then(|| format!(
                    "read {} through and check its content (SQLite integrity, Actual's tables, blobs, listed files, .migrate); refuse the restore, changing nothing, if that finds a problem",
                    pre.archive.display()
                )),
                PlanStep::Lock => {
                    live.then(|| format!("take the instance lock of {}", entry.instance))
                }
                PlanStep::PreBackup => pre_backup_dir
                    .as_ref()
                    .filter(|_| live)
                    .map(|dir| format!("back up the live instance into {} first", dir.display())),
                PlanStep::Extract => Some(format!(
                    "unpack {} into {} while checking its sha256",
                    pre.archive.display(),
                    staging.display()
                )),
                PlanStep::Validate => {
                    Some("check the payload: data/, metadata, service assets".into())
                }
                PlanStep::Place => (!live).then(|| format!("move the data into {target}")),
                PlanStep::StopUnit => (live && unit.is_some_and(UnitState::is_active))
                    .then(|| format!("stop {unit_name}")),
                PlanStep::Swap => live.then(|| {
                    format!("rename {target} to {target}.pre-restore-<ts> and move the restored data in")
                }),
                PlanStep::Assets => pre.assets.as_ref().filter(|_| live && !data_only).map(|at| format!(
                    "install the archived {} and {} (previous files kept as .bak-<ts> until the end), and the sites-enabled link {}",
                    at.unit.display(),
                    at.site.display(),
                    at.link.display()
                )),
                PlanStep::DaemonReload => {
                    (live && !data_only).then(|| "systemd daemon-reload".to_owned())
                }
                PlanStep::Registry => live.then(|| format!(
                    "update {} in {}{}",
                    entry.instance,
                    config.layout.registry_file().display(),
                    if data_only {
                        " (last_restored_at/by)"
                    } else {
                        " (paths, version, domain, last_restored_at/by)"
                    }
                )),
                PlanStep::StartUnit => (live && running_after == Some(true))
                    .then(|| format!("start {unit_name}")),
                PlanStep::Nginx => (live && !data_only).then(|| format!(
                    "if {} changed: {}, then reload {}",
                    site_name(&entry.instance),
                    config.services.nginx_test_command.join(" "),
                    config.services.nginx_unit
                )),
                PlanStep::Cleanup => live.then(|| {
                    "remove the .pre-restore-<ts> data and .bak-<ts> files".to_owned()
                }),
                PlanStep::Index => Some(format!(
                    "record the restore in {}",
                    config.layout.index_file.display()
                )),
            }?;
            Some(RestoreStep {
                step: step.phase(),
                detail,
            })
        })
        .collect();

    Ok(RestorePlan {
        id: entry.id.clone(),
        instance: entry.instance.clone(),
        mode,
        archive: pre.archive.display().to_string(),
        archive_bytes,
        algorithm: pre.algorithm,
        uncompressed_bytes: uncompressed,
        checksum: ChecksumPlan {
            expected: pre.expected_sha256.clone(),
            sidecar: sidecar.display().to_string(),
            sidecar_agrees: !pre.sidecar_missing,
            sidecar_missing: pre.sidecar_missing,
            status: entry.status.clone(),
            last_verified: entry
                .checksum
                .as_ref()
                .and_then(|c| c.last_verified.clone())
                .or_else(|| entry.verified_at.clone()),
            verified_during_extraction: true,
        },
        target,
        staging: staging.display().to_string(),
        data_only,
        space: SpacePlan {
            filesystem: nearest_existing(&pre.target).0.display().to_string(),
            needed_bytes: space_needed(archive_bytes, uncompressed),
            available_bytes: pre.available,
            reserve_bytes: pre.reserve,
        },
        unit: unit.map(|u| UnitPlan {
            name: u.unit.clone(),
            load_state: u.load_state.clone(),
            active_state: u.active_state.clone(),
            unit_file_state: u.unit_file_state.clone(),
            running_after: running_after.unwrap_or(false),
        }),
        pre_backup_dir: pre_backup_dir.map(|d| d.display().to_string()),
        steps,
        dry_run: params.dry_run,
        pull: pre.pull.clone(),
        warnings: pre
            .sidecar_missing
            .then(|| missing_sidecar(&sidecar))
            .into_iter()
            .chain(pre.leftovers.iter().cloned())
            .collect(),
    })
}

/// The plan's step that pulls the archive first.
fn pull_step(src: &PullSource, bytes: u64, archive: &Path) -> String {
    format!(
        "the archive will first be pulled from remote {} ({bytes} bytes{}) into {}, checked against the index's SHA-256",
        src.remote,
        if src.encrypted { ", decrypted" } else { "" },
        archive.display()
    )
}

/// The plan's warning for an archive without its sidecar.
fn missing_sidecar(sidecar: &Path) -> String {
    format!(
        "sidecar {} is missing: the archive is verified against the index checksum while it is unpacked, and the sidecar will be written back once the restore has succeeded",
        sidecar.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_rule_takes_the_larger_bound() {
        assert_eq!(space_needed(1000, None), 1200);
        assert_eq!(space_needed(1000, Some(5000)), 5500);
        assert_eq!(space_needed(1000, Some(10)), 1200);
    }

    /// Plans name their steps on the wire as these phases, in this order;
    /// clients and older abssctl versions read them.
    #[test]
    fn steps_keep_their_wire_names_and_order() {
        let names: Vec<String> = PlanStep::ALL
            .iter()
            .map(|s| s.phase().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "pull",
                "verify_deep",
                "lock",
                "pre_backup",
                "extract",
                "validate",
                "place",
                "stop_unit",
                "swap",
                "assets",
                "daemon_reload",
                "registry",
                "start_unit",
                "nginx",
                "cleanup",
                "index",
            ]
        );
        for step in PlanStep::ALL {
            assert_eq!(Phase::from(step.phase().to_string()), step.phase());
        }
    }

    #[test]
    fn staging_is_a_hidden_sibling() {
        assert_eq!(
            staging_dir(Path::new("/srv/a"), "x"),
            PathBuf::from("/srv/.a.restore-x")
        );
    }

    #[test]
    fn dest_must_be_confined_absolute_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load_with_env(
            &crate::config::Overrides {
                prefix: Some(dir.path().into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .unwrap();
        std::fs::create_dir_all(&config.layout.instance_root).unwrap();
        std::fs::create_dir_all(&config.layout.restores_root).unwrap();
        let ok = config.layout.restores_root.join("new");
        assert_eq!(dest_dir(&config, ok.to_str().unwrap()).unwrap(), ok);
        assert!(dest_dir(&config, "relative/x").is_err());
        let dotdot = format!("{}/../etc", config.layout.restores_root.display());
        assert!(dest_dir(&config, &dotdot).is_err());
        assert!(dest_dir(&config, "/etc/x").is_err());
        assert!(dest_dir(&config, config.layout.instance_root.to_str().unwrap()).is_err());
        let full = config.layout.restores_root.join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("f"), "x").unwrap();
        assert!(dest_dir(&config, full.to_str().unwrap()).is_err());
        let link = config.layout.restores_root.join("link");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        assert!(dest_dir(&config, link.join("x").to_str().unwrap()).is_err());
    }
}
