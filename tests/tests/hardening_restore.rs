//! Issue 11, restore side: what a local user (an instance's service user, uid
//! 65534 here) or a hostile archive could do to restore, reconcile's adoption
//! and verify, each against the real daemon.
//!
//! * a planted archive claiming another instance's id never becomes that
//!   instance's backup: `--dest` inside the backups root is refused, adoption
//!   trusts the archive's place and owner rather than what it says, and the
//!   other instance's unit is never touched;
//! * adoption and verify refuse what restore refuses (symlink targets,
//!   names, the instance an archive names);
//! * ids with control characters or of unbounded length, and messages with
//!   control characters, are refused;
//! * restore stops at the recorded content size, at the configured entry
//!   count, and before the staging filesystem's reserve;
//! * a GNU tar archive's negative mtime is restored as such.
//!
//! The `extract::after-entry` hook is global to this process, so every test
//! here holds [`serial`] (the tests run one at a time).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupList, BackupReconcile, BackupShow, BackupVerify};
use abssd_proto::*;
use abssd_tests::nobody::{self, NOBODY, chown_r};
use abssd_tests::python::register_python_entry;
use abssd_tests::world::{Tmpfs, World, assert_same, no_pre, restore};
use abssd_tests::{Daemon, Sandbox, backup, client, serial, tar};
use serde_json::{Value, json};

/// Run `script` with `sh` as uid/gid 65534 (the instance's service user).
#[track_caller]
fn as_nobody(script: &str) {
    nobody::sh(None, script);
}

/// A backup of `name` laid out the way the Python tool does (its data, unit
/// and registry entry), changed by `edit` (given the payload's top
/// directory), packed by GNU tar (zstd) into `dir/file`.
fn gnu_backup(
    sb: &Sandbox,
    name: &str,
    id: &str,
    dir: &Path,
    file: &str,
    edit: impl FnOnce(&Path),
) -> PathBuf {
    let staging = tempfile::tempdir_in(&sb.prefix).unwrap();
    let top = staging.path().join(id);
    abssd_tests::python::lay_out_data_and_unit(sb, name, &top);
    fs::write(
        top.join("metadata/instance.json"),
        serde_json::to_vec(&json!({"name": name, "version": "24.9.0"})).unwrap(),
    )
    .unwrap();
    edit(&top);
    fs::create_dir_all(dir).unwrap();
    let archive = dir.join(file);
    tar(&[
        "--zstd",
        "-cf",
        archive.to_str().unwrap(),
        "-C",
        staging.path().to_str().unwrap(),
        id,
    ]);
    archive
}

fn dest(id: &str, dir: &Path) -> RestoreParams {
    RestoreParams {
        id: id.into(),
        dest: Some(dir.display().to_string()),
        ..Default::default()
    }
}

async fn adopt(c: &jsonrpsee::core::client::Client) -> ReconcileResult {
    let params = ReconcileParams {
        apply: true,
        adopt: true,
        ..Default::default()
    };
    call::<BackupReconcile>(c, &params)
        .await
        .unwrap()
        .result
        .unwrap()
}

fn orphan<'a>(r: &'a ReconcileResult, path: &Path) -> &'a ReconcileItem {
    r.orphaned
        .iter()
        .find(|o| o.path == path.display().to_string())
        .unwrap_or_else(|| panic!("{} not among the orphans: {r:#?}", path.display()))
}

fn index_ids(sb: &Sandbox) -> Vec<String> {
    let index: Value = serde_json::from_slice(&fs::read(sb.config().index_file).unwrap()).unwrap();
    index["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Set `metadata.uncompressed_bytes` of every index entry (`null`: remove).
fn set_recorded_size(cfg: &abssd::config::Layout, value: Value) {
    let mut index: Value = serde_json::from_slice(&fs::read(&cfg.index_file).unwrap()).unwrap();
    for e in index["backups"].as_array_mut().unwrap() {
        match &value {
            Value::Null => {
                e["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("uncompressed_bytes");
            }
            v => e["metadata"]["uncompressed_bytes"] = v.clone(),
        }
    }
    fs::write(&cfg.index_file, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Free bytes for an unprivileged writer, and the size, of `dir`'s filesystem.
fn space(dir: &Path) -> (u64, u64) {
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    let frsize = st.fragment_size() as u64;
    (
        st.blocks_available() as u64 * frsize,
        st.blocks() as u64 * frsize,
    )
}

/// Write a file of `len` bytes (real blocks, not sparse).
fn filler(path: &Path, len: u64) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

/// Names in `dir` other than `keep`.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_archive_never_becomes_another_instances_backup() {
    let _serial = serial();
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    let cfg = w.cfg();
    let beta_unit = fs::read(cfg.unit_file("beta")).unwrap();
    let unit_dir_before = others(&cfg.unit_dir, &[]);

    // alpha's service user owns alpha's data, and plants an archive there whose
    // top directory claims a backup of beta dated 2099, whose instance.json
    // names beta, and whose unit runs a command of theirs.
    let data = w.data("alpha");
    chown_r(&data, NOBODY);
    let id = "20990101-000000-beta-abcdef";
    as_nobody(&format!(
        r#"set -e; cd '{data}'; p=.plant/{id}
        mkdir -p $p/data $p/systemd $p/metadata
        echo owned > $p/data/x
        printf '[Service]\nExecStart=/bin/sh -c "id > /tmp/owned"\n' > $p/systemd/abssctl-beta.service
        echo '{{"name": "beta", "version": "99"}}' > $p/metadata/instance.json
        tar --zstd -cf {id}.tar.zst -C .plant {id}
        rm -rf .plant"#,
        data = data.display()
    ));
    let made = backup(&c, "alpha").await;

    // 1. The operator restores alpha's backup with --dest: inside the backups
    //    root (however spelt) it is refused, and nothing is written there.
    fs::create_dir_all(&cfg.restores_root).unwrap();
    let via_link = cfg.restores_root.join("to-backups");
    symlink(&cfg.backups_root, &via_link).unwrap();
    let backups_before = others(&cfg.backups_root, &[]);
    for target in [
        cfg.backups_root.join("beta"),
        cfg.backups_root.join("beta/restored"),
        cfg.backups_root.join("alpha-copy"),
        via_link.join("beta"),
    ] {
        let err = restore(&c, &dest(&made.id, &target)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "{target:?}: {err:?}");
        assert!(
            err.message.contains("inside the backups root"),
            "{target:?}: {}",
            err.message
        );
        assert!(!target.exists(), "{target:?} was created");
    }
    assert_eq!(others(&cfg.backups_root, &[]), backups_before);
    // The restores root is where --dest goes; the planted file lands there,
    // still owned by the user who made it.
    let copy = cfg.restores_root.join("alpha-copy");
    restore(&c, &dest(&made.id, &copy)).await.unwrap();
    let landed = copy.join(format!("{id}.tar.zst"));
    assert_eq!(fs::metadata(&landed).unwrap().uid(), NOBODY);

    // 2. Wherever a --dest under the backups root would have put it, and a
    //    root-owned copy in alpha's directory: adoption takes none of them.
    let in_beta = cfg.backups_root.join(format!("beta/{id}.tar.zst"));
    let deeper = cfg.backups_root.join(format!("beta/restored/{id}.tar.zst"));
    let in_alpha = cfg.backups_root.join(format!("alpha/{id}.tar.zst"));
    fs::create_dir_all(deeper.parent().unwrap()).unwrap();
    for (to, keep_owner) in [(&in_beta, true), (&deeper, true), (&in_alpha, false)] {
        let mut cp = Command::new("cp");
        if keep_owner {
            cp.arg("-p");
        }
        assert!(cp.arg(&landed).arg(to).status().unwrap().success());
    }
    let r = adopt(&c).await;
    assert_eq!(r.adopted.as_deref(), Some(&[][..]), "{r:#?}");
    let why = &orphan(&r, &in_beta).reason;
    assert!(why.contains("owned by uid 65534"), "{why}");
    let why = &orphan(&r, &in_alpha).reason;
    assert!(
        why.contains("names instance beta, but it lies in the directory of alpha"),
        "{why}"
    );
    assert!(
        r.orphaned
            .iter()
            .all(|o| o.path != deeper.display().to_string()),
        "below an instance directory is never looked into: {r:#?}"
    );
    assert!(!index_ids(&w.sb).contains(&id.to_owned()));

    // 3. beta's newest backup is not the planted one, and a restore of that id
    //    finds nothing: beta's unit is the one it always was.
    let beta = call::<BackupList>(
        &c,
        &ListParams {
            instance: Some("beta".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(beta.backups.iter().all(|b| b.id != id));
    let err = restore(&c, &no_pre(id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err:?}");
    assert_eq!(fs::read(cfg.unit_file("beta")).unwrap(), beta_unit);
    assert_eq!(others(&cfg.unit_dir, &[]), unit_dir_before);
    assert!(w.jobs().is_empty(), "{:?}", w.fake.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_refuses_what_restore_refuses() {
    let _serial = serial();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let dir = sb.config().instance_backup_dir("alpha");

    let absolute = gnu_backup(
        &sb,
        "alpha",
        "20250601-100000-alpha-aaaaaa",
        &dir,
        "20250601-100000-alpha-aaaaaa.tar.zst",
        |top| symlink("/etc/shadow", top.join("data/evil")).unwrap(),
    );
    let leaving = gnu_backup(
        &sb,
        "alpha",
        "20250601-100001-alpha-bbbbbb",
        &dir,
        "20250601-100001-alpha-bbbbbb.tar.zst",
        |top| symlink("../../systemd", top.join("data/private/up")).unwrap(),
    );
    let other_instance = gnu_backup(
        &sb,
        "alpha",
        "20250601-100002-alpha-cccccc",
        &dir,
        "20250601-100002-alpha-cccccc.tar.zst",
        |top| fs::write(top.join("metadata/instance.json"), br#"{"name": "beta"}"#).unwrap(),
    );
    let not_an_id = gnu_backup(&sb, "alpha", "nightly", &dir, "nightly.tar.zst", |_| {});
    let good_id = "20250601-100003-alpha-dddddd";
    let good = gnu_backup(
        &sb,
        "alpha",
        good_id,
        &dir,
        &format!("{good_id}.tar.zst"),
        |_| {},
    );
    let writable = gnu_backup(
        &sb,
        "alpha",
        "20250601-100004-alpha-eeeeee",
        &dir,
        "20250601-100004-alpha-eeeeee.tar.zst",
        |_| {},
    );
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o666)).unwrap();

    let r = adopt(&c).await;
    let adopted: Vec<&str> = r
        .adopted
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(adopted, [good_id], "{r:#?}");
    for (archive, why) in [
        (&absolute, "data/evil\" is a symlink to an absolute path"),
        (&leaving, "leaves the backup's data/ directory"),
        (
            &other_instance,
            "metadata/instance.json names instance \"beta\"",
        ),
        (&not_an_id, "is not a backup id of the form"),
        (&writable, "writable by others"),
    ] {
        let item = orphan(&r, archive);
        assert!(item.reason.contains(why), "{why:?}: {}", item.reason);
        assert!(!item.resolved);
    }
    assert!(good.exists());
    assert_eq!(index_ids(&sb), [good_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_flags_an_archive_restore_would_refuse_and_restore_refuses_it() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let cfg = w.cfg();
    let id = "20250601-100000-alpha-0abc00";
    let archive = gnu_backup(
        &w.sb,
        "alpha",
        id,
        &cfg.instance_backup_dir("alpha"),
        &format!("{id}.tar.zst"),
        |top| symlink("/etc/passwd", top.join("data/user-files/passwd")).unwrap(),
    );
    register_python_entry(&w.sb, "alpha", id, &archive, "zstd");
    // And one whose registry entry names another instance.
    let other = "20250601-100001-alpha-0abc01";
    let renamed = gnu_backup(
        &w.sb,
        "alpha",
        other,
        &cfg.instance_backup_dir("alpha"),
        &format!("{other}.tar.zst"),
        |top| fs::write(top.join("metadata/instance.json"), br#"{"name": "beta"}"#).unwrap(),
    );
    register_python_entry(&w.sb, "alpha", other, &renamed, "zstd");

    let out = call::<BackupVerify>(
        &c,
        &VerifyParams {
            all: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .result
    .unwrap();
    let find = |want: &str| out.results.iter().find(|r| r.id == want).unwrap().clone();
    let bad = find(id);
    assert_eq!(bad.status, "corrupt", "{bad:?}");
    for part in [
        "checksum matches, but restore would refuse it",
        "data/user-files/passwd",
        "absolute path (/etc/passwd)",
    ] {
        assert!(bad.message.contains(part), "{part:?}: {}", bad.message);
    }
    let named = find(other);
    assert_eq!(named.status, "corrupt", "{named:?}");
    assert!(
        named.message.contains("names instance \"beta\""),
        "{}",
        named.message
    );
    let entry = call::<BackupShow>(&c, &ShowParams { id: id.into() })
        .await
        .unwrap()
        .backup;
    assert_eq!(entry.status, "corrupt");
    assert_eq!(
        entry.metadata.verification_error.as_deref(),
        Some(bad.message.as_str())
    );

    // Restore refuses both, before anything live changes.
    let before = w.live_state();
    let target = cfg.restores_root.join("x");
    let err = restore(&c, &dest(id, &target)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(err.message.contains("absolute path"), "{}", err.message);
    assert!(!target.exists());
    let err = restore(&c, &no_pre(other)).await.unwrap_err();
    assert!(
        err.message.contains("names instance \"beta\", not alpha"),
        "{}",
        err.message
    );
    assert_same(&before, &w.live_state());
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_messages_with_control_characters_are_refused() {
    let _serial = serial();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    backup(&c, "alpha").await;
    let long = "2".repeat(5000);
    for id in [
        "20250101-000000-alpha-a1b2c3\u{1b}[2J",
        "x\ny",
        long.as_str(),
    ] {
        let err = call::<BackupShow>(&c, &ShowParams { id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "show {id:?}: {err:?}");
        assert!(!err.message.contains('\u{1b}'), "{}", err.message);
        assert!(err.message.len() < 1000, "{}", err.message);
        let err = call::<BackupVerify>(
            &c,
            &VerifyParams {
                id: Some(id.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "verify {id:?}: {err:?}");
        let err = restore(&c, &dest(id, &sb.config().restores_root.join("x")))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "restore {id:?}: {err:?}");
    }
    let before = fs::read(sb.config().index_file).unwrap();
    for message in ["\u{1b}]0;owned\u{7}", "tab\tbell\u{7}", "c1 \u{9b}2J"] {
        let err = call::<BackupCreate>(
            &c,
            &CreateParams {
                instance: "alpha".into(),
                message: Some(message.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "{message:?}: {err:?}");
        assert!(
            err.message.contains("control characters"),
            "{}",
            err.message
        );
    }
    assert_eq!(fs::read(sb.config().index_file).unwrap(), before);
    // Refused before any of them became an operation: only the first backup did.
    let ops = call::<abssd_proto::methods::OpList>(&c, &Default::default())
        .await
        .unwrap()
        .operations;
    assert_eq!(ops.len(), 1, "{ops:?}");
    // A newline is still a message's own business.
    call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            message: Some("two\nlines".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// alpha with `bytes` of zeros in its data (compresses to almost nothing),
/// backed up; the create's result.
async fn with_zeros(w: &World, bytes: usize) -> CreateResult {
    fs::write(w.data("alpha").join("zeros.bin"), vec![0u8; bytes]).unwrap();
    backup(&w.client().await, "alpha").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_stops_at_the_recorded_content_size() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = with_zeros(&w, 8 << 20).await;
    // The entry says the archive holds 1000 bytes of content; it expands to 8 MiB.
    set_recorded_size(&w.cfg(), json!(1000));
    let before = w.live_state();
    let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(
        err.message
            .contains("its index entry records 1000 bytes of content"),
        "{}",
        err.message
    );
    assert_same(&before, &w.live_state());
    w.assert_no_leftovers();
    assert!(w.unit_active("alpha"));
    // With the true size recorded, it restores.
    set_recorded_size(&w.cfg(), json!(made.uncompressed_bytes));
    restore(&c, &no_pre(&made.id)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_verify_and_adopt_stop_at_the_configured_entry_count() {
    let _serial = serial();
    let mut w = World::new(&["alpha"]);
    // Made under the default limit (a create refuses a tree over the limit),
    // restored and verified under a lower one.
    let made = backup(&w.client().await, "alpha").await;
    w.restart_with("daemon:\n  max_restore_entries: 5\n");
    let c = w.client().await;
    let before = w.live_state();
    let err = restore(&c, &no_pre(&made.id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(
        err.message
            .contains("more than 5 entries (daemon.max_restore_entries)"),
        "{}",
        err.message
    );
    assert_same(&before, &w.live_state());
    w.assert_no_leftovers();
    let out = call::<BackupVerify>(
        &c,
        &VerifyParams {
            id: Some(made.id.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .result
    .unwrap();
    assert_eq!(out.results[0].status, "corrupt");
    assert!(
        out.results[0].message.contains("more than 5 entries"),
        "{}",
        out.results[0].message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_never_eats_into_the_filesystems_reserve() {
    let scenario = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = with_zeros(&w, 6 << 20).await;
    // No recorded size: pre-flight only knows the (tiny) archive.
    set_recorded_size(&w.cfg(), Value::Null);
    let mnt = w.cfg().restores_root.join("mnt");
    let _fs = Tmpfs::mount(&mnt, "16m");
    let (_, size) = space(&mnt);
    let reserve = size / 100 * 5;
    let content = made.uncompressed_bytes;

    // 1. Room for the content, but not for the content and the reserve.
    let (free, _) = space(&mnt);
    filler(&mnt.join(".filler"), free - (content + reserve / 2));
    let target = mnt.join("r1");
    let err = restore(&c, &dest(&made.id, &target)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert!(
        err.message.contains("daemon.restore_reserve_percent"),
        "{}",
        err.message
    );
    assert_eq!(others(&mnt, &[".filler"]), Vec::<String>::new());

    // 2. Enough room when it starts; someone fills the filesystem while it
    //    extracts: it stops before the reserve.
    fs::remove_file(mnt.join(".filler")).unwrap();
    let fired = Arc::new(AtomicBool::new(false));
    let (hook_mnt, hook_fired) = (mnt.clone(), fired.clone());
    fail::cfg_callback("extract::after-entry", move || {
        let staging = others(&hook_mnt, &[".filler"])
            .iter()
            .any(|n| n.starts_with(".r2.restore-"));
        if staging && !hook_fired.swap(true, Ordering::SeqCst) {
            let (free, _) = space(&hook_mnt);
            filler(&hook_mnt.join(".filler"), free - (reserve + (1 << 20)));
        }
    })
    .unwrap();
    let target = mnt.join("r2");
    let err = restore(&c, &dest(&made.id, &target)).await.unwrap_err();
    fail::remove("extract::after-entry");
    assert!(fired.load(Ordering::SeqCst), "the hook ran");
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert!(
        err.message
            .contains("would leave less than the reserve free"),
        "{}",
        err.message
    );
    assert_eq!(others(&mnt, &[".filler"]), Vec::<String>::new());
    let (free, _) = space(&mnt);
    assert!(free >= reserve, "{free} < {reserve}");

    // 3. With room for both, it restores.
    fs::remove_file(mnt.join(".filler")).unwrap();
    restore(&c, &dest(&made.id, &mnt.join("r3"))).await.unwrap();
    drop(scenario);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_mtime_from_gnu_tar_is_restored_as_such() {
    let _serial = serial();
    let sb = Sandbox::new();
    let data = sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let old = data.join("from-1969");
    fs::write(&old, b"before the epoch\n").unwrap();
    let st = Command::new("touch")
        .args(["-h", "-d", "@-86400"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(fs::metadata(&old).unwrap().mtime(), -86400);
    let id = "20250601-100000-alpha-0fe0fe";
    let archive = gnu_backup(
        &sb,
        "alpha",
        id,
        &sb.config().instance_backup_dir("alpha"),
        &format!("{id}.tar.zst"),
        |_| {},
    );
    register_python_entry(&sb, "alpha", id, &archive, "zstd");
    let target = sb.config().restores_root.join("old");
    restore(&c, &dest(id, &target)).await.unwrap();
    assert_eq!(
        fs::metadata(target.join("from-1969")).unwrap().mtime(),
        -86400
    );
}

/// `--dest` is reached by path: under a directory the instance's user owns,
/// they could swap a component for a symlink while the restore runs and have
/// root place the data anywhere. Such a destination is refused up front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dest_below_a_directory_another_user_owns_is_refused() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    // alpha's own directory (the data root's parent) belongs to its user.
    let home = w.cfg().instance_root.join("alpha");
    chown_r(&home, NOBODY);
    for dest_path in [home.join("copy"), home.join("sub/copy")] {
        let err = restore(&c, &dest(&made.id, &dest_path)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
        assert!(
            err.message
                .contains("can be changed by a user other than root"),
            "{}",
            err.message
        );
        assert!(!dest_path.exists());
    }
    // The same restore under the restores root (root's) works.
    let ok = w.cfg().restores_root.join("copy");
    restore(&c, &dest(&made.id, &ok)).await.unwrap();
    assert!(ok.join("user-files").is_dir());
}
