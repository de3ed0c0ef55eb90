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
    sb.write_abssd_config(&format!(
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
    sb.write_abssd_config("daemon:\n  send_timeout: 2\n");
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

/// A UUIDv7 text for millisecond `ms` (since the epoch) and counter `n`.
fn v7(ms: u64, n: u64) -> String {
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        ms >> 16,
        ms & 0xffff,
        n & 0xfff,
        0x8000 | (n >> 12 & 0x3fff),
        n & 0xffff_ffff_ffff
    )
}

/// An operations-log line as the daemon writes it for an operator's create,
/// about 1 KiB long.
fn logged_create(op_id: &str) -> String {
    let line = json!({
        "schema_version": 1,
        "ts": "2026-01-01T00:00:01Z",
        "op_id": op_id,
        "command": "backup create",
        "args": {"instance": "alpha"},
        "actor": {"uid": 0, "user": "root", "pid": 1},
        "target": "alpha",
        "planned_actions": null,
        "result": {
            "status": "success", "message": "ok", "errors": [], "warnings": [],
            "changed": true, "backups": ["alpha-20260101T000000Z"],
            "data": {"pad": "x".repeat(800)},
        },
        "rc": 0,
        "started_at": "2026-01-01T00:00:00Z",
        "duration_ms": 1000,
        "lock_wait_ms": 0,
        "steps": [],
    });
    format!("{line}\n")
}

/// `rounds` times, `per` `op.get` calls in flight on each of `conns` WebSocket
/// connections, for random UUIDv7 ids of the past (unknown to the daemon).
/// Prints `sent` once the first calls are written, waits for a line on stdin,
/// then prints the kinds of the answers.
const PY_OP_GET_FLOOD: &str = r#"
import random, struct, threading, time, uuid
def ws_connect(path):
    s = connect(path)
    s.settimeout(300)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    h = b""
    while b"\r\n\r\n" not in h:
        h += s.recv(1)
    assert h.startswith(b"HTTP/1.1 101"), h
    return s
def frame(p):
    f = bytearray([0x81]); n = len(p)
    if n < 126: f.append(0x80 | n)
    else: f.append(0x80 | 126); f += struct.pack(">H", n)
    mask = b"\x01\x02\x03\x04"
    return bytes(f + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(p)))
def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b
def read_msg(s):
    h = recv_exact(s, 2); n = h[1] & 0x7f
    if n == 126: n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127: n = struct.unpack(">Q", recv_exact(s, 8))[0]
    return h[0] & 0x0f, recv_exact(s, n)
def v7():
    ms = int(time.time() * 1000) - random.randint(1000, 10**10)
    r = random.getrandbits(74)
    n = (ms << 80) | (7 << 76) | ((r >> 62) << 64) | (2 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=n))
def send(s, per):
    s.sendall(b"".join(frame(json.dumps({"jsonrpc": "2.0", "id": i, "method": "op.get", "params": {"op_id": v7()}}).encode()) for i in range(per)))
path, nconn, per, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
conns = [ws_connect(path) for _ in range(nconn)]
for s in conns:
    send(s, per)
print("sent", flush=True)
sys.stdin.readline()
kinds, lock = {}, threading.Lock()
def worker(s):
    for r in range(rounds):
        if r > 0:
            send(s, per)
        got = 0
        while got < per:
            op, m = read_msg(s)
            if op != 1:
                continue
            got += 1
            kind = json.loads(m).get("error", {}).get("data", {}).get("kind", "answered")
            with lock:
                kinds[kind] = kinds.get(kind, 0) + 1
ts = [threading.Thread(target=worker, args=(s,)) for s in conns]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps(kinds), flush=True)
"#;

/// A reader's `op.get` of unknown ids used to read the last 8 MiB of the
/// operations log into a fresh buffer each, 256 at once (+2 GB, root's
/// `daemon.status` waiting 30 s). Now: malformed ids are refused, and the log
/// is searched one call at a time in 256 KiB reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_flooding_op_get_with_unknown_ids_costs_little_and_root_is_answered() {
    use abssd_proto::methods::OpGet;
    use abssd_proto::{ErrorKind, OpIdParams, OpState};
    need_root();
    let sb = open_to_nobody("");
    // A log of 10 MiB (past the 8 MiB searched) of operators' creates: one
    // beyond the window, one well inside it (not in the last read).
    let log = sb.config().oplog_file();
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    let first_ms = 1_767_225_600_000; // 2026-01-01
    let mut text = String::new();
    let mut n = 0;
    let mut beyond = None;
    let mut inside = None;
    while text.len() < 10 << 20 {
        let id = v7(first_ms + n * 1000, n);
        if n == 0 {
            beyond = Some(id.clone());
        }
        if inside.is_none() && text.len() > 6 << 20 {
            inside = Some(id.clone());
        }
        text.push_str(&logged_create(&id));
        n += 1;
    }
    let (beyond, inside) = (beyond.unwrap(), inside.unwrap());
    fs::write(&log, &text).unwrap();
    let daemon = ChildDaemon::start(BIN, &sb, None);
    let pid = daemon.pid();
    let c = client(&daemon.socket).await;
    let get = |id: &str| {
        let (c, id) = (&c, id.to_owned());
        async move { call::<OpGet>(c, &OpIdParams { op_id: id }).await }
    };
    let before = rss_from_now(pid);

    let (conns, per, rounds) = (16, 16, 2);
    let mut py = as_nobody(
        &format!("{PY_HTTP}{PY_OP_GET_FLOOD}"),
        &[
            daemon.socket.to_str().unwrap(),
            &conns.to_string(),
            &per.to_string(),
            &rounds.to_string(),
        ],
    );
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "sent");
    // With 256 searches asked for, root is answered (a bound only so that a
    // daemon that never answers fails instead of hanging).
    let asked = std::time::Instant::now();
    let status = tokio::time::timeout(
        Duration::from_secs(300),
        call::<DaemonStatusMethod>(&c, &NoParams {}),
    )
    .await
    .expect("daemon.status answered while a reader floods op.get")
    .unwrap();
    assert_eq!(status.pid, pid);
    let status_took = asked.elapsed();
    {
        use std::io::Write;
        writeln!(py.stdin.as_ref().unwrap(), "go").unwrap();
    }
    let kinds: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(py.wait().unwrap().success());
    let peak = status_kb(pid, "VmHWM");
    let after = status_kb(pid, "VmRSS");
    eprintln!(
        "{} op.get of unknown ids by uid 65534 ({conns} connections x {per} in flight) over a {} byte log: RSS {before} KiB before, peak {peak} KiB (+{} KiB), {after} KiB after; {kinds}; root's daemon.status answered in {status_took:?} meanwhile (not asserted)",
        conns * per * rounds,
        text.len(),
        peak - before
    );
    assert_eq!(kinds, json!({"not_found": conns * per * rounds}));
    assert!(
        peak < before + 64 * 1024,
        "peak RSS {peak} KiB from {before} KiB"
    );

    // What is not a UUID is refused before any I/O, by op.get and op.watch.
    for bad in [
        "nope",
        "../../../etc/shadow",
        "0193a1c2-7f00-7c4e-9a51-2b6f0e8d1a1",
    ] {
        assert_eq!(
            get(bad).await.unwrap_err().kind,
            ErrorKind::Validation,
            "{bad}"
        );
        let watched = abssd_proto::methods::call::watch(&c, bad).await;
        assert_eq!(watched.unwrap_err().kind, ErrorKind::Validation, "{bad}");
    }
    // An id from the future names nothing.
    let future = v7(4_102_444_800_000, 1); // 2100-01-01
    assert_eq!(get(&future).await.unwrap_err().kind, ErrorKind::NotFound);
    // The reads back through the log still find an old operation, within the
    // window only.
    let found = get(&inside).await.unwrap();
    assert_eq!(
        (found.command.as_str(), found.state, found.target.as_deref()),
        ("backup create", OpState::Succeeded, Some("alpha"))
    );
    assert_eq!(get(&beyond).await.unwrap_err().kind, ErrorKind::NotFound);
}

/// `count` read-only reconciles, one after the other; prints how they ended.
const PY_RECONCILES: &str = r#"
path, count = sys.argv[1], int(sys.argv[2])
s = connect(path)
kinds = {}
for i in range(count):
    answer = post(s, json.dumps({"jsonrpc": "2.0", "id": i, "method": "backup.reconcile", "params": {}}).encode())
    kind = answer.get("error", {}).get("data", {}).get("kind", "answered")
    kinds[kind] = kinds.get(kind, 0) + 1
print(json.dumps(kinds), flush=True)
"#;

/// A reader's read-only reconciles used to take the operators' slots of
/// ended operations in memory (256 calls forgot every operator operation) and
/// write an operations-log line each (enough calls rotated the operators'
/// restores out of the log). Now they have a quota of their own and no lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_reconciles_neither_push_out_operators_operations_nor_fill_the_log() {
    use abssd_proto::methods::{BackupCreate, OpGet};
    use abssd_proto::{CreateParams, OpIdParams};
    need_root();
    let sb = open_to_nobody("");
    let daemon = ChildDaemon::start(BIN, &sb, None);
    let c = client(&daemon.socket).await;
    let create = call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let count = 300;
    let mut py = as_nobody(
        &format!("{PY_HTTP}{PY_RECONCILES}"),
        &[daemon.socket.to_str().unwrap(), &count.to_string()],
    );
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let kinds: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(py.wait().unwrap().success());
    assert_eq!(kinds, json!({"answered": count}));

    // The operations log has the operator's create and nothing of the reader.
    let log = sb.config().oplog_file();
    let text = fs::read_to_string(&log).unwrap();
    let logged: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 1, "{} lines", logged.len());
    assert_eq!(logged[0]["op_id"], create.op_id.as_str());

    // Without the log, the create is still answered: from memory.
    fs::rename(&log, sb.path("operations.jsonl.moved")).unwrap();
    let got = call::<OpGet>(
        &c,
        &OpIdParams {
            op_id: create.op_id.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(got.command.as_str(), "backup create");
    assert!(
        got.events > 3,
        "the full event log, not a log line: {got:?}"
    );
    let listed = call::<OpList>(
        &c,
        &OpListParams {
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .operations;
    assert!(listed.iter().any(|o| o.op_id == create.op_id));
    // The reader's newest 32 are kept.
    let readers = listed.iter().filter(|o| o.actor.uid == NOBODY).count();
    assert_eq!((listed.len(), readers), (33, 32));
}

/// Remotes: a peer that may only read lists them and sees where
/// the credentials are, never what they are; testing a remote (requests
/// made with the credentials, a probe written) and pulling a backup are
/// refused before anything is read or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_lists_remotes_without_secrets_and_may_neither_test_nor_pull() {
    need_root();
    let sb = open_to_nobody("");
    let cred = abssd_tests::remotes::credentials_file(
        &sb.path("etc/abssctl/remotes"),
        "off",
        "AKIAREADERTEST",
        "secret-a-reader-must-never-see",
    );
    let file = sb.path("etc/abssctl/abssd.yml");
    let mut yaml = fs::read_to_string(&file).unwrap();
    yaml.push_str(&format!(
        "remotes:\n  off:\n    endpoint: http://127.0.0.1:9\n    bucket: abssd-test\n    credentials_file: {}\n",
        json!(cred)
    ));
    fs::write(&file, yaml).unwrap();
    let daemon = ChildDaemon::start(BIN, &sb, None);
    let script = format!(
        "{PY_HTTP}\nfor body in [{}, {}, {}]:\n    print(json.dumps(post(connect(sys.argv[1]), body.encode())), flush=True)\n",
        json!(r#"{"jsonrpc":"2.0","id":1,"method":"remote.list"}"#),
        json!(r#"{"jsonrpc":"2.0","id":2,"method":"remote.test","params":{"name":"off"}}"#),
        json!(
            r#"{"jsonrpc":"2.0","id":3,"method":"backup.pull","params":{"id":"20260101-000000-alpha-a1b2c3"}}"#
        ),
    );
    let mut py = as_nobody(&script, &[daemon.socket.to_str().unwrap()]);
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let (list, test, pull) = (next(), next(), next());
    assert!(py.wait().unwrap().success());
    assert_eq!(list["result"]["remotes"][0]["name"], "off", "{list}");
    assert_eq!(
        list["result"]["remotes"][0]["credentials"],
        json!({"kind": "file", "path": cred.display().to_string()})
    );
    let text = list.to_string();
    assert!(
        !text.contains("secret-a-reader-must-never-see") && !text.contains("AKIAREADERTEST"),
        "{text}"
    );
    assert_eq!(test["error"]["data"]["kind"], "forbidden", "{test}");
    assert_eq!(pull["error"]["data"]["kind"], "forbidden", "{pull}");
}
