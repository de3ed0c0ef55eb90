//! The operations log, `logs_dir/operations.jsonl` (ADR-028 schema v1): one JSON
//! line per operation, written when it ends, success or failure. It records what
//! was changed and by whom: the operations of peers that may only read (which
//! change nothing) are not written.
//!
//! Bounded two ways: a line never passes [`MAX_LINE`] (the bulkiest parts are
//! replaced by a note of their size), and once the file reaches its configured
//! size it is renamed to `operations.jsonl.1` (replacing the previous one) and a
//! new file is started, so the log holds between one and two files' worth of the
//! most recent operations. [`find`] looks in both, reading backwards in fixed
//! chunks.
//!
//! The file is shared with the Python tool, so a [`Line`] reads the lines of
//! both (and of older versions of this daemon), and writes its own exactly as
//! they have always been written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use abssd_proto::{Actor, Command, ErrorKind, Json};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The longest line written; a line that would be longer loses its bulkiest
/// parts (result data, plan, arguments, ...) to a note of their size.
pub const MAX_LINE: usize = 256 << 10;

/// One line: what an operation was, who asked, and how it ended. This daemon
/// writes every field; the Python tool writes the same schema with other
/// shapes in places (an actor `{type, name}`, a target object, `changed` as a
/// count, errors as texts) and leaves some fields out, so those fields are
/// typed to read both, and keys neither is known for are kept in `extra`.
/// Fields are in the order the line has always been written in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Always 1.
    pub schema_version: u32,
    /// When the line was written (the Python tool: when the command began).
    pub ts: String,
    /// The operation's id (the Python tool's are 32 hex digits, no hyphens).
    pub op_id: String,
    /// `backup create`, ...
    pub command: Command,
    /// The request's parameters.
    pub args: Bulky<Value>,
    /// Who asked.
    pub actor: LineActor,
    /// The instance or backup id it was about.
    pub target: Option<Target>,
    /// The plan, `null` when none was announced.
    pub planned_actions: Bulky<Json>,
    /// How it ended.
    pub result: LineResult,
    /// The exit code `abssctl` gives for this outcome.
    pub rc: i64,
    /// When it began (not written by the Python tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// How long it ran.
    pub duration_ms: u64,
    /// How long it waited for locks (optional for the Python tool).
    #[serde(default)]
    pub lock_wait_ms: u64,
    /// Its phases in order (optional for the Python tool).
    #[serde(default)]
    pub steps: Bulky<Vec<Step>>,
    /// Keys only the Python tool writes (`context`, `redactions`), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `result` of a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineResult {
    /// How it ended.
    pub status: Status,
    /// `ok`, or the error's message.
    pub message: Bulky<String>,
    /// The error (this daemon writes at most one; its `detail` says what a
    /// rollback put back and what is left).
    pub errors: Bulky<Vec<LineError>>,
    /// Warnings emitted on the way.
    pub warnings: Bulky<Vec<String>>,
    /// Whether it changed a backup entry (the Python tool: how many changes).
    pub changed: Changed,
    /// The backups created or changed.
    pub backups: Vec<String>,
    /// What it returned (`null` on failure; not written by the Python tool).
    #[serde(default)]
    pub data: Bulky<Json>,
    /// Keys only the Python tool writes (`context`), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `result.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It ended with a result.
    Success,
    /// The Python tool's: done, with warnings.
    Warning,
    /// It ended with an error.
    Error,
    /// A status neither writer uses; read as a failure.
    #[serde(other)]
    Unknown,
}

/// `actor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LineActor {
    /// This daemon's: the peer's credentials.
    Peer(Actor),
    /// The Python tool's `{type, name, session}`, or anything else, kept.
    Other(Value),
}

/// `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Target {
    /// This daemon's: an instance or a backup id.
    Name(String),
    /// The Python tool's `{kind, name}`, or anything else, kept.
    Other(Value),
}

/// `result.changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Changed {
    /// This daemon's.
    Any(bool),
    /// The Python tool's.
    Count(u64),
}

/// One of `result.errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LineError {
    /// This daemon's: the error as it travels (`detail` written as `null`
    /// when there is none).
    Wire {
        /// Its kind; one this daemon does not know (a newer one wrote the
        /// line) is read as `internal`.
        #[serde(deserialize_with = "kind_or_internal")]
        kind: ErrorKind,
        /// What went wrong.
        message: String,
        /// Structured context.
        detail: Option<Value>,
    },
    /// The Python tool's: a text.
    Text(String),
    /// Anything else, kept.
    Other(Value),
}

fn kind_or_internal<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<ErrorKind, D::Error> {
    let kind = Value::deserialize(d)?;
    Ok(serde_json::from_value(kind).unwrap_or(ErrorKind::Internal))
}

/// One of `steps`: a phase and when it began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The phase's name.
    pub name: String,
    /// When it began.
    pub ts: String,
    /// The Python tool's `status` and `detail`, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A part of a line that may have been replaced by a note of its size, to
/// keep the line within [`MAX_LINE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bulky<T> {
    /// Replaced.
    Omitted(Omitted),
    /// As it was.
    Kept(T),
}

/// What is left of an omitted part: `{"omitted_bytes": n}`, and for a plan
/// or a result its `summary` (see [`summary`]), so that the line of a prune
/// of thousands of backups still says what it removed and freed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Omitted {
    /// The part's length as JSON.
    pub omitted_bytes: u64,
    /// The part's small members, when it is an object that has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Value>,
}

impl<'de> Deserialize<'de> for Omitted {
    /// Only from an object with that key and perhaps `summary` (a derived
    /// struct would also take an array such as `[3]`, which a kept part may
    /// well be).
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut note = Map::<String, Value>::deserialize(d)?;
        let summary = note.remove("summary");
        match (
            note.len(),
            note.get("omitted_bytes").and_then(Value::as_u64),
        ) {
            (1, Some(omitted_bytes)) => Ok(Omitted {
                omitted_bytes,
                summary,
            }),
            _ => Err(serde::de::Error::custom("not an omitted part")),
        }
    }
}

/// The most a [`summary`] may take, as JSON.
const MAX_SUMMARY: usize = 4 << 10;

/// What a line keeps of an omitted plan or result: its scalar members, and
/// those of the objects it holds, one level down (`{"plan": {"keep": 3,
/// "remove": 8800, "freed_bytes": ...}, "result": {"removed_bytes": ...}}`);
/// arrays and long strings are left out. `None` when nothing is left, or when
/// even that passes [`MAX_SUMMARY`].
fn summary(part: &Value) -> Option<Value> {
    fn small(v: &Value, depth: u8) -> Option<Value> {
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => Some(v.clone()),
            Value::String(t) if t.len() <= 200 => Some(v.clone()),
            Value::Object(map) if depth > 0 => {
                let kept: Map<String, Value> = map
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), small(v, depth - 1)?)))
                    .collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            _ => None,
        }
    }
    let kept = small(part, 2).filter(Value::is_object)?;
    let size = serde_json::to_vec(&kept).map_or(usize::MAX, |b| b.len());
    (size <= MAX_SUMMARY).then_some(kept)
}

impl<T: Default> Default for Bulky<T> {
    fn default() -> Self {
        Bulky::Kept(T::default())
    }
}

impl<T> Bulky<T> {
    /// The part, unless it was omitted.
    pub fn kept(&self) -> Option<&T> {
        match self {
            Bulky::Kept(part) => Some(part),
            Bulky::Omitted(_) => None,
        }
    }
}

/// A part that can give way to a note of its size.
trait Omit {
    fn omit(&mut self);
}

/// A part of a line, and what is left of it when omitted.
trait Part: Serialize {
    fn summary(&self) -> Option<Value> {
        None
    }
}

impl Part for Json {
    fn summary(&self) -> Option<Value> {
        summary(&self.to_value())
    }
}

impl Part for Value {
    fn summary(&self) -> Option<Value> {
        summary(self)
    }
}

impl Part for String {}
impl<T: Serialize> Part for Vec<T> {}

impl<T: Part> Omit for Bulky<T> {
    fn omit(&mut self) {
        if let Bulky::Kept(part) = self {
            let size = serde_json::to_vec(part).map_or(0, |b| b.len());
            *self = Bulky::Omitted(Omitted {
                omitted_bytes: size as u64,
                summary: part.summary(),
            });
        }
    }
}

/// What goes first when a line is too long, bulkiest and least needed first.
const SHRINK_ORDER: [fn(&mut Line) -> &mut dyn Omit; 7] = [
    |l| &mut l.result.data,
    |l| &mut l.planned_actions,
    |l| &mut l.result.errors,
    |l| &mut l.result.warnings,
    |l| &mut l.steps,
    |l| &mut l.args,
    |l| &mut l.result.message,
];

impl Line {
    /// The line as bytes with its newline, at most [`MAX_LINE`] long.
    fn into_bytes(mut self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&self).unwrap_or_default();
        for part in SHRINK_ORDER {
            if bytes.len() < MAX_LINE {
                break;
            }
            part(&mut self).omit();
            bytes = serde_json::to_vec(&self).unwrap_or_default();
        }
        if bytes.len() >= MAX_LINE {
            // Still too long: the ids of the backups changed (a prune of
            // thousands) lose their tail, and the line says how many.
            let mut excess = bytes.len() - MAX_LINE + 64;
            let backups = &mut self.result.backups;
            let mut dropped = 0u64;
            while excess > 0
                && let Some(id) = backups.pop()
            {
                excess = excess.saturating_sub(id.len() + 3);
                dropped += 1;
            }
            self.result
                .extra
                .insert("backups_omitted".to_owned(), dropped.into());
            bytes = serde_json::to_vec(&self).unwrap_or_default();
        }
        bytes.push(b'\n');
        bytes
    }
}

/// The log file and the size it rotates at.
#[derive(Debug, Clone)]
pub struct Log {
    /// `logs_dir/operations.jsonl`.
    pub path: PathBuf,
    /// Rotated once it would pass this size.
    pub max_bytes: u64,
}

impl Log {
    /// Append `line` (see [`record`]). Blocking.
    pub fn record(&self, line: Line) -> Result<()> {
        record(&self.path, self.max_bytes, line)
    }
}

/// Serializes rotation with appends, so no line is written to a file that is
/// being renamed away (appends of other processes, e.g. the Python tool, are
/// whole lines anyway: O_APPEND, one write each).
static WRITER: Mutex<()> = Mutex::new(());

/// The rotated file beside `path`: `operations.jsonl.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".1");
    path.with_file_name(name)
}

/// Append the line of an operation that has ended (called just before the end
/// is announced); rotate first when the file would pass `max_bytes`.
pub fn record(path: &Path, max_bytes: u64, line: Line) -> Result<()> {
    let bytes = line.into_bytes();
    let _serial = WRITER.lock().unwrap_or_else(|p| p.into_inner());
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(_) => 0,
    };
    if len > 0 && len + bytes.len() as u64 > max_bytes {
        std::fs::rename(path, rotated(path)).at("rotating", path)?;
        tracing::info!(log = %path.display(), bytes = len, "operations log rotated");
    }
    let mut file = fsutil::open_append(path)?;
    // One write call per line keeps lines whole with O_APPEND.
    file.write_all(&bytes).at("appending to", path)
}

/// How [`find`] reads a file: back from its end, in reads of `chunk` bytes,
/// no further back than `window` bytes; a line longer than `longest` (this
/// daemon writes none) is skipped rather than gathered.
#[derive(Debug, Clone, Copy)]
struct Scan {
    window: u64,
    chunk: usize,
    longest: usize,
}

/// A search costs one buffer of `chunk + longest` bytes (512 KiB), whatever
/// the size of the log.
const SCAN: Scan = Scan {
    window: 8 << 20,
    chunk: 256 << 10,
    longest: MAX_LINE,
};

/// The line of operation `op_id`, searched for from the end of the log (the last
/// 8 MiB of the current file, then of the rotated one). Blocking; the caller
/// runs one search at a time.
pub fn find(path: &Path, op_id: &str) -> Result<Option<Line>> {
    match find_in(path, op_id, SCAN)? {
        Some(line) => Ok(Some(line)),
        None => find_in(&rotated(path), op_id, SCAN),
    }
}

fn find_in(path: &Path, op_id: &str, scan: Scan) -> Result<Option<Line>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("opening", path),
    };
    let Some(bytes) = scan.find(&file, op_id).at("reading", path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            path: path.to_owned(),
            format: "operations log line",
            message: format!("the line of operation {op_id}: {e}"),
        })
}

/// Just enough of a line to tell whose it is.
#[derive(Deserialize)]
struct Whose<'a> {
    #[serde(borrow)]
    op_id: std::borrow::Cow<'a, str>,
}

impl Scan {
    /// The newest line of `file` (within the window) whose `op_id` is `op_id`.
    fn find(self, file: &std::fs::File, op_id: &str) -> std::io::Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(self.window);
        let needle = format!("\"op_id\":\"{op_id}\"");
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        // Filled from its end: `buf[at..]` is the chunk just read, followed by
        // the `tail`, what the later chunk began with before its first newline
        // (the end of a line that began earlier), so every line after this
        // chunk's first newline is whole. The tail is at most `longest` bytes,
        // or less than a chunk.
        let mut buf = vec![0u8; self.chunk + self.longest.max(self.chunk)];
        let mut tail = 0;
        // The line that ends where this chunk ends is longer than `longest`
        // (its end was dropped): skip it.
        let mut overlong = false;
        let mut pos = len;
        while pos > start {
            let n = (pos - start).min(self.chunk as u64) as usize;
            pos -= n as u64;
            let at = buf.len() - tail - n;
            file.read_exact_at(&mut buf[at..at + n], pos)?;
            let data = &buf[at..];
            let Some(first) = memchr::memchr(b'\n', &data[..n]) else {
                // All of this chunk is inside one line that began earlier.
                tail += n;
                if overlong || tail > self.longest {
                    tail = 0;
                    overlong = true;
                }
                continue;
            };
            let end = if overlong {
                memchr::memrchr(b'\n', &data[..n]).unwrap_or(first)
            } else {
                data.len()
            };
            let lines = &data[first + 1..end.max(first + 1)];
            if let Some(line) = newest(lines, &finder, op_id, self.longest) {
                return Ok(Some(line));
            }
            let end_of_buf = buf.len();
            buf.copy_within(at..at + first, end_of_buf - first);
            tail = first;
            overlong = false;
        }
        // What is left began at or before the window's start: a whole line only
        // if it starts exactly there.
        let whole = start == 0 || {
            let mut before = [0u8];
            file.read_exact_at(&mut before, start - 1)?;
            before[0] == b'\n'
        };
        let left = &buf[buf.len() - tail..];
        Ok(if whole && !overlong {
            newest(left, &finder, op_id, self.longest)
        } else {
            None
        })
    }
}

/// The last line of `lines` (whole lines, newline-separated) that holds the
/// needle, is at most `longest` bytes long and whose `op_id` is `op_id`.
fn newest(
    lines: &[u8],
    finder: &memchr::memmem::Finder<'_>,
    op_id: &str,
    longest: usize,
) -> Option<Vec<u8>> {
    // Searched forwards (memchr's reverse search has no fast prefilter); a
    // chunk holds few hits, the newest is tried first.
    let hits: Vec<usize> = finder.find_iter(lines).collect();
    let mut end = lines.len();
    for &hit in hits.iter().rev() {
        if hit >= end {
            continue;
        }
        let from = memchr::memrchr(b'\n', &lines[..hit]).map_or(0, |i| i + 1);
        let to = memchr::memchr(b'\n', &lines[hit..]).map_or(lines.len(), |i| hit + i);
        // The needle may also occur inside a line's arguments or result.
        if to - from <= longest
            && let Ok(line) = serde_json::from_slice::<Whose<'_>>(&lines[from..to])
            && line.op_id == op_id
        {
            return Some(lines[from..to].to_vec());
        }
        end = from;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A line as this daemon has written them since schema 1: an ended
    /// create, fields in their order, `detail: null` and all.
    const OURS_OK: &str = r#"{"schema_version":1,"ts":"2025-06-01T10:00:05Z","op_id":"0197a1c2-7f00-7c4e-9a51-2b6f0e8d1a10","command":"backup create","args":{"instance":"alpha","message":null,"labels":[],"data_only":false,"dry_run":false,"detach":false},"actor":{"uid":0,"user":"root","pid":4242},"target":"alpha","planned_actions":{"id":"20250601-100000-alpha-a1b2c3","archive":"/srv/backups/alpha/20250601-100000-alpha-a1b2c3.tar.zst"},"result":{"status":"success","message":"ok","errors":[],"warnings":["the unit was not running"],"changed":true,"backups":["20250601-100000-alpha-a1b2c3"],"data":{"plan":{},"result":{"id":"20250601-100000-alpha-a1b2c3","size_bytes":1234}}},"rc":0,"started_at":"2025-06-01T10:00:00Z","duration_ms":5012,"lock_wait_ms":3,"steps":[{"name":"archive","ts":"2025-06-01T10:00:01.123Z"},{"name":"index","ts":"2025-06-01T10:00:05.001Z"}]}"#;

    /// A restore rolled back at start-up: `rolled_back` and `left` in the
    /// error's detail, no data.
    const OURS_FAILED: &str = r#"{"schema_version":1,"ts":"2025-06-01T11:00:00Z","op_id":"0197a1c3-0000-7000-8000-000000000001","command":"backup restore","args":{"recovery":true},"actor":{"uid":0,"user":"abssd (start-up recovery)","pid":77},"target":"20250601-100000-alpha-a1b2c3","planned_actions":null,"result":{"status":"error","message":"abssd stopped during this backup restore; at start-up it was rolled back","errors":[{"kind":"environment","message":"abssd stopped during this backup restore; at start-up it was rolled back","detail":{"rolled_back":["moved /srv/alpha back"],"left":[]}}],"warnings":[],"changed":false,"backups":[],"data":null},"rc":3,"started_at":"2025-06-01T10:59:59Z","duration_ms":40,"lock_wait_ms":0,"steps":[]}"#;

    /// Lines of the Python abssctl (ADR-028's examples, and the shape its
    /// `logging.py` writes with steps, context and redactions).
    const PYTHON: [&str; 3] = [
        r#"{"schema_version":1,"ts":"2025-10-05T18:09:11.012Z","op_id":"01J9W8T5Z8C9S3R7PV0V4EZ3QK","command":"create-instance","args":{"instance":"prod-family"},"actor":{"type":"user","name":"ken"},"target":{"kind":"instance","name":"prod-family"},"planned_actions":[{"action":"create_dir","path":".../srv/prod-family/data"},{"action":"write_file","path":".../etc/systemd/system/prod-family-budgetapp.service"}],"result":{"status":"success","message":"Instance created and enabled","warnings":[],"errors":[],"changed":3,"backups":[]},"rc":0,"duration_ms":842,"lock_wait_ms":37}"#,
        r#"{"schema_version":1,"ts":"2025-10-05T18:11:43.500Z","op_id":"01J9W8Y6Q2B7J1M4H0W2XZV9GS","command":"uninstall-version","args":{"version":"25.8.0"},"actor":{"type":"user","name":"ken"},"target":{"kind":"version","value":"25.8.0"},"planned_actions":[{"action":"remove_dir","path":".../srv/app/v25.8.0"}],"result":{"status":"error","message":"Version in use by instances: prod-family, test","errors":["in_use: prod-family","in_use: test"],"warnings":[],"changed":0,"backups":[]},"rc":2,"duration_ms":123}"#,
        r#"{"schema_version":1,"ts":"2025-10-06T09:00:00.000Z","op_id":"5f0c8e4a2b9d4c1e8f7a6b5c4d3e2f10","command":"backup create","args":{"instance":"alpha","message":null},"actor":{"type":"ci","name":"github-actions","session":"run-12345"},"target":{"kind":"instance","name":"alpha"},"planned_actions":[],"result":{"status":"warning","message":"Backup created with warnings","errors":[],"warnings":["zstd not found"],"changed":1,"backups":["20251006-090000-alpha-00ff00"],"context":{"archive":"alpha.tar.gz"}},"rc":0,"duration_ms":410,"lock_wait_ms":0,"steps":[{"name":"backup.archive","ts":"2025-10-06T09:00:00.100Z","status":"success","detail":"gzip"}],"redactions":["paths"],"context":{"abssctl_version":"0.1.5a1"}}"#,
    ];

    #[test]
    fn this_daemons_lines_read_back_and_are_written_byte_for_byte_as_before() {
        for text in [OURS_OK, OURS_FAILED] {
            let line: Line = serde_json::from_str(text).unwrap();
            assert!(line.extra.is_empty() && line.result.extra.is_empty());
            assert_eq!(line.into_bytes(), format!("{text}\n").into_bytes());
        }
        let ok: Line = serde_json::from_str(OURS_OK).unwrap();
        assert_eq!(ok.command, Command::BackupCreate);
        assert_eq!(ok.result.status, Status::Success);
        assert_eq!(ok.result.changed, Changed::Any(true));
        assert!(matches!(&ok.actor, LineActor::Peer(a) if a.pid == 4242));
        assert_eq!(ok.target, Some(Target::Name("alpha".into())));
        assert_eq!(ok.steps.kept().unwrap()[1].name, "index");
        assert_eq!(
            ok.result.data.kept().unwrap().to_value()["result"]["size_bytes"],
            1234
        );

        let failed: Line = serde_json::from_str(OURS_FAILED).unwrap();
        assert_eq!(failed.result.status, Status::Error);
        let Some([LineError::Wire { kind, detail, .. }]) =
            failed.result.errors.kept().map(Vec::as_slice)
        else {
            panic!("{:?}", failed.result.errors);
        };
        assert_eq!(*kind, ErrorKind::Environment);
        assert_eq!(detail.as_ref().unwrap()["left"], serde_json::json!([]));
        assert_eq!(failed.planned_actions, Bulky::Kept(Json::null()));
    }

    #[test]
    fn the_python_tools_lines_read_with_what_only_it_writes_kept() {
        let lines: Vec<Line> = PYTHON
            .iter()
            .map(|text| serde_json::from_str(text).unwrap())
            .collect();
        assert_eq!(lines[0].command, Command::Other("create-instance".into()));
        assert!(matches!(&lines[0].actor, LineActor::Other(a) if a["name"] == "ken"));
        assert!(matches!(&lines[0].target, Some(Target::Other(t)) if t["kind"] == "instance"));
        assert_eq!(lines[0].result.changed, Changed::Count(3));
        assert_eq!(lines[0].lock_wait_ms, 37);
        // Fields it leaves out.
        assert_eq!(lines[1].started_at, None);
        assert_eq!(lines[1].steps, Bulky::Kept(vec![]));
        assert_eq!(lines[1].result.data, Bulky::Kept(Json::null()));
        assert_eq!(
            lines[1].result.errors.kept().unwrap()[0],
            LineError::Text("in_use: prod-family".into())
        );
        // A Python `backup create` is the same command; what only Python
        // writes is kept.
        let create = &lines[2];
        assert_eq!(create.command, Command::BackupCreate);
        assert_eq!(create.result.status, Status::Warning);
        assert_eq!(create.result.extra["context"]["archive"], "alpha.tar.gz");
        assert_eq!(create.extra["context"]["abssctl_version"], "0.1.5a1");
        assert_eq!(create.extra["redactions"][0], "paths");
        assert_eq!(create.steps.kept().unwrap()[0].extra["detail"], "gzip");
        // Nothing is lost in a round trip.
        for (line, text) in lines.iter().zip(PYTHON) {
            let again: Value = serde_json::to_value(line).unwrap();
            let original: Value = serde_json::from_str(text).unwrap();
            for (key, value) in original.as_object().unwrap() {
                if key == "result" {
                    for (k, v) in value.as_object().unwrap() {
                        assert_eq!(&again["result"][k], v, "result.{k}");
                    }
                } else {
                    assert_eq!(&again[key], value, "{key}");
                }
            }
        }
        // An error kind this daemon does not know reads as internal, with
        // its detail.
        let newer = OURS_FAILED.replace("\"kind\":\"environment\"", "\"kind\":\"from_the_future\"");
        let line: Line = serde_json::from_str(&newer).unwrap();
        let Some([LineError::Wire { kind, detail, .. }]) =
            line.result.errors.kept().map(Vec::as_slice)
        else {
            panic!("{:?}", line.result.errors);
        };
        assert_eq!((*kind, detail.is_some()), (ErrorKind::Internal, true));
    }

    /// A line of this daemon for `op_id` whose result is `data`.
    fn line(op_id: &str, data: Value) -> Line {
        let mut line: Line = serde_json::from_str(OURS_OK).unwrap();
        line.op_id = op_id.to_owned();
        line.result.data = Bulky::Kept(Json::from(data));
        line
    }

    #[test]
    fn lines_are_bounded_and_the_log_rotates_keeping_what_find_needs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operations.jsonl");
        // A huge result is replaced by its size; the line stays parseable.
        let big = uuid::Uuid::now_v7().to_string();
        let huge = json!({ "items": "x".repeat(3 * MAX_LINE) });
        record(&log, 1 << 30, line(&big, huge)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.len() <= MAX_LINE, "{}", text.len());
        let raw: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert!(raw["result"]["data"]["omitted_bytes"].as_u64().unwrap() > 3 * MAX_LINE as u64);
        assert_eq!(raw["op_id"], big.as_str());
        // …and reads back as a line whose data was omitted, the rest kept.
        let found = find(&log, &big).unwrap().unwrap();
        let Bulky::Omitted(Omitted { omitted_bytes, .. }) = found.result.data else {
            panic!("{:?}", found.result.data);
        };
        assert!(omitted_bytes > 3 * MAX_LINE as u64);
        assert_eq!(found.result.message, Bulky::Kept("ok".to_owned()));
        assert!(found.steps.kept().is_some());

        // When the data is not enough, the next parts go in order, down to
        // the message; the line still reads back.
        let mut bulky = line("everything", json!(null));
        bulky.args = Bulky::Kept(json!("a".repeat(MAX_LINE)));
        bulky.result.message = Bulky::Kept("m".repeat(MAX_LINE));
        let bytes = bulky.into_bytes();
        assert!(bytes.len() <= MAX_LINE, "{}", bytes.len());
        let shrunk: Line = serde_json::from_slice(&bytes).unwrap();
        assert!(matches!(shrunk.args, Bulky::Omitted(_)));
        assert!(matches!(shrunk.result.message, Bulky::Omitted(_)));
        assert!(matches!(shrunk.steps, Bulky::Omitted(_)));
        assert_eq!(shrunk.result.backups, ["20250601-100000-alpha-a1b2c3"]);

        // Past the size, the file moves to .1 and a new one starts; both are searched.
        let log = dir.path().join("rotating.jsonl");
        let max = 4096;
        let mut ids = Vec::new();
        for _ in 0..40 {
            let id = uuid::Uuid::now_v7().to_string();
            record(&log, max, line(&id, json!({"results": []}))).unwrap();
            ids.push(id);
        }
        assert!(std::fs::metadata(&log).unwrap().len() <= max);
        assert!(std::fs::metadata(rotated(&log)).unwrap().len() <= max);
        let last = ids.last().unwrap();
        assert!(find(&log, last).unwrap().is_some());
        let in_rotated = std::fs::read_to_string(rotated(&log)).unwrap();
        let older = ids
            .iter()
            .find(|id| in_rotated.contains(id.as_str()))
            .unwrap();
        assert_eq!(find(&log, older).unwrap().unwrap().op_id, older.as_str());
        // The oldest are gone: the log is bounded.
        assert!(find(&log, &ids[0]).unwrap().is_none());
    }

    /// The line of a prune of thousands of backups: plan and result give
    /// way to their summaries (what it removed and freed stays), and the ids
    /// of the backups it changed lose their tail, counted.
    #[test]
    fn a_huge_prune_keeps_its_figures_and_as_many_ids_as_fit() {
        let ids: Vec<String> = (0..20_000)
            .map(|i| format!("20250601-100000-alpha-{i:06x}"))
            .collect();
        let items: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "removed": true, "bytes": 1000}))
            .collect();
        let mut l = line(
            "prune",
            json!({
                "plan": {"policy": "keep_last=3", "keep": 3, "remove": 20_000, "backups": items.clone()},
                "result": {"items": items, "removed_bytes": 20_000_000, "purged": 0},
            }),
        );
        l.planned_actions = Bulky::Kept(Json::new(&json!({"keep": 3, "backups": ids})));
        l.result.backups = ids.clone();
        let bytes = l.into_bytes();
        assert!(bytes.len() <= MAX_LINE, "{}", bytes.len());
        let back: Line = serde_json::from_slice(&bytes).unwrap();
        let Bulky::Omitted(Omitted {
            summary: Some(summary),
            ..
        }) = &back.result.data
        else {
            panic!("{:?}", back.result.data);
        };
        assert_eq!(
            *summary,
            json!({"plan": {"policy": "keep_last=3", "keep": 3, "remove": 20_000},
                   "result": {"removed_bytes": 20_000_000, "purged": 0}})
        );
        let kept = back.result.backups.len();
        assert!(kept > 1000 && kept < ids.len(), "{kept}");
        assert_eq!(back.result.backups[..], ids[..kept]);
        assert_eq!(
            back.result.extra["backups_omitted"],
            json!(ids.len() - kept)
        );
    }

    #[test]
    fn a_found_line_that_is_not_a_log_line_is_an_error_naming_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operations.jsonl");
        std::fs::write(&log, "{\"op_id\":\"x\",\"command\":7}\n").unwrap();
        let err = find(&log, "x").unwrap_err();
        assert!(err.to_string().contains("operations.jsonl"), "{err}");
        assert!(find(&log, "y").unwrap().is_none());
    }

    /// Lines `{"op_id":…,"n":…,"pad":"xx…"}` and where each starts.
    fn log_of(lines: &[(&str, usize, usize)]) -> (Vec<u8>, Vec<u64>) {
        let (mut bytes, mut starts) = (Vec::new(), Vec::new());
        for (n, (id, pad, nested)) in lines.iter().enumerate() {
            starts.push(bytes.len() as u64);
            let mut line = json!({"op_id": id, "n": n, "pad": "x".repeat(*pad)});
            if *nested > 0 {
                // Another operation's id inside a result, as restore history has.
                line["result"] = json!({"op_id": format!("id{}", nested - 1)});
            }
            bytes.extend(serde_json::to_vec(&line).unwrap());
            bytes.push(b'\n');
        }
        (bytes, starts)
    }

    fn file_of(bytes: &[u8]) -> std::fs::File {
        use std::os::unix::fs::FileExt;
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(bytes, 0).unwrap();
        file
    }

    /// The `n` of the line found.
    fn scan(file: &std::fs::File, scan: Scan, op_id: &str) -> Option<u64> {
        scan.find(file, op_id).unwrap().map(|line| {
            let line: Value = serde_json::from_slice(&line).unwrap();
            line["n"].as_u64().unwrap()
        })
    }

    #[test]
    fn the_scan_reads_back_in_chunks_and_finds_exactly_the_lines_in_its_window() {
        // Lines of many lengths, an id twice (the newest counts), another id
        // nested in a result, and one line longer than `longest`.
        let spec = [
            ("id0", 3, 0),
            ("id1", 40, 0),
            ("id2", 0, 0),
            ("id0", 17, 0),
            ("id3", 90, 0),
            ("id4", 9, 1),
            ("id5", 25, 0),
            ("id6", 1, 0),
        ];
        let (bytes, starts) = log_of(&spec);
        let file = file_of(&bytes);
        let len = bytes.len() as u64;
        let longest = 100;
        let lengths: Vec<u64> = starts
            .iter()
            .zip(starts.iter().skip(1).chain([&len]))
            .map(|(a, b)| b - a)
            .collect();
        assert!(lengths[4] - 1 > longest as u64);
        assert_eq!(
            lengths.iter().filter(|&&l| l - 1 > longest as u64).count(),
            1
        );
        for chunk in 1..=(len as usize + 3) {
            // Windows that begin just before, at and just after each line's start.
            let windows = starts
                .iter()
                .flat_map(|&s| [len - s - 1, len - s, len - s + 1])
                .chain([0, 1 << 30]);
            for window in windows {
                let scan_with = Scan {
                    window,
                    chunk,
                    longest,
                };
                for id in ["id0", "id1", "id2", "id3", "id4", "id5", "id6", "id9"] {
                    // The newest line of `id` that starts inside the window and
                    // is not too long.
                    let expected = spec
                        .iter()
                        .enumerate()
                        .rev()
                        .find(|(n, (i, _, _))| {
                            *i == id
                                && starts[*n] >= len.saturating_sub(window)
                                && lengths[*n] - 1 <= longest as u64
                        })
                        .map(|(n, _)| n as u64);
                    assert_eq!(
                        scan(&file, scan_with, id),
                        expected,
                        "{id}, chunk {chunk}, window {window}"
                    );
                }
            }
        }

        // Named, the cases that matter: a line straddling a chunk boundary…
        let straddling = Scan {
            window: len,
            chunk: (len - starts[6] - 3) as usize,
            longest,
        };
        let boundary = len - straddling.chunk as u64;
        assert!(starts[6] < boundary && boundary < starts[7]);
        assert_eq!(scan(&file, straddling, "id5"), Some(6));
        // …a line that begins exactly where the window does, and one cut by it.
        let at_start = Scan {
            window: len - starts[6],
            chunk: 16,
            longest,
        };
        assert_eq!(scan(&file, at_start, "id5"), Some(6));
        let cut = Scan {
            window: len - starts[6] - 1,
            ..at_start
        };
        assert_eq!(scan(&file, cut, "id5"), None);
        // An id nested in a later line's result is not taken for the line's own.
        assert_eq!(scan(&file, SCAN, "id0"), Some(3));
        // The last line needs no newline (a writer cut short); an empty file is
        // searched too.
        let unterminated = file_of(&bytes[..bytes.len() - 1]);
        assert_eq!(scan(&unterminated, SCAN, "id6"), Some(7));
        assert_eq!(scan(&file_of(b""), SCAN, "id6"), None);
    }
}
