//! Backup archives: the walk that lists what goes in ([`walk`]), and the single
//! streaming pass walk → tar → zstd/gzip/none → sha256 → file ([`write`]).
//!
//! * `member` — what goes in: one member per tar entry and where its bytes
//!   come from.
//! * `skipped` — what was left out or archived imperfectly, as bounded warnings.
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

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

pub mod capture;
mod member;
pub mod sidecar;
mod sink;
mod skipped;
pub mod snapshot;
mod stable;
pub mod tree;
mod walk;
mod writer;

pub use member::{Body, MAX_NAME, Member, Origin};
pub use skipped::{MAX_WARNINGS, SkipKind, Skipped, warnings};
pub use tree::{Gone, Ident, Tree};
pub use walk::{Budget, walk};
pub use writer::{Codec, Written, write};

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
