//! The socket under attack by local peers (issue 11, items 2, 4, 5, 10, 11): a
//! client that sends but never reads, refused calls that carry megabytes, huge
//! batches, a flood of idle connections, and positional parameters. Each test
//! runs the real daemon (as a child process where its memory is measured) and the
//! attacker as a real second process under uid 65534 where the uid matters.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupReconcile, DaemonStatusMethod, OpList};
use abssd_proto::{NoParams, OpListParams, ReconcileParams};
use abssd_tests::child::ChildDaemon;
use abssd_tests::{Daemon, Sandbox, backup, client};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const BIN: &str = env!("CARGO_BIN_EXE_abssd-failpoints");
const NOBODY: u32 = 65534;
/// How much a daemon may grow under any one attack.
const GROWTH_BOUND_KB: u64 = 100 * 1024;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM` = peak RSS).
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Start counting the peak RSS (`VmHWM`) afresh from now (`clear_refs` 5), so
/// that what the daemon held before the attack (a backup's zstd workers, one
/// per core) is not counted as the attack's; returns the RSS now.
fn rss_from_now(pid: u32) -> u64 {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
    status_kb(pid, "VmRSS")
}

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs an attacker as uid 65534 and needs root (CI runs as root)"
    );
}

/// A sandbox whose socket `nobody` can reach and use as a read-only peer, with
/// `extra` appended to the `daemon:` settings.
fn open_to_nobody(extra: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_config(&format!(
        "daemon:\n  socket_group: nogroup\n  operator_group: abssctl-test-nonexistent\n{extra}"
    ));
    for dir in ["", "run", "run/abssctl"] {
        let dir = sb.path(dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    sb
}

/// Run the Python `script` as uid 65534 with `args`; its stdin stays open until
/// the returned child's stdin is dropped.
fn as_nobody(script: &str, args: &[&str]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
}

/// HTTP/1.1 helpers shared by the Python attackers.
const PY_HTTP: &str = r#"
import json, socket, sys
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s
def post(s, body):
    s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise EOFError(head)
        head += chunk
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    data = b""
    while len(data) < length:
        data += s.recv(length - len(data))
    return json.loads(data)
"#;

/// The WebSocket upgrade, by hand; its answer is read once.
async fn upgrade(s: &mut UnixStream) {
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "handshake cut off");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// One masked WebSocket text frame (clients must mask).
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x13, 0xc7, 0x2e];
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn request(id: usize, method: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{}}}}"#).into_bytes()
}

fn http_post(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Requests written before the daemon closed the connection (`None` if all of
/// `total` went through: nobody stopped the flood).
async fn flood(mut s: UnixStream, total: usize, encode: fn(usize) -> Vec<u8>) -> Option<usize> {
    const CHUNK: usize = 500;
    let mut sent = 0;
    while sent < total {
        let chunk: Vec<u8> = (sent..sent + CHUNK).flat_map(encode).collect();
        if s.write_all(&chunk).await.is_err() {
            return Some(sent);
        }
        sent += CHUNK;
    }
    None
}

fn ws_request(i: usize) -> Vec<u8> {
    let method = if i.is_multiple_of(2) {
        "daemon.status"
    } else {
        "backup.list"
    };
    ws_frame(&request(i, method))
}

fn http_request(i: usize) -> Vec<u8> {
    http_post(&request(i, "daemon.status"))
}

/// The shared shape of the two "sends but never reads" attacks.
async fn never_reads(websocket: bool) {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_config("daemon:\n  send_timeout: 2\n");
    let daemon = ChildDaemon::start(BIN, &sb, None);
    let pid = daemon.pid();
    let c = client(&daemon.socket).await;
    backup(&c, "alpha").await;
    let before = rss_from_now(pid);

    let mut attacker = UnixStream::connect(&daemon.socket).await.unwrap();
    let encode: fn(usize) -> Vec<u8> = if websocket {
        upgrade(&mut attacker).await;
        ws_request
    } else {
        http_request
    };
    let attack = tokio::spawn(flood(attacker, 200_000, encode));
    // Meanwhile a normal client is answered.
    let status = call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();
    assert_eq!(status.pid, pid);

    // A bound only so that a daemon that never closes fails instead of hanging.
    let closed_after = tokio::time::timeout(Duration::from_secs(90), attack)
        .await
        .map(|joined| joined.unwrap());
    let peak = status_kb(pid, "VmHWM");
    // Still serving, and what the attacker cost is given back.
    let status = call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();
    assert_eq!(status.pid, pid);
    let after = status_kb(pid, "VmRSS");
    eprintln!(
        "{}: RSS {before} KiB before, peak {peak} KiB, {after} KiB after; closed after {closed_after:?} requests",
        if websocket { "websocket" } else { "http" }
    );
    let sent = closed_after
        .expect("the daemon never closed a connection whose client does not read")
        .expect("the daemon read 200,000 requests from a client that reads nothing");
    assert!(sent < 200_000);
    assert!(
        peak < before + GROWTH_BOUND_KB,
        "peak RSS {peak} KiB from {before} KiB"
    );
    assert!(
        after < before + GROWTH_BOUND_KB / 2,
        "RSS {after} KiB after, {before} KiB before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_never_reads_is_slowed_then_dropped_and_memory_returns() {
    never_reads(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_that_pipelines_without_reading_is_dropped() {
    never_reads(false).await;
}

/// 300 calls of a megabyte each, refused: a field too long, or a peer that may
/// not mutate.
const PY_REFUSED: &str = r#"
path = sys.argv[1]
s = connect(path)
kinds = {}
pad = "a" * 1000000
for i in range(300):
    if i % 2 == 0:
        # A field over its limit.
        params = {"instance": pad}
        body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "backup.reconcile", "params": params}).encode()
    else:
        # Valid, but not allowed to this peer; a megabyte of blanks inside.
        body = b'{"jsonrpc":"2.0","id":%d,"method":"backup.create","params":{"instance":"alpha"%s}}' % (i, b" " * 1000000)
    answer = post(s, body)
    kind = answer.get("error", {}).get("data", {}).get("kind", "answered")
    kinds[kind] = kinds.get(kind, 0) + 1
    if i == 0:
        print(json.dumps({"first": answer["error"]["message"][:300]}), flush=True)
print(json.dumps(kinds), flush=True)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_cost_no_operation_no_log_line_and_no_memory() {
    need_root();
    let sb = open_to_nobody("");
    let daemon = ChildDaemon::start(BIN, &sb, None);
    let pid = daemon.pid();
    let log = sb.config().oplog_file();
    let c = client(&daemon.socket).await;
    let before = rss_from_now(pid);

    let mut py = as_nobody(
        &format!("{PY_HTTP}{PY_REFUSED}"),
        &[daemon.socket.to_str().unwrap()],
    );
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let counts: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(py.wait().unwrap().success());
    let peak = status_kb(pid, "VmHWM");
    eprintln!("300 refused 1 MB calls: RSS {before} KiB before, peak {peak} KiB; {counts}");

    assert_eq!(counts, json!({"validation": 150, "forbidden": 150}));
    let message = first["first"].as_str().unwrap();
    assert!(
        message.contains("instance") && message.contains("64"),
        "the refusal names the field and its limit: {message}"
    );
    // No operation, no operations-log line.
    assert!(!log.exists(), "{}", log.display());
    let ops = call::<OpList>(&c, &OpListParams::default()).await.unwrap();
    assert!(ops.operations.is_empty(), "{:?}", ops.operations);
    assert!(
        peak < before + GROWTH_BOUND_KB,
        "peak RSS {peak} KiB from {before} KiB"
    );
}

/// Detached reconciles in batches: 11,000 in one (about 1 MB), then 16.
const PY_BATCHES: &str = r#"
path = sys.argv[1]
s = connect(path)
def batch(n):
    calls = [{"jsonrpc": "2.0", "id": i, "method": "backup.reconcile", "params": {"detach": True}} for i in range(n)]
    return post(s, json.dumps(calls).encode())
print(json.dumps(batch(11000)), flush=True)
print(json.dumps(batch(16)), flush=True)
verify = {"jsonrpc": "2.0", "id": 1, "method": "backup.reconcile", "params": {"verify": True}}
print(json.dumps(post(s, json.dumps(verify).encode())), flush=True)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_capped_and_a_reader_runs_at_most_its_share_of_operations() {
    need_root();
    let sb = open_to_nobody("");
    // Every operation is held at its start, so none ends while the batch runs.
    let daemon = ChildDaemon::start(BIN, &sb, Some("rpc::operation-started=pause"));
    let c = client(&daemon.socket).await;

    let mut py = as_nobody(
        &format!("{PY_HTTP}{PY_BATCHES}"),
        &[daemon.socket.to_str().unwrap()],
    );
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let (huge, small, verify) = (next(), next(), next());
    assert!(py.wait().unwrap().success());

    // The big batch is refused whole.
    assert!(huge.is_object(), "one error for the whole batch: {huge}");
    assert!(
        huge["error"]["data"].as_str().unwrap().contains("16"),
        "{huge}"
    );
    // Of 16, two start (daemon.max_operations_per_reader); the rest are busy.
    let answers = small.as_array().expect("a batch answer");
    let started = answers
        .iter()
        .filter(|a| a["result"]["op_id"].is_string())
        .count();
    let busy = answers
        .iter()
        .filter(|a| a["error"]["data"]["kind"] == "busy")
        .count();
    assert_eq!((started, busy), (2, 14), "{small}");
    // reconcile --verify re-hashes every archive: operators only.
    assert_eq!(verify["error"]["data"]["kind"], "forbidden", "{verify}");

    let ops = call::<OpList>(&c, &OpListParams::default()).await.unwrap();
    assert_eq!(ops.operations.len(), 2, "{:?}", ops.operations);
}

/// Open `count` connections, ask `daemon.status` on each, count the answers,
/// then hold every connection until stdin closes.
const PY_HOG: &str = r#"
import resource
path, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
body = b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"}'
conns, refused = [], 0
for _ in range(count):
    try:
        s = connect(path)
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        conns.append(s)
    except OSError:
        refused += 1
answered = 0
for s in conns:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if data.startswith(b"HTTP/1.1 200"):
        answered += 1
    else:
        refused += 1
print(json.dumps({"answered": answered, "refused": refused}), flush=True)
sys.stdin.read()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_holding_1100_connections_gets_its_share_and_an_operator_still_works() {
    need_root();
    let sb = open_to_nobody("");
    let daemon = ChildDaemon::start(BIN, &sb, None);

    let mut hog = as_nobody(
        &format!("{PY_HTTP}{PY_HOG}"),
        &[daemon.socket.to_str().unwrap(), "1100"],
    );
    let mut lines = BufReader::new(hog.stdout.take().unwrap()).lines();
    let counts: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    eprintln!("1100 connections of uid 65534: {counts}");
    // daemon.max_connections_per_uid (16); the rest were closed at once.
    assert_eq!(counts, json!({"answered": 16, "refused": 1084}));

    // While they are held, root is answered and its backup succeeds.
    let c = client(&daemon.socket).await;
    let status = call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();
    assert!(status.caller_may_mutate);
    let made = backup(&c, "alpha").await;
    assert!(Path::new(&made.archive).exists());

    drop(hog.stdin.take());
    assert!(hog.wait().unwrap().success());
}

fn curl(socket: &Path, body: &str) -> Value {
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(socket)
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            body,
            "http://localhost/",
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_params_are_refused_and_op_list_pages() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);

    let positional = curl(
        &daemon.socket,
        r#"{"jsonrpc":"2.0","id":1,"method":"backup.list","params":["alpha"]}"#,
    );
    assert_eq!(
        positional["error"]["data"]["kind"], "validation",
        "{positional}"
    );
    assert_eq!(positional["error"]["code"], -32002, "{positional}");
    let named = curl(
        &daemon.socket,
        r#"{"jsonrpc":"2.0","id":1,"method":"backup.list","params":{"instance":"alpha"}}"#,
    );
    assert!(named["result"]["backups"].is_array(), "{named}");

    let c = client(&daemon.socket).await;
    for _ in 0..5 {
        call::<BackupReconcile>(&c, &ReconcileParams::default())
            .await
            .unwrap();
    }
    let page = |limit, before: Option<String>| {
        let c = &c;
        async move {
            call::<OpList>(
                c,
                &OpListParams {
                    limit: Some(limit),
                    before,
                    ..Default::default()
                },
            )
            .await
        }
    };
    let all = page(1000, None).await.unwrap().operations;
    assert_eq!(all.len(), 5);
    let first = page(2, None).await.unwrap();
    let ids = |p: &abssd_proto::OpListResult| -> Vec<String> {
        p.operations.iter().map(|o| o.op_id.clone()).collect()
    };
    assert_eq!(ids(&first), [all[3].op_id.clone(), all[4].op_id.clone()]);
    let second = page(2, first.next_before.clone()).await.unwrap();
    assert_eq!(ids(&second), [all[1].op_id.clone(), all[2].op_id.clone()]);
    let third = page(2, second.next_before.clone()).await.unwrap();
    assert_eq!(ids(&third), [all[0].op_id.clone()]);
    assert!(third.next_before.is_none());
    let too_many = page(1001, None).await.unwrap_err();
    assert_eq!(too_many.kind, abssd_proto::ErrorKind::Validation);
    // A page holds summaries: a result (a reconcile's can be megabytes) only
    // through op.get, so that a page stays small whatever the operations returned.
    assert!(all.iter().all(|o| o.result.is_none()), "{all:?}");
    let one = call::<abssd_proto::methods::OpGet>(
        &c,
        &abssd_proto::OpIdParams {
            op_id: all[0].op_id.clone(),
        },
    )
    .await
    .unwrap();
    assert!(one.result.is_some());
    drop(c);
    daemon.stop();
}
