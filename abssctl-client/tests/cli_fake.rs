//! `abssctl` against a scripted stand-in for abssd: the client's side of the
//! contract (detach + watch, JSON shapes, exit codes, Ctrl-C) without the real
//! daemon's archive work. The stand-in answers by fixed names: instance `ghost`
//! and backup `ghost` do not exist, backup `bad` is corrupt, restoring backup
//! `fails-<kind>` fails with that kind after a rollback, reconciling instance
//! `drifty` finds drift it does not fix, operations are scripted event lists. Like
//! abssd, it refuses a live restore without `yes` and `adopt` without `apply`.
//! End-to-end tests with the real daemon are in `cli_daemon.rs`.

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
    /// Every `backup.restore` params, in order.
    restore: Vec<Value>,
    /// Every `backup.reconcile` params, in order.
    reconcile: Vec<Value>,
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

const RESTORE_ID: &str = "20250102-030405-alpha-a1b2c3";

/// The stand-in's restore plan: live, or data only into `dest`.
fn restore_plan(dest: Option<&str>) -> Value {
    let live = dest.is_none();
    json!({
        "id": RESTORE_ID, "instance": "alpha", "mode": if live { "live" } else { "dest" },
        "archive": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
        "archive_bytes": 1500, "algorithm": "zstd", "uncompressed_bytes": 2048,
        "checksum": {"expected": "ab".repeat(32),
                     "sidecar": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst.sha256",
                     "sidecar_agrees": true, "status": "available",
                     "last_verified": "2025-01-03T00:00:00Z", "verified_during_extraction": true},
        "target": dest.unwrap_or("/srv/alpha"), "staging": "/srv/.alpha.restore-1",
        "data_only": !live,
        "space": {"filesystem": "/srv", "needed_bytes": 2253, "available_bytes": 1_u64 << 30},
        "unit": if live {
            json!({"name": "abssctl-alpha.service", "load_state": "loaded",
                   "active_state": "active", "unit_file_state": "enabled", "running_after": true})
        } else {
            Value::Null
        },
        "pre_backup_dir": if live { json!("/srv/backups/alpha") } else { Value::Null },
        "steps": [
            {"step": "pre_backup", "detail": "back up alpha into /srv/backups/alpha"},
            {"step": "extract", "detail": "unpack and check the archive"},
            {"step": "stop_unit", "detail": "stop abssctl-alpha.service"},
            {"step": "swap", "detail": "move /srv/alpha aside, the restored data in"},
            {"step": "start_unit", "detail": "start abssctl-alpha.service"}
        ],
        "dry_run": false
    })
}

fn restore_result() -> Value {
    json!({
        "id": RESTORE_ID, "instance": "alpha", "mode": "live", "destination": "/srv/alpha",
        "pre_restore_backup": "20250105-000000-alpha-ffffff",
        "restored_at": "2025-01-05T00:00:01Z", "checksum": "ab".repeat(32), "entries": 12,
        "content_bytes": 2048, "assets": ["/etc/systemd/system/abssctl-alpha.service"],
        "unit_running": true, "nginx_reloaded": true,
        "warnings": ["could not remove /srv/alpha.pre-restore-1: busy"]
    })
}

/// The error of a restore that failed with `kind` and was rolled back.
fn rolled_back_error(kind: &str) -> Value {
    json!({
        "kind": kind, "message": format!("{kind} trouble while swapping; rolled back"),
        "detail": {
            "rolled_back": ["data of alpha put back from /srv/alpha.pre-restore-1",
                            "abssctl-alpha.service started again"],
            "left": ["staging directory /srv/.alpha.restore-1 could not be removed"],
            "op_id": format!("op-restore-{kind}")
        }
    })
}

fn verify_items(status: &str) -> Value {
    json!({ "results": [{"id": "x", "status": status, "message": "checked", "previous_status": "available"}] })
}

/// The stand-in's reconcile plan.
fn reconcile_plan(instance: Option<&str>, apply: bool, adopt: bool, verify: bool) -> Value {
    json!({
        "backups_root": "/srv/backups", "index": "/srv/backups/backups.json",
        "instance": instance, "archives": 3, "index_entries": 3, "partial_files": 0,
        "read_bytes": if verify { 3000 } else { 0 }, "apply": apply, "adopt": adopt,
        "verify": verify
    })
}

fn reconcile_item(
    id: &str,
    status: &str,
    reason: &str,
    action: Option<&str>,
    resolved: bool,
) -> Value {
    let mut item = json!({
        "id": id, "instance": "drifty", "path": format!("/srv/backups/drifty/{id}.tar.zst"),
        "status": status, "reason": reason, "resolved": resolved
    });
    if let Some(action) = action {
        item["action"] = json!(action);
    }
    item
}

/// Instance `drifty`, read-only: one missing archive and one orphan not fixed, a
/// stray sidecar, and a key newer than this client.
fn reconcile_drift() -> Value {
    json!({
        "missing": [reconcile_item("20250101-000000-drifty-aaaaaa", "available",
                                   "archive not found", Some("mark missing"), false)],
        "orphaned": [reconcile_item("20250102-000000-drifty-bbbbbb", "unindexed",
                                    "no index entry", Some("adopt"), false)],
        "mismatched": [],
        "stray_sidecars": [reconcile_item("20240101-000000-drifty-cccccc", "sidecar-only",
                                          "no archive, no entry", None, false)],
        "known_missing": 0,
        "unresolved": 2,
        "newer_field": {"kept": true}
    })
}

/// `--apply --adopt`: both findings fixed.
fn reconcile_applied() -> Value {
    let missing = reconcile_item(
        "20250101-000000-drifty-aaaaaa",
        "available",
        "archive not found",
        Some("mark missing"),
        true,
    );
    let orphan = reconcile_item(
        "20250102-000000-drifty-bbbbbb",
        "unindexed",
        "no index entry",
        Some("adopt"),
        true,
    );
    let mut written = missing.clone();
    written["status"] = json!("missing");
    let mut adopted = orphan.clone();
    adopted["status"] = json!("available");
    json!({
        "missing": [missing], "orphaned": [orphan], "mismatched": [], "stray_sidecars": [],
        "applied": [written], "adopted": [adopted], "known_missing": 0, "unresolved": 0
    })
}

/// Nothing found; two entries were marked missing by an earlier run.
fn reconcile_in_sync() -> Value {
    json!({
        "missing": [], "orphaned": [], "mismatched": [], "stray_sidecars": [],
        "known_missing": 2, "unresolved": 0
    })
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
    let phase = |name: &str, total: Option<u64>| json!({"event": "phase", "name": name, "total_bytes": total});
    let progress =
        |phase: &str, n: u64| json!({"event": "progress", "phase": phase, "done": n, "total": n});
    let restore_start = || {
        vec![
            ev(0, started("backup restore")),
            ev(1, json!({"event": "plan", "plan": restore_plan(None)})),
            ev(2, phase("pre_backup", None)),
            ev(3, phase("archive", Some(2048))),
            ev(4, progress("archive", 2048)),
            ev(5, phase("extract", Some(1500))),
            ev(6, progress("extract", 1500)),
            ev(7, phase("stop_unit", None)),
            ev(8, phase("swap", None)),
        ]
    };
    let mut restored = restore_start();
    restored.extend([
        ev(9, phase("start_unit", None)),
        ev(
            10,
            json!({"event": "finished", "result": {"plan": restore_plan(None), "result": restore_result()}}),
        ),
    ]);
    let failed = |kind: &str| {
        let mut events = restore_start();
        events.push(ev(
            9,
            json!({"event": "failed", "error": rolled_back_error(kind)}),
        ));
        events
    };
    HashMap::from([
        ("op-restore", restored),
        ("op-restore-service", failed("service")),
        ("op-restore-environment", failed("environment")),
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
        (
            "op-reconcile-drift",
            vec![
                ev(0, started("backup reconcile")),
                ev(
                    1,
                    json!({"event": "plan", "plan": reconcile_plan(Some("drifty"), false, false, true)}),
                ),
                ev(2, phase("verify:20250102-000000-drifty-bbbbbb", Some(3000))),
                ev(3, progress("verify:20250102-000000-drifty-bbbbbb", 3000)),
                ev(
                    4,
                    json!({"event": "finished", "result": {
                        "plan": reconcile_plan(Some("drifty"), false, false, true),
                        "result": reconcile_drift()}}),
                ),
            ],
        ),
        (
            "op-reconcile-applied",
            vec![
                ev(0, started("backup reconcile")),
                ev(1, phase("adopt:20250102-000000-drifty-bbbbbb", Some(1000))),
                ev(
                    2,
                    json!({"event": "finished", "result": {
                        "plan": reconcile_plan(Some("drifty"), true, true, false),
                        "result": reconcile_applied()}}),
                ),
            ],
        ),
        (
            "op-reconcile-ok",
            vec![
                ev(0, started("backup reconcile")),
                ev(
                    1,
                    json!({"event": "finished", "result": {
                        "plan": reconcile_plan(None, false, false, false),
                        "result": reconcile_in_sync()}}),
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
    let seen_restore = seen.clone();
    let seen_reconcile = seen.clone();
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
    m.register_method("backup.restore", move |p: Params<'_>, _, _| {
        let params: Value = p.parse()?;
        seen_restore.lock().unwrap().restore.push(params.clone());
        let id = params["id"].as_str().unwrap_or("");
        if id == "ghost" {
            return Err(wire_error(
                "not_found",
                -32001,
                "no backup ghost in the index",
            ));
        }
        let dest = params["dest"].as_str();
        if params["dry_run"] == true {
            let mut plan = restore_plan(dest);
            plan["dry_run"] = json!(true);
            return Ok(json!({ "op_id": "op-restore-dry", "plan": plan }));
        }
        if dest.is_none() && params["yes"] != true {
            return Err(wire_error(
                "validation",
                -32002,
                "a live restore needs yes: true",
            ));
        }
        if params["detach"] != true {
            return Err(wire_error(
                "validation",
                -32002,
                "the stand-in only serves detached restores",
            ));
        }
        let op = match id.strip_prefix("fails-") {
            Some(kind) => format!("op-restore-{kind}"),
            None => "op-restore".to_owned(),
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
    m.register_method("backup.reconcile", move |p: Params<'_>, _, _| {
        let params: Value = p.parse()?;
        seen_reconcile
            .lock()
            .unwrap()
            .reconcile
            .push(params.clone());
        if params["adopt"] == true && params["apply"] != true {
            return Err(wire_error("validation", -32002, "adopt needs apply"));
        }
        if params["detach"] != true {
            return Err(wire_error(
                "validation",
                -32002,
                "the stand-in only serves detached reconciles",
            ));
        }
        let op = match (params["instance"].as_str(), params["apply"] == true) {
            (_, true) => "op-reconcile-applied",
            (Some("drifty"), false) => "op-reconcile-drift",
            _ => "op-reconcile-ok",
        };
        Ok(json!({ "op_id": op }))
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

impl FakeDaemon {
    /// The `backup.restore` requests seen so far.
    fn restores(&self) -> Vec<Value> {
        self.seen.lock().unwrap().restore.clone()
    }
}

#[test]
fn live_restore_without_a_terminal_or_yes_exits_2_and_changes_nothing() {
    let d = FakeDaemon::start();
    // `output()` gives the child no stdin and a pipe for stderr: no terminal.
    let out = d.abssctl(&["backup", "restore", RESTORE_ID]);
    assert_exit(&out, 2);
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.starts_with("abssctl: error: "), "{err}");
    assert!(
        err.contains("pass --yes") && err.contains("nothing changed"),
        "{err}"
    );
    assert!(err.contains("instance alpha in /srv/alpha"), "{err}");

    let out = d.abssctl(&["backup", "restore", RESTORE_ID, "--no-pre-backup", "--json"]);
    assert_exit(&out, 2);
    assert_eq!(json_doc(&out)["error"]["kind"], "validation");

    // Only the plan was asked for; the restore itself was never requested.
    let sent = d.restores();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for params in &sent {
        assert_eq!(params["dry_run"], true, "{params}");
        assert_eq!(params["yes"], false, "{params}");
    }
    assert_eq!(sent[1]["no_pre_backup"], true);
}

#[test]
fn yes_sends_the_confirmation_and_follows_the_restore() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup",
        "restore",
        RESTORE_ID,
        "--yes",
        "--instance",
        "alpha",
        "--restart",
        "--backup-message",
        "before rollback",
        "--json",
    ]);
    assert_exit(&out, 0);
    let doc = json_doc(&out);
    assert_eq!(
        doc,
        json!({ "op_id": "op-restore", "plan": restore_plan(None), "result": restore_result() })
    );

    let sent = d.restores();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["dry_run"], true);
    let real = &sent[1];
    assert_eq!(real["dry_run"], false, "{real}");
    assert_eq!(real["yes"], true, "{real}");
    assert_eq!(real["detach"], true, "{real}");
    assert_eq!(real["restart"], true, "{real}");
    assert_eq!(real["instance"], "alpha", "{real}");
    assert_eq!(real["backup_message"], "before rollback", "{real}");
    assert_eq!(real["no_pre_backup"], false, "{real}");
    assert_eq!(real["data_only"], false, "{real}");
    assert_eq!(real["dest"], Value::Null, "{real}");

    // -y and --no-restart, summary for people.
    let out = d.abssctl(&["backup", "restore", RESTORE_ID, "-y", "--no-restart"]);
    assert_exit(&out, 0);
    assert_eq!(d.restores()[3]["restart"], false);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "Restored backup {RESTORE_ID} into /srv/alpha (instance alpha)\n"
        )),
        "{stdout}"
    );
    for part in [
        "pre-restore backup:  20250105-000000-alpha-ffffff",
        "unit:                abssctl-alpha.service running",
        "nginx:               checked and reloaded",
        "Warnings:\n  - could not remove /srv/alpha.pre-restore-1: busy\n",
    ] {
        assert!(stdout.contains(part), "missing {part:?}:\n{stdout}");
    }
}

#[test]
fn restore_dry_run_prints_the_plan_and_requests_nothing_else() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "restore", RESTORE_ID, "--dry-run", "--json"]);
    assert_exit(&out, 0);
    let mut plan = restore_plan(None);
    plan["dry_run"] = json!(true);
    assert_eq!(
        json_doc(&out),
        json!({ "op_id": "op-restore-dry", "plan": plan, "result": null })
    );

    let out = d.abssctl(&["backup", "restore", RESTORE_ID, "--dry-run", "--data-only"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "Dry run, nothing changed: restore backup {RESTORE_ID} into instance alpha\n"
        )),
        "{stdout}"
    );
    for part in [
        "target:",
        "needs 2.2 KiB on /srv, 1.0 GiB free",
        "abssctl-alpha.service (active, enabled); running after the restore: yes",
        "pre-restore backup:  into /srv/backups/alpha",
        "   1. pre_backup  back up alpha into /srv/backups/alpha\n",
        "   5. start_unit  start abssctl-alpha.service\n",
    ] {
        assert!(stdout.contains(part), "missing {part:?}:\n{stdout}");
    }

    let sent = d.restores();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.iter()
            .all(|p| p["dry_run"] == true && p["yes"] == false)
    );
    assert_eq!(sent[1]["data_only"], true);
}

#[test]
fn dest_restore_needs_no_confirmation_and_sends_an_absolute_path() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup", "restore", RESTORE_ID, "--dest", "rel/out", "--json",
    ]);
    assert_exit(&out, 0);
    assert_eq!(json_doc(&out)["op_id"], "op-restore");
    let sent = d.restores();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let dest = sent[1]["dest"].as_str().unwrap();
    assert!(
        dest.starts_with('/') && dest.ends_with("/rel/out"),
        "{dest}"
    );
    assert_eq!(sent[0]["dest"], sent[1]["dest"]);
    assert_eq!(sent[1]["dry_run"], false);
}

#[test]
fn a_rolled_back_restore_says_what_was_put_back_and_exits_by_kind() {
    let d = FakeDaemon::start();
    for (kind, code) in [("service", 4), ("environment", 3)] {
        let id = format!("fails-{kind}");
        let out = d.abssctl(&["backup", "restore", &id, "--yes"]);
        assert_exit(&out, code);
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        let expected = format!(
            "abssctl: error: {kind} trouble while swapping; rolled back\n  \
             rolled back:\n    \
             - data of alpha put back from /srv/alpha.pre-restore-1\n    \
             - abssctl-alpha.service started again\n  \
             NOT rolled back, needs an operator:\n    \
             - staging directory /srv/.alpha.restore-1 could not be removed\n  \
             operation op-restore-{kind}; its events: abssctl op watch op-restore-{kind}\n"
        );
        assert!(err.ends_with(&expected), "{err}");

        let out = d.abssctl(&["backup", "restore", &id, "--yes", "--json"]);
        assert_exit(&out, code);
        assert_eq!(json_doc(&out), json!({ "error": rolled_back_error(kind) }));
    }
}

#[test]
fn restore_of_an_unknown_backup_exits_1_before_asking() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "restore", "ghost"]);
    assert_exit(&out, 1);
    assert_eq!(
        text(&out.stderr),
        "abssctl: error: no backup ghost in the index\n"
    );
    assert_eq!(d.restores().len(), 1);
}

#[test]
fn restore_detach_and_op_watch() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "restore", RESTORE_ID, "-y", "--detach", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json_doc(&out), json!({ "op_id": "op-restore" }));
    assert_eq!(d.restores()[1]["yes"], true);

    let out = d.abssctl(&["op", "watch", "op-restore"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).starts_with(&format!("Restored backup {RESTORE_ID} into /srv/alpha")),
        "{}",
        text(&out.stdout)
    );
    let out = d.abssctl(&["op", "watch", "op-restore-service", "--json"]);
    assert_exit(&out, 4);
    assert_eq!(
        json_doc(&out)["error"]["detail"]["left"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

impl FakeDaemon {
    /// The `backup.reconcile` requests seen so far.
    fn reconciles(&self) -> Vec<Value> {
        self.seen.lock().unwrap().reconcile.clone()
    }
}

/// `doc` is `result` with `op_id` added, and nothing else.
#[track_caller]
fn assert_result_with_op_id(doc: &Value, op_id: &str, result: Value) {
    let mut expected = result;
    expected["op_id"] = json!(op_id);
    assert_eq!(doc, &expected);
}

#[test]
fn reconcile_json_is_one_document_and_exits_3_on_unfixed_drift() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup",
        "reconcile",
        "--instance",
        "drifty",
        "--verify",
        "--json",
    ]);
    assert_exit(&out, 3);
    let doc = json_doc(&out);
    // Every key of the result, the one this client does not know included.
    assert_result_with_op_id(&doc, "op-reconcile-drift", reconcile_drift());
    assert_eq!(doc.as_object().unwrap().keys().next().unwrap(), "op_id");
    assert!(
        doc.get("applied").is_none() && doc.get("plan").is_none(),
        "{doc}"
    );

    let sent = d.reconciles();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0],
        json!({"instance": "drifty", "apply": false, "adopt": false, "verify": true, "detach": true})
    );
}

#[test]
fn reconcile_in_sync_exits_0() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "reconcile", "--json"]);
    assert_exit(&out, 0);
    assert_result_with_op_id(&json_doc(&out), "op-reconcile-ok", reconcile_in_sync());
    assert_eq!(
        d.reconciles()[0],
        json!({"instance": null, "apply": false, "adopt": false, "verify": false, "detach": true})
    );

    let out = d.abssctl(&["backup", "reconcile"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.ends_with(
            "missing (0)\norphaned (0)\nmismatched (0)\n\
             in sync: the index and the archives agree; 2 entries already marked missing\n"
        ),
        "{stdout}"
    );
}

#[test]
fn reconcile_text_groups_findings_with_counts() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "reconcile", "--instance", "drifty"]);
    assert_exit(&out, 3);
    let stdout = text(&out.stdout);
    for part in [
        "index:     /srv/backups/backups.json (3 entries)\n",
        "instance:  drifty only\n",
        "missing (1)\n  ID  ",
        "20250101-000000-drifty-aaaaaa  drifty    available  archive not found  mark missing\n",
        "orphaned (1)\n  PATH  ",
        "/srv/backups/drifty/20250102-000000-drifty-bbbbbb.tar.zst  drifty    no index entry  adopt\n",
        "mismatched (0)\n",
        "stray sidecars (1): not drift",
        "2 findings not fixed\n  \
         --apply fixes the index entry of 1 missing\n  \
         --apply --adopt gives 1 orphaned archive an index entry\n",
    ] {
        assert!(stdout.contains(part), "missing {part:?}:\n{stdout}");
    }
    // The progress of the verify phase never reaches stdout.
    assert!(!stdout.contains("verify:"), "{stdout}");
}

#[test]
fn reconcile_apply_adopt_sends_the_flags_and_lists_what_was_written() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup",
        "reconcile",
        "--instance",
        "drifty",
        "--apply",
        "--adopt",
        "--json",
    ]);
    assert_exit(&out, 0);
    let doc = json_doc(&out);
    assert_result_with_op_id(&doc, "op-reconcile-applied", reconcile_applied());
    assert_eq!(doc["applied"][0]["status"], "missing");
    assert_eq!(doc["adopted"][0]["status"], "available");
    assert_eq!(
        d.reconciles()[0],
        json!({"instance": "drifty", "apply": true, "adopt": true, "verify": false, "detach": true})
    );

    let out = d.abssctl(&["backup", "reconcile", "--apply", "--instance", "drifty"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    for part in [
        "mark missing ✓\n",
        "adopt ✓\n",
        "applied (1)\n",
        "adopted (1)\n",
        "in sync now: 2 findings fixed\n",
    ] {
        assert!(stdout.contains(part), "missing {part:?}:\n{stdout}");
    }
    assert_eq!(d.reconciles()[1]["adopt"], false);
}

#[test]
fn reconcile_adopt_without_apply_is_a_usage_error_and_sends_nothing() {
    let d = FakeDaemon::start();
    for args in [
        &["backup", "reconcile", "--adopt"][..],
        &["backup", "reconcile", "--adopt", "--verify", "--json"],
    ] {
        let out = d.abssctl(args);
        assert_exit(&out, 2);
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains("--apply"),
            "{err}"
        );
    }
    assert!(d.reconciles().is_empty(), "{:?}", d.reconciles());
}

#[test]
fn reconcile_detach_and_op_watch() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup",
        "reconcile",
        "--instance",
        "drifty",
        "--detach",
        "--json",
    ]);
    assert_exit(&out, 0);
    assert_eq!(json_doc(&out), json!({ "op_id": "op-reconcile-drift" }));
    assert_eq!(d.reconciles()[0]["detach"], true);

    let out = d.abssctl(&["op", "watch", "op-reconcile-drift", "--json"]);
    assert_exit(&out, 3);
    assert_result_with_op_id(&json_doc(&out), "op-reconcile-drift", reconcile_drift());

    let out = d.abssctl(&["op", "watch", "op-reconcile-ok"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("in sync: the index and the archives agree"),
        "{}",
        text(&out.stdout)
    );
}
