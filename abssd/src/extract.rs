//! Extraction you can trust: an archive (ours or GNU tar's) unpacked into a
//! staging directory, hashed in the same pass, refusing anything that could
//! reach outside the staging directory.
//!
//! Two threads: one reads the archive file, hashes every byte and decompresses
//! (`source`); the calling thread parses tar entries (astral-tokio-tar, driven
//! by a plain poll loop) and creates each entry itself (`tree`) beneath one
//! descriptor of the staging directory. Names and link targets are checked by
//! `names` before anything is created.
//!
//! * `bounds` — what the caller expects, caps on entries and content, the
//!   free-space reserve.
//! * `entry`  — one entry: type, metadata, content, then the tree creates it.
//! * `inspect` — reading an archive through without creating anything (adopt).
//! * `names`  — which entry names, symlink and hardlink targets are accepted.
//! * `source` — read + sha256 + decompress thread, and the bounded chunk channel.
//! * `stream` — one pass over an archive (the reader thread beside the tar
//!   parser), how an archive must end, and the errors that explain a bad one.
//! * `tree`   — fd-relative creation, metadata, directory modes, durability.

use std::fs::File;
use std::path::Path;
use std::rc::Rc;

use futures_util::StreamExt;

use crate::error::{Error, IoContext, Result};

mod bounds;
mod entry;
mod inspect;
mod names;
mod source;
mod stream;
mod tree;

use bounds::Room;
pub use bounds::{Expect, Limits, RESERVE_MAX_BYTES, RESERVE_MAX_INODES, Reserve};
pub use inspect::{INSTANCE_JSON_MAX, Inspected, Visit, inspect, inspect_with};
pub use names::MAX_PATH;
use source::{ChunkReader, Meter};
use stream::{HEADER_ALLOWANCE, check_end, stream, stream_error};
pub use tokio_tar::EntryType;
use tree::Tree;

/// What was extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// sha256 of the archive file as read, hex (equal to [`Expect::sha256`]).
    pub sha256: String,
    /// Bytes in the archive file.
    pub archive_bytes: u64,
    /// Tar entries extracted (files, directories, symlinks, hardlinks).
    pub entries: u64,
    /// Bytes of entry content written.
    pub content_bytes: u64,
}

/// Why extraction would refuse a symlink named `member` (an archive path under
/// `<top>/`) pointing at `target`, if it would. `backup create` applies the
/// same rule to what it archives, so that a backup it reports restores.
pub(crate) fn refused_symlink(member: &[u8], top: &str, target: &[u8]) -> Option<String> {
    match names::entry_path(member, top, false) {
        Ok(path) => names::check_symlink(&path, target).err(),
        Err(why) => Some(why.to_owned()),
    }
}

/// Extract `archive` into `staging`, checking it against `expect`.
///
/// Blocking: the caller runs it in `spawn_blocking`. `staging` is an existing,
/// empty directory; everything is created beneath it, and on any error the
/// caller removes it (a checksum mismatch is only known once the whole archive
/// has been read, and so extracted). `progress(n)` is called with the number of
/// raw archive bytes read since the previous call.
pub fn extract(
    archive: &Path,
    staging: &Path,
    expect: &Expect,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Extracted> {
    let top = expect.top.as_str();
    if top.is_empty() || top == "." || top == ".." || top.contains(['/', '\0']) {
        return Err(Error::validation(format!(
            "backup id {top:?} cannot name a directory"
        )));
    }
    let file = File::open(archive).at("opening", archive)?;
    let mut tree = Tree::open(staging, archive, expect.same_owner)?;
    let started = std::time::Instant::now();
    let (counts, hashed) = stream(
        file,
        archive,
        expect.algorithm,
        progress,
        |reader, meter| unpack(reader, meter, &mut tree, expect, archive),
    )?;
    tracing::debug!(
        stream_ms = started.elapsed().as_millis() as u64,
        entries = counts.entries,
        content_bytes = counts.content_bytes,
        "archive extracted"
    );
    if !hashed.sha256.eq_ignore_ascii_case(expect.sha256.trim()) {
        return Err(Error::CorruptArchive(format!(
            "checksum mismatch for {}: expected {}, got {}; the archive is corrupt or was changed",
            archive.display(),
            expect.sha256.trim(),
            hashed.sha256
        )));
    }
    tree.finish()?;
    Ok(Extracted {
        sha256: hashed.sha256,
        archive_bytes: hashed.bytes,
        entries: counts.entries,
        content_bytes: counts.content_bytes,
    })
}

#[derive(Debug, Default)]
struct Counts {
    entries: u64,
    content_bytes: u64,
}

/// Parse the decompressed stream and create every entry.
async fn unpack(
    reader: ChunkReader,
    meter: Rc<Meter>,
    tree: &mut Tree,
    expect: &Expect,
    archive: &Path,
) -> Result<Counts> {
    let meter: &Meter = &meter;
    let mut tar = tokio_tar::Archive::new(reader);
    let mut entries = tar
        .entries()
        .map_err(|e| Error::Internal(format!("reading tar entries: {e}")))?;
    let mut buf = vec![0u8; source::CHUNK];
    let mut counts = Counts::default();
    let mut room = Room::default();
    loop {
        meter.allow(HEADER_ALLOWANCE);
        let mut entry = match entries.next().await {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(stream_error(archive, meter, None, e)),
        };
        let size = entry.effective_size();
        let total = counts.content_bytes.saturating_add(size);
        expect.limits.admit(counts.entries, total, archive)?;
        if total > expect.max_bytes {
            return Err(Error::Environment(format!(
                "extracting {} would need more than {} bytes; not enough free space at {} once the reserve kept for everything else there is left free (daemon.restore_reserve_percent); stopped, nothing was changed. Free some space there or restore elsewhere",
                archive.display(),
                expect.max_bytes,
                tree.staging().display(),
            )));
        }
        room.take(size, tree, expect.reserve, archive)?;
        meter.allow(size);
        entry::one_entry(&mut entry, size, tree, expect, archive, meter, &mut buf).await?;
        counts.entries += 1;
        counts.content_bytes = total;
        hook_point!("extract::after-entry");
    }
    drop(entries);
    check_end(tar, meter, counts.entries, archive)?;
    Ok(counts)
}
