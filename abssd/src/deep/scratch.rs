//! Where the deep check keeps its private copies: `<state_dir>/deep-verify/`
//! (0700, root's), one directory per check inside it, removed when the check
//! ends however it ends, and by start-up recovery after a crash
//! ([`remove_leftovers`]). Files are created new (`O_EXCL`, no symlink
//! followed) in a directory nobody else can enter, so nothing can be swapped
//! in under us.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The directory's name under the state directory.
const DIR: &str = "deep-verify";

/// Room left free on the state directory's filesystem beyond each copy, so a
/// deep check never fills it for the index and journals that live there too.
pub const FREE_MARGIN: u64 = 64 << 20;

/// One check's directory; removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    next: u64,
}

impl Scratch {
    /// A new, empty directory for one check.
    pub fn create(state_dir: &Path) -> Result<Scratch> {
        let parent = state_dir.join(DIR);
        crate::fsutil::ensure_dir(state_dir)?;
        match fs::DirBuilder::new().mode(0o700).create(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at("creating directory", &parent),
        }
        let meta = fs::symlink_metadata(&parent).at("checking", &parent)?;
        if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(Error::Environment(format!(
                "{} is not a directory of abssd's own; remove it so the deep check can make its private one",
                parent.display()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(&parent, fs::Permissions::from_mode(0o700))
                .at("restricting", &parent)?;
        }
        let dir = parent.join(uuid::Uuid::now_v7().simple().to_string());
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .at("creating directory", &dir)?;
        Ok(Scratch { dir, next: 0 })
    }

    /// A new file for a copy of `size` bytes, 0600; refused when that would
    /// leave less than [`FREE_MARGIN`] free.
    pub fn file(&mut self, size: u64) -> Result<(PathBuf, File)> {
        let st = rustix::fs::statvfs(&self.dir)
            .map_err(std::io::Error::from)
            .at("checking free space on", &self.dir)?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < size.saturating_add(FREE_MARGIN) {
            return Err(Error::Environment(format!(
                "the deep check needs room for a {size}-byte copy in {} and {} MiB besides; {free} bytes are free. Free some space there",
                self.dir.display(),
                FREE_MARGIN >> 20
            )));
        }
        self.next += 1;
        let path = self.dir.join(format!("{}.db", self.next));
        let file = Self::create_new(&path)?;
        Ok((path, file))
    }

    /// `<path>-journal` beside a copy made by [`Scratch::file`].
    pub fn journal(&self, db: &Path) -> Result<(PathBuf, File)> {
        let mut name = db.as_os_str().to_owned();
        name.push("-journal");
        let path = PathBuf::from(name);
        let file = Self::create_new(&path)?;
        Ok((path, file))
    }

    fn create_new(path: &Path) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .at("creating", path)
    }

    /// Remove a copy (and its journal, if any) as soon as it is checked.
    pub fn remove(path: &Path) {
        let _ = fs::remove_file(path);
        let mut journal = path.as_os_str().to_owned();
        journal.push("-journal");
        let _ = fs::remove_file(journal);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the deep check's temporary directory");
        }
    }
}

/// Start-up recovery: what checks a stopped daemon was running left behind.
pub fn remove_leftovers(state_dir: &Path) -> Vec<PathBuf> {
    let parent = state_dir.join(DIR);
    let Ok(meta) = fs::symlink_metadata(&parent) else {
        return Vec::new();
    };
    if !meta.is_dir() {
        return Vec::new();
    }
    let mut removed = Vec::new();
    for entry in fs::read_dir(&parent).into_iter().flatten().flatten() {
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_directory_is_private_and_goes_away() {
        let state = tempfile::tempdir().unwrap();
        let mut s = Scratch::create(state.path()).unwrap();
        let parent = state.path().join(DIR);
        let mode = fs::metadata(&parent).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (path, _) = s.file(10).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let (journal, _) = s.journal(&path).unwrap();
        Scratch::remove(&path);
        assert!(!path.exists() && !journal.exists());
        let (kept, _) = s.file(10).unwrap();
        drop(s);
        assert!(!kept.exists());
        assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
    }

    #[test]
    fn leftovers_are_removed_and_a_symlink_is_not_followed() {
        let state = tempfile::tempdir().unwrap();
        let s = Scratch::create(state.path()).unwrap();
        let (dir, _) = (s.dir.clone(), std::mem::forget(s));
        fs::write(dir.join("1.db"), b"x").unwrap();
        assert_eq!(remove_leftovers(state.path()), vec![dir.clone()]);
        assert!(!dir.exists());

        let other = tempfile::tempdir().unwrap();
        let victim = other.path().join("keep");
        fs::write(&victim, b"x").unwrap();
        fs::remove_dir(state.path().join(DIR)).unwrap();
        std::os::unix::fs::symlink(other.path(), state.path().join(DIR)).unwrap();
        assert!(remove_leftovers(state.path()).is_empty());
        assert!(victim.exists());
        let err = Scratch::create(state.path()).unwrap_err().to_string();
        assert!(err.contains("not a directory of abssd's own"), "{err}");
    }
}
