//! Blobs (`*.blob`, zips Actual rewrites in place, not atomically) in
//! snapshot mode: read into a scratch file while hashing, with the live file's
//! size, mtime and ctime taken before and after, then read again and compared;
//! a copy is kept only when nothing changed from the first read to the end of
//! the second. That is not enough on its own: a writer paused between
//! `writeFile`'s truncate and its last chunk leaves a file that two reads agree
//! on, status unchanged, yet cut short. So a copy that starts as a zip must
//! also end as one (its end record, [`crate::zipend`]), and no copy may be
//! empty; one that fails this is still being written, and is read again after
//! [`TORN_BACKOFF`]. Other blobs that do not start as a zip
//! (end-to-end-encrypted budgets) have only the first rule. A blob that will not hold still, or stays cut short, for [`ATTEMPTS`]
//! tries fails the create, naming it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::member::Origin;
use super::snapshot::Taken;
use super::tree::{self, Gone, Ident};
use crate::error::{Error, Result};
use crate::scratch::Scratch;
use crate::zipend;

/// How many times a blob is read before the create gives up on it.
pub const ATTEMPTS: u32 = 5;

/// How long a blob copied whole but cut short (a zip without its end record)
/// is left to its writer before it is read again: Node writes a buffer's
/// chunks back to back, so a pause this long is rare; [`ATTEMPTS`] of them
/// bound the wait.
pub const TORN_BACKOFF: Duration = Duration::from_millis(100);

/// What of a file's status says it was written to.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
}

fn seen(file: &File, path: &Path) -> Result<Seen> {
    let st = tree::stat_fd(file).map_err(|e| io("reading", path, e.into()))?;
    Ok(Seen {
        size: st.stx_size,
        mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
        ctime: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
    })
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A copy of the file the walk saw at `from`, taken while it held still.
pub fn read_stable(from: &Origin, ident: Ident, scratch: &Scratch) -> Result<Taken, Gone> {
    let path = from.display();
    let mut live = from.open(ident)?;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..ATTEMPTS {
        let before = seen(&live, &path)?;
        let mut out = scratch.file(&path, before.size)?;
        out.unlink()?;
        live.rewind().map_err(|e| io("reading", &path, e))?;
        let copy = Some((&mut out.file, scratch.path()));
        let first = hash(&mut live, before.size, copy, &mut buf, &path)?;
        // The first read is done: tests rewrite the blob here.
        hook_point!("create::blob-read");
        if seen(&live, &path)? != before {
            continue;
        }
        live.rewind().map_err(|e| io("reading", &path, e))?;
        let second = hash(&mut live, before.size, None, &mut buf, &path)?;
        if second != first || seen(&live, &path)? != before {
            continue;
        }
        if let Some(why) = torn(&mut out.file, first.0, &path)? {
            tracing::debug!(blob = %path.display(), why, "a blob copy is cut short; reading it again");
            // Tests complete the blob here.
            hook_point!("create::blob-torn");
            std::thread::sleep(TORN_BACKOFF);
            continue;
        }
        let mut file = out.into_file()?;
        file.rewind().map_err(|e| io("reading", &path, e))?;
        return Ok(Taken {
            file,
            size: first.0,
        });
    }
    Err(Gone::Failed(Error::Environment(format!(
        "{} kept changing while it was read, or stayed empty or a zip cut short \
         ({ATTEMPTS} attempts); try again or use --consistency stop",
        path.display()
    ))))
}

/// Why the copy `copy` (`size` bytes) is still being written: empty (caught
/// between the truncate and the first chunk; no budget, encrypted or not, is
/// empty), or a zip cut short. `None` when it is a whole zip or not a zip at
/// all. Reads only its head and tail.
fn torn(copy: &mut File, size: u64, path: &Path) -> Result<Option<String>> {
    if size == 0 {
        return Ok(Some("empty".into()));
    }
    let reading = |e| io("reading a copy of", path, e);
    if !zipend::starts_as_zip(copy).map_err(reading)? {
        return Ok(None);
    }
    Ok(zipend::read_end(copy, size).map_err(reading)?.err())
}

/// Read `file` to its end (at most `size` + 1 bytes: one more says it grew),
/// copying into `out` (a scratch file, in its directory) when given; returns (bytes, sha256).
fn hash(
    file: &mut File,
    size: u64,
    mut out: Option<(&mut File, &Path)>,
    buf: &mut [u8],
    path: &Path,
) -> Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut limited = file.take(size.saturating_add(1));
    loop {
        let n = match limited.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("reading", path, e)),
        };
        hasher.update(&buf[..n]);
        if let Some((out, dir)) = out.as_mut() {
            out.write_all(&buf[..n])
                .map_err(|e| io("writing a copy in", dir, e))?;
        }
        total += n as u64;
    }
    Ok((total, hasher.finalize().into()))
}
