//! The probes of the index and the job record: `backups.age`,
//! `backups.verify`, `job.last`.

use std::time::Duration;

use abssd_proto::{BackupEntry, Impact, JobRecord, JobStepStatus, ProbeResult, status};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::common::{
    MAX_LISTED, With, age_seconds, clip_to, green, human_age, listed, parse_time, red, yellow,
};

/// `backups.age`: the newest `available` backup against `backups.max_age`.
pub fn age(
    instance: &str,
    newest: Option<&BackupEntry>,
    now: Timestamp,
    max_age: Duration,
) -> ProbeResult {
    const ID: &str = "backups.age";
    let make = format!(
        "make one now: abssctl backup create {instance}; schedule them: abssctl schedule enable {instance}"
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
            "see abssctl backup show {first}; make a new backup (abssctl backup create {instance}) and verify it"
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
        .fix("abssctl backup verify --all (or one: abssctl backup verify ID)".to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use abssd_proto::ProbeStatus;

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
}
