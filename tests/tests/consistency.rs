//! Issue 12, `backup create --consistency snapshot` (items 1 and 9): SQLite
//! databases of a running instance (the fake systemd says its unit runs) are
//! archived as snapshots SQLite itself takes, their journals left out; blobs are
//! read until they hold still; files removed or written to during a create are
//! reported, never fatal. What an instance's own user (uid 65534, owning the
//! data directory) can do to a snapshot, each attack driven at a named hook.
//!
//! Writers are real second processes (`python3` with its sqlite3 module) that
//! say through a pipe when they are inside their transaction: no sleeps.
//! Every test holds [`serial`] (hooks are process-wide).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use abssd::config::unit_name;
use abssd_proto::methods::BackupCreate;
use abssd_proto::methods::call::call;
use abssd_proto::*;
use abssd_tests::hooks::{Gate, as_nobody_at};
use abssd_tests::nobody::{self, NOBODY};
use abssd_tests::world::World;
use abssd_tests::{Serial, serial, tar, tar_member};
use jsonrpsee::core::client::Client;
use rusqlite::{Connection, OpenFlags};

/// Where most tests here start: the hooks held ([`serial`]; bind it to a
/// name, `_serial`, for the whole test), instance `alpha` whose unit runs, a
/// client, and alpha's data root, handed to the service user as on a real
/// host.
async fn scene() -> (Serial, World, Client, PathBuf) {
    let serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    (serial, w, c, data)
}

/// A database like Actual's group databases, `rows` committed rows of
/// `tag-<i>`, owned by the service user.
fn database(path: &Path, tag: &str, rows: u32) {
    let c = Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE messages(x TEXT)").unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute("INSERT INTO messages VALUES (?1)", [format!("{tag}-{i}")])
            .unwrap();
    }
    tx.commit().unwrap();
    drop(c);
    nobody::chown_r(path, NOBODY);
}

fn plan_of(out: &OpOutcome<CreatePlan, CreateResult>) -> &CreatePlan {
    out.plan.as_ref().expect("a plan")
}

fn params(consistency: Option<Consistency>) -> CreateParams {
    CreateParams {
        instance: "alpha".into(),
        compression: Compression::None,
        consistency,
        ..Default::default()
    }
}

async fn create(c: &Client, p: &CreateParams) -> OpOutcome<CreatePlan, CreateResult> {
    call::<BackupCreate>(c, p).await.expect("backup.create")
}

/// A writer in another process, as the service user, inside `BEGIN
/// IMMEDIATE` with an uncommitted row when this returns; it rolls back and
/// exits when dropped.
struct Writer(Child);

impl Writer {
    fn hold(db: &Path) -> Writer {
        let script = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
for i in range(200):
    c.execute("INSERT INTO messages VALUES (?)", ("uncommitted-%d" % i,))
print("in", flush=True)
sys.stdin.read()
c.execute("ROLLBACK")
"#;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(db)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "in",
            "the writer did not start its transaction"
        );
        Writer(child)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Leave a hot journal beside `db`: a writer that spilled changed pages into
/// the database file mid-transaction, killed with SIGKILL.
fn crash_a_writer(db: &Path) {
    let script = r#"
import sqlite3, sys, os
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA cache_size=10")
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE messages SET x = x || hex(randomblob(200))")
os.kill(os.getpid(), 9)
"#;
    let st = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(db)
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .expect("python3");
    assert!(!st.success(), "the writer was to be killed");
}

/// A writer in another process, as the service user and with no busy
/// timeout, commits one row to `db`: "committed", or SQLite's error (e.g.
/// "database is locked").
fn commit_as_nobody(db: &Path) -> String {
    let script = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO messages VALUES ('later')")
try:
    c.execute("COMMIT")
    print("committed")
except sqlite3.OperationalError as e:
    print(e)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(db)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Extract the archive with GNU tar into a new directory.
fn extract(archive: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tar(&["-xf", archive, "-C", dir.path().to_str().unwrap()]);
    dir
}

fn listing(archive: &str) -> Vec<String> {
    tar(&["-tf", archive]).lines().map(str::to_owned).collect()
}

/// `PRAGMA integrity_check` and the rows of a restored copy.
fn check(db: &Path) -> Vec<String> {
    let c = Connection::open(db).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{}", db.display());
    let mut st = c.prepare("SELECT x FROM messages ORDER BY rowid").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn rows(tag: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// [`check`] of the database `rel` (below the data root) as the archive of
/// `r` holds it.
fn archived_rows(r: &CreateResult, rel: &str) -> Vec<String> {
    let dir = extract(&r.archive);
    check(&dir.path().join(format!("{}/data/{rel}", r.id)))
}

fn snapshots_dir(w: &World) -> PathBuf {
    w.cfg().state_dir.join("scratch")
}

/// No copy is left in the scratch directory.
fn assert_no_copies(w: &World) {
    let left: Vec<_> = fs::read_dir(snapshots_dir(w))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "copies left in the snapshots dir: {left:?}"
    );
}

/// Nothing of a failed create is left: no archive, no index entry.
fn assert_nothing_made(w: &World, index_before: &Option<Vec<u8>>) {
    assert_eq!(&fs::read(w.cfg().index_file).ok(), index_before);
    let dir = w.cfg().backups_root.join("alpha");
    let left: Vec<_> = fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert_no_copies(w);
    w.assert_no_leftovers();
}

/// A create that must fail with an `environment` error naming `path` and
/// saying each of `says`, and leave nothing behind (no archive, no index
/// change, no copies): its error, for more checks.
async fn refused(w: &World, c: &Client, path: &Path, says: &[&str]) -> WireError {
    let index_before = fs::read(w.cfg().index_file).ok();
    let err = call::<BackupCreate>(c, &params(None)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    let named = err.message.contains(&path.display().to_string());
    assert!(
        named && says.iter().all(|s| err.message.contains(s)),
        "{}",
        err.message
    );
    assert_nothing_made(w, &index_before);
    err
}

fn has_bytes(file: &str, needle: &str) -> bool {
    let raw = fs::read(file).unwrap();
    raw.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_progress_elsewhere_is_archived_as_the_last_committed_state() {
    let (_serial, w, c, data) = scene().await;
    let db = data.join("user-files/group-1.sqlite");
    database(&db, "committed", 50);
    let live = fs::metadata(&db).unwrap();
    let writer = Writer::hold(&db);
    assert!(
        data.join("user-files/group-1.sqlite-journal").exists(),
        "the writer has a journal open"
    );

    let out = create(&c, &params(None)).await;
    drop(writer);
    let (plan, r) = (plan_of(&out), out.result.as_ref().unwrap());
    assert_eq!(plan.capture, Capture::Snapshot);
    assert_eq!(plan.unit_running, Some(true));
    assert_eq!(plan.databases, [db.display().to_string()]);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("group-1.sqlite-journal") && n.contains("not archived")),
        "{:?}",
        plan.notes
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!((r.capture, r.snapshots), (Capture::Snapshot, 1));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    let names = listing(&r.archive);
    let member = format!("{}/data/user-files/group-1.sqlite", r.id);
    assert!(names.contains(&member), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with("-journal")),
        "a journal was archived: {names:?}"
    );
    // Under the database's own name, owner, mode and mtime.
    let verbose = tar(&["--numeric-owner", "-tvf", &r.archive, &member]);
    assert!(verbose.contains(" 65534/65534 "), "{verbose}");
    let out_dir = extract(&r.archive);
    let restored = out_dir.path().join(&member);
    let meta = fs::metadata(&restored).unwrap();
    assert_eq!(meta.mode() & 0o7777, live.mode() & 0o7777);
    assert_eq!(meta.mtime(), live.mtime());
    assert_eq!(check(&restored), rows("committed", 50));
    // Read in place: no scratch directory was even made.
    assert!(
        !snapshots_dir(&w).exists(),
        "a copy of the database was made"
    );
}

/// A database is read in place, no copy made, while SQLite's read
/// transaction holds it: a writer in another process (the service user's,
/// with no busy timeout) cannot commit, from before the read until after it
/// (POSIX locks belong to the process: had the daemon closed any descriptor
/// of its own on the file meanwhile, SQLite's lock would be gone and the
/// commit would go through). Once the create is done it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_is_read_in_place_under_sqlites_lock() {
    let (_serial, w, c, data) = scene().await;
    let db = data.join("user-files/group-1.sqlite");
    database(&db, "committed", 50);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (d, s, scratch) = (db.clone(), seen.clone(), snapshots_dir(&w));
    fail::cfg_callback("create::database-read", move || {
        let copies = Command::new("find")
            .arg(&scratch)
            .args(["-type", "f"])
            .output()
            .unwrap();
        s.lock().unwrap().push((
            commit_as_nobody(&d),
            String::from_utf8_lossy(&copies.stdout).into_owned(),
        ));
    })
    .unwrap();
    let out = create(&c, &params(None)).await;
    fail::remove("create::database-read");
    let r = out.result.as_ref().unwrap();
    assert_eq!((r.capture, r.snapshots), (Capture::Snapshot, 1));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].0, "database is locked",
        "the writer committed under the read"
    );
    assert_eq!(seen[0].1, "", "a copy was made in the scratch directory");
    assert_eq!(
        archived_rows(r, "user-files/group-1.sqlite"),
        rows("committed", 50)
    );
    assert_eq!(
        commit_as_nobody(&db),
        "committed",
        "the lock outlived the create"
    );
    assert_no_copies(&w);
}

/// Mode `none` is today's plain copy: the journal goes in as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_none_reads_plainly_journal_included() {
    let (_serial, _w, c, data) = scene().await;
    let db = data.join("user-files/group-1.sqlite");
    database(&db, "committed", 10);
    let writer = Writer::hold(&db);
    let out = create(&c, &params(Some(Consistency::None))).await;
    drop(writer);
    let r = out.result.as_ref().unwrap();
    assert_eq!((plan_of(&out).capture, r.snapshots), (Capture::None, 0));
    assert!(plan_of(&out).databases.is_empty());
    let names = listing(&r.archive);
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("user-files/group-1.sqlite-journal")),
        "{names:?}"
    );
}

/// A writer killed mid-transaction leaves a hot journal that a read-only
/// connection cannot roll back: while the unit runs (the server will roll it
/// back when it next opens the database) the create waits a bounded time,
/// then fails naming the database and the way out, leaving nothing behind.
/// With the unit stopped the instance is read plainly, hot journal included,
/// and the restored pair rolls back to the committed state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_journal_fails_a_snapshot_and_goes_in_when_offline() {
    let (_serial, w, c, data) = scene().await;
    let db = data.join("user-files/group-1.sqlite");
    database(&db, "committed", 3000);
    crash_a_writer(&db);
    let journal = data.join("user-files/group-1.sqlite-journal");
    assert!(journal.exists());
    let probe = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let err = probe
        .query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly),
        "the journal is hot: {err}"
    );
    drop(probe);
    let before = abssd_tests::inspect::snapshot_content(&data);
    refused(&w, &c, &db, &["hot journal", "--consistency stop"]).await;
    // The read-only connection touched nothing: the journal is still hot.
    assert_eq!(abssd_tests::inspect::snapshot_content(&data), before);

    w.fake.set_unit(&unit_name("alpha"), false, true);
    let out = create(&c, &params(None)).await;
    let r = out.result.as_ref().unwrap();
    assert_eq!((r.capture, r.snapshots), (Capture::Offline, 0));
    let dir = extract(&r.archive);
    let restored = dir
        .path()
        .join(format!("{}/data/user-files/group-1.sqlite", r.id));
    assert!(
        restored.with_file_name("group-1.sqlite-journal").exists(),
        "the hot journal goes in beside its database"
    );
    assert_eq!(check(&restored), rows("committed", 3000));
}

/// A root-only directory holding a SQLite database with a secret row.
fn root_only_database(w: &World) -> (PathBuf, String) {
    let dir = w.sb.path("root-only");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let secret = format!("TOPSECRET-{}-row", std::process::id());
    let c = Connection::open(dir.join("group-1.sqlite")).unwrap();
    c.execute_batch("CREATE TABLE messages(x TEXT)").unwrap();
    c.execute("INSERT INTO messages VALUES (?1)", [&secret])
        .unwrap();
    drop(c);
    fs::set_permissions(
        dir.join("group-1.sqlite"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    (dir, secret)
}

fn assert_secret_absent(archive: &str, secret: &str) {
    assert!(!has_bytes(archive, secret), "the secret is in {archive}");
}

/// A create with the default parameters while the service user runs
/// `script` in `dir` at hook `hook`; the script must have run.
async fn create_attacked(
    c: &Client,
    hook: &'static str,
    dir: &Path,
    script: String,
) -> OpOutcome<CreatePlan, CreateResult> {
    let ran = as_nobody_at(hook, dir, script);
    let out = create(c, &params(None)).await;
    fail::remove(hook);
    assert!(ran.load(Ordering::SeqCst), "{hook} did not run");
    out
}

/// Nothing was snapshotted, and a warning says that `what` was left out
/// because it was replaced.
fn assert_left_out_replaced(r: &CreateResult, what: &str) {
    assert_eq!(r.snapshots, 0, "{:?}", r.warnings);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(what) && w.contains("replaced")),
        "{:?}",
        r.warnings
    );
}

/// The database's directory is swapped for a symlink to a root-only directory
/// holding another database, after the walk (the directory is then never
/// opened) or after the snapshot opened it (SQLite reads from the directory
/// the walk saw, wherever it was moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_symlink_never_leads_sqlite_elsewhere() {
    let _serial = serial();
    for hook in ["create::after-walk", "create::before-snapshot"] {
        let w = World::new(&["alpha"]);
        let c = w.client().await;
        let data = w.data_owned_by_nobody("alpha");
        database(&data.join("user-files/group-1.sqlite"), "mine", 5);
        let (secret_dir, secret) = root_only_database(&w);
        let out = create_attacked(
            &c,
            hook,
            &data,
            format!(
                "mv user-files moved && ln -s {} user-files",
                secret_dir.display()
            ),
        )
        .await;
        let r = out.result.as_ref().unwrap();
        assert_secret_absent(&r.archive, &secret);
        if hook == "create::after-walk" {
            assert_left_out_replaced(r, "user-files");
        } else {
            // The directory the walk saw, moved: its own database.
            assert_eq!(r.snapshots, 1, "{hook}: {:?}", r.warnings);
            assert_eq!(
                archived_rows(r, "user-files/group-1.sqlite"),
                rows("mine", 5)
            );
        }
        assert_no_copies(&w);
    }
}

/// The database file itself swapped for a symlink to the root-only database
/// once the snapshot's directory is open: SQLite's `NOFOLLOW` refuses it and
/// the database is left out with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_swapped_for_a_symlink_is_left_out() {
    let (_serial, w, c, data) = scene().await;
    database(&data.join("user-files/group-1.sqlite"), "mine", 5);
    let (secret_dir, secret) = root_only_database(&w);
    let out = create_attacked(
        &c,
        "create::before-snapshot",
        &data.join("user-files"),
        format!(
            "mv group-1.sqlite moved && ln -s {}/group-1.sqlite group-1.sqlite",
            secret_dir.display()
        ),
    )
    .await;
    let r = out.result.as_ref().unwrap();
    assert_secret_absent(&r.archive, &secret);
    assert_left_out_replaced(r, "group-1.sqlite");
    assert_no_copies(&w);
}

/// A FIFO swapped in for the database after the last check, where SQLite
/// would wait in `open()` forever (it opens without `O_NONBLOCK`), the instance
/// locked: the daemon releases it, and the database is left out as replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_swapped_in_for_a_database_does_not_hang_the_create() {
    let (_serial, w, c, data) = scene().await;
    database(&data.join("user-files/group-1.sqlite"), "mine", 5);
    let out = create_attacked(
        &c,
        "create::before-snapshot",
        &data.join("user-files"),
        "mv group-1.sqlite moved && mkfifo group-1.sqlite".into(),
    )
    .await;
    let r = out.result.as_ref().unwrap();
    assert_left_out_replaced(r, "group-1.sqlite");
    assert_no_copies(&w);
}

/// A hard link to the root-only database swapped in while SQLite opens the
/// name and swapped out again before the name is checked once more (done as
/// root: the service user cannot link a file it cannot reach, as the test
/// first shows, nor, with `fs.protected_hardlinks=1`, one it cannot write; a
/// database of another instance's on a host without that setting is the
/// real case). SQLite's descriptor is checked
/// against the file the walk saw, so the snapshot is taken again from the
/// right file; the secret never reaches the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_link_swapped_in_and_out_around_the_open_is_caught() {
    let (_serial, w, c, data) = scene().await;
    let dir = data.join("user-files");
    database(&dir.join("group-1.sqlite"), "mine", 5);
    let (secret_dir, secret) = root_only_database(&w);
    let secret_db = secret_dir.join("group-1.sqlite");
    let refused = Command::new("ln")
        .arg(&secret_db)
        .arg(dir.join("try"))
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .unwrap();
    assert!(
        !refused.success(),
        "the service user could hard-link a root-only file"
    );

    let (d1, s1) = (dir.clone(), secret_db.clone());
    fail::cfg_callback("create::before-snapshot", move || {
        fs::rename(d1.join("group-1.sqlite"), d1.join("moved")).unwrap();
        fs::hard_link(&s1, d1.join("group-1.sqlite")).unwrap();
    })
    .unwrap();
    let swapped_back = Arc::new(AtomicUsize::new(0));
    let (d2, n) = (dir.clone(), swapped_back.clone());
    fail::cfg_callback("create::snapshot-taken", move || {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            fs::rename(d2.join("moved"), d2.join("group-1.sqlite")).unwrap();
        }
    })
    .unwrap();
    let out = create(&c, &params(None)).await;
    fail::remove("create::before-snapshot");
    fail::remove("create::snapshot-taken");
    let r = out.result.as_ref().unwrap();
    assert_secret_absent(&r.archive, &secret);
    assert_eq!(swapped_back.load(Ordering::SeqCst), 2, "two attempts");
    assert_eq!(r.snapshots, 1, "{:?}", r.warnings);
    assert_eq!(
        archived_rows(r, "user-files/group-1.sqlite"),
        rows("mine", 5)
    );
    assert_no_copies(&w);
}

/// A blob rewritten in place during its first read is read again: the archive
/// holds one whole version, the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_rewritten_during_its_read_is_read_again() {
    let (_serial, w, c, data) = scene().await;
    let blob = data.join("user-files/file-1.blob");
    fs::write(&blob, vec![b'a'; 300_000]).unwrap();
    nobody::chown_r(&blob, NOBODY);
    let out = create_attacked(
        &c,
        "create::blob-read",
        &data.join("user-files"),
        // In place, as Actual writes it: same inode, truncated, rewritten.
        "head -c 200000 /dev/zero | tr '\\0' b 1<> file-1.blob && truncate -s 200000 file-1.blob"
            .into(),
    )
    .await;
    let r = out.result.as_ref().unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let member = format!("{}/data/user-files/file-1.blob", r.id);
    assert_eq!(tar_member(&r.archive, &member), vec![b'b'; 200_000]);
    assert_no_copies(&w);
    assert_eq!(
        fs::metadata(snapshots_dir(&w)).unwrap().mode() & 0o7777,
        0o700
    );
}

/// A blob that changes on every read fails the create, naming it; nothing is
/// left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_never_holds_still_fails_the_create() {
    let (_serial, w, c, data) = scene().await;
    let blob = data.join("user-files/file-1.blob");
    fs::write(&blob, vec![b'a'; 100_000]).unwrap();
    nobody::chown_r(&blob, NOBODY);
    let reads = Arc::new(AtomicUsize::new(0));
    let (b, n) = (blob.clone(), reads.clone());
    fail::cfg_callback("create::blob-read", move || {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let mut f = fs::OpenOptions::new().write(true).open(&b).unwrap();
        f.write_all(&vec![b'c' + (i % 20) as u8; 100_000 + i])
            .unwrap();
    })
    .unwrap();
    refused(&w, &c, &blob, &["kept changing while it was read"]).await;
    fail::remove("create::blob-read");
    assert_eq!(reads.load(Ordering::SeqCst), 5);
}

/// Item 9: a file removed between the walk and its read is left out with a
/// warning; one written to while it is read is archived as read and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_removed_or_changed_during_a_create_are_warnings_not_errors() {
    let (_serial, _w, c, data) = scene().await;
    fs::write(data.join("going.txt"), b"soon gone").unwrap();
    fs::write(data.join("growing.log"), b"line\n").unwrap();
    nobody::chown_r(&data, NOBODY);
    let removed = as_nobody_at("create::after-walk", &data, "rm going.txt".into());
    let log = data.join("growing.log");
    fail::cfg_callback("create::file-read", move || {
        let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"another line\n").unwrap();
    })
    .unwrap();
    let out = create(&c, &params(Some(Consistency::None))).await;
    fail::remove("create::after-walk");
    fail::remove("create::file-read");
    assert!(removed.load(Ordering::SeqCst));
    let r = out.result.as_ref().unwrap();
    assert!(
        r.warnings.iter().any(|w| w.starts_with("left out ")
            && w.contains("going.txt")
            && w.contains("file removed before we read it")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.warnings.iter().any(|w| w.starts_with("changed ")
            && w.contains("growing.log")
            && w.contains("file changed as we read it")),
        "{:?}",
        r.warnings
    );
    let names = listing(&r.archive);
    assert!(!names.iter().any(|n| n.ends_with("going.txt")));
    assert!(names.iter().any(|n| n.ends_with("growing.log")));
}

/// `--dry-run` says which databases would be snapshotted, and how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_lists_the_databases_and_the_capture() {
    let (_serial, w, c, data) = scene().await;
    // Told by the header: a real database under any name, not a file named
    // like one.
    database(&data.join("server-files/account.data"), "acct", 1);
    fs::write(data.join("user-files/fake.sqlite"), vec![b'x'; 5000]).unwrap();
    let p = CreateParams {
        dry_run: true,
        ..params(None)
    };
    let out = create(&c, &p).await;
    assert!(out.result.is_none());
    assert_eq!(plan_of(&out).capture, Capture::Snapshot);
    assert_eq!(
        plan_of(&out).databases,
        [data.join("server-files/account.data").display().to_string()]
    );
    assert_no_copies(&w);

    w.fake.set_unit(&unit_name("alpha"), false, true);
    let out = create(&c, &p).await;
    assert_eq!(plan_of(&out).capture, Capture::Offline);
    assert!(plan_of(&out).databases.is_empty());
}

/// A copy left in the snapshots directory by a daemon that died is removed at
/// the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_recovery_removes_leftover_copies() {
    let _serial = serial();
    let mut w = World::new(&["alpha"]);
    let dir = snapshots_dir(&w);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("999-0.tmp"), b"a snapshot of a crashed create").unwrap();
    w.restart_with("");
    assert_no_copies(&w);
}

/// Two instances backed up at once (nightly timers fire together): each
/// create has its own scratch directory, so the copies of their blobs never
/// clash on a name. The first create is held in the middle of its blob's read,
/// its copy made, while the second runs from start to end. (Only blobs here:
/// a database snapshot waits for other creates' reads of live files to end.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_are_backed_up_at_once() {
    let _serial = serial();
    let w = World::new(&["alpha", "bravo"]);
    for name in ["alpha", "bravo"] {
        fs::write(
            w.data(name).join("user-files/file-1.blob"),
            format!("{name} ").repeat(10_000),
        )
        .unwrap();
    }
    let mut gate = Gate::at("create::blob-read");

    let c = w.client().await;
    let alpha = {
        let c = w.client().await;
        tokio::spawn(async move { create(&c, &params(None)).await })
    };
    gate.entered().await;
    let bravo = create(
        &c,
        &CreateParams {
            instance: "bravo".into(),
            ..params(None)
        },
    )
    .await;
    gate.release();
    let alpha = alpha.await.unwrap();
    fail::remove("create::blob-read");
    for (name, out) in [("alpha", &alpha), ("bravo", &bravo)] {
        let r = out.result.as_ref().expect("a result");
        assert_eq!(r.capture, Capture::Snapshot, "{name}");
        let member = format!("{}/data/user-files/file-1.blob", r.id);
        assert_eq!(
            tar_member(&r.archive, &member),
            format!("{name} ").repeat(10_000).into_bytes(),
            "{name}"
        );
    }
    assert_no_copies(&w);
}

/// A database SQLite would open in WAL mode, with `<db>-shm` a hard link to
/// a file of another user's that the service user may write (which
/// `fs.protected_hardlinks=1` allows): a `-wal` beside it from the start (any
/// bytes: SQLite takes a non-empty one for a WAL, no race needed), or its header switched to WAL (bytes 18 and 19) after the plan's
/// probe. SQLite, even read-only, opens a WAL database's `-wal` and `-shm`
/// read-write, creating them, and as root `fchown`s them to the database's
/// owner and truncates and rewrites the `-shm`: the victim became the
/// attacker's, overwritten (seen before the fix). Now the snapshot refuses,
/// the create fails saying why, and nothing is touched or made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_sqlite_would_open_in_wal_mode_is_refused_and_nothing_beside_it_touched() {
    let _serial = serial();
    const TEXT: &[u8] = b"another user's file, writable by the group";
    for switched in [false, true] {
        let w = World::new(&["alpha"]);
        let c = w.client().await;
        let data = w.data_owned_by_nobody("alpha");
        let dir = data.join("user-files");
        database(&dir.join("group-1.sqlite"), "mine", 5);
        let shared = w.sb.path("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        let victim = shared.join("victim");
        fs::write(&victim, TEXT).unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o666)).unwrap();
        std::os::unix::fs::chown(&victim, Some(NOBODY - 1), Some(NOBODY - 1)).unwrap();
        let link = format!("ln {} group-1.sqlite-shm", victim.display());
        let ran = if switched {
            as_nobody_at(
                "create::before-snapshot",
                &dir,
                format!(
                    "printf '\\002\\002' | dd of=group-1.sqlite bs=1 seek=18 conv=notrunc \
                     status=none && {link}"
                ),
            )
        } else {
            nobody::sh(
                Some(&dir),
                &format!("printf garbage > group-1.sqlite-wal && {link}"),
            );
            Arc::new(AtomicBool::new(true))
        };
        let names = || -> Vec<_> {
            let mut v: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            v.sort();
            v
        };
        let before = names();
        let index_before = fs::read(w.cfg().index_file).ok();
        let out = call::<BackupCreate>(&c, &params(None)).await;
        fail::remove("create::before-snapshot");
        assert!(ran.load(Ordering::SeqCst));
        let meta = fs::metadata(&victim).unwrap();
        assert_eq!(
            meta.uid(),
            NOBODY - 1,
            "switched: {switched}: root's SQLite chowned the -shm's target"
        );
        assert!(
            fs::read(&victim).unwrap() == TEXT,
            "switched: {switched}: root's SQLite wrote the -shm's target"
        );
        let err = out.unwrap_err();
        assert!(
            err.message.contains("WAL") && err.message.contains("group-1.sqlite"),
            "{}",
            err.message
        );
        let mut after = names();
        if switched {
            after.retain(|n| n != "group-1.sqlite-shm");
        }
        assert_eq!(
            after, before,
            "switched: {switched}: SQLite made files beside the live database"
        );
        assert_nothing_made(&w, &index_before);
    }
}

/// A blob caught between `writeFile`'s truncate and its last chunk: both reads
/// agree and its status holds still, but the zip has no end record (or the
/// file is still empty). It is read again once its writer finishes (here at
/// the `create::blob-torn` hook); the archive holds the whole blob. A blob that
/// does not start as a zip (an end-to-end-encrypted budget) is archived as read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_cut_short_by_a_paused_writer_is_read_again_once_whole() {
    let (_serial, w, c, data) = scene().await;
    let (cut, empty) = (
        data.join("user-files/file-1.blob"),
        data.join("user-files/file-3.blob"),
    );
    let whole = abssd_tests::actual::blob("1", 3, 200_000);
    let whole3 = abssd_tests::actual::blob("3", 1, 30_000);
    fs::write(&cut, &whole[..120_000]).unwrap();
    fs::write(&empty, b"").unwrap();
    let encrypted: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(data.join("user-files/file-2.blob"), &encrypted).unwrap();
    nobody::chown_r(&data, NOBODY);
    let torn = Arc::new(std::sync::Mutex::new(0));
    let (n, rest, w3) = (torn.clone(), whole[120_000..].to_vec(), whole3.clone());
    let (c1, c3) = (cut.clone(), empty.clone());
    fail::cfg_callback("create::blob-torn", move || {
        let mut n = n.lock().unwrap();
        *n += 1;
        // The writer's remaining chunks, on the same inode: one blob a call.
        if fs::metadata(&c1).unwrap().len() < 200_000 {
            let mut f = fs::OpenOptions::new().append(true).open(&c1).unwrap();
            f.write_all(&rest).unwrap();
        } else {
            let mut f = fs::OpenOptions::new().append(true).open(&c3).unwrap();
            f.write_all(&w3).unwrap();
        }
    })
    .unwrap();
    let out = create(&c, &params(Some(Consistency::Snapshot))).await;
    fail::remove("create::blob-torn");
    assert_eq!(
        *torn.lock().unwrap(),
        2,
        "each seen still being written once"
    );
    let r = out.result.as_ref().unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let dir = extract(&r.archive);
    let stored = |name: &str| fs::read(dir.path().join(format!("{}/data/user-files/{name}", r.id)));
    assert!(
        stored("file-1.blob").unwrap() == whole,
        "the archive holds a torn blob"
    );
    assert!(
        stored("file-3.blob").unwrap() == whole3,
        "the archive holds an empty blob"
    );
    assert!(stored("file-2.blob").unwrap() == encrypted);
    assert_no_copies(&w);
}

/// A blob that stays cut short (its writer died mid-write) fails the create
/// after the bounded attempts, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_stays_cut_short_fails_the_create() {
    let (_serial, w, c, data) = scene().await;
    let blob = data.join("user-files/file-1.blob");
    let whole = abssd_tests::actual::blob("1", 1, 50_000);
    fs::write(&blob, &whole[..whole.len() - 10]).unwrap();
    nobody::chown_r(&blob, NOBODY);
    let torn = Arc::new(AtomicUsize::new(0));
    let n = torn.clone();
    fail::cfg_callback("create::blob-torn", move || {
        n.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    refused(&w, &c, &blob, &["a zip cut short"]).await;
    fail::remove("create::blob-torn");
    assert_eq!(torn.load(Ordering::SeqCst), 5);
}

/// A group database seen at 0 bytes (the server created the file and has not
/// yet made its tables) is left out in snapshot mode, with a warning: archived
/// empty, it would come back without tables the server never makes again. In
/// modes none and offline the walk's files go in as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_group_database_is_left_out_of_a_snapshot() {
    let (_serial, w, c, data) = scene().await;
    database(&data.join("user-files/group-1.sqlite"), "kept", 3);
    fs::write(data.join("user-files/group-x.sqlite"), b"").unwrap();
    nobody::chown_r(&data, NOBODY);
    let empty = data.join("user-files/group-x.sqlite").display().to_string();
    let warned = |warnings: &[String]| {
        warnings.iter().any(|w| {
            w.contains(&empty)
                && w.contains("an empty database file, being created; the server makes it again")
        })
    };
    let has = |archive: &str| {
        listing(archive)
            .iter()
            .any(|n| n.ends_with("user-files/group-x.sqlite"))
    };

    let out = create(&c, &params(Some(Consistency::Snapshot))).await;
    let r = out.result.as_ref().unwrap();
    assert_eq!((r.capture, r.snapshots), (Capture::Snapshot, 1));
    assert!(
        warned(&plan_of(&out).warnings),
        "{:?}",
        plan_of(&out).warnings
    );
    assert!(warned(&r.warnings), "{:?}", r.warnings);
    assert!(!has(&r.archive), "an empty group database was archived");

    let out = create(&c, &params(Some(Consistency::None))).await;
    let r = out.result.as_ref().unwrap();
    assert_eq!(r.capture, Capture::None);
    assert!(!warned(&r.warnings), "{:?}", r.warnings);
    assert!(has(&r.archive));

    w.fake.set_unit(&unit_name("alpha"), false, true);
    let out = create(&c, &params(None)).await;
    let r = out.result.as_ref().unwrap();
    assert_eq!(r.capture, Capture::Offline);
    assert!(!warned(&r.warnings), "{:?}", r.warnings);
    assert!(has(&r.archive));
}

/// The service user, ignoring SQLite's locks, grows the database by a sparse
/// 64 MiB through its own name while SQLite's read transaction holds it
/// (just before the daemon opens it): the archive holds the database as
/// SQLite counts it (its pages), not the file's new size. A sparse terabyte
/// would otherwise keep the create, and SQLite's lock, for hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_grown_past_its_pages_under_the_lock_is_archived_as_sqlite_counts_it() {
    let (_serial, _w, c, data) = scene().await;
    let db = data.join("user-files/group-1.sqlite");
    database(&db, "mine", 50);
    let pages = fs::metadata(&db).unwrap().len();
    let out = create_attacked(
        &c,
        "create::snapshot-taken",
        &data.join("user-files"),
        "truncate -s +64M group-1.sqlite".into(),
    )
    .await;
    assert_eq!(fs::metadata(&db).unwrap().len(), pages + (64 << 20));
    let r = out.result.as_ref().unwrap();
    assert_eq!(r.snapshots, 1, "{:?}", r.warnings);
    let dir = extract(&r.archive);
    let member = dir
        .path()
        .join(format!("{}/data/user-files/group-1.sqlite", r.id));
    assert_eq!(fs::metadata(&member).unwrap().len(), pages);
    assert_eq!(check(&member), rows("mine", 50));
}

/// The service user truncates the database through its own name while
/// SQLite's read transaction holds it: the create fails, saying the file was
/// written past SQLite's lock, rather than archiving a cut database as a
/// snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_under_the_lock_fails_the_create_naming_the_cause() {
    let (_serial, w, c, data) = scene().await;
    let db = data.join("user-files/group-1.sqlite");
    database(&db, "mine", 50);
    let ran = as_nobody_at(
        "create::snapshot-taken",
        &data.join("user-files"),
        "truncate -s 1024 group-1.sqlite".into(),
    );
    refused(&w, &c, &db, &["written while SQLite's lock was held"]).await;
    fail::remove("create::snapshot-taken");
    assert!(ran.load(Ordering::SeqCst));
}

/// POSIX locks belong to the process: a create of another instance that
/// opened and closed a descriptor on the database alpha's snapshot holds
/// would drop SQLite's lock, and a writer could commit under alpha's read.
/// The service user both instances share hard-links alpha's database into
/// bravo's tree; alpha is held mid-read (`create::database-read`) while
/// bravo's create runs. Bravo must wait for alpha's read to end
/// (`create::live-file-waits`) and a writer must still find the database
/// locked. (Without the daemon-wide lock bravo finished first and the
/// writer committed: seen before the fix.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_link_in_another_instance_never_drops_a_snapshots_lock() {
    let _serial = serial();
    let w = World::new(&["alpha", "bravo"]);
    for name in ["alpha", "bravo"] {
        w.data_owned_by_nobody(name);
    }
    let db = w.data("alpha").join("user-files/group-1.sqlite");
    database(&db, "alpha", 20);
    nobody::chown_r(&db, NOBODY);
    let other = w.data("bravo").join("user-files/group-9.sqlite");
    nobody::sh(None, &format!("ln {} {}", db.display(), other.display()));

    // Alpha stops mid-read, SQLite's lock held, until released.
    let mut gate = Gate::at("create::database-read");
    // Bravo says when it has to wait for alpha.
    let (waits_tx, waits_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    fail::cfg_callback("create::live-file-waits", move || {
        let _ = waits_tx.send(());
    })
    .unwrap();

    let alpha = {
        let c = w.client().await;
        tokio::spawn(async move { create(&c, &params(None)).await })
    };
    gate.entered().await;
    let mut bravo = {
        let c = w.client().await;
        let p = CreateParams {
            instance: "bravo".into(),
            ..params(None)
        };
        tokio::spawn(async move { call::<BackupCreate>(&c, &p).await })
    };
    let mut waits_rx = waits_rx;
    let early = tokio::select! {
        _ = waits_rx.recv() => None,
        done = &mut bravo => Some(done),
    };

    let committed = commit_as_nobody(&db);
    gate.release();
    fail::remove("create::database-read");
    fail::remove("create::live-file-waits");
    assert!(
        early.is_none(),
        "bravo's create ran while alpha held its database"
    );
    assert_eq!(
        committed, "database is locked",
        "a writer committed under alpha's read"
    );
    let alpha = alpha.await.unwrap().result.expect("alpha's create");
    assert_eq!(alpha.snapshots, 1);
    assert_eq!(
        archived_rows(&alpha, "user-files/group-1.sqlite"),
        rows("alpha", 20)
    );
    // Bravo went on once alpha's read ended.
    let bravo = bravo.await.unwrap().expect("bravo's create");
    assert!(bravo.result.is_some());
}
