//! `schedule enable|disable|show`: the systemd timers that run `abssctl backup
//! run` on their own (`abssctl-backup@<instance>.timer`, and
//! `abssctl-backup-all.timer` for `--all`).
//!
//! abssd does the privileged part for its unprivileged client: it checks the
//! name (an instance of the registry) and the calendar ([`calendar`]), writes
//! the calendar as a drop-in of the timer ([`dropin`]), and drives systemd over
//! D-Bus.
//!
//! enable: drop-in written → `Reload` → `EnableUnitFiles` → `StartUnit`.
//! disable: `StopUnit` → `DisableUnitFiles` → drop-in removed → `Reload`.
//!
//! There is no journal to replay: every step is idempotent and each run does
//! them all again, so a run killed between two steps is finished by running the
//! same command again, and until then leaves something harmless. Killed after
//! the drop-in was written: the timer is as before (enabled or not) and takes
//! the new calendar at the next daemon-reload. Killed after the reload: same,
//! with the new calendar in effect. Killed after the enable: the timer starts
//! at the next boot. Killed during a disable: the timer is stopped but still
//! enabled (it comes back at boot), or disabled with its calendar drop-in left
//! (inert: nothing starts a disabled timer). Two runs on one timer are
//! serialized within the daemon. A crash point after each step lets the crash
//! test check exactly that (`tests/tests/crash.rs`).

pub mod calendar;
pub mod dropin;

use abssd_proto::schedule::{
    ALL_TIMER, DEFAULT_CALENDAR, SHOW_MAX, ScheduleParams, ScheduleResult, ScheduleShowParams,
    ScheduleShowResult, TimerInfo, instance_timer,
};

use crate::error::{Error, Result};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::registry::Registry;
use crate::systemd::Units;

/// One enable or disable at a time: each reads the timer's state, then acts on it.
static CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Shows reading systemd at once: any peer may ask, each asks for up to
/// [`SHOW_MAX`] timers.
static SHOWS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// What the RPC layer checks before an operation exists: one timer named, a
/// valid instance name, a calendar of the allowed characters.
pub fn precheck(p: &ScheduleParams) -> Result<()> {
    p.timer().map_err(|e| Error::validation(e.message))?;
    if let Some(name) = &p.instance {
        crate::registry::validate_name(name)?;
    }
    p.calendar.as_deref().map_or(Ok(()), calendar::check_syntax)
}

/// [`precheck`] for `schedule.disable`, which takes no calendar.
pub fn precheck_disable(p: &ScheduleParams) -> Result<()> {
    if p.calendar.is_some() {
        return Err(Error::validation("calendar is for schedule.enable only"));
    }
    precheck(p)
}

/// `schedule.enable`.
pub async fn enable(ctx: &Ctx, p: &ScheduleParams, progress: &Reporter) -> Result<ScheduleResult> {
    precheck(p)?;
    let timer = p.timer().map_err(|e| Error::validation(e.message))?;
    if let Some(name) = &p.instance {
        require_instance(ctx, name).await?;
    }
    let spec = p.calendar.as_deref().unwrap_or(DEFAULT_CALENDAR);
    let cal = calendar::check(spec).await?;
    let _one = CHANGES.lock().await;
    let units = ctx.systemd.connect().await?;
    let state = units.state(&timer).await?;
    if !state.is_loaded() {
        return Err(not_installed(&timer, &state.load_state));
    }
    let unit_dir = ctx.config.layout.timer_dropin_dir.clone();
    let (dir, t, s) = (unit_dir.clone(), timer.clone(), cal.given.clone());
    let written = tokio::task::spawn_blocking(move || dropin::write(&dir, &t, &s)).await??;
    progress.info(format!("wrote {}", written.display()));
    crash_point!("schedule::enable-after-drop-in");
    units.daemon_reload().await?;
    crash_point!("schedule::enable-after-reload");
    units.enable(&timer).await?;
    crash_point!("schedule::enable-after-enable");
    units.start(&timer).await?;
    progress.info(format!("{timer} enabled and started: {}", cal.normalized));
    Ok(ScheduleResult {
        unit: timer,
        enabled: true,
        calendar: Some(cal.given),
        normalized: Some(cal.normalized),
        drop_in: written.display().to_string(),
    })
}

/// `schedule.disable`. The instance need not be in the registry any more: the
/// timer of a removed instance can still be turned off.
pub async fn disable(ctx: &Ctx, p: &ScheduleParams, progress: &Reporter) -> Result<ScheduleResult> {
    precheck_disable(p)?;
    let timer = p.timer().map_err(|e| Error::validation(e.message))?;
    let _one = CHANGES.lock().await;
    let units = ctx.systemd.connect().await?;
    let state = units.state(&timer).await?;
    // systemd refuses to stop or disable a unit it has no file for; such a
    // timer is neither running nor enabled.
    if state.is_loaded() {
        units.stop(&timer).await?;
        crash_point!("schedule::disable-after-stop");
        units.disable(&timer).await?;
        crash_point!("schedule::disable-after-disable");
    }
    let unit_dir = ctx.config.layout.timer_dropin_dir.clone();
    let (dir, t) = (unit_dir.clone(), timer.clone());
    let removed = tokio::task::spawn_blocking(move || dropin::remove(&dir, &t)).await??;
    crash_point!("schedule::disable-after-drop-in");
    units.daemon_reload().await?;
    progress.info(format!("{timer} stopped and disabled"));
    Ok(ScheduleResult {
        unit: timer,
        enabled: false,
        calendar: None,
        normalized: None,
        drop_in: removed.display().to_string(),
    })
}

/// `schedule.show`: read-only, from systemd.
pub async fn show(ctx: &Ctx, p: &ScheduleShowParams) -> Result<ScheduleShowResult> {
    let mut wanted: Vec<(String, Option<String>)> = Vec::new();
    let mut left_out = 0;
    match &p.instance {
        Some(name) => {
            require_instance(ctx, name).await?;
            wanted.push((instance_timer(name), Some(name.clone())));
        }
        None => {
            let file = ctx.config.layout.registry_file();
            let registry = tokio::task::spawn_blocking(move || Registry::load(&file)).await??;
            let names: Vec<&str> = registry.instances.iter().map(|i| i.name.as_str()).collect();
            let room = SHOW_MAX - 1;
            left_out = names.len().saturating_sub(room);
            for name in names.into_iter().take(room) {
                wanted.push((instance_timer(name), Some(name.to_owned())));
            }
            wanted.push((ALL_TIMER.to_owned(), None));
        }
    }
    let _turn = SHOWS
        .acquire()
        .await
        .map_err(|_| Error::Internal("schedule.show closed".into()))?;
    let units = ctx.systemd.connect().await?;
    let mut timers = Vec::with_capacity(wanted.len());
    for (timer, instance) in wanted {
        timers.push(timer_info(units.as_ref(), &timer, instance).await?);
    }
    Ok(ScheduleShowResult { timers, left_out })
}

/// One timer and its service, as systemd reports them.
async fn timer_info(units: &dyn Units, timer: &str, instance: Option<String>) -> Result<TimerInfo> {
    let t = units.timer(timer).await?;
    let service = format!("{}.service", timer.trim_end_matches(".timer"));
    let last_result = if t.unit.is_loaded() {
        units.service_result(&service).await?
    } else {
        None
    };
    Ok(TimerInfo {
        unit: timer.to_owned(),
        instance,
        enabled: t.unit.is_enabled(),
        unit_file_state: t.unit.unit_file_state.clone(),
        active_state: t.unit.active_state.clone(),
        calendar: t.calendar,
        next_run: usec_utc(t.next_elapse_usec),
        last_run: usec_utc(t.last_trigger_usec),
        last_result,
    })
}

/// µs since the epoch as ISO-8601 UTC; 0 (systemd's "none") as `None`.
fn usec_utc(usec: u64) -> Option<String> {
    if usec == 0 || usec == u64::MAX {
        return None;
    }
    let usec = i64::try_from(usec).ok()?;
    jiff::Timestamp::from_microsecond(usec)
        .ok()
        .map(crate::fsutil::utc)
}

/// The instance must be in the registry.
async fn require_instance(ctx: &Ctx, name: &str) -> Result<()> {
    let file = ctx.config.layout.registry_file();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || Registry::load(&file)?.require(&name, &file).map(|_| ()))
        .await?
}

fn not_installed(timer: &str, load_state: &str) -> Error {
    if load_state == "masked" {
        return Error::Environment(format!(
            "{timer} is masked: unmask it (systemctl unmask {timer}) and retry"
        ));
    }
    let template = if timer == ALL_TIMER {
        ALL_TIMER.to_owned()
    } else {
        "abssctl-backup@.timer".to_owned()
    };
    Error::Environment(format!(
        "systemd has no unit file for {timer} (load state {load_state}): install {template} and its service with abssd (make install, or the Debian package abssd), then retry"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_and_zero_is_none() {
        assert_eq!(usec_utc(0), None);
        assert_eq!(usec_utc(u64::MAX), None);
        assert_eq!(
            usec_utc(1_767_225_600_000_000).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn precheck_refuses_bad_names_and_calendars() {
        let p = |instance: &str, calendar: Option<&str>| ScheduleParams {
            instance: Some(instance.into()),
            all: false,
            calendar: calendar.map(str::to_owned),
        };
        assert!(precheck(&p("alpha", Some("daily"))).is_ok());
        assert!(precheck(&p("../x", None)).is_err());
        assert!(precheck(&p("alpha", Some("daily\nExecStart=x"))).is_err());
        assert!(precheck(&ScheduleParams::default()).is_err());
    }
}
