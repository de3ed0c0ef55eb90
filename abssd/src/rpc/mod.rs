//! The socket: a Unix listener serving JSON-RPC 2.0 over HTTP POST and WebSocket
//! (jsonrpsee), with peer credentials attached to every request.
//!
//! This is the only module that knows jsonrpsee's server types.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::server::{Server, ServerConfig, serve_with_graceful_shutdown, stop_channel};
use tokio::net::{UnixListener, UnixStream};
use tower::Service;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ops::Ctx;
use crate::service::IdleClock;

mod conn;
mod methods;
pub mod peer;

pub use methods::State;
use peer::Peer;

/// How long a graceful stop waits for open connections.
const DRAIN: Duration = Duration::from_secs(5);

/// Bind the socket: 0660, owned by `group` when it exists. A stale socket
/// file is replaced; a live one (another daemon answers) is refused.
pub async fn bind(socket: &Path, group: &str) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        fsutil::ensure_dir(dir)?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(Error::Environment(format!(
                    "{} exists and is not a socket; remove it or choose another --socket",
                    socket.display()
                )));
            }
            if UnixStream::connect(socket).await.is_ok() {
                return Err(Error::Environment(format!(
                    "another abssd is already serving {}; stop it first",
                    socket.display()
                )));
            }
            std::fs::remove_file(socket).at("removing stale socket", socket)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at("checking", socket),
    }
    let listener = UnixListener::bind(socket).at("binding", socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)).at("chmod", socket)?;
    if let Ok(Some(g)) = nix::unistd::Group::from_name(group) {
        // Without the group only root (and the daemon's user) can connect; say so.
        if let Err(e) = nix::unistd::chown(socket, None, Some(g.gid)) {
            tracing::warn!(socket = %socket.display(), group, error = %e, "cannot set the socket's group");
        }
    } else {
        tracing::warn!(
            group,
            "socket group does not exist; only root can use the socket"
        );
    }
    Ok(listener)
}

/// Serve `listener` until `shutdown` resolves, or, with `idle`, until no
/// client has been connected and no operation has run for that long (the
/// socket-activated daemon exits; systemd starts it again on the next
/// connection).
pub async fn serve(
    ctx: Arc<Ctx>,
    ops: crate::operations::Operations,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
    idle: Option<Duration>,
) -> Result<()> {
    let state = Arc::new(State::new(ctx.clone(), ops));
    let methods = methods::module(state.clone())
        .map_err(|e| Error::Internal(format!("registering methods: {e}")))?;
    let cfg = &ctx.config;
    let server_cfg = ServerConfig::builder()
        .max_connections(cfg.max_connections)
        .max_request_body_size(cfg.max_request_bytes)
        .max_response_body_size(64 << 20)
        .max_subscriptions_per_connection(64)
        .build();
    let builder = Server::builder()
        .set_config(server_cfg)
        .to_service_builder();
    let (stop, handle) = stop_channel();
    tokio::pin!(shutdown);
    let clock = Arc::new(Mutex::new(IdleClock::new(
        idle.unwrap_or(Duration::MAX),
        Instant::now(),
    )));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut shown = String::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            _ = tick.tick() => {
                let running = state.ops.running().len();
                let (open, expired) = {
                    let mut clock = Open::lock(&clock);
                    (clock.open(), clock.expired(Instant::now(), running > 0))
                };
                let now = format!("serving; {running} operation(s) running, {open} client(s)");
                if now != shown {
                    crate::service::status(&now);
                    shown = now;
                }
                if let Some(idle) = idle
                    && expired
                {
                    tracing::info!(idle_secs = idle.as_secs(), "idle: exiting until the socket unit starts abssd again");
                    break;
                }
                continue;
            }
        };
        let open = Open::count(&clock);
        let group = cfg.operator_group.clone();
        let (builder, methods, stop) = (builder.clone(), methods.clone(), stop.clone());
        tokio::spawn(async move {
            let Some(peer) = Peer::of(&stream, &group).await else {
                tracing::warn!("connection without peer credentials refused");
                return;
            };
            tracing::debug!(uid = peer.actor.uid, pid = peer.actor.pid, "connection");
            let stopped = stop.clone().shutdown();
            let svc = tower::service_fn(
                move |mut req: jsonrpsee::server::HttpRequest<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    let mut svc = builder.clone().build(methods.clone(), stop.clone());
                    async move { svc.call(req).await }
                },
            );
            // The stream carries `open`: a WebSocket outlives this task.
            let stream = conn::Tracked::new(stream, open);
            let served: std::pin::Pin<Box<dyn Future<Output = _> + Send>> =
                Box::pin(serve_with_graceful_shutdown(stream, svc, stopped));
            if let Err(e) = served.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Stop accepting: from here a new client gets "connection refused" rather
    // than waiting in the backlog of a daemon that is going away (under socket
    // activation it waits for the next start instead).
    drop(listener);
    crate::service::stopping(&format!(
        "stopping: {} operation(s) to finish",
        state.ops.running().len()
    ));
    drop(stop);
    let _ = handle.stop();
    let _ = tokio::time::timeout(DRAIN, handle.stopped()).await;
    // Operations own their work: let running ones reach their end before exit.
    let running = state.ops.running().len();
    if running > 0 {
        tracing::info!(running, "waiting for running operations to end");
    }
    state.drain(ctx.config.stop_timeout).await;
    for op in state.ops.running() {
        tracing::warn!(op_id = %op.id, command = %op.command, "still running at exit; it is abandoned");
    }
    Ok(())
}

/// One open connection, counted while it lives: the idle exit waits for none,
/// and its idle period starts when the last one closes.
struct Open(Arc<Mutex<IdleClock>>);

impl Open {
    fn count(clock: &Arc<Mutex<IdleClock>>) -> Open {
        Open::lock(clock).opened(Instant::now());
        Open(Arc::clone(clock))
    }

    fn lock(clock: &Mutex<IdleClock>) -> std::sync::MutexGuard<'_, IdleClock> {
        clock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut clock = Open::lock(&self.0);
        clock.closed(Instant::now());
        tracing::debug!(open = clock.open(), "connection closed");
    }
}
