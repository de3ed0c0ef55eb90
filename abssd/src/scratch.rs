//! `<state_dir>/scratch/`: where operations keep the private copies they work
//! on — a snapshot-mode create the stable blob copy it is about to archive
//! (databases are read in place), a deep check the database or blob it is about to open.
//!
//! Each operation gets its own directory (`scratch/<uuid>/`, root's, 0700),
//! removed when its [`Scratch`] is dropped however the operation ends, and by
//! start-up recovery after a crash ([`remove_leftovers`]). Copies hold data of
//! instances whose users must not read each other's; files are created new
//! (`O_EXCL`, no symlink followed) in a directory nobody else can enter, so
//! nothing can be swapped in under us. Every copy first checks that the state
//! directory's filesystem keeps [`FREE_MARGIN`] free beyond it: the index,
//! the registry and the journals live there too.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};

/// The directory's name under the state directory.
const DIR: &str = "scratch";

/// Room left free on the state directory's filesystem beyond each copy.
pub const FREE_MARGIN: u64 = 64 << 20;

/// One operation's private directory; removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    /// Names the next file.
    next: AtomicU64,
}

impl Scratch {
    /// The directory of a new operation under `state_dir`; nothing is made
    /// until the first copy (a dry run writes nothing).
    pub fn new(state_dir: &Path) -> Scratch {
        Scratch {
            dir: state_dir
                .join(DIR)
                .join(uuid::Uuid::now_v7().simple().to_string()),
            next: AtomicU64::new(0),
        }
    }

    /// The directory exists: its parent root's and 0700 (not a symlink), then
    /// the operation's own.
    fn prepare(&self) -> Result<()> {
        let Some(parent) = self.dir.parent() else {
            return Ok(());
        };
        if let Some(state_dir) = parent.parent() {
            crate::fsutil::ensure_dir(state_dir)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(parent) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at("creating directory", parent),
        }
        let meta = fs::symlink_metadata(parent).at("checking", parent)?;
        if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(Error::Environment(format!(
                "{} is not a directory of abssd's own; remove it (abssd makes it again)",
                parent.display()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(parent, fs::Permissions::from_mode(0o700))
                .at("restricting", parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).at("creating directory", &self.dir),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A new, empty file (0600) for a copy of `what` (`size` bytes); refused
    /// (`environment`) when it would leave less than [`FREE_MARGIN`] free.
    pub fn file(&self, what: &Path, size: u64) -> Result<ScratchFile> {
        self.prepare()?;
        let st = rustix::fs::statvfs(&self.dir)
            .map_err(std::io::Error::from)
            .at("checking free space on", &self.dir)?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < size.saturating_add(FREE_MARGIN) {
            return Err(Error::Environment(format!(
                "not enough space in {} for a copy of {} ({size} bytes, and {} MiB kept free \
                 besides; {free} bytes are free); free some space in the state directory",
                self.dir.display(),
                what.display(),
                FREE_MARGIN >> 20
            )));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{n}.copy"));
        let file = create_new(&path)?;
        Ok(ScratchFile {
            path: Some(path),
            file,
        })
    }

    /// `<copy>-journal` beside a copy made by [`Scratch::file`] (a deep check
    /// rolls back a hot journal archived with its database).
    pub fn journal(&self, copy: &Path) -> Result<(PathBuf, File)> {
        let path = journal_of(copy);
        let file = create_new(&path)?;
        Ok((path, file))
    }

    /// Remove a copy and its journal, if any, as soon as it is no longer needed.
    pub fn remove(copy: &Path) {
        let _ = fs::remove_file(copy);
        let _ = fs::remove_file(journal_of(copy));
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a scratch directory");
            }
        }
    }
}

fn journal_of(copy: &Path) -> PathBuf {
    let mut name = copy.as_os_str().to_owned();
    name.push("-journal");
    PathBuf::from(name)
}

fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .at("creating", path)
}

/// A file in a scratch directory, removed when dropped (or sooner, with
/// [`ScratchFile::unlink`], once only its descriptor is needed).
#[derive(Debug)]
pub struct ScratchFile {
    path: Option<PathBuf>,
    /// The file, open for reading and writing.
    pub file: File,
}

impl ScratchFile {
    /// Its path, while it has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Its descriptor, its name removed.
    pub fn into_file(mut self) -> Result<File> {
        self.unlink()?;
        self.file.try_clone().map_err(|e| Error::Io {
            action: "reading",
            path: self.path.clone().unwrap_or_default(),
            source: e,
        })
    }

    /// Path and descriptor, for a caller that removes the copy itself (with
    /// [`Scratch::remove`]; its directory goes with the [`Scratch`] anyway).
    pub fn into_parts(mut self) -> Result<(PathBuf, File)> {
        let path = self.path.take().unwrap_or_default();
        let file = self.file.try_clone().at("reading", &path)?;
        Ok((path, file))
    }

    /// Remove its name now; the descriptor stays usable.
    pub fn unlink(&mut self) -> Result<()> {
        if let Some(path) = self.path.take() {
            fs::remove_file(&path).at("removing", &path)?;
        }
        Ok(())
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Start-up recovery: what operations a stopped daemon was running left
/// behind. A `scratch` that is not a directory (a symlink) is not followed.
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
    fn a_directory_is_private_per_operation_and_goes_away() {
        let state = tempfile::tempdir().unwrap();
        let a = Scratch::new(state.path());
        let b = Scratch::new(state.path());
        assert_ne!(a.path(), b.path());
        let parent = state.path().join(DIR);
        assert!(!parent.exists(), "nothing is made before the first copy");
        // Two operations' first copies never clash.
        let fa = a.file(Path::new("x"), 10).unwrap();
        let fb = b.file(Path::new("x"), 10).unwrap();
        let path = fa.path().unwrap().to_owned();
        assert_eq!(fs::metadata(&parent).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        drop(fa);
        assert!(!path.exists());
        let (copy, _) = b.file(Path::new("y"), 10).unwrap().into_parts().unwrap();
        let (journal, _) = b.journal(&copy).unwrap();
        Scratch::remove(&copy);
        assert!(!copy.exists() && !journal.exists());
        drop(fb);
        drop((a, b));
        assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
    }

    #[test]
    fn a_copy_that_would_fill_the_filesystem_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let s = Scratch::new(state.path());
        let err = s.file(Path::new("/big.sqlite"), u64::MAX / 2).unwrap_err();
        assert!(matches!(err, Error::Environment(_)), "{err}");
        assert!(err.to_string().contains("/big.sqlite"), "{err}");
        assert!(fs::read_dir(s.path()).unwrap().next().is_none());
    }

    #[test]
    fn leftovers_are_removed_and_a_symlink_is_not_followed() {
        let state = tempfile::tempdir().unwrap();
        let s = Scratch::new(state.path());
        drop(s.file(Path::new("x"), 1).unwrap());
        let dir = s.path().to_owned();
        std::mem::forget(s);
        fs::write(dir.join("1.copy"), b"x").unwrap();
        assert_eq!(remove_leftovers(state.path()), vec![dir.clone()]);
        assert!(!dir.exists());

        let other = tempfile::tempdir().unwrap();
        let victim = other.path().join("keep");
        fs::write(&victim, b"x").unwrap();
        fs::remove_dir(state.path().join(DIR)).unwrap();
        std::os::unix::fs::symlink(other.path(), state.path().join(DIR)).unwrap();
        assert!(remove_leftovers(state.path()).is_empty());
        assert!(victim.exists());
        let err = Scratch::new(state.path())
            .file(Path::new("x"), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory of abssd's own"), "{err}");
    }
}
