//! `backup.pull`: download a backup's copy from a remote and make its local
//! archive available again; also the first step of a restore with `pull`.

use serde::{Deserialize, Serialize};

/// `backup.pull` parameters (`abssctl backup pull ID [--remote NAME]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullParams {
    /// Backup id: it must be in the local index.
    pub id: String,
    /// The remote to pull from; absent: the first configured remote the
    /// entry's `remotes` records name, else the only remote.
    #[serde(default)]
    pub remote: Option<String>,
    /// Return `{op_id}` at once instead of waiting for the result.
    #[serde(default)]
    pub detach: bool,
}

/// What a pull found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullOutcome {
    /// The copy was downloaded, checked and put in place.
    Pulled,
    /// The archive was already there with the recorded checksum: nothing
    /// was downloaded.
    Already,
}

/// Where a pull downloads from (a restore's plan shows it too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullSource {
    /// The remote's name.
    pub remote: String,
    /// The archive object's key.
    pub key: String,
    /// Bytes stored in the remote, when recorded.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// The copy is age-encrypted (decrypted with the remote's identity file).
    pub encrypted: bool,
}

/// `backup.pull` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResult {
    /// Backup id.
    pub id: String,
    /// `pulled` or `already`.
    pub outcome: PullOutcome,
    /// Where it came from.
    pub source: PullSource,
    /// The local archive.
    pub archive: String,
    /// Bytes of the local (plain) archive.
    pub bytes: u64,
    /// SHA-256 of the local archive (the index entry's checksum).
    pub sha256: String,
    /// The `.sha256` sidecar was missing and was written.
    pub sidecar_written: bool,
    /// The entry's status before (`available` now).
    pub previous_status: String,
}
