//! Operations: plain async functions over a [`Ctx`] that push what happens into a
//! [`Reporter`](crate::progress::Reporter). They never see the socket; the RPC layer
//! supplies an [`crate::optable::Operation`] to report into, tests a
//! [`Recorder`](crate::progress::Recorder).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::locks::Locks;
use crate::systemd::{Bus, Connector};

pub mod claims;
pub mod create;
pub mod health;
pub mod list;
pub mod protect;
pub mod prune;
pub mod pull;
pub mod push;
pub mod reconcile;
pub mod remote;
pub mod restore;
pub mod run;
pub mod schedule;
#[cfg(test)]
pub(crate) mod testkit;
pub mod verify;

/// A backup message (`--message`, `--backup-message`): any text but control
/// characters other than newlines, which would reach operators' terminals.
pub(crate) fn check_message(flag: &str, text: &str) -> crate::error::Result<()> {
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(crate::error::Error::validation(format!(
            "{flag} contains control characters"
        )));
    }
    Ok(())
}

/// What every operation works with.
#[derive(Debug)]
pub struct Ctx {
    /// Resolved configuration and path layout.
    pub config: Config,
    /// The lock table.
    pub locks: Locks,
    /// Archives being written that have no index entry yet.
    pub in_flight: InFlight,
    /// Backups whose archives running operations read, and those being
    /// removed: a prune never removes the one a restore or verify reads.
    pub in_use: claims::InUse,
    /// Instances a backup job works on now.
    pub jobs: claims::Jobs,
    /// The remote objects a push uploads now: a second push of one backup
    /// to one remote passes it by instead of racing it.
    pub pushing: claims::Pushing,
    /// How operations reach systemd: D-Bus in the daemon, a fake in tests.
    pub systemd: Box<dyn Connector>,
    /// The parsed backup index, read again only when the file changed: what
    /// read-only views (list, show, health, a prune's plan, verify's
    /// selection) read. Writers read the file afresh under the global lock.
    pub index: Arc<crate::index::Cache>,
}

impl Ctx {
    /// A context over a configuration, reaching systemd on its D-Bus.
    pub fn new(config: Config) -> Arc<Ctx> {
        let bus = Bus {
            address: config.services.bus_address.clone(),
        };
        Ctx::with_systemd(config, Box::new(bus))
    }

    /// A context that reaches systemd through `systemd`.
    pub fn with_systemd(config: Config, systemd: Box<dyn Connector>) -> Arc<Ctx> {
        let locks = Locks::new(&config.layout.runtime_dir, config.daemon.lock_timeout);
        Arc::new(Ctx {
            config,
            locks,
            in_flight: InFlight::default(),
            in_use: claims::InUse::default(),
            jobs: claims::Jobs::default(),
            pushing: claims::Pushing::default(),
            systemd,
            index: Arc::default(),
        })
    }
}

/// Archive paths of the creates running in this daemon, from before their
/// `.partial` file exists until after their index entry is written (or the
/// archive removed). Reconcile reads it together with the index, under the
/// global lock, so an archive on its way into the index is never an orphan.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashSet<PathBuf>>);

impl InFlight {
    /// Claim `archive` until the returned guard is dropped.
    pub fn claim(&self, archive: &Path) -> InFlightClaim<'_> {
        self.set().insert(archive.to_owned());
        InFlightClaim {
            owner: self,
            archive: archive.to_owned(),
        }
    }

    /// The claimed paths now.
    pub fn snapshot(&self) -> HashSet<PathBuf> {
        self.set().clone()
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A claimed archive path; released on drop.
#[derive(Debug)]
pub struct InFlightClaim<'a> {
    owner: &'a InFlight,
    archive: PathBuf,
}

impl Drop for InFlightClaim<'_> {
    fn drop(&mut self) {
        self.owner.set().remove(&self.archive);
    }
}
