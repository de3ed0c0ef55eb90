//! `abssctl remote ls` and `abssctl backup reconcile --remote` against the real
//! abssd and a real S3 server (moto, from the `abssd-tests` harness): the
//! table, `--json`, exit codes and help. The bucket is filled in the layout
//! `backup push` writes by the harness's `remotes` helpers.

use std::fs;
use std::process::Command;

use abssd_tests::remotes::{self, Remote};
use serde_json::{Value, json};

use crate::common::{S3Host, assert_exit, json_doc, text};

/// A host with no backups, remote `off` (prefix `site`) at a fresh server.
fn host() -> S3Host {
    S3Host::new(|s3, dir| vec![Remote::of(s3, dir, "off", "site")])
}

/// A backup of `alpha` that only `host`'s remote has, as another host
/// pushed it: archive, sidecar and entry object. Returns its id.
fn foreign(host: &S3Host) -> String {
    let off = host
        .sandbox
        .full_config()
        .remotes
        .pick(Some("off"))
        .unwrap()
        .clone();
    remotes::plant_foreign(
        &off,
        "alpha",
        b"an archive from elsewhere",
        "from the old host",
    )
    .id
}

#[test]
fn remote_ls_prints_a_table_and_json() {
    let host = host();
    let id = foreign(&host);
    host.s3.view().put("site/notes.txt", b"not a backup");

    let out = host.abssctl(&["remote", "ls", "off"]);
    assert_exit(&out, 0);
    let table = text(&out.stdout);
    for part in [
        "INSTANCE  ID",
        "RECORDED",
        &id,
        "1 other key(s) are not objects abssd writes: site/notes.txt",
    ] {
        assert!(table.contains(part), "missing {part:?}:\n{table}");
    }
    let row = table.lines().find(|l| l.contains(&id)).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["alpha", &id, "25", "B", "no", "yes", "yes", "no", "no"],
        "{table}"
    );

    let out = host.abssctl(&["remote", "ls", "off", "-i", "alpha", "--json"]);
    assert_exit(&out, 0);
    let doc = json_doc(&out);
    assert_eq!(doc["backups"][0]["id"], json!(id), "{doc}");
    assert_eq!(doc["backups"][0]["in_index"], json!(false));
    assert_eq!(doc["keys_scanned"], json!(3));
    assert_eq!(doc["unplaced"], json!(0));

    // An unknown remote: not found, exit 2, naming the configured one.
    let out = host.abssctl(&["remote", "ls", "nowhere", "--json"]);
    assert_exit(&out, 2);
    let doc = json_doc(&out);
    assert_eq!(doc["error"]["kind"], "not_found", "{doc}");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("off"),
        "{doc}"
    );
}

#[test]
fn reconcile_remote_reports_adopts_and_exits_as_a_local_reconcile() {
    let host = host();
    let id = foreign(&host);

    let out = host.abssctl(&["backup", "reconcile", "--remote", "off"]);
    assert_exit(&out, 0);
    let report = text(&out.stdout);
    for part in [
        "remote:",
        "off: s3://",
        "orphaned (1): only in remote off",
        &id,
    ] {
        assert!(report.contains(part), "missing {part:?}:\n{report}");
    }
    assert_exit(
        &host.abssctl(&["backup", "reconcile", "--remote", "off", "--check"]),
        3,
    );

    let out = host.abssctl(&[
        "backup",
        "reconcile",
        "--remote",
        "off",
        "--apply",
        "--adopt",
        "--check",
        "--json",
    ]);
    assert_exit(&out, 0);
    let doc = json_doc(&out);
    assert_eq!(doc["adopted"][0]["id"], json!(id), "{doc}");
    assert_eq!(doc["adopted"][0]["status"], "missing");
    let index: Value =
        serde_json::from_slice(&fs::read(host.sandbox.config().index_file).unwrap()).unwrap();
    let entry = &index["backups"][0];
    assert_eq!(entry["id"], json!(id));
    assert_eq!(entry["message"], "from the old host");
    assert_eq!(
        entry["remotes"][0]["key"],
        json!(format!("site/alpha/{id}.tar.zst"))
    );

    let out = host.abssctl(&["backup", "reconcile", "--remote", "off", "--check"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("in sync: the index and remote off agree"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn remote_flags_are_checked_and_explained() {
    for args in [
        &["remote", "ls"][..],
        &["remote", "frobnicate"],
        &["backup", "reconcile", "--remote", "off", "--verify"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_abssctl"))
            .args(args)
            .output()
            .unwrap();
        assert_exit(&out, 2);
        assert!(text(&out.stderr).starts_with("error: "), "{args:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_abssctl"))
        .args(["remote", "ls", "--help"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let help = text(&out.stdout);
    for part in [
        "one row per backup",
        "1,000,000",
        "--instance <NAME>",
        "reconcile --remote NAME --apply --adopt",
        "Operators only",
    ] {
        assert!(help.contains(part), "missing {part:?}:\n{help}");
    }
}
