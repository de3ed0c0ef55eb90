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
//! * `entry`  — one entry: type, metadata, content, then the tree creates it.
//! * `inspect` — reading an archive through without creating anything (adopt).
//! * `names`  — which entry names, symlink and hardlink targets are accepted.
//! * `source` — read + sha256 + decompress thread, and the bounded chunk channel.
//! * `tree`   — fd-relative creation, metadata, directory modes, durability.

use std::fmt::Display;
use std::fs::File;
use std::path::Path;
use std::rc::Rc;

use abssd_proto::Algorithm;
use futures_util::StreamExt;

use crate::error::{Error, IoContext, Result};

mod entry;
mod inspect;
mod names;
mod source;
mod tree;

pub use inspect::{Inspected, inspect};
use names::EntryPath;
use source::{ChunkReader, Hashed, Meter, PumpError, block_on};
use tree::Tree;

/// What the caller knows about the archive before extracting it.
#[derive(Debug, Clone)]
pub struct Expect {
    /// How the archive is compressed.
    pub algorithm: Algorithm,
    /// Expected sha256 of the archive file, hex (from its sidecar / the index).
    pub sha256: String,
    /// The backup id: every entry must be under `<top>/`.
    pub top: String,
    /// Bound on the total bytes of entry content (from the free-space check).
    pub max_bytes: u64,
    /// Restore numeric owners (true when running as root).
    pub same_owner: bool,
}

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
pub(crate) fn refused_symlink(member: &str, top: &str, target: &[u8]) -> Option<String> {
    match names::entry_path(member.as_bytes(), top, false) {
        Ok(path) => names::check_symlink(&path, target).err(),
        Err(why) => Some(why.to_owned()),
    }
}

/// Bytes the tar parser may read for one entry's headers (GNU long names, pax
/// records) before its content: far above any real name, far below memory.
const HEADER_ALLOWANCE: u64 = 1 << 20;

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
        return Err(Error::Archive(format!(
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

/// Read `file` through on a thread of its own (hashing and decompressing) while
/// `parse` consumes the decompressed stream on this one; the parser's result
/// and what the reader found, or the error that explains the failure best.
fn stream<T, F, Fut>(
    file: File,
    archive: &Path,
    algorithm: Algorithm,
    progress: &mut (dyn FnMut(u64) + Send),
    parse: F,
) -> Result<(T, Hashed)>
where
    F: FnOnce(ChunkReader, Rc<Meter>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let meter = Rc::new(Meter::default());
    let (parsed, pumped) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(source::QUEUE);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::channel();
        let pump = std::thread::Builder::new()
            .name("abssd-extract-read".into())
            .spawn_scoped(s, move || {
                source::pump(file, algorithm, tx, recycle_rx, progress)
            })
            .map_err(|e| Error::Internal(format!("starting the archive reader: {e}")))?;
        let reader = ChunkReader::new(rx, recycle_tx, Rc::clone(&meter));
        // The reader (and with it the channel) is dropped when `parse` returns,
        // so a read thread blocked on a full channel always wakes up.
        let parsed = block_on(parse(reader, Rc::clone(&meter)))
            .unwrap_or_else(|| Err(Error::Internal("the tar reader made no progress".into())));
        let pumped = pump
            .join()
            .map_err(|_| Error::Internal("the archive reader panicked".into()))?;
        Ok::<_, Error>((parsed, pumped))
    })?;
    match (parsed, pumped) {
        (Ok(parsed), Ok(hashed)) => Ok((parsed, hashed)),
        // The tar side failed on its own, before the point where reading stopped.
        (Err(e), Ok(_) | Err(PumpError::Stopped)) => Err(e),
        (Err(e), Err(_)) if !meter.eof() => Err(e),
        (_, Err(PumpError::Read(e))) => Err(e).at("reading", archive),
        (_, Err(PumpError::Decode(e))) => {
            Err(corrupt(archive, format!("{} data: {e}", codec(algorithm))))
        }
        (Ok(_), Err(PumpError::Stopped)) => {
            Err(Error::Internal("the archive reader stopped early".into()))
        }
    }
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
    loop {
        meter.allow(HEADER_ALLOWANCE);
        let mut entry = match entries.next().await {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(stream_error(archive, meter, None, e)),
        };
        let size = entry.effective_size();
        let total = counts.content_bytes.saturating_add(size);
        if total > expect.max_bytes {
            return Err(Error::Environment(format!(
                "extracting {} would need more than {} bytes; not enough free space at {} (free some space or restore elsewhere)",
                archive.display(),
                expect.max_bytes,
                tree.staging().display(),
            )));
        }
        meter.allow(size);
        entry::one_entry(&mut entry, size, tree, expect, archive, meter, &mut buf).await?;
        counts.entries += 1;
        counts.content_bytes = total;
    }
    if meter.eof() {
        return Err(corrupt(archive, "it ends without an end-of-archive marker"));
    }
    if counts.entries == 0 {
        return Err(corrupt(archive, "it holds no entries"));
    }
    drop(entries);
    let mut reader = tar
        .into_inner()
        .map_err(|_| Error::Internal("the tar reader is still shared".into()))?;
    if !reader.drain_zeros() {
        return Err(corrupt(
            archive,
            "there is data after its end-of-archive marker",
        ));
    }
    Ok(counts)
}

/// An error from the tar parser, explained: truncated, an oversized header, or
/// a corrupt one.
fn stream_error(archive: &Path, meter: &Meter, at: Option<&EntryPath>, e: std::io::Error) -> Error {
    let place = at.map(|p| format!(" in entry {p}")).unwrap_or_default();
    if meter.over() {
        corrupt(
            archive,
            format!("a header{place} is larger than {HEADER_ALLOWANCE} bytes"),
        )
    } else if meter.eof() {
        corrupt(archive, format!("it ends unexpectedly{place}"))
    } else {
        corrupt(archive, format!("{e}{place}"))
    }
}

/// The archive is damaged.
fn corrupt(archive: &Path, what: impl Display) -> Error {
    Error::Archive(format!(
        "{} is truncated or corrupt: {what}",
        archive.display()
    ))
}

/// The archive holds an entry that extraction refuses.
fn refused(archive: &Path, entry: &dyn Display, why: impl Display) -> Error {
    Error::Archive(format!(
        "refusing to extract {}: entry {:?} {why}",
        archive.display(),
        entry.to_string()
    ))
}

fn codec(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Zstd => "zstd",
        Algorithm::Gzip => "gzip",
        Algorithm::None => "tar",
    }
}
