//! abssd as systemd runs it, without systemd: `systemd-socket-activate` passes
//! the listening socket the way `abssd.socket` does (`LISTEN_FDS`), and a
//! datagram socket of this test stands in for `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abssd_proto::methods::DaemonStatusMethod;
use abssd_proto::methods::call::call;
use abssd_proto::{ListParams, NoParams};
use abssd_tests::{Sandbox, client};

const BIN: &str = env!("CARGO_BIN_EXE_abssd-failpoints");

/// Datagrams received within `bound`, until `until` matches one. Blocks, so
/// its worker's other tasks (the client's connection) move elsewhere first.
fn notes_until(sock: &UnixDatagram, bound: Duration, until: &str) -> Vec<String> {
    tokio::task::block_in_place(|| receive(sock, bound, until))
}

fn receive(sock: &UnixDatagram, bound: Duration, until: &str) -> Vec<String> {
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text.lines().any(|l| l == until);
            got.push(text);
            if done {
                break;
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activated_it_serves_notifies_feeds_the_watchdog_and_exits_when_idle() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_abssd_config("daemon:\n  idle_timeout: 2\n");
    let socket = sb.socket();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let notify_path = sb.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
        .args(["-E", "WATCHDOG_USEC=400000", "-E", "RUST_LOG=info"])
        .arg(BIN)
        .arg("--prefix")
        .arg(&sb.prefix)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.path("abssd.log")).unwrap())
        .spawn()
        .expect("systemd-socket-activate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing runs until the first client connects.
    assert!(notes_until(&notify, Duration::from_millis(300), "READY=1").is_empty());

    let c = client(&socket).await;
    let status = call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();
    assert_eq!(
        status.pid,
        child.id(),
        "abssd runs in place of the activator"
    );
    let listed = call::<abssd_proto::methods::BackupList>(&c, &ListParams::default())
        .await
        .unwrap();
    assert!(listed.backups.is_empty());

    let notes = notes_until(&notify, Duration::from_secs(10), "READY=1").join("\n");
    assert!(notes.contains("READY=1"), "{notes}");
    assert!(notes.contains("STATUS=serving"), "{notes}");
    let fed = notes_until(&notify, Duration::from_secs(5), "WATCHDOG=1").join("\n");
    assert!(fed.contains("WATCHDOG=1"), "no watchdog ping: {fed}");

    // Busy while a client is connected: still there after 15 of the daemon's
    // own watchdog pings (every 200 ms: nominally 3 s, more than the 2 s idle
    // timeout; were the pings to come faster, this only proves less). When
    // exactly the idle period starts is IdleClock's unit test.
    for _ in 0..15 {
        let fed = notes_until(&notify, Duration::from_secs(5), "WATCHDOG=1").join("\n");
        assert!(fed.contains("WATCHDOG=1"), "no watchdog ping: {fed}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited while a client was connected"
    );
    call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();

    // Once the client leaves and the daemon is idle for 2 s: exit. The notify
    // socket is read all along: a full one would block the daemon's sends.
    drop(c);
    let left = Instant::now();
    let mut bye = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            left.elapsed() < Duration::from_secs(20),
            "still running {:?} after the last client left: {bye:?}\n{}",
            left.elapsed(),
            std::fs::read_to_string(sb.path("abssd.log")).unwrap_or_default()
        );
        bye.extend(notes_until(&notify, Duration::from_millis(50), "-"));
    };
    assert!(status.success(), "{status}");
    // The socket is systemd's: abssd leaves it for the next activation.
    assert!(socket.exists());
    bye.extend(notes_until(
        &notify,
        Duration::from_millis(500),
        "STOPPING=1",
    ));
    let bye = bye.join("\n");
    assert!(bye.contains("STOPPING=1"), "{bye}");
}

/// Waits (bounded: a hang guard, not a measurement) until `done` holds.
fn wait_until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "waited {bound:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start a detached create of each instance; the daemon answers `{op_id}` at once.
async fn detached_creates(socket: &std::path::Path, instances: &[&str]) {
    let c = client(socket).await;
    for instance in instances {
        let params = abssd_proto::CreateParams {
            instance: (*instance).into(),
            detach: true,
            ..Default::default()
        };
        call::<abssd_proto::methods::BackupCreate>(&c, &params)
            .await
            .unwrap();
    }
}

fn log_of(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.path("abssd-0.log")).unwrap_or_default()
}

/// An operation whose thread never comes back (here a create paused by a
/// failpoint in its blocking archive thread, as a read of a FIFO would have
/// hung it): one SIGTERM still ends the process once `daemon.stop_timeout` is
/// over, and the next start cleans up after the abandoned create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_after_the_stop_timeout_even_with_a_thread_stuck() {
    use abssd_tests::child::ChildDaemon;
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_abssd_config("daemon:\n  stop_timeout: 1\n");
    let backups = sb.config().backups_root.join("alpha");
    let d = ChildDaemon::start(BIN, &sb, Some("create::after-sidecar=pause"));
    detached_creates(&d.socket, &["alpha"]).await;
    let sidecar_written = || {
        std::fs::read_dir(&backups)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().to_string_lossy().ends_with(".sha256"))
            })
            .unwrap_or(false)
    };
    wait_until(
        "the create to reach its failpoint",
        Duration::from_secs(30),
        sidecar_written,
    );

    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = d.wait(Duration::from_secs(60));
    let log = log_of(&sb);
    assert!(matches!(status.code(), Some(0 | 1)), "{status}\n{log}");
    assert!(
        log.contains("abandoned") || log.contains("exiting now"),
        "{log}"
    );

    // The next start removes what the abandoned create left.
    let d = ChildDaemon::start(BIN, &sb, None);
    assert!(
        !sidecar_written(),
        "the abandoned create's files are still there"
    );
    let c = client(&d.socket).await;
    let listed = call::<abssd_proto::methods::BackupList>(&c, &ListParams::default())
        .await
        .unwrap();
    assert!(listed.backups.is_empty());
    d.stop();
}

/// A second SIGTERM exits at once (143) even when every runtime thread is
/// stuck: the daemon runs on one CPU (so its runtime has one worker thread)
/// and a create pauses in its async part, on that thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once_whatever_the_threads_are_doing() {
    use abssd_tests::child::ChildDaemon;
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_abssd_config("daemon:\n  stop_timeout: 600\n");
    let index = sb.config().index_file;
    let d = ChildDaemon::start_on_one_cpu(BIN, &sb, Some("create::after-index=pause"));
    detached_creates(&d.socket, &["alpha"]).await;
    wait_until(
        "the create to reach its failpoint",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&index)
                .unwrap_or_default()
                .contains("\"alpha\"")
        },
    );

    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // Standard signals do not queue: the second must come after the first was taken.
    wait_until(
        "the first signal to be taken",
        Duration::from_secs(10),
        || log_of(&sb).contains("SIGTERM: stopping"),
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = d.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{status}\n{}", log_of(&sb));
}
