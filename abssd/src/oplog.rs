//! The operations log, `logs_dir/operations.jsonl` (ADR-028 schema v1): one JSON
//! line per operation, written when it ends, success or failure.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::operations::Operation;

/// How an operation ended.
pub type Outcome = std::result::Result<Value, abssd_proto::WireError>;

/// Append the line for an operation that has ended with `outcome` (called just
/// before the end is announced).
pub fn record(path: &Path, op: &Operation, outcome: &Outcome) -> Result<()> {
    let line = render(op, outcome);
    let mut file = fsutil::open_append(path)?;
    // One write call per line keeps lines whole with O_APPEND.
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    file.write_all(&bytes).at("appending to", path)
}

/// How far back from the end of the log [`find`] looks.
const FIND_WINDOW: u64 = 8 << 20;

/// The line of operation `op_id`, searched for from the end of the log (its
/// last 8 MiB, thousands of operations). Blocking.
pub fn find(path: &Path, op_id: &str) -> Result<Option<Value>> {
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
        record(&log, &ok, &Ok(json!({"id": "id-1"}))).unwrap();
        let bad = ops.begin("backup verify", json!({}), actor, None);
        record(
            &log,
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
}
