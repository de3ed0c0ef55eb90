//! The two steps of reconcile that write: building an entry for an orphan
//! (read through, hashed, its sidecar checked) and writing every planned
//! change into the index in one atomic replace, each change checked again
//! against the index and the disk as they are under the global lock; then
//! the missing sidecars of present archives.
//!
//! Nothing here needs a journal: a sidecar and the index are each replaced
//! atomically, and a sidecar written for an orphan whose entry then failed to
//! be written is correct on its own; the next run adopts the orphan again. A
//! sidecar written back is correct whatever else happens: its digest is the
//! archive's hash and the entry's checksum.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use abssd_proto::{
    Actor, BackupEntry, EntryMetadata, Lenient, Phase, ReconcileItem, ReconcileResult,
    reconcile_reason, status,
};
use serde_json::{Map, Value};

use super::classify::{Adoption, Change, Planned};
use super::scan::{Archive, created_at, infer};
use crate::archive::sidecar;
use crate::error::Result;
use crate::extract;
use crate::fsutil;
use crate::index::{self, stream::Edit};
use crate::progress::Reporter;
use crate::registry::validate_name;

/// Read `archive` through and build its entry; `Err` says why it cannot be
/// adopted. `scope` is the `--instance` filter. Blocking.
///
/// Nothing in the archive is trusted to say whose it is: the instance is the
/// directory it lies in (`<root>/<instance>/`), its id (the archive's top
/// directory) must be of the standard form and name that same instance, and
/// so must `metadata/instance.json` when it names one. The archive is read
/// through the same checks as restore's extraction ([`extract::inspect`]),
/// so an adopted archive is one restore takes.
pub fn adoption(
    archive: &Archive,
    scope: Option<&str>,
    limits: extract::Limits,
    ids: &index::IdSet,
    actor: &Actor,
    progress: &Reporter,
) -> std::result::Result<Adoption, String> {
    let path = Path::new(&archive.path);
    let instance = archive.dir();
    if instance.is_empty() || instance.contains('/') || validate_name(instance).is_err() {
        return Err(
            "it is not in an instance directory (<backups root>/<instance>/), and adoption takes the instance from there"
                .into(),
        );
    }
    if scope.is_some_and(|s| s != instance) {
        return Err(format!(
            "it belongs to instance {instance}, outside --instance"
        ));
    }
    trusted_file(path)?;
    let mut bytes = progress.bytes(Phase::Adopt(archive.name().to_owned()), archive.size);
    let found = extract::inspect(path, archive.algorithm, limits, &mut |n| bytes.add(n))
        .map_err(|e| format!("cannot be read: {e}"))?;
    drop(bytes);
    let id = found.top.clone();
    let mut notes = Vec::new();
    match index::instance_of_id(&id) {
        Some(named) if named == instance => {}
        Some(named) => {
            return Err(format!(
                "it holds backup {id}, which names instance {named}, but it lies in the directory of {instance}"
            ));
        }
        None => {
            return Err(format!(
                "its top directory \"{}\" is not a backup id of the form YYYYMMDD-HHMMSS-{instance}-<6 hex>",
                crate::error::shown(&id)
            ));
        }
    }
    if id != infer(archive).0 {
        notes.push(format!("the archive holds backup {id}"));
    }
    if let Some(other) = ids.get(&id).map_err(|e| e.to_string())? {
        return Err(format!(
            "it holds backup {id}, which the index already has at {}",
            other.path
        ));
    }
    if !found.has_data {
        return Err(format!("not a backup: there is no {id}/data in it"));
    }
    let json = found
        .instance_json
        .as_deref()
        .and_then(|raw| serde_json::from_slice::<Value>(raw).ok());
    match json.as_ref().and_then(|v| v.get("name")) {
        None => notes
            .push("no instance name in metadata/instance.json; taken from its directory".into()),
        Some(Value::String(named)) if named == instance => {}
        Some(other) => {
            let named = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned);
            return Err(format!(
                "its metadata/instance.json names instance \"{}\", but it lies in the directory of {instance}",
                crate::error::shown(&named)
            ));
        }
    }
    let instance = instance.to_owned();
    let sidecar = sidecar_to_write(path, archive.name(), &found.sha256)?;
    let now = fsutil::now_utc();
    let mut extra = Map::new();
    extra.insert(
        "adopted_by".into(),
        serde_json::to_value(actor).unwrap_or(Value::Null),
    );
    let mut entry = BackupEntry::new(
        id.clone(),
        instance,
        created_at(&id, archive.mtime),
        archive.path.clone(),
        archive.algorithm.as_str(),
        found.archive_bytes,
        found.sha256,
    );
    entry.metadata = EntryMetadata {
        data_only: !found.has_assets,
        labels: vec!["adopted".into()],
        uncompressed_bytes: Some(found.content_bytes),
        ..EntryMetadata::default()
    };
    entry.metadata.reconciled_at = Some(Lenient::Typed(now.clone()));
    entry.metadata.reconcile_reason =
        Some(Lenient::Typed(reconcile_reason::ARCHIVE_ADOPTED.into()));
    entry.reconciled_at = Some(now);
    entry.extra = extra;
    Ok(Adoption {
        entry,
        sidecar,
        notes,
    })
}

/// Only a file this daemon's user (root) owns, and nobody else may write, is
/// adopted: abssd and the Python tool write archives as root, 0640. A file
/// someone else owns came from elsewhere (a restore keeps the numeric owners
/// of what it unpacks, so a user's planted archive stays theirs).
fn trusted_file(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by uid {me} as abssd's and the Python tool's archives are; adopt only takes archives nobody else could have put there (check where it came from, then chown it)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by others (mode {:o}); adopt only takes archives nobody else could have changed (chmod go-w it once checked)",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The sidecar to write, if the one there is absent or unreadable. A
/// well-formed sidecar with another digest is a conflict nobody should settle
/// silently: the archive may be the damaged one.
fn sidecar_to_write(
    archive: &Path,
    name: &str,
    sha256: &str,
) -> std::result::Result<Option<String>, String> {
    let wanted = sidecar::line(sha256, name);
    let Ok(text) = std::fs::read_to_string(sidecar::path(archive)) else {
        return Ok(Some(wanted));
    };
    let Some(digest) = sidecar::digest(&text) else {
        return Ok(Some(wanted));
    };
    if !digest.eq_ignore_ascii_case(sha256) {
        return Err(format!(
            "its sidecar says sha256 {digest} but the archive hashes to {sha256}: one of them was changed; check the archive (restore it with --dest) and remove the sidecar to adopt it"
        ));
    }
    Ok((!sidecar::names(&text, name) || text != wanted).then_some(wanted))
}

/// What became of one planned change.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Done,
    /// The index or the disk no longer call for it; nothing written.
    Stale,
    /// Writing it failed (a sidecar: the index changes stand).
    Failed(String),
}

/// Write every change that still holds into the index, in one atomic
/// replace streamed through one entry at a time, then the sidecars to write
/// back. Blocking; the caller holds the global lock. Returns what became of
/// each planned change.
pub fn write(
    index_file: &Path,
    planned: &[Planned],
    in_flight: &HashSet<PathBuf>,
) -> Result<Vec<Applied>> {
    let now = fsutil::now_utc();
    let done = std::cell::RefCell::new(planned.iter().map(|_| Applied::Stale).collect::<Vec<_>>());
    // The changes to entries by id (an entry may have two: a sidecar to write
    // back and a re-hash to record); the adoptions by id and by path.
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut adopting: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in planned.iter().enumerate() {
        match &p.change {
            Change::Adopt(_) => {
                adopting.entry(p.id.as_str()).or_default().push(i);
                adopting.entry(p.path.as_str()).or_default().push(i);
            }
            _ => by_id.entry(p.id.as_str()).or_default().push(i),
        }
    }
    let taken = std::cell::RefCell::new(HashSet::new());
    let mut sidecar_holds = HashSet::new();
    crate::index::stream::rewrite(
        index_file,
        |mut entry| {
            // An entry with an adoption's id or archive: that one is taken.
            for key in [entry.id.as_str(), entry.path.as_str()] {
                for &i in adopting.get(key).into_iter().flatten() {
                    taken.borrow_mut().insert(i);
                }
            }
            let mut changed = false;
            for &i in by_id.get(entry.id.as_str()).into_iter().flatten() {
                let p = &planned[i];
                match &p.change {
                    // After the index: a sidecar that cannot be written must
                    // not cost the index its fixes.
                    Change::WriteSidecar { sha256, .. } => {
                        let same = entry.path == p.path
                            && entry
                                .sha256()
                                .is_some_and(|v| v.eq_ignore_ascii_case(sha256));
                        if same {
                            sidecar_holds.insert(i);
                        }
                    }
                    _ if apply_one(&mut entry, p, &now) => {
                        done.borrow_mut()[i] = Applied::Done;
                        changed = true;
                    }
                    _ => {}
                }
            }
            Ok(if changed {
                Edit::Changed(entry)
            } else {
                Edit::Keep(entry)
            })
        },
        || {
            let mut adopted: Vec<BackupEntry> = Vec::new();
            for (i, p) in planned.iter().enumerate() {
                let Change::Adopt(adoption) = &p.change else {
                    continue;
                };
                // Two orphans holding one backup: the first is adopted.
                if adopted.iter().any(|e| e.id == p.id || e.path == p.path) {
                    continue;
                }
                let writing = in_flight
                    .iter()
                    .any(|f| f.file_name() == Path::new(&p.path).file_name());
                if taken.borrow().contains(&i) || writing || !Path::new(&p.path).is_file() {
                    continue;
                }
                if let Some(text) = &adoption.sidecar {
                    fsutil::atomic_write(&sidecar::path(Path::new(&p.path)), text.as_bytes())?;
                }
                adopted.push(adoption.entry.clone());
                done.borrow_mut()[i] = Applied::Done;
            }
            Ok(adopted)
        },
    )?;
    let mut done = done.into_inner();
    for (i, p) in planned.iter().enumerate() {
        if let Change::WriteSidecar { sha256, size } = &p.change
            && sidecar_holds.contains(&i)
        {
            done[i] = write_sidecar(p, sha256, *size);
        }
    }
    Ok(done)
}

/// Write back the sidecar of `p`'s archive (its entry still has checksum
/// `sha256`, which its archive hashed to) if the archive is still the file
/// of `size` bytes that was hashed, and no sidecar has appeared since.
fn write_sidecar(p: &Planned, sha256: &str, size: u64) -> Applied {
    let same_file =
        std::fs::symlink_metadata(&p.path).is_ok_and(|m| m.is_file() && m.len() == size);
    if !same_file {
        return Applied::Stale;
    }
    match sidecar::write_back(Path::new(&p.path), sha256) {
        Ok(true) => Applied::Done,
        Ok(false) => Applied::Stale,
        Err(e) => Applied::Failed(e.to_string()),
    }
}

/// One change to `entry` (the one with the planned change's id), if the
/// entry and the disk still call for it.
fn apply_one(entry: &mut BackupEntry, p: &Planned, now: &str) -> bool {
    // An entry a prune marked removed meanwhile stays as the prune left it.
    if entry.path != p.path || entry.status == status::REMOVED {
        return false;
    }
    let present = Path::new(&p.path).is_file();
    let reason = match &p.change {
        Change::MarkMissing if !present && entry.status != status::MISSING => {
            entry.status = status::MISSING.into();
            reconcile_reason::ARCHIVE_MISSING
        }
        Change::MarkAvailable if present && entry.status != status::AVAILABLE => {
            entry.status = status::AVAILABLE.into();
            reconcile_reason::ARCHIVE_PRESENT
        }
        Change::Record { finding, size } if present => {
            finding.record(entry, now);
            if size.is_some() {
                entry.size_bytes = *size;
            }
            reconcile_reason::ARCHIVE_REHASHED
        }
        _ => return false,
    };
    entry.reconciled_at = Some(now.to_owned());
    // The Python tool's record of the same change, so either tool reads it.
    entry.metadata.reconciled_at = Some(Lenient::Typed(now.to_owned()));
    entry.metadata.reconcile_reason = Some(Lenient::Typed(reason.to_owned()));
    true
}

/// Put what `--apply` changed into `result`; with `--adopt`, also which of
/// those changes adopted an orphan, the two matched by `key` (the archive's
/// path on disk, a backup's id in a remote).
pub(super) fn record_applied(
    result: &mut ReconcileResult,
    applied: Vec<ReconcileItem>,
    adopt: bool,
    key: fn(&ReconcileItem) -> &str,
) {
    if adopt {
        let taken: HashSet<&str> = result
            .orphaned
            .iter()
            .filter(|o| o.resolved)
            .map(key)
            .collect();
        let adopted = applied
            .iter()
            .filter(|i| taken.contains(key(i)))
            .cloned()
            .collect();
        result.adopted = Some(adopted);
    }
    result.applied = Some(applied);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_kept_rewritten_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("x.tar");
        let sidecar = dir.path().join("x.tar.sha256");
        let sha = "ab".repeat(32);
        let right = format!("{sha}  x.tar\n");
        assert_eq!(
            sidecar_to_write(&archive, "x.tar", &sha).unwrap(),
            Some(right.clone())
        );
        std::fs::write(&sidecar, &right).unwrap();
        assert_eq!(sidecar_to_write(&archive, "x.tar", &sha).unwrap(), None);
        std::fs::write(&sidecar, format!("{sha}  other.tar\n")).unwrap();
        assert_eq!(
            sidecar_to_write(&archive, "x.tar", &sha).unwrap(),
            Some(right.clone())
        );
        std::fs::write(&sidecar, "garbage\n").unwrap();
        assert_eq!(
            sidecar_to_write(&archive, "x.tar", &sha).unwrap(),
            Some(right)
        );
        std::fs::write(&sidecar, format!("{}  x.tar\n", "cd".repeat(32))).unwrap();
        let err = sidecar_to_write(&archive, "x.tar", &sha).unwrap_err();
        assert!(err.contains("hashes to"), "{err}");
    }
}
