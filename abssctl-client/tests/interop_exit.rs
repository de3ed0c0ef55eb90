//! Issue 14 item 11: the exit-code table (README "Exit codes", `abssctl
//! --help`), case by case, through this client against abssd and through the
//! Python abssctl (`abssd_tests::peer`), both on one sandboxed host. Where we
//! follow the Python tool the codes are equal; where it breaks ADR-013 (a lock
//! timeout is an uncaught exception there, exit 1; `verify` of a missing
//! archive exits 0) its answer is pinned too, so a change on its side shows.
//!
//! Here rather than in the tests crate: Cargo sets `CARGO_BIN_EXE_abssctl`
//! only for this crate's tests.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use abssd_tests::peer::PythonPeer;
use abssd_tests::{Daemon, Sandbox};
use serde_json::Value;

use crate::common::{json_doc, text};

/// The longest either tool waits for a lock here: the lock-timeout case
/// holds the global lock file past it.
const LOCK_TIMEOUT: Duration = Duration::from_millis(300);

/// A sandbox with instance `alpha` and the daemon serving it (declared first,
/// so that it stops before the sandbox goes), and the Python tool on it.
struct Host {
    daemon: Daemon,
    sandbox: Sandbox,
    python: PythonPeer,
}

impl Host {
    fn new() -> Host {
        let sandbox = Sandbox::new();
        sandbox.add_instance("alpha");
        let mut config = sandbox.full_config();
        config.daemon.lock_timeout = LOCK_TIMEOUT;
        // No systemd answers here, whatever the machine runs: the systemd
        // case fails reaching it.
        let bus = sandbox.path("no-systemd-bus");
        config.services.bus_address = Some(format!("unix:path={}", bus.display()));
        let daemon = Daemon::start_with(config);
        let python = PythonPeer::new(&sandbox);
        Host {
            daemon,
            sandbox,
            python,
        }
    }

    fn ours(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_abssctl"))
            .arg("--socket")
            .arg(&self.daemon.socket)
            .args(args)
            .output()
            .expect("abssctl runs")
    }

    fn theirs(&self, args: &[&str]) -> Output {
        self.python.run(args)
    }

    /// A backup of alpha made by abssd: its id and archive.
    fn backup(&self) -> (String, String) {
        let out = self.ours(&["backup", "create", "alpha", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let doc = json_doc(&out);
        let field = |k: &str| doc["result"][k].as_str().unwrap().to_owned();
        (field("id"), field("archive"))
    }

    /// A directory for `restore --dest` that neither tool has used.
    fn dest(&self, name: &str) -> String {
        let dir = self.sandbox.config().restores_root.join(name);
        dir.display().to_string()
    }
}

/// The exit code, with both streams in the message when the run has none.
fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

/// One case: our code and the Python tool's, each as the table says.
#[track_caller]
fn case(what: &str, ours: &Output, want_ours: i32, theirs: &Output, want_theirs: i32) {
    assert_eq!(
        code(ours),
        want_ours,
        "{what}: abssctl\nstdout: {}\nstderr: {}",
        text(&ours.stdout),
        text(&ours.stderr)
    );
    assert_eq!(
        code(theirs),
        want_theirs,
        "{what}: the Python abssctl\nstdout: {}\nstderr: {}",
        text(&theirs.stdout),
        text(&theirs.stderr)
    );
}

/// The same arguments through both tools, both expected to answer `want`.
#[track_caller]
fn same(h: &Host, what: &str, args: &[&str], want: i32) {
    case(what, &h.ours(args), want, &h.theirs(args), want);
}

/// The error kind of our `--json` error document.
fn kind(out: &Output) -> String {
    let doc: Value = json_doc(out);
    doc["error"]["kind"].as_str().unwrap_or_default().to_owned()
}

/// Flip bytes in the middle of `archive`: same size, other content.
fn damage(archive: &str) {
    let mut bytes = std::fs::read(archive).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(archive, bytes).unwrap();
}

#[test]
fn exit_2_not_found_usage_missing_and_corrupt_archives() {
    let h = Host::new();
    let ghost = "20250101-000000-alpha-abcdef";

    // Does not exist: an instance, a backup (ADR-013 validation; the Python
    // tool's 2, where abssctl answered 1).
    same(
        &h,
        "create, unknown instance",
        &["backup", "create", "nosuch"],
        2,
    );
    same(&h, "show, unknown backup", &["backup", "show", ghost], 2);
    same(
        &h,
        "verify, unknown backup",
        &["backup", "verify", ghost],
        2,
    );
    let dest = h.dest("ghost");
    same(
        &h,
        "restore, unknown backup",
        &["backup", "restore", ghost, "--dest", &dest],
        2,
    );
    let out = h.ours(&["backup", "show", ghost, "--json"]);
    assert_eq!(kind(&out), "not_found");

    // Bad flags: usage errors.
    same(&h, "create without an instance", &["backup", "create"], 2);
    same(
        &h,
        "an unknown flag",
        &["backup", "list", "--no-such-flag"],
        2,
    );
    same(&h, "an unknown command", &["backup", "frobnicate"], 2);

    // A backup whose archive is gone: restore refuses it (the Python tool's
    // 2; abssctl answered 3).
    let (gone, archive) = h.backup();
    std::fs::remove_file(&archive).unwrap();
    let dest = h.dest("gone");
    let args = ["backup", "restore", &gone, "--dest", &dest];
    same(&h, "restore, missing archive", &args, 2);
    assert!(!Path::new(&dest).exists());

    // A corrupt archive (checksum mismatch): restore refuses it before
    // anything changes (the Python tool's 2; abssctl answered 4).
    let (corrupt, archive) = h.backup();
    damage(&archive);
    let dest = h.dest("corrupt");
    let args = ["backup", "restore", &corrupt, "--dest", &dest];
    same(&h, "restore, corrupt archive", &args, 2);
    assert!(!Path::new(&dest).exists());
    let mut json = args.to_vec();
    json.push("--json");
    assert_eq!(kind(&h.ours(&json)), "validation");
}

#[test]
fn exit_3_and_4_verify_lock_timeout_services_and_reconcile_check() {
    let h = Host::new();

    // verify finds a corrupt archive: 3 in both.
    let (corrupt, archive) = h.backup();
    damage(&archive);
    same(
        &h,
        "verify, corrupt archive",
        &["backup", "verify", &corrupt],
        3,
    );

    // verify finds the archive missing: 3 here; the Python tool records
    // `missing` and exits 0, which would tell cron all is well (ADR-013: 0
    // is success, and the check failed).
    let (gone, archive) = h.backup();
    std::fs::remove_file(&archive).unwrap();
    let args = ["backup", "verify", &gone];
    case(
        "verify, missing archive",
        &h.ours(&args),
        3,
        &h.theirs(&args),
        0,
    );

    // reconcile --check with drift left (the archives above): 3, as verify's
    // finding. The Python tool has no --check.
    let out = h.ours(&["backup", "reconcile", "--check"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));

    // A lock held past lock_timeout: 3 here (busy, an environment problem);
    // the Python tool does not catch its LockTimeoutError and exits 1.
    let lock = h.sandbox.config().global_lock_file();
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let held = File::create(&lock).unwrap();
    held.lock().unwrap();
    let ours = h.ours(&["backup", "create", "alpha", "--json"]);
    let theirs = h.theirs(&["--lock-timeout", "0.3", "backup", "create", "alpha"]);
    drop(held);
    case("lock timeout", &ours, 3, &theirs, 1);
    assert_eq!(kind(&ours), "busy");
    assert!(
        text(&theirs.stderr).contains("LockTimeoutError"),
        "{}",
        text(&theirs.stderr)
    );

    // systemd or nginx fails during a live restore: 4 in both. This daemon
    // has no systemd to talk to; the Python tool's stand-in `nginx -t` fails.
    let (good, _) = h.backup();
    let ours = h.ours(&[
        "backup",
        "restore",
        &good,
        "--yes",
        "--no-pre-backup",
        "--json",
    ]);
    let nginx = h.sandbox.path("python-peer/bin/nginx");
    std::fs::write(&nginx, "#!/bin/sh\necho 'nginx: test failed' >&2\nexit 1\n").unwrap();
    let theirs = h.theirs(&["backup", "restore", &good, "--yes", "--no-pre-backup"]);
    case("systemd / nginx failure", &ours, 4, &theirs, 4);
    assert_eq!(kind(&ours), "service");
    assert!(
        text(&ours.stdout).contains("systemd"),
        "{}",
        text(&ours.stdout)
    );
    assert!(
        text(&theirs.stdout).contains("nginx"),
        "{}",
        text(&theirs.stdout)
    );
}

#[test]
fn a_reconcile_that_ran_exits_0_drift_or_not() {
    let h = Host::new();
    same(&h, "reconcile, in sync", &["backup", "reconcile"], 0);
    let (_, archive) = h.backup();
    std::fs::remove_file(&archive).unwrap();
    // Drift: an entry whose archive is gone. Both report it and exit 0.
    let ours = h.ours(&["backup", "reconcile", "--json"]);
    let theirs = h.theirs(&["backup", "reconcile", "--json"]);
    case("reconcile, drift", &ours, 0, &theirs, 0);
    assert_eq!(json_doc(&ours)["missing"].as_array().unwrap().len(), 1);
    assert_eq!(json_doc(&theirs)["missing"].as_array().unwrap().len(), 1);
    // --check turns drift left into 3, and is 0 once none is left.
    let out = h.ours(&["backup", "reconcile", "--check"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stdout));
    let out = h.ours(&["backup", "reconcile", "--check", "--apply"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
}
