//! Guards around the filesystem, end to end (root: they mount small tmpfs):
//! a data directory on another filesystem than its parent is refused before
//! anything changes; what earlier restores left beside the data is reported
//! and never touched; a full filesystem under the index or the registry keeps
//! the old file and leaves no temporary or half-made files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use abssd_proto::methods::BackupCreate;
use abssd_proto::methods::BackupReconcile;
use abssd_proto::methods::call::call;
use abssd_proto::*;
use abssd_tests::backup;
use abssd_tests::inspect::{Node, events_of, snapshot, snapshot_content};
use abssd_tests::world::{Tmpfs, World, assert_same, live, no_pre, restore};
use serde_json::json;

/// The names in a directory.
fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Change data, unit file and site, so a restore has something to undo.
fn change(w: &World, name: &str) {
    let cfg = w.cfg();
    fs::write(
        w.data(name).join("user-files/budget-1/db.sqlite"),
        b"overwritten",
    )
    .unwrap();
    fs::write(w.data(name).join("new-file"), b"added later").unwrap();
    fs::write(cfg.unit_file(name), "[Service]\nExecStart=/bin/false\n").unwrap();
    fs::write(
        cfg.site_file(name),
        format!("server {{ listen 127.0.0.1:8081; server_name changed-{name}.test; }}\n"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_on_another_filesystem_is_refused_before_anything_changes() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let data_then = snapshot(&w.data("alpha"));
    let data = w.data("alpha");
    // The data directory is a mount point: staging and the .pre-restore-*
    // copy would be on the parent's filesystem.
    let _mounted = Tmpfs::mount_over(&data, "8m");
    let (before, index_before) = (w.live_state(), w.index());
    w.fake.clear_calls();

    for params in [
        RestoreParams {
            dry_run: true,
            ..live(&made.id)
        },
        live(&made.id),
        no_pre(&made.id),
    ] {
        let err = restore(&c, &params).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
        for part in [
            &format!("the data directory {} ", data.display()),
            "another filesystem",
            "could not be atomic",
            "mount point",
            "--dest",
            "Nothing was changed",
        ] {
            assert!(err.message.contains(part), "{part:?}: {}", err.message);
        }
    }
    assert_same(&before, &w.live_state());
    assert_eq!(w.index(), index_before, "no pre-restore backup either");
    assert!(w.jobs().is_empty(), "{:?}", w.fake.calls());
    assert!(w.unit_active("alpha"));
    w.assert_no_leftovers();

    // --dest on a mount point is refused the same way; a directory inside it is fine.
    let mnt = w.cfg().restores_root.join("mnt");
    let _dest_fs = Tmpfs::mount(&mnt, "8m");
    let err = restore(
        &c,
        &RestoreParams {
            id: made.id.clone(),
            dest: Some(mnt.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    let inside = mnt.join("restored");
    assert!(
        err.message.contains(&format!("e.g. {}", inside.display())),
        "{}",
        err.message
    );
    assert!(names(&mnt).is_empty());
    restore(
        &c,
        &RestoreParams {
            id: made.id.clone(),
            dest: Some(inside.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&inside), data_then);
    assert_eq!(names(&mnt), BTreeSet::from(["restored".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_earlier_restores_are_reported_and_never_touched() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let parent = w.data("alpha").parent().unwrap().to_owned();
    let old = parent.join("data.pre-restore-20240101-000000-abcdef");
    let staging = parent.join(".data.restore-20240101-000000-abcdef");
    for (dir, body) in [(&old, "the data before a restore in 2024"), (&staging, "x")] {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join("db.sqlite"), body).unwrap();
    }
    // Both directories, their mtimes and everything inside them.
    let kept = || -> Vec<(PathBuf, Node)> {
        snapshot(&parent)
            .into_iter()
            .filter(|(p, _)| {
                p.starts_with(old.file_name().unwrap())
                    || p.starts_with(staging.file_name().unwrap())
            })
            .collect()
    };
    let kept_then = kept();
    assert_eq!(kept_then.len(), 4);
    change(&w, "alpha");

    let warned = |warnings: &[String]| {
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].starts_with(&staging.display().to_string())
                && warnings[0].contains("staging directory of an earlier restore"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with(&old.display().to_string())
                && warnings[1].contains("an earlier restore replaced"),
            "{}",
            warnings[1]
        );
        for w in warnings {
            assert!(
                w.contains("kept") && w.contains("remove it once it is no longer needed"),
                "{w}"
            );
        }
    };
    let dry = restore(
        &c,
        &RestoreParams {
            dry_run: true,
            ..live(&made.id)
        },
    )
    .await
    .unwrap();
    warned(&dry.plan.unwrap().warnings);

    let out = restore(&c, &live(&made.id)).await.unwrap();
    warned(&out.plan.unwrap().warnings);
    let result = out.result.unwrap();
    assert!(result.pre_restore_backup.is_some());
    assert!(w.unit_active("alpha"));
    assert_eq!(kept(), kept_then, "an old leftover changed");
    // The operation says so while it runs, too.
    let events = events_of(&c, &out.op_id).await;
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Message { level, text } if *level == Level::Warning && text.starts_with(&old.display().to_string()))),
        "{events:?}"
    );

    // Only the old leftovers remain.
    fs::remove_dir_all(&old).unwrap();
    fs::remove_dir_all(&staging).unwrap();
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_under_the_index_keeps_it_and_leaves_no_half_made_backup() {
    let w = World::with_config(&["alpha"], |sb| {
        // The Python tool's key: config.yml.
        sb.write_config(&format!(
            "backups:\n  index: {}\n",
            json!(sb.path("index/backups.json"))
        ));
        String::new()
    });
    let cfg = w.cfg();
    let dir = w.sb.path("index");
    assert_eq!(cfg.index_file, dir.join("backups.json"));
    let small = Tmpfs::mount(&dir, "256k");
    let c = w.client().await;
    let first = backup(&c, "alpha").await;
    small.fill();
    let index_before = w.index();
    let archives: BTreeSet<PathBuf> = snapshot_content(&cfg.backups_root).into_keys().collect();
    let in_dir = BTreeSet::from(["backups.json".to_owned(), ".filler".to_owned()]);
    assert_eq!(names(&dir), in_dir);

    let no_space = |err: &WireError| {
        assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
        for part in [
            &format!("no space left to write {}", cfg.index_file.display()),
            "the file is unchanged",
            &format!("free space on {}", dir.display()),
        ] {
            assert!(err.message.contains(part), "{part:?}: {}", err.message);
        }
        assert_eq!(
            err.detail.as_ref().unwrap()["path"],
            json!(cfg.index_file),
            "{err:?}"
        );
    };

    // backup.create: archive and sidecar are written, the index is not.
    let err = call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    no_space(&err);
    assert_eq!(w.index(), index_before);
    assert_eq!(names(&dir), in_dir, "a temporary file was left");
    let now: BTreeSet<PathBuf> = snapshot_content(&cfg.backups_root).into_keys().collect();
    assert_eq!(now, archives, "a half-made backup was left");

    // backup.reconcile --apply: marking the missing archive fails the same way.
    fs::remove_file(&first.archive).unwrap();
    let err = call::<BackupReconcile>(
        &c,
        &ReconcileParams {
            apply: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    no_space(&err);
    assert_eq!(w.index(), index_before);
    assert_eq!(names(&dir), in_dir, "a temporary file was left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_under_the_registry_rolls_the_restore_back() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let cfg = w.cfg();
    let made = backup(&c, "alpha").await;
    change(&w, "alpha");
    let small = Tmpfs::mount_over(&cfg.registry_dir, "64k");
    small.fill();
    let registry = cfg.registry_file();
    let registry_then = fs::read(&registry).unwrap();
    let mtime_then = fs::metadata(&registry).unwrap().modified().unwrap();
    let in_dir = names(&cfg.registry_dir);
    let (before, index_before) = (w.live_state(), w.index());
    w.fake.clear_calls();

    let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert!(
        err.message
            .contains(&format!("no space left to write {}", registry.display())),
        "{}",
        err.message
    );
    let detail = err.detail.clone().unwrap();
    assert_eq!(detail["path"], json!(registry));
    let undone: Vec<&str> = detail["rolled_back"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(
        undone.iter().any(|u| u.starts_with("data put back")),
        "{undone:?}"
    );
    assert!(detail["left"].as_array().unwrap().is_empty(), "{detail}");

    // Data, unit file, site, link and registry as they were; the registry never rewritten.
    assert_same(&before, &w.live_state());
    assert_eq!(fs::read(&registry).unwrap(), registry_then);
    assert_eq!(
        fs::metadata(&registry).unwrap().modified().unwrap(),
        mtime_then
    );
    assert_eq!(
        names(&cfg.registry_dir),
        in_dir,
        "a temporary file was left"
    );
    assert_eq!(w.index(), index_before);
    assert!(w.unit_active("alpha"));
    assert_eq!(
        w.jobs(),
        [
            "StopUnit abssctl-alpha.service",
            "Reload",
            "Reload",
            "StartUnit abssctl-alpha.service",
        ]
    );
    w.assert_no_leftovers();
}
