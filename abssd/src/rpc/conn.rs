//! A connection's stream together with what it holds while it is open.
//!
//! A WebSocket upgrade hands the stream to a task of jsonrpsee's own, so the
//! future that served the HTTP request ends long before the connection does.
//! Whatever must live exactly as long as the connection (its place in the
//! idle count, its connection slot) therefore travels inside the stream and is
//! dropped with it.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// `stream`, holding `guard` until the stream is dropped.
#[derive(Debug)]
pub(super) struct Tracked<G> {
    /// The connection.
    stream: UnixStream,
    /// Released when the connection ends, whoever owns it then.
    _guard: G,
}

impl<G> Tracked<G> {
    pub(super) fn new(stream: UnixStream, guard: G) -> Tracked<G> {
        Tracked {
            stream,
            _guard: guard,
        }
    }
}

impl<G: Unpin> AsyncRead for Tracked<G> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<G: Unpin> AsyncWrite for Tracked<G> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
