//! `schedule.enable|disable|show` against the fake systemd on a
//! private bus, with the shipped timer units installed in its unit directory;
//! and the shipped units themselves under `systemd-analyze`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{ScheduleDisable, ScheduleEnable, ScheduleShow};
use abssd_proto::*;
use abssd_tests::nobody::NOBODY;
use abssd_tests::units::{self, TIMER_UNITS};
use abssd_tests::world::World;
use jsonrpsee::core::client::Client;

const TIMER: &str = "abssctl-backup@alpha.timer";

/// A world of `instances` with the timer units installed where the fake
/// systemd (and abssd) look for units, and no call recorded yet.
fn world(instances: &[&str]) -> World {
    let w = World::new(instances);
    units::install(&w.cfg().unit_dir, &TIMER_UNITS, None, None);
    w.fake.clear_calls();
    w
}

fn drop_in(w: &World, timer: &str) -> PathBuf {
    w.cfg()
        .unit_dir
        .join(format!("{timer}.d"))
        .join("50-abssctl-calendar.conf")
}

fn one(instance: &str, calendar: Option<&str>) -> ScheduleParams {
    ScheduleParams {
        instance: Some(instance.into()),
        all: false,
        calendar: calendar.map(str::to_owned),
    }
}

async fn enable(c: &Client, p: &ScheduleParams) -> Result<ScheduleResult, WireError> {
    call::<ScheduleEnable>(c, p)
        .await
        .map(|o| o.result.expect("a result"))
}

async fn disable(c: &Client, p: &ScheduleParams) -> Result<ScheduleResult, WireError> {
    call::<ScheduleDisable>(c, p)
        .await
        .map(|o| o.result.expect("a result"))
}

/// Every file under `dir`, relative, with its content (for "nothing changed").
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p.clone());
                out.push((p.strip_prefix(dir).unwrap().to_owned(), Vec::new()));
            } else {
                let body = fs::read(&p).unwrap_or_default();
                out.push((p.strip_prefix(dir).unwrap().to_owned(), body));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn enable_writes_the_calendar_then_reloads_enables_and_starts() {
    let w = world(&["alpha"]);
    let c = abssd_tests::client(&w.daemon.socket).await;
    let r = enable(&c, &one("alpha", Some("Mon..Fri 02:30")))
        .await
        .unwrap();
    assert_eq!(r.unit, TIMER);
    assert!(r.enabled);
    assert_eq!(r.calendar.as_deref(), Some("Mon..Fri 02:30"));
    assert_eq!(r.normalized.as_deref(), Some("Mon..Fri *-*-* 02:30:00"));
    let file = drop_in(&w, TIMER);
    assert_eq!(r.drop_in, file.display().to_string());
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.ends_with("\n[Timer]\nOnCalendar=\nOnCalendar=Mon..Fri 02:30\n"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.is_empty()
        || l.starts_with('#')
        || l == "[Timer]"
        || l.starts_with("OnCalendar=")));
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        w.fake.calls(),
        [
            "Reload",
            "EnableUnitFiles abssctl-backup@alpha.timer",
            "StartUnit abssctl-backup@alpha.timer"
        ]
    );
    let state = w.fake.state(TIMER).unwrap();
    assert!(state.is_enabled() && state.is_active(), "{state:?}");

    // Again with another calendar: the drop-in is replaced, the steps re-run.
    w.fake.clear_calls();
    enable(&c, &one("alpha", None)).await.unwrap();
    assert!(
        fs::read_to_string(&file)
            .unwrap()
            .ends_with("OnCalendar=\nOnCalendar=daily\n")
    );
    assert_eq!(w.fake.calls().len(), 3, "{:?}", w.fake.calls());
}

#[tokio::test]
async fn disable_stops_disables_removes_the_drop_in_and_reloads() {
    let w = world(&["alpha"]);
    let c = abssd_tests::client(&w.daemon.socket).await;
    enable(&c, &one("alpha", Some("hourly"))).await.unwrap();
    // An operator's own drop-in beside ours stays.
    let dir = drop_in(&w, TIMER).parent().unwrap().to_owned();
    fs::write(dir.join("override.conf"), "[Timer]\nPersistent=false\n").unwrap();
    w.fake.clear_calls();

    let r = disable(&c, &one("alpha", None)).await.unwrap();
    assert!(!r.enabled && r.calendar.is_none());
    assert_eq!(
        w.fake.calls(),
        [
            "StopUnit abssctl-backup@alpha.timer",
            "DisableUnitFiles abssctl-backup@alpha.timer",
            "Reload"
        ]
    );
    assert!(!drop_in(&w, TIMER).exists());
    assert!(dir.join("override.conf").exists());
    let state = w.fake.state(TIMER).unwrap();
    assert!(!state.is_enabled() && !state.is_active(), "{state:?}");

    // Again: nothing left to do, and no error (a run killed half-way is
    // finished by running it again).
    disable(&c, &one("alpha", None)).await.unwrap();
    assert!(!drop_in(&w, TIMER).exists());
}

#[tokio::test]
async fn a_bad_calendar_changes_nothing() {
    let w = world(&["alpha"]);
    let c = abssd_tests::client(&w.daemon.socket).await;
    enable(&c, &one("alpha", Some("daily"))).await.unwrap();
    w.fake.clear_calls();
    let before = tree(&w.cfg().unit_dir);
    let too_long = "1".repeat(schedule::CALENDAR_MAX + 1);
    for bad in [
        "Mon..Fri 25:00",
        "bogus",
        "daily\nExecStartPre=/bin/sh -c id",
        "%n",
        "",
        too_long.as_str(),
    ] {
        let e = enable(&c, &one("alpha", Some(bad))).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{bad:?}: {e}");
        assert_eq!(e.kind.exit_code(), 2);
    }
    assert_eq!(tree(&w.cfg().unit_dir), before);
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());
    let state = w.fake.state(TIMER).unwrap();
    assert!(state.is_enabled() && state.is_active());
}

#[tokio::test]
async fn an_unknown_instance_or_no_timer_files_are_refused_and_change_nothing() {
    let w = world(&["alpha"]);
    let c = abssd_tests::client(&w.daemon.socket).await;
    let before = tree(&w.cfg().unit_dir);
    let e = enable(&c, &one("ghost", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert_eq!(e.kind.exit_code(), 2);
    assert!(e.message.contains("alpha"), "lists what exists: {e}");
    let e = enable(&c, &one("../alpha", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e}");
    let e = call::<ScheduleShow>(
        &c,
        &ScheduleShowParams {
            instance: Some("ghost".into()),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    // A calendar on a disable.
    let e = disable(&c, &one("alpha", Some("daily"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e}");
    // Neither an instance nor --all, or both.
    for p in [
        ScheduleParams::default(),
        ScheduleParams {
            all: true,
            ..one("alpha", None)
        },
    ] {
        let e = enable(&c, &p).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{e}");
    }
    assert_eq!(tree(&w.cfg().unit_dir), before);
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());

    // Timer units not installed: an environment error, nothing written.
    for unit in TIMER_UNITS {
        fs::remove_file(w.cfg().unit_dir.join(unit)).unwrap();
    }
    let before = tree(&w.cfg().unit_dir);
    let e = enable(&c, &one("alpha", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Environment, "{e}");
    assert!(e.message.contains("abssctl-backup@.timer"), "{e}");
    assert_eq!(tree(&w.cfg().unit_dir), before);
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());
}

#[tokio::test]
async fn a_symlinked_drop_in_directory_is_refused_and_not_followed() {
    let w = world(&["alpha"]);
    let c = abssd_tests::client(&w.daemon.socket).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let link = drop_in(&w, TIMER).parent().unwrap().to_owned();
    std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
    let e = enable(&c, &one("alpha", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Environment, "{e}");
    assert!(e.message.contains("symlink"), "{e}");
    assert!(fs::read_dir(elsewhere.path()).unwrap().next().is_none());
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());
}

#[tokio::test]
async fn show_reports_every_timer_from_systemd() {
    let w = world(&["alpha", "beta"]);
    let c = abssd_tests::client(&w.daemon.socket).await;
    enable(&c, &one("alpha", Some("*-*-* 03:00:00")))
        .await
        .unwrap();
    let all = ScheduleParams {
        instance: None,
        all: true,
        calendar: Some("weekly".into()),
    };
    let r = enable(&c, &all).await.unwrap();
    assert_eq!(r.unit, schedule::ALL_TIMER);
    assert!(drop_in(&w, schedule::ALL_TIMER).exists());
    // 2026-01-01T00:00:00Z and 2025-12-31T00:00:00Z, in µs.
    w.fake
        .set_timer(TIMER, 1_767_225_600_000_000, 1_767_139_200_000_000);
    w.fake
        .set_result("abssctl-backup@alpha.service", "exit-code");
    w.fake.clear_calls();

    let shown = call::<ScheduleShow>(&c, &ScheduleShowParams::default())
        .await
        .unwrap();
    assert_eq!(shown.left_out, 0);
    let units: Vec<&str> = shown.timers.iter().map(|t| t.unit.as_str()).collect();
    assert_eq!(
        units,
        [TIMER, "abssctl-backup@beta.timer", schedule::ALL_TIMER]
    );
    let alpha = &shown.timers[0];
    assert_eq!(alpha.instance.as_deref(), Some("alpha"));
    assert!(alpha.enabled);
    assert_eq!(alpha.active_state, "active");
    assert_eq!(alpha.calendar, ["*-*-* 03:00:00"]);
    assert_eq!(alpha.next_run.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(alpha.last_run.as_deref(), Some("2025-12-31T00:00:00Z"));
    assert_eq!(alpha.last_result.as_deref(), Some("exit-code"));
    let beta = &shown.timers[1];
    assert!(!beta.enabled);
    assert_eq!(beta.unit_file_state, "disabled");
    // The unit file's own calendar, no drop-in.
    assert_eq!(beta.calendar, ["daily"]);
    assert_eq!(beta.next_run, None);
    assert_eq!(beta.last_run, None);
    let every = &shown.timers[2];
    assert!(every.enabled && every.instance.is_none());
    assert_eq!(every.calendar, ["weekly"]);
    // Reading changes nothing.
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());

    let only = call::<ScheduleShow>(
        &c,
        &ScheduleShowParams {
            instance: Some("beta".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(only.timers.len(), 1);
    assert_eq!(only.timers[0].unit, "abssctl-backup@beta.timer");
}

/// `curl` over the socket as uid 65534: the JSON-RPC answer to `method`.
fn as_nobody(socket: &Path, method: &str, params: &str) -> serde_json::Value {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(socket)
        .args(["-H", "content-type: application/json", "-d", &body])
        .arg("http://localhost/")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{method}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn a_peer_that_may_only_read_may_show_but_not_enable_or_disable() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test connects as uid 65534 and needs root (CI runs as root)"
    );
    let w = World::with_config(&["alpha"], |_| {
        "daemon:\n  socket_group: nogroup\n  operator_group: abssctl-test-nonexistent\n".into()
    });
    units::install(&w.cfg().unit_dir, &TIMER_UNITS, None, None);
    for dir in ["", "run", "run/abssctl"] {
        fs::set_permissions(w.sb.path(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    w.fake.clear_calls();
    let before = tree(&w.cfg().unit_dir);
    for method in ["schedule.enable", "schedule.disable"] {
        let answer = as_nobody(&w.daemon.socket, method, r#"{"instance":"alpha"}"#);
        assert_eq!(
            answer["error"]["data"]["kind"], "forbidden",
            "{method}: {answer}"
        );
    }
    assert_eq!(tree(&w.cfg().unit_dir), before);
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());
    let answer = as_nobody(&w.daemon.socket, "schedule.show", r#"{"instance":"alpha"}"#);
    assert_eq!(answer["result"]["timers"][0]["unit"], TIMER, "{answer}");
    assert_eq!(answer["result"]["timers"][0]["enabled"], false);
}

/// The shipped units, installed as `make install` would (the binaries' paths
/// pointing at executables that exist here: `systemd-analyze verify` checks
/// them), pass `systemd-analyze verify` without a word, and a unit with a bad
/// setting does not (so silence means something).
#[test]
fn the_shipped_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut shipped = TIMER_UNITS.to_vec();
    shipped.extend(["abssd.socket", "abssd.service"]);
    units::install(dir.path(), &shipped, Some(&exe), Some(&exe));
    let verify = |names: &[&str]| {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(names.iter().map(|n| dir.path().join(n)))
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .expect("systemd-analyze (package systemd) runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let (ok, said) = verify(&[
        "abssctl-backup@.timer",
        "abssctl-backup@alpha.timer",
        "abssctl-backup@alpha.service",
        "abssctl-backup-all.timer",
        "abssctl-backup-all.service",
    ]);
    assert!(ok && said.trim().is_empty(), "{said}");

    let bad = dir.path().join("abssctl-backup@.timer");
    let text = fs::read_to_string(&bad).unwrap();
    fs::write(
        &bad,
        text.replace("RandomizedDelaySec=1h", "RandomizedDelaySec=soon"),
    )
    .unwrap();
    let (_, said) = verify(&["abssctl-backup@alpha.timer"]);
    assert!(
        said.contains("RandomizedDelaySec") || said.contains("soon"),
        "{said}"
    );
}

/// The calendar the shipped timers run on without a drop-in is the default
/// `schedule enable` writes, and systemd parses it.
#[test]
fn the_default_calendar_is_one_systemd_parses() {
    for timer in ["abssctl-backup@.timer", "abssctl-backup-all.timer"] {
        let text = fs::read_to_string(units::shipped_dir().join(timer)).unwrap();
        let specs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("OnCalendar="))
            .collect();
        assert_eq!(specs, [schedule::DEFAULT_CALENDAR], "{timer}");
        for line in [
            "Persistent=true",
            "RandomizedDelaySec=1h",
            "FixedRandomDelay=true",
        ] {
            assert!(text.lines().any(|l| l == line), "{timer}: {line}");
        }
    }
    let out = Command::new("systemd-analyze")
        .args(["calendar", schedule::DEFAULT_CALENDAR])
        .output()
        .expect("systemd-analyze runs");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Normalized form: *-*-* 00:00:00"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
