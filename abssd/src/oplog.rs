//! The operations log, `logs_dir/operations.jsonl` (ADR-028 schema v1): one JSON
//! line per operation, written when it ends, success or failure.
//!
//! Bounded two ways: a line never passes [`MAX_LINE`] (the bulkiest parts are
//! replaced by a note of their size), and once the file reaches its configured
//! size it is renamed to `operations.jsonl.1` (replacing the previous one) and a
//! new file is started, so the log holds between one and two files' worth of the
//! most recent operations. [`find`] looks in both.

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

/// How far back from the end of the log [`find`] looks.
const FIND_WINDOW: u64 = 8 << 20;

/// The line of operation `op_id`, searched for from the end of the log (the last
/// 8 MiB of the current file, then of the rotated one). Blocking.
pub fn find(path: &Path, op_id: &str) -> Result<Option<Value>> {
    match find_in(path, op_id)? {
        Some(line) => Ok(Some(line)),
        None => find_in(&rotated(path), op_id),
    }
}

fn find_in(path: &Path, op_id: &str) -> Result<Option<Value>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("opening", path),
    };
    let len = file.metadata().at("reading", path)?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(FIND_WINDOW)))
        .at("reading", path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).at("reading", path)?;
    let needle = format!("\"op_id\":\"{op_id}\"");
    Ok(bytes
        .split(|&b| b == b'\n')
        .rev()
        .filter(|line| line.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .find(|v| v["op_id"] == op_id))
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
    use abssd_proto::{Actor, ErrorKind, EventKind, OpState, WireError};

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
            "backup create",
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
        let bad = ops.begin("backup verify", json!({}), actor, None);
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
        let big = ops.begin("backup reconcile", json!({}), actor.clone(), None);
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
            let op = ops.begin("backup verify", json!({"all": true}), actor.clone(), None);
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
}
