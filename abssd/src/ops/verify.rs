//! `backup verify ID | --all`: recompute each archive's sha256 and record the
//! outcome in the index the way the Python tool does (`status`, `verified_at`,
//! `checksum.last_verified`, `checksum.observed`, `metadata.verification_error`).
//!
//! The archive is read through the same inspection as adoption
//! ([`extract::inspect`]: every check restore's extraction makes, in the same
//! pass as the hash), so an archive restore would refuse is found out here:
//! it is `corrupt`, with a message that says the checksum matches and names
//! the first entry restore refuses ("checksum matches, but restore would
//! refuse it: …"). Only such an archive is read twice (the inspection stops
//! at the refusal; the hash then needs the rest).

use std::path::{Path, PathBuf};

use abssd_proto::{
    Algorithm, BackupEntry, EventKind, VerifyItem, VerifyParams, VerifyPlan, VerifyResult, status,
};

use crate::archive;
use crate::error::{Error, Result};
use crate::extract::{self, Limits};
use crate::fsutil;
use crate::index::Index;
use crate::ops::{ByteProgress, Ctx, LockEvents, Sink};

/// What hashing one archive found.
#[derive(Debug)]
pub struct Finding {
    /// Id, new status, message, previous status.
    pub item: VerifyItem,
    /// The digest computed, when the archive could be read.
    pub observed: Option<String>,
}

impl Finding {
    /// Write this finding into its index entry the way the Python tool does.
    pub fn record(&self, entry: &mut BackupEntry, now: &str) {
        entry.status = self.item.status.clone();
        entry.verified_at = Some(now.to_owned());
        if let Some(c) = entry.checksum.as_mut() {
            c.last_verified = Some(now.to_owned());
            if self.observed.is_some() {
                c.observed = self.observed.clone();
            }
        }
        entry.metadata.verification_error =
            (self.item.status != status::AVAILABLE).then(|| self.item.message.clone());
    }
}

/// Run `backup verify`.
pub async fn run(
    ctx: &Ctx,
    params: &VerifyParams,
    progress: &Sink,
) -> Result<(VerifyPlan, VerifyResult)> {
    let index_file = ctx.config.index_file.clone();
    let (file, p) = (index_file.clone(), params.clone());
    let (entries, plan) = tokio::task::spawn_blocking(move || {
        let entries = select(&Index::load(&file)?, &p, &file)?;
        let plan = VerifyPlan {
            ids: entries.iter().map(|e| e.id.clone()).collect(),
            total_bytes: entries
                .iter()
                .filter_map(|e| std::fs::metadata(&e.path).ok().map(|m| m.len()))
                .sum(),
        };
        Ok::<_, Error>((entries, plan))
    })
    .await??;
    progress.emit(EventKind::Plan {
        plan: serde_json::to_value(&plan).unwrap_or_default(),
    });

    let mut findings = Vec::with_capacity(entries.len());
    let max_entries = ctx.config.max_restore_entries;
    for entry in entries {
        let sink = progress.clone();
        let finding =
            tokio::task::spawn_blocking(move || check(&entry, max_entries, &*sink)).await?;
        findings.push(finding);
    }

    // Record under the global lock, on a fresh read: the index may have changed
    // while we were hashing.
    {
        let _global = ctx
            .locks
            .acquire(true, &[], &LockEvents(&**progress))
            .await?;
        let file = index_file.clone();
        findings = tokio::task::spawn_blocking(move || {
            let mut index = Index::load(&file)?;
            let now = fsutil::now_utc();
            for f in &findings {
                if let Some(e) = index.get_mut(&f.item.id) {
                    f.record(e, &now);
                }
            }
            index.save(&file)?;
            Ok::<_, Error>(findings)
        })
        .await??;
    }
    for f in &findings {
        progress.changed(&f.item.id);
    }
    Ok((
        plan,
        VerifyResult {
            results: findings.into_iter().map(|f| f.item).collect(),
        },
    ))
}

fn select(index: &Index, params: &VerifyParams, file: &Path) -> Result<Vec<BackupEntry>> {
    match (&params.id, params.all) {
        (Some(_), true) => Err(Error::validation("give a backup id or --all, not both")),
        (None, false) => Err(Error::validation("give a backup id or --all")),
        (Some(id), false) => Ok(vec![index.require(id, file)?.clone()]),
        (None, true) => Ok(index.newest_first(None)),
    }
}

/// Hash and inspect one archive and classify. Blocking. `max_entries`:
/// `daemon.max_restore_entries`.
pub fn check(entry: &BackupEntry, max_entries: u64, sink: &dyn crate::ops::Progress) -> Finding {
    let previous_status = entry.status.clone();
    let path = PathBuf::from(&entry.path);
    let item = |status: &str, message: String| VerifyItem {
        id: entry.id.clone(),
        status: status.to_owned(),
        message,
        previous_status: previous_status.clone(),
        deep: None,
    };
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let message = format!("archive not found: {}", path.display());
            return Finding {
                item: item(status::MISSING, message),
                observed: None,
            };
        }
        Err(e) => {
            let message = format!("cannot read {}: {e}", path.display());
            return Finding {
                item: item(status::ERROR, message),
                observed: None,
            };
        }
    };
    let expected = match entry
        .sha256()
        .map(str::to_owned)
        .or_else(|| sidecar_digest(&path))
    {
        Some(hex) => hex.to_ascii_lowercase(),
        None => {
            let message = format!(
                "no checksum recorded for {} and no readable sidecar",
                entry.id
            );
            return Finding {
                item: item(status::ERROR, message),
                observed: None,
            };
        }
    };
    let algorithm = entry
        .algorithm
        .as_deref()
        .and_then(Algorithm::from_name)
        .or_else(|| Algorithm::from_file_name(&entry.path));
    let inspected = algorithm.map(|algorithm| {
        let mut bytes = ByteProgress::start(sink, format!("verify:{}", entry.id), size);
        let limits = Limits {
            max_entries,
            recorded_bytes: entry.metadata.uncompressed_bytes,
        };
        extract::inspect(&path, algorithm, limits, &mut |n| bytes.add(n))
    });
    // Restore's reason to refuse an archive whose checksum matches, if any.
    let refusal = match inspected {
        Some(Ok(found)) => {
            let observed = found.sha256.to_ascii_lowercase();
            if observed != expected {
                return Finding {
                    item: item(
                        status::CORRUPT,
                        format!("checksum mismatch: expected {expected}, found {observed}"),
                    ),
                    observed: Some(observed),
                };
            }
            let refusal = payload_refusal(entry, &found);
            if refusal.is_none() {
                return Finding {
                    item: item(status::AVAILABLE, "checksum matches".into()),
                    observed: Some(observed),
                };
            }
            return Finding {
                item: item(
                    status::CORRUPT,
                    format!(
                        "checksum matches, but restore would refuse it: {}",
                        refusal.unwrap_or_default()
                    ),
                ),
                observed: Some(observed),
            };
        }
        Some(Err(e @ Error::Io { .. })) => {
            return Finding {
                item: item(
                    status::ERROR,
                    format!("cannot read {}: {e}", path.display()),
                ),
                observed: None,
            };
        }
        Some(Err(e)) => e.to_string(),
        None => format!(
            "cannot tell the compression of {} (algorithm {:?} in the index; expected .tar.zst, .tar.gz or .tar)",
            entry.path,
            entry.algorithm.as_deref().unwrap_or("")
        ),
    };
    // The inspection stopped early: hash the whole file to tell damage from
    // an archive that is intact but unusable.
    let mut bytes = ByteProgress::start(sink, format!("verify:{}", entry.id), size);
    match archive::sha256_file(&path, &mut bytes) {
        Ok(observed) if observed == expected => Finding {
            item: item(
                status::CORRUPT,
                format!("checksum matches, but restore would refuse it: {refusal}"),
            ),
            observed: Some(observed),
        },
        Ok(observed) => Finding {
            item: item(
                status::CORRUPT,
                format!("checksum mismatch: expected {expected}, found {observed}"),
            ),
            observed: Some(observed),
        },
        Err(e) => Finding {
            item: item(
                status::ERROR,
                format!("cannot read {}: {e}", path.display()),
            ),
            observed: None,
        },
    }
}

/// What restore checks once the archive is unpacked that the inspection
/// cannot know: the top directory is the backup's id, and the archived
/// registry entry (when it names an instance) names this backup's.
fn payload_refusal(entry: &BackupEntry, found: &extract::Inspected) -> Option<String> {
    if found.top != entry.id {
        return Some(format!(
            "its top directory is \"{}\", not the backup id {}",
            crate::error::shown(&found.top),
            entry.id
        ));
    }
    let named = found
        .instance_json
        .as_deref()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw).ok())
        .and_then(|v| v.get("name").cloned());
    match named {
        Some(serde_json::Value::String(n)) if n == entry.instance => None,
        None => None,
        Some(other) => Some(format!(
            "its metadata/instance.json names instance {}, not {}",
            crate::error::shown(&other.to_string()),
            entry.instance
        )),
    }
}

/// The digest in `<archive>.sha256` (`<hex>  <name>`), if readable.
pub fn sidecar_digest(archive: &Path) -> Option<String> {
    let text = std::fs::read_to_string(archive::sidecar::path(archive)).ok()?;
    archive::sidecar::digest(&text).map(str::to_owned)
}
