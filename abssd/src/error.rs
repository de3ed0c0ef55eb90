//! The daemon's one error type. Every variant maps to a stable wire
//! [`ErrorKind`] through one exhaustive `match`, so a new variant cannot silently
//! become `internal`.

use std::path::{Path, PathBuf};

use abssd_proto::{ErrorKind, WireError};

/// Result alias used throughout the daemon.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in abssd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An instance, backup or operation that does not exist.
    #[error("{what} {name:?} not found{hint}")]
    NotFound {
        /// `instance`, `backup`, `operation`.
        what: &'static str,
        /// The name asked for.
        name: String,
        /// Extra advice, starting with a separator, or empty.
        hint: String,
    },
    /// The request is wrong.
    #[error("{0}")]
    Validation(String),
    /// A file operation failed; carries the path.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `creating`, ...).
        action: &'static str,
        /// The path it failed on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be replaced because its filesystem is full (or the
    /// quota is used up); the previous file is unchanged.
    #[error("no space left to write {}: {source}; the file is unchanged; free space on {} and retry", path.display(), parent_text(path))]
    NoSpace {
        /// The file that was to be replaced.
        path: PathBuf,
        /// The OS error (`ENOSPC`, `EDQUOT`).
        #[source]
        source: std::io::Error,
    },
    /// A state file (index, registry, config) cannot be parsed.
    #[error("{} is not valid {format}: {message}; fix or restore the file (abssd never replaces a corrupt file)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// `JSON` or `YAML`.
        format: &'static str,
        /// Parser message.
        message: String,
    },
    /// Something in the host is in the way (space, permissions, configuration).
    #[error("{0}")]
    Environment(String),
    /// A lock could not be acquired within `lock_timeout`.
    #[error(
        "timed out after {waited_ms} ms waiting for the {lock} lock (held by another operation{holder}); retry later or raise lock_timeout"
    )]
    LockTimeout {
        /// `global` or `instance:<name>`.
        lock: String,
        /// How long it waited.
        waited_ms: u64,
        /// Who holds it, when known, starting with a separator.
        holder: String,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// An archive could not be written or read.
    #[error("{0}")]
    Archive(String),
    /// An archive's bytes are not the ones recorded (checksum mismatch) or not
    /// a readable archive (truncated, a damaged stream). A refusal of the
    /// request, as the Python tool answers it (exit 2), not a failure of the
    /// host or a service: nothing was changed, and no retry will help.
    #[error("{0}")]
    CorruptArchive(String),
    /// systemd, nginx or the bus failed or is unreachable.
    #[error("{0}")]
    Service(String),
    /// A restore failed after it had started changing things; what was put back
    /// and what could not be are part of the error.
    #[error("{cause}{}{}", rolled_back_text(undone), left_text(left))]
    RolledBack {
        /// The original failure.
        cause: Box<Error>,
        /// What the rollback put back, in order.
        undone: Vec<String>,
        /// What could not be put back and where things are now (paths).
        left: Vec<String>,
    },
    /// A `stop`-mode backup was written and indexed, but the unit stopped for
    /// it did not start again: the backup is good, the instance is down.
    #[error(
        "backup {backup_id} was written and indexed, but {unit}, stopped for it, did not start again: {cause}; the backup is good; start the unit (systemctl start {unit}) and see journalctl -u {unit}"
    )]
    NotRestarted {
        /// The backup that was written.
        backup_id: String,
        /// Its archive.
        archive: String,
        /// The unit left stopped.
        unit: String,
        /// Why it did not start.
        cause: Box<Error>,
    },
    /// A backup job (`backup run`) in which at least one instance failed,
    /// or a `backup push` in which a backup failed: the others ran to their
    /// end. Its kind is that of the first failure (so the client's exit code
    /// says what went wrong), and its detail carries the whole summary.
    #[error("{message}")]
    JobFailed {
        /// The kind of the first instance's failure.
        kind: ErrorKind,
        /// Which instances failed, and at which step.
        message: String,
        /// The summary (`RunResult`, `PushResult`), as JSON.
        summary: Box<serde_json::Value>,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable wire classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Validation(_) => ErrorKind::Validation,
            Error::Io { .. } => ErrorKind::Environment,
            Error::NoSpace { .. } => ErrorKind::Environment,
            Error::Corrupt { .. } => ErrorKind::Environment,
            Error::Environment(_) => ErrorKind::Environment,
            Error::LockTimeout { .. } => ErrorKind::Busy,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Archive(_) => ErrorKind::Service,
            Error::CorruptArchive(_) => ErrorKind::Validation,
            Error::Service(_) => ErrorKind::Service,
            Error::RolledBack { cause, .. } => cause.kind(),
            Error::NotRestarted { .. } => ErrorKind::Service,
            Error::JobFailed { kind, .. } => *kind,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The error as it travels.
    pub fn to_wire(&self) -> WireError {
        let detail = match self {
            Error::Io { path, .. } | Error::NoSpace { path, .. } | Error::Corrupt { path, .. } => {
                Some(serde_json::json!({ "path": path }))
            }
            Error::RolledBack {
                cause,
                undone,
                left,
            } => {
                let mut d = serde_json::json!({ "rolled_back": undone, "left": left });
                if let Some(serde_json::Value::Object(inner)) = cause.to_wire().detail {
                    d.as_object_mut().expect("object").extend(inner);
                }
                Some(d)
            }
            Error::NotRestarted {
                backup_id,
                archive,
                unit,
                ..
            } => Some(serde_json::json!({
                "backup_id": backup_id, "archive": archive, "unit": unit, "unit_running": false
            })),
            Error::JobFailed { summary, .. } => Some(serde_json::json!({ "summary": summary })),
            _ => None,
        };
        WireError {
            kind: self.kind(),
            message: self.to_string(),
            detail,
        }
    }

    /// Shorthand for [`Error::NotFound`] without a hint.
    pub fn not_found(what: &'static str, name: impl Into<String>) -> Error {
        Error::NotFound {
            what,
            name: name.into(),
            hint: String::new(),
        }
    }

    /// Shorthand for [`Error::Validation`].
    pub fn validation(msg: impl Into<String>) -> Error {
        Error::Validation(msg.into())
    }
}

/// Untrusted text (from a request, an archive or an index entry) as a message
/// shows it: at most 64 characters, control characters escaped (`\u{1b}`), so
/// an error never carries a terminal escape or a forged line.
pub fn shown(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(64) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

fn parent_text(path: &Path) -> String {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
        .display()
        .to_string()
}

fn rolled_back_text(undone: &[String]) -> String {
    if undone.is_empty() {
        String::new()
    } else {
        format!("; rolled back: {}", undone.join(", "))
    }
}

fn left_text(left: &[String]) -> String {
    if left.is_empty() {
        String::new()
    } else {
        format!(
            "; ROLLBACK INCOMPLETE, needs an operator: {}",
            left.join("; ")
        )
    }
}

/// Attach a path and an action to I/O errors: `fs::read(p).at("reading", p)?`.
pub trait IoContext<T> {
    /// Wrap the error as [`Error::Io`].
    fn at(self, action: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            action,
            path: path.to_owned(),
            source,
        })
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("worker task failed: {e}"))
    }
}
