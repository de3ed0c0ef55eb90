//! The drop-in that carries a timer's calendar:
//! `<unit_dir>/<timer>.d/50-abssctl-calendar.conf`.
//!
//! The unit directory is root's and so is everything abssd writes there, so
//! nothing on the way is followed: the unit directory and the `.d` directory
//! are opened with `O_NOFOLLOW` and must be directories owned by root (or by
//! abssd's own user) that no one else may write; the file is written beside
//! its final name (`O_CREAT|O_EXCL|O_NOFOLLOW`), synced, and renamed over it
//! (a rename replaces a symlink, never writes through it), and the directory
//! synced. A reader (systemd) sees the old file or the new one, never half.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The drop-in's file name: `50-` so that an operator's own drop-in (a later
/// name, e.g. `override.conf` from `systemctl edit`) still wins.
pub const FILE: &str = "50-abssctl-calendar.conf";

/// The drop-in's path for `timer`.
pub fn path(unit_dir: &Path, timer: &str) -> PathBuf {
    unit_dir.join(format!("{timer}.d")).join(FILE)
}

/// What the drop-in says for `spec` (checked by [`super::calendar`]: one line).
pub fn content(spec: &str) -> String {
    format!(
        "# Written by abssd (abssctl schedule enable); replaced or removed by it.\n\
         # The empty OnCalendar= drops the unit file's own calendar (daily).\n\
         [Timer]\nOnCalendar=\nOnCalendar={spec}\n"
    )
}

/// Write the drop-in for `timer` (idempotent: the same content again is a no-op
/// rename of identical bytes).
pub fn write(unit_dir: &Path, timer: &str, spec: &str) -> Result<PathBuf> {
    let target = path(unit_dir, timer);
    let units = open_dir(unit_dir, None)?;
    let dir_name = format!("{timer}.d");
    match rustix::fs::mkdirat(&units, dir_name.as_str(), Mode::from_raw_mode(0o755)) {
        // The new directory's entry is durable before a file is put in it.
        Ok(()) => {
            // 0755 whatever abssd's umask (0027): operators read drop-ins
            // (`systemctl cat`) as themselves.
            rustix::fs::chmodat(
                &units,
                dir_name.as_str(),
                Mode::from_raw_mode(0o755),
                AtFlags::empty(),
            )
            .map_err(|e| io_err("setting the mode of", &unit_dir.join(&dir_name), e))?;
            rustix::fs::fsync(&units).map_err(|e| io_err("syncing", unit_dir, e))?
        }
        Err(Errno::EXIST) => {}
        Err(e) => return Err(io_err("creating", &unit_dir.join(&dir_name), e)),
    }
    let dir_path = unit_dir.join(&dir_name);
    let dir = open_dir(&dir_path, Some(&units))?;
    let tmp = format!(".{FILE}.tmp-{}", std::process::id());
    // A leftover of a killed run of ours: ours to remove.
    let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
    let fd = rustix::fs::openat(
        &dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| io_err("creating", &dir_path.join(&tmp), e))?;
    let written = (|| -> std::io::Result<()> {
        // umask may have taken bits away; systemd's files are world-readable.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(content(spec).as_bytes())?;
        file.sync_all()
    })();
    let renamed = written.and_then(|()| {
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, FILE).map_err(std::io::Error::from)
    });
    if let Err(e) = renamed {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(Error::Io {
            action: "writing",
            path: target,
            source: e,
        });
    }
    rustix::fs::fsync(&dir).map_err(|e| io_err("syncing", &dir_path, e))?;
    Ok(target)
}

/// Remove the drop-in of `timer`, and its `.d` directory when nothing else is
/// in it (an operator's own drop-ins stay). Nothing there is no error.
pub fn remove(unit_dir: &Path, timer: &str) -> Result<PathBuf> {
    let target = path(unit_dir, timer);
    let missing = |e: &Error| matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
    let units = match open_dir(unit_dir, None) {
        Ok(d) => d,
        // No directory, no drop-in: disabling goes on to reload systemd.
        Err(e) if missing(&e) => return Ok(target),
        Err(e) => return Err(e),
    };
    let dir_name = format!("{timer}.d");
    let dir_path = unit_dir.join(&dir_name);
    let dir = match open_dir(&dir_path, Some(&units)) {
        Ok(d) => d,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(target);
        }
        Err(e) => return Err(e),
    };
    match rustix::fs::unlinkat(&dir, FILE, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(io_err("removing", &target, e)),
    }
    rustix::fs::fsync(&dir).map_err(|e| io_err("syncing", &dir_path, e))?;
    drop(dir);
    match rustix::fs::unlinkat(&units, dir_name.as_str(), AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) | Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io_err("removing", &dir_path, e)),
    }
    Ok(target)
}

/// Open a directory without following a symlink, and check that only root
/// (or abssd's own user) may change it.
fn open_dir(path: &Path, parent: Option<&OwnedFd>) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let opened = match parent {
        Some(p) => {
            let name = path.file_name().unwrap_or_default();
            rustix::fs::openat(p, name, flags, Mode::empty())
        }
        None => rustix::fs::open(path, flags, Mode::empty()),
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
            return Err(Error::Environment(format!(
                "{} is a symlink or not a directory; abssd writes timer drop-ins only into real directories: remove it and retry",
                path.display()
            )));
        }
        Err(e) => return Err(io_err("opening", path, e)),
    };
    let st = rustix::fs::fstat(fd.as_fd()).map_err(|e| io_err("reading", path, e))?;
    let me = rustix::process::geteuid().as_raw();
    if (st.st_uid != 0 && st.st_uid != me) || st.st_mode & 0o022 != 0 {
        return Err(Error::Environment(format!(
            "{} is owned by uid {} with mode {:o}; abssd writes timer drop-ins only into directories that only root may change: fix its owner and mode (chown root: ; chmod go-w) and retry",
            path.display(),
            st.st_uid,
            st.st_mode & 0o7777
        )));
    }
    Ok(fd)
}

fn io_err(action: &'static str, path: &Path, e: Errno) -> Error {
    Error::Io {
        action,
        path: path.to_owned(),
        source: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "abssctl-backup@alpha.timer";

    #[test]
    fn write_replace_read_remove() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), T, "daily").unwrap();
        assert_eq!(p, d.path().join("abssctl-backup@alpha.timer.d").join(FILE));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.ends_with("[Timer]\nOnCalendar=\nOnCalendar=daily\n"),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        write(d.path(), T, "Mon 02:00").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.ends_with("OnCalendar=\nOnCalendar=Mon 02:00\n"),
            "{text}"
        );
        // Nothing else left in the directory (no temp file).
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
        remove(d.path(), T).unwrap();
        assert!(!p.parent().unwrap().exists());
        // Again: nothing there, no error.
        remove(d.path(), T).unwrap();
    }

    #[test]
    fn an_operators_drop_in_stays() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), T, "daily").unwrap();
        let other = p.parent().unwrap().join("override.conf");
        std::fs::write(&other, "[Timer]\nPersistent=false\n").unwrap();
        remove(d.path(), T).unwrap();
        assert!(!p.exists() && other.exists());
    }

    #[test]
    fn symlinks_are_refused_and_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let link = d.path().join(format!("{T}.d"));
        std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
        let e = write(d.path(), T, "daily").unwrap_err();
        assert_eq!(e.kind(), abssd_proto::ErrorKind::Environment, "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(
            std::fs::read_dir(elsewhere.path())
                .unwrap()
                .next()
                .is_none()
        );
        assert!(remove(d.path(), T).is_err());
        // The unit directory itself a symlink.
        let units = d.path().join("units");
        std::os::unix::fs::symlink(elsewhere.path(), &units).unwrap();
        assert!(write(&units, T, "daily").is_err());
        assert!(
            std::fs::read_dir(elsewhere.path())
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(format!("{T}.d"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = write(d.path(), T, "daily").unwrap_err();
        assert!(e.to_string().contains("only root may change"), "{e}");
        assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    }
}
