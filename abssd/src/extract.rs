//! Extraction you can trust: an archive (ours or GNU tar's) unpacked into a
//! staging directory, hashed in the same pass, refusing anything that could
//! reach outside the staging directory.
//!
//! Two threads: one reads the archive file, hashes every byte and decompresses
//! ([`source`]); the calling thread parses tar entries (astral-tokio-tar, driven
//! by a plain poll loop) and creates each entry itself ([`tree`]) beneath one
//! descriptor of the staging directory. Names and link targets are checked by
//! [`names`] before anything is created.
//!
//! * `names`  — which entry names, symlink and hardlink targets are accepted.
//! * `source` — read + sha256 + decompress thread, and the bounded chunk channel.
//! * `tree`   — fd-relative creation, metadata, directory modes, durability.

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use abssd_proto::Algorithm;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_tar::{Entry, EntryType};

use crate::error::{Error, IoContext, Result};

mod names;
mod source;
mod tree;

use names::EntryPath;
use source::{ChunkReader, Meter, PumpError, block_on};
use tree::{Meta, Tree};

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
    let meter = Rc::new(Meter::default());
    let started = std::time::Instant::now();
    let (unpacked, pumped) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(source::QUEUE);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::channel();
        let algorithm = expect.algorithm;
        let pump = std::thread::Builder::new()
            .name("abssd-extract-read".into())
            .spawn_scoped(s, move || {
                source::pump(file, algorithm, tx, recycle_rx, progress)
            })
            .map_err(|e| Error::Internal(format!("starting the archive reader: {e}")))?;
        let reader = ChunkReader::new(rx, recycle_tx, Rc::clone(&meter));
        // The reader (and with it the channel) is dropped when `unpack` returns,
        // so a read thread blocked on a full channel always wakes up.
        let unpacked = block_on(unpack(reader, &meter, &mut tree, expect, archive))
            .unwrap_or_else(|| Err(Error::Internal("the tar reader made no progress".into())));
        let pumped = pump
            .join()
            .map_err(|_| Error::Internal("the archive reader panicked".into()))?;
        Ok::<_, Error>((unpacked, pumped))
    })?;

    let (counts, hashed) = match (unpacked, pumped) {
        (Ok(counts), Ok(hashed)) => (counts, hashed),
        // The tar side failed on its own, before the point where reading stopped.
        (Err(e), Ok(_) | Err(PumpError::Stopped)) => return Err(e),
        (Err(e), Err(_)) if !meter.eof() => return Err(e),
        (_, Err(PumpError::Read(e))) => return Err(e).at("reading", archive),
        (_, Err(PumpError::Decode(e))) => {
            return Err(corrupt(
                archive,
                format!("{} data: {e}", codec(expect.algorithm)),
            ));
        }
        (Ok(_), Err(PumpError::Stopped)) => {
            return Err(Error::Internal("the archive reader stopped early".into()));
        }
    };
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

#[derive(Debug, Default)]
struct Counts {
    entries: u64,
    content_bytes: u64,
}

/// Parse the decompressed stream and create every entry.
async fn unpack(
    reader: ChunkReader,
    meter: &Meter,
    tree: &mut Tree,
    expect: &Expect,
    archive: &Path,
) -> Result<Counts> {
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
        one_entry(&mut entry, size, tree, expect, archive, meter, &mut buf).await?;
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

/// Check and create one entry.
async fn one_entry(
    entry: &mut Entry<tokio_tar::Archive<ChunkReader>>,
    size: u64,
    tree: &mut Tree,
    expect: &Expect,
    archive: &Path,
    meter: &Meter,
    buf: &mut [u8],
) -> Result<()> {
    let kind = entry.header().entry_type();
    let raw = entry
        .path_bytes()
        .map_err(|e| stream_error(archive, meter, None, e))?
        .into_owned();
    if !matches!(
        kind,
        EntryType::Regular | EntryType::Directory | EntryType::Symlink | EntryType::Link
    ) {
        return Err(refused(
            archive,
            &Lossy(&raw),
            format!(
                "is a {}; only regular files, directories, symlinks and hardlinks are extracted",
                type_name(kind)
            ),
        ));
    }
    let path = names::entry_path(&raw, &expect.top, kind == EntryType::Directory)
        .map_err(|why| refused(archive, &Lossy(&raw), why))?;
    if path.parent().is_empty() && kind != EntryType::Directory {
        return Err(refused(
            archive,
            &path,
            "names the backup's top directory but is not a directory",
        ));
    }
    let meta = entry_meta(entry)
        .await
        .map_err(|e| stream_error(archive, meter, Some(&path), e))?;
    match kind {
        EntryType::Regular => {
            let mut file = tree.create_file(&path)?;
            copy(entry, size, Some(&mut file), buf)
                .await
                .map_err(|e| copy_error(archive, meter, &path, tree, e))?;
            tree.finish_file(file, &path, meta)
        }
        EntryType::Directory => {
            skip(entry, size, archive, meter, &path, tree, buf).await?;
            tree.dir(&path, meta)
        }
        EntryType::Symlink => {
            let target = link_target(entry, archive, meter, &path)?;
            names::check_symlink(&path, &target).map_err(|why| refused(archive, &path, why))?;
            skip(entry, size, archive, meter, &path, tree, buf).await?;
            tree.symlink(&path, &target, meta)
        }
        EntryType::Link => {
            let raw_target = link_target(entry, archive, meter, &path)?;
            let target = names::entry_path(&raw_target, &expect.top, false).map_err(|why| {
                refused(
                    archive,
                    &path,
                    format!(
                        "is a hardlink to {:?}, which {why}",
                        Lossy(&raw_target).to_string()
                    ),
                )
            })?;
            skip(entry, size, archive, meter, &path, tree, buf).await?;
            tree.hardlink(&path, &target)
        }
        other => Err(Error::Internal(format!(
            "entry type {other:?} passed the type check"
        ))),
    }
}

/// Ownership, mode and mtime from the header (a pax `mtime` keeps its fraction).
async fn entry_meta<R: tokio::io::AsyncRead + Unpin>(
    entry: &mut Entry<R>,
) -> std::io::Result<Meta> {
    let h = entry.header();
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| std::io::Error::other(format!("{what} {v} is out of range")))
    };
    let mut meta = Meta {
        mode: h.mode()?,
        uid: id(h.uid()?, "uid")?,
        gid: id(h.gid()?, "gid")?,
        mtime: i64::try_from(h.mtime()?).unwrap_or(i64::MAX),
        mtime_nsec: 0,
    };
    if let Some(pax) = entry.pax_extensions().await? {
        for ext in pax {
            let ext = ext?;
            if ext.key_bytes() == b"mtime"
                && let Some((sec, nsec)) = ext.value().ok().and_then(pax_time)
            {
                meta.mtime = sec;
                meta.mtime_nsec = nsec;
            }
        }
    }
    Ok(meta)
}

/// A pax time, `[-]seconds[.fraction]`.
fn pax_time(v: &str) -> Option<(i64, u32)> {
    let (sec, frac) = v.split_once('.').unwrap_or((v, ""));
    let sec: i64 = sec.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nsec: u32 = digits.parse().ok()?;
    if v.starts_with('-') && nsec > 0 {
        // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
        return Some((sec - 1, 1_000_000_000 - nsec));
    }
    if nsec >= 1_000_000_000 {
        nsec = 999_999_999;
    }
    Some((sec, nsec))
}

/// A link entry's target, which it must have.
fn link_target<R: tokio::io::AsyncRead + Unpin>(
    entry: &Entry<R>,
    archive: &Path,
    meter: &Meter,
    path: &EntryPath,
) -> Result<Vec<u8>> {
    match entry.link_name_bytes() {
        Ok(Some(target)) => Ok(target.into_owned()),
        Ok(None) => Err(refused(archive, path, "is a link without a target")),
        Err(e) => Err(stream_error(archive, meter, Some(path), e)),
    }
}

/// Copy exactly `size` bytes of content into `out` (or nowhere).
async fn copy<R: tokio::io::AsyncRead + Unpin>(
    entry: &mut Entry<R>,
    size: u64,
    mut out: Option<&mut File>,
    buf: &mut [u8],
) -> std::result::Result<(), CopyError> {
    use std::io::Write;
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = entry
            .read(&mut buf[..want])
            .await
            .map_err(CopyError::Read)?;
        if n == 0 {
            return Err(CopyError::Read(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
        left -= n as u64;
    }
    Ok(())
}

/// Data carried by a directory or link entry (none in sane archives) is read
/// and dropped; it was counted against the size bound.
async fn skip<R: tokio::io::AsyncRead + Unpin>(
    entry: &mut Entry<R>,
    size: u64,
    archive: &Path,
    meter: &Meter,
    path: &EntryPath,
    tree: &Tree,
    buf: &mut [u8],
) -> Result<()> {
    copy(entry, size, None, buf)
        .await
        .map_err(|e| copy_error(archive, meter, path, tree, e))
}

#[derive(Debug)]
enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

fn copy_error(archive: &Path, meter: &Meter, path: &EntryPath, tree: &Tree, e: CopyError) -> Error {
    match e {
        CopyError::Read(e) => stream_error(archive, meter, Some(path), e),
        CopyError::Write(source) => Error::Io {
            action: "writing",
            path: tree.staging().join(OsStr::from_bytes(path.as_bytes())),
            source,
        },
    }
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

fn type_name(kind: EntryType) -> String {
    match kind {
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "FIFO".into(),
        EntryType::Continuous => "contiguous file".into(),
        EntryType::GNUSparse => "GNU sparse file".into(),
        EntryType::XGlobalHeader => "pax global header".into(),
        EntryType::SolarisXHeader => "Solaris extended header".into(),
        other => format!("entry of type {:?}", char::from(other.as_byte())),
    }
}

/// Raw name bytes, displayed.
struct Lossy<'a>(&'a [u8]);

impl Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_fraction() {
        assert_eq!(pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(pax_time("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(
            pax_time("1700000000.123456789123"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(pax_time("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(pax_time("x"), None);
        assert_eq!(pax_time("1.x"), None);
    }
}
