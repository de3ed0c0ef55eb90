//! Issue 14 item 10: abssd and the Python abssctl creating backups of one
//! instance at the same time. The Python tool takes the global lock file and
//! then the instance's, and holds the global one while it waits for the
//! instance's; abssd must take them in that order (see `abssd::locks`), or
//! each waits for the other until a `lock_timeout` ends. In both orders the
//! second create waits for the first and then completes; with a short
//! `lock_timeout` and the first held past it, the second fails with `busy`.
//!
//! The windows are driven, never raced: abssd is held at its hook right after
//! it took its locks, the Python tool by a stand-in that wraps its create
//! (under its locks) until the test writes a line to its stdin. How long each
//! side waited is printed, not asserted.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use abssd_proto::methods::call::{call, watch};
use abssd_proto::methods::{BackupCreate, OpGet};
use abssd_proto::*;
use abssd_tests::hooks::Gate;
use abssd_tests::inspect::events_of;
use abssd_tests::peer::PythonPeer;
use abssd_tests::{Daemon, Sandbox, client, serial};
use jsonrpsee::core::client::Client;
use serde_json::Value;

/// The Python tool's create, held under its locks (global, then instance)
/// until a line arrives on its stdin; it says `locked` on stderr first.
const HOLD_PYTHON_CREATE: &str = "
import sys
import abssctl.cli as cli
_create = cli._create_backup
def _held(*args, **kwargs):
    sys.stderr.write('locked\\n')
    sys.stderr.flush()
    sys.stdin.readline()
    return _create(*args, **kwargs)
cli._create_backup = _held
";

fn detached(instance: &str) -> CreateParams {
    CreateParams {
        instance: instance.into(),
        detach: true,
        ..Default::default()
    }
}

/// A Python create of `instance` with its stdout piped.
fn python_create(py: &PythonPeer, instance: &str) -> Child {
    py.command(&["backup", "create", instance, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python abssctl")
}

/// Whether process `pid` has `file` open.
fn has_open(pid: u32, file: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file))
        })
        .unwrap_or(false)
}

/// Wait (a minute at most) until the Python tool has opened the global lock
/// file: it opens it once, before it tries to lock it, and keeps it open
/// while it retries. A condition, not a race: the test holds the lock.
async fn until_python_tries_the_global_lock(child: &Child, lock: &Path) {
    let t = Instant::now();
    while !has_open(child.id(), lock) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the Python abssctl never opened {}",
            lock.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The Python child's exit, stdout as JSON, and stderr; fails the test when
/// it did not exit 0.
fn python_succeeded(child: Child) -> Value {
    let out = child
        .wait_with_output()
        .expect("wait for the Python abssctl");
    assert!(
        out.status.success(),
        "the Python create failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// `lock_wait_ms` of the Python tool's operations-log line for backup `id`.
fn python_lock_wait_ms(sb: &Sandbox, id: &str) -> Option<u64> {
    let log = std::fs::read_to_string(sb.config().oplog_file()).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["result"]["backups"]
                .as_array()
                .is_some_and(|b| b.iter().any(|x| x == id))
        })
        .and_then(|v| v["lock_wait_ms"].as_u64())
}

fn index_ids(sb: &Sandbox) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(sb.config().index_file).unwrap()).unwrap();
    index["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn abssd_lock_wait_ms(c: &Client, op_id: &str) -> u64 {
    call::<OpGet>(
        c,
        &OpIdParams {
            op_id: op_id.into(),
        },
    )
    .await
    .unwrap()
    .lock_wait_ms
}

/// The Python create held under its locks: the child, and a channel that
/// gets its stderr lines.
fn held_python_create(py: &PythonPeer, instance: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = py
        .command_after(
            HOLD_PYTHON_CREATE,
            &["backup", "create", instance, "--json"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python abssctl");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Bounded, so that a stand-in that never runs fails the test.
    let t = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60).saturating_sub(t.elapsed()))
            .expect("the Python create never reached its locked window");
        if line == "locked" {
            break;
        }
    }
    (child, rx)
}

/// Let the held Python create go on.
fn release_python(child: &mut Child) {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
}

/// Wait for `op_id`'s first lock-wait event; its lock.
async fn first_lock_wait(c: &Client, op_id: &str) -> String {
    let mut events = watch(c, op_id).await.unwrap();
    loop {
        let event = events.next().await.expect("events").unwrap();
        if let EventKind::LockWait { lock } = &event.kind {
            return lock.clone();
        }
        assert!(
            !event.kind.is_terminal(),
            "abssd ended without waiting for a lock: {event:?}"
        );
    }
}

fn lock_file(sb: &Sandbox) -> PathBuf {
    sb.config().global_lock_file()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_create_waits_for_an_abssd_create_of_the_same_instance() {
    // The hook is process-wide.
    let _serial = serial();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let py = PythonPeer::new(&sb);

    // abssd's create holds its locks.
    let mut gate = Gate::at("create::locked");
    let op_id = call::<BackupCreate>(&c, &detached("alpha"))
        .await
        .unwrap()
        .op_id;
    gate.entered().await;
    // The Python create starts and tries the global lock, which abssd holds.
    let python = python_create(&py, "alpha");
    until_python_tries_the_global_lock(&python, &lock_file(&sb)).await;
    gate.release();

    let end = events_of(&c, &op_id).await.pop().unwrap();
    let EventKind::Finished { result } = end.kind else {
        panic!("abssd's create failed: {end:?}");
    };
    let ours = result.to_value()["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = python_succeeded(python)["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = index_ids(&sb);
    ids.sort();
    let mut want = vec![ours.clone(), theirs.clone()];
    want.sort();
    assert_eq!(ids, want);
    eprintln!(
        "measured: the Python create waited {:?} ms for abssd's (abssd waited {} ms)",
        python_lock_wait_ms(&sb, &theirs),
        abssd_lock_wait_ms(&c, &op_id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abssd_create_waits_for_a_python_create_of_the_same_instance() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let py = PythonPeer::new(&sb);

    let (mut python, _stderr) = held_python_create(&py, "alpha");
    let op_id = call::<BackupCreate>(&c, &detached("alpha"))
        .await
        .unwrap()
        .op_id;
    // abssd waits for the global lock first, holding nothing the Python
    // tool could wait for.
    assert_eq!(first_lock_wait(&c, &op_id).await, "global");
    release_python(&mut python);

    let theirs = python_succeeded(python)["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let end = events_of(&c, &op_id).await.pop().unwrap();
    let EventKind::Finished { result } = end.kind else {
        panic!("abssd's create failed: {end:?}");
    };
    let ours = result.to_value()["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = index_ids(&sb);
    ids.sort();
    let mut want = vec![ours, theirs.clone()];
    want.sort();
    assert_eq!(ids, want);
    eprintln!(
        "measured: abssd's create waited {} ms for the Python create (which waited {:?} ms)",
        abssd_lock_wait_ms(&c, &op_id).await,
        python_lock_wait_ms(&sb, &theirs)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abssd_create_held_past_its_lock_timeout_by_python_is_busy() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let mut config = sb.full_config();
    config.daemon.lock_timeout = Duration::from_millis(500);
    let daemon = Daemon::start_with(config);
    let c = client(&daemon.socket).await;
    let py = PythonPeer::new(&sb);

    let (mut python, _stderr) = held_python_create(&py, "alpha");
    let op_id = call::<BackupCreate>(&c, &detached("alpha"))
        .await
        .unwrap()
        .op_id;
    // The Python create is let go only once abssd has given up.
    let end = events_of(&c, &op_id).await.pop().unwrap();
    release_python(&mut python);
    let EventKind::Failed { error } = end.kind else {
        panic!("abssd's create did not fail: {end:?}");
    };
    assert_eq!(error.kind, ErrorKind::Busy, "{error:?}");
    assert!(error.message.contains("global"), "{}", error.message);
    let theirs = python_succeeded(python)["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(index_ids(&sb), [theirs]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_create_held_past_its_lock_timeout_by_abssd_times_out() {
    // The hook is process-wide.
    let _serial = serial();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let py = PythonPeer::new(&sb);

    let mut gate = Gate::at("create::locked");
    let op_id = call::<BackupCreate>(&c, &detached("alpha"))
        .await
        .unwrap()
        .op_id;
    gate.entered().await;
    // abssd is let go only once the Python create has given up.
    let out = py
        .command(&[
            "--lock-timeout",
            "0.5",
            "backup",
            "create",
            "alpha",
            "--json",
        ])
        .output()
        .expect("run the Python abssctl");
    gate.release();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // Its own words: the Python tool does not catch its lock timeout.
    // On the global lock: abssd holds it, so the Python tool holds nothing.
    let global = format!("Timed out waiting for lock {}", lock_file(&sb).display());
    assert!(stderr.contains(&global), "{stderr}");
    let end = events_of(&c, &op_id).await.pop().unwrap();
    let EventKind::Finished { result } = end.kind else {
        panic!("abssd's create failed: {end:?}");
    };
    assert_eq!(
        index_ids(&sb),
        [result.to_value()["result"]["id"]
            .as_str()
            .unwrap()
            .to_owned()]
    );
}

/// A local user who is not an operator cannot open the lock files, so cannot
/// hold one to stall abssd (nor the Python tool) or create one of their own,
/// even where `runtime_dir` is widened for read-only clients (README, "Who
/// may connect"): abssd makes them root's, mode 0640, as the Python tool does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_user_cannot_open_or_create_the_lock_files() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    abssd_tests::backup(&c, "alpha").await;
    let runtime = sb.config().runtime_dir;
    // Every directory from the prefix down to runtime_dir searchable by all.
    let mut dir = runtime.clone();
    loop {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if dir == sb.prefix || !dir.pop() {
            break;
        }
    }
    for file in ["abssctl.lock", "alpha.lock", "beta.lock"] {
        let path = runtime.join(file);
        assert_eq!(path.exists(), file != "beta.lock", "{file}");
        let out = std::process::Command::new("flock")
            .args(["-n", "-x"])
            .arg(&path)
            .arg("true")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Permission denied"),
            "{file}: {:?} {err}",
            out.status
        );
    }
    assert!(!runtime.join("beta.lock").exists());
}
