//! Reading an archive through without writing anything: its sha256, its top
//! directory (the backup id), which parts of the payload it holds, and the
//! instance's registry entry from `<id>/metadata/instance.json`.
//!
//! Reconcile uses it to adopt an archive that has no index entry. Every entry
//! name passes the same checks as extraction, so an archive adopted here is
//! one restore will not refuse for its names; the whole stream is decoded, so a
//! truncated or corrupt archive is found out here rather than at restore time.

use std::fs::File;
use std::path::Path;
use std::rc::Rc;

use abssd_proto::Algorithm;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_tar::EntryType;

use super::source::{ChunkReader, Meter};
use super::{HEADER_ALLOWANCE, corrupt, names, refused, stream, stream_error};
use crate::error::{Error, IoContext, Result};

/// The most `metadata/instance.json` may hold.
const INSTANCE_JSON_MAX: u64 = 1 << 20;

/// What an archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// sha256 of the archive file, hex.
    pub sha256: String,
    /// Bytes in the archive file.
    pub archive_bytes: u64,
    /// The single top directory: the backup id.
    pub top: String,
    /// The content of `<top>/metadata/instance.json`, when present.
    pub instance_json: Option<Vec<u8>>,
    /// Whether `<top>/data` is present.
    pub has_data: bool,
    /// Whether service assets (`systemd/`, `nginx/`) are present.
    pub has_assets: bool,
    /// Tar entries.
    pub entries: u64,
    /// Bytes of entry content.
    pub content_bytes: u64,
}

/// Read `archive` through. Blocking. `progress(n)` gets the raw bytes read.
pub fn inspect(
    archive: &Path,
    algorithm: Algorithm,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Inspected> {
    let file = File::open(archive).at("opening", archive)?;
    let (mut found, hashed) = stream(file, archive, algorithm, progress, |reader, meter| {
        walk(reader, meter, archive)
    })?;
    found.sha256 = hashed.sha256;
    found.archive_bytes = hashed.bytes;
    Ok(found)
}

/// Parse every entry, keeping only what [`Inspected`] needs.
async fn walk(reader: ChunkReader, meter: Rc<Meter>, archive: &Path) -> Result<Inspected> {
    let meter: &Meter = &meter;
    let mut tar = tokio_tar::Archive::new(reader);
    let mut entries = tar
        .entries()
        .map_err(|e| Error::Internal(format!("reading tar entries: {e}")))?;
    let mut found = Inspected {
        sha256: String::new(),
        archive_bytes: 0,
        top: String::new(),
        instance_json: None,
        has_data: false,
        has_assets: false,
        entries: 0,
        content_bytes: 0,
    };
    let mut buf = vec![0u8; super::source::CHUNK];
    loop {
        meter.allow(HEADER_ALLOWANCE);
        let mut entry = match entries.next().await {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(stream_error(archive, meter, None, e)),
        };
        let kind = entry.header().entry_type();
        let raw = entry
            .path_bytes()
            .map_err(|e| stream_error(archive, meter, None, e))?
            .into_owned();
        let lossy = String::from_utf8_lossy(&raw).into_owned();
        if !matches!(
            kind,
            EntryType::Regular | EntryType::Directory | EntryType::Symlink | EntryType::Link
        ) {
            return Err(refused(
                archive,
                &lossy,
                "is not a regular file, directory, symlink or hardlink",
            ));
        }
        if found.top.is_empty() {
            found.top = top_of(&raw).ok_or_else(|| {
                refused(archive, &lossy, "does not start with a backup id directory")
            })?;
        }
        let path = names::entry_path(&raw, &found.top, kind == EntryType::Directory)
            .map_err(|why| refused(archive, &lossy, why))?;
        let below = path
            .as_bytes()
            .get(found.top.len() + 1..)
            .unwrap_or_default();
        let part = below.split(|&b| b == b'/').next().unwrap_or_default();
        found.has_data |= part == b"data";
        found.has_assets |= matches!(part, b"systemd" | b"nginx");

        let size = entry.effective_size();
        meter.allow(size);
        let wanted = kind == EntryType::Regular && below == b"metadata/instance.json";
        if wanted && size > INSTANCE_JSON_MAX {
            return Err(refused(
                archive,
                &path,
                format!("is larger than {INSTANCE_JSON_MAX} bytes"),
            ));
        }
        let mut kept = Vec::new();
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = entry
                .read(&mut buf[..want])
                .await
                .map_err(|e| stream_error(archive, meter, Some(&path), e))?;
            if n == 0 {
                return Err(corrupt(archive, format!("it ends inside entry {path}")));
            }
            if wanted {
                kept.extend_from_slice(&buf[..n]);
            }
            left -= n as u64;
        }
        if wanted {
            found.instance_json = Some(kept);
        }
        found.entries += 1;
        found.content_bytes = found.content_bytes.saturating_add(size);
    }
    if meter.eof() {
        return Err(corrupt(archive, "it ends without an end-of-archive marker"));
    }
    if found.entries == 0 {
        return Err(corrupt(archive, "it holds no entries"));
    }
    Ok(found)
}

/// The first real component of an entry name (`./` prefixes skipped), if it
/// can name a directory.
fn top_of(raw: &[u8]) -> Option<String> {
    let first = raw
        .split(|&b| b == b'/')
        .find(|c| !c.is_empty() && *c != b".")?;
    let top = std::str::from_utf8(first).ok()?;
    (top != "..").then(|| top.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_is_the_first_real_component() {
        assert_eq!(top_of(b"./id-1/data/x").as_deref(), Some("id-1"));
        assert_eq!(top_of(b"id-1/").as_deref(), Some("id-1"));
        assert_eq!(top_of(b"../x"), None);
        assert_eq!(top_of(b"./"), None);
        assert_eq!(top_of(b"\xff/x"), None);
    }
}
