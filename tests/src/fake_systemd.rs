//! A fake systemd (`org.freedesktop.systemd1`) on a private bus, so the production
//! [`abssd::systemd::Systemd`] runs unchanged in tests without PID 1.
//!
//! It implements what abssd uses: `LoadUnit`, `GetUnit`, `StartUnit`, `StopUnit`,
//! `RestartUnit`, `ReloadUnit`, `Reload` (daemon-reload), `Subscribe`,
//! `GetUnitFileState`, the `JobRemoved` signal, and unit objects
//! (`/org/freedesktop/systemd1/unit/<escaped name>`) with `LoadState`,
//! `ActiveState`, `SubState` and `UnitFileState` (and for `.timer` units the
//! `Timer` interface's `NextElapseUSecRealtime` and `LastTriggerUSec`); a unit's object exists once
//! `LoadUnit`, `GetUnit` or a job has named it. Jobs end ~2 ms after their method
//! returns, with `done` or an injected result; a unit's state changes just before
//! its `JobRemoved`.
//!
//! A unit is loaded when it was set (or touched by a job) or its file exists in the
//! optional unit directory, checked at each call. `nginx.service` starts loaded,
//! active and enabled.
//!
//! Knobs: in-process through [`FakeSystemd`], or over D-Bus through
//! `org.abssd.FakeSystemd` at `/org/abssd/FakeSystemd` on the same name (see
//! [`control`] and the `fake-systemd` binary's `--help`).

pub mod control;
pub mod manager;
pub mod state;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use abssd::systemd::UnitState;

use crate::bus::Bus;
pub use control::{CONTROL_INTERFACE, CONTROL_PATH};
pub use manager::MANAGER_PATH;
pub use state::{HANG, Verb, unit_path};

/// The well-known name the fake owns.
pub const SYSTEMD_NAME: &str = "org.freedesktop.systemd1";

/// A private bus with the fake systemd on it, served from a dedicated thread and
/// runtime (independent of the test's). Dropping it stops both.
#[derive(Debug)]
pub struct FakeSystemd {
    /// The bus address to hand to `Systemd::connect` / `--bus`.
    address: String,
    /// The state the D-Bus side serves; the knobs below change it directly.
    model: Arc<state::Model>,
    /// Tells the serving thread to close the connection and kill the bus.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeSystemd {
    /// Start a bus and the fake on it; panics if that fails (e.g. no `dbus-daemon`).
    pub fn start(unit_dir: Option<&Path>) -> FakeSystemd {
        FakeSystemd::try_start(unit_dir).unwrap_or_else(|e| panic!("fake systemd: {e}"))
    }

    /// Start a bus and the fake on it; returns once the fake owns its name.
    pub fn try_start(unit_dir: Option<&Path>) -> io::Result<FakeSystemd> {
        let model = Arc::new(state::Model::new(unit_dir.map(Path::to_owned)));
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = model.clone();
        let thread = std::thread::Builder::new()
            .name("fake-systemd".into())
            .spawn(move || {
                // Started on this thread so that it dies with it (parent-death signal).
                let bus = match Bus::start() {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async {
                    match serve(bus.address(), served).await {
                        Ok(conn) => {
                            let _ = ready_tx.send(Ok(bus.address().to_owned()));
                            let _ = stop_rx.await;
                            drop(conn);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(io::Error::other(format!(
                                "cannot serve {SYSTEMD_NAME} on the private bus: {e}"
                            ))));
                        }
                    }
                });
                drop(rt);
                drop(bus);
            })?;
        let address = match ready_rx.recv() {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other(
                    "the fake systemd thread died while starting",
                ));
            }
        };
        Ok(FakeSystemd {
            address,
            model,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bus address (`unix:path=...,guid=...`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Load `name` (file or not) as active or inactive, enabled or disabled.
    pub fn set_unit(&self, name: &str, active: bool, enabled: bool) {
        self.model.set_unit(name, active, enabled);
    }

    /// Give the timer unit `name` a schedule: its `NextElapseUSecRealtime`
    /// and `LastTriggerUSec` (µs since the epoch; 0: none). Set the unit
    /// itself (loaded, enabled) with [`FakeSystemd::set_unit`].
    pub fn set_timer(&self, name: &str, next_usec: u64, last_usec: u64) {
        self.model.set_timer(name, next_usec, last_usec);
    }

    /// Make every `verb` job on `name` end with `result` (`Some("failed")`, or
    /// [`HANG`] for a job that never ends) until cleared with `None`.
    pub fn fail(&self, name: &str, verb: Verb, result: Option<&str>) {
        self.model.fail(name, verb, result);
    }

    /// Run `hook` each time a `verb` job on `name` succeeds, just before
    /// systemd would announce it (so before abssd's wait for the job returns).
    /// It runs on the fake's thread: keep it short.
    pub fn on_job(&self, name: &str, verb: Verb, hook: impl Fn() + Send + Sync + 'static) {
        self.model
            .on_job(name, verb, Some(state::Hook(Arc::new(hook))));
    }

    /// The unit as systemd would report it; `None` when it is not loaded.
    pub fn state(&self, name: &str) -> Option<UnitState> {
        let s = self.model.state(name);
        s.is_loaded().then_some(s)
    }

    /// Mutating calls received, in order: `StartUnit abssctl-a.service`,
    /// `StopUnit ...`, `RestartUnit ...`, `ReloadUnit nginx.service`, `Reload`.
    pub fn calls(&self) -> Vec<String> {
        self.model.calls()
    }

    /// Empty the call log.
    pub fn clear_calls(&self) {
        self.model.clear_calls();
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Own the systemd name on `address` and serve the manager and the control object.
async fn serve(address: &str, model: Arc<state::Model>) -> zbus::Result<zbus::Connection> {
    zbus::connection::Builder::address(address)
        .serve_at(
            MANAGER_PATH,
            manager::Manager {
                model: model.clone(),
            },
        )
        .serve_at(CONTROL_PATH, control::Control { model })
        .name(SYSTEMD_NAME)
        .build()
        .await
}
