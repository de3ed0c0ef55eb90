//! Method handlers: decode parameters, check authorization, call `ops`, encode.
//! Mutating methods run as daemon-owned operations: a handler validates and
//! hands the work over to the operations table, which runs it to its end.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use abssd_proto::methods::{
    BackupCreate, BackupList, BackupProtect, BackupPrune, BackupPush, BackupReconcile,
    BackupRestore, BackupRun, BackupShow, BackupUnprotect, BackupVerify, DaemonHealth,
    DaemonStatusMethod, OpGet, OpList, OpWatch, RemoteLs, ScheduleDisable, ScheduleEnable,
    ScheduleShow,
};
use abssd_proto::methods::{BackupPull, RemoteList, RemoteTest};
use abssd_proto::{
    Command, DaemonStatus, ErrorKind, Json, Method, OpInfo, OpListResult, PROTOCOL_VERSION,
    WireError, error::ErrorData,
};
use jsonrpsee::server::{Extensions, PendingSubscriptionSink, RpcModule};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use abssd_proto::limits::{self, Bounded};

use crate::error::Error;
use crate::ops::{self, Ctx};
use crate::optable::{self, Operation, Operations};
use crate::progress::Reporter;
use crate::registry::validate_name;
use crate::rpc::peer::Peer;
use crate::{fsutil, oplog};

/// Shared by every handler.
#[derive(Debug)]
pub struct State {
    /// Config, locks.
    pub ctx: Arc<Ctx>,
    /// Running and recent operations.
    pub ops: Arc<Operations>,
    /// One search of the operations log at a time: a flood of unknown ids waits
    /// here holding no buffer, and the daemon holds one search's buffer at most.
    log_search: Arc<tokio::sync::Semaphore>,
    /// For uptime.
    started: Instant,
    started_at: String,
}

impl State {
    /// State over `ops` (which may already hold operations recovered at start-up).
    pub fn new(ctx: Arc<Ctx>, ops: Arc<Operations>) -> State {
        State {
            ctx,
            ops,
            log_search: Arc::new(tokio::sync::Semaphore::new(1)),
            started: Instant::now(),
            started_at: fsutil::now_utc(),
        }
    }

    /// An operation by id: from memory, else from the operations log (it ended
    /// before this daemon started, e.g. one a stop let finish). Any peer may
    /// ask for any id, so an unknown one must cost little: a malformed id is
    /// refused and one from the future is unknown before any I/O, and the log
    /// is searched by one caller at a time.
    pub async fn lookup(&self, op_id: &str) -> Result<Arc<Operation>, Error> {
        let not_found = || Error::not_found("operation", op_id);
        let id = optable::check_id(op_id, SystemTime::now())?.ok_or_else(not_found)?;
        if let Some(op) = self.ops.get(&id) {
            return Ok(op);
        }
        // Owned, and moved into the search: a caller that goes away while the
        // search runs does not let the next one start beside it.
        let permit = self
            .log_search
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| not_found())?;
        let log = self.ctx.config.layout.oplog_file();
        let found = tokio::task::spawn_blocking(move || {
            let found = oplog::find(&log, &id);
            crate::memory::release_freed();
            drop(permit);
            found
        })
        .await;
        let line = match found {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Err(_) => return Err(not_found()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "searching the operations log");
                return Err(not_found());
            }
        };
        self.ops.from_log(&line).ok_or_else(not_found)
    }

    /// Wait (bounded) for running operations to end.
    pub async fn drain(&self, bound: Duration) {
        let running = self.ops.running();
        let all = futures_util::future::join_all(running.iter().map(|op| op.ended()));
        let _ = tokio::time::timeout(bound, all).await;
    }

    /// Begin an operation and hand `work` to the operations table, which runs
    /// it to its end (see [`Operations::spawn`]). A peer that may only read
    /// gets at most `daemon.max_operations_per_reader` running at once; beyond
    /// that, `busy`.
    fn start<F, Fut>(
        &self,
        command: Command,
        args: Value,
        peer: &Peer,
        target: Option<String>,
        work: F,
    ) -> Result<Arc<Operation>, WireError>
    where
        F: FnOnce(Arc<Ctx>, Reporter) -> Fut,
        Fut: Future<Output = Result<Json, Error>> + Send + 'static,
    {
        let actor = peer.actor.clone();
        let op = if peer.may_mutate {
            self.ops.begin(command, args, actor, target)
        } else {
            let limit = self.ctx.config.daemon.max_operations_per_reader as usize;
            self.ops
                .begin_within(limit, command, args, actor, target)
                .map_err(|limit| {
                    WireError::new(
                        ErrorKind::Busy,
                        format!(
                            "user {} already has {limit} operation(s) running, the most a peer that may only read may have (daemon.max_operations_per_reader); wait for them to end",
                            peer.actor.user
                        ),
                    )
                })?
        };
        self.ops.spawn(
            op.clone(),
            work(self.ctx.clone(), Reporter::from(op.clone())),
        );
        Ok(op)
    }
}

fn rpc_error(e: WireError) -> ErrorObjectOwned {
    let data = ErrorData {
        kind: e.kind,
        detail: e.detail,
    };
    ErrorObjectOwned::owned(e.kind.rpc_code(), e.message, Some(data))
}

/// Decode `params`: one JSON object of named parameters (positional `[...]` is
/// refused, as docs/API.md says), each field within its length limit.
fn parse<T: serde::de::DeserializeOwned + Bounded>(
    params: &Params<'_>,
) -> Result<T, ErrorObjectOwned> {
    let text = params.as_str().unwrap_or("{}");
    if !text.trim_start().starts_with('{') {
        return Err(rpc_error(WireError::new(
            ErrorKind::Validation,
            "params must be an object of named parameters, e.g. {\"instance\": \"alpha\"}; positional params are not accepted",
        )));
    }
    let p: T = serde_json::from_str(text).map_err(|e| {
        // serde quotes what it did not expect, which may be a megabyte long.
        rpc_error(WireError::new(
            ErrorKind::Validation,
            format!("invalid params: {}", truncated(&e.to_string(), 300)),
        ))
    })?;
    p.check().map_err(rpc_error)?;
    Ok(p)
}

/// At most `max` bytes of `text` (on a character boundary), marked when cut.
fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// A call refused before it became an operation: one bounded log line, and
/// only a few a second (the rest are counted in the next line).
fn refused(method: &str, peer: &Peer, e: &ErrorObjectOwned) -> ErrorObjectOwned {
    static LIMITER: std::sync::LazyLock<super::refusals::Limiter> =
        std::sync::LazyLock::new(|| super::refusals::Limiter::new(Instant::now()));
    if let Some(left_out) = LIMITER.admit(Instant::now()) {
        tracing::info!(
            method,
            uid = peer.actor.uid,
            pid = peer.actor.pid,
            reason = %truncated(e.message(), 200),
            left_out,
            "call refused"
        );
    }
    e.clone()
}

fn peer(ext: &Extensions) -> Result<Peer, ErrorObjectOwned> {
    ext.get::<Peer>().cloned().ok_or_else(|| {
        rpc_error(WireError::new(
            ErrorKind::Forbidden,
            "no peer credentials on this connection",
        ))
    })
}

fn require_mutate(peer: &Peer) -> Result<(), ErrorObjectOwned> {
    if peer.may_mutate {
        Ok(())
    } else {
        Err(rpc_error(WireError::new(
            ErrorKind::Forbidden,
            format!(
                "user {} (uid {}) may only read; mutations need root or membership in the operator group",
                peer.actor.user, peer.actor.uid
            ),
        )))
    }
}

/// Register a read-only method of type `M`.
fn read<M, F, Fut>(
    module: &mut RpcModule<Arc<State>>,
    handler: F,
) -> Result<(), jsonrpsee::core::RegisterMethodError>
where
    M: Method,
    M::Output: Clone,
    F: Fn(Arc<State>, M::Params, Peer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<M::Output, Error>> + Send + 'static,
{
    module.register_async_method(M::NAME, move |params, state, ext| {
        let handler = handler.clone();
        async move {
            let peer = peer(&ext)?;
            let p: M::Params = parse(&params)?;
            let state: Arc<State> = (*state).clone();
            handler(state, p, peer)
                .await
                .map_err(|e| rpc_error(e.to_wire()))
        }
    })?;
    Ok(())
}

/// How a method run as an operation is described.
struct OpMethod<P> {
    /// The operations-log command, e.g. `backup create`.
    command: Command,
    /// The instance or backup it is about.
    target: fn(&P) -> Option<String>,
    /// Whether to answer `{op_id}` at once.
    detached: fn(&P) -> bool,
    /// Whether this call needs an operator: it can change something, or it is
    /// expensive (`reconcile --verify` re-hashes every archive).
    operator_only: fn(&P) -> bool,
    /// What can be checked before an operation exists (names), so that a bad
    /// call costs no operation, event log or operations-log line.
    validate: fn(&P) -> Result<(), Error>,
}

/// Register a method `M` that runs `work` as an operation and answers
/// `{op_id}` when detached, else `{op_id, plan, result}` once it ends.
fn operation<M, F, Fut>(
    module: &mut RpcModule<Arc<State>>,
    how: OpMethod<M::Params>,
    work: F,
) -> Result<(), jsonrpsee::core::RegisterMethodError>
where
    M: Method,
    M::Params: Clone + Sync,
    F: Fn(Arc<Ctx>, Reporter, M::Params, Peer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Json, Error>> + Send + 'static,
{
    module.register_async_method(M::NAME, move |params, state, ext| {
        let (work, command) = (work.clone(), how.command.clone());
        async move {
            let peer = peer(&ext)?;
            let p: M::Params = parse(&params).map_err(|e| refused(M::NAME, &peer, &e))?;
            if (how.operator_only)(&p) {
                require_mutate(&peer).map_err(|e| refused(M::NAME, &peer, &e))?;
            }
            (how.validate)(&p).map_err(|e| refused(M::NAME, &peer, &rpc_error(e.to_wire())))?;
            let args = serde_json::to_value(&p).unwrap_or(Value::Null);
            let detach = (how.detached)(&p);
            let (p2, peer2) = (p.clone(), peer.clone());
            let op = state
                .start(command, args, &peer, (how.target)(&p), move |ctx, sink| {
                    work(ctx, sink, p2, peer2)
                })
                .map_err(|e| refused(M::NAME, &peer, &rpc_error(e)))?;
            if detach {
                return Ok(with_op_id(&op.id, &Json::new(&json!({}))));
            }
            op.ended().await;
            match op.outcome() {
                Some(Ok(result)) => Ok(with_op_id(&op.id, &result)),
                Some(Err(mut e)) => {
                    let detail = e.detail.take().unwrap_or_else(|| json!({}));
                    let mut detail = if detail.is_object() {
                        detail
                    } else {
                        json!({ "detail": detail })
                    };
                    detail["op_id"] = json!(op.id);
                    e.detail = Some(detail);
                    Err(rpc_error(e))
                }
                None => Err(rpc_error(WireError::new(
                    ErrorKind::Internal,
                    "operation did not end",
                ))),
            }
        }
    })?;
    Ok(())
}

/// What an operation answers, as its `finished` event has it (without the
/// `op_id`): its plan and its result, each left out when there is none.
#[derive(Serialize)]
struct Answer<P, R> {
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<P>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<R>,
}

fn answer<P: Serialize, R: Serialize>(plan: Option<P>, result: Option<R>) -> Json {
    Json::new(&Answer { plan, result })
}

/// The answer of a blocking call: `{"op_id": ..., ...answer}`. The answer
/// (a plan of 10,000 backups is ~2 MB) is put after the id as the text it
/// already is, not built again.
fn with_op_id(op_id: &str, answer: &Json) -> Box<RawValue> {
    let only_id = Json::new(&json!({ "op_id": op_id }));
    // An answer is an object, written compact by serde_json: `{}` or `{"k":...}`.
    let text = match answer.get().strip_prefix('{') {
        Some(rest) if rest != "}" => {
            let head = only_id.get().strip_suffix('}').unwrap_or("{");
            format!("{head},{rest}")
        }
        _ => return only_id.raw().to_owned(),
    };
    // Valid by construction; checked all the same (one scan of the text).
    RawValue::from_string(text).unwrap_or_else(|_| only_id.raw().to_owned())
}

/// Every method of the API.
pub fn module(
    state: Arc<State>,
) -> Result<RpcModule<Arc<State>>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(state);

    read::<DaemonStatusMethod, _, _>(&mut m, |state, _p, peer| async move {
        Ok(status(&state, &peer))
    })?;
    read::<DaemonHealth, _, _>(&mut m, |state, p, _| async move {
        ops::health::report(&state.ctx, &p).await
    })?;
    read::<BackupList, _, _>(&mut m, |state, p, _| async move {
        ops::list::list(&state.ctx, &p).await
    })?;
    read::<BackupShow, _, _>(&mut m, |state, p, _| async move {
        ops::list::show(&state.ctx, &p).await
    })?;
    read::<ScheduleShow, _, _>(&mut m, |state, p, _| async move {
        if let Some(name) = &p.instance {
            validate_name(name)?;
        }
        ops::schedule::show(&state.ctx, &p).await
    })?;
    read::<OpGet, _, _>(&mut m, |state, p, _| async move {
        state.lookup(&p.op_id).await.map(|o| o.info())
    })?;
    read::<OpList, _, _>(&mut m, |state, p, _| async move {
        let limit = p.limit.unwrap_or(limits::OP_PAGE);
        let page = state.ops.page(p.running, limit, p.before.as_deref());
        Ok(OpListResult {
            operations: page.operations.iter().map(|o| o.summary()).collect(),
            next_before: page.next_before,
        })
    })?;

    operation::<BackupCreate, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupCreate,
            target: |p| Some(p.instance.clone()),
            detached: |p| p.detach && !p.dry_run,
            operator_only: |_| true,
            validate: |p| {
                validate_name(&p.instance)?;
                p.message
                    .as_deref()
                    .map_or(Ok(()), |m| ops::check_message("--message", m))
            },
        },
        |ctx, sink, p, peer| async move {
            let (plan, result) = ops::create::run_and_push(&ctx, &p, &peer.actor, &sink).await?;
            Ok(answer(Some(plan), result))
        },
    )?;
    operation::<BackupRestore, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupRestore,
            target: |p| Some(p.id.clone()),
            detached: |p| p.detach && !p.dry_run,
            operator_only: |_| true,
            validate: |p| {
                crate::index::check_id(&p.id)?;
                if let Some(m) = &p.backup_message {
                    ops::check_message("--backup-message", m)?;
                }
                p.instance.as_deref().map_or(Ok(()), validate_name)
            },
        },
        |ctx, sink, p, peer| async move {
            let (plan, result) = ops::restore::run(&ctx, &p, &peer.actor, &sink).await?;
            Ok(answer(Some(plan), result))
        },
    )?;
    operation::<BackupVerify, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupVerify,
            target: |p| p.id.clone().or_else(|| p.all.then(|| "all".to_owned())),
            detached: |p| p.detach,
            operator_only: |_| true,
            validate: |p| p.id.as_deref().map_or(Ok(()), crate::index::check_id),
        },
        |ctx, sink, p, _| async move {
            let (plan, result) = ops::verify::run(&ctx, &p, &sink).await?;
            Ok(answer(Some(plan), Some(result)))
        },
    )?;
    for (command, protected) in [
        (Command::BackupProtect, true),
        (Command::BackupUnprotect, false),
    ] {
        let how = OpMethod {
            command,
            target: |p: &abssd_proto::ProtectParams| Some(p.id.clone()),
            detached: |_| false,
            operator_only: |_| true,
            validate: |p| crate::index::check_id(&p.id),
        };
        let work = move |ctx: Arc<Ctx>, sink: Reporter, p: abssd_proto::ProtectParams, _| async move {
            let result = ops::protect::set(&ctx, &p.id, protected, &sink).await?;
            Ok(answer(None::<()>, Some(result)))
        };
        if protected {
            operation::<BackupProtect, _, _>(&mut m, how, work)?;
        } else {
            operation::<BackupUnprotect, _, _>(&mut m, how, work)?;
        }
    }
    operation::<BackupPrune, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupPrune,
            target: |p| p.instance.clone(),
            detached: |p| p.detach && !p.dry_run,
            operator_only: |_| true,
            validate: |p| {
                if !p.dry_run && !p.yes {
                    return Err(ops::prune::not_confirmed());
                }
                p.instance.as_deref().map_or(Ok(()), validate_name)
            },
        },
        |ctx, sink, p, _| async move {
            let (plan, result) = ops::prune::run(&ctx, &p, &sink).await?;
            Ok(answer(Some(plan), result))
        },
    )?;
    // The backup job creates and prunes: an operator's, always.
    operation::<BackupRun, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupRun,
            target: |p| {
                p.instance
                    .clone()
                    .or_else(|| p.all.then(|| "all".to_owned()))
            },
            detached: |p| p.detach,
            operator_only: |_| true,
            validate: ops::run::validate,
        },
        |ctx, sink, p, peer| async move {
            let hooks = ops::run::Hooks::new(&ctx.config.daemon.hooks);
            let ran = ops::run::run(&ctx, &p, &peer.actor, &hooks, &sink).await;
            // The metrics file follows each job (health.textfile_dir), so a
            // dashboard sees a stale host without anyone running doctor.
            if ctx.config.daemon.textfile_dir.is_some() {
                use crate::progress::Progress;
                let all = abssd_proto::HealthParams::default();
                if let Err(e) = ops::health::report(&ctx, &all).await {
                    sink.warn(format!("the health metrics file was not written: {e}"));
                }
            }
            let (plan, result) = ran?;
            Ok(answer(Some(plan), Some(result)))
        },
    )?;
    // A read-only reconcile (no --apply) is open to every peer, like list; but
    // not --verify, which reads every archive in scope, nor --remote, which
    // makes requests with the remote's credentials.
    operation::<BackupReconcile, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupReconcile,
            target: |p| p.instance.clone(),
            detached: |p| p.detach,
            operator_only: |p| p.mutates() || p.verify || p.remote.is_some(),
            validate: |p| {
                p.instance.as_deref().map_or(Ok(()), validate_name)?;
                let Some(remote) = p.remote.as_deref() else {
                    return Ok(());
                };
                crate::config::remotes::check_name(remote).map_err(Error::Validation)?;
                if p.verify || p.deep {
                    return Err(Error::validation(
                        "--verify and --deep re-hash local archives; they do not go with --remote",
                    ));
                }
                Ok(())
            },
        },
        |ctx, sink, p, peer| async move {
            let (plan, result) = ops::reconcile::run(&ctx, &p, &peer.actor, &sink).await?;
            Ok(answer(Some(plan), Some(result)))
        },
    )?;

    // remote.ls: what a remote holds. Operator only: it makes
    // requests with the remote's credentials, which a reader must not be able
    // to trigger.
    read::<RemoteLs, _, _>(&mut m, |state, p, peer| async move {
        if !peer.may_mutate {
            return Err(Error::Forbidden(format!(
                "user {} (uid {}) may only read; remote.ls makes requests with the remote's credentials, so it needs root or membership in the operator group",
                peer.actor.user, peer.actor.uid
            )));
        }
        ops::reconcile::remote::ls(&state.ctx, &p).await
    })?;

    // backup.push: copies to a remote; an operator's.
    operation::<BackupPush, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupPush,
            target: |p| {
                p.instance
                    .clone()
                    .or_else(|| p.all.then(|| "all".to_owned()))
                    .or_else(|| p.ids.first().cloned())
            },
            detached: |p| p.detach,
            operator_only: |_| true,
            validate: ops::push::validate,
        },
        |ctx, sink, p, _| async move {
            let (plan, result) = ops::push::run(&ctx, &p, &sink).await?;
            Ok(answer(Some(plan), Some(result)))
        },
    )?;

    operation::<ScheduleEnable, _, _>(
        &mut m,
        OpMethod {
            command: Command::Other("schedule enable".into()),
            target: schedule_target,
            detached: |_| false,
            operator_only: |_| true,
            validate: ops::schedule::precheck,
        },
        |ctx, sink, p, _| async move {
            let result = ops::schedule::enable(&ctx, &p, &sink).await?;
            Ok(answer(None::<()>, Some(result)))
        },
    )?;
    operation::<ScheduleDisable, _, _>(
        &mut m,
        OpMethod {
            command: Command::Other("schedule disable".into()),
            target: schedule_target,
            detached: |_| false,
            operator_only: |_| true,
            validate: ops::schedule::precheck_disable,
        },
        |ctx, sink, p, _| async move {
            let result = ops::schedule::disable(&ctx, &p, &sink).await?;
            Ok(answer(None::<()>, Some(result)))
        },
    )?;

    // Remotes: the listing is open to every peer (it holds no
    // secret); a test makes requests with the credentials and writes a
    // probe, so it is an operator's; a pull writes an archive and the index.
    read::<RemoteList, _, _>(&mut m, |state, _p, _| async move {
        Ok(ops::remote::list(&state.ctx))
    })?;
    read::<RemoteTest, _, _>(&mut m, |state, p, peer| async move {
        if !peer.may_mutate {
            return Err(Error::Forbidden(format!(
                "user {} (uid {}) may only read; remote test needs root or membership in the operator group",
                peer.actor.user, peer.actor.uid
            )));
        }
        ops::remote::test(&state.ctx, &p.name).await
    })?;
    operation::<BackupPull, _, _>(
        &mut m,
        OpMethod {
            command: Command::BackupPull,
            target: |p| Some(p.id.clone()),
            detached: |p| p.detach,
            operator_only: |_| true,
            validate: |p| {
                crate::index::check_id(&p.id)?;
                p.remote.as_deref().map_or(Ok(()), |r| {
                    crate::config::remotes::check_name(r).map_err(Error::Validation)
                })
            },
        },
        |ctx, sink, p, _| async move {
            let result = ops::pull::run(&ctx, &p, &sink).await?;
            Ok(answer(None::<()>, Some(result)))
        },
    )?;

    m.register_subscription(
        OpWatch::NAME,
        OpWatch::NOTIFICATION,
        OpWatch::UNSUBSCRIBE,
        |params, pending, state, _ext| async move {
            watch(params, pending, &state).await;
        },
    )?;
    Ok(m)
}

/// What a `schedule.*` operation is about: the instance, or `all`.
fn schedule_target(p: &abssd_proto::ScheduleParams) -> Option<String> {
    p.instance
        .clone()
        .or_else(|| p.all.then(|| "all".to_owned()))
}

fn status(state: &State, peer: &Peer) -> DaemonStatus {
    let cfg = &state.ctx.config;
    DaemonStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        started_at: state.started_at.clone(),
        uptime_secs: state.started.elapsed().as_secs(),
        socket: cfg.layout.socket.display().to_string(),
        operator_group: cfg.daemon.operator_group.clone(),
        config_file: cfg.layout.config_file.display().to_string(),
        paths: cfg.layout.paths(),
        abssd_config_file: cfg.abssd_config_file.display().to_string(),
        path_origins: cfg.origins.clone(),
        config_warnings: cfg.warnings.clone(),
        operations_running: state
            .ops
            .running()
            .iter()
            .map(|o| o.summary())
            .collect::<Vec<OpInfo>>(),
        recovered: state.ops.recovered().iter().map(|o| o.summary()).collect(),
        caller_may_mutate: peer.may_mutate,
    }
}

/// `op.watch`: replay every event from the start, then follow; stop after the
/// terminal event or when the watcher goes away (the operation goes on).
async fn watch(params: Params<'static>, pending: PendingSubscriptionSink, state: &State) {
    let p: abssd_proto::OpIdParams = match parse(&params) {
        Ok(p) => p,
        Err(e) => return pending.reject(e).await,
    };
    let op = match state.lookup(&p.op_id).await {
        Ok(op) => op,
        Err(e) => return pending.reject(rpc_error(e.to_wire())).await,
    };
    let Ok(sink) = pending.accept().await else {
        return;
    };
    let mut ticks = op.subscribe();
    let mut next = 0usize;
    loop {
        for event in op.events_from(next) {
            next += 1;
            let terminal = event.kind.is_terminal();
            let Ok(msg) = serde_json::value::to_raw_value(&event) else {
                return;
            };
            if sink.send(msg).await.is_err() || terminal {
                return;
            }
        }
        tokio::select! {
            changed = ticks.changed() => if changed.is_err() { return },
            () = sink.closed() => return,
        }
    }
}
