//! Reading an archive through without writing anything: its sha256, its top
//! directory (the backup id), which parts of the payload it holds, and the
//! instance's registry entry from `<id>/metadata/instance.json`.
//!
//! Reconcile uses it to adopt an archive that has no index entry, and `backup
//! verify` to find out whether restore would take an archive. Every entry goes
//! through the same checks as extraction ([`names::check`]), the rules
//! extraction enforces through the filesystem (no duplicates, no entry below a
//! file or link, hardlinks only to files before them) are tracked here in
//! memory ([`Shape`]), and the same [`Limits`] apply; the payload must hold
//! what restore's validation wants (`data/` a directory, `instance.json` a
//! JSON object). The whole stream is decoded, so a truncated or corrupt
//! archive is found out here rather than at restore time.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::rc::Rc;

use abssd_proto::Algorithm;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_tar::EntryType;

use super::bounds::Limits;
use super::entry::{Lossy, link_target};
use super::names;
use super::names::EntryPath;
use super::source::{ChunkReader, Meter};
use super::stream::{HEADER_ALLOWANCE, check_end, corrupt, refused, stream, stream_error};
use crate::error::{Error, IoContext, Result};

/// The most `metadata/instance.json` may hold.
pub const INSTANCE_JSON_MAX: u64 = 1 << 20;

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
    /// Whether `<top>/data` is present (a directory).
    pub has_data: bool,
    /// Whether service assets (`systemd/`, `nginx/`) are present.
    pub has_assets: bool,
    /// Tar entries.
    pub entries: u64,
    /// Bytes of entry content.
    pub content_bytes: u64,
}

/// What else wants to see the entries an inspection accepts (the deep check):
/// told about each entry once it passed every check, then handed its content
/// as it streams by, in the bounded chunks the pass reads anyway.
pub trait Visit {
    /// An accepted entry: its kind, its path below `<top>/`, its content size.
    /// `true` asks for its content ([`Visit::content`], then [`Visit::end`]).
    fn entry(&mut self, kind: EntryType, below: &[u8], size: u64) -> bool;
    /// The next bytes of the entry's content.
    fn content(&mut self, bytes: &[u8]);
    /// The entry's content is complete.
    fn end(&mut self);
}

/// A visitor that wants nothing.
struct Nobody;

impl Visit for Nobody {
    fn entry(&mut self, _: EntryType, _: &[u8], _: u64) -> bool {
        false
    }
    fn content(&mut self, _: &[u8]) {}
    fn end(&mut self) {}
}

/// Read `archive` through. Blocking. `progress(n)` gets the raw bytes read.
/// `Err(Error::Archive)`: restore would refuse the archive (the message names
/// the first offending entry), or it is truncated or corrupt.
pub fn inspect(
    archive: &Path,
    algorithm: Algorithm,
    limits: Limits,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Inspected> {
    inspect_with(archive, algorithm, limits, progress, &mut Nobody)
}

/// [`inspect`], showing every accepted entry and its content to `visit` in
/// the same pass.
pub fn inspect_with(
    archive: &Path,
    algorithm: Algorithm,
    limits: Limits,
    progress: &mut (dyn FnMut(u64) + Send),
    visit: &mut dyn Visit,
) -> Result<Inspected> {
    let file = File::open(archive).at("opening", archive)?;
    let (mut found, hashed) = stream(file, archive, algorithm, progress, |reader, meter| {
        walk(reader, meter, archive, limits, visit)
    })?;
    found.sha256 = hashed.sha256;
    found.archive_bytes = hashed.bytes;
    Ok(found)
}

/// The payload checks restore makes once the archive is unpacked: `data/` a
/// directory, `metadata/instance.json` (when present) a JSON object.
fn payload(found: &Inspected, shape: &Shape, archive: &Path) -> Result<()> {
    let data = format!("{}/data", found.top).into_bytes();
    if !shape.dirs.contains(&data) {
        return Err(Error::Archive(format!(
            "refusing {}: it has no {}/data/ directory; it is not an abssctl backup",
            archive.display(),
            found.top
        )));
    }
    if let Some(raw) = &found.instance_json
        && !matches!(
            serde_json::from_slice::<serde_json::Value>(raw),
            Ok(serde_json::Value::Object(_))
        )
    {
        return Err(Error::Archive(format!(
            "refusing {}: metadata/instance.json is not a JSON object",
            archive.display()
        )));
    }
    Ok(())
}

/// What extraction learns from the filesystem as it creates the tree, kept in
/// memory: which paths are directories, which are something else, and which
/// are regular files (the only hardlink targets).
#[derive(Debug, Default)]
struct Shape {
    dirs: HashSet<Vec<u8>>,
    others: HashSet<Vec<u8>>,
    files: HashSet<Vec<u8>>,
}

impl Shape {
    /// Record one checked entry, or say why extraction would refuse it.
    fn add(&mut self, kind: EntryType, checked: &names::Checked) -> Result<(), String> {
        let path = &checked.path;
        let full = path.as_bytes();
        // Every ancestor must be (or become) a directory.
        for (i, _) in full.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            let dir = &full[..i];
            if self.others.contains(dir) {
                return Err(format!(
                    "lies below {:?}, which an earlier entry made a file or link",
                    Lossy(dir).to_string()
                ));
            }
            if !self.dirs.contains(dir) {
                self.dirs.insert(dir.to_vec());
            }
        }
        if kind == EntryType::Directory {
            if self.others.contains(full) {
                return Err("is a duplicate entry in the archive".into());
            }
            self.dirs.insert(full.to_vec());
            return Ok(());
        }
        if self.dirs.contains(full) || self.others.contains(full) {
            return Err("is a duplicate entry in the archive".into());
        }
        if let Some(target) = &checked.hardlink
            && !self.files.contains(target.as_bytes())
        {
            return Err(format!(
                "is a hardlink to {target}, which is not a regular file extracted before it"
            ));
        }
        self.others.insert(full.to_vec());
        if matches!(kind, EntryType::Regular | EntryType::Link) {
            self.files.insert(full.to_vec());
        }
        Ok(())
    }
}

/// Parse every entry, keeping only what [`Inspected`] needs.
async fn walk(
    reader: ChunkReader,
    meter: Rc<Meter>,
    archive: &Path,
    limits: Limits,
    visit: &mut dyn Visit,
) -> Result<Inspected> {
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
    let mut shape = Shape::default();
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
        if found.top.is_empty() {
            found.top = top_of(&raw).ok_or_else(|| {
                refused(
                    archive,
                    &Lossy(&raw),
                    "does not start with a backup id directory",
                )
            })?;
        }
        let link = if matches!(kind, EntryType::Symlink | EntryType::Link) {
            Some(link_target(&entry, archive, meter, &Lossy(&raw))?)
        } else {
            None
        };
        let checked = names::check(kind, &raw, link.as_deref(), &found.top)
            .map_err(|why| refused(archive, &Lossy(&raw), why))?;
        shape
            .add(kind, &checked)
            .map_err(|why| refused(archive, &checked.path, why))?;
        let path: EntryPath = checked.path;
        let below = path
            .as_bytes()
            .get(found.top.len() + 1..)
            .unwrap_or_default();
        let part = below.split(|&b| b == b'/').next().unwrap_or_default();
        found.has_assets |= matches!(part, b"systemd" | b"nginx");

        let size = entry.effective_size();
        let total = found.content_bytes.saturating_add(size);
        limits.admit(found.entries, total, archive)?;
        meter.allow(size);
        let wanted = kind == EntryType::Regular && below == b"metadata/instance.json";
        if wanted && size > INSTANCE_JSON_MAX {
            return Err(refused(
                archive,
                &path,
                format!("is larger than {INSTANCE_JSON_MAX} bytes"),
            ));
        }
        let shown = visit.entry(kind, below, size);
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
            if shown {
                visit.content(&buf[..n]);
            }
            left -= n as u64;
        }
        if shown {
            visit.end();
        }
        if wanted {
            found.instance_json = Some(kept);
        }
        found.entries += 1;
        found.content_bytes = total;
    }
    drop(entries);
    check_end(tar, meter, found.entries, archive)?;
    found.has_data = shape
        .dirs
        .contains(format!("{}/data", found.top).as_bytes());
    payload(&found, &shape, archive)?;
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
