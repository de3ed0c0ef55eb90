//! `abssctl remote list | test`, `backup pull` and `backup restore --pull` as
//! processes against the real abssd and a real S3 server (moto): exit codes
//! and `--json` documents end to end.

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use abssd_tests::remotes::{self, Remote};
use abssd_tests::s3::S3Server;
use abssd_tests::world::World;
use serde_json::Value;

use crate::common::{self, assert_exit, json_doc, text};

/// Instance alpha, remote `off` (working) and `wrong` (another secret).
struct Host {
    w: World,
    s3: S3Server,
    off: Remote,
}

impl Host {
    fn new() -> Host {
        let s3 = S3Server::start();
        let mut off = None;
        let w = World::with_config(&["alpha"], |sb| {
            let dir = sb.path("etc/abssctl/remotes");
            let good = Remote::of(&s3, &dir, "off", "actual");
            let wrong = Remote::of(&s3, &dir, "wrong", "w")
                .with_credentials(s3.access_key(), "not-the-secret");
            off = Some(good.clone());
            remotes::section(&[&good, &wrong])
        });
        Host {
            w,
            s3,
            off: off.expect("remote"),
        }
    }

    /// `abssctl ARGS`, stdin not a terminal.
    fn abssctl(&self, args: &[&str]) -> Output {
        common::abssctl(&self.w.daemon.socket, args)
    }

    #[track_caller]
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.abssctl(&args);
        assert_exit(&out, code);
        json_doc(&out)
    }

    /// A backup of alpha with a copy in `off`, its local archive lost; its
    /// id, archive and bytes.
    fn lost_backup(&self) -> (String, PathBuf, Vec<u8>) {
        let made = self.json(&["backup", "create", "alpha"], 0)["result"].clone();
        let id = made["id"].as_str().unwrap().to_owned();
        let archive = PathBuf::from(made["archive"].as_str().unwrap());
        remotes::copy_backup(&self.off, &self.w.cfg().index_file, &id);
        let bytes = fs::read(&archive).unwrap();
        fs::remove_file(&archive).unwrap();
        (id, archive, bytes)
    }
}

#[test]
fn remote_list_and_test_exit_by_what_they_found() {
    let h = Host::new();
    let doc = h.json(&["remote", "list"], 0);
    let names: Vec<&str> = doc["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["off", "wrong"]);
    assert_eq!(doc["remotes"][0]["credentials"]["kind"], "file");
    let raw = doc.to_string();
    assert!(
        !raw.contains(h.s3.secret_key()) && !raw.contains("not-the-secret"),
        "{raw}"
    );
    let table = h.abssctl(&["remote", "list"]);
    assert_exit(&table, 0);
    assert!(
        text(&table.stdout).starts_with("off\n  where        s3://abssd-test/actual\n"),
        "{}",
        text(&table.stdout)
    );

    let ok = h.json(&["remote", "test", "off"], 0);
    assert_eq!(ok["ok"], true, "{ok}");
    let failed = h.json(&["remote", "test", "wrong"], 3);
    assert_eq!(failed["ok"], false, "{failed}");
    assert_eq!(failed["steps"][1]["status"], "failed");
    let out = h.abssctl(&["remote", "test", "wrong"]);
    assert_exit(&out, 3);
    assert!(
        text(&out.stdout).contains("refused the secret key"),
        "{}",
        text(&out.stdout)
    );
    let missing = h.json(&["remote", "test", "nope"], 2);
    assert_eq!(missing["error"]["kind"], "not_found", "{missing}");
    assert!(h.s3.list("").is_empty());
}

#[test]
fn backup_pull_brings_the_archive_back() {
    let h = Host::new();
    let (id, archive, bytes) = h.lost_backup();
    let doc = h.json(&["backup", "pull", &id], 0);
    assert_eq!(doc["result"]["outcome"], "pulled", "{doc}");
    assert_eq!(doc["result"]["source"]["remote"], "off");
    assert_eq!(fs::read(&archive).unwrap(), bytes);
    let out = h.abssctl(&["backup", "pull", &id, "--remote", "off"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("already here with the recorded checksum"),
        "{}",
        text(&out.stdout)
    );
    let unknown = h.json(&["backup", "pull", &id, "--remote", "elsewhere"], 2);
    assert_eq!(unknown["error"]["kind"], "not_found", "{unknown}");
}

#[test]
fn restore_pulls_first_only_with_pull_when_there_is_no_terminal() {
    let h = Host::new();
    let (id, archive, bytes) = h.lost_backup();
    let index = fs::read(h.w.cfg().index_file).unwrap();

    let dry = h.json(&["backup", "restore", &id, "--dry-run"], 0);
    assert_eq!(dry["plan"]["pull"]["remote"], "off", "{dry}");
    let plan = h.abssctl(&["backup", "restore", &id, "--dry-run"]);
    assert!(
        text(&plan.stdout).contains("it will first be pulled from remote off"),
        "{}",
        text(&plan.stdout)
    );

    for args in [
        vec!["backup", "restore", id.as_str(), "--yes"],
        vec!["backup", "restore", id.as_str()],
    ] {
        let refused = h.json(&args, 2);
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("--pull"), "{args:?}: {message}");
        assert!(!archive.exists());
        assert_eq!(fs::read(h.w.cfg().index_file).unwrap(), index);
    }

    let done = h.json(&["backup", "restore", &id, "--yes", "--pull"], 0);
    assert_eq!(done["result"]["id"], id.as_str(), "{done}");
    assert_eq!(fs::read(&archive).unwrap(), bytes);
}

#[test]
fn help_explains_remote_pull_and_restore_pull() {
    let h = Host::new();
    for (args, says) in [
        (
            vec!["remote", "test", "--help"],
            "never takes it for a backup",
        ),
        (vec!["remote", "list", "--help"], "Never a key or secret"),
        (vec!["backup", "pull", "--help"], "only if nothing is there"),
        (vec!["backup", "restore", "--help"], "--pull"),
    ] {
        let out = h.abssctl(&args);
        assert_exit(&out, 0);
        let words = text(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(words.contains(says), "{args:?}:\n{}", text(&out.stdout));
    }
}
