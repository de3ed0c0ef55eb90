//! The live restore, SPEC §7 steps 3–7 in that order. Each destructive step is
//! written to the journal before it is taken; any failure before the commit
//! point is rolled back from the journal ([`Job::roll_back`]), after it only
//! clean-up remains ([`Job::finish`]).

use abssd_proto::{Phase, RestoreResult};

use super::job::{Done, Job};
use super::swap::{self, Asset, Replaced};
use super::{payload, pre_backup, unplaced};
use crate::config::{site_name, unit_name};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::journal::{Journal, Step};
use crate::nginx;
use crate::progress::Progress;
use crate::registry::{Registry, RestoreNote};
use crate::systemd::Units;

/// Restore `job` over the live instance, driving its unit through `units`.
pub(super) async fn run(job: &Job<'_>, units: &dyn Units) -> Result<RestoreResult> {
    let unit = unit_name(&job.plan.instance);
    // 3. The instance lock, and the pre-restore backup under it.
    let _lock = job
        .ctx
        .locks
        .acquire(false, &[job.plan.instance.as_str()], job.progress)
        .await?;
    // The state that counts is the one under the lock.
    let was_active = units.state(&unit).await?.is_active();
    let pre_restore_backup = if job.params.no_pre_backup {
        None
    } else {
        pre_backup::take(job).await?
    };

    let mut journal = job.journal(Some(was_active))?;
    let live = Live {
        job,
        units,
        unit: &unit,
        was_active,
        running_after: job.params.restart.unwrap_or(was_active),
    };
    match live.forward(&mut journal).await {
        Ok(done) => {
            let done = Done {
                pre_restore_backup,
                ..done
            };
            // 7. Commit, clean up, annotate the index entry.
            job.finish(journal, done).await
        }
        Err(cause) => Err(job.roll_back(journal, Some(units), cause).await),
    }
}

/// A live restore between its journal's start and its commit point.
struct Live<'r, 'a> {
    job: &'r Job<'a>,
    units: &'r dyn Units,
    /// The instance's unit.
    unit: &'r str,
    /// Whether it ran when the restore took the lock.
    was_active: bool,
    /// Whether it runs afterwards (`--restart` / `--no-restart`, else as it was).
    running_after: bool,
}

impl Live<'_, '_> {
    /// Steps 4–6, each journaled before it is taken.
    async fn forward(&self, journal: &mut Journal) -> Result<Done> {
        let job = self.job;
        // 4. Extract into staging, hashing the archive; validate the payload.
        let mut done = job.stage(journal).await?;

        // 5. Swap: stop the unit, the data, the service assets, daemon-reload.
        if self.was_active {
            self.stop_unit(journal).await?;
        }
        job.progress.phase(Phase::Swap);
        let data = swap::data(
            journal,
            &job.stamp,
            &job.payload().join("data"),
            &job.pre.target,
        )?;
        done.leftovers.extend(data.kept);
        let mut site_changed = false;
        if !job.data_only {
            site_changed = self.assets(journal, &mut done)?;
            self.daemon_reload(journal).await?;
        }

        // 6. Reconcile: the registry, the unit's running state, nginx.
        job.progress.phase(Phase::Registry);
        self.update_registry(journal).await?;
        if self.running_after {
            self.start_unit(journal).await?;
        } else if self.was_active {
            job.progress
                .info(format!("{} left stopped (--no-restart)", self.unit));
        }
        if site_changed {
            self.reload_nginx(journal, &mut done).await?;
        }
        done.unit_running = Some(self.running_after);
        Ok(done)
    }

    async fn stop_unit(&self, journal: &mut Journal) -> Result<()> {
        let unit = self.unit;
        self.job.progress.phase(Phase::StopUnit);
        journal.begin(Step::StopUnit {
            unit: unit.to_owned(),
        })?;
        crash_point!("restore::before-stop-unit");
        self.units.stop(unit).await?;
        crash_point!("restore::after-stop-unit");
        self.job.progress.info(format!("stopped {unit}"));
        Ok(())
    }

    /// The archived unit file, site and sites-enabled link, where they differ.
    /// `true` when the site or its link changed (nginx checks and reloads).
    fn assets(&self, journal: &mut Journal, done: &mut Done) -> Result<bool> {
        let job = self.job;
        job.progress.phase(Phase::Assets);
        let (name, stamp) = (&job.plan.instance, &job.stamp);
        let at = job.pre.assets.as_ref().ok_or_else(|| {
            Error::Internal(format!(
                "no unit and site paths were resolved for {name} before installing them"
            ))
        })?;
        let payload = job.payload();
        done.warnings
            .extend(unplaced::warnings(name, &unplaced::in_payload(&payload)));
        let mut replaced = |r: Replaced| {
            done.assets.push(r.path.display().to_string());
            done.leftovers.extend(r.kept);
        };
        let unit_src = payload.join("systemd").join(unit_name(name));
        if let Some(r) = swap::file(journal, stamp, &unit_src, &at.unit, Asset::Unit)? {
            replaced(r);
        }
        let site_src = payload.join("nginx").join(site_name(name));
        if !site_src.exists() {
            return Ok(false);
        }
        let mut site_changed = false;
        let site = &at.site;
        if let Some(r) = swap::file(journal, stamp, &site_src, site, Asset::Site)? {
            replaced(r);
            site_changed = true;
        }
        let enabled = payload.join("nginx-enabled").join(site_name(name)).exists();
        if let Some(r) = swap::link(journal, stamp, &at.link, site, enabled)? {
            replaced(r);
            site_changed = true;
        }
        Ok(site_changed)
    }

    async fn daemon_reload(&self, journal: &mut Journal) -> Result<()> {
        self.job.progress.phase(Phase::DaemonReload);
        journal.begin(Step::DaemonReload)?;
        crash_point!("restore::before-daemon-reload");
        self.units.daemon_reload().await?;
        crash_point!("restore::after-daemon-reload");
        Ok(())
    }

    /// The registry entry gets the archive's paths, version and domain
    /// (unless data-only) and `metadata.last_restored_at/by`; under the
    /// global lock.
    async fn update_registry(&self, journal: &mut Journal) -> Result<()> {
        let job = self.job;
        let _global = job.ctx.locks.acquire(true, &[], job.progress).await?;
        let file = job.ctx.config.layout.registry_file();
        let name = job.plan.instance.clone();
        let registry = Registry::load(&file)?;
        // An entry edited since the plan into one that no longer types is
        // refused with the key named.
        let mut entry = match registry.require(&name, &file) {
            Ok(entry) => entry.clone(),
            Err(Error::NotFound { .. }) => {
                return Err(Error::Environment(format!(
                    "instance {name} disappeared from {} during the restore",
                    file.display()
                )));
            }
            Err(e) => return Err(e),
        };
        let before = serde_json::to_value(&entry)
            .map_err(|e| Error::Internal(format!("encoding registry entry: {e}")))?;
        let archived = if job.data_only {
            None
        } else {
            payload::instance_metadata(&job.payload())?
        };
        if let Some(archived) = &archived
            && let Some(root) = entry.apply_archived(archived, &job.pre.target)
        {
            job.progress.warn(format!(
                "the archive's paths.root {root:?} differs from where the data was restored ({}); keeping the current data root",
                job.pre.target.display()
            ));
        }
        entry.record_restore(&RestoreNote {
            at: &fsutil::now_utc(),
            actor: job.actor,
            source: &job.params.id,
            destination: &job.pre.target,
        });
        journal.begin(Step::Registry {
            instance: name,
            before,
        })?;
        crash_point!("restore::before-registry");
        registry.write_entry(&file, &entry)?;
        crash_point!("restore::after-registry");
        Ok(())
    }

    async fn start_unit(&self, journal: &mut Journal) -> Result<()> {
        let unit = self.unit;
        self.job.progress.phase(Phase::StartUnit);
        journal.begin(Step::StartUnit {
            unit: unit.to_owned(),
        })?;
        crash_point!("restore::before-start-unit");
        self.units.start(unit).await?;
        crash_point!("restore::after-start-unit");
        self.job.progress.info(format!("started {unit}"));
        Ok(())
    }

    /// `nginx -t`, then a reload when nginx runs (a warning when it does not).
    async fn reload_nginx(&self, journal: &mut Journal, done: &mut Done) -> Result<()> {
        let cfg = &self.job.ctx.config;
        self.job.progress.phase(Phase::Nginx);
        nginx::test(&cfg.services.nginx_test_command).await?;
        let nginx_unit = &cfg.services.nginx_unit;
        if self.units.state(nginx_unit).await?.is_active() {
            journal.begin(Step::ReloadNginx)?;
            crash_point!("restore::before-nginx-reload");
            self.units.reload(nginx_unit).await?;
            crash_point!("restore::after-nginx-reload");
            done.nginx_reloaded = true;
        } else {
            done.warnings.push(format!(
                "{nginx_unit} is not running, so it was not reloaded; the new site takes effect when it starts"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use abssd_proto::{Phase, RestoreParams};

    use crate::config::unit_name;
    use crate::error::Error;
    use crate::journal::Step;
    use crate::ops::testkit::{Host, INSTANCE, timeline};
    use crate::progress::Recorder;

    fn live(id: &str) -> RestoreParams {
        RestoreParams {
            id: id.into(),
            yes: true,
            ..RestoreParams::default()
        }
    }

    /// Each systemd job's line says which data and unit file were live then.
    fn probe(host: &Host) {
        let (data, unit) = (
            host.data().join("budget/db.txt"),
            host.cfg().layout.unit_file(INSTANCE),
        );
        host.units.probe(move || {
            let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
            let unit = read(&unit);
            format!(
                "data={} unit={}",
                read(&data),
                unit.lines().next().unwrap_or("")
            )
        });
    }

    /// The timeline from the first phase named `from` on: phases and jobs.
    fn from_phase(host: &Host, rec: &Recorder, from: &str) -> Vec<String> {
        timeline(rec, &host.units)
            .into_iter()
            .skip_while(|l| *l != format!("phase {from}"))
            .filter(|l| {
                l.starts_with("phase ")
                    || l.starts_with("systemd ")
                        && !l.contains(" state ")
                        && !l.ends_with(" connect")
            })
            .collect()
    }

    #[tokio::test]
    async fn stop_swap_reload_start_in_the_plans_order() {
        let host = Host::new();
        let id = host.backup().await;
        host.vandalize();
        probe(&host);
        let (rec, sink) = host.progress();

        let (plan, result) = super::super::run(&host.ctx, &live(&id), &host.actor(), &sink)
            .await
            .unwrap();
        let result = result.unwrap();

        let unit = unit_name(INSTANCE);
        let (before, after) = ("data=v2 unit=changed", "data=v1 unit=[Service]");
        let steps: Vec<Phase> = plan.steps.iter().map(|s| s.step.clone()).collect();
        assert_eq!(
            steps,
            [
                Phase::Lock,
                Phase::PreBackup,
                Phase::Extract,
                Phase::Validate,
                Phase::StopUnit,
                Phase::Swap,
                Phase::Assets,
                Phase::DaemonReload,
                Phase::Registry,
                Phase::StartUnit,
                Phase::Nginx,
                Phase::Cleanup,
                Phase::Index
            ]
        );
        // From the extraction on, the phases are the plan's steps (before
        // it, the pre-restore backup reports its own).
        let from_extract = |list: &[Phase]| -> Vec<Phase> {
            list.iter()
                .skip_while(|p| **p != Phase::Extract)
                .cloned()
                .collect()
        };
        assert_eq!(from_extract(&rec.phases()), from_extract(&steps));
        // And the unit jobs come between the phases of their steps.
        assert_eq!(
            from_phase(&host, &rec, "extract"),
            [
                "phase extract".to_owned(),
                "phase validate".into(),
                "phase stop_unit".into(),
                format!("systemd stop {unit} | {before}"),
                "phase swap".into(),
                "phase assets".into(),
                "phase daemon_reload".into(),
                format!("systemd daemon-reload | {after}"),
                "phase registry".into(),
                "phase start_unit".into(),
                format!("systemd start {unit} | {after}"),
                "phase nginx".into(),
                format!("systemd reload nginx.service | {after}"),
                "phase cleanup".into(),
                "phase index".into(),
            ]
        );
        assert!(rec.phases().contains(&Phase::PreBackup));

        assert_eq!(result.unit_running, Some(true));
        assert!(result.nginx_reloaded);
        assert!(result.pre_restore_backup.is_some());
        assert_eq!(
            result.assets,
            [
                host.cfg().layout.unit_file(INSTANCE).display().to_string(),
                host.cfg().layout.site_file(INSTANCE).display().to_string()
            ]
        );
        assert!(result.warnings.is_empty(), "{:?}", result.warnings);
        assert!(host.units.is_active(&unit));
        // Committed and cleaned up: no journal, nothing kept beside the data
        // or the service files.
        assert!(host.journals().is_empty());
        let left: Vec<_> = host
            .live_state()
            .into_keys()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.contains(".pre-restore-")
                    || name.contains(".bak-")
                    || name.contains(".restore-")
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let registry = crate::registry::Registry::load(&host.cfg().layout.registry_file()).unwrap();
        let entry = registry.get(INSTANCE).unwrap();
        assert_eq!(entry.metadata["last_restored_by"], "root");
        // The Python tool's keys for the same restore.
        assert_eq!(entry.metadata["last_restore_actor"]["name"], "root");
        assert_eq!(entry.metadata["last_restore_actor"]["type"], "user");
        assert!(
            entry.metadata["last_restore_source"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert_eq!(
            entry.metadata["last_restore_destination"]
                .as_str()
                .map(std::path::PathBuf::from),
            Some(entry.data_root(host.cfg()))
        );
    }

    #[tokio::test]
    async fn a_start_that_fails_rolls_everything_back_and_starts_the_old_unit() {
        let host = Host::new();
        let id = host.backup().await;
        host.vandalize();
        probe(&host);
        let state_before = host.live_state();
        let unit = unit_name(INSTANCE);
        host.units.fail(&format!("start {unit}"), 1);
        let (_, sink) = host.progress();

        let err = super::super::run(
            &host.ctx,
            &RestoreParams {
                no_pre_backup: true,
                ..live(&id)
            },
            &host.actor(),
            &sink,
        )
        .await
        .unwrap_err();

        let Error::RolledBack {
            cause,
            undone,
            left,
        } = err
        else {
            panic!("not rolled back: {err}");
        };
        assert!(matches!(*cause, Error::Service(_)), "{cause}");
        assert!(left.is_empty(), "{left:?}");
        assert!(
            undone.contains(&format!("data put back in {}", host.data().display())),
            "{undone:?}"
        );
        let (before, after) = ("data=v2 unit=changed", "data=v1 unit=[Service]");
        assert_eq!(
            host.units.jobs(),
            [
                format!("stop {unit} | {before}"),
                format!("daemon-reload | {after}"),
                format!("start {unit} | {after} (failed)"),
                // The rollback: stop what may have started, reload the unit
                // file put back, start the unit that ran before.
                format!("stop {unit} | {after}"),
                format!("daemon-reload | {before}"),
                format!("start {unit} | {before}"),
            ]
        );
        assert_eq!(host.live_state(), state_before);
        assert!(host.units.is_active(&unit));
        // Everything was put back: the journal is gone.
        assert!(host.journals().is_empty());
    }

    #[tokio::test]
    async fn what_the_rollback_cannot_undo_is_named_and_its_journal_kept() {
        let host = Host::new();
        let id = host.backup().await;
        host.vandalize();
        let state_before = host.live_state();
        let unit = unit_name(INSTANCE);
        // The start fails, and so does the rollback's start of the old unit.
        host.units.fail(&format!("start {unit}"), 2);
        let (_, sink) = host.progress();

        let err = super::super::run(
            &host.ctx,
            &RestoreParams {
                no_pre_backup: true,
                ..live(&id)
            },
            &host.actor(),
            &sink,
        )
        .await
        .unwrap_err();

        let Error::RolledBack { left, .. } = err else {
            panic!("not rolled back: {err}");
        };
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].contains("could not be started again"), "{left:?}");
        assert!(
            left[1].contains("journal of this restore is kept"),
            "{left:?}"
        );
        // The files are back all the same; the unit is down.
        assert_eq!(host.live_state(), state_before);
        assert!(!host.units.is_active(&unit));
        // The journal holds every step the plan took, in the plan's order, up
        // to the failed start and without a commit: what recovery redoes.
        let journals = host.journals();
        assert_eq!(journals.len(), 1);
        let record = &journals[0];
        assert_eq!(record.unit_was_active, Some(true));
        let kinds: Vec<&str> = record
            .steps
            .iter()
            .map(|s| match s {
                Step::Staging { .. } => "staging",
                Step::StopUnit { .. } => "stop_unit",
                Step::MoveAside { .. } => "move_aside",
                Step::PlaceData { .. } => "place_data",
                Step::Replace { .. } => "replace",
                Step::DaemonReload => "daemon_reload",
                Step::Registry { .. } => "registry",
                Step::StartUnit { .. } => "start_unit",
                Step::ReloadNginx => "reload_nginx",
                Step::Commit => "commit",
                Step::Archive { .. } => "archive",
                Step::RemoveBackup { .. } => "remove_backup",
                Step::Download { .. } => "download",
                Step::RemoteArchive { .. } => "remote_archive",
                Step::RemoveRemoteCopy { .. } => "remove_remote_copy",
                Step::Removed { .. } => "removed",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "staging",
                "stop_unit",
                "move_aside",
                "place_data",
                "replace",
                "replace",
                "daemon_reload",
                "registry",
                "start_unit"
            ]
        );
    }
}
