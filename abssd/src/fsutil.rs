//! Small filesystem and clock helpers shared by the state modules.
//!
//! Every state file is replaced atomically: a temporary file in the same
//! directory is written, fsynced, renamed over the target, and the directory is
//! fsynced, so a crash or a full disk leaves either the old or the new file.
//! A file replaced in place by an operation is kept beside it under a name
//! made here ([`bak_path`], [`hidden_sibling`]) until the operation is done,
//! and removed with [`remove_path`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{OFlags, ResolveFlags};

use crate::error::{Error, IoContext, Result};

/// How a tree that others own (an instance's data, a staging directory an
/// archive fills) is walked from one of its directories: never out of it,
/// never through a symlink (`openat2`).
pub const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);
/// How a directory in such a tree is opened: a directory or nothing, not
/// through a symlink. `NONBLOCK` is harmless on a directory and keeps the open
/// itself from ever waiting (for a FIFO swapped in).
pub const OPEN_DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

/// Where [`open_beneath`] failed.
#[derive(Debug)]
pub enum Beneath {
    /// Opening the root.
    Root(std::io::Error),
    /// Opening the directory beneath it (a symlink on the way, or gone).
    Below(std::io::Error),
}

/// The directory `parent` (relative) beneath `root`, or `root` itself when
/// `parent` is empty. The root is configuration and may be a symlink an
/// administrator made; below it nothing is followed ([`BENEATH`]).
pub fn open_beneath(
    root: &Path,
    parent: &Path,
) -> std::result::Result<std::os::fd::OwnedFd, Beneath> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Beneath::Root(e.into()))?;
    if parent.as_os_str().is_empty() {
        return Ok(root_fd);
    }
    rustix::fs::openat2(
        &root_fd,
        parent,
        OPEN_DIR,
        rustix::fs::Mode::empty(),
        BENEATH,
    )
    .map_err(|e| Beneath::Below(e.into()))
}

/// Mode of directories the daemon creates.
pub const DIR_MODE: u32 = 0o750;
/// Mode of archives, index, registry and logs.
pub const FILE_MODE: u32 = 0o640;

/// Create a directory and its parents with [`DIR_MODE`].
pub fn ensure_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .at("creating directory", path)
}

/// Atomically replace `path` with `bytes` (mode [`FILE_MODE`]). On failure
/// the temporary file is removed and `path` is as it was; a full filesystem is
/// [`Error::NoSpace`] naming `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes)?;
    replace(tmp, path)
}

/// First half of [`atomic_write`]: `bytes` in a synced temporary file beside
/// `path` (`.<name>.XXXXXX.tmp`), removed again if dropped.
pub fn write_temp(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    write_temp_with(path, |out| out.write_all(bytes).at("writing", path))
}

/// [`write_temp`] of what `write` writes to the writer it is given (buffered).
/// A write that fails on a full filesystem is [`Error::NoSpace`] naming
/// `path`, whatever `write` made of it.
pub fn write_temp_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<tempfile::NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_dir(dir)?;
    // A full filesystem is said as such, naming the file, not its temporary.
    let fail = |action: &'static str, at: &Path, source: std::io::Error| match source.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::NoSpace {
            path: path.to_owned(),
            source,
        },
        _ => Error::Io {
            action,
            path: at.to_owned(),
            source,
        },
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(|e| fail("creating temporary file in", dir, e))?;
    // Dropping `tmp` on error removes the temporary file; the old file is untouched.
    let tmp_path = tmp.path().to_owned();
    let mut out = Recording {
        inner: std::io::BufWriter::with_capacity(256 << 10, tmp.as_file_mut()),
        failed: None,
    };
    let written = write(&mut out).and_then(|()| out.flush().at("writing", &tmp_path));
    if let Some(e) = out.failed.take() {
        return Err(fail("writing", &tmp_path, e));
    }
    written?;
    drop(out);
    tmp.as_file()
        .sync_all()
        .map_err(|e| fail("syncing", tmp.path(), e))?;
    Ok(tmp)
}

/// A writer that keeps the first error of the one it wraps.
struct Recording<W> {
    inner: W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Write for Recording<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.keep(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| self.keep(e))
    }
}

impl<W> Recording<W> {
    fn keep(&mut self, e: &std::io::Error) {
        if self.failed.is_none() {
            self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
    }
}

/// Second half of [`atomic_write`]: rename the temporary file over `path` and
/// make the rename durable.
pub fn replace(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.persist(path)
        .map_err(|e| e.error)
        .at("replacing", path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Remove temporary files [`write_temp`] left beside `path` (a process killed
/// between writing and renaming). Returns what was removed.
pub fn remove_stale_temps(path: &Path) -> Vec<std::path::PathBuf> {
    remove_temps(path.parent().unwrap_or(Path::new(".")), &temp_prefix(path))
}

/// Remove the files in `dir` named `<prefix>*.tmp`. Returns what was removed.
pub fn remove_temps(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".tmp"))
        })
        .filter(|p| fs::remove_file(p).is_ok())
        .collect()
}

fn temp_prefix(path: &Path) -> String {
    format!(".{}.", file_name(path))
}

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("syncing directory", dir)
}

/// Open a file for appending (created with [`FILE_MODE`]).
pub fn open_append(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        ensure_dir(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .at("opening", path)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The tag of a file kept when an operation replaced it: `<name>.bak-<stamp>`.
pub const BAK: &str = ".bak-";

/// `path` with `suffix` appended to its last component.
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Where the file at `path` is kept when it is replaced at `stamp`:
/// `<path>.bak-<stamp>`.
pub fn bak_path(path: &Path, stamp: &str) -> PathBuf {
    suffixed(path, &format!("{BAK}{stamp}"))
}

/// A hidden sibling of `path` tagged `tag` at `stamp`: `.<name>.<tag>-<stamp>`
/// in the same directory (so a rename to `path` is atomic), which globs like
/// nginx's `sites-enabled/*` do not match.
pub fn hidden_sibling(path: &Path, tag: &str, stamp: &str) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("/"));
    dir.join(format!(".{}.{tag}-{stamp}", file_name(path)))
}

/// Remove a directory tree if it exists; `Ok(false)` when it was not there.
///
/// The trees removed this way are filled by others (an instance's previous
/// data, a staging directory an archive filled): std's `remove_dir_all` walks
/// them through directory descriptors (`openat` with `O_NOFOLLOW`,
/// `unlinkat`), so a symlink swapped in during the walk is removed, never
/// followed.
pub fn remove_tree(path: &Path) -> Result<bool> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).at("removing", path),
    }
}

/// Remove a file, symlink or directory tree ([`remove_tree`]); nothing there
/// is fine.
pub fn remove_path(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path).map(|_| ()),
        Ok(_) => fs::remove_file(path).at("removing", path),
        Err(_) => Ok(()),
    }
}

/// Current UTC time, whole seconds (truncated), `Z` suffix: `2025-01-02T03:04:05Z`.
pub fn now_utc() -> String {
    utc(jiff::Timestamp::now())
}

/// A UTC time as the index writes it: whole seconds (truncated), `Z` suffix.
pub fn utc(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Current UTC time with milliseconds, for events.
pub fn now_utc_millis() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A UTC time as used in backup ids: `YYYYMMDD-HHMMSS`.
pub fn compact(at: jiff::Timestamp) -> String {
    at.strftime("%Y%m%d-%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn kept_copies_are_named_beside_the_original() {
        let unit = Path::new("/etc/systemd/system/abssctl-a.service");
        assert_eq!(
            bak_path(unit, "20250102-030405-abcdef"),
            Path::new("/etc/systemd/system/abssctl-a.service.bak-20250102-030405-abcdef")
        );
        let link = Path::new("/etc/nginx/sites-enabled/a.conf");
        assert_eq!(
            hidden_sibling(link, "bak", "x"),
            Path::new("/etc/nginx/sites-enabled/.a.conf.bak-x")
        );
        assert_eq!(
            suffixed(Path::new("/srv/a/data"), ".pre-restore-x"),
            Path::new("/srv/a/data.pre-restore-x")
        );
    }

    #[test]
    fn remove_path_takes_trees_files_and_links_but_never_follows() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("sub/link")).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();

        remove_path(&tree).unwrap();
        remove_path(&link).unwrap();
        remove_path(&dir.path().join("absent")).unwrap();
        assert!(fs::symlink_metadata(&tree).is_err());
        assert!(fs::symlink_metadata(&link).is_err());
        assert!(outside.join("keep").exists(), "a link's target was removed");
        assert!(!remove_tree(&tree).unwrap());
    }

    #[test]
    fn timestamps_have_the_python_shape() {
        let t = now_utc();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
        assert_eq!(compact(jiff::Timestamp::now()).len(), 15);
    }
}
