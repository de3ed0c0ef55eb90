//! One pass over an archive, shared by extraction and inspection: a reader
//! thread hashing and decompressing while the tar parser runs on the calling
//! thread, how an archive must end, and the errors that explain a damaged or
//! refused archive.

use std::fmt::Display;
use std::fs::File;
use std::path::Path;
use std::rc::Rc;

use abssd_proto::Algorithm;

use super::source::{self, ChunkReader, Hashed, Meter, PumpError, block_on};
use crate::error::{Error, IoContext, Result};

/// Bytes the tar parser may read for one entry's headers (GNU long names, pax
/// records) before its content: far above any real name, far below memory.
pub(super) const HEADER_ALLOWANCE: u64 = 1 << 20;

/// Read `file` through on a thread of its own (hashing and decompressing) while
/// `parse` consumes the decompressed stream on this one; the parser's result
/// and what the reader found, or the error that explains the failure best.
pub(super) fn stream<T, F, Fut>(
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

/// How an archive must end, for extraction and inspection alike: with an
/// end-of-archive marker after at least one entry, and nothing but zeros after
/// the marker.
pub(super) fn check_end(
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
pub(super) fn stream_error(
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
pub(super) fn corrupt(archive: &Path, what: impl Display) -> Error {
    Error::CorruptArchive(format!(
        "{} is truncated or corrupt: {what}",
        archive.display()
    ))
}

/// The archive holds an entry that extraction refuses.
pub(super) fn refused(archive: &Path, entry: &dyn Display, why: impl Display) -> Error {
    Error::Archive(format!(
        "refusing to extract {}: entry {:?} {why}",
        archive.display(),
        entry.to_string()
    ))
}

pub(super) fn codec(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Zstd => "zstd",
        Algorithm::Gzip => "gzip",
        Algorithm::None => "tar",
    }
}
