//! `schedule.enable`, `schedule.disable` and `schedule.show`: the systemd timers
//! that run `abssctl backup run` on their own (`abssctl-backup@<instance>.timer`,
//! `abssctl-backup-all.timer`).

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, WireError};
use crate::limits::{self, Bounded};

/// The unit name of the timer of one instance.
pub fn instance_timer(instance: &str) -> String {
    format!("abssctl-backup@{instance}.timer")
}

/// The timer that backs up every instance (`--all`).
pub const ALL_TIMER: &str = "abssctl-backup-all.timer";

/// The calendar a timer runs on when `calendar` is not given (the unit files' own).
pub const DEFAULT_CALENDAR: &str = "daily";

/// The longest calendar specification accepted (`calendar`).
pub const CALENDAR_MAX: usize = 128;

/// `schedule.enable` / `schedule.disable` parameters: one instance's timer or,
/// with `all`, the timer of every instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleParams {
    /// The instance whose timer it is; exactly one of this and `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `abssctl-backup-all.timer` instead of an instance's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// `schedule.enable` only: a systemd calendar specification (`OnCalendar=`,
    /// see systemd.time(7)); absent: [`DEFAULT_CALENDAR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

impl ScheduleParams {
    /// The timer unit these parameters name, or a validation error when they
    /// name none or both. The instance name itself is checked by the daemon.
    pub fn timer(&self) -> Result<String, WireError> {
        match (&self.instance, self.all) {
            (Some(name), false) => Ok(instance_timer(name)),
            (None, true) => Ok(ALL_TIMER.to_owned()),
            (Some(_), true) => Err(WireError::new(
                ErrorKind::Validation,
                "give an instance or all, not both",
            )),
            (None, false) => Err(WireError::new(
                ErrorKind::Validation,
                "give an instance (NAME) or all (--all)",
            )),
        }
    }
}

/// `schedule.enable` / `schedule.disable` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleResult {
    /// The timer unit, e.g. `abssctl-backup@alpha.timer`.
    pub unit: String,
    /// Enabled and started (`schedule.enable`), or stopped and disabled.
    pub enabled: bool,
    /// The calendar as given (`schedule.enable`); absent after a disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// systemd's normalized form of it (`*-*-* 00:00:00` for `daily`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<String>,
    /// The drop-in file written (enable) or removed (disable).
    pub drop_in: String,
}

/// `schedule.show` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleShowParams {
    /// Only this instance's timer; absent: every instance's and the `--all` timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// `schedule.show` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleShowResult {
    /// One per timer, instances in registry order, the `--all` timer last.
    pub timers: Vec<TimerInfo>,
    /// Timers left out past the limit (`schedule.show` reports at most
    /// [`SHOW_MAX`] timers); 0 when none.
    #[serde(default)]
    pub left_out: usize,
}

/// The most timers one `schedule.show` reads from systemd.
pub const SHOW_MAX: usize = 500;

/// One timer as systemd reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerInfo {
    /// The timer unit.
    pub unit: String,
    /// Its instance; absent for the `--all` timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Enabled (`UnitFileState` `enabled` or `enabled-runtime`).
    pub enabled: bool,
    /// `UnitFileState` as systemd has it (`enabled`, `disabled`, ...).
    pub unit_file_state: String,
    /// `ActiveState` (`active` means waiting for its next elapse).
    pub active_state: String,
    /// The `OnCalendar=` specifications in effect, normalized by systemd.
    pub calendar: Vec<String>,
    /// Next elapse (`NextElapseUSecRealtime`), ISO-8601 UTC; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// Last trigger (`LastTriggerUSec`), ISO-8601 UTC; absent when never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// `Result` of the service the timer runs (`success`, `exit-code`, ...);
    /// absent when systemd does not know the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
}

impl Bounded for ScheduleParams {
    fn check(&self) -> Result<(), WireError> {
        limits::opt("instance", self.instance.as_ref(), limits::NAME)?;
        limits::opt("calendar", self.calendar.as_ref(), CALENDAR_MAX)
    }
}

impl Bounded for ScheduleShowParams {
    fn check(&self) -> Result<(), WireError> {
        limits::opt("instance", self.instance.as_ref(), limits::NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_name_exactly_one_timer() {
        let p = |instance: Option<&str>, all| ScheduleParams {
            instance: instance.map(str::to_owned),
            all,
            calendar: None,
        };
        assert_eq!(
            p(Some("a"), false).timer().unwrap(),
            "abssctl-backup@a.timer"
        );
        assert_eq!(p(None, true).timer().unwrap(), ALL_TIMER);
        assert_eq!(
            p(Some("a"), true).timer().unwrap_err().kind,
            ErrorKind::Validation
        );
        assert_eq!(
            p(None, false).timer().unwrap_err().kind,
            ErrorKind::Validation
        );
        let long = ScheduleParams {
            calendar: Some("x".repeat(CALENDAR_MAX + 1)),
            ..p(Some("a"), false)
        };
        assert!(long.check().is_err());
    }
}
