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

pub use inspect::{Inspected, Visit, inspect, inspect_with};
pub use names::MAX_PATH;
use source::{ChunkReader, Hashed, Meter, PumpError, block_on};
pub use tokio_tar::EntryType;
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
    /// Bound on the total bytes of entry content: the free space pre-flight
    /// found, less the reserve.
    pub max_bytes: u64,
    /// Bounds on entries and content, the same as for inspection.
    pub limits: Limits,
    /// What stays free on the staging filesystem whatever else writes there.
    pub reserve: Reserve,
    /// Restore numeric owners (true when running as root).
    pub same_owner: bool,
}

/// Bounds on what one archive may expand to, for extraction and inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tar entries (`daemon.max_restore_entries`).
    pub max_entries: u64,
    /// Bytes of content its index entry records (`metadata.uncompressed_bytes`),
    /// when it does: more than that (plus a margin) is refused.
    pub recorded_bytes: Option<u64>,
}

/// Content accepted beyond the recorded size: 10 % and this. abssd records the
/// sum of the entries' sizes, which is what is counted here; the margin covers
/// a tool that counted slightly differently.
const RECORDED_MARGIN: u64 = 1 << 20;

impl Limits {
    /// The most content accepted, when the size is recorded.
    pub fn content_cap(&self) -> Option<u64> {
        self.recorded_bytes
            .map(|r| r.saturating_add(r / 10).saturating_add(RECORDED_MARGIN))
    }

    /// May one more entry come after `entries`, bringing the content to `content`?
    fn admit(&self, entries: u64, content: u64, archive: &Path) -> Result<()> {
        if entries >= self.max_entries {
            return Err(Error::Archive(format!(
                "refusing {}: it holds more than {} entries (daemon.max_restore_entries); nothing was changed. Raise the limit if the archive is genuine",
                archive.display(),
                self.max_entries
            )));
        }
        if let (Some(recorded), Some(cap)) = (self.recorded_bytes, self.content_cap())
            && content > cap
        {
            return Err(Error::Archive(format!(
                "refusing {}: its entries hold more than {cap} bytes, but its index entry records {recorded} bytes of content (metadata.uncompressed_bytes); the archive or its entry was changed. Nothing was changed; check it with `abssctl backup verify`",
                archive.display()
            )));
        }
        Ok(())
    }
}

/// Room kept free on the filesystem that receives the staging directory, so a
/// restore never fills the filesystem the instances live on: a percentage of
/// its size, at most [`RESERVE_MAX_BYTES`] (and as many inodes, at most
/// [`RESERVE_MAX_INODES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// `daemon.restore_reserve_percent`.
    pub percent: u8,
}

/// The most bytes [`Reserve`] keeps free, whatever the filesystem's size: on
/// a large filesystem a percentage would refuse restores for no good reason.
pub const RESERVE_MAX_BYTES: u64 = 1 << 30;
/// The most inodes [`Reserve`] keeps free.
pub const RESERVE_MAX_INODES: u64 = 1 << 20;

impl Reserve {
    /// Bytes kept free on a filesystem of `size` bytes.
    pub fn bytes(&self, size: u64) -> u64 {
        (size / 100)
            .saturating_mul(u64::from(self.percent))
            .min(RESERVE_MAX_BYTES)
    }

    /// Inodes kept free on a filesystem of `inodes` inodes.
    fn inodes(&self, inodes: u64) -> u64 {
        (inodes / 100)
            .saturating_mul(u64::from(self.percent))
            .min(RESERVE_MAX_INODES)
    }
}

/// What extraction may still write before it looks at the filesystem again.
/// Each entry is charged more than it can take (its size rounded up to 4 KiB,
/// plus 4 KiB, and an inode). The filesystem is measured afresh when a charge
/// does not fit, before every entry of [`REMEASURE_BYTES`] or more, and after
/// that much (or [`REMEASURE_ENTRIES`] entries) since the last measure: so the
/// reserve holds while others write there too, give or take what they write
/// between two measures.
#[derive(Debug, Default)]
struct Room {
    bytes: u64,
    inodes: u64,
    /// Charged since the last measure.
    charged: u64,
    entries: u64,
}

const BLOCK: u64 = 4096;
/// See [`Room`].
const REMEASURE_BYTES: u64 = 1 << 20;
/// See [`Room`].
const REMEASURE_ENTRIES: u64 = 1024;

impl Room {
    fn take(&mut self, size: u64, tree: &Tree, reserve: Reserve, archive: &Path) -> Result<()> {
        let bytes = size.div_ceil(BLOCK).saturating_add(1).saturating_mul(BLOCK);
        let stale = bytes >= REMEASURE_BYTES
            || self.charged.saturating_add(bytes) >= REMEASURE_BYTES
            || self.entries >= REMEASURE_ENTRIES;
        if stale || bytes > self.bytes || self.inodes == 0 {
            *self = Room::measure(tree, reserve)?;
            if bytes > self.bytes || self.inodes == 0 {
                return Err(Error::Environment(format!(
                    "extracting {} would leave less than the reserve free on the filesystem of {} ({}% of its size, at most 1 GiB, and as many inodes: daemon.restore_reserve_percent); stopped, nothing was changed. Free some space there or restore elsewhere with --dest",
                    archive.display(),
                    tree.staging().display(),
                    reserve.percent
                )));
            }
        }
        self.bytes -= bytes;
        self.inodes -= 1;
        self.charged = self.charged.saturating_add(bytes);
        self.entries += 1;
        Ok(())
    }

    fn measure(tree: &Tree, reserve: Reserve) -> Result<Room> {
        let st = rustix::fs::fstatvfs(tree.root())
            .map_err(std::io::Error::from)
            .at("checking free space on", tree.staging())?;
        let size = st.f_blocks.saturating_mul(st.f_frsize);
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        // Some filesystems (btrfs) have no fixed number of inodes and say 0.
        let inodes = if st.f_files == 0 {
            u64::MAX
        } else {
            st.f_favail.saturating_sub(reserve.inodes(st.f_files))
        };
        Ok(Room {
            bytes: free.saturating_sub(reserve.bytes(size)),
            inodes,
            charged: 0,
            entries: 0,
        })
    }
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

/// How an archive must end, for extraction and inspection alike: with an
/// end-of-archive marker after at least one entry, and nothing but zeros after
/// the marker.
fn check_end(
    tar: tokio_tar::Archive<ChunkReader>,
    meter: &Meter,
    entries: u64,
    archive: &Path,
) -> Result<()> {
    if meter.eof() {
        return Err(corrupt(archive, "it ends without an end-of-archive marker"));
    }
    if entries == 0 {
        return Err(corrupt(archive, "it holds no entries"));
    }
    let mut reader = tar
        .into_inner()
        .map_err(|_| Error::Internal("the tar reader is still shared".into()))?;
    if !reader.drain_zeros() {
        return Err(corrupt(
            archive,
            "there is data after its end-of-archive marker",
        ));
    }
    Ok(())
}

/// An error from the tar parser, explained: truncated, an oversized header, or
/// a corrupt one.
fn stream_error(
    archive: &Path,
    meter: &Meter,
    at: Option<&dyn Display>,
    e: std::io::Error,
) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_sizes_get_a_margin_and_entries_a_cap() {
        let limits = Limits {
            max_entries: 3,
            recorded_bytes: Some(10 << 20),
        };
        let cap = (10 << 20) + (1 << 20) + RECORDED_MARGIN;
        assert_eq!(limits.content_cap(), Some(cap));
        let a = Path::new("/a.tar");
        limits.admit(2, cap, a).unwrap();
        let err = limits.admit(2, cap + 1, a).unwrap_err().to_string();
        assert!(err.contains("records 10485760 bytes"), "{err}");
        let err = limits.admit(3, 0, a).unwrap_err().to_string();
        assert!(err.contains("more than 3 entries"), "{err}");
        let unknown = Limits {
            max_entries: 3,
            recorded_bytes: None,
        };
        unknown.admit(0, u64::MAX, a).unwrap();
    }

    #[test]
    fn the_reserve_is_a_share_of_the_filesystem_at_most_1_gib() {
        let r = Reserve { percent: 5 };
        assert_eq!(r.bytes(16 << 20), (16 << 20) / 100 * 5);
        assert_eq!(r.bytes(1 << 40), RESERVE_MAX_BYTES);
        assert_eq!(Reserve { percent: 0 }.bytes(1 << 40), 0);
        assert_eq!(r.inodes(1000), 50);
    }
}
