//! One tar entry: its name and type checked, its metadata read from the
//! header (and pax records), its content copied, and the [`Tree`] asked to
//! create it.

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_tar::{Entry, EntryType};

use super::bounds::Expect;
use super::names::{self, EntryPath};
use super::source::{ChunkReader, Meter};
use super::stream::{refused, stream_error};
use super::tree::{Meta, Tree};
use crate::error::{Error, Result};

/// Check and create one entry.
pub(super) async fn one_entry(
    entry: &mut Entry<tokio_tar::Archive<ChunkReader>>,
    size: u64,
    tree: &mut Tree,
    expect: &Expect,
    archive: &Path,
    meter: &Meter,
    buf: &mut [u8],
) -> Result<()> {
    let kind = entry.header().entry_type();
    let raw = entry
        .path_bytes()
        .map_err(|e| stream_error(archive, meter, None, e))?
        .into_owned();
    let link = if matches!(kind, EntryType::Symlink | EntryType::Link) {
        Some(link_target(entry, archive, meter, &Lossy(&raw))?)
    } else {
        None
    };
    let names::Checked { path, hardlink } = names::check(kind, &raw, link.as_deref(), &expect.top)
        .map_err(|why| refused(archive, &Lossy(&raw), why))?;
    let meta = entry_meta(entry)
        .await
        .map_err(|e| stream_error(archive, meter, Some(&path as &dyn Display), e))?;
    match kind {
        EntryType::Regular => {
            let mut file = tree.create_file(&path)?;
            copy(entry, size, Some(&mut file), buf)
                .await
                .map_err(|e| copy_error(archive, meter, &path, tree, e))?;
            tree.finish_file(file, &path, meta)
        }
        EntryType::Directory => {
            skip(entry, size, archive, meter, &path, tree, buf).await?;
            tree.dir(&path, meta)
        }
        EntryType::Symlink => {
            skip(entry, size, archive, meter, &path, tree, buf).await?;
            tree.symlink(&path, link.as_deref().unwrap_or_default(), meta)
        }
        EntryType::Link => {
            let Some(target) = hardlink else {
                return Err(Error::Internal(
                    "a hardlink passed without its target".into(),
                ));
            };
            skip(entry, size, archive, meter, &path, tree, buf).await?;
            tree.hardlink(&path, &target)
        }
        other => Err(Error::Internal(format!(
            "entry type {other:?} passed the type check"
        ))),
    }
}

/// Ownership, mode and mtime from the header (a pax `mtime` keeps its fraction).
async fn entry_meta<R: AsyncRead + Unpin>(entry: &mut Entry<R>) -> std::io::Result<Meta> {
    let h = entry.header();
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| std::io::Error::other(format!("{what} {v} is out of range")))
    };
    let mut meta = Meta {
        mode: h.mode()?,
        uid: id(h.uid()?, "uid")?,
        gid: id(h.gid()?, "gid")?,
        mtime: header_mtime(h)?,
        mtime_nsec: 0,
    };
    if let Some(pax) = entry.pax_extensions().await? {
        for ext in pax {
            let ext = ext?;
            if ext.key_bytes() == b"mtime"
                && let Some((sec, nsec)) = ext.value().ok().and_then(pax_time)
            {
                meta.mtime = sec;
                meta.mtime_nsec = nsec;
            }
        }
    }
    Ok(meta)
}

/// The header's mtime, negative ones included: GNU tar stores a time before
/// 1970 in base-256 two's complement (a first byte of 0xff), which the tar
/// crate reads as a huge unsigned number.
fn header_mtime(h: &tokio_tar::Header) -> std::io::Result<i64> {
    let field = &h.as_old().mtime;
    if field[0] == 0xff {
        // Sign-extended: the value is the last 8 bytes, as two's complement.
        let mut last = [0u8; 8];
        last.copy_from_slice(&field[field.len() - 8..]);
        let v = i64::from_be_bytes(last);
        if field[..field.len() - 8].iter().all(|&b| b == 0xff) && v < 0 {
            return Ok(v);
        }
        return Err(std::io::Error::other("the mtime field is out of range"));
    }
    Ok(i64::try_from(h.mtime()?).unwrap_or(i64::MAX))
}

/// A pax time, `[-]seconds[.fraction]`.
fn pax_time(v: &str) -> Option<(i64, u32)> {
    let (sec, frac) = v.split_once('.').unwrap_or((v, ""));
    let sec: i64 = sec.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nsec: u32 = digits.parse().ok()?;
    if v.starts_with('-') && nsec > 0 {
        // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
        return Some((sec - 1, 1_000_000_000 - nsec));
    }
    if nsec >= 1_000_000_000 {
        nsec = 999_999_999;
    }
    Some((sec, nsec))
}

/// A link entry's target, which it must have.
pub(super) fn link_target<R: AsyncRead + Unpin>(
    entry: &Entry<R>,
    archive: &Path,
    meter: &Meter,
    name: &dyn Display,
) -> Result<Vec<u8>> {
    match entry.link_name_bytes() {
        Ok(Some(target)) => Ok(target.into_owned()),
        Ok(None) => Err(refused(archive, name, "is a link without a target")),
        Err(e) => Err(stream_error(archive, meter, Some(name), e)),
    }
}

/// Copy exactly `size` bytes of content into `out` (or nowhere).
async fn copy<R: AsyncRead + Unpin>(
    entry: &mut Entry<R>,
    size: u64,
    mut out: Option<&mut File>,
    buf: &mut [u8],
) -> std::result::Result<(), CopyError> {
    use std::io::Write;
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = entry
            .read(&mut buf[..want])
            .await
            .map_err(CopyError::Read)?;
        if n == 0 {
            return Err(CopyError::Read(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
        left -= n as u64;
    }
    Ok(())
}

/// Data carried by a directory or link entry (none in sane archives) is read
/// and dropped; it was counted against the size bound.
async fn skip<R: AsyncRead + Unpin>(
    entry: &mut Entry<R>,
    size: u64,
    archive: &Path,
    meter: &Meter,
    path: &EntryPath,
    tree: &Tree,
    buf: &mut [u8],
) -> Result<()> {
    copy(entry, size, None, buf)
        .await
        .map_err(|e| copy_error(archive, meter, path, tree, e))
}

#[derive(Debug)]
enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

fn copy_error(archive: &Path, meter: &Meter, path: &EntryPath, tree: &Tree, e: CopyError) -> Error {
    match e {
        CopyError::Read(e) => stream_error(archive, meter, Some(path as &dyn Display), e),
        CopyError::Write(source) => Error::Io {
            action: "writing",
            path: tree.staging().join(OsStr::from_bytes(path.as_bytes())),
            source,
        },
    }
}

/// Raw name bytes, displayed.
pub(super) struct Lossy<'a>(pub(super) &'a [u8]);

impl Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_fraction() {
        assert_eq!(pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(pax_time("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(
            pax_time("1700000000.123456789123"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(pax_time("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(pax_time("x"), None);
        assert_eq!(pax_time("1.x"), None);
    }
}
