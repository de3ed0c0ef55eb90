//! The local side of a pull: the archive's directory, opened beneath the
//! backups root with nothing followed, and the files made in it by name.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::{Record, Step};

/// The directory of an archive, by descriptor.
pub(super) struct Dir {
    fd: OwnedFd,
    /// Where it is, for messages.
    path: PathBuf,
    /// The archive's file name.
    archive: OsString,
}

impl Dir {
    /// Open the directory of `archive`, which must be a file named like an
    /// archive beneath `root`, with no symlink on the way (an index entry is
    /// text others may have written: a pull never writes where it says
    /// unless that is where archives are). The directory is made (as create
    /// makes it) when missing.
    pub(super) fn open(root: &Path, archive: &Path) -> Result<Dir> {
        let refused = || {
            Error::validation(format!(
                "the archive path {} is not a file named like an archive (*.tar, *.tar.gz, *.tar.zst) beneath the backups root {}; not pulling there",
                archive.display(),
                root.display()
            ))
        };
        let rel = archive.strip_prefix(root).map_err(|_| refused())?;
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refused());
        }
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            return Err(refused());
        };
        if name
            .to_str()
            .and_then(abssd_proto::Algorithm::from_file_name)
            .is_none()
        {
            return Err(refused());
        }
        let dir_path = root.join(parent);
        // Made as create makes it; then opened without following anything
        // below the root (which is configuration, and may be a symlink).
        fsutil::ensure_dir(&dir_path)?;
        let fd = fsutil::open_beneath(root, parent).map_err(|e| match e {
            fsutil::Beneath::Root(source) => Error::Io {
                action: "opening",
                path: root.to_owned(),
                source,
            },
            fsutil::Beneath::Below(e) => Error::Environment(format!(
                "cannot open {} beneath the backups root without following a symlink: {e}",
                dir_path.display()
            )),
        })?;
        Ok(Dir {
            fd,
            path: dir_path,
            archive: name.to_owned(),
        })
    }

    /// The archive's size when it is there with SHA-256 `expect`; `None`
    /// when it is not there; refused when something else is there.
    pub(super) fn present(&self, expect: &str) -> Result<Option<u64>> {
        let path = self.path.join(&self.archive);
        let fd = match rustix::fs::openat(
            &self.fd,
            self.archive.as_os_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(Error::Environment(format!(
                    "{} is there but cannot be opened as a file ({e}); not replacing it",
                    path.display()
                )));
            }
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)
            .at("reading", &path)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::Environment(format!(
                "{} is there and is not a regular file; not replacing it",
                path.display()
            )));
        }
        let mut file = File::from(fd);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at("reading", &path),
            };
            hash.update(&buf[..n]);
            size += n as u64;
        }
        let found = hex::encode(hash.finalize());
        if found != expect {
            return Err(Error::Environment(format!(
                "{} is there with SHA-256 {found}, not the {expect} its index entry records; not replacing it (move it away, or run abssctl backup verify)",
                path.display()
            )));
        }
        Ok(Some(size))
    }

    /// Bytes free for root on the directory's filesystem.
    pub(super) fn free_bytes(&self) -> Result<u64> {
        let st = rustix::fs::fstatvfs(&self.fd)
            .map_err(std::io::Error::from)
            .at("reading the free space of", &self.path)?;
        Ok(st.f_bfree.saturating_mul(st.f_frsize))
    }

    /// Where it is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// A new file `name` in the directory, created exclusively, as archives
    /// are ([`fsutil::FILE_MODE`]).
    pub(super) fn create(&self, name: &OsStr) -> Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(fsutil::FILE_MODE),
        )
        .map_err(std::io::Error::from)
        .at("creating", &self.path.join(name))?;
        // The umask may have taken bits away; the mode is the archive's.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(fsutil::FILE_MODE))
            .map_err(std::io::Error::from)
            .at("setting the mode of", &self.path.join(name))?;
        Ok(File::from(fd))
    }

    /// Rename `temp` to the archive's name, only if nothing has that name,
    /// and make it durable.
    pub(super) fn rename_into_place(&self, temp: &OsStr) -> Result<()> {
        match rustix::fs::renameat_with(
            &self.fd,
            temp,
            &self.fd,
            self.archive.as_os_str(),
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                return Err(Error::Environment(format!(
                    "{} appeared while the copy was downloaded; not replacing it",
                    self.path.join(&self.archive).display()
                )));
            }
            Err(e) => {
                return Err(std::io::Error::from(e)).at("renaming", &self.path.join(temp));
            }
        }
        rustix::fs::fsync(&self.fd)
            .map_err(std::io::Error::from)
            .at("syncing", &self.path)
    }

    /// Remove file `name` if it is there (a regular file; nothing else).
    pub(super) fn remove(&self, name: &OsStr) -> Result<()> {
        let path = self.path.join(name);
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            Ok(_) => {
                return Err(Error::Environment(format!(
                    "{} is not a regular file; not removed",
                    path.display()
                )));
            }
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(std::io::Error::from(e)).at("reading", &path),
        }
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(std::io::Error::from(e)).at("removing", &path),
        }
    }
}

/// Start-up recovery of a pull the daemon stopped during: its temporary
/// file is removed (an archive it had renamed into place is the checked
/// copy, and stays: a verify or reconcile records it). What was done, for
/// the log; `Err` when a file could not be removed (the journal stays).
/// Blocking.
pub fn recover(backups_root: &Path, record: &Record) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for step in &record.steps {
        let Step::Download { temp, archive } = step else {
            continue;
        };
        let name = temp.file_name().unwrap_or_default();
        // Only a name a pull makes, beside the archive it names.
        let expected = fsutil::hidden_sibling(archive, "pull", &record.op_id);
        if temp != &expected {
            return Err(Error::Internal(format!(
                "the journal names {} as a pull's temporary file of {}; left alone",
                temp.display(),
                archive.display()
            )));
        }
        let dir = Dir::open(backups_root, archive)?;
        let there = rustix::fs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok();
        dir.remove(name)?;
        if there {
            done.push(format!("removed the partial download {}", temp.display()));
        }
    }
    Ok(done)
}
