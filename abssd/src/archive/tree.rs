//! The tree being archived (an instance's data root), reached only through
//! descriptors.
//!
//! Its user owns every name below the root and may rename, swap or replace any
//! of them at any instant, between the walk and the tar pass or in the middle
//! of either. So the root is opened once and held for the whole create; every
//! directory below it is opened from a directory descriptor with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, every file
//! with `O_NOFOLLOW | O_NONBLOCK`, and what was opened is `statx`ed and used
//! only when its type, device, inode and birth time are those the walk saw. A
//! symlink, a FIFO or another file swapped in is never read through, never
//! blocks, and is reported as [`Gone`].
//!
//! At most one directory besides the root is kept open (the last one used;
//! archives and walks visit a directory's entries together), and two for the
//! moment a child is opened from it, so the depth of a tree never costs
//! descriptors; a path longer than `PATH_MAX` is opened in pieces.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Statx, StatxFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};

// How directories below the root are reached, and opened.
use crate::fsutil::{BENEATH, OPEN_DIR as DIR};
/// How files are opened for reading: never through a symlink, and without
/// waiting for a writer if a FIFO was swapped in (regular files ignore
/// `O_NONBLOCK`; anything else is refused once its descriptor is `statx`ed).
const FILE: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);
/// POSIX record locks, which SQLite takes, belong to the *process*: closing
/// any descriptor of ours on a database's inode silently drops SQLite's lock
/// on it, whichever name the descriptor was opened by. The instance's user can
/// give one database two names (a hard link into another instance's tree, or
/// elsewhere in its own), so while a snapshot holds a database
/// ([`super::snapshot::hold`], the exclusive side), no live data file is
/// opened or closed anywhere in the daemon: every [`LiveFile`] (and the walk's
/// sparse check) lives on the shared side, and one waiting for a snapshot to
/// end waits at most that long (one database's read).
static LIVE: RwLock<()> = RwLock::new(());

/// The shared side of [`LIVE`], waited for if a snapshot holds a database.
fn shared() -> RwLockReadGuard<'static, ()> {
    match LIVE.try_read() {
        Ok(guard) => guard,
        Err(TryLockError::WouldBlock) => {
            // A snapshot holds a database: tests check that a create of
            // another instance waits here instead of dropping its lock.
            hook_point!("create::live-file-waits");
            LIVE.read().unwrap_or_else(PoisonError::into_inner)
        }
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
    }
}

/// The exclusive side of [`LIVE`], for as long as SQLite holds a database
/// (and our own descriptor on it, opened with [`Tree::open_file_in`], is open).
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LIVE.write().unwrap_or_else(PoisonError::into_inner)
}

/// A live data file opened through a [`Tree`]: a [`File`] that is closed
/// before the shared side of [`LIVE`] it was opened under is released (the
/// fields drop in order).
#[derive(Debug)]
pub struct LiveFile {
    file: File,
    _open: Option<RwLockReadGuard<'static, ()>>,
}

impl LiveFile {
    /// A file outside any instance's reach (unit and site files): no snapshot
    /// can hold it.
    fn trusted(file: File) -> LiveFile {
        LiveFile { file, _open: None }
    }
}

impl Deref for LiveFile {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl DerefMut for LiveFile {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.file
    }
}

impl std::io::Read for LiveFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

impl AsFd for LiveFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl std::io::Seek for LiveFile {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// The longest piece of a relative path given to one `openat2` (`PATH_MAX`
/// counts the terminating NUL).
const MAX_PIECE: usize = 4095;

/// What is asked of `statx`: the basic fields, and the birth time that tells a
/// new file from an old one that had the same inode number.
const WANT: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::BTIME);

/// `statx` of `name` in `dir`, not following a symlink.
pub fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<Statx> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, WANT)
}

/// `statx` of an open descriptor.
pub fn stat_fd(fd: impl AsFd) -> rustix::io::Result<Statx> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, WANT)
}

/// The type of what `st` describes.
pub fn file_type(st: &Statx) -> FileType {
    FileType::from_raw_mode(st.stx_mode.into())
}

/// Which object a name led to: device, inode and (where the filesystem keeps
/// it) birth time, so that a file removed and replaced by one that reuses its
/// inode number is still told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ident {
    dev: (u32, u32),
    ino: u64,
    born: Option<(i64, u32)>,
}

impl Ident {
    /// The identity of what `st` describes.
    pub fn of(st: &Statx) -> Ident {
        Ident {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            born: (st.stx_mask & StatxFlags::BTIME.bits() != 0)
                .then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec)),
        }
    }

    /// The identity of the file at `path` (following symlinks).
    pub fn of_path(path: &Path) -> Result<Ident> {
        rustix::fs::statx(rustix::fs::CWD, path, AtFlags::empty(), WANT)
            .map(|st| Ident::of(&st))
            .map_err(std::io::Error::from)
            .at("reading", path)
    }
}

/// Why something the walk saw cannot be archived as seen.
#[derive(Debug)]
pub enum Gone {
    /// It was replaced, removed or changed type since the walk saw it (a
    /// reason for people); it is left out.
    Changed(String),
    /// Any other failure, which fails the create.
    Failed(Error),
}

impl From<Error> for Gone {
    fn from(e: Error) -> Gone {
        Gone::Failed(e)
    }
}

/// A directory tree opened once at its root.
#[derive(Debug)]
pub struct Tree {
    /// The root, held from the walk to the end of the tar pass.
    root: OwnedFd,
    /// Its path, for messages only.
    path: PathBuf,
    /// What the root is.
    root_stat: Statx,
    /// The directory used last (relative path, descriptor): its entries come
    /// together, and its children are opened from it.
    cached: Mutex<Option<(Vec<u8>, OwnedFd)>>,
}

impl Tree {
    /// Open the directory at `path`, the configured data root. Its parent is
    /// the operator's and is followed; a symlink in the root's own place only
    /// if root owns it: the instance's user may own the directory holding the
    /// data root, and could otherwise point a backup at any directory.
    pub fn open(path: &Path) -> Result<Tree> {
        let root = open_root(path)?;
        let root_stat = stat_fd(&root)
            .map_err(std::io::Error::from)
            .at("reading", path)?;
        Ok(Tree {
            root,
            path: path.to_owned(),
            root_stat,
            cached: Mutex::new(None),
        })
    }

    /// The root's metadata.
    pub fn root_stat(&self) -> &Statx {
        &self.root_stat
    }

    /// The path of `rel` on disk, for messages.
    pub fn display(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(OsStr::from_bytes(rel))
        }
    }

    /// Run `f` on the directory `rel` (relative to the root, `/`-separated, no
    /// `.` or `..`; empty for the root), opened without following a symlink
    /// and, when `expect` is given, only if it is still that directory.
    pub fn with_dir<T>(
        &self,
        rel: &[u8],
        expect: Option<Ident>,
        f: impl FnOnce(BorrowedFd<'_>) -> Result<T, Gone>,
    ) -> Result<T, Gone> {
        if rel.is_empty() {
            return f(self.root.as_fd());
        }
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let hit = cached.as_ref().is_some_and(|(r, _)| r == rel);
        if hit && let (Some(expect), Some((_, fd))) = (expect, cached.as_ref()) {
            let st = stat_fd(fd).map_err(|e| self.failed("reading", rel, e.into()))?;
            if Ident::of(&st) != expect {
                return Err(Gone::Changed(
                    "was replaced by another directory during the backup".into(),
                ));
            }
        }
        if !hit {
            let (parent, name) = split(rel);
            // Drop the cached descriptor before opening another, unless the new
            // one is opened from it: never more than two at a time.
            let fd = match cached.take() {
                Some((r, fd)) if r == parent => openat_dir(fd.as_fd(), name),
                _ => self.open_beneath(rel),
            }
            .map_err(|e| self.gone(rel, e, "directory"))?;
            if let Some(expect) = expect {
                let st = stat_fd(&fd).map_err(|e| self.failed("reading", rel, e.into()))?;
                if Ident::of(&st) != expect {
                    return Err(Gone::Changed(
                        "was replaced by another directory during the backup".into(),
                    ));
                }
            }
            *cached = Some((rel.to_vec(), fd));
        }
        let fd = cached.as_ref().map(|(_, fd)| fd.as_fd());
        match fd {
            Some(fd) => f(fd),
            None => Err(Gone::Failed(Error::Internal(
                "directory cache emptied while in use".into(),
            ))),
        }
    }

    /// Open the regular file `rel` for reading, only if it is still the file the
    /// walk saw (`expect`): a symlink, FIFO, socket or another file in its place
    /// is [`Gone::Changed`], and nothing is read through it. Opened and closed
    /// while no snapshot holds a database ([`LiveFile`]).
    pub fn open_file(&self, rel: &[u8], expect: Ident) -> Result<LiveFile, Gone> {
        let open = shared();
        let (parent, name) = split(rel);
        let fd = self.with_dir(parent, None, |dir| {
            rustix::fs::openat(dir, name, FILE, Mode::empty())
                .map_err(|e| self.gone(rel, e, "file"))
        })?;
        let st = stat_fd(&fd).map_err(|e| self.failed("reading", rel, e.into()))?;
        check_file(&st, expect).map_err(Gone::Changed)?;
        Ok(LiveFile {
            file: File::from(fd),
            _open: Some(open),
        })
    }

    /// [`Tree::open_file`] from `dir`, a descriptor [`Tree::dir_fd`] gave on
    /// `rel`'s parent (the directory the walk saw, wherever it was moved since).
    pub fn open_file_in(
        &self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        expect: Ident,
    ) -> Result<File, Gone> {
        let (_, name) = split(rel);
        let fd = rustix::fs::openat(dir, name, FILE, Mode::empty())
            .map_err(|e| self.gone(rel, e, "file"))?;
        let st = stat_fd(&fd).map_err(|e| self.failed("reading", rel, e.into()))?;
        check_file(&st, expect).map_err(Gone::Changed)?;
        Ok(File::from(fd))
    }

    /// A descriptor of its own on the directory `rel`, opened like
    /// [`Tree::with_dir`] opens it (never through a symlink).
    pub fn dir_fd(&self, rel: &[u8]) -> Result<OwnedFd, Gone> {
        self.with_dir(rel, None, |dir| {
            rustix::io::fcntl_dupfd_cloexec(dir, 0)
                .map_err(|e| self.failed("opening", rel, e.into()))
        })
    }

    /// Open `rel` from the root, in pieces of at most [`MAX_PIECE`] bytes.
    fn open_beneath(&self, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
        let mut at: Option<OwnedFd> = None;
        for piece in pieces(rel) {
            let from = at.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let fd = rustix::fs::openat2(from, piece, DIR, Mode::empty(), BENEATH)?;
            at = Some(fd);
        }
        at.ok_or(Errno::INVAL)
    }

    fn gone(&self, rel: &[u8], e: Errno, what: &str) -> Gone {
        match e {
            // A symlink where the walk saw a directory or file (O_NOFOLLOW or
            // RESOLVE_NO_SYMLINKS), a file where it saw a directory.
            Errno::LOOP | Errno::NOTDIR => Gone::Changed(format!(
                "was replaced during the backup (a symlink or non-{what} is now in its place); not followed"
            )),
            // A socket opened as a file.
            Errno::NXIO => Gone::Changed(format!(
                "was replaced during the backup by something that is not a {what}"
            )),
            Errno::NOENT => Gone::Changed("file removed before we read it".into()),
            // A lease its owner holds (`F_SETLEASE`): the open would wait up to
            // the kernel's lease-break time, with the instance locked.
            Errno::AGAIN => Gone::Changed(format!(
                "is leased by its owner, who is writing it (opening the {what} would wait); not read"
            )),
            // RESOLVE_BENEATH refused a path leaving the tree (cannot happen
            // without `..`, which walked names never contain).
            Errno::XDEV => Gone::Changed(format!(
                "was replaced during the backup by a path leaving {}",
                self.path.display()
            )),
            e => self.failed("opening", rel, e.into()),
        }
    }

    fn failed(&self, action: &'static str, rel: &[u8], source: std::io::Error) -> Gone {
        Gone::Failed(Error::Io {
            action,
            path: self.display(rel),
            source,
        })
    }
}

/// See [`Tree::open`].
fn open_root(path: &Path) -> Result<OwnedFd> {
    let follow = DIR.difference(OFlags::NOFOLLOW);
    let io = |action: &'static str, e: Errno| Error::Io {
        action,
        path: path.to_owned(),
        source: e.into(),
    };
    let not_dir = || {
        Error::Environment(format!(
            "{} is not a directory; check the instance's paths.root in the registry",
            path.display()
        ))
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return rustix::fs::open(path, follow, Mode::empty()).map_err(|e| io("reading", e));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = rustix::fs::open(parent, follow, Mode::empty()).map_err(|e| match e {
        Errno::NOTDIR => not_dir(),
        e => io("reading", e),
    })?;
    let name = name.as_bytes();
    match rustix::fs::openat(&dir, name, DIR, Mode::empty()) {
        Ok(fd) => Ok(fd),
        // `O_NOFOLLOW | O_DIRECTORY` on a symlink fails with either.
        Err(Errno::LOOP | Errno::NOTDIR) => {
            let link = stat_at(dir.as_fd(), name).map_err(|e| io("reading", e))?;
            if file_type(&link) != FileType::Symlink {
                return Err(not_dir());
            }
            if link.stx_uid != 0 {
                return Err(Error::Environment(format!(
                    "{} is a symlink owned by uid {}, not by root: not followed, nothing was \
                     archived. Point the registry's paths.root at the real directory",
                    path.display(),
                    link.stx_uid
                )));
            }
            let target = rustix::fs::readlinkat(&dir, name, Vec::new())
                .map_err(|e| io("reading link", e))?;
            // The same link still: not one swapped in after its owner was checked.
            let again = stat_at(dir.as_fd(), name).map_err(|e| io("reading", e))?;
            if Ident::of(&again) != Ident::of(&link) {
                return Err(Error::Environment(format!(
                    "{} was replaced while it was being opened; nothing was archived, retry",
                    path.display()
                )));
            }
            // A relative target is relative to the link's directory.
            rustix::fs::openat(&dir, target.as_bytes(), follow, Mode::empty()).map_err(
                |e| match e {
                    Errno::NOTDIR => not_dir(),
                    e => io("reading", e),
                },
            )
        }
        Err(e) => Err(io("reading", e)),
    }
}

/// Open the directory `name` (one component) in `dir`, never through a symlink.
fn openat_dir(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, DIR, Mode::empty())
}

/// Open a file at a path the daemon trusts (a unit or site file; a symlink there
/// is followed, as the Python tool does for the enabled site) for reading, only
/// if it is still the regular file the walk saw.
pub fn open_trusted(path: &Path, expect: Ident) -> Result<LiveFile, Gone> {
    let fd =
        rustix::fs::open(path, FILE.difference(OFlags::NOFOLLOW), Mode::empty()).map_err(|e| {
            match e {
                Errno::NOENT => Gone::Changed("file removed before we read it".into()),
                Errno::NXIO => {
                    Gone::Changed("was replaced during the backup by something not a file".into())
                }
                e => Gone::Failed(Error::Io {
                    action: "opening",
                    path: path.to_owned(),
                    source: e.into(),
                }),
            }
        })?;
    let st = stat_fd(&fd)
        .map_err(std::io::Error::from)
        .at("reading", path)?;
    check_file(&st, expect).map_err(Gone::Changed)?;
    Ok(LiveFile::trusted(File::from(fd)))
}

/// Most extents [`holes_at`] walks; a file cut into more is counted by its
/// blocks instead (an upper bound: it is sparse, and only an attacker makes
/// files like that).
const MAX_EXTENTS: u32 = 65_536;

/// Bytes of the regular file `name` in `dir` that are holes, measured with
/// `SEEK_DATA`/`SEEK_HOLE` on a descriptor of it. Its block count alone is no
/// measure: compressing filesystems (ZFS, btrfs) store a file in fewer blocks
/// than its size, and ext4 keeps tiny files inline, in no block at all.
/// `Ok(None)` when `name` is no longer the file `st` describes.
pub fn holes_at(dir: BorrowedFd<'_>, name: &[u8], st: &Statx) -> rustix::io::Result<Option<u64>> {
    use rustix::fs::SeekFrom;
    let size = st.stx_size;
    let by_blocks = size.saturating_sub(st.stx_blocks.saturating_mul(512));
    if by_blocks == 0 {
        return Ok(Some(0));
    }
    // Closed before the guard goes (see [`LiveFile`]).
    let _open = shared();
    let fd = match rustix::fs::openat(dir, name, FILE, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::LOOP | Errno::NXIO | Errno::AGAIN) => return Ok(None),
        Err(e) => return Err(e),
    };
    if check_file(&stat_fd(&fd)?, Ident::of(st)).is_err() {
        return Ok(None);
    }
    let (mut at, mut holes) = (0u64, 0u64);
    for _ in 0..MAX_EXTENTS {
        if at >= size {
            return Ok(Some(holes));
        }
        let data = match rustix::fs::seek(&fd, SeekFrom::Data(at)) {
            Ok(data) => data,
            // No data from `at` to the end.
            Err(Errno::NXIO) => return Ok(Some(holes + (size - at))),
            Err(e) => return Err(e),
        };
        holes += data.saturating_sub(at);
        at = rustix::fs::seek(&fd, SeekFrom::Hole(data))?;
    }
    Ok(Some(by_blocks))
}

fn check_file(st: &Statx, expect: Ident) -> std::result::Result<(), String> {
    if file_type(st) != FileType::RegularFile {
        return Err(
            "was replaced during the backup by something that is not a regular file; not read"
                .into(),
        );
    }
    if Ident::of(st) != expect {
        return Err("was replaced by another file during the backup".into());
    }
    Ok(())
}

/// `(parent, name)` of a relative path; the parent of a top-level name is empty.
pub fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

/// `rel` cut at `/` into pieces of at most [`MAX_PIECE`] bytes (a component is
/// at most 255 bytes, so one always fits).
fn pieces(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = rel;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= MAX_PIECE {
            rest.len()
        } else {
            rest[..=MAX_PIECE]
                .iter()
                .rposition(|&b| b == b'/')
                .unwrap_or(rest.len())
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail.strip_prefix(b"/").unwrap_or(tail);
        Some(piece)
    })
}

/// A relative path joined from a parent and a name.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        rel.extend_from_slice(parent);
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    rel
}

/// A symlink target as read, as a path.
pub fn target_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_measured_not_guessed_from_blocks() {
        use std::io::{Seek, Write};
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(dir.path(), DIR, Mode::empty()).unwrap();
        // 64 MiB with 4 KiB of data at 1 MiB: the rest is holes.
        let mut f = std::fs::File::create(dir.path().join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(std::io::SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
        f.sync_all().unwrap();
        let st = stat_at(fd.as_fd(), b"sparse").unwrap();
        let holes = holes_at(fd.as_fd(), b"sparse", &st).unwrap().unwrap();
        assert!(holes < 64 << 20, "{holes}");
        assert!(holes >= (64 << 20) - (1 << 20), "{holes}");
        // Dense and tiny files have none, whatever their block counts say.
        std::fs::write(dir.path().join("dense"), vec![1u8; 100_000]).unwrap();
        std::fs::write(dir.path().join("tiny"), b"x").unwrap();
        for name in [&b"dense"[..], b"tiny"] {
            let mut st = stat_at(fd.as_fd(), name).unwrap();
            // As a compressing filesystem would report it.
            st.stx_blocks = 0;
            assert_eq!(holes_at(fd.as_fd(), name, &st).unwrap(), Some(0));
        }
        // Replaced since the stat: not measured, said so.
        let st = stat_at(fd.as_fd(), b"dense").unwrap();
        std::fs::remove_file(dir.path().join("dense")).unwrap();
        std::fs::write(dir.path().join("dense"), vec![1u8; 10]).unwrap();
        let mut st2 = st;
        st2.stx_blocks = 0;
        assert_eq!(holes_at(fd.as_fd(), b"dense", &st2).unwrap(), None);
    }

    #[test]
    fn long_paths_are_cut_into_pieces_at_slashes() {
        let comp = "x".repeat(200);
        let rel = vec![comp.as_str(); 50].join("/");
        let got: Vec<&[u8]> = pieces(rel.as_bytes()).collect();
        assert!(got.len() >= 3, "{}", got.len());
        assert!(got.iter().all(|p| p.len() <= MAX_PIECE && !p.is_empty()));
        assert!(
            got.iter()
                .all(|p| !p.starts_with(b"/") && !p.ends_with(b"/"))
        );
        assert_eq!(got.join(&b'/'), rel.as_bytes());
        assert_eq!(pieces(b"a/b").collect::<Vec<_>>(), [b"a/b"]);
    }

    #[test]
    fn split_and_join_are_inverse() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
        assert_eq!(join(b"", b"c"), b"c");
    }
}
