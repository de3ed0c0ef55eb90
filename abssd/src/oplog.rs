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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::operations::Operation;

/// How an operation ended.
pub type Outcome = std::result::Result<Value, abssd_proto::WireError>;

/// The longest line written; a line that would be longer loses its bulkiest
/// parts (result data, plan, arguments, ...) to a note of their size.
pub const MAX_LINE: usize = 256 << 10;

/// What goes first when a line is too long, bulkiest and least needed first.
const SHRINK_ORDER: &[&str] = &[
    "/result/data",
    "/planned_actions",
    "/result/errors",
    "/result/warnings",
    "/steps",
    "/args",
    "/result/message",
];

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

/// Append the line for an operation that has ended with `outcome` (called just
/// before the end is announced); rotate first when the file would pass
/// `max_bytes`.
pub fn record(path: &Path, max_bytes: u64, op: &Operation, outcome: &Outcome) -> Result<()> {
    let bytes = line_bytes(render(op, outcome));
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

/// The line as bytes with its newline, at most [`MAX_LINE`] long.
fn line_bytes(mut line: Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    for pointer in SHRINK_ORDER {
        if bytes.len() < MAX_LINE {
            break;
        }
        if let Some(part) = line.pointer_mut(pointer) {
            let size = serde_json::to_vec(part).map(|b| b.len()).unwrap_or(0);
            *part = json!({ "omitted_bytes": size });
            bytes = serde_json::to_vec(&line).unwrap_or_default();
        }
    }
    bytes.push(b'\n');
    bytes
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
pub fn find(path: &Path, op_id: &str) -> Result<Option<Value>> {
    match find_in(path, op_id, SCAN)? {
        Some(line) => Ok(Some(line)),
        None => find_in(&rotated(path), op_id, SCAN),
    }
}

fn find_in(path: &Path, op_id: &str, scan: Scan) -> Result<Option<Value>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("opening", path),
    };
    scan.find(&file, op_id).at("reading", path)
}

impl Scan {
    /// The newest line of `file` (within the window) whose `op_id` is `op_id`.
    fn find(self, file: &std::fs::File, op_id: &str) -> std::io::Result<Option<Value>> {
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
) -> Option<Value> {
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
            && let Ok(line) = serde_json::from_slice::<Value>(&lines[from..to])
            && line["op_id"] == op_id
        {
            return Some(line);
        }
        end = from;
    }
    None
}

/// The log line for an operation.
pub fn render(op: &Operation, outcome: &Outcome) -> Value {
    let info = op.info();
    let (status, message, errors, rc, result) = match outcome {
        Ok(result) => ("success", "ok".to_owned(), vec![], 0, Some(result.clone())),
        Err(e) => {
            let rc = e.kind.exit_code();
            (
                "error",
                e.message.clone(),
                // `detail` says what a rollback put back and what is left.
                vec![json!({"kind": e.kind, "message": e.message, "detail": e.detail})],
                rc,
                None,
            )
        }
    };
    let backups = op.changed_backups();
    json!({
        "schema_version": 1,
        "ts": fsutil::now_utc(),
        "op_id": info.op_id,
        "command": info.command,
        "args": info.args,
        "actor": info.actor,
        "target": info.target,
        "planned_actions": op.plan(),
        "result": {
            "status": status,
            "message": message,
            "errors": errors,
            "warnings": op.warnings(),
            "changed": !backups.is_empty(),
            "backups": backups,
            "data": result,
        },
        "rc": rc,
        "started_at": info.started_at,
        "duration_ms": op.start.elapsed().as_millis() as u64,
        "lock_wait_ms": info.lock_wait_ms,
        "steps": op.steps(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::Operations;
    use crate::ops::Progress;
    use abssd_proto::{Actor, Command, ErrorKind, EventKind, OpState, WireError};

    #[test]
    fn one_line_per_operation_also_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/operations.jsonl");
        let ops = Operations::default();
        let actor = Actor {
            uid: 1000,
            user: "ops".into(),
            pid: 42,
        };
        let ok = ops.begin(
            Command::BackupCreate,
            json!({"instance": "a"}),
            actor.clone(),
            Some("a".into()),
        );
        ok.emit(EventKind::Phase {
            name: "archive".into(),
            total_bytes: Some(10),
        });
        ok.changed("id-1");
        record(&log, 1 << 20, &ok, &Ok(json!({"id": "id-1"}))).unwrap();
        let bad = ops.begin(Command::BackupVerify, json!({}), actor, None);
        record(
            &log,
            1 << 20,
            &bad,
            &Err(WireError::new(ErrorKind::Environment, "disk full")),
        )
        .unwrap();

        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["schema_version"], 1);
        assert_eq!(lines[0]["result"]["backups"][0], "id-1");
        assert_eq!(lines[0]["result"]["changed"], true);
        assert_eq!(lines[0]["steps"][0]["name"], "archive");
        assert_eq!(lines[0]["actor"]["uid"], 1000);
        assert_eq!(lines[1]["result"]["status"], "error");
        assert_eq!(lines[1]["rc"], 3);
        assert_eq!(lines[1]["result"]["errors"][0]["kind"], "environment");

        // Lines are found again by op id, newest first; others are not.
        let found = find(&log, &bad.id).unwrap().unwrap();
        assert_eq!(found["command"], "backup verify");
        assert_eq!(
            find(&log, &ok.id).unwrap().unwrap()["result"]["backups"][0],
            "id-1"
        );
        assert!(find(&log, "nope").unwrap().is_none());
        assert!(
            find(&dir.path().join("absent.jsonl"), "x")
                .unwrap()
                .is_none()
        );

        // …and become ended operations again.
        let again = Operations::default().from_log(&found).unwrap();
        let info = again.info();
        assert_eq!(
            (info.state, info.op_id.as_str()),
            (OpState::Failed, bad.id.as_str())
        );
        assert_eq!(info.error.unwrap().kind, ErrorKind::Environment);
        assert_eq!(again.events_from(0).len(), 2);
    }

    #[test]
    fn lines_are_bounded_and_the_log_rotates_keeping_what_find_needs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operations.jsonl");
        let ops = Operations::default();
        let actor = Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        };
        // A huge result is replaced by its size; the line stays parseable.
        let big = ops.begin(Command::BackupReconcile, json!({}), actor.clone(), None);
        let huge = json!({ "items": "x".repeat(3 * MAX_LINE) });
        record(&log, 1 << 30, &big, &Ok(huge)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.len() <= MAX_LINE, "{}", text.len());
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert!(line["result"]["data"]["omitted_bytes"].as_u64().unwrap() > 3 * MAX_LINE as u64);
        assert_eq!(line["op_id"], big.id.as_str());

        // Past the size, the file moves to .1 and a new one starts; both are searched.
        let max = 4096;
        let mut ids = Vec::new();
        for _ in 0..40 {
            let op = ops.begin(
                Command::BackupVerify,
                json!({"all": true}),
                actor.clone(),
                None,
            );
            record(&log, max, &op, &Ok(json!({"results": []}))).unwrap();
            ids.push(op.id.clone());
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
        assert_eq!(find(&log, older).unwrap().unwrap()["op_id"], older.as_str());
        // The oldest are gone: the log is bounded.
        assert!(find(&log, &ids[0]).unwrap().is_none());
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
        scan.find(file, op_id)
            .unwrap()
            .map(|line| line["n"].as_u64().unwrap())
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
