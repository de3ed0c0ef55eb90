//! A real S3-compatible server for the tests of off-host copies: moto's server
//! (`moto_server`, S3 and IAM on one port, all state in memory) started on
//! 127.0.0.1 by [`S3Server::start`], from the venv `scripts/s3-server.sh`
//! makes (`target/s3-server`, or `ABSSD_TEST_S3_SERVER`; `scripts/test.sh`
//! makes it before the tests run, and a test that finds none fails saying so).
//!
//! The server is moto's own, run by `s3/server.py` with one fix to its
//! signature check (moto 5.2.1 refuses a correctly signed request whose key or
//! query holds `/`, `:`, `=`, `+` or UTF-8; see there).
//!
//! Credentials are checked: the server is provisioned with an IAM user allowed
//! everything, an access key of it and a bucket (`s3/provision.py`), and from
//! then on refuses a request not signed with that key. What it holds is read
//! through an independent client, boto3 in the same venv ([`S3View`], one
//! short process per call), never through abssd's own. [`Cutter`] sits between
//! a client and the server and drops the connections after a number of bytes.
//!
//! Killed with its process group on drop; [`S3Server::kill`] and
//! [`S3Server::restart`] stop it mid-test (all its objects are lost) and start
//! it again on the same port with the same credentials.

mod cutter;
mod view;

pub use cutter::Cutter;
pub use view::{ObjectInfo, S3Error, S3View, Upload};

use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use view::python;

const SERVER: &str = include_str!("s3/server.py");
const PROVISION: &str = include_str!("s3/provision.py");

/// The requests moto lets through unauthenticated: the three IAM calls of
/// `s3/provision.py` that make the user, its policy and its key.
const UNAUTHENTICATED_REQUESTS: &str = "3";

/// Readiness: how many times to look for the server's listening socket, and
/// the pause between looks (moto imports for a second or two, longer on a
/// loaded machine).
const READY_TRIES: u32 = 1200;
const READY_PAUSE: Duration = Duration::from_millis(25);

/// Ports to try when another process takes the free one first.
const PORT_TRIES: u32 = 3;

/// A running moto server, provisioned; killed (with its process group) on drop.
#[derive(Debug)]
pub struct S3Server {
    /// The venv: `bin/moto_server`, and `bin/python` with boto3.
    venv: PathBuf,
    /// The server's log, its `TMPDIR` (moto spills large bodies there) and
    /// its `HOME`; removed on drop.
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1, kept across [`S3Server::restart`].
    port: u16,
    /// What moto's random generator is seeded with: the same seed gives the
    /// same access key on a restarted server.
    seed: u64,
    /// The server process (the leader of its own process group); `None` while
    /// killed.
    child: Option<Child>,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    /// Start a server on a free loopback port, wait until it accepts
    /// connections, and provision its user, key and bucket.
    pub fn start() -> S3Server {
        let venv = venv();
        let dir = tempfile::Builder::new()
            .prefix("abssd-s3-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("tmp")).expect("mkdir");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .subsec_nanos();
        let mut server = S3Server {
            venv,
            dir,
            port: 0,
            seed: u64::from(nanos) ^ (u64::from(std::process::id()) << 32),
            child: None,
            access_key: String::new(),
            secret_key: String::new(),
        };
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            server.port = free_port();
            match server.launch() {
                Ok(()) => {
                    server.provision();
                    return server;
                }
                // Most likely another process took the port: try another.
                Err(e) => last = e,
            }
        }
        panic!("moto_server did not start: {last}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its address, for a [`Cutter`] in front of it.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The bucket made at start (path-style addressing).
    pub fn bucket(&self) -> &str {
        "abssd-test"
    }

    /// The access key id of the provisioned user.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Its secret.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// Kill the server (SIGKILL to its process group) and wait for it: what it
    /// held is gone, and connections to its port are refused until
    /// [`S3Server::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The child leads its own group (see launch), so the group's id is its pid.
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Kill the server if it runs, and start a fresh one on the same port:
    /// empty but for the bucket, with the same credentials as before (moto
    /// makes the key with its random generator, seeded again with the same
    /// seed), so a credentials file written for the first stays valid.
    pub fn restart(&mut self) {
        self.kill();
        let (access, secret) = (
            std::mem::take(&mut self.access_key),
            std::mem::take(&mut self.secret_key),
        );
        if let Err(e) = self.launch() {
            panic!("moto_server did not start again on port {}: {e}", self.port);
        }
        self.provision();
        assert!(
            self.access_key == access && self.secret_key == secret,
            "the restarted moto made another key from the same seed: tests that keep credentials across a restart must rewrite them"
        );
    }

    /// A client of this server with its credentials.
    pub fn view(&self) -> S3View {
        self.view_at(&self.endpoint())
    }

    /// A client with this server's credentials that connects to `endpoint`
    /// instead (a [`Cutter`] in front of it).
    pub fn view_at(&self, endpoint: &str) -> S3View {
        S3View {
            venv: self.venv.clone(),
            home: self.dir.path().to_owned(),
            endpoint: endpoint.to_owned(),
            bucket: self.bucket().to_owned(),
            region: self.region().to_owned(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
        }
    }

    /// Every object under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<ObjectInfo> {
        self.view().list(prefix)
    }

    /// The bytes of object `key` (panics when there is none).
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.view().get(key)
    }

    /// Store `bytes` as object `key`, overwriting what is there.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        self.view().put(key, bytes)
    }

    /// Object `key`'s size and ETag, or `None` when there is none.
    pub fn head(&self, key: &str) -> Option<ObjectInfo> {
        self.view().head(key)
    }

    /// The multipart uploads in progress (neither completed nor aborted).
    pub fn multipart_uploads(&self) -> Vec<Upload> {
        self.view().multipart_uploads()
    }

    /// Spawn moto's server (`s3/server.py`) on `self.port` and wait until it
    /// listens there; `Err` with the end of its log when it exits first (the
    /// port was taken meanwhile).
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("moto.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the server's log");
        let start = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let mut cmd = Command::new(self.venv.join("bin/python"));
        cmd.arg("-c")
            .arg(SERVER)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env_clear()
            .env("HOME", self.dir.path())
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env("LANG", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("INITIAL_NO_AUTH_ACTION_COUNT", UNAUTHENTICATED_REQUESTS)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            // Its own group, so that kill reaches anything it started.
            .process_group(0);
        set_parent_death_signal(&mut cmd, nix::unistd::getpid());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}/bin/python: {e}", self.venv.display()))?;
        for _ in 0..READY_TRIES {
            if let Some(status) = child.try_wait().expect("wait for moto_server") {
                return Err(format!(
                    "it exited ({status}) before it served port {}: {}",
                    self.port,
                    log_tail(&log_path, start)
                ));
            }
            if listens(child.id(), self.port) {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(READY_PAUSE);
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "it did not listen on port {} after {READY_TRIES} looks: {}",
            self.port,
            log_tail(&log_path, start)
        ))
    }

    /// Make the user, its key and the bucket (`s3/provision.py`), and keep the key.
    fn provision(&mut self) {
        #[derive(Deserialize)]
        struct Key {
            access_key: String,
            secret_key: String,
        }
        let out = python(&self.venv, self.dir.path())
            .arg("-c")
            .arg(PROVISION)
            .args([
                &self.endpoint(),
                self.bucket(),
                self.region(),
                &self.seed.to_string(),
            ])
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "provisioning moto failed ({}): {}\nserver log: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            log_tail(&self.dir.path().join("moto.log"), 0)
        );
        let key: Key = serde_json::from_slice(&out.stdout).expect("provision.py's key");
        self.access_key = key.access_key;
        self.secret_key = key.secret_key;
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The venv `scripts/s3-server.sh` makes.
fn venv() -> PathBuf {
    let venv = std::env::var_os("ABSSD_TEST_S3_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace root")
                .join("target/s3-server")
        });
    assert!(
        venv.join("bin/moto_server").is_file(),
        "no S3 server venv at {}: run scripts/s3-server.sh (scripts/test.sh does) and set ABSSD_TEST_S3_SERVER to the directory it prints",
        venv.display()
    );
    venv
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port`: the
/// server is ready, and the listener is this server's, not another process's
/// that took the port meanwhile (a connection could not tell them apart).
fn listens(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // Columns: sl, local address (IPv4 as a little-endian hex word, port in
    // hex), remote address, state (0A: LISTEN), ..., inode (the tenth).
    let local = format!("0100007F:{port:04X}");
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if sockets.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("its address").port()
}

/// The last 4 KiB the server logged since `start`.
fn log_tail(path: &Path, start: u64) -> String {
    const TAIL: u64 = 4096;
    let read = || -> io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let end = f.metadata()?.len();
        f.seek(SeekFrom::Start(start.max(end.saturating_sub(TAIL))))?;
        let mut buf = Vec::new();
        f.take(TAIL).read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("(no log: {e})"))
}

/// Have the kernel `SIGKILL` the server when the thread that started it dies,
/// so a test process killed mid-run leaves no server behind. (So start and
/// restart a server on the test's own thread, not a helper thread that ends
/// before it.)
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command, parent: nix::unistd::Pid) {
    // SAFETY: the closure runs between fork and exec and only makes two
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died before prctl: then nobody will signal us.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("parent exited before moto_server started"));
            }
            Ok(())
        });
    }
}
