//! `org.abssd.FakeSystemd` at `/org/abssd/FakeSystemd`: the fake's knobs over D-Bus,
//! on the same connection (and name) as the fake manager, for a test driving abssd
//! as a child process or a shell script using `busctl` / `dbus-send`.

use std::sync::Arc;

use super::state::{Model, Verb};

/// The control object's path.
pub const CONTROL_PATH: &str = "/org/abssd/FakeSystemd";
/// The control interface's name.
pub const CONTROL_INTERFACE: &str = "org.abssd.FakeSystemd";

/// The control object.
#[derive(Debug)]
pub struct Control {
    /// Shared with the manager and the Rust handle.
    pub model: Arc<Model>,
}

#[zbus::interface(name = "org.abssd.FakeSystemd")]
impl Control {
    /// Load `name` (whether or not a file exists) with this state.
    fn set_unit(&self, name: &str, active: bool, enabled: bool) {
        self.model.set_unit(name, active, enabled);
    }

    /// Give the timer `name` its next and last run (µs since the epoch; 0: none).
    fn set_timer(&self, name: &str, next_usec: u64, last_usec: u64) {
        self.model.set_timer(name, next_usec, last_usec);
    }

    /// Make every `verb` (`start`, `stop`, `reload`) job on `name` end with
    /// `result` (e.g. `failed`; `hang` = never ends); an empty result clears.
    fn fail(&self, name: &str, verb: &str, result: &str) -> zbus::fdo::Result<()> {
        let verb: Verb = verb.parse().map_err(zbus::fdo::Error::InvalidArgs)?;
        self.model.fail(name, verb, Some(result));
        Ok(())
    }

    /// `(LoadState, ActiveState, SubState, UnitFileState)` of `name`.
    fn state(&self, name: &str) -> (String, String, String, String) {
        let s = self.model.state(name);
        (s.load_state, s.active_state, s.sub_state, s.unit_file_state)
    }

    /// A service's `Result`.
    fn set_result(&self, name: &str, result: &str) {
        self.model.set_result(name, result);
    }

    /// The mutating calls so far: `StartUnit x.service`, `Reload`, ...
    fn calls(&self) -> Vec<String> {
        self.model.calls()
    }

    /// Empty the call log.
    fn clear_calls(&self) {
        self.model.clear_calls();
    }
}
