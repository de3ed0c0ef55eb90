//! Creating the extracted tree beneath the staging directory, through file
//! descriptors only.
//!
//! The staging directory is opened once; every directory is reached from it
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`,
//! and entries are created relative to their parent's descriptor with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`, `symlinkat` and `linkat` (never
//! following a link). Whatever the archive says, nothing is created, opened or
//! changed outside the staging directory, and no entry replaces another.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT, Uid};
use rustix::io::Errno;

use super::names::EntryPath;
use crate::error::{Error, IoContext, Result};

// How every directory is reached from the staging directory, and opened.
use crate::fsutil::{BENEATH, OPEN_DIR as DIR};
/// Directories are created owner-only and writable, so that extraction can fill
/// directories that end up read-only; their own modes are applied at the end.
const DIR_CREATE_MODE: u32 = 0o700;
/// The mode of directories the archive does not list (created as parents).
const IMPLICIT_DIR_MODE: u32 = 0o750;

/// Ownership, permissions and time of an entry, from its header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    /// Permission bits; setuid and setgid are dropped when applied.
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
    pub(super) mtime_nsec: u32,
}

impl Meta {
    fn mode(&self) -> Mode {
        Mode::from_raw_mode(self.mode & 0o1777)
    }
    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: self.mtime,
                tv_nsec: i64::from(self.mtime_nsec),
            },
        }
    }
}

/// The tree being extracted.
#[derive(Debug)]
pub(super) struct Tree {
    /// The staging directory, opened once.
    root: OwnedFd,
    /// Its path, for messages only.
    staging: PathBuf,
    /// The archive, for messages only.
    archive: PathBuf,
    /// Restore numeric owners.
    same_owner: bool,
    /// The last parent directory used: archives list a directory's entries
    /// together, so this saves a path walk per entry.
    cached: Option<(Vec<u8>, OwnedFd)>,
    /// Every directory created, with the metadata its archive entry gave it
    /// (`None`: created as a parent only).
    dirs: HashMap<Vec<u8>, Option<Meta>>,
    /// Regular files created: the only valid hardlink targets.
    files: HashSet<Vec<u8>>,
}

impl Tree {
    /// Open `staging` (an existing directory, not a symlink).
    pub(super) fn open(staging: &Path, archive: &Path, same_owner: bool) -> Result<Tree> {
        let root = rustix::fs::open(staging, DIR, Mode::empty())
            .map_err(std::io::Error::from)
            .at("opening staging directory", staging)?;
        Ok(Tree {
            root,
            staging: staging.to_owned(),
            archive: archive.to_owned(),
            same_owner,
            cached: None,
            dirs: HashMap::new(),
            files: HashSet::new(),
        })
    }

    /// The staging directory's descriptor.
    pub(super) fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// The staging directory.
    pub(super) fn staging(&self) -> &Path {
        &self.staging
    }

    /// A directory entry: create it, or record the metadata of one that exists.
    pub(super) fn dir(&mut self, path: &EntryPath, meta: Meta) -> Result<()> {
        if let Some(known) = self.dirs.get_mut(path.as_bytes()) {
            *known = Some(meta);
            return Ok(());
        }
        let parent = self.parent(path)?;
        rustix::fs::mkdirat(parent, path.name(), Mode::from_raw_mode(DIR_CREATE_MODE))
            .map_err(|e| self.create_error(path, e))?;
        self.dirs.insert(path.as_bytes().to_vec(), Some(meta));
        Ok(())
    }

    /// Create a regular file, empty and private; the caller writes its content
    /// and then calls [`Tree::finish_file`].
    pub(super) fn create_file(&mut self, path: &EntryPath) -> Result<File> {
        let parent = self.parent(path)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(parent, path.name(), flags, Mode::from_raw_mode(0o600))
            .map_err(|e| self.create_error(path, e))?;
        Ok(File::from(fd))
    }

    /// Apply a written file's metadata (after its last write).
    pub(super) fn finish_file(&mut self, file: File, path: &EntryPath, meta: Meta) -> Result<()> {
        let io = |e: Errno| self.io_error("setting metadata of", path.as_bytes(), e);
        if self.same_owner {
            let (uid, gid) = owner(meta);
            rustix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io)?;
        }
        rustix::fs::fchmod(&file, meta.mode()).map_err(io)?;
        rustix::fs::futimens(&file, &meta.times()).map_err(io)?;
        self.files.insert(path.as_bytes().to_vec());
        Ok(())
    }

    /// A symlink (its target already checked), with its owner and time.
    pub(super) fn symlink(&mut self, path: &EntryPath, target: &[u8], meta: Meta) -> Result<()> {
        let same_owner = self.same_owner;
        let parent = self.parent(path)?;
        let made = rustix::fs::symlinkat(target, parent, path.name())
            .map(|()| set_link_meta(parent, path.name(), meta, same_owner));
        match made {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error("setting metadata of", path.as_bytes(), e)),
            Err(e) => Err(self.create_error(path, e)),
        }
    }

    /// A hardlink to a regular file this archive already created.
    pub(super) fn hardlink(&mut self, path: &EntryPath, target: &EntryPath) -> Result<()> {
        if !self.files.contains(target.as_bytes()) {
            return Err(super::stream::refused(
                &self.archive,
                path,
                format!(
                    "is a hardlink to {target}, which is not a regular file extracted before it"
                ),
            ));
        }
        let from = self
            .open_dir(target.parent())
            .map_err(|e| self.io_error("opening", target.parent(), e))?;
        let parent = self.parent(path)?;
        if let Err(e) =
            rustix::fs::linkat(&from, target.name(), parent, path.name(), AtFlags::empty())
        {
            return Err(self.create_error(path, e));
        }
        self.files.insert(path.as_bytes().to_vec());
        Ok(())
    }

    /// Apply every directory's metadata, deepest first (a read-only directory
    /// must not be closed before its subdirectories are done), then make the
    /// whole tree durable.
    pub(super) fn finish(mut self) -> Result<()> {
        self.cached = None;
        let mut dirs: Vec<(Vec<u8>, Option<Meta>)> =
            std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.iter().filter(|&&b| b == b'/').count()));
        for (path, meta) in dirs {
            let fd = self
                .open_dir(&path)
                .map_err(|e| self.io_error("opening", &path, e))?;
            let set = || -> rustix::io::Result<()> {
                match meta {
                    Some(meta) => {
                        if self.same_owner {
                            let (uid, gid) = owner(meta);
                            rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
                        }
                        rustix::fs::fchmod(&fd, meta.mode())?;
                        rustix::fs::futimens(&fd, &meta.times())
                    }
                    None => rustix::fs::fchmod(&fd, Mode::from_raw_mode(IMPLICIT_DIR_MODE)),
                }
            };
            set().map_err(|e| self.io_error("setting metadata of", &path, e))?;
        }
        // One syncfs for the whole tree: an fsync per file and directory costs
        // a journal commit each (50 000 small files: 28-30 s that way, 0.7 s
        // for the syncfs). It also flushes whatever else is dirty on that
        // filesystem, which a restore has to wait for anyway.
        let synced = std::time::Instant::now();
        rustix::fs::syncfs(&self.root)
            .map_err(std::io::Error::from)
            .at("syncing the filesystem of", &self.staging)?;
        tracing::debug!(
            sync_ms = synced.elapsed().as_millis() as u64,
            "extracted tree synced"
        );
        Ok(())
    }

    /// The parent directory of `path`, created (with its missing ancestors) if
    /// the archive did not list it first.
    fn parent(&mut self, path: &EntryPath) -> Result<&OwnedFd> {
        let parent = path.parent();
        let hit = matches!(&self.cached, Some((p, _)) if p.as_slice() == parent);
        if !hit {
            self.ensure_dirs(parent)?;
            let fd = self
                .open_dir(parent)
                .map_err(|e| self.io_error("opening", parent, e))?;
            self.cached = Some((parent.to_vec(), fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd),
            None => unreachable!("the cache was just filled"),
        }
    }

    /// Create the directories of `dir` that do not exist yet, as 0700.
    fn ensure_dirs(&mut self, dir: &[u8]) -> Result<()> {
        if dir.is_empty() || self.dirs.contains_key(dir) {
            return Ok(());
        }
        // The longest prefix that exists, then each missing component below it.
        let ends: Vec<usize> = dir
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| i)
            .chain([dir.len()])
            .collect();
        let first_missing = ends
            .iter()
            .position(|&end| !self.dirs.contains_key(&dir[..end]))
            .unwrap_or(ends.len());
        let mut start = match first_missing {
            0 => 0,
            i => ends[i - 1] + 1,
        };
        let base = if first_missing == 0 {
            &dir[..0]
        } else {
            &dir[..start - 1]
        };
        let mut fd = self
            .open_dir(base)
            .map_err(|e| self.io_error("opening", base, e))?;
        for &end in &ends[first_missing..] {
            let name = &dir[start..end];
            let here = &dir[..end];
            match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(DIR_CREATE_MODE)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    return Err(super::stream::refused(
                        &self.archive,
                        &DirName(here),
                        "is needed as a directory, but an earlier entry made it a file or link",
                    ));
                }
                Err(e) => return Err(self.io_error("creating", here, e)),
            }
            self.dirs.insert(dir[..end].to_vec(), None);
            fd = rustix::fs::openat2(&fd, name, DIR, Mode::empty(), BENEATH)
                .map_err(|e| self.io_error("opening", here, e))?;
            start = end + 1;
        }
        Ok(())
    }

    /// Open a directory of the tree (`b""`: the staging directory).
    fn open_dir(&self, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        rustix::fs::openat2(&self.root, rel, DIR, Mode::empty(), BENEATH)
    }

    /// An entry could not be created: `EEXIST` means the archive names it twice.
    fn create_error(&self, path: &EntryPath, e: Errno) -> Error {
        match e {
            Errno::EXIST => {
                super::stream::refused(&self.archive, path, "is a duplicate entry in the archive")
            }
            e => self.io_error("creating", path.as_bytes(), e),
        }
    }

    fn io_error(&self, action: &'static str, rel: &[u8], e: Errno) -> Error {
        Error::Io {
            action,
            path: self.staging.join(OsStr::from_bytes(rel)),
            source: e.into(),
        }
    }
}

/// A directory's relative path, displayed.
struct DirName<'a>(&'a [u8]);

impl Display for DirName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

/// Owner and time of a symlink, never of what it points to.
fn set_link_meta(
    parent: &OwnedFd,
    name: &[u8],
    meta: Meta,
    same_owner: bool,
) -> rustix::io::Result<()> {
    if same_owner {
        let (uid, gid) = owner(meta);
        let nofollow = AtFlags::SYMLINK_NOFOLLOW;
        rustix::fs::chownat(parent, name, Some(uid), Some(gid), nofollow)?;
    }
    rustix::fs::utimensat(parent, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
}

fn owner(meta: Meta) -> (Uid, Gid) {
    (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid))
}
