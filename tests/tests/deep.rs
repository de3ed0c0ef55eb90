//! Deep verification against the real daemon: an instance laid out as
//! Actual's sync server keeps it (built here with rusqlite and Python's
//! zipfile), backed up by the daemon as it is, then `verify --deep`,
//! `reconcile --verify --deep` and `restore --verify-deep`. Each kind of
//! damage is made in the live data before the create, so the archive's bytes
//! are intact and only the deep check can tell.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupReconcile, BackupVerify};
use abssd_proto::*;
use abssd_tests::inspect::snapshot;
use abssd_tests::world::{World, assert_same, no_pre, restore};
use abssd_tests::{Daemon, Sandbox, client, show};
use jsonrpsee::core::client::Client;
use rusqlite::Connection;

const PLAIN: &str = "b2a1c3d4-0000-4000-8000-00000000000a";
const SECRET: &str = "b2a1c3d4-0000-4000-8000-00000000000b";
const GROUP: &str = "9d5c6e2f-1111-4111-8111-000000000001";

/// The migrate package's state file as the server leaves it.
const MIGRATE: &str = r#"{"lastRun":"1763873600000-backfill-files-owner.js","migrations":[{"title":"1694360000000-create-folders.js","timestamp":1700000000000},{"title":"1694360479680-create-account-db.js","timestamp":1700000000001}]}"#;

/// Turn the sandbox instance's data root into an Actual data directory: a
/// real `account.sqlite` listing two budgets (`PLAIN`, and `SECRET`, which is
/// end-to-end encrypted when `encrypted`), their blobs, `PLAIN`'s group
/// database and `.migrate`.
fn actual_data(data: &Path, encrypted: bool) {
    let account = data.join("server-files/account.sqlite");
    fs::remove_file(&account).unwrap();
    let db = Connection::open(&account).unwrap();
    db.execute_batch(
        "CREATE TABLE auth (method TEXT PRIMARY KEY, display_name TEXT, extra_data TEXT, active INTEGER);
         CREATE TABLE sessions (token TEXT PRIMARY KEY, expires_at INTEGER, user_id TEXT, auth_method TEXT);
         CREATE TABLE users (id TEXT PRIMARY KEY, user_name TEXT, display_name TEXT, role TEXT,
                             enabled INTEGER NOT NULL DEFAULT 1, owner INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE files (id TEXT PRIMARY KEY, group_id TEXT, sync_version SMALLINT,
                             encrypt_meta TEXT, encrypt_keyid TEXT, encrypt_salt TEXT, encrypt_test TEXT,
                             deleted BOOLEAN DEFAULT FALSE, name TEXT, owner TEXT);
         INSERT INTO auth VALUES ('password', 'Password', '$argon2id$x', 1);
         INSERT INTO users VALUES ('u1', '', '', 'ADMIN', 1, 1);",
    )
    .unwrap();
    let meta =
        encrypted.then_some(r#"{"keyId":"k1","algorithm":"aes-256-gcm","iv":"aa","authTag":"bb"}"#);
    db.execute(
        "INSERT INTO files VALUES (?1, ?2, 2, NULL, NULL, NULL, NULL, 0, 'Household', 'u1'),
                                  (?3, NULL, 2, ?4, ?5, NULL, NULL, 0, 'Secret', 'u1'),
                                  ('gone-1', NULL, 2, NULL, NULL, NULL, NULL, 1, 'Deleted', 'u1')",
        rusqlite::params![PLAIN, GROUP, SECRET, meta, meta.map(|_| "k1")],
    )
    .unwrap();
    drop(db);

    let files = data.join("user-files");
    let group = Connection::open(files.join(format!("group-{GROUP}.sqlite"))).unwrap();
    group
        .execute_batch(
            "CREATE TABLE messages_binary (timestamp TEXT PRIMARY KEY, is_encrypted BOOLEAN, content bytea);
             CREATE TABLE messages_merkles (id INTEGER PRIMARY KEY, merkle TEXT);
             INSERT INTO messages_merkles VALUES (1, '{}');",
        )
        .unwrap();
    for i in 0..3000 {
        group
            .execute(
                "INSERT INTO messages_binary VALUES (?1, 0, randomblob(200))",
                [format!("2025-01-01T00:00:00.{i:04}Z-0000-abcdef")],
            )
            .unwrap();
    }
    drop(group);

    budget_zip(&files.join(format!("file-{PLAIN}.blob")));
    let secret = files.join(format!("file-{SECRET}.blob"));
    if encrypted {
        // Ciphertext: no zip signature anywhere.
        let noise: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(&secret, noise).unwrap();
    } else {
        budget_zip(&secret);
    }
    fs::write(data.join(".migrate"), MIGRATE).unwrap();
}

/// A budget blob as the server stores it: a deflated zip of `db.sqlite` and
/// `metadata.json`.
fn budget_zip(path: &Path) {
    let script = "import sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
        \x20   z.writestr('db.sqlite', b'SQLite format 3\\0' + bytes(range(256)) * 400)\n\
        \x20   z.writestr('metadata.json', '{\"budgetName\": \"Household\"}')\n";
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

fn group_db(data: &Path) -> PathBuf {
    data.join(format!("user-files/group-{GROUP}.sqlite"))
}

/// A sandbox with instance `alpha` whose data is [`actual_data`]'s, and
/// alpha's data root.
fn actual_sandbox(encrypted: bool) -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let data = sb.add_instance("alpha");
    actual_data(&data, encrypted);
    (sb, data)
}

/// The daemon on `sb`, and a client of it.
async fn serve(sb: &Sandbox) -> (Daemon, Client) {
    let daemon = Daemon::start(sb);
    let c = client(&daemon.socket).await;
    (daemon, c)
}

/// Leave the group database as a writer stopped in the middle of a
/// transaction leaves it: with a tiny cache its changes spill into the
/// database file before the commit, and only the hot journal beside it holds
/// the pages as they were. The writer worked on a copy in the directory
/// returned.
fn leave_a_hot_journal(data: &Path) -> tempfile::TempDir {
    let scratch = tempfile::tempdir().unwrap();
    let live = scratch.path().join("g.sqlite");
    fs::copy(group_db(data), &live).unwrap();
    let w = Connection::open(&live).unwrap();
    w.execute_batch("PRAGMA cache_size = 1; BEGIN IMMEDIATE; DELETE FROM messages_binary; INSERT INTO messages_binary SELECT 'x' || i, 0, randomblob(300) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i FROM n);")
        .unwrap();
    let journal = scratch.path().join("g.sqlite-journal");
    assert!(journal.exists(), "the writer has a journal");
    fs::copy(&live, group_db(data)).unwrap();
    let mut hot = group_db(data).into_os_string();
    hot.push("-journal");
    fs::copy(&journal, &hot).unwrap();
    drop(w);
    scratch
}

/// A backup of `instance` read as its files are, whatever the daemon's
/// default: the damage must reach the archive as it is.
async fn backup_as_is(c: &Client, instance: &str) -> CreateResult {
    let params = CreateParams {
        instance: instance.into(),
        consistency: Some(Consistency::None),
        ..Default::default()
    };
    call::<BackupCreate>(c, &params)
        .await
        .unwrap()
        .result
        .unwrap()
}

async fn verify(c: &Client, id: &str, deep: bool) -> VerifyItem {
    let params = VerifyParams {
        id: Some(id.into()),
        deep,
        ..Default::default()
    };
    let out = call::<BackupVerify>(c, &params).await.unwrap();
    assert_eq!(out.plan.unwrap().deep, deep);
    out.result.unwrap().results.remove(0)
}

/// One instance whose data `damage` spoils, backed up, deep-verified: the
/// item, which must be corrupt with a problem containing `expect`, and the
/// index entry, which must record it while saying the bytes matched.
async fn damaged(damage: impl FnOnce(&Path), expect: &str) -> DeepVerification {
    let (sb, data) = actual_sandbox(false);
    damage(&data);
    let (_daemon, c) = serve(&sb).await;
    let r = backup_as_is(&c, "alpha").await;

    let item = verify(&c, &r.id, true).await;
    assert_eq!(item.status, status::CORRUPT, "{item:?}");
    let deep = item.deep.clone().expect("the deep result");
    assert!(!deep.ok);
    let problem = deep.problem.clone().unwrap();
    assert!(problem.contains(expect), "{problem}");
    assert!(
        item.message.contains("checksum matches"),
        "{}",
        item.message
    );
    assert!(item.message.contains(&problem), "{}", item.message);

    let entry = show(&c, &r.id).await;
    assert_eq!(entry.status, status::CORRUPT);
    assert_eq!(entry.metadata.verification.as_ref(), Some(&deep));
    assert_eq!(
        entry.metadata.verification_error.as_deref(),
        Some(item.message.as_str())
    );
    let checksum = entry.checksum.unwrap();
    assert_eq!(checksum.observed.as_deref(), Some(checksum.value.as_str()));
    assert!(checksum.last_verified.is_some());

    // A plain verify of the same bytes does not forget what the deep one found.
    let again = verify(&c, &r.id, false).await;
    assert_eq!(again.status, status::CORRUPT, "{again:?}");
    assert!(again.message.contains(&problem), "{}", again.message);
    assert_eq!(
        show(&c, &r.id).await.metadata.verification,
        Some(deep.clone())
    );
    deep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_instance_passes_and_the_index_records_what_was_checked() {
    let (sb, _data) = actual_sandbox(false);
    let (_daemon, c) = serve(&sb).await;
    let r = abssd_tests::backup(&c, "alpha").await;

    let params = VerifyParams {
        id: Some(r.id.clone()),
        deep: true,
        ..Default::default()
    };
    let out = call::<BackupVerify>(&c, &params).await.unwrap();
    let item = out.result.unwrap().results.remove(0);
    assert_eq!(item.status, status::AVAILABLE, "{item:?}");
    let deep = item.deep.clone().unwrap();
    assert!(deep.ok && deep.actual && deep.migrate, "{deep:?}");
    assert_eq!(
        (deep.databases, deep.blobs, deep.listed_files, deep.problems),
        (2, 2, 2, 0),
        "{deep:?}"
    );
    assert!(deep.problem.is_none());
    assert!(!deep.checked_at.is_empty());

    // Progress streamed over the archive's size, under its own phase name.
    let events = abssd_tests::inspect::events_of(&c, &out.op_id).await;
    let phase = abssd_tests::inspect::phase(&events, &format!("verify-deep:{}", r.id))
        .expect("a verify-deep phase");
    assert!(
        matches!(phase.kind, EventKind::Phase { total_bytes: Some(n), .. } if n == r.size_bytes)
    );

    let entry = show(&c, &r.id).await;
    assert_eq!(entry.status, status::AVAILABLE);
    assert_eq!(entry.metadata.verification, Some(deep.clone()));
    assert!(entry.metadata.verification_error.is_none());
    // A plain verify keeps it: the bytes are the ones deep-checked.
    assert_eq!(verify(&c, &r.id, false).await.status, status::AVAILABLE);
    assert_eq!(show(&c, &r.id).await.metadata.verification, Some(deep));
    // The copies are gone.
    let scratch = sb.config().state_dir.join("scratch");
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_group_database_is_found() {
    let deep = damaged(
        |data| {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(group_db(data))
                .unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len / 2).unwrap();
        },
        &format!("data/user-files/group-{GROUP}.sqlite: "),
    )
    .await;
    // The account database still passed.
    assert_eq!(deep.databases, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_account_database_is_found() {
    let deep = damaged(
        |data| {
            fs::write(data.join("server-files/account.sqlite"), b"").unwrap();
        },
        "data/server-files/account.sqlite: not a SQLite database (0 bytes)",
    )
    .await;
    assert!(deep.actual);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_is_not_a_zip_is_found() {
    damaged(
        |data| {
            fs::write(
                data.join(format!("user-files/file-{PLAIN}.blob")),
                b"half a budget",
            )
            .unwrap();
        },
        &format!("data/user-files/file-{PLAIN}.blob: not a readable zip"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_migrate_is_found() {
    let deep = damaged(
        |data| fs::remove_file(data.join(".migrate")).unwrap(),
        "data/.migrate is not in the archive",
    )
    .await;
    assert!(!deep.migrate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_listed_in_account_sqlite_but_absent_is_found() {
    let deep = damaged(
        |data| fs::remove_file(data.join(format!("user-files/file-{SECRET}.blob"))).unwrap(),
        &format!("lists budget file {SECRET}, but data/user-files/file-{SECRET}.blob is not in the archive"),
    )
    .await;
    assert_eq!(deep.listed_files, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_budgets_blob_is_not_a_zip_and_passes() {
    let (sb, data) = actual_sandbox(true);
    let (_daemon, c) = serve(&sb).await;
    let r = backup_as_is(&c, "alpha").await;
    let item = verify(&c, &r.id, true).await;
    assert_eq!(item.status, status::AVAILABLE, "{item:?}");
    let deep = item.deep.unwrap();
    assert!(deep.ok, "{deep:?}");
    // Only the plain budget's blob is a zip; both are listed and present.
    assert_eq!((deep.blobs, deep.listed_files), (1, 2));

    // The same noise under a budget account.sqlite does not call encrypted is
    // a problem: it is encrypt_meta that decides.
    let db = Connection::open(data.join("server-files/account.sqlite")).unwrap();
    db.execute(
        "UPDATE files SET encrypt_meta = NULL WHERE id = ?1",
        [SECRET],
    )
    .unwrap();
    drop(db);
    let r = backup_as_is(&c, "alpha").await;
    let item = verify(&c, &r.id, true).await;
    assert_eq!(item.status, status::CORRUPT, "{item:?}");
    assert!(
        item.message
            .contains(&format!("file-{SECRET}.blob: not a readable zip")),
        "{}",
        item.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_journal_archived_with_its_database_is_rolled_back() {
    let (sb, data) = actual_sandbox(false);
    let _scratch = leave_a_hot_journal(&data);
    // Without its journal the copy is torn: the check must use the journal.
    let torn = Connection::open_with_flags(
        format!("file:{}?immutable=1", group_db(&data).display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)));
    assert!(!matches!(torn.as_deref(), Ok("ok")), "{torn:?}");

    let (_daemon, c) = serve(&sb).await;
    let r = backup_as_is(&c, "alpha").await;
    let item = verify(&c, &r.id, true).await;
    assert_eq!(item.status, status::AVAILABLE, "{item:?}");
    assert_eq!(item.deep.unwrap().databases, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_verify_deep_records_each_finding() {
    let (sb, data) = actual_sandbox(false);
    let (_daemon, c) = serve(&sb).await;
    let good = backup_as_is(&c, "alpha").await;
    fs::remove_file(data.join(".migrate")).unwrap();
    let bad = backup_as_is(&c, "alpha").await;

    let params = ReconcileParams {
        apply: true,
        verify: true,
        deep: true,
        ..Default::default()
    };
    let out = call::<BackupReconcile>(&c, &params).await.unwrap();
    assert!(out.plan.unwrap().deep);
    let result = out.result.unwrap();
    assert_eq!(result.mismatched.len(), 1, "{result:?}");
    let finding = &result.mismatched[0];
    assert_eq!(finding.id, bad.id);
    assert!(
        finding.reason.contains(".migrate is not in the archive"),
        "{}",
        finding.reason
    );
    assert_eq!(finding.action.as_deref(), Some("mark corrupt"));

    let entry = show(&c, &bad.id).await;
    assert_eq!(entry.status, status::CORRUPT);
    assert!(!entry.metadata.verification.unwrap().ok);
    let entry = show(&c, &good.id).await;
    assert_eq!(entry.status, status::AVAILABLE);
    assert!(entry.metadata.verification.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_deep_without_verify_is_refused() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let (_daemon, c) = serve(&sb).await;
    let before = snapshot(&sb.prefix);
    let params = ReconcileParams {
        apply: true,
        deep: true,
        ..Default::default()
    };
    let err = call::<BackupReconcile>(&c, &params).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(err.message.contains("needs --verify"), "{}", err.message);
    let after = snapshot(&sb.prefix);
    let index = sb.config().index_file;
    assert_eq!(before.get(&index), after.get(&index));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_verify_deep_refuses_a_bad_archive_and_changes_nothing() {
    let w = World::new(&["alpha"]);
    actual_data(&w.data("alpha"), false);
    fs::write(
        w.data("alpha")
            .join(format!("user-files/file-{PLAIN}.blob")),
        b"torn",
    )
    .unwrap();
    let c = w.client().await;
    let r = backup_as_is(&c, "alpha").await;
    let before = w.live_state();
    let backups = snapshot(&w.cfg().backups_root);

    // The plan says the check will run, first.
    let dry = RestoreParams {
        verify_deep: true,
        dry_run: true,
        ..no_pre(&r.id)
    };
    let plan = restore(&c, &dry).await.unwrap().plan.unwrap();
    assert_eq!(plan.steps[0].step.to_string(), "verify_deep");

    // With the pre-restore backup on: the refusal comes before it.
    let params = RestoreParams {
        verify_deep: true,
        no_pre_backup: false,
        ..no_pre(&r.id)
    };
    let err = restore(&c, &params).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(
        err.message.contains("refusing to restore"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("not a readable zip"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("nothing was changed"),
        "{}",
        err.message
    );

    assert_same(&before, &w.live_state());
    let names = |m: &std::collections::BTreeMap<PathBuf, _>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&snapshot(&w.cfg().backups_root)),
        names(&backups),
        "no archive was added"
    );
    assert!(
        w.jobs().is_empty(),
        "the unit was not touched: {:?}",
        w.jobs()
    );
    assert!(w.unit_active("alpha"));
    w.assert_no_leftovers();
    let entry = show(&c, &r.id).await;
    assert_eq!(entry.status, status::CORRUPT);
    assert!(!entry.metadata.verification.unwrap().ok);
    let index = abssd::index::Index::load(&w.cfg().index_file).unwrap();
    assert_eq!(index.backups.len(), 1, "no pre-restore backup was taken");

    // Restored anyway, without the deep check: the entry keeps what that
    // check found in these bytes (the restore hashed the same ones).
    restore(&c, &no_pre(&r.id)).await.unwrap().result.unwrap();
    let entry = show(&c, &r.id).await;
    assert_eq!(entry.status, status::CORRUPT);
    assert!(!entry.metadata.verification.unwrap().ok);
    assert!(entry.metadata.verification_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_verify_deep_restores_a_good_archive() {
    let w = World::new(&["alpha"]);
    let data = w.data("alpha");
    actual_data(&data, false);
    let c = w.client().await;
    // The unit runs: the default capture snapshots both databases, and what
    // it archives passes the deep check.
    let r = abssd_tests::backup(&c, "alpha").await;
    assert_eq!(
        (r.capture, r.snapshots),
        (abssd_proto::Capture::Snapshot, 2)
    );
    let migrate = fs::read(data.join(".migrate")).unwrap();
    fs::remove_file(data.join(".migrate")).unwrap();
    fs::write(data.join("server-files/account.sqlite"), b"").unwrap();

    let params = RestoreParams {
        verify_deep: true,
        ..no_pre(&r.id)
    };
    let out = restore(&c, &params).await.unwrap();
    assert_eq!(out.plan.unwrap().steps[0].step.to_string(), "verify_deep");
    out.result.unwrap();
    assert_eq!(fs::read(data.join(".migrate")).unwrap(), migrate);
    let account = Connection::open(data.join("server-files/account.sqlite")).unwrap();
    let n: i64 = account
        .query_row("SELECT count(*) FROM files", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let entry = show(&c, &r.id).await;
    assert_eq!(entry.status, status::AVAILABLE);
    assert!(entry.metadata.verification.unwrap().ok);
    w.assert_no_leftovers();
}

#[test]
fn start_up_recovery_removes_what_an_interrupted_deep_check_left() {
    let sb = Sandbox::new();
    let left = sb.config().state_dir.join("scratch/0190aaaa");
    fs::create_dir_all(&left).unwrap();
    fs::write(left.join("1.db"), b"a copy").unwrap();
    fs::write(left.join("1.db-journal"), b"its journal").unwrap();
    let daemon = Daemon::start(&sb);
    assert!(!left.exists());
    assert!(sb.config().state_dir.join("scratch").is_dir());
    daemon.stop();
}

/// A hot journal in an archive can end with the path of a "super-journal";
/// rolling it back, SQLite opens that path, anywhere on the host, as root,
/// without `O_NONBLOCK`, reads it whole and may delete it. Here it names a
/// FIFO (as an instance's user could make one, and leave such a journal in
/// their data for a backup read as it is): before the fix the deep check
/// opened it (and without a writer waiting on it, would have hung for good).
/// Now the journal is refused as a problem and the path is never opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_naming_a_super_journal_is_not_rolled_back() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (sb, data) = actual_sandbox(false);
    let scratch = leave_a_hot_journal(&data);
    let mut hot = group_db(&data).into_os_string();
    hot.push("-journal");
    // SQLite's super-journal record: a page number, the name, its length and
    // checksum (the sum of its bytes), the journal magic.
    let fifo = scratch.path().join("evil-mj1234569ab");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let name = fifo.as_os_str().as_encoded_bytes();
    let sum = name.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
    let mut record = 0x4000_0001u32.to_be_bytes().to_vec();
    record.extend_from_slice(name);
    record.extend_from_slice(&(name.len() as u32).to_be_bytes());
    record.extend_from_slice(&sum.to_be_bytes());
    record.extend_from_slice(&[0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);
    fs::OpenOptions::new()
        .append(true)
        .open(&hot)
        .unwrap()
        .write_all(&record)
        .unwrap();
    // A writer waiting on the FIFO: its open returns when anyone opens it to
    // read, which releases that reader at once (it reads nothing).
    let opened = Arc::new(AtomicBool::new(false));
    let (f, flag) = (fifo.clone(), opened.clone());
    let waiter = std::thread::spawn(move || {
        let fd = fs::OpenOptions::new().write(true).open(&f).unwrap();
        flag.store(true, Ordering::SeqCst);
        drop(fd);
    });

    let (_daemon, c) = serve(&sb).await;
    let r = backup_as_is(&c, "alpha").await;
    let item = verify(&c, &r.id, true).await;
    let was_opened = opened.load(Ordering::SeqCst);
    // Release the waiter whatever happened.
    let _reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    waiter.join().unwrap();
    assert!(
        !was_opened,
        "the deep check opened the super-journal the archive named"
    );
    let deep = item.deep.unwrap();
    assert!(!deep.ok, "{deep:?}");
    let problem = deep.problem.unwrap_or_default();
    assert!(problem.contains("super-journal"), "{problem}");
    assert!(fifo.exists());
}
