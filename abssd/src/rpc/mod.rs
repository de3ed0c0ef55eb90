//! The socket: a Unix listener serving JSON-RPC 2.0 over HTTP POST and WebSocket
//! (jsonrpsee), with peer credentials attached to every request.
//!
//! This is the only module that knows jsonrpsee's server types.
//!
//! * [`slots`] — who may hold how many connections (checked at accept).
//! * [`flow`]  — a connection is read only as fast as it reads its answers.
//! * [`peer`]  — who is on the other end, and whether they may mutate.
//! * [`methods`] — decode, validate, authorize, hand over to `ops`.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    BatchRequestConfig, Server, ServerConfig, serve_with_graceful_shutdown, stop_channel,
};
use tokio::net::UnixListener;
use tower::Service;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ops::Ctx;
use crate::service::IdleClock;

mod conn;
mod flow;
mod methods;
pub mod peer;
mod refusals;
mod slots;

use flow::{Flow, GateLayer, Throttled};
pub use methods::State;
use peer::Peer;
use slots::Slots;

/// How long a graceful stop waits for open connections.
const DRAIN: Duration = Duration::from_secs(5);

/// Bind the socket: 0660, owned by `group` when it exists. A stale socket
/// file is replaced; a live one (another daemon answers) is refused.
pub fn bind(socket: &Path, group: &str) -> Result<std::os::unix::net::UnixListener> {
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
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
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
    let listener = std::os::unix::net::UnixListener::bind(socket).at("binding", socket)?;
    // Served by tokio.
    listener.set_nonblocking(true).at("binding", socket)?;
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

/// Descriptors kept free for operations (archives, directory walks, staging,
/// D-Bus, `nginx -t`) beyond one per connection, so that no number of clients
/// can make a running operation fail for want of one.
pub const FD_RESERVE: u64 = 256;

/// Raise the soft descriptor limit to the hard one, and return how many
/// connections fit beside [`FD_RESERVE`]: `max_connections`, or fewer (with a
/// warning) when the limit is too small.
pub fn descriptors(max_connections: u32) -> u32 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_connections;
    };
    let soft = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            // Under the unit's system call filter (~@resources) this is refused;
            // LimitNOFILE= there sets both limits instead.
            Err(e) => {
                tracing::debug!(error = %e, "cannot raise the descriptor limit");
                soft
            }
        }
    } else {
        soft
    };
    // A few for the listener, the journal, the bus and the runtime itself.
    let fit = soft.saturating_sub(FD_RESERVE + 32);
    if u64::from(max_connections) > fit {
        let clamped = fit.clamp(1, u64::from(u32::MAX)) as u32;
        tracing::warn!(
            max_connections,
            clamped,
            nofile = soft,
            "the descriptor limit (LimitNOFILE=) is too small for daemon.max_connections and {FD_RESERVE} descriptors kept for operations; serving at most {clamped} connections"
        );
        clamped
    } else {
        max_connections
    }
}

/// Serve `listener` until `shutdown` resolves, or, with `idle`, until no
/// client has been connected and no operation has run for that long (the
/// socket-activated daemon exits; systemd starts it again on the next
/// connection).
pub async fn serve(
    ctx: Arc<Ctx>,
    ops: Arc<crate::optable::Operations>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
    idle: Option<Duration>,
) -> Result<()> {
    let state = Arc::new(State::new(ctx.clone(), ops));
    let methods = methods::module(state.clone())
        .map_err(|e| Error::Internal(format!("registering methods: {e}")))?;
    let cfg = &ctx.config;
    let max_connections = descriptors(cfg.daemon.max_connections);
    let slots = Slots::new(cfg, max_connections);
    let server_cfg = ServerConfig::builder()
        .max_connections(max_connections)
        .max_request_body_size(cfg.daemon.max_request_bytes)
        .max_response_body_size(cfg.daemon.max_response_bytes)
        .max_subscriptions_per_connection(64)
        .set_message_buffer_capacity(cfg.daemon.message_buffer)
        .set_batch_request_config(BatchRequestConfig::Limit(cfg.daemon.max_batch))
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
        // The slot is taken here, before anything is read, so a flood of
        // connections costs one descriptor each only for as long as this takes.
        let Ok(cred) = stream.peer_cred() else {
            tracing::warn!("connection without peer credentials refused");
            continue;
        };
        let mut slot = match slots.take(cred.uid()) {
            Ok(slot) => slot,
            Err(why) => {
                let _ = stream.try_write(&slots::refusal(&why));
                continue;
            }
        };
        let open = Open::count(&clock);
        let group = cfg.daemon.operator_group.clone();
        let (max_calls, send_timeout) =
            (cfg.daemon.max_calls_per_connection, cfg.daemon.send_timeout);
        let (builder, methods, stop, slots) = (
            builder.clone(),
            methods.clone(),
            stop.clone(),
            slots.clone(),
        );
        tokio::spawn(async move {
            let Some(peer) = Peer::of(&stream, &group).await else {
                tracing::warn!("connection without peer credentials refused");
                return;
            };
            if !peer.may_mutate
                && let Err(why) = slots.admit_reader(&mut slot)
            {
                let _ = stream.try_write(&slots::refusal(&why));
                return;
            }
            tracing::debug!(uid = peer.actor.uid, pid = peer.actor.pid, "connection");
            let flow = Flow::new(max_calls);
            let builder =
                builder.set_rpc_middleware(RpcServiceBuilder::new().layer(GateLayer(flow.clone())));
            // The stream carries `open` and the slot: a WebSocket outlives this task.
            let io = Throttled::new(conn::Tracked::new(stream, open), flow, send_timeout, slot);
            let stopped = stop.clone().shutdown();
            let svc = tower::service_fn(
                move |mut req: jsonrpsee::server::HttpRequest<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    let mut svc = builder.clone().build(methods.clone(), stop.clone());
                    async move { svc.call(req).await }
                },
            );
            let served: std::pin::Pin<Box<dyn Future<Output = _> + Send>> =
                Box::pin(serve_with_graceful_shutdown(io, svc, stopped));
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
    state.drain(ctx.config.daemon.stop_timeout).await;
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
