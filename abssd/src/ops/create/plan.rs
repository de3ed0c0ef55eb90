//! The create plan: validated settings, the walk of every source, and the
//! archive's name. Nothing here writes.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use abssd_proto::{Algorithm, Capture, Consistency, CreateParams, CreatePlan, PlanSource};

use crate::archive::{self, Body, Budget, Ident, Member, Origin, Tree};
use crate::config::{site_name, unit_name};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::index::new_backup_id;
use crate::ops::Ctx;
use crate::registry::Registry;

pub(super) fn effective_level(algorithm: Algorithm, level: Option<i32>) -> Result<Option<i32>> {
    let (range, default) = match algorithm {
        Algorithm::Zstd => (1..=19, 3),
        Algorithm::Gzip => (1..=9, 6),
        Algorithm::None => {
            return match level {
                None => Ok(None),
                Some(_) => Err(Error::validation(
                    "--compression-level needs --compression zstd or gzip",
                )),
            };
        }
    };
    match level {
        None => Ok(Some(default)),
        Some(l) if range.contains(&l) => Ok(Some(l)),
        Some(l) => Err(Error::validation(format!(
            "compression level {l} is out of range for {}: use {}..={}",
            algorithm.as_str(),
            range.start(),
            range.end()
        ))),
    }
}

/// `--out-dir` must be an absolute path that, with `.` and `..` resolved
/// lexically, lies under the backups root, does not reach outside it through a
/// symlink, and is a directory where it exists. The normalised path is what the
/// plan, the result and the index name.
pub(super) fn out_dir(ctx: &Ctx, params: &CreateParams) -> Result<PathBuf> {
    let root = normalize(&ctx.config.layout.backups_root);
    let default = ctx.config.layout.instance_backup_dir(&params.instance);
    let raw = params
        .out_dir
        .clone()
        .unwrap_or_else(|| default.display().to_string());
    let what = match params.out_dir {
        Some(_) => "--out-dir",
        None => "the instance's backup directory",
    };
    let outside = || {
        Error::validation(format!(
            "{what} {raw} must lie under the backups root {}",
            root.display()
        ))
    };
    let dir = PathBuf::from(&raw);
    if !dir.is_absolute() {
        return Err(outside());
    }
    let dir = normalize(&dir);
    if !dir.starts_with(&root) {
        return Err(outside());
    }
    // Where reconcile looks for archives (the root and the directories directly
    // in it), and never the restores root: an archive made elsewhere would be
    // invisible to it.
    let depth = dir
        .strip_prefix(&root)
        .map_or(0, |rel| rel.components().count());
    if depth > 1 {
        return Err(Error::validation(format!(
            "{what} {raw} is more than one level below the backups root {}; \
             use the root or a directory directly in it (reconcile looks no deeper)",
            root.display()
        )));
    }
    if dir.starts_with(normalize(&ctx.config.layout.restores_root)) {
        return Err(Error::validation(format!(
            "{what} {raw} lies in the restores root {}, which holds restored data, not archives",
            ctx.config.layout.restores_root.display()
        )));
    }
    // Resolve the deepest existing ancestor: a symlink inside the root must not
    // lead out of it, and it must be a directory (a file there fails the
    // create; a dry run must say so too).
    if let Some(existing) = dir.ancestors().find(|a| a.symlink_metadata().is_ok()) {
        if let Ok(real_root) = root.canonicalize() {
            let real = existing.canonicalize().at("resolving", existing)?;
            if !real.starts_with(&real_root) {
                return Err(outside());
            }
        }
        if !existing.is_dir() {
            return Err(Error::validation(format!(
                "{what} {raw}: {} is not a directory; choose a directory under the backups root",
                existing.display()
            )));
        }
    }
    Ok(dir)
}

/// `path` with `.` components dropped and each `..` taking away the component
/// before it (never above `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(super) type Planned = (CreatePlan, Vec<Member>);

/// Read the registry, walk the sources, and fix the archive name. Blocking.
/// How the instance will be read: the mode asked for, what systemd said about
/// the unit, and what follows from the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reading {
    /// `--consistency`, or `daemon.consistency`.
    pub mode: Consistency,
    /// Whether the unit runs; `None` when systemd could not be asked.
    pub unit_running: Option<bool>,
    /// What will be done.
    pub capture: Capture,
}

impl Reading {
    /// A unit that is not running is read plainly whatever the mode (its files
    /// hold still, and a hot journal left by a crash goes in beside its
    /// database, as SQLite needs it). When systemd cannot be asked, `snapshot`
    /// snapshots (safe either way) and `stop` is refused.
    pub fn decide(mode: Consistency, unit_running: Option<bool>, unit: &str) -> Result<Reading> {
        let capture = match (mode, unit_running) {
            (_, Some(false)) => Capture::Offline,
            (Consistency::Snapshot, _) => Capture::Snapshot,
            (Consistency::None, _) => Capture::None,
            (Consistency::Stop, Some(true)) => Capture::Stop,
            (Consistency::Stop, None) => {
                return Err(Error::Environment(format!(
                    "--consistency stop needs systemd to stop {unit}, and systemd could not be \
                     reached; use --consistency snapshot, or check the bus (systemd.bus_address)"
                )));
            }
        };
        Ok(Reading {
            mode,
            unit_running,
            capture,
        })
    }
}

pub(super) fn build_plan(
    config: &crate::config::Config,
    params: &CreateParams,
    algorithm: Algorithm,
    level: Option<i32>,
    out_dir: &Path,
    reading: Reading,
) -> Result<Planned> {
    let registry_file = config.layout.registry_file();
    let registry_bytes = match std::fs::read(&registry_file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).at("reading registry", &registry_file),
    };
    let registry =
        Registry::parse(&String::from_utf8_lossy(&registry_bytes)).map_err(|message| {
            Error::Corrupt {
                path: registry_file.clone(),
                format: "YAML",
                message,
            }
        })?;
    let instance = registry.require(&params.instance, &registry_file)?.clone();
    // One instant names the backup and dates its entry.
    let at = jiff::Timestamp::now();
    let id = new_backup_id(&params.instance, at);
    let archive = out_dir.join(format!("{id}{}", algorithm.extension()));
    let checksum_file = crate::archive::sidecar::path(&archive);

    let mut sources = Vec::new();
    let mut members = vec![Member::synthetic(format!("{id}/"), Body::Dir)];
    let data_root = instance.data_root(config);
    let tree = Arc::new(Tree::open(&data_root)?);
    // The walk stops as soon as the tree is more than a restore accepts, with
    // room left for the members a create adds besides the data.
    let limit = config.daemon.max_restore_entries;
    let mut holes = Budget::new(config.daemon.max_sparse_hole_bytes)
        .entries(limit.saturating_sub(NON_DATA_MEMBERS));
    let (mut data, mut skipped) = archive::walk(&tree, &format!("{id}/data"), &mut holes)?;
    leave_out_unrestorable(&mut data, &mut skipped, &id, &tree);
    // Snapshot mode: databases by their header, their journals left out,
    // blobs read until stable (a plain read in every other capture).
    let captured = match reading.capture {
        Capture::Snapshot => {
            let scratch = Arc::new(crate::scratch::Scratch::new(&config.layout.state_dir));
            archive::capture::classify(&mut data, &scratch)?
        }
        Capture::Stop | Capture::None | Capture::Offline => Default::default(),
    };
    sources.push(source(
        "data",
        &data_root,
        &format!("{id}/data/"),
        true,
        &data,
    ));
    members.extend(data);

    if !params.data_only {
        let at = instance.service_paths(config)?;
        let assets = [
            ("unit", at.unit, "systemd", unit_name(&instance.name)),
            ("site", at.site, "nginx", site_name(&instance.name)),
            (
                "site_enabled",
                at.link,
                "nginx-enabled",
                site_name(&instance.name),
            ),
        ];
        for (role, path, dir, file) in assets {
            let member = format!("{id}/{dir}/{file}");
            // Followed, like the Python tool: the enabled link is stored as the file
            // it points to; its presence says the site was enabled.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    let mut m = vec![
                        Member::synthetic(format!("{id}/{dir}/"), Body::Dir),
                        Member::from_meta(
                            member.clone(),
                            Body::File {
                                from: Origin::Path(path.clone()),
                                ident: Ident::of_path(&path)?,
                                size: meta.len(),
                            },
                            &meta,
                        ),
                    ];
                    sources.push(source(role, &path, &member, true, &m));
                    members.append(&mut m);
                }
                Ok(_) => {
                    return Err(Error::Environment(format!(
                        "{} is not a regular file",
                        path.display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    sources.push(source(role, &path, &member, false, &[]));
                }
                Err(e) => return Err(e).at("reading", &path),
            }
        }
    }

    let instance_json = serde_json::to_vec_pretty(&instance)
        .map_err(|e| Error::Internal(format!("rendering instance.json: {e}")))?;
    let meta_members = vec![
        Member::synthetic(format!("{id}/metadata/"), Body::Dir),
        Member::synthetic(
            format!("{id}/metadata/instances.yml"),
            Body::Bytes(registry_bytes),
        ),
        Member::synthetic(
            format!("{id}/metadata/instance.json"),
            Body::Bytes(instance_json),
        ),
    ];
    sources.push(source(
        "registry",
        &registry_file,
        &format!("{id}/metadata/instances.yml"),
        true,
        &meta_members[1..2],
    ));
    sources.push(source(
        "instance",
        &registry_file,
        &format!("{id}/metadata/instance.json"),
        true,
        &meta_members[2..3],
    ));
    members.extend(meta_members);
    // What restore counts: every entry of the archive.
    if members.len() as u64 > limit {
        return Err(Error::validation(format!(
            "the backup of {} would hold {} entries, more than the {limit} a restore accepts \
             (daemon.max_restore_entries); raise that limit or clean up the data directory",
            data_root.display(),
            members.len()
        )));
    }

    let plan = CreatePlan {
        instance: instance.name.clone(),
        id,
        created_at: fsutil::utc(at),
        archive: archive.display().to_string(),
        checksum_file: checksum_file.display().to_string(),
        algorithm,
        compression_level: level,
        data_only: params.data_only,
        total_bytes: members.iter().map(Member::content_len).sum(),
        sources,
        index: config.layout.index_file.display().to_string(),
        dry_run: params.dry_run,
        consistency: reading.mode,
        capture: reading.capture,
        unit_running: reading.unit_running,
        databases: captured
            .databases
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        notes: captured.notes,
        warnings: archive::warnings(&skipped)
            .into_iter()
            .chain(captured.warnings)
            .collect(),
    };
    Ok((plan, members))
}

/// The most entries a create adds besides the data tree: the top directory,
/// `systemd/` and the unit, `nginx/` and the site, `nginx-enabled/` and the
/// link, `metadata/` and its two files.
const NON_DATA_MEMBERS: u64 = 10;

/// Leave out the symlinks restore would refuse (absolute, or leaving `data/`),
/// with the reason restore gives: a backup that reports success must restore.
fn leave_out_unrestorable(
    members: &mut Vec<Member>,
    skipped: &mut Vec<archive::Skipped>,
    id: &str,
    tree: &Tree,
) {
    let data_prefix = format!("{id}/data/");
    members.retain(|m| {
        let Body::Symlink(target) = &m.body else {
            return true;
        };
        let target = target.as_os_str().as_bytes();
        match crate::extract::refused_symlink(&m.name, id, target) {
            None => true,
            Some(why) => {
                let rel = m
                    .name
                    .strip_prefix(data_prefix.as_bytes())
                    .unwrap_or(&m.name);
                skipped.push(archive::Skipped {
                    path: tree.display(rel),
                    reason: format!("restore would refuse it: it {why}"),
                    kind: archive::SkipKind::LeftOut,
                });
                false
            }
        }
    });
}

fn source(role: &str, path: &Path, member: &str, present: bool, members: &[Member]) -> PlanSource {
    PlanSource {
        role: role.to_owned(),
        path: path.display().to_string(),
        member: member.to_owned(),
        present,
        bytes: members.iter().map(Member::content_len).sum(),
        entries: members.len() as u64,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_unit_is_read_plainly_in_every_mode() {
        use Consistency as M;
        for mode in [M::Snapshot, M::Stop, M::None] {
            let r = Reading::decide(mode, Some(false), "u").unwrap();
            assert_eq!(r.capture, Capture::Offline);
        }
        let cap = |m, r| Reading::decide(m, r, "u").map(|r| r.capture);
        assert_eq!(cap(M::Snapshot, Some(true)).unwrap(), Capture::Snapshot);
        assert_eq!(cap(M::Snapshot, None).unwrap(), Capture::Snapshot);
        assert_eq!(cap(M::None, Some(true)).unwrap(), Capture::None);
        assert_eq!(cap(M::Stop, Some(true)).unwrap(), Capture::Stop);
        assert!(matches!(cap(M::Stop, None), Err(Error::Environment(_))));
    }

    #[test]
    fn out_dirs_are_normalised_lexically() {
        assert_eq!(
            normalize(Path::new("/srv/backups/./alpha/../alpha/")),
            Path::new("/srv/backups/alpha")
        );
        assert_eq!(
            normalize(Path::new("/srv/backups/../x")),
            Path::new("/srv/x")
        );
        assert_eq!(normalize(Path::new("/../..")), Path::new("/"));
        assert_eq!(normalize(Path::new("/a//b/.")), Path::new("/a/b"));
    }

    #[test]
    fn levels_default_and_are_range_checked() {
        assert_eq!(effective_level(Algorithm::Zstd, None).unwrap(), Some(3));
        assert_eq!(effective_level(Algorithm::Gzip, None).unwrap(), Some(6));
        assert_eq!(effective_level(Algorithm::None, None).unwrap(), None);
        assert!(effective_level(Algorithm::Gzip, Some(12)).is_err());
        assert!(effective_level(Algorithm::None, Some(1)).is_err());
    }
}
