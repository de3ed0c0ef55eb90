//! Index against disk: which entries have their archive, which archives have
//! an entry, and what each disagreement is called and what `--apply` does
//! about it. One pass through the index file against the [`Scan`] ([`walk`]),
//! with one `stat` per entry whose path the walk did not see.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use abssd_proto::{BackupEntry, ReconcileItem, item_status, status};

use super::scan::{Scan, archive_of, infer, strip_extension};
use crate::index;
use crate::ops::verify::Finding;
use crate::registry::validate_name;

/// An index entry in scope that something is to be said or done about, and
/// the archive file it names, if present.
#[derive(Debug, Clone)]
pub struct Located {
    /// The entry.
    pub entry: BackupEntry,
    /// The file's size when present.
    pub size: Option<u64>,
    /// Present without its `.sha256` sidecar.
    pub lacking: bool,
}

/// Which list a finding is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `missing`
    Missing,
    /// `orphaned`
    Orphaned,
    /// `mismatched`
    Mismatched,
    /// `missing_sidecars` (see `sidecars`)
    MissingSidecar,
}

/// An index change `--apply` makes.
#[derive(Debug)]
pub enum Change {
    /// `status: missing`.
    MarkMissing,
    /// `status: available` (the archive is back, or was never checked).
    MarkAvailable,
    /// Record a re-hash like `backup verify`, and the file's size when the
    /// checksum matched but the size did not.
    Record {
        /// What hashing found.
        finding: Box<Finding>,
        /// New `size_bytes`.
        size: Option<u64>,
    },
    /// A new entry for an orphan, and its sidecar.
    Adopt(Box<Adoption>),
    /// Write the missing sidecar of a present archive; no index change.
    WriteSidecar {
        /// The archive's hash, equal to its entry's checksum.
        sha256: String,
        /// The archive's size when it was hashed.
        size: u64,
    },
}

/// An orphan ready to be indexed.
#[derive(Debug)]
pub struct Adoption {
    /// The new entry.
    pub entry: BackupEntry,
    /// Sidecar text to write (`None`: the one there is right).
    pub sidecar: Option<String>,
    /// What differs from what the path suggested, for the finding's reason.
    pub notes: Vec<String>,
}

/// A change and the finding it fixes.
#[derive(Debug)]
pub struct Planned {
    /// Entry id.
    pub id: String,
    /// Archive path.
    pub path: String,
    /// The finding: its list and position (none for a re-hash that found
    /// nothing wrong but is still recorded).
    pub item: Option<(Category, usize)>,
    /// What to write.
    pub change: Change,
}

/// What one pass through the index found: the entries in scope that are not
/// simply in sync (or that `rehash` is to re-hash), and what the rest of
/// reconcile needs to know of all of them. Only those entries are kept, so a
/// reconcile of an index in sync holds one entry at a time.
#[derive(Debug)]
pub struct Walked {
    /// Entries in the index (all instances).
    pub entries: u64,
    /// Entries in scope to judge, in file order.
    pub located: Vec<Located>,
    /// Entries in scope absent and marked so already (not kept).
    pub known_missing: u64,
    /// By position in the scan: whether some entry (in scope or not) names
    /// the archive. An archive of another instance is never an orphan.
    pub claimed: Vec<bool>,
    /// Every entry's id.
    pub ids: index::IdSet,
    /// Positions in `scan.lone_sidecars` of the sidecars whose archive some
    /// entry names.
    pub named_sidecars: HashSet<usize>,
}

/// How the walk decides which entries are re-hashed: `Some(all)` under
/// `--verify` (`all`) or `--apply` (those without a sidecar that have a
/// checksum).
pub type Rehashing = Option<bool>;

/// Read the index at `file` one entry at a time against `scan`. Blocking.
pub fn walk(
    file: &Path,
    scan: &Scan,
    instance: Option<&str>,
    rehash: Rehashing,
) -> crate::error::Result<Walked> {
    let lone: std::collections::HashMap<&str, usize> = scan
        .lone_sidecars
        .iter()
        .enumerate()
        .map(|(i, s)| (archive_of(s), i))
        .collect();
    let mut out = Walked {
        entries: 0,
        located: Vec::new(),
        known_missing: 0,
        claimed: vec![false; scan.archives.len()],
        ids: index::IdSet::new(file),
        named_sidecars: HashSet::new(),
    };
    index::stream::each(file, |entry| {
        out.entries += 1;
        out.ids.insert(&entry.id);
        let found = scan.find(&entry.path);
        if let Some(i) = found {
            out.claimed[i] = true;
        }
        let lone_sidecar = lone.get(entry.path.as_str()).copied();
        if let Some(i) = lone_sidecar {
            out.named_sidecars.insert(i);
        }
        if instance.is_some_and(|i| entry.instance != i) {
            return Ok(());
        }
        let size = match found {
            Some(i) => Some(scan.archives[i].size),
            // Outside the backups root, or written after the walk.
            None => std::fs::metadata(&entry.path)
                .ok()
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len()),
        };
        let lacking = size.is_some() && scan.lacks_sidecar(&entry.path);
        let rehashed = rehash
            .is_some_and(|all| all || (lacking && entry.sha256().is_some_and(|v| !v.is_empty())));
        if !rehashed && !lacking {
            match judge(&entry, size, None, lone_sidecar.is_some()) {
                Verdict::Fine => return Ok(()),
                Verdict::KnownMissing => {
                    out.known_missing += 1;
                    return Ok(());
                }
                _ => {}
            }
        }
        out.located.push(Located {
            entry,
            size,
            lacking,
        });
        Ok(())
    })?;
    Ok(out)
}

/// What one entry amounts to.
#[derive(Debug)]
pub enum Verdict {
    /// In sync.
    Fine,
    /// Absent and already marked so.
    KnownMissing,
    /// A finding, and the change that fixes (or records) it.
    Finding(Category, ReconcileItem, Option<Change>),
    /// Nothing to report, but a re-hash to record.
    RecordOnly(Change),
}

/// Judge one entry; `verified` is its re-hash under `--verify`, and
/// `lone_sidecar` whether its sidecar is still there without it.
pub fn judge(
    entry: &BackupEntry,
    size: Option<u64>,
    verified: Option<Finding>,
    lone_sidecar: bool,
) -> Verdict {
    let item = |reason: String, action: Option<&str>| entry_item(entry, reason, action);
    let vanished = verified
        .as_ref()
        .is_some_and(|f| f.item.status == status::MISSING);
    let Some(size) = size.filter(|_| !vanished) else {
        if entry.status == status::MISSING {
            return Verdict::KnownMissing;
        }
        // A prune (the Python tool's) deleted it on purpose and said so: no
        // drift, and marking it `missing` would erase that record.
        if entry.status == status::REMOVED {
            return Verdict::Fine;
        }
        let mut reason = "archive not found".to_owned();
        if lone_sidecar {
            reason.push_str(" (its .sha256 sidecar is still there)");
        }
        return Verdict::Finding(
            Category::Missing,
            item(reason, Some("mark missing")),
            Some(Change::MarkMissing),
        );
    };
    let wrong_status = entry.status != status::AVAILABLE;
    let wrong_size = entry.size_bytes.is_some_and(|s| s != size);
    let mut reasons = Vec::new();
    if wrong_status {
        reasons.push(format!(
            "archive present but the index says {}",
            entry.status
        ));
    }
    if wrong_size {
        reasons.push(format!(
            "size differs: index {} bytes, file {size} bytes",
            entry.size_bytes.unwrap_or_default()
        ));
    }
    match verified {
        None if !wrong_status && !wrong_size => Verdict::Fine,
        None => {
            let recheckable = matches!(entry.status.as_str(), status::MISSING | status::UNKNOWN);
            if recheckable && !wrong_size {
                let i = item(reasons.join("; "), Some("mark available"));
                Verdict::Finding(Category::Mismatched, i, Some(Change::MarkAvailable))
            } else {
                reasons.push("--verify re-hashes it".into());
                Verdict::Finding(Category::Mismatched, item(reasons.join("; "), None), None)
            }
        }
        Some(finding) if finding.item.status == status::AVAILABLE => {
            let size = wrong_size.then_some(size);
            let change = Change::Record {
                finding: Box::new(finding),
                size,
            };
            if !wrong_status && !wrong_size {
                return Verdict::RecordOnly(change);
            }
            reasons.push("checksum matches".into());
            let action = match (wrong_status, wrong_size) {
                (true, true) => "mark available, record the file's size",
                (true, false) => "mark available",
                _ => "record the file's size",
            };
            let i = item(reasons.join("; "), Some(action));
            Verdict::Finding(Category::Mismatched, i, Some(change))
        }
        Some(finding) => {
            reasons.push(finding.item.message.clone());
            let action = format!("mark {}", finding.item.status);
            let i = item(reasons.join("; "), Some(&action));
            Verdict::Finding(
                Category::Mismatched,
                i,
                Some(Change::Record {
                    finding: Box::new(finding),
                    size: None,
                }),
            )
        }
    }
}

/// An archive without an entry: who it belongs to, as far as its path tells.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// Index in the scan.
    pub archive: usize,
    /// The finding.
    pub item: ReconcileItem,
    /// Whether `--adopt` may try it (no entry already has its id).
    pub adoptable: bool,
}

/// Archives no entry names, in scope, and not being written by a create.
/// Returns them and the paths skipped because a create is writing them.
pub fn orphans(
    scan: &Scan,
    claimed: &[bool],
    ids: &index::IdSet,
    in_flight: &HashSet<PathBuf>,
    instance: Option<&str>,
) -> crate::error::Result<(Vec<Orphan>, Vec<String>)> {
    // By file name: the id in it is unique, however the directory is spelled.
    let in_flight: HashSet<&std::ffi::OsStr> =
        in_flight.iter().filter_map(|p| p.file_name()).collect();
    let mut out = Vec::new();
    let mut writing = Vec::new();
    for (i, archive) in scan.archives.iter().enumerate() {
        if claimed[i] {
            continue;
        }
        if in_flight.contains(std::ffi::OsStr::new(archive.name())) {
            writing.push(archive.path.clone());
            continue;
        }
        let (id, owner, how) = infer(archive);
        if instance.is_some_and(|want| owner.as_deref() != Some(want)) {
            continue;
        }
        let (reason, adoptable) = match ids.get(&id)? {
            Some(other) => (
                format!(
                    "no index entry names this file, but backup {id} is in the index at {}: a copy?",
                    other.path
                ),
                false,
            ),
            None => (format!("no index entry; {how}"), true),
        };
        out.push(Orphan {
            archive: i,
            item: ReconcileItem {
                id,
                instance: owner,
                path: archive.path.clone(),
                status: item_status::UNINDEXED.into(),
                reason,
                action: adoptable.then(|| "adopt".to_owned()),
                resolved: false,
                size_bytes: Some(archive.size),
            },
            adoptable,
        });
    }
    Ok((out, writing))
}

/// Sidecars with neither archive nor entry, in scope; `named`: those whose
/// archive an entry names (see [`Walked::named_sidecars`]).
pub fn stray_sidecars(
    scan: &Scan,
    named: &HashSet<usize>,
    instance: Option<&str>,
) -> Vec<ReconcileItem> {
    scan.lone_sidecars
        .iter()
        .enumerate()
        .filter(|(i, _)| !named.contains(i))
        .filter_map(|(_, sidecar)| {
            let archive = Path::new(archive_of(sidecar));
            let name = archive.file_name()?.to_str()?;
            let stem = strip_extension(name);
            let owner = index::instance_of_id(stem).map(str::to_owned).or_else(|| {
                let dir = archive.parent()?.file_name()?.to_str()?;
                validate_name(dir).ok().map(|()| dir.to_owned())
            });
            if instance.is_some_and(|want| owner.as_deref() != Some(want)) {
                return None;
            }
            Some(ReconcileItem {
                id: stem.to_owned(),
                instance: owner,
                path: sidecar.clone(),
                status: item_status::SIDECAR_ONLY.into(),
                reason: format!("{name} is gone and no index entry names it"),
                action: None,
                resolved: false,
                size_bytes: None,
            })
        })
        .collect()
}

/// The report line of an index entry: why, and what `--apply` would do.
pub(super) fn entry_item(
    entry: &BackupEntry,
    reason: String,
    action: Option<&str>,
) -> ReconcileItem {
    ReconcileItem {
        id: entry.id.clone(),
        instance: Some(entry.instance.clone()),
        path: entry.path.clone(),
        status: entry.status.clone(),
        reason,
        action: action.map(str::to_owned),
        resolved: false,
        size_bytes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: &str) -> BackupEntry {
        serde_json::from_value(serde_json::json!({
            "id": "20250101-000000-alpha-aaaaaa", "instance": "alpha",
            "created_at": "2025-01-01T00:00:00Z",
            "path": "/srv/backups/alpha/20250101-000000-alpha-aaaaaa.tar.zst",
            "size_bytes": 10, "status": status, "removed_at": "2025-02-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_pruned_entry_without_its_archive_is_in_sync() {
        assert!(matches!(
            judge(&entry(status::REMOVED), None, None, false),
            Verdict::Fine
        ));
        // The same absence under any other status is drift, fixed by marking it.
        assert!(matches!(
            judge(&entry(status::AVAILABLE), None, None, false),
            Verdict::Finding(Category::Missing, _, Some(Change::MarkMissing))
        ));
    }

    #[test]
    fn a_pruned_entry_whose_archive_is_back_is_reported_not_rewritten() {
        let Verdict::Finding(Category::Mismatched, item, None) =
            judge(&entry(status::REMOVED), Some(10), None, false)
        else {
            panic!("a present archive of a removed entry is a finding without a fix");
        };
        assert!(
            item.reason.contains("index says removed"),
            "{}",
            item.reason
        );
    }
}
