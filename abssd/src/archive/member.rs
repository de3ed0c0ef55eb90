//! What goes into an archive: one [`Member`] per tar entry, in write order,
//! and where its content comes from ([`Body`], [`Origin`]).

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::tree::{self, Gone, Ident, Tree};

/// One entry of the archive, in write order.
#[derive(Debug, Clone)]
pub struct Member {
    /// Path inside the archive (`<id>/data/...`), as the bytes the
    /// filesystem gave: names need not be UTF-8, and are stored as they are,
    /// as GNU tar stores them.
    pub name: Vec<u8>,
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
    /// The name, for messages.
    pub fn shown(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// The name as a path, for the tar builder (which stores its bytes as they are).
    pub fn path(&self) -> &std::path::Path {
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.name))
    }

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
    pub fn from_meta(name: impl Into<Vec<u8>>, body: Body, meta: &Metadata) -> Member {
        Member {
            name: name.into(),
            body,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
        }
    }

    /// A member with the metadata a `statx` gave.
    pub fn from_stat(name: impl Into<Vec<u8>>, body: Body, st: &rustix::fs::Statx) -> Member {
        Member {
            name: name.into(),
            body,
            mode: u32::from(st.stx_mode) & 0o7777,
            uid: st.stx_uid,
            gid: st.stx_gid,
            mtime: st.stx_mtime.tv_sec,
        }
    }

    /// A member made by the daemon (owned by it, mode 0640/0750, mtime now).
    pub fn synthetic(name: impl Into<Vec<u8>>, body: Body) -> Member {
        let mode = if matches!(body, Body::Dir) {
            0o750
        } else {
            0o640
        };
        Member {
            name: name.into(),
            body,
            mode,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mtime: jiff::Timestamp::now().as_second(),
        }
    }
}

/// The longest member name restore accepts, in bytes (extraction's `PATH_MAX`:
/// a longer relative path cannot be opened beneath its staging directory).
/// The walk leaves longer ones out, so that every backup it makes restores.
pub const MAX_NAME: usize = crate::extract::MAX_PATH;
