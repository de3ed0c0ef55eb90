//! An operation's line in the operations log: built when it ends
//! ([`Operation::line`]), and read back into the table for one that ended
//! before this process started ([`Operations::from_log`]).

use std::sync::Arc;

use abssd_proto::{EventKind, WireError};
use serde_json::{Map, Value};

use super::Operations;
use super::operation::{Operation, Outcome};
use crate::fsutil;
use crate::oplog::{Bulky, Changed, Line, LineActor, LineError, LineResult, Status, Target};
use crate::progress::Progress;

impl Operations {
    /// An operation that ended before this process started (or was forgotten),
    /// brought back from its operations-log line: its start, plan and outcome,
    /// so `op.get` and `op.watch` still answer for it. `None` for a line of
    /// the Python tool, whose actor is not a peer of this daemon.
    pub fn from_log(&self, line: &Line) -> Option<Arc<Operation>> {
        let LineActor::Peer(actor) = &line.actor else {
            return None;
        };
        // An omitted part stays the note of its size.
        let value = |part: &Bulky<Value>| serde_json::to_value(part).unwrap_or(Value::Null);
        let args = value(&line.args);
        let recovered = args.get("recovery") == Some(&Value::Bool(true));
        let target = match &line.target {
            Some(Target::Name(name)) => Some(name.clone()),
            _ => None,
        };
        let mut op = Operation::new(
            line.op_id.clone(),
            line.command.clone(),
            args,
            actor.clone(),
            target,
            recovered,
        );
        if let Some(at) = &line.started_at {
            op.started_at = at.clone();
        }
        let op = self.insert(op);
        let plan = value(&line.planned_actions);
        if !plan.is_null() {
            op.emit(EventKind::Plan { plan });
        }
        let result = &line.result;
        let terminal = if result.status == Status::Success {
            EventKind::Finished {
                result: value(&result.data),
            }
        } else {
            let first = result.errors.kept().and_then(|e| e.first());
            let (kind, detail) = match first {
                Some(LineError::Wire { kind, detail, .. }) => (*kind, detail.clone()),
                _ => (abssd_proto::ErrorKind::Internal, None),
            };
            let message = result.message.kept().map_or("failed", String::as_str);
            let mut error = WireError::new(kind, message);
            error.detail = detail.filter(|d| !d.is_null());
            EventKind::Failed { error }
        };
        op.end_at(terminal, line.ts.clone());
        Some(op)
    }
}

impl Operation {
    /// Its operations-log line, now that it has ended with `outcome`.
    pub fn line(&self, outcome: &Outcome) -> Line {
        let (status, message, errors, rc, data) = match outcome {
            Ok(result) => (Status::Success, "ok".to_owned(), vec![], 0, result.clone()),
            Err(e) => (
                Status::Error,
                e.message.clone(),
                vec![LineError::Wire {
                    kind: e.kind,
                    message: e.message.clone(),
                    detail: e.detail.clone(),
                }],
                e.kind.exit_code(),
                Value::Null,
            ),
        };
        let backups = self.changed_backups();
        let lock_wait_ms = self.lock_wait_ms();
        Line {
            schema_version: 1,
            ts: fsutil::now_utc(),
            op_id: self.id.clone(),
            command: self.command.clone(),
            args: Bulky::Kept(self.args.clone()),
            actor: LineActor::Peer(self.actor.clone()),
            target: self.target.clone().map(Target::Name),
            planned_actions: Bulky::Kept(self.plan().unwrap_or(Value::Null)),
            result: LineResult {
                status,
                message: Bulky::Kept(message),
                errors: Bulky::Kept(errors),
                warnings: Bulky::Kept(self.warnings()),
                changed: Changed::Any(!backups.is_empty()),
                backups,
                data: Bulky::Kept(data),
                extra: Map::new(),
            },
            rc: rc.into(),
            started_at: Some(self.started_at.clone()),
            duration_ms: self.start.elapsed().as_millis() as u64,
            lock_wait_ms,
            steps: Bulky::Kept(self.steps()),
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use abssd_proto::{Actor, Command, OpState};

    use super::*;

    #[test]
    fn one_line_per_operation_also_on_failure() {
        use crate::oplog::{find, record};
        use abssd_proto::ErrorKind;
        use serde_json::json;
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
        record(&log, 1 << 20, ok.line(&Ok(json!({"id": "id-1"})))).unwrap();
        let bad = ops.begin(Command::BackupVerify, json!({}), actor, None);
        let failed = Err(WireError::new(ErrorKind::Environment, "disk full"));
        record(&log, 1 << 20, bad.line(&failed)).unwrap();

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
        // The keys, in the order lines have always had them.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&lines[1]),
            [
                "schema_version",
                "ts",
                "op_id",
                "command",
                "args",
                "actor",
                "target",
                "planned_actions",
                "result",
                "rc",
                "started_at",
                "duration_ms",
                "lock_wait_ms",
                "steps"
            ]
        );
        assert_eq!(
            keys(&lines[1]["result"]),
            [
                "status", "message", "errors", "warnings", "changed", "backups", "data"
            ]
        );
        assert_eq!(
            keys(&lines[1]["result"]["errors"][0]),
            ["kind", "message", "detail"]
        );
        assert_eq!(keys(&lines[0]["steps"][0]), ["name", "ts"]);

        // Lines are found again by op id, newest first; others are not.
        let found = find(&log, &bad.id).unwrap().unwrap();
        assert_eq!(found.command, Command::BackupVerify);
        assert_eq!(
            find(&log, &ok.id).unwrap().unwrap().result.backups[0],
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
        let done = Operations::default()
            .from_log(&find(&log, &ok.id).unwrap().unwrap())
            .unwrap();
        assert_eq!(done.outcome(), Some(Ok(json!({"id": "id-1"}))));
        assert_eq!(done.target.as_deref(), Some("a"));
    }
}
