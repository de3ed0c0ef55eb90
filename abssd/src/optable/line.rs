//! An operation's line in the operations log: built when it ends
//! ([`Operation::line`]), and read back into the table for one that ended
//! before this process started ([`Operations::from_log`]).

use std::sync::Arc;

use abssd_proto::{EventKind, Json, WireError};
use serde_json::{Map, Value};

use super::Operations;
use super::operation::{Args, Operation, Outcome};
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
        let json = |part: &Bulky<Json>| match part {
            Bulky::Kept(json) => json.clone(),
            Bulky::Omitted(note) => Json::new(note),
        };
        let target = match &line.target {
            Some(Target::Name(name)) => Some(name.clone()),
            _ => None,
        };
        let mut op = Operation::new(
            line.op_id.clone(),
            line.command.clone(),
            Args::from_wire(value(&line.args)),
            actor.clone(),
            target,
        );
        if let Some(at) = &line.started_at {
            op.started_at = at.clone();
        }
        let op = self.insert(op);
        let plan = json(&line.planned_actions);
        if !plan.is_null() {
            op.emit(EventKind::Plan { plan });
        }
        let result = &line.result;
        let terminal = if result.status == Status::Success {
            EventKind::Finished {
                result: json(&result.data),
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
                Json::null(),
            ),
        };
        let backups = self.changed_backups();
        let lock_wait_ms = self.lock_wait_ms();
        Line {
            schema_version: 1,
            ts: fsutil::now_utc(),
            op_id: self.id.clone(),
            command: self.command.clone(),
            args: Bulky::Kept(self.args.to_wire()),
            actor: LineActor::Peer(self.actor.clone()),
            target: self.target.clone().map(Target::Name),
            planned_actions: Bulky::Kept(self.plan().unwrap_or_default()),
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
        record(&log, 1 << 20, ok.line(&Ok(json!({"id": "id-1"}).into()))).unwrap();
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
        assert_eq!(done.outcome(), Some(Ok(json!({"id": "id-1"}).into())));
        assert_eq!(done.target.as_deref(), Some("a"));
    }

    /// A start-up recovery's line, as this daemon has always written it (a
    /// restore rolled back).
    const RECOVERED: &str = r#"{"schema_version":1,"ts":"2025-06-01T11:00:00Z","op_id":"0197a1c3-0000-7000-8000-000000000001","command":"backup restore","args":{"recovery":true},"actor":{"uid":0,"user":"abssd (start-up recovery)","pid":77},"target":"20250601-100000-alpha-a1b2c3","planned_actions":null,"result":{"status":"error","message":"abssd stopped during this backup restore; at start-up it was rolled back","errors":[{"kind":"environment","message":"abssd stopped during this backup restore; at start-up it was rolled back","detail":{"rolled_back":["moved /srv/alpha back"],"left":[]}}],"warnings":[],"changed":false,"backups":[],"data":null},"rc":3,"started_at":"2025-06-01T10:59:59Z","duration_ms":40,"lock_wait_ms":0,"steps":[]}"#;

    /// The times of a line, set to those of [`RECOVERED`].
    fn at_recovered_times(mut line: Line) -> String {
        line.ts = "2025-06-01T11:00:00Z".into();
        line.started_at = Some("2025-06-01T10:59:59Z".into());
        line.duration_ms = 40;
        serde_json::to_string(&line).unwrap()
    }

    #[test]
    fn a_recovery_is_written_as_always_and_reads_back_as_one() {
        use abssd_proto::ErrorKind;
        use serde_json::json;
        let actor = Actor {
            uid: 0,
            user: "abssd (start-up recovery)".into(),
            pid: 77,
        };
        let op = Operations::default().begin_recovered(
            "0197a1c3-0000-7000-8000-000000000001",
            Command::BackupRestore,
            Some("20250601-100000-alpha-a1b2c3".into()),
            actor,
        );
        assert!(op.recovered());
        assert_eq!(op.info().args, json!({"recovery": true}));
        let message = "abssd stopped during this backup restore; at start-up it was rolled back";
        let mut error = WireError::new(ErrorKind::Environment, message);
        error.detail = Some(json!({"rolled_back": ["moved /srv/alpha back"], "left": []}));
        assert_eq!(at_recovered_times(op.line(&Err(error))), RECOVERED);

        // An old line reads back as a recovery, and is written again the same.
        let old: Line = serde_json::from_str(RECOVERED).unwrap();
        let again = Operations::default().from_log(&old).unwrap();
        assert_eq!(again.args, Args::Recovery);
        let info = again.info();
        assert!(info.recovered);
        assert_eq!(info.args, json!({"recovery": true}));
        let outcome = again.outcome().unwrap();
        assert_eq!(at_recovered_times(again.line(&outcome)), RECOVERED);
    }

    /// Only exactly `{"recovery": true}` is a recovery: parameters that merely
    /// hold a `recovery` key stay parameters, written and read back as they
    /// were. Parameters that are exactly the mark read back as a recovery (the
    /// line cannot tell them apart), which is why no method takes a parameter
    /// of that name.
    #[test]
    fn a_requests_recovery_parameter_stays_a_parameter() {
        use serde_json::json;
        let actor = Actor {
            uid: 1000,
            user: "ops".into(),
            pid: 42,
        };
        let written_and_read = |params: Value| {
            let op = Operations::default().begin(
                Command::BackupCreate,
                params.clone(),
                actor.clone(),
                None,
            );
            assert!(!op.recovered(), "{params}");
            assert_eq!(op.info().args, params);
            let line = op.line(&Ok(Json::null()));
            assert_eq!(line.args, Bulky::Kept(params.clone()));
            let text = serde_json::to_string(&line).unwrap();
            let back: Line = serde_json::from_str(&text).unwrap();
            Operations::default().from_log(&back).unwrap()
        };
        for params in [
            json!({"recovery": true, "instance": "a"}),
            json!({"recovery": false}),
            json!({"recovery": "true"}),
            json!({"recovery": 1}),
            json!([{"recovery": true}]),
            json!([true]),
            Value::Null,
        ] {
            let again = written_and_read(params.clone());
            assert_eq!(again.args, Args::Request(params.clone()));
            assert!(!again.recovered() && !again.info().recovered, "{params}");
            assert_eq!(again.info().args, params);
        }
        let mark = written_and_read(json!({"recovery": true}));
        assert_eq!(mark.args, Args::Recovery);
    }
}
