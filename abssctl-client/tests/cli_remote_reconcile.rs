//! `abssctl remote ls` and `abssctl backup reconcile --remote` against the real
//! abssd and a real S3 server (moto, from the `abssd-tests` harness): the
//! table, `--json`, exit codes and help. The bucket is filled by hand through
//! the harness's boto3 view, in the layout `backup push` writes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use abssd_tests::s3::S3Server;
use abssd_tests::{Daemon, Sandbox};
use serde_json::{Value, json};

use crate::common::{assert_exit, json_doc, text};

/// A host with no backups, remote `off` at a fresh server.
struct Host {
    daemon: Daemon,
    sandbox: Sandbox,
    s3: S3Server,
}

impl Host {
    fn new() -> Host {
        let s3 = S3Server::start();
        let sandbox = Sandbox::new();
        sandbox.add_instance("alpha");
        let creds = sandbox.path("etc/abssctl/s3-credentials");
        fs::create_dir_all(creds.parent().unwrap()).unwrap();
        fs::write(
            &creds,
            format!(
                "aws_access_key_id = {}\naws_secret_access_key = {}\n",
                s3.access_key(),
                s3.secret_key()
            ),
        )
        .unwrap();
        fs::set_permissions(&creds, fs::Permissions::from_mode(0o600)).unwrap();
        sandbox.write_abssd_config(&format!(
            "remotes:\n  off:\n    endpoint: {}\n    bucket: {}\n    region: {}\n    prefix: site\n    credentials_file: {}\n",
            s3.endpoint(),
            s3.bucket(),
            s3.region(),
            creds.display()
        ));
        let daemon = Daemon::start(&sandbox);
        Host {
            daemon,
            sandbox,
            s3,
        }
    }

    fn abssctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_abssctl"))
            .args(args)
            .env("ABSSD_SOCKET", &self.daemon.socket)
            .output()
            .expect("abssctl runs")
    }

    /// A backup of `alpha` that only the remote has, as another host pushed
    /// it: archive, sidecar and entry object. Returns its id.
    fn foreign(&self, hex: &str) -> String {
        let id = format!("20261201-030000-alpha-{hex}");
        let file = format!("{id}.tar.zst");
        let archive = b"an archive from elsewhere";
        let sha = sha256(archive);
        let entry = json!({
            "id": id, "instance": "alpha", "created_at": "2026-12-01T03:00:00Z",
            "path": format!("/srv/old/alpha/{file}"), "algorithm": "zstd",
            "size_bytes": archive.len(),
            "checksum": {"algorithm": "sha256", "value": sha},
            "status": "available", "message": "from the old host"
        });
        let view = self.s3.view();
        view.put(&format!("site/alpha/{file}"), archive);
        view.put(
            &format!("site/alpha/{file}.sha256"),
            format!("{sha}  {file}\n").as_bytes(),
        );
        view.put(
            &format!("site/alpha/{id}.json"),
            entry.to_string().as_bytes(),
        );
        id
    }
}

fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, bytes).unwrap();
    let out = Command::new("sha256sum").arg(&file).output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn remote_ls_prints_a_table_and_json() {
    let host = Host::new();
    let id = host.foreign("0a0b0c");
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
    let host = Host::new();
    let id = host.foreign("1a2b3c");

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
