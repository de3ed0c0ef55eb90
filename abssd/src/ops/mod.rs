//! Operations: plain async functions over a [`Ctx`] that push what happens into a
//! [`Progress`] sink. They never see the socket; the RPC layer supplies an
//! [`crate::optable::Operation`] as the sink, tests supply a recorder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abssd_proto::EventKind;

use crate::config::Config;
use crate::locks::{LockName, LockObserver, Locks};

pub mod create;
pub mod list;
pub mod reconcile;
pub mod restore;
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
}

impl Ctx {
    /// A context over a configuration.
    pub fn new(config: Config) -> Arc<Ctx> {
        let locks = Locks::new(&config.runtime_dir, config.lock_timeout);
        Arc::new(Ctx {
            config,
            locks,
            in_flight: InFlight::default(),
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

/// Where an operation reports what it does.
pub trait Progress: Send + Sync {
    /// Record an event.
    fn emit(&self, event: EventKind);
    /// Record that a backup entry was created or changed (operations log).
    fn changed(&self, backup_id: &str);
    /// The operation's id (journals and restore history name it).
    fn op_id(&self) -> String;
}

/// How operations hold their sink: shared, so blocking sections can report too.
pub type Sink = Arc<dyn Progress>;

/// Lock waits become events.
#[allow(missing_debug_implementations)]
pub struct LockEvents<'a>(pub &'a dyn Progress);

impl LockObserver for LockEvents<'_> {
    fn waiting(&self, lock: &LockName) {
        self.0.emit(EventKind::LockWait {
            lock: lock.to_string(),
        });
    }
    fn acquired(&self, lock: &LockName, waited: Duration) {
        self.0.emit(EventKind::LockAcquired {
            lock: lock.to_string(),
            waited_ms: waited.as_millis() as u64,
        });
    }
}

/// Emits throttled byte-progress events for one phase (at most ~10 per second,
/// plus the final one), so a 1 GiB archive does not produce a million events.
#[allow(missing_debug_implementations)]
pub struct ByteProgress<'a> {
    sink: &'a dyn Progress,
    phase: String,
    total: u64,
    done: u64,
    last: Instant,
}

impl<'a> ByteProgress<'a> {
    /// Start a phase: emits `phase` with its total.
    pub fn start(sink: &'a dyn Progress, phase: impl Into<String>, total: u64) -> Self {
        let phase = phase.into();
        sink.emit(EventKind::Phase {
            name: phase.clone(),
            total_bytes: Some(total),
        });
        ByteProgress {
            sink,
            phase,
            total,
            done: 0,
            last: Instant::now(),
        }
    }

    /// Account for `n` more bytes.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.last.elapsed() >= Duration::from_millis(100) {
            self.flush();
        }
    }

    /// Emit the current figure now.
    pub fn flush(&mut self) {
        self.last = Instant::now();
        self.sink.emit(EventKind::Progress {
            phase: self.phase.clone(),
            done: self.done,
            total: self.total.max(self.done),
        });
    }

    /// Bytes so far.
    pub fn done(&self) -> u64 {
        self.done
    }
}

impl Drop for ByteProgress<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
