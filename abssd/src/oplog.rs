//! The operations log, `logs_dir/operations.jsonl` (ADR-028 schema v1): one JSON
//! line per operation, written when it ends, success or failure.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::operations::Operation;

/// Append the line for an ended operation.
pub fn record(path: &Path, op: &Operation) -> Result<()> {
    let line = render(op);
    let mut file = fsutil::open_append(path)?;
    // One write call per line keeps lines whole with O_APPEND.
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    file.write_all(&bytes).at("appending to", path)
}

/// The log line for an operation.
pub fn render(op: &Operation) -> Value {
    let info = op.info();
    let (status, message, errors, rc, result) = match op.outcome() {
        Some(Ok(result)) => ("success", "ok".to_owned(), vec![], 0, Some(result)),
        Some(Err(e)) => {
            let rc = e.kind.exit_code();
            (
                "error",
                e.message.clone(),
                vec![json!({"kind": e.kind, "message": e.message})],
                rc,
                None,
            )
        }
        None => ("running", String::new(), vec![], 0, None),
    };
    let backups = op.changed_backups();
    json!({
        "schema_version": 1,
        "ts": info.finished_at.clone().unwrap_or_else(fsutil::now_utc),
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
    use abssd_proto::{Actor, ErrorKind, EventKind, WireError};

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
        ok.succeed(json!({"id": "id-1"}));
        record(&log, &ok).unwrap();
        let bad = ops.begin("backup verify", json!({}), actor, None);
        bad.fail(WireError::new(ErrorKind::Environment, "disk full"));
        record(&log, &bad).unwrap();

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
    }
}
