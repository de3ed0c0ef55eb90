//! `backup reconcile` end to end: the real daemon on its socket, archives from
//! our writer and from GNU tar in the Python tool's layout, and the index file
//! read back from disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupReconcile, BackupRestore};
use abssd_proto::*;
use abssd_tests::hooks::Gate;
use abssd_tests::inspect::{events_of, snapshot_content};
use abssd_tests::python::{assert_python_time, python_style_archive, register_python_entry};
use abssd_tests::{Daemon, Sandbox, backup, client, serial};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

/// Flags of one run.
#[derive(Clone, Copy, Default)]
struct Flags {
    apply: bool,
    adopt: bool,
    verify: bool,
}

const READ: Flags = Flags {
    apply: false,
    adopt: false,
    verify: false,
};
const APPLY: Flags = Flags {
    apply: true,
    adopt: false,
    verify: false,
};

async fn reconcile(
    c: &Client,
    instance: Option<&str>,
    flags: Flags,
) -> (String, ReconcilePlan, ReconcileResult) {
    let params = ReconcileParams {
        instance: instance.map(str::to_owned),
        apply: flags.apply,
        adopt: flags.adopt,
        verify: flags.verify,
        deep: false,
        detach: false,
        remote: None,
    };
    let out = call::<BackupReconcile>(c, &params).await.unwrap();
    (out.op_id, out.plan.unwrap(), out.result.unwrap())
}

fn ids(items: &[ReconcileItem]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

fn index(sb: &Sandbox) -> Value {
    serde_json::from_slice(&fs::read(sb.config().index_file).unwrap()).unwrap()
}

fn entry<'a>(index: &'a Value, id: &str) -> &'a Value {
    index["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the index"))
}

fn set_entry(sb: &Sandbox, id: &str, key: &str, value: Value) {
    let mut idx = index(sb);
    for e in idx["backups"].as_array_mut().unwrap() {
        if e["id"] == id {
            e[key] = value.clone();
        }
    }
    fs::write(
        sb.config().index_file,
        serde_json::to_vec_pretty(&idx).unwrap(),
    )
    .unwrap();
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_in_step_with_the_disk_reports_nothing_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.add_instance("beta");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    backup(&c, "alpha").await;
    backup(&c, "beta").await;
    let before = fs::read(sb.config().index_file).unwrap();

    for flags in [
        READ,
        APPLY,
        Flags {
            verify: true,
            ..APPLY
        },
    ] {
        let (_, plan, r) = reconcile(&c, None, flags).await;
        assert_eq!((plan.archives, plan.index_entries), (2, 2));
        assert!(r.in_sync(), "{r:?}");
        assert_eq!(r.unresolved, 0);
        assert!(r.stray_sidecars.is_empty());
        if !flags.verify {
            assert_eq!(r.applied.as_deref().map(<[_]>::len).unwrap_or(0), 0);
            assert_eq!(fs::read(sb.config().index_file).unwrap(), before);
        }
    }
    // --verify --apply records the re-hash like `backup verify`.
    let after = index(&sb);
    for e in after["backups"].as_array().unwrap() {
        assert_eq!(e["status"], "available");
        assert!(e["verified_at"].is_string(), "{e}");
        assert!(e.get("reconciled_at").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_archive_is_reported_then_marked_and_welcomed_back() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let keep = backup(&c, "alpha").await;
    let gone = backup(&c, "alpha").await;
    let saved = sb.path("saved.tar.zst");
    fs::rename(&gone.archive, &saved).unwrap();
    let before = fs::read(sb.config().index_file).unwrap();

    // Read-only: reported, nothing written.
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert_eq!(ids(&r.missing), [gone.id.as_str()]);
    let item = &r.missing[0];
    assert_eq!(item.status, "available");
    assert_eq!(item.instance.as_deref(), Some("alpha"));
    assert_eq!(item.path, gone.archive);
    assert!(
        item.reason.contains("sidecar is still there"),
        "{}",
        item.reason
    );
    assert_eq!(item.action.as_deref(), Some("mark missing"));
    assert!(!item.resolved);
    assert!(r.orphaned.is_empty() && r.mismatched.is_empty());
    assert!(r.stray_sidecars.is_empty(), "its entry names it");
    assert_eq!(r.unresolved, 1);
    assert_eq!(fs::read(sb.config().index_file).unwrap(), before);

    // --apply marks it, and says so.
    let (op_id, _, r) = reconcile(&c, None, APPLY).await;
    assert!(r.missing[0].resolved);
    assert_eq!(r.unresolved, 0);
    let applied = r.applied.unwrap();
    assert_eq!(ids(&applied), [gone.id.as_str()]);
    assert_eq!(applied[0].status, "missing");
    let idx = index(&sb);
    assert_eq!(entry(&idx, &gone.id)["status"], "missing");
    assert!(entry(&idx, &gone.id)["reconciled_at"].is_string());
    assert_eq!(entry(&idx, &keep.id)["status"], "available");
    assert!(entry(&idx, &keep.id).get("reconciled_at").is_none());

    // The operations log has the run, with the entry it changed.
    let log = fs::read_to_string(sb.config().oplog_file()).unwrap();
    let line: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["op_id"] == op_id.as_str())
        .expect("reconcile logged");
    assert_eq!(line["command"], "backup reconcile");
    assert_eq!(line["args"]["apply"], true);
    assert_eq!(line["result"]["backups"], json!([gone.id]));
    assert_eq!(
        line["result"]["data"]["result"]["missing"][0]["id"],
        gone.id.as_str()
    );

    // A re-run finds the index honest.
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert!(r.in_sync(), "{r:?}");
    assert_eq!((r.known_missing, r.unresolved), (1, 0));

    // The archive comes back: mismatched until --apply makes it available.
    fs::rename(&saved, &gone.archive).unwrap();
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert_eq!(ids(&r.mismatched), [gone.id.as_str()]);
    assert_eq!(r.mismatched[0].status, "missing");
    assert_eq!(r.mismatched[0].action.as_deref(), Some("mark available"));
    let (_, _, r) = reconcile(&c, None, APPLY).await;
    assert_eq!(r.unresolved, 0);
    assert_eq!(entry(&index(&sb), &gone.id)["status"], "available");
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert!(r.in_sync() && r.known_missing == 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_named_from_their_file_or_directory_and_partials_are_not_archives() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let made = backup(&c, "alpha").await;
    let root = sb.config().backups_root;

    // A Python-style name in the wrong directory: the name wins.
    let py_id = "20250601-100000-alpha-abc123";
    fs::create_dir_all(root.join("beta")).unwrap();
    fs::copy(&made.archive, root.join(format!("beta/{py_id}.tar.zst"))).unwrap();
    // Any other name: the instance comes from the directory.
    fs::copy(&made.archive, root.join("alpha/sunday.tar.zst")).unwrap();
    // Below an instance directory: not where archives belong, never looked into.
    fs::create_dir_all(root.join("alpha/weekly")).unwrap();
    fs::copy(&made.archive, root.join("alpha/weekly/monday.tar.zst")).unwrap();
    // In the root itself, with no id in the name: unknown.
    fs::write(root.join("loose.tar"), b"not really a tar").unwrap();
    // Not archives: a create's partial file, our temp files, other files.
    fs::write(
        root.join("alpha/20250601-110000-alpha-0000ff.tar.zst.partial"),
        b"x",
    )
    .unwrap();
    fs::write(root.join("alpha/.backups.json.1234.tmp"), b"x").unwrap();
    fs::write(root.join("alpha/README"), b"x").unwrap();
    // A sidecar whose archive and entry are both gone.
    fs::write(
        root.join("alpha/20240101-000000-alpha-aaaaaa.tar.gz.sha256"),
        b"x",
    )
    .unwrap();

    let before = fs::read(sb.config().index_file).unwrap();
    let (op_id, plan, r) = reconcile(&c, None, READ).await;
    assert_eq!(
        plan.archives, 4,
        "alpha/weekly/monday.tar.zst is not counted"
    );
    let warned = events_of(&c, &op_id).await.into_iter().any(|e| {
        matches!(&e.kind, EventKind::Message { level, text }
            if *level == Level::Warning && text.starts_with("1 directory below the instance directories"))
    });
    assert!(warned, "the skipped directory is reported");
    assert_eq!(plan.partial_files, 1);
    let mut found: Vec<(String, Option<String>)> = r
        .orphaned
        .iter()
        .map(|o| (o.id.clone(), o.instance.clone()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (py_id.to_owned(), Some("alpha".to_owned())),
            ("loose".to_owned(), None),
            ("sunday".to_owned(), Some("alpha".to_owned())),
        ]
    );
    for o in &r.orphaned {
        assert_eq!(o.status, "unindexed");
        assert!(o.reason.starts_with("no index entry"), "{}", o.reason);
        assert_eq!(o.action.as_deref(), Some("adopt"));
    }
    let py = r.orphaned.iter().find(|o| o.id == py_id).unwrap();
    assert!(py.reason.contains("from the file name"), "{}", py.reason);
    let sunday = r.orphaned.iter().find(|o| o.id == "sunday").unwrap();
    assert!(
        sunday.reason.contains("from its directory"),
        "{}",
        sunday.reason
    );
    assert_eq!(ids(&r.stray_sidecars), ["20240101-000000-alpha-aaaaaa"]);
    assert_eq!(r.stray_sidecars[0].status, "sidecar-only");
    assert!(r.missing.is_empty() && r.mismatched.is_empty());
    assert_eq!(r.unresolved, 3, "stray sidecars are not drift");
    // --apply alone does not adopt.
    let (_, _, r) = reconcile(&c, None, APPLY).await;
    assert_eq!((r.orphaned.len(), r.unresolved), (3, 3));
    assert_eq!(fs::read(sb.config().index_file).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatches_of_status_size_and_checksum_and_what_apply_does_about_them() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let corrupt = backup(&c, "alpha").await;
    let resized = backup(&c, "alpha").await;
    let damaged = backup(&c, "alpha").await;
    set_entry(&sb, &corrupt.id, "status", json!("corrupt"));
    set_entry(
        &sb,
        &resized.id,
        "size_bytes",
        json!(resized.size_bytes + 1),
    );
    // Same size, different bytes: only --verify can tell.
    let mut bytes = fs::read(&damaged.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&damaged.archive, &bytes).unwrap();

    let (_, plan, r) = reconcile(&c, None, READ).await;
    assert_eq!(plan.read_bytes, 0, "no hashing without --verify");
    let mut got = ids(&r.mismatched);
    got.sort();
    let mut want = vec![corrupt.id.as_str(), resized.id.as_str()];
    want.sort();
    assert_eq!(got, want);
    let by = |id: &str| r.mismatched.iter().find(|i| i.id == id).unwrap().clone();
    assert!(by(&corrupt.id).reason.contains("the index says corrupt"));
    assert_eq!(
        by(&corrupt.id).action,
        None,
        "a verify verdict needs --verify"
    );
    assert!(by(&resized.id).reason.contains("size differs"));
    // Without --verify, --apply fixes neither.
    let (_, _, r) = reconcile(&c, None, APPLY).await;
    assert_eq!(r.unresolved, 2);
    assert_eq!(entry(&index(&sb), &corrupt.id)["status"], "corrupt");

    // --verify re-hashes all three, with byte progress.
    let (op_id, plan, r) = reconcile(
        &c,
        None,
        Flags {
            verify: true,
            ..READ
        },
    )
    .await;
    assert_eq!(
        plan.read_bytes,
        corrupt.size_bytes + resized.size_bytes + damaged.size_bytes
    );
    let events = events_of(&c, &op_id).await;
    for id in [&corrupt.id, &resized.id, &damaged.id] {
        assert!(
            events.iter().any(|e| matches!(&e.kind,
                EventKind::Phase { name, total_bytes: Some(_) } if *name == Phase::Verify(id.clone()))),
            "no verify phase for {id}"
        );
    }
    assert_eq!(r.mismatched.len(), 3);
    let by = |id: &str| r.mismatched.iter().find(|i| i.id == id).unwrap().clone();
    assert_eq!(by(&corrupt.id).action.as_deref(), Some("mark available"));
    assert_eq!(
        by(&resized.id).action.as_deref(),
        Some("record the file's size")
    );
    assert!(by(&damaged.id).reason.contains("checksum mismatch"));
    assert_eq!(by(&damaged.id).action.as_deref(), Some("mark corrupt"));

    let (_, _, r) = reconcile(
        &c,
        None,
        Flags {
            verify: true,
            ..APPLY
        },
    )
    .await;
    assert_eq!(r.unresolved, 1, "a damaged archive stays a finding");
    let idx = index(&sb);
    assert_eq!(entry(&idx, &corrupt.id)["status"], "available");
    assert!(
        entry(&idx, &corrupt.id)["metadata"]
            .get("verification_error")
            .is_none()
    );
    assert_eq!(entry(&idx, &resized.id)["size_bytes"], resized.size_bytes);
    let bad = entry(&idx, &damaged.id);
    assert_eq!(bad["status"], "corrupt");
    assert!(
        bad["metadata"]["verification_error"]
            .as_str()
            .unwrap()
            .contains("mismatch")
    );
    assert!(bad["checksum"]["observed"].is_string());

    // Afterwards only the damaged archive is reported.
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert_eq!(ids(&r.mismatched), [damaged.id.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_limits_what_is_reported_and_applied() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.add_instance("beta");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let a = backup(&c, "alpha").await;
    let b = backup(&c, "beta").await;
    fs::remove_file(&a.archive).unwrap();
    fs::remove_file(&b.archive).unwrap();
    let root = sb.config().backups_root;
    let alpha_copy = backup(&c, "alpha").await;
    fs::copy(
        &alpha_copy.archive,
        root.join("beta/20250601-100000-beta-abc123.tar.zst"),
    )
    .unwrap();

    let (_, plan, r) = reconcile(&c, Some("alpha"), READ).await;
    assert_eq!(plan.instance.as_deref(), Some("alpha"));
    assert_eq!(ids(&r.missing), [a.id.as_str()]);
    assert!(r.orphaned.is_empty(), "beta's orphan is out of scope");
    let (_, _, r) = reconcile(&c, Some("beta"), READ).await;
    assert_eq!(ids(&r.missing), [b.id.as_str()]);
    assert_eq!(ids(&r.orphaned), ["20250601-100000-beta-abc123"]);

    reconcile(&c, Some("alpha"), APPLY).await;
    let idx = index(&sb);
    assert_eq!(entry(&idx, &a.id)["status"], "missing");
    assert_eq!(entry(&idx, &b.id)["status"], "available", "beta untouched");

    let bad = call::<BackupReconcile>(
        &c,
        &ReconcileParams {
            instance: Some("../etc".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::Validation);
    let bad = call::<BackupReconcile>(
        &c,
        &ReconcileParams {
            adopt: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::Validation);
    assert!(bad.message.contains("--apply"), "{}", bad.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_gnu_tar_archives_in_the_python_layout_and_reporting_unreadable_ones() {
    let sb = Sandbox::new();
    let data = sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let cfg = sb.config();

    // An archive the Python tool made, whose index entry was lost.
    let id = "20250601-100000-alpha-abc123";
    let (archive, payload) = python_style_archive(&sb, "alpha", id, true);
    // One made under another name, with a wrong sidecar (not a digest).
    let other = "20250602-100000-alpha-def456";
    let (made, _) = python_style_archive(&sb, "alpha", other, false);
    let renamed = cfg.backups_root.join("alpha/manual-copy.tar.zst");
    fs::rename(&made, &renamed).unwrap();
    fs::write(format!("{}.sha256", renamed.display()), b"garbage\n").unwrap();
    // A truncated one, and one that is not a tar at all.
    let (trunc_src, _) = python_style_archive(&sb, "alpha", "20250603-100000-alpha-0000aa", false);
    let bytes = fs::read(&trunc_src).unwrap();
    fs::write(&trunc_src, &bytes[..bytes.len() / 2]).unwrap();
    let junk = cfg
        .backups_root
        .join("alpha/20250604-100000-alpha-0000bb.tar.gz");
    fs::write(&junk, b"\x1f\x8b not gzip at all").unwrap();

    let flags = Flags {
        apply: true,
        adopt: true,
        verify: false,
    };
    let (_, plan, r) = reconcile(&c, None, flags).await;
    assert!(plan.read_bytes > 0);
    let adopted = r.adopted.clone().unwrap();
    let mut got = ids(&adopted);
    got.sort();
    assert_eq!(got, [id, other], "{r:#?}");
    assert!(
        adopted
            .iter()
            .all(|a| a.status == "available" && a.resolved)
    );
    assert_eq!(r.unresolved, 2, "{r:#?}");
    for bad in [&trunc_src, &junk] {
        let item = r
            .orphaned
            .iter()
            .find(|o| o.path == bad.display().to_string())
            .unwrap();
        assert!(
            item.reason.contains("not adopted: cannot be read"),
            "{}",
            item.reason
        );
        assert!(!item.resolved && item.action.is_none());
        assert!(!Path::new(&format!("{}.sha256", bad.display())).exists());
    }
    let copy = adopted.iter().find(|a| a.id == other).unwrap();
    assert!(
        copy.reason.contains(&format!("holds backup {other}")),
        "{}",
        copy.reason
    );

    let idx = index(&sb);
    let e = entry(&idx, id);
    assert_eq!(e["instance"], "alpha");
    assert_eq!(e["status"], "available");
    assert_eq!(e["created_at"], "2025-06-01T10:00:00Z");
    assert_eq!(e["algorithm"], "gzip");
    assert_eq!(e["path"], archive.display().to_string());
    assert_eq!(e["size_bytes"], fs::metadata(&archive).unwrap().len());
    assert_eq!(e["checksum"]["value"], sha256sum(&archive));
    assert_eq!(e["metadata"]["labels"], json!(["adopted"]));
    assert_eq!(e["metadata"]["data_only"], false);
    assert!(e["reconciled_at"].is_string());
    assert!(e["adopted_by"]["uid"].is_number());
    let sidecar = fs::read_to_string(format!("{}.sha256", archive.display())).unwrap();
    assert_eq!(sidecar, format!("{}  {id}.tar.gz\n", sha256sum(&archive)));
    // The garbage sidecar was rewritten for the renamed copy.
    let sidecar = fs::read_to_string(format!("{}.sha256", renamed.display())).unwrap();
    assert_eq!(
        sidecar,
        format!("{}  manual-copy.tar.zst\n", sha256sum(&renamed))
    );
    assert_eq!(entry(&idx, other)["path"], renamed.display().to_string());

    // An adopted backup restores.
    let dest = cfg.restores_root.join("adopted");
    let out = call::<BackupRestore>(
        &c,
        &RestoreParams {
            id: id.into(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(out.result.is_some());
    assert_eq!(snapshot_content(&dest), snapshot_content(&payload));
    assert_eq!(snapshot_content(&payload), snapshot_content(&data));

    // A re-run reports only the unreadable two.
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert_eq!(r.orphaned.len(), 2);
    assert!(r.missing.is_empty() && r.mismatched.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_disagrees_with_its_orphan_blocks_adoption() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let id = "20250601-100000-alpha-abc123";
    let (archive, _) = python_style_archive(&sb, "alpha", id, false);
    // Index entry and sidecar as the Python tool wrote them; then the entry is
    // lost, and the sidecar names another digest (one of the two was changed).
    register_python_entry(&sb, "alpha", id, &archive, "zstd");
    fs::remove_file(sb.config().index_file).unwrap();
    let sidecar = PathBuf::from(format!("{}.sha256", archive.display()));
    let name = archive.file_name().unwrap().to_string_lossy();
    fs::write(&sidecar, format!("{}  {name}\n", "0f".repeat(32))).unwrap();
    let written = fs::read(&sidecar).unwrap();

    let flags = Flags {
        apply: true,
        adopt: true,
        verify: false,
    };
    let (_, _, r) = reconcile(&c, None, flags).await;
    assert_eq!(r.adopted.unwrap().len(), 0);
    assert!(
        r.orphaned[0].reason.contains("its sidecar says"),
        "{}",
        r.orphaned[0].reason
    );
    assert_eq!(fs::read(&sidecar).unwrap(), written, "evidence kept");
    assert!(!sb.config().index_file.exists() || index(&sb)["backups"] == json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_on_its_way_into_the_index_is_never_an_orphan() {
    // The hook below is process-wide.
    let _serial = serial();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    // Hold the create between renaming its archive into place and writing its
    // index entry: the window a reconcile could mistake for an orphan.
    let mut gate = Gate::at("create::archive-in-place");
    let started = call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            detach: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    gate.entered().await;
    let dir = sb.config().backups_root.join("alpha");
    let archive = fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("the archive is in place");
    // In the window: the archive is in place and the index does not have it.
    let (looked, plan, r) = reconcile(&c, None, READ).await;
    let (_, _, adopting) = reconcile(
        &c,
        None,
        Flags {
            apply: true,
            adopt: true,
            verify: false,
        },
    )
    .await;
    let in_index = sb.config().index_file.exists()
        && index(&sb)["backups"]
            .as_array()
            .is_some_and(|b| !b.is_empty());
    assert!(
        !in_index,
        "the create finished too early for the test to mean anything"
    );
    assert_eq!(plan.archives, 1, "{}", archive.display());
    assert!(r.orphaned.is_empty(), "false orphan: {:?}", r.orphaned);
    assert!(adopting.orphaned.is_empty() && adopting.adopted.unwrap().is_empty());
    let said = events_of(&c, &looked).await.into_iter().any(|e| {
        matches!(&e.kind, EventKind::Message { text, .. }
            if text.contains("being written by running creates") && text.contains(&*archive.to_string_lossy()))
    });
    assert!(said, "the skipped archive is mentioned");
    gate.release();
    fail::remove("create::archive-in-place");

    let events = events_of(&c, &started.op_id).await;
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::Finished { .. }
    ));
    let (_, plan, r) = reconcile(&c, None, READ).await;
    assert!(r.in_sync(), "{r:?}");
    assert_eq!((plan.archives, plan.index_entries), (1, 1));
    assert_eq!(
        index(&sb)["backups"].as_array().unwrap().len(),
        1,
        "adopted twice?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_running_alongside_creates_report_no_drift() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.add_instance("beta");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let socket = daemon.socket.clone();
    let creates = tokio::spawn(async move {
        let c = client(&socket).await;
        for round in 0..6 {
            backup(&c, if round % 2 == 0 { "alpha" } else { "beta" }).await;
        }
    });
    let mut runs = 0;
    while !creates.is_finished() {
        let (_, _, r) = reconcile(&c, None, READ).await;
        assert!(r.in_sync(), "drift while creating: {r:?}");
        runs += 1;
    }
    creates.await.unwrap();
    assert!(runs > 1, "reconcile ran {runs} times during the creates");
    let (_, plan, r) = reconcile(&c, None, READ).await;
    assert!(r.in_sync());
    assert_eq!((plan.archives, plan.index_entries), (6, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_waits_for_a_python_create_holding_the_instance_lock() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let cfg = sb.config();
    // The Python tool is creating a backup of alpha: it holds alpha's lock file
    // and has renamed its archive into place, but not yet written its entry.
    let id = "20250601-100000-alpha-abc123";
    let (archive, _) = python_style_archive(&sb, "alpha", id, false);
    fs::create_dir_all(&cfg.runtime_dir).unwrap();
    let lock = fs::File::create(cfg.instance_lock_file("alpha")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();

    let params = ReconcileParams {
        apply: true,
        adopt: true,
        detach: true,
        ..Default::default()
    };
    let op_id = call::<BackupReconcile>(&c, &params).await.unwrap().op_id;
    let mut events = abssd_proto::methods::call::watch(&c, &op_id).await.unwrap();
    loop {
        let event = events.next().await.expect("events").unwrap();
        if matches!(&event.kind, EventKind::LockWait { lock } if lock == "instance:alpha") {
            break;
        }
        assert!(
            !event.kind.is_terminal(),
            "ended without waiting: {event:?}"
        );
    }
    // The Python create finishes: its entry, then its lock.
    register_python_entry(&sb, "alpha", id, &archive, "zstd");
    drop(held);

    let end = events_of(&c, &op_id).await.pop().unwrap();
    let EventKind::Finished { result } = end.kind else {
        panic!("{end:?}");
    };
    let r: ReconcileResult = serde_json::from_value(result.to_value()["result"].clone()).unwrap();
    assert_eq!(
        r.adopted.unwrap().len(),
        0,
        "adopted what the Python tool indexed"
    );
    assert!(
        r.orphaned[0].reason.contains("not applied"),
        "{}",
        r.orphaned[0].reason
    );
    let idx = index(&sb);
    assert_eq!(idx["backups"].as_array().unwrap().len(), 1);
    assert_eq!(entry(&idx, id)["message"], "from python");
}

/// Issue 14 item 8: a present archive whose `.sha256` sidecar is gone is
/// drift of its own kind. A read-only run reports it and writes nothing;
/// `--apply` hashes the archive, and writes the sidecar only when the hash is
/// the index's checksum (a damaged archive is reported as a mismatch, as
/// `--verify` does, and gets no sidecar); the next run is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sidecar_is_reported_and_written_back_from_a_verified_hash() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let lost = backup(&c, "alpha").await;
    let damaged = backup(&c, "alpha").await;
    let sidecar = |a: &str| PathBuf::from(format!("{a}.sha256"));
    let by_create = fs::read(sidecar(&lost.archive)).unwrap();
    let meta = fs::metadata(sidecar(&lost.archive)).unwrap();
    let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
    fs::remove_file(sidecar(&lost.archive)).unwrap();
    fs::remove_file(sidecar(&damaged.archive)).unwrap();
    let mut bytes = fs::read(&damaged.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&damaged.archive, &bytes).unwrap();
    let before = fs::read(sb.config().index_file).unwrap();

    // Read-only: both reported, nothing read or written.
    let (_, plan, r) = reconcile(&c, None, READ).await;
    assert_eq!(plan.read_bytes, 0);
    let mut got = ids(&r.missing_sidecars);
    got.sort();
    let mut want = vec![lost.id.as_str(), damaged.id.as_str()];
    want.sort();
    assert_eq!(got, want);
    let item = r.missing_sidecars.iter().find(|i| i.id == lost.id).unwrap();
    assert_eq!(item.path, lost.archive);
    assert_eq!(item.status, "available");
    assert!(item.reason.contains("sidecar"), "{}", item.reason);
    assert!(item.action.is_some());
    assert!(!r.in_sync());
    assert_eq!(r.unresolved, 2);
    assert!(r.missing.is_empty() && r.orphaned.is_empty() && r.mismatched.is_empty());
    assert!(!sidecar(&lost.archive).exists());
    assert_eq!(fs::read(sb.config().index_file).unwrap(), before);

    // --apply: hashed; the good one gets its sidecar back, byte for byte as
    // create wrote it, the damaged one none, and is reported as a mismatch.
    let (_, plan, r) = reconcile(&c, None, APPLY).await;
    assert_eq!(plan.read_bytes, lost.size_bytes + damaged.size_bytes);
    let fixed = r.missing_sidecars.iter().find(|i| i.id == lost.id).unwrap();
    assert!(fixed.resolved, "{fixed:?}");
    let refused = r
        .missing_sidecars
        .iter()
        .find(|i| i.id == damaged.id)
        .unwrap();
    assert!(!refused.resolved);
    assert_eq!(refused.action, None);
    assert!(refused.reason.contains("not written"), "{}", refused.reason);
    assert_eq!(ids(&r.mismatched), [damaged.id.as_str()]);
    assert!(r.mismatched[0].reason.contains("checksum mismatch"));
    assert_eq!(fs::read(sidecar(&lost.archive)).unwrap(), by_create);
    let meta = fs::metadata(sidecar(&lost.archive)).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (mode, uid, gid)
    );
    assert!(!sidecar(&damaged.archive).exists());
    assert_eq!(entry(&index(&sb), &damaged.id)["status"], "corrupt");

    // Next run: only the damaged archive is left, and its missing sidecar.
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert_eq!(ids(&r.missing_sidecars), [damaged.id.as_str()]);
    // Once the damaged backup is dealt with (here: its archive removed and
    // the entry marked so), the index and the disk agree.
    fs::remove_file(&damaged.archive).unwrap();
    reconcile(&c, None, APPLY).await;
    let (_, _, r) = reconcile(&c, None, READ).await;
    assert!(r.in_sync(), "{r:?}");
    assert!(r.missing_sidecars.is_empty());
}

/// `--apply` records each change where the Python tool's reconcile does, and
/// the report carries what its `--json` carries. The Python tool (cli.py,
/// `backup reconcile`), for an entry whose archive is gone:
///   metadata_map["reconciled_at"] = reconciled_at       # _iso_now()
///   metadata_map["reconcile_reason"] = "archive-missing"
/// its orphans: {"path": .., "instance": .., "size_bytes": archive_path.stat().st_size}
/// and its result: {"missing", "mismatched", "orphaned", "updates_applied"}.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_writes_the_python_tools_reconcile_fields_and_orphans_have_their_size() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let cfg = sb.config();
    // A Python entry whose archive is gone, its other metadata to be kept.
    let gone = "20250601-100000-alpha-abc123";
    let (archive, _) = python_style_archive(&sb, "alpha", gone, true);
    register_python_entry(&sb, "alpha", gone, &archive, "gzip");
    set_entry(
        &sb,
        gone,
        "metadata",
        json!({"data_only": false, "labels": ["nightly"], "python_only": 1}),
    );
    let saved = sb.path("saved.tar.gz");
    fs::rename(&archive, &saved).unwrap();
    // An orphan.
    let orphan = "20250602-100000-alpha-def456";
    let (orphan_archive, _) = python_style_archive(&sb, "alpha", orphan, false);
    let orphan_size = fs::metadata(&orphan_archive).unwrap().len();

    let (_, _, r) = reconcile(&c, None, READ).await;
    assert_eq!(r.orphaned.len(), 1, "{r:#?}");
    assert_eq!(r.orphaned[0].size_bytes, Some(orphan_size));
    assert_eq!(r.orphaned[0].instance.as_deref(), Some("alpha"));
    assert_eq!(r.missing[0].size_bytes, None);
    assert_eq!(r.updates_applied, 0);

    let (_, _, r) = reconcile(&c, None, APPLY).await;
    assert_eq!(r.updates_applied, 1, "{r:#?}");
    let idx = index(&sb);
    let e = entry(&idx, gone);
    assert_eq!(e["status"], "missing");
    assert_python_time(&e["metadata"]["reconciled_at"]);
    assert_eq!(e["metadata"]["reconciled_at"], e["reconciled_at"]);
    assert_eq!(e["metadata"]["reconcile_reason"], "archive-missing");
    assert_eq!(e["metadata"]["labels"], json!(["nightly"]));
    assert_eq!(e["metadata"]["python_only"], 1);
    // The same report as JSON on the wire, as the Python tool's has it.
    let wire = serde_json::to_value(&r).unwrap();
    assert_eq!(wire["updates_applied"], 1);
    assert_eq!(wire["orphaned"][0]["size_bytes"], orphan_size);
    assert!(wire["missing"][0].get("size_bytes").is_none());

    // Back again: ours says why, in the same field.
    fs::rename(&saved, &archive).unwrap();
    let flags = Flags {
        adopt: true,
        ..APPLY
    };
    let (_, _, r) = reconcile(&c, None, flags).await;
    assert_eq!(r.updates_applied, 2, "{r:#?}");
    let idx = index(&sb);
    let e = entry(&idx, gone);
    assert_eq!(e["status"], "available");
    assert_eq!(e["metadata"]["reconcile_reason"], "archive-present");
    assert_python_time(&e["metadata"]["reconciled_at"]);
    let a = entry(&idx, orphan);
    assert_eq!(a["metadata"]["reconcile_reason"], "archive-adopted");
    assert_eq!(a["metadata"]["reconciled_at"], a["reconciled_at"]);
    assert_python_time(&a["metadata"]["reconciled_at"]);
    assert_eq!(a["size_bytes"], orphan_size);
    assert!(cfg.backups_root.join("alpha").is_dir());
}

/// A drift of thousands of entries: each list holds its first PLAN_ROWS, the
/// rest are counted, and the counts and the fixes cover them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_of_thousands_lists_a_thousand_and_counts_and_fixes_them_all() {
    let w = abssd_tests::world::World::new(&["alpha"]);
    let c = w.client().await;
    backup(&c, "alpha").await;
    let mut raw: Value = serde_json::from_slice(&w.index()).unwrap();
    let real = raw["backups"][0].clone();
    let dir = w.cfg().instance_backup_dir("alpha");
    let backups = raw["backups"].as_array_mut().unwrap();
    for i in 1..=1500 {
        let id = format!("20250101-000000-alpha-{i:06x}");
        let mut e = real.clone();
        e["path"] = json!(dir.join(format!("{id}.tar.zst")).display().to_string());
        e["id"] = json!(id);
        backups.push(e);
    }
    fs::write(
        &w.cfg().index_file,
        serde_json::to_vec_pretty(&raw).unwrap(),
    )
    .unwrap();
    let rows = abssd_proto::limits::PLAN_ROWS;

    let (_, plan, found) = reconcile(&c, None, READ).await;
    assert_eq!(plan.index_entries, 1501);
    assert_eq!(found.missing.len(), rows);
    assert_eq!(found.unlisted.missing, 500);
    assert_eq!(found.unresolved, 1500);
    assert_eq!(found.counts(), [1500, 0, 0, 0]);

    let (_, _, fixed) = reconcile(&c, None, APPLY).await;
    assert_eq!((fixed.updates_applied, fixed.unresolved), (1500, 0));
    assert_eq!(fixed.applied.as_ref().map(Vec::len), Some(rows));
    assert_eq!(fixed.unlisted.applied, 500);
    let (_, _, after) = reconcile(&c, None, READ).await;
    assert!(after.in_sync() && after.unlisted.is_empty(), "{after:?}");
    assert_eq!(after.known_missing, 1500);
}
