//! `backup.pull` and a restore whose archive is only in a remote, against a
//! real S3 server (moto, [`abssd_tests::s3`]): the copy comes back byte for
//! byte (decrypted when it was encrypted), a copy with other bytes is refused
//! leaving nothing behind, and a restore pulls first only when asked to.

use std::fs;
use std::path::{Path, PathBuf};

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupPull, BackupRestore, BackupVerify};
use abssd_proto::{
    ErrorKind, EventKind, Phase, PullOutcome, PullParams, PullResult, RestoreParams, VerifyParams,
};
use abssd_tests::remotes::{self, AgeKey, Remote};
use abssd_tests::s3::S3Server;
use abssd_tests::world::World;
use abssd_tests::{backup, show};

/// A world with instance alpha and remote `off` (and, encrypted, `noid`: the
/// same bucket, beside `off`'s prefix, and recipients with no identity file)
/// on a fresh server.
struct Host {
    w: World,
    s3: S3Server,
    off: Remote,
}

impl Host {
    fn new(encrypted: bool) -> Host {
        let s3 = S3Server::start();
        let mut off = None;
        let w = World::with_config(&["alpha"], |sb| {
            let dir = sb.path("etc/abssctl/remotes");
            let mut remote = Remote::of(&s3, &dir, "off", "actual");
            let mut all = vec![];
            if encrypted {
                let key: AgeKey = remotes::age_key(&dir, "off");
                remote = remote.encrypted_to(&key);
                let mut noid = remote.clone();
                noid.name = "noid".into();
                noid.prefix = "actual-noid".into();
                noid.identity_file = None;
                all.push(noid);
            }
            all.insert(0, remote.clone());
            off = Some(remote);
            remotes::section(&all.iter().collect::<Vec<_>>())
        });
        Host {
            w,
            s3,
            off: off.expect("the remote"),
        }
    }

    /// A backup of alpha copied to `off`; its id, archive path and bytes.
    async fn backup_with_copy(&self) -> (String, PathBuf, Vec<u8>) {
        let c = self.w.client().await;
        let made = backup(&c, "alpha").await;
        remotes::copy_backup(&self.off, &self.w.cfg().index_file, &made.id);
        let archive = PathBuf::from(&made.archive);
        let bytes = fs::read(&archive).unwrap();
        (made.id, archive, bytes)
    }

    /// Lose the local archive and its sidecar, and let a verify record it.
    async fn lose(&self, id: &str, archive: &Path) {
        fs::remove_file(archive).unwrap();
        fs::remove_file(sidecar(archive)).unwrap();
        let c = self.w.client().await;
        call::<BackupVerify>(
            &c,
            &VerifyParams {
                id: Some(id.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(show(&c, id).await.status, "missing");
    }

    async fn pull(
        &self,
        id: &str,
        remote: Option<&str>,
    ) -> Result<PullResult, abssd_proto::WireError> {
        let c = self.w.client().await;
        call::<BackupPull>(
            &c,
            &PullParams {
                id: id.into(),
                remote: remote.map(str::to_owned),
                detach: false,
            },
        )
        .await
        .map(|o| o.result.expect("a pull result"))
    }
}

fn sidecar(archive: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sha256", archive.display()))
}

/// The names in the archive's directory.
fn names(archive: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(archive.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_copy_comes_back_byte_for_byte_and_the_backup_is_available_again() {
    let h = Host::new(false);
    let (id, archive, bytes) = h.backup_with_copy().await;
    let sidecar_text = fs::read_to_string(sidecar(&archive)).unwrap();
    h.lose(&id, &archive).await;

    let r = h.pull(&id, None).await.unwrap();
    assert_eq!(r.outcome, PullOutcome::Pulled);
    assert_eq!(r.source.remote, "off");
    assert_eq!(
        r.source.key,
        format!(
            "actual/alpha/{}",
            archive.file_name().unwrap().to_string_lossy()
        )
    );
    assert!(!r.source.encrypted);
    assert_eq!(
        (r.bytes, r.previous_status.as_str()),
        (bytes.len() as u64, "missing")
    );
    assert!(r.sidecar_written);
    assert_eq!(fs::read(&archive).unwrap(), bytes);
    assert_eq!(fs::read_to_string(sidecar(&archive)).unwrap(), sidecar_text);
    let c = h.w.client().await;
    let entry = show(&c, &id).await;
    assert_eq!(entry.status, "available");
    assert!(entry.verified_at.is_some());
    // Nothing else beside the archive: no temporary file left.
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(names(&archive), [name.clone(), format!("{name}.sha256")]);

    // Again: the archive is there with the recorded checksum.
    let again = h.pull(&id, Some("off")).await.unwrap();
    assert_eq!(again.outcome, PullOutcome::Already);
    assert!(!again.sidecar_written);
    assert_eq!(fs::read(&archive).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_copy_is_decrypted_with_the_identity_file_and_refused_without_one() {
    let h = Host::new(true);
    let (id, archive, bytes) = h.backup_with_copy().await;
    // What the bucket holds is age, which the age command decrypts.
    let key = format!(
        "actual/alpha/{}.age",
        archive.file_name().unwrap().to_string_lossy()
    );
    let sealed = h.s3.get(&key);
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    assert_ne!(sealed, bytes);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("copy.age"), &sealed).unwrap();
    let out = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(h.off.identity_file.as_ref().unwrap())
        .arg(dir.path().join("copy.age"))
        .output()
        .expect("age runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, bytes);
    h.lose(&id, &archive).await;
    let index_before = h.w.index();

    // A remote with no identity file: refused, naming the key to set.
    let e = h.pull(&id, Some("noid")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Environment, "{e:?}");
    assert!(
        e.message.contains("remotes.noid.age_identity_file"),
        "{}",
        e.message
    );
    assert!(!archive.exists());
    assert_eq!(h.w.index(), index_before);

    let r = h.pull(&id, None).await.unwrap();
    assert_eq!(r.outcome, PullOutcome::Pulled);
    assert!(r.source.encrypted);
    assert_eq!(fs::read(&archive).unwrap(), bytes);
    let c = h.w.client().await;
    assert_eq!(show(&c, &id).await.status, "available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_other_bytes_is_refused_and_leaves_no_file_and_the_index_unchanged() {
    let h = Host::new(false);
    let (id, archive, bytes) = h.backup_with_copy().await;
    h.lose(&id, &archive).await;
    // Someone put other bytes of the same size at the key.
    let key = format!(
        "actual/alpha/{}",
        archive.file_name().unwrap().to_string_lossy()
    );
    let mut other = bytes.clone();
    other[bytes.len() / 2] ^= 0xff;
    let view = h.s3.view();
    view.delete(&key);
    view.put(&key, &other);
    let index_before = h.w.index();

    let e = h.pull(&id, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e:?}");
    assert!(
        e.message.contains("is not the backup recorded"),
        "{}",
        e.message
    );
    assert!(!archive.exists());
    assert!(names(&archive).is_empty(), "{:?}", names(&archive));
    assert_eq!(h.w.index(), index_before);
    assert!(
        fs::read_dir(h.w.cfg().state_dir.join("journal"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );

    // An archive with other bytes in the way is never replaced.
    fs::write(&archive, b"not the backup").unwrap();
    view.delete(&key);
    view.put(&key, &bytes);
    let e = h.pull(&id, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Environment, "{e:?}");
    assert!(e.message.contains("not replacing it"), "{}", e.message);
    assert_eq!(fs::read(&archive).unwrap(), b"not the backup");
    assert_eq!(h.w.index(), index_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_of_a_backup_only_a_remote_holds_pulls_first_only_when_asked() {
    let h = Host::new(false);
    let (id, archive, bytes) = h.backup_with_copy().await;
    h.lose(&id, &archive).await;
    let c = h.w.client().await;
    let index_before = h.w.index();
    let data_before = h.w.live_state();

    // The plan says so.
    let dry = call::<BackupRestore>(
        &c,
        &RestoreParams {
            dry_run: true,
            ..abssd_tests::world::live(&id)
        },
    )
    .await
    .unwrap();
    let plan = dry.plan.unwrap();
    let pull = plan.pull.as_ref().expect("the plan pulls first");
    assert_eq!(pull.remote, "off");
    assert_eq!(plan.steps[0].step.to_string(), "pull");
    assert!(
        plan.steps[0].detail.starts_with(&format!(
            "the archive will first be pulled from remote off ({} bytes)",
            bytes.len()
        )),
        "{}",
        plan.steps[0].detail
    );

    // Without `pull`: refused, nothing changed.
    let e = call::<BackupRestore>(&c, &abssd_tests::world::live(&id))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e:?}");
    assert!(e.message.contains("--pull"), "{}", e.message);
    assert!(!archive.exists());
    assert_eq!(h.w.index(), index_before);
    abssd_tests::world::assert_same(&data_before, &h.w.live_state());

    // With it: pulled, then restored; the pull reports its phase (with its
    // bytes) first, as the plan lists it.
    let op_id = call::<BackupRestore>(
        &c,
        &RestoreParams {
            pull: true,
            detach: true,
            ..abssd_tests::world::live(&id)
        },
    )
    .await
    .unwrap()
    .op_id;
    let mut events = abssd_proto::methods::call::watch(&c, &op_id).await.unwrap();
    let mut phases = Vec::new();
    let result = loop {
        let event = events.next().await.expect("events").unwrap();
        match event.kind {
            EventKind::Phase { name, total_bytes } => {
                if name == Phase::Pull {
                    assert_eq!(total_bytes, Some(bytes.len() as u64));
                }
                phases.push(name.to_string());
            }
            EventKind::Finished { result } => break result.to_value(),
            EventKind::Failed { error } => panic!("{error:?}"),
            _ => {}
        }
    };
    assert_eq!(
        phases[..3],
        ["preflight", "pull", "pre_backup"],
        "{phases:?}"
    );
    assert_eq!(result["result"]["id"], id.as_str(), "{result}");
    assert_eq!(fs::read(&archive).unwrap(), bytes);
    let entry = show(&c, &id).await;
    assert_eq!(entry.status, "available");
    assert!(entry.last_restored_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_room_for_the_copy_is_refused_before_anything_is_written() {
    let h = Host::new(false);
    let (id, archive, _) = h.backup_with_copy().await;
    h.lose(&id, &archive).await;
    // The instance's backups directory on a filesystem far smaller than the
    // copy plus its slack.
    let _small = abssd_tests::world::Tmpfs::mount_over(archive.parent().unwrap(), "512k");
    let index_before = h.w.index();
    let e = h.pull(&id, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Environment, "{e:?}");
    assert!(e.message.contains("not enough free space"), "{}", e.message);
    assert!(names(&archive).is_empty(), "{:?}", names(&archive));
    assert_eq!(h.w.index(), index_before);
}
