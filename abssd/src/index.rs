//! The backup index, `backups.json` (SPEC §5), shared with the Python tool.
//!
//! The Python tool or an operator may change it at any time: readers go
//! through [`Cache`], which parses it again only when the file changed, and
//! writers read it afresh under the global lock and write it atomically.
//! Keys this project does not know are kept; the older key spellings are
//! accepted on read and written in the current spelling.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abssd_proto::BackupEntry;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// One version of the index file: which file it is (device, inode) and its
/// change stamp (size; modification and change times, to the nanosecond). A
/// tool that replaces the file by a rename makes a new inode; one that writes
/// it in place changes its times: either is another stamp, even within one
/// second and at the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The parsed index, kept between calls (one per daemon): [`Cache::read`]
/// checks the file's [`Stamp`] and parses it again only when it changed.
#[derive(Debug, Default)]
pub struct Cache(Mutex<Option<Cached>>);

#[derive(Debug)]
struct Cached {
    path: PathBuf,
    stamp: Stamp,
    index: Arc<Index>,
    /// The list order, made at the first [`Cache::listing`] of this version.
    order: Option<Arc<[Row]>>,
}

/// One entry's place in the list order: its creation time and its position
/// in [`Index::backups`].
type Row = (Option<Timestamp>, u32);

impl Cache {
    /// The index at `path` as the file is now (a missing file is an empty
    /// index, a corrupt one an error, as [`Index::load`]). Blocking: a stat,
    /// and a read and parse when the file changed. The stamp is taken from
    /// the open file before its bytes are read, so a change made during the
    /// read shows as another stamp at the next call, never as a stale hit.
    pub fn read(&self, path: &Path) -> Result<Arc<Index>> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = match std::fs::metadata(path) {
            Ok(m) => Stamp::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *cached = None;
                return Ok(Arc::new(Index::default()));
            }
            Err(e) => return Err(e).at("reading backup index", path),
        };
        if let Some(c) = cached.as_ref()
            && c.path == path
            && c.stamp == now
        {
            return Ok(Arc::clone(&c.index));
        }
        *cached = None;
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Arc::new(Index::default()));
            }
            Err(e) => return Err(e).at("reading backup index", path),
        };
        let stamp = file
            .metadata()
            .map(|m| Stamp::of(&m))
            .at("reading backup index", path)?;
        let mut bytes = Vec::with_capacity(usize::try_from(stamp.size).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .at("reading backup index", path)?;
        let index = Arc::new(Index::parse(&bytes).map_err(|message| Error::Corrupt {
            path: path.to_owned(),
            format: "JSON",
            message,
        })?);
        *cached = Some(Cached {
            path: path.to_owned(),
            stamp,
            index: Arc::clone(&index),
            order: None,
        });
        Ok(index)
    }

    /// The index at `path` with its entries in the list order (see
    /// [`Listing`]), sorted once per version of the file. Blocking.
    pub fn listing(&self, path: &Path) -> Result<Listing> {
        let index = self.read(path)?;
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // The version just read, unless another call replaced it meanwhile:
        // then this call sorts its own and keeps nothing.
        let slot = cached
            .as_mut()
            .filter(|c| Arc::ptr_eq(&c.index, &index))
            .map(|c| &mut c.order);
        let order = match slot {
            Some(Some(order)) => Arc::clone(order),
            Some(slot) => Arc::clone(slot.insert(sorted(&index))),
            None => sorted(&index),
        };
        Ok(Listing { index, order })
    }
}

/// The list order of `index`'s entries: newest first, by creation time then by
/// id, both descending (an unreadable time sorts as the oldest).
fn sorted(index: &Index) -> Arc<[Row]> {
    let mut rows: Vec<Row> = index
        .backups
        .iter()
        .zip(0u32..)
        .map(|(b, i)| (created(&b.created_at), i))
        .collect();
    let id = |i: u32| index.backups[i as usize].id.as_str();
    rows.sort_unstable_by(|a, b| (b.0, id(b.1)).cmp(&(a.0, id(a.1))));
    rows.into()
}

/// An entry's `created_at` as a time: RFC 3339, or a date and time without
/// an offset taken as UTC (as older tools wrote it).
pub fn created(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().or_else(|| {
        text.parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|t| jiff::tz::TimeZone::UTC.to_timestamp(t).ok())
    })
}

/// Where a page of the list ended: the last entry's creation time and id. The
/// next page starts at the first entry after it in the list order, whatever
/// was added or removed meanwhile. On the wire: `<RFC 3339 time>/<id>` (the
/// time empty when unreadable; ids hold no `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    at: Option<Timestamp>,
    id: String,
}

impl Cursor {
    /// Read a `next_cursor` given back by a client.
    pub fn parse(text: &str) -> Result<Cursor> {
        let bad = || {
            Error::validation(format!(
                "cursor \"{}\" is not one `backup.list` gave (pass its next_cursor as it is)",
                crate::error::shown(text)
            ))
        };
        let (at, id) = text.split_once('/').ok_or_else(bad)?;
        check_id(id).map_err(|_| bad())?;
        let at = match at {
            "" => None,
            at => Some(at.parse::<Timestamp>().map_err(|_| bad())?),
        };
        Ok(Cursor {
            at,
            id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some(at) => write!(f, "{at}/{}", self.id),
            None => write!(f, "/{}", self.id),
        }
    }
}

/// Which entries a list shows.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Of this instance.
    pub instance: Option<String>,
    /// With this status.
    pub status: Option<String>,
    /// Carrying this label.
    pub label: Option<String>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
}

impl Filter {
    fn matches(&self, at: Option<Timestamp>, b: &BackupEntry) -> bool {
        let timed = self.since.is_some() || self.until.is_some();
        self.instance.as_ref().is_none_or(|i| *i == b.instance)
            && self.status.as_ref().is_none_or(|s| *s == b.status)
            && self
                .label
                .as_ref()
                .is_none_or(|l| b.metadata.labels.contains(l))
            && (!timed
                || at.is_some_and(|at| {
                    self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at < u)
                }))
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    /// The entries, newest first.
    pub entries: Vec<BackupEntry>,
    /// How many entries the filter matches in all.
    pub total: u64,
    /// Where this page ended, when more entries match after it.
    pub next: Option<Cursor>,
}

/// A version of the index with its list order (see [`Cache::listing`]).
#[derive(Debug, Clone)]
pub struct Listing {
    /// The index.
    pub index: Arc<Index>,
    order: Arc<[Row]>,
}

impl Listing {
    /// The entries `filter` matches after `after` (from the newest without
    /// one): at most `limit`, and no more than `budget` bytes of JSON beyond
    /// the first.
    pub fn page(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        limit: usize,
        budget: usize,
    ) -> Page {
        let entry = |i: u32| &self.index.backups[i as usize];
        let start = after.map_or(0, |c| {
            self.order
                .partition_point(|&(at, i)| (at, entry(i).id.as_str()) >= (c.at, c.id.as_str()))
        });
        let total = self
            .order
            .iter()
            .filter(|&&(at, i)| filter.matches(at, entry(i)))
            .count();
        let mut entries = Vec::new();
        let (mut bytes, mut last, mut next) = (0usize, None, None);
        for &(at, i) in &self.order[start..] {
            let b = entry(i);
            if !filter.matches(at, b) {
                continue;
            }
            let size = json_size(b);
            if entries.len() == limit || (!entries.is_empty() && bytes + size > budget) {
                next = last.take();
                break;
            }
            bytes += size;
            entries.push(b.clone());
            last = Some(Cursor {
                at,
                id: b.id.clone(),
            });
        }
        Page {
            entries,
            total: total as u64,
            next,
        }
    }
}

/// The length of `entry`'s JSON.
fn json_size(entry: &BackupEntry) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    let _ = serde_json::to_writer(&mut n, entry);
    n.0
}

/// The whole index file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Entries in file order (the Python tool appends).
    #[serde(default)]
    pub backups: Vec<BackupEntry>,
    /// Other top-level keys.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Index {
    /// Read the index; a missing file is an empty index, a corrupt one an error
    /// naming the file (never silently replaced).
    pub fn load(path: &Path) -> Result<Index> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(e).at("reading backup index", path),
        };
        Index::parse(&bytes).map_err(|message| Error::Corrupt {
            path: path.to_owned(),
            format: "JSON",
            message,
        })
    }

    /// Parse index bytes, normalizing older spellings.
    pub fn parse(bytes: &[u8]) -> Result<Index, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Index::default());
        }
        let mut index: Index = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for entry in &mut index.backups {
            entry.normalize_legacy();
        }
        Ok(index)
    }

    /// Write atomically (temp file, fsync, rename, fsync dir), 2-space indented
    /// like the Python tool.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Internal(format!("rendering index: {e}")))?;
        bytes.push(b'\n');
        let tmp = fsutil::write_temp(path, &bytes)?;
        crash_point!("index::before-rename");
        fsutil::replace(tmp, path)
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&BackupEntry> {
        self.backups.iter().find(|b| b.id == id)
    }

    /// The entry with this id, mutably.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut BackupEntry> {
        self.backups.iter_mut().find(|b| b.id == id)
    }

    /// The entry with this id or a not-found error; an id that no backup
    /// can have (see [`check_id`]) is a validation error.
    pub fn require(&self, id: &str, file: &Path) -> Result<&BackupEntry> {
        check_id(id)?;
        self.get(id).ok_or_else(|| Error::NotFound {
            what: "backup",
            name: id.to_owned(),
            hint: format!(" in {} (abssctl backup list shows the ids)", file.display()),
        })
    }

    /// Entries newest first, optionally for one instance: by creation time,
    /// then by id (the list order of [`Listing`]).
    pub fn newest_first(&self, instance: Option<&str>) -> Vec<BackupEntry> {
        sorted(self)
            .iter()
            .map(|&(_, i)| &self.backups[i as usize])
            .filter(|b| instance.is_none_or(|i| b.instance == i))
            .cloned()
            .collect()
    }
}

/// The longest backup id accepted, in bytes: a file name (`<id>.tar.zst`)
/// must fit in 255 bytes.
pub const MAX_ID_BYTES: usize = abssd_proto::limits::ID;

/// An id some backup can have: non-empty, at most [`MAX_ID_BYTES`], no
/// control characters, and usable as a directory name (no `/`, not `.` or
/// `..`). Ids of the Python tool's form pass; so do other names an adopted
/// archive's file may carry.
pub fn check_id(id: &str) -> Result<()> {
    let why = if id.is_empty() {
        "is empty"
    } else if id.len() > MAX_ID_BYTES {
        return Err(Error::validation(format!(
            "backup id \"{}\" is longer than {MAX_ID_BYTES} bytes; ids look like \
             20250102-030405-<instance>-a1b2c3",
            crate::error::shown(id)
        )));
    } else if id.chars().any(char::is_control) {
        "contains control characters"
    } else if id.contains('/') || id == "." || id == ".." {
        "cannot name a directory"
    } else {
        return Ok(());
    };
    Err(Error::validation(format!(
        "backup id \"{}\" {why}; ids look like 20250102-030405-<instance>-a1b2c3",
        crate::error::shown(id)
    )))
}

/// The instance of a backup id in the standard form
/// `YYYYMMDD-HHMMSS-<instance>-<6 hex>`, or `None` for any other id.
pub fn instance_of_id(id: &str) -> Option<&str> {
    let b = id.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() < 24
        || b.len() > MAX_ID_BYTES
        || !digits(0..8)
        || b[8] != b'-'
        || !digits(9..15)
        || b[15] != b'-'
    {
        return None;
    }
    let tail = id.get(id.len() - 7..)?;
    if !tail.starts_with('-') || !tail[1..].bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let instance = id.get(16..id.len() - 7)?;
    crate::registry::validate_name(instance)
        .ok()
        .map(|()| instance)
}

/// A new backup id for a backup made `at`: `YYYYMMDD-HHMMSS-<instance>-<6 hex>`.
/// The tail's first 10 bits are the millisecond of `at` and the other 14 are
/// random, so the ids of one instance made within one second sort as they
/// were made (the list order breaks ties of `created_at` by id).
pub fn new_backup_id(instance: &str, at: jiff::Timestamp) -> String {
    // A v7 uuid's last four bytes are random (its counter ends before them).
    let random = uuid::Uuid::now_v7();
    let bits = u16::from_be_bytes([random.as_bytes()[14], random.as_bytes()[15]]) & 0x3fff;
    let millis = u32::try_from(at.subsec_millisecond()).unwrap_or(0).min(999);
    let tail = (millis << 14) | u32::from(bits);
    format!("{}-{instance}-{tail:06x}", fsutil::compact(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_json(id: &str) -> String {
        format!(
            r#"{{"backups":[{{"id":"{id}","instance":"alpha","path":"/b/{id}.tar.zst","created_at":"2026-01-01T00:00:00Z","status":"available"}}]}}"#
        )
    }

    /// Set `path`'s modification time to `(secs, nanos)`.
    fn set_mtime(path: &Path, (secs, nanos): (i64, i64)) {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::new(secs.try_into().unwrap(), nanos.try_into().unwrap());
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn the_cache_parses_again_only_when_the_file_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        let cache = Cache::default();
        assert!(cache.read(&path).unwrap().backups.is_empty(), "no file yet");

        let a = "20260101-000000-alpha-aaaaaa";
        let b = "20260101-000000-alpha-bbbbbb";
        std::fs::write(&path, entry_json(a)).unwrap();
        let first = cache.read(&path).unwrap();
        assert_eq!(first.backups[0].id, a);
        assert!(
            Arc::ptr_eq(&first, &cache.read(&path).unwrap()),
            "unchanged: the same parse"
        );

        // Another tool replaces it by a rename, in the same second, at the
        // same size, with the very same modification time: an mtime-and-size
        // check would serve the old index; the new inode tells.
        let mtime = {
            let m = std::fs::metadata(&path).unwrap();
            (m.mtime(), m.mtime_nsec())
        };
        let tmp = dir.path().join("backups.json.tmp");
        std::fs::write(&tmp, entry_json(b)).unwrap();
        set_mtime(&tmp, mtime);
        std::fs::rename(&tmp, &path).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let size = entry_json(a).len() as u64;
        assert_eq!(
            (m.mtime(), m.mtime_nsec(), m.size()),
            (mtime.0, mtime.1, size)
        );
        assert_eq!(cache.read(&path).unwrap().backups[0].id, b);

        // Written in place (the same inode) at the same size, in the same
        // second: the nanoseconds tell.
        std::fs::write(&path, entry_json(a)).unwrap();
        set_mtime(&path, (mtime.0, (mtime.1 + 1) % 1_000_000_000));
        assert_eq!(cache.read(&path).unwrap().backups[0].id, a);

        // Gone: an empty index again; corrupt: an error, never the old parse.
        std::fs::remove_file(&path).unwrap();
        assert!(cache.read(&path).unwrap().backups.is_empty());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(cache.read(&path), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn ids_are_bounded_and_printable() {
        check_id("20250102-030405-alpha-a1b2c3").unwrap();
        check_id("sunday").unwrap();
        for bad in ["", "a\u{1b}[2Jb", "x\ny", "a\u{9b}b", "a/b", "..", "."] {
            let err = check_id(bad).unwrap_err();
            assert_eq!(err.kind(), abssd_proto::ErrorKind::Validation, "{bad:?}");
            assert!(!err.to_string().contains('\u{1b}'), "{err}");
        }
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(check_id(&long).unwrap_err().to_string().contains("longer"));
        let index = Index::default();
        let err = index.require("a\u{7}", Path::new("/i")).unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Validation);
    }

    #[test]
    fn standard_ids_name_their_instance() {
        assert_eq!(
            instance_of_id("20250102-030405-alpha-a1b2c3"),
            Some("alpha")
        );
        assert_eq!(
            instance_of_id("20250102-030405-my-site-2-00ff00"),
            Some("my-site-2")
        );
        assert_eq!(instance_of_id("20250102-030405-alpha-xyz123"), None);
        assert_eq!(instance_of_id("2025010-030405-alpha-a1b2c3"), None);
        assert_eq!(instance_of_id("20250102-030405--a1b2c3"), None);
        assert_eq!(instance_of_id("20250102-030405-Al\u{e9}-a1b2c3"), None);
        assert_eq!(instance_of_id("nightly"), None);
    }

    /// Shape written by the Python abssctl 0.1.5a1.
    const PYTHON_INDEX: &str = r#"{
  "backups": [
    {
      "id": "20250102-030405-alpha-a1b2c3",
      "instance": "alpha",
      "created_at": "2025-01-02T03:04:05Z",
      "path": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
      "algorithm": "zstd",
      "compression_level": null,
      "size_bytes": 1234,
      "checksum": {"algorithm": "sha256", "value": "00ff", "future": true},
      "status": "available",
      "message": "nightly",
      "created_by": "root",
      "metadata": {"data_only": false, "labels": ["nightly"], "python_only": 7},
      "python_extra": {"a": [1, "two"]}
    },
    {
      "id": "20250103-000000-beta-000001",
      "instance": "beta",
      "created_at": "2025-01-03T00:00:00Z",
      "archive_path": "/srv/backups/beta/20250103-000000-beta-000001.tar.gz",
      "checksum_sha256": "abcd",
      "status": "present"
    }
  ],
  "schema": 1
}"#;

    #[test]
    fn python_index_round_trips_with_unknown_keys() {
        let index = Index::parse(PYTHON_INDEX.as_bytes()).unwrap();
        assert_eq!(index.backups.len(), 2);
        let a = &index.backups[0];
        assert_eq!(a.created_by, Some(Value::String("root".into())));
        assert_eq!(a.metadata.labels, vec!["nightly"]);
        let b = &index.backups[1];
        assert_eq!(
            b.path,
            "/srv/backups/beta/20250103-000000-beta-000001.tar.gz"
        );
        assert_eq!(b.sha256(), Some("abcd"));
        assert_eq!(b.status, "available");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        index.save(&path).unwrap();
        let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["schema"], 1);
        assert_eq!(raw["backups"][0]["python_extra"]["a"][1], "two");
        assert_eq!(raw["backups"][0]["metadata"]["python_only"], 7);
        assert_eq!(raw["backups"][0]["checksum"]["future"], true);
        assert_eq!(raw["backups"][0]["compression_level"], Value::Null);
        assert_eq!(raw["backups"][1]["path"], b.path.as_str());
        assert_eq!(raw["backups"][1]["checksum"]["value"], "abcd");
        assert_eq!(Index::load(&path).unwrap(), index);
    }

    #[test]
    fn newest_first_and_filters() {
        let index = Index::parse(PYTHON_INDEX.as_bytes()).unwrap();
        let ids: Vec<_> = index
            .newest_first(None)
            .into_iter()
            .map(|b| b.instance)
            .collect();
        assert_eq!(ids, ["beta", "alpha"]);
        assert_eq!(index.newest_first(Some("alpha")).len(), 1);
    }

    #[test]
    fn same_second_entries_list_by_id_descending() {
        let mut index = Index::parse(PYTHON_INDEX.as_bytes()).unwrap();
        let mut later = index.backups[0].clone();
        later.id = "20250102-030405-alpha-000000".into(); // sorts before by id
        index.backups.push(later);
        let ids: Vec<_> = index
            .newest_first(Some("alpha"))
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(
            ids,
            [
                "20250102-030405-alpha-a1b2c3",
                "20250102-030405-alpha-000000"
            ]
        );
    }

    #[test]
    fn ids_made_within_one_second_sort_as_they_were_made() {
        let base: jiff::Timestamp = "2026-12-04T11:28:40Z".parse().unwrap();
        let ids: Vec<String> = [0, 1, 499, 998, 999]
            .iter()
            .map(|ms| new_backup_id("alpha", base + jiff::SignedDuration::from_millis(*ms)))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        assert!(
            ids.iter().all(|id| instance_of_id(id) == Some("alpha")),
            "{ids:?}"
        );
    }

    /// An index of `n` entries of alpha and beta, one a minute, every third
    /// one labelled and every fifth one missing; some share a second.
    fn many(n: u32) -> Index {
        let base: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let backups = (0..n)
            .map(|i| {
                let at = base + jiff::SignedDuration::from_secs(i64::from(i / 2) * 60);
                let instance = if i % 2 == 0 { "alpha" } else { "beta" };
                let mut e = BackupEntry::new(
                    format!("{}-{instance}-{i:06x}", fsutil::compact(at)),
                    instance.into(),
                    at.to_string(),
                    format!("/b/{i}.tar"),
                    "none",
                    1,
                    "00".into(),
                );
                if i % 3 == 0 {
                    e.metadata.labels = vec!["nightly".into()];
                }
                if i % 5 == 0 {
                    e.status = "missing".into();
                }
                e
            })
            .collect();
        Index {
            backups,
            extra: Map::new(),
        }
    }

    fn listing(index: Index) -> Listing {
        let index = Arc::new(index);
        Listing {
            order: sorted(&index),
            index,
        }
    }

    /// Every page of `filter` in turn, `limit` at a time.
    fn every_page(l: &Listing, filter: &Filter, limit: usize) -> Vec<Vec<String>> {
        let (mut pages, mut after) = (Vec::new(), None);
        loop {
            let page = l.page(filter, after.as_ref(), limit, usize::MAX);
            pages.push(page.entries.iter().map(|b| b.id.clone()).collect());
            match page.next {
                // On the wire and back.
                Some(c) => after = Some(Cursor::parse(&c.to_string()).unwrap()),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_cover_the_filtered_list_once_in_order() {
        let index = many(1000);
        let l = listing(index.clone());
        let filters = [
            Filter::default(),
            Filter {
                instance: Some("beta".into()),
                label: Some("nightly".into()),
                ..Filter::default()
            },
            Filter {
                status: Some("missing".into()),
                since: Some("2026-01-01T01:00:00Z".parse().unwrap()),
                until: Some("2026-01-01T03:00:00Z".parse().unwrap()),
                ..Filter::default()
            },
        ];
        for filter in &filters {
            let whole: Vec<String> = index
                .newest_first(None)
                .into_iter()
                .filter(|b| filter.matches(created(&b.created_at), b))
                .map(|b| b.id)
                .collect();
            assert!(!whole.is_empty(), "{filter:?}");
            for limit in [1, 7, 1000] {
                let pages = every_page(&l, filter, limit);
                assert!(pages.iter().all(|p| p.len() <= limit));
                assert_eq!(pages.concat(), whole, "{filter:?} limit {limit}");
            }
            let first = l.page(filter, None, 7, usize::MAX);
            assert_eq!(first.total as usize, whole.len());
        }
        // The time filters: since inclusive, until exclusive.
        let at = |t: &str| Some(t.parse().unwrap());
        let one = Filter {
            since: at("2026-01-01T00:01:00Z"),
            until: at("2026-01-01T00:02:00Z"),
            ..Filter::default()
        };
        assert_eq!(l.page(&one, None, 10, usize::MAX).total, 2);
    }

    #[test]
    fn a_cursor_holds_its_place_when_entries_come_and_go() {
        let mut index = many(300);
        let l = listing(index.clone());
        let first = l.page(&Filter::default(), None, 100, usize::MAX);
        let seen: Vec<String> = first.entries.iter().map(|b| b.id.clone()).collect();
        let cursor = first.next.unwrap();
        // Meanwhile: a newer backup, and a third of the listed ones removed
        // (an offset would now skip entries).
        let mut newer = index.backups[0].clone();
        newer.id = "20990101-000000-alpha-000000".into();
        newer.created_at = "2099-01-01T00:00:00Z".into();
        index.backups.push(newer);
        index.backups.retain(|b| !seen[..33].contains(&b.id));
        let l = listing(index.clone());
        let mut rest = Vec::new();
        let mut after = Some(cursor);
        while let Some(c) = after {
            let page = l.page(&Filter::default(), Some(&c), 100, usize::MAX);
            rest.extend(page.entries.iter().map(|b| b.id.clone()));
            after = page.next;
        }
        let mut all = seen.clone();
        all.extend(rest);
        let expected: Vec<String> = many(300)
            .newest_first(None)
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_page_ends_at_its_byte_budget_but_holds_one_entry() {
        let l = listing(many(50));
        let one = json_size(&l.index.backups[0]);
        let page = l.page(&Filter::default(), None, 50, one * 3 + one / 2);
        assert_eq!(page.entries.len(), 3);
        assert!(page.next.is_some());
        let page = l.page(&Filter::default(), None, 50, 1);
        assert_eq!(page.entries.len(), 1);
    }

    #[test]
    fn a_cursor_not_given_by_a_list_is_refused() {
        for bad in [
            "",
            "x",
            "2026-01-01T00:00:00Z",
            "yesterday/abc",
            "2026-01-01T00:00:00Z/a/b",
        ] {
            let e = Cursor::parse(bad).unwrap_err();
            assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation, "{bad}");
        }
        let c = Cursor::parse("/odd-id").unwrap();
        assert_eq!(c.to_string(), "/odd-id");
    }

    #[test]
    fn times_without_an_offset_are_utc_and_unreadable_ones_list_last() {
        assert_eq!(
            created("2026-01-01T00:00:00"),
            created("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            created("2026-01-01T01:00:00+01:00"),
            created("2026-01-01T00:00:00Z")
        );
        let mut index = many(3);
        index.backups[2].created_at = "whenever".into();
        let ids: Vec<String> = index.newest_first(None).into_iter().map(|b| b.id).collect();
        assert_eq!(ids.last(), Some(&index.backups[2].id));
    }

    #[test]
    fn corrupt_index_is_an_error_naming_the_file_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        std::fs::write(&path, b"{\"backups\": [").unwrap();
        let err = Index::load(&path).unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Environment);
        assert!(err.to_string().contains("backups.json"));
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"backups\": [");
        assert!(
            Index::load(&dir.path().join("absent.json"))
                .unwrap()
                .backups
                .is_empty()
        );
    }

    #[test]
    fn ids_have_the_python_shape() {
        let id = new_backup_id("alpha", jiff::Timestamp::now());
        let parts: Vec<_> = id.splitn(3, '-').collect();
        assert_eq!(parts[0].len(), 8);
        assert_eq!(parts[1].len(), 6);
        assert!(parts[2].starts_with("alpha-"));
        assert_eq!(parts[2].len(), "alpha-".len() + 6);
    }
}
