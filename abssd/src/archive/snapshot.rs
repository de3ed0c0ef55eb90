//! SQLite snapshots of a running instance's databases (`--consistency
//! snapshot`): the database file itself is read while a read transaction of
//! SQLite's, on a read-only connection, holds it at its last committed state.
//!
//! Issue 12 asks for the last committed state as SQLite decides it ("the
//! online backup API copying all pages in one step, or `VACUUM INTO`"). Both
//! read the pages through a read transaction, and that transaction is what
//! makes them consistent; the copy adds nothing but a second write and read of
//! every byte (~0.4 s per 170 MB, while the compressor waits). SQLite
//! documents (<https://sqlite.org/lockingv3.html>, "File Locking And
//! Concurrency In SQLite Version 3") that in rollback-journal mode the database
//! file is written only under an EXCLUSIVE lock, which "no other locks of any
//! kind are allowed to coexist with", and that a SHARED lock means "the
//! database may be read but not written"; before a read transaction takes its
//! first page, SQLite checks for a hot journal and rolls it back (a read-only
//! connection cannot: it fails with `SQLITE_READONLY_ROLLBACK` instead). So
//! once our read transaction has read page 1, the file's bytes *are* the last
//! committed state, and stay so until we end it: a writer may prepare its
//! transaction in its journal (RESERVED), but commits only after we let go.
//! Only a process that ignores SQLite's locks altogether could change them,
//! and it could as well under the backup API (whose copy is as good as the
//! lock); the file's size and mtime are checked once more before the lock is
//! let go. Rollback-journal mode is the only one read this way: WAL is refused
//! (see [`without_shared_memory`]), and there a SHARED lock would not keep a
//! checkpoint from writing the file.
//!
//! SQLite opens a database by *path* (and its `-journal` by that path plus a
//! suffix), and every directory on that path below the data root belongs to
//! the instance's user, who may swap one for a symlink between SQLite's checks
//! and its `open()`. So the read transaction runs on a short-lived thread of
//! its own whose filesystem root is the database's directory, opened through
//! the [`Tree`] like any file of the walk:
//!
//! 1. the directory is opened beneath the data root without following a
//!    symlink, and must still hold the file the walk saw (type, device, inode,
//!    birth time);
//! 2. on a new `std::thread` (never a pooled thread: its root changes for
//!    good), `unshare(CLONE_FS)` (this thread only), `fchdir(dir)`,
//!    `chroot(".")`: from here every path SQLite opens (`/<name>`,
//!    `/<name>-journal`) resolves inside that one directory, whatever is
//!    renamed around it;
//! 3. the database is opened as `/<name>` with `SQLITE_OPEN_READONLY |
//!    SQLITE_OPEN_NOFOLLOW` (a read-only connection never writes, deletes or
//!    rolls back anything beside the live database), its file's methods are
//!    stripped of shared memory so that SQLite cannot use WAL for it (which
//!    would open, create, `fchown` and write `-wal` and `-shm` beside it: see
//!    [`without_shared_memory`]), a read transaction is begun and page 1 read
//!    (SHARED taken, hot journal checked); then the process's descriptors are
//!    looked through (`/proc/self/fd`, opened before the chroot) for one on
//!    the file the walk saw: only SQLite can hold one, so a hard link swapped
//!    in and out again around the open is caught even if the name is back in
//!    place afterwards;
//! 4. the thread says "locked" and waits; the writer opens the name from the
//!    same directory descriptor, only if it is the file the walk saw (and so
//!    the one SQLite locked), and streams its bytes into the archive
//!    ([`Held`]): as many as the read transaction counts (`page_count` times
//!    `page_size`), not as many as `fstat` says, which anyone writing the file
//!    past SQLite's locks decides; a file shorter than that fails the create;
//! 5. then the thread ends the transaction, closes its connection and ends;
//!    only after that is the writer's descriptor closed.
//!
//! POSIX record locks (`fcntl`), which SQLite uses, belong to the *process*:
//! closing any descriptor of ours on the live database while SQLite holds its
//! SHARED lock silently drops that lock, and a writer could then commit under
//! the read. Hence the order of step 5, kept by [`Held`]'s `Drop` however the
//! stream ends. The header probe ([`probe`]) closes its descriptor long before
//! (at planning); the descriptor check above only `statx`es through `/proc`;
//! the FIFO release ([`unblock_fifos`]) opens a name with `O_PATH` (whose close
//! drops no lock) and writes only to a FIFO; nothing else of this create opens
//! the file while SQLite holds it. Nor does anything else in the daemon: the
//! same file may have other names (a hard link into another instance's tree,
//! made by a service user two instances share), and another create's probe or
//! read of it would close a descriptor on it. So a snapshot holds the
//! exclusive side of a daemon-wide lock ([`tree::exclusive`]) from before
//! SQLite opens the database until after our descriptor is closed, and every
//! live data file is opened and closed on its shared side ([`tree::LiveFile`]):
//! other creates wait (at most one database's read) instead. The size and
//! mtime check at the end still fails the create if anything wrote the file
//! under the lock.
//!
//! The lock is held while the database's bytes are compressed and written,
//! longer than a copy took: a writer's commit waits that long (the sync server
//! waits up to its 5 s busy timeout; README, "Backups of a running instance").
//!
//! A hot journal (a writer crashed mid-transaction) makes a read-only
//! connection fail (`SQLITE_READONLY_ROLLBACK`) until the server opens the
//! database and rolls it back; `SQLITE_BUSY` lasts while a writer commits.
//! Both are retried for [`PATIENCE`], then the create fails naming the database
//! and what to do.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, ffi};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::tree::{self, Gone, Ident, Tree};
use crate::error::{Error, Result};

/// How long one database may keep a snapshot waiting (a writer committing, a
/// hot journal the server has not rolled back yet), in all.
pub const PATIENCE: Duration = Duration::from_secs(3);

/// The first 16 bytes of every SQLite 3 database.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Bytes of the header [`probe`] reads: the magic, and the file format
/// versions at offsets 18 and 19 (2 = WAL).
pub const HEADER: usize = 20;

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not a SQLite database (or an empty one, which has no pages to copy).
    Other,
    /// A SQLite database with a rollback journal.
    Database,
    /// A SQLite database in WAL mode.
    Wal,
}

/// Classify a file by its header (`head`: its first bytes, at most [`HEADER`]).
pub fn kind(head: &[u8]) -> Kind {
    if head.len() < HEADER || &head[..16] != MAGIC {
        return Kind::Other;
    }
    if head[18] == 2 || head[19] == 2 {
        Kind::Wal
    } else {
        Kind::Database
    }
}

/// Read the header of the file `rel` through the tree, if it is still the file
/// the walk saw. The descriptor is closed before this returns (see the module
/// comment on POSIX locks).
pub fn probe(tree: &Tree, rel: &[u8], ident: Ident) -> Result<Kind, Gone> {
    use std::io::Read;
    let file = tree.open_file(rel, ident)?;
    let mut head = [0u8; HEADER];
    let mut got = 0;
    let mut reader = file.take(HEADER as u64);
    while got < HEADER {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Gone::Failed(Error::Io {
                    action: "reading",
                    path: tree.display(rel),
                    source: e,
                }));
            }
        }
    }
    drop(reader);
    Ok(kind(&head[..got]))
}

/// What SQLite names the files it keeps beside a database (`<db>-journal`...).
pub const JOURNAL_SUFFIXES: [&str; 3] = ["-journal", "-wal", "-shm"];

/// A snapshot, ready to be archived.
#[derive(Debug)]
pub struct Taken {
    /// The copy (its name already removed), at offset 0.
    pub file: std::fs::File,
    /// Its size.
    pub size: u64,
}

/// Why one attempt did not give a snapshot.
#[derive(Debug)]
enum Failure {
    /// SQLite said busy, or found a hot journal, for all of [`PATIENCE`].
    Waited(String),
    /// What SQLite opened is not the file the walk saw.
    NotTheFile,
    /// Any other failure (SQLite's or the system's message).
    Other(String),
}

/// A database held at its last committed state by SQLite's read transaction
/// (steps 4 and 5 of the module comment), with a descriptor of ours on it to
/// read from. Dropping it ends the transaction, then closes our descriptor.
#[derive(Debug)]
pub struct Held {
    /// Ours, on the file SQLite holds; closed only after SQLite's connection.
    file: std::fs::File,
    /// What `fstat` said when it was opened.
    opened: rustix::fs::Statx,
    /// The database's size as SQLite's read transaction sees it (its page
    /// count times its page size): the bytes archived.
    bytes: u64,
    /// The read transaction, on its thread.
    lock: Locked,
    /// When SQLite's lock was known held (a writer's commit waits from then).
    since: Instant,
    path: std::path::PathBuf,
    /// No live data file is opened or closed in the daemon meanwhile (see
    /// [`tree::exclusive`]); released last, after our descriptor is closed.
    _exclusive: std::sync::RwLockWriteGuard<'static, ()>,
}

impl Held {
    /// The descriptor to read the database from (at offset 0 until read).
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// The database's size under the lock, as SQLite counts it: the bytes to
    /// archive. Bytes of the file past SQLite's last page are no part of the
    /// database (SQLite truncates the file to its pages when it commits); only
    /// a process ignoring SQLite's locks puts any there, e.g. a sparse
    /// terabyte that would keep the create, and the lock, for hours.
    pub fn size(&self) -> u64 {
        self.bytes
    }

    /// After the read: the file is as it was opened (nothing wrote it under
    /// SQLite's lock), then the transaction ends and the connection closes,
    /// and only then our descriptor.
    pub fn release(mut self) -> Result<()> {
        let now = tree::stat_fd(&self.file).map_err(|e| io("reading", &self.path, e.into()))?;
        let mtime = |st: &rustix::fs::Statx| (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec);
        if now.stx_size != self.opened.stx_size || mtime(&now) != mtime(&self.opened) {
            return Err(written_under_lock(&self.path));
        }
        let ended = self.lock.end();
        tracing::debug!(
            path = %self.path.display(),
            bytes = self.opened.stx_size,
            held_ms = self.since.elapsed().as_millis() as u64,
            "database read under SQLite's lock"
        );
        match ended {
            Ok(()) => Ok(()),
            Err(why) => Err(Error::Archive(format!(
                "ending the read of the SQLite database {}: {why}",
                self.path.display()
            ))),
        }
        // `self` drops here: the thread has ended, our descriptor closes.
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Before the fields (our descriptor) are dropped: see the module
        // comment on POSIX locks.
        let _ = self.lock.end();
    }
}

/// Hold the database `rel` of `tree` (the file the walk saw, `ident`) at its
/// last committed state, and open it for reading. A database replaced or
/// removed since the walk is [`Gone::Changed`]; one SQLite cannot read in
/// time fails the create.
pub fn hold(tree: &Tree, rel: &[u8], ident: Ident) -> Result<Held, Gone> {
    // Before SQLite opens the database, until after our descriptor on it is
    // closed (dropped last, whatever returns early).
    let exclusive = tree::exclusive();
    let path = tree.display(rel);
    let (parent, name) = tree::split(rel);
    let dir = tree.dir_fd(parent)?;
    still(&dir, name, ident, &path)?;
    // The directory is open and holds the file the walk saw: tests swap
    // names here, after the last check made by path and before SQLite opens.
    hook_point!("create::before-snapshot");
    // One retry: a file swapped in and out again around SQLite's open.
    let mut attempt = 0;
    let (lock, bytes, since) = loop {
        attempt += 1;
        let outcome = on_own_thread(&dir, name, ident);
        hook_point!("create::snapshot-taken");
        still(&dir, name, ident, &path)?;
        match outcome {
            Ok((lock, bytes)) => break (lock, bytes, Instant::now()),
            Err(Failure::NotTheFile) if attempt < 2 => {
                tracing::warn!(path = %path.display(), "SQLite opened another file than the walk saw; trying again");
            }
            Err(Failure::NotTheFile) => {
                return Err(Gone::Changed(
                    "was replaced while it was being snapshotted (SQLite opened another file); \
                     not archived"
                        .into(),
                ));
            }
            Err(Failure::Waited(why)) => {
                return Err(Gone::Failed(Error::Environment(format!(
                    "cannot snapshot the SQLite database {}: {why} for {} s. If the instance is \
                     running, retry; otherwise use --consistency stop (or stop the instance: \
                     its files are then read as they are, journal included), or, where \
                     systemd cannot be reached, --consistency none (the database is archived \
                     with its journal, which SQLite rolls back when the restored copy is opened)",
                    path.display(),
                    PATIENCE.as_secs()
                ))));
            }
            Err(Failure::Other(why)) => {
                return Err(Gone::Failed(Error::Archive(format!(
                    "snapshotting the SQLite database {}: {why}; use --consistency stop to \
                     back it up with the instance stopped",
                    path.display()
                ))));
            }
        }
    };
    // SQLite holds the file the walk saw. Ours is opened from the same
    // directory and must be that file: then closing it later would drop the
    // lock (hence [`Held`]), while a file swapped in under the name, closed at
    // once, holds no lock of ours. `lock` ends on any return below.
    let file = tree
        .open_file_in(dir.as_fd(), rel, ident)
        .map_err(|gone| match gone {
            Gone::Changed(_) => Gone::Changed(
                "was replaced while it was being snapshotted (its name now leads to another \
                 file); not archived"
                    .into(),
            ),
            failed => failed,
        })?;
    let opened = tree::stat_fd(&file).map_err(|e| Gone::Failed(io("reading", &path, e.into())))?;
    if opened.stx_size < bytes {
        return Err(Gone::Failed(written_under_lock(&path)));
    }
    Ok(Held {
        file,
        opened,
        bytes,
        lock,
        since,
        path,
        _exclusive: exclusive,
    })
}

/// The name still leads to the regular file the walk saw; returns its size.
fn still(dir: &OwnedFd, name: &[u8], ident: Ident, path: &Path) -> Result<u64, Gone> {
    let st = match tree::stat_at(dir.as_fd(), name) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => {
            return Err(Gone::Changed("file removed before we read it".into()));
        }
        Err(e) => return Err(Gone::Failed(io("reading", path, e.into()))),
    };
    if tree::file_type(&st) != FileType::RegularFile || Ident::of(&st) != ident {
        return Err(Gone::Changed(
            "was replaced during the backup (a symlink or another file is now in its place); \
             not archived"
                .into(),
        ));
    }
    // A FIFO or socket in place of the journal would stop SQLite's open of it
    // forever (it opens without O_NONBLOCK), with the instance locked.
    for sibling in ["-journal", "-wal"] {
        let mut journal = name.to_vec();
        journal.extend_from_slice(sibling.as_bytes());
        match tree::stat_at(dir.as_fd(), &journal) {
            Ok(st) if tree::file_type(&st) != FileType::RegularFile => {
                return Err(Gone::Changed(format!(
                    "has a {sibling} beside it that is not a regular file; SQLite would wait on \
                     it forever: not archived"
                )));
            }
            _ => {}
        }
    }
    Ok(st.stx_size)
}

/// The database's file changed while SQLite's lock was held: only a process
/// ignoring SQLite's locks (the instance's user, writing the file directly)
/// can do that, and what was read is no committed state.
pub fn written_under_lock(path: &Path) -> Error {
    Error::Environment(format!(
        "the SQLite database {} was written while SQLite's lock was held (by a process that \
         ignores SQLite's locks, such as the instance's user writing the file directly); its \
         read is not a committed state. Find what writes it, or use --consistency stop",
        path.display()
    ))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A read transaction held open on a thread of its own, until [`Locked::end`]
/// (or drop).
#[derive(Debug)]
struct Locked {
    /// Dropped to tell the thread to end its transaction.
    done: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<std::result::Result<(), String>>>,
}

impl Locked {
    /// End the transaction, close the connection, and wait for the thread to
    /// end; returns how ending went (the first time).
    fn end(&mut self) -> std::result::Result<(), String> {
        drop(self.done.take());
        match self.thread.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err("the snapshot thread panicked".into()),
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// Run step 2 and 3 of the module comment on a thread of its own (its root
/// changes) and return once it holds the lock (or failed); the thread keeps
/// the read transaction until the [`Locked`] ends.
///
/// SQLite opens files without `O_NONBLOCK`: a FIFO the instance's user swaps
/// in for the database or its journal, after the last check and before
/// SQLite's `open()`, would stop that thread, and the create with the instance
/// locked, for good. So until it says "locked", every [`UNBLOCK_EVERY`] this
/// thread opens such a FIFO for writing without blocking (which succeeds only
/// when a reader waits in `open()`) and closes it at once: SQLite reads an
/// empty file, the descriptor check fails, and the name is found replaced.
/// Once locked, SQLite opens nothing more.
fn on_own_thread(
    dir: &OwnedFd,
    name: &[u8],
    ident: Ident,
) -> std::result::Result<(Locked, u64), Failure> {
    let other = |e: std::io::Error| Failure::Other(e.to_string());
    let thread_dir = rustix::io::fcntl_dupfd_cloexec(dir, 0).map_err(|e| other(e.into()))?;
    let thread_name = name.to_vec();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(0);
    let handle = std::thread::Builder::new()
        .name("abssd-snapshot".into())
        .spawn(move || {
            let (conn, bytes) = match lock_in(thread_dir, &thread_name, ident) {
                Ok(held) => held,
                Err(failure) => {
                    let _ = tx.send(Err(failure));
                    return Ok(());
                }
            };
            // Whether the writer took it or went away, wait for its word
            // (the sender dropped) before letting go.
            if tx.send(Ok(bytes)).is_ok() {
                let _ = done_rx.recv();
            }
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
            conn.close().map_err(|(_, e)| e.to_string())
        })
        .map_err(other)?;
    let mut lock = Locked {
        done: Some(done_tx),
        thread: Some(handle),
    };
    loop {
        match rx.recv_timeout(UNBLOCK_EVERY) {
            Ok(Ok(bytes)) => return Ok((lock, bytes)),
            Ok(Err(failure)) => {
                let _ = lock.end();
                return Err(failure);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => unblock_fifos(dir, name),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = lock.end();
                return Err(Failure::Other("the snapshot thread panicked".into()));
            }
        }
    }
}

/// How often a snapshot being opened is checked for a FIFO it may wait on.
const UNBLOCK_EVERY: Duration = Duration::from_secs(1);

/// Release a reader waiting in `open()` on a FIFO at `name` or its journal.
///
/// The name is opened with `O_PATH` first (which opens no file for I/O, and
/// whose close drops no POSIX lock: SQLite may hold one on what the name
/// leads to by then), and only what that found to be a FIFO is opened for
/// writing, through `/proc/self/fd`, so never the live database.
fn unblock_fifos(dir: &OwnedFd, name: &[u8]) {
    for suffix in [&b""[..], b"-journal", b"-wal"] {
        let mut path = name.to_vec();
        path.extend_from_slice(suffix);
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(at) = rustix::fs::openat(dir, path.as_slice(), flags, Mode::empty()) else {
            continue;
        };
        match tree::stat_fd(&at) {
            Ok(st) if tree::file_type(&st) == FileType::Fifo => {}
            _ => continue,
        }
        // Opens nothing but that FIFO, and only with a waiting reader (ENXIO
        // otherwise); closed unwritten.
        let fifo = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&at));
        let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::open(fifo.as_str(), flags, Mode::empty()) {
            tracing::warn!("a FIFO was put in place of a database being snapshotted; released");
            drop(fd);
        }
    }
}

/// Steps 2 and 3 of the module comment: the connection, inside its read
/// transaction. Runs on its own thread, which it leaves chrooted: the thread
/// must end once the connection is closed.
fn lock_in(
    dir: OwnedFd,
    name: &[u8],
    ident: Ident,
) -> std::result::Result<(Connection, u64), Failure> {
    let sys = |what: &str, e: rustix::io::Errno| Failure::Other(format!("{what}: {e}"));
    let proc_fds = rustix::fs::open(
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys("opening /proc/self/fd", e))?;
    // SQLite's random generator seeded now, from the host's /dev/urandom.
    let seed = Connection::open_in_memory().map_err(sqlite)?;
    seed.query_row("SELECT randomblob(16)", [], |_| Ok(()))
        .map_err(sqlite)?;
    drop(seed);

    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|e| {
        sys(
            "unshare(CLONE_FS)",
            rustix::io::Errno::from_raw_os_error(e as i32),
        )
    })?;
    rustix::process::fchdir(&dir).map_err(|e| sys("fchdir", e))?;
    rustix::process::chroot(".").map_err(|e| sys("chroot", e))?;
    drop(dir);

    let source = Path::new("/").join(OsStr::from_bytes(name));
    let deadline = Instant::now() + PATIENCE;
    loop {
        match begin(&source, &proc_fds, ident, deadline) {
            Err(Failure::Waited(why)) if Instant::now() < deadline => {
                tracing::debug!(%why, "snapshot waits");
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// A read-only connection on `source` inside a read transaction that has
/// read page 1 (SQLite's SHARED lock taken, no hot journal), on the file the
/// walk saw, and the database's size in bytes as that transaction sees it.
fn begin(
    source: &Path,
    proc_fds: &OwnedFd,
    ident: Ident,
    deadline: Instant,
) -> std::result::Result<(Connection, u64), Failure> {
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE,
    )
    .map_err(sqlite)?;
    without_shared_memory(&src)?;
    src.busy_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(sqlite)?;
    src.execute_batch("PRAGMA temp_store=MEMORY; BEGIN")
        .map_err(sqlite)?;
    // Takes the SHARED lock, checks for a hot journal, reads page 1.
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(|e| match sqlite(e) {
            Failure::Other(why) => Failure::Other(format!(
                "{why} (a database in WAL mode, or with a -wal file beside it, is not \
                 snapshotted: SQLite would write its -wal and -shm beside the live database)"
            )),
            other => other,
        })?;
    if !holds(proc_fds, ident).map_err(|e| Failure::Other(format!("reading /proc/self/fd: {e}")))? {
        return Err(Failure::NotTheFile);
    }
    let pages: i64 = src
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(sqlite)?;
    let page: i64 = src
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(sqlite)?;
    let bytes = u64::try_from(pages)
        .ok()
        .zip(u64::try_from(page).ok())
        .and_then(|(pages, page)| pages.checked_mul(page))
        .ok_or_else(|| Failure::Other(format!("{pages} pages of {page} bytes")))?;
    Ok((src, bytes))
}

/// Take away the shared-memory method of the source's file (a copy of
/// SQLite's own methods without `xShmMap`), before anything is read: SQLite
/// then cannot use WAL for it (`sqlite3PagerWalSupported`), and a database
/// switched to WAL mode after the plan's probe, or with a `-wal` file beside
/// it, fails to open. Otherwise SQLite opens that `-wal` and the `-shm`
/// read-write, creating them, and as root `fchown`s them to the database's
/// owner and truncates and writes the `-shm`: the instance's user, who
/// controls those names, could hard-link any file they may write there, have
/// it overwritten and take its ownership.
#[allow(unsafe_code)]
fn without_shared_memory(conn: &Connection) -> std::result::Result<(), Failure> {
    type Methods = &'static ffi::sqlite3_io_methods;
    // One copy per table of methods SQLite has (a handful), kept for good:
    // the connections that use them come and go.
    static COPIES: std::sync::Mutex<Vec<(usize, Methods)>> = std::sync::Mutex::new(Vec::new());
    let failed = || Failure::Other("SQLite did not give its file for the database".into());
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is the open connection's; FILE_POINTER writes the
    // main database's `sqlite3_file *` into `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return Err(failed());
    }
    // SAFETY: `file` is the connection's open main database file, used by
    // this thread only; its methods are a static table of SQLite's, and the
    // copy put in its place lives for the rest of the process.
    unsafe {
        let methods = (*file).pMethods;
        if methods.is_null() {
            return Err(failed());
        }
        let mut copies = COPIES.lock().unwrap_or_else(|e| e.into_inner());
        let copy = match copies.iter().find(|(from, _)| *from == methods as usize) {
            Some((_, copy)) => *copy,
            None => {
                let mut copy = *methods;
                copy.xShmMap = None;
                let copy: Methods = Box::leak(Box::new(copy));
                copies.push((methods as usize, copy));
                copy
            }
        };
        (*file).pMethods = copy;
    }
    Ok(())
}

/// Whether a descriptor of this process is open on the object `ident` (found
/// through the `/proc/self/fd` magic links, which `statx` follows without
/// opening anything).
fn holds(proc_fds: &OwnedFd, ident: Ident) -> rustix::io::Result<bool> {
    let mut fds = rustix::fs::Dir::read_from(proc_fds)?;
    while let Some(entry) = fds.read() {
        let entry = entry?;
        let fd = entry.file_name().to_bytes();
        if fd == b"." || fd == b".." {
            continue;
        }
        if let Ok(st) = rustix::fs::statx(
            proc_fds,
            fd,
            AtFlags::empty(),
            rustix::fs::StatxFlags::BASIC_STATS | rustix::fs::StatxFlags::BTIME,
        ) && tree::file_type(&st) == FileType::RegularFile
            && Ident::of(&st) == ident
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A SQLite error, sorted into what waiting may cure and what it cannot.
fn sqlite(e: rusqlite::Error) -> Failure {
    let Some(code) = e.sqlite_error() else {
        return Failure::Other(e.to_string());
    };
    match code.extended_code {
        ffi::SQLITE_READONLY_ROLLBACK => Failure::Waited(
            "it has a hot journal (a writer stopped in the middle of a transaction) that the \
             server has not rolled back yet"
                .into(),
        ),
        c if c & 0xff == ffi::SQLITE_BUSY || c & 0xff == ffi::SQLITE_LOCKED => {
            Failure::Waited("it stayed locked by a writer".into())
        }
        _ => Failure::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(write: u8, read: u8) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&[0x10, 0x00, write, read]);
        h
    }

    #[test]
    fn databases_are_told_by_their_header_not_their_name() {
        assert_eq!(kind(&header(1, 1)), Kind::Database);
        assert_eq!(kind(&header(2, 2)), Kind::Wal);
        assert_eq!(kind(b"SQLite format 3"), Kind::Other);
        assert_eq!(kind(&header(1, 1)[..16]), Kind::Other);
        assert_eq!(kind(b""), Kind::Other);
        let mut wrong = header(1, 1);
        wrong[15] = b' ';
        assert_eq!(kind(&wrong), Kind::Other);
        assert_eq!(kind(&[0u8; HEADER]), Kind::Other);
    }

    #[test]
    fn a_real_database_probes_as_one_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("budget.data");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        std::fs::write(dir.path().join("notes.sqlite"), b"not a database at all").unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        let ident = |name: &str| Ident::of_path(&dir.path().join(name)).unwrap();
        let got = probe(&tree, b"budget.data", ident("budget.data")).unwrap();
        assert_eq!(got, Kind::Database);
        let got = probe(&tree, b"notes.sqlite", ident("notes.sqlite")).unwrap();
        assert_eq!(got, Kind::Other);
    }

    #[test]
    fn a_held_database_is_read_in_place_and_nothing_is_left_beside_it() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('kept');")
            .unwrap();
        drop(c);
        let names = || {
            let mut v: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let before = names();
        let tree = Tree::open(dir.path()).unwrap();
        let mut held = hold(&tree, b"db", Ident::of_path(&db).unwrap()).unwrap();
        let live = std::fs::read(&db).unwrap();
        assert_eq!(held.size(), live.len() as u64);
        let mut read = Vec::new();
        held.file().read_to_end(&mut read).unwrap();
        assert_eq!(read, live);
        // A writer cannot commit while the read transaction holds the file.
        let writer = Connection::open(&db).unwrap();
        writer.busy_timeout(Duration::ZERO).unwrap();
        writer
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES ('later')")
            .unwrap();
        let err = writer.execute_batch("COMMIT").unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy),
            "{err}"
        );
        held.release().unwrap();
        writer.execute_batch("COMMIT").unwrap();
        drop(writer);
        assert_eq!(names(), before);
        // This thread's root is still the host's.
        assert!(Path::new("/proc/self").exists());
    }
}
