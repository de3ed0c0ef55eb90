//! Issue 12's proof: backups of an instance whose Actual sync server is busy
//! writing it restore to a working instance.
//!
//! `actual-writer` (tests/src/bin) stands in for the server: as the service
//! user (uid 65534, owning the data directory as on a real host), with the
//! rollback journal and a 5 s busy timeout, it runs `BEGIN IMMEDIATE`
//! transactions at full speed on group databases and `account.sqlite`, creates
//! and deletes group databases, and rewrites blobs in place. The fake systemd
//! says the instance's unit is running. Every backup is restored with `restore
//! --dest` (the real path back) and the copy is checked: `PRAGMA
//! integrity_check` on every database, the invariant each transaction keeps,
//! every blob one whole generation (`abssd_tests::actual::check_data`).
//!
//! A hook at `create::after-walk` waits until the writer has committed one
//! more transaction, so every backup is known to overlap a write (no sleeps;
//! the writer needs no help to race the capture itself).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abssd_proto::methods::BackupCreate;
use abssd_proto::methods::call::call;
use abssd_proto::{
    Capture, Compression, Consistency, CreateParams, CreateResult, RestoreParams, WireError,
};
use abssd_tests::actual::{Checked, check_data};
use abssd_tests::nobody::NOBODY;
use abssd_tests::serial;
use abssd_tests::world::{Tmpfs, World, restore};
use jsonrpsee::core::client::Client;

/// Snapshot-mode backups taken while the writer runs (the issue asks for 50).
const SNAPSHOT_BACKUPS: usize = 50;
/// Plain-copy backups taken to count how often such a copy is broken.
const PLAIN_BACKUPS: usize = 20;
/// How long a hook waits for the writer's next commit before it gives up
/// (a bound for a stalled writer, not a timing the test relies on).
const COMMIT_BOUND: Duration = Duration::from_secs(30);

/// What the writer has reported on its stdout.
#[derive(Debug, Default)]
struct Reported {
    commits: u64,
    ended: bool,
    summary: Option<String>,
}

type Shared = Arc<(Mutex<Reported>, Condvar)>;

/// `actual-writer` running as the service user on a data directory.
struct Writer {
    child: Child,
    reported: Shared,
    reader: Option<JoinHandle<()>>,
}

impl Writer {
    /// Start it on `data` as uid 65534 and wait for its `ready` line.
    fn start(data: &Path) -> Writer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_actual-writer"))
            .arg(data)
            .arg("--report-commits")
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start actual-writer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        match lines.next() {
            Some(Ok(line)) if line == "ready" => {}
            other => panic!("actual-writer did not get ready (its stderr above): {other:?}"),
        }
        let reported: Shared = Default::default();
        let shared = reported.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let (m, cv) = &*shared;
                let mut r = m.lock().unwrap();
                match line.strip_prefix("commit ") {
                    Some(n) => r.commits = n.parse().expect("a commit count"),
                    None => r.summary = Some(line),
                }
                cv.notify_all();
            }
            let (m, cv) = &*shared;
            m.lock().unwrap().ended = true;
            cv.notify_all();
        });
        Writer {
            child,
            reported,
            reader: Some(reader),
        }
    }

    /// Block until the writer commits a transaction after this call; `false`
    /// when it ended or stalled for [`COMMIT_BOUND`] instead.
    fn wait_for_a_commit(reported: &Shared) -> bool {
        let (m, cv) = &**reported;
        let mut r = m.lock().unwrap();
        let seen = r.commits;
        let deadline = Instant::now() + COMMIT_BOUND;
        while r.commits == seen && !r.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            r = cv.wait_timeout(r, left).unwrap().0;
        }
        r.commits > seen
    }

    /// Arm `create::after-walk`: each create waits there for the writer's next
    /// commit. Returns how many creates saw one.
    fn overlap_every_create(&self) -> Arc<AtomicUsize> {
        let overlapped = Arc::new(AtomicUsize::new(0));
        let (reported, count) = (self.reported.clone(), overlapped.clone());
        fail::cfg_callback("create::after-walk", move || {
            if Writer::wait_for_a_commit(&reported) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
        overlapped
    }

    /// Close its stdin, wait for it; it must have ended well (no transaction
    /// failed, e.g. on a lock held past its 5 s busy timeout). Its summary.
    fn stop(mut self) -> String {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait for actual-writer");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader");
        }
        assert!(
            status.success(),
            "actual-writer failed (its stderr above): {status}"
        );
        let summary = self.reported.0.lock().unwrap().summary.clone();
        summary.expect("the writer's summary")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An instance whose unit runs, its data directory handed to the service
/// user as on a real host (it owns everything below the data root and can
/// reach it).
fn busy_instance() -> (World, PathBuf, Tmpfs) {
    let w = World::new(&["alpha"]);
    assert!(w.unit_active("alpha"));
    let data = w.data_owned_by_nobody("alpha");
    // Restores go to a tmpfs: a restore ends with a syncfs of its
    // destination's filesystem, which on a shared disk waits for everything
    // else written there (0.36 s a restore instead of 0.2 on this machine).
    let restores = Tmpfs::mount(&w.cfg().restores_root, "256m");
    (w, data, restores)
}

async fn create(c: &Client, mode: Consistency) -> Result<CreateResult, WireError> {
    let params = CreateParams {
        instance: "alpha".into(),
        consistency: Some(mode),
        // The capture is what is under test; an uncompressed archive halves
        // a create's time in the unoptimized test build.
        compression: Compression::None,
        ..Default::default()
    };
    call::<BackupCreate>(c, &params)
        .await
        .map(|out| out.result.expect("a create result"))
}

/// Restore backup `id` with `restore --dest` into a new directory, check the
/// copy, and remove it.
async fn restore_and_check(w: &World, c: &Client, id: &str) -> Checked {
    let dest = w.cfg().restores_root.join(format!("copy-{id}"));
    let params = RestoreParams {
        id: id.into(),
        dest: Some(dest.display().to_string()),
        ..Default::default()
    };
    restore(c, &params)
        .await
        .unwrap_or_else(|e| {
            // What the instance's backup directory holds, to tell a vanished
            // archive from a misnamed one.
            let dir = w.cfg().instance_backup_dir("alpha");
            let mut names: Vec<String> = fs::read_dir(&dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            panic!(
                "restore --dest of {id}: {e:?}\n{} holds: {names:#?}",
                dir.display()
            )
        })
        .result
        .expect("a restore result");
    let foreign = not_owned_by_the_service_user(&dest);
    let mut checked = check_data(&dest);
    checked.problems.extend(
        foreign
            .into_iter()
            .map(|p| format!("{p}: not owned by uid {NOBODY}")),
    );
    fs::remove_dir_all(&dest).unwrap();
    checked
}

/// Entries below `dir` that the service user does not own (it could not
/// write them after the restore).
fn not_owned_by_the_service_user(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        if meta.uid() != NOBODY {
            out.push(e.path().display().to_string());
        }
        if meta.is_dir() {
            out.extend(not_owned_by_the_service_user(&e.path()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_backups_of_a_busy_instance_all_restore_whole() {
    let _serial = serial();
    let (w, data, _restores) = busy_instance();
    let c = w.client().await;
    let writer = Writer::start(&data);
    let overlapped = writer.overlap_every_create();

    let started = Instant::now();
    let mut made = Vec::new();
    for n in 0..SNAPSHOT_BACKUPS {
        let r = create(&c, Consistency::Snapshot)
            .await
            .unwrap_or_else(|e| panic!("snapshot backup {n} of the busy instance: {e:?}"));
        assert_eq!(r.capture, Capture::Snapshot, "backup {n}");
        made.push((r.id, r.snapshots));
    }
    let backing_up = started.elapsed();
    fail::remove("create::after-walk");
    let summary = writer.stop();
    assert_eq!(overlapped.load(Ordering::SeqCst), SNAPSHOT_BACKUPS);

    let started = Instant::now();
    let mut states = Vec::new();
    let (mut fresh, mut half) = (0, 0);
    for (n, (id, snapshots)) in made.iter().enumerate() {
        let checked = restore_and_check(&w, &c, id).await;
        // Every database in the archive went in as a snapshot (account.sqlite
        // and the group databases; the sandbox's budget-1/db.sqlite is text).
        assert_eq!(
            *snapshots as usize, checked.sqlite_files,
            "backup {n} ({id}): databases archived as snapshots vs SQLite files in it"
        );
        assert!(*snapshots >= 2, "backup {n}: {snapshots} snapshots");
        assert!(
            checked.problems.is_empty(),
            "snapshot backup {n} ({id}) restored broken:\n{}",
            checked.problems.join("\n")
        );
        assert!(
            checked.journals.is_empty(),
            "backup {n} holds journals: {:?}",
            checked.journals
        );
        assert!(checked.databases >= 4 && checked.blobs >= 3, "{checked:?}");
        fresh += checked.fresh_groups;
        half += checked.half_created_groups;
        states.push(checked.last_seq);
    }
    states.dedup();
    assert!(states.len() > 1, "every backup holds the same state");
    eprintln!(
        "snapshot: {SNAPSHOT_BACKUPS} backups of the busy instance in {:.1}s, restored and \
         checked in {:.1}s, all whole ({} distinct states; {fresh} group databases caught \
         before their first sync, {half} between the server's two CREATE TABLEs); writer: \
         {summary}",
        backing_up.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        states.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_copies_of_a_busy_instance_are_counted() {
    let _serial = serial();
    let (w, data, _restores) = busy_instance();
    let c = w.client().await;
    let writer = Writer::start(&data);
    let overlapped = writer.overlap_every_create();

    let started = Instant::now();
    let (mut failed, mut made) = (Vec::new(), Vec::new());
    for n in 0..PLAIN_BACKUPS {
        match create(&c, Consistency::None).await {
            Ok(r) => {
                assert_eq!(r.capture, Capture::None, "backup {n}");
                assert!(
                    Path::new(&r.archive).is_file(),
                    "backup {n} ({}): the create answered, its archive {} is not there",
                    r.id,
                    r.archive
                );
                assert_eq!(r.snapshots, 0, "backup {n}");
                made.push(r.id);
            }
            Err(e) => failed.push(e.message),
        }
    }
    fail::remove("create::after-walk");
    let summary = writer.stop();
    assert_eq!(overlapped.load(Ordering::SeqCst), PLAIN_BACKUPS);

    let mut broken = Vec::new();
    for id in &made {
        let checked = restore_and_check(&w, &c, id).await;
        if let Some(first) = checked.problems.first() {
            broken.push(format!("{first} (+{} more)", checked.problems.len() - 1));
        }
    }
    eprintln!(
        "none: {PLAIN_BACKUPS} plain copies of the busy instance in {:.1}s: {} failed, {} of \
         the {} made restored broken; writer: {summary}\nfailed: {failed:#?}\nbroken: {broken:#?}",
        started.elapsed().as_secs_f64(),
        failed.len(),
        broken.len(),
        made.len(),
    );
    // On the 2-core reference machine between half and all of the plain
    // copies came back broken in every run (11 to 15 of 20 lately, 59 of 60
    // in the first runs: `database disk image is malformed`, `wrong # of
    // entries in index`, blobs cut short; no create failed), so one of 20 is
    // a safe floor; the counts printed above are the measurement.
    assert!(
        !(broken.is_empty() && failed.is_empty()),
        "none of {PLAIN_BACKUPS} plain copies of the busy instance was broken"
    );
}

#[test]
fn the_checks_catch_torn_copies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_actual-writer"))
        .arg(&data)
        .arg("--report-commits")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it write a few hundred transactions, then stop it.
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.map_while(Result::ok) {
        if line
            .strip_prefix("commit ")
            .is_some_and(|n| n.parse::<u64>().unwrap() >= 300)
        {
            break;
        }
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());

    let whole = check_data(&data);
    assert!(whole.problems.is_empty(), "{:?}", whole.problems);
    assert!(whole.databases >= 4 && whole.blobs >= 3, "{whole:?}");

    let user_files = data.join("user-files");
    let pick = |prefix: &str| {
        let mut names: Vec<PathBuf> = fs::read_dir(&user_files)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        names.sort();
        names
    };
    let groups = pick("group-");
    let blobs = pick("file-");
    // A group database cut in half; one whose message went without its merkle
    // row; a blob cut short; the account's count not kept; no `.migrate`; an
    // empty group database.
    let torn = fs::read(&groups[0]).unwrap();
    fs::write(&groups[0], &torn[..torn.len() / 2]).unwrap();
    let db = rusqlite::Connection::open(&groups[1]).unwrap();
    db.execute(
        "DELETE FROM messages_binary WHERE rowid = (SELECT min(rowid) FROM messages_binary)",
        [],
    )
    .unwrap();
    drop(db);
    let blob = fs::read(&blobs[0]).unwrap();
    fs::write(&blobs[0], &blob[..blob.len() - 100]).unwrap();
    let db = rusqlite::Connection::open(data.join("server-files/account.sqlite")).unwrap();
    db.execute("INSERT INTO files (id) VALUES ('smuggled')", [])
        .unwrap();
    drop(db);
    fs::remove_file(data.join(".migrate")).unwrap();
    // A group database caught between the server's open and its schema.
    fs::write(user_files.join("group-caught-empty.sqlite"), b"").unwrap();
    // Between the server's two `CREATE TABLE`s: a committed state, accepted
    // (counted apart); with a message in it, a state nothing commits.
    let half = |name: &str, rows: u32| {
        let db = rusqlite::Connection::open(user_files.join(name)).unwrap();
        db.execute_batch(
            "CREATE TABLE messages_binary
               (timestamp TEXT PRIMARY KEY, is_encrypted BOOLEAN, content bytea)",
        )
        .unwrap();
        for i in 0..rows {
            db.execute("INSERT INTO messages_binary VALUES (?1, 0, x'00')", [i])
                .unwrap();
        }
    };
    half("group-half-created.sqlite", 0);
    half("group-half-with-a-message.sqlite", 1);

    let checked = check_data(&data);
    assert_eq!(checked.half_created_groups, 1, "{checked:?}");
    let found = checked.problems;
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for culprit in [
        name(&groups[0]),
        name(&groups[1]),
        name(&blobs[0]),
        "account.sqlite".into(),
        ".migrate".into(),
        "group-caught-empty.sqlite".into(),
        "group-half-with-a-message.sqlite".into(),
    ] {
        assert!(
            found.iter().any(|p| p.contains(&culprit)),
            "{culprit} not reported: {found:#?}"
        );
    }
    assert_eq!(found.len(), 7, "{found:#?}");
}
