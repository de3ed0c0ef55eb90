//! SQLite snapshots of a running instance's databases (`--consistency
//! snapshot`): SQLite itself copies the last committed state, all pages in one
//! step of the online backup API, from a read-only connection, into a file in
//! the [scratch](crate::scratch) directory.
//!
//! SQLite opens a database by *path* (and its `-journal` by that path plus a
//! suffix), and every directory on that path below the data root belongs to
//! the instance's user, who may swap one for a symlink between SQLite's checks
//! and its `open()`. So the snapshot runs on a short-lived thread of its own
//! whose filesystem root is the database's directory, opened through the
//! [`Tree`] like any file of the walk:
//!
//! 1. the directory is opened beneath the data root without following a
//!    symlink, and must still hold the file the walk saw (type, device, inode,
//!    birth time);
//! 2. on a new `std::thread` (never a pooled thread: its root changes for
//!    good), the *target* connection is opened first, by its absolute path,
//!    with `journal_mode=OFF` so that SQLite never opens a journal for it by
//!    path later, and SQLite's random generator is seeded while `/dev/urandom`
//!    is still the host's;
//! 3. `unshare(CLONE_FS)` (this thread only), `fchdir(dir)`, `chroot(".")`:
//!    from here every path SQLite opens (`/<name>`, `/<name>-journal`)
//!    resolves inside that one directory, whatever is renamed around it;
//! 4. the source is opened as `/<name>` with `SQLITE_OPEN_READONLY |
//!    SQLITE_OPEN_NOFOLLOW` (a read-only connection never writes, deletes or
//!    rolls back anything beside the live database) and a read transaction is
//!    begun; then the process's descriptors are looked through
//!    (`/proc/self/fd`, opened before the chroot) for one on the file the walk
//!    saw: only SQLite can hold one, so a hard link swapped in and out again
//!    around the open is caught even if the name is back in place afterwards;
//! 5. the backup copies every page in one step (a write by another connection
//!    restarts a copy made in small steps), both connections close, the
//!    thread ends; the name is `statx`ed once more and must still be the file
//!    the walk saw.
//!
//! POSIX record locks (`fcntl`), which SQLite uses, belong to the *process*:
//! closing any descriptor of ours on the live database while SQLite holds its
//! SHARED lock silently drops that lock, and a writer could then commit under
//! the copy. The header probe ([`probe`]) closes its descriptor long before (at
//! planning), and nothing else of ours may open the file while a snapshot runs
//! (the descriptor check above only `statx`es through `/proc`, it opens
//! nothing).
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

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, ffi};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::tree::{self, Gone, Ident, Tree};
use crate::error::{Error, Result};
use crate::scratch::{Scratch, ScratchFile};

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

/// Snapshot the database `rel` of `tree` (the file the walk saw, `ident`)
/// into a scratch file. A database replaced or removed since the walk is
/// [`Gone::Changed`]; one SQLite cannot read in time fails the create.
pub fn take(tree: &Tree, rel: &[u8], ident: Ident, scratch: &Scratch) -> Result<Taken, Gone> {
    let path = tree.display(rel);
    let (parent, name) = tree::split(rel);
    let dir = tree.dir_fd(parent)?;
    let size = still(&dir, name, ident, &path)?;
    let out = scratch.file(&path, size)?;
    // The directory is open and holds the file the walk saw: tests swap
    // names here, after the last check made by path and before SQLite opens.
    hook_point!("create::before-snapshot");
    // One retry: a file swapped in and out again around SQLite's open.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = on_own_thread(&dir, name, &out, ident);
        hook_point!("create::snapshot-taken");
        still(&dir, name, ident, &path)?;
        match outcome {
            Ok(()) => break,
            Err(Failure::NotTheFile) if attempt < 2 => {
                tracing::warn!(path = %path.display(), "SQLite opened another file than the walk saw; trying again");
                out.file
                    .set_len(0)
                    .map_err(|e| io("truncating", scratch.path(), e))?;
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
    }
    let size = out
        .file
        .metadata()
        .map_err(|e| io("reading", scratch.path(), e))?
        .len();
    Ok(Taken {
        file: rewound(out.into_file()?)?,
        size,
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

fn rewound(mut file: std::fs::File) -> Result<std::fs::File, Gone> {
    use std::io::Seek;
    file.rewind()
        .map_err(|e| Gone::Failed(io("reading", Path::new("snapshot"), e)))?;
    Ok(file)
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Run one snapshot attempt on a thread of its own (its root changes).
///
/// SQLite opens files without `O_NONBLOCK`: a FIFO the instance's user swaps
/// in for the database or its journal, after the last check and before
/// SQLite's `open()`, would stop that thread, and the create with the instance
/// locked, for good. So while it runs, every [`UNBLOCK_EVERY`] this thread
/// opens such a FIFO for writing without blocking (which succeeds only when a
/// reader waits in `open()`) and closes it at once: SQLite reads an empty
/// file, the descriptor check fails, and the name is found replaced.
fn on_own_thread(
    dir: &OwnedFd,
    name: &[u8],
    out: &ScratchFile,
    ident: Ident,
) -> std::result::Result<(), Failure> {
    let other = |e: std::io::Error| Failure::Other(e.to_string());
    let thread_dir = rustix::io::fcntl_dupfd_cloexec(dir, 0).map_err(|e| other(e.into()))?;
    let target = out
        .path()
        .map(Path::to_owned)
        .ok_or_else(|| Failure::Other("the scratch file has no name".into()))?;
    let thread_name = name.to_vec();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("abssd-snapshot".into())
        .spawn(move || {
            let _ = tx.send(snapshot_in(thread_dir, &thread_name, &target, ident));
        })
        .map_err(other)?;
    let outcome = loop {
        match rx.recv_timeout(UNBLOCK_EVERY) {
            Ok(outcome) => break outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => unblock_fifos(dir, name),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break Err(Failure::Other("the snapshot thread panicked".into()));
            }
        }
    };
    let _ = handle.join();
    outcome
}

/// How often a running snapshot is checked for a FIFO it may wait on.
const UNBLOCK_EVERY: Duration = Duration::from_secs(1);

/// Release a reader waiting in `open()` on a FIFO at `name` or its journal.
fn unblock_fifos(dir: &OwnedFd, name: &[u8]) {
    for suffix in [&b""[..], b"-journal", b"-wal"] {
        let mut path = name.to_vec();
        path.extend_from_slice(suffix);
        let Ok(st) = tree::stat_at(dir.as_fd(), &path) else {
            continue;
        };
        if tree::file_type(&st) != FileType::Fifo {
            continue;
        }
        // Opens nothing but a FIFO with a waiting reader (ENXIO otherwise, a
        // symlink is refused); whatever it opened is closed unwritten.
        let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::openat(dir, path.as_slice(), flags, Mode::empty()) {
            tracing::warn!("a FIFO was put in place of a database being snapshotted; released");
            drop(fd);
        }
    }
}

/// Steps 2 to 5 of the module comment. Runs on its own thread, which it
/// leaves chrooted: it must end when this returns.
fn snapshot_in(
    dir: OwnedFd,
    name: &[u8],
    target: &Path,
    ident: Ident,
) -> std::result::Result<(), Failure> {
    let sys = |what: &str, e: rustix::io::Errno| Failure::Other(format!("{what}: {e}"));
    let proc_fds = rustix::fs::open(
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys("opening /proc/self/fd", e))?;
    let mut dst = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE,
    )
    .map_err(sqlite)?;
    // No journal for the copy (SQLite would open it by path inside the
    // chroot), no fsync (the archive is synced, the copy is thrown away), and
    // SQLite's random generator seeded now, from the host's /dev/urandom.
    let mode: String = dst
        .query_row("PRAGMA journal_mode=OFF", [], |r| r.get(0))
        .map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("off") {
        return Err(Failure::Other(format!(
            "the copy's journal mode stayed {mode}"
        )));
    }
    dst.execute_batch("PRAGMA synchronous=OFF")
        .map_err(sqlite)?;
    dst.query_row("SELECT randomblob(16)", [], |_| Ok(()))
        .map_err(sqlite)?;

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
        match copy(&source, &mut dst, &proc_fds, ident, deadline) {
            Err(Failure::Waited(why)) if Instant::now() < deadline => {
                tracing::debug!(%why, "snapshot waits");
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// One read transaction on the source, copied whole into `dst`.
fn copy(
    source: &Path,
    dst: &mut Connection,
    proc_fds: &OwnedFd,
    ident: Ident,
    deadline: Instant,
) -> std::result::Result<(), Failure> {
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE,
    )
    .map_err(sqlite)?;
    src.busy_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(sqlite)?;
    src.execute_batch("PRAGMA temp_store=MEMORY; BEGIN")
        .map_err(sqlite)?;
    // Takes the SHARED lock, checks for a hot journal, reads page 1.
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(sqlite)?;
    if !holds(proc_fds, ident).map_err(|e| Failure::Other(format!("reading /proc/self/fd: {e}")))? {
        return Err(Failure::NotTheFile);
    }
    let step = Backup::new(&src, dst)
        .map_err(sqlite)?
        .step(-1)
        .map_err(sqlite)?;
    match step {
        StepResult::Done => {}
        StepResult::Busy | StepResult::Locked => {
            return Err(Failure::Waited("the database stayed locked".into()));
        }
        // `More` cannot follow a step of -1 (all pages); whatever else a newer
        // rusqlite may say, the copy is not whole.
        _ => {
            return Err(Failure::Other(
                "SQLite stopped the copy half-way; try again, or use --consistency stop".into(),
            ));
        }
    }
    src.execute_batch("COMMIT").map_err(sqlite)?;
    src.close().map_err(|(_, e)| sqlite(e))?;
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
    fn a_snapshot_is_the_database_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('kept');")
            .unwrap();
        drop(c);
        let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        let tree = Tree::open(dir.path()).unwrap();
        let scratch = Scratch::new(state.path());
        let taken = take(&tree, b"db", Ident::of_path(&db).unwrap(), &scratch).unwrap();
        assert!(taken.size >= 1024, "{}", taken.size);
        let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(before.len(), after.len());
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
        let copy = state.path().join("copy");
        let mut file = taken.file;
        std::io::copy(&mut file, &mut std::fs::File::create(&copy).unwrap()).unwrap();
        let c = Connection::open(&copy).unwrap();
        let x: String = c.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, "kept");
        // This thread's root is still the host's.
        assert!(Path::new("/proc/self").exists());
    }
}
