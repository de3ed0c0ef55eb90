//! What a test does at the daemon's named hooks (`hook_point!`): run an
//! attacker's script in the window, or hold an operation there until the test
//! has done what it wants meanwhile. Hooks are process-wide: a test that uses
//! these holds [`serial`](crate::serial).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::nobody;

/// The first time the daemon reaches hook `name`, run `script` with `sh -c`
/// as the service user in `dir`, right there in the window; the flag says it
/// ran.
pub fn as_nobody_at(name: &'static str, dir: &Path, script: String) -> Arc<AtomicBool> {
    let ran = Arc::new(AtomicBool::new(false));
    let (dir, flag) = (dir.to_owned(), ran.clone());
    fail::cfg_callback(name, move || {
        if !flag.swap(true, Ordering::SeqCst) {
            nobody::sh(Some(&dir), &script);
        }
    })
    .expect("arm the hook");
    ran
}

/// Holds the first operation that reaches a hook there, until
/// [`Gate::release`]; the ones after it pass. Dropped unreleased (a test that
/// failed), the held operation panics instead of waiting for good.
#[derive(Debug)]
pub struct Gate {
    entered: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: mpsc::Sender<()>,
}

impl Gate {
    /// Arm hook `name`.
    pub fn at(name: &'static str) -> Gate {
        let (entered_tx, entered) = tokio::sync::mpsc::unbounded_channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let first = AtomicBool::new(true);
        let held = Mutex::new(Some((entered_tx, release_rx)));
        fail::cfg_callback(name, move || {
            if first.swap(false, Ordering::SeqCst)
                && let Some((entered, release)) = held.lock().unwrap().take()
            {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
        })
        .expect("arm the hook");
        Gate { entered, release }
    }

    /// Wait until an operation is held at the hook. Bounded (a minute), so
    /// that a hook no operation reaches fails the test instead of hanging it.
    pub async fn entered(&mut self) {
        tokio::time::timeout(Duration::from_secs(60), self.entered.recv())
            .await
            .expect("no operation reached the hook within a minute")
            .expect("the hook is armed");
    }

    /// Let the held operation go on.
    pub fn release(&self) {
        self.release
            .send(())
            .expect("an operation is held at the hook");
    }
}
