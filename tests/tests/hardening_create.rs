//! Issue 11, the create side: what an instance's own service user (uid 65534
//! here, owning the data directory) can do to `backup create`, each attack
//! driven by a real second process at a named hook in the daemon, and what a
//! create must still get right (trees deeper than descriptors allow, paths
//! longer than `PATH_MAX`, sparse files, times before 1970, `--out-dir`).
//!
//! Every test holds [`serial`]: hooks are process-wide, so these tests run
//! one at a time, and alone in the process.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupShow};
use abssd_proto::*;
use abssd_tests::hooks::as_nobody_at;
use abssd_tests::inspect::events_of;
use abssd_tests::nobody::{self, NOBODY};
use abssd_tests::world::{World, restore};
use abssd_tests::{serial, tar};
use jsonrpsee::core::client::Client;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// `chown -R` to the service user.
fn give_to_nobody(path: &Path) {
    nobody::chown_r(path, NOBODY);
}

/// Run `script` with `sh -c` in `dir` as the service user (a real second
/// process with its uid, not root); panics when it fails.
#[track_caller]
fn as_nobody(dir: &Path, script: &str) {
    nobody::sh(Some(dir), script);
}

/// A root-only directory (0700) holding a root-only file (0600) with a secret
/// that must never reach an archive.
fn root_only_secret(w: &World) -> (PathBuf, String) {
    let dir = w.sb.path("root-only");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let secret = format!("TOPSECRET-{}-shadow-content\n", std::process::id());
    let file = dir.join("shadow");
    fs::write(&file, &secret).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    (dir, secret)
}

fn plain(instance: &str) -> CreateParams {
    CreateParams {
        instance: instance.into(),
        compression: Compression::None,
        ..Default::default()
    }
}

async fn create(c: &Client, params: &CreateParams) -> OpOutcome<CreatePlan, CreateResult> {
    call::<BackupCreate>(c, params)
        .await
        .expect("backup.create")
}

/// GNU tar's listing of an uncompressed archive.
fn listing(archive: &str) -> Vec<String> {
    tar(&["-tf", archive]).lines().map(str::to_owned).collect()
}

/// The secret is nowhere in the archive: not in its raw bytes (no compression),
/// not in any member GNU tar extracts.
fn assert_secret_absent(archive: &str, secret: &str) {
    let raw = fs::read(archive).unwrap();
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the root-only secret is in {archive}"
    );
    let all = Command::new("tar")
        .args(["-xOf", archive])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&all.stdout).contains(secret.trim()));
}

/// The create's warnings (result and events) name `what` and say why.
async fn assert_warned(
    c: &Client,
    out: &OpOutcome<CreatePlan, CreateResult>,
    what: &str,
    why: &str,
) {
    let r = out.result.as_ref().unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(what) && w.contains(why)),
        "no warning about {what} ({why}): {:?}",
        r.warnings
    );
    let events = events_of(c, &out.op_id).await;
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Message { level, text } if *level == Level::Warning && text.contains(what))),
        "no warning event about {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_swapped_for_a_symlink_after_the_walk_is_left_out_not_read() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    let (dir, secret) = root_only_secret(&w);
    // As long as the secret: a tar pass that reads through the link fills the
    // recorded size with it.
    fs::write(data.join("victim"), "x".repeat(secret.len())).unwrap();
    give_to_nobody(&data.join("victim"));

    let swapped = as_nobody_at(
        "create::after-walk",
        &data,
        format!("rm victim && ln -s {} victim", dir.join("shadow").display()),
    );
    let out = create(&c, &plain("alpha")).await;
    fail::remove("create::after-walk");
    assert!(swapped.load(Ordering::SeqCst), "the hook did not run");

    let r = out.result.as_ref().unwrap();
    assert_secret_absent(&r.archive, &secret);
    let names = listing(&r.archive);
    assert!(
        !names.iter().any(|n| n.ends_with("/data/victim")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("/data/server-files/secret.key"))
    );
    assert_warned(&c, &out, "victim", "replaced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_symlink_during_the_walk_is_not_followed() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    let (dir, secret) = root_only_secret(&w);
    fs::create_dir(data.join("0-victimdir")).unwrap();
    fs::write(data.join("0-victimdir/shadow"), "mine\n").unwrap();
    give_to_nobody(&data.join("0-victimdir"));

    // The first directory listed is the data root: its entries are known, the
    // walk has not entered 0-victimdir yet (named to be the first directory it
    // enters).
    let swapped = as_nobody_at(
        "create::walk-dir",
        &data,
        format!(
            "mv 0-victimdir .moved && ln -s {} 0-victimdir",
            dir.display()
        ),
    );
    let out = create(&c, &plain("alpha")).await;
    fail::remove("create::walk-dir");
    assert!(swapped.load(Ordering::SeqCst), "the hook did not run");

    let r = out.result.as_ref().unwrap();
    assert_secret_absent(&r.archive, &secret);
    let names = listing(&r.archive);
    assert!(
        !names.iter().any(|n| n.contains("/data/0-victimdir")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("/data/user-files/budget-1/db.sqlite"))
    );
    assert_warned(&c, &out, "0-victimdir", "replaced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_root_its_user_swapped_for_a_symlink_is_not_followed() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    // The instance's user owns the directory that holds its data root.
    let home = data.parent().unwrap().to_owned();
    give_to_nobody(&home);
    let (dir, secret) = root_only_secret(&w);
    as_nobody(
        &home,
        &format!("mv data data.real && ln -s {} data", dir.display()),
    );

    let err = call::<BackupCreate>(&c, &plain("alpha")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{err:?}");
    assert!(
        err.message.contains("symlink owned by uid 65534"),
        "{}",
        err.message
    );
    let made: Vec<_> = fs::read_dir(w.cfg().instance_backup_dir("alpha"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(made.is_empty(), "{made:?}");

    // The operator's own symlink (owned by root) is followed.
    fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink("data.real", &data).unwrap();
    let out = create(&c, &plain("alpha")).await;
    let r = out.result.as_ref().unwrap();
    assert_secret_absent(&r.archive, &secret);
    assert!(
        listing(&r.archive)
            .iter()
            .any(|n| n.ends_with("/data/user-files/budget-1/db.sqlite"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_swapped_in_after_the_walk_neither_hangs_the_create_nor_keeps_the_lock() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    fs::write(data.join("victim"), "data\n").unwrap();
    give_to_nobody(&data.join("victim"));

    let swapped = as_nobody_at(
        "create::after-walk",
        &data,
        "rm victim && mkfifo victim".into(),
    );
    // Not a timing assertion: a create that opened the FIFO for reading would
    // wait for a writer forever; this only turns that hang into a failure (and
    // releases the daemon so the test can end).
    let out =
        match tokio::time::timeout(Duration::from_secs(300), create(&c, &plain("alpha"))).await {
            Ok(out) => out,
            Err(_) => {
                let _writer = fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc_nonblock())
                    .open(data.join("victim"));
                panic!("the create hung on the FIFO swapped in after the walk");
            }
        };
    fail::remove("create::after-walk");
    assert!(swapped.load(Ordering::SeqCst), "the hook did not run");
    let r = out.result.as_ref().unwrap();
    assert!(
        !listing(&r.archive)
            .iter()
            .any(|n| n.ends_with("/data/victim"))
    );
    assert_warned(&c, &out, "victim", "not a regular file").await;

    // The instance lock was released: the next create gets it and succeeds.
    let again = create(&c, &plain("alpha")).await;
    assert!(again.result.is_some());
}

fn libc_nonblock() -> i32 {
    OFlag::O_NONBLOCK.bits()
}

use std::os::unix::fs::OpenOptionsExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_restore_would_refuse_are_left_out_with_warnings_and_the_backup_restores() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    as_nobody(&data, "ln -s /etc/passwd abs && ln -s ../../.. up");

    let out = create(&c, &plain("alpha")).await;
    let r = out.result.as_ref().unwrap();
    for name in ["abs", "up"] {
        assert!(
            r.warnings.iter().any(
                |w| w.contains(&format!("/data/{name}:")) && w.contains("restore would refuse")
            ),
            "{name}: {:?}",
            r.warnings
        );
    }
    assert!(r.warnings.iter().any(|w| w.contains("absolute")));
    assert!(r.warnings.iter().any(|w| w.contains("leaves")));
    assert_eq!(out.plan.as_ref().unwrap().warnings.len(), 2);
    let names = listing(&r.archive);
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("/data/abs") || n.ends_with("/data/up"))
    );
    // The relative link inside data/ is kept.
    assert!(names.iter().any(|n| n.ends_with("/data/current")));

    let dest = w.cfg().restores_root.join("alpha-copy");
    let restored = restore(
        &c,
        &RestoreParams {
            id: r.id.clone(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .expect("the backup restores");
    assert!(restored.result.is_some());
    assert!(dest.join("user-files/budget-1/db.sqlite").is_file());
    assert!(fs::symlink_metadata(dest.join("abs")).is_err());
    assert_eq!(
        fs::read_link(dest.join("current")).unwrap(),
        Path::new("user-files/budget-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_files_beyond_the_hole_limit_are_left_out_without_reading_their_holes() {
    let _serial = serial();
    let w = World::with_config(&["alpha"], |_| {
        "daemon:\n  max_sparse_hole_bytes: 16777216\n".to_owned()
    });
    let c = w.client().await;
    let data = w.data("alpha");
    fs::File::create(data.join("huge.img"))
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    // Within the limit: archived, holes as zeros.
    fs::File::create(data.join("small.img"))
        .unwrap()
        .set_len(8 << 20)
        .unwrap();

    let out = create(&c, &plain("alpha")).await;
    let r = out.result.as_ref().unwrap();
    let names = listing(&r.archive);
    assert!(
        !names.iter().any(|n| n.ends_with("/data/huge.img")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("/data/small.img")));
    assert!(r.uncompressed_bytes < 16 << 20, "{}", r.uncompressed_bytes);
    assert!(r.size_bytes < 16 << 20, "{}", r.size_bytes);
    assert_warned(&c, &out, "huge.img", "daemon.max_sparse_hole_bytes").await;
}

/// Count this process's open descriptors.
fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_1200_directories_deep_is_archived_with_a_few_descriptors() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data("alpha");
    let deep: PathBuf = std::iter::repeat_n("d", 1200).collect();
    fs::create_dir_all(data.join(&deep)).unwrap();
    fs::write(data.join(&deep).join("deepest"), "bottom\n").unwrap();

    let (most, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (m, n) = (most.clone(), calls.clone());
    fail::cfg_callback("create::walk-dir", move || {
        m.fetch_max(open_fds(), Ordering::SeqCst);
        n.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    let before = open_fds();
    let out = create(&c, &plain("alpha")).await;
    fail::remove("create::walk-dir");
    assert!(calls.load(Ordering::SeqCst) > 1200);
    // One descriptor per level would be 1,200 more.
    let most = most.load(Ordering::SeqCst);
    assert!(
        most < before + 32,
        "{most} descriptors open in the walk, {before} before"
    );

    let r = out.result.as_ref().unwrap();
    let bottom = format!("{}/data/{}/deepest", r.id, deep.display());
    assert!(listing(&r.archive).contains(&bottom));

    let dest = w.cfg().restores_root.join("deep");
    restore(
        &c,
        &RestoreParams {
            id: r.id.clone(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .expect("restore --dest of the deep tree");
    assert_eq!(
        fs::read(dest.join(&deep).join("deepest")).unwrap(),
        b"bottom\n"
    );
}

/// Make `names` nested directories below `at`, one `mkdirat`/`openat` at a
/// time (the whole path is too long for one call), with a file `(depth, name)`
/// in the directory that many levels down.
fn make_long_path(at: &Path, names: &[String], files: &[(usize, &str)]) {
    let mut dir: OwnedFd = nix::fcntl::open(at, OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    for depth in 0..=names.len() {
        for (_, file) in files.iter().filter(|(d, _)| *d == depth) {
            let fd = nix::fcntl::openat(
                &dir,
                *file,
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_EXCL,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            nix::unistd::write(&fd, format!("{file} at depth {depth}\n").as_bytes()).unwrap();
        }
        let Some(name) = names.get(depth) else { break };
        nix::sys::stat::mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        dir = nix::fcntl::openat(&dir, name.as_str(), OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    }
}

/// Move the instance's data root `levels` directories of 200-byte names deeper,
/// and say so in the registry. Returns the new data root.
fn move_data_root_down(w: &World, instance: &str, levels: usize) -> PathBuf {
    let old = w.data(instance);
    let mut new = w.cfg().instance_root.join(instance);
    for i in 0..levels {
        new.push(format!("{i}{}", "r".repeat(199)));
    }
    fs::create_dir_all(&new).unwrap();
    new.push("data");
    fs::rename(&old, &new).unwrap();
    let file = w.cfg().registry_file();
    let mut reg = abssd::registry::Registry::load(&file).unwrap();
    reg.get_mut(instance).unwrap().paths.root = Some(new.display().to_string());
    abssd::fsutil::atomic_write(&file, reg.to_yaml().unwrap().as_bytes()).unwrap();
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_longer_than_path_max_are_archived_and_names_restore_refuses_are_left_out() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = move_data_root_down(&w, "alpha", 5);
    let names: Vec<String> = (0..40)
        .map(|i| format!("{i:02}{}", "n".repeat(118)))
        .collect();
    make_long_path(
        &data.join("user-files"),
        &names,
        &[(28, "mid.txt"), (40, "leaf.txt")],
    );
    let mid = format!("user-files/{}/mid.txt", names[..28].join("/"));
    // On disk, past what one system call may name; in the archive, not.
    assert!(data.join(&mid).as_os_str().len() > 4096);
    // A link whose target is far over the header's 100 bytes (a GNU long-link
    // record), inside data/ so that restore accepts it.
    let target = format!("user-files/{}", names[..25].join("/"));
    std::os::unix::fs::symlink(&target, data.join("far")).unwrap();

    let out = create(&c, &plain("alpha")).await;
    let r = out.result.as_ref().unwrap();
    let names_in = listing(&r.archive);
    let member = format!("{}/data/{mid}", r.id);
    assert!(member.len() < 4096);
    assert!(names_in.contains(&member));
    assert_eq!(tar(&["-xOf", &r.archive, &member]), "mid.txt at depth 28\n");
    let link = tar(&["-tvf", &r.archive, &format!("{}/data/far", r.id)]);
    assert!(
        link.trim_end().ends_with(&format!("/data/far -> {target}")),
        "{link}"
    );

    // The first directory whose name in the archive would pass 4096 bytes is
    // left out (with what is below it), and said so; the one above it is in.
    let dir_name = |k: usize| format!("{}/data/user-files/{}/", r.id, names[..k].join("/"));
    let k = (1..=40).find(|&k| dir_name(k).len() > 4096).unwrap();
    assert!(names_in.contains(&dir_name(k - 1)));
    assert!(!names_in.iter().any(|n| n.len() > 4096));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("longer than 4096 bytes") && w.contains(&names[k - 1][60..])),
        "{:?}",
        r.warnings
    );
    assert!(r.warnings.iter().all(|w| w.len() < 2048));

    // The backup restores.
    let dest = w.cfg().restores_root.join("long");
    restore(
        &c,
        &RestoreParams {
            id: r.id.clone(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .expect("restore --dest");
    assert_eq!(
        fs::read_to_string(dest.join(&mid)).unwrap(),
        "mid.txt at depth 28\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_before_1970_are_stored_and_restored_as_such() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data("alpha");
    let old = data.join("old.txt");
    fs::write(&old, "from 1969\n").unwrap();
    let when = std::time::UNIX_EPOCH - Duration::from_secs(86_400 * 365);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(fs::metadata(&old).unwrap().mtime(), -31_536_000);

    let out = create(&c, &plain("alpha")).await;
    let r = out.result.as_ref().unwrap();
    let member = format!("{}/data/old.txt", r.id);
    let verbose = Command::new("tar")
        .env("TZ", "UTC")
        .args(["--full-time", "-tvf", &r.archive, &member])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&verbose.stdout);
    assert!(
        verbose.status.success(),
        "{}",
        String::from_utf8_lossy(&verbose.stderr)
    );
    assert!(line.contains("1969-01-01 00:00:00"), "{line}");
    let gnu = tempfile::tempdir().unwrap();
    tar(&[
        "-xf",
        &r.archive,
        "-C",
        gnu.path().to_str().unwrap(),
        &member,
    ]);
    assert_eq!(
        fs::metadata(gnu.path().join(&member)).unwrap().mtime(),
        -31_536_000
    );

    let dest = w.cfg().restores_root.join("alpha-1969");
    restore(
        &c,
        &RestoreParams {
            id: r.id.clone(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .expect("restore --dest");
    assert_eq!(
        fs::metadata(dest.join("old.txt")).unwrap().mtime(),
        -31_536_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_dirs_are_normalised_and_a_file_is_refused_even_in_a_dry_run() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let root = w.cfg().backups_root;
    fs::create_dir_all(&root).unwrap();
    let file = root.join("afile");
    fs::write(&file, "not a directory\n").unwrap();
    let index_before = fs::read(w.cfg().index_file).ok();

    for dry_run in [true, false] {
        // (Below the file would be two levels deep: refused for that first.)
        for out_dir in [file.clone()] {
            let err = call::<BackupCreate>(
                &c,
                &CreateParams {
                    out_dir: Some(out_dir.display().to_string()),
                    dry_run,
                    ..plain("alpha")
                },
            )
            .await
            .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
            assert!(err.message.contains("not a directory"), "{}", err.message);
        }
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a directory\n");
    assert_eq!(fs::read(w.cfg().index_file).ok(), index_before);

    let outside = format!("{}/alpha/../../elsewhere", root.display());
    let err = call::<BackupCreate>(
        &c,
        &CreateParams {
            out_dir: Some(outside),
            ..plain("alpha")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation);

    let messy = format!("{}/./alpha/../alpha/", root.display());
    let out = create(
        &c,
        &CreateParams {
            out_dir: Some(messy),
            ..plain("alpha")
        },
    )
    .await;
    let r = out.result.as_ref().unwrap();
    let want = root.join("alpha").join(format!("{}.tar", r.id));
    assert_eq!(
        out.plan.as_ref().unwrap().archive,
        want.display().to_string()
    );
    assert_eq!(r.archive, want.display().to_string());
    assert_eq!(r.checksum_file, format!("{}.sha256", want.display()));
    let shown = call::<BackupShow>(&c, &ShowParams { id: r.id.clone() })
        .await
        .unwrap();
    assert_eq!(shown.backup.path, want.display().to_string());
    assert!(want.is_file());
}

/// Every archive a create makes is where reconcile looks (the backups root or a
/// directory directly in it), never in the restores root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_dirs_deeper_than_reconcile_looks_or_in_the_restores_root_are_refused() {
    let _serial = serial();
    let w = World::with_config(&["alpha"], |sb| {
        format!(
            "backups:\n  restores_root: {}\n",
            sb.path("srv/backups/restores").display()
        )
    });
    let c = w.client().await;
    let cfg = w.cfg();
    let root = cfg.backups_root.clone();
    let index_before = fs::read(&cfg.index_file).ok();
    for (out_dir, says) in [
        (root.join("alpha/deeper"), "more than one level below"),
        (root.join("a/b/c"), "more than one level below"),
        (cfg.restores_root.clone(), "restores root"),
    ] {
        for dry_run in [true, false] {
            let err = call::<BackupCreate>(
                &c,
                &CreateParams {
                    out_dir: Some(out_dir.display().to_string()),
                    dry_run,
                    ..plain("alpha")
                },
            )
            .await
            .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
            assert!(err.message.contains(says), "{}", err.message);
        }
        assert!(!out_dir.exists(), "{} was created", out_dir.display());
    }
    assert_eq!(fs::read(&cfg.index_file).ok(), index_before);
    // The root itself and a directory directly in it are fine.
    for out_dir in [root.clone(), root.join("weekly")] {
        let out = create(
            &c,
            &CreateParams {
                out_dir: Some(out_dir.display().to_string()),
                ..plain("alpha")
            },
        )
        .await;
        assert!(Path::new(&out.result.unwrap().archive).starts_with(&out_dir));
    }
}

/// A tree with more entries than a restore accepts is not backed up at all:
/// the backup would report success and then not restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_with_more_entries_than_restore_accepts_is_refused_up_front() {
    let _serial = serial();
    let w = World::with_config(&["alpha"], |_| "daemon:\n  max_restore_entries: 5\n".into());
    let c = w.client().await;
    let index_before = fs::read(w.cfg().index_file).ok();
    let err = call::<BackupCreate>(&c, &plain("alpha")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(
        err.message.contains("daemon.max_restore_entries"),
        "{}",
        err.message
    );
    assert_eq!(fs::read(w.cfg().index_file).ok(), index_before);
    let dir = w.cfg().backups_root.join("alpha");
    let left: Vec<_> = fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// The service user truncates a file between the walk and its read: the create
/// still succeeds (else its owner could make every backup, and so every restore
/// with a pre-restore backup, fail), the member keeps the size its header says,
/// padded with zeros as GNU tar does, and the result says it is incomplete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_truncated_after_the_walk_is_stored_padded_and_reported() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    fs::write(data.join("shrinking"), vec![b'x'; 10_000]).unwrap();
    give_to_nobody(&data.join("shrinking"));

    let truncated = as_nobody_at(
        "create::after-walk",
        &data,
        "printf 'abc' > shrinking".into(),
    );
    let out = create(&c, &plain("alpha")).await;
    fail::remove("create::after-walk");
    assert!(truncated.load(Ordering::SeqCst), "the hook did not run");
    let r = out.result.as_ref().unwrap();
    assert!(
        r.warnings.iter().any(|w| w.starts_with("incomplete ")
            && w.contains("shrinking")
            && w.contains("shrank by 9997 bytes")),
        "{:?}",
        r.warnings
    );
    let member = format!("{}/data/shrinking", r.id);
    let stored = Command::new("tar")
        .args(["-xOf", &r.archive, &member])
        .output()
        .unwrap();
    assert!(stored.status.success());
    let mut want = b"abc".to_vec();
    want.resize(10_000, 0);
    assert_eq!(stored.stdout, want);
    // And the backup restores.
    let dest = w.cfg().restores_root.join("shrunk");
    restore(
        &c,
        &RestoreParams {
            id: r.id.clone(),
            dest: Some(dest.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(fs::read(dest.join("shrinking")).unwrap(), want);
}

/// A lease the service user holds on one of its files (`F_SETLEASE`) makes a
/// non-blocking open fail with `EAGAIN` (a blocking one would wait for the
/// lease break, instance locked): the file is left out, the create succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_file_is_left_out_and_does_not_fail_the_create() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let data = w.data_owned_by_nobody("alpha");
    let leased = data.join("leased");
    fs::write(&leased, "mine\n").unwrap();
    give_to_nobody(&leased);
    // F_SETLEASE is 1024; SIGIO (the lease break) is ignored so the holder
    // keeps the lease until it is killed.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl,os,signal,sys,time\nsignal.signal(signal.SIGIO, signal.SIG_IGN)\n\
             fd=os.open(sys.argv[1],os.O_RDONLY)\nfcntl.fcntl(fd,1024,fcntl.F_WRLCK)\n\
             print('leased',flush=True)\ntime.sleep(600)\n",
        )
        .arg(&leased)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "leased");
    let out = call::<BackupCreate>(&c, &plain("alpha")).await;
    let _ = holder.kill();
    let _ = holder.wait();
    let out = out.expect("the create succeeds despite the lease");
    let r = out.result.as_ref().unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("/data/leased:") && w.contains("leased by its owner")),
        "{:?}",
        r.warnings
    );
    assert!(
        !listing(&r.archive)
            .iter()
            .any(|n| n.ends_with("/data/leased"))
    );
}

/// Create counts what restore counts: every entry of the archive, the unit,
/// site and metadata members too. At exactly the limit both work; one entry
/// over, the create is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_limit_counts_every_member_as_restore_does() {
    let _serial = serial();
    let entries = {
        let w = World::new(&["alpha"]);
        let out = create(&w.client().await, &plain("alpha")).await;
        listing(&out.result.unwrap().archive).len() as u64
    };
    let at_limit = World::with_config(&["alpha"], |_| {
        format!("daemon:\n  max_restore_entries: {entries}\n")
    });
    let c = at_limit.client().await;
    let made = create(&c, &plain("alpha")).await.result.unwrap();
    assert_eq!(listing(&made.archive).len() as u64, entries);
    let dest = at_limit.cfg().restores_root.join("at-limit");
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

    let over = World::with_config(&["alpha"], |_| {
        format!("daemon:\n  max_restore_entries: {}\n", entries - 1)
    });
    let err = call::<BackupCreate>(&over.client().await, &plain("alpha"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(
        err.message.contains("max_restore_entries"),
        "{}",
        err.message
    );
}
