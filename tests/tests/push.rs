//! `backup.push` against a real S3 server (moto, [`S3Server`]):
//! the objects in the bucket (read back by boto3, never by abssd) and the
//! copy in the index entry; an encrypted copy read back by the `age` CLI and
//! checked by `sha256sum -c`; nothing overwritten; the server killed and the
//! connection cut mid-upload; abssd killed at each of the push's crash
//! points; wrong credentials and an unreachable endpoint, and a black-holed
//! one at start-up recovery; `auto_push` after a
//! create and as a backup job's step.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use abssd::config::unit_name;
use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupPush, BackupRun};
use abssd_proto::*;
use abssd_tests::child::{ChildDaemon, aborted};
use abssd_tests::hooks::Gate;
use abssd_tests::remotes::{self, Remote};
use abssd_tests::s3::{Cutter, S3Server};
use abssd_tests::world::World;
use abssd_tests::{Daemon, FakeSystemd, Sandbox, backup, client, serial, show};
use jsonrpsee::core::client::Client;
use serde_json::json;

const REMOTE: &str = "off";
const PREFIX: &str = "abssd";

/// Remote `name` on `s3` (part size 5 MiB, the least, so a 12 MiB archive
/// goes up in three parts), its credentials in `sb`.
fn remote(s3: &S3Server, sb: &Sandbox, name: &str) -> Remote {
    Remote::of(s3, &sb.path("etc/abssctl"), name, PREFIX).part_size_mib(5)
}

/// A world of `instances` whose abssd.yml has remote `off` on `s3`, as
/// `tune` makes it (`|r| r` to leave it).
fn world(instances: &[&str], s3: &S3Server, tune: impl FnOnce(Remote) -> Remote) -> World {
    World::with_config(instances, |sb| {
        remotes::section(&[&tune(remote(s3, sb, REMOTE))])
    })
}

/// `bytes` bytes that do not compress, in `dir/big.bin`: the archive is
/// larger than one part.
fn bulk_up(dir: &Path, bytes: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut big = Vec::with_capacity(bytes);
    while big.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(dir.join("big.bin"), big).unwrap();
}

fn ids(id: &str) -> PushParams {
    PushParams {
        ids: vec![id.to_owned()],
        ..PushParams::default()
    }
}

async fn push(c: &Client, params: &PushParams) -> Result<PushResult, WireError> {
    call::<BackupPush>(c, params)
        .await
        .map(|o| o.result.expect("a push result"))
}

/// The summary a failed push's error carries.
fn summary(e: &WireError) -> PushResult {
    serde_json::from_value(e.detail.as_ref().expect("detail")["summary"].clone())
        .unwrap_or_else(|_| panic!("no summary in {e:?}"))
}

fn file_name(made: &CreateResult) -> String {
    Path::new(&made.archive)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn archive_key(made: &CreateResult, encrypted: bool) -> String {
    let age = if encrypted { ".age" } else { "" };
    format!("{PREFIX}/alpha/{}{age}", file_name(made))
}

/// Every key in the bucket.
fn keys(s3: &S3Server) -> Vec<String> {
    s3.list("").into_iter().map(|o| o.key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_stores_archive_sidecar_and_entry_and_records_the_copy_once() {
    let s3 = S3Server::start();
    let w = world(&["alpha"], &s3, |r| r);
    bulk_up(&w.data("alpha"), 12 << 20);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;

    let result = push(&c, &ids(&made.id)).await.unwrap();
    let item = &result.items[0];
    assert_eq!(
        (item.outcome, result.pushed, result.failed),
        (PushOutcome::Pushed, 1, 0)
    );
    let key = archive_key(&made, false);
    assert_eq!(item.key.as_deref(), Some(key.as_str()));
    let file = file_name(&made);
    assert_eq!(
        keys(&s3),
        [
            format!("{PREFIX}/alpha/{}.json", made.id),
            key.clone(),
            format!("{key}.sha256"),
        ]
    );
    let local = fs::read(&made.archive).unwrap();
    assert!(local.len() > 10 << 20, "the archive spans several parts");
    assert!(
        s3.get(&key) == local,
        "the object is the archive, byte for byte"
    );
    assert_eq!(
        String::from_utf8(s3.get(&format!("{key}.sha256"))).unwrap(),
        format!("{}  {file}\n", made.checksum)
    );
    let entry: serde_json::Value =
        serde_json::from_slice(&s3.get(&format!("{PREFIX}/alpha/{}.json", made.id))).unwrap();
    assert_eq!(entry["id"], made.id.as_str());
    assert!(s3.multipart_uploads().is_empty());

    let copy = show(&c, &made.id)
        .await
        .remote_copy(REMOTE)
        .cloned()
        .unwrap();
    assert_eq!(copy.key, key);
    assert_eq!(copy.sha256, made.checksum);
    assert_eq!(copy.size_bytes, local.len() as u64);
    assert!(!copy.encrypted);

    // Again: recorded, so nothing is sent and nothing changes.
    let before = s3.list("");
    let again = push(&c, &ids(&made.id)).await.unwrap();
    assert_eq!(again.items[0].outcome, PushOutcome::Already);
    assert_eq!(again.pushed_bytes, 0);
    assert_eq!(s3.list(""), before);
    let log = fs::read_to_string(w.cfg().oplog_file()).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"backup push\""))
            .count(),
        2,
        "each push has its operations-log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_copy_decrypts_with_the_age_cli_and_its_sidecar_checks() {
    let s3 = S3Server::start();
    let keydir = tempfile::tempdir().unwrap();
    // Recipients only: the daemon needs no identity to push.
    let key = remotes::age_key(keydir.path(), "key");
    let identity = key.identity_file.clone();
    let w = world(&["alpha"], &s3, |mut r| {
        r.recipients = vec![key.recipient.clone()];
        r
    });
    bulk_up(&w.data("alpha"), 6 << 20);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;

    let result = push(&c, &ids(&made.id)).await.unwrap();
    assert_eq!(result.items[0].outcome, PushOutcome::Pushed);
    assert!(result.items[0].encrypted);
    let key = archive_key(&made, true);
    let file = file_name(&made);
    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join(format!("{file}.age"));
    fs::write(&sealed, s3.get(&key)).unwrap();
    let plain = dir.path().join(&file);
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg("-o")
        .arg(&plain)
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read(&plain).unwrap() == fs::read(&made.archive).unwrap(),
        "age -d gives the local archive's bytes"
    );
    let sidecar = format!("{file}.sha256");
    fs::write(
        dir.path().join(&sidecar),
        s3.get(&format!("{PREFIX}/alpha/{sidecar}")),
    )
    .unwrap();
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(&sidecar)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert_eq!(
        said.matches(": OK").count(),
        2,
        "both lines checked: {said}"
    );

    let entry_key = format!("{PREFIX}/alpha/{}.json.age", made.id);
    let entry_file = dir.path().join("entry.json.age");
    fs::write(&entry_file, s3.get(&entry_key)).unwrap();
    let entry = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&entry_file)
        .output()
        .unwrap();
    let entry: serde_json::Value = serde_json::from_slice(&entry.stdout).unwrap();
    assert_eq!(entry["id"], made.id.as_str());
    assert!(
        !keys(&s3).contains(&format!("{PREFIX}/alpha/{}.json", made.id)),
        "no plain entry"
    );

    let copy = show(&c, &made.id)
        .await
        .remote_copy(REMOTE)
        .cloned()
        .unwrap();
    assert!(copy.encrypted);
    assert_eq!(copy.key, key);
    let stored = Command::new("sha256sum").arg(&sealed).output().unwrap();
    let stored = String::from_utf8_lossy(&stored.stdout);
    assert_eq!(Some(copy.sha256.as_str()), stored.split_whitespace().next());
    assert_ne!(copy.sha256, made.checksum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_in_the_way_is_never_overwritten() {
    let s3 = S3Server::start();
    let w = world(&["alpha"], &s3, |r| r);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let key = archive_key(&made, false);
    s3.put(&key, b"someone else's object\n");
    let index = w.index();

    let err = push(&c, &ids(&made.id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    let s = summary(&err);
    assert_eq!(s.items[0].outcome, PushOutcome::Failed);
    assert!(
        s.items[0].message.contains("nothing was overwritten"),
        "{s:?}"
    );
    assert_eq!(s3.get(&key), b"someone else's object\n");
    assert_eq!(
        keys(&s3),
        std::slice::from_ref(&key),
        "no sidecar, no entry object"
    );
    assert_eq!(w.index(), index, "nothing recorded");

    // A sidecar beside it naming this backup's checksum does not make it
    // this backup's copy: its length is not the archive's.
    let sidecar = format!("{key}.sha256");
    let file = key.rsplit('/').next().unwrap();
    s3.put(&sidecar, format!("{}  {file}\n", made.checksum).as_bytes());
    let err = push(&c, &ids(&made.id)).await.unwrap_err();
    let s = summary(&err);
    assert_eq!(s.items[0].outcome, PushOutcome::Failed, "{s:?}");
    assert!(
        s.items[0].message.contains("bytes long, the archive"),
        "{s:?}"
    );
    assert_eq!(s3.get(&key), b"someone else's object\n");
    assert_eq!(w.index(), index, "nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_mid_upload_fails_the_push_and_the_next_completes() {
    let _serial = serial();
    let mut s3 = S3Server::start();
    let mut w = world(&["alpha"], &s3, |r| r);
    bulk_up(&w.data("alpha"), 12 << 20);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let index = w.index();

    let mut gate = Gate::at("push::first-part");
    let (c2, p) = (w.client().await, ids(&made.id));
    let pushing = tokio::spawn(async move { push(&c2, &p).await });
    gate.entered().await;
    s3.kill();
    gate.release();
    let err = pushing.await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert_eq!(err.kind.exit_code(), 3);
    assert_eq!(summary(&err).items[0].outcome, PushOutcome::Failed);
    assert_eq!(w.index(), index, "nothing recorded");

    s3.restart();
    assert!(keys(&s3).is_empty(), "no half object");
    let result = push(&c, &ids(&made.id)).await.unwrap();
    assert_eq!(result.items[0].outcome, PushOutcome::Pushed);
    assert!(s3.get(&archive_key(&made, false)) == fs::read(&made.archive).unwrap());
    assert!(show(&c, &made.id).await.remote_copy(REMOTE).is_some());
    // The journal of the failed push (its upload could not be abandoned
    // then) is done with at the next start; the recorded copy stays.
    w.restart_with("");
    assert!(
        fs::read_dir(w.cfg().state_dir.join("journal"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
    assert!(s3.head(&archive_key(&made, false)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_leaves_nothing_once_abssd_restarts_and_the_next_push_completes() {
    let s3 = S3Server::start();
    let cutter = Cutter::start(s3.addr());
    let mut w = world(&["alpha"], &s3, |r| r.at(&cutter.endpoint()));
    bulk_up(&w.data("alpha"), 12 << 20);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let index = w.index();

    // Past the first part (5 MiB), before the last.
    cutter.cut_after(7 << 20);
    let err = push(&c, &ids(&made.id)).await.unwrap_err();
    assert!(cutter.is_cut());
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert_eq!(w.index(), index, "nothing recorded");
    assert!(keys(&s3).is_empty(), "no object");
    cutter.heal();

    // The upload could not be abandoned through a cut connection: the
    // start-up recovery does it.
    w.restart_with("");
    assert!(
        s3.multipart_uploads().is_empty(),
        "{:?}",
        s3.multipart_uploads()
    );
    let result = push(&w.client().await, &ids(&made.id)).await.unwrap();
    assert_eq!(result.items[0].outcome, PushOutcome::Pushed);
    assert!(s3.get(&archive_key(&made, false)) == fs::read(&made.archive).unwrap());
}

/// A TCP endpoint that accepts connections and never answers: how many it
/// accepted (each held open until the test ends).
fn blackhole() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (endpoint, accepted)
}

/// How many journals are pending.
fn journals(w: &World) -> usize {
    fs::read_dir(w.cfg().state_dir.join("journal"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_remote_costs_start_up_one_short_try_and_its_journals_are_kept() {
    let s3 = S3Server::start();
    let cutter = Cutter::start(s3.addr());
    let mut w = world(&["alpha"], &s3, |r| r.at(&cutter.endpoint()));
    bulk_up(&w.data("alpha"), 12 << 20);
    let c = w.client().await;
    // Two pushes cut mid-upload: two journals, each with an upload to abandon.
    for _ in 0..2 {
        let made = backup(&c, "alpha").await;
        cutter.cut_after(7 << 20);
        push(&c, &ids(&made.id)).await.unwrap_err();
        cutter.heal();
    }
    assert_eq!(journals(&w), 2);
    assert_eq!(s3.multipart_uploads().len(), 2);

    // The remote now answers nothing at all. Start-up recovery tries it
    // once (one connection, not one per attempt, request and journal) and
    // the daemon comes up well within systemd's 90 s (the harness waits
    // 30 s for its first answer).
    let (hole, accepted) = blackhole();
    let file = w.sb.full_config().abssd_config_file;
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, text.replace(&cutter.endpoint(), &hole)).unwrap();
    w.restart_with("");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection in all");
    assert_eq!(journals(&w), 2, "the journals are kept for the next start");

    // Reachable again: the next start finishes both.
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, text.replace(&hole, &cutter.endpoint())).unwrap();
    w.restart_with("");
    assert_eq!(journals(&w), 0);
    assert!(
        s3.multipart_uploads().is_empty(),
        "{:?}",
        s3.multipart_uploads()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_left_without_its_sidecar_is_replaced_by_the_next_push_of_the_same_daemon() {
    let _serial = serial();
    let s3 = S3Server::start();
    let cutter = Cutter::start(s3.addr());
    let w = world(&["alpha"], &s3, |r| r.at(&cutter.endpoint()));
    bulk_up(&w.data("alpha"), 12 << 20);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let key = archive_key(&made, false);

    let mut gate = Gate::at("push::stored");
    let (c2, p) = (w.client().await, ids(&made.id));
    let pushing = tokio::spawn(async move { push(&c2, &p).await });
    gate.entered().await;
    cutter.cut_after(0);
    gate.release();
    let err = pushing.await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert!(err.message.contains("next starts"), "{}", err.message);
    assert!(s3.head(&key).is_some(), "the archive completed");
    assert!(s3.head(&format!("{key}.sha256")).is_none());
    assert!(show(&c, &made.id).await.remote_copy(REMOTE).is_none());
    cutter.heal();

    // The same daemon, no restart: the journal names the object as its own.
    let result = push(&c, &ids(&made.id)).await.unwrap();
    assert_eq!(result.items[0].outcome, PushOutcome::Pushed, "{result:?}");
    assert!(s3.get(&key) == fs::read(&made.archive).unwrap());
    assert!(s3.head(&format!("{key}.sha256")).is_some());
    assert!(show(&c, &made.id).await.remote_copy(REMOTE).is_some());
    assert!(
        fs::read_dir(w.cfg().state_dir.join("journal"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the journals are done with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_an_unreachable_endpoint_are_environment_errors_changing_nothing() {
    let s3 = S3Server::start();
    let w = World::with_config(&["alpha"], |sb| {
        let bad = remote(&s3, sb, "bad").with_credentials(s3.access_key(), "not-the-secret");
        let gone = remote(&s3, sb, "gone").at("http://127.0.0.1:1");
        remotes::section(&[&bad, &gone])
    });
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    let index = w.index();
    for remote in ["bad", "gone"] {
        let params = PushParams {
            remote: Some(remote.into()),
            ..ids(&made.id)
        };
        let err = push(&c, &params).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Environment, "{remote}: {err:?}");
        assert_eq!(err.kind.exit_code(), 3);
        assert!(err.message.contains(remote), "{remote}: {}", err.message);
        assert!(!err.message.contains(s3.secret_key()));
        assert_eq!(w.index(), index, "{remote}: nothing recorded");
    }
    assert!(keys(&s3).is_empty());
    // No remote named: two are configured.
    let err = push(&c, &ids(&made.id)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_push_copies_each_new_backup_and_a_failed_one_is_a_warning() {
    let s3 = S3Server::start();
    let w = World::with_config(&["alpha"], |sb| {
        let off = remote(&s3, sb, REMOTE).auto_push();
        let gone = remote(&s3, sb, "gone").at("http://127.0.0.1:1").auto_push();
        remotes::section(&[&off, &gone])
    });
    let c = w.client().await;
    let made = call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            ..Default::default()
        },
    )
    .await
    .expect("the create succeeds though a push failed")
    .result
    .unwrap();
    let entry = show(&c, &made.id).await;
    assert_eq!(
        entry.remote_copy(REMOTE).map(|c| c.key.clone()),
        Some(archive_key(&made, false))
    );
    assert!(entry.remote_copy("gone").is_none());
    assert!(s3.head(&archive_key(&made, false)).is_some());
    assert!(
        made.warnings
            .iter()
            .any(|w| w.contains("not pushed to gone")),
        "{:?}",
        made.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_push_fails_fails_that_instance_and_the_others_go_on() {
    let _serial = serial();
    let mut s3 = S3Server::start();
    let w = world(&["alpha", "beta"], &s3, Remote::auto_push);
    // Only alpha's archive is larger than one part: the hook is alpha's.
    bulk_up(&w.data("alpha"), 12 << 20);
    let mut gate = Gate::at("push::first-part");
    let c2 = w.client().await;
    let job = tokio::spawn(async move {
        call::<BackupRun>(
            &c2,
            &RunParams {
                all: true,
                ..RunParams::default()
            },
        )
        .await
    });
    gate.entered().await;
    // A fresh server on the same port: alpha's upload is unknown to it.
    s3.restart();
    gate.release();
    let err = job.await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    let summary: RunResult =
        serde_json::from_value(err.detail.unwrap()["summary"].clone()).unwrap();
    let step = |i: &RunInstance, s: JobStep| i.steps.iter().find(|o| o.step == s).unwrap().status;
    let (alpha, beta) = (&summary.instances[0], &summary.instances[1]);
    assert!(!alpha.ok);
    assert_eq!(step(alpha, JobStep::Push), JobStepStatus::Failed);
    assert_eq!(step(alpha, JobStep::Verify), JobStepStatus::Ok);
    assert!(beta.ok, "{beta:?}");
    assert_eq!(step(beta, JobStep::Push), JobStepStatus::Ok);
    let c = w.client().await;
    let alpha_id = alpha.backup_id.clone().unwrap();
    let beta_id = beta.backup_id.clone().unwrap();
    assert!(show(&c, &alpha_id).await.remote_copy(REMOTE).is_none());
    assert!(show(&c, &beta_id).await.remote_copy(REMOTE).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_may_not_push_and_bad_requests_change_nothing() {
    use std::os::unix::process::CommandExt;
    let s3 = S3Server::start();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.write_abssd_config(&remotes::section(&[&remote(&s3, &sb, REMOTE)]));
    let mut config = sb.full_config();
    config.daemon.socket_group = "nogroup".into();
    config.daemon.operator_group = "abssctl-test-nonexistent".into();
    let daemon = Daemon::start_with(config);
    let c = client(&daemon.socket).await;
    let made = backup(&c, "alpha").await;
    for dir in [sb.prefix.clone(), sb.path("run"), sb.path("run/abssctl")] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"backup.push","params":{{"ids":["{}"]}}}}"#,
        made.id
    );
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&daemon.socket)
        .args(["-H", "content-type: application/json", "-d", &body])
        .arg("http://localhost/")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let denied: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(denied["error"]["data"]["kind"], "forbidden", "{denied}");

    let index = fs::read(sb.config().index_file).unwrap();
    for (params, kind) in [
        (PushParams::default(), ErrorKind::Validation),
        (
            PushParams {
                all: true,
                instance: Some("alpha".into()),
                ..PushParams::default()
            },
            ErrorKind::Validation,
        ),
        (ids("../../etc/passwd"), ErrorKind::Validation),
        (ids("20250101-000000-alpha-000001"), ErrorKind::NotFound),
        (
            PushParams {
                remote: Some("elsewhere".into()),
                ..ids(&made.id)
            },
            ErrorKind::NotFound,
        ),
        (
            PushParams {
                ids: vec![made.id.clone(); PUSH_IDS + 1],
                ..PushParams::default()
            },
            ErrorKind::Validation,
        ),
    ] {
        let err = push(&c, &params).await.unwrap_err();
        assert_eq!(err.kind, kind, "{params:?}: {err:?}");
    }
    assert_eq!(fs::read(sb.config().index_file).unwrap(), index);
    assert!(keys(&s3).is_empty(), "nothing sent");
}

/// Kill abssd at push crash point `point`, start it again, and check: no
/// multipart upload open, no archive object left that the index does not
/// record and no sidecar follows, and the next push completes.
pub async fn killed_at(point: &str) {
    const BIN: &str = env!("CARGO_BIN_EXE_abssd-failpoints");
    let s3 = S3Server::start();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    bulk_up(&sb.config().instance_root.join("alpha/data"), 12 << 20);
    let cfg = sb.config();
    let fake = FakeSystemd::start(Some(&cfg.unit_dir));
    fake.set_unit(&unit_name("alpha"), true, true);
    sb.write_abssd_config(&format!(
        "systemd:\n  bus_address: {}\n  dropin_dir: {}\nnginx:\n  test_command: {}\n{}",
        json!(fake.address()),
        json!(cfg.unit_dir),
        json!(sb.nginx_test_command()),
        remotes::section(&[&remote(&s3, &sb, REMOTE)])
    ));
    let d = ChildDaemon::start(BIN, &sb, None);
    let made = backup(&client(&d.socket).await, "alpha").await;
    assert_eq!(d.stop().code(), Some(0));

    let armed = format!("{point}=return");
    let d = ChildDaemon::start(BIN, &sb, Some(&armed));
    let c = client(&d.socket).await;
    let started = call::<BackupPush>(
        &c,
        &PushParams {
            detach: true,
            ..ids(&made.id)
        },
    )
    .await
    .unwrap();
    let status = d.wait(Duration::from_secs(120));
    assert!(aborted(&status), "{point}: never reached ({status})");

    let d = ChildDaemon::start(BIN, &sb, None);
    let c = client(&d.socket).await;
    let key = archive_key(&made, false);
    assert!(
        s3.multipart_uploads().is_empty(),
        "{point}: {:?}",
        s3.multipart_uploads()
    );
    let sidecar = s3.head(&format!("{key}.sha256")).is_some();
    assert!(
        s3.head(&key).is_none() || sidecar,
        "{point}: an archive object without a sidecar is left"
    );
    assert!(show(&c, &made.id).await.remote_copy(REMOTE).is_none());
    let op = call::<abssd_proto::methods::OpGet>(
        &c,
        &OpIdParams {
            op_id: started.op_id.clone(),
        },
    )
    .await
    .unwrap();
    assert!(
        op.recovered && op.state == OpState::Failed,
        "{point}: {op:?}"
    );
    assert!(
        fs::read_dir(cfg.state_dir.join("journal"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "{point}: the journal is done with"
    );

    let result = push(&c, &ids(&made.id)).await.unwrap();
    // After the entry object, the copy was complete: found, not sent again.
    let expected = if point == "push::entry-stored" {
        PushOutcome::Already
    } else {
        PushOutcome::Pushed
    };
    assert_eq!(result.items[0].outcome, expected, "{point}");
    assert!(show(&c, &made.id).await.remote_copy(REMOTE).is_some());
    assert!(s3.get(&key) == fs::read(&made.archive).unwrap(), "{point}");
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_each_push_crash_point_the_next_start_cleans_up_and_the_next_push_completes() {
    let points: Vec<String> = abssd_tests::child::crash_points()
        .into_iter()
        .filter(|p| p.starts_with("push::"))
        .collect();
    assert_eq!(
        points,
        [
            "push::archive-stored",
            "push::entry-stored",
            "push::part-sent"
        ]
    );
    for point in &points {
        killed_at(point).await;
    }
}
