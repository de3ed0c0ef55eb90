//! The probes of systemd and the filesystem: `timer`, `leftovers`, `drift`,
//! `disk.free`.

use abssd_proto::{Impact, ProbeResult, ProbeStatus, ReconcileResult};
use jiff::Timestamp;
use serde_json::json;

use super::common::{With, green, human_bytes, listed, red, result, yellow};
use crate::systemd::TimerState;

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
                "next_run_at": t.next().and_then(usec_time),
                "last_run_at": t.last().and_then(usec_time),
            }))
            .collect::<Vec<_>>()
    );
    match timers.iter().find(|t| t.unit.is_enabled()) {
        Some(t) => {
            let next = t
                .next()
                .and_then(usec_time)
                .map(|n| format!(", next run {n}"))
                .unwrap_or_else(|| ", no next run scheduled".to_owned());
            let status = if t.unit.is_active() && t.next().is_some() {
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
    let [missing, orphaned, mismatched, sidecars] = found.counts();
    if !found.missing.is_empty() || !found.mismatched.is_empty() {
        return red(
            ID,
            "state",
            instance,
            Impact::Environment,
            format!(
                "the index does not match the archives: {} missing, {} mismatched",
                missing, mismatched
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
                orphaned, sidecars
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
    let show = human_bytes;
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
            calendar: vec!["daily".into()],
            next_elapse_usec: next.unwrap_or(0),
            last_trigger_usec: 0,
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
}
