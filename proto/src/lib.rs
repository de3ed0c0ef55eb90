//! The abssd socket contract: every type that crosses the Unix socket, and the
//! method table both sides are compiled against.
//!
//! Layout:
//! * [`error`]   — the typed error object (`kind`, `message`, `detail`) and exit codes.
//! * [`backup`]  — backup index entries and the `backup.*` parameters and results.
//! * [`restore`] — `backup.restore` parameters, plan and result.
//! * [`reconcile`] — `backup.reconcile` parameters, plan and findings.
//! * [`prune`]   — `backup.prune` parameters, plan (a decision per backup) and result.
//! * [`push`]    — `backup.push`: copies of backups in a remote.
//! * [`run`]     — `backup.run`, the backup job: parameters, plan and summary.
//! * [`schedule`] — `schedule.*`: the timers that run backup jobs, and what systemd says of them.
//! * [`health`]  — `daemon.health`: the probe results of `abssctl doctor`.
//! * [`job`]     — the record of an instance's last backup job (`backup.run`), read by `daemon.health`.
//! * [`pull`]    — `backup.pull`: a backup's copy downloaded from a remote.
//! * [`remotes`] — `remote.list` and `remote.test`.
//! * [`json`]    — [`Json`], a large plan or result kept as shared JSON text.
//! * [`limits`]  — the length limits of request fields, checked before any work.
//! * [`op`]      — operations, their events, and the `op.*` / `daemon.*` types.
//! * [`progress`] — what events say an operation is doing: phase names, message levels.
//! * [`methods`] — one zero-sized type per JSON-RPC method, tying its name to its
//!   parameter and result types ([`Method`]); the daemon registers handlers by these
//!   types and the client calls through them, so a renamed field or method breaks the
//!   build on both sides instead of at run time.
//!
//! Parameters are always one JSON object (named parameters), so
//! `curl --unix-socket SOCK -d '{"jsonrpc":"2.0","id":1,"method":"backup.list","params":{"instance":"a"}}'`
//! reads the way the documentation does. Unknown parameter names are rejected.
#![deny(missing_docs)]

pub mod backup;
pub mod error;
pub mod health;
pub mod job;
pub mod json;
pub mod limits;
pub mod methods;
pub mod op;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod push;
pub mod reconcile;
pub mod remote_ls;
pub mod remotes;
pub mod restore;
pub mod run;
pub mod schedule;

pub use backup::*;
pub use error::{ErrorKind, WireError};
pub use health::*;
pub use job::*;
pub use json::Json;
pub use methods::Method;
pub use op::*;
pub use progress::{Level, Phase};
pub use prune::*;
pub use pull::*;
pub use push::*;
pub use reconcile::*;
pub use remote_ls::*;
pub use remotes::*;
pub use restore::*;
pub use run::*;
pub use schedule::*;

/// The daemon's default socket path (without `--prefix`).
pub const DEFAULT_SOCKET: &str = "/run/abssctl/abssd.sock";

/// Protocol version reported by `daemon.status`; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;
