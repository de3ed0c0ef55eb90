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
    sb.write_config("daemon:\n  idle_timeout: 2\n");
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

    // Busy while a client is connected; once it leaves, idle for 2 s: exit.
    drop(c);
    let left = Instant::now();
    let mut seen = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            left.elapsed() < Duration::from_secs(20),
            "still running {:?} after the last client left: {:?}",
            left.elapsed(),
            notes_until(&notify, Duration::from_millis(200), "-")
        );
        // Read what abssd sends, as systemd does: a full notify socket (10
        // datagrams) would block its sd_notify calls.
        seen.extend(notes_until(&notify, Duration::from_millis(50), "-"));
    };
    assert!(status.success(), "{status}");
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "{:?}",
        left.elapsed()
    );
    // The socket is systemd's: abssd leaves it for the next activation.
    assert!(socket.exists());
    seen.extend(notes_until(
        &notify,
        Duration::from_millis(500),
        "STOPPING=1",
    ));
    let bye = seen.join("\n");
    assert!(bye.contains("STOPPING=1"), "{bye}");
}
