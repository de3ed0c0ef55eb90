//! The front of the pipeline: a thread that reads the raw archive, hashes it
//! and decompresses it ([`pump`]), and the reader the tar parser pulls the
//! decompressed bytes from on the other side of a bounded channel
//! ([`ChunkReader`]).
//!
//! Nothing here ever waits on a runtime: every read is a plain blocking read on
//! a thread made for it, so the async codecs and the tar parser are driven by
//! [`block_on`], a poll loop without a reactor.

use std::cell::Cell;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::task::{Context, Poll, Waker};

use abssd_proto::Algorithm;
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, ReadBuf};

/// Bytes read from the archive file at a time, bytes per decompressed chunk,
/// and the size of the buffer file content is written from. Small enough to
/// stay in a core's L2 cache (512 KiB here) between the copies through it: with
/// 1 MiB buffers, 1 GiB took 1.9-2.1 s to stream instead of 1.1-1.4 s, most of
/// it in the kernel's copy into the page cache.
pub(super) const CHUNK: usize = 128 << 10;
/// Decompressed chunks in flight between the two threads (4 MiB).
pub(super) const QUEUE: usize = 32;

/// Run a future whose I/O is all blocking reads to completion on this thread.
///
/// The futures driven here never wait for a wakeup: their reads block instead.
/// A `Pending` can only come from tokio's cooperative budget, which re-arms on
/// the next poll, so polling again is correct; `None` reports a future that
/// keeps returning `Pending` (a bug, never a hang).
pub(super) fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        std::thread::yield_now();
    }
    None
}

/// The archive file as a buffered reader that hashes every byte it reads and
/// reports how many were read.
struct HashingReader<'p> {
    file: File,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    hasher: Sha256,
    bytes: u64,
    progress: &'p mut (dyn FnMut(u64) + Send),
    /// The error of a failed read of the file, kept so that it is reported as
    /// an I/O error rather than as corrupt compressed data.
    read_error: Option<io::Error>,
}

impl HashingReader<'_> {
    fn fill(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            let n = loop {
                match self.file.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let kind = e.kind();
                        self.read_error = Some(e);
                        return Err(io::Error::new(kind, "reading the archive failed"));
                    }
                }
            };
            self.hasher.update(&self.buf[..n]);
            self.bytes += n as u64;
            (self.progress)(n as u64);
            self.pos = 0;
            self.filled = n;
        }
        Ok(&self.buf[self.pos..self.filled])
    }
}

impl AsyncBufRead for HashingReader<'_> {
    fn poll_fill_buf(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Poll::Ready(self.get_mut().fill())
    }
    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.filled);
    }
}

impl AsyncRead for HashingReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let src = this.fill()?;
        let n = src.len().min(out.remaining());
        out.put_slice(&src[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// A buffer of decompressed bytes; `buf[..len]` is valid.
#[derive(Debug)]
pub(super) struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// What the read thread found out.
#[derive(Debug)]
pub(super) struct Hashed {
    /// sha256 of every byte of the archive file, hex.
    pub(super) sha256: String,
    /// Bytes in the archive file.
    pub(super) bytes: u64,
}

/// Why the read thread stopped early.
#[derive(Debug)]
pub(super) enum PumpError {
    /// Reading the archive file failed.
    Read(io::Error),
    /// The compressed stream is corrupt or truncated.
    Decode(io::Error),
    /// The tar side hung up (it failed and reports its own error).
    Stopped,
}

/// The read thread: read the archive to its end, hashing every byte, decompress
/// it and send the decompressed bytes in [`CHUNK`]-sized chunks. Emptied chunks
/// come back through `recycled`.
pub(super) fn pump(
    file: File,
    algorithm: Algorithm,
    tx: SyncSender<Chunk>,
    recycled: Receiver<Vec<u8>>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Hashed, PumpError> {
    let mut raw = HashingReader {
        file,
        buf: vec![0; CHUNK],
        pos: 0,
        filled: 0,
        hasher: Sha256::new(),
        bytes: 0,
        progress,
        read_error: None,
    };
    let forwarded = match algorithm {
        Algorithm::Zstd => {
            let mut d = ZstdDecoder::new(&mut raw);
            d.multiple_members(true);
            forward(&mut d, &tx, &recycled)
        }
        Algorithm::Gzip => {
            // GNU tar's gzip output may be several members back to back.
            let mut d = GzipDecoder::new(&mut raw);
            d.multiple_members(true);
            forward(&mut d, &tx, &recycled)
        }
        Algorithm::None => forward(&mut raw, &tx, &recycled),
    };
    match forwarded {
        Ok(()) => {}
        Err(None) => return Err(PumpError::Stopped),
        Err(Some(e)) => return Err(classify(&mut raw, e)),
    }
    // The decoders stop at the end of the input, but make sure every byte of
    // the file is hashed whatever the codec did.
    loop {
        match raw.fill() {
            Ok([]) => break,
            Ok(rest) => {
                let n = rest.len();
                raw.pos += n;
            }
            Err(e) => return Err(classify(&mut raw, e)),
        }
    }
    Ok(Hashed {
        sha256: hex::encode(raw.hasher.finalize()),
        bytes: raw.bytes,
    })
}

/// A failed read of the file, or else a decoding error.
fn classify(raw: &mut HashingReader<'_>, e: io::Error) -> PumpError {
    match raw.read_error.take() {
        Some(read) => PumpError::Read(read),
        None => PumpError::Decode(e),
    }
}

/// Copy `src` to the channel in full chunks. `Err(None)`: the receiver is gone.
fn forward<R: AsyncRead + Unpin>(
    src: &mut R,
    tx: &SyncSender<Chunk>,
    recycled: &Receiver<Vec<u8>>,
) -> Result<(), Option<io::Error>> {
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let mut len = 0;
        while len < buf.len() {
            let n = block_on(src.read(&mut buf[len..]))
                .unwrap_or_else(|| Err(io::Error::other("the decompressor made no progress")))?;
            if n == 0 {
                break;
            }
            len += n;
        }
        if len == 0 {
            return Ok(());
        }
        tx.send(Chunk { buf, len }).map_err(|_| None)?;
    }
}

/// Counts the decompressed bytes the tar parser consumes and bounds them.
///
/// The parser keeps GNU long names and pax headers in memory, however large
/// their header says they are: the extraction loop grants it a small allowance
/// for headers and exactly the data size for each entry's content, so a
/// hostile header cannot make the daemon allocate gigabytes.
#[derive(Debug, Default)]
pub(super) struct Meter {
    consumed: Cell<u64>,
    limit: Cell<u64>,
    /// The parser asked for more than its allowance.
    over: Cell<bool>,
    /// The decompressed stream ended (or the read thread stopped).
    eof: Cell<bool>,
}

impl Meter {
    /// Allow the parser `n` more bytes from here.
    pub(super) fn allow(&self, n: u64) {
        self.limit.set(self.consumed.get().saturating_add(n));
    }
    /// Whether the parser hit its allowance.
    pub(super) fn over(&self) -> bool {
        self.over.get()
    }
    /// Whether the decompressed stream ended.
    pub(super) fn eof(&self) -> bool {
        self.eof.get()
    }
}

/// The tar side of the channel.
#[derive(Debug)]
pub(super) struct ChunkReader {
    rx: Receiver<Chunk>,
    recycle: Sender<Vec<u8>>,
    current: Chunk,
    pos: usize,
    meter: Rc<Meter>,
}

impl ChunkReader {
    pub(super) fn new(rx: Receiver<Chunk>, recycle: Sender<Vec<u8>>, meter: Rc<Meter>) -> Self {
        ChunkReader {
            rx,
            recycle,
            current: Chunk {
                buf: Vec::new(),
                len: 0,
            },
            pos: 0,
            meter,
        }
    }

    /// The unread bytes of the current chunk, waiting for the next one when it
    /// is used up; empty at the end of the stream.
    fn available(&mut self) -> &[u8] {
        if self.pos == self.current.len && !self.meter.eof.get() {
            match self.rx.recv() {
                Ok(next) => {
                    let done = std::mem::replace(&mut self.current, next);
                    if !done.buf.is_empty() {
                        let _ = self.recycle.send(done.buf);
                    }
                    self.pos = 0;
                }
                Err(_) => self.meter.eof.set(true),
            }
        }
        &self.current.buf[self.pos..self.current.len]
    }

    /// Read the rest of the stream (what follows the end-of-archive marker);
    /// `Ok(false)` if any of it is not zero.
    pub(super) fn drain_zeros(&mut self) -> bool {
        let mut zeros = true;
        loop {
            let rest = self.available();
            if rest.is_empty() {
                return zeros;
            }
            zeros &= rest.iter().all(|&b| b == 0);
            self.pos = self.current.len;
        }
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let meter = Rc::clone(&this.meter);
        let allowed = meter.limit.get().saturating_sub(meter.consumed.get());
        if allowed == 0 && out.remaining() > 0 {
            meter.over.set(true);
            return Poll::Ready(Err(io::Error::other(
                "a header is larger than extraction allows",
            )));
        }
        let src = this.available();
        let n = src
            .len()
            .min(out.remaining())
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        out.put_slice(&src[..n]);
        this.pos += n;
        meter.consumed.set(meter.consumed.get() + n as u64);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(chunks: &[&[u8]]) -> (ChunkReader, Rc<Meter>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(chunks.len());
        for c in chunks {
            tx.send(Chunk {
                buf: c.to_vec(),
                len: c.len(),
            })
            .unwrap();
        }
        let (recycle, _) = std::sync::mpsc::channel();
        let meter = Rc::new(Meter::default());
        (ChunkReader::new(rx, recycle, Rc::clone(&meter)), meter)
    }

    #[test]
    fn the_parser_gets_its_allowance_and_no_more() {
        let (mut r, meter) = reader(&[b"abcdef", b"ghij"]);
        let mut buf = [0u8; 16];
        meter.allow(8);
        assert_eq!(block_on(r.read(&mut buf)).unwrap().unwrap(), 6);
        assert_eq!(block_on(r.read(&mut buf)).unwrap().unwrap(), 2);
        assert_eq!(&buf[..2], b"gh");
        assert!(block_on(r.read(&mut buf)).unwrap().is_err());
        assert!(meter.over());
        assert!(!meter.eof());
        meter.allow(100);
        assert_eq!(block_on(r.read(&mut buf)).unwrap().unwrap(), 2);
        assert_eq!(block_on(r.read(&mut buf)).unwrap().unwrap(), 0);
        assert!(meter.eof());
    }

    #[test]
    fn only_zeros_may_follow_the_end_of_the_archive() {
        let (mut r, _) = reader(&[&[0u8; 700], &[0u8; 300]]);
        assert!(r.drain_zeros());
        let (mut r, _) = reader(&[&[0u8; 700], b"\0\0x"]);
        assert!(!r.drain_zeros());
    }

    #[test]
    fn the_read_thread_hashes_every_byte_and_reports_progress() {
        use std::io::{Seek, Write};
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f.rewind().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let (_recycle_tx, recycle_rx) = std::sync::mpsc::channel();
        let mut seen = 0u64;
        let hashed = pump(f, Algorithm::None, tx, recycle_rx, &mut |n| seen += n).unwrap();
        let got: Vec<u8> = rx.iter().flat_map(|c| c.buf[..c.len].to_vec()).collect();
        assert_eq!(got, data);
        assert_eq!(seen, data.len() as u64);
        assert_eq!(hashed.bytes, data.len() as u64);
        assert_eq!(hashed.sha256, hex::encode(Sha256::digest(&data)));
    }
}
