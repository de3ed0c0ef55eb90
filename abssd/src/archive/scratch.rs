//! `<state_dir>/snapshots/`: where a snapshot-mode create puts the one copy it
//! is about to archive (a SQLite snapshot, or a blob read until it held still).
//!
//! At most one such file exists at a time: it is made just before its tar
//! entry is written and removed right after, on failure too (a [`ScratchFile`]
//! removes itself when dropped), and start-up recovery empties the directory
//! ([`clear`]) after a crash. The directory is root's, 0700: the copies hold
//! data of instances whose users must not read each other's.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};

/// The scratch directory of one create.
#[derive(Debug)]
pub struct Scratch {
    /// `<state_dir>/snapshots`.
    dir: PathBuf,
    /// Names the next file (unique within this daemon, which is alone on its
    /// state directory).
    seq: AtomicU64,
}

/// Names of the files in the directory start with this daemon's pid, so a
/// file of an earlier run is never taken for one of this run.
fn name(seq: u64) -> String {
    format!("{}-{seq}.tmp", std::process::id())
}

/// The directory under `state_dir`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshots")
}

/// Remove every file in `<state_dir>/snapshots` (start-up recovery: no create
/// runs yet, and only one daemon runs per state directory). Returns what was
/// removed.
pub fn clear(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
}

impl Scratch {
    /// The scratch directory under `state_dir` (made when first used).
    pub fn new(state_dir: &Path) -> Scratch {
        Scratch {
            dir: dir(state_dir),
            seq: AtomicU64::new(0),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A new, empty file (0600) for a copy of `what` (`size` bytes), after
    /// checking that the state directory's filesystem has room for it.
    pub fn file(&self, what: &Path, size: u64) -> Result<ScratchFile> {
        self.prepare()?;
        self.ensure_space(what, size)?;
        let path = self
            .dir
            .join(name(self.seq.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(&path)
            .at("creating", &path)?;
        Ok(ScratchFile {
            path: Some(path),
            file,
        })
    }

    /// The directory exists, is a directory (not a symlink) owned by us, 0700.
    fn prepare(&self) -> Result<()> {
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at("creating directory", &self.dir),
        }
        let meta = std::fs::symlink_metadata(&self.dir).at("reading", &self.dir)?;
        if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(Error::Environment(format!(
                "{} is not a directory of the daemon's own; remove it (abssd makes it again)",
                self.dir.display()
            )));
        }
        if meta.mode() & 0o777 != 0o700 {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .at("setting the mode of", &self.dir)?;
        }
        Ok(())
    }

    /// Room for `size` more bytes where the copies go.
    fn ensure_space(&self, what: &Path, size: u64) -> Result<()> {
        let st = rustix::fs::statvfs(&self.dir)
            .map_err(std::io::Error::from)
            .at("reading the free space of", &self.dir)?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < size {
            return Err(Error::Environment(format!(
                "not enough space in {} for the snapshot of {} ({size} bytes needed, {free} \
                 free); free some space in the state directory, or use --consistency stop",
                self.dir.display(),
                what.display()
            )));
        }
        Ok(())
    }
}

/// `O_NOFOLLOW` (the scratch directory is root's; this is one more guard).
fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// A file in the scratch directory, removed when dropped (or sooner, with
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

    /// Remove its name now; the descriptor stays usable.
    pub fn unlink(&mut self) -> Result<()> {
        if let Some(path) = self.path.take() {
            std::fs::remove_file(&path).at("removing", &path)?;
        }
        Ok(())
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
