//! abssd — the root daemon that backs up, restores and reconciles Actual Budget
//! sync server instances, serving a JSON-RPC API on a Unix socket.
//!
//! Layout:
//! * [`cli`]        — the `abssd` command line: flags, logging, runtime, signals.
//! * [`config`]     — configuration and every path derived from it (`--prefix` lives here).
//! * [`rpc`]        — the socket: accept loop, peer credentials, method handlers.
//! * [`optable`]    — the daemon's table of running and ended operations: ids, event
//!   logs, watchers, and their lifecycle (run on a task of their own, log line, end)
//!   shared by rpc and recovery.
//! * [`ops`]        — the operations themselves, one file per verb, over a [`ops::Ctx`].
//! * [`progress`]   — what operations report as they go: the [`progress::Progress`]
//!   trait, its handle, throttled byte counts, and a recorder for tests.
//! * [`locks`]      — global and per-instance locks (in memory + the Python tool's flocks).
//! * [`index`]      — the backup index (`backups.json`).
//! * [`registry`]   — the instance registry (`instances.yml`).
//! * [`yaml11`]     — PyYAML's YAML 1.1 types of plain scalars, for the registry and the
//!   `ABSSCTL_*` variables.
//! * [`archive`]    — walking sources and writing compressed, hashed tar archives; in
//!   snapshot mode SQLite snapshots and blobs read until they hold still.
//! * [`scratch`]    — private per-operation directories for the copies creates and deep
//!   checks work on.
//! * [`journal`]    — the write-ahead journal that drives rollback and recovery.
//! * [`recovery`]   — finishing or rolling back, at start-up, what a stopped daemon left.
//! * [`systemd`]    — unit state and start/stop/reload jobs over D-Bus (the only zbus
//!   user), behind the connector operations find in their context.
//! * [`service`]    — running under systemd: socket activation, readiness, watchdog, journal.
//! * [`nginx`]      — the nginx configuration check.
//! * [`extract`]    — hashing and extracting an archive into a staging directory, safely.
//! * [`deep`]       — the deep check: is what an archive holds a working Actual server?
//! * [`zipend`]     — a zip's end record, read before any zip parser trusts it.
//! * [`oplog`]      — the operations log (`operations.jsonl`).
//! * [`remote`]     — S3-compatible remotes: the signed client, streamed transfers with age,
//!   object keys, credentials.
//! * [`fsutil`]     — atomic writes, directory modes, timestamps, removing trees,
//!   names of the copies kept beside a replaced file.
//! * [`text`]       — outside text cut to a length fit for messages and logs.
//! * [`memory`]     — keeping glibc's heap small in a long-running daemon.
//! * [`error`]      — the one error type and its wire mapping.
//!
//! Modules import only downward: `cli`, `rpc`, `recovery` and `optable` run
//! operations; `ops` runs them over everything else, and nothing below `ops`
//! imports from it. No two modules reach each other in a loop: what a child
//! and its parent both need lives in a sibling. A unit test (`layers.rs`)
//! reads the source and fails on a loop or an upward import.

/// A named point where the crash-safety tests stop the daemon dead. Built with
/// the `failpoints` feature and run with `FAILPOINTS=<name>=return`, the process
/// aborts there, like a `kill -9` at that instant (other `fail` actions such
/// as `sleep(ms)` or `pause` work too). Without the feature it is nothing.
/// Names are string literals so the tests can list them from the source.
#[cfg(feature = "failpoints")]
macro_rules! crash_point {
    ($name:literal) => {
        fail::fail_point!($name, |_| std::process::abort())
    };
}
#[cfg(not(feature = "failpoints"))]
macro_rules! crash_point {
    ($name:literal) => {
        ()
    };
}

/// A named point where a test can act exactly in a window it wants to hit
/// (`fail::cfg_callback`, or `pause` to hold a thread there); nothing without
/// the `failpoints` feature. Not a crash point: the crash test kills the
/// daemon only at `crash_point!`s.
#[cfg(feature = "failpoints")]
macro_rules! hook_point {
    ($name:literal) => {
        fail::fail_point!($name)
    };
}
#[cfg(not(feature = "failpoints"))]
macro_rules! hook_point {
    ($name:literal) => {
        ()
    };
}

pub mod archive;
pub mod cli;
pub mod config;
pub mod deep;
pub mod error;
pub mod extract;
pub mod fsutil;
pub mod index;
pub mod journal;
#[cfg(test)]
mod layers;
pub mod locks;
pub mod memory;
pub mod nginx;
pub mod oplog;
pub mod ops;
pub mod optable;
pub mod progress;
pub mod recovery;
pub mod registry;
pub mod remote;
pub mod rpc;
pub mod scratch;
pub mod service;
pub mod systemd;
pub mod text;
pub mod yaml11;
pub mod zipend;

use std::future::Future;

pub use config::{Config, Overrides};
pub use error::{Error, Result};

/// A daemon that holds its state directory and has recovered what a
/// previous run left unfinished ([`start`]); [`Daemon::run`] serves it.
#[derive(Debug)]
pub struct Daemon {
    ctx: std::sync::Arc<ops::Ctx>,
    operations: std::sync::Arc<optable::Operations>,
    /// One daemon per state directory: recovery must never roll back the
    /// work of another daemon that is still running.
    _sole: nix::fcntl::Flock<std::fs::File>,
}

/// The socket a daemon serves ([`listen`]).
#[derive(Debug)]
pub struct Listener {
    socket: std::os::unix::net::UnixListener,
    /// Passed by systemd (socket activation): the socket stays systemd's, and
    /// the daemon exits when idle.
    activated: bool,
}

/// Take the state directory and recover every operation a previous run was
/// stopped in the middle of (see [`recovery`]).
pub async fn start(config: Config) -> Result<Daemon> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let sole = sole_daemon(&config.layout.state_dir)?;
    let ctx = ops::Ctx::new(config);
    let operations = std::sync::Arc::new(optable::Operations::with_log(oplog::Log {
        path: ctx.config.layout.oplog_file(),
        max_bytes: ctx.config.daemon.oplog_max_bytes,
    }));
    service::status("recovering interrupted operations");
    recovery::recover(&ctx, &operations).await;
    Ok(Daemon {
        ctx,
        operations,
        _sole: sole,
    })
}

/// The socket to serve: the one systemd passed, else `config.socket`, bound
/// now. The command line binds it after [`start`], so the socket opens once
/// recovery is done; a caller that binds it before (the tests) has its
/// clients wait in the backlog until [`Daemon::run`] serves, as under socket
/// activation.
pub fn listen(config: &Config) -> Result<Listener> {
    let (socket, activated) = match service::activated_listener()? {
        Some(passed) => (passed, true),
        None => (
            rpc::bind(&config.layout.socket, &config.daemon.socket_group)?,
            false,
        ),
    };
    Ok(Listener { socket, activated })
}

impl Daemon {
    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// Serve `listener` until `shutdown` (or, socket-activated, until idle),
    /// then let running operations end.
    pub async fn run(self, listener: Listener, shutdown: impl Future<Output = ()>) -> Result<()> {
        let socket = self.ctx.config.layout.socket.clone();
        let Listener {
            socket: std_listener,
            activated,
        } = listener;
        let listener = tokio::net::UnixListener::from_std(std_listener)
            .map_err(|e| Error::Environment(format!("serving {}: {e}", socket.display())))?;
        let idle = self.ctx.config.daemon.idle_timeout;
        let idle = (activated && !idle.is_zero()).then_some(idle);
        tracing::info!(socket = %socket.display(), socket_activated = activated, "serving");
        service::ready(&format!("serving {}", socket.display()));
        service::spawn_watchdog();
        let served = rpc::serve(self.ctx, self.operations, listener, shutdown, idle).await;
        // A socket systemd passed is systemd's to keep (for the next activation).
        if !activated {
            let _ = std::fs::remove_file(&socket);
        }
        served
    }
}

/// Hold `state_dir/abssd.lock` exclusively for the life of the daemon.
fn sole_daemon(state_dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use error::IoContext;
    use nix::fcntl::{Flock, FlockArg};
    fsutil::ensure_dir(state_dir)?;
    let path = state_dir.join("abssd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at("opening", &path)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        Error::Environment(format!(
            "another abssd is running with the state directory {} ({}: {errno}); stop it first",
            state_dir.display(),
            path.display()
        ))
    })
}
