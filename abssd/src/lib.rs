//! abssd — the root daemon that backs up, restores and reconciles Actual Budget
//! sync server instances, serving a JSON-RPC API on a Unix socket.
//!
//! Layout:
//! * [`config`]     — configuration and every path derived from it (`--prefix` lives here).
//! * [`rpc`]        — the socket: accept loop, peer credentials, method handlers.
//! * [`operations`] — daemon-owned operations: ids, event logs, watchers.
//! * [`ops`]        — the operations themselves, one file per verb, over a [`ops::Ctx`].
//! * [`locks`]      — global and per-instance locks (in memory + the Python tool's flocks).
//! * [`index`]      — the backup index (`backups.json`).
//! * [`registry`]   — the instance registry (`instances.yml`).
//! * [`archive`]    — walking sources and writing compressed, hashed tar archives.
//! * [`journal`]    — the write-ahead journal that drives rollback and recovery.
//! * [`systemd`]    — unit state and start/stop/reload jobs over D-Bus (the only zbus user).
//! * [`nginx`]      — the nginx configuration check.
//! * [`extract`]    — hashing and extracting an archive into a staging directory, safely.
//! * [`oplog`]      — the operations log (`operations.jsonl`).
//! * [`fsutil`]     — atomic writes, directory modes, timestamps.
//! * [`memory`]     — keeping glibc's heap small in a long-running daemon.
//! * [`error`]      — the one error type and its wire mapping.

pub mod archive;
pub mod config;
pub mod error;
pub mod extract;
pub mod fsutil;
pub mod index;
pub mod journal;
pub mod locks;
pub mod memory;
pub mod nginx;
pub mod operations;
pub mod oplog;
pub mod ops;
pub mod registry;
pub mod rpc;
pub mod systemd;

use std::future::Future;

pub use config::{Config, Overrides};
pub use error::{Error, Result};

/// Run the daemon: bind the configured socket and serve until `shutdown`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let listener = rpc::bind(&config.socket, &config.socket_group).await?;
    tracing::info!(socket = %config.socket.display(), "serving");
    let socket = config.socket.clone();
    let ctx = ops::Ctx::new(config);
    let served = rpc::serve(ctx, listener, shutdown).await;
    let _ = std::fs::remove_file(&socket);
    served
}
