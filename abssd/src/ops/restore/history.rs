//! A restore's record on its backup's index entry (SPEC §5): written by the
//! restore once committed, or by start-up recovery for one a stop cut short.

use std::path::Path;

use abssd_proto::{Lenient, RestoreRecord, ToolActor, status};

use crate::error::{Error, Result};
use crate::journal::Outcome;

/// Record restore `op_id` of backup `id` on its index entry (SPEC §5):
/// `last_restored_at`, `last_restore_destination`, `restored_by`, the
/// `restores` history, the Python tool's `metadata.last_restore_*`, and the
/// verification the extraction amounted to.
/// Blocking; the caller holds the global lock. Idempotent: a restore already in
/// the history is not added again (start-up recovery may repeat it).
pub(crate) fn annotate(
    index_file: &Path,
    id: &str,
    op_id: &str,
    outcome: &Outcome,
    at: &str,
) -> Result<()> {
    let annotated = crate::index::update(index_file, id, |entry| {
        if entry.has_restore(op_id) {
            return Ok((false, ()));
        }
        record(entry, op_id, outcome, at);
        Ok((true, ()))
    })?;
    annotated.ok_or_else(|| {
        Error::Environment(format!(
            "backup {id} disappeared from the index during the restore"
        ))
    })
}

/// Write the restore `op_id` into `entry`.
fn record(entry: &mut abssd_proto::BackupEntry, op_id: &str, outcome: &Outcome, at: &str) {
    let destination = outcome.destination.to_string_lossy().into_owned();
    entry.last_restored_at = Some(Lenient::Typed(at.to_owned()));
    entry.last_restore_destination = Some(Lenient::Typed(destination.clone()));
    entry.restored_by = Some(Lenient::Typed(outcome.by.clone()));
    // The Python tool records the same restore under `metadata`, in its own
    // shapes; written too, so whichever tool restored last, both read it.
    entry.metadata.last_restored_at = Some(Lenient::Typed(at.to_owned()));
    entry.metadata.last_restore_destination = Some(Lenient::Typed(destination.clone()));
    entry.metadata.last_restore_actor = Some(Lenient::Typed(ToolActor::of(&outcome.by)));
    let record = Lenient::Typed(RestoreRecord {
        at: at.to_owned(),
        by: outcome.by.clone(),
        destination,
        op_id: op_id.to_owned(),
        pre_restore_backup: outcome.pre_restore_backup.clone(),
        extra: serde_json::Map::new(),
    });
    // Records in other shapes stay beside ours; a `restores` that is not a
    // list is replaced by one, as it always was.
    match &mut entry.restores {
        Some(Lenient::Typed(list)) => list.push(record),
        restores => *restores = Some(Lenient::Typed(vec![record])),
    }
    // The whole archive was just hashed and matched. A deep check that found
    // a problem in these same bytes still stands: restoring them did not make
    // a malformed database whole, so the entry stays as that check left it.
    let deep_problem = entry.metadata.verification.as_ref().is_some_and(|v| !v.ok);
    if !deep_problem {
        entry.metadata.verification_error = None;
        entry.status = status::AVAILABLE.into();
    }
    entry.verified_at = Some(at.to_owned());
    if let Some(c) = entry.checksum.as_mut() {
        c.last_verified = Some(at.to_owned());
        c.observed = Some(outcome.sha256.clone());
    }
}
