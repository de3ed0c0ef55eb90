//! `abssctl` against the real abssd, started in a sandbox by the `abssd-tests`
//! harness: `--json` shapes (SPEC §9) and exit codes end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use abssd_tests::{Daemon, Sandbox};
use serde_json::{Value, json};

use crate::common::{assert_exit, text};

/// A sandboxed host with instance `alpha`, and a daemon serving it. The daemon is
/// declared first so it stops before the sandbox directory goes away.
struct Host {
    daemon: Daemon,
    sandbox: Sandbox,
}

impl Host {
    fn new() -> Host {
        let sandbox = Sandbox::new();
        sandbox.add_instance("alpha");
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

    /// Run with `--json`, assert the exit code, return the one document on stdout.
    #[track_caller]
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.abssctl(&args);
        assert_exit(&out, code);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}",
                text(&out.stdout)
            )
        })
    }

    /// Create a backup of alpha; its `result`.
    #[track_caller]
    fn create(&self, extra: &[&str]) -> Value {
        let mut args = vec!["backup", "create", "alpha"];
        args.extend_from_slice(extra);
        self.json(&args, 0)["result"].clone()
    }
}

#[track_caller]
fn error_kind(doc: &Value) -> &str {
    doc["error"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error document: {doc}"))
}

#[test]
fn create_list_show_verify_round_trip() {
    let host = Host::new();
    let doc = host.json(
        &[
            "backup",
            "create",
            "alpha",
            "-m",
            "first",
            "--label",
            "nightly,keep",
        ],
        0,
    );
    assert_eq!(doc["plan"]["instance"], "alpha", "{doc}");
    let first = &doc["result"];
    let id = first["id"].as_str().unwrap();
    assert!(id.contains("-alpha-"), "{id}");
    assert_eq!(doc["plan"]["id"], first["id"]);
    assert_eq!(first["labels"], json!(["nightly", "keep"]));
    assert_eq!(first["message"], "first");
    assert_eq!(first["algorithm"], "zstd");
    assert!(first["size_bytes"].as_u64().unwrap() > 0);
    let archive = Path::new(first["archive"].as_str().unwrap());
    assert!(archive.is_file(), "{}", archive.display());
    let checksum = first["checksum"].as_str().unwrap();
    assert_eq!(checksum.len(), 64);
    let sidecar = std::fs::read_to_string(first["checksum_file"].as_str().unwrap()).unwrap();
    let file_name = archive.file_name().unwrap().to_str().unwrap();
    assert_eq!(sidecar, format!("{checksum}  {file_name}\n"));

    let second = host.create(&["--compression", "gzip"]);
    assert_eq!(second["algorithm"], "gzip");

    let list = host.json(&["backup", "list"], 0);
    let ids: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second["id"].as_str().unwrap(), id], "newest first");
    let only_alpha = host.json(&["backup", "list", "--instance", "alpha"], 0);
    assert_eq!(only_alpha["backups"].as_array().unwrap().len(), 2);

    let show = host.json(&["backup", "show", id], 0);
    let entry = &show["backup"];
    assert_eq!(entry["id"], id);
    assert_eq!(entry["instance"], "alpha");
    assert_eq!(entry["status"], "available");
    assert_eq!(entry["checksum"]["value"], checksum);
    assert_eq!(entry["metadata"]["labels"], json!(["nightly", "keep"]));

    let verify = host.json(&["backup", "verify", id], 0);
    assert_eq!(verify["results"].as_array().unwrap().len(), 1, "{verify}");
    assert_eq!(verify["results"][0]["id"], id);
    assert_eq!(verify["results"][0]["status"], "available");
    let all = host.json(&["backup", "verify", "--all"], 0);
    assert_eq!(all["results"].as_array().unwrap().len(), 2, "{all}");

    // The same answers for people.
    let out = host.abssctl(&["backup", "list"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).starts_with("ID "),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains(id));
    let out = host.abssctl(&["backup", "show", id]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("nightly, keep"),
        "{}",
        text(&out.stdout)
    );
}

/// Bytes that would act on a terminal: ESC, BEL, CR, DEL, and the C1 controls
/// (U+0080..U+009F, two bytes in UTF-8).
fn terminal_controls(bytes: &[u8]) -> Vec<String> {
    let text = text(bytes);
    text.chars()
        .filter(|c| c.is_control() && *c != '\n')
        .map(|c| format!("U+{:04X}", u32::from(c)))
        .collect()
}

#[test]
fn control_characters_from_the_daemon_never_reach_the_terminal() {
    let host = Host::new();
    let id = host.create(&["-m", "fine"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The Python tool accepted any message; its index may hold these.
    let index_file = host.sandbox.config().index_file;
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_file).unwrap()).unwrap();
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\rforged\nrow\u{9b}31m\u{7f}";
    let entry = &mut index["backups"][0];
    entry["message"] = json!(hostile);
    entry["metadata"]["labels"] = json!([format!("l{hostile}")]);
    entry["metadata"]["verification_error"] = json!(hostile);
    entry["python_note"] = json!(hostile);
    std::fs::write(&index_file, serde_json::to_vec(&index).unwrap()).unwrap();

    for args in [
        vec!["backup", "list"],
        vec!["backup", "show", id.as_str()],
        vec!["backup", "show", id.as_str(), "--json"],
        vec!["backup", "list", "--json"],
    ] {
        let out = host.abssctl(&args);
        assert_exit(&out, 0);
        assert_eq!(
            terminal_controls(&out.stdout),
            Vec::<String>::new(),
            "{args:?}: {}",
            text(&out.stdout)
        );
        if args.contains(&"--json") {
            // Still the same document.
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            let entry = doc.get("backup").unwrap_or(&doc["backups"][0]);
            assert_eq!(entry["message"], hostile);
        } else {
            assert!(
                text(&out.stdout).contains("\\u{1b}]0;owned"),
                "{args:?}: {}",
                text(&out.stdout)
            );
        }
    }
    let out = host.abssctl(&["backup", "show", id.as_str()]);
    assert!(
        text(&out.stdout).contains("\\rforged\\nrow"),
        "a newline in a message does not start a line of its own: {}",
        text(&out.stdout)
    );
    // An error that quotes what was asked for.
    let out = host.abssctl(&["backup", "show", "x\u{1b}[2J\u{9b}"]);
    assert_exit(&out, 2);
    assert_eq!(
        terminal_controls(&out.stderr),
        Vec::<String>::new(),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn show_unknown_id_exits_2() {
    let host = Host::new();
    let doc = host.json(&["backup", "show", "20250101-000000-alpha-abcdef"], 2);
    assert_eq!(error_kind(&doc), "not_found");
    let out = host.abssctl(&["backup", "show", "20250101-000000-alpha-abcdef"]);
    assert_exit(&out, 2);
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("abssctl: error: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn protect_and_unprotect_show_in_list_and_show_and_an_unknown_id_exits_2() {
    let host = Host::new();
    let id = host.create(&[])["id"].as_str().unwrap().to_owned();
    let doc = host.json(&["backup", "protect", &id], 0);
    assert!(doc["op_id"].is_string(), "{doc}");
    assert_eq!(
        doc["result"],
        json!({"id": id, "protected": true, "changed": true})
    );
    let shown = host.json(&["backup", "show", &id], 0);
    assert_eq!(shown["backup"]["protected"], true, "{shown}");
    let out = host.abssctl(&["backup", "list"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("available (protected)"),
        "{}",
        text(&out.stdout)
    );
    let out = host.abssctl(&["backup", "show", &id]);
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.starts_with("protected") && l.ends_with("yes")),
        "{}",
        text(&out.stdout)
    );
    // Again: it says so, and changes nothing.
    let out = host.abssctl(&["backup", "protect", &id]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("already"),
        "{}",
        text(&out.stdout)
    );

    let doc = host.json(&["backup", "unprotect", &id], 0);
    assert_eq!(doc["result"]["protected"], false, "{doc}");
    let shown = host.json(&["backup", "show", &id], 0);
    assert!(shown["backup"].get("protected").is_none(), "{shown}");

    for verb in ["protect", "unprotect"] {
        let doc = host.json(&["backup", verb, "20250101-000000-alpha-abcdef"], 2);
        assert_eq!(error_kind(&doc), "not_found", "{verb}");
        let doc = host.json(&["backup", verb, "a/b"], 2);
        assert_eq!(error_kind(&doc), "validation", "{verb}");
    }
}

#[test]
fn verify_after_corrupting_the_archive_exits_3() {
    let host = Host::new();
    let result = host.create(&[]);
    let id = result["id"].as_str().unwrap();
    let archive = result["archive"].as_str().unwrap();
    let mut bytes = std::fs::read(archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(archive, bytes).unwrap();

    let verify = host.json(&["backup", "verify", id], 3);
    assert_eq!(verify["results"][0]["status"], "corrupt", "{verify}");
    assert_eq!(
        verify["results"][0]["previous_status"], "available",
        "{verify}"
    );
    let show = host.json(&["backup", "show", id], 0);
    assert_eq!(show["backup"]["status"], "corrupt");
    let out = host.abssctl(&["backup", "verify", "--all"]);
    assert_exit(&out, 3);
}

#[test]
fn create_for_an_unknown_instance_exits_2() {
    let host = Host::new();
    let doc = host.json(&["backup", "create", "nosuch"], 2);
    assert_eq!(error_kind(&doc), "not_found");
}

#[test]
fn bad_names_and_paths_exit_2_and_write_nothing() {
    let host = Host::new();
    let doc = host.json(&["backup", "create", "../x"], 2);
    assert_eq!(error_kind(&doc), "validation");
    let doc = host.json(&["backup", "create", "alpha", "--out-dir", "/etc"], 2);
    assert_eq!(error_kind(&doc), "validation");
    let list = host.json(&["backup", "list"], 0);
    assert_eq!(list["backups"], json!([]));
}

#[test]
fn dry_run_returns_the_plan_and_writes_nothing() {
    let host = Host::new();
    let doc = host.json(&["backup", "create", "alpha", "--dry-run"], 0);
    assert_eq!(doc["plan"]["dry_run"], true, "{doc}");
    assert_eq!(doc["result"], Value::Null);
    assert!(!Path::new(doc["plan"]["archive"].as_str().unwrap()).exists());
    assert_eq!(host.json(&["backup", "list"], 0)["backups"], json!([]));
}

#[test]
fn detached_operations_can_be_listed_and_watched() {
    let host = Host::new();
    let started = host.json(&["backup", "create", "alpha", "--detach"], 0);
    let op_id = started["op_id"].as_str().unwrap();
    let watched = host.json(&["op", "watch", op_id], 0);
    assert_eq!(watched["op_id"], op_id);
    assert!(
        watched["result"]["id"]
            .as_str()
            .unwrap()
            .contains("-alpha-"),
        "{watched}"
    );
    // Watching an ended operation replays it to the same answer.
    assert_eq!(host.json(&["op", "watch", op_id], 0), watched);

    let ops = host.json(&["op", "list"], 0);
    let op = ops["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op_id"] == op_id)
        .unwrap();
    assert_eq!(op["command"], "backup create");
    assert_eq!(op["state"], "succeeded");
    assert_eq!(
        host.json(&["op", "list", "--running"], 0)["operations"],
        json!([])
    );
    assert_eq!(
        error_kind(&host.json(&["op", "watch", "0190abcd-0000-7000-8000-000000000000"], 2)),
        "not_found"
    );
}

#[test]
fn op_list_pages_and_its_hint_asks_the_same_question_further_back() {
    let host = Host::new();
    for _ in 0..3 {
        host.json(&["backup", "reconcile"], 0);
    }
    let out = host.abssctl(&["op", "list", "--limit", "2"]);
    assert_exit(&out, 0);
    let shown = text(&out.stdout);
    let hint = shown
        .lines()
        .find_map(|l| l.strip_prefix("older operations: "))
        .unwrap_or_else(|| panic!("no hint for the next page:\n{shown}"));
    assert!(
        hint.starts_with("abssctl op list --limit 2 --before "),
        "{hint}"
    );
    // Following the hint gives the remaining, older one.
    let before = hint.rsplit(' ').next().unwrap();
    let older = host.json(&["op", "list", "--limit", "2", "--before", before], 0);
    assert_eq!(older["operations"].as_array().unwrap().len(), 1, "{older}");
    // Out of range is refused by the client itself, before any call.
    let out = host.abssctl(&["op", "list", "--limit", "0"]);
    assert_exit(&out, 2);
    // --all: every one, oldest first, no hint.
    let all = host.json(&["op", "list", "--all"], 0);
    let ops = all["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 3, "{all}");
    let started: Vec<&str> = ops
        .iter()
        .map(|o| o["started_at"].as_str().unwrap())
        .collect();
    assert!(started.windows(2).all(|w| w[0] <= w[1]), "{started:?}");
    assert!(all.get("next_before").is_none(), "{all}");
}

#[test]
fn daemon_status_names_its_socket() {
    let host = Host::new();
    let status = host.json(&["daemon", "status"], 0);
    assert_eq!(
        Path::new(status["socket"].as_str().unwrap()),
        host.daemon.socket
    );
    assert!(status["pid"].as_u64().unwrap() > 0);
    let out = host.abssctl(&["daemon", "status"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).starts_with("abssd "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn reconcile_exits_3_on_drift_until_applied_and_prints_the_categories() {
    let host = Host::new();
    let made = host.create(&[]);
    assert_eq!(
        host.json(&["backup", "reconcile"], 0)["unresolved"],
        json!(0)
    );
    std::fs::remove_file(made["archive"].as_str().unwrap()).unwrap();

    // A reconcile that ran exits 0, drift or not (the Python tool's code);
    // --check exits 3 while drift is left.
    let out = host.abssctl(&["backup", "reconcile"]);
    assert_exit(&out, 0);
    let table = text(&out.stdout);
    assert!(table.contains("missing (1)"), "{table}");
    assert!(table.contains(made["id"].as_str().unwrap()), "{table}");
    assert!(table.contains("orphaned (0)"), "{table}");

    assert_exit(&host.abssctl(&["backup", "reconcile", "--check"]), 3);
    let doc = host.json(&["backup", "reconcile", "--check"], 3);
    assert_eq!(doc["missing"][0]["id"], made["id"]);
    assert_eq!(doc["missing"][0]["action"], "mark missing");
    assert!(doc["op_id"].is_string());
    for key in ["orphaned", "mismatched"] {
        assert_eq!(doc[key], json!([]), "{key}");
    }

    let doc = host.json(&["backup", "reconcile", "--apply"], 0);
    assert_eq!(doc["applied"][0]["status"], "missing");
    assert_eq!(
        host.json(&["backup", "reconcile", "--check"], 0)["known_missing"],
        1
    );
}

#[test]
fn short_i_is_instance_for_list_reconcile_and_restore() {
    let host = Host::new();
    let made = host.create(&[]);
    let id = made["id"].as_str().unwrap();
    let listed = |name: &str| {
        host.json(&["backup", "list", "-i", name], 0)["backups"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((listed("alpha"), listed("beta")), (1, 0));

    // -i is the guard against a wrong id: refused for another instance.
    let dest = host.sandbox.config().restores_root.join("alpha-i");
    let dest = dest.to_str().unwrap();
    let doc = host.json(&["backup", "restore", id, "-i", "beta", "--dest", dest], 2);
    assert_eq!(error_kind(&doc), "validation", "{doc}");
    assert!(!Path::new(dest).exists());

    // -i scopes reconcile: alpha's drift is not beta's.
    std::fs::remove_file(made["archive"].as_str().unwrap()).unwrap();
    assert_eq!(
        host.json(&["backup", "reconcile", "-i", "beta"], 0)["unresolved"],
        0
    );
    let doc = host.json(&["backup", "reconcile", "-i", "alpha", "--check"], 3);
    assert_eq!(doc["missing"][0]["id"], id, "{doc}");
}

#[test]
fn dest_restore_with_no_pre_backup_runs_and_takes_no_backup() {
    let host = Host::new();
    let id = host.create(&[])["id"].as_str().unwrap().to_owned();
    let dest = host.sandbox.config().restores_root.join("alpha-copy");
    let dest_arg = dest.to_str().unwrap();

    let plan = host.json(
        &[
            "backup",
            "restore",
            &id,
            "-i",
            "alpha",
            "--dest",
            dest_arg,
            "--no-pre-backup",
            "--dry-run",
        ],
        0,
    );
    assert_eq!(plan["plan"]["mode"], "dest", "{plan}");
    assert_eq!(plan["plan"]["pre_backup_dir"], Value::Null, "{plan}");
    let out = host.abssctl(&[
        "backup",
        "restore",
        &id,
        "--dest",
        dest_arg,
        "--no-pre-backup",
        "--dry-run",
    ]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout)
            .contains("pre-restore backup:  none (a --dest restore changes nothing live)"),
        "{}",
        text(&out.stdout)
    );

    let doc = host.json(
        &[
            "backup",
            "restore",
            &id,
            "--dest",
            dest_arg,
            "--no-pre-backup",
        ],
        0,
    );
    assert_eq!(
        Path::new(doc["result"]["destination"].as_str().unwrap()),
        dest,
        "{doc}"
    );
    let data = host.sandbox.config().instance_root.join("alpha/data");
    assert_eq!(
        std::fs::read(dest.join("user-files/budget-1/db.sqlite")).ok(),
        Some(std::fs::read(data.join("user-files/budget-1/db.sqlite")).unwrap()),
    );
    assert!(dest.join("server-files").is_dir());
    // Still the one backup: no pre-restore backup was taken.
    let list = host.json(&["backup", "list"], 0);
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list}");
}

/// Turn the entry `id` into what the Python tool's `backup prune` leaves:
/// archive and sidecar deleted, `status: removed` and `removed_at` set, the
/// index written as its `json.dump(indent=2)` plus a newline. Returns the
/// entry as written.
fn prune_like_python(host: &Host, id: &str) -> Value {
    let index_file = host.sandbox.config().index_file;
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_file).unwrap()).unwrap();
    let entry = index["backups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["id"] == id)
        .unwrap();
    let archive = entry["path"].as_str().unwrap().to_owned();
    std::fs::remove_file(&archive).unwrap();
    std::fs::remove_file(format!("{archive}.sha256")).unwrap();
    entry["status"] = json!("removed");
    entry["removed_at"] = json!("2025-11-08T12:00:00Z");
    let pruned = entry.clone();
    let mut bytes = serde_json::to_vec_pretty(&index).unwrap();
    bytes.push(b'\n');
    std::fs::write(&index_file, bytes).unwrap();
    pruned
}

/// The index entry `id`, as text in the file's key order.
fn entry_text(host: &Host, id: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(host.sandbox.config().index_file).unwrap()).unwrap();
    let entry = index["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap();
    serde_json::to_string(entry).unwrap()
}

#[test]
fn a_python_pruned_entry_is_not_drift_and_shows_as_removed() {
    let host = Host::new();
    let pruned_id = host.create(&[])["id"].as_str().unwrap().to_owned();
    let kept = host.create(&[]);
    let pruned = prune_like_python(&host, &pruned_id);
    let index_file = host.sandbox.config().index_file;
    let before = std::fs::read(&index_file).unwrap();

    // Read-only: no drift, nothing known missing.
    let doc = host.json(&["backup", "reconcile"], 0);
    assert_eq!(doc["unresolved"], 0, "{doc}");
    assert_eq!(doc["missing"], json!([]), "{doc}");
    assert_eq!(doc["mismatched"], json!([]), "{doc}");
    assert_eq!(doc["stray_sidecars"], json!([]), "{doc}");
    assert_eq!(doc["known_missing"], 0, "{doc}");
    // --apply has nothing to write: the file is as the Python tool left it.
    let doc = host.json(&["backup", "reconcile", "--apply"], 0);
    assert_eq!(doc["applied"], json!([]), "{doc}");
    assert_eq!(std::fs::read(&index_file).unwrap(), before);

    // Drift elsewhere makes --apply write the index: the pruned entry keeps
    // every key and value, in order.
    std::fs::remove_file(kept["archive"].as_str().unwrap()).unwrap();
    let doc = host.json(&["backup", "reconcile", "--apply"], 0);
    assert_eq!(doc["applied"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["applied"][0]["id"], kept["id"], "{doc}");
    assert_eq!(
        entry_text(&host, &pruned_id),
        serde_json::to_string(&pruned).unwrap()
    );

    // list and show say removed.
    let list = host.json(&["backup", "list"], 0);
    let row = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == pruned_id.as_str())
        .unwrap();
    assert_eq!(row["status"], "removed", "{list}");
    assert_eq!(row["removed_at"], "2025-11-08T12:00:00Z", "{list}");
    let out = host.abssctl(&["backup", "list"]);
    assert_exit(&out, 0);
    let table = text(&out.stdout);
    let line = table.lines().find(|l| l.starts_with(&pruned_id)).unwrap();
    assert!(line.split_whitespace().any(|w| w == "removed"), "{table}");
    let out = host.abssctl(&["backup", "show", &pruned_id]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("removed 2025-11-08T12:00:00Z (pruned"),
        "{}",
        text(&out.stdout)
    );
}

/// `backup prune`: the dry run shows every backup with its decision and
/// changes nothing; without a terminal and without --yes it refuses (exit 2);
/// with --yes it removes what the plan said; with no rule at all it refuses.
#[test]
fn prune_plans_asks_and_removes_only_what_no_rule_keeps() {
    let host = Host::new();
    let first = host.create(&[])["id"].as_str().unwrap().to_owned();
    let second = host.create(&[])["id"].as_str().unwrap().to_owned();
    let statuses = |host: &Host| -> Vec<(String, String)> {
        let list = host.json(&["backup", "list"], 0);
        let mut got: Vec<(String, String)> = list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["id"].as_str().unwrap().to_owned(),
                    b["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        got.sort();
        got
    };
    let before = statuses(&host);

    let plan = host.json(&["backup", "prune", "--keep-last", "1", "--dry-run"], 0);
    let backups = plan["plan"]["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{plan}");
    let removed: Vec<&str> = backups
        .iter()
        .filter(|b| b["keep"] == json!(false))
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(removed.len(), 1, "{plan}");
    assert!([first.as_str(), second.as_str()].contains(&removed[0]));
    assert!(plan["result"].is_null());
    assert_eq!(statuses(&host), before, "a dry run changes nothing");
    let human = host.abssctl(&["backup", "prune", "--keep-last", "1", "--dry-run"]);
    assert_exit(&human, 0);
    let shown = text(&human.stdout);
    assert!(
        shown.contains("REMOVE") && shown.contains("keep"),
        "{shown}"
    );
    assert!(shown.contains("1 kept, 1 to remove"), "{shown}");

    // No terminal here, no --yes: refused before anything was asked for.
    let refused = host.json(&["backup", "prune", "--keep-last", "1"], 2);
    assert_eq!(error_kind(&refused), "validation", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--yes"),
        "{refused}"
    );
    assert_eq!(statuses(&host), before);

    let done = host.json(&["backup", "prune", "--keep-last", "1", "--yes"], 0);
    let items = done["result"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{done}");
    assert_eq!(items[0]["id"], json!(removed[0]));
    assert_eq!(items[0]["removed"], json!(true));
    let after = statuses(&host);
    for (id, status) in &after {
        let want = if id == removed[0] {
            "removed"
        } else {
            "available"
        };
        assert_eq!(status, want, "{after:?}");
    }

    // No rule on the command line and none in abssd.yml: refused.
    let empty = host.json(&["backup", "prune", "--dry-run"], 2);
    assert_eq!(error_kind(&empty), "validation", "{empty}");
}

/// A backup prune should remove and cannot (its archive is no longer a
/// regular file) is kept, says why for programs too, and the prune exits 3:
/// a nightly timer must not report success.
#[test]
fn a_prune_that_could_not_remove_a_backup_exits_3() {
    let host = Host::new();
    // Both archives become directories: made in one second, which of the two
    // the policy removes is their ids' order.
    let archives: Vec<PathBuf> = [host.create(&[]), host.create(&[])]
        .iter()
        .map(|made| PathBuf::from(made["archive"].as_str().unwrap()))
        .collect();
    for archive in &archives {
        std::fs::remove_file(archive).unwrap();
        std::fs::create_dir(archive).unwrap();
    }
    let done = host.json(&["backup", "prune", "--keep-last", "1", "--yes"], 3);
    let items = done["result"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{done}");
    assert_eq!(items[0]["removed"], json!(false), "{done}");
    assert_eq!(items[0]["kept"], json!("failed"), "{done}");
    assert!(archives.iter().all(|a| a.is_dir()));
}

/// Add `n` copies of the index's one entry, a minute apart and older than it.
fn clone_entries(host: &Host, n: usize) {
    let file = host.sandbox.config().index_file;
    let mut raw: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let backups = raw["backups"].as_array_mut().unwrap();
    let real = backups[0].clone();
    let base: jiff::Timestamp = real["created_at"].as_str().unwrap().parse().unwrap();
    for i in 1..=n {
        let at = base - jiff::SignedDuration::from_mins(i as i64);
        let mut e = real.clone();
        e["id"] = json!(format!("{}-alpha-{i:06x}", at.strftime("%Y%m%d-%H%M%S")));
        e["created_at"] = json!(at.to_string());
        backups.push(e);
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&raw).unwrap()).unwrap();
}

/// The rows of a `backup list` table (without its header) and its hint.
fn rows_and_hint(out: &Output) -> (Vec<String>, Option<String>) {
    let shown = text(&out.stdout);
    let mut lines: Vec<String> = shown.lines().skip(1).map(str::to_owned).collect();
    let hint = lines
        .last()
        .filter(|l| l.contains(" backups shown; all: "))
        .cloned();
    if hint.is_some() {
        lines.pop();
    }
    (lines, hint)
}

#[test]
fn list_shows_the_newest_page_with_a_hint_and_json_gives_every_backup() {
    let host = Host::new();
    host.create(&[]);
    clone_entries(&host, 120);

    // For people: the newest 50, and how to see the rest.
    let out = host.abssctl(&["backup", "list", "-i", "alpha"]);
    assert_exit(&out, 0);
    let (rows, hint) = rows_and_hint(&out);
    assert_eq!(rows.len(), 50, "{}", text(&out.stdout));
    let hint = hint.expect("a hint under a partial page");
    assert!(
        hint.starts_with(
            "50 newest of 121 backups shown; all: abssctl backup list --instance=alpha --all; next page: abssctl backup list --instance=alpha --cursor="
        ),
        "{hint}"
    );
    // Following the hints reads every backup once.
    let mut seen: Vec<String> = rows.clone();
    let mut next = hint;
    loop {
        let command = next
            .split("; next page: abssctl ")
            .nth(1)
            .unwrap()
            .to_owned();
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = host.abssctl(&args);
        assert_exit(&out, 0);
        let (rows, hint) = rows_and_hint(&out);
        seen.extend(rows);
        match hint {
            Some(h) => {
                assert!(h.contains(" more of 121 backups shown"), "{h}");
                next = h;
            }
            None => break,
        }
    }
    // With --limit, the next page keeps it and "all" leaves it out; a value
    // that starts like a flag goes as --flag=value.
    let out = host.abssctl(&["backup", "list", "--limit", "7"]);
    let (rows, hint) = rows_and_hint(&out);
    assert_eq!(rows.len(), 7);
    let hint = hint.unwrap();
    assert!(
        hint.contains(
            "all: abssctl backup list --all; next page: abssctl backup list --limit=7 --cursor="
        ),
        "{hint}"
    );
    let out = host.abssctl(&["backup", "list", "--label=-odd"]);
    assert_exit(&out, 0);
    assert_eq!(
        rows_and_hint(&out),
        (vec![], None),
        "no backup has that label"
    );
    let ids: Vec<&str> = seen
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (121, 121));

    // --all: every row, no hint.
    let out = host.abssctl(&["backup", "list", "--all"]);
    let (rows, hint) = rows_and_hint(&out);
    assert_eq!((rows.len(), hint), (121, None));

    // --json: every backup unless a page is asked for.
    let all = host.json(&["backup", "list"], 0);
    assert_eq!(all["backups"].as_array().unwrap().len(), 121);
    assert_eq!(all["total"], 121);
    let first = host.json(&["backup", "list", "--limit", "5"], 0);
    assert_eq!(first["backups"].as_array().unwrap().len(), 5);
    assert_eq!(first["total"], 121);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = host.json(&["backup", "list", "--limit", "5", "--cursor", cursor], 0);
    assert_eq!(second["backups"][0]["id"], all["backups"][5]["id"]);
    // Filters go to the daemon; a bad one changes nothing and exits 2.
    let none = host.json(&["backup", "list", "--status", "missing"], 0);
    assert_eq!(none["total"], 0);
    let out = host.abssctl(&["backup", "list", "--since", "soon"]);
    assert_exit(&out, 2);
    assert!(text(&out.stderr).contains("since"), "{}", text(&out.stderr));
    let out = host.abssctl(&["backup", "list", "--all", "--limit", "3"]);
    assert_exit(&out, 2);
}
