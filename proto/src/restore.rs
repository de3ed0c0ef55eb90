//! `backup.restore`: parameters, the plan (also the whole `--dry-run` answer) and
//! the result.

use serde::{Deserialize, Serialize};

use crate::backup::Algorithm;
use crate::progress::Phase;

/// `backup.restore` parameters (flags of `abssctl backup restore`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreParams {
    /// Backup id.
    pub id: String,
    /// `--instance`: assert that the backup belongs to this instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// `--dest`: restore the data only, into this absolute directory (must not
    /// exist or be empty; under the instance root or the restores root). No
    /// service, asset or registry change.
    #[serde(default)]
    pub dest: Option<String>,
    /// `--dry-run`: return the plan, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// `--no-pre-backup`: do not back up the live instance first.
    #[serde(default)]
    pub no_pre_backup: bool,
    /// `--backup-message`: message of the pre-restore backup.
    #[serde(default)]
    pub backup_message: Option<String>,
    /// `--restart` (`true`) / `--no-restart` (`false`); absent = leave the unit
    /// running if it was running, stopped if it was stopped.
    #[serde(default)]
    pub restart: Option<bool>,
    /// `--data-only`: leave the unit file, site and enabled link alone.
    #[serde(default)]
    pub data_only: bool,
    /// `--verify-deep`: before anything changes, deep-verify the archive
    /// (databases, blobs, listed files) and refuse it if that finds a problem.
    #[serde(default)]
    pub verify_deep: bool,
    /// Confirmation for a live restore (`--yes` or the client's prompt). A live
    /// restore without it is refused and changes nothing.
    #[serde(default)]
    pub yes: bool,
    /// Return `{op_id}` at once instead of waiting for the result.
    #[serde(default)]
    pub detach: bool,
    /// `--pull`: when the archive is missing here but a remote holds a copy,
    /// pull it first (the plan's `pull` says from where). Without it such a
    /// restore is refused and changes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
}

/// `live` replaces the instance; `dest` writes the data into a new directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Replace the instance's data (and service assets unless data-only).
    Live,
    /// Data only, into `--dest`.
    Dest,
}

/// What is known about the archive's checksum before extraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecksumPlan {
    /// The digest the archive must have (index entry, else sidecar).
    pub expected: String,
    /// The sidecar file.
    pub sidecar: String,
    /// Whether the sidecar names the same digest as the index (`false` when
    /// it is missing).
    pub sidecar_agrees: bool,
    /// The sidecar is missing: the archive is checked against the index's
    /// checksum, and the sidecar is written back once the restore succeeds.
    /// Left out when false, so plans of archives with their sidecar read as
    /// they always did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sidecar_missing: bool,
    /// The entry's status (`available`, `corrupt`, ...).
    pub status: String,
    /// When the archive was last verified, if ever.
    pub last_verified: Option<String>,
    /// The archive is hashed while it is extracted; a mismatch stops the restore
    /// before anything live changes.
    pub verified_during_extraction: bool,
}

/// The free-space check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpacePlan {
    /// Directory whose filesystem receives the data.
    pub filesystem: String,
    /// max(archive × 1.2, uncompressed × 1.1).
    pub needed_bytes: u64,
    /// Free bytes there now (for the daemon).
    pub available_bytes: u64,
    /// Of those, the bytes the restore leaves free for everything else on
    /// that filesystem (`daemon.restore_reserve_percent` of its size, at most
    /// 1 GiB): the restore needs `needed_bytes + reserve_bytes`. Left out
    /// when 0 (and by daemons older than it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserve_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The instance's unit as seen before the restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitPlan {
    /// `abssctl-<instance>.service`.
    pub name: String,
    /// systemd `LoadState`.
    pub load_state: String,
    /// systemd `ActiveState`.
    pub active_state: String,
    /// systemd `UnitFileState`.
    pub unit_file_state: String,
    /// Whether it will be running after the restore.
    pub running_after: bool,
}

/// One step the restore takes, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreStep {
    /// The step, by the name of the phase it reports when it runs (`extract`,
    /// `stop_unit`, `swap`, ...); `lock` and `verify_deep` are the two that
    /// report none of that name (see [`Phase::Lock`], [`Phase::DeepCheck`]).
    pub step: Phase,
    /// What it does, for people.
    pub detail: String,
}

/// What `backup.restore` will do (also the whole answer to `--dry-run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// Backup id.
    pub id: String,
    /// Instance the backup belongs to.
    pub instance: String,
    /// `live` or `dest`.
    pub mode: RestoreMode,
    /// Archive path.
    pub archive: String,
    /// Archive size.
    pub archive_bytes: u64,
    /// Compression.
    pub algorithm: Algorithm,
    /// Recorded size of the archived content, when known.
    pub uncompressed_bytes: Option<u64>,
    /// Checksum status.
    pub checksum: ChecksumPlan,
    /// The directory that ends up holding the backup's data.
    pub target: String,
    /// Where the archive is unpacked first (same filesystem as `target`).
    pub staging: String,
    /// Whether service assets are left alone.
    pub data_only: bool,
    /// Free space.
    pub space: SpacePlan,
    /// The unit (live restores).
    pub unit: Option<UnitPlan>,
    /// Where the pre-restore backup goes, when one is taken.
    pub pre_backup_dir: Option<String>,
    /// Everything the restore will do, in order.
    pub steps: Vec<RestoreStep>,
    /// `true` when this plan was only computed.
    pub dry_run: bool,
    /// What pre-flight noticed that does not stop the restore, for people:
    /// e.g. a `.pre-restore-*` directory or staging directory left beside the
    /// data by an earlier restore, which this one keeps and never reuses.
    /// Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The archive is missing here: it is first pulled from this remote copy
    /// (`pull: true` in the request). Left out when the archive is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<crate::pull::PullSource>,
}

/// `backup.restore` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreResult {
    /// Backup id.
    pub id: String,
    /// Instance.
    pub instance: String,
    /// `live` or `dest`.
    pub mode: RestoreMode,
    /// The directory now holding the backup's data.
    pub destination: String,
    /// Id of the pre-restore backup, when one was taken.
    pub pre_restore_backup: Option<String>,
    /// Completion time (UTC).
    pub restored_at: String,
    /// The archive's sha256 as computed while extracting.
    pub checksum: String,
    /// Tar entries extracted.
    pub entries: u64,
    /// Bytes of file content extracted.
    pub content_bytes: u64,
    /// Service assets that were replaced or reinstated (paths).
    pub assets: Vec<String>,
    /// Whether the unit runs after the restore (live restores).
    pub unit_running: Option<bool>,
    /// Whether nginx was checked and reloaded because the site changed.
    pub nginx_reloaded: bool,
    /// Non-fatal problems (e.g. a leftover that could not be removed).
    pub warnings: Vec<String>,
}
