//! `abssctl backup run` against the real abssd: the summary table and
//! `--json` document, and the exit code of a job in which one instance
//! failed (the kind of its failure), with the summary in the error.

use std::process::{Command, Output};

use abssd_tests::{Daemon, Sandbox};
use serde_json::Value;

use crate::common::{assert_exit, json_doc, text};

/// Instances `alpha` and `beta`, and a daemon serving them (declared first:
/// it stops before the sandbox goes away).
struct Host {
    daemon: Daemon,
    sandbox: Sandbox,
}

impl Host {
    fn new() -> Host {
        let sandbox = Sandbox::new();
        sandbox.add_instance("alpha");
        sandbox.add_instance("beta");
        let daemon = Daemon::start(&sandbox);
        Host { daemon, sandbox }
    }

    fn abssctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_abssctl"))
            .args(args)
            .env("ABSSD_SOCKET", &self.daemon.socket)
            .output()
            .expect("abssctl runs")
    }
}

fn steps(instance: &Value) -> Vec<(String, String)> {
    instance["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_job_prints_its_table_and_json_and_exits_0() {
    let host = Host::new();
    let out = host.abssctl(&["backup", "run", "--all"]);
    assert_exit(&out, 0);
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("INSTANCE  RESULT  BACKUP")
            && lines[0].ends_with("CREATE  PRUNE    VERIFY  RECONCILE"),
        "{table}"
    );
    for (line, name) in lines[1..3].iter().zip(["alpha", "beta"]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], name, "{table}");
        assert_eq!(cells[1], "ok", "{table}");
        assert!(cells[2].contains(&format!("-{name}-")), "{table}");
        assert_eq!(&cells[3..], ["ok", "skipped", "ok", "ok"], "{table}");
    }
    assert!(
        table.ends_with("2 instance(s): 2 ok, 0 failed\n"),
        "{table}"
    );

    let out = host.abssctl(&["backup", "run", "-i", "beta", "--json"]);
    assert_exit(&out, 0);
    let doc = json_doc(&out);
    assert!(doc["op_id"].is_string(), "{doc}");
    assert_eq!(doc["plan"]["instances"], serde_json::json!(["beta"]));
    assert_eq!(doc["result"]["ok"], true);
    let beta = &doc["result"]["instances"][0];
    assert_eq!(beta["instance"], "beta");
    assert_eq!(
        steps(beta),
        [
            ("create".into(), "ok".into()),
            ("prune".into(), "skipped".into()),
            ("verify".into(), "ok".into()),
            ("reconcile".into(), "ok".into())
        ]
    );
}

#[test]
fn one_failing_instance_sets_the_exit_code_and_the_summary_says_which() {
    let host = Host::new();
    let data = host.sandbox.config().instance_root.join("alpha/data");
    std::fs::remove_dir_all(&data).unwrap();

    let out = host.abssctl(&["backup", "run", "--all", "--json"]);
    // alpha's data directory is gone: an environment problem.
    assert_exit(&out, 3);
    let doc = json_doc(&out);
    assert_eq!(doc["error"]["kind"], "environment", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("alpha (create)"), "{message}");
    let summary = &doc["error"]["detail"]["summary"];
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["instances"][0]["instance"], "alpha");
    assert_eq!(summary["instances"][0]["ok"], false);
    assert_eq!(steps(&summary["instances"][0])[0].1, "failed");
    assert_eq!(summary["instances"][1]["instance"], "beta");
    assert_eq!(summary["instances"][1]["ok"], true);
    assert!(doc["error"]["detail"]["op_id"].is_string());

    // Without --json: the table still, then the error.
    let out = host.abssctl(&["backup", "run", "--all"]);
    assert_exit(&out, 3);
    let table = text(&out.stdout);
    let alpha_row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        alpha_row,
        [
            "alpha", "FAILED", "-", "FAILED", "skipped", "skipped", "skipped"
        ],
        "{table}"
    );
    assert!(table.contains("alpha: create failed: "), "{table}");
    assert!(
        table.ends_with("2 instance(s): 1 ok, 1 failed\n"),
        "{table}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: the backup job failed for 1 of 2"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_instance_exits_2_and_runs_nothing() {
    let host = Host::new();
    let out = host.abssctl(&["backup", "run", "-i", "gamma", "--json"]);
    assert_exit(&out, 2);
    assert_eq!(json_doc(&out)["error"]["kind"], "not_found");
    assert!(!host.sandbox.config().backups_root.join("alpha").exists());
}
