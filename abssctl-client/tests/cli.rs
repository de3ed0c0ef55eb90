//! `abssctl` as a process, without a daemon: unreachable sockets, usage errors, help.
//!
//! Tests that need a running abssd live in `cli_daemon.rs`.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

use crate::common::{assert_exit, json_doc, text};

/// Run `abssctl` with `args`, never touching a real daemon: the socket defaults to
/// one that does not exist unless the test passes `--socket`.
fn abssctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abssctl"))
        .args(args)
        .env("ABSSD_SOCKET", "/nonexistent/abssctl-test/abssd.sock")
        .output()
        .expect("abssctl runs")
}

fn socket_arg(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_owned()
}

#[test]
fn missing_socket_exits_3_naming_the_socket_and_how_to_start_abssd() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_arg(&dir.path().join("abssd.sock"));
    let out = abssctl(&["--socket", &sock, "backup", "list"]);
    assert_exit(&out, 3);
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.starts_with("abssctl: error: "), "{err}");
    assert!(err.contains(&sock), "{err}");
    assert!(err.contains("systemctl start abssd.socket"), "{err}");
    assert!(err.contains("abssd --prefix DIR"), "{err}");
}

#[test]
fn missing_socket_with_json_prints_an_environment_error_document() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_arg(&dir.path().join("abssd.sock"));
    let out = abssctl(&["backup", "show", "some-id", "--json", "--socket", &sock]);
    assert_exit(&out, 3);
    let doc = json_doc(&out);
    assert_eq!(doc["error"]["kind"], "environment", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains(&sock), "{message}");
    assert_eq!(doc.as_object().unwrap().len(), 1, "{doc}");
}

#[test]
fn socket_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_arg(&dir.path().join("from-env.sock"));
    let out = Command::new(env!("CARGO_BIN_EXE_abssctl"))
        .args(["daemon", "status"])
        .env("ABSSD_SOCKET", &sock)
        .output()
        .unwrap();
    assert_exit(&out, 3);
    assert!(text(&out.stderr).contains(&sock), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("deprecated"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_old_socket_variable_is_read_with_a_warning_below_the_new_one_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let old = socket_arg(&dir.path().join("old.sock"));
    let new = socket_arg(&dir.path().join("new.sock"));
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_abssctl"));
        cmd.env_remove("ABSSD_SOCKET").env_remove("ABSSCTL_SOCKET");
        cmd.args(args).envs(env.iter().copied()).output().unwrap()
    };
    let out = run(&[("ABSSCTL_SOCKET", &old)], &["daemon", "status"]);
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains(&old)
            && err.contains("ABSSCTL_SOCKET is deprecated")
            && err.contains("ABSSD_SOCKET"),
        "{err}"
    );
    for (env, args) in [
        (
            &[
                ("ABSSCTL_SOCKET", old.as_str()),
                ("ABSSD_SOCKET", new.as_str()),
            ][..],
            &["daemon", "status"][..],
        ),
        (
            &[("ABSSCTL_SOCKET", old.as_str())][..],
            &["daemon", "status", "--socket", new.as_str()][..],
        ),
    ] {
        let out = run(env, args);
        assert_exit(&out, 3);
        let err = text(&out.stderr);
        assert!(
            err.contains(&new) && !err.contains(&old) && !err.contains("deprecated"),
            "{err}"
        );
    }
}

#[test]
fn stale_socket_is_reported_as_nothing_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap());
    let sock = socket_arg(&path);
    let out = abssctl(&["--socket", &sock, "op", "list"]);
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing is listening on") && err.contains(&sock),
        "{err}"
    );
}

#[test]
fn a_listener_that_is_not_abssd_is_an_environment_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // Accept one connection and hang up at once, as a program that speaks no
    // WebSocket would. Not joined: if abssctl never connected, that would hang.
    thread::spawn(move || drop(listener.accept()));
    let sock = socket_arg(&path);
    let out = abssctl(&["--json", "--socket", &sock, "daemon", "status"]);
    assert_exit(&out, 3);
    let doc = json_doc(&out);
    assert_eq!(doc["error"]["kind"], "environment", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("handshake"),
        "{doc}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["backup", "frobnicate"][..],
        &["backup", "verify"],
        &["backup", "verify", "some-id", "--all"],
        &["backup", "create"],
        &["backup", "create", "alpha", "--compression", "lz4"],
        &["backup", "create", "alpha", "--dry-run", "--detach"],
        &["backup", "restore"],
        &["backup", "restore", "some-id", "--restart", "--no-restart"],
        &[
            "backup",
            "restore",
            "some-id",
            "--dest",
            "/x",
            "--no-restart",
        ],
        &["backup", "restore", "some-id", "--dry-run", "--detach"],
        &["backup", "reconcile", "--adopt"],
        &["backup", "reconcile", "some-id"],
        &["op", "watch"],
        &["--no-such-flag", "daemon", "status"],
    ] {
        let out = abssctl(args);
        assert_exit(&out, 2);
        assert!(
            out.stdout.is_empty(),
            "{args:?}: stdout {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn help_mentions_every_command() {
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--help"],
            &[
                "backup",
                "op",
                "daemon",
                "--socket",
                "--json",
                "ABSSD_SOCKET",
                "Exit codes",
                "reconcile\n       --check found drift",
                "an instance,\n       backup or operation that does not exist",
            ],
        ),
        (
            &["backup", "--help"],
            &["create", "restore", "list", "show", "verify", "reconcile"],
        ),
        (&["op", "--help"], &["list", "watch"]),
        (&["daemon", "--help"], &["status"]),
    ];
    for (args, words) in cases {
        let out = abssctl(args);
        assert_exit(&out, 0);
        let help = text(&out.stdout);
        for word in words {
            assert!(
                help.contains(word),
                "`abssctl {}` lacks {word}:\n{help}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn create_help_explains_every_flag() {
    let out = abssctl(&["backup", "create", "--help"]);
    assert_exit(&out, 0);
    let help = text(&out.stdout);
    for flag in [
        "--message",
        "--label",
        "--data-only",
        "--out-dir",
        "--compression <",
        "--compression-level",
        "--dry-run",
        "--detach",
        "zstd",
        "gzip",
    ] {
        assert!(help.contains(flag), "missing {flag}:\n{help}");
    }
}

#[test]
fn restore_help_explains_the_live_restore_and_every_flag() {
    let out = abssctl(&["backup", "restore", "--help"]);
    assert_exit(&out, 0);
    let help = text(&out.stdout);
    for part in [
        "--instance <NAME>",
        "--dest <PATH>",
        "--dry-run",
        "--no-pre-backup",
        "--backup-message <TEXT>",
        "-y, --yes",
        "--restart",
        "--no-restart",
        "--data-only",
        "--detach",
        // What a live restore does, in order, and what a failure does.
        "stops the instance's unit",
        ".pre-restore-<time>",
        "reinstates the sites-enabled link",
        "everything is rolled back",
        "it changes nothing and exits 2",
    ] {
        assert!(help.contains(part), "missing {part:?}:\n{help}");
    }
}

#[test]
fn reconcile_help_explains_categories_flags_and_exit_codes() {
    let out = abssctl(&["backup", "reconcile", "--help"]);
    assert_exit(&out, 0);
    let help = text(&out.stdout);
    for part in [
        "--instance <NAME>",
        "--apply",
        "--adopt",
        "--verify",
        "--detach",
        // The four categories, the read-only default, the cost, the exit codes.
        "  missing     an index entry whose archive is gone",
        "  orphaned    an archive that no index entry points at",
        "  mismatched  an archive that is present",
        "  missing sidecars  an archive that is present without its .sha256 sidecar",
        "stray\nsidecars",
        "Without --apply it only reads",
        "cheap enough for cron",
        "need an operator",
        "--check",
        "0 when the report ran, whether or not it found drift",
        "With --check: 3 when drift is left after\nthe run",
    ] {
        assert!(help.contains(part), "missing {part:?}:\n{help}");
    }
}

#[test]
fn version_exits_0() {
    let out = abssctl(&["--version"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).starts_with("abssctl "),
        "{}",
        text(&out.stdout)
    );
}
