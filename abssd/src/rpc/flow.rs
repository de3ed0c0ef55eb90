//! Backpressure for one connection: a client is served only as fast as it reads.
//!
//! jsonrpsee reads WebSocket messages as fast as they arrive and answers each on a
//! task of its own; when the client does not read, those tasks wait for room in the
//! connection's queue, each holding its request and answer, and the daemon grows
//! without bound. So the daemon stops *reading* a connection when
//!
//! * its answers cannot be written (the socket is full: the client is not reading),
//!   or
//! * it already has `max_calls` calls being answered ([`Gate`] counts them),
//!
//! and closes it when an answer has waited `send_timeout` to be written. Memory per
//! connection is then bounded by what was read before the stop, and returns when the
//! connection is closed. HTTP and WebSocket connections get the same treatment: it
//! sits under both, on the socket itself ([`Throttled`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use jsonrpsee::server::middleware::rpc::{Batch, Notification, Request, RpcServiceT};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::slots::Slot;

/// What the reading and the writing side of one connection tell each other.
#[derive(Debug)]
pub struct Flow {
    /// Calls being answered now.
    calls: AtomicUsize,
    /// Most calls answered at once before reading stops.
    max_calls: usize,
    /// The last write could not proceed: the client is not reading.
    stalled: AtomicBool,
    /// Closed by us (send timeout, write error): every read and write fails.
    dead: AtomicBool,
    /// The reader waiting for one of the above to change.
    reader: AtomicWaker,
}

impl Flow {
    /// A connection's flow state.
    pub fn new(max_calls: u32) -> Arc<Flow> {
        Arc::new(Flow {
            calls: AtomicUsize::new(0),
            max_calls: max_calls.max(1) as usize,
            stalled: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            reader: AtomicWaker::new(),
        })
    }

    fn holds_reads(&self) -> bool {
        self.stalled.load(Ordering::Acquire) || self.calls.load(Ordering::Acquire) >= self.max_calls
    }

    fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        self.reader.wake();
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn set_stalled(&self, stalled: bool) {
        if self.stalled.swap(stalled, Ordering::AcqRel) && !stalled {
            self.reader.wake();
        }
    }

    /// Count a call until the guard drops.
    fn call(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::AcqRel);
        CallGuard(Arc::clone(self))
    }
}

/// One call being answered.
struct CallGuard(Arc<Flow>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
        self.0.reader.wake();
    }
}

/// The connection's socket, read only while its [`Flow`] allows, and closed when
/// a write waits longer than the send timeout. It also holds the connection's
/// [`Slot`], so the slot is free exactly when the socket is closed (an upgraded
/// WebSocket outlives the HTTP connection that carried the upgrade).
#[derive(Debug)]
pub struct Throttled<S> {
    io: S,
    flow: Arc<Flow>,
    send_timeout: Duration,
    /// Armed while a write waits.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    _slot: Slot,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Throttled<S> {
    /// Wrap an accepted stream.
    pub fn new(io: S, flow: Arc<Flow>, send_timeout: Duration, slot: Slot) -> Throttled<S> {
        Throttled {
            io,
            flow,
            send_timeout,
            deadline: None,
            _slot: slot,
        }
    }

    fn write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.flow.is_dead() {
            return Poll::Ready(Err(closed()));
        }
        match write(Pin::new(&mut self.io), cx) {
            Poll::Ready(Ok(n)) => {
                self.deadline = None;
                self.flow.set_stalled(false);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                self.flow.kill();
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                self.flow.set_stalled(true);
                let timeout = self.send_timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    tracing::info!(
                        timeout_secs = timeout.as_secs_f64(),
                        "closing a connection whose client does not read its answers"
                    );
                    self.flow.kill();
                    return Poll::Ready(Err(closed()));
                }
                Poll::Pending
            }
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection closed by abssd: the client did not read its answers",
    )
}

impl<S> Drop for Throttled<S> {
    fn drop(&mut self) {
        // What a client that did not read made the daemon hold goes back to
        // the kernel, not just to the allocator.
        if self.flow.is_dead() {
            crate::memory::release_freed();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.flow.is_dead() {
            return Poll::Ready(Err(closed()));
        }
        if this.flow.holds_reads() {
            this.flow.reader.register(cx.waker());
            // Checked again: the change may have come before the registration.
            if this.flow.is_dead() {
                return Poll::Ready(Err(closed()));
            }
            if this.flow.holds_reads() {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// RPC middleware counting the calls a connection has being answered, so that
/// [`Throttled`] stops reading at the limit.
#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    flow: Arc<Flow>,
}

/// Puts a [`Gate`] in front of a connection's RPC service.
#[derive(Debug, Clone)]
pub struct GateLayer(pub Arc<Flow>);

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            flow: Arc::clone(&self.0),
        }
    }
}

impl<S> RpcServiceT for Gate<S>
where
    S: RpcServiceT + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        counted(self.flow.call(), async move { inner.call(request).await })
    }

    fn batch<'a>(
        &self,
        requests: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let inner = self.inner.clone();
        counted(self.flow.call(), async move { inner.batch(requests).await })
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        let inner = self.inner.clone();
        counted(self.flow.call(), async move { inner.notification(n).await })
    }
}

/// `answer`, counted as one call being answered until it is ready.
async fn counted<T>(guard: CallGuard, answer: impl Future<Output = T>) -> T {
    let answered = answer.await;
    drop(guard);
    answered
}
