//! `abssctl doctor` against the real abssd and a fake systemd: the table, the
//! summary line, `--json`, and the exit code the report gives.

use std::process::{Command, Output};

use abssd_tests::{Daemon, FakeSystemd, Sandbox};
use serde_json::{Value, json};

use crate::common::{assert_exit, json_doc, text};

/// Instance `alpha`, systemd on a private bus, the daemon. Declared in drop
/// order: the daemon first, the sandbox last.
struct Host {
    daemon: Daemon,
    fake: FakeSystemd,
    sandbox: Sandbox,
}

impl Host {
    fn new() -> Host {
        let sandbox = Sandbox::new();
        sandbox.add_instance("alpha");
        let fake = FakeSystemd::start(None);
        sandbox.write_abssd_config(&format!(
            "systemd:\n  bus_address: {}\n",
            json!(fake.address())
        ));
        let daemon = Daemon::start(&sandbox);
        Host {
            daemon,
            fake,
            sandbox,
        }
    }

    fn abssctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_abssctl"))
            .args(args)
            .env("ABSSD_SOCKET", &self.daemon.socket)
            .output()
            .expect("abssctl runs")
    }
}

#[test]
fn doctor_prints_a_table_and_exits_with_the_worst_impact() {
    let host = Host::new();

    // No backup yet: red, environment, exit 3.
    let out = host.abssctl(&["doctor"]);
    assert_exit(&out, 3);
    let table = text(&out.stdout);
    assert!(table.starts_with("instance alpha\nCHECK"), "{table}");
    let age = table
        .lines()
        .find(|l| l.starts_with("backups.age"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        age.contains("red") && age.contains("alpha has no available backup"),
        "{age}"
    );
    assert!(
        table.contains("doctor: red (green=") && table.ends_with("impact=environment, exit=3)\n"),
        "{table}"
    );

    let out = host.abssctl(&["doctor", "--json"]);
    assert_exit(&out, 3);
    let doc = json_doc(&out);
    assert_eq!(doc["summary"]["exit_code"], 3, "{doc}");
    assert_eq!(doc["summary"]["status"], "red");
    assert_eq!(doc["results"].as_array().unwrap().len(), 7, "{doc}");
    assert_eq!(doc["instances"][0]["instance"], "alpha");

    // Made healthy: a verified backup, a successful job, a scheduled timer.
    let made = host.abssctl(&["backup", "create", "alpha", "--json"]);
    assert_exit(&made, 0);
    let id = json_doc(&made)["result"]["id"].as_str().unwrap().to_owned();
    assert_exit(&host.abssctl(&["backup", "verify", &id, "--json"]), 0);
    let timer = "abssctl-backup@alpha.timer";
    host.fake.set_unit(timer, true, true);
    host.fake.set_timer(timer, 1_893_456_000_000_000, 0);
    let jobs = host.sandbox.full_config().layout.state_dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let record: Value = json!({
        "instance": "alpha", "op_id": "x", "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z", "ok": true, "backup_id": id, "steps": [],
    });
    std::fs::write(jobs.join("alpha.json"), record.to_string()).unwrap();

    let out = host.abssctl(&["doctor", "-i", "alpha"]);
    assert_exit(&out, 0);
    let table = text(&out.stdout);
    assert!(
        table.ends_with("doctor: green (green=7 yellow=0 red=0; impact=ok, exit=0)\n"),
        "{table}"
    );
    assert!(table.contains("next run 2030-01-01T00:00:00Z"), "{table}");
}

#[test]
fn doctor_of_an_unknown_instance_exits_2() {
    let host = Host::new();
    let out = host.abssctl(&["doctor", "-i", "nope", "--json"]);
    assert_exit(&out, 2);
    assert_eq!(json_doc(&out)["error"]["kind"], "not_found");
}
