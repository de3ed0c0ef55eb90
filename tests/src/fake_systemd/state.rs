//! The fake's model of systemd: units, injected failures, the call log.
//!
//! Shared (behind one mutex) by the D-Bus interfaces and the in-process
//! [`FakeSystemd`](super::FakeSystemd) handle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};

use abssd::systemd::UnitState;

/// A job result that is not systemd's: the job never finishes (no `JobRemoved`),
/// so a client's wait runs into its timeout.
pub const HANG: &str = "hang";

/// The kind of job a failure is injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `StartUnit` and `RestartUnit`.
    Start,
    /// `StopUnit`.
    Stop,
    /// `ReloadUnit`.
    Reload,
}

impl FromStr for Verb {
    type Err = String;

    fn from_str(s: &str) -> Result<Verb, String> {
        match s.to_ascii_lowercase().as_str() {
            "start" => Ok(Verb::Start),
            "stop" => Ok(Verb::Stop),
            "reload" => Ok(Verb::Reload),
            _ => Err(format!("unknown verb {s:?}: start, stop or reload")),
        }
    }
}

/// `ActiveState` of a unit, as far as the fake goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Active {
    Running,
    Inactive,
    /// After a failed start.
    Failed,
}

/// One unit the fake knows about beyond its file.
#[derive(Debug, Clone, Copy)]
struct Unit {
    active: Active,
    enabled: bool,
}

impl Default for Unit {
    fn default() -> Self {
        Unit {
            active: Active::Inactive,
            enabled: false,
        }
    }
}

/// Something a test runs when a job finishes (see [`Model::on_job`]).
#[derive(Clone)]
pub struct Hook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (unit, verb) → run when such a job succeeds, before its `JobRemoved`.
    hooks: HashMap<(String, Verb), Hook>,
    /// Units set explicitly or touched by a job. Loaded whether or not a file exists.
    units: HashMap<String, Unit>,
    /// (unit, verb) → the job result to report instead of `done`.
    failures: HashMap<(String, Verb), String>,
    /// Mutating calls, in order of arrival: `StartUnit x.service`, `Reload`, ...
    calls: Vec<String>,
    /// Last job id handed out.
    last_job: u32,
    /// Timer unit → (next elapse, last trigger), µs since the epoch.
    timers: HashMap<String, (u64, u64)>,
}

/// The shared model.
#[derive(Debug)]
pub struct Model {
    inner: Mutex<Inner>,
    /// A unit whose file `<unit_dir>/<name>` exists is loaded (checked at each call,
    /// as systemd sees new files after a daemon-reload).
    unit_dir: Option<PathBuf>,
}

/// A queued job, to be finished by [`Model::finish`].
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id (`JobRemoved` argument 1).
    pub id: u32,
    /// Its object path.
    pub path: String,
    /// The unit it acts on.
    pub unit: String,
    /// What it does.
    pub verb: Verb,
    /// The result it will report.
    pub result: String,
}

impl Model {
    /// systemd as it boots: `nginx.service` loaded, active and enabled.
    pub fn new(unit_dir: Option<PathBuf>) -> Model {
        let mut inner = Inner::default();
        inner.units.insert(
            "nginx.service".into(),
            Unit {
                active: Active::Running,
                enabled: true,
            },
        );
        Model {
            inner: Mutex::new(inner),
            unit_dir,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not take every other user down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_file(&self, name: &str) -> bool {
        !name.is_empty()
            && !name.contains('/')
            && self
                .unit_dir
                .as_ref()
                .is_some_and(|d| d.join(name).symlink_metadata().is_ok())
    }

    /// Whether systemd would have this unit loaded.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.lock().units.contains_key(name) || self.has_file(name)
    }

    /// The unit as `LoadUnit` + its properties would show it.
    pub fn state(&self, name: &str) -> UnitState {
        let known = self.lock().units.get(name).copied();
        let unit = match known {
            Some(u) => Some(u),
            None if self.has_file(name) => Some(Unit::default()),
            None => None,
        };
        let (load, active, sub, file) = match unit {
            None => ("not-found", "inactive", "dead", ""),
            Some(u) => {
                let (active, sub) = match u.active {
                    Active::Running => ("active", "running"),
                    Active::Inactive => ("inactive", "dead"),
                    Active::Failed => ("failed", "failed"),
                };
                let file = if u.enabled { "enabled" } else { "disabled" };
                ("loaded", active, sub, file)
            }
        };
        UnitState {
            unit: name.to_owned(),
            load_state: load.into(),
            active_state: active.into(),
            sub_state: sub.into(),
            unit_file_state: file.into(),
        }
    }

    /// Load (or create) `name` with this state.
    pub fn set_unit(&self, name: &str, active: bool, enabled: bool) {
        let active = if active {
            Active::Running
        } else {
            Active::Inactive
        };
        self.lock()
            .units
            .insert(name.to_owned(), Unit { active, enabled });
    }

    /// Make every `verb` job on `name` end with `result` (`None` clears).
    pub fn fail(&self, name: &str, verb: Verb, result: Option<&str>) {
        let key = (name.to_owned(), verb);
        let mut inner = self.lock();
        match result {
            Some(r) if r != "done" && !r.is_empty() => {
                inner.failures.insert(key, r.to_owned());
            }
            _ => {
                inner.failures.remove(&key);
            }
        }
    }

    /// Run `hook` each time a `verb` job on `name` succeeds, after the unit's
    /// state changed and before its `JobRemoved` is sent (so before the
    /// caller's wait for the job returns); `None` removes it.
    pub fn on_job(&self, name: &str, verb: Verb, hook: Option<Hook>) {
        let key = (name.to_owned(), verb);
        let mut inner = self.lock();
        match hook {
            Some(h) => {
                inner.hooks.insert(key, h);
            }
            None => {
                inner.hooks.remove(&key);
            }
        }
    }

    /// Give the timer `name` a schedule (µs since the epoch; 0: none).
    pub fn set_timer(&self, name: &str, next_usec: u64, last_usec: u64) {
        self.lock()
            .timers
            .insert(name.to_owned(), (next_usec, last_usec));
    }

    /// The timer's (next elapse, last trigger); zeros when not set.
    pub fn timer(&self, name: &str) -> (u64, u64) {
        self.lock().timers.get(name).copied().unwrap_or((0, 0))
    }

    /// Record a call in the log.
    pub fn record(&self, call: String) {
        self.lock().calls.push(call);
    }

    /// The call log.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Empty the call log.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Queue a job for a loaded unit (the caller checked). A reload of a unit that
    /// is not active ends `invalid`, as in systemd.
    pub fn queue(&self, name: &str, verb: Verb) -> Job {
        let mut inner = self.lock();
        inner.last_job += 1;
        let id = inner.last_job;
        let active = inner.units.get(name).map(|u| u.active);
        let result = match inner.failures.get(&(name.to_owned(), verb)) {
            Some(r) => r.clone(),
            None if verb == Verb::Reload && active != Some(Active::Running) => "invalid".into(),
            None => "done".into(),
        };
        Job {
            id,
            path: format!("/org/freedesktop/systemd1/job/{id}"),
            unit: name.to_owned(),
            verb,
            result,
        }
    }

    /// Apply a job's effect on the unit, just before its `JobRemoved`.
    pub fn finish(&self, job: &Job) {
        let hook = {
            let mut inner = self.lock();
            let unit = inner.units.entry(job.unit.clone()).or_default();
            match (job.verb, job.result.as_str()) {
                (Verb::Start, "done") => unit.active = Active::Running,
                (Verb::Start, _) => unit.active = Active::Failed,
                (Verb::Stop, "done") => unit.active = Active::Inactive,
                _ => {}
            }
            let hook = inner.hooks.get(&(job.unit.clone(), job.verb)).cloned();
            hook.filter(|_| job.result == "done")
        };
        // Outside the lock: a hook may look at the model.
        if let Some(Hook(hook)) = hook {
            hook();
        }
    }
}

/// A unit's object path, escaped as systemd does: every byte outside
/// `[A-Za-z0-9]` becomes `_xx` (lower-case hex); the empty name is `_`.
pub fn unit_path(name: &str) -> String {
    let mut label = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            label.push(b as char);
        } else {
            label.push_str(&format!("_{b:02x}"));
        }
    }
    if label.is_empty() {
        label.push('_');
    }
    format!("/org/freedesktop/systemd1/unit/{label}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_like_systemd() {
        assert_eq!(
            unit_path("abssctl-a.service"),
            "/org/freedesktop/systemd1/unit/abssctl_2da_2eservice"
        );
        assert_eq!(
            unit_path("nginx.service"),
            "/org/freedesktop/systemd1/unit/nginx_2eservice"
        );
        assert_eq!(
            unit_path("a@b_c.service"),
            "/org/freedesktop/systemd1/unit/a_40b_5fc_2eservice"
        );
        assert_eq!(unit_path(""), "/org/freedesktop/systemd1/unit/_");
    }
}
