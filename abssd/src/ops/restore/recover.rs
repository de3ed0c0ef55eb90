//! Start-up recovery of a restore the daemon was stopped in the middle of
//! (see [`crate::recovery`]): before its commit point it is rolled back from its
//! journal exactly like a failed restore; after it, the clean-up and the index
//! annotation the operation did not get to are done now.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::journal::{Record, Step};
use crate::progress::Progress;
use crate::systemd::Units;

use super::{history, rollback};

/// What recovery did with one restore.
#[derive(Debug)]
pub enum Recovered {
    /// It had committed: leftovers removed, index annotated.
    Finished {
        /// What was done.
        done: Vec<String>,
    },
    /// It had not: rolled back.
    RolledBack(rollback::Report),
}

/// Finish or roll back `record`. `units` is `None` when systemd cannot be
/// reached (the unit steps then stay undone and are reported as left).
pub async fn recover(
    config: &Config,
    record: &Record,
    units: Option<&dyn Units>,
    progress: &dyn Progress,
) -> Result<Recovered> {
    if !record.steps.contains(&Step::Commit) {
        return Ok(Recovered::RolledBack(
            rollback::rollback(config, units, record, progress).await,
        ));
    }
    let outcome = record
        .outcome
        .clone()
        .ok_or_else(|| Error::Internal("a committed restore journal without its outcome".into()))?;
    let leftovers: Vec<PathBuf> = record
        .steps
        .iter()
        .flat_map(|step| match step {
            Step::Staging { dir } => vec![dir.clone()],
            Step::MoveAside { aside, .. } => vec![aside.clone()],
            Step::Replace { backup, new, .. } => backup.iter().chain(new).cloned().collect(),
            _ => Vec::new(),
        })
        .collect();
    let (index_file, record2) = (config.layout.index_file.clone(), record.clone());
    tokio::task::spawn_blocking(move || {
        let mut done = Vec::new();
        for path in &leftovers {
            if std::fs::symlink_metadata(path).is_ok() {
                fsutil::remove_path(path)?;
                done.push(format!("removed {}", path.display()));
            }
        }
        history::annotate(
            &index_file,
            &record2.backup_id,
            &record2.op_id,
            &outcome,
            &fsutil::now_utc(),
        )?;
        done.push(format!(
            "recorded the restore on backup {} in the index",
            record2.backup_id
        ));
        Ok(Recovered::Finished { done })
    })
    .await?
}
