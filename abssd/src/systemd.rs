//! systemd over D-Bus: unit state, start / stop / reload jobs, daemon-reload.
//!
//! Operations see systemd only through the [`Units`] trait, and get a handle from
//! the [`Connector`] their context holds, so tests can put a fake in its place.
//! [`Systemd`] implements it over a zbus connection to `org.freedesktop.systemd1`
//! (the system bus unless `--bus` / `DBUS_SYSTEM_BUS_ADDRESS` points elsewhere),
//! opened by [`Bus`]. This is the only module of the daemon that imports zbus.
//!
//! A job method (`StartUnit`, `StopUnit`, `ReloadUnit`) only *queues* a job and
//! returns its object path; the outcome arrives later as a `JobRemoved(id, job,
//! unit, result)` signal. The stream of those signals is opened before the call, so a
//! job that finishes before the reply has been read is not missed, and each caller
//! waits for its own job path, so concurrent jobs never take each other's results.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;

use crate::error::{Error, Result};

/// How long one job (start, stop, reload) may take before we give up waiting.
/// Longer than systemd's default `TimeoutStartSec`/`TimeoutStopSec` (90 s), so a
/// unit that times out is reported by systemd's own result (`timeout`) first.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(100);

/// How long a single D-Bus call may go unanswered (`daemon-reload` on a big host
/// takes seconds; a hung systemd should not hang an operation forever).
const METHOD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting and authenticating to the bus may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Signals the connection may hold for a receiver that is not reading. A job's
/// signal stream is idle while its `StartUnit` call is in flight; when the queue is
/// full zbus stops reading the socket, which would also hold back that call's reply.
/// systemd broadcasts `JobRemoved` for every job on the host, so leave room.
const MAX_QUEUED: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

/// Hint appended to every "cannot reach systemd" message.
const REACH_HINT: &str = "is systemd running? point --bus / DBUS_SYSTEM_BUS_ADDRESS elsewhere";

/// Snapshot of one unit, read uncached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitState {
    /// The unit name asked for (`abssctl-a.service`).
    pub unit: String,
    /// `loaded`, `not-found`, `masked`, `error`, `bad-setting`, ...
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`, ...
    pub active_state: String,
    /// Unit-type specific detail (`running`, `dead`, `exited`, ...).
    pub sub_state: String,
    /// `enabled`, `disabled`, `static`, `masked`, ...; empty for a unit without a file.
    pub unit_file_state: String,
}

impl UnitState {
    /// Running or on its way up: `active`, `activating`, `reloading`, `refreshing`.
    /// A restore stops such a unit and starts it again afterwards.
    pub fn is_active(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading" | "refreshing"
        )
    }

    /// Enabled by its own install symlinks: `enabled` or `enabled-runtime`.
    ///
    /// `static`, `indirect`, `generated`, `alias` and `linked` are *not* enabled here:
    /// `systemctl enable` does not apply to them, and this answers "was this unit
    /// enabled", which is what a restore has to preserve. The raw value stays in
    /// [`UnitState::unit_file_state`].
    pub fn is_enabled(&self) -> bool {
        matches!(self.unit_file_state.as_str(), "enabled" | "enabled-runtime")
    }

    /// systemd has a valid unit file for it (`loaded`; not `not-found` or `masked`).
    pub fn is_loaded(&self) -> bool {
        self.load_state == "loaded"
    }
}

/// What operations need from systemd. Boxed futures keep it usable as
/// `dyn Units`, the shape operations receive it in.
pub trait Units: Send + Sync {
    /// The unit's current state; an unknown unit is `load_state: "not-found"`.
    fn state<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<UnitState>>;
    /// Start and wait for the job; a result other than `done` is an error.
    fn start<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Stop and wait for the job; a result other than `done` is an error.
    fn stop<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Reload (`ReloadUnit`, as for `nginx.service`) and wait for the job.
    fn reload<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>>;
    /// `systemctl daemon-reload`: re-read unit files. Returns when done.
    fn daemon_reload(&self) -> BoxFuture<'_, Result<()>>;
    /// `systemctl enable UNIT` (its `[Install]` symlinks, persistent).
    fn enable<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(unsupported("enable", unit)) })
    }
    /// `systemctl disable UNIT`; a unit not enabled is no error.
    fn disable<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(unsupported("disable", unit)) })
    }
    /// A timer's state, calendars, next elapse and last trigger.
    fn timer<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<TimerState>> {
        Box::pin(async move { Err(unsupported("read the timer", unit)) })
    }
    /// A service's `Result` (how its last run ended); `None` when not loaded.
    fn service_result<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move { Err(unsupported("read the result of", unit)) })
    }
}

/// What a [`Units`] that only knows services answers to timer calls.
fn unsupported(what: &str, unit: &str) -> Error {
    Error::Internal(format!("this systemd handle cannot {what} {unit}"))
}

/// Opens the [`Units`] handle an operation works with. Operations connect
/// when they need systemd, not at start-up: the daemon serves on a host (or in
/// a test) without systemd, and a restore asks on a fresh connection.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// A handle on systemd; an [`Error::Service`] when it cannot be reached.
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Units>>>;
}

/// The real [`Connector`]: a [`Systemd`] on the D-Bus at `address` (`None`:
/// the system bus).
#[derive(Debug, Clone)]
pub struct Bus {
    /// `systemd.bus_address` / `--bus`.
    pub address: Option<String>,
}

impl Connector for Bus {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Units>>> {
        Box::pin(async move {
            let systemd = Systemd::connect(self.address.as_deref()).await?;
            Ok(Box::new(systemd) as Box<dyn Units>)
        })
    }
}

/// `org.freedesktop.systemd1.Manager`, only what we call.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// The unit's object, loading it if needed; a missing file gives `not-found`.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queue a start job; returns the job's path.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queue a stop job; returns the job's path.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queue a reload job; returns the job's path.
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// daemon-reload.
    fn reload(&self) -> zbus::Result<()>;
    /// `systemctl enable`: the units' install symlinks in /etc (not runtime).
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    /// `systemctl disable`.
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    /// Ask systemd to emit its signals to us.
    fn subscribe(&self) -> zbus::Result<()>;
    /// A job finished with `result` (`done`, `failed`, `canceled`, ...).
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.systemd1.Unit`, the four properties we read. systemd sends no
/// reliable change signal for them: always read them fresh.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    /// See [`UnitState::load_state`].
    #[zbus(property(emits_changed_signal = "false"))]
    fn load_state(&self) -> zbus::Result<String>;
    /// See [`UnitState::active_state`].
    #[zbus(property(emits_changed_signal = "false"))]
    fn active_state(&self) -> zbus::Result<String>;
    /// See [`UnitState::sub_state`].
    #[zbus(property(emits_changed_signal = "false"))]
    fn sub_state(&self) -> zbus::Result<String>;
    /// See [`UnitState::unit_file_state`].
    #[zbus(property(emits_changed_signal = "false"))]
    fn unit_file_state(&self) -> zbus::Result<String>;
}

/// `org.freedesktop.systemd1.Timer`, what `schedule.show` reports.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Timer",
    default_service = "org.freedesktop.systemd1"
)]
trait Timer {
    /// `OnCalendar=` specifications: (`OnCalendar`, normalized spec, next elapse).
    #[zbus(property(emits_changed_signal = "false"))]
    fn timers_calendar(&self) -> zbus::Result<Vec<(String, String, u64)>>;
    /// Next elapse on the realtime clock, µs since the epoch; 0 for none.
    #[zbus(
        property(emits_changed_signal = "false"),
        name = "NextElapseUSecRealtime"
    )]
    fn next_elapse_usec_realtime(&self) -> zbus::Result<u64>;
    /// Last trigger, µs since the epoch; 0 for never.
    #[zbus(property(emits_changed_signal = "false"), name = "LastTriggerUSec")]
    fn last_trigger_usec(&self) -> zbus::Result<u64>;
}

/// `org.freedesktop.systemd1.Service`, the one property we read.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait Service {
    /// How the last run ended: `success`, `exit-code`, `signal`, `timeout`, ...
    #[zbus(property(emits_changed_signal = "false"))]
    fn result(&self) -> zbus::Result<String>;
}

/// A timer as `schedule.show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimerState {
    /// The unit's own state (loaded? enabled? active?).
    pub unit: UnitState,
    /// `OnCalendar=` specifications in effect, normalized by systemd.
    pub calendar: Vec<String>,
    /// Next elapse, µs since the epoch; 0 for none.
    pub next_elapse_usec: u64,
    /// Last trigger, µs since the epoch; 0 for never.
    pub last_trigger_usec: u64,
}

impl TimerState {
    /// Its next elapse (µs since the epoch), when one is scheduled.
    pub fn next(&self) -> Option<u64> {
        (self.next_elapse_usec != 0).then_some(self.next_elapse_usec)
    }

    /// When it last fired (µs since the epoch), if ever.
    pub fn last(&self) -> Option<u64> {
        (self.last_trigger_usec != 0).then_some(self.last_trigger_usec)
    }
}

/// The three job kinds, for calls and messages.
#[derive(Debug, Clone, Copy)]
enum Job {
    Start,
    Stop,
    Reload,
}

impl Job {
    fn verb(self) -> &'static str {
        match self {
            Job::Start => "start",
            Job::Stop => "stop",
            Job::Reload => "reload",
        }
    }
}

/// systemd's manager on one bus connection. Cheap to clone (shared connection).
#[derive(Debug, Clone)]
pub struct Systemd {
    /// Every call and signal goes through it.
    manager: ManagerProxy<'static>,
    /// The bus address as given or resolved, for messages.
    address: Arc<str>,
    /// Bound on each job wait ([`JOB_TIMEOUT`] unless a test shortens it).
    job_timeout: Duration,
}

impl Systemd {
    /// Connect to `address` (None = the system bus) and subscribe to systemd's
    /// signals. An unreachable bus, or a bus without systemd on it, is an
    /// [`Error::Service`] naming the address and what to do.
    pub async fn connect(address: Option<&str>) -> Result<Systemd> {
        let builder = match address {
            Some(a) => zbus::connection::Builder::address(a),
            None => zbus::connection::Builder::system(),
        };
        let shown: Arc<str> = match address {
            Some(a) => a.into(),
            None => zbus::Address::system()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "the system bus".into())
                .into(),
        };
        let unreachable = |detail: String| {
            Error::Service(format!(
                "cannot reach systemd's D-Bus at {shown}: {detail}; {REACH_HINT}"
            ))
        };
        let connecting = builder
            .method_timeout(METHOD_TIMEOUT)
            .max_queued(MAX_QUEUED)
            .build();
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(unreachable(connect_detail(&e))),
            Ok(Ok(c)) => c,
        };
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| unreachable(describe(&e)))?;
        // Once per connection; systemd answers AlreadySubscribed to a repeat.
        match manager.subscribe().await {
            Ok(()) => {}
            Err(e) if error_name(&e) == Some("org.freedesktop.systemd1.AlreadySubscribed") => {}
            Err(e) => {
                return Err(Error::Service(format!(
                    "systemd (org.freedesktop.systemd1) does not answer on the D-Bus at {shown}: {}; {REACH_HINT}",
                    describe(&e)
                )));
            }
        }
        Ok(Systemd {
            manager,
            address: shown,
            job_timeout: JOB_TIMEOUT,
        })
    }

    /// The bus address, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Bound each job wait by `timeout` instead of [`JOB_TIMEOUT`] (tests).
    pub fn with_job_timeout(mut self, timeout: Duration) -> Systemd {
        self.job_timeout = timeout;
        self
    }

    /// A failed D-Bus call, as an operator-facing error.
    fn call_failed(&self, what: &str, e: &zbus::Error) -> Error {
        Error::Service(format!(
            "{what}: {} (D-Bus at {})",
            describe(e),
            self.address
        ))
    }

    /// Queue `job` for `unit` and wait for its `JobRemoved`.
    async fn run_job(&self, job: Job, unit: &str) -> Result<()> {
        let verb = job.verb();
        let what = format!("systemd could not {verb} {unit}");
        // Before the call: a job may finish before its reply has been read.
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|e| self.call_failed(&what, &e))?;
        let queued = match job {
            Job::Start => self.manager.start_unit(unit, "replace").await,
            Job::Stop => self.manager.stop_unit(unit, "replace").await,
            Job::Reload => self.manager.reload_unit(unit, "replace").await,
        };
        let path = queued.map_err(|e| self.call_failed(&what, &e))?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                // A signal we cannot decode is someone else's business.
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == path.as_str() {
                    return Some(args.result.to_owned());
                }
            }
            None
        };
        match tokio::time::timeout(self.job_timeout, wait).await {
            Err(_) => Err(Error::Service(format!(
                "timed out after {:?} waiting for systemd to {verb} {unit} (job {}); see journalctl -u {unit}",
                self.job_timeout,
                path.as_str()
            ))),
            Ok(None) => Err(Error::Service(format!(
                "lost the D-Bus connection to systemd at {} while waiting for it to {verb} {unit}; check the unit with systemctl status {unit}",
                self.address
            ))),
            Ok(Some(result)) => job_outcome(job, unit, &result),
        }
    }
}

impl Units for Systemd {
    fn state<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<UnitState>> {
        Box::pin(self.unit_state(unit))
    }

    fn start<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run_job(Job::Start, unit))
    }

    fn stop<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run_job(Job::Stop, unit))
    }

    fn reload<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run_job(Job::Reload, unit))
    }

    fn daemon_reload(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.manager
                .reload()
                .await
                .map_err(|e| self.call_failed("systemd daemon-reload failed", &e))
        })
    }

    fn enable<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.manager
                .enable_unit_files(&[unit], false, false)
                .await
                .map(drop)
                .map_err(|e| self.call_failed(&format!("systemd could not enable {unit}"), &e))
        })
    }

    fn disable<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.manager
                .disable_unit_files(&[unit], false)
                .await
                .map(drop)
                .map_err(|e| self.call_failed(&format!("systemd could not disable {unit}"), &e))
        })
    }

    fn timer<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<TimerState>> {
        Box::pin(self.timer_state(unit))
    }

    fn service_result<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(self.service_state(unit))
    }
}

impl Systemd {
    /// [`Units::state`]: four properties of the unit's object, read fresh.
    async fn unit_state(&self, unit: &str) -> Result<UnitState> {
        let what = format!("systemd could not load {unit}");
        let path = self
            .manager
            .load_unit(unit)
            .await
            .map_err(|e| self.call_failed(&what, &e))?;
        let proxy = UnitProxy::builder(self.manager.inner().connection())
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.call_failed(&what, &e))?;
        let (load_state, active_state, sub_state, unit_file_state) = tokio::try_join!(
            proxy.load_state(),
            proxy.active_state(),
            proxy.sub_state(),
            proxy.unit_file_state()
        )
        .map_err(|e| self.call_failed(&format!("cannot read the state of {unit}"), &e))?;
        Ok(UnitState {
            unit: unit.to_owned(),
            load_state,
            active_state,
            sub_state,
            unit_file_state,
        })
    }
}

impl Systemd {
    /// The object path of `unit`, loading it (a missing file gives `not-found`).
    async fn unit_path(&self, unit: &str) -> Result<OwnedObjectPath> {
        self.manager
            .load_unit(unit)
            .await
            .map_err(|e| self.call_failed(&format!("systemd could not load {unit}"), &e))
    }

    /// [`Units::timer`]: the unit's state, then the timer's own properties
    /// when it is loaded (a unit without a file has none worth reading).
    async fn timer_state(&self, unit: &str) -> Result<TimerState> {
        let state = self.unit_state(unit).await?;
        let mut timer = TimerState {
            unit: state,
            calendar: Vec::new(),
            next_elapse_usec: 0,
            last_trigger_usec: 0,
        };
        if !timer.unit.is_loaded() {
            return Ok(timer);
        }
        let what = format!("cannot read the timer {unit}");
        let proxy = TimerProxy::builder(self.manager.inner().connection())
            .path(self.unit_path(unit).await?)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.call_failed(&what, &e))?;
        let (calendars, next, last) = tokio::try_join!(
            proxy.timers_calendar(),
            proxy.next_elapse_usec_realtime(),
            proxy.last_trigger_usec()
        )
        .map_err(|e| self.call_failed(&what, &e))?;
        // A timer has a handful of specifications; systemd caps nothing, we do.
        timer.calendar = calendars
            .into_iter()
            .take(MAX_CALENDARS)
            .map(|(_, spec, _)| spec)
            .collect();
        timer.next_elapse_usec = next;
        timer.last_trigger_usec = last;
        Ok(timer)
    }

    /// [`Units::service_result`].
    async fn service_state(&self, unit: &str) -> Result<Option<String>> {
        let state = self.unit_state(unit).await?;
        if !state.is_loaded() {
            return Ok(None);
        }
        let what = format!("cannot read the result of {unit}");
        let proxy = ServiceProxy::builder(self.manager.inner().connection())
            .path(self.unit_path(unit).await?)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.call_failed(&what, &e))?;
        proxy
            .result()
            .await
            .map(Some)
            .map_err(|e| self.call_failed(&what, &e))
    }
}

/// The most `OnCalendar=` specifications of one timer reported.
const MAX_CALENDARS: usize = 16;

/// A finished job's `result` as ours: only `done` is success.
fn job_outcome(job: Job, unit: &str, result: &str) -> Result<()> {
    if result == "done" {
        return Ok(());
    }
    Err(Error::Service(format!(
        "systemd could not {} {unit}: job result '{result}' (see journalctl -u {unit})",
        job.verb()
    )))
}

/// The D-Bus error name of a method error reply, if `e` is one.
fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

/// A zbus error in words: the remote description first, the D-Bus name after.
fn describe(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(text), _) => format!("{text} ({})", name.as_str()),
        zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            format!("no answer within {} s", METHOD_TIMEOUT.as_secs())
        }
        other => other.to_string(),
    }
}

/// Why connecting failed, without repeating the address (the caller names it).
fn connect_detail(e: &zbus::Error) -> String {
    match e {
        zbus::Error::Connection(io, _) | zbus::Error::InputOutput(io) => io.to_string(),
        zbus::Error::Address(a) => format!("not a valid D-Bus address ({a})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(load: &str, active: &str, file: &str) -> UnitState {
        UnitState {
            unit: "abssctl-a.service".into(),
            load_state: load.into(),
            active_state: active.into(),
            sub_state: String::new(),
            unit_file_state: file.into(),
        }
    }

    #[test]
    fn active_means_up_or_coming_up() {
        for s in ["active", "activating", "reloading", "refreshing"] {
            assert!(unit("loaded", s, "enabled").is_active(), "{s}");
        }
        for s in ["inactive", "failed", "deactivating", "maintenance", ""] {
            assert!(!unit("loaded", s, "enabled").is_active(), "{s}");
        }
    }

    #[test]
    fn enabled_means_own_install_symlinks() {
        for s in ["enabled", "enabled-runtime"] {
            assert!(unit("loaded", "active", s).is_enabled(), "{s}");
        }
        for s in [
            "disabled",
            "static",
            "indirect",
            "generated",
            "alias",
            "linked",
            "masked",
            "",
        ] {
            assert!(!unit("loaded", "active", s).is_enabled(), "{s}");
        }
    }

    #[test]
    fn loaded_only_when_loaded() {
        assert!(unit("loaded", "inactive", "disabled").is_loaded());
        for s in ["not-found", "masked", "error", "bad-setting", "stub"] {
            assert!(!unit(s, "inactive", "").is_loaded(), "{s}");
        }
    }

    #[test]
    fn only_done_is_success() {
        assert!(job_outcome(Job::Start, "x.service", "done").is_ok());
        for r in [
            "failed",
            "canceled",
            "timeout",
            "dependency",
            "skipped",
            "invalid",
        ] {
            let e = job_outcome(Job::Stop, "x.service", r).unwrap_err();
            assert!(matches!(e, Error::Service(_)));
            assert_eq!(
                e.to_string(),
                format!(
                    "systemd could not stop x.service: job result '{r}' (see journalctl -u x.service)"
                )
            );
        }
    }
}
