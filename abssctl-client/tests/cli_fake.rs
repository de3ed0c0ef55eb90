//! `abssctl` against a scripted stand-in for abssd: the client's side of the
//! contract (detach + watch, JSON shapes, exit codes, Ctrl-C) without the real
//! daemon's archive work. The stand-in answers by fixed names: instance `ghost`
//! and backup `ghost` do not exist, backup `bad` is corrupt, operations are
//! scripted event lists. End-to-end tests with the real daemon are in `cli_daemon.rs`.

use std::collections::HashMap;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::server::{RpcModule, Server, ServerHandle, stop_channel};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};
use tokio::net::UnixListener;

mod common;
use common::{assert_exit, json_doc, text};

/// What the stand-in saw, for assertions.
#[derive(Default)]
struct Seen {
    /// The last `backup.create` params.
    create: Option<Value>,
}

struct FakeDaemon {
    socket: PathBuf,
    seen: Arc<Mutex<Seen>>,
    /// An `op.watch` subscription was accepted: the client is following.
    watching: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
    _stop: ServerHandle,
    _runtime: tokio::runtime::Runtime,
}

fn wire_error(kind: &str, code: i32, message: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.to_owned(), Some(json!({ "kind": kind })))
}

fn plan() -> Value {
    json!({
        "instance": "alpha", "id": "20250102-030405-alpha-a1b2c3", "created_at": "2025-01-02T03:04:05Z",
        "archive": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
        "checksum_file": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst.sha256",
        "algorithm": "zstd", "compression_level": 3, "data_only": false,
        "sources": [{"role": "data", "path": "/srv/alpha", "member": "x/data", "present": true,
                     "bytes": 2048, "entries": 3}],
        "total_bytes": 2048, "index": "/srv/backups/backups.json", "dry_run": false
    })
}

fn create_result() -> Value {
    json!({
        "id": "20250102-030405-alpha-a1b2c3",
        "archive": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
        "checksum": "ab".repeat(32),
        "checksum_file": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst.sha256",
        "size_bytes": 1500, "algorithm": "zstd", "compression_level": 3, "message": "m",
        "labels": ["a", "b", "c"], "data_only": false, "uncompressed_bytes": 2048,
        "created_at": "2025-01-02T03:04:05Z"
    })
}

fn entry() -> Value {
    json!({
        "id": "known", "instance": "alpha", "created_at": "2025-01-02T03:04:05Z",
        "path": "/srv/backups/alpha/known.tar.zst", "algorithm": "zstd", "compression_level": 3,
        "size_bytes": 12_897_485u64, "checksum": {"algorithm": "sha256", "value": "ab12"},
        "status": "available", "message": "nightly", "created_by": {"uid": 0, "user": "root", "pid": 1},
        "metadata": {"data_only": false, "labels": ["keep"]}
    })
}

fn verify_items(status: &str) -> Value {
    json!({ "results": [{"id": "x", "status": status, "message": "checked", "previous_status": "available"}] })
}

/// Each scripted operation's events, in order.
fn scripts() -> HashMap<&'static str, Vec<Value>> {
    let ev = |seq: u64, body: Value| {
        let mut e = json!({ "seq": seq, "ts": "2025-01-02T03:04:05.000Z" });
        e.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        e
    };
    let started =
        |command: &str| json!({"event": "started", "command": command, "target": "alpha"});
    HashMap::from([
        (
            "op-create",
            vec![
                ev(0, started("backup create")),
                ev(1, json!({"event": "plan", "plan": plan()})),
                ev(
                    2,
                    json!({"event": "lock_acquired", "lock": "instance:alpha", "waited_ms": 0}),
                ),
                ev(
                    3,
                    json!({"event": "phase", "name": "archive", "total_bytes": 2048}),
                ),
                ev(
                    4,
                    json!({"event": "progress", "phase": "archive", "done": 2048, "total": 2048}),
                ),
                ev(
                    5,
                    json!({"event": "message", "level": "warning", "text": "site file absent"}),
                ),
                // abssd's shape: the blocking answer without its op_id.
                ev(
                    6,
                    json!({"event": "finished", "result": {"plan": plan(), "result": create_result()}}),
                ),
            ],
        ),
        (
            "op-verify-bad",
            vec![
                ev(0, started("backup verify")),
                ev(
                    1,
                    json!({"event": "plan", "plan": {"ids": ["x"], "total_bytes": 10}}),
                ),
                ev(
                    2,
                    json!({"event": "finished", "result": verify_items("corrupt")}),
                ),
            ],
        ),
        (
            "op-verify-ok",
            vec![
                ev(0, started("backup verify")),
                ev(
                    1,
                    json!({"event": "finished", "result": verify_items("available")}),
                ),
            ],
        ),
        (
            "op-failed",
            vec![
                ev(0, started("backup create")),
                ev(
                    1,
                    json!({"event": "failed", "error": {"kind": "service", "message": "nginx -t failed"}}),
                ),
            ],
        ),
        // The stream breaks off before the end; `op.get` knows the outcome.
        ("op-truncated", vec![ev(0, started("backup verify"))]),
        // Never ends (Ctrl-C test).
        ("op-slow", vec![ev(0, started("backup create"))]),
    ])
}

impl FakeDaemon {
    fn start() -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("abssd.sock");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let watching = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop, handle) = stop_channel();
        let module = module(seen.clone(), watching.clone());
        let listener = {
            let _guard = runtime.enter();
            UnixListener::bind(&socket).unwrap()
        };
        runtime.spawn(async move {
            let builder = Server::builder().to_service_builder();
            let methods: jsonrpsee::server::Methods = module.into();
            while let Ok((stream, _)) = listener.accept().await {
                let service = builder.clone().build(methods.clone(), stop.clone());
                tokio::spawn(Box::pin(jsonrpsee::server::serve(stream, service)));
            }
        });
        FakeDaemon {
            socket,
            seen,
            watching,
            _dir: dir,
            _stop: handle,
            _runtime: runtime,
        }
    }

    fn abssctl(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_abssctl"));
        cmd.args(args).env("ABSSCTL_SOCKET", &self.socket);
        cmd
    }
}

fn module(seen: Arc<Mutex<Seen>>, watching: Arc<AtomicBool>) -> RpcModule<()> {
    let mut m = RpcModule::new(());
    m.register_method("backup.create", move |p: Params<'_>, _, _| {
        let params: Value = p.parse()?;
        seen.lock().unwrap().create = Some(params.clone());
        if params["instance"] == "ghost" {
            return Err(wire_error(
                "not_found",
                -32001,
                "no instance ghost in the registry",
            ));
        }
        if params["dry_run"] == true {
            let mut plan = plan();
            plan["dry_run"] = json!(true);
            return Ok(json!({ "op_id": "op-dry", "plan": plan }));
        }
        if params["detach"] != true {
            return Err(wire_error(
                "validation",
                -32002,
                "the stand-in only serves detached creates",
            ));
        }
        let op = if params["instance"] == "slow" {
            "op-slow"
        } else {
            "op-create"
        };
        Ok(json!({ "op_id": op }))
    })
    .unwrap();
    m.register_method("backup.verify", |p: Params<'_>, _, _| {
        let params: Value = p.parse()?;
        match params["id"].as_str() {
            Some("ghost") => Err(wire_error("not_found", -32001, "no backup ghost")),
            Some("bad") => Ok(json!({ "op_id": "op-verify-bad" })),
            _ => Ok(json!({ "op_id": "op-verify-ok" })),
        }
    })
    .unwrap();
    m.register_method("backup.show", |p: Params<'_>, _, _| {
        let params: Value = p.parse()?;
        if params["id"] == "known" {
            Ok(json!({ "backup": entry() }))
        } else {
            Err(wire_error(
                "not_found",
                -32001,
                "no backup with id ghost in the index",
            ))
        }
    })
    .unwrap();
    m.register_method("backup.list", |_, _, _| json!({ "backups": [entry()] }))
        .unwrap();
    m.register_method("op.get", |_, _, _| {
        json!({
            "op_id": "op-truncated", "command": "backup verify", "args": {},
            "actor": {"uid": 0, "user": "root", "pid": 1}, "target": null, "state": "succeeded",
            "started_at": "2025-01-02T03:04:05Z", "finished_at": "2025-01-02T03:04:06Z",
            "lock_wait_ms": 0, "events": 2, "result": verify_items("available"), "error": null
        })
    })
    .unwrap();
    m.register_subscription(
        "op.watch",
        "op.event",
        "op.unwatch",
        move |p, pending, _, _| {
            let watching = watching.clone();
            async move {
                let params: Value = p.parse().unwrap_or(Value::Null);
                let op_id = params["op_id"].as_str().unwrap_or("").to_owned();
                let Some(events) = scripts().remove(op_id.as_str()) else {
                    pending
                        .reject(wire_error("not_found", -32001, "no such operation"))
                        .await;
                    return Ok(());
                };
                let sink = pending.accept().await?;
                watching.store(true, Ordering::SeqCst);
                for event in events {
                    sink.send(serde_json::value::to_raw_value(&event).unwrap())
                        .await?;
                }
                match op_id.as_str() {
                    "op-truncated" => Err("subscription dropped".into()),
                    "op-slow" => {
                        sink.closed().await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        },
    )
    .unwrap();
    m
}

#[test]
fn create_follows_the_operation_and_prints_plan_and_result() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup", "create", "alpha", "--label", "a,b", "--label", "c", "-m", "m", "--json",
    ]);
    assert_exit(&out, 0);
    let doc = json_doc(&out);
    assert_eq!(doc["op_id"], "op-create");
    assert_eq!(doc["plan"], plan());
    assert_eq!(doc["result"], create_result());
    // The warning event reaches stderr even with --json; stdout stays one document.
    assert!(
        text(&out.stderr).contains("abssctl: warning: site file absent"),
        "{}",
        text(&out.stderr)
    );

    let sent = d.seen.lock().unwrap().create.clone().unwrap();
    assert_eq!(sent["labels"], json!(["a", "b", "c"]));
    assert_eq!(sent["detach"], true);
    assert_eq!(sent["compression"], "auto");
}

#[test]
fn create_for_people_prints_a_summary() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup",
        "create",
        "alpha",
        "--out-dir",
        "rel/dir",
        "--compression",
        "gzip",
    ]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("Created backup 20250102-030405-alpha-a1b2c3\n"),
        "{stdout}"
    );
    assert!(stdout.contains("1.5 KiB from 2.0 KiB of files"), "{stdout}");
    let sent = d.seen.lock().unwrap().create.clone().unwrap();
    let out_dir = sent["out_dir"].as_str().unwrap();
    assert!(
        out_dir.starts_with('/') && out_dir.ends_with("/rel/dir"),
        "{out_dir}"
    );
    assert_eq!(sent["compression"], "gzip");
}

#[test]
fn dry_run_blocks_and_prints_the_plan_only() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "create", "alpha", "--dry-run", "--json"]);
    assert_exit(&out, 0);
    let doc = json_doc(&out);
    assert_eq!(doc["plan"]["dry_run"], true);
    assert_eq!(doc["result"], Value::Null);
    assert_eq!(
        d.seen.lock().unwrap().create.as_ref().unwrap()["detach"],
        false
    );

    let out = d.abssctl(&["backup", "create", "alpha", "--dry-run"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).starts_with("Dry run, nothing written"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn detach_prints_the_op_id_at_once() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "create", "alpha", "--detach", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json_doc(&out), json!({ "op_id": "op-create" }));
    let out = d.abssctl(&["backup", "verify", "--all", "--detach"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("abssctl op watch op-verify-ok"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn unknown_instance_and_backup_exit_1() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "create", "ghost", "--json"]);
    assert_exit(&out, 1);
    assert_eq!(json_doc(&out)["error"]["kind"], "not_found");

    let out = d.abssctl(&["backup", "show", "ghost"]);
    assert_exit(&out, 1);
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "abssctl: error: no backup with id ghost in the index\n"
    );
}

#[test]
fn verify_exits_3_on_corruption_and_0_when_clean() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "verify", "bad", "--json"]);
    assert_exit(&out, 3);
    let doc = json_doc(&out);
    assert_eq!(doc["results"][0]["status"], "corrupt", "{doc}");
    assert_eq!(doc["op_id"], "op-verify-bad");

    let out = d.abssctl(&["backup", "verify", "--all"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("1 checked: 1 available, 0 with problems"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn op_watch_exits_with_the_outcome() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["op", "watch", "op-failed", "--json"]);
    assert_exit(&out, 4);
    assert_eq!(
        json_doc(&out)["error"],
        json!({"kind": "service", "message": "nginx -t failed"})
    );

    let out = d.abssctl(&["op", "watch", "op-create"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).starts_with("Created backup"),
        "{}",
        text(&out.stdout)
    );

    let out = d.abssctl(&["op", "watch", "op-verify-bad"]);
    assert_exit(&out, 3);

    let out = d.abssctl(&["op", "watch", "no-such-op", "--json"]);
    assert_exit(&out, 1);
}

#[test]
fn a_broken_off_stream_falls_back_to_op_get() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["op", "watch", "op-truncated", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json_doc(&out)["results"][0]["status"], "available");
}

#[test]
fn list_and_show_render_for_people_and_json() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "list"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("ID     INSTANCE  CREATED"), "{stdout}");
    assert!(
        stdout.contains("12.3 MiB") && stdout.contains("[keep] nightly"),
        "{stdout}"
    );

    let out = d.abssctl(&["backup", "list", "--json"]);
    assert_eq!(json_doc(&out), json!({ "backups": [entry()] }));

    let out = d.abssctl(&["backup", "show", "known", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json_doc(&out), json!({ "backup": entry() }));
}

#[test]
fn ctrl_c_detaches_and_leaves_the_operation_running() {
    let d = FakeDaemon::start();
    let child = d
        .command(&["backup", "create", "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.watching.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "abssctl never started watching");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 130);
    assert!(
        text(&out.stderr).contains("detached; the operation goes on: abssctl op watch op-slow"),
        "{}",
        text(&out.stderr)
    );
    // The stand-in is still there to be re-attached to.
    assert!(StdUnixStream::connect(&d.socket).is_ok());
}
