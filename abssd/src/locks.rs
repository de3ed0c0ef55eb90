//! Locks: one global lock and one per instance, held in memory by the daemon and
//! mirrored as `flock`s on the Python tool's lock files (`runtime_dir/abssctl.lock`,
//! `runtime_dir/<instance>.lock`), so the two tools exclude each other.
//!
//! The Python tool (`LockManager.mutate_instances`) takes the global lock file
//! first, then the instance's, and holds the global one *while it waits* for
//! the instance's. So no process may wait for the global lock file while it
//! holds an instance lock file: the two would wait for each other until one
//! `lock_timeout` ended. The daemon therefore keeps two global locks:
//!
//! * the global lock **file**, which every operation that holds any lock holds
//!   from before its instance lock files until it ends: one `flock` shared by
//!   all the daemon's operations (counted by references, released when the
//!   last one ends). This is what the Python tool sees, in its order, and for
//!   at least its scope;
//! * the global lock **in memory**, which guards the shared state files (index,
//!   registry) between the daemon's own operations, taken after their
//!   instance locks and only around a state-file write, which waits for
//!   nothing else while held. Creates of different instances overlap.
//!
//! One [`Locks::acquire`] takes, within one `lock_timeout`: the global lock
//! file, then the named instances sorted by name (memory, then file), then the
//! in-memory global lock if asked. An operation that already holds locks takes
//! the global lock file again by reference, without waiting.
//!
//! Per operation, what the Python tool sees (its `cli.py` beside it):
//!
//! | operation | abssd: order | held for | the Python tool |
//! |---|---|---|---|
//! | `backup create` | global file, then instance | the whole create: plan, archive pass, sidecar, index entry | global, then instance, for the whole create |
//! | `backup restore` (live) | global file, then instance | from before the pre-restore backup to the end of clean-up and the index annotation | global, then instance, only while it reads the registry entry; the rest runs unlocked |
//! | `backup restore --dest` | global file | around each index or sidecar write | as the live restore |
//! | `backup reconcile` | global file (then the instances of adopted orphans) | around the index read, and around the `--apply` write | none |
//! | `backup verify` | global file | around the index write | none |
//! | recovery at start-up | global file, then instance | the recovery of that operation | — |
//!
//! The live restore holds its locks longer than the Python tool does: it
//! replaces the instance's data, unit and site, and a create of the same
//! instance must not read them half-swapped. A longer hold in the same order
//! cannot deadlock; the other side only waits (up to its `lock_timeout`).
//! Every wait is bounded by `lock_timeout` and reported.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// How often a contended `flock` is retried.
const FLOCK_POLL: Duration = Duration::from_millis(20);

/// The daemon's lock table.
#[derive(Debug)]
pub struct Locks {
    /// Where the lock files live.
    runtime_dir: PathBuf,
    /// Bound on every wait.
    timeout: Duration,
    /// The in-memory global lock.
    global: Arc<Mutex<()>>,
    /// In-memory instance locks, created on first use and kept (a few bytes each).
    instances: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
    /// The global lock file's `flock`, while any operation holds a lock; the
    /// async mutex makes one operation at a time wait for the Python tool.
    global_file: Mutex<Weak<Flock<File>>>,
}

/// Which lock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockName {
    /// The host-wide lock (`abssctl.lock`).
    Global,
    /// One instance (`<name>.lock`).
    Instance(String),
}

impl std::fmt::Display for LockName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockName::Global => f.write_str("global"),
            LockName::Instance(n) => write!(f, "instance:{n}"),
        }
    }
}

/// Held locks; released (in reverse order) on drop.
#[derive(Debug)]
pub struct LockGuard {
    /// In acquisition order; the global lock (in memory only: its file is
    /// `global_file`) last, when asked for.
    held: Vec<(LockName, Option<Flock<File>>, OwnedMutexGuard<()>)>,
    /// This guard's reference to the global lock file, released after
    /// everything in `held`, as the Python tool releases its locks.
    global_file: Option<Arc<Flock<File>>>,
    /// Total time spent waiting.
    pub waited: Duration,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        while let Some(held) = self.held.pop() {
            drop(held);
        }
        self.global_file.take();
    }
}

/// Told about waits as they happen (the operation turns them into events).
pub trait LockObserver: Send + Sync {
    /// The lock is not free; waiting.
    fn waiting(&self, lock: &LockName);
    /// The lock was taken after `waited`.
    fn acquired(&self, lock: &LockName, waited: Duration);
}

impl Locks {
    /// A lock table over `runtime_dir` with the given bound on waits.
    pub fn new(runtime_dir: &Path, timeout: Duration) -> Locks {
        Locks {
            runtime_dir: runtime_dir.to_owned(),
            timeout,
            global: Arc::new(Mutex::new(())),
            instances: StdMutex::new(HashMap::new()),
            global_file: Mutex::new(Weak::new()),
        }
    }

    /// Take the global lock file, the named instances in sorted order, and
    /// then the in-memory global lock if `global`, within one `lock_timeout`
    /// for the whole set.
    pub async fn acquire(
        &self,
        global: bool,
        instances: &[&str],
        observer: &dyn LockObserver,
    ) -> Result<LockGuard> {
        let mut names: Vec<LockName> = instances
            .iter()
            .map(|i| LockName::Instance((*i).to_owned()))
            .collect();
        names.sort();
        names.dedup();
        if global {
            names.push(LockName::Global);
        }
        let deadline = Instant::now() + self.timeout;
        let start = Instant::now();
        let mut guard = LockGuard {
            held: Vec::new(),
            global_file: None,
            waited: Duration::ZERO,
        };
        if !names.is_empty() {
            guard.global_file = Some(self.global_file(deadline, start, observer).await?);
        }
        for name in names {
            let one_start = Instant::now();
            let mutex = self.mutex(&name);
            let mut waited = false;
            let mem = match mutex.clone().try_lock_owned() {
                Ok(g) => g,
                Err(_) => {
                    waited = true;
                    observer.waiting(&name);
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::timeout(left, mutex.lock_owned())
                        .await
                        .map_err(|_| self.timeout_error(&name, start))?
                }
            };
            let (file, flock_waited) = match name {
                // Its file is held already, by `guard.global_file`.
                LockName::Global => (None, false),
                LockName::Instance(_) => {
                    let (file, w) = self.flock(&name, deadline, start, observer, waited).await?;
                    (Some(file), w)
                }
            };
            // Only a real wait is worth an event; opening the lock file is not one.
            if waited || flock_waited {
                observer.acquired(&name, one_start.elapsed());
            }
            guard.held.push((name, file, mem));
        }
        guard.waited = start.elapsed();
        Ok(guard)
    }

    /// A reference to the global lock file's `flock`: the one the daemon
    /// holds already, or a new one once the Python tool lets it go.
    async fn global_file(
        &self,
        deadline: Instant,
        start: Instant,
        observer: &dyn LockObserver,
    ) -> Result<Arc<Flock<File>>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut slot = tokio::time::timeout(left, self.global_file.lock())
            .await
            .map_err(|_| self.timeout_error(&LockName::Global, start))?;
        if let Some(held) = slot.upgrade() {
            return Ok(held);
        }
        let one_start = Instant::now();
        let (file, waited) = self
            .flock(&LockName::Global, deadline, start, observer, false)
            .await?;
        if waited {
            observer.acquired(&LockName::Global, one_start.elapsed());
        }
        let file = Arc::new(file);
        *slot = Arc::downgrade(&file);
        Ok(file)
    }

    fn mutex(&self, name: &LockName) -> Arc<Mutex<()>> {
        match name {
            LockName::Global => self.global.clone(),
            LockName::Instance(n) => {
                let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(n.clone()).or_default().clone()
            }
        }
    }

    fn file_of(&self, name: &LockName) -> PathBuf {
        match name {
            LockName::Global => self.runtime_dir.join("abssctl.lock"),
            LockName::Instance(n) => self.runtime_dir.join(format!("{n}.lock")),
        }
    }

    /// `flock` the lock file, polling until the deadline (the Python tool may hold
    /// it), then record who holds it the way the Python tool does.
    async fn flock(
        &self,
        name: &LockName,
        deadline: Instant,
        start: Instant,
        observer: &dyn LockObserver,
        already_told: bool,
    ) -> Result<(Flock<File>, bool)> {
        let path = self.file_of(name);
        fsutil::ensure_dir(&self.runtime_dir)?;
        let mut told = already_told;
        let mut waited = false;
        loop {
            // Not through a symlink, and only a regular file: the note below
            // truncates what it opened, and a FIFO or device there must not
            // stall or feed the daemon. The Python tool makes plain files.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(fsutil::FILE_MODE)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(&path)
                .at("opening lock file", &path)?;
            if !file.metadata().at("opening lock file", &path)?.is_file() {
                return Err(Error::Environment(format!(
                    "the lock file {} is not a regular file; remove it",
                    path.display()
                )));
            }
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut locked) => {
                    let note = serde_json::json!({
                        "pid": std::process::id(),
                        "acquired_at": fsutil::now_utc(),
                        "path": path,
                    });
                    // Informational only: a failure to write it does not matter.
                    let _ = locked.set_len(0);
                    let _ = writeln!(&mut *locked, "{note}");
                    return Ok((locked, waited));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    waited = true;
                    if !told {
                        observer.waiting(name);
                        told = true;
                    }
                    if Instant::now() + FLOCK_POLL > deadline {
                        return Err(self.timeout_error(name, start));
                    }
                    tokio::time::sleep(FLOCK_POLL).await;
                }
                Err((_, errno)) => {
                    return Err(std::io::Error::from(errno)).at("locking", &path);
                }
            }
        }
    }

    fn timeout_error(&self, name: &LockName, start: Instant) -> Error {
        let holder = std::fs::read_to_string(self.file_of(name))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t.trim()).ok())
            .and_then(|v| v.get("pid").and_then(|p| p.as_u64()))
            .map(|pid| format!(", last taken by pid {pid}"))
            .unwrap_or_default();
        Error::LockTimeout {
            lock: name.to_string(),
            waited_ms: start.elapsed().as_millis() as u64,
            holder,
        }
    }
}

/// An observer that ignores everything.
#[derive(Debug)]
pub struct Quiet;

impl LockObserver for Quiet {
    fn waiting(&self, _: &LockName) {}
    fn acquired(&self, _: &LockName, _: Duration) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as M;

    #[derive(Default)]
    struct Record(M<Vec<String>>);
    impl LockObserver for Record {
        fn waiting(&self, l: &LockName) {
            self.0.lock().unwrap().push(format!("wait {l}"));
        }
        fn acquired(&self, l: &LockName, _: Duration) {
            self.0.lock().unwrap().push(format!("got {l}"));
        }
    }

    fn held_names(g: &LockGuard) -> Vec<String> {
        g.held.iter().map(|(n, _, _)| n.to_string()).collect()
    }

    /// Whether another process (another open file description) could take
    /// `file` in `dir` now; it lets it go at once.
    fn free(dir: &Path, file: &str) -> bool {
        let f = File::create(dir.join(file)).unwrap();
        Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
    }

    #[tokio::test]
    async fn acquires_the_global_file_then_instances_sorted_then_global_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Locks::new(dir.path(), Duration::from_secs(1));
        let g = locks
            .acquire(true, &["zeta", "alpha", "zeta"], &Quiet)
            .await
            .unwrap();
        assert!(g.global_file.is_some());
        assert_eq!(
            held_names(&g),
            ["instance:alpha", "instance:zeta", "global"]
        );
        assert!(dir.path().join("abssctl.lock").exists());
        assert!(dir.path().join("alpha.lock").exists());
        let note = std::fs::read_to_string(dir.path().join("alpha.lock")).unwrap();
        assert!(
            note.contains(&format!("\"pid\":{}", std::process::id())),
            "{note}"
        );
    }

    /// A lock file swapped for a symlink (to a file the note would
    /// truncate) or a FIFO is refused, the file it points to untouched.
    #[tokio::test]
    async fn a_lock_file_that_is_a_symlink_or_fifo_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("abssctl.lock")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("alpha.lock"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let locks = Locks::new(dir.path(), Duration::from_millis(200));
        let err = locks.acquire(true, &[], &Quiet).await.unwrap_err();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(err.to_string().contains("abssctl.lock"), "{err}");
        std::fs::remove_file(dir.path().join("abssctl.lock")).unwrap();
        let err = locks.acquire(false, &["alpha"], &Quiet).await.unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[tokio::test]
    async fn contended_lock_times_out_with_busy_and_reports_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Locks::new(dir.path(), Duration::from_millis(150));
        let _held = locks.acquire(false, &["alpha"], &Quiet).await.unwrap();
        let rec = Record::default();
        let t = Instant::now();
        let err = locks.acquire(false, &["alpha"], &rec).await.unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(140));
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Busy);
        assert!(err.to_string().contains("instance:alpha"), "{err}");
        assert_eq!(rec.0.lock().unwrap().as_slice(), ["wait instance:alpha"]);
        // Other instances and the global lock are independent.
        locks.acquire(true, &["beta"], &Quiet).await.unwrap();
    }

    #[tokio::test]
    async fn waiter_gets_the_lock_when_released_and_the_wait_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Arc::new(Locks::new(dir.path(), Duration::from_secs(5)));
        let held = locks.acquire(false, &["alpha"], &Quiet).await.unwrap();
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { l2.acquire(false, &["alpha"], &Quiet).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        let g = waiter.await.unwrap().unwrap();
        assert!(g.waited >= Duration::from_millis(90), "{:?}", g.waited);
    }

    #[tokio::test]
    async fn the_global_file_is_held_while_any_lock_is_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Locks::new(dir.path(), Duration::from_millis(200));
        let create = locks.acquire(false, &["alpha"], &Quiet).await.unwrap();
        assert!(
            !free(dir.path(), "abssctl.lock"),
            "an instance lock without the global file"
        );
        // Another operation's state-file write shares the file, without waiting.
        let rec = Record::default();
        let write = locks.acquire(true, &[], &rec).await.unwrap();
        assert!(
            rec.0.lock().unwrap().is_empty(),
            "{:?}",
            rec.0.lock().unwrap()
        );
        drop(create);
        assert!(!free(dir.path(), "abssctl.lock"));
        drop(write);
        assert!(free(dir.path(), "abssctl.lock"));
        assert!(free(dir.path(), "alpha.lock"));
    }

    #[tokio::test]
    async fn waiting_for_the_global_file_holds_no_instance_file() {
        // The Python tool's order: it holds the global file while it waits for
        // an instance's. Were the daemon to hold that instance's file while it
        // waits for the global one, both would wait until a timeout.
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("abssctl.lock")).unwrap();
        let python = Flock::lock(f, FlockArg::LockExclusive).unwrap();
        let locks = Arc::new(Locks::new(dir.path(), Duration::from_secs(30)));
        let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel();
        struct Told(StdMutex<Option<tokio::sync::oneshot::Sender<String>>>);
        impl LockObserver for Told {
            fn waiting(&self, l: &LockName) {
                if let Some(tx) = self.0.lock().unwrap().take() {
                    let _ = tx.send(l.to_string());
                }
            }
            fn acquired(&self, _: &LockName, _: Duration) {}
        }
        let l2 = locks.clone();
        let daemon = tokio::spawn(async move {
            let told = Told(StdMutex::new(Some(waiting_tx)));
            l2.acquire(false, &["alpha"], &told).await
        });
        assert_eq!(waiting_rx.await.unwrap(), "global");
        // The Python tool can take alpha's file, and then lets both go.
        assert!(free(dir.path(), "alpha.lock"));
        drop(python);
        let g = daemon.await.unwrap().unwrap();
        assert_eq!(held_names(&g), ["instance:alpha"]);
        assert!(!free(dir.path(), "alpha.lock"));
    }

    #[tokio::test]
    async fn an_external_flock_holder_excludes_the_daemon() {
        // Stands in for the Python tool: the same file, locked by another open file
        // description, is respected even though the in-memory lock is free.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abssctl.lock");
        let f = File::create(&path).unwrap();
        let external = Flock::lock(f, FlockArg::LockExclusive).unwrap();
        let locks = Locks::new(dir.path(), Duration::from_millis(100));
        let err = locks.acquire(true, &[], &Quiet).await.unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Busy);
        drop(external);
        locks.acquire(true, &[], &Quiet).await.unwrap();
    }
}
