//! The streaming pass: tar entries written through the compression [`sink`](super::sink).
//!
//! It runs on a blocking thread (never an RPC worker): its futures are driven
//! there with `block_on`, and its file reads are plain blocking reads, which is
//! what that thread is for. zstd compresses on its own worker threads; the
//! archive bytes are hashed and written on another.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use abssd_proto::Algorithm;
use async_compression::Level;
use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use tokio::io::AsyncWriteExt;
use tokio_tar::{Builder, EntryType, Header, HeaderMode};

use super::member::{Body, Member, Origin};
use super::sink::{Encoder, HashingFile};
use super::skipped::{SkipKind, Skipped};
use super::tree;
use super::tree::{Gone, Ident};
use crate::error::{Error, IoContext, Result};

/// What the writer produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// sha256 of the archive bytes, hex.
    pub sha256: String,
    /// Archive size.
    pub size: u64,
    /// File content bytes archived.
    pub content_bytes: u64,
    /// Files left out because they changed after the walk.
    pub skipped: Vec<Skipped>,
    /// Databases archived as SQLite snapshots.
    pub snapshots: u64,
}

/// Compression settings for [`write`].
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Level (already validated).
    pub level: i32,
    /// zstd worker threads (0 = single-threaded).
    pub workers: u32,
}

/// Write `members` as a tar stream through `codec` into `file` (a new, empty
/// file), hashing the bytes as they are written. `progress(n)` gets the file
/// content bytes as they go in. Blocking: call it from a blocking thread. The
/// caller owns the file's name and removes it on error.
pub fn write(
    file: File,
    members: &[Member],
    codec: Codec,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Written> {
    let handle = tokio::runtime::Handle::current();
    handle.block_on(write_async(file, members, codec, progress))
}

async fn write_async(
    file: File,
    members: &[Member],
    codec: Codec,
    report: &mut (dyn FnMut(u64) + Send),
) -> Result<Written> {
    let mut content_bytes = 0;
    let mut progress = |n| {
        content_bytes += n;
        report(n);
    };
    let archive_err = write_error;
    let sink = HashingFile::new(file).map_err(archive_err)?;
    let level = Level::Precise(codec.level);
    let encoder = match codec.algorithm {
        Algorithm::Zstd => {
            // 4 MiB jobs (zstd's default at level 3 is 8 MiB) halve the workers'
            // buffers, keeping a create under 64 MiB of RSS, at no measurable
            // cost in ratio or speed.
            let params = [
                CParameter::nb_workers(codec.workers),
                CParameter::job_size(2 << 20),
            ];
            Encoder::Zstd(ZstdEncoder::with_quality_and_params(sink, level, &params))
        }
        Algorithm::Gzip => Encoder::Gzip(GzipEncoder::with_quality(sink, level)),
        Algorithm::None => Encoder::None(sink),
    };
    let mut builder = Builder::new(encoder);
    builder.mode(HeaderMode::Complete);
    builder.follow_symlinks(false);
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut skipped = Vec::new();
    let mut snapshots = 0;
    let mut links = Links::default();
    for m in members {
        let outcome = append(&mut builder, m, &mut buf, &mut links, &mut progress).await?;
        let archived = outcome.as_ref().is_none_or(|s| s.kind != SkipKind::LeftOut);
        if archived && matches!(m.body, Body::Database { .. }) {
            snapshots += 1;
        }
        skipped.extend(outcome);
    }
    let mut encoder = builder.into_inner().await.map_err(archive_err)?;
    encoder.shutdown().await.map_err(archive_err)?;
    tracing::debug!(
        stream_ms = started.elapsed().as_millis() as u64,
        "archive streamed"
    );
    let (file, sha256, bytes) = encoder.into_inner().finish().map_err(archive_err)?;
    let synced = std::time::Instant::now();
    file.sync_all().map_err(archive_err)?;
    tracing::debug!(
        fsync_ms = synced.elapsed().as_millis() as u64,
        bytes,
        "archive synced"
    );
    Ok(Written {
        sha256,
        size: bytes,
        content_bytes,
        skipped,
        snapshots,
    })
}

/// The files with more than one name archived whole so far, by the identity
/// the walk saw, with the member name that holds their content. Only plain
/// reads of the data tree are here: databases and blobs are read under their
/// own rules (a snapshot, a stable copy) and stay content entries, and so do
/// names of theirs met as plain files.
#[derive(Default)]
struct Links {
    first: HashMap<Ident, Vec<u8>>,
}

/// Append one member; a file that changed since the walk is left out and
/// returned instead.
async fn append(
    builder: &mut Builder<Encoder>,
    m: &Member,
    buf: &mut [u8],
    links: &mut Links,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Option<Skipped>> {
    let mut header = Header::new_gnu();
    header.set_mode(m.mode);
    header.set_uid(u64::from(m.uid));
    header.set_gid(u64::from(m.gid));
    let err =
        |e: std::io::Error| Error::Archive(format!("adding {} to the archive: {e}", m.shown()));
    set_mtime(builder, &mut header, m.mtime)
        .await
        .map_err(err)?;
    match &m.body {
        Body::Dir => {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, m.path(), tokio::io::empty())
                .await
                .map_err(err)?;
        }
        Body::Bytes(bytes) => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(bytes.len() as u64);
            builder
                .append_data(&mut header, m.path(), bytes.as_slice())
                .await
                .map_err(err)?;
            progress(bytes.len() as u64);
        }
        Body::File { from, ident, size } => {
            // Opened before its header is written, so that a file that changed
            // since the walk (a symlink or FIFO swapped in) is left out whole.
            let file = match from.open(*ident) {
                Ok(file) => file,
                Err(Gone::Changed(reason)) => return Ok(Some(left_out(from.display(), reason))),
                Err(Gone::Failed(e)) => return Err(e),
            };
            let path = from.display();
            let before = tree::stat_fd(&file).map_err(|e| io_err("reading", &path, e))?;
            // Another name of a file already archived whole from this tree
            // (both opened as the inode the walk saw): a hard-link entry, as
            // GNU tar writes it, so that restore makes them one file again.
            let linked = before.stx_nlink > 1 && matches!(from, Origin::Tree(..));
            if linked && let Some(first) = links.first.get(ident) {
                header.set_entry_type(EntryType::Link);
                header.set_size(0);
                set_link_name(builder, &mut header, first)
                    .await
                    .map_err(err)?;
                builder
                    .append_data(&mut header, m.path(), tokio::io::empty())
                    .await
                    .map_err(err)?;
                // The walk counted this name's size in the total like any
                // file's; counted done here, progress still ends at the total.
                progress(*size);
                return Ok(None);
            }
            let mut file = file;
            let missing = append_file(
                builder,
                &mut header,
                m,
                &mut file,
                &path,
                *size,
                buf,
                progress,
            )
            .await?;
            if linked {
                links.first.insert(*ident, m.name.clone());
            }
            if missing > 0 {
                return Ok(Some(Skipped {
                    path,
                    reason: format!(
                        "shrank by {missing} bytes while it was read; the archive holds \
                         what was read, then zeros up to its size at the walk ({size} bytes)"
                    ),
                    kind: SkipKind::Incomplete,
                }));
            }
            // Only now, after the read: a file that shrank is said so above.
            hook_point!("create::file-read");
            let after = tree::stat_fd(&file).map_err(|e| io_err("reading", &path, e))?;
            return Ok(changed_while_read(&path, &before, &after, *size));
        }
        Body::Database {
            tree, rel, ident, ..
        } => {
            // Held just before its entry is written: the freshest state, and
            // a writer's commit waits only while this one entry is streamed.
            let mut held = match super::snapshot::hold(tree, rel, *ident) {
                Ok(held) => held,
                Err(Gone::Changed(reason)) => return Ok(Some(left_out(tree.display(rel), reason))),
                Err(Gone::Failed(e)) => return Err(e),
            };
            let path = tree.display(rel);
            let size = held.size();
            let missing = append_file(
                builder,
                &mut header,
                m,
                held.file(),
                &path,
                size,
                buf,
                progress,
            )
            .await?;
            // Read, still locked: tests try to commit here.
            hook_point!("create::database-read");
            if missing > 0 {
                return Err(super::snapshot::written_under_lock(&path));
            }
            held.release()?;
        }
        Body::Stable {
            from,
            ident,
            scratch,
            ..
        } => {
            let taken = match super::stable::read_stable(from, *ident, scratch) {
                Ok(taken) => taken,
                Err(Gone::Changed(reason)) => return Ok(Some(left_out(from.display(), reason))),
                Err(Gone::Failed(e)) => return Err(e),
            };
            append_copy(
                builder,
                &mut header,
                m,
                taken,
                &from.display(),
                buf,
                progress,
            )
            .await?;
        }
        Body::Symlink(target) => {
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            set_link_name(builder, &mut header, target.as_os_str().as_bytes())
                .await
                .map_err(err)?;
            builder
                .append_data(&mut header, m.path(), tokio::io::empty())
                .await
                .map_err(err)?;
        }
    }
    Ok(None)
}

fn left_out(path: std::path::PathBuf, reason: String) -> Skipped {
    Skipped {
        path,
        reason,
        kind: SkipKind::LeftOut,
    }
}

fn io_err(action: &'static str, path: &Path, e: rustix::io::Errno) -> Error {
    Error::Io {
        action,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// A file whose size or mtime is not what it was when its read began (or,
/// for its size, at the walk) was written to while it was read: the archive
/// holds what was read, which may mix old and new bytes. Said, as GNU tar
/// says it ("file changed as we read it"); only snapshot mode's SQLite
/// capture and stable reads decide what a database's or blob's bytes are.
fn changed_while_read(
    path: &Path,
    before: &rustix::fs::Statx,
    after: &rustix::fs::Statx,
    size: u64,
) -> Option<Skipped> {
    let mtime = |st: &rustix::fs::Statx| (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec);
    let reason = if before.stx_size != size || after.stx_size != size {
        format!(
            "file changed as we read it: {size} bytes at the walk, {} when its read began, {} \
             after; the archive holds its first {size} bytes as they were read",
            before.stx_size, after.stx_size
        )
    } else if mtime(before) != mtime(after) {
        "file changed as we read it (it was written to during the read); the archive holds \
         what was read"
            .to_owned()
    } else {
        return None;
    };
    Some(Skipped {
        path: path.to_owned(),
        reason,
        kind: SkipKind::Changed,
    })
}

/// Write a regular entry for `m` with `size` bytes of `file`; returns how many
/// bytes were missing (padded with zeros).
#[allow(clippy::too_many_arguments)]
async fn append_file(
    builder: &mut Builder<Encoder>,
    header: &mut Header,
    m: &Member,
    file: &mut File,
    path: &Path,
    size: u64,
    buf: &mut [u8],
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64> {
    let err =
        |e: std::io::Error| Error::Archive(format!("adding {} to the archive: {e}", m.shown()));
    header.set_entry_type(EntryType::Regular);
    header.set_size(size);
    // The builder writes the header (and a GNU long-name record when the
    // name needs one); an empty body makes it write nothing else. The
    // content then goes through in large chunks: tokio's copy moves 8 KiB
    // at a time, which costs ~10% of a create's CPU on 1 GiB.
    builder
        .append_data(header, m.path(), tokio::io::empty())
        .await
        .map_err(err)?;
    copy_content(file, path, size, builder.get_mut(), buf, progress).await
}

/// Write a stable copy under `m`'s name, with `m`'s owner, mode
/// and mtime (the live file's) and the copy's size.
async fn append_copy(
    builder: &mut Builder<Encoder>,
    header: &mut Header,
    m: &Member,
    taken: super::snapshot::Taken,
    path: &Path,
    buf: &mut [u8],
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<()> {
    let mut file = taken.file;
    let missing = append_file(
        builder, header, m, &mut file, path, taken.size, buf, progress,
    )
    .await?;
    if missing > 0 {
        return Err(Error::Internal(format!(
            "the copy of {} lost {missing} bytes in the scratch directory",
            path.display()
        )));
    }
    Ok(())
}

/// Store `mtime` in the header. A time before 1970 is written the way GNU tar
/// writes it, base-256 (two's complement, first byte `0xff`), and also as a pax
/// `mtime` record before the entry: GNU tar reads either, and readers that take
/// the header field as unsigned (tar-rs) still get the negative value from the
/// pax record.
async fn set_mtime(
    builder: &mut Builder<Encoder>,
    header: &mut Header,
    mtime: i64,
) -> std::io::Result<()> {
    if let Ok(t) = u64::try_from(mtime) {
        header.set_mtime(t);
        return Ok(());
    }
    header.as_old_mut().mtime = base256(mtime);
    let record = pax_record("mtime", &mtime.to_string());
    // A pax header is a ustar header (tar-rs refuses one in GNU form).
    let mut x = Header::new_ustar();
    if let Some(ustar) = x.as_ustar_mut() {
        ustar.name[..14].copy_from_slice(b"././@PaxHeader");
    }
    x.set_mode(0o644);
    x.set_mtime(0);
    x.set_entry_type(EntryType::XHeader);
    x.set_size(record.len() as u64);
    x.set_cksum();
    builder.append(&x, record.as_slice()).await
}

/// A 12-byte tar number field in base-256: the value's two's complement,
/// sign-extended, with the high bit of the first byte set (as it is for any
/// negative value).
fn base256(v: i64) -> [u8; 12] {
    let mut field = [if v < 0 { 0xff } else { 0 }; 12];
    field[4..].copy_from_slice(&v.to_be_bytes());
    field[0] |= 0x80;
    field
}

/// One pax extended-header record, `"<len> <key>=<value>\n"`, where `len`
/// counts the whole record including its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    loop {
        let record = format!("{len}{body}");
        if record.len() == len {
            return record.into_bytes();
        }
        len = record.len();
    }
}

/// Put a link's target (its bytes as they are) in `header`, preceded by a GNU
/// `././@LongLink` record when it does not fit in the header's 100 bytes.
async fn set_link_name(
    builder: &mut Builder<Encoder>,
    header: &mut Header,
    target: &[u8],
) -> std::io::Result<()> {
    if header
        .set_link_name(Path::new(OsStr::from_bytes(target)))
        .is_ok()
    {
        return Ok(());
    }
    append_long_link(builder, target).await?;
    if let Some(gnu) = header.as_gnu_mut() {
        let n = gnu.linkname.len().min(target.len());
        gnu.linkname[..n].copy_from_slice(&target[..n]);
    }
    Ok(())
}

/// A GNU `././@LongLink` record carrying a link target longer than 100 bytes.
async fn append_long_link(builder: &mut Builder<Encoder>, target: &[u8]) -> std::io::Result<()> {
    let mut data = target.to_vec();
    data.push(0);
    let mut h = Header::new_gnu();
    if let Some(gnu) = h.as_gnu_mut() {
        gnu.name[..13].copy_from_slice(b"././@LongLink");
    }
    h.set_mode(0o644);
    h.set_entry_type(EntryType::GNULongLink);
    h.set_size(data.len() as u64);
    h.set_cksum();
    builder.append(&h, data.as_slice()).await
}

/// Size of the read buffer for file content.
const COPY_CHUNK: usize = 1 << 20;

/// Copy exactly `size` bytes of `file` (the size in its tar header) into the
/// stream, then pad to the 512-byte block; bytes beyond `size` (a file still
/// growing) are left out. A file that shrank since the walk is padded with
/// zeros to the size its header already says, as GNU tar does, so that its
/// owner cannot make every backup fail by truncating it at the right moment;
/// returns how many bytes were missing (0: all there).
async fn copy_content(
    file: &mut File,
    path: impl AsRef<Path>,
    size: u64,
    out: &mut Encoder,
    buf: &mut [u8],
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64> {
    let write_err = write_error;
    let path = path.as_ref();
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        // Blocking read: this future only ever runs on a blocking thread.
        let n = file.read(&mut buf[..want]).at("reading", path)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await.map_err(write_err)?;
        left -= n as u64;
        progress(n as u64);
    }
    let missing = left;
    if missing > 0 {
        buf.fill(0);
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            out.write_all(&buf[..n]).await.map_err(write_err)?;
            left -= n as u64;
            progress(n as u64);
        }
    }
    let pad = (512 - (size % 512) as usize) % 512;
    out.write_all(&[0u8; 512][..pad]).await.map_err(write_err)?;
    Ok(missing)
}

/// An error while writing an archive. A full disk is the host's problem
/// (`environment`), anything else an archive failure.
pub(crate) fn write_error(e: std::io::Error) -> crate::Error {
    if e.kind() == std::io::ErrorKind::StorageFull {
        crate::Error::Environment(format!(
            "writing the archive failed: {e}; free some space in the backups root"
        ))
    } else {
        crate::Error::Archive(format!("writing the archive failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_times_are_base256_twos_complement() {
        let f = base256(-1);
        assert_eq!(f, [0xff; 12]);
        let f = base256(-86_400);
        assert_eq!(f[0], 0xff);
        assert_eq!(i64::from_be_bytes(f[4..].try_into().unwrap()), -86_400);
        assert_eq!(base256(5)[0], 0x80);
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("mtime", "-1"), b"12 mtime=-1\n");
        let long = "x".repeat(95);
        let r = pax_record("k", &long);
        let len: usize = std::str::from_utf8(&r)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }
}
