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
