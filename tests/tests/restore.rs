//! `backup restore` end to end: the real daemon in-process, systemd faked on a
//! private dbus-daemon, the real `nginx -t`, archives from our writer and from
//! GNU tar.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd::config::unit_name;
use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupList, BackupRestore, BackupShow};
use abssd_proto::*;
use abssd_tests::inspect::{events_of, phase, snapshot, waited_for_instance};
use abssd_tests::peer::python_script;
use abssd_tests::python::{assert_python_time, python_style_archive, register_python_entry};
use abssd_tests::world::{Tmpfs, World, assert_same, live, no_pre, restore};
use abssd_tests::{Verb, backup};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

async fn entry(c: &Client, id: &str) -> BackupEntry {
    call::<BackupShow>(c, &ShowParams { id: id.into() })
        .await
        .unwrap()
        .backup
}

/// Change the instance in every way a restore must undo.
fn vandalize(w: &World, name: &str) {
    let cfg = w.cfg();
    let data = w.data(name);
    fs::write(data.join("user-files/budget-1/db.sqlite"), b"overwritten").unwrap();
    fs::write(data.join("new-file"), b"added later").unwrap();
    fs::remove_file(data.join("server-files/secret.key")).unwrap();
    fs::write(cfg.unit_file(name), "[Service]\nExecStart=/bin/false\n").unwrap();
    fs::write(
        cfg.site_file(name),
        format!("server {{ listen 127.0.0.1:8081; server_name changed-{name}.test; }}\n"),
    )
    .unwrap();
    fs::remove_file(cfg.site_link(name)).unwrap();
    let reg = cfg.registry_file();
    let text = fs::read_to_string(&reg)
        .unwrap()
        .replace("25.1.0", "26.0.0");
    fs::write(&reg, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_unconfirmed_restores_change_nothing() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    vandalize(&w, "alpha");
    let (before, index_before) = (w.live_state(), w.index());

    let out = restore(
        &c,
        &RestoreParams {
            dry_run: true,
            ..live(&made.id)
        },
    )
    .await
    .unwrap();
    assert!(out.result.is_none());
    let plan = out.plan.unwrap();
    assert_eq!(plan.mode, RestoreMode::Live);
    assert!(plan.dry_run);
    assert_eq!(plan.target, w.data("alpha").display().to_string());
    assert_eq!(plan.checksum.expected, made.checksum);
    assert!(plan.checksum.sidecar_agrees);
    assert!(plan.space.needed_bytes >= made.size_bytes);
    assert!(plan.space.available_bytes > plan.space.needed_bytes);
    let unit = plan.unit.as_ref().unwrap();
    assert_eq!(unit.active_state, "active");
    assert!(unit.running_after);
    assert_eq!(
        plan.pre_backup_dir.as_deref(),
        Some(w.cfg().instance_backup_dir("alpha").to_str().unwrap())
    );
    let steps: Vec<String> = plan.steps.iter().map(|s| s.step.to_string()).collect();
    assert_eq!(
        steps,
        [
            "lock",
            "pre_backup",
            "extract",
            "validate",
            "stop_unit",
            "swap",
            "assets",
            "daemon_reload",
            "registry",
            "start_unit",
            "nginx",
            "cleanup",
            "index"
        ]
    );

    // Without confirmation: refused, nothing changed.
    let err = restore(
        &c,
        &RestoreParams {
            yes: false,
            ..live(&made.id)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(err.message.contains("confirm"), "{}", err.message);

    assert_same(&before, &w.live_state());
    assert_eq!(w.index(), index_before);
    assert_eq!(
        w.calls("StopUnit") + w.calls("StartUnit") + w.calls("Reload"),
        0
    );
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_restore_brings_back_data_unit_site_link_and_registry_and_restarts_the_unit() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let cfg = w.cfg();
    let made = backup(&c, "alpha").await;
    let data_then = snapshot(&w.data("alpha"));
    let unit_then = fs::read(cfg.unit_file("alpha")).unwrap();
    let site_then = fs::read(cfg.site_file("alpha")).unwrap();
    vandalize(&w, "alpha");

    let out = restore(&c, &live(&made.id)).await.unwrap();
    let result = out.result.unwrap();
    assert_eq!(result.mode, RestoreMode::Live);
    assert_eq!(result.checksum, made.checksum);
    assert_eq!(result.unit_running, Some(true));
    assert!(result.nginx_reloaded);
    assert!(result.warnings.is_empty(), "{:?}", result.warnings);

    assert_eq!(snapshot(&w.data("alpha")), data_then);
    assert_eq!(fs::read(cfg.unit_file("alpha")).unwrap(), unit_then);
    assert_eq!(fs::read(cfg.site_file("alpha")).unwrap(), site_then);
    assert_eq!(
        fs::read_link(cfg.site_link("alpha")).unwrap(),
        cfg.site_file("alpha")
    );
    let reg = abssd::registry::Registry::load(&cfg.registry_file()).unwrap();
    let inst = reg.get("alpha").unwrap();
    assert_eq!(inst.version.as_deref(), Some("25.1.0"));
    assert!(inst.metadata.contains_key("last_restored_at"));
    assert_eq!(inst.metadata["last_restored_by"], json!("root"));

    assert!(w.unit_active("alpha"));
    assert_eq!(w.calls("StopUnit abssctl-alpha.service"), 1);
    assert_eq!(w.calls("StartUnit abssctl-alpha.service"), 1);
    assert_eq!(w.calls("Reload"), 1, "{:?}", w.fake.calls());
    assert_eq!(w.calls("ReloadUnit nginx.service"), 1);

    let e = entry(&c, &made.id).await;
    assert!(e.last_restored_at.is_some());
    assert_eq!(
        e.last_restore_destination,
        Some(Lenient::Typed(w.data("alpha").display().to_string()))
    );
    assert_eq!(e.restored_by.as_ref().unwrap().typed().unwrap().uid, 0);
    let history: Vec<&RestoreRecord> = e.restore_records().collect();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].op_id, out.op_id);
    let pre = result.pre_restore_backup.clone().unwrap();
    assert_eq!(history[0].pre_restore_backup, Some(pre.clone()));
    let pre_entry = entry(&c, &pre).await;
    assert_eq!(
        pre_entry.metadata.labels,
        ["pre-restore", "pre-backup-restore"]
    );
    assert_eq!(pre_entry.instance, "alpha");
    w.assert_no_leftovers();

    // The events tell the phases in order.
    let events = events_of(&c, &out.op_id).await;
    let order: Vec<&str> = [
        "pre_backup",
        "extract",
        "stop_unit",
        "swap",
        "assets",
        "registry",
        "start_unit",
        "nginx",
        "cleanup",
    ]
    .into_iter()
    .inspect(|p| assert!(phase(&events, p).is_some(), "no {p} phase"))
    .collect();
    let seqs: Vec<u64> = order
        .iter()
        .map(|p| phase(&events, p).unwrap().seq)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let last_phase = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::Phase { name, .. } => Some(name),
        _ => None,
    });
    assert_eq!(last_phase, Some(&Phase::Index));
    let extract: Vec<_> = events
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::Progress { phase, .. } if *phase == Phase::Extract),
        )
        .collect();
    assert!(
        extract.iter().any(|e| matches!(&e.kind,
            EventKind::Progress { done, total, .. } if done == total && *total > 0)),
        "{extract:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_unit_stays_stopped_unless_told_and_restart_flags_win() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let unit = unit_name("alpha");

    w.fake.set_unit(&unit, false, true);
    let r = restore(&c, &no_pre(&made.id))
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(r.unit_running, Some(false));
    assert!(r.pre_restore_backup.is_none());
    assert!(!w.unit_active("alpha"));
    assert_eq!(w.calls("StartUnit") + w.calls("StopUnit"), 0);

    // --restart starts the stopped unit; --no-restart leaves the running one stopped.
    for restart in [true, false] {
        let params = RestoreParams {
            restart: Some(restart),
            ..no_pre(&made.id)
        };
        let r = restore(&c, &params).await.unwrap().result.unwrap();
        assert_eq!(r.unit_running, Some(restart));
        assert_eq!(w.unit_active("alpha"), restart);
    }
    let e = entry(&c, &made.id).await;
    assert_eq!(e.restore_records().count(), 3);
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dest_restore_writes_only_the_new_directory() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let data_then = snapshot(&w.data("alpha"));
    vandalize(&w, "alpha");
    let before = w.live_state();
    w.fake.clear_calls();

    let dest = w.cfg().restores_root.join("alpha-copy");
    let r = restore(
        &c,
        &RestoreParams {
            id: made.id.clone(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .result
    .unwrap();
    assert_eq!(r.mode, RestoreMode::Dest);
    assert_eq!(r.destination, dest.display().to_string());
    assert_eq!(snapshot(&dest), data_then);
    assert_same(&before, &w.live_state());
    assert!(w.jobs().is_empty(), "{:?}", w.fake.calls());
    assert_eq!(
        entry(&c, &made.id).await.last_restore_destination,
        Some(Lenient::Typed(dest.display().to_string()))
    );

    // Refusals: not empty, outside the allowed roots, relative, live-only flags.
    for (bad, why) in [
        (dest.display().to_string(), "not empty"),
        ("/etc/abssd-test-dest".to_owned(), "must lie under"),
        ("relative/dir".to_owned(), "absolute"),
    ] {
        let err = restore(
            &c,
            &RestoreParams {
                id: made.id.clone(),
                dest: Some(bad.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "{bad}: {err:?}");
        assert!(err.message.contains(why), "{bad}: {}", err.message);
    }
    let err = restore(
        &c,
        &RestoreParams {
            id: made.id.clone(),
            dest: Some(w.cfg().restores_root.join("other").display().to_string()),
            restart: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation);
    assert!(!Path::new("/etc/abssd-test-dest").exists());
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_mismatch_changes_nothing_live() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    vandalize(&w, "alpha");
    // Same size, one byte different, in the middle of the compressed stream.
    let mut bytes = fs::read(&made.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&made.archive, &bytes).unwrap();
    let (before, index_before) = (w.live_state(), w.index());
    w.fake.clear_calls();

    let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
    // Refused (exit 2), as the Python tool refuses a checksum mismatch.
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(
        err.message.contains("checksum") || err.message.contains("corrupt"),
        "{}",
        err.message
    );
    assert_same(&before, &w.live_state());
    assert_eq!(w.index(), index_before);
    assert_eq!(
        w.calls("StopUnit") + w.calls("StartUnit") + w.calls("Reload"),
        0
    );
    assert!(w.unit_active("alpha"));
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_unit_start_rolls_back_everything() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    vandalize(&w, "alpha");
    let unit = unit_name("alpha");
    w.fake.set_unit(&unit, false, true);
    w.fake.fail(&unit, Verb::Start, Some("failed"));
    let before = w.live_state();

    let err = restore(
        &c,
        &RestoreParams {
            restart: Some(true),
            no_pre_backup: true,
            ..live(&made.id)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(
        err.message.contains(&unit) && err.message.contains("failed"),
        "{}",
        err.message
    );
    let detail = err.detail.clone().unwrap();
    let undone = detail["rolled_back"].as_array().unwrap();
    assert!(
        undone
            .iter()
            .any(|u| u.as_str().unwrap().starts_with("data put back")),
        "{detail}"
    );
    assert!(detail["left"].as_array().unwrap().is_empty(), "{detail}");
    assert!(detail["op_id"].is_string());

    assert_same(&before, &w.live_state());
    assert!(!w.unit_active("alpha"));
    // The previous unit file was reloaded into systemd after it was put back.
    assert_eq!(w.calls("Reload"), 2, "{:?}", w.fake.calls());
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_nginx_check_rolls_back_everything_including_the_running_unit() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let cfg = w.cfg();
    // The backup carries a site nginx rejects; the live one is fine.
    fs::write(
        cfg.site_file("alpha"),
        "server { listen 127.0.0.1:8080; no_such_directive on; }\n",
    )
    .unwrap();
    let made = backup(&c, "alpha").await;
    fs::write(
        cfg.site_file("alpha"),
        "server { listen 127.0.0.1:8080; server_name alpha.test; }\n",
    )
    .unwrap();
    fs::write(w.data("alpha").join("new-file"), b"after the backup").unwrap();
    let before = w.live_state();
    w.fake.clear_calls();

    let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(err.message.contains("no_such_directive"), "{}", err.message);
    assert_same(&before, &w.live_state());
    assert!(
        w.unit_active("alpha"),
        "the unit runs again after the rollback"
    );
    assert_eq!(
        w.jobs(),
        [
            "StopUnit abssctl-alpha.service",
            "Reload",
            "StartUnit abssctl-alpha.service",
            "StopUnit abssctl-alpha.service",
            "Reload",
            "StartUnit abssctl-alpha.service",
        ],
    );
    w.assert_no_leftovers();
}

/// Makes a directory immutable for the life of the guard (root only).
struct Immutable(PathBuf);

impl Immutable {
    fn new(dir: &Path) -> Immutable {
        let st = Command::new("chattr").arg("+i").arg(dir).status().unwrap();
        assert!(st.success(), "chattr +i {}", dir.display());
        Immutable(dir.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_failure_rolls_back_everything() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    vandalize(&w, "alpha");
    let before = w.live_state();
    let err = {
        // The site cannot be replaced: EPERM after data and unit were swapped.
        let _guard = Immutable::new(&w.cfg().sites_available);
        restore(&c, &no_pre(&made.id)).await.unwrap_err()
    };
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert!(err.message.contains("rolled back"), "{}", err.message);
    assert_same(&before, &w.live_state());
    assert!(w.unit_active("alpha"));
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_space_fails_cleanly() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let cfg = w.cfg();
    // Incompressible data, so the pre-restore backup needs real space, and
    // zeros, so the archive is much smaller than what it unpacks to.
    let mut noise = vec![0u8; 3_000_000];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom").unwrap(), &mut noise).unwrap();
    fs::write(w.data("alpha").join("noise.bin"), &noise).unwrap();
    fs::write(w.data("alpha").join("zeros.bin"), vec![0u8; 6_000_000]).unwrap();
    let made = call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            out_dir: Some(cfg.backups_root.join("kept").display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .result
    .unwrap();
    vandalize(&w, "alpha");
    let before = w.live_state();

    // 1. The pre-restore backup hits ENOSPC: nothing live changes.
    {
        let small = Tmpfs::mount(&cfg.instance_backup_dir("alpha"), "1m");
        let err = restore(&c, &live(&made.id)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
        assert!(
            snapshot(&small.0).is_empty(),
            "left in the full filesystem: {:?}",
            snapshot(&small.0).keys()
        );
    }
    assert_same(&before, &w.live_state());

    // 2. Extraction runs out of space (the index does not record the content,
    //    as the Python tool's entries do not, so pre-flight lets it start; an
    //    understated record would stop it at that size instead): staging is
    //    removed, nothing live changes.
    let mut index: Value = serde_json::from_slice(&w.index()).unwrap();
    for e in index["backups"].as_array_mut().unwrap() {
        e["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("uncompressed_bytes");
    }
    fs::write(cfg.index_file, serde_json::to_vec(&index).unwrap()).unwrap();
    let moved = cfg.instance_root.join("alpha");
    let keep = w.sb.path("alpha-live");
    fs::rename(&moved, &keep).unwrap();
    {
        // Room for the live data (~9.5 MB) and the archive's pre-flight bound
        // (~3.6 MB), not for a second copy of the content.
        let _small = Tmpfs::mount(&moved, "14m");
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", keep.display()))
            .arg(&moved)
            .status()
            .unwrap();
        assert!(st.success());
        let before = w.live_state();
        let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
        assert!(
            err.message.contains("space") || err.message.contains("No space"),
            "{}",
            err.message
        );
        assert_same(&before, &w.live_state());
        w.assert_no_leftovers();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnu_tar_archives_in_the_python_layout_restore() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    for (gzip, id, algorithm) in [
        (true, "20250601-100000-alpha-a1b2c3", "gzip"),
        (false, "20250601-100001-alpha-d4e5f6", "zstd"),
    ] {
        let (archive, payload_data) = python_style_archive(&w.sb, "alpha", id, gzip);
        register_python_entry(&w.sb, "alpha", id, &archive, algorithm);
        let expected = snapshot(&payload_data);
        vandalize(&w, "alpha");
        let r = restore(&c, &no_pre(id)).await.unwrap().result.unwrap();
        assert_eq!(snapshot(&w.data("alpha")), expected, "{algorithm}");
        assert!(r.nginx_reloaded, "{algorithm}");
        let reg = abssd::registry::Registry::load(&w.cfg().registry_file()).unwrap();
        let inst = reg.get("alpha").unwrap();
        assert_eq!(inst.version.as_deref(), Some("24.9.0"));
        assert_eq!(inst.domain.as_deref(), Some("restored.example.test"));
        assert_eq!(
            inst.paths.root.as_deref(),
            Some(w.data("alpha").to_str().unwrap()),
            "the data root stays where the data is"
        );
        // Python's keys survive the annotation.
        let e = entry(&c, id).await;
        assert_eq!(e.created_by, Some(json!("root")));
        assert_eq!(e.restore_records().count(), 1);
    }
    w.assert_no_leftovers();
}

/// Restore history in shapes other writers use (the Python tool names an
/// actor by its user name; a hand edit, an older record with other keys, a
/// `null`) is no reason to refuse the whole index, which every backup
/// operation reads: such values are kept as they were written, and a restore
/// of the entry adds its own record beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_history_in_other_shapes_keeps_the_index_usable_and_is_kept() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let (odd, other) = (
        "20250601-100000-alpha-a1b2c3",
        "20250601-100001-alpha-d4e5f6",
    );
    for id in [odd, other] {
        let (archive, _) = python_style_archive(&w.sb, "alpha", id, true);
        register_python_entry(&w.sb, "alpha", id, &archive, "gzip");
    }
    let python_record = json!({"restored_at": "2025-06-01T11:00:00Z", "actor": "root",
                               "destination": "/srv/alpha/data"});
    let index_file = w.cfg().index_file;
    let mut index: Value = serde_json::from_slice(&w.index()).unwrap();
    for e in index["backups"].as_array_mut().unwrap() {
        let m = e.as_object_mut().unwrap();
        if m["id"] == odd {
            m.insert("last_restored_at".into(), json!("2025-06-01T11:00:00Z"));
            m.insert("last_restore_destination".into(), Value::Null);
            m.insert("restored_by".into(), json!("root"));
            m.insert("restores".into(), json!([python_record]));
        } else if m["id"] == other {
            m.insert("last_restored_at".into(), json!(1748775600));
            m.insert(
                "restored_by".into(),
                json!({"user": "root", "tty": "pts/0"}),
            );
            m.insert("restores".into(), json!({"count": 2}));
        }
    }
    fs::write(&index_file, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    let other_before = serde_json::to_string(&w.raw_entry(other)).unwrap();

    // Every entry stays readable, and so does the index for writing.
    let list = call::<BackupList>(&c, &ListParams::default())
        .await
        .unwrap();
    assert_eq!(list.backups.len(), 3);
    assert_eq!(entry(&c, &made.id).await.id, made.id);
    let second = backup(&c, "alpha").await;

    let out = restore(&c, &no_pre(odd)).await.unwrap();
    assert!(out.result.is_some());
    let e = w.raw_entry(odd);
    assert_eq!(e["restored_by"]["uid"], 0);
    assert_eq!(e["last_restore_destination"], json!(w.data("alpha")));
    let history = e["restores"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        serde_json::to_string(&history[0]).unwrap(),
        serde_json::to_string(&python_record).unwrap()
    );
    assert_eq!(history[1]["op_id"], json!(out.op_id));
    // The entry nobody restored is written back byte for byte.
    assert_eq!(
        serde_json::to_string(&w.raw_entry(other)).unwrap(),
        other_before
    );
    assert_eq!(entry(&c, &second.id).await.id, second.id);
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_archive_fails_and_writes_nothing_outside_staging() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let outside = w.sb.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let id = "20250601-100000-alpha-0badc0";
    let dir = w.cfg().instance_backup_dir("alpha");
    fs::create_dir_all(&dir).unwrap();
    let archive = dir.join(format!("{id}.tar.gz"));
    // A symlink out of the tree, then a file written through it.
    let script = format!(
        r#"
import io, tarfile
with tarfile.open({archive:?}, "w:gz") as t:
    for d in ["{id}/", "{id}/data/"]:
        i = tarfile.TarInfo(d); i.type = tarfile.DIRTYPE; i.mode = 0o750; t.addfile(i)
    l = tarfile.TarInfo("{id}/data/escape"); l.type = tarfile.SYMTYPE; l.linkname = {outside:?}; t.addfile(l)
    body = b"pwned"
    f = tarfile.TarInfo("{id}/data/escape/pwned"); f.size = len(body); t.addfile(f, io.BytesIO(body))
"#,
        archive = archive.display().to_string(),
        outside = outside.display().to_string(),
    );
    let st = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(st.success());
    register_python_entry(&w.sb, "alpha", id, &archive, "gzip");
    let before = w.live_state();
    let err = restore(&c, &no_pre(id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(snapshot(&outside).is_empty(), "wrote through the symlink");
    assert_same(&before, &w.live_state());
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_and_create_serialize_on_one_instance_and_overlap_on_two() {
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    for name in ["alpha", "beta"] {
        let big: Vec<u8> = (0..12_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        fs::write(w.data(name).join("big.bin"), &big).unwrap();
    }
    let a = backup(&c, "alpha").await;
    let b = backup(&c, "beta").await;
    let detached = |id: &str| RestoreParams {
        detach: true,
        no_pre_backup: true,
        ..live(id)
    };

    // Different instances: no instance-lock wait, and the extractions overlap.
    let ra = call::<BackupRestore>(&c, &detached(&a.id))
        .await
        .unwrap()
        .op_id;
    let rb = call::<BackupRestore>(&c, &detached(&b.id))
        .await
        .unwrap()
        .op_id;
    let (ea, eb) = (events_of(&c, &ra).await, events_of(&c, &rb).await);
    assert!(
        matches!(ea.last().unwrap().kind, EventKind::Finished { .. }),
        "{ea:?}"
    );
    assert!(
        matches!(eb.last().unwrap().kind, EventKind::Finished { .. }),
        "{eb:?}"
    );
    assert!(!waited_for_instance(&ea) && !waited_for_instance(&eb));
    let b_extract = phase(&eb, "extract").unwrap();
    assert!(
        b_extract.ts < ea.last().unwrap().ts,
        "beta began extracting only after alpha's restore ended"
    );

    // One instance: a create started after a restore waits for it.
    let r = call::<BackupRestore>(&c, &detached(&a.id))
        .await
        .unwrap()
        .op_id;
    let cr = call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            detach: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .op_id;
    let (er, ec) = (events_of(&c, &r).await, events_of(&c, &cr).await);
    // Serialized: the create's work under the lock (archive → index) lies
    // wholly before or wholly after the restore's (extract → cleanup).
    let (c0, c1) = (
        &phase(&ec, "archive").unwrap().ts,
        &phase(&ec, "index").unwrap().ts,
    );
    let (r0, r1) = (
        &phase(&er, "extract").unwrap().ts,
        &phase(&er, "cleanup").unwrap().ts,
    );
    assert!(
        c0 >= r1 || c1 <= r0,
        "create {c0}..{c1} overlaps restore {r0}..{r1}"
    );
    w.assert_no_leftovers();
}

/// The inode numbers of `a` and `b` (not following symlinks).
fn inodes(a: &Path, b: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
    (ino(a), ino(b))
}

/// A name that is not UTF-8 and a file with two names are archived with no
/// warning, as GNU tar stores them: GNU tar extracts the raw name byte for
/// byte and the two names as one file, and so do a live and a `--dest` restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_names_and_hard_links_are_archived_and_restored_as_gnu_tar_does() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data("alpha");
    let raw = OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(data.join(raw), b"latin-1 name\n").unwrap();
    fs::write(data.join("first"), b"one file, two names\n").unwrap();
    fs::hard_link(data.join("first"), data.join("user-files/second")).unwrap();
    let linked = |root: &Path| {
        let (a, b) = inodes(&root.join("first"), &root.join("user-files/second"));
        assert_eq!(a, b, "{}: the two names are one file", root.display());
        assert_eq!(
            fs::read(root.join(raw)).unwrap(),
            b"latin-1 name\n",
            "{}",
            root.display()
        );
    };
    linked(&data);
    let made = backup(&c, "alpha").await;
    assert!(made.warnings.is_empty(), "{:?}", made.warnings);
    let data_then = snapshot(&data);

    // GNU tar: the raw name, byte for byte, and a hard-link entry.
    let listing = abssd_tests::tar(&["-tvf", &made.archive]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("hrw") && l.ends_with(&format!("{}/data/first", made.id))),
        "{listing}"
    );
    let out = tempfile::tempdir().unwrap();
    abssd_tests::tar(&[
        "-xpf",
        &made.archive,
        "--numeric-owner",
        "-C",
        out.path().to_str().unwrap(),
    ]);
    let gnu = out.path().join(&made.id).join("data");
    linked(&gnu);
    assert_eq!(snapshot(&gnu), data_then);

    // Our restore, live: the broken link and the lost name come back.
    fs::remove_file(data.join(raw)).unwrap();
    fs::remove_file(data.join("user-files/second")).unwrap();
    fs::write(data.join("user-files/second"), b"one file, two names\n").unwrap();
    let r = restore(&c, &no_pre(&made.id))
        .await
        .unwrap()
        .result
        .unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    linked(&data);
    assert_eq!(snapshot(&data), data_then);

    // And to a destination.
    let dest = w.cfg().restores_root.join("alpha-copy");
    restore(
        &c,
        &RestoreParams {
            id: made.id.clone(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    linked(&dest);
    assert_eq!(snapshot(&dest), data_then);
}

/// Issue 14 item 8: a backup whose `.sha256` sidecar is gone but whose index
/// entry has its checksum restores (as the Python tool's restore does), checked
/// against the index; the plan says so, and the sidecar is written back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sidecar_restores_against_the_index_and_is_written_back() {
    use std::os::unix::fs::MetadataExt;
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let sidecar = PathBuf::from(format!("{}.sha256", made.archive));
    let written_by_create = fs::read(&sidecar).unwrap();
    let meta = fs::metadata(&sidecar).unwrap();
    let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
    fs::remove_file(&sidecar).unwrap();
    let data_then = snapshot(&w.data("alpha"));
    vandalize(&w, "alpha");

    let out = restore(&c, &no_pre(&made.id)).await.unwrap();
    let plan = out.plan.unwrap();
    assert_eq!(plan.checksum.expected, made.checksum);
    assert!(plan.checksum.sidecar_missing);
    assert!(!plan.checksum.sidecar_agrees);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("sidecar") && w.contains("missing") && w.contains("index")),
        "{:?}",
        plan.warnings
    );
    let result = out.result.unwrap();
    assert_eq!(result.checksum, made.checksum);
    assert_eq!(snapshot(&w.data("alpha")), data_then);

    assert_eq!(fs::read(&sidecar).unwrap(), written_by_create);
    let meta = fs::metadata(&sidecar).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (mode, uid, gid)
    );
    w.assert_no_leftovers();
}

/// With the sidecar gone the index checksum is all that vouches for the
/// archive: a damaged archive is still refused, and nothing changes (no
/// sidecar is written for it either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sidecar_and_a_damaged_archive_change_nothing() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let sidecar = PathBuf::from(format!("{}.sha256", made.archive));
    fs::remove_file(&sidecar).unwrap();
    vandalize(&w, "alpha");
    let mut bytes = fs::read(&made.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&made.archive, &bytes).unwrap();
    let (before, index_before) = (w.live_state(), w.index());
    w.fake.clear_calls();

    let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
    assert!(
        err.message.contains("checksum") || err.message.contains("corrupt"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("missing"), "{}", err.message);
    assert!(!sidecar.exists());
    assert_same(&before, &w.live_state());
    assert_eq!(w.index(), index_before);
    assert_eq!(
        w.calls("StopUnit") + w.calls("StartUnit") + w.calls("Reload"),
        0
    );
    assert!(w.unit_active("alpha"));
    w.assert_no_leftovers();
}

/// A restore leaves on the entry what the Python tool's restore leaves, under
/// its names and in its formats, so that whichever tool restored last the
/// other reads the same record; the Python tool's earlier record is replaced
/// and its other metadata kept. The Python tool (cli.py, `backup restore`):
///   restore_metadata["last_restore_destination"] = str(destination_dir)
///   restore_metadata["last_restored_at"] = restored_at
///   restore_metadata["last_restore_actor"] = dict(actor_value)
/// with `actor = {"type": actor_type, "name": username}` (+ `session`), and
/// its pre-restore backup labelled by `_compose_backup_metadata("backup
/// restore", ..)`: `label = f"pre-{slug}"`, i.e. `pre-backup-restore`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_writes_the_python_tools_restore_metadata_and_pre_backup_label() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let id = "20250601-100000-alpha-a1b2c3";
    let (archive, _) = python_style_archive(&w.sb, "alpha", id, true);
    register_python_entry(&w.sb, "alpha", id, &archive, "gzip");
    let index_file = w.cfg().index_file;
    let mut index: Value = serde_json::from_slice(&w.index()).unwrap();
    for e in index["backups"].as_array_mut().unwrap() {
        if e["id"] == id {
            e["last_restored_at"] = json!("2025-06-01T11:00:00Z");
            e["metadata"] = json!({
                "data_only": false,
                "labels": ["nightly"],
                "last_restored_at": "2025-06-01T11:00:00Z",
                "last_restore_destination": "/elsewhere/data",
                "last_restore_actor": {"type": "ci", "name": "runner", "session": "4711"},
                "python_only": {"kept": true},
            });
        }
    }
    fs::write(&index_file, serde_json::to_vec_pretty(&index).unwrap()).unwrap();

    let out = restore(&c, &live(id)).await.unwrap();
    let result = out.result.unwrap();
    let e = w.raw_entry(id);
    let m = &e["metadata"];
    assert_python_time(&m["last_restored_at"]);
    assert_ne!(m["last_restored_at"], "2025-06-01T11:00:00Z");
    assert_eq!(m["last_restored_at"], e["last_restored_at"]);
    assert_eq!(
        m["last_restore_destination"],
        json!(w.data("alpha").display().to_string())
    );
    assert_eq!(m["last_restore_destination"], e["last_restore_destination"]);
    assert_eq!(
        m["last_restore_actor"],
        json!({"type": "user", "name": "root"})
    );
    assert_eq!(e["restored_by"]["user"], "root");
    assert_eq!(m["labels"], json!(["nightly"]));
    assert_eq!(m["python_only"], json!({"kept": true}));
    assert!(m.get("verification_error").is_none());

    // The typed reading of the same entry.
    let typed = entry(&c, id).await;
    assert_eq!(
        typed.metadata.last_restore_actor,
        Some(Lenient::Typed(ToolActor {
            kind: "user".into(),
            name: "root".into(),
            session: None,
        }))
    );

    let pre = result.pre_restore_backup.unwrap();
    let pre_entry = w.raw_entry(&pre);
    assert_eq!(
        pre_entry["metadata"]["labels"],
        json!(["pre-restore", "pre-backup-restore"])
    );
    // Nobody restored the pre-restore backup.
    assert!(pre_entry["metadata"].get("last_restored_at").is_none());
}

/// Point alpha's registry entry at `site`, `link` and `unit` under
/// `paths.nginx_site`, `paths.nginx_enabled` and `paths.systemd_unit`, as the
/// Python tool records them (plain strings).
fn record_paths(w: &World, unit: &Path, site: &Path, link: &Path) {
    let file = w.cfg().registry_file();
    let mut reg = abssd::registry::Registry::load(&file).unwrap();
    let paths = &mut reg.get_mut("alpha").unwrap().paths.extra;
    for (key, p) in [
        ("systemd_unit", unit),
        ("nginx_site", site),
        ("nginx_enabled", link),
    ] {
        paths.insert(key.into(), json!(p.display().to_string()));
    }
    reg.save(&file).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_unit_and_site_paths_are_archived_planned_and_restored_there() {
    let w = World::new(&["alpha"]);
    let cfg = w.cfg();
    // Where the distribution keeps them, recorded in the registry: not where
    // the configuration's defaults (the Python tool's, under runtime_dir) say.
    let etc = w.sb.path("etc");
    let (site, link) = (
        etc.join("nginx/sites-available/abssctl-alpha.conf"),
        etc.join("nginx/sites-enabled/abssctl-alpha.conf"),
    );
    fs::create_dir_all(site.parent().unwrap()).unwrap();
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    fs::rename(cfg.site_file("alpha"), &site).unwrap();
    fs::remove_file(cfg.site_link("alpha")).unwrap();
    std::os::unix::fs::symlink(&site, &link).unwrap();
    let site_then = fs::read(&site).unwrap();
    record_paths(&w, &cfg.unit_file("alpha"), &site, &link);

    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    assert_eq!(
        abssd_tests::tar_member(
            &made.archive,
            &format!("{}/nginx/abssctl-alpha.conf", made.id)
        ),
        site_then,
        "the recorded site is archived"
    );
    fs::write(
        &site,
        "server { listen 127.0.0.1:8081; server_name vandal.test; }\n",
    )
    .unwrap();
    fs::remove_file(&link).unwrap();

    let out = restore(
        &c,
        &RestoreParams {
            dry_run: true,
            ..no_pre(&made.id)
        },
    )
    .await
    .unwrap();
    let plan = out.plan.unwrap();
    let assets = plan
        .steps
        .iter()
        .find(|s| s.step == Phase::Assets)
        .expect("an assets step");
    assert!(
        assets.detail.contains(&site.display().to_string())
            && assets.detail.contains(&link.display().to_string()),
        "{}",
        assets.detail
    );

    let out = restore(&c, &no_pre(&made.id)).await.unwrap();
    assert!(out.result.unwrap().nginx_reloaded);
    assert_eq!(fs::read(&site).unwrap(), site_then);
    assert_eq!(fs::read_link(&link).unwrap(), site);
    assert!(
        !cfg.site_file("alpha").exists() && fs::symlink_metadata(cfg.site_link("alpha")).is_err(),
        "nothing is installed at the default paths"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_path_outside_the_allowed_directories_is_refused_changing_nothing() {
    let w = World::new(&["alpha"]);
    let cfg = w.cfg();
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let victim = w.sb.path("etc/passwd");
    fs::create_dir_all(victim.parent().unwrap()).unwrap();
    fs::write(&victim, "root:x:0:0::/root:/bin/sh\n").unwrap();
    for (site, why) in [
        (victim.clone(), "outside the directories"),
        (
            cfg.sites_available.join("default"),
            "must be named abssctl-alpha.conf",
        ),
    ] {
        record_paths(&w, &cfg.unit_file("alpha"), &site, &cfg.site_link("alpha"));
        let (before, index_before) = (w.live_state(), w.index());
        let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
        assert!(
            err.message.contains("instance alpha")
                && err.message.contains("paths.nginx_site")
                && err.message.contains(why),
            "{}",
            err.message
        );
        assert_same(&before, &w.live_state());
        assert_eq!(w.index(), index_before);
    }
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert!(!cfg.sites_available.join("default").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archived_site_without_a_destination_is_a_warning_in_the_plan_and_the_restore() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let id = "20250601-100000-alpha-a1b2c3";
    let (archive, data) = python_style_archive(&w.sb, "alpha", id, true);
    // A site under another name, as a hand-made or renamed setup leaves it:
    // no path abssd may write is known for it.
    let top = data.parent().unwrap();
    fs::write(
        top.join("nginx/alpha.example.test.conf"),
        "server { listen 127.0.0.1:8082; }\n",
    )
    .unwrap();
    let archive_s = archive.display().to_string();
    let staging = top.parent().unwrap().display().to_string();
    abssd_tests::tar(&["-czf", &archive_s, "-C", &staging, id]);
    register_python_entry(&w.sb, "alpha", id, &archive, "gzip");
    let says =
        |w: &str| w.contains("nginx/alpha.example.test.conf") && w.contains("cannot be determined");

    let plan = restore(
        &c,
        &RestoreParams {
            dry_run: true,
            ..no_pre(id)
        },
    )
    .await
    .unwrap()
    .plan
    .unwrap();
    assert!(plan.warnings.iter().any(|w| says(w)), "{:?}", plan.warnings);
    assert_eq!(
        plan.warnings
            .iter()
            .filter(|w| w.contains("archive holds"))
            .count(),
        1
    );

    let result = restore(&c, &no_pre(id)).await.unwrap().result.unwrap();
    assert!(
        result.warnings.iter().any(|w| says(w)),
        "{:?}",
        result.warnings
    );
    assert!(
        !w.cfg()
            .sites_available
            .join("alpha.example.test.conf")
            .exists()
    );
}

/// Re-pack a payload laid out by [`python_style_archive`] (GNU tar, names
/// sorted so that `data/` comes before `metadata/`), after `change` edits it.
fn repack(w: &World, id: &str, archive: &Path, change: impl FnOnce(&Path)) {
    let staging = w.sb.path(&format!("py-staging-{id}"));
    change(&staging.join(id));
    abssd_tests::tar(&[
        "--sort=name",
        "-czf",
        archive.to_str().unwrap(),
        "-C",
        staging.to_str().unwrap(),
        id,
    ]);
}

/// Extraction holds a regular `metadata/instance.json` to 1 MiB; a hard-link
/// entry of that name carries the content of a data file of any size, and
/// the restore read it whole into the daemon's memory (and took its
/// `version` into the registry). It is refused, before anything live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_linked_instance_json_is_held_to_the_same_bound() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let id = "20250601-100000-alpha-b16b16";
    let (archive, _) = python_style_archive(&w.sb, "alpha", id, true);
    repack(&w, id, &archive, |top| {
        // A valid entry, just over the bound: the restore would go through.
        let pad = "x".repeat((1 << 20) + 1);
        let big = json!({"name": "alpha", "version": "9.9.9-linked", "pad": pad});
        let file = top.join("data/pad.json");
        fs::write(&file, serde_json::to_vec(&big).unwrap()).unwrap();
        let meta = top.join("metadata/instance.json");
        fs::remove_file(&meta).unwrap();
        fs::hard_link(&file, &meta).unwrap();
    });
    let listing = abssd_tests::tar(&["-tvzf", archive.to_str().unwrap()]);
    assert!(
        listing.contains("metadata/instance.json link to"),
        "{listing}"
    );
    register_python_entry(&w.sb, "alpha", id, &archive, "gzip");
    let before = w.live_state();
    let err = restore(&c, &no_pre(id)).await.unwrap_err();
    assert!(err.message.contains("larger than"), "{err:?}");
    assert_same(&before, &w.live_state());
    let reg = abssd::registry::Registry::load(&w.cfg().registry_file()).unwrap();
    assert_ne!(
        reg.get("alpha").unwrap().version.as_deref(),
        Some("9.9.9-linked")
    );
    w.assert_no_leftovers();
}

/// Both registry texts as PyYAML reads them, as JSON (`[before, after]`).
const PYYAML_BOTH: &str = r#"
import json, sys, yaml
def load(p):
    with open(p) as f:
        return yaml.safe_load(f)
print(json.dumps([load(sys.argv[1]), load(sys.argv[2])], default=str))
"#;

/// A restore takes `paths`, `version` and `domain` from the archive's
/// `metadata/instance.json` into the shared registry. Whatever those hold
/// (YAML syntax, document markers, comments, anchors and tags as text,
/// control and separator characters, deep nesting, very long values and
/// keys), PyYAML reads the edited file with every other entry and top-level
/// key unchanged and the restored entry's values exactly as archived, or the
/// restore is refused with the registry as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archived_registry_values_stay_inside_the_restored_entry() {
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    let file = w.cfg().registry_file();
    // Hand-written neighbours: a comment, a flow entry, a top-level key.
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str("# after the list\nzz_top: {keep: [1, 2]}\n");
    fs::write(&file, &text).unwrap();
    let mut deep = json!("bottom");
    for _ in 0..20 {
        deep = json!({"d": [deep]});
    }
    let hostile = json!({
        "name": "alpha",
        "version": "1\n- name: beta\n  port: 1\n",
        "domain": "x\"\n---\n...\n# c\t&a *a !!python/object:os.system '\\",
        "paths": {
            "data": "/srv/x\n  evil: 1\n- name: injected",
            "k\n- name: evil\n": "v",
            "&anchor": "*anchor",
            "? key": ": value",
            "": "",
            "nested": {"a": [{"b": ["c", {"d": null}]}, [], {}], "e": 1.5e300, "f": -1},
            "deep": deep,
            "long": "A ".repeat(50_000),
            "chars": "\u{2028}\u{2029}\u{85}\u{feff}\u{0}\u{1b}[31m \u{7f} é 😀 \r\n",
        },
    });
    let long_key = json!({"name": "alpha", "paths": {"k".repeat(1100): "v"}});
    for (n, archived) in [hostile, long_key].into_iter().enumerate() {
        let id = format!("20250601-10000{n}-alpha-bad0{n}0");
        let (archive, _) = python_style_archive(&w.sb, "alpha", &id, true);
        repack(&w, &id, &archive, |top| {
            fs::write(
                top.join("metadata/instance.json"),
                serde_json::to_vec(&archived).unwrap(),
            )
            .unwrap();
        });
        register_python_entry(&w.sb, "alpha", &id, &archive, "gzip");
        let before = fs::read_to_string(&file).unwrap();
        let outcome = restore(&c, &no_pre(&id)).await;
        let after = fs::read_to_string(&file).unwrap();
        let dir = w.sb.path(&format!("pyyaml-{n}"));
        fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("before.yml"), dir.join("after.yml"));
        fs::write(&a, &before).unwrap();
        fs::write(&b, &after).unwrap();
        let read = python_script(PYYAML_BOTH, &[a.to_str().unwrap(), b.to_str().unwrap()]);
        let [old, new]: [Value; 2] = serde_json::from_str(&read).unwrap();
        let entry = |doc: &Value, name: &str| -> Vec<Value> {
            let list = doc["instances"].as_array().unwrap();
            list.iter().filter(|e| e["name"] == name).cloned().collect()
        };
        assert_eq!(entry(&new, "beta"), entry(&old, "beta"), "{n}: {after}");
        assert_eq!(entry(&new, "alpha").len(), 1, "{n}: {after}");
        assert_eq!(new["instances"].as_array().unwrap().len(), 2, "{n}");
        let mut tops = new.as_object().unwrap().clone();
        let mut old_tops = old.as_object().unwrap().clone();
        tops.remove("instances");
        old_tops.remove("instances");
        assert_eq!(tops, old_tops, "{n}");
        assert_eq!(new["zz_top"], json!({"keep": [1, 2]}));
        match outcome {
            Ok(_) => {
                let alpha = &entry(&new, "alpha")[0];
                for key in ["version", "domain"] {
                    if let Some(v) = archived.get(key) {
                        assert_eq!(&alpha[key], v, "{n}: {key}");
                    }
                }
                for (k, v) in archived["paths"].as_object().unwrap() {
                    assert_eq!(&alpha["paths"][k], v, "{n}: paths.{k:?}");
                }
            }
            // Past 1024 characters a key is no implicit key to YAML: the
            // read-back of the edit refuses it and the restore rolls back.
            Err(e) => {
                assert_eq!(n, 1, "{e:?}");
                assert_eq!(after, before, "{n}: refused ({e:?}) but written");
            }
        }
    }
}
