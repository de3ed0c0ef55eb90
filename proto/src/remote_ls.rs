//! `remote.ls`: what a remote holds, per backup, against the local index.

use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::limits::{Bounded, NAME, opt, text};

/// At most this many keys are read from a listing (then it is cut, and
/// the answer says so).
pub const REMOTE_LS_MAX_KEYS: u64 = 1_000_000;
/// At most this many backups are listed in an answer (the count goes on).
pub const REMOTE_LS_MAX_BACKUPS: usize = 100_000;
/// At most this many keys abssd cannot place are named (the count goes on).
pub const REMOTE_LS_MAX_UNPLACED: usize = 20;

/// `remote.ls` parameters (`abssctl remote ls NAME [--instance NAME]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteLsParams {
    /// The remote (`remotes:` in abssd.yml).
    pub remote: String,
    /// Only this instance's objects (`<prefix>/<instance>/`).
    #[serde(default)]
    pub instance: Option<String>,
}

impl Bounded for RemoteLsParams {
    fn check(&self) -> Result<(), WireError> {
        text("remote", &self.remote, NAME)?;
        opt("instance", self.instance.as_ref(), NAME)
    }
}

/// One backup in a remote: its objects as the listing shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteBackup {
    /// The instance (the directory under the prefix).
    pub instance: String,
    /// The backup id: the entry object's name, else the archive's file name
    /// without its extension.
    pub id: String,
    /// The archive object's key; absent when only its sidecar or entry is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_key: Option<String>,
    /// The archive object's size in bytes (as stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The archive (or, without one, the entry) is age-encrypted (`.age`).
    pub encrypted: bool,
    /// Its `.sha256` sidecar object is there.
    pub has_sidecar: bool,
    /// Its entry object (`<id>.json[.age]`) is there.
    pub has_entry: bool,
    /// The local index has an entry with this id.
    pub in_index: bool,
    /// That entry records a copy in this remote.
    pub recorded: bool,
}

/// `remote.ls` result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteLsResult {
    /// The remote.
    pub remote: String,
    /// What was listed: `s3://BUCKET/PREFIX`.
    pub location: String,
    /// The backups found, by instance then id (at most
    /// [`REMOTE_LS_MAX_BACKUPS`]).
    pub backups: Vec<RemoteBackup>,
    /// Backups found, including those left out of `backups`.
    pub backups_found: u64,
    /// Keys read from the listing.
    pub keys_scanned: u64,
    /// The listing was cut at [`REMOTE_LS_MAX_KEYS`] keys: there is more.
    pub truncated: bool,
    /// Keys under the prefix that are not shaped as abssd writes them.
    pub unplaced: u64,
    /// The first few of them ([`REMOTE_LS_MAX_UNPLACED`]).
    #[serde(default)]
    pub unplaced_keys: Vec<String>,
}
