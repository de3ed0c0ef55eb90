//! `abssctl schedule enable | disable | show` against the real abssd and the
//! fake systemd on a private bus, with the shipped timer units installed:
//! output, `--json` shapes and exit codes.

use std::fs;
use std::process::{Command, Output};

use abssd_tests::units::{self, TIMER_UNITS};
use abssd_tests::world::World;
use serde_json::Value;

use crate::common::{assert_exit, json_doc, text};

fn host() -> World {
    let w = World::new(&["alpha", "beta"]);
    units::install(&w.cfg().unit_dir, &TIMER_UNITS, None, None);
    w.fake.clear_calls();
    w
}

fn abssctl(w: &World, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abssctl"))
        .args(args)
        .env("ABSSD_SOCKET", &w.daemon.socket)
        .output()
        .expect("abssctl runs")
}

#[track_caller]
fn json(w: &World, args: &[&str], code: i32) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = abssctl(w, &args);
    assert_exit(&out, code);
    json_doc(&out)
}

#[test]
fn enable_show_disable_round_trip() {
    let w = host();
    let doc = json(
        &w,
        &[
            "schedule",
            "enable",
            "alpha",
            "--calendar",
            "Mon..Fri 02:30",
        ],
        0,
    );
    assert_eq!(doc["result"]["unit"], "abssctl-backup@alpha.timer");
    assert_eq!(doc["result"]["enabled"], true);
    assert_eq!(doc["result"]["normalized"], "Mon..Fri *-*-* 02:30:00");
    assert!(doc["op_id"].is_string(), "{doc}");
    let drop_in = w
        .cfg()
        .unit_dir
        .join("abssctl-backup@alpha.timer.d/50-abssctl-calendar.conf");
    assert!(
        fs::read_to_string(&drop_in)
            .unwrap()
            .ends_with("OnCalendar=\nOnCalendar=Mon..Fri 02:30\n")
    );

    // For people: the --all timer with the default calendar.
    let out = abssctl(&w, &["schedule", "enable", "--all"]);
    assert_exit(&out, 0);
    assert_eq!(
        text(&out.stdout),
        "abssctl-backup-all.timer enabled and started: runs daily (*-*-* 00:00:00)\n\
         see it with: abssctl schedule show\n"
    );

    let doc = json(&w, &["schedule", "show"], 0);
    let units: Vec<&str> = doc["timers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["unit"].as_str().unwrap())
        .collect();
    assert_eq!(
        units,
        [
            "abssctl-backup@alpha.timer",
            "abssctl-backup@beta.timer",
            "abssctl-backup-all.timer"
        ]
    );
    assert_eq!(doc["timers"][0]["enabled"], true);
    assert_eq!(doc["timers"][0]["calendar"][0], "Mon..Fri 02:30");
    assert_eq!(doc["timers"][1]["enabled"], false);

    let out = abssctl(&w, &["schedule", "show", "alpha"]);
    assert_exit(&out, 0);
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(lines[0].starts_with("INSTANCE") && lines[0].contains("NEXT RUN"));
    assert!(
        lines[1].starts_with("alpha")
            && lines[1].contains("yes")
            && lines[1].contains("Mon..Fri 02:30"),
        "{shown}"
    );

    let out = abssctl(&w, &["schedule", "disable", "alpha"]);
    assert_exit(&out, 0);
    assert_eq!(
        text(&out.stdout),
        "abssctl-backup@alpha.timer stopped and disabled\n"
    );
    assert!(!drop_in.exists());
    let doc = json(&w, &["schedule", "show", "alpha"], 0);
    assert_eq!(doc["timers"][0]["enabled"], false);
    assert_eq!(doc["timers"][0]["calendar"][0], "daily");
}

#[test]
fn bad_requests_exit_2_and_change_nothing() {
    let w = host();
    let doc = json(&w, &["schedule", "enable", "ghost"], 2);
    assert_eq!(doc["error"]["kind"], "not_found", "{doc}");
    let doc = json(
        &w,
        &["schedule", "enable", "alpha", "--calendar", "25:61"],
        2,
    );
    assert_eq!(doc["error"]["kind"], "validation", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a systemd calendar"),
        "{doc}"
    );
    let doc = json(&w, &["schedule", "show", "ghost"], 2);
    assert_eq!(doc["error"]["kind"], "not_found", "{doc}");
    // Usage errors, before anything is sent.
    for args in [
        &["schedule", "enable"][..],
        &["schedule", "enable", "alpha", "--all"],
        &["schedule", "disable", "alpha", "--calendar", "daily"],
    ] {
        let out = abssctl(&w, args);
        assert_exit(&out, 2);
    }
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());
    assert!(
        !w.cfg()
            .unit_dir
            .join("abssctl-backup@alpha.timer.d")
            .exists()
    );
}

#[test]
fn help_explains_the_timers() {
    let out = Command::new(env!("CARGO_BIN_EXE_abssctl"))
        .args(["schedule", "enable", "--help"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let help = text(&out.stdout);
    for needle in [
        "50-abssctl-calendar.conf",
        "systemd.time(7)",
        "--calendar <SPEC>",
        "--all",
        "Persistent=true",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
