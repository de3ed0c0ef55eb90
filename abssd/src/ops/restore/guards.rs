//! Pre-flight guards that look at the filesystem around the target, before
//! anything is extracted or changed:
//!
//! * [`one_mount`] — the staging directory, the target and the `.pre-restore-*`
//!   copy must be one mount of one filesystem, because the swap is a rename
//!   between them and a rename across mounts is not atomic (it fails with
//!   `EXDEV`).
//! * [`leftovers`] — what earlier restores left beside the data (previous data,
//!   staging directories, `.bak-*` service files) is reported, kept and never
//!   reused.

use std::path::{Path, PathBuf};

use super::swap::PRE_RESTORE;
use crate::config::{site_name, unit_name};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::BAK;
use crate::registry::paths::ServicePaths;

/// Where a path lives: its filesystem and, when the kernel says (Linux ≥ 5.8),
/// its mount. A bind mount of the same filesystem has the same device but
/// another mount id, and rename refuses to cross it too.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    dev: u64,
    mount: Option<u64>,
}

impl Place {
    /// `follow`: resolve a final symlink (for directories we work in) or not
    /// (for the target, which the swap renames as it is).
    fn of(path: &Path, follow: bool) -> Result<Place> {
        use std::os::unix::fs::MetadataExt;
        let meta = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        let dev = meta.at("checking the filesystem of", path)?.dev();
        let flags = if follow {
            rustix::fs::AtFlags::empty()
        } else {
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW
        };
        let mount = rustix::fs::statx(rustix::fs::CWD, path, flags, rustix::fs::StatxFlags::MNT_ID)
            .ok()
            .filter(|st| st.stx_mask & rustix::fs::StatxFlags::MNT_ID.bits() != 0)
            .map(|st| st.stx_mnt_id);
        Ok(Place { dev, mount })
    }

    fn same(&self, other: &Place) -> bool {
        self.dev == other.dev
            && match (self.mount, other.mount) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// The directory that receives the staging directory and the
/// `.pre-restore-*` copy: the target's parent.
pub fn work_dir(target: &Path) -> &Path {
    target.parent().unwrap_or(Path::new("/"))
}

/// Refuse (`environment`) when an existing `target` is on another filesystem or
/// mount than [`work_dir`], typically because the data directory (or `--dest`)
/// is itself a mount point. `live` picks the advice. An absent target is fine:
/// the restored data is renamed into place inside its parent.
pub fn one_mount(target: &Path, live: bool) -> Result<()> {
    let here = match std::fs::symlink_metadata(target) {
        Ok(_) => Place::of(target, false)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at("reading", target),
    };
    let dir = work_dir(target);
    if here.same(&Place::of(dir, true)?) {
        return Ok(());
    }
    let (target, dir) = (target.display(), dir.display());
    let why = format!(
        "is on another filesystem or mount than {dir}, where the restore unpacks the archive \
         and keeps the previous data; moving data between them is not a rename, so the swap \
         could not be atomic. Nothing was changed"
    );
    Err(Error::Environment(if live {
        format!(
            "the data directory {target} {why}. It is probably a mount point: restore into a \
             new directory with --dest, or mount the filesystem on {dir} (with the data \
             directory inside it) instead of on {target}"
        )
    } else {
        format!(
            "--dest {target} {why}. It is probably a mount point: choose a new directory \
             inside it, e.g. {target}/restored"
        )
    }))
}

/// What earlier restores left beside `target` (and, for live restores, beside
/// the instance's unit file, site and enabled link), one warning each, sorted.
/// A directory that cannot be read is skipped: this only informs.
pub fn leftovers(
    instance: &str,
    target: &Path,
    live: bool,
    assets: Option<&ServicePaths>,
) -> Vec<String> {
    let mut capped = false;
    scan_leftovers(instance, target, live, assets, &mut capped)
}

/// [`leftovers`] of a live instance for `daemon.health`, and whether a
/// directory had more than [`MAX_SCANNED`] entries (the rest not looked at).
pub fn leftovers_bounded(
    instance: &str,
    target: &Path,
    assets: Option<&ServicePaths>,
) -> (Vec<String>, bool) {
    let mut capped = false;
    let found = scan_leftovers(instance, target, true, assets, &mut capped);
    (found, capped)
}

/// Entries of one directory looked at for leftovers: one with a million
/// entries must not stall a restore or a health report.
pub const MAX_SCANNED: usize = 100_000;

/// Leftovers of one directory listed (the rest are not looked for).
const MAX_FOUND: usize = 1_000;

fn scan_leftovers(
    instance: &str,
    target: &Path,
    live: bool,
    assets: Option<&ServicePaths>,
    capped: &mut bool,
) -> Vec<String> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = work_dir(target);
    let keep = format!(
        "it is kept and this restore does not touch it; remove it once it is no longer needed \
         (and no restore of {instance} is running)"
    );
    let mut out = Vec::new();
    let staging = format!(".{name}.restore-");
    for path in siblings(dir, &staging, capped) {
        out.push(format!(
            "{} is the staging directory of an earlier restore (unpacked archive content only); {keep}",
            path.display()
        ));
    }
    if live {
        for path in siblings(dir, &format!("{name}{PRE_RESTORE}"), capped) {
            out.push(format!(
                "{} holds the data an earlier restore replaced; {keep}",
                path.display()
            ));
        }
    }
    // Beside the unit, site and link this restore would install (none for a
    // data-only restore, which leaves them alone).
    if let Some(at) = assets {
        let site = site_name(instance);
        let dir_of = |p: &Path| p.parent().unwrap_or(Path::new("/")).to_owned();
        for (dir, prefix) in [
            (dir_of(&at.unit), format!("{}{BAK}", unit_name(instance))),
            (dir_of(&at.site), format!("{site}{BAK}")),
            (dir_of(&at.link), format!(".{site}{BAK}")),
        ] {
            for path in siblings(&dir, &prefix, capped) {
                out.push(format!(
                    "{} is a service file an earlier restore replaced; {keep}",
                    path.display()
                ));
            }
        }
    }
    out
}

/// Entries of `dir` whose name starts with `prefix` and goes on, sorted,
/// among its first [`MAX_SCANNED`] entries (`capped` set when there were more).
fn siblings(dir: &Path, prefix: &str, capped: &mut bool) -> Vec<PathBuf> {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .by_ref()
        .take(MAX_SCANNED)
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() > prefix.len() && name.starts_with(prefix)
        })
        .map(|e| e.path())
        .take(MAX_FOUND)
        .collect();
    if entries.next().is_some() {
        *capped = true;
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &Path) -> crate::config::Config {
        crate::config::Config::load_with_env(
            &crate::config::Overrides {
                prefix: Some(prefix.into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .unwrap()
    }

    #[test]
    fn one_filesystem_passes_and_an_absent_target_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        one_mount(&data, true).unwrap();
        std::fs::create_dir(&data).unwrap();
        one_mount(&data, true).unwrap();
        std::os::unix::fs::symlink("/proc", dir.path().join("link")).unwrap();
        // The link itself lives in the parent; the swap renames the link.
        one_mount(&dir.path().join("link"), true).unwrap();
    }

    #[test]
    fn a_mount_point_is_refused_with_advice() {
        // /proc is its own filesystem on every Linux host.
        let err = one_mount(Path::new("/proc"), true).unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Environment);
        let text = err.to_string();
        assert!(
            text.contains("not a rename") && text.contains("--dest"),
            "{text}"
        );
        let err = one_mount(Path::new("/proc"), false).unwrap_err();
        assert!(err.to_string().contains("/proc/restored"), "{err}");
    }

    #[test]
    fn leftovers_are_listed_by_kind_and_others_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let root = cfg.layout.instance_root.join("alpha");
        let data = root.join("data");
        for d in [
            data.clone(),
            root.join("data.pre-restore-20240101-000000-abcdef"),
            root.join(".data.restore-20240101-000000-abcdef"),
            root.join("data.pre-restore-"),
            root.join("database"),
            cfg.layout.unit_dir.clone(),
            cfg.layout.sites_enabled.clone(),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            cfg.layout
                .unit_dir
                .join("abssctl-alpha.service.bak-20240101-000000-abcdef"),
            "x",
        )
        .unwrap();
        std::fs::write(cfg.layout.unit_dir.join("abssctl-beta.service.bak-1"), "x").unwrap();
        let at = crate::registry::Registry::parse("instances: [{name: alpha}]")
            .unwrap()
            .get("alpha")
            .unwrap()
            .service_paths(&cfg)
            .unwrap();
        let live = leftovers("alpha", &data, true, Some(&at));
        assert_eq!(live.len(), 3, "{live:#?}");
        assert!(live[0].contains(".data.restore-20240101") && live[0].contains("staging"));
        assert!(live[1].contains("data.pre-restore-20240101") && live[1].contains("kept"));
        assert!(live[2].contains("abssctl-alpha.service.bak-"));
        let dest = leftovers("alpha", &data, false, None);
        assert_eq!(dest.len(), 1, "{dest:#?}");
    }
}
