//! `backup.run`, the backup job, over the socket: every step per
//! instance (create, prune by `backups.retention`, verify of the new backup
//! and a sampled older one, a read-only reconcile), the job records in
//! `state_dir/jobs`, one instance failing alone, no policy, an operator's
//! only, and records an attacker cannot redirect.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::PathBuf;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupRun};
use abssd_proto::*;
use abssd_tests::hooks::Gate;
use abssd_tests::inspect::events_of;
use abssd_tests::jobs::{all, job, only};
use abssd_tests::world::World;
use abssd_tests::{Daemon, Sandbox, backup, serial, show};
use serde_json::Value;

const LONG_AGO: &str = "2020-01-01T00:00:00Z";

fn record_path(w: &World, instance: &str) -> PathBuf {
    w.sb.full_config()
        .layout
        .state_dir
        .join("jobs")
        .join(format!("{instance}.json"))
}

fn record(w: &World, instance: &str) -> JobRecord {
    serde_json::from_slice(&std::fs::read(record_path(w, instance)).expect("job record"))
        .expect("a job record")
}

fn statuses(i: &RunInstance) -> Vec<(JobStep, JobStepStatus)> {
    i.steps.iter().map(|s| (s.step, s.status)).collect()
}

fn step(i: &RunInstance, step: JobStep) -> &JobStepOutcome {
    i.steps.iter().find(|s| s.step == step).expect("the step")
}

/// Set `created_at` of backup `id` in the index.
fn date(w: &World, id: &str, at: &str) {
    let mut raw: Value = serde_json::from_slice(&w.index()).unwrap();
    for e in raw["backups"].as_array_mut().unwrap() {
        if e["id"] == id {
            e["created_at"] = at.into();
        }
    }
    std::fs::write(
        &w.cfg().index_file,
        serde_json::to_vec_pretty(&raw).unwrap(),
    )
    .unwrap();
}

/// The operations-log line of operation `op_id`.
fn log_line(w: &World, op_id: &str) -> Value {
    let text = std::fs::read_to_string(w.cfg().oplog_file()).expect("operations log");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["op_id"] == op_id)
        .unwrap_or_else(|| panic!("no log line for {op_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_two_instances_creates_prunes_verifies_reconciles_and_records_each() {
    let w = World::with_config(&["alpha", "beta"], |_| {
        "backups:\n  retention:\n    keep_last: 2\n".to_owned()
    });
    let c = w.client().await;
    let oldest = backup(&c, "alpha").await;
    let older = backup(&c, "alpha").await;
    date(&w, &oldest.id, LONG_AGO);
    date(&w, &older.id, "2021-01-01T00:00:00Z");
    assert!(
        show(&c, &older.id)
            .await
            .checksum
            .unwrap()
            .last_verified
            .is_none()
    );
    // An archive no entry names: drift the job reports and leaves.
    let orphan = w
        .cfg()
        .backups_root
        .join("beta/20200101-000000-beta-abcdef.tar.zst");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"not indexed").unwrap();

    let (op_id, result) = job(&c, &all()).await.expect("the job succeeds");
    assert!(result.ok, "{result:?}");
    let names: Vec<&str> = result
        .instances
        .iter()
        .map(|i| i.instance.as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    use JobStepStatus::Ok;
    for i in &result.instances {
        assert!(i.ok, "{i:?}");
        assert_eq!(
            statuses(i),
            [
                (JobStep::Create, Ok),
                (JobStep::Prune, Ok),
                (JobStep::Verify, Ok),
                (JobStep::Reconcile, Ok)
            ],
            "{i:?}"
        );
    }
    let (alpha, beta) = (&result.instances[0], &result.instances[1]);
    let new_alpha = alpha.backup_id.clone().unwrap();

    // Prune: keep-last 2 of alpha's three leaves the oldest out.
    assert_eq!(show(&c, &oldest.id).await.status, status::REMOVED);
    assert!(!std::path::Path::new(&oldest.archive).exists());
    assert!(step(alpha, JobStep::Prune).message.contains("removed 1"));
    // Verify: the new backup and the older one never verified.
    for id in [&new_alpha, &older.id] {
        let entry = show(&c, id).await;
        assert_eq!(entry.status, status::AVAILABLE, "{id}");
        assert!(
            entry.checksum.unwrap().last_verified.is_some(),
            "{id} not verified"
        );
    }
    assert!(
        step(alpha, JobStep::Verify)
            .message
            .starts_with("2 backup(s) verified")
    );
    assert!(
        step(beta, JobStep::Verify)
            .message
            .starts_with("1 backup(s) verified")
    );
    // Reconcile: read-only; beta's orphan is a warning, still there.
    assert!(alpha.warnings.is_empty(), "{alpha:?}");
    assert!(beta.warnings[0].contains("1 orphaned"), "{beta:?}");
    assert!(orphan.exists());
    let new_beta = beta.backup_id.clone().unwrap();
    assert!(
        show(&c, &new_beta)
            .await
            .metadata
            .labels
            .contains(&"job".to_owned())
    );

    // The records, one per instance, as the summary has them.
    for i in &result.instances {
        let r = record(&w, &i.instance);
        assert_eq!(
            (&r.op_id, r.ok, &r.backup_id, &r.steps),
            (&op_id, true, &i.backup_id, &i.steps)
        );
        let meta = std::fs::metadata(record_path(&w, &i.instance)).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
    }
    let dir = std::fs::metadata(record_path(&w, "alpha").parent().unwrap()).unwrap();
    assert_eq!((dir.mode() & 0o7777, dir.uid()), (0o755, 0));

    // Every step is in the operations log, per instance.
    let line = log_line(&w, &op_id);
    assert_eq!(line["command"], "backup run");
    let steps: Vec<&str> = line["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .filter(|n| n.starts_with("alpha:") || n.starts_with("beta:"))
        .collect();
    assert_eq!(
        steps,
        [
            "alpha:create",
            "alpha:prune",
            "alpha:verify",
            "alpha:reconcile",
            "beta:create",
            "beta:prune",
            "beta:verify",
            "beta:reconcile"
        ]
    );
    assert!(
        line["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == format!("remove:{}", oldest.id)),
        "the prune's own steps are there too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_instance_fails_alone_and_the_error_says_which() {
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    std::fs::remove_dir_all(w.data("alpha")).unwrap();

    let err = job(&c, &all()).await.expect_err("alpha fails");
    let detail = err.detail.clone().expect("a detail");
    let summary: RunResult = serde_json::from_value(detail["summary"].clone()).unwrap();
    assert!(!summary.ok);
    let (alpha, beta) = (&summary.instances[0], &summary.instances[1]);
    use JobStepStatus::*;
    assert_eq!(
        statuses(alpha),
        [
            (JobStep::Create, Failed),
            (JobStep::Prune, Skipped),
            (JobStep::Verify, Skipped),
            (JobStep::Reconcile, Skipped)
        ]
    );
    assert!(!alpha.ok && alpha.backup_id.is_none());
    assert!(beta.ok, "{beta:?}");
    let made = beta.backup_id.clone().unwrap();
    assert_eq!(show(&c, &made).await.status, status::AVAILABLE);
    // The error: the kind of alpha's failure, which instance and step, the op.
    assert!(
        err.message.contains("1 of 2") && err.message.contains("alpha (create)"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("beta"), "{}", err.message);
    // A data directory that is not there: an environment problem (exit 3).
    assert_eq!(err.kind, ErrorKind::Environment, "{}", err.message);
    assert!(err.message.contains("srv/alpha/data"), "{}", err.message);
    let op_id = detail["op_id"].as_str().expect("the op id").to_owned();

    assert!(!record(&w, "alpha").ok);
    assert!(record(&w, "beta").ok);
    let line = log_line(&w, &op_id);
    assert_eq!(line["result"]["status"], "error", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_prune_is_skipped_and_nothing_is_removed() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let first = backup(&c, "alpha").await;
    date(&w, &first.id, LONG_AGO);
    let (_, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let alpha = &result.instances[0];
    assert!(result.ok && alpha.ok, "{result:?}");
    let prune = step(alpha, JobStep::Prune);
    assert_eq!(prune.status, JobStepStatus::Skipped);
    assert!(
        prune.message.contains("backups.retention"),
        "{}",
        prune.message
    );
    assert_eq!(show(&c, &first.id).await.status, status::AVAILABLE);
}

/// A policy of zeros keeps nothing and names no rule: the prune step is
/// skipped, as with no policy, not refused night after night.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_of_zeros_skips_prune_too() {
    let w = World::with_config(&["alpha"], |_| {
        "backups:\n  retention:\n    keep_last: 0\n    keep_daily: 0\n".to_owned()
    });
    let c = w.client().await;
    let (_, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let prune = step(&result.instances[0], JobStep::Prune);
    assert_eq!(prune.status, JobStepStatus::Skipped, "{result:?}");
}

/// A backup the prune step should remove and cannot (its archive is no
/// longer a regular file) fails the instance at prune: a nightly job must
/// not say ok while the disk fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_prune_cannot_remove_fails_the_instance_at_prune() {
    let w = World::with_config(&["alpha"], |_| {
        "backups:\n  retention:\n    keep_last: 1\n".to_owned()
    });
    let c = w.client().await;
    let old = backup(&c, "alpha").await;
    date(&w, &old.id, LONG_AGO);
    std::fs::remove_file(&old.archive).unwrap();
    std::fs::create_dir(&old.archive).unwrap();
    let err = job(&c, &only("alpha")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    let summary: RunResult =
        serde_json::from_value(err.detail.as_ref().unwrap()["summary"].clone()).unwrap();
    let prune = step(&summary.instances[0], JobStep::Prune);
    assert_eq!(prune.status, JobStepStatus::Failed, "{summary:?}");
    assert!(prune.message.contains(&old.id), "{}", prune.message);
    assert!(std::path::Path::new(&old.archive).is_dir());
}

/// With health.textfile_dir set, a job alone (no doctor) leaves the
/// metrics file saying what it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_writes_the_health_metrics_file() {
    let mut w = World::new(&["alpha"]);
    let dir = w.sb.path("textfile");
    w.restart_with(&format!(
        "health:\n  textfile_dir: {}\n",
        serde_json::json!(dir)
    ));
    let c = w.client().await;
    let file = dir.join("abssctl.prom");
    assert!(!file.exists());
    job(&c, &only("alpha")).await.expect("the job succeeds");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("abssctl_backups{instance=\"alpha\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("abssctl_last_job_success{instance=\"alpha\"} 1\n"),
        "{text}"
    );
}

/// Two jobs of one instance at once (its own timer and the all-instances
/// timer after a boot): the second passes it by, changing nothing, and
/// neither fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_of_an_instance_passes_it_by() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let mut gate = Gate::at("create::locked");
    let params = RunParams {
        detach: true,
        ..only("alpha")
    };
    let first = call::<BackupRun>(&c, &params).await.unwrap().op_id;
    gate.entered().await;
    // No backup was made yet: the index may not exist.
    let index = || std::fs::read(w.cfg().index_file).ok();
    let before = index();
    let (_, second) = job(&c, &only("alpha"))
        .await
        .expect("the second job succeeds");
    let alpha = &second.instances[0];
    assert!(alpha.ok && alpha.backup_id.is_none(), "{second:?}");
    assert!(
        alpha
            .steps
            .iter()
            .all(|s| s.status == JobStepStatus::Skipped),
        "{second:?}"
    );
    assert_eq!(index(), before);
    gate.release();
    fail::remove("create::locked");
    let end = events_of(&c, &first).await.pop().unwrap();
    assert!(matches!(end.kind, EventKind::Finished { .. }), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_anything_happens() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    for (params, kind) in [
        (RunParams::default(), ErrorKind::Validation),
        (
            RunParams {
                instance: Some("alpha".into()),
                all: true,
                ..RunParams::default()
            },
            ErrorKind::Validation,
        ),
        (only("../alpha"), ErrorKind::Validation),
        (only(&"a".repeat(100)), ErrorKind::Validation),
        (only("gamma"), ErrorKind::NotFound),
    ] {
        let err = job(&c, &params).await.expect_err("refused");
        assert_eq!(err.kind, kind, "{params:?}: {}", err.message);
    }
    assert!(!w.cfg().backups_root.join("alpha").exists());
    assert!(!record_path(&w, "alpha").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_replaced_whole_and_a_planted_symlink_is_not_followed() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let (first_op, _) = job(&c, &only("alpha")).await.unwrap();
    let at = record_path(&w, "alpha");
    // A reader that opened the record before the next job still reads the
    // whole first record: it was replaced by a rename, not rewritten.
    let mut held = std::fs::File::open(&at).unwrap();
    let (second_op, _) = job(&c, &only("alpha")).await.unwrap();
    let mut old = String::new();
    held.read_to_string(&mut old).unwrap();
    let old: JobRecord = serde_json::from_str(&old).unwrap();
    assert_eq!(old.op_id, first_op);
    assert_eq!(record(&w, "alpha").op_id, second_op);
    let names: Vec<_> = std::fs::read_dir(at.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["alpha.json"], "no temporary file is left");

    // An attacker's symlink at the record's name: replaced, its target intact.
    let victim = w.sb.path("victim");
    std::fs::write(&victim, "root's file").unwrap();
    std::fs::remove_file(&at).unwrap();
    symlink(&victim, &at).unwrap();
    let (third_op, _) = job(&c, &only("alpha")).await.unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file");
    assert!(
        !std::fs::symlink_metadata(&at)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(record(&w, "alpha").op_id, third_op);

    // A symlink in place of the directory: the record is not written there,
    // the job still succeeds and says so.
    let elsewhere = w.sb.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::remove_dir_all(at.parent().unwrap()).unwrap();
    symlink(&elsewhere, at.parent().unwrap()).unwrap();
    let (op_id, result) = job(&c, &only("alpha")).await.unwrap();
    assert!(result.ok);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    let warnings = log_line(&w, &op_id)["result"]["warnings"].to_string();
    assert!(
        warnings.contains("the job record of alpha was not written"),
        "{warnings}"
    );
}

#[test]
fn a_peer_that_may_only_read_is_refused_and_nothing_happens() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to run a request as nobody (CI runs as root)"
    );
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let mut config = sb.full_config();
    config.daemon.socket_group = "nogroup".into();
    config.daemon.operator_group = "abssctl-test-nonexistent".into();
    let state_dir = config.layout.state_dir.clone();
    let daemon = Daemon::start_with(config);
    for dir in [sb.prefix.clone(), sb.path("run"), sb.path("run/abssctl")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for params in [r#"{"all":true}"#, r#"{"instance":"alpha"}"#] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"backup.run","params":{params}}}"#);
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--unix-socket",
                daemon.socket.to_str().unwrap(),
                "-H",
                "content-type: application/json",
                "-d",
                &body,
                "http://localhost/",
            ])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(answer["error"]["data"]["kind"], "forbidden", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may only read"),
            "{answer}"
        );
    }
    assert!(!sb.path("srv/backups/alpha").exists());
    assert!(!state_dir.join("jobs").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_older_backup_found_by_the_sample_fails_the_instance_at_verify() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let old = backup(&c, "alpha").await;
    let mut bytes = std::fs::read(&old.archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&old.archive, bytes).unwrap();

    let err = job(&c, &only("alpha")).await.expect_err("verify finds it");
    assert_eq!(err.kind, ErrorKind::Environment, "{}", err.message);
    assert!(err.message.contains("alpha (verify)"), "{}", err.message);
    let summary: RunResult =
        serde_json::from_value(err.detail.unwrap()["summary"].clone()).unwrap();
    let alpha = &summary.instances[0];
    use JobStepStatus::*;
    assert_eq!(
        statuses(alpha),
        [
            (JobStep::Create, Ok),
            (JobStep::Prune, Skipped),
            (JobStep::Verify, Failed),
            (JobStep::Reconcile, Skipped)
        ]
    );
    assert!(step(alpha, JobStep::Verify).message.contains(&old.id));
    // The new backup is good and recorded so; the old one is marked.
    let made = alpha.backup_id.clone().expect("the create succeeded");
    assert_eq!(show(&c, &made).await.status, status::AVAILABLE);
    assert_eq!(show(&c, &old.id).await.status, status::CORRUPT);
    let r = record(&w, "alpha");
    assert!(!r.ok && r.backup_id == Some(made));
}

/// The job holds no lock across its steps and each step takes its own: a job
/// that meets a create holding the instance lock waits for it, then runs
/// every step to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_for_a_create_holding_the_instance_lock_then_runs_every_step() {
    let _serial = serial();
    let w = World::with_config(&["alpha"], |_| {
        "backups:\n  retention:\n    keep_last: 5\n".to_owned()
    });
    let c = w.client().await;
    let mut gate = Gate::at("create::locked");
    let create = CreateParams {
        instance: "alpha".into(),
        detach: true,
        ..CreateParams::default()
    };
    let holder = call::<BackupCreate>(&c, &create).await.unwrap().op_id;
    gate.entered().await;

    let params = RunParams {
        detach: true,
        ..only("alpha")
    };
    let op_id = call::<BackupRun>(&c, &params).await.unwrap().op_id;
    let mut events = abssd_proto::methods::call::watch(&c, &op_id).await.unwrap();
    loop {
        let event = events.next().await.expect("events").unwrap();
        if matches!(&event.kind, EventKind::LockWait { lock } if lock == "instance:alpha") {
            break;
        }
        assert!(
            !event.kind.is_terminal(),
            "ended without waiting: {event:?}"
        );
    }
    gate.release();
    fail::remove("create::locked");

    let end = events_of(&c, &op_id).await.pop().unwrap();
    let EventKind::Finished { result } = end.kind else {
        panic!("{end:?}");
    };
    let r: RunResult = serde_json::from_value(result.to_value()["result"].clone()).unwrap();
    assert!(r.ok, "{r:?}");
    assert!(
        r.instances[0]
            .steps
            .iter()
            .all(|s| s.status == JobStepStatus::Ok),
        "{r:?}"
    );
    let held = events_of(&c, &holder).await.pop().unwrap();
    assert!(matches!(held.kind, EventKind::Finished { .. }), "{held:?}");
}
