//! `daemon.health` end to end: the real daemon with a fake systemd that
//! serves the backup timers, real archives, and each problem planted on disk
//! (an old date, a corrupt status, leftovers, a deleted archive, a failed job
//! record, a reserve larger than the disk) flagged by its own probe.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupVerify, DaemonHealth};
use abssd_proto::*;
use abssd_tests::world::World;
use abssd_tests::{Daemon, FakeSystemd, Sandbox, backup};
use serde_json::{Value, json};

/// Next run of the timers the tests enable: 2030-01-01T00:00:00Z, in µs.
const NEXT_USEC: u64 = 1_893_456_000_000_000;

/// A host where `alpha` is healthy: a verified backup, a successful job, its
/// timer enabled and scheduled. `extra`: more of abssd's own keys.
async fn healthy(extra: &'static str) -> (World, CreateResult) {
    let w = World::with_config(&["alpha"], move |_| extra.to_owned());
    let timer = "abssctl-backup@alpha.timer";
    w.fake.set_unit(timer, true, true);
    w.fake.set_timer(timer, NEXT_USEC, 0);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let params = VerifyParams {
        id: Some(made.id.clone()),
        ..VerifyParams::default()
    };
    call::<BackupVerify>(&c, &params).await.expect("verify");
    write_job(&w, &job_record(&made.id, true));
    (w, made)
}

fn job_record(backup_id: &str, ok: bool) -> Value {
    json!({
        "instance": "alpha",
        "op_id": "20260101T000000Z-0001",
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z",
        "ok": ok,
        "backup_id": backup_id,
        "steps": [
            {"step": "create", "status": "ok", "message": "made"},
            {"step": "prune", "status": if ok { "ok" } else { "failed" }, "message": "prune broke"},
        ],
    })
}

fn jobs_file(w: &World) -> PathBuf {
    w.sb.full_config().layout.state_dir.join("jobs/alpha.json")
}

fn write_job(w: &World, record: &Value) {
    let file = jobs_file(w);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(file, serde_json::to_vec(record).unwrap()).unwrap();
}

async fn health(w: &World) -> HealthReport {
    let c = w.client().await;
    call::<DaemonHealth>(&c, &HealthParams::default())
        .await
        .expect("daemon.health")
}

#[track_caller]
fn probe<'a>(report: &'a HealthReport, id: &str) -> &'a ProbeResult {
    report
        .results
        .iter()
        .find(|r| r.id == id && r.instance.as_deref() == Some("alpha"))
        .unwrap_or_else(|| panic!("no {id} result: {:#?}", report.results))
}

/// Rewrite `key` of the index entry `id`.
fn set_entry(w: &World, id: &str, key: &str, value: Value) {
    let file = w.cfg().index_file;
    let mut index: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    for e in index["backups"].as_array_mut().unwrap() {
        if e["id"] == id {
            e[key] = value.clone();
        }
    }
    fs::write(file, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_host_is_all_green_and_exits_0() {
    let (w, made) = healthy("").await;
    let report = health(&w).await;
    let not_green: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.status != ProbeStatus::Green)
        .collect();
    assert!(not_green.is_empty(), "{not_green:#?}");
    assert_eq!(report.summary.exit_code, 0);
    assert_eq!(report.summary.totals.green, 7, "{:#?}", report.results);
    let ids: Vec<&str> = report.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "backups.age",
            "backups.verify",
            "job.last",
            "timer",
            "leftovers",
            "drift",
            "disk.free"
        ]
    );
    let timer = probe(&report, "timer");
    assert!(
        timer.message.contains("2030-01-01T00:00:00Z"),
        "{}",
        timer.message
    );
    let facts = &report.instances[0];
    assert_eq!(facts.instance, "alpha");
    assert_eq!((facts.backups, facts.bytes), (1, made.size_bytes));
    assert_eq!(facts.last_job_ok, Some(true));
    assert_eq!(facts.next_run_at.as_deref(), Some("2030-01-01T00:00:00Z"));
    assert!(facts.last_verified_at.is_some(), "{facts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_backup_is_red_and_exits_3() {
    let (w, made) = healthy("").await;
    set_entry(&w, &made.id, "created_at", json!("2020-01-01T00:00:00Z"));
    let report = health(&w).await;
    let age = probe(&report, "backups.age");
    assert_eq!(
        (age.status, age.impact),
        (ProbeStatus::Red, Impact::Environment)
    );
    assert!(age.message.starts_with("stale"), "{}", age.message);
    assert_eq!(report.summary.exit_code, 3);
    assert_eq!(age.data.as_ref().unwrap()["max_age_seconds"], 36 * 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_comes_from_abssd_yml() {
    // The backup was made in 2026 or later; a max age of over 27 years keeps a
    // backup dated 2020 fresh.
    let (w, made) = healthy("backups:\n  max_age: 10000d\n").await;
    set_entry(&w, &made.id, "created_at", json!("2020-01-01T00:00:00Z"));
    let report = health(&w).await;
    assert_eq!(probe(&report, "backups.age").status, ProbeStatus::Green);
    assert_eq!(report.metadata.max_age_seconds, 10000 * 86400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verification_is_red() {
    let (w, made) = healthy("").await;
    set_entry(&w, &made.id, "status", json!("corrupt"));
    let report = health(&w).await;
    let v = probe(&report, "backups.verify");
    assert_eq!((v.status, v.impact_code), (ProbeStatus::Red, 3));
    assert!(v.message.contains(&made.id), "{}", v.message);
    assert_eq!(report.summary.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_earlier_restores_are_flagged() {
    let (w, _) = healthy("").await;
    let registry = abssd::registry::Registry::load(&w.cfg().registry_file()).unwrap();
    let root = registry
        .get("alpha")
        .unwrap()
        .data_root(&w.sb.full_config());
    let aside = abssd::fsutil::suffixed(&root, ".pre-restore-20260101T000000Z");
    fs::create_dir_all(&aside).unwrap();
    let unit = w
        .cfg()
        .unit_dir
        .join("abssctl-alpha.service.bak-20260101T000000Z");
    fs::write(&unit, "[Unit]\n").unwrap();

    let report = health(&w).await;
    let l = probe(&report, "leftovers");
    assert_eq!(l.status, ProbeStatus::Yellow, "{l:#?}");
    let data = l.data.as_ref().unwrap();
    assert_eq!(data["count"], 2, "{data}");
    let listed = data["items"].to_string();
    assert!(listed.contains(".pre-restore-20260101T000000Z"), "{listed}");
    assert!(listed.contains(".bak-20260101T000000Z"), "{listed}");
    // Yellow: printed, the exit code unchanged.
    assert_eq!(report.summary.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_deleted_behind_the_index_is_drift() {
    let (w, made) = healthy("").await;
    fs::remove_file(&made.archive).unwrap();
    let report = health(&w).await;
    let d = probe(&report, "drift");
    assert_eq!(
        (d.status, d.impact),
        (ProbeStatus::Red, Impact::Environment)
    );
    assert_eq!(d.data.as_ref().unwrap()["missing"]["count"], 1);
    assert_eq!(report.summary.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_is_red() {
    // A reserve no disk has: the next backup cannot fit beside it.
    let (w, _) = healthy("health:\n  min_free_bytes: 18446744073709551615\n").await;
    let report = health(&w).await;
    let d = probe(&report, "disk.free");
    assert_eq!((d.status, d.impact_code), (ProbeStatus::Red, 3), "{d:#?}");
    assert!(d.message.starts_with("disk low"), "{}", d.message);
    assert_eq!(report.summary.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_garbled_last_job_is_red() {
    let (w, made) = healthy("").await;
    write_job(&w, &job_record(&made.id, false));
    let report = health(&w).await;
    let j = probe(&report, "job.last");
    assert_eq!((j.status, j.impact_code), (ProbeStatus::Red, 3));
    assert!(j.message.contains("prune: prune broke"), "{}", j.message);
    assert_eq!(report.instances[0].last_job_ok, Some(false));

    fs::write(jobs_file(&w), b"{\"instance\": \"alpha\", \"ok\": tr").unwrap();
    let report = health(&w).await;
    let j = probe(&report, "job.last");
    assert_eq!(j.status, ProbeStatus::Red);
    assert!(j.message.contains("unreadable"), "{}", j.message);

    fs::remove_file(jobs_file(&w)).unwrap();
    let report = health(&w).await;
    assert_eq!(probe(&report, "job.last").status, ProbeStatus::Yellow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_timer_is_yellow_and_no_systemd_is_a_finding_not_a_failure() {
    let (w, _) = healthy("").await;
    w.fake.set_unit("abssctl-backup@alpha.timer", false, false);
    let report = health(&w).await;
    assert_eq!(probe(&report, "timer").status, ProbeStatus::Yellow);
    assert_eq!(report.summary.exit_code, 0);

    // The other timer counts too.
    w.fake.set_unit("abssctl-backup-all.timer", true, true);
    w.fake.set_timer("abssctl-backup-all.timer", NEXT_USEC, 0);
    let report = health(&w).await;
    let t = probe(&report, "timer");
    assert_eq!(t.status, ProbeStatus::Green, "{t:#?}");
    assert!(
        t.message.contains("abssctl-backup-all.timer"),
        "{}",
        t.message
    );

    // systemd gone: the report still comes, the timer probe says why.
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_abssd_config(&format!(
        "systemd:\n  bus_address: {}\n",
        json!(format!("unix:path={}", sb.path("no-bus").display()))
    ));
    let daemon = Daemon::start(&sb);
    let c = abssd_tests::client(&daemon.socket).await;
    let report = call::<DaemonHealth>(&c, &HealthParams::default())
        .await
        .unwrap();
    let t = probe(&report, "timer");
    assert_eq!((t.status, t.impact_code), (ProbeStatus::Red, 4), "{t:#?}");
    assert!(t.message.contains("cannot reach systemd"), "{}", t.message);
    assert_eq!(probe(&report, "backups.age").status, ProbeStatus::Red);
    assert_eq!(report.summary.exit_code, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_instance_is_not_found_and_one_instance_can_be_asked() {
    let (w, _) = healthy("").await;
    let c = w.client().await;
    let one = HealthParams {
        instance: Some("alpha".into()),
    };
    let report = call::<DaemonHealth>(&c, &one).await.unwrap();
    assert_eq!(report.results.len(), 7);
    let nope = HealthParams {
        instance: Some("nope".into()),
    };
    let e = call::<DaemonHealth>(&c, &nope).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    let bad = HealthParams {
        instance: Some("../x".into()),
    };
    let e = call::<DaemonHealth>(&c, &bad).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_textfile_is_written_for_node_exporter() {
    let (w, made) = healthy("").await;
    let dir = w.sb.path("textfile");
    let mut w = w;
    w.restart_with(&format!("health:\n  textfile_dir: {}\n", json!(dir)));
    let report = health(&w).await;
    let file = dir.join("abssctl.prom");
    assert_eq!(
        report.metadata.textfile.as_deref(),
        Some(file.to_str().unwrap())
    );
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("abssctl_backups{instance=\"alpha\"} 1\n"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "abssctl_backups_bytes{{instance=\"alpha\"}} {}\n",
        made.size_bytes
    )));
    assert!(text.contains("abssctl_last_job_success{instance=\"alpha\"} 1\n"));
    assert!(text.contains("abssctl_health_exit_code 0\n"));
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    // Only the file: no temporary left beside it.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}

/// `daemon.health` over HTTP from a second uid that may only read.
const PY_HEALTH: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(120)
s.connect(sys.argv[1])
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "daemon.health", "params": {}}).encode()
s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    head, sep, rest = data.partition(b"\r\n\r\n")
    if sep:
        length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
        if len(rest) >= length:
            print(rest[:length].decode())
            break
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_may_only_read_may_ask() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test asks as uid 65534 and needs root (CI runs as root)"
    );
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let fake = FakeSystemd::start(None);
    sb.write_abssd_config(&format!(
        "systemd:\n  bus_address: {}\ndaemon:\n  socket_group: nogroup\n  operator_group: abssctl-test-nonexistent\n",
        json!(fake.address())
    ));
    for dir in ["", "run", "run/abssctl"] {
        let dir = sb.path(dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let daemon = Daemon::start(&sb);
    let socket = daemon.socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(PY_HEALTH)
            .arg(&socket)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report: HealthReport = serde_json::from_value(answer["result"].clone())
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(report.instances[0].instance, "alpha");
    let age = report
        .results
        .iter()
        .find(|r| r.id == "backups.age")
        .unwrap();
    assert_eq!(age.status, ProbeStatus::Red, "no backup yet: {age:?}");
    assert_eq!(report.summary.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_too_many_entries_is_looked_at_only_so_far() {
    let (w, _) = healthy("").await;
    let registry = abssd::registry::Registry::load(&w.cfg().registry_file()).unwrap();
    let root = registry
        .get("alpha")
        .unwrap()
        .data_root(&w.sb.full_config());
    // The data root's parent, where leftovers are looked for, filled by
    // someone with more names than one report reads.
    let parent = root.parent().unwrap();
    let max = abssd::ops::restore::guards::MAX_SCANNED;
    for i in 0..=max {
        fs::File::create(parent.join(format!("junk-{i}"))).unwrap();
    }
    let report = health(&w).await;
    let l = probe(&report, "leftovers");
    assert_eq!(l.status, ProbeStatus::Yellow, "{l:#?}");
    assert!(l.message.contains("too many entries"), "{}", l.message);
    assert_eq!(report.summary.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_instances_says_so() {
    let sb = Sandbox::new();
    let fake = FakeSystemd::start(None);
    sb.write_abssd_config(&format!(
        "systemd:\n  bus_address: {}\n",
        json!(fake.address())
    ));
    let daemon = Daemon::start(&sb);
    let c = abssd_tests::client(&daemon.socket).await;
    let report = call::<DaemonHealth>(&c, &HealthParams::default())
        .await
        .unwrap();
    assert_eq!(report.results.len(), 1, "{:#?}", report.results);
    let r = &report.results[0];
    assert_eq!((r.id.as_str(), r.status), ("registry", ProbeStatus::Yellow));
    assert!(
        r.message.contains("no instances are registered"),
        "{}",
        r.message
    );
    assert!(report.instances.is_empty());
    assert_eq!(report.summary.exit_code, 0);
}
