//! Running under systemd: the socket it passes (`LISTEN_FDS`), readiness and
//! status (`sd_notify`), watchdog keep-alives, and logging to the journal.
//! Outside systemd every function here is a no-op.

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::error::{Error, Result};

/// The listening socket systemd passed, when socket-activated.
///
/// The one `unsafe` of the daemon: a descriptor number from the environment
/// becomes an owned listener, as `sd_listen_fds(3)` intends.
#[allow(unsafe_code)]
pub fn activated_listener() -> Result<Option<UnixListener>> {
    let mut fds = sd_notify::listen_fds()
        .map_err(|e| Error::Environment(format!("reading LISTEN_FDS: {e}")))?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.next().is_some() {
        return Err(Error::Environment(
            "systemd passed more than one socket; abssd.socket should have one ListenStream="
                .into(),
        ));
    }
    // SAFETY: systemd hands this descriptor to this process (LISTEN_PID is
    // ours, checked by listen_fds) and nothing else in it owns it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Environment(format!("the socket systemd passed is not usable: {e}")))?;
    Ok(Some(listener))
}

/// Tell systemd (if it is listening) that start-up is complete.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The one-line status `systemctl status abssd` shows.
pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

/// Tell systemd the daemon is stopping.
pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify");
    }
}

/// Keep systemd's watchdog (`WatchdogSec=`) fed from the runtime: pings at
/// half the interval stop if the runtime stops making progress.
pub fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}

/// Whether stderr is connected to the journal (systemd sets `JOURNAL_STREAM`).
pub fn logging_to_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// When a socket-activated daemon may exit: after `timeout` with no client
/// connected and no operation running, counted from the moment the last
/// client left (exactly: connections report their end) or the last check
/// that saw an operation running (checks come every second, so an operation
/// that ends between two can shorten the idle period by up to a second).
#[derive(Debug)]
pub struct IdleClock {
    /// `daemon.idle_timeout`.
    timeout: Duration,
    /// Open connections.
    open: usize,
    /// Last moment something was going on.
    busy_at: std::time::Instant,
}

impl IdleClock {
    /// A clock that starts counting at `now` (start-up is activity).
    pub fn new(timeout: Duration, now: std::time::Instant) -> IdleClock {
        IdleClock {
            timeout,
            open: 0,
            busy_at: now,
        }
    }

    /// A client connected.
    pub fn opened(&mut self, now: std::time::Instant) {
        self.open += 1;
        self.busy_at = now;
    }

    /// A client left: the idle period starts now if it was the last.
    pub fn closed(&mut self, now: std::time::Instant) {
        self.open = self.open.saturating_sub(1);
        self.busy_at = self.busy_at.max(now);
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Whether the daemon has been idle for the whole timeout at `now`, given
    /// whether operations are running then.
    pub fn expired(&mut self, now: std::time::Instant, operations_running: bool) -> bool {
        if self.open > 0 || operations_running {
            self.busy_at = self.busy_at.max(now);
            return false;
        }
        now.saturating_duration_since(self.busy_at) >= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn idle_counts_from_the_last_client_leaving() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut clock = IdleClock::new(Duration::from_secs(2), t0);
        clock.opened(at(100));
        // A periodic check while the client is connected, then it leaves
        // 900 ms later: the idle period starts at the leaving, not at the check.
        assert!(!clock.expired(at(1_000), false));
        clock.closed(at(1_900));
        assert_eq!(clock.open(), 0);
        assert!(!clock.expired(at(3_000), false));
        assert!(!clock.expired(at(3_899), false));
        assert!(clock.expired(at(3_900), false));
    }

    #[test]
    fn connections_and_operations_keep_it_busy() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut clock = IdleClock::new(Duration::from_secs(2), t0);
        assert!(!clock.expired(at(1), false));
        assert!(clock.expired(at(2), false), "idle since start-up");
        let mut clock = IdleClock::new(Duration::from_secs(2), t0);
        clock.opened(at(0));
        clock.opened(at(0));
        clock.closed(at(1));
        assert!(!clock.expired(at(100), false), "one client still connected");
        clock.closed(at(100));
        // An operation (detached: no client) seen running at 101 holds it.
        assert!(!clock.expired(at(101), true));
        assert!(!clock.expired(at(102), false));
        assert!(clock.expired(at(103), false));
        // A close that arrives late (reordered) never moves the clock back.
        clock.closed(at(50));
        assert!(clock.expired(at(103), false));
    }
}
