//! abssd as a child process (`abssd-failpoints`, abssd with its crash points
//! armed), for the tests that kill it: at a named crash point
//! (`FAILPOINTS=<name>=return` aborts there) or with `SIGKILL` from outside.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::Sandbox;

/// A running `abssd-failpoints --prefix <sandbox>`; killed on drop.
#[derive(Debug)]
pub struct ChildDaemon {
    child: Child,
    /// The socket it serves.
    pub socket: PathBuf,
}

impl ChildDaemon {
    /// Start `bin` (the integration test's
    /// `env!("CARGO_BIN_EXE_abssd-failpoints")`) on the sandbox's prefix (and
    /// its config file), with `failpoints` (`name=action;...`, see the `fail`
    /// crate) armed, and wait until it serves. Its stderr goes to
    /// `<prefix>/abssd-<n>.log`.
    pub fn start(bin: &str, sandbox: &Sandbox, failpoints: Option<&str>) -> ChildDaemon {
        ChildDaemon::launch(Command::new(bin), sandbox, failpoints)
    }

    /// [`ChildDaemon::start`] with `env` added to its environment (e.g.
    /// `SSL_CERT_FILE`, which only a child process may be given).
    pub fn start_with_env(
        bin: &str,
        sandbox: &Sandbox,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> ChildDaemon {
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        ChildDaemon::launch(cmd, sandbox, None)
    }

    /// [`ChildDaemon::start`] confined to one CPU (`taskset`, which execs it:
    /// same pid), so its runtime has a single worker thread.
    pub fn start_on_one_cpu(bin: &str, sandbox: &Sandbox, failpoints: Option<&str>) -> ChildDaemon {
        // The first CPU this process may use ("Cpus_allowed_list:\t0-1,4").
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let cpu = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|list| list.trim().split([',', '-']).next().map(str::to_owned))
            .unwrap_or_else(|| "0".to_owned());
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &cpu, bin]);
        ChildDaemon::launch(cmd, sandbox, failpoints)
    }

    fn launch(mut cmd: Command, sandbox: &Sandbox, failpoints: Option<&str>) -> ChildDaemon {
        let socket = sandbox.socket();
        let log = (0..)
            .map(|n| sandbox.path(&format!("abssd-{n}.log")))
            .find(|p| !p.exists())
            .expect("a log name");
        cmd.arg("--prefix")
            .arg(&sandbox.prefix)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .env_remove("ABSSCTL_CONFIG_FILE")
            .env_remove("ABSSD_CONFIG_FILE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        match failpoints {
            Some(f) => cmd.env("FAILPOINTS", f),
            None => cmd.env_remove("FAILPOINTS"),
        };
        let mut child = cmd.spawn().expect("start abssd-failpoints");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().expect("wait") {
                panic!(
                    "abssd-failpoints exited during start-up ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "abssd-failpoints did not serve {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ChildDaemon { child, socket }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (bounded) for the process to end by itself, e.g. at a crash point.
    pub fn wait(mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "abssd-failpoints did not end within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` and reap.
    pub fn kill(mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait")
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("wait")
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `status` is the abort of a crash point.
pub fn aborted(status: &ExitStatus) -> bool {
    status.signal() == Some(nix::sys::signal::Signal::SIGABRT as i32)
}

/// Every crash point in abssd's source (`crash_point!("<name>")`), sorted.
pub fn crash_points() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../abssd/src");
    let mut names = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read abssd/src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                for (i, _) in text.match_indices("crash_point!(\"") {
                    let rest = &text[i + "crash_point!(\"".len()..];
                    let name = &rest[..rest.find('"').expect("closing quote")];
                    names.push(name.to_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
