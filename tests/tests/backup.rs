//! End-to-end tests of backup create / list / show / verify against the real
//! daemon on a socket, with archives checked by GNU tar and sha256sum.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupList, BackupShow, BackupVerify, OpGet, OpList};
use abssd_proto::*;
use abssd_tests::inspect::{events_of, snapshot, snapshot_content, waited_for_instance};
use abssd_tests::{Daemon, Sandbox, client, tar};

fn create_params(instance: &str, compression: Compression) -> CreateParams {
    CreateParams {
        instance: instance.into(),
        message: Some("nightly".into()),
        labels: vec!["a,b".into(), "c".into()],
        compression,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_in_each_compression_then_list_show_verify_and_gnu_tar_agrees() {
    let sb = Sandbox::new();
    let data = sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;

    let mut ids = Vec::new();
    for (compression, ext, tar_flag) in [
        (Compression::Zstd, ".tar.zst", "--zstd"),
        (Compression::Gzip, ".tar.gz", "-z"),
        (Compression::None, ".tar", "--no-auto-compress"),
    ] {
        let out = call::<BackupCreate>(&c, &create_params("alpha", compression))
            .await
            .unwrap();
        let plan = out.plan.unwrap();
        let r = out.result.unwrap();
        assert!(r.archive.ends_with(ext), "{}", r.archive);
        assert_eq!(r.labels, ["a", "b", "c"]);
        assert_eq!(
            plan.sources.iter().filter(|s| s.present).count(),
            6,
            "{:?}",
            plan.sources
        );
        let archive = PathBuf::from(&r.archive);
        assert_eq!(fs::metadata(&archive).unwrap().len(), r.size_bytes);
        assert_eq!(fs::metadata(&archive).unwrap().mode() & 0o777, 0o640);
        assert!(r.uncompressed_bytes > 200_000);

        // GNU tar lists the SPEC §6 layout under a single top directory.
        let listing = tar(&[tar_flag, "-tf", &r.archive]);
        for member in [
            "data/user-files/budget-1/db.sqlite",
            "data/current",
            "systemd/abssctl-alpha.service",
            "nginx/abssctl-alpha.conf",
            "nginx-enabled/abssctl-alpha.conf",
            "metadata/instances.yml",
            "metadata/instance.json",
        ] {
            assert!(
                listing.lines().any(|l| l == format!("{}/{member}", r.id)),
                "{member} missing:\n{listing}"
            );
        }
        assert!(
            listing
                .lines()
                .all(|l| l.starts_with(&format!("{}/", r.id)))
        );

        // Extracted by GNU tar, the data tree is identical to the source.
        let out_dir = tempfile::tempdir().unwrap();
        tar(&[
            tar_flag,
            "-xpf",
            &r.archive,
            "--numeric-owner",
            "-C",
            out_dir.path().to_str().unwrap(),
        ]);
        assert_eq!(
            snapshot(&out_dir.path().join(&r.id).join("data")),
            snapshot(&data)
        );
        let meta: serde_json::Value = serde_json::from_slice(
            &fs::read(out_dir.path().join(&r.id).join("metadata/instance.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["name"], "alpha");

        // The sidecar passes sha256sum -c.
        let st = Command::new("sha256sum")
            .arg("-c")
            .arg(Path::new(&r.checksum_file).file_name().unwrap())
            .current_dir(archive.parent().unwrap())
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stdout)
        );
        ids.push(r.id);
    }

    let list = call::<BackupList>(
        &c,
        &ListParams {
            instance: Some("alpha".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(list.backups.len(), 3);
    let listed: Vec<_> = list.backups.iter().map(|b| b.id.clone()).collect();
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    let shown = call::<BackupShow>(&c, &ShowParams { id: ids[0].clone() })
        .await
        .unwrap()
        .backup;
    assert_eq!(shown.status, "available");
    assert_eq!(shown.metadata.labels, ["a", "b", "c"]);
    assert_eq!(
        shown.created_by.as_ref().unwrap()["uid"],
        nix::unistd::geteuid().as_raw()
    );
    assert!(shown.metadata.uncompressed_bytes.unwrap() > 200_000);

    let v = call::<BackupVerify>(
        &c,
        &VerifyParams {
            all: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let results = v.result.unwrap().results;
    assert_eq!(results.len(), 3);
    assert!(
        results.iter().all(|r| r.status == "available"),
        "{results:?}"
    );

    // Unknown ids and instances are not_found; bad names are validation errors.
    let err = call::<BackupShow>(&c, &ShowParams { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = call::<BackupCreate>(&c, &create_params("ghost", Compression::Auto))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = call::<BackupCreate>(&c, &create_params("../etc", Compression::Auto))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation);
    let mut outside = create_params("alpha", Compression::Auto);
    outside.out_dir = Some(sb.path("elsewhere").display().to_string());
    let err = call::<BackupCreate>(&c, &outside).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation);
    assert!(err.message.contains("backups root"), "{}", err.message);

    // Every operation left one line in the operations log; the bad name was
    // refused before it became one.
    let log = fs::read_to_string(sb.config().oplog_file()).unwrap();
    assert_eq!(log.lines().count(), 3 + 1 + 2, "{log}");
}

async fn verify_one(
    c: &jsonrpsee::core::client::Client,
    id: &str,
) -> OpOutcome<VerifyPlan, VerifyResult> {
    let params = VerifyParams {
        id: Some(id.to_owned()),
        ..Default::default()
    };
    call::<BackupVerify>(c, &params).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_corruption_and_records_it() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let r = call::<BackupCreate>(&c, &create_params("alpha", Compression::Gzip))
        .await
        .unwrap()
        .result
        .unwrap();

    // Flip one byte in the middle of the archive.
    let mut bytes = fs::read(&r.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&r.archive, &bytes).unwrap();

    let v = verify_one(&c, &r.id).await;
    let result = v.result.unwrap();
    assert!(result.has_problems());
    assert_eq!(result.results[0].status, "corrupt");
    assert_eq!(result.results[0].previous_status, "available");
    let entry = call::<BackupShow>(&c, &ShowParams { id: r.id.clone() })
        .await
        .unwrap()
        .backup;
    assert_eq!(entry.status, "corrupt");
    assert!(entry.verified_at.is_some());
    let checksum = entry.checksum.unwrap();
    assert_ne!(checksum.observed.as_deref(), Some(checksum.value.as_str()));
    assert!(
        entry
            .metadata
            .verification_error
            .unwrap()
            .contains("mismatch")
    );

    // A missing archive is reported as missing.
    fs::remove_file(&r.archive).unwrap();
    let v = verify_one(&c, &r.id).await;
    assert_eq!(v.result.unwrap().results[0].status, "missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    // Directory mtimes aside: removing the unit below changes its directory's.
    let before = snapshot_content(&sb.prefix);
    let mut p = create_params("alpha", Compression::Zstd);
    p.dry_run = true;
    let out = call::<BackupCreate>(&c, &p).await.unwrap();
    assert!(out.result.is_none());
    let plan = out.plan.unwrap();
    assert!(plan.dry_run);
    assert!(plan.total_bytes > 200_000);
    assert!(plan.archive.ends_with(".tar.zst"));
    let data = plan.sources.iter().find(|s| s.role == "data").unwrap();
    assert!(data.present && data.entries > 5);
    // Remove the unit: the plan says it is missing, and still nothing is written.
    fs::remove_file(sb.config().unit_file("alpha")).unwrap();
    let plan = call::<BackupCreate>(&c, &p).await.unwrap().plan.unwrap();
    assert!(
        !plan
            .sources
            .iter()
            .find(|s| s.role == "unit")
            .unwrap()
            .present
    );
    let mut after = snapshot_content(&sb.prefix);
    // Only the operations log and lock files may differ.
    let volatile = |p: &PathBuf| p.starts_with("var/log") || p.starts_with("run");
    let mut before = before;
    before.retain(|p, _| !volatile(p));
    after.retain(|p, _| !volatile(p));
    let unit = sb.config().unit_file("alpha");
    before.remove(unit.strip_prefix(&sb.prefix).unwrap());
    assert_eq!(before, after);
    assert!(!sb.path("srv/backups").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_does_not_stop_the_operation() {
    let sb = Sandbox::new();
    let data = sb.add_instance("alpha");
    // Enough data that the create is still running when the client goes away.
    let big: Vec<u8> = (0..40_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(data.join("big.bin"), &big).unwrap();
    let daemon = Daemon::start(&sb);
    {
        let c = client(&daemon.socket).await;
        let pending = tokio::spawn(async move {
            let _ = call::<BackupCreate>(&c, &create_params("alpha", Compression::Gzip)).await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        pending.abort(); // drops the client and its connection mid-call
    }
    let c = client(&daemon.socket).await;
    let running = call::<OpList>(
        &c,
        &OpListParams {
            running: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .operations;
    assert_eq!(running.len(), 1, "the create should still be running");
    let op_id = running[0].op_id.clone();
    let events = events_of(&c, &op_id).await;
    assert!(matches!(
        events.first().unwrap().kind,
        EventKind::Started { .. }
    ));
    assert!(
        matches!(events.last().unwrap().kind, EventKind::Finished { .. }),
        "{:?}",
        events.last()
    );
    assert_eq!(events.iter().filter(|e| e.kind.is_terminal()).count(), 1);
    // Byte progress against a total known from the walk, ending at that total.
    let planned = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Plan { plan } => plan.to_value()["total_bytes"].as_u64(),
            _ => None,
        })
        .unwrap();
    assert!(planned > 40_000_000);
    let progress: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Progress { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert!(progress.iter().all(|(_, t)| *t == planned));
    assert_eq!(progress.last().unwrap().0, planned);
    let info = call::<OpGet>(&c, &OpIdParams { op_id }).await.unwrap();
    assert_eq!(info.state, OpState::Succeeded);
    let list = call::<BackupList>(&c, &ListParams::default())
        .await
        .unwrap();
    assert_eq!(list.backups.len(), 1);
    assert!(Path::new(&list.backups[0].path).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_for_two_instances_overlap_and_for_one_instance_serialize() {
    let sb = Sandbox::new();
    for name in ["alpha", "beta"] {
        let data = sb.add_instance(name);
        let big: Vec<u8> = (0..12_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        fs::write(data.join("big.bin"), &big).unwrap();
    }
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let detached = |name: &str| {
        let mut p = create_params(name, Compression::Gzip);
        p.detach = true;
        p
    };

    // Different instances: neither waits for an instance lock, and they overlap.
    let a = call::<BackupCreate>(&c, &detached("alpha"))
        .await
        .unwrap()
        .op_id;
    let b = call::<BackupCreate>(&c, &detached("beta"))
        .await
        .unwrap()
        .op_id;
    let (ea, eb) = (events_of(&c, &a).await, events_of(&c, &b).await);
    assert!(!waited_for_instance(&ea) && !waited_for_instance(&eb));
    let end_a = &ea.last().unwrap().ts;
    let b_archiving = eb
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Phase { name, .. } if *name == Phase::Archive))
        .unwrap();
    assert!(
        &b_archiving.ts < end_a,
        "beta started archiving only after alpha ended"
    );

    // The same instance: the second waits for the first.
    let a1 = call::<BackupCreate>(&c, &detached("alpha"))
        .await
        .unwrap()
        .op_id;
    let a2 = call::<BackupCreate>(&c, &detached("alpha"))
        .await
        .unwrap()
        .op_id;
    let (e1, e2) = (events_of(&c, &a1).await, events_of(&c, &a2).await);
    // Exactly one waited for the other; which one took the lock first is the
    // scheduler's business (each operation starts on a task of its own).
    assert!(
        waited_for_instance(&e1) != waited_for_instance(&e2),
        "exactly one create must wait: {e1:?}\n{e2:?}"
    );
    let ((_, first), (waiter, second)) = if waited_for_instance(&e2) {
        ((a1, e1), (a2, e2))
    } else {
        ((a2, e2), (a1, e1))
    };
    // The waiter starts archiving only once the first has reached its index
    // write (its last step under the instance lock).
    let index_1 = first
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Phase { name, .. } if *name == Phase::Index))
        .unwrap();
    let start_2 = second
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Phase { name, .. } if *name == Phase::Archive))
        .unwrap();
    assert!(start_2.ts >= index_1.ts, "{} < {}", start_2.ts, index_1.ts);
    let info = call::<OpGet>(&c, &OpIdParams { op_id: waiter })
        .await
        .unwrap();
    assert!(info.lock_wait_ms > 0);
    assert_eq!(
        call::<BackupList>(&c, &ListParams::default())
            .await
            .unwrap()
            .backups
            .len(),
        4
    );
}

#[test]
fn an_unauthorized_peer_may_read_but_not_mutate() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root to run a request as nobody (CI runs as root)");
    }
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let mut config = sb.full_config();
    config.daemon.socket_group = "nogroup".into();
    config.daemon.operator_group = "abssctl-test-nonexistent".into();
    let daemon = Daemon::start_with(config);
    // Let `nobody` reach the socket through the temporary directories.
    for dir in [sb.prefix.clone(), sb.path("run"), sb.path("run/abssctl")] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let rpc = |method: &str, params: &str| -> serde_json::Value {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let out = Command::new("curl")
            .args([
                "-s",
                "--unix-socket",
                daemon.socket.to_str().unwrap(),
                "-H",
                "content-type: application/json",
                "-d",
                &body,
                "http://localhost/",
            ])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)))
    };
    use std::os::unix::process::CommandExt;
    let denied = rpc("backup.create", r#"{"instance":"alpha"}"#);
    assert_eq!(denied["error"]["data"]["kind"], "forbidden", "{denied}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody")
    );
    let listed = rpc("backup.list", "{}");
    assert_eq!(
        listed["result"]["backups"],
        serde_json::json!([]),
        "{listed}"
    );
    let status = rpc("daemon.status", "{}");
    assert_eq!(status["result"]["caller_may_mutate"], false);
    // A read-only reconcile is a read; fixing the index is not.
    let looked = rpc("backup.reconcile", "{}");
    assert_eq!(looked["result"]["result"]["unresolved"], 0, "{looked}");
    let fixing = rpc("backup.reconcile", r#"{"apply":true}"#);
    assert_eq!(fixing["error"]["data"]["kind"], "forbidden", "{fixing}");
    // Prune, even a dry run (a plan of every entry is costly), and the
    // protection a prune honours are an operator's.
    for (method, params) in [
        ("backup.prune", r#"{"keep_last":1,"dry_run":true}"#),
        ("backup.prune", r#"{"keep_last":1,"yes":true}"#),
        ("backup.protect", r#"{"id":"20250101-000000-alpha-000001"}"#),
        (
            "backup.unprotect",
            r#"{"id":"20250101-000000-alpha-000001"}"#,
        ),
    ] {
        let denied = rpc(method, params);
        assert_eq!(
            denied["error"]["data"]["kind"], "forbidden",
            "{method}: {denied}"
        );
    }
    assert!(!sb.path("srv/backups/alpha").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_errors() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let sock = daemon.socket.to_str().unwrap().to_owned();
    let post = |body: &str| -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "--unix-socket",
                &sock,
                "-H",
                "content-type: application/json",
                "--data-binary",
                "@-",
                "http://localhost/",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(body.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(post("{not json").contains("-32700"));
    assert!(post(r#"{"jsonrpc":"2.0","id":1,"method":"backup.frobnicate"}"#).contains("-32601"));
    let unknown_field = post(
        r#"{"jsonrpc":"2.0","id":1,"method":"backup.create","params":{"instance":"alpha","lables":[]}}"#,
    );
    assert!(
        unknown_field.contains("validation") && unknown_field.contains("lables"),
        "{unknown_field}"
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"backup.list","params":{{"instance":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    let answer = post(&huge);
    assert!(
        answer.is_empty() || answer.contains("-32007") || answer.contains("too"),
        "{answer}"
    );
    assert!(!sb.path("srv/backups").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_leaves_no_archive_sidecar_or_entry() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    // A corrupt index makes the last step fail, after the archive was written.
    let index = sb.config().index_file;
    fs::create_dir_all(index.parent().unwrap()).unwrap();
    fs::write(&index, b"{\"backups\": [ truncated").unwrap();
    let err = call::<BackupCreate>(&c, &create_params("alpha", Compression::Zstd))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment);
    assert!(err.message.contains("backups.json"), "{}", err.message);
    assert!(err.detail.unwrap()["op_id"].is_string());
    let left: Vec<_> = fs::read_dir(sb.path("srv/backups/alpha"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The corrupt file is reported, never replaced.
    assert_eq!(fs::read(&index).unwrap(), b"{\"backups\": [ truncated");
    let log = fs::read_to_string(sb.config().oplog_file()).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(line["result"]["status"], "error");
    assert_eq!(line["rc"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_to_the_index_by_others_are_seen_and_kept() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    call::<BackupCreate>(&c, &create_params("alpha", Compression::None))
        .await
        .unwrap();
    // The Python tool (or an operator) adds an entry and a key of its own.
    let index = sb.config().index_file;
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
    doc["written_by"] = "python".into();
    doc["backups"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": "20200101-000000-alpha-abcdef", "instance": "alpha",
            "created_at": "2020-01-01T00:00:00Z", "archive_path": "/nowhere.tar.gz",
            "checksum_sha256": "00", "status": "present", "python_note": {"x": 1}
        }));
    fs::write(&index, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let listed = call::<BackupList>(&c, &ListParams::default())
        .await
        .unwrap()
        .backups;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].id, "20200101-000000-alpha-abcdef");
    assert_eq!(listed[1].status, "available");
    call::<BackupCreate>(&c, &create_params("alpha", Compression::None))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
    assert_eq!(doc["written_by"], "python");
    assert_eq!(doc["backups"].as_array().unwrap().len(), 3);
    assert_eq!(doc["backups"][1]["python_note"]["x"], 1);
}

/// abssd keeps the parsed index between calls; another tool's write is seen
/// at the next call even when it replaces the file in the same second at the
/// same size (here with the very same modification time, to the nanosecond).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_write_of_the_same_size_and_time_is_seen_at_the_next_call() {
    let w = abssd_tests::world::World::new(&["alpha"]);
    let c = w.client().await;
    let made = abssd_tests::backup(&c, "alpha").await;
    let listed = || async {
        call::<BackupList>(&c, &ListParams::default())
            .await
            .unwrap()
            .backups
    };
    assert_eq!(listed().await[0].sha256(), Some(made.checksum.as_str()));
    assert_eq!(listed().await[0].sha256(), Some(made.checksum.as_str()));

    // Another digest of the same length, written as the Python tool writes
    // (a temporary file renamed over the index), with the old file's times.
    let file = w.cfg().index_file;
    let before = fs::metadata(&file).unwrap();
    let other: String = made
        .checksum
        .chars()
        .map(|ch| if ch == '0' { '1' } else { '0' })
        .collect();
    let text = String::from_utf8(fs::read(&file).unwrap())
        .unwrap()
        .replace(&made.checksum, &other);
    let tmp = file.with_extension("json.tmp");
    fs::write(&tmp, &text).unwrap();
    fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    fs::rename(&tmp, &file).unwrap();
    let after = fs::metadata(&file).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (before.len(), before.mtime(), before.mtime_nsec())
    );

    assert_eq!(listed().await[0].sha256(), Some(other.as_str()));
    let shown = abssd_tests::show(&c, &made.id).await;
    assert_eq!(shown.sha256(), Some(other.as_str()));
}
