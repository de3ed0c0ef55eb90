//! `org.freedesktop.systemd1.Manager` and `...Unit`, the subset abssd uses, served
//! over zbus with systemd's names, paths, error names and signal.

use std::sync::Arc;
use std::time::Duration;

use zbus::message::Header;
use zbus::names::ErrorName;
use zbus::object_server::{ObjectServer, SignalEmitter};
use zbus::{Connection, DBusError, Message, OwnedObjectPath};

use super::state::{HANG, Job, Model, Verb, unit_path};

/// The manager's object path.
pub const MANAGER_PATH: &str = "/org/freedesktop/systemd1";

/// How long after its method returns a job ends: long enough that the reply is
/// out first, as with systemd, short enough for fast tests.
const JOB_DELAY: Duration = Duration::from_millis(2);

/// A D-Bus error with systemd's (or D-Bus's) name.
#[derive(Debug)]
pub struct Fault {
    name: &'static str,
    message: String,
}

impl Fault {
    fn no_such_unit(name: &str, how: &str) -> Fault {
        Fault {
            name: "org.freedesktop.systemd1.NoSuchUnit",
            message: format!("Unit {name} {how}."),
        }
    }

    fn internal(e: zbus::Error) -> Fault {
        Fault {
            name: "org.freedesktop.DBus.Error.Failed",
            message: e.to_string(),
        }
    }
}

impl DBusError for Fault {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        Message::error(call, self.name).build(&(self.message.as_str(),))
    }

    fn name(&self) -> ErrorName<'_> {
        ErrorName::from_static_str_unchecked(self.name)
    }

    fn description(&self) -> Option<&str> {
        Some(&self.message)
    }
}

/// The manager object.
#[derive(Debug)]
pub struct Manager {
    /// Shared with the control interface and the Rust handle.
    pub model: Arc<Model>,
}

impl Manager {
    /// Make sure `name`'s unit object exists and return its path.
    async fn unit_object(
        &self,
        server: &ObjectServer,
        name: &str,
    ) -> Result<OwnedObjectPath, Fault> {
        let path = unit_path(name);
        let unit = UnitObject {
            name: name.to_owned(),
            model: self.model.clone(),
        };
        // Already there (`Some` handed back) is fine.
        server
            .at(path.as_str(), unit)
            .await
            .map_err(Fault::internal)?;
        // systemd serves a type's own interface beside the unit's.
        let model = self.model.clone();
        let name = name.to_owned();
        if name.ends_with(".timer") {
            server
                .at(path.as_str(), TimerObject { name, model })
                .await
                .map_err(Fault::internal)?;
        } else if name.ends_with(".service") {
            server
                .at(path.as_str(), ServiceObject { name, model })
                .await
                .map_err(Fault::internal)?;
        }
        OwnedObjectPath::try_from(path).map_err(Fault::internal)
    }

    /// Queue a job on a loaded unit; its `JobRemoved` follows a moment later.
    async fn job(
        &self,
        conn: &Connection,
        name: &str,
        verb: Verb,
        method: &str,
    ) -> Result<OwnedObjectPath, Fault> {
        self.model.record(format!("{method} {name}"));
        if !self.model.is_loaded(name) {
            let how = if verb == Verb::Start {
                "not found"
            } else {
                "not loaded"
            };
            return Err(Fault::no_such_unit(name, how));
        }
        self.unit_object(conn.object_server(), name).await?;
        let job = self.model.queue(name, verb);
        let path = OwnedObjectPath::try_from(job.path.clone()).map_err(Fault::internal)?;
        tokio::spawn(finish_later(conn.clone(), self.model.clone(), job));
        Ok(path)
    }
}

/// Apply the job and announce it, unless it is meant to hang.
async fn finish_later(conn: Connection, model: Arc<Model>, job: Job) {
    tokio::time::sleep(JOB_DELAY).await;
    if job.result == HANG {
        return;
    }
    model.finish(&job);
    let emitted = async {
        let emitter = SignalEmitter::new(&conn, MANAGER_PATH)?;
        let path = zbus::ObjectPath::try_from(job.path.as_str())?;
        Manager::job_removed(&emitter, job.id, path, &job.unit, &job.result).await
    };
    if let Err(e) = emitted.await {
        eprintln!("fake systemd: cannot emit JobRemoved for {}: {e}", job.path);
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    /// The unit's object; a unit without state or file is `not-found`, not an error.
    async fn load_unit(
        &self,
        name: &str,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath, Fault> {
        self.unit_object(server, name).await
    }

    /// The unit's object, or `NoSuchUnit` if it is not loaded.
    async fn get_unit(
        &self,
        name: &str,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath, Fault> {
        if !self.model.is_loaded(name) {
            return Err(Fault::no_such_unit(name, "not loaded"));
        }
        self.unit_object(server, name).await
    }

    /// Queue a start job.
    async fn start_unit(
        &self,
        name: &str,
        _mode: &str,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, Fault> {
        self.job(conn, name, Verb::Start, "StartUnit").await
    }

    /// Queue a stop job.
    async fn stop_unit(
        &self,
        name: &str,
        _mode: &str,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, Fault> {
        self.job(conn, name, Verb::Stop, "StopUnit").await
    }

    /// Queue a restart job (fails like a start).
    async fn restart_unit(
        &self,
        name: &str,
        _mode: &str,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, Fault> {
        self.job(conn, name, Verb::Start, "RestartUnit").await
    }

    /// Queue a reload job; `invalid` if the unit is not active.
    async fn reload_unit(
        &self,
        name: &str,
        _mode: &str,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, Fault> {
        self.job(conn, name, Verb::Reload, "ReloadUnit").await
    }

    /// daemon-reload: only logged (unit files are looked at on every call anyway).
    async fn reload(&self) {
        self.model.record("Reload".into());
    }

    /// Accepted and ignored: the fake emits its signals to everyone.
    async fn subscribe(&self) {}

    /// `enabled` / `disabled`; `FileNotFound` for a unit systemd has no file for.
    async fn get_unit_file_state(&self, name: &str) -> Result<String, Fault> {
        if !self.model.is_loaded(name) {
            return Err(Fault {
                name: "org.freedesktop.DBus.Error.FileNotFound",
                message: "No such file or directory".into(),
            });
        }
        Ok(self.model.state(name).unit_file_state)
    }

    /// `systemctl enable`: (carries install info, changes).
    async fn enable_unit_files(
        &self,
        files: Vec<String>,
        _runtime: bool,
        _force: bool,
    ) -> Result<(bool, Vec<(String, String, String)>), Fault> {
        self.model
            .record(format!("EnableUnitFiles {}", files.join(" ")));
        let mut changes = Vec::new();
        for f in &files {
            if !self.model.is_loaded(f) {
                return Err(file_not_found(f));
            }
            self.model.set_enabled(f, true);
            changes.push(("symlink".into(), f.clone(), String::new()));
        }
        Ok((true, changes))
    }

    /// `systemctl disable`: the changes.
    async fn disable_unit_files(
        &self,
        files: Vec<String>,
        _runtime: bool,
    ) -> Result<Vec<(String, String, String)>, Fault> {
        self.model
            .record(format!("DisableUnitFiles {}", files.join(" ")));
        let mut changes = Vec::new();
        for f in &files {
            if !self.model.is_loaded(f) {
                return Err(file_not_found(f));
            }
            self.model.set_enabled(f, false);
            changes.push(("unlink".into(), f.clone(), String::new()));
        }
        Ok(changes)
    }

    /// A job finished.
    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: zbus::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// systemd's answer to enabling a unit it has no file for.
fn file_not_found(name: &str) -> Fault {
    Fault {
        name: "org.freedesktop.DBus.Error.FileNotFound",
        message: format!("Unit file {name} does not exist."),
    }
}

/// A timer unit's `org.freedesktop.systemd1.Timer` interface.
#[derive(Debug)]
struct TimerObject {
    name: String,
    model: Arc<Model>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Timer")]
impl TimerObject {
    /// `OnCalendar=` from the unit file and its drop-ins, as written.
    #[zbus(property(emits_changed_signal = "false"))]
    fn timers_calendar(&self) -> Vec<(String, String, u64)> {
        let next = self.model.timer(&self.name).0;
        self.model
            .calendars(&self.name)
            .into_iter()
            .map(|spec| ("OnCalendar".to_owned(), spec, next))
            .collect()
    }

    /// Set with `FakeSystemd::set_timer`; 0 by default.
    #[zbus(
        property(emits_changed_signal = "false"),
        name = "NextElapseUSecRealtime"
    )]
    fn next_elapse_usec_realtime(&self) -> u64 {
        self.model.timer(&self.name).0
    }

    /// Set with `FakeSystemd::set_timer`; 0 (never) by default.
    #[zbus(property(emits_changed_signal = "false"), name = "LastTriggerUSec")]
    fn last_trigger_usec(&self) -> u64 {
        self.model.timer(&self.name).1
    }
}

/// A service unit's `org.freedesktop.systemd1.Service` interface.
#[derive(Debug)]
struct ServiceObject {
    name: String,
    model: Arc<Model>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Service")]
impl ServiceObject {
    /// Set with `FakeSystemd::set_result`; `success` by default.
    #[zbus(property(emits_changed_signal = "false"))]
    fn result(&self) -> String {
        self.model.result(&self.name)
    }
}

/// One unit's object; every property is read from the model when asked.
#[derive(Debug)]
struct UnitObject {
    name: String,
    model: Arc<Model>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl UnitObject {
    /// The unit name.
    #[zbus(property(emits_changed_signal = "false"))]
    fn id(&self) -> String {
        self.name.clone()
    }

    /// `loaded` or `not-found`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn load_state(&self) -> String {
        self.model.state(&self.name).load_state
    }

    /// `active`, `inactive` or `failed`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn active_state(&self) -> String {
        self.model.state(&self.name).active_state
    }

    /// `running`, `dead` or `failed`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn sub_state(&self) -> String {
        self.model.state(&self.name).sub_state
    }

    /// `enabled`, `disabled`, or empty when not found.
    #[zbus(property(emits_changed_signal = "false"))]
    fn unit_file_state(&self) -> String {
        self.model.state(&self.name).unit_file_state
    }
}
