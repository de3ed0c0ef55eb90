//! A private `dbus-daemon` for tests: its own minimal configuration, its socket in a
//! temporary directory, killed on drop (and by the kernel if the thread that
//! started it dies first).
//!
//! The stock session configuration is not used on purpose: it auto-activates
//! services, among them an `org.freedesktop.systemd1` stub that exits 1, which would
//! race with the fake systemd for the name.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};

/// The bus daemon, found on `PATH` (Debian package `dbus-daemon`).
pub const DBUS_DAEMON: &str = "dbus-daemon";

/// A running private bus. Dropping it kills the daemon and removes its directory.
#[derive(Debug)]
pub struct Bus {
    /// The daemon process.
    child: Child,
    /// Kept open: the daemon's stdout, whose first line was the address.
    _stdout: BufReader<ChildStdout>,
    /// The client address (`unix:path=...,guid=...`).
    address: String,
    /// Holds `bus.conf` and the socket; removed after the daemon is dead.
    _dir: tempfile::TempDir,
}

impl Bus {
    /// Start a bus and wait until it listens (its first stdout line, ~2 ms).
    ///
    /// The daemon gets `SIGKILL` when the *thread* that called this ends (Linux
    /// parent-death signal), so call it from a thread that outlives the `Bus`.
    pub fn start() -> io::Result<Bus> {
        let dir = tempfile::Builder::new().prefix("abssd-bus-").tempdir()?;
        let conf = dir.path().join("bus.conf");
        fs::write(&conf, config(&dir.path().join("socket")))?;

        let parent = nix::unistd::getpid();
        let mut command = Command::new(DBUS_DAEMON);
        command
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nosyslog", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        set_parent_death_signal(&mut command, parent);
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run {DBUS_DAEMON} ({e}); install the dbus-daemon package"),
            )
        })?;

        forward_stderr(child.stderr.take().expect("piped stderr"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let address = line.trim().to_owned();
        if read.is_err() || address.is_empty() {
            let _ = child.kill();
            let status = child.wait()?;
            return Err(io::Error::other(format!(
                "{DBUS_DAEMON} printed no address ({status}); see its messages above"
            )));
        }
        Ok(Bus {
            child,
            _stdout: stdout,
            address,
            _dir: dir,
        })
    }

    /// The address clients connect to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pass the daemon's messages on to ours, minus the one it prints whenever it runs
/// as root without `CAP_SYS_RESOURCE` (containers, CI): it cannot raise its fd limit
/// to 65536, which a test bus does not need.
fn forward_stderr(stderr: ChildStderr) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !line.contains("Failed to set fd limit") {
                eprintln!("{line}");
            }
        }
    });
}

/// The smallest configuration under which zbus, `busctl` and `dbus-send` work:
/// one Unix socket, EXTERNAL auth (peer credentials), and a policy that lets
/// anyone on it own names and send and receive anything.
fn config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>abssd-test</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
        xml_escape(&socket.display().to_string())
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Have the kernel `SIGKILL` the child when the spawning thread dies, so a test
/// process killed mid-run leaves no daemon behind.
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command, parent: nix::unistd::Pid) {
    // SAFETY: the closure runs between fork and exec and only makes two
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died before prctl: then nobody will signal us.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("parent exited before the bus started"));
            }
            Ok(())
        });
    }
}
