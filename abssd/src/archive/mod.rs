//! Backup archives: the walk that lists what goes in ([`walk`]), and the single
//! streaming pass walk → tar → zstd/gzip/none → sha256 → file ([`write`]).
//!
//! * `tree`   — the instance's data tree, reached only through descriptors;
//!   nothing is opened through a symlink or if it changed since the walk.
//! * `walk`   — listing a tree depth first, with the same few descriptors at any depth.
//! * `writer` — tar entries and the pass itself, on a blocking thread.
//! * `sink`   — the compression stage and the writer thread that hashes and
//!   writes the archive bytes.
//! * `capture` — what snapshot mode does to the walk: databases found by their
//!   header, their journals left out, blobs marked to be read until stable.
//! * `snapshot` — SQLite databases read in place while a read transaction of
//!   SQLite's, in a chrooted thread, holds them at their last committed state.
//! * `stable` — blobs read until they hold still.
//!
//! The blob copies snapshot mode archives wait for their tar entry, one at a
//! time, in the create's [scratch](crate::scratch) directory; databases are
//! read in place.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub mod capture;
pub mod sidecar;
mod sink;
pub mod snapshot;
mod stable;
pub mod tree;
mod walk;
mod writer;

pub use tree::{Gone, Ident, Tree};
pub use walk::{Budget, walk};
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
    /// A regular file read from disk, if it is still the one the walk saw.
    File {
        /// Where it is.
        from: Origin,
        /// What the walk saw there.
        ident: Ident,
        /// Bytes to store (its size as the walk saw it).
        size: u64,
    },
    /// A SQLite database of a running instance, read in place just before its
    /// entry is written while SQLite holds it at its last committed state
    /// (`--consistency snapshot`).
    Database {
        /// The walked tree it is in.
        tree: Arc<Tree>,
        /// Its path in the tree.
        rel: Vec<u8>,
        /// What the walk saw there.
        ident: Ident,
        /// Its size at the walk (the one under SQLite's lock may differ).
        size: u64,
    },
    /// A file rewritten in place by its owner (Actual's blobs), archived as a
    /// copy read until it held still (`--consistency snapshot`).
    Stable {
        /// Where it is.
        from: Origin,
        /// What the walk saw there.
        ident: Ident,
        /// Its size at the walk.
        size: u64,
        /// Where the copy is made.
        scratch: Arc<crate::scratch::Scratch>,
    },
    /// A symlink, stored as a symlink.
    Symlink(PathBuf),
    /// Bytes produced by the daemon (metadata files).
    Bytes(Vec<u8>),
}

/// Where a [`Body::File`] is read from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Inside a walked tree (relative path): opened through the tree's
    /// descriptors, never through a symlink.
    Tree(Arc<Tree>, Vec<u8>),
    /// A path the daemon trusts (unit and site files, outside any instance
    /// user's reach).
    Path(PathBuf),
}

impl Origin {
    /// The path on disk, for messages.
    pub fn display(&self) -> PathBuf {
        match self {
            Origin::Tree(tree, rel) => tree.display(rel),
            Origin::Path(p) => p.clone(),
        }
    }

    /// Open it for reading, only if it is still the regular file `ident`.
    pub fn open(&self, ident: Ident) -> std::result::Result<tree::LiveFile, Gone> {
        match self {
            Origin::Tree(tree, rel) => tree.open_file(rel, ident),
            Origin::Path(p) => tree::open_trusted(p, ident),
        }
    }
}

impl Member {
    /// Content bytes this member contributes (for progress totals).
    pub fn content_len(&self) -> u64 {
        match &self.body {
            Body::File { size, .. } | Body::Database { size, .. } | Body::Stable { size, .. } => {
                *size
            }
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

    /// A member with the metadata a `statx` gave.
    pub fn from_stat(name: String, body: Body, st: &rustix::fs::Statx) -> Member {
        Member {
            name,
            body,
            mode: u32::from(st.stx_mode) & 0o7777,
            uid: st.stx_uid,
            gid: st.stx_gid,
            mtime: st.stx_mtime.tv_sec,
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

/// Something left out of the archive, reported as a warning.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Path on disk.
    pub path: PathBuf,
    /// Why, for people.
    pub reason: String,
    /// What became of it.
    pub kind: SkipKind,
}

/// What became of a [`Skipped`] file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// Not in the archive.
    LeftOut,
    /// In the archive, padded: it shrank while it was read.
    Incomplete,
    /// In the archive as read, but it was written to while it was read (its
    /// size or mtime changed), so it may be torn.
    Changed,
}

impl Skipped {
    /// The warning shown in the create's events and result: bounded, however
    /// long the path or the symlink target it names.
    pub fn warning(&self) -> String {
        format!(
            "{} {}: {}",
            match self.kind {
                SkipKind::LeftOut => "left out",
                SkipKind::Incomplete => "incomplete",
                SkipKind::Changed => "changed",
            },
            elide(&self.path.display().to_string()),
            elide(&self.reason)
        )
    }
}

/// Most warnings one create reports one by one; the rest are counted.
pub const MAX_WARNINGS: usize = 50;
/// Longest path or reason shown in a warning, in characters.
const MAX_SHOWN: usize = 512;
/// The longest member name restore accepts, in bytes (extraction's `PATH_MAX`:
/// a longer relative path cannot be opened beneath its staging directory).
/// The walk leaves longer ones out, so that every backup it makes restores.
pub const MAX_NAME: usize = crate::extract::MAX_PATH;

/// The warnings for what was left out: the first [`MAX_WARNINGS`], then a count.
pub fn warnings(skipped: &[Skipped]) -> Vec<String> {
    let mut out: Vec<String> = skipped
        .iter()
        .take(MAX_WARNINGS)
        .map(Skipped::warning)
        .collect();
    if skipped.len() > MAX_WARNINGS {
        out.push(format!(
            "... and {} more left out, {} in all",
            skipped.len() - MAX_WARNINGS,
            skipped.len()
        ));
    }
    out
}

/// `text` with its middle replaced by `...` when it is longer than [`MAX_SHOWN`].
fn elide(text: &str) -> String {
    let n = text.chars().count();
    if n <= MAX_SHOWN {
        return text.to_owned();
    }
    let keep = MAX_SHOWN / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(n - keep).collect();
    format!("{head}...{tail}")
}

/// Hash a file (verify). `progress(n)` gets the bytes read. Blocking.
pub fn sha256_file(path: &Path, progress: &mut (dyn FnMut(u64) + Send)) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress(n as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(path: &str, reason: &str) -> Skipped {
        Skipped {
            path: PathBuf::from(path),
            reason: reason.to_owned(),
            kind: SkipKind::LeftOut,
        }
    }

    #[test]
    fn warnings_are_bounded_in_number_and_length() {
        let many: Vec<_> = (0..MAX_WARNINGS + 7)
            .map(|i| skipped(&format!("/d/{i}"), "why"))
            .collect();
        let w = warnings(&many);
        assert_eq!(w.len(), MAX_WARNINGS + 1);
        assert_eq!(w[0], "left out /d/0: why");
        assert_eq!(
            w[MAX_WARNINGS],
            format!("... and 7 more left out, {} in all", MAX_WARNINGS + 7)
        );
        assert_eq!(warnings(&many[..3]).len(), 3);

        let long = skipped(&format!("/{}/end", "x".repeat(5000)), &"y".repeat(5000));
        let w = long.warning();
        assert!(w.len() < 2 * MAX_SHOWN + 32, "{}", w.len());
        assert!(
            w.starts_with("left out /xxx") && w.contains("x...x") && w.contains("x/end: yyy"),
            "{w}"
        );
    }
}
