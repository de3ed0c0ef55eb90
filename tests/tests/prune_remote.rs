//! `backup prune --remote NAME`: a remote's copies pruned by its
//! own policy against a real S3 server (moto), the local archives and
//! entries left alone; the policy refused when there is none; protected
//! backups kept; a reader refused.

use abssd_proto::methods::BackupPrune;
use abssd_proto::methods::call::call;
use abssd_proto::*;
use abssd_tests::remotes::{self, Remote};
use abssd_tests::s3::S3Server;
use abssd_tests::world::World;
use abssd_tests::{Sandbox, backup};
use serde_json::Value;

const PREFIX: &str = "site";

/// A world with instance alpha and remote `off` on `s3` (`extra`: more of
/// the remote's keys), and the remote.
fn world(s3: &S3Server, extra: &str) -> (World, Remote) {
    let mut off = None;
    let w = World::with_config(&["alpha"], |sb: &Sandbox| {
        let remote = Remote::of(s3, &sb.path("etc/abssctl"), "off", PREFIX).with(extra);
        let yaml = remotes::section(&[&remote]);
        off = Some(remote);
        yaml
    });
    (w, off.expect("the remote"))
}

/// Three backups of alpha, months apart (oldest first), each with a copy
/// of six bytes of its own pushed to `off` and recorded in its entry.
async fn three_copies(w: &World, off: &Remote) -> Vec<CreateResult> {
    let c = w.client().await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(backup(&c, "alpha").await);
    }
    let index_file = w.cfg().index_file;
    let mut raw: Value = serde_json::from_slice(&w.index()).unwrap();
    for e in raw["backups"].as_array_mut().unwrap() {
        let n = made.iter().position(|b| e["id"] == b.id).unwrap();
        e["created_at"] = format!("2026-0{}-01T00:00:00Z", n + 1).into();
    }
    std::fs::write(&index_file, serde_json::to_vec_pretty(&raw).unwrap()).unwrap();
    let settings = off.settings();
    for (n, b) in made.iter().enumerate() {
        let entry = remotes::entry(&index_file, &b.id);
        let copy = remotes::push_copy(&settings, &entry, format!("copy {n}").as_bytes());
        remotes::record_copy(&index_file, &b.id, &copy);
    }
    made
}

fn keys(s3: &S3Server) -> Vec<String> {
    let mut k: Vec<String> = s3
        .list(&format!("{PREFIX}/"))
        .into_iter()
        .map(|o| o.key)
        .collect();
    k.sort();
    k
}

fn recorded(w: &World, id: &str) -> bool {
    w.raw_entry(id).get("remotes").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_policy_removes_copies_and_leaves_the_local_archives() {
    let s3 = S3Server::start();
    let (w, off) = world(&s3, "retention:\n  keep_last: 1");
    let made = three_copies(&w, &off).await;
    let c = w.client().await;
    let local_before: Vec<Vec<u8>> = made
        .iter()
        .map(|b| std::fs::read(&b.archive).unwrap())
        .collect();
    assert_eq!(keys(&s3).len(), 9);

    // The dry run: the remote's own policy, the copies as the plan's backups.
    let dry = call::<BackupPrune>(
        &c,
        &PruneParams {
            remote: Some("off".into()),
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let plan = dry.plan.unwrap();
    assert_eq!(plan.remote.as_deref(), Some("off"));
    assert_eq!(plan.policy_source, policy_source::CONFIG);
    assert_eq!((plan.keep, plan.remove), (1, 2), "{plan:?}");
    assert!(plan.backups.iter().all(|b| b.size_bytes == 6), "{plan:?}");
    assert_eq!(keys(&s3).len(), 9, "a dry run deletes nothing");

    let out = call::<BackupPrune>(
        &c,
        &PruneParams {
            remote: Some("off".into()),
            yes: true,
            expect_digest: Some(plan.digest.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let result = out.result.unwrap();
    let mut removed: Vec<&str> = result
        .items
        .iter()
        .filter(|i| i.removed)
        .map(|i| i.id.as_str())
        .collect();
    removed.sort();
    let mut older = [made[0].id.as_str(), made[1].id.as_str()];
    older.sort();
    assert_eq!(removed, older);
    assert_eq!(result.removed_bytes, 12);
    // The newest copy's three objects are all that is left; the others'
    // records are gone, the newest's stays.
    let left = keys(&s3);
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|k| k.contains(&made[2].id)), "{left:?}");
    assert!(!recorded(&w, &made[0].id) && !recorded(&w, &made[1].id));
    assert!(recorded(&w, &made[2].id));
    // The host's archives and entries are as they were.
    for (b, bytes) in made.iter().zip(&local_before) {
        assert_eq!(&std::fs::read(&b.archive).unwrap(), bytes);
        assert_eq!(w.raw_entry(&b.id)["status"], "available");
    }
    w.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_policy_is_refused_and_a_protected_copy_is_kept() {
    let s3 = S3Server::start();
    let (w, off) = world(&s3, "");
    let made = three_copies(&w, &off).await;
    let c = w.client().await;
    let err = call::<BackupPrune>(
        &c,
        &PruneParams {
            remote: Some("off".into()),
            yes: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(err.message.contains("remotes.off.retention"), "{err:?}");
    let unknown = call::<BackupPrune>(
        &c,
        &PruneParams {
            remote: Some("nowhere".into()),
            keep_last: Some(1),
            yes: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound, "{unknown:?}");
    assert_eq!(keys(&s3).len(), 9);

    // The oldest is protected: the request's keep-last 1 keeps it anyway.
    call::<abssd_proto::methods::BackupProtect>(
        &c,
        &ProtectParams {
            id: made[0].id.clone(),
        },
    )
    .await
    .unwrap();
    let out = call::<BackupPrune>(
        &c,
        &PruneParams {
            remote: Some("off".into()),
            keep_last: Some(1),
            yes: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let plan = out.plan.unwrap();
    let oldest = plan.backups.iter().find(|b| b.id == made[0].id).unwrap();
    assert!(
        oldest.keep && oldest.why.contains("protected"),
        "{oldest:?}"
    );
    assert!(recorded(&w, &made[0].id) && !recorded(&w, &made[1].id));
    assert_eq!(keys(&s3).len(), 6);
}
