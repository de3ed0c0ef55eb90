//! One operation: who asked for what, its events (kept so `op.watch` can
//! replay them from the start, then follow live through [`Operation::subscribe`]),
//! its state, and exactly one terminal event (`finished` or `failed`) that
//! ends it. Operations report through [`Progress`].

use std::sync::Mutex;
use std::time::Instant;

use abssd_proto::{Actor, Command, Event, EventKind, Json, Level, OpInfo, OpState, WireError};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::fsutil;
use crate::oplog::Step;
use crate::progress::Progress;

/// How an operation ended: its result, or its error.
pub type Outcome = std::result::Result<Json, WireError>;

/// What an operation was started with.
///
/// On the wire (`op.get`'s `args`, and the `args` of its operations-log line)
/// a recovery is `{"recovery": true}`, as it has always been written; that
/// shape is mapped here and nowhere else ([`Args::to_wire`],
/// [`Args::from_wire`]). Read back, only exactly that object is a recovery: a
/// request's parameters that merely include a `recovery` key stay a request.
/// Parameters that are exactly `{"recovery": true}` would read back as a
/// recovery, which is why no method may take a parameter of that name (none
/// does, and every method's parameters refuse unknown keys).
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// The request's parameters (for one brought back from the operations
    /// log, as its line kept them: perhaps a note of their size).
    Request(Value),
    /// None: start-up recovery took the operation over from an interrupted run.
    Recovery,
}

impl Args {
    /// As `op.get` shows them and the operations log writes them.
    pub fn to_wire(&self) -> Value {
        match self {
            Args::Request(params) => params.clone(),
            Args::Recovery => serde_json::json!({ "recovery": true }),
        }
    }

    /// Read back from an operations-log line (see [`Args`] for the rule).
    pub fn from_wire(args: Value) -> Args {
        if args == Args::Recovery.to_wire() {
            Args::Recovery
        } else {
            Args::Request(args)
        }
    }
}

/// One operation.
#[derive(Debug)]
pub struct Operation {
    /// UUIDv7 text.
    pub id: String,
    /// `backup create`, ...
    pub command: Command,
    /// Request parameters, or the mark of a recovery.
    pub args: Args,
    /// Who asked.
    pub actor: Actor,
    /// Instance or backup id.
    pub target: Option<String>,
    /// Wall-clock start.
    pub started_at: String,
    /// Started by a peer that may only read (so it changes nothing): kept in
    /// its own quota and not written to the operations log.
    pub reader: bool,
    /// Monotonic start, for durations.
    pub start: Instant,
    /// Mutable part.
    state: Mutex<Record>,
    /// Bumped on every event; watchers wait on it.
    tick: watch::Sender<u64>,
}

#[derive(Debug)]
struct Record {
    events: Vec<Event>,
    state: OpState,
    finished_at: Option<String>,
    lock_wait_ms: u64,
    plan: Option<Json>,
    result: Option<Json>,
    error: Option<WireError>,
    changed: Vec<String>,
}

impl Operation {
    /// A new operation of this process, with a fresh id.
    pub(super) fn started(
        command: Command,
        args: Value,
        actor: Actor,
        target: Option<String>,
    ) -> Operation {
        let id = uuid::Uuid::now_v7().to_string();
        Operation::new(id, command, Args::Request(args), actor, target)
    }

    pub(super) fn new(
        id: String,
        command: Command,
        args: Args,
        actor: Actor,
        target: Option<String>,
    ) -> Operation {
        Operation {
            id,
            command,
            args,
            actor,
            target,
            started_at: fsutil::now_utc(),
            reader: false,
            start: Instant::now(),
            state: Mutex::new(Record {
                events: Vec::new(),
                state: OpState::Running,
                finished_at: None,
                lock_wait_ms: 0,
                plan: None,
                result: None,
                error: None,
                changed: Vec::new(),
            }),
            tick: watch::channel(0).0,
        }
    }
}

impl Operation {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Taken over from an interrupted run by start-up recovery.
    pub fn recovered(&self) -> bool {
        self.args == Args::Recovery
    }

    /// Whether it has not ended.
    pub fn is_running(&self) -> bool {
        self.record().state == OpState::Running
    }

    /// End with a result; no-op if already ended.
    pub fn succeed(&self, result: Json) {
        self.end(EventKind::Finished { result });
    }

    /// End with an error; no-op if already ended.
    pub fn fail(&self, error: WireError) {
        self.end(EventKind::Failed { error });
    }

    fn end(&self, terminal: EventKind) {
        self.end_at(terminal, fsutil::now_utc());
    }

    pub(super) fn end_at(&self, terminal: EventKind, finished_at: String) {
        {
            let mut r = self.record();
            if r.state != OpState::Running {
                return;
            }
            match &terminal {
                EventKind::Finished { result } => {
                    r.state = OpState::Succeeded;
                    r.result = Some(result.clone());
                }
                EventKind::Failed { error } => {
                    r.state = OpState::Failed;
                    r.error = Some(error.clone());
                }
                _ => {}
            }
            r.finished_at = Some(finished_at);
        }
        self.push(terminal);
    }

    fn push(&self, kind: EventKind) {
        let mut r = self.record();
        let seq = r.events.len() as u64;
        r.events.push(Event {
            seq,
            ts: fsutil::now_utc_millis(),
            kind,
        });
        drop(r);
        self.tick.send_replace(seq + 1);
    }

    /// Events from `from` on (a snapshot).
    pub fn events_from(&self, from: usize) -> Vec<Event> {
        self.record()
            .events
            .get(from..)
            .map(<[Event]>::to_vec)
            .unwrap_or_default()
    }

    /// A receiver that changes whenever an event is added.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// Wait until the operation has ended.
    pub async fn ended(&self) {
        let mut rx = self.subscribe();
        while self.is_running() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The plan, once announced.
    pub fn plan(&self) -> Option<Json> {
        self.record().plan.clone()
    }

    /// The terminal outcome, once ended.
    pub fn outcome(&self) -> Option<Outcome> {
        let r = self.record();
        match r.state {
            OpState::Running => None,
            OpState::Succeeded => Some(Ok(r.result.clone().unwrap_or_default())),
            OpState::Failed => Some(Err(r
                .error
                .clone()
                .unwrap_or_else(|| WireError::new(abssd_proto::ErrorKind::Internal, "unknown")))),
        }
    }

    /// What its plan and result take in memory (their text), the bulk of
    /// what an ended operation keeps.
    pub fn retained_bytes(&self) -> usize {
        let r = self.record();
        let len = |j: &Option<Json>| j.as_ref().map_or(0, |j| j.get().len());
        len(&r.plan) + len(&r.result)
    }

    /// Total time spent waiting for locks so far.
    pub fn lock_wait_ms(&self) -> u64 {
        self.record().lock_wait_ms
    }

    /// Backups created or changed.
    pub fn changed_backups(&self) -> Vec<String> {
        self.record().changed.clone()
    }

    /// Phase names in order (operations log `steps`).
    pub fn steps(&self) -> Vec<Step> {
        self.record()
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Phase { name, .. } => Some(Step {
                    name: name.to_string(),
                    ts: e.ts.clone(),
                    extra: Map::new(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Warnings emitted.
    pub fn warnings(&self) -> Vec<String> {
        self.record()
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Message {
                    level: Level::Warning,
                    text,
                } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The public view.
    pub fn info(&self) -> OpInfo {
        let r = self.record();
        OpInfo {
            op_id: self.id.clone(),
            command: self.command.clone(),
            args: self.args.to_wire(),
            actor: self.actor.clone(),
            target: self.target.clone(),
            state: r.state,
            started_at: self.started_at.clone(),
            finished_at: r.finished_at.clone(),
            lock_wait_ms: r.lock_wait_ms,
            events: r.events.len() as u64,
            result: r.result.clone(),
            error: r.error.clone(),
            recovered: self.recovered(),
        }
    }

    /// [`Operation::info`] without what can be large — the result, and an
    /// error's detail — for lists (`op.list`, `daemon.status`): a page of them
    /// stays small whatever the operations returned. `op.get` has the rest.
    pub fn summary(&self) -> OpInfo {
        let mut info = self.info();
        info.result = None;
        if let Some(e) = info.error.as_mut() {
            e.detail = None;
        }
        info
    }
}

impl Progress for Operation {
    fn emit(&self, event: EventKind) {
        if event.is_terminal() {
            // Terminal events come only from succeed/fail, so there is exactly one.
            return;
        }
        {
            let mut r = self.record();
            match &event {
                EventKind::LockAcquired { waited_ms, .. } => r.lock_wait_ms += waited_ms,
                EventKind::Plan { plan } => r.plan = Some(plan.clone()),
                _ => {}
            }
        }
        self.push(event);
    }

    fn changed(&self, backup_id: &str) {
        self.record().changed.push(backup_id.to_owned());
    }

    fn op_id(&self) -> String {
        self.id.clone()
    }
}
