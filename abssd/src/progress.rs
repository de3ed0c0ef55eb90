//! Where operations report what they do (ripgrep's `Sink`: the code that works
//! pushes events, and never knows who shows them).
//!
//! * [`Progress`] — the trait: three required methods, and `phase`, `info`,
//!   `warn` on top of them. The RPC layer's [`crate::optable::Operation`]
//!   implements it; tests use a [`Recorder`].
//! * [`Reporter`] — the cheap cloneable handle operations hold and pass on
//!   (also into blocking threads); it observes lock waits too.
//! * [`ByteProgress`] — throttled byte counts for one phase; lower layers
//!   (archive, extract, deep) get a plain `FnMut(u64)` that feeds it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abssd_proto::{EventKind, Level, Phase};

use crate::locks::{LockName, LockObserver};

/// Where an operation reports what it does.
pub trait Progress: Send + Sync {
    /// Record an event.
    fn emit(&self, event: EventKind);
    /// Record that a backup entry was created or changed (operations log).
    fn changed(&self, backup_id: &str);
    /// The operation's id (journals and restore history name it).
    fn op_id(&self) -> String;

    /// A phase without a byte count began.
    fn phase(&self, name: Phase) {
        self.emit(EventKind::Phase {
            name,
            total_bytes: None,
        });
    }
    /// A note for the operator.
    fn info(&self, text: String) {
        self.message(Level::Info, text);
    }
    /// A warning for the operator.
    fn warn(&self, text: String) {
        self.message(Level::Warning, text);
    }
    /// A message at `level`.
    fn message(&self, level: Level, text: String) {
        self.emit(EventKind::Message { level, text });
    }
}

/// How operations hold their [`Progress`]: shared, so that blocking sections
/// and nested operations (restore's pre-restore backup) report into the same
/// operation. Cloning it is cloning an `Arc`.
#[derive(Clone)]
pub struct Reporter(Arc<dyn Progress>);

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reporter").field(&self.0.op_id()).finish()
    }
}

impl Reporter {
    /// A handle on `progress`.
    pub fn new(progress: impl Progress + 'static) -> Reporter {
        Reporter(Arc::new(progress))
    }

    /// Start a phase that processes `total` bytes; see [`ByteProgress`].
    pub fn bytes(&self, phase: Phase, total: u64) -> ByteProgress {
        ByteProgress::start(self.clone(), phase, total, Instant::now())
    }
}

impl<P: Progress + 'static> From<Arc<P>> for Reporter {
    fn from(progress: Arc<P>) -> Reporter {
        Reporter(progress)
    }
}

/// Every method goes to the operation's own, so that one overriding a
/// provided method is obeyed through the handle too.
impl Progress for Reporter {
    fn emit(&self, event: EventKind) {
        self.0.emit(event);
    }
    fn changed(&self, backup_id: &str) {
        self.0.changed(backup_id);
    }
    fn op_id(&self) -> String {
        self.0.op_id()
    }
    fn phase(&self, name: Phase) {
        self.0.phase(name);
    }
    fn info(&self, text: String) {
        self.0.info(text);
    }
    fn warn(&self, text: String) {
        self.0.warn(text);
    }
    fn message(&self, level: Level, text: String) {
        self.0.message(level, text);
    }
}

/// Lock waits become events.
impl LockObserver for Reporter {
    fn waiting(&self, lock: &LockName) {
        self.emit(EventKind::LockWait {
            lock: lock.to_string(),
        });
    }
    fn acquired(&self, lock: &LockName, waited: Duration) {
        self.emit(EventKind::LockAcquired {
            lock: lock.to_string(),
            waited_ms: waited.as_millis() as u64,
        });
    }
}

/// The longest a byte count goes unreported while bytes flow: ~10 events a
/// second, so a 1 GiB archive does not produce a million events.
const EVERY: Duration = Duration::from_millis(100);

/// Byte progress of one phase: a `phase` event with the total when it
/// starts, then `progress` events at most every 100 ms, and a last one with
/// the final count when it is dropped. Made by [`Reporter::bytes`].
#[derive(Debug)]
pub struct ByteProgress {
    to: Reporter,
    phase: Phase,
    total: u64,
    done: u64,
    /// When the last `progress` event went out.
    last: Instant,
}

impl ByteProgress {
    /// Emit the `phase` event; `now` starts the first interval.
    fn start(to: Reporter, phase: Phase, total: u64, now: Instant) -> ByteProgress {
        to.emit(EventKind::Phase {
            name: phase.clone(),
            total_bytes: Some(total),
        });
        ByteProgress {
            to,
            phase,
            total,
            done: 0,
            last: now,
        }
    }

    /// Account for `n` more bytes.
    pub fn add(&mut self, n: u64) {
        self.add_at(n, Instant::now());
    }

    /// [`ByteProgress::add`] at `now` (tests drive the clock).
    fn add_at(&mut self, n: u64, now: Instant) {
        self.done += n;
        if now.duration_since(self.last) >= EVERY {
            self.flush_at(now);
        }
    }

    /// Emit the count so far. The total grows with it when more bytes came
    /// than announced (a file that grew while it was read).
    fn flush_at(&mut self, now: Instant) {
        self.last = now;
        self.to.emit(EventKind::Progress {
            phase: self.phase.clone(),
            done: self.done,
            total: self.total.max(self.done),
        });
    }
}

impl Drop for ByteProgress {
    fn drop(&mut self) {
        self.flush_at(Instant::now());
    }
}

/// A [`Progress`] that keeps what it is told, for tests: which phases ran in
/// which order, which warnings were given, which backups changed.
#[derive(Debug, Default)]
pub struct Recorder {
    op_id: String,
    events: Mutex<Vec<EventKind>>,
    changed: Mutex<Vec<String>>,
}

impl Recorder {
    /// A recorder for an operation with this id, and the handle to pass to
    /// the code under test.
    pub fn start(op_id: &str) -> (Arc<Recorder>, Reporter) {
        let recorder = Arc::new(Recorder {
            op_id: op_id.to_owned(),
            ..Recorder::default()
        });
        let reporter = Reporter::from(Arc::clone(&recorder));
        (recorder, reporter)
    }

    /// Every event, in order.
    pub fn events(&self) -> Vec<EventKind> {
        lock(&self.events).clone()
    }

    /// The phases that began, in order (with or without a byte count).
    pub fn phases(&self) -> Vec<Phase> {
        lock(&self.events)
            .iter()
            .filter_map(|e| match e {
                EventKind::Phase { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The texts of the messages at `level`, in order.
    pub fn messages(&self, level: Level) -> Vec<String> {
        lock(&self.events)
            .iter()
            .filter_map(|e| match e {
                EventKind::Message { level: l, text } if *l == level => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The warnings, in order.
    pub fn warnings(&self) -> Vec<String> {
        self.messages(Level::Warning)
    }

    /// `(done, total)` of each `progress` event of `phase`, in order.
    pub fn progress_of(&self, phase: &Phase) -> Vec<(u64, u64)> {
        lock(&self.events)
            .iter()
            .filter_map(|e| match e {
                EventKind::Progress {
                    phase: p,
                    done,
                    total,
                } if p == phase => Some((*done, *total)),
                _ => None,
            })
            .collect()
    }

    /// The backups reported changed, in order.
    pub fn changed_backups(&self) -> Vec<String> {
        lock(&self.changed).clone()
    }
}

impl Progress for Recorder {
    fn emit(&self, event: EventKind) {
        lock(&self.events).push(event);
    }
    fn changed(&self, backup_id: &str) {
        lock(&self.changed).push(backup_id.to_owned());
    }
    fn op_id(&self) -> String {
        self.op_id.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_answers_which_phases_ran_and_what_was_said() {
        let (rec, progress) = Recorder::start("op-1");
        assert_eq!(progress.op_id(), "op-1");
        progress.phase(Phase::Scan);
        progress.info("looked".into());
        progress.warn("odd".into());
        drop(progress.bytes(Phase::Verify("b1".into()), 5));
        progress.phase(Phase::Index);
        progress.changed("b1");
        progress.warn("odder".into());

        assert_eq!(
            rec.phases(),
            [Phase::Scan, Phase::Verify("b1".into()), Phase::Index]
        );
        assert_eq!(rec.warnings(), ["odd", "odder"]);
        assert_eq!(rec.messages(Level::Info), ["looked"]);
        assert_eq!(rec.changed_backups(), ["b1"]);
        // A phase with bytes announces its total, and ends with its count.
        assert_eq!(
            rec.events()[3],
            EventKind::Phase {
                name: Phase::Verify("b1".into()),
                total_bytes: Some(5)
            }
        );
        assert_eq!(rec.progress_of(&Phase::Verify("b1".into())), [(0, 5)]);
    }

    #[test]
    fn byte_progress_reports_at_most_every_interval_and_always_at_the_end() {
        let (rec, progress) = Recorder::start("op");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut bytes = ByteProgress::start(progress, Phase::Archive, 1000, t0);
        // Within the first interval: counted, not sent.
        bytes.add_at(100, at(0));
        bytes.add_at(100, at(99));
        assert!(rec.progress_of(&Phase::Archive).is_empty());
        // The interval is over: the count so far goes out, and a new one starts.
        bytes.add_at(100, at(100));
        bytes.add_at(100, at(150));
        bytes.add_at(100, at(199));
        assert_eq!(rec.progress_of(&Phase::Archive), [(300, 1000)]);
        bytes.add_at(100, at(200));
        // A long stall, then more: one event, not one per missed interval.
        bytes.add_at(100, at(5000));
        assert_eq!(
            rec.progress_of(&Phase::Archive),
            [(300, 1000), (600, 1000), (700, 1000)]
        );
        // More than announced: the total follows the count.
        bytes.add_at(500, at(5001));
        drop(bytes);
        assert_eq!(
            rec.progress_of(&Phase::Archive).last(),
            Some(&(1200, 1200)),
            "the final count is sent when the phase ends"
        );
        assert_eq!(rec.phases(), [Phase::Archive]);
    }

    #[test]
    fn lock_waits_become_events() {
        let (rec, progress) = Recorder::start("op");
        let observer: &dyn LockObserver = &progress;
        observer.waiting(&LockName::Global);
        observer.acquired(&LockName::Global, Duration::from_millis(1500));
        assert_eq!(
            rec.events(),
            [
                EventKind::LockWait {
                    lock: "global".into()
                },
                EventKind::LockAcquired {
                    lock: "global".into(),
                    waited_ms: 1500
                },
            ]
        );
    }

    #[test]
    fn the_handle_passes_overridden_methods_through() {
        /// Says every warning twice.
        struct Loud(Recorder);
        impl Progress for Loud {
            fn emit(&self, event: EventKind) {
                self.0.emit(event);
            }
            fn changed(&self, id: &str) {
                self.0.changed(id);
            }
            fn op_id(&self) -> String {
                self.0.op_id()
            }
            fn warn(&self, text: String) {
                self.0.warn(text.clone());
                self.0.warn(text);
            }
        }
        let loud = Arc::new(Loud(Recorder::default()));
        let progress = Reporter::from(Arc::clone(&loud));
        progress.clone().warn("twice".into());
        assert_eq!(loud.0.warnings(), ["twice", "twice"]);
    }
}
