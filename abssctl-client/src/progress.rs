//! Progress on stderr, driven by an operation's events.
//!
//! One indicatif bar per phase: a byte bar when the phase's size is known, a spinner
//! otherwise (and while waiting for a lock). When a phase gives way to the next (or
//! the operation ends), a `done` (or `failed`) line with its time stays behind, so a restore's
//! steps (`stop unit`, `swap`, `start unit`, ...) read as a list. Bars are drawn only
//! for people at a terminal; with `--json`, `--quiet` or a redirected stderr the bar
//! is hidden and only messages (and lock waits, which can be long) are printed as
//! lines.

use std::time::Duration;

use abssd_proto::{EventKind, Level, Phase};
use indicatif::{ProgressBar, ProgressStyle};

use crate::render::{Output, esc, human_size};

const BYTES_TEMPLATE: &str = "{prefix:>12.bold} [{bar:32.cyan/blue}] {binary_bytes}/{binary_total_bytes} \
                              {binary_bytes_per_sec} eta {eta}";
const SPINNER_TEMPLATE: &str = "{spinner} {prefix:.bold} {msg}";
const TICK: Duration = Duration::from_millis(120);

/// Renders events as they arrive.
#[derive(Debug)]
pub struct ProgressView {
    /// Where lines go and whether notes are wanted.
    out: Output,
    /// Whether bars are drawn at all.
    visible: bool,
    /// The bar of the current phase (hidden when not `visible`).
    bar: ProgressBar,
    /// The phase `bar` belongs to, so a `progress` event for a phase whose `phase`
    /// event was missed still gets its own bar.
    phase: Option<Phase>,
}

/// How a phase name reads on the bar: `stop_unit` → `stop unit`. A name this
/// abssctl does not know reads the same way.
fn phase_label(phase: &Phase) -> String {
    match phase {
        Phase::PreBackup => "pre-backup".to_owned(),
        other => esc(&other.to_string().replace('_', " ")).into_owned(),
    }
}

/// The line left behind by a phase that ended (`done`) or that the operation
/// failed in (`failed`): its label lined up with the bars, the bytes it processed
/// when it had a size, and how long it took.
fn end_line(phase: &Phase, outcome: &str, bytes: Option<u64>, elapsed: Duration) -> String {
    let bytes = bytes
        .map(|b| format!(" {}", human_size(b)))
        .unwrap_or_default();
    format!(
        "{:>12} {outcome}{bytes} in {:.1}s",
        phase_label(phase),
        elapsed.as_secs_f64()
    )
}

impl ProgressView {
    /// A view for this run's output settings.
    pub fn new(out: Output) -> Self {
        ProgressView {
            out,
            visible: out.progress_visible(),
            bar: ProgressBar::hidden(),
            phase: None,
        }
    }

    /// Show one event.
    pub fn on_event(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Started { command, target } => {
                let what = match target {
                    Some(t) => format!("{command} {t}"),
                    None => command.to_string(),
                };
                self.spinner("", format!("starting {what}"));
            }
            EventKind::Plan { .. } => {}
            EventKind::LockWait { lock } => {
                if self.visible {
                    self.spinner(
                        "lock",
                        format!("waiting for {lock}, held by another operation"),
                    );
                } else {
                    self.out.note(&format!(
                        "waiting for lock {}, held by another operation",
                        esc(lock)
                    ));
                }
            }
            EventKind::LockAcquired { lock, waited_ms } => {
                if *waited_ms > 0 && !self.visible {
                    self.out
                        .note(&format!("got lock {} after {waited_ms} ms", esc(lock)));
                }
            }
            EventKind::Phase { name, total_bytes } => self.start_phase(name, *total_bytes),
            EventKind::Progress { phase, done, total } => {
                if self.phase.as_ref() != Some(phase) {
                    self.start_phase(phase, Some(*total));
                }
                self.bar.set_length(*total);
                self.bar.set_position(*done);
            }
            EventKind::Message { level, text } => {
                let out = self.out;
                match level {
                    Level::Info => self.bar.suspend(|| out.note(&esc(text))),
                    Level::Warning => self.bar.suspend(|| out.warn(&esc(text))),
                }
            }
            EventKind::Finished { .. } => {
                self.end_phase("done");
                self.clear();
            }
            EventKind::Failed { .. } => {
                self.end_phase("failed");
                self.clear();
            }
        }
    }

    /// A warning line on stderr, around the bar.
    pub fn warn(&self, text: &str) {
        self.bar.suspend(|| self.out.warn(text));
    }

    /// Remove whatever is drawn, before printing the answer or leaving.
    pub fn clear(&mut self) {
        self.bar.finish_and_clear();
        self.bar = ProgressBar::hidden();
        self.phase = None;
    }

    /// Leave a line saying how the current phase ended, if one is drawn.
    fn end_phase(&mut self, outcome: &str) {
        let Some(name) = self.phase.take() else {
            return;
        };
        if !self.visible || self.bar.is_hidden() {
            return;
        }
        let bytes = self.bar.length().map(|_| self.bar.position());
        let line = end_line(&name, outcome, bytes, self.bar.elapsed());
        self.bar.finish_and_clear();
        eprintln!("{line}");
    }

    fn start_phase(&mut self, phase: &Phase, total_bytes: Option<u64>) {
        self.end_phase("done");
        self.clear();
        self.phase = Some(phase.clone());
        if !self.visible {
            return;
        }
        self.bar = match total_bytes {
            Some(total) => {
                let style = ProgressStyle::with_template(BYTES_TEMPLATE)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                ProgressBar::new(total)
                    .with_style(style)
                    .with_prefix(phase_label(phase))
            }
            None => spinner_bar(&phase_label(phase), String::new()),
        };
    }

    fn spinner(&mut self, prefix: &str, message: String) {
        if !self.visible {
            return;
        }
        self.clear();
        self.bar = spinner_bar(prefix, message);
    }
}

fn spinner_bar(prefix: &str, message: String) -> ProgressBar {
    let style = ProgressStyle::with_template(SPINNER_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::new_spinner()
        .with_style(style)
        .with_prefix(esc(prefix).into_owned())
        .with_message(esc(&message).into_owned());
    bar.enable_steady_tick(TICK);
    bar
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        // Never leave a half-drawn bar behind the final output or an error.
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        assert!(ProgressStyle::with_template(BYTES_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(SPINNER_TEMPLATE).is_ok());
    }

    #[test]
    fn phases_read_as_words_with_their_size_and_time() {
        assert_eq!(phase_label(&Phase::StopUnit), "stop unit");
        assert_eq!(phase_label(&Phase::PreBackup), "pre-backup");
        assert_eq!(phase_label(&Phase::Verify("b_1".into())), "verify:b 1");
        assert_eq!(
            phase_label(&Phase::from("from_the_future")),
            "from the future"
        );
        assert_eq!(
            end_line(
                &Phase::Extract,
                "done",
                Some(3 << 20),
                Duration::from_millis(4260)
            ),
            "     extract done 3.0 MiB in 4.3s"
        );
        assert_eq!(
            end_line(&Phase::Swap, "failed", None, Duration::from_millis(300)),
            "        swap failed in 0.3s"
        );
    }

    #[test]
    fn hidden_view_follows_phases_without_drawing() {
        let mut view = ProgressView::new(Output {
            json: true,
            quiet: true,
        });
        assert!(!view.visible);
        view.on_event(&EventKind::Phase {
            name: Phase::Archive,
            total_bytes: Some(10),
        });
        view.on_event(&EventKind::Progress {
            phase: Phase::from("checksum"),
            done: 4,
            total: 8,
        });
        assert_eq!(view.phase, Some(Phase::Other("checksum".into())));
        assert!(view.bar.is_hidden());
        view.on_event(&EventKind::Finished {
            result: abssd_proto::Json::null(),
        });
        assert_eq!(view.phase, None);
    }
}
