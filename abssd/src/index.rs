//! The backup index, `backups.json` (SPEC §5), shared with the Python tool.
//!
//! The Python tool or an operator may change it at any time. The list and
//! `show` go through [`Cache`], a table of contents made again only when the
//! file changed; everything else reads the file one entry at a time
//! ([`stream`]), and writers rewrite it that way under the global lock, in a
//! temporary file renamed over it.
//! Keys this project does not know are kept; the older key spellings are
//! accepted on read and written in the current spelling.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abssd_proto::{BackupEntry, status};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

pub mod stream;

use stream::Stamp;

/// What the daemon keeps of the index between calls: a [`Toc`] of the file's
/// current version, made again only when the file's [`Stamp`] changed.
#[derive(Debug, Default)]
pub struct Cache(Mutex<Option<Arc<Toc>>>);

/// How often a read that found the file changed under it starts again.
const RETRIES: usize = 3;

impl Cache {
    /// The table of contents of the index at `path` as the file is now (a
    /// missing file is an empty index, a corrupt one an error, as
    /// [`Index::load`]). Blocking: a stat, and a walk of the file when it
    /// changed. The stamp is taken from the open file before it is read, so
    /// a change made during the walk shows as another stamp at the next call.
    pub fn toc(&self, path: &Path) -> Result<Arc<Toc>> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = match std::fs::metadata(path) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).at("reading backup index", path),
        };
        if let Some(toc) = cached.as_ref()
            && toc.path == path
            && toc.stamp == now
        {
            return Ok(Arc::clone(toc));
        }
        *cached = None;
        let built = Toc::build(path);
        // The walk's buffers and the rows' growth are freed: give them back.
        crate::memory::release_freed();
        let toc = Arc::new(built?);
        *cached = Some(Arc::clone(&toc));
        Ok(toc)
    }

    /// One page of the list (see [`Toc::page`]), read again from a new table
    /// when the file changed while the page was read.
    pub fn page(
        &self,
        path: &Path,
        filter: &Filter,
        after: Option<&Cursor>,
        limit: usize,
        budget: usize,
    ) -> Result<Page> {
        self.retrying(path, |toc| toc.page(filter, after, limit, budget))
    }

    /// The entry with this id, or `None`.
    pub fn get(&self, path: &Path, id: &str) -> Result<Option<BackupEntry>> {
        self.retrying(path, |toc| toc.get(id))
    }

    fn retrying<T>(
        &self,
        path: &Path,
        read: impl Fn(&Toc) -> std::result::Result<T, Stale>,
    ) -> Result<T> {
        for _ in 0..RETRIES {
            let toc = self.toc(path)?;
            match read(&toc) {
                Ok(v) => return Ok(v),
                Err(Stale::Error(e)) => return Err(e),
                Err(Stale::Changed) => {
                    let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
                    if cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, &toc)) {
                        *cached = None;
                    }
                }
            }
        }
        Err(Error::Environment(format!(
            "{} changed under each of {RETRIES} reads; try again",
            path.display()
        )))
    }
}

/// Why a read through a [`Toc`] did not answer.
#[derive(Debug)]
enum Stale {
    /// The file is no longer the version the table was made of.
    Changed,
    Error(Error),
}

impl From<Error> for Stale {
    fn from(e: Error) -> Stale {
        Stale::Error(e)
    }
}

/// A table of contents of one version of the index file: for each entry its
/// place in the list order, the fields the list filters on, and where its
/// bytes are, in the file held open. An entry is read from the file when a
/// page or `show` needs it, so the daemon holds ~150 bytes an entry rather
/// than the parsed index (~3 KB an entry). Writers replace the file by a
/// rename, so the open file keeps the bytes the table points at; a write in
/// place is caught by the stamp of the open file, checked after every read.
#[derive(Debug)]
pub struct Toc {
    path: PathBuf,
    /// `None` for a missing file.
    stamp: Option<Stamp>,
    file: Option<std::fs::File>,
    /// Newest first, by creation time then id (both descending).
    rows: Box<[Row]>,
    /// Instance names, statuses and labels, each once; rows point into it.
    names: Box<[Box<str>]>,
    /// The sets of labels entries carry (into `names`), each once.
    label_sets: Box<[Box<[u32]>]>,
}

#[derive(Debug)]
struct Row {
    at: Option<Timestamp>,
    id: Box<str>,
    offset: u64,
    len: u32,
    instance: u32,
    status: u32,
    /// Into `label_sets`.
    labels: u32,
}

/// The fields of an entry a [`Toc`] keeps, read without the rest.
#[derive(Deserialize)]
struct Listed<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    instance: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    created_at: std::borrow::Cow<'a, str>,
    #[serde(borrow, default = "unknown")]
    status: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    metadata: ListedMetadata<'a>,
}

#[derive(Deserialize, Default)]
struct ListedMetadata<'a> {
    #[serde(borrow, default)]
    labels: Vec<std::borrow::Cow<'a, str>>,
}

fn unknown() -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(status::UNKNOWN)
}

impl Toc {
    fn build(path: &Path) -> Result<Toc> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Toc {
                    path: path.to_owned(),
                    stamp: None,
                    file: None,
                    rows: Box::new([]),
                    names: Box::new([]),
                    label_sets: Box::new([]),
                });
            }
            Err(e) => return Err(e).at("reading backup index", path),
        };
        let stamp = file
            .metadata()
            .map(|m| Stamp::of(&m))
            .at("reading backup index", path)?;
        let mut interned: std::collections::HashMap<String, u32> = Default::default();
        let mut names: Vec<Box<str>> = Vec::new();
        let mut intern = |name: &str| -> u32 {
            if let Some(&i) = interned.get(name) {
                return i;
            }
            let i = u32::try_from(names.len()).unwrap_or(u32::MAX);
            names.push(name.into());
            interned.insert(name.to_owned(), i);
            i
        };
        let mut sets: std::collections::HashMap<Vec<u32>, u32> = Default::default();
        let mut label_sets: Vec<Box<[u32]>> = Vec::new();
        let mut rows = Vec::new();
        let mut reader = stream::Reader::new(&file, path);
        while let Some((offset, raw)) = reader.next_raw()? {
            // Only the fields the list sorts and filters on; the whole entry
            // is parsed (and checked) when a page or `show` reads it.
            let entry: Listed<'_> = serde_json::from_slice(raw).map_err(|e| Error::Corrupt {
                path: path.to_owned(),
                format: "JSON",
                message: format!("the entry at byte {offset}: {e}"),
            })?;
            let status = match &*entry.status {
                status::LEGACY_PRESENT => status::AVAILABLE,
                s => s,
            };
            let set: Vec<u32> = entry.metadata.labels.iter().map(|l| intern(l)).collect();
            let labels = *sets.entry(set).or_insert_with_key(|set| {
                label_sets.push(set.clone().into_boxed_slice());
                u32::try_from(label_sets.len() - 1).unwrap_or(u32::MAX)
            });
            rows.push(Row {
                at: created(&entry.created_at),
                offset,
                len: u32::try_from(raw.len()).unwrap_or(u32::MAX),
                instance: intern(&entry.instance),
                status: intern(status),
                labels,
                id: entry.id.into(),
            });
        }
        reader.finish()?;
        // Rows with one time and id (an entry written twice) in file order.
        rows.sort_unstable_by(|a, b| {
            (b.at, &b.id)
                .cmp(&(a.at, &a.id))
                .then(a.offset.cmp(&b.offset))
        });
        Ok(Toc {
            path: path.to_owned(),
            stamp: Some(stamp),
            file: Some(file),
            rows: rows.into_boxed_slice(),
            names: names.into_boxed_slice(),
            label_sets: label_sets.into_boxed_slice(),
        })
    }

    /// How many entries the file holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the file holds no entry.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn matches(&self, filter: &Filter, row: &Row) -> bool {
        let name = |i: u32| &*self.names[i as usize];
        filter.matches(
            row.at,
            name(row.instance),
            name(row.status),
            self.label_sets[row.labels as usize]
                .iter()
                .map(|&l| name(l)),
        )
    }

    /// The entries `filter` matches after `after` (from the newest without
    /// one): at most `limit`, and no more than `budget` bytes of the file
    /// beyond the first.
    fn page(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        limit: usize,
        budget: usize,
    ) -> std::result::Result<Page, Stale> {
        fn key(r: &Row) -> (Option<Timestamp>, &str) {
            (r.at, &r.id)
        }
        // The first row of the run of rows with `r`'s time and id.
        let run =
            |at: Option<Timestamp>, id: &str| self.rows.partition_point(|r| key(r) > (at, id));
        // After the cursor: past every row before its time and id in the
        // order, and past as many rows with those as it had passed.
        let start = after.map_or(0, |c| {
            let first = run(c.at, &c.id);
            let end = self
                .rows
                .partition_point(|r| key(r) >= (c.at, c.id.as_str()));
            first + (c.same as usize).min(end - first)
        });
        let total = self.rows.iter().filter(|r| self.matches(filter, r)).count();
        let cursor_at = |i: usize| {
            let r = &self.rows[i];
            Cursor {
                at: r.at,
                id: r.id.to_string(),
                same: u32::try_from(i - run(r.at, &r.id) + 1).unwrap_or(u32::MAX),
            }
        };
        // Chosen by their size in the file, then cut again by the size of
        // their JSON in the answer (numbers and absent keys may write longer).
        let mut chosen: Vec<usize> = Vec::new();
        let (mut bytes, mut more) = (0usize, false);
        for (i, row) in self.rows.iter().enumerate().skip(start) {
            if !self.matches(filter, row) {
                continue;
            }
            let size = row.len as usize;
            if chosen.len() == limit || (!chosen.is_empty() && bytes + size > budget) {
                more = true;
                break;
            }
            bytes += size;
            chosen.push(i);
        }
        let rows: Vec<&Row> = chosen.iter().map(|&i| &self.rows[i]).collect();
        let mut entries = self.read(&rows)?;
        let mut answer = 0usize;
        let fit = entries
            .iter()
            .position(|e| {
                answer += json_size(e);
                answer > budget
            })
            .map_or(entries.len(), |k| k.max(1));
        if fit < entries.len() {
            entries.truncate(fit);
            more = true;
        }
        let next = if more {
            entries.len().checked_sub(1).map(|k| cursor_at(chosen[k]))
        } else {
            None
        };
        Ok(Page {
            entries,
            total: total as u64,
            next,
        })
    }

    fn get(&self, id: &str) -> std::result::Result<Option<BackupEntry>, Stale> {
        let Some(row) = self.rows.iter().find(|r| &*r.id == id) else {
            return Ok(None);
        };
        Ok(self.read(&[row])?.pop())
    }

    /// The entries of `rows`, read from the open file; [`Stale::Changed`]
    /// when the file was written in place meanwhile.
    fn read(&self, rows: &[&Row]) -> std::result::Result<Vec<BackupEntry>, Stale> {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.file else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut buf = Vec::new();
        let mut corrupt = None;
        for row in rows {
            buf.resize(row.len as usize, 0);
            match file.read_exact_at(&mut buf, row.offset) {
                Ok(()) => {}
                // Shorter than the table says: written in place meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Stale::Changed);
                }
                Err(e) => {
                    return Err(Stale::Error(Error::Io {
                        action: "reading backup index",
                        path: self.path.clone(),
                        source: e,
                    }));
                }
            }
            match stream::parse_entry(&buf) {
                Ok(entry) if *entry.id == *row.id => out.push(entry),
                Ok(_) => return Err(Stale::Changed),
                Err(message) => {
                    corrupt = Some(format!("the entry at byte {}: {message}", row.offset));
                    break;
                }
            }
        }
        let now = file
            .metadata()
            .map(|m| Stamp::of(&m))
            .at("reading backup index", &self.path)?;
        if Some(now) != self.stamp {
            return Err(Stale::Changed);
        }
        // The file is as it was when the table was made: an entry that does
        // not parse is in it.
        if let Some(message) = corrupt {
            return Err(Stale::Error(Error::Corrupt {
                path: self.path.clone(),
                format: "JSON",
                message,
            }));
        }
        Ok(out)
    }
}

/// `entries` in the list order: newest first, by creation time then by id,
/// both descending (an unreadable time sorts as the oldest).
pub fn newest_first(entries: Vec<BackupEntry>) -> Vec<BackupEntry> {
    let mut keyed: Vec<(Option<Timestamp>, BackupEntry)> = entries
        .into_iter()
        .map(|e| (created(&e.created_at), e))
        .collect();
    keyed.sort_unstable_by(|a, b| (b.0, &b.1.id).cmp(&(a.0, &a.1.id)));
    keyed.into_iter().map(|(_, e)| e).collect()
}

/// An entry's `created_at` as a time: RFC 3339 (with its offset), read as
/// prune reads it; anything else is unreadable.
pub fn created(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

/// Where a page of the list ended: the last entry's creation time and id,
/// and how many entries with that same time and id the page took (an index
/// may hold an entry twice). The next page starts after it in the list order,
/// whatever was added or removed meanwhile. On the wire, opaque to clients:
/// `<RFC 3339 time>_<the id in hex>_<count>` (the time empty when
/// unreadable), so any id an index holds makes a cursor that reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    at: Option<Timestamp>,
    id: String,
    same: u32,
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
        let mut parts = text.split('_');
        let (Some(at), Some(id), Some(same), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let id = hex::decode(id)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|id| !id.is_empty())
            .ok_or_else(bad)?;
        let at = match at {
            "" => None,
            at => Some(at.parse::<Timestamp>().map_err(|_| bad())?),
        };
        let same = same
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(bad)?;
        Ok(Cursor { at, id, same })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(at) = self.at {
            write!(f, "{at}")?;
        }
        write!(f, "_{}_{}", hex::encode(&self.id), self.same)
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
    fn matches<'a>(
        &self,
        at: Option<Timestamp>,
        instance: &str,
        status: &str,
        mut labels: impl Iterator<Item = &'a str>,
    ) -> bool {
        let timed = self.since.is_some() || self.until.is_some();
        self.instance.as_ref().is_none_or(|i| i == instance)
            && self.status.as_ref().is_none_or(|s| s == status)
            && self.label.as_ref().is_none_or(|l| labels.any(|x| x == l))
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

/// The error for a backup id the index at `file` does not hold.
pub fn not_found(id: &str, file: &Path) -> Error {
    Error::NotFound {
        what: "backup",
        name: id.to_owned(),
        hint: format!(" in {} (abssctl backup list shows the ids)", file.display()),
    }
}

/// The entry with this id (the first in the file), read one entry at a time;
/// a not-found error naming the file when there is none, a validation error
/// for an id no backup can have. Blocking.
pub fn require(file: &Path, id: &str) -> Result<BackupEntry> {
    check_id(id)?;
    stream::find(file, id)?.ok_or_else(|| not_found(id, file))
}

/// Change the entry with this id (the first in the file, should it hold two)
/// with `change`, which says whether it changed anything; only then is the
/// index rewritten (one entry at a time, [`stream::rewrite`]). `None` when no
/// entry has the id. Blocking; the caller holds the global lock.
pub fn update<T>(
    path: &Path,
    id: &str,
    change: impl FnOnce(&mut BackupEntry) -> Result<(bool, T)>,
) -> Result<Option<T>> {
    // Found and changed first: a change that changes nothing (or an id that
    // is not there) costs a read, not a rewrite.
    let Some(found) = stream::find(path, id)? else {
        return Ok(None);
    };
    let mut changed = found.clone();
    let (did, value) = change(&mut changed)?;
    if !did {
        return Ok(Some(value));
    }
    let mut pending = Some(changed);
    stream::rewrite(
        path,
        |entry| {
            if entry.id != id || pending.is_none() {
                return Ok(stream::Edit::Keep(entry));
            }
            // The entry read first is the one the change was made to.
            if entry != found {
                return Err(Error::Environment(format!(
                    "the index entry of {id} changed while it was being updated; try again"
                )));
            }
            Ok(pending
                .take()
                .map_or(stream::Edit::Keep(entry), stream::Edit::Changed))
        },
        || Ok(Vec::new()),
    )?;
    Ok(Some(value))
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

/// The ids of an index, kept as 64-bit keyed hashes (8 bytes an id): enough
/// to tell that an id is absent, which is what an orphan or an adoption asks
/// nearly always. A possible hit is looked up in the file.
#[derive(Debug)]
pub struct IdSet {
    file: PathBuf,
    keys: std::hash::RandomState,
    ids: std::collections::HashSet<u64>,
}

impl IdSet {
    /// An empty set for the index at `file`.
    pub fn new(file: &Path) -> IdSet {
        IdSet {
            file: file.to_owned(),
            keys: std::hash::RandomState::new(),
            ids: Default::default(),
        }
    }

    fn key(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hash_one(id)
    }

    /// Note `id`.
    pub fn insert(&mut self, id: &str) {
        let key = self.key(id);
        self.ids.insert(key);
    }

    /// The entry with this id, read from the file when the set may hold it.
    /// Blocking.
    pub fn get(&self, id: &str) -> Result<Option<BackupEntry>> {
        if !self.ids.contains(&self.key(id)) {
            return Ok(None);
        }
        stream::find(&self.file, id)
    }
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
        // Walked one entry at a time: the file's bytes are never all in
        // memory beside the parsed entries.
        let mut backups = Vec::new();
        let extra = stream::each(path, |entry| {
            backups.push(entry);
            Ok(())
        })?;
        Ok(Index { backups, extra })
    }

    /// Parse index bytes whole, normalizing older spellings: the reference
    /// the tests hold [`stream`] to.
    #[cfg(test)]
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
        self.get(id).ok_or_else(|| not_found(id, file))
    }

    /// Entries newest first, optionally for one instance: by creation time,
    /// then by id (the list order of [`Toc`]).
    pub fn newest_first(&self, instance: Option<&str>) -> Vec<BackupEntry> {
        newest_first(
            self.backups
                .iter()
                .filter(|b| instance.is_none_or(|i| b.instance == i))
                .cloned()
                .collect(),
        )
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
    use std::os::unix::fs::MetadataExt;

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
        let first_id = |cache: &Cache| {
            cache
                .page(&path, &Filter::default(), None, 1, usize::MAX)
                .map(|p| p.entries.first().map(|e| e.id.clone()))
        };
        assert!(cache.toc(&path).unwrap().is_empty(), "no file yet");

        let a = "20260101-000000-alpha-aaaaaa";
        let b = "20260101-000000-alpha-bbbbbb";
        std::fs::write(&path, entry_json(a)).unwrap();
        let first = cache.toc(&path).unwrap();
        assert_eq!(first_id(&cache).unwrap().as_deref(), Some(a));
        assert!(
            Arc::ptr_eq(&first, &cache.toc(&path).unwrap()),
            "unchanged: the same table"
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
        assert_eq!(first_id(&cache).unwrap().as_deref(), Some(b));

        // Written in place (the same inode) at the same size, in the same
        // second: the nanoseconds tell.
        std::fs::write(&path, entry_json(a)).unwrap();
        set_mtime(&path, (mtime.0, (mtime.1 + 1) % 1_000_000_000));
        assert_eq!(first_id(&cache).unwrap().as_deref(), Some(a));

        // Gone: an empty index again; corrupt: an error, never the old parse.
        std::fs::remove_file(&path).unwrap();
        assert!(cache.toc(&path).unwrap().is_empty());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(cache.toc(&path), Err(Error::Corrupt { .. })));
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

    /// The table of contents of `index` written to a file.
    fn toc(index: &Index) -> (tempfile::TempDir, Toc) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        index.save(&path).unwrap();
        let toc = Toc::build(&path).unwrap();
        (dir, toc)
    }

    fn page(l: &Toc, filter: &Filter, after: Option<&Cursor>, limit: usize, budget: usize) -> Page {
        l.page(filter, after, limit, budget).unwrap()
    }

    fn matches(filter: &Filter, b: &BackupEntry) -> bool {
        filter.matches(
            created(&b.created_at),
            &b.instance,
            &b.status,
            b.metadata.labels.iter().map(String::as_str),
        )
    }

    /// Every page of `filter` in turn, `limit` at a time.
    fn every_page(l: &Toc, filter: &Filter, limit: usize) -> Vec<Vec<String>> {
        let (mut pages, mut after) = (Vec::new(), None);
        loop {
            let page = page(l, filter, after.as_ref(), limit, usize::MAX);
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
        let (_dir, l) = toc(&index);
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
                .filter(|b| matches(filter, b))
                .map(|b| b.id)
                .collect();
            assert!(!whole.is_empty(), "{filter:?}");
            for limit in [1, 7, 1000] {
                let pages = every_page(&l, filter, limit);
                assert!(pages.iter().all(|p| p.len() <= limit));
                assert_eq!(pages.concat(), whole, "{filter:?} limit {limit}");
            }
            let first = page(&l, filter, None, 7, usize::MAX);
            assert_eq!(first.total as usize, whole.len());
        }
        // The time filters: since inclusive, until exclusive.
        let at = |t: &str| Some(t.parse().unwrap());
        let one = Filter {
            since: at("2026-01-01T00:01:00Z"),
            until: at("2026-01-01T00:02:00Z"),
            ..Filter::default()
        };
        assert_eq!(page(&l, &one, None, 10, usize::MAX).total, 2);
    }

    #[test]
    fn a_cursor_holds_its_place_when_entries_come_and_go() {
        let mut index = many(300);
        let (_dir, l) = toc(&index);
        let first = page(&l, &Filter::default(), None, 100, usize::MAX);
        let seen: Vec<String> = first.entries.iter().map(|b| b.id.clone()).collect();
        let cursor = first.next.unwrap();
        // Meanwhile: a newer backup, and a third of the listed ones removed
        // (an offset would now skip entries).
        let mut newer = index.backups[0].clone();
        newer.id = "20990101-000000-alpha-000000".into();
        newer.created_at = "2099-01-01T00:00:00Z".into();
        index.backups.push(newer);
        index.backups.retain(|b| !seen[..33].contains(&b.id));
        let (_dir2, l) = toc(&index);
        let mut rest = Vec::new();
        let mut after = Some(cursor);
        while let Some(c) = after {
            let page = page(&l, &Filter::default(), Some(&c), 100, usize::MAX);
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
    fn an_entry_written_twice_is_listed_twice_whatever_the_page_size() {
        let mut index = many(10);
        let twice = index.backups[4].clone();
        index.backups.push(twice.clone());
        index.backups.push(twice.clone());
        let (_dir, l) = toc(&index);
        let whole: Vec<String> = every_page(&l, &Filter::default(), 1000).concat();
        assert_eq!(whole.iter().filter(|id| **id == twice.id).count(), 3);
        for limit in [1, 2, 3] {
            assert_eq!(
                every_page(&l, &Filter::default(), limit).concat(),
                whole,
                "limit {limit}"
            );
        }
    }

    #[test]
    fn a_cursor_whose_entry_was_removed_still_holds_its_place() {
        let mut index = many(30);
        let (_dir, l) = toc(&index);
        let first = page(&l, &Filter::default(), None, 10, usize::MAX);
        let cursor = first.next.unwrap();
        let last = first.entries.last().unwrap().id.clone();
        index.backups.retain(|b| b.id != last);
        let (_dir2, l) = toc(&index);
        let rest: Vec<String> = page(&l, &Filter::default(), Some(&cursor), 100, usize::MAX)
            .entries
            .into_iter()
            .map(|b| b.id)
            .collect();
        let expected: Vec<String> = many(30)
            .newest_first(None)
            .into_iter()
            .skip(10)
            .map(|b| b.id)
            .collect();
        assert_eq!(rest, expected);
    }

    #[test]
    fn a_page_ends_at_its_byte_budget_but_holds_one_entry() {
        let (_dir, l) = toc(&many(50));
        let one = l.rows[0].len as usize;
        let p = page(&l, &Filter::default(), None, 50, one * 3 + one / 2);
        assert_eq!(p.entries.len(), 3);
        assert!(p.next.is_some());
        let p = page(&l, &Filter::default(), None, 50, 1);
        assert_eq!(p.entries.len(), 1);
    }

    #[test]
    fn an_entry_the_table_reads_but_the_parser_refuses_is_a_corrupt_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        let text = format!(
            r#"{{"backups": [{}, {{"id": "20260101-000000-alpha-bad000", "instance": "alpha", "created_at": "2026-01-01T00:00:00Z", "path": "/b/x", "status": "present", "size_bytes": "big"}}]}}"#,
            entry_json("20260101-000000-alpha-aaaaaa")
                .trim_start_matches(r#"{"backups":["#)
                .trim_end_matches("]}")
        );
        std::fs::write(&path, text).unwrap();
        let cache = Cache::default();
        assert_eq!(cache.toc(&path).unwrap().len(), 2);
        // The good one reads; the list of both says the index is corrupt
        // (once, not three reads of a file taken to be changing).
        assert!(
            cache
                .get(&path, "20260101-000000-alpha-aaaaaa")
                .unwrap()
                .is_some()
        );
        let e = cache
            .page(&path, &Filter::default(), None, 10, usize::MAX)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Corrupt { message, .. } if message.contains("\"big\"")),
            "{e}"
        );
        // A legacy status is filtered on as what it means.
        let available = Filter {
            status: Some("available".into()),
            ..Filter::default()
        };
        let toc = cache.toc(&path).unwrap();
        assert_eq!(
            toc.rows
                .iter()
                .filter(|r| toc.matches(&available, r))
                .count(),
            2
        );
    }

    #[test]
    fn a_write_in_place_is_seen_after_the_read_and_read_again() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        let mut index = many(20);
        index.save(&path).unwrap();
        let cache = Cache::default();
        let first = cache.get(&path, &index.backups[3].id).unwrap().unwrap();
        assert_eq!(first.message, None);
        let held = cache.toc(&path).unwrap();
        // Rewritten in place (same inode): the table's offsets are wrong now.
        index.backups[3].message = Some("edited".into());
        index.backups.remove(0);
        let bytes = serde_json::to_vec_pretty(&index).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        // A table made before the write finds out at its next read.
        assert!(matches!(
            held.get(&index.backups[2].id),
            Err(Stale::Changed)
        ));
        let toc = cache.toc(&path).unwrap();
        assert_eq!(toc.len(), 19);
        let again = cache.get(&path, &index.backups[2].id).unwrap().unwrap();
        assert_eq!(again.message.as_deref(), Some("edited"));
    }

    #[test]
    fn a_cursor_not_given_by_a_list_is_refused() {
        for bad in [
            "",
            "x",
            "2026-01-01T00:00:00Z",
            "yesterday_6162_1",
            "2026-01-01T00:00:00Z_zz_1",
            "2026-01-01T00:00:00Z__1",
            "2026-01-01T00:00:00Z_6162_0",
            "2026-01-01T00:00:00Z_6162_1_",
        ] {
            let e = Cursor::parse(bad).unwrap_err();
            assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation, "{bad}");
        }
        // Any id an index may hold reads back, a `/` or a control in it too.
        for id in ["odd/id", "a\u{1b}b", "\u{202e}x"] {
            let c = Cursor {
                at: None,
                id: id.into(),
                same: 2,
            };
            assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
            assert!(c.to_string().chars().all(|ch| ch.is_ascii_graphic()));
        }
    }

    #[test]
    fn times_are_rfc3339_as_prune_reads_them_and_unreadable_ones_list_last() {
        assert_eq!(created("2026-01-01T00:00:00"), None);
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
