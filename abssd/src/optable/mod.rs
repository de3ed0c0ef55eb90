//! The daemon's table of operations: their ids, and their lifecycle.
//!
//! Every mutating call runs as an [`Operation`] on its own task, so a client that
//! disconnects (or a Ctrl-C) never stops it half-way ([`Operations::spawn`]);
//! when it ends, its operations-log line is written before its end is announced
//! ([`Operations::finish`]). The table keeps ended operations within quotas,
//! pages through them for `op.list`, and brings back from the log one that
//! ended before this process started.
//!
//! * `operation.rs` — one operation: its record, events, watchers, outcome.
//! * `line.rs` — an operation's operations-log line, built and read back.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abssd_proto::{Actor, Command, EventKind, Json, WireError};
use serde_json::Value;

use crate::error::{Error, shown};
use crate::oplog;
use crate::progress::Progress;

mod line;
mod operation;

pub use operation::{Args, Operation, Outcome};

/// Ended operations kept in memory for `op.list` / `op.watch` (older ones are
/// still found in the operations log by `op.get` / `op.watch`).
const KEEP_FINISHED: usize = 256;

/// Ended operations of peers that may only read, kept apart from the others so
/// that a reader's reconciles never push an operator's operations out of
/// memory. They are not in the operations log either: once out of this quota,
/// they are gone.
const KEEP_FINISHED_READERS: usize = 32;

/// At most this many bytes of plans and results of ended operations are kept
/// in memory, per quota (operators', readers'): a prune plan of 10,000
/// backups is ~2 MB, and 256 of them must not hold half a gigabyte. The
/// oldest go first; the newest ended operation always stays.
const KEEP_FINISHED_BYTES: usize = 64 << 20;
const KEEP_FINISHED_READERS_BYTES: usize = 16 << 20;

/// All operations this process knows.
#[derive(Debug, Default)]
pub struct Operations {
    ops: Mutex<BTreeMap<String, Arc<Operation>>>,
    /// Makes "count the caller's running operations, then begin one" one step.
    admit: Mutex<()>,
    /// Where ended operations are written; `None` (the default, for tests)
    /// writes no line.
    log: Option<oplog::Log>,
}

/// One page of `op.list`.
#[derive(Debug)]
pub struct Page {
    /// Oldest first.
    pub operations: Vec<Arc<Operation>>,
    /// The oldest id of the page, when older operations remain.
    pub next_before: Option<String>,
}

impl Operations {
    /// An empty table whose ended operations are written to `log`.
    pub fn with_log(log: oplog::Log) -> Operations {
        Operations {
            log: Some(log),
            ..Operations::default()
        }
    }

    /// Run `work` as `op` on a task of its own, so it runs to its end whatever
    /// happens to whoever asked for it (a client that disconnects, a Ctrl-C);
    /// a panic in it ends it failed. See [`Operations::finish`].
    pub fn spawn<F>(self: &Arc<Self>, op: Arc<Operation>, work: F)
    where
        F: Future<Output = Result<Json, Error>> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            // Tests hold operations here (on a blocking thread, so a `pause` stops
            // no worker) to see how many a peer can have running at once. Only
            // when a test armed it: the hop would reorder operations otherwise.
            #[cfg(feature = "failpoints")]
            if fail::list()
                .iter()
                .any(|(name, _)| name == "rpc::operation-started")
            {
                let _ = tokio::task::spawn_blocking(|| hook_point!("rpc::operation-started")).await;
            }
            let outcome = match tokio::spawn(work).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) => Err(e.to_wire()),
                Err(join) => Err(WireError::new(
                    abssd_proto::ErrorKind::Internal,
                    format!("operation crashed: {join}"),
                )),
            };
            this.finish(&op, outcome).await;
        });
    }

    /// End `op` with `outcome`: its operations-log line is written first, so
    /// whoever sees the end also finds the line, then the terminal event is
    /// announced, then the oldest ended operations beyond the quotas are
    /// forgotten. The log is the record of what was changed and by whom: a
    /// reader's operation (read-only, the only kind a reader may start) is
    /// left out, so that readers cannot rotate operators' lines away.
    pub async fn finish(&self, op: &Arc<Operation>, outcome: Outcome) {
        if let Some(log) = self.log.clone().filter(|_| !op.reader) {
            let line = op.line(&outcome);
            let written = tokio::task::spawn_blocking(move || log.record(line)).await;
            if let Ok(Err(e)) | Err(e) = written.map_err(Error::from) {
                tracing::error!(op_id = %op.id, error = %e, "cannot write the operations log");
            }
        }
        match outcome {
            Ok(result) => op.succeed(result),
            Err(e) => op.fail(e),
        }
        self.trim();
        crate::memory::release_freed();
    }

    /// Register a new running operation.
    pub fn begin(
        &self,
        command: Command,
        args: Value,
        actor: Actor,
        target: Option<String>,
    ) -> Arc<Operation> {
        self.insert(Operation::started(command, args, actor, target))
    }

    /// [`Operations::begin`] for a peer that may only read (a
    /// [`Operation::reader`] operation), unless the actor already has `limit`
    /// operations running; then `Err(limit)`.
    pub fn begin_within(
        &self,
        limit: usize,
        command: Command,
        args: Value,
        actor: Actor,
        target: Option<String>,
    ) -> Result<Arc<Operation>, usize> {
        let _one_at_a_time = self.admit.lock().unwrap_or_else(|p| p.into_inner());
        let mine = self
            .running()
            .iter()
            .filter(|o| o.actor.uid == actor.uid)
            .count();
        if mine >= limit {
            return Err(limit);
        }
        let mut op = Operation::started(command, args, actor, target);
        op.reader = true;
        Ok(self.insert(op))
    }

    /// Register the recovery of operation `op_id`, interrupted when the daemon
    /// last stopped; it keeps its id and command.
    pub fn begin_recovered(
        &self,
        op_id: &str,
        command: Command,
        target: Option<String>,
        actor: Actor,
    ) -> Arc<Operation> {
        self.insert(Operation::new(
            op_id.to_owned(),
            command,
            Args::Recovery,
            actor,
            target,
        ))
    }

    /// Operations recovered at start-up.
    pub fn recovered(&self) -> Vec<Arc<Operation>> {
        self.list().into_iter().filter(|o| o.recovered()).collect()
    }

    fn insert(&self, op: Operation) -> Arc<Operation> {
        // What calls that are no operations freed (pages of a long list, their
        // answers) goes back before this one grows the heap.
        crate::memory::release_freed();
        let op = Arc::new(op);
        op.emit(EventKind::Started {
            command: op.command.clone(),
            target: op.target.clone(),
        });
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op.id.clone(), op.clone());
        self.trim();
        op
    }

    /// Forget the oldest ended operations beyond each quota, of count and of
    /// bytes (recovered ones stay); called when one begins and when one ends.
    pub fn trim(&self) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        for (reader, keep, budget) in [
            (false, KEEP_FINISHED, KEEP_FINISHED_BYTES),
            (true, KEEP_FINISHED_READERS, KEEP_FINISHED_READERS_BYTES),
        ] {
            // Newest first: keep while both quotas allow, then forget the rest.
            let mut kept = 0;
            let mut bytes = 0usize;
            let forget: Vec<String> = ops
                .iter()
                .rev()
                .filter(|(_, o)| o.reader == reader && !o.recovered() && !o.is_running())
                .filter(|(_, o)| {
                    bytes = bytes.saturating_add(o.retained_bytes());
                    kept += 1;
                    kept > keep || (kept > 1 && bytes > budget)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in forget {
                ops.remove(&id);
            }
        }
    }
}

/// An `op_id` from a request, checked before any I/O: refused (`validation`)
/// unless it is a UUID in its usual hyphenated form; `Ok(None)` when it cannot
/// name an operation (a UUIDv7, as every id this daemon gives, whose time is
/// after `now`); else the id as the daemon writes it (lower case).
pub fn check_id(op_id: &str, now: SystemTime) -> Result<Option<String>, Error> {
    let id = uuid::Uuid::try_parse(op_id)
        .ok()
        .filter(|_| op_id.len() == uuid::fmt::Hyphenated::LENGTH)
        .ok_or_else(|| {
            Error::validation(format!(
                "{} is not an operation id; ids are UUIDs like 0193a1c2-7f00-7c4e-9a51-2b6f0e8d1a10 (see abssctl op list)",
                shown(op_id)
            ))
        })?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let future = id.get_version_num() == 7
        && id.get_timestamp().is_some_and(|t| {
            let (secs, nanos) = t.to_unix();
            Duration::new(secs, nanos) > since_epoch
        });
    Ok((!future).then(|| id.hyphenated().to_string()))
}

impl Operations {
    /// Look an operation up.
    pub fn get(&self, id: &str) -> Option<Arc<Operation>> {
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// All known operations, oldest first.
    pub fn list(&self) -> Vec<Arc<Operation>> {
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The newest `limit` operations older than `before` (all when `None`),
    /// only running ones when `running`; oldest first.
    pub fn page(&self, running: bool, limit: usize, before: Option<&str>) -> Page {
        use std::ops::Bound;
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let upper = before.map_or(Bound::Unbounded, |b| Bound::Excluded(b.to_owned()));
        let mut newest: Vec<Arc<Operation>> = ops
            .range((Bound::Unbounded, upper))
            .rev()
            .map(|(_, o)| o)
            .filter(|o| !running || o.is_running())
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        drop(ops);
        let more = newest.len() > limit;
        newest.truncate(limit);
        newest.reverse();
        Page {
            next_before: more.then(|| newest.first().map(|o| o.id.clone())).flatten(),
            operations: newest,
        }
    }

    /// Operations still running.
    pub fn running(&self) -> Vec<Arc<Operation>> {
        self.list().into_iter().filter(|o| o.is_running()).collect()
    }
}

#[cfg(test)]
mod tests {
    use abssd_proto::{Level, OpState};

    use super::*;
    use crate::oplog::{Bulky, Status};

    fn x() -> Command {
        Command::Other("x".into())
    }

    fn actor() -> Actor {
        Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        }
    }

    #[tokio::test]
    async fn exactly_one_terminal_event_and_replay_from_start() {
        let ops = Operations::default();
        let op = ops.begin(
            Command::BackupCreate,
            Value::Null,
            actor(),
            Some("a".into()),
        );
        op.emit(EventKind::Message {
            level: Level::Info,
            text: "x".into(),
        });
        op.emit(EventKind::Finished {
            result: Json::null(),
        }); // ignored
        op.succeed(serde_json::json!({"ok": true}).into());
        op.fail(WireError::new(abssd_proto::ErrorKind::Internal, "late")); // ignored
        let events = op.events_from(0);
        let kinds: Vec<_> = events.iter().map(|e| e.kind.is_terminal()).collect();
        assert_eq!(kinds, [false, false, true]);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(op.info().state, OpState::Succeeded);
        op.ended().await;
        assert_eq!(ops.get(&op.id).unwrap().id, op.id);
        assert!(ops.running().is_empty());
    }

    #[test]
    fn op_ids_are_uuid_v7_and_sort_by_start() {
        let ops = Operations::default();
        let a = ops.begin(x(), Value::Null, actor(), None);
        let b = ops.begin(x(), Value::Null, actor(), None);
        let ua = uuid::Uuid::parse_str(&a.id).unwrap();
        assert_eq!(ua.get_version_num(), 7);
        assert!(a.id < b.id);
        assert_eq!(ops.list().len(), 2);
    }

    #[test]
    fn pages_go_back_from_the_newest_and_readers_are_capped() {
        let ops = Operations::default();
        let ids: Vec<String> = (0..7)
            .map(|_| ops.begin(x(), Value::Null, actor(), None).id.clone())
            .collect();
        let first = ops.page(false, 3, None);
        let got: Vec<&str> = first.operations.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(got, [&ids[4], &ids[5], &ids[6]].map(String::as_str));
        assert_eq!(first.next_before.as_deref(), Some(ids[4].as_str()));
        let second = ops.page(false, 3, first.next_before.as_deref());
        assert_eq!(second.operations[0].id, ids[1]);
        let last = ops.page(false, 3, second.next_before.as_deref());
        assert_eq!(last.operations.len(), 1);
        assert!(last.next_before.is_none());

        let reader = Actor {
            uid: 65534,
            user: "nobody".into(),
            pid: 2,
        };
        let a = ops
            .begin_within(2, x(), Value::Null, reader.clone(), None)
            .unwrap();
        ops.begin_within(2, x(), Value::Null, reader.clone(), None)
            .unwrap();
        assert_eq!(
            ops.begin_within(2, x(), Value::Null, reader.clone(), None)
                .unwrap_err(),
            2
        );
        a.succeed(Json::null());
        assert!(ops.begin_within(2, x(), Value::Null, reader, None).is_ok());
    }

    #[test]
    fn op_ids_are_checked_without_io() {
        let now = SystemTime::now();
        let made = uuid::Uuid::now_v7().to_string();
        assert_eq!(
            check_id(&made, now).unwrap().as_deref(),
            Some(made.as_str())
        );
        // Upper case is the same id.
        let upper = made.to_uppercase();
        assert_eq!(
            check_id(&upper, now).unwrap().as_deref(),
            Some(made.as_str())
        );
        // Other UUID versions may still be in a shared log: searched.
        let v4 = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(check_id(v4, now).unwrap().as_deref(), Some(v4));
        // Not a UUID, or not in the usual form: refused.
        for bad in [
            "",
            "nope",
            "../../etc/passwd",
            "550e8400e29b41d4a716446655440000",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-44665544000g",
        ] {
            let err = check_id(bad, now).unwrap_err();
            assert_eq!(err.kind(), abssd_proto::ErrorKind::Validation, "{bad}");
        }
        // A UUIDv7 from after `now` names nothing.
        let later = now + Duration::from_secs(1);
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            later.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            0,
        );
        let future = uuid::Uuid::new_v7(ts).to_string();
        assert_eq!(check_id(&future, now).unwrap(), None);
        assert!(
            check_id(&future, later + Duration::from_secs(1))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_readers_ended_operations_never_push_out_an_operators() {
        let ops = Operations::default();
        let operator = ops.begin(Command::BackupCreate, Value::Null, actor(), None);
        operator.succeed(Json::null());
        let reader = Actor {
            uid: 65534,
            user: "nobody".into(),
            pid: 2,
        };
        let mut last = None;
        for _ in 0..KEEP_FINISHED + 10 {
            let op = ops
                .begin_within(
                    2,
                    Command::BackupReconcile,
                    Value::Null,
                    reader.clone(),
                    None,
                )
                .unwrap();
            assert!(op.reader);
            op.succeed(Json::null());
            last = Some(op.id.clone());
        }
        ops.trim();
        assert!(ops.get(&operator.id).is_some());
        assert!(ops.get(last.as_deref().unwrap()).is_some());
        let readers = ops.list().iter().filter(|o| o.reader).count();
        assert_eq!(readers, KEEP_FINISHED_READERS);
        assert!(!operator.reader);
    }

    /// A table writing to a log in a fresh directory.
    fn logged() -> (tempfile::TempDir, Arc<Operations>, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operations.jsonl");
        let ops = Operations::with_log(oplog::Log {
            path: path.clone(),
            max_bytes: 1 << 20,
        });
        (dir, Arc::new(ops), path)
    }

    #[tokio::test]
    async fn a_panicking_operation_ends_failed_with_its_log_line() {
        let (_dir, ops, log) = logged();
        let op = ops.begin(
            Command::BackupCreate,
            Value::Null,
            actor(),
            Some("a".into()),
        );
        ops.spawn(op.clone(), async { panic!("boom") });
        op.ended().await;
        let Some(Err(e)) = op.outcome() else {
            panic!("{:?}", op.outcome());
        };
        assert_eq!(e.kind, abssd_proto::ErrorKind::Internal);
        assert!(e.message.starts_with("operation crashed"), "{}", e.message);
        let terminal: Vec<_> = op
            .events_from(0)
            .into_iter()
            .filter(|e| e.kind.is_terminal())
            .collect();
        assert_eq!(terminal.len(), 1);
        // Whoever sees the end finds the line.
        let line = oplog::find(&log, &op.id).unwrap().unwrap();
        assert_eq!(line.result.status, Status::Error);
        assert_eq!(line.rc, 4);
        assert!(!ops.get(&op.id).unwrap().is_running());
    }

    #[tokio::test]
    async fn operations_end_after_their_line_is_written_and_readers_write_none() {
        let (_dir, ops, log) = logged();
        let op = ops.begin(Command::BackupVerify, Value::Null, actor(), None);
        ops.spawn(op.clone(), async { Ok(serde_json::json!({"n": 1}).into()) });
        op.ended().await;
        assert_eq!(op.outcome(), Some(Ok(serde_json::json!({"n": 1}).into())));
        let line = oplog::find(&log, &op.id).unwrap().unwrap();
        assert_eq!(
            line.result.data,
            Bulky::Kept(serde_json::json!({"n": 1}).into())
        );

        let failing = ops.begin(Command::BackupVerify, Value::Null, actor(), None);
        ops.spawn(failing.clone(), async {
            Err(Error::validation("no such thing"))
        });
        failing.ended().await;
        let line = oplog::find(&log, &failing.id).unwrap().unwrap();
        assert_eq!(line.result.message, Bulky::Kept("no such thing".into()));

        let reader = ops
            .begin_within(2, Command::BackupReconcile, Value::Null, actor(), None)
            .unwrap();
        ops.spawn(reader.clone(), async { Ok(Json::null()) });
        reader.ended().await;
        assert_eq!(reader.outcome(), Some(Ok(Json::null())));
        assert!(oplog::find(&log, &reader.id).unwrap().is_none());
    }
}
