//! Undo a restore from its journal, newest step first. Every undo checks the
//! filesystem instead of assuming its step completed, so a step that was
//! journaled but never taken is left alone. The previous data
//! (`.pre-restore-*`) is never deleted here: when it cannot be put back it stays
//! where it is and the report says so.

use std::path::Path;

use abssd_proto::Phase;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::journal::{Journal, Record, Step};
use crate::progress::Progress;
use crate::registry::{Instance, Registry};
use crate::systemd::Units;

/// What a rollback did and what it could not do.
#[derive(Debug, Default)]
pub struct Report {
    /// What was put back, in order.
    pub undone: Vec<String>,
    /// What is left where, for an operator.
    pub left: Vec<String>,
}

impl Report {
    /// The error to return for `cause` after this rollback. The journal is
    /// removed when everything was put back and kept otherwise (recovery and
    /// operators read it).
    pub fn into_error(mut self, cause: Error, journal: Journal) -> Error {
        if self.left.is_empty() {
            if let Err(e) = journal.close() {
                tracing::warn!("{e}");
            }
        } else {
            self.left.push(format!(
                "the journal of this restore is kept at {}",
                journal.path().display()
            ));
        }
        if self.undone.is_empty() && self.left.is_empty() {
            return cause;
        }
        Error::RolledBack {
            cause: Box::new(cause),
            undone: self.undone,
            left: self.left,
        }
    }
}

/// Roll back every journaled step of `record`. `units` is `None` for restores
/// that never touch systemd (`--dest`).
pub async fn rollback(
    config: &Config,
    units: Option<&dyn Units>,
    record: &Record,
    progress: &dyn Progress,
) -> Report {
    progress.phase(Phase::Rollback);
    let mut report = Report::default();
    let mut daemon_reload = false;
    let mut nginx_reload = false;
    let mut unit_touched: Option<&str> = None;
    for step in record.steps.iter().rev() {
        match step {
            // A create's, a prune's or a push's own journal; start-up
            // recovery finishes those (never part of a restore's record).
            Step::Commit
            | Step::Archive { .. }
            | Step::RemoveBackup { .. }
            | Step::RemoveRemoteCopy { .. }
            | Step::Removed { .. }
            | Step::RemoteArchive { .. }
            | Step::Download { .. } => {}
            Step::ReloadNginx => nginx_reload = true,
            Step::DaemonReload => daemon_reload = true,
            Step::StartUnit { unit } => {
                unit_touched = Some(unit);
                if let Some(units) = units {
                    match units.stop(unit).await {
                        Ok(()) => report.undone.push(format!("stopped {unit}")),
                        Err(e) => report.left.push(format!(
                            "{unit} was started on the restored data and could not be stopped: {e}"
                        )),
                    }
                }
            }
            Step::StopUnit { unit } => unit_touched = Some(unit),
            Step::Registry { instance, before } => {
                match restore_registry_entry(&config.layout.registry_file(), instance, before) {
                    Ok(()) => report
                        .undone
                        .push(format!("registry entry of {instance} put back")),
                    Err(e) => report.left.push(format!(
                        "the registry entry of {instance} in {} could not be put back ({e}); it was: {}",
                        config.layout.registry_file().display(),
                        before
                    )),
                }
            }
            Step::Replace { path, backup, new } => {
                match undo_replace(path, backup.as_deref(), new.as_deref()) {
                    Ok(true) => report.undone.push(format!("{} put back", path.display())),
                    Ok(false) => {}
                    Err(e) => report.left.push(format!(
                        "{} could not be put back ({e}){}",
                        path.display(),
                        backup
                            .as_ref()
                            .map(|b| format!("; the previous file is {}", b.display()))
                            .unwrap_or_default()
                    )),
                }
            }
            Step::PlaceData { from, to } => {
                // The restored data goes back into staging, freeing the live path.
                if to.exists()
                    && !from.exists()
                    && from.parent().is_some_and(Path::exists)
                    && let Err(e) = std::fs::rename(to, from)
                {
                    report.left.push(format!(
                        "the restored data at {} could not be moved out of the way: {e}",
                        to.display()
                    ));
                }
            }
            Step::MoveAside { live, aside } => {
                if aside.exists() {
                    if std::fs::symlink_metadata(live).is_ok() {
                        report.left.push(format!(
                            "the previous data is kept at {}; {} holds other data, so it was not moved back",
                            aside.display(),
                            live.display()
                        ));
                    } else {
                        match std::fs::rename(aside, live) {
                            Ok(()) => {
                                let _ = crate::fsutil::sync_dir(live.parent().unwrap_or(Path::new("/")));
                                report.undone.push(format!("data put back in {}", live.display()))
                            }
                            Err(e) => report.left.push(format!(
                                "the previous data is kept at {} and could not be moved back to {}: {e}",
                                aside.display(),
                                live.display()
                            )),
                        }
                    }
                }
            }
            Step::Staging { dir } => {
                let dir = dir.clone();
                let removed =
                    tokio::task::spawn_blocking(move || crate::fsutil::remove_tree(&dir)).await;
                match removed {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => report.left.push(format!(
                        "the staging directory could not be removed ({e}); it holds only extracted archive content and can be deleted"
                    )),
                    Err(e) => report.left.push(format!("removing the staging directory: {e}")),
                }
            }
        }
    }
    if let Some(units) = units {
        if daemon_reload {
            match units.daemon_reload().await {
                Ok(()) => report
                    .undone
                    .push("systemd reloaded the previous unit file".into()),
                Err(e) => report.left.push(format!(
                    "systemd daemon-reload after putting the unit file back failed: {e}"
                )),
            }
        }
        if let (Some(unit), Some(true)) = (unit_touched, record.unit_was_active) {
            match units.start(unit).await {
                Ok(()) => report.undone.push(format!("started {unit} again")),
                Err(e) => report.left.push(format!(
                    "{unit} was running before the restore and could not be started again: {e}"
                )),
            }
        }
        if nginx_reload {
            match units.reload(&config.services.nginx_unit).await {
                Ok(()) => report.undone.push(format!(
                    "{} reloaded with the previous site",
                    config.services.nginx_unit
                )),
                Err(e) => report.left.push(format!(
                    "{} could not be reloaded with the previous site: {e}",
                    config.services.nginx_unit
                )),
            }
        }
    }
    report
}

/// Undo a [`Step::Replace`]. `Ok(true)` when something was changed back.
fn undo_replace(path: &Path, backup: Option<&Path>, new: Option<&Path>) -> Result<bool> {
    use crate::error::IoContext;
    if let Some(new) = new
        && std::fs::symlink_metadata(new).is_ok()
    {
        std::fs::remove_file(new).at("removing", new)?;
    }
    let changed = match backup {
        Some(backup) => {
            if std::fs::symlink_metadata(backup).is_ok() {
                std::fs::rename(backup, path).at("putting back", path)?;
                true
            } else {
                false
            }
        }
        None => {
            // Nothing was there before: whatever is there now is ours.
            if std::fs::symlink_metadata(path).is_ok() {
                std::fs::remove_file(path).at("removing", path)?;
                true
            } else {
                false
            }
        }
    };
    if changed && let Some(dir) = path.parent() {
        crate::fsutil::sync_dir(dir)?;
    }
    Ok(changed)
}

/// Write `before` back as `instance`'s registry entry, leaving the others as
/// they are now.
fn restore_registry_entry(file: &Path, instance: &str, before: &serde_json::Value) -> Result<()> {
    let before: Instance = serde_json::from_value(before.clone())
        .map_err(|e| Error::Internal(format!("journaled registry entry: {e}")))?;
    let registry = Registry::load(file)?;
    if registry.get(instance) == Some(&before) {
        return Ok(());
    }
    registry.write_entry(file, &before)
}
