//! Operations owned by the daemon, their event stream, and `daemon.status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Json;
use crate::error::WireError;
use crate::progress::{Level, Phase};

/// Who asked, from the socket's `SO_PEERCRED` (never from request data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Peer uid.
    pub uid: u32,
    /// User name of `uid` (the number as text when it has no name).
    pub user: String,
    /// Peer pid at connect time.
    pub pid: i32,
}

/// What an operation does, written as the command line that asks for it:
/// `backup create`, ... — the operations log's `command`, the `started`
/// event's, `op.get`'s and the journal's.
///
/// Serialized as that text. Other texts are kept as they are
/// ([`Command::Other`]): the operations log is shared with the Python tool
/// (`instance create`, `backup prune`, ...) and a newer daemon may run
/// commands this one does not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `backup create`
    BackupCreate,
    /// `backup restore`
    BackupRestore,
    /// `backup verify`
    BackupVerify,
    /// `backup reconcile`
    BackupReconcile,
    /// `backup protect`
    BackupProtect,
    /// `backup unprotect`
    BackupUnprotect,
    /// `backup prune`
    BackupPrune,
    /// `backup run` (the backup job)
    BackupRun,
    /// `backup push`
    BackupPush,
    /// `backup pull`
    BackupPull,
    /// Any other command, as written.
    Other(String),
}

impl Command {
    /// The command as written, e.g. `backup create`.
    pub fn as_str(&self) -> &str {
        match self {
            Command::BackupCreate => "backup create",
            Command::BackupRestore => "backup restore",
            Command::BackupVerify => "backup verify",
            Command::BackupReconcile => "backup reconcile",
            Command::BackupProtect => "backup protect",
            Command::BackupUnprotect => "backup unprotect",
            Command::BackupPrune => "backup prune",
            Command::BackupRun => "backup run",
            Command::BackupPush => "backup push",
            Command::BackupPull => "backup pull",
            Command::Other(text) => text,
        }
    }

    /// The command a text names; the method spelling (`backup.create`) names
    /// the same command.
    pub fn named(text: &str) -> Command {
        let known = [
            Command::BackupCreate,
            Command::BackupRestore,
            Command::BackupVerify,
            Command::BackupReconcile,
            Command::BackupProtect,
            Command::BackupUnprotect,
            Command::BackupPrune,
            Command::BackupRun,
            Command::BackupPush,
            Command::BackupPull,
        ];
        known
            .into_iter()
            .find(|c| {
                let name = c.as_str();
                text == name || text.replace('.', " ") == name
            })
            .unwrap_or_else(|| Command::Other(text.to_owned()))
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Command::named(&String::deserialize(d)?))
    }
}

/// Lifecycle of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Still working.
    Running,
    /// Ended with a result.
    Succeeded,
    /// Ended with an error.
    Failed,
}

/// An operation as `op.get` / `op.list` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInfo {
    /// UUIDv7, so ids sort by start time.
    pub op_id: String,
    /// `backup create`, `backup verify`, ...
    pub command: Command,
    /// The request parameters.
    pub args: Value,
    /// Who started it.
    pub actor: Actor,
    /// Instance or backup id it works on.
    pub target: Option<String>,
    /// Where it is.
    pub state: OpState,
    /// Start time (UTC).
    pub started_at: String,
    /// End time (UTC), once ended.
    pub finished_at: Option<String>,
    /// Total time spent waiting for locks.
    pub lock_wait_ms: u64,
    /// Number of events so far.
    pub events: u64,
    /// The result, once succeeded.
    pub result: Option<Json>,
    /// The error, once failed.
    pub error: Option<WireError>,
    /// The daemon stopped during this operation, and start-up recovery finished
    /// or rolled it back (`result` / `error` say which, and what was done).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

/// One event of an operation; `op.watch` sends these, in `seq` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// 0-based position in the operation's event log.
    pub seq: u64,
    /// UTC time with milliseconds.
    pub ts: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event says. Tagged by `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// First event of every operation.
    Started {
        /// Command name.
        command: Command,
        /// Instance or backup id.
        target: Option<String>,
    },
    /// The plan, once computed.
    Plan {
        /// Same shape as the `plan` of the final answer.
        plan: Json,
    },
    /// Waiting for a lock (only sent when it is not free at once).
    LockWait {
        /// `global` or `instance:<name>`.
        lock: String,
    },
    /// A lock was acquired.
    LockAcquired {
        /// `global` or `instance:<name>`.
        lock: String,
        /// How long it took.
        waited_ms: u64,
    },
    /// A new phase began.
    Phase {
        /// `archive`, `index`, `verify:<id>`, ...
        name: Phase,
        /// Bytes this phase will process, when known.
        total_bytes: Option<u64>,
    },
    /// Bytes processed in the current phase (throttled).
    Progress {
        /// Phase name.
        phase: Phase,
        /// Bytes done.
        done: u64,
        /// Bytes in the phase.
        total: u64,
    },
    /// A note for the operator.
    Message {
        /// `info` or `warning`.
        level: Level,
        /// Text.
        text: String,
    },
    /// Terminal: success, with the outcome.
    Finished {
        /// What the blocking call answers, without `op_id`: `{plan, result}`.
        result: Json,
    },
    /// Terminal: failure.
    Failed {
        /// The error.
        error: WireError,
    },
}

impl EventKind {
    /// Whether this ends the stream (exactly one per operation).
    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Finished { .. } | EventKind::Failed { .. })
    }
}

/// The answer of every mutating method: `{op_id}` when detached, else also the
/// plan and the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpOutcome<P, R> {
    /// The operation id.
    pub op_id: String,
    /// What was (or, with `dry_run`, would be) done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<P>,
    /// The result; absent when detached or on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
}

/// `op.get` and `op.watch` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpIdParams {
    /// The operation id.
    pub op_id: String,
}

/// `op.list` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpListParams {
    /// Only operations still running.
    #[serde(default)]
    pub running: bool,
    /// At most this many operations (default [`crate::limits::OP_PAGE`], at most
    /// [`crate::limits::OP_PAGE_MAX`]): the newest ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only operations older than this op id: pass the previous page's
    /// `next_before` to read further back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// `op.list` result: one page, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpListResult {
    /// Operations this daemon process knows (running and recently ended): the
    /// newest `limit` of them (older than `before`, when given).
    pub operations: Vec<OpInfo>,
    /// There are older operations: pass this as `before` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// `daemon.status` parameters (none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `daemon.status` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// abssd version.
    pub version: String,
    /// [`crate::PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Daemon pid.
    pub pid: u32,
    /// Start time (UTC).
    pub started_at: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The socket it serves.
    pub socket: String,
    /// Group whose members may mutate.
    pub operator_group: String,
    /// Config file read (or that would be read; `exists` says).
    pub config_file: String,
    /// Every path in use, by role (`instance_root`, `backups_root`, `index`, ...).
    pub paths: BTreeMap<String, String>,
    /// abssd's own config file read (or that would be read).
    #[serde(default)]
    pub abssd_config_file: String,
    /// Where each path of `paths` (and the socket, as `socket`) came from, by
    /// role: `default`, `default under <role> (<its source>)`, `file <path>`,
    /// `environment <variable>`, `command line`.
    #[serde(default)]
    pub path_origins: BTreeMap<String, String>,
    /// The configuration's warnings: unknown keys, deprecated spellings.
    #[serde(default)]
    pub config_warnings: Vec<String>,
    /// Operations currently running.
    pub operations_running: Vec<OpInfo>,
    /// Operations interrupted by the previous stop of the daemon, finished or
    /// rolled back at this start before any request was served.
    #[serde(default)]
    pub recovered: Vec<OpInfo>,
    /// Whether the caller may mutate.
    pub caller_may_mutate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_written_as_the_command_line_and_others_kept() {
        let known = [
            (Command::BackupCreate, "backup create"),
            (Command::BackupRestore, "backup restore"),
            (Command::BackupVerify, "backup verify"),
            (Command::BackupReconcile, "backup reconcile"),
            (Command::BackupProtect, "backup protect"),
            (Command::BackupUnprotect, "backup unprotect"),
            (Command::BackupPrune, "backup prune"),
        ];
        for (command, text) in known {
            let json = serde_json::to_string(&command).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command);
            assert_eq!(command.to_string(), text);
            // The method spelling names the same command.
            assert_eq!(Command::named(&text.replace(' ', ".")), command);
        }
        // The Python tool's commands (and a newer daemon's) survive a round trip.
        for text in ["instance create", "backup forget", "doctor", ""] {
            let command: Command = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(command, Command::Other(text.to_owned()));
            assert_eq!(
                serde_json::to_string(&command).unwrap(),
                format!("\"{text}\"")
            );
        }
        assert!(serde_json::from_str::<Command>("7").is_err());
    }
}
