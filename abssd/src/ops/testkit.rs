//! Op-level test fixtures: a [`Host`] in a temp directory (config, one
//! instance with its data, unit file, site and link, registry entry), a fake
//! systemd behind the [`Connector`] seam, and a progress recorder, both
//! writing into one [`Timeline`] so a test sees the order of phases and unit
//! jobs together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abssd_proto::{Actor, CreateParams, EventKind};
use futures_util::future::BoxFuture;

use crate::config::{Config, Overrides, unit_name};
use crate::error::{Error, Result};
use crate::ops::{Ctx, Progress, Sink};
use crate::registry::Registry;
use crate::systemd::{Connector, UnitState, Units};

/// What the fakes saw, in order: `phase <name>`, `info: <text>`,
/// `warning: <text>`, and `systemd <call>` lines.
#[derive(Debug, Clone, Default)]
pub struct Timeline(Arc<Mutex<Vec<String>>>);

impl Timeline {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Forget what was seen (after a test's setup).
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// The phases, in order.
    pub fn phases(&self) -> Vec<String> {
        self.with_prefix("phase ")
    }

    /// The systemd calls that change something (`stop`, `start`, `reload`,
    /// `daemon-reload`), in order, with what the probe saw at each.
    pub fn jobs(&self) -> Vec<String> {
        self.with_prefix("systemd ")
            .into_iter()
            .filter(|c| !c.starts_with("state ") && c != "connect")
            .collect()
    }

    /// Every systemd call, queries included.
    pub fn systemd(&self) -> Vec<String> {
        self.with_prefix("systemd ")
    }

    fn with_prefix(&self, prefix: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_owned))
            .collect()
    }
}

/// A systemd that keeps units' running state in memory and fails the calls
/// it is told to. Cheap to clone; every clone is the same systemd.
#[derive(Clone)]
pub struct FakeUnits {
    timeline: Timeline,
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
    fn new(timeline: Timeline) -> FakeUnits {
        FakeUnits {
            timeline,
            active: Arc::default(),
            failing: Arc::default(),
            probe: Arc::default(),
        }
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
        let mut line = format!("systemd {call}");
        if let Some(seen) = seen {
            line.push_str(&format!(" | {seen}"));
        }
        if failed {
            line.push_str(" (failed)");
        }
        self.timeline.push(line);
        if failed {
            return Err(Error::Service(format!("fake systemd: {call} failed")));
        }
        then(self);
        Ok(())
    }
}

impl Units for FakeUnits {
    fn state<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<UnitState>> {
        self.timeline.push(format!("systemd state {unit}"));
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
        self.timeline.push("systemd connect".into());
        let units: Box<dyn Units> = Box::new(self.clone());
        Box::pin(async move { Ok(units) })
    }
}

/// A [`Progress`] that writes phases and messages into the timeline and keeps
/// every event.
#[derive(Debug)]
pub struct Recorder {
    timeline: Timeline,
    /// Every event, in order.
    pub events: Mutex<Vec<EventKind>>,
}

impl Progress for Recorder {
    fn emit(&self, event: EventKind) {
        match &event {
            EventKind::Phase { name, .. } => self.timeline.push(format!("phase {name}")),
            EventKind::Message { level, text } => self.timeline.push(format!("{level}: {text}")),
            _ => {}
        }
        self.events.lock().unwrap().push(event);
    }
    fn changed(&self, _backup_id: &str) {}
    fn op_id(&self) -> String {
        "0190b6a2-7c4e-7def-8abc-0123456789ab".into()
    }
}

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
    /// What the fakes saw.
    pub timeline: Timeline,
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
        let data = config.instance_root.join(INSTANCE).join("data");
        write(&data.join("budget/db.txt"), "v1");
        write(&data.join("server-files/account.txt"), "account");
        write(
            &config.unit_file(INSTANCE),
            "[Service]\nExecStart=/bin/true\n",
        );
        write(&config.site_file(INSTANCE), "server { listen 8080; }\n");
        std::fs::create_dir_all(&config.sites_enabled).unwrap();
        std::os::unix::fs::symlink(config.site_file(INSTANCE), config.site_link(INSTANCE)).unwrap();
        // As abssd writes it, so a rollback's rewrite is byte for byte the same.
        let registry = Registry::parse(&format!(
            "instances:\n- name: {INSTANCE}\n  version: 25.1.0\n  paths:\n    root: {}\n",
            data.display()
        ))
        .unwrap();
        write(&config.registry_file(), &registry.to_yaml().unwrap());
        let timeline = Timeline::default();
        let units = FakeUnits::new(timeline.clone());
        units.set_active(&unit_name(INSTANCE), true);
        units.set_active(&config.nginx_unit, true);
        let ctx = Ctx::with_systemd(config, Box::new(units.clone()));
        Host {
            _prefix: dir,
            ctx,
            units,
            timeline,
        }
    }

    /// The configuration.
    pub fn cfg(&self) -> &Config {
        &self.ctx.config
    }

    /// The instance's data directory.
    pub fn data(&self) -> PathBuf {
        self.cfg().instance_root.join(INSTANCE).join("data")
    }

    /// A fresh recorder writing into the timeline.
    pub fn progress(&self) -> (Arc<Recorder>, Sink) {
        let recorder = Arc::new(Recorder {
            timeline: self.timeline.clone(),
            events: Mutex::default(),
        });
        let sink: Sink = recorder.clone();
        (recorder, sink)
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
        write(&self.cfg().unit_file(INSTANCE), "changed\n");
        write(&self.cfg().site_file(INSTANCE), "server { listen 9090; }\n");
    }

    /// Everything a live restore may touch: path → content (or link target),
    /// for the data, unit, site and link directories and the registry.
    pub fn live_state(&self) -> BTreeMap<PathBuf, String> {
        let cfg = self.cfg();
        let mut out = BTreeMap::new();
        for dir in [
            &cfg.instance_root.join(INSTANCE),
            &cfg.unit_dir,
            &cfg.sites_available,
            &cfg.sites_enabled,
            &cfg.registry_dir,
        ] {
            walk(dir, &mut out);
        }
        out
    }

    /// The journals left in the state directory.
    pub fn journals(&self) -> Vec<crate::journal::Record> {
        crate::journal::Journal::pending(&self.cfg().state_dir)
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
