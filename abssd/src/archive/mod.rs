//! Backup archives: the walk that lists what goes in ([`walk`]), and the single
//! streaming pass walk → tar → zstd/gzip/none → sha256 → file ([`write`]).
//!
//! * `writer` — tar entries and the pass itself, on a blocking thread.
//! * `sink`   — the compression stage and the writer thread that hashes and
//!   writes the archive bytes.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::ops::ByteProgress;

pub mod sidecar;
mod sink;
mod writer;

pub use writer::{Codec, Written, write};

/// One entry of the archive, in write order.
#[derive(Debug, Clone)]
pub struct Member {
    /// Path inside the archive (`<id>/data/...`).
    pub name: String,
    /// What to write.
    pub body: Body,
    /// Permission bits (setuid/setgid kept as found; extraction drops them).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
}

/// The content of a [`Member`].
#[derive(Debug, Clone)]
pub enum Body {
    /// A directory.
    Dir,
    /// A regular file read from disk; `size` as seen by the walk.
    File {
        /// Source path.
        path: PathBuf,
        /// Bytes to store.
        size: u64,
    },
    /// A symlink, stored as a symlink.
    Symlink(PathBuf),
    /// Bytes produced by the daemon (metadata files).
    Bytes(Vec<u8>),
}

impl Member {
    /// Content bytes this member contributes (for progress totals).
    pub fn content_len(&self) -> u64 {
        match &self.body {
            Body::File { size, .. } => *size,
            Body::Bytes(b) => b.len() as u64,
            Body::Dir | Body::Symlink(_) => 0,
        }
    }

    /// A member with the metadata of a file on disk.
    pub fn from_meta(name: String, body: Body, meta: &Metadata) -> Member {
        Member {
            name,
            body,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
        }
    }

    /// A member made by the daemon (owned by it, mode 0640/0750, mtime now).
    pub fn synthetic(name: String, body: Body) -> Member {
        let mode = if matches!(body, Body::Dir) {
            0o750
        } else {
            0o640
        };
        Member {
            name,
            body,
            mode,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mtime: jiff::Timestamp::now().as_second(),
        }
    }
}

/// Something the walk could not archive, reported as a warning.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Path on disk.
    pub path: PathBuf,
    /// Why.
    pub reason: &'static str,
}

/// List `root` (which must be a directory) as members named `<prefix>/<relative>`,
/// depth first in name order. Symlinks are recorded, never followed; sockets,
/// FIFOs and device nodes are skipped and reported.
pub fn walk(root: &Path, prefix: &str) -> Result<(Vec<Member>, Vec<Skipped>)> {
    let meta = std::fs::metadata(root).at("reading", root)?;
    if !meta.is_dir() {
        return Err(Error::Environment(format!(
            "{} is not a directory; check the instance's paths.root in the registry",
            root.display()
        )));
    }
    let mut out = vec![Member::from_meta(format!("{prefix}/"), Body::Dir, &meta)];
    let mut skipped = Vec::new();
    walk_dir(root, prefix, &mut out, &mut skipped)?;
    Ok((out, skipped))
}

fn walk_dir(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Member>,
    skipped: &mut Vec<Skipped>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .at("listing", dir)?
        .collect::<std::io::Result<Vec<_>>>()
        .at("listing", dir)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            skipped.push(Skipped {
                path,
                reason: "name is not valid UTF-8",
            });
            continue;
        };
        let meta = std::fs::symlink_metadata(&path).at("reading", &path)?;
        let member_name = format!("{prefix}/{name}");
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push(Member::from_meta(
                format!("{member_name}/"),
                Body::Dir,
                &meta,
            ));
            walk_dir(&path, &member_name, out, skipped)?;
        } else if ft.is_file() {
            let body = Body::File {
                path: path.clone(),
                size: meta.len(),
            };
            out.push(Member::from_meta(member_name, body, &meta));
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).at("reading link", &path)?;
            out.push(Member::from_meta(member_name, Body::Symlink(target), &meta));
        } else {
            skipped.push(Skipped {
                path,
                reason: "not a regular file, directory or symlink",
            });
        }
    }
    Ok(())
}

/// Hash a file (verify), pushing byte progress. Blocking.
pub fn sha256_file(path: &Path, progress: &mut ByteProgress<'_>) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.add(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// An error while writing an archive. A full disk is the host's problem
/// (`environment`), anything else an archive failure.
pub(crate) fn write_error(e: std::io::Error) -> crate::Error {
    if e.kind() == std::io::ErrorKind::StorageFull {
        crate::Error::Environment(format!(
            "writing the archive failed: {e}; free some space in the backups root"
        ))
    } else {
        crate::Error::Archive(format!("writing the archive failed: {e}"))
    }
}
