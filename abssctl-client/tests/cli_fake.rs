//! `abssctl` against a scripted stand-in for abssd: the client's side of the
//! contract (detach + watch, JSON shapes, exit codes, Ctrl-C) without the real
//! daemon's archive work. The stand-in and the names it answers by are in
//! `cli_fake/standin.rs`. End-to-end tests with the real daemon are in
//! `cli_daemon.rs`.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{assert_exit, json_doc, text};

mod standin;
use standin::{
    FakeDaemon, RESTORE_ID, create_result, entry, plan, reconcile_applied, reconcile_drift,
    reconcile_in_sync, restore_plan, restore_result, rolled_back_error,
};

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

    let sent = d.last_create().unwrap();
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
    let sent = d.last_create().unwrap();
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
    assert_eq!(d.last_create().unwrap()["detach"], false);

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
fn unknown_instance_and_backup_exit_2() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "create", "ghost", "--json"]);
    assert_exit(&out, 2);
    assert_eq!(json_doc(&out)["error"]["kind"], "not_found");

    let out = d.abssctl(&["backup", "show", "ghost"]);
    assert_exit(&out, 2);
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
    assert_exit(&out, 2);
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
    assert_eq!(json_doc(&out), json!({ "backups": [entry()], "total": 1 }));

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
    while !d.watching() {
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
    assert!(StdUnixStream::connect(d.socket()).is_ok());
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
fn restore_of_an_unknown_backup_exits_2_before_asking() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&["backup", "restore", "ghost"]);
    assert_exit(&out, 2);
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

/// `doc` is `result` with `op_id` added, and nothing else.
#[track_caller]
fn assert_result_with_op_id(doc: &Value, op_id: &str, result: Value) {
    let mut expected = result;
    expected["op_id"] = json!(op_id);
    assert_eq!(doc, &expected);
}

#[test]
fn reconcile_json_is_one_document_and_exits_3_on_unfixed_drift_with_check() {
    let d = FakeDaemon::start();
    let out = d.abssctl(&[
        "backup",
        "reconcile",
        "--instance",
        "drifty",
        "--verify",
        "--deep",
        "--check",
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
        json!({"instance": "drifty", "apply": false, "adopt": false, "verify": true, "deep": true, "detach": true})
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
        json!({"instance": null, "apply": false, "adopt": false, "verify": false, "deep": false, "detach": true})
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
    // Without --check, a reconcile that ran exits 0 whatever it found.
    let out = d.abssctl(&["backup", "reconcile", "--instance", "drifty"]);
    assert_exit(&out, 0);
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
        json!({"instance": "drifty", "apply": true, "adopt": true, "verify": false, "deep": false, "detach": true})
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

    // Re-attached, a reconcile exits as one started without --check.
    let out = d.abssctl(&["op", "watch", "op-reconcile-drift", "--json"]);
    assert_exit(&out, 0);
    assert_result_with_op_id(&json_doc(&out), "op-reconcile-drift", reconcile_drift());

    let out = d.abssctl(&["op", "watch", "op-reconcile-ok"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("in sync: the index and the archives agree"),
        "{}",
        text(&out.stdout)
    );
}
