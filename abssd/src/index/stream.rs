//! The index file read one entry at a time, and rewritten the same way.
//!
//! `backups.json` is `{"backups": [entry, ...], other keys}` (SPEC §5); at
//! 100 000 entries it is ~70 MB of JSON, and ~300 MB parsed. [`Reader`] walks
//! the file's bytes through a fixed buffer, hands out each entry's bytes with
//! their offset in the file, and keeps the other top-level keys; nothing holds
//! more than one entry. [`rewrite`] streams a new version of the file into a
//! temporary one entry at a time, in the same shape [`super::Index::save`]
//! writes, and renames it over the old one.
//!
//! The walk checks the structure (objects, arrays, strings, separators); every
//! entry and every other value is then parsed by serde_json, so a file this
//! accepts is one serde_json accepts whole (the tests hold it to that), and a
//! corrupt one is an error naming the file and the byte offset.

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use abssd_proto::BackupEntry;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// One version of the index file: which file it is (device, inode) and its
/// change stamp (size; modification and change times, to the nanosecond). A
/// tool that replaces the file by a rename makes a new inode; one that writes
/// it in place changes its times: either is another stamp, even within one
/// second and at the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The largest entry (or other top-level value) read, in bytes: a file with a
/// bigger one is refused as corrupt rather than buffered. Half the largest
/// answer, so any one entry fits in one `backup.list` page.
pub const MAX_VALUE_BYTES: usize = 8 << 20;

/// How much of the file is read at a time.
const CHUNK: usize = 256 << 10;

/// Where the walk is in the file's top-level object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `{`.
    Start,
    /// Between members of the top-level object (after `{` when `first`).
    Members { first: bool },
    /// In the `backups` array (before its first element when `first`).
    Entries { first: bool },
    /// After the closing `}` (or an empty file).
    Done,
}

/// Entries of an index file in file order, with their byte offsets; see the
/// [module](self).
pub struct Reader<R> {
    src: R,
    path: PathBuf,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The file offset of `buf[0]`.
    offset: u64,
    state: State,
    seen_backups: bool,
    value: Vec<u8>,
    extra: Map<String, Value>,
}

impl<R> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.path)
            .field("at", &(self.offset + self.start as u64))
            .finish_non_exhaustive()
    }
}

impl Reader<File> {
    /// The index file at `path`, open for reading; `None` when it does not
    /// exist (an empty index).
    pub fn open(path: &Path) -> Result<Option<Reader<File>>> {
        match File::open(path) {
            Ok(f) => Ok(Some(Reader::new(f, path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at("reading backup index", path),
        }
    }
}

impl<R: Read> Reader<R> {
    /// Walk `src`; `path` names it in errors.
    pub fn new(src: R, path: &Path) -> Reader<R> {
        Reader {
            src,
            path: path.to_owned(),
            buf: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            state: State::Start,
            seen_backups: false,
            value: Vec::new(),
            extra: Map::new(),
        }
    }

    /// The next entry's bytes and their offset in the file, or `None` after
    /// the last. The bytes are one complete JSON value (not yet parsed).
    pub fn next_raw(&mut self) -> Result<Option<(u64, &[u8])>> {
        loop {
            match self.state {
                State::Start => {
                    self.skip_ws()?;
                    match self.next()? {
                        // An empty (or blank) file is an empty index.
                        None => self.state = State::Done,
                        Some(b'{') => self.state = State::Members { first: true },
                        Some(_) => return Err(self.corrupt("expected `{` at the start")),
                    }
                }
                State::Members { first } => {
                    self.skip_ws()?;
                    let opened = match self.next()? {
                        Some(b'}') => {
                            self.state = State::Done;
                            self.skip_ws()?;
                            if self.peek()?.is_some() {
                                return Err(self.corrupt("more after the closing `}`"));
                            }
                            continue;
                        }
                        Some(b',') if !first => {
                            self.skip_ws()?;
                            self.member()?
                        }
                        Some(b'"') if first => {
                            self.unread();
                            self.member()?
                        }
                        _ => return Err(self.corrupt("expected a key, `,` or `}`")),
                    };
                    self.state = if opened {
                        State::Entries { first: true }
                    } else {
                        State::Members { first: false }
                    };
                }
                State::Entries { first } => {
                    self.skip_ws()?;
                    match self.peek()? {
                        Some(b']') => {
                            self.next()?;
                            self.state = State::Members { first: false };
                            continue;
                        }
                        Some(b',') if !first => {
                            self.next()?;
                            self.skip_ws()?;
                        }
                        Some(_) if first => {}
                        _ => return Err(self.corrupt("expected `,` or `]` after an entry")),
                    }
                    self.state = State::Entries { first: false };
                    let at = self.position();
                    self.capture()?;
                    return Ok(Some((at, &self.value)));
                }
                State::Done => return Ok(None),
            }
        }
    }

    /// The next entry, parsed, with its offset and length in the file.
    pub fn next_entry(&mut self) -> Result<Option<(u64, u32, BackupEntry)>> {
        let path = self.path.clone();
        let Some((at, bytes)) = self.next_raw()? else {
            return Ok(None);
        };
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let entry = parse_entry(bytes).map_err(|message| Error::Corrupt {
            path,
            format: "JSON",
            message: format!("the entry at byte {at}: {message}"),
        })?;
        Ok(Some((at, len, entry)))
    }

    /// Read to the end; the top-level keys other than `backups`.
    pub fn finish(mut self) -> Result<Map<String, Value>> {
        while self.next_raw()?.is_some() {}
        Ok(self.extra)
    }

    /// One member of the top-level object, from its key's opening quote:
    /// `true` when it is `backups` (the array is open), else the value is kept
    /// in `extra`.
    fn member(&mut self) -> Result<bool> {
        if self.peek()? != Some(b'"') {
            return Err(self.corrupt("expected a key"));
        }
        self.capture()?;
        let key: String = serde_json::from_slice(&self.value)
            .map_err(|e| self.corrupt(&format!("a key: {e}")))?;
        self.skip_ws()?;
        if self.next()? != Some(b':') {
            return Err(self.corrupt("expected `:` after a key"));
        }
        self.skip_ws()?;
        if key == "backups" {
            if self.seen_backups {
                return Err(self.corrupt("`backups` twice"));
            }
            self.seen_backups = true;
            return match self.next()? {
                Some(b'[') => Ok(true),
                _ => Err(self.corrupt("`backups` is not a list")),
            };
        }
        let at = self.position();
        self.capture()?;
        let value: Value = serde_json::from_slice(&self.value).map_err(|e| Error::Corrupt {
            path: self.path.clone(),
            format: "JSON",
            message: format!("the value of {key:?} at byte {at}: {e}"),
        })?;
        self.extra.insert(key, value);
        Ok(false)
    }

    /// One JSON value's bytes into `self.value`, checked for balance (not
    /// parsed).
    fn capture(&mut self) -> Result<()> {
        self.value.clear();
        let Some(first) = self.next()? else {
            return Err(self.corrupt("expected a value"));
        };
        self.value.push(first);
        match first {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut open = vec![first];
                while let Some(&top) = open.last() {
                    // Copy the run of bytes up to the next quote or bracket in
                    // one go (most of an entry).
                    let special = |chunk: &[u8]| {
                        chunk
                            .iter()
                            .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
                    };
                    if !self.copy_plain("unbalanced brackets", special)? {
                        continue;
                    }
                    let c = self.take("unbalanced brackets")?;
                    match c {
                        b'"' => self.string()?,
                        b'{' | b'[' => {
                            // serde_json reads fewer than 128 levels of a
                            // whole file; an entry sits in the object and the
                            // list.
                            if open.len() >= 125 {
                                return Err(self.corrupt("nested deeper than 125"));
                            }
                            open.push(c);
                        }
                        b'}' | b']' => {
                            if (top, c) != (b'{', b'}') && (top, c) != (b'[', b']') {
                                return Err(self.corrupt("mismatched brackets"));
                            }
                            open.pop();
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            _ => {
                while let Some(c) = self.peek()? {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.take("")?;
                }
                Ok(())
            }
        }
    }

    /// The rest of a string whose opening quote is in `self.value`.
    fn string(&mut self) -> Result<()> {
        loop {
            // Most of a string is plain bytes: copy up to the next quote or
            // backslash in one go.
            if !self.copy_plain("a string is not closed", |c| {
                memchr::memchr2(b'"', b'\\', c)
            })? {
                continue;
            }
            let c = self.take("a string is not closed")?;
            if c == b'"' {
                return Ok(());
            }
            // A backslash: the escaped byte is taken whatever it is.
            self.take("a string is not closed")?;
        }
    }

    /// Copy into `self.value` the buffered bytes before the first one
    /// `special` finds (all of them when it finds none): `false` when the
    /// buffer ran out first. The end of the file is an error (`unclosed`).
    fn copy_plain(
        &mut self,
        unclosed: &str,
        special: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<bool> {
        if self.start == self.end && !self.fill()? {
            return Err(self.corrupt(unclosed));
        }
        let chunk = &self.buf[self.start..self.end];
        let n = special(chunk).unwrap_or(chunk.len());
        self.grow(n)?;
        self.value
            .extend_from_slice(&self.buf[self.start..self.start + n]);
        self.advance(n);
        Ok(self.start != self.end)
    }

    /// The next byte, kept in `self.value`; the end of the file is an error.
    fn take(&mut self, what: &str) -> Result<u8> {
        let Some(c) = self.next()? else {
            return Err(self.corrupt(what));
        };
        self.grow(1)?;
        self.value.push(c);
        Ok(c)
    }

    fn grow(&self, more: usize) -> Result<()> {
        if self.value.len() + more > MAX_VALUE_BYTES {
            return Err(self.corrupt(&format!(
                "a value larger than {} MiB",
                MAX_VALUE_BYTES >> 20
            )));
        }
        Ok(())
    }

    fn skip_ws(&mut self) -> Result<()> {
        while let Some(c) = self.peek()? {
            if !matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
                break;
            }
            self.advance(1);
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<bool> {
        self.offset += self.end as u64;
        self.start = 0;
        self.end = 0;
        loop {
            match self.src.read(&mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at("reading backup index", &self.path),
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>> {
        if self.start == self.end && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.start]))
    }

    fn next(&mut self) -> Result<Option<u8>> {
        let c = self.peek()?;
        if c.is_some() {
            self.advance(1);
        }
        Ok(c)
    }

    /// Step back over the byte just read (only ever right after `next`).
    fn unread(&mut self) {
        self.start -= 1;
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
    }

    /// The file offset of the next byte.
    fn position(&self) -> u64 {
        // `offset` counts what earlier fills consumed; see `fill`.
        self.offset + self.start as u64
    }

    fn corrupt(&self, message: &str) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            format: "JSON",
            message: format!("{message} (at byte {})", self.position()),
        }
    }
}

/// One entry's JSON, with the older spellings of its keys and status
/// normalized.
pub fn parse_entry(bytes: &[u8]) -> std::result::Result<BackupEntry, String> {
    let mut entry: BackupEntry = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    entry.normalize_legacy();
    Ok(entry)
}

/// Every entry of the index at `path` to `f`, in file order, one at a time;
/// then the other top-level keys. A missing file has neither. Blocking.
pub fn each(
    path: &Path,
    mut f: impl FnMut(BackupEntry) -> Result<()>,
) -> Result<Map<String, Value>> {
    let Some(mut reader) = Reader::open(path)? else {
        return Ok(Map::new());
    };
    while let Some((_, _, entry)) = reader.next_entry()? {
        f(entry)?;
    }
    reader.finish()
}

/// The entry with this id, read through the file at `path` (stops at it).
pub fn find(path: &Path, id: &str) -> Result<Option<BackupEntry>> {
    let Some(mut reader) = Reader::open(path)? else {
        return Ok(None);
    };
    while let Some((_, _, entry)) = reader.next_entry()? {
        if entry.id == id {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// What [`rewrite`] does with one entry.
#[derive(Debug)]
pub enum Edit {
    /// Write it as it is.
    Keep(BackupEntry),
    /// Write this instead (counted as a change).
    Changed(BackupEntry),
    /// Leave it out (counted as a change).
    Drop,
}

/// Write a new version of the index at `path`: every entry of the current
/// file through `edit` in file order, then the entries `append` gives (called
/// once, after the last `edit`: it may depend on what the edits saw), into a temporary file
/// renamed over the old one (fsynced, like [`super::Index::save`], and in the
/// same shape). An error from `edit`, or a corrupt file, leaves the old file
/// as it was; so does an edit that changed nothing (and appended nothing).
/// Returns how many entries were changed, dropped or appended. Blocking; the
/// caller holds the global lock.
pub fn rewrite(
    path: &Path,
    mut edit: impl FnMut(BackupEntry) -> Result<Edit>,
    append: impl FnOnce() -> Result<Vec<BackupEntry>>,
) -> Result<u64> {
    let changes = std::cell::Cell::new(0);
    let mut counted = |entry| {
        let e = edit(entry)?;
        if !matches!(e, Edit::Keep(_)) {
            changes.set(changes.get() + 1);
        }
        Ok(e)
    };
    let reader = Reader::open(path)?;
    // The version read: a writer that does not take the lock (a hand edit)
    // and changed the file meanwhile makes this rewrite fail, not vanish.
    let read = match &reader {
        Some(r) => Some(Stamp::of(
            &r.src.metadata().at("reading backup index", path)?,
        )),
        None => None,
    };
    let tmp = fsutil::write_temp_with(path, |out| {
        let doc = Streamed {
            reader: RefCell::new(reader),
            edit: RefCell::new(&mut counted),
            append: RefCell::new(Appended::Later(Box::new(append))),
            changes: &changes,
            failed: RefCell::new(None),
        };
        let mut ser = serde_json::Serializer::with_formatter(
            &mut *out,
            serde_json::ser::PrettyFormatter::new(),
        );
        let written = serde::Serialize::serialize(&doc, &mut ser);
        if let Some(e) = doc.failed.into_inner() {
            return Err(e);
        }
        written.map_err(|e| Error::Internal(format!("rendering index: {e}")))?;
        out.write_all(b"\n").at("writing", path)
    })?;
    if changes.get() == 0 {
        return Ok(0);
    }
    let now = match std::fs::metadata(path) {
        Ok(m) => Some(Stamp::of(&m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).at("reading backup index", path),
    };
    if now != read {
        return Err(Error::Environment(format!(
            "{} was changed by another writer while abssd rewrote it; nothing was written, try again",
            path.display()
        )));
    }
    crash_point!("index::before-rename");
    fsutil::replace(tmp, path)?;
    Ok(changes.get())
}

/// The document [`rewrite`] writes: `backups` pulled from the reader through
/// the edit as serde asks for them, then the other top-level keys (known by
/// then: the reader has passed the whole file).
struct Streamed<'e, F> {
    reader: RefCell<Option<Reader<File>>>,
    edit: RefCell<&'e mut F>,
    append: RefCell<Appended<'e>>,
    changes: &'e std::cell::Cell<u64>,
    /// The first error of the reader or the edit: the serialization stops.
    failed: RefCell<Option<Error>>,
}

impl<F: FnMut(BackupEntry) -> Result<Edit>> serde::Serialize for Streamed<'_, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("backups", &Entries(self))?;
        if self.failed.borrow().is_some() {
            return Err(serde::ser::Error::custom("stopped"));
        }
        let extra = match self.reader.borrow_mut().take() {
            Some(r) => match r.finish() {
                Ok(extra) => extra,
                Err(e) => {
                    *self.failed.borrow_mut() = Some(e);
                    return Err(serde::ser::Error::custom("stopped"));
                }
            },
            None => Map::new(),
        };
        for (k, v) in &extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The entries [`rewrite`] appends: not asked for yet, being written, or
/// all written.
enum Appended<'e> {
    Later(Box<dyn FnOnce() -> Result<Vec<BackupEntry>> + 'e>),
    Now(std::vec::IntoIter<BackupEntry>),
    Done,
}

struct Entries<'a, 'e, F>(&'a Streamed<'e, F>);

impl<F: FnMut(BackupEntry) -> Result<Edit>> serde::Serialize for Entries<'_, '_, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let s = self.0;
        let next = || -> Result<Option<BackupEntry>> {
            loop {
                let mut reader = s.reader.borrow_mut();
                let Some(r) = reader.as_mut() else {
                    break;
                };
                let Some((_, _, entry)) = r.next_entry()? else {
                    break;
                };
                drop(reader);
                match (s.edit.borrow_mut())(entry)? {
                    Edit::Keep(e) | Edit::Changed(e) => return Ok(Some(e)),
                    Edit::Drop => {}
                }
            }
            let mut append = s.append.borrow_mut();
            if let Appended::Later(_) = &*append {
                let Appended::Later(make) = std::mem::replace(&mut *append, Appended::Done) else {
                    unreachable!("matched above");
                };
                let entries = make()?;
                s.changes.set(s.changes.get() + entries.len() as u64);
                *append = Appended::Now(entries.into_iter());
            }
            Ok(match &mut *append {
                Appended::Now(entries) => entries.next(),
                _ => None,
            })
        };
        let items = std::iter::from_fn(|| match next() {
            Ok(e) => e,
            Err(e) => {
                *s.failed.borrow_mut() = Some(e);
                None
            }
        });
        serializer.collect_seq(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    /// Each entry's offset and text; the other keys.
    type Walked = (Vec<(u64, String)>, Map<String, Value>);

    fn entries(bytes: &[u8]) -> Result<Walked> {
        let mut r = Reader::new(bytes, Path::new("backups.json"));
        let mut out = Vec::new();
        while let Some((at, raw)) = r.next_raw()? {
            out.push((at, String::from_utf8(raw.to_vec()).unwrap()));
        }
        Ok((out, r.finish()?))
    }

    #[test]
    fn entries_come_with_their_offsets_and_other_keys_are_kept() {
        let text = br#" {"schema": 1, "backups": [ {"id": "a", "x": "}\"]"} ,{"id":"b"}], "tail": [1, {"k": "v"}]} "#;
        let (got, extra) = entries(text).unwrap();
        assert_eq!(got.len(), 2);
        for (at, raw) in &got {
            let at = usize::try_from(*at).unwrap();
            assert_eq!(&text[at..at + raw.len()], raw.as_bytes());
        }
        assert_eq!(got[0].1, r#"{"id": "a", "x": "}\"]"}"#);
        assert_eq!(extra["schema"], 1);
        assert_eq!(extra["tail"][1]["k"], "v");
    }

    #[test]
    fn offsets_hold_across_buffer_refills() {
        let mut index = Index::default();
        for i in 0..3000 {
            index.backups.push(BackupEntry::new(
                format!("20260101-000000-alpha-{i:06x}"),
                "alpha".into(),
                "2026-01-01T00:00:00Z".into(),
                format!("/b/{i}.tar.zst"),
                "zstd",
                1,
                "ab".repeat(32),
            ));
        }
        let text = serde_json::to_vec_pretty(&index).unwrap();
        assert!(text.len() > 3 * CHUNK);
        let mut r = Reader::new(&text[..], Path::new("backups.json"));
        let mut n = 0;
        while let Some((at, len, entry)) = r.next_entry().unwrap() {
            let at = usize::try_from(at).unwrap();
            let raw = &text[at..at + len as usize];
            assert_eq!(parse_entry(raw).unwrap(), entry);
            assert_eq!(entry, index.backups[n]);
            n += 1;
        }
        assert_eq!(n, 3000);
    }

    #[test]
    fn what_the_parser_refuses_the_walk_refuses() {
        let bad: &[&[u8]] = &[
            b"[",
            b"{\"backups\": [",
            b"{\"backups\": [{\"id\": 1}",
            b"{\"backups\": [{}] x",
            b"{\"backups\": [{}]}}",
            b"{\"backups\": {}}",
            b"{\"backups\": [], \"backups\": []}",
            b"{\"backups\": [{]}",
            b"{\"a\" 1}",
            b"{\"a\": 1,}",
            b"{,\"a\": 1}",
            b"{\"a\": tru}",
            b"{\"backups\": [{\"id\": \"x\"} {\"id\": \"y\"}]}",
            b"{\"backups\": [\"unterminated]}",
        ];
        for text in bad {
            let walked = entries(text).and_then(|(raws, _)| {
                raws.iter().try_for_each(|(_, raw)| {
                    parse_entry(raw.as_bytes())
                        .map(drop)
                        .map_err(Error::Internal)
                })
            });
            assert!(walked.is_err(), "{}", String::from_utf8_lossy(text));
            assert!(
                Index::parse(text).is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // An empty or blank file is an empty index, as for the parser.
        for text in [&b""[..], b"  \n", b"{}", b"{\"backups\": []}"] {
            assert!(entries(text).unwrap().0.is_empty());
        }
    }

    fn sample(n: usize) -> Index {
        let mut index = Index::parse(br#"{"backups": [], "schema": 1, "z": [true]}"#).unwrap();
        for i in 0..n {
            index.backups.push(BackupEntry::new(
                format!("20260101-000000-alpha-{i:06x}"),
                "alpha".into(),
                "2026-01-01T00:00:00Z".into(),
                format!("/b/{i}.tar.zst"),
                "zstd",
                1,
                "ab".repeat(32),
            ));
        }
        index
    }

    #[test]
    fn a_rewrite_is_what_save_would_write_and_nothing_when_nothing_changed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        let mut index = sample(2000);
        index.save(&path).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let n = rewrite(&path, |e| Ok(Edit::Keep(e)), || Ok(Vec::new())).unwrap();
        assert_eq!(n, 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "not rewritten"
        );
        assert_eq!(Index::load(&path).unwrap(), index);

        let added = sample(2001).backups.pop().unwrap();
        let extra = added.clone();
        let n = rewrite(
            &path,
            |mut e| {
                Ok(match e.id.as_str() {
                    "20260101-000000-alpha-000003" => Edit::Drop,
                    "20260101-000000-alpha-000007" => {
                        e.status = "missing".into();
                        Edit::Changed(e)
                    }
                    _ => Edit::Keep(e),
                })
            },
            move || Ok(vec![extra]),
        )
        .unwrap();
        assert_eq!(n, 3);
        index.backups[7].status = "missing".into();
        index.backups.remove(3);
        index.backups.push(added);
        let mut expected = serde_json::to_vec_pretty(&index).unwrap();
        expected.push(b'\n');
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        assert_eq!(
            find(&path, "20260101-000000-alpha-000007")
                .unwrap()
                .unwrap()
                .status,
            "missing"
        );
        assert!(
            find(&path, "20260101-000000-alpha-000003")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_write_that_does_not_take_the_lock_fails_the_rewrite_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        sample(20).save(&path).unwrap();
        let hand = b"{\"backups\": []}\n".to_vec();
        let mut edited = false;
        let e = rewrite(
            &path,
            |e| {
                if !edited {
                    // Written in place while the rewrite streams.
                    std::fs::write(&path, &hand).unwrap();
                    edited = true;
                }
                Ok(Edit::Changed(e))
            },
            || Ok(Vec::new()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("another writer"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), hand);
    }

    #[test]
    fn a_failed_edit_or_a_corrupt_file_leaves_the_index_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.json");
        sample(50).save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let e = rewrite(
            &path,
            |e| {
                if e.id.ends_with("00002a") {
                    Err(Error::validation("no"))
                } else {
                    Ok(Edit::Changed(e))
                }
            },
            || Ok(Vec::new()),
        )
        .unwrap_err();
        assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let mut torn = before.clone();
        torn.truncate(before.len() / 2);
        std::fs::write(&path, &torn).unwrap();
        let e = rewrite(&path, |e| Ok(Edit::Changed(e)), || Ok(Vec::new())).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), torn);
        let temps: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(temps.len(), 1, "no temporary file left");
    }

    #[test]
    fn the_walk_refuses_an_entry_nested_as_deep_as_the_parser_does() {
        for depth in 120..130 {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!(r#"{{"backups": [{{"id": "a", "x": {nested}}}]}}"#);
            let walked = entries(text.as_bytes()).is_ok();
            let parsed = serde_json::from_slice::<Value>(text.as_bytes()).is_ok();
            assert_eq!(walked, parsed, "depth {depth}");
        }
    }

    #[test]
    fn a_giant_value_is_refused_not_buffered() {
        let mut text = b"{\"backups\": [{\"id\": \"".to_vec();
        text.resize(text.len() + MAX_VALUE_BYTES + 10, b'a');
        text.extend_from_slice(b"\"}]}");
        let e = entries(&text).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }
}
