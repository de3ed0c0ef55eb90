//! The probes' judgements: pure functions from what was gathered (index
//! entries, the job record, the timers, leftovers, reconcile's findings, free
//! space) and a clock to one [`ProbeResult`] each. Which are red, and with
//! which impact, is decided here and only here (docs/API.md, `daemon.health`).

use std::time::Duration;

use abssd_proto::{
    BackupEntry, Impact, JobRecord, JobStepStatus, ProbeResult, ProbeStatus, ReconcileResult,
    status,
};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::systemd::TimerState;

/// Items a result lists (ids, paths); the rest are counted.
pub const MAX_LISTED: usize = 20;

/// A result about `instance`.
pub fn result(
    id: &str,
    category: &str,
    instance: Option<&str>,
    status: ProbeStatus,
    impact: Impact,
    message: String,
) -> ProbeResult {
    ProbeResult {
        id: id.to_owned(),
        category: category.to_owned(),
        instance: instance.map(str::to_owned),
        status,
        impact,
        impact_code: impact.code(),
        message,
        remediation: None,
        data: None,
    }
}

fn green(id: &str, category: &str, instance: &str, message: String) -> ProbeResult {
    result(
        id,
        category,
        Some(instance),
        ProbeStatus::Green,
        Impact::Ok,
        message,
    )
}

fn yellow(id: &str, category: &str, instance: &str, message: String) -> ProbeResult {
    result(
        id,
        category,
        Some(instance),
        ProbeStatus::Yellow,
        Impact::Ok,
        message,
    )
}

fn red(id: &str, category: &str, instance: &str, impact: Impact, message: String) -> ProbeResult {
    result(
        id,
        category,
        Some(instance),
        ProbeStatus::Red,
        impact,
        message,
    )
}

trait With {
    fn fix(self, remediation: String) -> Self;
    fn data(self, data: Value) -> Self;
}

impl With for ProbeResult {
    fn fix(mut self, remediation: String) -> Self {
        self.remediation = Some(remediation);
        self
    }
    fn data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// At most 64 bytes of a name read from a file, for messages.
pub fn clip(text: &str) -> &str {
    clip_to(text, 64)
}

/// At most `max` bytes of `text`, on a character boundary.
pub fn clip_to(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A timestamp as written in the index or a job record.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

/// Whole seconds from `then` to `now`; a time after the clock is 0 old.
pub fn age_seconds(then: Timestamp, now: Timestamp) -> u64 {
    u64::try_from(now.as_second().saturating_sub(then.as_second())).unwrap_or(0)
}

/// `2d 3h`, `5h 10m`, `42s`: enough to read at a glance.
pub fn human_age(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The first [`MAX_LISTED`] of `items`, and how many there are.
pub fn listed<T: serde::Serialize>(items: &[T]) -> Value {
    json!({
        "count": items.len(),
        "items": items.iter().take(MAX_LISTED).collect::<Vec<_>>(),
    })
}

/// `backups.age`: the newest `available` backup against `backups.max_age`.
pub fn age(
    instance: &str,
    newest: Option<&BackupEntry>,
    now: Timestamp,
    max_age: Duration,
) -> ProbeResult {
    const ID: &str = "backups.age";
    let make = format!(
        "make one now: abssctl backup create -i {instance}; schedule them: abssctl schedule enable {instance}"
    );
    let Some(entry) = newest else {
        return red(
            ID,
            "backups",
            instance,
            Impact::Environment,
            format!("{instance} has no available backup"),
        )
        .fix(make);
    };
    let Some(at) = parse_time(&entry.created_at) else {
        return red(
            ID,
            "backups",
            instance,
            Impact::Environment,
            format!(
                "the newest backup {} has an unreadable date {:?}",
                entry.id, entry.created_at
            ),
        )
        .fix(make);
    };
    let secs = age_seconds(at, now);
    let data = json!({
        "backup_id": entry.id,
        "created_at": entry.created_at,
        "age_seconds": secs,
        "max_age_seconds": max_age.as_secs(),
    });
    if secs > max_age.as_secs() {
        red(
            ID,
            "backups",
            instance,
            Impact::Environment,
            format!(
                "stale: the newest backup {} is {} old, more than backups.max_age ({})",
                entry.id,
                human_age(secs),
                human_age(max_age.as_secs())
            ),
        )
        .fix(make)
        .data(data)
    } else {
        green(
            ID,
            "backups",
            instance,
            format!("the newest backup {} is {} old", entry.id, human_age(secs)),
        )
        .data(data)
    }
}

/// When verify last looked at `entry`.
pub fn verified_at(entry: &BackupEntry) -> Option<&str> {
    entry
        .checksum
        .as_ref()
        .and_then(|c| c.last_verified.as_deref())
        .or(entry.verified_at.as_deref())
}

/// `backups.verify`: backups verify found bad, and the last verification.
pub fn verification(instance: &str, entries: &[&BackupEntry], now: Timestamp) -> ProbeResult {
    const ID: &str = "backups.verify";
    let bad: Vec<Value> = entries
        .iter()
        .filter(|e| e.status == status::CORRUPT || e.status == status::ERROR)
        .map(|e| {
            json!({
                "id": e.id,
                "status": e.status,
                "error": e.metadata.verification_error,
            })
        })
        .collect();
    let last = entries
        .iter()
        .filter_map(|e| Some((parse_time(verified_at(e)?)?, *e)))
        .max_by_key(|(t, _)| *t);
    let last_data = last.map(|(t, e)| {
        json!({
            "backup_id": e.id,
            "verified_at": verified_at(e),
            "status": e.status,
            "age_seconds": age_seconds(t, now),
        })
    });
    if !bad.is_empty() {
        let first = bad[0]["id"].as_str().unwrap_or_default().to_owned();
        return red(
            ID,
            "backups",
            instance,
            Impact::Environment,
            format!(
                "verification failed: {} backup(s) of {instance} are corrupt or unreadable (first: {first})",
                bad.len()
            ),
        )
        .fix(format!(
            "see abssctl backup show {first}; make a new backup (abssctl backup create -i {instance}) and verify it"
        ))
        .data(json!({ "failed": listed(&bad), "last": last_data }));
    }
    match last {
        None => yellow(
            ID,
            "backups",
            instance,
            format!("no backup of {instance} has been verified"),
        )
        .fix(format!("abssctl backup verify --instance {instance}")),
        Some((t, e)) => green(
            ID,
            "backups",
            instance,
            format!(
                "last verified {} ago ({}, {})",
                human_age(age_seconds(t, now)),
                e.id,
                e.status
            ),
        )
        .data(last_data.unwrap_or(Value::Null)),
    }
}

/// What reading an instance's job record gave.
#[derive(Debug)]
pub enum JobFile {
    /// No job has run.
    Absent,
    /// It could not be read or understood (why).
    Unreadable(String),
    /// The record.
    Read(Box<JobRecord>),
}

/// `job.last`: the last backup job's outcome.
pub fn job(instance: &str, file: &JobFile, now: Timestamp) -> ProbeResult {
    const ID: &str = "job.last";
    match file {
        JobFile::Absent => yellow(
            ID,
            "job",
            instance,
            format!("no backup job has run for {instance}"),
        )
        .fix(format!(
            "abssctl backup run --instance {instance}, or schedule it: abssctl schedule enable {instance}"
        )),
        JobFile::Unreadable(why) => red(
            ID,
            "job",
            instance,
            Impact::Environment,
            format!("the record of {instance}'s last backup job is unreadable: {why}"),
        )
        .fix(format!(
            "the next abssctl backup run --instance {instance} replaces it"
        )),
        JobFile::Read(record) => {
            let ended = parse_time(&record.finished_at)
                .map(|t| format!("{} ago", human_age(age_seconds(t, now))))
                .unwrap_or_else(|| record.finished_at.clone());
            let data = json!({
                "op_id": record.op_id,
                "ok": record.ok,
                "finished_at": record.finished_at,
                "backup_id": record.backup_id,
                "steps": listed(&record.steps),
            });
            if record.ok {
                return green(
                    ID,
                    "job",
                    instance,
                    format!("the last backup job succeeded, {ended}"),
                )
                .data(data);
            }
            let failed: Vec<String> = record
                .steps
                .iter()
                .filter(|s| s.status == JobStepStatus::Failed)
                .take(MAX_LISTED)
                .map(|s| {
                    let step = serde_json::to_value(s.step).unwrap_or(Value::Null);
                    format!("{}: {}", step.as_str().unwrap_or("?"), clip_to(&s.message, 200))
                })
                .collect();
            red(
                ID,
                "job",
                instance,
                Impact::Environment,
                format!(
                    "the last backup job failed, {ended}{}",
                    if failed.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", failed.join("; "))
                    }
                ),
            )
            .fix(format!(
                "see what it did: abssctl op watch {}",
                clip_to(&record.op_id, 128)
            ))
            .data(data)
        }
    }
}

/// The instance's timer, then the one for all instances.
pub fn timer_names(instance: &str) -> [String; 2] {
    [
        format!("abssctl-backup@{instance}.timer"),
        "abssctl-backup-all.timer".to_owned(),
    ]
}

/// A microsecond timestamp as RFC 3339.
pub fn usec_time(usec: u64) -> Option<String> {
    let t = Timestamp::from_microsecond(i64::try_from(usec).ok()?).ok()?;
    Some(crate::fsutil::utc(t))
}

/// `timer`: is a backup timer enabled, and when does it run next? `timers`
/// holds what systemd said of [`timer_names`], or why it could not be asked.
pub fn timer(instance: &str, timers: Result<&[TimerState], &str>) -> ProbeResult {
    const ID: &str = "timer";
    let timers = match timers {
        Ok(t) => t,
        Err(why) => {
            return red(
                ID,
                "systemd",
                instance,
                Impact::Provider,
                format!("cannot tell whether {instance} is backed up on a schedule: {why}"),
            );
        }
    };
    let data = json!(
        timers
            .iter()
            .map(|t| json!({
                "unit": t.unit.unit,
                "load_state": t.unit.load_state,
                "unit_file_state": t.unit.unit_file_state,
                "active_state": t.unit.active_state,
                "next_run_at": t.next_usec.and_then(usec_time),
                "last_run_at": t.last_usec.and_then(usec_time),
            }))
            .collect::<Vec<_>>()
    );
    match timers.iter().find(|t| t.unit.is_enabled()) {
        Some(t) => {
            let next = t
                .next_usec
                .and_then(usec_time)
                .map(|n| format!(", next run {n}"))
                .unwrap_or_else(|| ", no next run scheduled".to_owned());
            let status = if t.unit.is_active() && t.next_usec.is_some() {
                ProbeStatus::Green
            } else {
                ProbeStatus::Yellow
            };
            result(
                ID,
                "systemd",
                Some(instance),
                status,
                Impact::Ok,
                format!("{} is enabled ({}){next}", t.unit.unit, t.unit.active_state),
            )
            .data(data)
        }
        None => yellow(
            ID,
            "systemd",
            instance,
            format!("no backup timer is enabled for {instance}: it is backed up only when someone runs a backup"),
        )
        .fix(format!("abssctl schedule enable {instance}"))
        .data(data),
    }
}

/// `leftovers`: what earlier restores left beside the instance's data and
/// service files (one sentence each).
pub fn leftovers(instance: &str, found: &[String], capped: bool) -> ProbeResult {
    const ID: &str = "leftovers";
    if found.is_empty() {
        let mut r = green(
            ID,
            "fs",
            instance,
            "nothing left over by earlier restores".to_owned(),
        );
        if capped {
            r.status = ProbeStatus::Yellow;
            r.message = format!(
                "a directory beside {instance}'s data has too many entries to look through all of them"
            );
        }
        return r;
    }
    yellow(
        ID,
        "fs",
        instance,
        format!(
            "{} thing(s) left over by earlier restores of {instance}",
            found.len()
        ),
    )
    .fix("look at each and remove it once it is no longer needed".to_owned())
    .data(listed(found))
}

/// `drift`: reconcile's findings for the instance (`Err`: why it could not run).
pub fn drift(instance: &str, found: Result<&ReconcileResult, &str>) -> ProbeResult {
    const ID: &str = "drift";
    let found = match found {
        Ok(f) => f,
        Err(why) => {
            return yellow(
                ID,
                "state",
                instance,
                format!("the index was not compared with the archives: {why}"),
            );
        }
    };
    let data = json!({
        "missing": listed(&found.missing),
        "mismatched": listed(&found.mismatched),
        "orphaned": listed(&found.orphaned),
        "missing_sidecars": listed(&found.missing_sidecars),
    });
    let fix = format!("abssctl backup reconcile --instance {instance} --apply");
    if !found.missing.is_empty() || !found.mismatched.is_empty() {
        return red(
            ID,
            "state",
            instance,
            Impact::Environment,
            format!(
                "the index does not match the archives: {} missing, {} mismatched",
                found.missing.len(),
                found.mismatched.len()
            ),
        )
        .fix(fix)
        .data(data);
    }
    if !found.orphaned.is_empty() || !found.missing_sidecars.is_empty() {
        return yellow(
            ID,
            "state",
            instance,
            format!(
                "{} archive(s) without an index entry, {} without a checksum sidecar",
                found.orphaned.len(),
                found.missing_sidecars.len()
            ),
        )
        .fix(fix)
        .data(data);
    }
    green(
        ID,
        "state",
        instance,
        "the index matches the archives".to_owned(),
    )
}

/// `disk.free`: free space where the next backup goes against the newest
/// backup's size (the next one's likely size) plus `health.min_free_bytes`:
/// red below one backup, yellow below two.
pub fn disk(
    instance: &str,
    free: Result<u64, &str>,
    newest_bytes: Option<u64>,
    reserve: u64,
) -> ProbeResult {
    const ID: &str = "disk.free";
    let free = match free {
        Ok(f) => f,
        Err(why) => {
            return yellow(
                ID,
                "disk",
                instance,
                format!("cannot tell the free space for {instance}'s backups: {why}"),
            );
        }
    };
    let size = newest_bytes.unwrap_or(0);
    let data = json!({
        "free_bytes": free,
        "newest_backup_bytes": newest_bytes,
        "min_free_bytes": reserve,
    });
    let fix =
        "free space on the backups filesystem, prune (abssctl backup prune), or move backups.root"
            .to_owned();
    let show = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    if free < size.saturating_add(reserve) {
        red(
            ID,
            "disk",
            instance,
            Impact::Environment,
            format!(
                "disk low: {} free, the next backup of {instance} needs about {} (plus health.min_free_bytes {})",
                show(free),
                show(size),
                show(reserve)
            ),
        )
        .fix(fix)
        .data(data)
    } else if free < size.saturating_mul(2).saturating_add(reserve) {
        yellow(
            ID,
            "disk",
            instance,
            format!(
                "{} free: room for one more backup of {instance} (about {}), not two",
                show(free),
                show(size)
            ),
        )
        .fix(fix)
        .data(data)
    } else {
        green(ID, "disk", instance, format!("{} free", show(free))).data(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::UnitState;

    fn now() -> Timestamp {
        "2026-01-10T12:00:00Z".parse().unwrap()
    }

    fn entry(id: &str, at: &str, st: &str) -> BackupEntry {
        serde_json::from_value(json!({
            "id": id, "instance": "a", "created_at": at, "path": "/b/a/x.tar.zst",
            "status": st, "size_bytes": 100,
        }))
        .unwrap()
    }

    #[test]
    fn age_is_red_when_stale_or_absent() {
        let max = Duration::from_secs(36 * 3600);
        let fresh = entry("f", "2026-01-10T00:00:00Z", "available");
        assert_eq!(
            age("a", Some(&fresh), now(), max).status,
            ProbeStatus::Green
        );
        let old = entry("o", "2026-01-08T00:00:00Z", "available");
        let r = age("a", Some(&old), now(), max);
        assert_eq!((r.status, r.impact_code), (ProbeStatus::Red, 3));
        assert!(r.message.starts_with("stale"), "{}", r.message);
        assert_eq!(age("a", None, now(), max).status, ProbeStatus::Red);
        // From the future: not stale.
        let future = entry("x", "2027-01-01T00:00:00Z", "available");
        assert_eq!(
            age("a", Some(&future), now(), max).status,
            ProbeStatus::Green
        );
    }

    #[test]
    fn verification_reds_on_corrupt_and_yellows_when_never_verified() {
        let ok = entry("ok", "2026-01-10T00:00:00Z", "available");
        assert_eq!(verification("a", &[&ok], now()).status, ProbeStatus::Yellow);
        let mut seen = ok.clone();
        seen.verified_at = Some("2026-01-10T06:00:00Z".into());
        let r = verification("a", &[&seen], now());
        assert_eq!(r.status, ProbeStatus::Green);
        assert!(r.message.contains("6h 0m"), "{}", r.message);
        let bad = entry("bad", "2026-01-09T00:00:00Z", "corrupt");
        let r = verification("a", &[&seen, &bad], now());
        assert_eq!(
            (r.status, r.impact),
            (ProbeStatus::Red, Impact::Environment)
        );
        assert!(r.message.contains("bad"), "{}", r.message);
    }

    #[test]
    fn disk_thresholds_are_one_and_two_backups_plus_the_reserve() {
        let st = |free| disk("a", Ok(free), Some(100), 10).status;
        assert_eq!(st(109), ProbeStatus::Red);
        assert_eq!(st(110), ProbeStatus::Yellow);
        assert_eq!(st(209), ProbeStatus::Yellow);
        assert_eq!(st(210), ProbeStatus::Green);
        assert_eq!(disk("a", Err("x"), None, 0).status, ProbeStatus::Yellow);
    }

    #[test]
    fn timer_green_only_when_enabled_and_scheduled() {
        let t = |file: &str, next: Option<u64>| TimerState {
            unit: UnitState {
                unit: "abssctl-backup@a.timer".into(),
                load_state: "loaded".into(),
                active_state: "active".into(),
                sub_state: "waiting".into(),
                unit_file_state: file.into(),
            },
            next_usec: next,
            last_usec: None,
        };
        let r = timer("a", Ok(&[t("enabled", Some(1_800_000_000_000_000))]));
        assert_eq!(r.status, ProbeStatus::Green);
        assert!(r.message.contains("2027-01-15T08:00:00Z"), "{}", r.message);
        assert_eq!(
            timer("a", Ok(&[t("disabled", None)])).status,
            ProbeStatus::Yellow
        );
        let r = timer("a", Err("no bus"));
        assert_eq!((r.status, r.impact_code), (ProbeStatus::Red, 4));
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(human_age(42), "42s");
        assert_eq!(human_age(600), "10m");
        assert_eq!(human_age(3 * 3600 + 60), "3h 1m");
        assert_eq!(human_age(2 * 86400 + 5 * 3600), "2d 5h");
    }
}
