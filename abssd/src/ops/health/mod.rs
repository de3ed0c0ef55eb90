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

use std::collections::HashMap;
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

/// What the probes need of one instance's index entries, gathered in one
/// pass through the file: the entries verify found bad and the one verified
/// last (in file order), the newest available one, and the count and size of
/// the available ones. Each probe's answer over these is its answer over all
/// the entries; at 100 000 entries this holds a handful of them.
#[derive(Debug, Default)]
struct Summary {
    /// The bad entries and the one verified last, by position in the file.
    kept: Vec<(usize, BackupEntry)>,
    /// The newest available entry (the last in the file among equals).
    newest: Option<BackupEntry>,
    available: u64,
    available_bytes: u64,
}

impl Summary {
    /// The summaries of the instances `names`, from the index at `file`.
    fn read(file: &std::path::Path, names: &[String]) -> Result<HashMap<String, Summary>> {
        let mut out: HashMap<String, Summary> = HashMap::new();
        let mut last: HashMap<String, (Timestamp, usize, BackupEntry)> = HashMap::new();
        let mut at = 0usize;
        crate::index::stream::each(file, |e| {
            at += 1;
            if !names.contains(&e.instance) {
                return Ok(());
            }
            let s = out.entry(e.instance.clone()).or_default();
            if e.status == status::AVAILABLE || e.status == status::LEGACY_PRESENT {
                s.available += 1;
                s.available_bytes += e.size_bytes.unwrap_or(0);
                let time = |x: &BackupEntry| probes::parse_time(&x.created_at);
                if s.newest.as_ref().is_none_or(|n| time(&e) >= time(n)) {
                    s.newest = Some(e.clone());
                }
            }
            if let Some(t) = probes::verified_at(&e).and_then(probes::parse_time)
                && last.get(&e.instance).is_none_or(|(best, _, _)| t >= *best)
            {
                last.insert(e.instance.clone(), (t, at, e.clone()));
            }
            if e.status == status::CORRUPT || e.status == status::ERROR {
                s.kept.push((at, e));
            }
            Ok(())
        })?;
        for (instance, (_, at, e)) in last {
            let s = out.entry(instance).or_default();
            if !s.kept.iter().any(|(k, _)| *k == at) {
                s.kept.push((at, e));
            }
            s.kept.sort_by_key(|(k, _)| *k);
        }
        Ok(out)
    }
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

    let (file, checked) = (config.layout.index_file.clone(), names.clone());
    let loaded = tokio::task::spawn_blocking(move || Summary::read(&file, &checked)).await?;
    let mut summaries = match loaded {
        Ok(s) => s,
        Err(e) => {
            results.push(probes::result(
                "index",
                "state",
                None,
                ProbeStatus::Red,
                Impact::Environment,
                format!("the backup index cannot be read: {e}"),
            ));
            HashMap::new()
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
        let summary = summaries.remove(&name).unwrap_or_default();
        let mine: Vec<&BackupEntry> = summary.kept.iter().map(|(_, e)| e).collect();
        let newest = summary.newest.as_ref();
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
            backups: summary.available,
            bytes: summary.available_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    fn entry(
        id: &str,
        instance: &str,
        at: &str,
        status: &str,
        verified: Option<&str>,
    ) -> BackupEntry {
        let mut e = BackupEntry::new(
            id.into(),
            instance.into(),
            at.into(),
            format!("/b/{id}.tar.zst"),
            "zstd",
            10,
            "ab".into(),
        );
        e.status = status.into();
        e.verified_at = verified.map(str::to_owned);
        e
    }

    /// The summary answers as the whole list of an instance's entries would.
    #[test]
    fn a_summary_keeps_the_bad_the_last_verified_and_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backups.json");
        let t = |h: u32| format!("2026-01-01T{h:02}:00:00Z");
        let index = Index {
            backups: vec![
                entry("a1", "alpha", &t(1), "available", Some(&t(5))),
                entry("a2", "alpha", &t(3), "corrupt", Some(&t(4))),
                entry("b1", "beta", &t(9), "available", Some(&t(9))),
                entry("a3", "alpha", &t(2), "available", Some(&t(5))),
                entry("a4", "alpha", &t(3), "available", None),
                entry("a5", "alpha", &t(8), "missing", None),
            ],
            ..Index::default()
        };
        index.save(&file).unwrap();
        let mut all = Summary::read(&file, &["alpha".to_owned()]).unwrap();
        assert!(!all.contains_key("beta"), "not asked for");
        let alpha = all.remove("alpha").unwrap();
        let kept: Vec<&str> = alpha.kept.iter().map(|(_, e)| e.id.as_str()).collect();
        // The bad one, and of the two verified last (a tie), the later in the file.
        assert_eq!(kept, ["a2", "a3"]);
        assert_eq!(alpha.newest.map(|e| e.id), Some("a4".to_owned()));
        assert_eq!((alpha.available, alpha.available_bytes), (3, 30));
    }
}
