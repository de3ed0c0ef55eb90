//! The end of the pipeline: the compression stage ([`Encoder`]) and the thread
//! that hashes and writes the archive bytes ([`HashingFile`]).

use std::fs::File;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;

/// Bytes handed to the writer thread at a time.
const WRITE_CHUNK: usize = 1 << 20;
/// Chunks in flight between the compressor and the writer thread.
const WRITE_QUEUE: usize = 4;

/// The end of the pipeline: a thread of its own hashes and writes the archive
/// bytes, so slow writes (dirty-page throttling) never stall the thread that
/// feeds the compressor.
pub(super) struct HashingFile {
    /// Bytes collected until a chunk is full.
    pending: Vec<u8>,
    /// To the writer thread; `None` once finished.
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// The writer thread: returns the file, the digest and the byte count.
    thread: Option<std::thread::JoinHandle<std::io::Result<(File, String, u64)>>>,
}

impl HashingFile {
    pub(super) fn new(file: File) -> std::io::Result<HashingFile> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(WRITE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("abssd-archive-writer".into())
            .spawn(move || {
                let mut file = file;
                let mut hasher = Sha256::new();
                let mut bytes = 0u64;
                for chunk in rx {
                    hasher.update(&chunk);
                    file.write_all(&chunk)?;
                    bytes += chunk.len() as u64;
                }
                Ok((file, hex::encode(hasher.finalize()), bytes))
            })?;
        Ok(HashingFile {
            pending: Vec::with_capacity(WRITE_CHUNK),
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hand over the collected bytes; blocks while the queue is full (this runs on
    /// a blocking thread). A dead writer reports its own error.
    fn send_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(WRITE_CHUNK));
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(chunk).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            Err(self.writer_error())
        }
    }

    fn writer_error(&mut self) -> std::io::Error {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => e,
            _ => std::io::Error::other("the archive writer thread stopped"),
        }
    }

    /// Flush, stop the writer thread and collect its result.
    pub(super) fn finish(mut self) -> std::io::Result<(File, String, u64)> {
        self.send_pending()?;
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            _ => Err(std::io::Error::other("the archive writer thread panicked")),
        }
    }
}

impl AsyncWrite for HashingFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= WRITE_CHUNK {
            self.send_pending()?;
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.send_pending())
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// The compression stage.
pub(super) enum Encoder {
    Zstd(ZstdEncoder<HashingFile>),
    Gzip(GzipEncoder<HashingFile>),
    None(HashingFile),
}

impl Encoder {
    pub(super) fn into_inner(self) -> HashingFile {
        match self {
            Encoder::Zstd(e) => e.into_inner(),
            Encoder::Gzip(e) => e.into_inner(),
            Encoder::None(f) => f,
        }
    }
}

impl AsyncWrite for Encoder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Encoder::Zstd(e) => Pin::new(e).poll_write(cx, buf),
            Encoder::Gzip(e) => Pin::new(e).poll_write(cx, buf),
            Encoder::None(f) => Pin::new(f).poll_write(cx, buf),
        }
    }
    /// Ignored: tokio's copy flushes its writer after every tar entry, and a
    /// flushed zstd stream ends its block and waits for every worker — one
    /// block per file, no parallelism, and a much worse ratio on small files.
    /// The stream is completed once, by `poll_shutdown`.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Encoder::Zstd(e) => Pin::new(e).poll_shutdown(cx),
            Encoder::Gzip(e) => Pin::new(e).poll_shutdown(cx),
            Encoder::None(f) => Pin::new(f).poll_shutdown(cx),
        }
    }
}
