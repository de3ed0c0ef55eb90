//! Issue 12, capture mode `stop`: `backup create --consistency stop` stops the
//! instance's unit, walks and archives the instance while nothing writes to
//! it, and starts the unit again, all under the instance lock, journaled so
//! that a crash restarts the unit (the crash side is in tests/tests/crash.rs).
//!
//! systemd is the fake on a private bus: it records the verbs it is sent, and
//! runs a test's hook when a job finishes, before abssd hears of it. The
//! order of stop, archive pass and start is observed at those hooks and at
//! the daemon's `create::after-walk` hook, never by timing. Every test holds
//! [`serial`]: hooks are process-wide, so the tests run one at a time.

use std::fs;
use std::io::Write;
use std::sync::{Arc, Mutex};

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupVerify};
use abssd_proto::*;
use abssd_tests::inspect::{events_of, phase};
use abssd_tests::world::{World, live, restore};
use abssd_tests::{Daemon, Sandbox, Verb, client, serial, show, tar, tar_member};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

const UNIT: &str = "abssctl-alpha.service";

fn stop_mode() -> CreateParams {
    CreateParams {
        instance: "alpha".into(),
        compression: Compression::None,
        consistency: Some(Consistency::Stop),
        ..Default::default()
    }
}

async fn create(
    c: &Client,
    params: &CreateParams,
) -> Result<OpOutcome<CreatePlan, CreateResult>, WireError> {
    call::<BackupCreate>(c, params).await
}

/// The jobs of one stop-mode create: the unit stopped, then started again.
fn stop_then_start() -> [String; 2] {
    [format!("StopUnit {UNIT}"), format!("StartUnit {UNIT}")]
}

/// The operations-log line of `op_id`.
fn oplog_line(w: &World, op_id: &str) -> Value {
    fs::read_to_string(w.cfg().oplog_file())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["op_id"] == op_id)
        .unwrap_or_else(|| panic!("no operations-log line for {op_id}"))
}

/// Names pushed by the hooks, in the order they ran.
#[derive(Clone, Default)]
struct Order(Arc<Mutex<Vec<&'static str>>>);

impl Order {
    fn push(&self, what: &'static str) {
        self.0.lock().unwrap().push(what);
    }
    fn get(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

/// The unit is stopped, then the instance is walked and archived, then the
/// unit is started; the walk sees what the service wrote as it stopped (a
/// database that grew, a new file) whole; the downtime covers the archive
/// pass and is reported in the result, an event and the operations log;
/// the entry records `stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_mode_stops_the_unit_around_the_walk_and_the_archive_pass() {
    let _s = serial();
    let w = World::new(&["alpha"]);
    let data = w.data("alpha");
    let order = Order::default();
    // What a service does on its way down: finish a write, leave a file.
    let (o, d) = (order.clone(), data.clone());
    w.fake.on_job(UNIT, Verb::Stop, move || {
        o.push("stopped");
        let mut db = fs::OpenOptions::new()
            .append(true)
            .open(d.join("server-files/account.sqlite"))
            .unwrap();
        db.write_all(&[9u8; 8192]).unwrap();
        fs::write(d.join("server-files/written-at-shutdown"), b"last words\n").unwrap();
    });
    let o = order.clone();
    w.fake.on_job(UNIT, Verb::Start, move || o.push("started"));
    let o = order.clone();
    fail::cfg_callback("create::after-walk", move || {
        o.push("archive");
    })
    .unwrap();

    let c = w.client().await;
    let out = create(&c, &stop_mode()).await.expect("create");
    let (plan, r) = (out.plan.unwrap(), out.result.unwrap());

    assert_eq!(order.get(), ["stopped", "archive", "started"]);
    assert_eq!(w.jobs(), stop_then_start());
    assert!(w.unit_active("alpha"));
    assert_eq!(
        (plan.consistency, plan.capture, plan.unit_running),
        (Consistency::Stop, Capture::Stop, Some(true))
    );
    assert_eq!(r.capture, Capture::Stop);
    // The figure itself is a clock reading: the test checks that it is
    // reported, and the same everywhere (event, result, operations log).
    let downtime = r.downtime_ms.expect("downtime reported");

    // Walked after the stop: what the service wrote on its way down is whole.
    let db = tar_member(
        &r.archive,
        &format!("{}/data/server-files/account.sqlite", r.id),
    );
    assert_eq!(
        db,
        fs::read(data.join("server-files/account.sqlite")).unwrap()
    );
    assert_eq!(db.len(), 40_000 + 8192);
    assert!(
        tar(&["-tf", &r.archive]).contains("server-files/written-at-shutdown"),
        "the file written at shutdown is not in the archive"
    );

    let e = show(&c, &r.id).await;
    assert_eq!(e.metadata.consistency.as_deref(), Some("stop"));
    let events = events_of(&c, &out.op_id).await;
    assert!(phase(&events, "stop_unit").is_some() && phase(&events, "start_unit").is_some());
    let said = format!("started {UNIT} again; it was stopped for {downtime} ms");
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, EventKind::Message { level, text } if *level == Level::Info && *text == said)
        ),
        "no event saying {said:?}"
    );
    let line = oplog_line(&w, &out.op_id);
    assert_eq!(line["result"]["status"], "success");
    assert_eq!(
        line["result"]["data"]["result"]["downtime_ms"],
        json!(downtime)
    );
    w.assert_no_leftovers();
}

/// A unit that is not running is read as it is: `offline`, no verb sent,
/// no downtime. A dry run in stop mode says the unit would be stopped and
/// sends nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_is_not_running_is_read_offline_and_left_alone() {
    let _s = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;

    let dry = create(
        &c,
        &CreateParams {
            dry_run: true,
            ..stop_mode()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.plan.unwrap().capture, Capture::Stop);
    assert!(dry.result.is_none());
    assert!(w.jobs().is_empty(), "{:?}", w.jobs());

    w.fake.set_unit(UNIT, false, true);
    let out = create(&c, &stop_mode()).await.unwrap();
    let (plan, r) = (out.plan.unwrap(), out.result.unwrap());
    assert_eq!(
        (plan.capture, plan.unit_running),
        (Capture::Offline, Some(false))
    );
    assert_eq!((r.capture, r.downtime_ms), (Capture::Offline, None));
    assert_eq!(
        show(&c, &r.id).await.metadata.consistency.as_deref(),
        Some("offline")
    );
    assert!(w.jobs().is_empty(), "{:?}", w.jobs());
    assert!(!w.unit_active("alpha"));
    w.assert_no_leftovers();
}

/// Without systemd, stop mode cannot keep its promise: refused as an
/// environment problem, and nothing is written (no archive, no index, no
/// journal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_mode_without_systemd_is_refused_and_writes_nothing() {
    let _s = serial();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_abssd_config(&format!(
        "systemd:\n  bus_address: {}\n",
        json!(format!("unix:path={}", sb.path("no-bus").display()))
    ));
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let err = create(&c, &stop_mode()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{}", err.message);
    assert!(
        err.message.contains("--consistency stop") && err.message.contains("snapshot"),
        "{}",
        err.message
    );
    let cfg = sb.config();
    assert!(!cfg.backups_root.join("alpha").exists());
    assert!(!cfg.index_file.exists());
    let journal = cfg.state_dir.join("journal");
    assert!(
        !journal.exists() || fs::read_dir(&journal).unwrap().next().is_none(),
        "a journal was written"
    );
}

/// The archive is written but the unit does not start again: the backup is
/// kept (indexed, verifiable, `stop` recorded), and the create fails as a
/// service error that names the backup and the unit, so that whatever runs
/// the backup (a timer, cron, a person) notices the instance is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_does_not_start_again_fails_the_create_but_keeps_the_backup() {
    let _s = serial();
    let w = World::new(&["alpha"]);
    w.fake.fail(UNIT, Verb::Start, Some("failed"));
    let c = w.client().await;
    let err = create(&c, &stop_mode()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{}", err.message);
    let detail = err.detail.clone().unwrap();
    let id = detail["backup_id"].as_str().expect("backup_id").to_owned();
    assert_eq!(detail["unit"], UNIT);
    assert_eq!(detail["unit_running"], false);
    for part in [
        format!("backup {id} was written and indexed"),
        format!("{UNIT}, stopped for it, did not start again"),
        "job result 'failed'".to_owned(),
        format!("systemctl start {UNIT}"),
    ] {
        assert!(
            err.message.contains(&part),
            "{part:?} not in {}",
            err.message
        );
    }
    assert_eq!(w.jobs(), stop_then_start());
    assert!(!w.unit_active("alpha"));

    let e = show(&c, &id).await;
    assert_eq!(e.metadata.consistency.as_deref(), Some("stop"));
    assert_eq!(e.status, "available");
    let verified = call::<BackupVerify>(
        &c,
        &VerifyParams {
            id: Some(id.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(verified.result.unwrap().results[0].status, "available");

    let line = oplog_line(&w, detail["op_id"].as_str().unwrap());
    assert_eq!(line["result"]["status"], "error");
    assert_eq!(line["rc"], 4);
    assert_eq!(line["result"]["backups"], json!([id]));
    assert_eq!(
        line["result"]["errors"][0]["detail"]["backup_id"],
        json!(id)
    );
    w.assert_no_leftovers();
}

/// The archive pass fails (its directory turned into a file while the unit
/// is down): the unit is started again before the error returns, the error
/// says so, and nothing is left. When the start fails too, the error says
/// that as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_archive_pass_starts_the_unit_again() {
    let _s = serial();
    let w = World::new(&["alpha"]);
    let out_dir = w.cfg().instance_backup_dir("alpha");
    let d = out_dir.clone();
    fail::cfg_callback("create::after-walk", move || {
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.parent().unwrap()).unwrap();
        fs::write(&d, b"not a directory").unwrap();
    })
    .unwrap();
    let c = w.client().await;
    let index = fs::read(w.cfg().index_file).ok();

    let err = create(&c, &stop_mode()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{}", err.message);
    assert!(
        err.message
            .contains(&format!("rolled back: started {UNIT} again")),
        "{}",
        err.message
    );
    assert_eq!(w.jobs(), stop_then_start());
    assert!(w.unit_active("alpha"));
    assert_eq!(fs::read(w.cfg().index_file).ok(), index);
    assert_eq!(fs::read(&out_dir).unwrap(), b"not a directory");
    w.assert_no_leftovers();

    // Both fail: the archive error, and the unit left down, in one message.
    w.fake.clear_calls();
    w.fake.fail(UNIT, Verb::Start, Some("failed"));
    fs::remove_file(&out_dir).unwrap();
    let err = create(&c, &stop_mode()).await.unwrap_err();
    assert!(
        err.message.contains("ROLLBACK INCOMPLETE")
            && err.message.contains(&format!(
                "{UNIT} was stopped for the backup and could not be started again"
            )),
        "{}",
        err.message
    );
    assert_eq!(
        err.detail.unwrap()["left"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(!w.unit_active("alpha"));
    assert_eq!(fs::read(w.cfg().index_file).ok(), index);
    w.assert_no_leftovers();
}

/// A stop job that fails: nothing is archived, the unit is started again
/// (a stop that failed half way can leave it down), the error is systemd's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_fails_archives_nothing_and_starts_the_unit() {
    let _s = serial();
    let w = World::new(&["alpha"]);
    w.fake.fail(UNIT, Verb::Stop, Some("failed"));
    let c = w.client().await;
    let err = create(&c, &stop_mode()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{}", err.message);
    assert!(
        err.message
            .contains(&format!("systemd could not stop {UNIT}")),
        "{}",
        err.message
    );
    assert_eq!(w.jobs(), stop_then_start());
    assert!(w.unit_active("alpha"));
    assert!(!w.cfg().instance_backup_dir("alpha").exists());
    w.assert_no_leftovers();
}

/// The pre-restore backup uses the configured mode: with `stop` it stops
/// and starts the unit under its own journal, and the restore, which read
/// the unit as running, then stops and starts it itself: the unit runs at
/// every hand-over, so the restore finds what it expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_restore_backup_in_stop_mode_hands_a_running_unit_to_the_restore() {
    let _s = serial();
    let w = World::with_config(&["alpha"], |_| "daemon:\n  consistency: stop\n".into());
    let c = w.client().await;
    let made = abssd_tests::backup(&c, "alpha").await;
    assert_eq!(made.capture, Capture::Stop);
    w.fake.clear_calls();
    fs::write(w.data("alpha").join("stray"), b"after the backup\n").unwrap();

    let out = restore(&c, &live(&made.id)).await.expect("restore");
    let r = out.result.unwrap();
    let pre = r.pre_restore_backup.expect("a pre-restore backup");
    assert_eq!(
        show(&c, &pre).await.metadata.consistency.as_deref(),
        Some("stop")
    );
    assert_eq!(
        w.jobs(),
        [
            format!("StopUnit {UNIT}"),
            format!("StartUnit {UNIT}"),
            format!("StopUnit {UNIT}"),
            "Reload".to_owned(),
            format!("StartUnit {UNIT}"),
        ]
    );
    assert!(w.unit_active("alpha"));
    assert!(!w.data("alpha").join("stray").exists());
    assert_eq!(r.unit_running, Some(true));
    w.assert_no_leftovers();
}
