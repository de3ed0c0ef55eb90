//! Backup index entries (`backups.json`, SPEC §5) and the `backup.*` parameters
//! and results.
//!
//! [`BackupEntry`] is both the on-disk index entry and what `backup.list` /
//! `backup.show` return, so nothing is lost between the file and the wire: keys this
//! project does not know are kept in `extra` and written back unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::op::Actor;

/// Status values of an index entry, as the Python tool writes them.
pub mod status {
    /// Archive present and, as far as is known, intact.
    pub const AVAILABLE: &str = "available";
    /// Archive absent from disk.
    pub const MISSING: &str = "missing";
    /// Checksum mismatch found by verify.
    pub const CORRUPT: &str = "corrupt";
    /// Verify could not read the archive or its checksum.
    pub const ERROR: &str = "error";
    /// Never checked.
    pub const UNKNOWN: &str = "unknown";
    /// Deleted on purpose: the Python tool's `backup prune` deletes the archive
    /// and its sidecar and keeps the entry with this status and `removed_at`.
    pub const REMOVED: &str = "removed";
    /// Older spelling of [`AVAILABLE`], accepted on read.
    pub const LEGACY_PRESENT: &str = "present";
}

/// One entry of the backup index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupEntry {
    /// `YYYYMMDD-HHMMSS-<instance>-<6 hex>`.
    pub id: String,
    /// Instance name.
    pub instance: String,
    /// UTC creation time, whole seconds, `Z` suffix.
    pub created_at: String,
    /// Absolute archive path (older spelling `archive_path` accepted on read).
    #[serde(alias = "archive_path")]
    pub path: String,
    /// `zstd`, `gzip` or `none`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Compression level used, when one was set.
    #[serde(default)]
    pub compression_level: Option<i64>,
    /// Archive size in bytes.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Checksum record (older flat `checksum_sha256` accepted on read).
    #[serde(default)]
    pub checksum: Option<Checksum>,
    /// See [`status`].
    #[serde(default = "unknown_status")]
    pub status: String,
    /// Operator's message.
    #[serde(default)]
    pub message: Option<String>,
    /// Who made it: `{uid, user, pid}` from the peer credentials for this project,
    /// a user name for the Python tool.
    #[serde(default)]
    pub created_by: Option<Value>,
    /// Labels, data-only flag, verification error, sizes.
    #[serde(default)]
    pub metadata: EntryMetadata,
    /// When verify last ran on this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// When reconcile last changed this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
    /// Kept by every prune (`abssctl backup protect`). Written only when set,
    /// so entries of the Python tool (which knows no such key) round-trip
    /// unchanged, and one it rewrites keeps the key (it keeps unknown keys).
    #[serde(
        default,
        deserialize_with = "protection",
        skip_serializing_if = "is_false"
    )]
    pub protected: bool,
    // The restore history is written by others too (the Python tool, older
    // daemons, hand edits), in shapes of their own: each field reads any
    // value, typed when it has this project's shape, else kept as it was. One
    // entry in another shape must never make the whole index unreadable.
    /// When it was last restored (the Python tool writes this one too).
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_restored_at: Option<Lenient<String>>,
    /// Where its data was last restored to.
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_restore_destination: Option<Lenient<String>>,
    /// Who restored it last.
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub restored_by: Option<Lenient<Actor>>,
    /// Every restore of it, oldest first; this project's records typed.
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub restores: Option<Lenient<Vec<Lenient<RestoreRecord>>>>,
    /// Its copies in remotes (`backup push`), one per remote; written only
    /// when there is one (the Python tool keeps the key as it is).
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub remotes: Option<Lenient<Vec<Lenient<RemoteCopy>>>>,
    /// Every other key, kept verbatim and in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A value written by this project and by others: [`Lenient::Typed`] when it
/// has this project's shape exactly (it is written back as the same text),
/// else [`Lenient::Other`], kept as it was read and written back unchanged.
/// Reading one never fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Lenient<T> {
    /// This project's shape.
    Typed(T),
    /// Any other value, kept.
    Other(Value),
}

impl<T> Lenient<T> {
    /// The value, when it has this project's shape.
    pub fn typed(&self) -> Option<&T> {
        match self {
            Lenient::Typed(t) => Some(t),
            Lenient::Other(_) => None,
        }
    }
}

impl<T: Serialize + serde::de::DeserializeOwned> Lenient<T> {
    /// Typed only when `T` reads `value` and writes it back as the same text
    /// (no key dropped, reordered or added), so nothing another writer put
    /// there is lost.
    pub fn from_value(value: Value) -> Lenient<T> {
        match T::deserialize(&value) {
            Ok(t) if serde_json::to_string(&t).ok() == serde_json::to_string(&value).ok() => {
                Lenient::Typed(t)
            }
            _ => Lenient::Other(value),
        }
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Typed(t) => t.serialize(s),
            Lenient::Other(v) => v.serialize(s),
        }
    }
}

impl<'de, T: Serialize + serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Lenient::from_value(Value::deserialize(d)?))
    }
}

/// A present key, whatever its value (`null` included, so it is written
/// back too).
fn kept<'de, D, T>(d: D) -> Result<Option<Lenient<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Serialize + serde::de::DeserializeOwned,
{
    Lenient::deserialize(d).map(Some)
}

/// One restore of a backup, in its entry's `restores`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// When it ended (UTC).
    pub at: String,
    /// Who asked.
    pub by: Actor,
    /// Where the data went.
    pub destination: String,
    /// The restore operation, so a repeated annotation (start-up recovery
    /// finishing a committed restore) is recognised.
    pub op_id: String,
    /// The backup of the instance taken just before, if any (written as `null`).
    pub pre_restore_backup: Option<String>,
    /// Unknown keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A copy of a backup in a remote, in its entry's `remotes`: written once
/// the copy's objects are all in the bucket, never before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteCopy {
    /// The remote's name (`remotes:` in abssd.yml).
    pub name: String,
    /// The archive object's key (`<prefix>/<instance>/<file>[.age]`).
    pub key: String,
    /// SHA-256 of the object as stored (of the encrypted bytes when
    /// encrypted; the plain archive's is the entry's `checksum`).
    pub sha256: String,
    /// Bytes stored.
    pub size_bytes: u64,
    /// When the upload completed (UTC).
    pub uploaded_at: String,
    /// Encrypted with age to the remote's recipients.
    pub encrypted: bool,
    /// Unknown keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BackupEntry {
    /// The typed copies of this backup in remotes.
    pub fn remote_copies(&self) -> impl Iterator<Item = &RemoteCopy> {
        self.remotes
            .as_ref()
            .and_then(Lenient::typed)
            .into_iter()
            .flatten()
            .filter_map(Lenient::typed)
    }

    /// Its copy in remote `name`, if recorded.
    pub fn remote_copy(&self, name: &str) -> Option<&RemoteCopy> {
        self.remote_copies().find(|c| c.name == name)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `protected` as written by hand or another tool: a boolean, `null` (not
/// protected), or any other value, read as protected: a prune must never take
/// a backup someone meant to keep, and the index must stay readable.
fn protection<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::Null => false,
        _ => true,
    })
}

fn unknown_status() -> String {
    status::UNKNOWN.to_owned()
}

/// The `checksum` object of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checksum {
    /// Always `sha256`.
    pub algorithm: String,
    /// Hex digest recorded at creation.
    pub value: String,
    /// When verify last computed the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<String>,
    /// The digest verify last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// Unknown keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Checksum {
    /// A sha256 digest, not verified since.
    pub fn sha256(hex: String) -> Checksum {
        Checksum {
            algorithm: "sha256".to_owned(),
            value: hex,
            last_verified: None,
            observed: None,
            extra: Map::new(),
        }
    }
}

/// The `metadata` object of an entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryMetadata {
    /// The archive holds the data directory only.
    #[serde(default)]
    pub data_only: bool,
    /// Operator labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Why the last verify failed; cleared by a successful verify or restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_error: Option<String>,
    /// Bytes of file content before compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_bytes: Option<u64>,
    /// How the instance was read ([`Capture`] as a string: `snapshot`, `stop`,
    /// `none` or `offline`); absent for backups made before abssd recorded it
    /// and by other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    /// The last deep verification (`backup verify --deep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<DeepVerification>,
    // The Python tool's own record of the last restore and of reconcile, in
    // its spellings, so that whichever tool wrote last the other reads the
    // same thing. Written by either tool (and by hand), so read leniently.
    /// When it was last restored (UTC, whole seconds, `Z`): the Python
    /// tool's spelling of the top-level `last_restored_at`.
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_restored_at: Option<Lenient<String>>,
    /// Where its data was last restored to (absolute path).
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_restore_destination: Option<Lenient<String>>,
    /// Who restored it last, in the Python tool's actor shape.
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_restore_actor: Option<Lenient<ToolActor>>,
    /// When reconcile `--apply` last changed the entry (UTC, whole seconds, `Z`).
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub reconciled_at: Option<Lenient<String>>,
    /// Why reconcile `--apply` last changed it (see [`reconcile_reason`]).
    #[serde(
        default,
        deserialize_with = "kept",
        skip_serializing_if = "Option::is_none"
    )]
    pub reconcile_reason: Option<Lenient<String>>,
    /// Unknown keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata.reconcile_reason` values: why reconcile `--apply` changed an
/// entry.
pub mod reconcile_reason {
    /// Its archive is gone: marked `missing` (the Python tool's value).
    pub const ARCHIVE_MISSING: &str = "archive-missing";
    /// Its archive is there again (or its status was never checked): marked
    /// `available`.
    pub const ARCHIVE_PRESENT: &str = "archive-present";
    /// Its archive was re-hashed (`--verify`) and the finding recorded.
    pub const ARCHIVE_REHASHED: &str = "archive-rehashed";
    /// An orphaned archive given this new entry (`--adopt`).
    pub const ARCHIVE_ADOPTED: &str = "archive-adopted";
    /// A backup found only in a remote given this new entry, status
    /// `missing` (`--remote NAME --adopt`).
    pub const REMOTE_ADOPTED: &str = "remote-adopted";
}

/// Who did something, in the shape the Python tool writes into the index
/// (`metadata.last_restore_actor`): `{type, name}`, plus `session` when it
/// knows one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolActor {
    /// `user`, or `ci` for the Python tool run under CI.
    #[serde(rename = "type")]
    pub kind: String,
    /// User name.
    pub name: String,
    /// The terminal or CI job, when known (abssd never knows one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl ToolActor {
    /// The caller of an abssd operation, as the Python tool names a person.
    pub fn of(actor: &Actor) -> ToolActor {
        ToolActor {
            kind: "user".to_owned(),
            name: actor.user.clone(),
            session: None,
        }
    }
}

/// What a deep verification checked inside an archive and the first problem
/// it found (`metadata.verification` in the index, `deep` in `verify --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeepVerification {
    /// When it ran (RFC 3339, UTC).
    pub checked_at: String,
    /// `true` when nothing was wrong.
    pub ok: bool,
    /// SQLite databases that passed `PRAGMA integrity_check` and the table checks.
    #[serde(default)]
    pub databases: u64,
    /// Blobs read through as zip files.
    #[serde(default)]
    pub blobs: u64,
    /// Files named in `account.sqlite` found in the archive.
    #[serde(default)]
    pub listed_files: u64,
    /// Whether `data/.migrate` is in the archive (beside every
    /// `server-files/account.sqlite`).
    #[serde(default)]
    pub migrate: bool,
    /// Whether the data tree is an Actual data directory (it holds
    /// `server-files/account.sqlite`): only then do the checks of Actual's
    /// tables, `.migrate`, blobs and listed files apply in full.
    #[serde(default)]
    pub actual: bool,
    /// How many problems were found (the first is [`Self::problem`]).
    #[serde(default)]
    pub problems: u64,
    /// The first problem found, for people (absent when `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Unknown keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BackupEntry {
    /// A new entry for an archive just written, or found whole and hashed:
    /// `available`, with its size and sha256 digest, and nothing else said
    /// about it yet (no message, labels, verification or restores).
    pub fn new(
        id: String,
        instance: String,
        created_at: String,
        path: String,
        algorithm: &str,
        size_bytes: u64,
        sha256: String,
    ) -> BackupEntry {
        BackupEntry {
            id,
            instance,
            created_at,
            path,
            algorithm: Some(algorithm.to_owned()),
            compression_level: None,
            size_bytes: Some(size_bytes),
            checksum: Some(Checksum::sha256(sha256)),
            status: status::AVAILABLE.to_owned(),
            message: None,
            created_by: None,
            metadata: EntryMetadata::default(),
            verified_at: None,
            reconciled_at: None,
            protected: false,
            last_restored_at: None,
            last_restore_destination: None,
            restored_by: None,
            restores: None,
            remotes: None,
            extra: Map::new(),
        }
    }

    /// The restores recorded in this project's shape, oldest first.
    pub fn restore_records(&self) -> impl Iterator<Item = &RestoreRecord> {
        let list = match &self.restores {
            Some(Lenient::Typed(list)) => &list[..],
            _ => &[],
        };
        list.iter().filter_map(Lenient::typed)
    }

    /// Whether `restores` holds a record of operation `op_id`, in whatever
    /// shape it was written.
    pub fn has_restore(&self, op_id: &str) -> bool {
        match &self.restores {
            Some(Lenient::Typed(list)) => list.iter().any(|r| match r {
                Lenient::Typed(r) => r.op_id == op_id,
                Lenient::Other(v) => v.get("op_id").and_then(Value::as_str) == Some(op_id),
            }),
            _ => false,
        }
    }

    /// Rewrite the older spellings (SPEC §5) into the current ones: a flat
    /// `checksum_sha256` becomes `checksum: {algorithm, value}`, status `present`
    /// becomes `available`. Idempotent.
    pub fn normalize_legacy(&mut self) {
        if let Some(Value::String(hex)) = self.extra.remove("checksum_sha256")
            && self.checksum.is_none()
        {
            self.checksum = Some(Checksum::sha256(hex));
        }
        if self.status == status::LEGACY_PRESENT {
            self.status = status::AVAILABLE.to_owned();
        }
    }

    /// The recorded sha256 digest, if any.
    pub fn sha256(&self) -> Option<&str> {
        self.checksum.as_ref().map(|c| c.value.as_str())
    }
}

/// Requested compression (`--compression`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// The default: zstd.
    #[default]
    Auto,
    /// Zstandard, multi-threaded.
    Zstd,
    /// gzip.
    Gzip,
    /// Plain tar.
    None,
}

/// The compression an archive actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// `.tar.zst`
    Zstd,
    /// `.tar.gz`
    Gzip,
    /// `.tar`
    None,
}

impl Algorithm {
    /// Parse the index's `algorithm` value (`zstd|gzip|none`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "zstd" => Some(Algorithm::Zstd),
            "gzip" => Some(Algorithm::Gzip),
            "none" => Some(Algorithm::None),
            _ => None,
        }
    }

    /// Infer from an archive file name's extension.
    pub fn from_file_name(name: &str) -> Option<Algorithm> {
        [Algorithm::Zstd, Algorithm::Gzip, Algorithm::None]
            .into_iter()
            .find(|a| name.ends_with(a.extension()))
    }

    /// The archive file extension, with the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Algorithm::Zstd => ".tar.zst",
            Algorithm::Gzip => ".tar.gz",
            Algorithm::None => ".tar",
        }
    }

    /// The name used in the index (`zstd|gzip|none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Gzip => "gzip",
            Algorithm::None => "none",
        }
    }
}

impl Compression {
    /// Resolve `auto`.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Compression::Auto | Compression::Zstd => Algorithm::Zstd,
            Compression::Gzip => Algorithm::Gzip,
            Compression::None => Algorithm::None,
        }
    }
}

/// How `backup create` reads an instance whose unit is running
/// (`--consistency`; default `daemon.consistency`, itself `snapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// SQLite databases are copied through SQLite (one read transaction each),
    /// blobs read until they hold still; journals are not archived.
    #[default]
    Snapshot,
    /// The unit is stopped for the archive pass and started again.
    Stop,
    /// Files are copied as they are, whatever is writing them.
    None,
}

/// How a create actually read the instance (`metadata.consistency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// Databases snapshotted while the unit ran.
    Snapshot,
    /// The unit was stopped while the archive was written.
    Stop,
    /// A plain copy of a running instance (asked for with `none`).
    None,
    /// The unit was not running: a plain read, consistent whatever the mode.
    Offline,
}

impl Capture {
    /// The name in the index (`snapshot|stop|none|offline`).
    pub fn as_str(self) -> &'static str {
        match self {
            Capture::Snapshot => "snapshot",
            Capture::Stop => "stop",
            Capture::None => "none",
            Capture::Offline => "offline",
        }
    }
}

/// `backup.list` parameters: filters, and one page of what they match.
///
/// Entries come newest first, ordered by `created_at` then by id (both
/// descending), so a page ends at a point of that order and the next one
/// starts after it: a backup created or removed meanwhile never makes another
/// entry appear twice or be skipped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this instance's backups.
    #[serde(default)]
    pub instance: Option<String>,
    /// Only backups with this status (`available`, `missing`, `corrupt`,
    /// `removed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only backups carrying this label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Only backups created at or after this time: an RFC 3339 timestamp, or
    /// a date (`2026-12-01`, midnight in the host's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only backups created before this time (same forms as `since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// At most this many entries (default [`crate::limits::LIST_PAGE`], at
    /// most [`crate::limits::LIST_PAGE_MAX`]). A page also ends early rather
    /// than grow past [`crate::limits::LIST_PAGE_BYTES`] of JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Continue after the previous page: its `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `backup.list` result: one page of entries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResult {
    /// Index entries, newest first.
    pub backups: Vec<BackupEntry>,
    /// How many entries the filters match in all pages.
    #[serde(default)]
    pub total: u64,
    /// More entries match: pass this as `cursor` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `backup.show` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    /// Backup id.
    pub id: String,
}

/// `backup.show` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShowResult {
    /// The index entry.
    pub backup: BackupEntry,
}

/// `backup.protect` / `backup.unprotect` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectParams {
    /// Backup id.
    pub id: String,
}

/// `backup.protect` / `backup.unprotect` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectResult {
    /// Backup id.
    pub id: String,
    /// Whether it is protected now.
    pub protected: bool,
    /// Whether the index changed (`false`: it was so already).
    pub changed: bool,
}

/// `backup.create` parameters (flags of `abssctl backup create`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Instance to back up.
    pub instance: String,
    /// `-m/--message`.
    #[serde(default)]
    pub message: Option<String>,
    /// `--label` values; each may also be comma-separated.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `--data-only`: leave out the unit, site and enabled link.
    #[serde(default)]
    pub data_only: bool,
    /// `--out-dir`: must lie under the backups root. Default `<root>/<instance>`.
    #[serde(default)]
    pub out_dir: Option<String>,
    /// `--compression`.
    #[serde(default)]
    pub compression: Compression,
    /// `--compression-level` (zstd 1–19, gzip 1–9).
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// `--consistency`; absent: `daemon.consistency`.
    #[serde(default)]
    pub consistency: Option<Consistency>,
    /// `--dry-run`: return the plan, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Return `{op_id}` at once instead of waiting for the result.
    #[serde(default)]
    pub detach: bool,
}

/// One source of a create plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSource {
    /// `data`, `unit`, `site`, `site_enabled`, `registry` or `instance`.
    pub role: String,
    /// Where it is read from on the host.
    pub path: String,
    /// Where it goes inside the archive.
    pub member: String,
    /// Whether it exists.
    pub present: bool,
    /// Bytes of file content it contributes.
    pub bytes: u64,
    /// Number of tar entries it contributes.
    pub entries: u64,
}

/// What `backup.create` will do (also the whole answer to `--dry-run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatePlan {
    /// Instance.
    pub instance: String,
    /// Backup id that will be used.
    pub id: String,
    /// The entry's `created_at` (the same instant as the id's time).
    pub created_at: String,
    /// Final archive path.
    pub archive: String,
    /// Sidecar path.
    pub checksum_file: String,
    /// Compression algorithm.
    pub algorithm: Algorithm,
    /// Compression level (effective).
    pub compression_level: Option<i32>,
    /// `--data-only`.
    pub data_only: bool,
    /// Everything that goes into the archive.
    pub sources: Vec<PlanSource>,
    /// Sum of file content bytes (progress total).
    pub total_bytes: u64,
    /// The index that will get the entry.
    pub index: String,
    /// `true` when this plan was only computed.
    pub dry_run: bool,
    /// The mode asked for (or configured).
    pub consistency: Consistency,
    /// How the instance will be read: the mode, or `offline` when its unit is
    /// not running.
    pub capture: Capture,
    /// Whether the instance's unit was running when planned; absent when
    /// systemd could not be asked (then `snapshot` snapshots anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_running: Option<bool>,
    /// SQLite databases (paths on the host) that go in as snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// What the capture does that is not a problem, for people (e.g. the
    /// journals beside snapshotted databases are not archived). Left out when
    /// empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the walk left out and why (a special file, a symlink restore would
    /// refuse, a sparse file over the limit, something that changed while it
    /// was walked), for people. Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `backup.create` result (the Python tool's keys, extended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateResult {
    /// Backup id.
    pub id: String,
    /// Archive path.
    pub archive: String,
    /// sha256 hex of the archive.
    pub checksum: String,
    /// Sidecar path.
    pub checksum_file: String,
    /// Archive size.
    pub size_bytes: u64,
    /// Compression used.
    pub algorithm: Algorithm,
    /// Level used.
    pub compression_level: Option<i32>,
    /// Operator message.
    pub message: Option<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// Data only.
    pub data_only: bool,
    /// Bytes of file content archived.
    pub uncompressed_bytes: u64,
    /// Creation timestamp.
    pub created_at: String,
    /// How the instance was read.
    pub capture: Capture,
    /// Databases archived as SQLite snapshots.
    #[serde(default)]
    pub snapshots: u64,
    /// Milliseconds the unit was stopped (`stop` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// What was left out of the archive and why: the plan's warnings, then the
    /// files that changed between the walk and the tar pass. Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `backup.verify` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// One backup id (exclusive with `all`).
    #[serde(default)]
    pub id: Option<String>,
    /// Every backup in the index.
    #[serde(default)]
    pub all: bool,
    /// `--deep`: also read each archive through and check the databases,
    /// blobs and files inside it ([`DeepVerification`]).
    #[serde(default)]
    pub deep: bool,
    /// Return `{op_id}` at once.
    #[serde(default)]
    pub detach: bool,
}

/// What `backup.verify` will check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyPlan {
    /// Ids in the order they will be checked.
    pub ids: Vec<String>,
    /// Sum of the archives' sizes on disk (progress total).
    pub total_bytes: u64,
    /// `--deep`: each archive's content is checked too.
    #[serde(default)]
    pub deep: bool,
}

/// The outcome for one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyItem {
    /// Backup id.
    pub id: String,
    /// New status (`available|missing|corrupt|error`).
    pub status: String,
    /// Human explanation.
    pub message: String,
    /// Status before verify.
    pub previous_status: String,
    /// What the deep check found (`--deep`; absent when the checksum already
    /// failed or the archive is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep: Option<DeepVerification>,
}

/// `backup.verify` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyResult {
    /// One item per checked backup.
    pub results: Vec<VerifyItem>,
}

impl VerifyResult {
    /// Whether any archive was found corrupt, missing or unreadable.
    pub fn has_problems(&self) -> bool {
        self.results.iter().any(|r| r.status != status::AVAILABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_entry_is_available_with_its_digest_and_nothing_else() {
        let entry = BackupEntry::new(
            "20250102-030405-alpha-a1b2c3".into(),
            "alpha".into(),
            "2025-01-02T03:04:05Z".into(),
            "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst".into(),
            "zstd",
            1234,
            "00ff".into(),
        );
        // Exactly the keys, values and order create and adoption wrote when
        // they assembled entries by hand.
        let expected = serde_json::json!({
            "id": "20250102-030405-alpha-a1b2c3",
            "instance": "alpha",
            "created_at": "2025-01-02T03:04:05Z",
            "path": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
            "algorithm": "zstd",
            "compression_level": null,
            "size_bytes": 1234,
            "checksum": {"algorithm": "sha256", "value": "00ff"},
            "status": "available",
            "message": null,
            "created_by": null,
            "metadata": {"data_only": false, "labels": []}
        });
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(entry.sha256(), Some("00ff"));
    }

    #[test]
    fn restore_history_reads_into_fields_and_is_written_back_as_it_was() {
        // An entry as abssd annotated it after a restore (history after
        // `reconciled_at`), with a key of the Python tool after it.
        let text = serde_json::json!({
            "id": "20250102-030405-alpha-a1b2c3",
            "instance": "alpha",
            "created_at": "2025-01-02T03:04:05Z",
            "path": "/srv/backups/alpha/x.tar.zst",
            "algorithm": "zstd",
            "compression_level": null,
            "size_bytes": 1234,
            "checksum": {"algorithm": "sha256", "value": "00ff", "last_verified": "2025-02-01T00:00:00Z", "observed": "00ff"},
            "status": "available",
            "message": null,
            "created_by": {"uid": 0, "user": "root", "pid": 4},
            "metadata": {"data_only": false, "labels": []},
            "verified_at": "2025-02-01T00:00:00Z",
            "last_restored_at": "2025-02-01T00:00:00Z",
            "last_restore_destination": "/srv/alpha/data",
            "restored_by": {"uid": 0, "user": "root", "pid": 9},
            "restores": [
                {"at": "2025-01-15T00:00:00Z", "by": {"uid": 1000, "user": "ops", "pid": 8},
                 "destination": "/tmp/x", "op_id": "op-1", "pre_restore_backup": null},
                {"at": "2025-02-01T00:00:00Z", "by": {"uid": 0, "user": "root", "pid": 9},
                 "destination": "/srv/alpha/data", "op_id": "op-2",
                 "pre_restore_backup": "20250201-000000-alpha-000001", "note": "kept"}
            ],
            "python_key": [1]
        })
        .to_string();
        let entry: BackupEntry = serde_json::from_str(&text).unwrap();
        let text_of = |v: &Option<Lenient<String>>| v.as_ref().and_then(Lenient::typed).cloned();
        assert_eq!(
            text_of(&entry.last_restored_at).as_deref(),
            Some("2025-02-01T00:00:00Z")
        );
        assert_eq!(
            text_of(&entry.last_restore_destination).as_deref(),
            Some("/srv/alpha/data")
        );
        assert_eq!(
            entry
                .restored_by
                .as_ref()
                .and_then(Lenient::typed)
                .map(|a| a.pid),
            Some(9)
        );
        let records: Vec<&RestoreRecord> = entry.restore_records().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].pre_restore_backup, None);
        assert_eq!(records[1].op_id, "op-2");
        assert_eq!(records[1].extra["note"], "kept");
        assert!(entry.has_restore("op-1") && !entry.has_restore("op-3"));
        // Nothing else is taken for unknown keys.
        assert_eq!(entry.extra.keys().collect::<Vec<_>>(), ["python_key"]);
        assert_eq!(serde_json::to_string(&entry).unwrap(), text);

        // An entry never restored has none of the keys.
        let mut fresh = entry.clone();
        fresh.last_restored_at = None;
        fresh.last_restore_destination = None;
        fresh.restored_by = None;
        fresh.restores = None;
        let written = serde_json::to_value(&fresh).unwrap();
        for key in [
            "last_restored_at",
            "last_restore_destination",
            "restored_by",
            "restores",
        ] {
            assert!(written.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn restore_history_in_other_shapes_is_read_and_written_back_unchanged() {
        // The Python tool names actors by user name; older or hand-made
        // records have other keys, other orders, nulls and numbers.
        let text = serde_json::json!({
            "id": "x", "instance": "a", "created_at": "2025-01-02T03:04:05Z",
            "path": "/srv/backups/a/x.tar.gz", "algorithm": "gzip",
            "compression_level": null, "size_bytes": 10,
            "checksum": {"algorithm": "sha256", "value": "00ff"},
            "status": "available", "message": "from python", "created_by": "root",
            "metadata": {"data_only": false, "labels": []},
            "last_restored_at": 1735787045,
            "last_restore_destination": null,
            "restored_by": "root",
            "restores": [
                {"restored_at": "2025-01-15T00:00:00Z", "actor": "root"},
                {"op_id": "op-1", "at": "2025-01-16T00:00:00Z",
                 "by": {"uid": 0, "user": "root", "pid": 4},
                 "destination": "/srv/a/data", "pre_restore_backup": null},
                {"at": "2025-01-17T00:00:00Z", "by": {"uid": 0, "user": "root", "pid": 5, "tty": "pts/0"},
                 "destination": "/srv/a/data", "op_id": "op-2", "pre_restore_backup": null},
                "restored once by hand"
            ]
        })
        .to_string();
        let entry: BackupEntry = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&entry).unwrap(), text);
        assert_eq!(entry.restored_by, Some(Lenient::Other("root".into())));
        assert_eq!(
            entry.last_restore_destination,
            Some(Lenient::Other(Value::Null))
        );
        // Records in another order or with more keys are kept as they are,
        // and still count as that operation's.
        assert_eq!(entry.restore_records().count(), 0);
        assert!(entry.has_restore("op-1") && entry.has_restore("op-2"));

        for restores in [r#"{"count":2}"#, "null", r#""see the log""#] {
            let text = text.replace(
                r#""restored_by":"root""#,
                r#""restored_by":{"user":"root"}"#,
            );
            let start = text.find(r#""restores":"#).unwrap();
            let text = format!("{}\"restores\":{restores}}}", &text[..start]);
            let entry: BackupEntry = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&entry).unwrap(), text);
            assert!(!entry.has_restore("op-1"));
        }
    }

    #[test]
    fn the_python_tools_restore_and_reconcile_metadata_is_typed_or_kept() {
        // As the Python tool writes them (cli.py: `_iso_now()` times, its
        // `_detect_actor()` shape, "archive-missing"), in its key order.
        let metadata = serde_json::json!({
            "data_only": false, "labels": ["pre-backup-restore"],
            "last_restored_at": "2025-01-15T00:00:00Z",
            "last_restore_destination": "/srv/a/data",
            "last_restore_actor": {"type": "ci", "name": "runner", "session": "4711"},
            "reconciled_at": "2025-01-16T00:00:00Z",
            "reconcile_reason": "archive-missing",
        });
        let m: EntryMetadata = serde_json::from_value(metadata.clone()).unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap(), metadata);
        assert!(m.extra.is_empty());
        let actor = m
            .last_restore_actor
            .as_ref()
            .and_then(Lenient::typed)
            .unwrap();
        assert_eq!(
            (actor.kind.as_str(), actor.session.as_deref()),
            ("ci", Some("4711"))
        );
        assert_eq!(
            m.reconcile_reason,
            Some(Lenient::Typed(reconcile_reason::ARCHIVE_MISSING.into()))
        );
        // Other shapes (a bare user name, more keys, a number, null) are kept.
        let odd = serde_json::json!({
            "data_only": false, "labels": [],
            "last_restored_at": 1735787045,
            "last_restore_destination": null,
            "last_restore_actor": {"type": "user", "name": "root", "uid": 0},
            "reconcile_reason": ["archive-missing"],
        });
        let m: EntryMetadata = serde_json::from_value(odd.clone()).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            serde_json::to_string(&odd).unwrap()
        );
        assert!(matches!(m.last_restore_actor, Some(Lenient::Other(_))));
        assert!(matches!(m.last_restored_at, Some(Lenient::Other(_))));
        // What abssd writes for its caller.
        let ours = ToolActor::of(&Actor {
            uid: 0,
            user: "root".into(),
            pid: 7,
        });
        assert_eq!(
            serde_json::to_value(ours).unwrap(),
            serde_json::json!({"type": "user", "name": "root"})
        );
    }

    #[test]
    fn legacy_spellings_are_normalized() {
        let raw = r#"{"id":"x","instance":"a","created_at":"2025-01-02T03:04:05Z",
            "archive_path":"/srv/backups/a/x.tar.gz","checksum_sha256":"ab12","status":"present",
            "odd":{"k":[1,2]}}"#;
        let mut e: BackupEntry = serde_json::from_str(raw).unwrap();
        e.normalize_legacy();
        assert_eq!(e.path, "/srv/backups/a/x.tar.gz");
        assert_eq!(e.sha256(), Some("ab12"));
        assert_eq!(e.status, status::AVAILABLE);
        assert!(!e.extra.contains_key("checksum_sha256"));
        let out = serde_json::to_value(&e).unwrap();
        assert_eq!(out["odd"]["k"][1], 2);
        assert_eq!(out["path"], "/srv/backups/a/x.tar.gz");
    }

    #[test]
    fn protected_is_written_only_when_set_and_any_odd_value_reads_as_protected() {
        let raw = serde_json::json!({"id": "x", "instance": "a",
            "created_at": "2025-01-02T03:04:05Z", "path": "/b/x.tar.zst", "status": "available"});
        let mut e: BackupEntry = serde_json::from_value(raw.clone()).unwrap();
        assert!(!e.protected);
        assert!(serde_json::to_value(&e).unwrap().get("protected").is_none());
        e.protected = true;
        let out = serde_json::to_value(&e).unwrap();
        assert_eq!(out["protected"], true);
        assert!(
            serde_json::from_value::<BackupEntry>(out)
                .unwrap()
                .protected
        );
        // Hand-written values never make the index unreadable, and only an
        // explicit false or null leaves a backup unprotected.
        for (value, protected) in [
            (serde_json::json!(false), false),
            (serde_json::Value::Null, false),
            (serde_json::json!("yes"), true),
            (serde_json::json!(1), true),
        ] {
            let mut odd = raw.clone();
            odd["protected"] = value.clone();
            let e: BackupEntry = serde_json::from_value(odd).unwrap();
            assert_eq!(e.protected, protected, "{value}");
        }
    }

    #[test]
    fn create_params_reject_unknown_fields() {
        let err = serde_json::from_str::<CreateParams>(r#"{"instance":"a","lables":["x"]}"#);
        assert!(err.is_err());
    }
}
