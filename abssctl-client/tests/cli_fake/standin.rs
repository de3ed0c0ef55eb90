//! A scripted stand-in for abssd, for `cli_fake.rs`. It answers by fixed
//! names: instance `ghost` and backup `ghost` do not exist, backup `bad` is
//! corrupt, restoring backup `fails-<kind>` fails with that kind after a
//! rollback, reconciling instance `drifty` finds drift it does not fix,
//! operations are scripted event lists. Like abssd, it refuses a live restore
//! without `yes` and `adopt` without `apply`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jsonrpsee::server::{RpcModule, Server, ServerHandle, stop_channel};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};
use tokio::net::UnixListener;

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

pub(crate) struct FakeDaemon {
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

pub(crate) fn plan() -> Value {
    json!({
        "instance": "alpha", "id": "20250102-030405-alpha-a1b2c3", "created_at": "2025-01-02T03:04:05Z",
        "archive": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
        "checksum_file": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst.sha256",
        "algorithm": "zstd", "compression_level": 3, "data_only": false,
        "sources": [{"role": "data", "path": "/srv/alpha", "member": "x/data", "present": true,
                     "bytes": 2048, "entries": 3}],
        "total_bytes": 2048, "index": "/srv/backups/backups.json", "dry_run": false,
        "consistency": "snapshot", "capture": "snapshot", "unit_running": true
    })
}

pub(crate) fn create_result() -> Value {
    json!({
        "id": "20250102-030405-alpha-a1b2c3",
        "archive": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
        "checksum": "ab".repeat(32),
        "checksum_file": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst.sha256",
        "size_bytes": 1500, "algorithm": "zstd", "compression_level": 3, "message": "m",
        "labels": ["a", "b", "c"], "data_only": false, "uncompressed_bytes": 2048,
        "created_at": "2025-01-02T03:04:05Z", "capture": "snapshot", "snapshots": 0
    })
}

pub(crate) fn entry() -> Value {
    json!({
        "id": "known", "instance": "alpha", "created_at": "2025-01-02T03:04:05Z",
        "path": "/srv/backups/alpha/known.tar.zst", "algorithm": "zstd", "compression_level": 3,
        "size_bytes": 12_897_485u64, "checksum": {"algorithm": "sha256", "value": "ab12"},
        "status": "available", "message": "nightly", "created_by": {"uid": 0, "user": "root", "pid": 1},
        "metadata": {"data_only": false, "labels": ["keep"]}
    })
}

pub(crate) const RESTORE_ID: &str = "20250102-030405-alpha-a1b2c3";

/// The stand-in's restore plan: live, or data only into `dest`.
pub(crate) fn restore_plan(dest: Option<&str>) -> Value {
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

pub(crate) fn restore_result() -> Value {
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
pub(crate) fn rolled_back_error(kind: &str) -> Value {
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
pub(crate) fn reconcile_drift() -> Value {
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
pub(crate) fn reconcile_applied() -> Value {
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
pub(crate) fn reconcile_in_sync() -> Value {
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
    pub(crate) fn start() -> FakeDaemon {
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

    pub(crate) fn abssctl(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_abssctl"));
        cmd.args(args).env("ABSSD_SOCKET", &self.socket);
        cmd
    }

    /// The socket the stand-in listens on.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether an `op.watch` subscription was accepted: the client is following.
    pub(crate) fn watching(&self) -> bool {
        self.watching.load(Ordering::SeqCst)
    }

    /// The last `backup.create` request, if any.
    pub(crate) fn last_create(&self) -> Option<Value> {
        self.seen.lock().unwrap().create.clone()
    }

    /// The `backup.restore` requests seen so far.
    pub(crate) fn restores(&self) -> Vec<Value> {
        self.seen.lock().unwrap().restore.clone()
    }

    /// The `backup.reconcile` requests seen so far.
    pub(crate) fn reconciles(&self) -> Vec<Value> {
        self.seen.lock().unwrap().reconcile.clone()
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
