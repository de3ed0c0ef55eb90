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
//!
//! `--deep` ([`crate::deep`]) checks the content in the same pass: a problem
//! there makes the archive `corrupt` too (its bytes are intact, but restoring
//! it would not give a working instance), with the problem as its message;
//! `checksum.observed` and `checksum.last_verified` still say the bytes
//! matched. What the deep check found goes to `metadata.verification`, and a
//! later plain verify of the same bytes does not forget a problem it found.

use std::path::{Path, PathBuf};

use abssd_proto::{
    Algorithm, BackupEntry, DeepVerification, EventKind, Phase, VerifyItem, VerifyParams,
    VerifyPlan, VerifyResult, status,
};

use crate::archive;
use crate::deep::{self, Scratch};
use crate::error::{Error, Result};
use crate::extract::{self, Limits};
use crate::fsutil;
use crate::index::stream::Edit;
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};

/// What hashing one archive found.
#[derive(Debug)]
pub struct Finding {
    /// Id, new status, message, previous status.
    pub item: VerifyItem,
    /// The digest computed, when the archive could be read.
    pub observed: Option<String>,
    /// The digest is the one expected: the bytes are the ones backed up.
    pub matched: bool,
}

impl Finding {
    /// Write this finding into its index entry the way the Python tool does,
    /// and the deep check's result as `metadata.verification`; a deep result
    /// recorded earlier is dropped once the bytes no longer match (it was
    /// about other bytes).
    pub fn record(&self, entry: &mut BackupEntry, now: &str) {
        if let Some(d) = &self.item.deep {
            entry.metadata.verification = Some(d.clone());
        } else if !self.matched {
            entry.metadata.verification = None;
        }
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
    progress: &Reporter,
) -> Result<(VerifyPlan, VerifyResult)> {
    let index_file = ctx.config.layout.index_file.clone();
    let (file, p) = (index_file.clone(), params.clone());
    let (entries, plan) = tokio::task::spawn_blocking(move || {
        let entries = select(&p, &file)?;
        let plan = VerifyPlan {
            ids: entries.iter().map(|e| e.id.clone()).collect(),
            total_bytes: entries
                .iter()
                .filter_map(|e| std::fs::metadata(&e.path).ok().map(|m| m.len()))
                .sum(),
            deep: p.deep,
        };
        Ok::<_, Error>((entries, plan))
    })
    .await??;
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(&plan),
    });

    let mut findings = Vec::with_capacity(entries.len());
    let max_entries = ctx.config.daemon.max_restore_entries;
    let deep = params.deep.then(|| ctx.config.layout.state_dir.clone());
    for entry in entries {
        // Held while the archive is read, so no prune removes it meanwhile.
        let _reading = match ctx.in_use.claim(&entry.id) {
            Ok(claim) => claim,
            Err(e) if params.all => {
                progress.info(format!("not verified: {e}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let (progress, deep) = (progress.clone(), deep.clone());
        let finding = tokio::task::spawn_blocking(move || {
            // Claimed, about to read: tests race a prune here.
            hook_point!("verify::claimed");
            check(&entry, max_entries, &progress, deep.as_deref())
        })
        .await?;
        findings.push(finding);
    }

    let findings = record(ctx, findings, progress).await?;
    Ok((
        plan,
        VerifyResult {
            results: findings.into_iter().map(|f| f.item).collect(),
        },
    ))
}

/// Write findings into the index under the global lock, on a fresh read (the
/// index may have changed while we were hashing), and say which entries
/// changed. Also how restore `--verify-deep` records its check.
pub async fn record(
    ctx: &Ctx,
    findings: Vec<Finding>,
    progress: &Reporter,
) -> Result<Vec<Finding>> {
    let findings = {
        let _global = ctx.locks.acquire(true, &[], progress).await?;
        let file = ctx.config.layout.index_file.clone();
        tokio::task::spawn_blocking(move || {
            let now = fsutil::now_utc();
            // The findings by id, each for the first entry of its id; the
            // file streamed through one entry at a time.
            let mut pending: std::collections::HashMap<&str, Vec<&Finding>> =
                std::collections::HashMap::new();
            for f in &findings {
                pending.entry(f.item.id.as_str()).or_default().push(f);
            }
            // Nothing to record, nothing to write: the file stays as its
            // last writer left it, byte for byte.
            if pending.is_empty() {
                return Ok(findings);
            }
            crate::index::stream::rewrite(
                &file,
                |mut e| {
                    let Some(fs) = pending.remove(e.id.as_str()) else {
                        return Ok(Edit::Keep(e));
                    };
                    // An entry pruned meanwhile (by either tool) stays as the
                    // prune left it: its archive is gone on purpose.
                    if e.status == status::REMOVED {
                        return Ok(Edit::Keep(e));
                    }
                    for f in fs {
                        f.record(&mut e, &now);
                    }
                    Ok(Edit::Changed(e))
                },
                || Ok(Vec::new()),
            )?;
            Ok::<_, Error>(findings)
        })
        .await??
    };
    for f in &findings {
        progress.changed(&f.item.id);
    }
    Ok(findings)
}

/// The entries to verify, newest first, read from the index one at a time.
/// Blocking.
fn select(params: &VerifyParams, file: &Path) -> Result<Vec<BackupEntry>> {
    match (&params.id, params.all) {
        (Some(_), true) => Err(Error::validation("give a backup id or --all, not both")),
        (None, false) => Err(Error::validation("give a backup id or --all")),
        (Some(id), false) => {
            let entry = crate::index::require(file, id)?;
            if entry.status == status::REMOVED {
                return Err(Error::validation(format!(
                    "backup {id} was removed by a prune (status: removed): there is no archive to verify"
                )));
            }
            Ok(vec![entry])
        }
        // Removed entries are a record of a prune, not backups to check: a
        // verify that marked them `missing` would erase that record.
        (None, true) => {
            let mut all = Vec::new();
            crate::index::stream::each(file, |e| {
                if e.status != status::REMOVED {
                    all.push(e);
                }
                Ok(())
            })?;
            Ok(crate::index::newest_first(all))
        }
    }
}

/// Hash and inspect one archive and classify. Blocking. `max_entries`:
/// `daemon.max_restore_entries`; `deep`: the state directory, to check the
/// content too (`--deep`).
pub fn check(
    entry: &BackupEntry,
    max_entries: u64,
    progress: &Reporter,
    deep: Option<&Path>,
) -> Finding {
    let previous_status = entry.status.clone();
    let path = PathBuf::from(&entry.path);
    let finding = |status: &str, message: String, observed: Option<String>, matched| Finding {
        item: VerifyItem {
            id: entry.id.clone(),
            status: status.to_owned(),
            message,
            previous_status: previous_status.clone(),
            deep: None,
        },
        observed,
        matched,
    };
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let message = format!("archive not found: {}", path.display());
            return finding(status::MISSING, message, None, false);
        }
        Err(e) => {
            let message = format!("cannot read {}: {e}", path.display());
            return finding(status::ERROR, message, None, false);
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
            return finding(status::ERROR, message, None, false);
        }
    };
    let scratch = deep.map(Scratch::new);
    let algorithm = entry
        .algorithm
        .as_deref()
        .and_then(Algorithm::from_name)
        .or_else(|| Algorithm::from_file_name(&entry.path));
    let inspected = algorithm.map(|algorithm| {
        let phase = match scratch {
            Some(_) => Phase::VerifyDeep(entry.id.clone()),
            None => Phase::Verify(entry.id.clone()),
        };
        let mut bytes = progress.bytes(phase, size);
        let limits = Limits {
            max_entries,
            recorded_bytes: entry.metadata.uncompressed_bytes,
        };
        let count = &mut |n| bytes.add(n);
        match scratch.as_ref() {
            Some(scratch) => deep::check(&path, algorithm, limits, scratch, count)
                .map(|c| (c.inspected, Some(c.deep))),
            None => extract::inspect(&path, algorithm, limits, count).map(|i| (i, None)),
        }
    });
    drop(scratch);
    // Restore's reason to refuse an archive whose checksum matches, if any.
    let refusal = match inspected {
        Some(Ok((found, deep))) => {
            let observed = found.sha256.to_ascii_lowercase();
            if observed != expected {
                let message = format!("checksum mismatch: expected {expected}, found {observed}");
                return finding(status::CORRUPT, message, Some(observed), false);
            }
            if let Some(refusal) = payload_refusal(entry, &found) {
                let message = format!("checksum matches, but restore would refuse it: {refusal}");
                return finding(status::CORRUPT, message, Some(observed), true);
            }
            return match deep {
                None => match earlier_problem(entry) {
                    None => finding(
                        status::AVAILABLE,
                        "checksum matches".into(),
                        Some(observed),
                        true,
                    ),
                    Some(message) => finding(status::CORRUPT, message, Some(observed), true),
                },
                Some(Err(e)) => {
                    let message =
                        format!("checksum matches, but the deep check could not finish: {e}");
                    finding(status::ERROR, message, Some(observed), true)
                }
                Some(Ok(mut d)) => {
                    d.checked_at = fsutil::now_utc();
                    let (status, message) = judged(&d);
                    let mut f = finding(status, message, Some(observed), true);
                    f.item.deep = Some(d);
                    f
                }
            };
        }
        Some(Err(e @ Error::Io { .. })) => {
            let message = format!("cannot read {}: {e}", path.display());
            return finding(status::ERROR, message, None, false);
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
    let mut bytes = progress.bytes(Phase::Verify(entry.id.clone()), size);
    match archive::sha256_file(&path, &mut |n| bytes.add(n)) {
        Ok(observed) if observed == expected => finding(
            status::CORRUPT,
            format!("checksum matches, but restore would refuse it: {refusal}"),
            Some(observed),
            true,
        ),
        Ok(observed) => finding(
            status::CORRUPT,
            format!("checksum mismatch: expected {expected}, found {observed}"),
            Some(observed),
            false,
        ),
        Err(e) => finding(
            status::ERROR,
            format!("cannot read {}: {e}", path.display()),
            None,
            false,
        ),
    }
}

/// The status and message a deep check's result gives an archive whose bytes
/// match.
pub fn judged(d: &DeepVerification) -> (&'static str, String) {
    match &d.problem {
        None if d.ok => {
            let mut message = format!(
                "checksum matches; deep check passed: {} database(s), {} blob(s), {} listed file(s)",
                d.databases, d.blobs, d.listed_files
            );
            if !d.actual {
                message.push_str("; not an Actual data directory (no server-files/account.sqlite)");
            }
            (status::AVAILABLE, message)
        }
        problem => {
            let more = match d.problems {
                0 | 1 => String::new(),
                n => format!(" ({} more)", n - 1),
            };
            (
                status::CORRUPT,
                format!(
                    "checksum matches, but the deep check found a problem{more}: {}",
                    problem.as_deref().unwrap_or("unknown")
                ),
            )
        }
    }
}

/// A problem an earlier deep check found in these same bytes: a plain verify
/// cannot clear it.
fn earlier_problem(entry: &BackupEntry) -> Option<String> {
    let d = entry.metadata.verification.as_ref().filter(|d| !d.ok)?;
    Some(format!(
        "checksum matches, but the deep check of {} found a problem: {}; `abssctl backup verify --deep {}` checks it again",
        d.checked_at,
        d.problem.as_deref().unwrap_or("unknown"),
        entry.id
    ))
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
