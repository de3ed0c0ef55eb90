//! Who else hears about a backup job, instance by instance: the seam where
//! hooks and monitoring pings attach ("the job of alpha started", "... ended,
//! here is its record and the end of its log"). The job calls an
//! [`Observer`] and never knows what it does; the daemon passes
//! [`Nobody`] until something listens.
//!
//! [`Tail`] is what the job reports through for one instance: it passes every
//! event on to the operation (except the nested operations' plans: the job's
//! plan is the job's) and keeps the last lines of what happened, bounded, for
//! an observer to send along.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use abssd_proto::{EventKind, JobRecord, Level};
use futures_util::future::BoxFuture;

use crate::progress::{Progress, Reporter};
use crate::text::cut;

/// Lines a [`Tail`] keeps.
pub const TAIL_LINES: usize = 40;
/// Bytes of one kept line (longer ones are cut on a character boundary).
pub const TAIL_LINE_BYTES: usize = 400;

/// Told when an instance's job starts and ends, and awaited: the job goes on
/// when the observer is done. An observer bounds what it does (a ping, a
/// command) and runs blocking work off the job's task. What it reports to
/// `progress` (the instance's [`Tail`]) joins the operation's messages.
pub trait Observer: Send + Sync {
    /// The job of `instance` begins (operation `op_id`). An answer that
    /// refuses fails the instance's job before it backs anything up.
    fn started<'a>(
        &'a self,
        instance: &'a str,
        op_id: &'a str,
        progress: &'a Reporter,
    ) -> BoxFuture<'a, Answer> {
        let _ = (instance, op_id, progress);
        Box::pin(std::future::ready(Answer::default()))
    }
    /// The job of an instance ended, whatever its outcome: its record (as
    /// written to `state_dir/jobs/<instance>.json`) and the last lines of
    /// what it reported (at most [`TAIL_LINES`] of [`TAIL_LINE_BYTES`]).
    /// A refusal here is ignored: the outcome stands.
    fn ended<'a>(
        &'a self,
        record: &'a JobRecord,
        tail: &'a [String],
        progress: &'a Reporter,
    ) -> BoxFuture<'a, Answer> {
        let _ = (record, tail, progress);
        Box::pin(std::future::ready(Answer::default()))
    }
}

/// What an observer answers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What went wrong on its side (a ping not delivered, a hook that
    /// failed): warnings of the operation and of the instance's summary.
    pub warnings: Vec<String>,
    /// Why the instance's job must not run (from [`Observer::started`]).
    pub refused: Option<String>,
}

/// The observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nobody;

impl Observer for Nobody {}

/// Passes events on to the operation and keeps the last lines of them.
#[derive(Debug)]
pub struct Tail {
    to: Reporter,
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl Tail {
    /// A tail over `to`, and the handle the job reads the lines from.
    pub fn over(to: Reporter) -> (Reporter, TailLines) {
        let lines = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let tail = Tail {
            to,
            lines: lines.clone(),
        };
        (Reporter::new(tail), TailLines(lines))
    }

    fn keep(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(cut(line, TAIL_LINE_BYTES));
    }
}

/// The lines a [`Tail`] kept.
#[derive(Debug, Clone)]
pub struct TailLines(Arc<Mutex<VecDeque<String>>>);

impl TailLines {
    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }

    /// Add a line of the job's own (a step's outcome).
    pub fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(cut(line, TAIL_LINE_BYTES));
    }
}

impl Progress for Tail {
    fn emit(&self, event: EventKind) {
        match &event {
            // A step's own plan: the operation's plan is the job's.
            EventKind::Plan { .. } => return,
            EventKind::Phase { name, .. } => self.keep(format!("phase {name}")),
            EventKind::Message { level, text } => {
                let level = match level {
                    Level::Info => "info",
                    Level::Warning => "warning",
                };
                self.keep(format!("{level}: {text}"));
            }
            _ => {}
        }
        self.to.emit(event);
    }
    fn changed(&self, backup_id: &str) {
        self.to.changed(backup_id);
    }
    fn op_id(&self) -> String {
        self.to.op_id()
    }
}

#[cfg(test)]
mod tests {
    use abssd_proto::Phase;

    use super::*;
    use crate::progress::Recorder;

    #[test]
    fn the_tail_passes_events_on_but_plans_and_keeps_the_last_lines_bounded() {
        let (rec, progress) = Recorder::start("op");
        let (tail, lines) = Tail::over(progress);
        tail.emit(EventKind::Plan {
            plan: abssd_proto::Json::new(&serde_json::json!({})),
        });
        tail.phase(Phase::Archive);
        for i in 0..TAIL_LINES + 5 {
            tail.info(format!("note {i}"));
        }
        tail.warn("x".repeat(10_000));
        assert!(
            !rec.events()
                .iter()
                .any(|e| matches!(e, EventKind::Plan { .. }))
        );
        assert_eq!(rec.phases(), [Phase::Archive]);
        assert_eq!(rec.messages(Level::Info).len(), TAIL_LINES + 5);
        let kept = lines.lines();
        assert_eq!(kept.len(), TAIL_LINES);
        assert_eq!(kept[0], "info: note 6", "the oldest lines went first");
        let last = kept.last().unwrap();
        assert!(last.starts_with("warning: xxx") && last.len() <= TAIL_LINE_BYTES);
    }
}
