//! `daemon.health` (`abssctl doctor`): per instance of the registry, is it
//! being backed up, and could its backups be restored?
//!
//! * this file — gathering, each part bounded in work and time: the index
//!   and registry once, one read-only reconcile for all instances, one
//!   systemd connection, and per instance its job record (at most
//!   [`MAX_JOB_RECORD`] bytes), leftovers (directory reads capped) and the
//!   free space of its backups directory.
//! * `sources` — reading each source: reconcile, systemd, job records, free space.
//! * [`probes`] — the judgements: facts in, one result per probe out.
//! * [`textfile`] — the Prometheus textfile written from a report.
//!
//! One report is made at a time (any peer may ask; a flood waits, bounded).

pub mod probes;
mod sources;
pub mod textfile;

pub use sources::MAX_JOB_RECORD;

pub use textfile::write_textfile;

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use abssd_proto::{
    BackupEntry, HealthMetadata, HealthParams, HealthReport, HealthSummary, Impact, InstanceFacts,
    ProbeResult, ProbeStatus, ReconcileResult, status,
};
use jiff::Timestamp;

use self::probes::JobFile;
use self::sources::{free_bytes, read_job, reconcile, timers};
use crate::error::{Error, Result};
use crate::ops::Ctx;
use crate::registry::{Registry, validate_name};

/// Instances one report looks at; beyond, a result says so.
pub const MAX_INSTANCES: usize = 256;
/// How long waiting for another report to end may take.
const QUEUE_BUDGET: Duration = Duration::from_secs(120);

/// One report at a time.
static ONE_AT_A_TIME: LazyLock<tokio::sync::Semaphore> =
    LazyLock::new(|| tokio::sync::Semaphore::new(1));

/// The file the backup job writes for `instance`
/// (`state_dir/jobs/<instance>.json`, see [`abssd_proto::job`]).
pub fn job_record_file(ctx: &Ctx, instance: &str) -> PathBuf {
    ctx.config
        .layout
        .state_dir
        .join("jobs")
        .join(format!("{instance}.json"))
}

/// Make the report; write the textfile when configured and the report covers
/// every instance.
pub async fn report(ctx: &Arc<Ctx>, params: &HealthParams) -> Result<HealthReport> {
    if let Some(name) = &params.instance {
        validate_name(name)?;
    }
    let _turn = tokio::time::timeout(QUEUE_BUDGET, ONE_AT_A_TIME.acquire())
        .await
        .map_err(|_| {
            Error::Environment(format!(
                "another health report has been running for over {} s; try again later",
                QUEUE_BUDGET.as_secs()
            ))
        })?
        .map_err(|_| Error::Internal("health reports closed".into()))?;
    let started = Instant::now();
    let now = Timestamp::now();
    let mut report = gather(ctx, params, now).await?;
    report.metadata.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if params.instance.is_none() {
        match textfile::write_textfile(ctx, &report) {
            Ok(written) => report.metadata.textfile = written.map(|p| p.display().to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "writing the health textfile");
                report.results.push(probes::result(
                    "textfile",
                    "fs",
                    None,
                    ProbeStatus::Yellow,
                    Impact::Ok,
                    format!("the Prometheus textfile was not written: {e}"),
                ));
                report.summary = HealthSummary::of(&report.results);
                report.metadata.probe_count = count(&report.results);
            }
        }
    }
    Ok(report)
}

fn count(results: &[ProbeResult]) -> u32 {
    u32::try_from(results.len()).unwrap_or(u32::MAX)
}

async fn gather(ctx: &Arc<Ctx>, params: &HealthParams, now: Timestamp) -> Result<HealthReport> {
    let config = &ctx.config;
    let mut results = Vec::new();
    let registry_file = config.layout.registry_file();
    let file = registry_file.clone();
    let registry = tokio::task::spawn_blocking(move || Registry::load(&file)).await?;
    let mut names: Vec<String> = match (&registry, &params.instance) {
        (Ok(r), Some(name)) => vec![r.require(name, &registry_file)?.name.clone()],
        // Names go into paths and unit names: only valid ones (the registry
        // keeps the others apart already; this makes sure).
        (Ok(r), None) => r
            .instances
            .iter()
            .map(|i| i.name.clone())
            .filter(|n| validate_name(n).is_ok())
            .collect(),
        (Err(e), _) => {
            results.push(probes::result(
                "registry",
                "state",
                None,
                ProbeStatus::Red,
                Impact::Environment,
                format!("the registry cannot be read: {e}"),
            ));
            Vec::new()
        }
    };
    if names.is_empty() && registry.is_ok() {
        results.push(probes::result(
            "registry",
            "state",
            None,
            ProbeStatus::Yellow,
            Impact::Ok,
            format!(
                "no instances are registered in {}: nothing is backed up",
                registry_file.display()
            ),
        ));
    }
    if names.len() > MAX_INSTANCES {
        results.push(probes::result(
            "registry",
            "state",
            None,
            ProbeStatus::Yellow,
            Impact::Ok,
            format!(
                "{} instances registered; the first {MAX_INSTANCES} were checked",
                names.len()
            ),
        ));
        names.truncate(MAX_INSTANCES);
    }
    let registry = registry.unwrap_or_default();

    let file = config.layout.index_file.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::index::Index::load(&file)).await?;
    let index = match loaded {
        Ok(i) => Arc::new(i),
        Err(e) => {
            results.push(probes::result(
                "index",
                "state",
                None,
                ProbeStatus::Red,
                Impact::Environment,
                format!("the backup index cannot be read: {e}"),
            ));
            Arc::default()
        }
    };

    let drift = reconcile(ctx, params.instance.clone()).await;
    let timers = timers(ctx, &names).await;

    // The filesystem work, in one blocking task.
    let fs_work = {
        let names = names.clone();
        let instances: Vec<_> = names
            .iter()
            .map(|n| {
                let inst = registry.get(n);
                let data = inst.map(|i| i.data_root(config));
                let assets = inst.and_then(|i| i.service_paths(config).ok());
                (
                    n.clone(),
                    data,
                    assets,
                    job_record_file(ctx, n),
                    config.layout.instance_backup_dir(n),
                    config.layout.backups_root.clone(),
                )
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            instances
                .into_iter()
                .map(|(name, data, assets, job, dir, root)| {
                    let (left, capped) = match &data {
                        Some(d) => crate::ops::restore::guards::leftovers_bounded(
                            &name,
                            d,
                            assets.as_ref(),
                        ),
                        None => (Vec::new(), false),
                    };
                    let free = free_bytes(if dir.is_dir() { &dir } else { &root });
                    let job = read_job(&job, &name);
                    (name, left, capped, job, free)
                })
                .collect::<Vec<_>>()
        })
    }
    .await?;

    let mut facts = Vec::new();
    for (name, left, capped, job, free) in fs_work {
        let mine: Vec<&BackupEntry> = index
            .backups
            .iter()
            .filter(|e| e.instance == name)
            .collect();
        let available: Vec<&BackupEntry> = mine
            .iter()
            .copied()
            .filter(|e| e.status == status::AVAILABLE || e.status == status::LEGACY_PRESENT)
            .collect();
        let newest = available
            .iter()
            .copied()
            .max_by_key(|e| probes::parse_time(&e.created_at));
        results.push(probes::age(&name, newest, now, config.daemon.max_age));
        results.push(probes::verification(&name, &mine, now));
        results.push(probes::job(&name, &job, now));
        let mine_timers = match &timers {
            Ok(all) => Ok(all.get(&name).map(Vec::as_slice).unwrap_or(&[])),
            Err(why) => Err(why.as_str()),
        };
        results.push(probes::timer(&name, mine_timers));
        results.push(probes::leftovers(&name, &left, capped));
        let found = match &drift {
            Ok(all) => Ok(all.get(&name).unwrap_or(&EMPTY)),
            Err(why) => Err(why.as_str()),
        };
        results.push(probes::drift(&name, found));
        let newest_bytes = newest.and_then(|e| e.size_bytes);
        results.push(probes::disk(
            &name,
            free.as_ref().copied().map_err(String::as_str),
            newest_bytes,
            config.daemon.min_free_bytes,
        ));

        let last_verified = mine
            .iter()
            .filter_map(|e| probes::verified_at(e))
            .filter_map(|t| probes::parse_time(t).map(|p| (p, t)))
            .max_by_key(|(p, _)| *p)
            .map(|(_, t)| t.to_owned());
        let (last_job_ok, last_job_finished_at) = match &job {
            JobFile::Read(r) => (Some(r.ok), Some(r.finished_at.clone())),
            _ => (None, None),
        };
        let next_run_at = timers.as_ref().ok().and_then(|all| {
            all.get(&name)?
                .iter()
                .find(|t| t.unit.is_enabled())
                .and_then(|t| t.next())
                .and_then(probes::usec_time)
        });
        facts.push(InstanceFacts {
            instance: name.clone(),
            backups: available.len() as u64,
            bytes: available.iter().filter_map(|e| e.size_bytes).sum(),
            newest_backup_at: newest.map(|e| e.created_at.clone()),
            newest_backup_age_seconds: newest
                .and_then(|e| probes::parse_time(&e.created_at))
                .map(|t| probes::age_seconds(t, now)),
            newest_backup_bytes: newest_bytes,
            last_verified_at: last_verified,
            last_job_ok,
            last_job_finished_at,
            next_run_at,
            free_bytes: free.ok(),
        });
    }
    Ok(HealthReport {
        summary: HealthSummary::of(&results),
        metadata: HealthMetadata {
            generated_at: crate::fsutil::utc(now),
            duration_ms: 0,
            probe_count: count(&results),
            max_age_seconds: config.daemon.max_age.as_secs(),
            textfile: None,
        },
        results,
        instances: facts,
    })
}

static EMPTY: LazyLock<ReconcileResult> = LazyLock::new(ReconcileResult::default);
