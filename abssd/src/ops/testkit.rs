//! Op-level test fixtures: a [`Host`] in a temp directory (config, one
//! instance with its data, unit file, site and link, registry entry) and a
//! fake systemd behind the [`Connector`] seam. Operations report into a
//! [`Recorder`]; the fake stamps each call with how many events the recorder
//! held then, so [`timeline`] can show phases and unit jobs in one order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abssd_proto::{Actor, CreateParams, EventKind, Level};
use futures_util::future::BoxFuture;

use crate::config::{Config, Overrides, unit_name};
use crate::error::{Error, Result};
use crate::ops::Ctx;
use crate::progress::{Recorder, Reporter};
use crate::registry::Registry;
use crate::systemd::{Connector, UnitState, Units};

/// A systemd that keeps units' running state in memory and fails the calls
/// it is told to. Cheap to clone; every clone is the same systemd.
#[derive(Clone)]
pub struct FakeUnits {
    /// Every call since the last [`FakeUnits::watch`]: the number of events
    /// the watched recorder held when it came, and the call.
    calls: Arc<Mutex<Vec<(usize, String)>>>,
    /// The recorder of the operation under test.
    watched: Arc<Mutex<Option<Arc<Recorder>>>>,
    active: Arc<Mutex<BTreeMap<String, bool>>>,
    /// Calls (`start abssctl-a.service`) that fail, each with how many times.
    failing: Arc<Mutex<BTreeMap<String, usize>>>,
    /// What the world looks like at each job, appended to its line.
    probe: Arc<Mutex<Option<Probe>>>,
}

type Probe = Box<dyn Fn() -> String + Send + Sync>;

impl std::fmt::Debug for FakeUnits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUnits")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl FakeUnits {
    fn new() -> FakeUnits {
        FakeUnits {
            calls: Arc::default(),
            watched: Arc::default(),
            active: Arc::default(),
            failing: Arc::default(),
            probe: Arc::default(),
        }
    }

    /// Forget the calls so far; stamp the next ones against `recorder`.
    pub fn watch(&self, recorder: &Arc<Recorder>) {
        self.calls.lock().unwrap().clear();
        *self.watched.lock().unwrap() = Some(Arc::clone(recorder));
    }

    /// Every call since the last [`FakeUnits::watch`], queries included:
    /// `connect`, `state <unit>`, `stop <unit> | <probe>`...
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// The calls that change something (`stop`, `start`, `reload`,
    /// `daemon-reload`), in order, with what the probe saw at each.
    pub fn jobs(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !c.starts_with("state ") && c != "connect")
            .collect()
    }

    fn record(&self, call: String) {
        let after = match &*self.watched.lock().unwrap() {
            Some(recorder) => recorder.events().len(),
            None => 0,
        };
        self.calls.lock().unwrap().push((after, call));
    }

    /// Set whether `unit` runs.
    pub fn set_active(&self, unit: &str, active: bool) {
        self.active.lock().unwrap().insert(unit.to_owned(), active);
    }

    /// Whether `unit` runs now.
    pub fn is_active(&self, unit: &str) -> bool {
        self.active.lock().unwrap().get(unit) == Some(&true)
    }

    /// Make the next `times` calls `call` (`start abssctl-a.service`) fail.
    pub fn fail(&self, call: &str, times: usize) {
        self.failing.lock().unwrap().insert(call.to_owned(), times);
    }

    /// Append what `probe` returns to the line of every job.
    pub fn probe(&self, probe: impl Fn() -> String + Send + Sync + 'static) {
        *self.probe.lock().unwrap() = Some(Box::new(probe));
    }

    /// Record a job and apply it, or fail it as told.
    fn job(&self, call: String, then: impl FnOnce(&Self)) -> Result<()> {
        let seen = self.probe.lock().unwrap().as_ref().map(|p| p());
        let failed = {
            let mut failing = self.failing.lock().unwrap();
            match failing.get_mut(&call) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        let mut line = call.clone();
        if let Some(seen) = seen {
            line.push_str(&format!(" | {seen}"));
        }
        if failed {
            line.push_str(" (failed)");
        }
        self.record(line);
        if failed {
            return Err(Error::Service(format!("fake systemd: {call} failed")));
        }
        then(self);
        Ok(())
    }
}

impl Units for FakeUnits {
    fn state<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<UnitState>> {
        self.record(format!("state {unit}"));
        let active = self.is_active(unit);
        Box::pin(async move {
            Ok(UnitState {
                unit: unit.to_owned(),
                load_state: "loaded".into(),
                active_state: if active { "active" } else { "inactive" }.into(),
                sub_state: String::new(),
                unit_file_state: "enabled".into(),
            })
        })
    }

    fn start<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        let r = self.job(format!("start {unit}"), |f| f.set_active(unit, true));
        Box::pin(async move { r })
    }

    fn stop<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        let r = self.job(format!("stop {unit}"), |f| f.set_active(unit, false));
        Box::pin(async move { r })
    }

    fn reload<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<()>> {
        let r = self.job(format!("reload {unit}"), |_| {});
        Box::pin(async move { r })
    }

    fn daemon_reload(&self) -> BoxFuture<'_, Result<()>> {
        let r = self.job("daemon-reload".into(), |_| {});
        Box::pin(async move { r })
    }
}

impl Connector for FakeUnits {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Units>>> {
        self.record("connect".into());
        let units: Box<dyn Units> = Box::new(self.clone());
        Box::pin(async move { Ok(units) })
    }
}

/// What `recorder` and `units` saw, in one order: `phase <name>`,
/// `info: <text>`, `warning: <text>` and `systemd <call>` lines (a call comes
/// after the events recorded before it).
pub fn timeline(recorder: &Recorder, units: &FakeUnits) -> Vec<String> {
    let events = recorder.events();
    let calls = units.calls.lock().unwrap().clone();
    let mut calls = calls.into_iter().peekable();
    let mut lines = Vec::new();
    for i in 0..=events.len() {
        while let Some((_, call)) = calls.next_if(|(after, _)| *after <= i) {
            lines.push(format!("systemd {call}"));
        }
        match events.get(i) {
            Some(EventKind::Phase { name, .. }) => lines.push(format!("phase {name}")),
            Some(EventKind::Message { level, text }) => lines.push(match level {
                Level::Info => format!("info: {text}"),
                Level::Warning => format!("warning: {text}"),
            }),
            _ => {}
        }
    }
    lines
}

/// The id of the operations a [`Host`] runs.
pub const OP_ID: &str = "0190b6a2-7c4e-7def-8abc-0123456789ab";

/// The instance every [`Host`] has.
pub const INSTANCE: &str = "a";

/// A host in a temp directory with instance [`INSTANCE`], its unit running
/// and nginx running; `nginx -t` is `true`.
#[derive(Debug)]
pub struct Host {
    /// The prefix, removed with the host.
    _prefix: tempfile::TempDir,
    /// The context operations get.
    pub ctx: Arc<Ctx>,
    /// systemd, as operations see it.
    pub units: FakeUnits,
}

impl Host {
    /// A fresh host.
    pub fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path();
        let config_file = prefix.join("etc/abssctl/config.yml");
        write(&config_file, "nginx:\n  test_command: [\"true\"]\n");
        let config = Config::load_with_env(
            &Overrides {
                prefix: Some(prefix.into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .unwrap();
        let data = config.layout.instance_root.join(INSTANCE).join("data");
        write(&data.join("budget/db.txt"), "v1");
        write(&data.join("server-files/account.txt"), "account");
        write(
            &config.layout.unit_file(INSTANCE),
            "[Service]\nExecStart=/bin/true\n",
        );
        write(
            &config.layout.site_file(INSTANCE),
            "server { listen 8080; }\n",
        );
        std::fs::create_dir_all(&config.layout.sites_enabled).unwrap();
        std::os::unix::fs::symlink(
            config.layout.site_file(INSTANCE),
            config.layout.site_link(INSTANCE),
        )
        .unwrap();
        // As abssd writes it, so a rollback's rewrite is byte for byte the same.
        let registry = Registry::parse(&format!(
            "instances:\n- name: {INSTANCE}\n  version: 25.1.0\n  paths:\n    root: {}\n",
            data.display()
        ))
        .unwrap();
        write(&config.layout.registry_file(), &registry.to_yaml().unwrap());
        let units = FakeUnits::new();
        units.set_active(&unit_name(INSTANCE), true);
        units.set_active(&config.services.nginx_unit, true);
        let ctx = Ctx::with_systemd(config, Box::new(units.clone()));
        Host {
            _prefix: dir,
            ctx,
            units,
        }
    }

    /// The configuration.
    pub fn cfg(&self) -> &Config {
        &self.ctx.config
    }

    /// The instance's data directory.
    pub fn data(&self) -> PathBuf {
        self.cfg().layout.instance_root.join(INSTANCE).join("data")
    }

    /// A fresh recorder for the next operation, and its handle; the fake
    /// systemd forgets its calls and stamps the next ones against it.
    pub fn progress(&self) -> (Arc<Recorder>, Reporter) {
        let (recorder, reporter) = Recorder::start(OP_ID);
        self.units.watch(&recorder);
        (recorder, reporter)
    }

    /// Who asks.
    pub fn actor(&self) -> Actor {
        Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        }
    }

    /// Back the instance up as it is now; its id.
    pub async fn backup(&self) -> String {
        let params = CreateParams {
            instance: INSTANCE.into(),
            ..CreateParams::default()
        };
        let (_, sink) = self.progress();
        let (_, result) = crate::ops::create::run(&self.ctx, &params, &self.actor(), &sink)
            .await
            .unwrap();
        result.unwrap().id
    }

    /// Change what a restore brings back: the data, the unit file, the site.
    pub fn vandalize(&self) {
        write(&self.data().join("budget/db.txt"), "v2");
        write(&self.cfg().layout.unit_file(INSTANCE), "changed\n");
        write(
            &self.cfg().layout.site_file(INSTANCE),
            "server { listen 9090; }\n",
        );
    }

    /// Everything a live restore may touch: path → content (or link target),
    /// for the data, unit, site and link directories and the registry.
    pub fn live_state(&self) -> BTreeMap<PathBuf, String> {
        let cfg = self.cfg();
        let mut out = BTreeMap::new();
        for dir in [
            &cfg.layout.instance_root.join(INSTANCE),
            &cfg.layout.unit_dir,
            &cfg.layout.sites_available,
            &cfg.layout.sites_enabled,
            &cfg.layout.registry_dir,
        ] {
            walk(dir, &mut out);
        }
        out
    }

    /// The journals left in the state directory.
    pub fn journals(&self) -> Vec<crate::journal::Record> {
        crate::journal::Journal::pending(&self.cfg().layout.state_dir)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect()
    }
}

/// Write `text` at `path`, making its directory.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.insert(path, format!("-> {}", target.display()));
        } else if meta.is_dir() {
            out.insert(path.clone(), "dir".into());
            walk(&path, out);
        } else {
            out.insert(path.clone(), std::fs::read_to_string(&path).unwrap());
        }
    }
}
