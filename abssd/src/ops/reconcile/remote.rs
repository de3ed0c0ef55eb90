//! Reconcile across a remote (`backup reconcile --remote NAME`), and the
//! survey of what a remote holds that `remote.ls` answers with.
//!
//! 1. [`survey`]: page through the listing under `<prefix>/[<instance>/]`
//!    (at most [`REMOTE_LS_MAX_KEYS`] keys) and group the objects per
//!    backup with [`layout::classify`]: archive, sidecar, entry.
//! 2. Read the index under the global lock.
//! 3. Compare ([`compare`]): a recorded copy whose archive object is gone is
//!    `missing`; one whose object's size differs from the record, or whose
//!    remote sidecar names another plain SHA-256 than the entry's checksum,
//!    `mismatched`; a backup in the remote without an index entry
//!    `orphaned` (remote-only); an entry whose archive is here and that
//!    records no copy in the remote `local_only` (informational).
//! 4. `--apply --adopt`: read each remote-only backup's entry object
//!    (bounded, decrypted with the remote's identity file), check it names
//!    the backup its keys name ([`adoption`]).
//! 5. `--apply`: under the global lock (and the adopted instances' locks),
//!    re-read the index, drop the records of missing copies that are still
//!    as they were, add the adopted entries that are still new, in one
//!    atomic replace ([`write`]). Like local reconcile's apply, nothing here
//!    needs a journal: the index is replaced whole or not at all.
//!
//! Nothing read from the bucket is trusted: whoever holds the remote's
//! credentials can write any object there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use abssd_proto::{
    Actor, BackupEntry, EventKind, Lenient, Phase, REMOTE_LS_MAX_BACKUPS, REMOTE_LS_MAX_KEYS,
    REMOTE_LS_MAX_UNPLACED, ReconcileItem, ReconcileParams, ReconcilePlan, ReconcileResult,
    RemoteBackup, RemoteCopy, RemoteLsParams, RemoteLsResult, item_status, reconcile_reason,
    status,
};
use serde_json::{Map, Value};

use super::scan::strip_extension;
use crate::archive::sidecar;
use crate::config::remotes::RemoteSettings;
use crate::error::{Error, Result, shown};
use crate::fsutil;
use crate::index::{self, Index};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::registry::validate_name;
use crate::remote::layout::{self, AGE_SUFFIX, Object, SIDECAR_SUFFIX};
use crate::remote::listing::Pages;
use crate::remote::{self, S3, crypt};

/// The largest entry object adopted (an entry is a few KiB; whoever can
/// write to the bucket chooses what is read).
pub const MAX_ENTRY_BYTES: u64 = 64 << 10;
/// The largest sidecar object read.
const MAX_SIDECAR_BYTES: u64 = 4096;

/// One backup's objects in a remote.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// The instance directory.
    pub instance: String,
    /// The id: the entry's name, else the archive's file name without its
    /// extension.
    pub id: String,
    /// The archive object: key, file name on disk (no `.age`), size,
    /// encrypted, when it was written.
    pub archive: Option<ArchiveObject>,
    /// The sidecar object's key.
    pub sidecar: Option<String>,
    /// The entry object's key, whether it is encrypted, and its size.
    pub entry: Option<(String, bool, u64)>,
}

/// An archive object.
#[derive(Debug, Clone)]
pub struct ArchiveObject {
    /// Its key.
    pub key: String,
    /// Its file name on disk (without `.age`).
    pub file: String,
    /// Bytes stored.
    pub size: u64,
    /// `.age`.
    pub encrypted: bool,
    /// When it was written, as the listing says.
    pub last_modified: Option<String>,
}

/// What a listing found.
#[derive(Debug, Default)]
pub struct Survey {
    /// `s3://BUCKET/PREFIX`.
    pub location: String,
    /// The prefix listed.
    pub prefix: String,
    /// By (instance, id).
    pub groups: BTreeMap<(String, String), Group>,
    /// Keys read.
    pub keys_scanned: u64,
    /// Cut at [`REMOTE_LS_MAX_KEYS`].
    pub truncated: bool,
    /// Keys not shaped as abssd writes them (or a second archive of an id).
    pub unplaced: u64,
    /// The first few.
    pub unplaced_keys: Vec<String>,
}

impl Survey {
    fn unplaced(&mut self, key: &str) {
        self.unplaced += 1;
        if self.unplaced_keys.len() < REMOTE_LS_MAX_UNPLACED {
            self.unplaced_keys.push(shown(key));
        }
    }

    /// The group whose archive object is `key`.
    fn by_archive_key(&self) -> HashMap<&str, &Group> {
        self.groups
            .values()
            .filter_map(|g| g.archive.as_ref().map(|a| (a.key.as_str(), g)))
            .collect()
    }
}

/// List `<prefix>/[<instance>/]` of `remote` and group what is there.
/// Blocking.
pub fn survey(s3: &S3, remote: &RemoteSettings, instance: Option<&str>) -> Result<Survey> {
    let prefix = match instance {
        Some(i) => layout::instance_prefix(remote, i),
        None => layout::root_prefix(remote),
    };
    let mut survey = Survey {
        location: format!("s3://{}/{prefix}", remote.bucket),
        prefix: prefix.clone(),
        ..Survey::default()
    };
    // A server that pages endlessly is stopped by `Pages`.
    let mut pages = Pages::new(s3, &prefix);
    'pages: while let Some(objects) = pages.next_page()? {
        for object in objects {
            if survey.keys_scanned >= REMOTE_LS_MAX_KEYS {
                survey.truncated = true;
                break 'pages;
            }
            survey.keys_scanned += 1;
            place(&mut survey, remote, object);
        }
    }
    Ok(survey)
}

fn place(survey: &mut Survey, remote: &RemoteSettings, object: remote::s3::ObjectInfo) {
    let Some((instance, what)) = layout::classify(remote, &object.key) else {
        survey.unplaced(&object.key);
        return;
    };
    let id = match &what {
        Object::Entry { id, .. } => id.clone(),
        Object::Sidecar { archive } => strip_extension(archive).to_owned(),
        Object::Archive { file, .. } => strip_extension(file).to_owned(),
    };
    let group = survey
        .groups
        .entry((instance.clone(), id.clone()))
        .or_insert_with(|| Group {
            instance,
            id,
            ..Group::default()
        });
    let taken = match what {
        Object::Entry { encrypted, .. } => {
            let taken = group.entry.is_some();
            group
                .entry
                .get_or_insert((object.key.clone(), encrypted, object.size));
            taken
        }
        Object::Sidecar { .. } => {
            let taken = group.sidecar.is_some();
            group.sidecar.get_or_insert(object.key.clone());
            taken
        }
        Object::Archive { file, encrypted } => {
            let taken = group.archive.is_some();
            group.archive.get_or_insert(ArchiveObject {
                key: object.key.clone(),
                file,
                size: object.size,
                encrypted,
                last_modified: object.last_modified,
            });
            taken
        }
    };
    if taken {
        survey.unplaced(&object.key);
    }
}

/// The remote named `name`, a client of it, and the name checks of `instance`.
/// The client reads the credentials file: off the async workers.
async fn open(ctx: &Ctx, name: &str, instance: Option<&str>) -> Result<(RemoteSettings, S3)> {
    if let Some(i) = instance {
        validate_name(i)?;
    }
    let remote = ctx.config.remotes.pick(Some(name))?.clone();
    let r = remote.clone();
    let s3 = tokio::task::spawn_blocking(move || remote::connect(&r)).await??;
    Ok((remote, s3))
}

/// `remote.ls`.
pub async fn ls(ctx: &Ctx, params: &RemoteLsParams) -> Result<RemoteLsResult> {
    let (remote, s3) = open(ctx, &params.remote, params.instance.as_deref()).await?;
    let (r, instance) = (remote.clone(), params.instance.clone());
    let survey =
        tokio::task::spawn_blocking(move || survey(&s3, &r, instance.as_deref())).await??;
    let file = ctx.config.layout.index_file.clone();
    let index = tokio::task::spawn_blocking(move || Index::load(&file)).await??;
    let mut backups = Vec::new();
    for g in survey.groups.values().take(REMOTE_LS_MAX_BACKUPS) {
        let local = index.get(&g.id);
        backups.push(RemoteBackup {
            instance: g.instance.clone(),
            id: g.id.clone(),
            archive_key: g.archive.as_ref().map(|a| a.key.clone()),
            size_bytes: g.archive.as_ref().map(|a| a.size),
            encrypted: match (&g.archive, &g.entry) {
                (Some(a), _) => a.encrypted,
                (None, Some((_, e, _))) => *e,
                (None, None) => false,
            },
            has_sidecar: g.sidecar.is_some(),
            has_entry: g.entry.is_some(),
            in_index: local.is_some(),
            recorded: local.is_some_and(|e| e.remote_copy(&remote.name).is_some()),
        });
    }
    Ok(RemoteLsResult {
        remote: remote.name.clone(),
        location: survey.location,
        backups,
        backups_found: survey.groups.len() as u64,
        keys_scanned: survey.keys_scanned,
        truncated: survey.truncated,
        unplaced: survey.unplaced,
        unplaced_keys: survey.unplaced_keys,
    })
}

/// An index change of a remote reconcile.
#[derive(Debug)]
enum Change {
    /// Drop the record of backup `id`'s copy in remote `name` at `key`.
    Drop {
        id: String,
        name: String,
        key: String,
    },
    /// Add this entry (status `missing`, its copy recorded).
    Adopt(Box<BackupEntry>),
}

/// A change and the finding it fixes: (orphaned?, position in its list).
#[derive(Debug)]
struct Planned {
    change: Change,
    orphan: bool,
    at: usize,
}

/// `backup reconcile --remote NAME`.
pub async fn run(
    ctx: &Ctx,
    params: &ReconcileParams,
    name: &str,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(ReconcilePlan, ReconcileResult)> {
    if params.verify || params.deep {
        return Err(Error::validation(
            "--verify and --deep re-hash local archives; they do not go with --remote",
        ));
    }
    let (remote, s3) = open(ctx, name, params.instance.as_deref()).await?;
    let s3 = std::sync::Arc::new(s3);
    progress.phase(Phase::Scan);
    let (s, r, instance) = (s3.clone(), remote.clone(), params.instance.clone());
    let survey = tokio::task::spawn_blocking(move || survey(&s, &r, instance.as_deref())).await??;
    if survey.truncated {
        return Err(Error::Environment(format!(
            "remote {:?} holds more than {REMOTE_LS_MAX_KEYS} keys under {}: reconcile it one instance at a time (--instance)",
            remote.name, survey.location
        )));
    }
    if survey.unplaced > 0 {
        progress.info(format!(
            "{} key(s) under {} are not objects abssd writes and were left out: {}",
            survey.unplaced,
            survey.location,
            survey.unplaced_keys.join(", ")
        ));
    }
    let index = {
        let _global = ctx.locks.acquire(true, &[], progress).await?;
        let file = ctx.config.layout.index_file.clone();
        tokio::task::spawn_blocking(move || Index::load(&file)).await??
    };
    let plan = ReconcilePlan {
        backups_root: survey.location.clone(),
        index: ctx.config.layout.index_file.display().to_string(),
        instance: params.instance.clone(),
        archives: survey.groups.len() as u64,
        index_entries: index.backups.len() as u64,
        partial_files: 0,
        read_bytes: 0,
        apply: params.apply,
        adopt: params.adopt,
        verify: false,
        deep: false,
        remote: Some(remote.name.clone()),
    };
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(&plan),
    });

    let backups_root = ctx.config.layout.backups_root.clone();
    let (s, r, scope) = (s3.clone(), remote.clone(), params.instance.clone());
    let (adopt, actor) = (params.adopt, actor.clone());
    let (mut result, planned) = tokio::task::spawn_blocking(move || {
        let (mut result, mut planned) = compare(&s, &r, &survey, &index, scope.as_deref());
        if adopt {
            planned.extend(adoptions(
                &s,
                &r,
                &survey,
                &index,
                &backups_root,
                &actor,
                &mut result,
            ));
        }
        // Compared, not yet written: tests bring a copy back here.
        hook_point!("reconcile::remote-compared");
        (result, planned)
    })
    .await?;

    if params.apply {
        let applied = write(ctx, s3, planned, progress, &mut result).await?;
        super::apply::record_applied(&mut result, applied, params.adopt, |i| i.id.as_str());
    }
    result.count_unresolved();
    result.cap();
    Ok((plan, result))
}

/// Index against remote: findings, and the drops that fix the missing ones.
/// Reads the sidecars of the copies present. Blocking.
fn compare(
    s3: &S3,
    remote: &RemoteSettings,
    survey: &Survey,
    index: &Index,
    scope: Option<&str>,
) -> (ReconcileResult, Vec<Planned>) {
    let mut result = ReconcileResult::default();
    let mut planned = Vec::new();
    let by_key = survey.by_archive_key();
    let name = remote.name.as_str();
    for entry in &index.backups {
        if scope.is_some_and(|s| s != entry.instance) || entry.status == status::REMOVED {
            continue;
        }
        let Some(copy) = entry.remote_copy(name) else {
            if entry.status == status::AVAILABLE && Path::new(&entry.path).is_file() {
                let mut reason = format!("no copy recorded in remote {name:?}");
                if survey
                    .groups
                    .contains_key(&(entry.instance.clone(), entry.id.clone()))
                {
                    reason.push_str(
                        "; the remote holds objects of it that no record names (a push that did not finish?)",
                    );
                }
                result.local_only.push(item(
                    entry,
                    &entry.path,
                    reason,
                    Some(format!("push it (abssctl backup push {})", entry.id)),
                ));
            }
            continue;
        };
        let found: Option<(u64, Option<&str>)> = match by_key.get(copy.key.as_str()) {
            Some(g) => g.archive.as_ref().map(|a| (a.size, g.sidecar.as_deref())),
            // A key outside the listed prefix (another prefix, by hand): looked up.
            None if !copy.key.starts_with(&survey.prefix) => match s3.head(&copy.key) {
                Ok(info) => info.map(|i| (i.size, None)),
                Err(e) => {
                    let why = format!("its copy {} could not be looked up: {e}", copy.key);
                    result.mismatched.push(item(entry, &copy.key, why, None));
                    continue;
                }
            },
            None => None,
        };
        let Some((size, sidecar)) = found else {
            result.missing.push(item(
                entry,
                &copy.key,
                format!(
                    "the copy recorded in remote {name:?} ({}) is not there",
                    copy.key
                ),
                Some(format!("drop the record of the copy in remote {name:?}")),
            ));
            planned.push(Planned {
                change: Change::Drop {
                    id: entry.id.clone(),
                    name: name.to_owned(),
                    key: copy.key.clone(),
                },
                orphan: false,
                at: result.missing.len() - 1,
            });
            continue;
        };
        if size != copy.size_bytes {
            let why = format!(
                "the object holds {size} bytes, the record says {}",
                copy.size_bytes
            );
            result.mismatched.push(item(entry, &copy.key, why, None));
            continue;
        }
        let (Some(sidecar), Some(want)) = (sidecar, entry.sha256()) else {
            continue;
        };
        let file = file_name(&entry.path);
        match read_sidecar(s3, sidecar) {
            Ok(text) => match sidecar::digest_for(&text, file) {
                Some(d) if d.eq_ignore_ascii_case(want) => {}
                Some(d) => {
                    let why = format!(
                        "its remote sidecar says sha256 {d}, the entry's checksum is {want}"
                    );
                    result.mismatched.push(item(entry, &copy.key, why, None));
                }
                None => {
                    let why = format!("its remote sidecar {sidecar} has no line for {file}");
                    result.mismatched.push(item(entry, &copy.key, why, None));
                }
            },
            Err(e) => {
                let why = format!("its remote sidecar {sidecar} could not be read: {e}");
                result.mismatched.push(item(entry, &copy.key, why, None));
            }
        }
    }
    for g in survey.groups.values() {
        if index.get(&g.id).is_some() {
            continue;
        }
        let (path, size) = match (&g.archive, &g.entry, &g.sidecar) {
            (Some(a), _, _) => (a.key.clone(), Some(a.size)),
            (None, Some((k, _, _)), _) => (k.clone(), None),
            (None, None, Some(k)) => (k.clone(), None),
            (None, None, None) => continue,
        };
        let mut have = Vec::new();
        for (what, there) in [
            ("archive", g.archive.is_some()),
            ("sidecar", g.sidecar.is_some()),
            ("entry", g.entry.is_some()),
        ] {
            if there {
                have.push(what);
            }
        }
        let adoptable = g.archive.is_some() && g.entry.is_some();
        result.orphaned.push(ReconcileItem {
            id: g.id.clone(),
            instance: Some(g.instance.clone()),
            path,
            status: item_status::REMOTE_ONLY.into(),
            reason: format!("in remote {name:?} ({}), not in the index", have.join(", ")),
            action: adoptable
                .then(|| "adopt its entry (status missing, its copy recorded)".to_owned()),
            resolved: false,
            size_bytes: size,
        });
    }
    (result, planned)
}

fn item(entry: &BackupEntry, path: &str, reason: String, action: Option<String>) -> ReconcileItem {
    ReconcileItem {
        id: entry.id.clone(),
        instance: Some(entry.instance.clone()),
        path: path.to_owned(),
        status: entry.status.clone(),
        reason,
        action,
        resolved: false,
        size_bytes: None,
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn read_sidecar(s3: &S3, key: &str) -> Result<String> {
    let bytes = s3.get_small(key, MAX_SIDECAR_BYTES + 1)?;
    if bytes.len() as u64 > MAX_SIDECAR_BYTES {
        return Err(Error::validation(format!(
            "the sidecar {key} is larger than {MAX_SIDECAR_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::validation(format!("the sidecar {key} is not text")))
}

/// Each remote-only backup with an archive and an entry object, read and
/// checked; an entry to add for those that pass, the reason on the item of
/// those that do not. Blocking.
fn adoptions(
    s3: &S3,
    remote: &RemoteSettings,
    survey: &Survey,
    index: &Index,
    backups_root: &Path,
    actor: &Actor,
    result: &mut ReconcileResult,
) -> Vec<Planned> {
    let mut identities: Option<std::result::Result<Vec<_>, String>> = None;
    let mut planned = Vec::new();
    for at in 0..result.orphaned.len() {
        let item = &result.orphaned[at];
        if item.action.is_none() {
            continue;
        }
        let key = (item.instance.clone().unwrap_or_default(), item.id.clone());
        let Some(group) = survey.groups.get(&key) else {
            continue;
        };
        let adopted = adoption(
            s3,
            remote,
            group,
            index,
            backups_root,
            actor,
            &mut identities,
        );
        let item = &mut result.orphaned[at];
        match adopted {
            Ok(entry) => planned.push(Planned {
                change: Change::Adopt(Box::new(entry)),
                orphan: true,
                at,
            }),
            Err(why) => {
                item.reason = format!("{}; not adopted: {why}", item.reason);
                item.action = None;
            }
        }
    }
    planned
}

/// The entry to add for `group`, or why not.
fn adoption(
    s3: &S3,
    remote: &RemoteSettings,
    group: &Group,
    index: &Index,
    backups_root: &Path,
    actor: &Actor,
    identities: &mut Option<std::result::Result<Vec<Box<dyn age::Identity + Send + Sync>>, String>>,
) -> std::result::Result<BackupEntry, String> {
    let (Some(archive), Some((entry_key, sealed, size))) = (&group.archive, &group.entry) else {
        return Err("it has no archive or no entry object".into());
    };
    // The listing's size first: nothing larger is downloaded.
    if *size > MAX_ENTRY_BYTES {
        return Err(format!(
            "its entry object {entry_key} is larger than {MAX_ENTRY_BYTES} bytes ({size})"
        ));
    }
    let raw = s3
        .get_small(entry_key, MAX_ENTRY_BYTES + 1)
        .map_err(|e| format!("its entry object could not be read: {e}"))?;
    if raw.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format!(
            "its entry object {entry_key} is larger than {MAX_ENTRY_BYTES} bytes"
        ));
    }
    let text = if *sealed {
        let ids = identities.get_or_insert_with(|| {
            crypt::identities_of(remote, "its entry object").map_err(|e| e.to_string())
        });
        let ids = ids.as_ref().map_err(Clone::clone)?;
        let mut plain = Vec::new();
        crypt::decrypt(ids, raw.as_slice())
            .map_err(|e| format!("its entry object: {e}"))?
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut plain)
            .map_err(|e| format!("its entry object could not be decrypted: {e}"))?;
        if plain.len() as u64 > MAX_ENTRY_BYTES {
            return Err(format!(
                "its entry object decrypts to more than {MAX_ENTRY_BYTES} bytes"
            ));
        }
        plain
    } else {
        raw
    };
    let mut entry: BackupEntry = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "its entry object is not an index entry in JSON ({})",
            shown(&e.to_string())
        )
    })?;
    if entry.id != group.id || entry.instance != group.instance {
        return Err(format!(
            "its entry object names backup {:?} of instance {:?}, but its keys name backup {} of instance {}",
            shown(&entry.id),
            shown(&entry.instance),
            group.id,
            group.instance
        ));
    }
    index::check_id(&entry.id).map_err(|e| e.to_string())?;
    if index::instance_of_id(&entry.id) != Some(entry.instance.as_str()) {
        return Err(format!(
            "{} is not a backup id of instance {} (YYYYMMDD-HHMMSS-<instance>-<6 hex>)",
            entry.id, entry.instance
        ));
    }
    validate_name(&entry.instance).map_err(|e| e.to_string())?;
    if index.get(&entry.id).is_some() {
        return Err(format!("the index already has backup {}", entry.id));
    }
    if file_name(&entry.path) != archive.file {
        return Err(format!(
            "its entry's archive is {:?}, but the archive object is {}",
            shown(file_name(&entry.path)),
            archive.key
        ));
    }
    let checksum = entry
        .sha256()
        .filter(|v| sidecar::is_digest(v))
        .map(str::to_ascii_lowercase)
        .ok_or("its entry has no SHA-256 checksum")?;
    let Ok(created) = entry.created_at.parse::<jiff::Timestamp>() else {
        return Err(format!(
            "its entry's created_at {:?} is not a time",
            shown(&entry.created_at)
        ));
    };
    // No backup was made in the future: a date past now (beyond a clock's
    // drift) is an object someone else wrote.
    if created > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1) {
        return Err(format!(
            "its entry's created_at {} is in the future",
            entry.created_at
        ));
    }
    if let Some(name) = entry.algorithm.as_deref()
        && abssd_proto::Algorithm::from_name(name).is_none()
    {
        return Err(format!(
            "its entry's algorithm {:?} is not one abssd reads",
            shown(name)
        ));
    }
    if let Some(message) = &entry.message {
        crate::ops::check_message("its entry's message", message).map_err(|e| e.to_string())?;
    }
    let sidecar = match &group.sidecar {
        Some(key) => {
            Some(read_sidecar(s3, key).map_err(|e| format!("its sidecar could not be read: {e}"))?)
        }
        None => None,
    };
    if let Some(text) = &sidecar {
        match sidecar::digest_for(text, &archive.file) {
            Some(d) if d.eq_ignore_ascii_case(&checksum) => {}
            Some(d) => {
                return Err(format!(
                    "its sidecar says sha256 {d}, its entry's checksum is {checksum}"
                ));
            }
            None => return Err(format!("its sidecar has no line for {}", archive.file)),
        }
    }
    let stored = if archive.encrypted {
        let sealed_name = format!("{}{AGE_SUFFIX}", archive.file);
        sidecar
            .as_deref()
            .and_then(|t| sidecar::digest_for(t, &sealed_name))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                format!(
                    "the SHA-256 of the encrypted copy is not known: its sidecar ({}{SIDECAR_SUFFIX}) has no line for {sealed_name}",
                    archive.file
                )
            })?
    } else {
        if entry.size_bytes.is_some_and(|s| s != archive.size) {
            return Err(format!(
                "the archive object holds {} bytes, its entry says {}",
                archive.size,
                entry.size_bytes.unwrap_or_default()
            ));
        }
        checksum
    };
    let path = backups_root.join(&entry.instance).join(&archive.file);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(format!(
            "{} is there already: reconcile without --remote adopts it from disk",
            path.display()
        ));
    }
    let now = fsutil::now_utc();
    let recorded = entry
        .remote_copy(&remote.name)
        .filter(|c| c.key == archive.key)
        .map(|c| c.uploaded_at.clone());
    let uploaded_at = recorded
        .or_else(|| archive.last_modified.clone())
        .unwrap_or_else(|| now.clone());
    entry.remotes = Some(Lenient::Typed(vec![Lenient::Typed(RemoteCopy {
        name: remote.name.clone(),
        key: archive.key.clone(),
        sha256: stored,
        size_bytes: archive.size,
        uploaded_at,
        encrypted: archive.encrypted,
        extra: Map::new(),
    })]));
    entry.path = path.display().to_string();
    entry.status = status::MISSING.into();
    entry.reconciled_at = Some(now.clone());
    entry.metadata.reconciled_at = Some(Lenient::Typed(now));
    entry.metadata.reconcile_reason = Some(Lenient::Typed(reconcile_reason::REMOTE_ADOPTED.into()));
    entry.extra.insert(
        "adopted_by".into(),
        serde_json::to_value(actor).unwrap_or(Value::Null),
    );
    entry
        .extra
        .insert("adopted_from".into(), Value::String(remote.name.clone()));
    Ok(entry)
}

/// Write the planned changes under the global lock (and the adopted
/// instances' locks); mark what they fixed and return the `applied` list.
async fn write(
    ctx: &Ctx,
    s3: std::sync::Arc<S3>,
    planned: Vec<Planned>,
    progress: &Reporter,
    result: &mut ReconcileResult,
) -> Result<Vec<ReconcileItem>> {
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    progress.phase(Phase::Index);
    let mut adopting: Vec<String> = planned
        .iter()
        .filter_map(|p| match &p.change {
            Change::Adopt(e) => Some(e.instance.clone()),
            Change::Drop { .. } => None,
        })
        .collect();
    adopting.sort_unstable();
    adopting.dedup();
    let names: Vec<&str> = adopting.iter().map(String::as_str).collect();
    let _locks = ctx.locks.acquire(true, &names, progress).await?;
    let file = ctx.config.layout.index_file.clone();
    let (planned, done) = tokio::task::spawn_blocking(move || {
        let done = apply(&file, &planned, &s3)?;
        Ok::<_, Error>((planned, done))
    })
    .await??;
    let mut applied = Vec::new();
    for (p, written) in planned.into_iter().zip(done) {
        let list = if p.orphan {
            &mut result.orphaned
        } else {
            &mut result.missing
        };
        let item = &mut list[p.at];
        if !written {
            item.reason = format!(
                "{}; changed since it was looked at, not applied",
                item.reason
            );
            continue;
        }
        let id = match &p.change {
            Change::Drop { id, .. } => id,
            Change::Adopt(e) => &e.id,
        };
        progress.changed(id);
        result.updates_applied += 1;
        item.resolved = true;
        let mut done = item.clone();
        if let Change::Adopt(e) = &p.change {
            done.status = e.status.clone();
            done.path = e.path.clone();
        }
        applied.push(done);
    }
    Ok(applied)
}

/// Re-read the index, apply each change that still holds, save once.
/// Blocking; the caller holds the locks.
///
/// A missing copy's object is looked up again first: a push uploads its
/// objects before it records the copy (under the global lock), so a copy
/// recorded after the listing was made is there now and keeps its record.
fn apply(file: &Path, planned: &[Planned], s3: &S3) -> Result<Vec<bool>> {
    let mut index = Index::load(file)?;
    let mut done = Vec::with_capacity(planned.len());
    let mut taken: HashSet<PathBuf> = HashSet::new();
    for p in planned {
        let ok = match &p.change {
            Change::Drop { id, name, key } => {
                let recorded = index
                    .get(id)
                    .and_then(|e| e.remote_copy(name))
                    .is_some_and(|c| &c.key == key);
                recorded && matches!(s3.head(key), Ok(None)) && drop_copy(&mut index, id, name, key)
            }
            Change::Adopt(entry) => {
                let path = PathBuf::from(&entry.path);
                let free = index.get(&entry.id).is_none()
                    && !index.backups.iter().any(|e| e.path == entry.path)
                    && std::fs::symlink_metadata(&path).is_err()
                    && taken.insert(path);
                if free {
                    index.backups.push((**entry).clone());
                }
                free
            }
        };
        done.push(ok);
    }
    if done.iter().any(|d| *d) {
        index.save(file)?;
    }
    Ok(done)
}

/// Remove the record of `id`'s copy in remote `name` at `key`; the entry
/// loses its `remotes` key with its last copy. Returns whether there was one.
fn drop_copy(index: &mut Index, id: &str, name: &str, key: &str) -> bool {
    let Some(entry) = index.get_mut(id) else {
        return false;
    };
    let Some(Lenient::Typed(copies)) = entry.remotes.as_mut() else {
        return false;
    };
    let before = copies.len();
    copies.retain(|c| c.typed().is_none_or(|c| c.name != name || c.key != key));
    let dropped = copies.len() != before;
    if copies.is_empty() {
        entry.remotes = None;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Patience;
    use crate::remote::fake;

    #[test]
    fn a_survey_of_a_server_that_pages_endlessly_fails() {
        // Truncated, empty, the same token each time; an honest end after
        // 50 requests, so that a survey without the checks ends too.
        let fake = fake::serve(|n, _, stream| {
            let body = if n < 50 {
                "<ListBucketResult><IsTruncated>true</IsTruncated>\
                 <NextContinuationToken>same</NextContinuationToken></ListBucketResult>"
            } else {
                "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"
            };
            fake::reply(stream, 200, body);
        });
        let s3 = fake.client(Patience::OPERATION);
        let e = survey(&s3, &fake.remote(), None).unwrap_err();
        assert!(e.to_string().contains("pages oddly"), "{e}");
        assert_eq!(fake.count(), 1);
    }

    #[test]
    fn an_entry_object_larger_than_64_kib_is_not_adopted() {
        // The listing says 100 bytes; the server sends 100 KiB.
        let fake = fake::serve(|_, _, stream| {
            fake::reply(stream, 200, &"x".repeat(100 << 10));
        });
        let s3 = fake.client(Patience::OPERATION);
        let dir = tempfile::tempdir().unwrap();
        let id = "20260101-000000-alpha-a1b2c3";
        let mut group = Group {
            instance: "alpha".into(),
            id: id.into(),
            archive: Some(ArchiveObject {
                key: format!("p/alpha/{id}.tar.zst"),
                file: format!("{id}.tar.zst"),
                size: 5,
                encrypted: false,
                last_modified: None,
            }),
            sidecar: None,
            entry: Some((format!("p/alpha/{id}.json"), false, 100)),
        };
        let actor = Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        };
        let adopt = |group: &Group| {
            adoption(
                &s3,
                &fake.remote(),
                group,
                &Index::default(),
                dir.path(),
                &actor,
                &mut None,
            )
        };
        let e = adopt(&group).unwrap_err();
        assert!(
            e.contains("larger than") && e.contains("6553") && !e.contains("JSON"),
            "{e}"
        );
        assert_eq!(fake.count(), 1);
        // Listed larger than that: not even downloaded.
        group.entry.as_mut().unwrap().2 = (64 << 10) + 1;
        let e = adopt(&group).unwrap_err();
        assert!(e.contains("larger than 65536 bytes"), "{e}");
        assert_eq!(fake.count(), 1);
    }
}
