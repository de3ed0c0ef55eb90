//! `daemon.health` (`abssctl doctor`): per instance of the registry, is it
//! being backed up, and could its backups be restored?
//!
//! * this file — gathering, each part bounded in work and time: the index
//!   and registry once, one read-only reconcile for all instances, one
//!   systemd connection, and per instance its job record (at most
//!   [`MAX_JOB_RECORD`] bytes), leftovers (directory reads capped) and the
//!   free space of its backups directory.
//! * [`probes`] — the judgements: facts in, one result per probe out.
//! * [`textfile`] — the Prometheus textfile written from a report.
//!
//! One report is made at a time (any peer may ask; a flood waits, bounded).

pub mod probes;
pub mod textfile;

pub use textfile::write_textfile;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use abssd_proto::{
    Actor, BackupEntry, HealthMetadata, HealthParams, HealthReport, HealthSummary, Impact,
    InstanceFacts, JobRecord, ProbeResult, ProbeStatus, ReconcileItem, ReconcileParams,
    ReconcileResult, status,
};
use jiff::Timestamp;

use self::probes::JobFile;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::registry::{Registry, validate_name};
use crate::systemd::TimerState;

/// Instances one report looks at; beyond, a result says so.
pub const MAX_INSTANCES: usize = 256;
/// The largest job record read; a larger one is a finding.
pub const MAX_JOB_RECORD: u64 = 64 << 10;
/// How long the read-only reconcile may take before it is reported unchecked.
const RECONCILE_BUDGET: Duration = Duration::from_secs(60);
/// How long one timer query may take; after one times out, systemd is not
/// asked again in this report.
const TIMER_BUDGET: Duration = Duration::from_secs(5);
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
pub async fn report(ctx: &Ctx, params: &HealthParams) -> Result<HealthReport> {
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

async fn gather(ctx: &Ctx, params: &HealthParams, now: Timestamp) -> Result<HealthReport> {
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
    let index = match tokio::task::spawn_blocking(move || Index::load(&file)).await? {
        Ok(i) => i,
        Err(e) => {
            results.push(probes::result(
                "index",
                "state",
                None,
                ProbeStatus::Red,
                Impact::Environment,
                format!("the backup index cannot be read: {e}"),
            ));
            Index::default()
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
                .and_then(|t| t.next_usec)
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

/// Reconcile without `--apply`, for every instance at once (one walk of the
/// backups root), its findings by instance; `Err` says why there are none.
async fn reconcile(
    ctx: &Ctx,
    instance: Option<String>,
) -> std::result::Result<HashMap<String, ReconcileResult>, String> {
    let params = ReconcileParams {
        instance,
        apply: false,
        adopt: false,
        verify: false,
        deep: false,
        detach: false,
    };
    let actor = Actor {
        uid: rustix::process::getuid().as_raw(),
        user: "abssd".to_owned(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
    };
    let quiet = Reporter::new(Quiet);
    let run = crate::ops::reconcile::run(ctx, &params, &actor, &quiet);
    let (_, found) = match tokio::time::timeout(RECONCILE_BUDGET, run).await {
        Err(_) => {
            return Err(format!(
                "it took longer than {} s",
                RECONCILE_BUDGET.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(r)) => r,
    };
    let mut by: HashMap<String, ReconcileResult> = HashMap::new();
    let mut put = |items: Vec<ReconcileItem>,
                   pick: fn(&mut ReconcileResult) -> &mut Vec<ReconcileItem>| {
        for item in items {
            let Some(name) = item.instance.clone() else {
                continue;
            };
            let list = pick(by.entry(name).or_default());
            // Each list is shown capped; keep a bounded number in memory too.
            if list.len() <= probes::MAX_LISTED * 50 {
                list.push(item);
            }
        }
    };
    put(found.missing, |r| &mut r.missing);
    put(found.mismatched, |r| &mut r.mismatched);
    put(found.orphaned, |r| &mut r.orphaned);
    put(found.missing_sidecars, |r| &mut r.missing_sidecars);
    Ok(by)
}

/// A [`Progress`] that keeps nothing: the report says what matters.
struct Quiet;

impl Progress for Quiet {
    fn emit(&self, _event: abssd_proto::EventKind) {}
    fn changed(&self, _backup_id: &str) {}
    fn op_id(&self) -> String {
        "health".to_owned()
    }
}

/// The backup timers of each instance, or why systemd could not be asked.
async fn timers(
    ctx: &Ctx,
    names: &[String],
) -> std::result::Result<HashMap<String, Vec<TimerState>>, String> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let units = match tokio::time::timeout(TIMER_BUDGET * 2, ctx.systemd.connect()).await {
        Err(_) => return Err("systemd did not answer in time".to_owned()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(u)) => u,
    };
    let mut all_timer: Option<TimerState> = None;
    let mut out = HashMap::new();
    for name in names {
        let [own, all] = probes::timer_names(name);
        let mut found = Vec::new();
        for unit in [own, all] {
            if let Some(t) = all_timer.as_ref().filter(|t| t.unit.unit == unit) {
                found.push(t.clone());
                continue;
            }
            let t = match tokio::time::timeout(TIMER_BUDGET, units.timer(&unit)).await {
                Err(_) => return Err(format!("systemd did not answer about {unit} in time")),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(t)) => t,
            };
            if unit.starts_with("abssctl-backup-all") {
                all_timer = Some(t.clone());
            }
            found.push(t);
        }
        out.insert(name.clone(), found);
    }
    Ok(out)
}

/// `instance`'s job record: absent, unreadable (why), or read. Not followed
/// through a symlink, never waited on (a FIFO), at most [`MAX_JOB_RECORD`]
/// bytes, and about `instance`.
fn read_job(path: &Path, instance: &str) -> JobFile {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return JobFile::Absent,
        Err(e) => return JobFile::Unreadable(format!("{}: {e}", path.display())),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return JobFile::Unreadable(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_JOB_RECORD + 1).read_to_end(&mut bytes) {
        return JobFile::Unreadable(format!("{}: {e}", path.display()));
    }
    if bytes.len() as u64 > MAX_JOB_RECORD {
        return JobFile::Unreadable(format!(
            "{} is larger than {} KiB",
            path.display(),
            MAX_JOB_RECORD >> 10
        ));
    }
    match serde_json::from_slice::<JobRecord>(&bytes) {
        Ok(r) if r.instance != instance => JobFile::Unreadable(format!(
            "{} is the record of instance {:?}",
            path.display(),
            probes::clip(&r.instance)
        )),
        Ok(r) => JobFile::Read(Box::new(r)),
        Err(e) => JobFile::Unreadable(format!("{}: {e}", path.display())),
    }
}

/// Bytes an unprivileged writer could still use at `dir` (`f_bavail`): the
/// daemon writes as root, but this leaves the root reserve alone.
fn free_bytes(dir: &Path) -> std::result::Result<u64, String> {
    let st = rustix::fs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(instance: &str, ok: bool) -> String {
        serde_json::json!({
            "instance": instance, "op_id": "o", "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:01:00Z", "ok": ok, "steps": [],
        })
        .to_string()
    }

    #[test]
    fn job_records_are_read_tolerantly_and_boundedly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alpha.json");
        assert!(matches!(read_job(&file, "alpha"), JobFile::Absent));

        std::fs::write(&file, record("alpha", false)).unwrap();
        let JobFile::Read(r) = read_job(&file, "alpha") else {
            panic!("not read")
        };
        assert!(!r.ok);

        let unreadable = |why: &str| match read_job(&file, "alpha") {
            JobFile::Unreadable(m) => assert!(m.contains(why), "{m}"),
            other => panic!("{other:?}"),
        };
        std::fs::write(&file, record("beta", true)).unwrap();
        unreadable("record of instance \"beta\"");
        std::fs::write(&file, b"{\"instance\": ").unwrap();
        unreadable("EOF");
        std::fs::write(&file, vec![b' '; MAX_JOB_RECORD as usize + 1]).unwrap();
        unreadable("larger than 64 KiB");

        // A symlink is not followed, a FIFO not waited on.
        std::fs::remove_file(&file).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, record("alpha", true)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert!(matches!(read_job(&file, "alpha"), JobFile::Unreadable(_)));
        std::fs::remove_file(&file).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &file,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        unreadable("not a regular file");
    }
}
