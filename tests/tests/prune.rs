//! `backup.prune` over the socket: the plan and its reasons, the
//! confirmation, the policy from abssd.yml, the safety rules (protected, in
//! use, the newest verified), `purge_index`, and the Python tool's prune and
//! ours on one index.

use std::path::Path;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{
    BackupList, BackupProtect, BackupPrune, BackupReconcile, BackupRestore, BackupUnprotect,
    BackupVerify,
};
use abssd_proto::*;
use abssd_tests::hooks::Gate;
use abssd_tests::peer::PythonPeer;
use abssd_tests::world::World;
use abssd_tests::{backup, serial, show};
use jsonrpsee::core::client::Client;
use serde_json::Value;

/// `backup.prune` with `params`, confirmed, waiting for the outcome.
async fn prune(c: &Client, params: PruneParams) -> (PrunePlan, PruneResult) {
    let out = call::<BackupPrune>(
        c,
        &PruneParams {
            yes: true,
            ..params
        },
    )
    .await
    .unwrap();
    (out.plan.unwrap(), out.result.unwrap())
}

/// A prune that removes exactly the backups made more than a year ago (and
/// not kept by a safety rule).
fn older_than_a_year() -> PruneParams {
    PruneParams {
        older_than: Some(365),
        ..Default::default()
    }
}

fn keep_last(n: u32) -> PruneParams {
    PruneParams {
        keep_last: Some(n),
        ..Default::default()
    }
}

/// Set the `created_at` of each `(id, time)` in the index, so the order of
/// backups made within one second is the test's, not the clock's.
fn date(w: &World, dates: &[(&str, &str)]) {
    edit(w, |e| {
        if let Some((_, at)) = dates.iter().find(|(id, _)| e["id"] == *id) {
            e["created_at"] = (*at).into();
        }
    });
}

/// Change every entry of the index with `f`.
fn edit(w: &World, f: impl Fn(&mut Value)) {
    let mut raw: Value = serde_json::from_slice(&w.index()).unwrap();
    raw["backups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .for_each(f);
    std::fs::write(
        &w.cfg().index_file,
        serde_json::to_vec_pretty(&raw).unwrap(),
    )
    .unwrap();
}

async fn verify(c: &Client, id: &str) {
    let params = VerifyParams {
        id: Some(id.into()),
        ..Default::default()
    };
    call::<BackupVerify>(c, &params).await.unwrap();
}

fn item<'a>(plan: &'a PrunePlan, id: &str) -> &'a PruneItem {
    plan.backups.iter().find(|b| b.id == id).unwrap()
}

fn rules(item: &PruneItem) -> Vec<String> {
    item.reasons
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_owned())
        .collect()
}

const LONG_AGO: &str = "2020-01-01T00:00:00Z";

fn protect(id: &str) -> ProtectParams {
    ProtectParams { id: id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_and_unprotect_set_the_flag_a_removal_honours() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;
    backup(&c, "alpha").await;
    date(&w, &[(&made.id, LONG_AGO)]);

    let out = call::<BackupProtect>(&c, &protect(&made.id)).await.unwrap();
    let r = out.result.unwrap();
    assert!(r.protected && r.changed, "{r:?}");
    assert!(show(&c, &made.id).await.protected);
    // Again: already so, nothing written.
    let before = w.index();
    let again = call::<BackupProtect>(&c, &protect(&made.id)).await.unwrap();
    assert!(!again.result.unwrap().changed);
    assert_eq!(w.index(), before);

    // A prune that would remove it keeps it, says why, and changes nothing.
    let (plan, result) = prune(&c, older_than_a_year()).await;
    let kept = item(&plan, &made.id);
    assert!(kept.keep, "{plan:?}");
    assert_eq!(rules(kept), ["protected"], "{plan:?}");
    assert_eq!(kept.why, "protected");
    assert_eq!((plan.remove, result.items.len()), (0, 0), "{result:?}");
    assert_eq!(w.index(), before);
    assert!(Path::new(&made.archive).exists());

    let out = call::<BackupUnprotect>(&c, &protect(&made.id))
        .await
        .unwrap();
    assert!(!out.result.unwrap().protected);
    let raw: Value = serde_json::from_slice(&w.index()).unwrap();
    assert!(raw["backups"][0].get("protected").is_none(), "{raw}");
    let (plan, result) = prune(&c, older_than_a_year()).await;
    assert_eq!(item(&plan, &made.id).why, "no rule keeps it", "{plan:?}");
    assert_eq!(result.items.len(), 1, "{result:?}");
    let gone = &result.items[0];
    assert!(gone.removed && gone.id == made.id, "{result:?}");
    assert_eq!(result.removed_bytes, gone.bytes);
    assert!(!Path::new(&made.archive).exists());
    let sidecar = std::fs::metadata(format!("{}.sha256", made.archive)).is_ok();
    assert!(!sidecar);

    // An unknown id is not found; each call is in the operations log.
    let err = call::<BackupProtect>(&c, &protect("20990101-000000-alpha-ffffff"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err:?}");
    let log = std::fs::read_to_string(w.cfg().oplog_file()).unwrap();
    let commands: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l["command"].as_str().map(str::to_owned))
        .filter(|c| c.contains("protect"))
        .collect();
    assert_eq!(
        commands,
        [
            "backup protect",
            "backup protect",
            "backup unprotect",
            "backup protect"
        ]
    );
    // The removal's line counts what it freed: the archive and its sidecar.
    let freed = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["command"] == "backup prune")
        .map(|l| {
            l["result"]["data"]["result"]["removed_bytes"]
                .as_u64()
                .unwrap()
        })
        .collect::<Vec<_>>();
    assert_eq!(freed.len(), 2, "{log}");
    assert_eq!(freed[0], 0, "the protected backup was kept");
    assert!(freed[1] > made.size_bytes, "{freed:?}");
}

/// What a reader is, the hook it is held at while it reads the archive, and
/// its parameters for a backup id.
type ReaderKind = (&'static str, &'static str, Box<dyn Fn(&str) -> Reader>);

/// How a reader of a backup is started (detached), and where it is held.
fn readers(w: &World) -> Vec<ReaderKind> {
    let dest = w.cfg().restores_root.join("alpha-copy");
    vec![
        // First: it reads every archive of the instance, and the backup under
        // test is then its first (the oldest).
        (
            "reconcile --verify",
            "reconcile::claimed",
            Box::new(|_| {
                Reader::Reconcile(ReconcileParams {
                    instance: Some("alpha".into()),
                    verify: true,
                    detach: true,
                    ..Default::default()
                })
            }),
        ),
        (
            "restore --dest",
            "extract::after-entry",
            Box::new(move |id| {
                Reader::Restore(RestoreParams {
                    id: id.into(),
                    dest: Some(dest.display().to_string()),
                    detach: true,
                    ..Default::default()
                })
            }),
        ),
        (
            "live restore",
            "extract::after-entry",
            Box::new(|id| {
                Reader::Restore(RestoreParams {
                    detach: true,
                    ..abssd_tests::world::no_pre(id)
                })
            }),
        ),
        (
            "verify",
            "verify::claimed",
            Box::new(|id| {
                Reader::Verify(VerifyParams {
                    id: Some(id.into()),
                    detach: true,
                    ..Default::default()
                })
            }),
        ),
    ]
}

enum Reader {
    Restore(RestoreParams),
    Verify(VerifyParams),
    Reconcile(ReconcileParams),
}

impl Reader {
    async fn start(&self, c: &Client) -> String {
        match self {
            Reader::Restore(p) => call::<BackupRestore>(c, p).await.unwrap().op_id,
            Reader::Verify(p) => call::<BackupVerify>(c, p).await.unwrap().op_id,
            Reader::Reconcile(p) => call::<BackupReconcile>(c, p).await.unwrap().op_id,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_a_restore_verify_or_reconcile_reads_is_kept_until_it_ends() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    for (what, hook, reader) in readers(&w) {
        let made = backup(&c, "alpha").await;
        // Verified, so that it stays the newest verified once the reader
        // has verified `made`.
        let newer = backup(&c, "alpha").await;
        verify(&c, &newer.id).await;
        date(&w, &[(&made.id, LONG_AGO)]);
        let _ = std::fs::remove_dir_all(w.cfg().restores_root.join("alpha-copy"));
        let mut gate = Gate::at(hook);
        let op_id = reader(&made.id).start(&c).await;
        gate.entered().await;

        let before = w.index();
        let (plan, result) = prune(&c, older_than_a_year()).await;
        let kept = item(&plan, &made.id);
        assert!(kept.keep, "{what}: {plan:?}");
        assert_eq!(rules(kept), ["in_use"], "{what}: {plan:?}");
        assert!(result.items.is_empty(), "{what}: {result:?}");
        assert_eq!(w.index(), before, "{what}");
        assert!(Path::new(&made.archive).exists(), "{what}");

        gate.release();
        let events = abssd_tests::inspect::events_of(&c, &op_id).await;
        assert!(
            matches!(events.last().unwrap().kind, EventKind::Finished { .. }),
            "{what}: {events:?}"
        );
        fail::remove(hook);
        // Once it is over, nothing holds the backup.
        let (plan, result) = prune(&c, older_than_a_year()).await;
        let ids: Vec<&str> = result.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, [made.id.as_str()], "{what}: {plan:?}");
        assert!(result.items[0].removed, "{what}: {result:?}");
        assert!(!Path::new(&made.archive).exists(), "{what}");
        // And reading it now is refused: there is nothing left to read.
        let err = match reader(&made.id) {
            Reader::Restore(p) => call::<BackupRestore>(&c, &RestoreParams { detach: false, ..p })
                .await
                .map(|_| ()),
            Reader::Verify(p) => call::<BackupVerify>(&c, &VerifyParams { detach: false, ..p })
                .await
                .map(|_| ()),
            Reader::Reconcile(p) => {
                // Reconcile does not refuse: a removed backup is no drift, and
                // it has nothing to say of it.
                let p = ReconcileParams { detach: false, ..p };
                let done = call::<BackupReconcile>(&c, &p).await.unwrap();
                let said = serde_json::to_string(&done.result).unwrap();
                assert!(!said.contains(&made.id), "{what}: {said}");
                continue;
            }
        }
        .unwrap_err();
        assert_eq!(err.kind.exit_code(), 2, "{what}: {err:?}");
    }
}

/// The Python tool on the world's prefix, reading the very config.yml the
/// daemon reads.
fn python(w: &World) -> PythonPeer {
    PythonPeer::reading_config_yml(&w.sb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_prune_and_our_removal_on_one_index_agree_on_removed() {
    let w = World::python(&["alpha"]);
    let c = w.client().await;
    let py = python(&w);
    let oldest = backup(&c, "alpha").await;
    let created = py.json(&["backup", "create", "alpha", "--json"]);
    let theirs = created["result"]["id"].as_str().unwrap().to_owned();
    let theirs_path = w.raw_entry(&theirs)["path"].as_str().unwrap().to_owned();
    let newest = backup(&c, "alpha").await;
    // Days apart, so the Python tool (which orders by created_at in whole
    // seconds, ties in file order) orders them as made, whatever the clock.
    let mut raw: Value = serde_json::from_slice(&w.index()).unwrap();
    for e in raw["backups"].as_array_mut().unwrap() {
        if e["id"] == oldest.id {
            e["created_at"] = "2020-01-01T00:00:00Z".into();
        } else if e["id"] == theirs {
            e["created_at"] = "2020-01-02T00:00:00Z".into();
        }
    }
    std::fs::write(
        &w.cfg().index_file,
        serde_json::to_vec_pretty(&raw).unwrap(),
    )
    .unwrap();

    // Our prune removes the Python tool's backup (our oldest is protected,
    // the newest is the last kept): its entry keeps every key it wrote, with
    // the two its own prune writes.
    call::<BackupProtect>(&c, &protect(&oldest.id))
        .await
        .unwrap();
    let before = w.raw_entry(&theirs);
    let (plan, result) = prune(&c, keep_last(1)).await;
    assert_eq!(plan.remove, 1, "{plan:?}");
    let ids: Vec<&str> = result.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [theirs.as_str()], "{result:?}");
    assert!(result.items[0].removed, "{result:?}");
    let after = w.raw_entry(&theirs);
    let mut expected = before.clone();
    expected["status"] = "removed".into();
    expected["removed_at"] = after["removed_at"].clone();
    assert_eq!(after, expected);
    assert!(!Path::new(&theirs_path).exists());
    assert!(!Path::new(&format!("{theirs_path}.sha256")).exists());

    // The Python tool's prune keeps the newest two (ours and its removed
    // one, which it counts) and removes our oldest: it does not honour
    // protection, but keeps the flag.
    let out = py.run(&["backup", "prune", "--keep", "2", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!Path::new(&oldest.archive).exists());
    assert_eq!(w.raw_entry(&oldest.id)["protected"], true);

    // Both tools read both as removed, the newest as available.
    let listed = py.json(&["backup", "list", "--json"]);
    let status_of = |id: &str| {
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .map(|b| b["status"].clone())
    };
    assert_eq!(status_of(&oldest.id), Some("removed".into()), "{listed}");
    assert_eq!(status_of(&theirs), Some("removed".into()), "{listed}");
    assert_eq!(status_of(&newest.id), Some("available".into()), "{listed}");
    let ours = call::<BackupList>(&c, &ListParams::default())
        .await
        .unwrap()
        .backups;
    for b in &ours {
        let want = if b.id == newest.id {
            "available"
        } else {
            "removed"
        };
        assert_eq!(b.status, want, "{}", b.id);
    }
    // The Python tool's rewrite of an entry (its verify) keeps our mark.
    call::<BackupProtect>(&c, &protect(&newest.id))
        .await
        .unwrap();
    let out = py.run(&["backup", "verify", &newest.id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.raw_entry(&newest.id)["protected"], true);
    assert!(show(&c, &newest.id).await.protected);
    // Our prune after the Python tool's decides nothing on removed entries
    // and changes nothing.
    let index = w.index();
    let (plan, result) = prune(&c, keep_last(1)).await;
    let ids: Vec<&str> = plan.backups.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, [newest.id.as_str()], "{plan:?}");
    assert!(result.items.is_empty(), "{result:?}");
    assert_eq!(w.index(), index);
    // And reconcile finds nothing to fix.
    let report = call::<BackupReconcile>(&c, &ReconcileParams::default())
        .await
        .unwrap()
        .result
        .unwrap();
    assert!(report.in_sync() && report.unresolved == 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_gives_every_backup_a_decision_and_its_reasons_and_changes_nothing() {
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    let old = backup(&c, "alpha").await;
    let mid = backup(&c, "alpha").await;
    let new = backup(&c, "alpha").await;
    let beta = backup(&c, "beta").await;
    date(
        &w,
        &[
            (&old.id, LONG_AGO),
            (&mid.id, "2020-01-02T00:00:00Z"),
            (&new.id, "2020-01-03T00:00:00Z"),
        ],
    );
    let before = w.index();
    let out = call::<BackupPrune>(
        &c,
        &PruneParams {
            dry_run: true,
            ..keep_last(1)
        },
    )
    .await
    .unwrap();
    assert!(out.result.is_none(), "{out:?}");
    let plan = out.plan.unwrap();
    assert_eq!(
        (plan.policy.as_str(), plan.policy_source.as_str()),
        ("keep-last 1", "request")
    );
    assert!(!plan.time_zone.is_empty());
    // Every backup, by instance, newest first.
    let ids: Vec<&str> = plan.backups.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, [&new.id, &mid.id, &old.id, &beta.id], "{plan:?}");
    let newest = item(&plan, &new.id);
    assert!(newest.keep);
    assert_eq!(rules(newest), ["last", "newest_of_instance"], "{plan:?}");
    assert_eq!(newest.reasons[0]["rank"], 1);
    assert_eq!(newest.why, "last #1, newest (none verified)");
    assert_eq!(newest.created_at.as_deref(), Some("2020-01-03T00:00:00Z"));
    for gone in [&mid, &old] {
        let i = item(&plan, &gone.id);
        assert!(!i.keep && i.reasons.is_empty(), "{i:?}");
        assert_eq!(i.why, "no rule keeps it");
        assert_eq!(i.size_bytes, gone.size_bytes);
        assert_eq!(i.status, "available");
    }
    assert!(item(&plan, &beta.id).keep);
    assert_eq!((plan.keep, plan.remove), (2, 2));
    assert_eq!(plan.freed_bytes, mid.size_bytes + old.size_bytes);
    assert!(plan.purge.is_empty());

    assert_eq!(w.index(), before);
    for b in [&old, &mid, &new, &beta] {
        assert!(Path::new(&b.archive).exists(), "{}", b.id);
    }
    // The operations log has the plan, and no result.
    let log = std::fs::read_to_string(w.cfg().oplog_file()).unwrap();
    let line: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["command"] == "backup prune")
        .unwrap();
    assert_eq!(line["result"]["data"]["plan"]["remove"], 2, "{line}");
    assert!(
        line["result"]["data"]
            .get("result")
            .is_none_or(Value::is_null),
        "{line}"
    );

    // `instance` narrows the scope.
    let out = call::<BackupPrune>(
        &c,
        &PruneParams {
            dry_run: true,
            instance: Some("beta".into()),
            ..keep_last(1)
        },
    )
    .await
    .unwrap();
    let plan = out.plan.unwrap();
    let ids: Vec<&str> = plan.backups.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, [beta.id.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_unconfirmed_or_without_a_policy_is_refused_and_changes_nothing() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let old = backup(&c, "alpha").await;
    backup(&c, "alpha").await;
    date(&w, &[(&old.id, LONG_AGO)]);
    let before = w.index();

    let err = call::<BackupPrune>(&c, &keep_last(1)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(err.message.contains("yes"), "{err:?}");
    // No policy in the request and none in abssd.yml.
    let err = call::<BackupPrune>(
        &c,
        &PruneParams {
            yes: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err:?}");
    assert!(err.message.contains("keeps nothing"), "{err:?}");
    // Every rule zero is no policy either; a bad duration is refused.
    for bad in [
        PruneParams {
            keep_last: Some(0),
            older_than: Some(0),
            ..Default::default()
        },
        PruneParams {
            keep_within: Some("5 minutes".into()),
            ..Default::default()
        },
    ] {
        let err = call::<BackupPrune>(
            &c,
            &PruneParams {
                yes: true,
                ..bad.clone()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "{bad:?}: {err:?}");
    }
    assert_eq!(w.index(), before);
    assert!(Path::new(&old.archive).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_naming_no_rule_applies_the_policy_of_abssd_yml() {
    let w = World::with_config(&["alpha"], |_| {
        "backups:\n  retention:\n    keep_last: 1\n    keep_within: 1d\n".into()
    });
    let c = w.client().await;
    let old = backup(&c, "alpha").await;
    let new = backup(&c, "alpha").await;
    date(&w, &[(&old.id, LONG_AGO)]);
    let (plan, result) = prune(&c, PruneParams::default()).await;
    assert_eq!(
        (plan.policy.as_str(), plan.policy_source.as_str()),
        ("keep-last 1, keep-within 1d", "config")
    );
    assert_eq!(rules(item(&plan, &new.id))[..2], ["last", "within"]);
    let ids: Vec<&str> = result.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [old.id.as_str()], "{result:?}");
    assert!(!Path::new(&old.archive).exists());
    assert!(Path::new(&new.archive).exists());
    assert_eq!(show(&c, &old.id).await.status, "removed");
    // A rule in the request replaces the config's policy.
    let out = call::<BackupPrune>(
        &c,
        &PruneParams {
            dry_run: true,
            ..keep_last(3)
        },
    )
    .await
    .unwrap();
    let plan = out.plan.unwrap();
    assert_eq!(
        (plan.policy.as_str(), plan.policy_source.as_str()),
        ("keep-last 3", "request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_verified_backup_survives_a_keep_last_whose_newest_is_corrupt() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let verified = backup(&c, "alpha").await;
    let unverified = backup(&c, "alpha").await;
    let corrupt = backup(&c, "alpha").await;
    verify(&c, &verified.id).await;
    date(
        &w,
        &[
            (&verified.id, LONG_AGO),
            (&unverified.id, "2020-01-02T00:00:00Z"),
            (&corrupt.id, "2020-01-03T00:00:00Z"),
        ],
    );
    edit(&w, |e| {
        if e["id"] == corrupt.id {
            e["status"] = "corrupt".into();
        }
    });
    let (plan, result) = prune(&c, keep_last(1)).await;
    // A corrupt backup takes no slot: the last one goes to the newest that
    // may restore; the newest verified is kept whatever the policy says.
    assert_eq!(rules(item(&plan, &unverified.id)), ["last"], "{plan:?}");
    assert_eq!(
        rules(item(&plan, &verified.id)),
        ["newest_verified"],
        "{plan:?}"
    );
    assert_eq!(item(&plan, &verified.id).why, "newest verified");
    assert!(!item(&plan, &corrupt.id).keep, "{plan:?}");
    let ids: Vec<&str> = result.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [corrupt.id.as_str()], "{result:?}");
    assert!(Path::new(&verified.archive).exists());
    assert!(Path::new(&unverified.archive).exists());
    assert!(!Path::new(&corrupt.archive).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_index_drops_only_removed_entries_older_than_its_bound() {
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    let long_gone = backup(&c, "alpha").await;
    let just_gone = backup(&c, "alpha").await;
    let unreadable = backup(&c, "alpha").await;
    let other = backup(&c, "beta").await;
    backup(&c, "beta").await;
    let newest = backup(&c, "alpha").await;
    date(
        &w,
        &[
            (&long_gone.id, LONG_AGO),
            (&just_gone.id, LONG_AGO),
            (&unreadable.id, LONG_AGO),
            (&other.id, LONG_AGO),
        ],
    );
    let (_, result) = prune(&c, older_than_a_year()).await;
    assert_eq!(result.items.len(), 4, "{result:?}");
    assert_eq!(result.purged, 0);
    edit(&w, |e| {
        if e["id"] == long_gone.id || e["id"] == other.id {
            e["removed_at"] = "2020-02-01T00:00:00Z".into();
        } else if e["id"] == unreadable.id {
            e["removed_at"] = "last tuesday".into();
        }
    });

    // A dry run lists what it would drop, and drops nothing.
    let before = w.index();
    let out = call::<BackupPrune>(
        &c,
        &PruneParams {
            dry_run: true,
            purge_index: Some(30),
            instance: Some("alpha".into()),
            ..keep_last(1)
        },
    )
    .await
    .unwrap();
    assert_eq!(out.plan.unwrap().purge, [long_gone.id.as_str()]);
    assert_eq!(w.index(), before);

    // Only alpha's, only the old one.
    let (plan, result) = prune(
        &c,
        PruneParams {
            purge_index: Some(30),
            instance: Some("alpha".into()),
            ..keep_last(1)
        },
    )
    .await;
    assert_eq!(plan.purge, [long_gone.id.as_str()]);
    assert_eq!(result.purged, 1);
    assert!(result.items.is_empty(), "{result:?}");
    let raw: Value = serde_json::from_slice(&w.index()).unwrap();
    let mut left: Vec<&str> = raw["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    left.sort();
    assert!(!left.contains(&long_gone.id.as_str()), "{left:?}");
    for id in [&just_gone.id, &unreadable.id, &other.id, &newest.id] {
        assert!(left.contains(&id.as_str()), "{id}: {left:?}");
    }
    assert_eq!(left.len(), 5, "{left:?}");
    // And reconcile finds nothing amiss.
    let report = call::<BackupReconcile>(&c, &ReconcileParams::default())
        .await
        .unwrap()
        .result
        .unwrap();
    assert!(report.in_sync() && report.unresolved == 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_restore_backup_is_kept_for_its_minimum_age() {
    let mut w = World::new(&["alpha"]);
    let c = w.client().await;
    let restored = backup(&c, "alpha").await;
    let out = abssd_tests::world::restore(&c, &abssd_tests::world::live(&restored.id))
        .await
        .unwrap();
    let pre = out.result.unwrap().pre_restore_backup.unwrap();
    let _newest = backup(&c, "alpha").await;
    // The restored one long ago, the pre-restore one an hour ago (younger
    // than the minimum age), the newest now: the order is the test's, not
    // the clock's seconds.
    let hour_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    date(&w, &[(&restored.id, LONG_AGO), (&pre, &hour_ago)]);
    let params = || PruneParams {
        dry_run: true,
        ..keep_last(1)
    };
    let plan = call::<BackupPrune>(&c, &params())
        .await
        .unwrap()
        .plan
        .unwrap();
    let kept = item(&plan, &pre);
    assert_eq!(rules(kept), ["pre_restore_min_age"], "{plan:?}");
    assert!(kept.why.starts_with("pre-restore until "), "{kept:?}");

    // With no minimum age it goes like any other.
    w.restart_with("backups:\n  pre_restore_min_age: 0\n");
    let c = w.client().await;
    let plan = call::<BackupPrune>(&c, &params())
        .await
        .unwrap()
        .plan
        .unwrap();
    assert!(!item(&plan, &pre).keep, "{plan:?}");
}

/// The operator confirms a plan, not a policy: a prune carrying the digest of
/// the plan it was shown is refused, changing nothing, when a backup made
/// meanwhile changes what the policy removes; with the new plan's digest it
/// removes exactly what that plan said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_of_a_confirmed_plan_is_refused_when_the_plan_changed_meanwhile() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let old = backup(&c, "alpha").await.id;
    let newer = backup(&c, "alpha").await.id;
    date(
        &w,
        &[
            (&old, "2025-01-01T00:00:00Z"),
            (&newer, "2025-02-01T00:00:00Z"),
        ],
    );
    let dry = |digest: Option<String>| PruneParams {
        dry_run: digest.is_none(),
        expect_digest: digest,
        ..keep_last(1)
    };
    let shown = call::<BackupPrune>(&c, &dry(None))
        .await
        .unwrap()
        .plan
        .unwrap();
    assert_eq!(shown.remove, 1);
    assert_eq!(shown.digest.len(), 64);

    // Made after the plan was shown: keep_last 1 now removes two.
    let newest = backup(&c, "alpha").await.id;
    let before = w.index();
    let refused = call::<BackupPrune>(
        &c,
        &PruneParams {
            yes: true,
            ..dry(Some(shown.digest.clone()))
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Validation, "{refused:?}");
    assert!(refused.message.contains("plan changed"), "{refused:?}");
    assert_eq!(w.index(), before, "nothing changed");

    let again = call::<BackupPrune>(&c, &dry(None))
        .await
        .unwrap()
        .plan
        .unwrap();
    assert_ne!(again.digest, shown.digest);
    let (_, result) = prune(&c, dry(Some(again.digest.clone()))).await;
    let mut removed: Vec<&str> = result
        .items
        .iter()
        .filter(|i| i.removed)
        .map(|i| i.id.as_str())
        .collect();
    removed.sort();
    let mut want = vec![old.as_str(), newer.as_str()];
    want.sort();
    assert_eq!(removed, want, "{result:?}");
    assert!(show(&c, &newest).await.status == status::AVAILABLE);
}

/// A plan over thousands of backups lists at most PLAN_ROWS of them, every
/// removal first; its counts and digest are of the whole plan, and the
/// confirmed prune removes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_of_thousands_lists_its_removals_first_and_counts_them_all() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    backup(&c, "alpha").await;
    let mut raw: Value = serde_json::from_slice(&w.index()).unwrap();
    let real = raw["backups"][0].clone();
    let base: jiff::Timestamp = real["created_at"].as_str().unwrap().parse().unwrap();
    let backups = raw["backups"].as_array_mut().unwrap();
    for i in 1..=1500_i64 {
        let at = base - jiff::SignedDuration::from_hours(i);
        let id = format!("{}-alpha-{i:06x}", at.strftime("%Y%m%d-%H%M%S"));
        let mut e = real.clone();
        e["path"] = format!(
            "{}/{id}.tar.zst",
            w.cfg().instance_backup_dir("alpha").display()
        )
        .into();
        e["id"] = id.into();
        e["created_at"] = at.to_string().into();
        backups.push(e);
    }
    std::fs::write(
        &w.cfg().index_file,
        serde_json::to_vec_pretty(&raw).unwrap(),
    )
    .unwrap();

    let rows = abssd_proto::limits::PLAN_ROWS;
    let dry = PruneParams {
        dry_run: true,
        ..keep_last(100)
    };
    let out = call::<BackupPrune>(&c, &dry).await.unwrap();
    let plan = out.plan.unwrap();
    assert_eq!((plan.keep, plan.remove), (100, 1401));
    assert_eq!(plan.backups.len(), rows);
    assert!(plan.backups.iter().all(|b| !b.keep), "removals first");
    assert_eq!(plan.unlisted, 1501 - rows as u64);

    let params = PruneParams {
        expect_digest: Some(plan.digest.clone()),
        ..keep_last(100)
    };
    let (_, result) = prune(&c, params).await;
    assert_eq!(result.removed(), 1401);
    assert_eq!(result.items.len(), rows);
    assert_eq!((result.unlisted_removed, result.unlisted_kept), (401, 0));
    let left = call::<BackupList>(
        &c,
        &ListParams {
            status: Some("removed".into()),
            limit: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(left.total, 1401);
}
