//! Start-up recovery (SPEC §9 "Crash safety"): before the socket opens, every
//! operation the previous run of the daemon was stopped in the middle of is
//! finished or rolled back from its journal (`state_dir/journal/`).
//!
//! * a create that had not written its index entry loses its `.partial` file,
//!   archive and sidecar; one that had is finished already; either way the
//!   unit a `stop`-mode create had stopped is started again;
//! * a restore before its commit point is rolled back exactly like a failed
//!   restore (data, unit file, site and link, registry entry, the unit's running
//!   state, nginx); after it, its clean-up and index annotation are done now;
//! * a prune's removals are finished: an entry it had marked removed loses
//!   the archive and sidecar still there; one it had not marked is kept;
//! * a push's unfinished multipart upload is abandoned, and an archive
//!   object it completed without a sidecar (and no index record) deleted;
//! * a pull's partial download is removed (an archive it had renamed into
//!   place is the checked copy and stays);
//! * temporary files of interrupted atomic writes of the index, the registry
//!   and the journals are removed, and so are the private copies of
//!   interrupted creates and deep checks (`state_dir/scratch/`).
//!
//! Each recovered operation keeps its id, appears in `op list` and
//! `daemon status` as recovered, and gets its line in the operations log. A
//! journal whose recovery could not complete (systemd unreachable, a file that
//! cannot be moved back) is kept, so the next start tries again, and the log
//! says what is left where. Recovery never refuses to start the daemon, nor
//! keeps it from starting for long: a remote request is tried once, with
//! short timeouts, and a remote that fails once is not asked again until the
//! next start ([`remote::Unreachable`]): systemd allows 90 s in all.

use std::sync::Arc;

use abssd_proto::{Actor, Command, ErrorKind, WireError};
use serde_json::json;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::journal::{Journal, Record, Step};
use crate::ops::restore::recover::{self as restore, Recovered};
use crate::ops::{self, Ctx};
use crate::optable::Operations;
use crate::progress::{Progress, Reporter};
use crate::remote;
use crate::systemd::Units;

/// Recover everything the journals hold; the recovered operations are
/// registered in `ops`.
pub async fn recover(ctx: &Ctx, ops: &Operations) {
    let config = &ctx.config;
    let journal_dir = Journal::dir(&config.layout.state_dir);
    let stale = [
        fsutil::remove_stale_temps(&config.layout.index_file),
        fsutil::remove_stale_temps(&config.layout.registry_file()),
        fsutil::remove_temps(&journal_dir, "."),
    ];
    for path in stale.iter().flatten() {
        tracing::info!(path = %path.display(), "removed the temporary file of an interrupted write");
    }
    // A snapshot or blob copy a create was archiving when the daemon stopped.
    for path in crate::scratch::remove_leftovers(&config.layout.state_dir) {
        tracing::info!(path = %path.display(), "removed the copies of an interrupted operation");
    }
    let pending = match Journal::pending(&config.layout.state_dir) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the journals; nothing recovered");
            return;
        }
    };
    let mut units: Option<std::result::Result<Box<dyn Units>, String>> = None;
    let unreachable = remote::Unreachable::default();
    for (path, record) in pending {
        let record = match record {
            Ok(r) => r,
            Err(why) => {
                tracing::error!(journal = %path.display(), %why, "unreadable journal left for an operator");
                continue;
            }
        };
        let target = match record.command {
            Command::BackupCreate => Some(record.instance.clone()),
            // A prune works on many backups, named in its steps.
            Command::BackupPrune => None,
            _ => Some(record.backup_id.clone()),
        };
        let op = ops.begin_recovered(
            &record.op_id,
            record.command.clone(),
            target,
            daemon_actor(),
        );
        let progress = Reporter::from(Arc::clone(&op));
        // Nothing else runs yet, but a Python abssctl may: take the same locks
        // the operation held.
        let outcome = match locked(ctx, &record, &progress).await {
            Err(e) => Err(Failure::from(e)),
            Ok(_held) => one(ctx, &record, &progress, &mut units, &unreachable).await,
        };
        let keep = matches!(&outcome, Err(Failure::Interrupted { left, .. }) if !left.is_empty());
        let outcome = outcome
            .map(abssd_proto::Json::from)
            .map_err(Failure::into_wire);
        match &outcome {
            Ok(_) => {
                tracing::info!(op_id = %op.id, command = %op.command, "interrupted operation finished at start-up")
            }
            Err(e) => {
                tracing::warn!(op_id = %op.id, command = %op.command, error = %e.message, "interrupted operation rolled back at start-up")
            }
        }
        ops.finish(&op, outcome).await;
        if keep {
            tracing::error!(journal = %path.display(), "recovery left work for an operator; the journal is kept and retried at the next start");
        } else if let Err(e) = Journal::resume(path, record).close() {
            tracing::warn!(error = %e, "cannot remove a recovered journal");
        }
    }
}

/// The locks the operation held, taken in one acquire, in the order every
/// operation takes them (see [`crate::locks`]).
async fn locked(
    ctx: &Ctx,
    record: &Record,
    progress: &Reporter,
) -> Result<crate::locks::LockGuard> {
    // A prune holds no instance lock (its journal names no instance).
    let instances: &[&str] = match record.instance.as_str() {
        "" => &[],
        one => &[one],
    };
    ctx.locks.acquire(true, instances, progress).await
}

/// Why a recovered operation ends failed.
#[derive(Debug)]
enum Failure {
    /// It was rolled back (or its unit not started again): what was done,
    /// and what is left for an operator.
    Interrupted {
        command: Command,
        what: &'static str,
        undone: Vec<String>,
        left: Vec<String>,
    },
    /// Recovering it failed, or its journal was not one recovery knows.
    Error(WireError),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Error(e.to_wire())
    }
}

impl Failure {
    /// The error the operation ends with: for an interrupted one, what was
    /// rolled back and what is left are in its detail.
    fn into_wire(self) -> WireError {
        match self {
            Failure::Interrupted {
                command,
                what,
                undone,
                left,
            } => {
                let mut e = WireError::new(
                    ErrorKind::Environment,
                    format!("abssd stopped during this {command}; at start-up {what}"),
                );
                e.detail = Some(json!({ "rolled_back": undone, "left": left }));
                e
            }
            Failure::Error(e) => e,
        }
    }
}

/// Recover one operation. `Ok` when it had finished (or is finished now),
/// `Err` when it was rolled back, with what was done and what is left.
async fn one(
    ctx: &Ctx,
    record: &Record,
    progress: &Reporter,
    units: &mut Option<std::result::Result<Box<dyn Units>, String>>,
    unreachable: &remote::Unreachable,
) -> std::result::Result<serde_json::Value, Failure> {
    let config = &ctx.config;
    match &record.command {
        Command::BackupCreate => {
            let (file, r) = (config.layout.index_file.clone(), record.clone());
            let removed = tokio::task::spawn_blocking(move || ops::create::recover(&file, &r))
                .await
                .map_err(Error::from)
                .and_then(|x| x)?;
            // A `stop`-mode create stopped the unit: it runs again whatever
            // became of the archive.
            let stopped = record
                .steps
                .iter()
                .any(|s| matches!(s, Step::StopUnit { .. }));
            let systemd = if stopped {
                connected(ctx, units).await
            } else {
                None
            };
            let (mut done, mut left) = (Vec::new(), Vec::new());
            match ops::create::recover_unit(record, systemd).await {
                Some(Ok(d)) => done.push(d),
                Some(Err(l)) => left.push(l),
                None => {}
            }
            done.iter().cloned().for_each(|l| progress.info(l));
            match removed {
                None if left.is_empty() => {
                    Ok(json!({ "recovered": "finished", "id": record.backup_id, "done": done }))
                }
                None => Err(Failure::Interrupted {
                    command: Command::BackupCreate,
                    what: "its backup was complete, but the unit it had stopped was not started again",
                    undone: done,
                    left,
                }),
                Some(removed) => {
                    removed.iter().cloned().for_each(|l| progress.info(l));
                    let what = if removed.is_empty() {
                        "it had not written anything yet"
                    } else {
                        "its unfinished archive was removed"
                    };
                    Err(Failure::Interrupted {
                        command: Command::BackupCreate,
                        what,
                        undone: removed.into_iter().chain(done).collect(),
                        left,
                    })
                }
            }
        }
        Command::BackupRestore => {
            let needs_systemd = record.steps.iter().any(|s| {
                matches!(
                    s,
                    Step::StopUnit { .. }
                        | Step::StartUnit { .. }
                        | Step::DaemonReload
                        | Step::ReloadNginx
                )
            });
            let systemd = if needs_systemd && !record.steps.contains(&Step::Commit) {
                connected(ctx, units).await
            } else {
                None
            };
            let recovered = restore::recover(config, record, systemd, progress).await?;
            match recovered {
                Recovered::Finished { done } => {
                    done.iter().cloned().for_each(|l| progress.info(l));
                    Ok(json!({ "recovered": "finished", "id": record.backup_id, "done": done }))
                }
                Recovered::RolledBack(report) => {
                    report.undone.iter().cloned().for_each(|l| progress.info(l));
                    let mut left = report.left;
                    if needs_systemd && systemd.is_none() {
                        let why = match units.as_ref() {
                            Some(Err(e)) => e.clone(),
                            _ => "not connected".into(),
                        };
                        left.push(format!(
                            "systemd could not be reached ({why}): the unit of {} was not returned to its running state (running before: {})",
                            record.instance,
                            record.unit_was_active.unwrap_or(false)
                        ));
                    }
                    Err(Failure::Interrupted {
                        command: Command::BackupRestore,
                        what: "it was rolled back",
                        undone: report.undone,
                        left,
                    })
                }
            }
        }
        Command::BackupPrune => {
            let (file, root, r) = (
                config.layout.index_file.clone(),
                config.layout.backups_root.clone(),
                record.clone(),
            );
            let (remote_config, unreachable) = (config.clone(), unreachable.clone());
            let ops::prune::remove::Recovered { done, left } =
                tokio::task::spawn_blocking(move || {
                    let mut local = ops::prune::remove::recover(&file, &root, &r)?;
                    // The copies in remotes the prune was removing.
                    let remote = ops::prune::remote::recover(&remote_config, &r, &unreachable)?;
                    local.done.extend(remote.done);
                    local.left.extend(remote.left);
                    Ok::<_, Error>(local)
                })
                .await
                .map_err(Error::from)
                .and_then(|x| x)?;
            done.iter().cloned().for_each(|l| progress.info(l));
            if !left.is_empty() {
                left.iter().cloned().for_each(|l| progress.warn(l));
                return Err(Failure::Interrupted {
                    command: Command::BackupPrune,
                    what: "not every removal could be finished; the rest are tried again at the next start",
                    undone: done,
                    left,
                });
            }
            Ok(json!({ "recovered": "finished", "done": done }))
        }
        Command::BackupPush => {
            let (file, remotes, r, unreachable) = (
                config.layout.index_file.clone(),
                config.remotes.all().to_vec(),
                record.clone(),
                unreachable.clone(),
            );
            let ops::push::recover::Recovered {
                done,
                left,
                recorded,
            } = tokio::task::spawn_blocking(move || {
                ops::push::recover::recover(&file, &remotes, &r, &unreachable)
            })
            .await
            .map_err(Error::from)?;
            done.iter().cloned().for_each(|l| progress.info(l));
            if recorded && left.is_empty() {
                return Ok(
                    json!({ "recovered": "finished", "id": record.backup_id, "done": done }),
                );
            }
            left.iter().cloned().for_each(|l| progress.warn(l));
            let what = if left.is_empty() {
                "its copy was not recorded, and what it had uploaded was removed; push again"
            } else {
                "its copy was not recorded; what it had uploaded is removed at the next start"
            };
            Err(Failure::Interrupted {
                command: Command::BackupPush,
                what,
                undone: done,
                left,
            })
        }
        Command::BackupPull => {
            let (root, r) = (config.layout.backups_root.clone(), record.clone());
            let done = tokio::task::spawn_blocking(move || ops::pull::recover(&root, &r))
                .await
                .map_err(Error::from)
                .and_then(|x| x)?;
            done.iter().cloned().for_each(|l| progress.info(l));
            Err(Failure::Interrupted {
                command: Command::BackupPull,
                what: "its partial download, if any, was removed and the index left as it was: pull again to finish",
                undone: done,
                left: Vec::new(),
            })
        }
        other => Err(Failure::Error(WireError::new(
            ErrorKind::Internal,
            format!(
                "a journal of an unknown command {:?}; left as it is",
                other.as_str()
            ),
        ))),
    }
}

/// systemd, connected at the first journal that needs it; `None` when it
/// cannot be reached (`units` then holds why).
async fn connected<'u>(
    ctx: &Ctx,
    units: &'u mut Option<std::result::Result<Box<dyn Units>, String>>,
) -> Option<&'u dyn Units> {
    if units.is_none() {
        *units = Some(ctx.systemd.connect().await.map_err(|e| e.to_string()));
    }
    match units.as_ref() {
        Some(Ok(s)) => Some(s.as_ref()),
        _ => None,
    }
}

/// Recovery acts on the daemon's own behalf.
fn daemon_actor() -> Actor {
    let uid = rustix::process::getuid().as_raw();
    Actor {
        uid,
        user: "abssd (start-up recovery)".into(),
        pid: std::process::id() as i32,
    }
}
