//! `--consistency stop`: the unit is stopped, the instance walked and archived
//! while nothing writes to it, and the unit started again, all under the
//! instance lock the create holds. The walk comes after the stop so that it
//! lists the files as the stopped service left them (a walk of the running
//! instance would fix sizes the tar pass then truncates or pads to).
//!
//! The stop is journaled before it is taken, like a restore's: a daemon killed
//! while the unit is down starts it again at its next start ([`recover_unit`]).
//! The unit is started again right after the archive and its sidecar are
//! written, before the index entry (which may wait for the global lock), so
//! the downtime is the walk and the archive pass.

use std::time::Instant;

use abssd_proto::{Actor, CreateParams, CreatePlan, CreateResult, Phase};

use super::pass::{Pass, Resolved, end, index, pass};
use super::plan::Reading;
use crate::error::{Error, Result};
use crate::journal::{Journal, Record, Step};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::systemd::Units;

/// A `stop`-mode create of an instance whose unit runs.
pub(super) struct Job<'a> {
    pub ctx: &'a Ctx,
    /// The connection the unit's state was read on.
    pub units: &'a dyn Units,
    /// The instance's unit.
    pub unit: &'a str,
    pub params: &'a CreateParams,
    pub actor: &'a Actor,
    pub progress: &'a Reporter,
}

impl Job<'_> {
    /// Stop, walk and archive, start, then write the index entry.
    ///
    /// When the archive pass fails, the unit is started again before the
    /// error returns. When the archive was written but the unit does not
    /// start, the backup is kept (index entry written) and the create fails
    /// with [`Error::NotRestarted`] naming the backup: an operation that leaves
    /// a production service down must not exit 0 — a scheduled backup's
    /// warning is read by nobody, its failure is what timers and monitoring
    /// alert on — and the error still tells the operator the backup is good.
    pub async fn run(
        &self,
        resolved: Resolved,
        reading: Reading,
    ) -> Result<(CreatePlan, Option<CreateResult>)> {
        let unit = self.unit;
        let mut journal = Journal::create(
            &self.ctx.config.layout.state_dir,
            Record {
                unit_was_active: Some(true),
                // The backup id is set once the walk, after the stop, has
                // named the backup.
                ..Record::new(
                    self.progress.op_id(),
                    abssd_proto::Command::BackupCreate,
                    self.params.instance.clone(),
                    String::new(),
                )
            },
        )?;
        journal.begin(Step::StopUnit {
            unit: unit.to_owned(),
        })?;
        crash_point!("create-stop::before-stop-unit");
        self.progress.phase(Phase::StopUnit);
        let stopping = Instant::now();
        if let Err(e) = self.units.stop(unit).await {
            // A stop job that failed or timed out can leave the unit half
            // down; starting it is a no-op when it still runs.
            let e = match self.units.start(unit).await {
                Ok(()) => e,
                Err(start) => not_started(e, unit, &start),
            };
            return end(Some(journal), Err(e));
        }
        crash_point!("create-stop::after-stop-unit");
        self.progress.info(format!("stopped {unit} for the backup"));

        let mut journal = Some(journal);
        let passed = pass(
            self.ctx,
            self.params,
            self.progress,
            resolved,
            reading,
            &mut journal,
        )
        .await;
        crash_point!("create-stop::before-start-unit");
        self.progress.phase(Phase::StartUnit);
        let started = self.units.start(unit).await;
        let downtime_ms = stopping.elapsed().as_millis() as u64;
        crash_point!("create-stop::after-start-unit");
        match &started {
            Ok(()) => self.progress.info(format!(
                "started {unit} again; it was stopped for {downtime_ms} ms"
            )),
            Err(e) => {
                tracing::error!(%unit, error = %e, "the unit stopped for a backup did not start again")
            }
        }

        let result = match (passed, started) {
            (Err(cause), Ok(())) => Err(Error::RolledBack {
                cause: Box::new(cause),
                undone: vec![format!("started {unit} again")],
                left: Vec::new(),
            }),
            (Err(cause), Err(start)) => Err(not_started(cause, unit, &start)),
            (Ok(Pass::Planned(plan)), _) => Ok((plan, None)),
            (Ok(Pass::Written(w)), Ok(())) => {
                index(self.ctx, &w, self.params, self.actor, self.progress)
                    .await
                    .map(|mut r| {
                        r.downtime_ms = Some(downtime_ms);
                        (w.plan, Some(r))
                    })
            }
            (Ok(Pass::Written(w)), Err(start)) => {
                match index(self.ctx, &w, self.params, self.actor, self.progress).await {
                    Ok(r) => Err(Error::NotRestarted {
                        backup_id: r.id,
                        archive: r.archive,
                        unit: unit.to_owned(),
                        cause: Box::new(start),
                    }),
                    Err(cause) => Err(not_started(cause, unit, &start)),
                }
            }
        };
        // Closed whatever happened: the operator has been told. A journal
        // kept for a unit that would not start would start it at the daemon's
        // next start, perhaps hours later (socket activation), while someone
        // looks into why it fails.
        end(journal, result)
    }
}

/// `cause`, and the unit that could not be started again after it.
fn not_started(cause: Error, unit: &str, start: &Error) -> Error {
    Error::RolledBack {
        cause: Box::new(cause),
        undone: Vec::new(),
        left: vec![format!(
            "{unit} was stopped for the backup and could not be started again ({start}); start it with systemctl start {unit}"
        )],
    }
}

/// Start-up recovery of a `stop`-mode create (see [`crate::recovery`]): the
/// unit its journal stopped is started again — a no-op when the create got
/// that far. `None` when the create stopped no unit; otherwise what was done,
/// or what is left for an operator. `units` is `None` when systemd cannot be
/// reached.
pub async fn recover_unit(
    record: &Record,
    units: Option<&dyn Units>,
) -> Option<std::result::Result<String, String>> {
    let unit = record.steps.iter().find_map(|s| match s {
        Step::StopUnit { unit } => Some(unit.as_str()),
        _ => None,
    })?;
    let started = match units {
        None => Err("systemd could not be reached".to_owned()),
        Some(units) => units.start(unit).await.map_err(|e| e.to_string()),
    };
    Some(match started {
        Ok(()) => Ok(format!("started {unit} again")),
        Err(why) => Err(format!(
            "{unit} was stopped for a backup and could not be started again ({why}); start it with systemctl start {unit}"
        )),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use abssd_proto::{Consistency, Level, Phase};
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::progress::Recorder;
    use crate::systemd::UnitState;

    /// systemd as a stop-mode create sees it: every stop and start is noted,
    /// and a start fails when told to.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        start_fails: bool,
    }

    impl Units for Fake {
        fn state<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<UnitState>> {
            Box::pin(async { Err(Error::Internal("not asked in a stop-mode create".into())) })
        }
        fn start<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                self.calls.lock().unwrap().push(format!("start {unit}"));
                match self.start_fails {
                    true => Err(Error::Environment("the start job failed".into())),
                    false => Ok(()),
                }
            })
        }
        fn stop<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                self.calls.lock().unwrap().push(format!("stop {unit}"));
                Ok(())
            })
        }
        fn reload<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Err(Error::Internal("not used".into())) })
        }
        fn daemon_reload(&self) -> BoxFuture<'_, Result<()>> {
            Box::pin(async { Err(Error::Internal("not used".into())) })
        }
    }

    /// Run a stop-mode create of the test instance against `units`.
    async fn stop_mode(
        units: &Fake,
        dir: &std::path::Path,
    ) -> (Arc<Recorder>, Result<(CreatePlan, Option<CreateResult>)>) {
        let ctx = super::super::tests::one_instance(dir);
        let params = CreateParams {
            instance: "alpha".into(),
            data_only: true,
            consistency: Some(Consistency::Stop),
            ..CreateParams::default()
        };
        let actor = Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        };
        let (rec, progress) = Recorder::start("op-stop");
        let unit = crate::config::unit_name("alpha");
        let resolved = super::super::resolve(&ctx, &params).unwrap();
        let reading = Reading::decide(Consistency::Stop, Some(true), &unit).unwrap();
        let job = Job {
            ctx: &ctx,
            units,
            unit: &unit,
            params: &params,
            actor: &actor,
            progress: &progress,
        };
        let ran = job.run(resolved, reading).await;
        let journals = crate::journal::Journal::pending(&ctx.config.layout.state_dir).unwrap();
        assert!(journals.is_empty(), "the journal is closed: {journals:?}");
        (rec, ran)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_unit_is_down_exactly_around_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let units = Fake::default();
        let (rec, ran) = stop_mode(&units, dir.path()).await;
        let result = ran.unwrap().1.unwrap();
        assert_eq!(
            rec.phases(),
            [
                Phase::StopUnit,
                Phase::Archive,
                Phase::StartUnit,
                Phase::Index
            ]
        );
        assert_eq!(
            *units.calls.lock().unwrap(),
            ["stop abssctl-alpha.service", "start abssctl-alpha.service"]
        );
        let said = rec.messages(Level::Info);
        assert_eq!(said[0], "stopped abssctl-alpha.service for the backup");
        assert!(
            said[1].starts_with("started abssctl-alpha.service again; it was stopped for "),
            "{said:?}"
        );
        assert!(result.downtime_ms.is_some());
        assert_eq!(rec.changed_backups(), [result.id]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_unit_that_does_not_start_again_fails_the_create_but_keeps_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let units = Fake {
            start_fails: true,
            ..Fake::default()
        };
        let (rec, ran) = stop_mode(&units, dir.path()).await;
        let Err(Error::NotRestarted { backup_id, .. }) = ran else {
            panic!("expected NotRestarted, got {ran:?}");
        };
        assert_eq!(
            rec.phases(),
            [
                Phase::StopUnit,
                Phase::Archive,
                Phase::StartUnit,
                Phase::Index
            ]
        );
        assert_eq!(
            rec.messages(Level::Info),
            ["stopped abssctl-alpha.service for the backup"]
        );
        assert_eq!(rec.changed_backups(), [backup_id]);
    }
}
