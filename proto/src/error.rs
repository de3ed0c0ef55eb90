//! Errors on the wire: a stable `kind`, a message a person can act on, and an
//! optional structured `detail`.

use serde::{Deserialize, Serialize};

/// The stable classification of every error the daemon returns (`error.data.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The instance, backup or operation named does not exist.
    NotFound,
    /// The request itself is wrong (bad name, bad flag combination, path outside roots).
    Validation,
    /// The host is in the way: permissions, disk space, lock timeout, corrupt state
    /// files, unreachable daemon, or a verification that found corruption.
    Environment,
    /// systemd, nginx or the archive work itself failed.
    Service,
    /// The caller may not do this (read-only peer asking for a mutation).
    Forbidden,
    /// Another operation holds what this one needs.
    Busy,
    /// A bug in abssd.
    Internal,
}

impl ErrorKind {
    /// The client's exit code for this kind (README "Exit codes"): ADR-013's
    /// table as the Python abssctl applies it, which answers 2 for an instance
    /// or backup that does not exist.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::NotFound => 2,
            ErrorKind::Validation => 2,
            ErrorKind::Environment => 3,
            ErrorKind::Forbidden => 3,
            ErrorKind::Busy => 3,
            ErrorKind::Service => 4,
            ErrorKind::Internal => 4,
        }
    }

    /// The JSON-RPC error code used for this kind (application range, -32000..-32099).
    pub fn rpc_code(self) -> i32 {
        match self {
            ErrorKind::NotFound => -32001,
            ErrorKind::Validation => -32002,
            ErrorKind::Environment => -32003,
            ErrorKind::Service => -32004,
            ErrorKind::Forbidden => -32005,
            ErrorKind::Busy => -32006,
            ErrorKind::Internal => -32007,
        }
    }

    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Validation => "validation",
            ErrorKind::Environment => "environment",
            ErrorKind::Service => "service",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Busy => "busy",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it travels: in the JSON-RPC error's `data`, in a `failed` event, in
/// the operations log, and in the client's `--json` output (`{"error": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// Stable classification.
    pub kind: ErrorKind,
    /// What went wrong and what to do next.
    pub message: String,
    /// Structured context (paths, what was rolled back), when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl WireError {
    /// An error without detail.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WireError {
            kind,
            message: message.into(),
            detail: None,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

/// The `data` member of a JSON-RPC error object sent by abssd.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorData {
    /// Stable classification.
    pub kind: ErrorKind,
    /// Structured context, when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_snake_case_and_map_to_spec_exit_codes() {
        let json = serde_json::to_string(&ErrorKind::NotFound).unwrap();
        assert_eq!(json, "\"not_found\"");
        assert_eq!(ErrorKind::NotFound.exit_code(), 2);
        assert_eq!(ErrorKind::Validation.exit_code(), 2);
        assert_eq!(ErrorKind::Forbidden.exit_code(), 3);
        assert_eq!(ErrorKind::Service.exit_code(), 4);
        for k in [ErrorKind::Busy, ErrorKind::Internal, ErrorKind::Environment] {
            let back: ErrorKind = serde_json::from_str(&format!("\"{}\"", k.as_str())).unwrap();
            assert_eq!(back, k);
        }
    }
}
