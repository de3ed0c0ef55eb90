//! Following an operation to its end through `op.watch`.
//!
//! The daemon replays an operation's events from the start and ends the stream with
//! exactly one terminal event. Ctrl-C here only detaches: the operation belongs to
//! the daemon and goes on.

use std::future;

use abssd_proto::methods::OpGet;
use abssd_proto::methods::call::{call, watch};
use abssd_proto::{Command, ErrorKind, EventKind, OpIdParams, OpState, WireError};
use jsonrpsee::core::client::Client;
use serde_json::Value;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::progress::ProgressView;

/// How often a stream that ends early (a lagging subscription) is re-opened before
/// giving up; each re-open replays from the start and seen events are skipped.
const MAX_RESUBSCRIBE: usize = 3;

/// SIGINT, taken over from the default (terminate) as soon as it is installed, so a
/// Ctrl-C between starting an operation and watching it waits for the op id.
#[derive(Debug)]
pub struct Interrupt(Option<Signal>);

impl Interrupt {
    /// Catch SIGINT from now on. If that is impossible, Ctrl-C keeps its default
    /// effect, which also leaves the operation running in the daemon.
    pub fn install() -> Self {
        Interrupt(signal(SignalKind::interrupt()).ok())
    }

    async fn recv(&mut self) {
        match &mut self.0 {
            Some(sig) => {
                sig.recv().await;
            }
            None => future::pending().await,
        }
    }
}

/// How following ended.
#[derive(Debug)]
pub enum Ended {
    /// The operation finished.
    Finished(Finished),
    /// The operation failed with this error.
    Failed(WireError),
    /// Ctrl-C: the client let go; the operation goes on.
    Detached,
}

/// A finished operation's answer, as the blocking method call would have given it.
#[derive(Debug)]
pub struct Finished {
    /// The operation.
    pub op_id: String,
    /// Its command (`backup create`, ...), from the `started` event or `op.get`.
    pub command: Option<Command>,
    /// The `plan` event's plan, `null` when there was none.
    pub plan: Value,
    /// The method's result.
    pub result: Value,
}

/// Watch `op_id` to its terminal event, drawing progress into `view`.
pub async fn follow(
    client: &Client,
    op_id: &str,
    view: &mut ProgressView,
    interrupt: &mut Interrupt,
) -> Result<Ended, WireError> {
    let ended = tokio::select! {
        ended = follow_events(client, op_id, view) => Some(ended),
        () = interrupt.recv() => None,
    };
    view.clear();
    ended.unwrap_or(Ok(Ended::Detached)).map_err(|mut err| {
        // Losing the daemon's connection does not end the operation (unless the
        // daemon itself died); say how to find it again.
        if err.kind == ErrorKind::Environment && !err.message.contains("abssctl op watch") {
            err.message.push_str(&format!(
                "; the operation may still be running: abssctl op watch {op_id}"
            ));
        }
        err
    })
}

async fn follow_events(
    client: &Client,
    op_id: &str,
    view: &mut ProgressView,
) -> Result<Ended, WireError> {
    let mut finished = Finished {
        op_id: op_id.to_owned(),
        command: None,
        plan: Value::Null,
        result: Value::Null,
    };
    let mut last_seq: Option<u64> = None;
    let mut warned_unreadable = false;
    for _ in 0..=MAX_RESUBSCRIBE {
        let mut events = watch(client, op_id).await?;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    // An event kind newer than this client: skip it, the terminal
                    // event still comes.
                    if !warned_unreadable {
                        warned_unreadable = true;
                        view.warn(&format!(
                            "skipping an event this abssctl does not understand: {err}"
                        ));
                    }
                    continue;
                }
            };
            if last_seq.is_some_and(|seen| event.seq <= seen) {
                continue;
            }
            last_seq = Some(event.seq);
            view.on_event(&event.kind);
            match event.kind {
                EventKind::Started { command, .. } => finished.command = Some(command),
                EventKind::Plan { plan } => finished.plan = plan.to_value(),
                EventKind::Finished { result } => {
                    return Ok(Ended::Finished(unwrap_outcome(finished, result.to_value())));
                }
                EventKind::Failed { error } => return Ok(Ended::Failed(error)),
                _ => {}
            }
        }
        // The stream ended without a terminal event: ask where the operation is.
        let info = call::<OpGet>(
            client,
            &OpIdParams {
                op_id: op_id.to_owned(),
            },
        )
        .await?;
        finished.command.get_or_insert(info.command);
        match info.state {
            OpState::Succeeded => {
                let result = info.result.map_or(Value::Null, |r| r.to_value());
                return Ok(Ended::Finished(unwrap_outcome(finished, result)));
            }
            OpState::Failed => {
                let error = info.error.unwrap_or_else(|| {
                    WireError::new(
                        ErrorKind::Internal,
                        format!("operation {op_id} failed without saying why"),
                    )
                });
                return Ok(Ended::Failed(error));
            }
            OpState::Running => {}
        }
    }
    Err(WireError::new(
        ErrorKind::Environment,
        format!(
            "lost the event stream of operation {op_id} repeatedly; it goes on in abssd: abssctl op watch {op_id}"
        ),
    ))
}

/// Accept a terminal result that is the blocking answer (`{plan, result}`, with or
/// without `op_id`; abssd sends this) as well as the bare result.
fn unwrap_outcome(mut finished: Finished, result: Value) -> Finished {
    match result {
        Value::Object(mut outcome)
            if outcome.contains_key("result")
                && outcome
                    .keys()
                    .all(|k| matches!(k.as_str(), "op_id" | "plan" | "result")) =>
        {
            if let Some(plan) = outcome.remove("plan").filter(|p| !p.is_null()) {
                finished.plan = plan;
            }
            finished.result = outcome.remove("result").unwrap_or(Value::Null);
        }
        bare => finished.result = bare,
    }
    finished
}

/// The line printed when Ctrl-C detaches from `op_id`.
pub fn detached_message(op_id: &str) -> String {
    format!("detached; the operation goes on: abssctl op watch {op_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn empty() -> Finished {
        Finished {
            op_id: "o".to_owned(),
            command: None,
            plan: json!({"ids": []}),
            result: Value::Null,
        }
    }

    #[test]
    fn bare_results_are_kept() {
        let f = unwrap_outcome(empty(), json!({"results": []}));
        assert_eq!(f.result, json!({"results": []}));
        assert_eq!(f.plan, json!({"ids": []}));
    }

    #[test]
    fn plan_and_result_pairs_are_unwrapped() {
        let f = unwrap_outcome(
            empty(),
            json!({"plan": {"ids": ["b"]}, "result": {"results": [1]}}),
        );
        assert_eq!(f.result, json!({"results": [1]}));
        assert_eq!(f.plan, json!({"ids": ["b"]}));
    }

    #[test]
    fn whole_answers_are_unwrapped() {
        let f = unwrap_outcome(
            empty(),
            json!({"op_id": "o", "plan": {"ids": ["a"]}, "result": {"results": []}}),
        );
        assert_eq!(f.result, json!({"results": []}));
        assert_eq!(f.plan, json!({"ids": ["a"]}));
    }
}
