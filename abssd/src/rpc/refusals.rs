//! The log of refused calls, bounded in rate: a peer that sends a million
//! refused calls gets a few lines a second into the journal and a count of
//! the rest, not a million lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines per window; what comes beyond is counted, not logged.
const LINES_PER_WINDOW: u32 = 20;
/// The window.
const WINDOW: Duration = Duration::from_secs(1);

/// A fixed-window limiter: up to `LINES_PER_WINDOW` lines each `WINDOW`.
#[derive(Debug)]
pub(super) struct Limiter {
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    /// Refusals not logged since the last line that was.
    suppressed: u64,
}

impl Limiter {
    pub(super) fn new(now: Instant) -> Limiter {
        Limiter {
            state: Mutex::new(Window {
                started: now,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log a refusal at `now`; `Some(n)` with the number of
    /// refusals left out before it (to say so in the line), `None` to count
    /// this one as left out.
    pub(super) fn admit(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(w.started) >= WINDOW {
            w.started = now;
            w.logged = 0;
        }
        if w.logged >= LINES_PER_WINDOW {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_a_few_lines_a_second_and_the_count_of_the_rest() {
        let t0 = Instant::now();
        let limiter = Limiter::new(t0);
        let admitted = (0..1000).filter(|_| limiter.admit(t0).is_some()).count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        // The next window's first line says how many were left out.
        let next = t0 + WINDOW;
        assert_eq!(
            limiter.admit(next),
            Some(1000 - u64::from(LINES_PER_WINDOW))
        );
        assert_eq!(limiter.admit(next), Some(0));
    }
}
