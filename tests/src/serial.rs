//! Who may run abssd in this process while a test arms failpoints.
//!
//! Failpoints (`hook_point!`, `crash_point!`, built with the `failpoints`
//! feature) live in one registry per process: a hook one test arms fires in
//! every daemon of the process, and `fail::FailScenario`'s teardown clears
//! everyone's hooks. nextest runs each test in a process of its own, but
//! `cargo test` runs the tests of a binary as threads of one process, and the
//! integration tests are one binary. So a test that arms failpoints holds a
//! [`Serial`] ([`serial`]): it waits until no other test runs abssd in this
//! process, and the others wait until it is done. Every other test that runs
//! abssd in this process holds a [`Share`]: each [`Sandbox`](crate::Sandbox)
//! and [`Daemon`](crate::Daemon) holds one, and a test that calls abssd without
//! either takes one with [`share`].
//!
//! Shares are counted per thread: the test holding [`Serial`] makes its own
//! sandboxes and daemons on its own thread (the one `#[test]` and
//! `#[tokio::test]` run the body on) without waiting for itself. Made on
//! another thread, they would wait for it forever.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

/// Which thread holds [`Serial`], and the thread of every [`Share`] held.
struct State {
    serial: Option<ThreadId>,
    shares: Vec<ThreadId>,
}

static STATE: Mutex<State> = Mutex::new(State {
    serial: None,
    shares: Vec::new(),
});
/// Signalled whenever a [`Serial`] or a [`Share`] is let go.
static RELEASED: Condvar = Condvar::new();

/// The state, whatever a test that panicked while holding the lock left: the
/// lock only guards counting, which a panic does not tear.
fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait_while(mut busy: impl FnMut(&State) -> bool) -> MutexGuard<'static, State> {
    RELEASED
        .wait_while(state(), |s| busy(s))
        .unwrap_or_else(PoisonError::into_inner)
}

/// The failpoints of this process to one test: see the [module](self).
/// Dropping it clears every failpoint, then lets the others run.
#[derive(Debug)]
#[must_use = "the failpoints are the test's only while this is held"]
pub struct Serial {
    scenario: Option<fail::FailScenario<'static>>,
}

/// Wait until no other test runs abssd in this process (nor holds a
/// [`Serial`]), then hold the failpoints, cleared, until the guard is dropped.
pub fn serial() -> Serial {
    let me = thread::current().id();
    let mut s = wait_while(|s| s.serial.is_some() || s.shares.iter().any(|t| *t != me));
    s.serial = Some(me);
    drop(s);
    Serial {
        scenario: Some(fail::FailScenario::setup()),
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        // The hooks go before anyone else may run into them.
        drop(self.scenario.take());
        state().serial = None;
        RELEASED.notify_all();
    }
}

/// A test's leave to run abssd in this process: see the [module](self).
#[derive(Debug)]
#[must_use = "abssd may run in this process only while this is held"]
pub struct Share {
    thread: ThreadId,
}

/// Wait while another thread holds a [`Serial`], then hold a share until the
/// guard is dropped.
pub fn share() -> Share {
    let me = thread::current().id();
    let mut s = wait_while(|s| s.serial.is_some_and(|t| t != me));
    s.shares.push(me);
    Share { thread: me }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut s = state();
        if let Some(i) = s.shares.iter().position(|t| *t == self.thread) {
            s.shares.swap_remove(i);
        }
        drop(s);
        RELEASED.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};

    #[test]
    fn a_serial_test_makes_its_own_shares_and_others_wait_for_it() {
        let serial = serial();
        // Its own share, on its own thread, does not wait for itself.
        let own = share();
        let released = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let other = {
            let released = released.clone();
            thread::spawn(move || {
                let _share = share();
                tx.send(released.load(Ordering::SeqCst)).unwrap();
            })
        };
        drop(own);
        released.store(true, Ordering::SeqCst);
        drop(serial);
        // The other thread got its share only after the serial one let go.
        assert!(rx.recv().unwrap());
        other.join().unwrap();
    }

    #[test]
    fn a_serial_test_waits_for_the_shares_of_other_threads() {
        let share = share();
        let released = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let released = released.clone();
            thread::spawn(move || {
                let _serial = serial();
                tx.send(released.load(Ordering::SeqCst)).unwrap();
            })
        };
        released.store(true, Ordering::SeqCst);
        drop(share);
        // The serial test got the failpoints only after the share was let go.
        assert!(rx.recv().unwrap());
        waiter.join().unwrap();
    }
}
