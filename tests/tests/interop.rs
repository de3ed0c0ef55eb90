//! The Python abssctl itself (tests/src/peer.rs) and abssd on one prefix, each
//! reading and restoring what the other wrote: the same config, registry, index
//! and backups root, as on a host that runs both.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupReconcile};
use abssd_proto::*;
use abssd_tests::inspect::{Node, snapshot};
use abssd_tests::peer::PythonPeer;
use abssd_tests::world::{World, no_pre, restore};
use abssd_tests::{Daemon, Sandbox, client};
use jsonrpsee::core::client::Client;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lists_shows_and_verifies_an_abssd_backup() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let params = CreateParams {
        instance: "alpha".into(),
        ..Default::default()
    };
    let r = call::<BackupCreate>(&c, &params)
        .await
        .unwrap()
        .result
        .unwrap();

    let py = PythonPeer::new(&sb);
    assert_eq!(py.backup_ids(), [r.id.as_str()]);
    let shown = py.json(&["backup", "show", &r.id, "--json"]);
    assert_eq!(
        shown["backup"]["checksum"]["value"].as_str(),
        Some(r.checksum.as_str()),
        "{shown}"
    );

    let out = py.run(&["backup", "verify", &r.id]);
    assert!(out.status.success(), "{}", text(&out));

    // A damaged archive is caught by the Python tool's verify too.
    let mut bytes = fs::read(&r.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&r.archive, bytes).unwrap();
    let out = py.run(&["backup", "verify", &r.id]);
    assert!(!out.status.success(), "{}", text(&out));
}

/// The paths whose node differs between two snapshots (kind, mode, owner,
/// content; mtimes too, since both tools keep them).
fn differences(a: &BTreeMap<PathBuf, Node>, b: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    let keys: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let brief =
                |n: Option<&Node>| n.map(|n| (n.0, format!("{:o}", n.1), n.2, n.3, n.4, n.5.len()));
            format!(
                "{}: {:?} != {:?}",
                k.display(),
                brief(a.get(k)),
                brief(b.get(k))
            )
        })
        .collect()
}

/// `after` is `before` but for the one thing the Python tool changes in every
/// backup or restore it makes (its copies follow symlinks): the data's
/// `current` symlink came back as a directory holding copies of what it
/// pointed to. Everything else (content, modes, owners, mtimes) is the same.
fn assert_same_but_the_symlink_copied(
    after: &BTreeMap<PathBuf, Node>,
    before: &BTreeMap<PathBuf, Node>,
) {
    let link = PathBuf::from("data/current");
    assert_eq!(before[&link].0, 'l', "the fixture has the symlink");
    assert_eq!(after.get(&link).map(|n| n.0), Some('d'), "{after:?}");
    let mut copied = 0;
    for (path, node) in after {
        if let Ok(rest) = path.strip_prefix(&link) {
            if rest.as_os_str().is_empty() {
                continue;
            }
            let target = PathBuf::from("data/user-files/budget-1").join(rest);
            assert_eq!(node.5, before[&target].5, "{}", path.display());
            copied += 1;
        }
    }
    assert_eq!(copied, 2, "{after:?}");
    let outside = |m: &BTreeMap<PathBuf, Node>| -> BTreeMap<PathBuf, Node> {
        m.iter()
            .filter(|(p, _)| !p.starts_with(&link))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect()
    };
    assert_eq!(
        differences(&outside(after), &outside(before)),
        Vec::<String>::new()
    );
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The instance's data root as both tools see it (`paths.root`).
fn root(w: &World) -> std::path::PathBuf {
    w.cfg().instance_root.join("alpha")
}

/// What a restore must undo: the data changed, a file added, one removed.
fn vandalize(w: &World) {
    let data = root(w).join("data");
    fs::write(data.join("user-files/budget-1/db.sqlite"), b"overwritten").unwrap();
    fs::write(data.join("new-file"), b"added later").unwrap();
    fs::remove_file(data.join("server-files/secret.key")).unwrap();
}

async fn reconcile(c: &Client) -> ReconcileResult {
    call::<BackupReconcile>(c, &ReconcileParams::default())
        .await
        .unwrap()
        .result
        .unwrap()
}

/// The Python tool's reconcile report, asserted clean: no entry without its
/// archive, no archive without its entry, no mismatch.
fn assert_python_reconcile_clean(py: &PythonPeer) {
    let report = py.json(&["backup", "reconcile", "--json"]);
    for key in ["missing", "orphaned", "mismatched"] {
        let items = report[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {report}"));
        assert!(items.is_empty(), "python reconcile {key}: {report}");
    }
}

/// The Python tool on the world's prefix, reading the very config.yml the
/// daemon reads (abssd's own keys are in abssd.yml beside it).
fn python(w: &World) -> PythonPeer {
    PythonPeer::reading_config_yml(&w.sb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_backup_restores_under_abssd_and_both_reconcile_clean() {
    let w = World::python(&["alpha"]);
    let c = w.client().await;
    let py = python(&w);
    let before = snapshot(&root(&w));

    let created = py.json(&["backup", "create", "alpha", "--json"]);
    let id = created["result"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {created}"))
        .to_owned();

    vandalize(&w);
    assert_ne!(snapshot(&root(&w)), before);
    let r = restore(&c, &no_pre(&id)).await.unwrap().result.unwrap();
    // The Python tool's archive holds `current` as a directory (its copy
    // followed the symlink); the restore brings back exactly what it holds.
    let listing = abssd_tests::tar(&[
        "--zstd",
        "-tvf",
        created["result"]["archive"].as_str().unwrap(),
    ]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('d') && l.ends_with("/data/current/")),
        "{listing}"
    );
    assert_same_but_the_symlink_copied(&snapshot(&root(&w)), &before);
    assert!(r.warnings.is_empty(), "{r:?}");

    let ours = reconcile(&c).await;
    assert!(ours.in_sync(), "{ours:?}");
    assert_python_reconcile_clean(&py);
    // Our restore annotation does not make the Python tool's verify refuse it.
    let out = py.run(&["backup", "verify", &id]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abssd_backup_restores_under_python_and_both_reconcile_clean() {
    let w = World::python(&["alpha"]);
    let c = w.client().await;
    let py = python(&w);
    let before = snapshot(&root(&w));
    let r = abssd_tests::backup(&c, "alpha").await;

    vandalize(&w);
    let out = py.run(&[
        "backup",
        "restore",
        &r.id,
        "--yes",
        "--no-pre-backup",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // It says what it did in a line of text before the JSON.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = &stdout[stdout.find('{').unwrap_or_else(|| panic!("{}", text(&out)))..];
    let restored: Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(restored["plan"]["status"], "restored", "{restored}");
    // abssd's archive keeps the symlink as a link (GNU tar agrees); the
    // Python tool's restore copies through it.
    let listing = abssd_tests::tar(&["--zstd", "-tvf", &r.archive]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.contains("/data/current -> user-files/budget-1")),
        "{listing}"
    );
    assert_same_but_the_symlink_copied(&snapshot(&root(&w)), &before);

    let ours = reconcile(&c).await;
    assert!(ours.in_sync(), "{ours:?}");
    assert_python_reconcile_clean(&py);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_python_prune_removed_is_not_drift_to_abssd() {
    let w = World::python(&["alpha"]);
    let c = w.client().await;
    let py = python(&w);
    let ours = abssd_tests::backup(&c, "alpha").await;
    let created = py.json(&["backup", "create", "alpha", "--json"]);
    let theirs = created["result"]["id"].as_str().unwrap().to_owned();

    // Everything older than "now": the Python tool removes both archives and
    // marks both entries removed.
    let out = py.run(&["backup", "prune", "--older-than", "0", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!std::path::Path::new(&ours.archive).exists());
    let listed = call::<abssd_proto::methods::BackupList>(&c, &ListParams::default())
        .await
        .unwrap();
    let mut seen: Vec<(String, String)> = listed
        .backups
        .iter()
        .map(|b| (b.id.clone(), b.status.clone()))
        .collect();
    seen.sort();
    let mut want = vec![
        (ours.id.clone(), "removed".to_owned()),
        (theirs.clone(), "removed".to_owned()),
    ];
    want.sort();
    assert_eq!(seen, want);

    // Intended, not drift: verify --all passes them by, and verify of one
    // of them says why there is nothing to verify; neither writes anything.
    let before = w.index();
    let all = call::<abssd_proto::methods::BackupVerify>(
        &c,
        &VerifyParams {
            all: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(all.result.unwrap().results.is_empty());
    let one = call::<abssd_proto::methods::BackupVerify>(
        &c,
        &VerifyParams {
            id: Some(ours.id.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(one.kind, ErrorKind::Validation, "{one:?}");
    assert!(one.message.contains("removed"), "{one:?}");
    assert_eq!(w.index(), before);

    // Reconcile reports them clean, and --apply leaves the index as it is.
    let report = reconcile(&c).await;
    assert!(report.in_sync() && report.unresolved == 0, "{report:?}");
    let applied = call::<BackupReconcile>(
        &c,
        &ReconcileParams {
            apply: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .result
    .unwrap();
    assert_eq!(applied.updates_applied, 0, "{applied:?}");
    assert_eq!(w.index(), before);
    // (The Python tool's own reconcile lists its removed entries as missing:
    // its prune and its reconcile disagree; ours follows its prune.)
}
