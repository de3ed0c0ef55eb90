//! Protection and removal (issue 15's safety): `backup.protect` /
//! `backup.unprotect` over the socket, a removal racing a restore of the same
//! backup, and the Python tool's prune and ours on one index. Removals run
//! through the failpoints build's `test.remove` (the removal executor alone;
//! `backup.prune` decides what to remove).

use std::path::Path;

use abssd::rpc::testing::{Remove, RemoveParams};
use abssd_proto::methods::call::call;
use abssd_proto::methods::{
    BackupList, BackupProtect, BackupReconcile, BackupRestore, BackupUnprotect, BackupVerify,
};
use abssd_proto::*;
use abssd_tests::hooks::Gate;
use abssd_tests::peer::PythonPeer;
use abssd_tests::world::World;
use abssd_tests::{backup, serial, show};
use jsonrpsee::core::client::Client;
use serde_json::Value;

/// `test.remove` of `ids`, waiting for the outcome: one item per id.
async fn remove(c: &Client, ids: &[&str]) -> Vec<Value> {
    let params = RemoveParams {
        ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        detach: false,
    };
    let out = call::<Remove>(c, &params).await.unwrap();
    out.result
        .unwrap()
        .items
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect()
}

fn protect(id: &str) -> ProtectParams {
    ProtectParams { id: id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_and_unprotect_set_the_flag_a_removal_honours() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let made = backup(&c, "alpha").await;

    let out = call::<BackupProtect>(&c, &protect(&made.id)).await.unwrap();
    let r = out.result.unwrap();
    assert!(r.protected && r.changed, "{r:?}");
    assert!(show(&c, &made.id).await.protected);
    // Again: already so, nothing written.
    let before = w.index();
    let again = call::<BackupProtect>(&c, &protect(&made.id)).await.unwrap();
    assert!(!again.result.unwrap().changed);
    assert_eq!(w.index(), before);

    // A removal keeps it, says why, and changes nothing.
    let items = remove(&c, &[&made.id]).await;
    assert_eq!(items[0]["outcome"], "kept", "{items:?}");
    assert_eq!(items[0]["reason"], "protected", "{items:?}");
    assert_eq!(w.index(), before);
    assert!(Path::new(&made.archive).exists());

    let out = call::<BackupUnprotect>(&c, &protect(&made.id))
        .await
        .unwrap();
    assert!(!out.result.unwrap().protected);
    let raw: Value = serde_json::from_slice(&w.index()).unwrap();
    assert!(raw["backups"][0].get("protected").is_none(), "{raw}");
    let items = remove(&c, &[&made.id]).await;
    assert_eq!(items[0]["outcome"], "removed", "{items:?}");
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
}

impl Reader {
    async fn start(&self, c: &Client) -> String {
        match self {
            Reader::Restore(p) => call::<BackupRestore>(c, p).await.unwrap().op_id,
            Reader::Verify(p) => call::<BackupVerify>(c, p).await.unwrap().op_id,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_a_restore_or_verify_reads_is_kept_until_it_ends() {
    let _serial = serial();
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    for (what, hook, reader) in readers(&w) {
        let made = backup(&c, "alpha").await;
        let _ = std::fs::remove_dir_all(w.cfg().restores_root.join("alpha-copy"));
        let mut gate = Gate::at(hook);
        let op_id = reader(&made.id).start(&c).await;
        gate.entered().await;

        let before = w.index();
        let items = remove(&c, &[&made.id]).await;
        assert_eq!(items[0]["outcome"], "kept", "{what}: {items:?}");
        assert_eq!(items[0]["reason"], "in_use", "{what}: {items:?}");
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
        let items = remove(&c, &[&made.id]).await;
        assert_eq!(items[0]["outcome"], "removed", "{what}: {items:?}");
        assert!(!Path::new(&made.archive).exists(), "{what}");
        // And reading it now is refused: there is nothing left to read.
        let err = match reader(&made.id) {
            Reader::Restore(p) => call::<BackupRestore>(&c, &RestoreParams { detach: false, ..p })
                .await
                .map(|_| ()),
            Reader::Verify(p) => call::<BackupVerify>(&c, &VerifyParams { detach: false, ..p })
                .await
                .map(|_| ()),
        }
        .unwrap_err();
        assert_eq!(err.kind.exit_code(), 2, "{what}: {err:?}");
    }
}

/// The Python tool on the world's prefix, reading the very config.yml the
/// daemon reads.
fn python(w: &World) -> PythonPeer {
    let mut py = PythonPeer::new(&w.sb);
    for var in [
        "ABSSCTL_INSTANCE_ROOT",
        "ABSSCTL_STATE_DIR",
        "ABSSCTL_REGISTRY_DIR",
        "ABSSCTL_LOGS_DIR",
        "ABSSCTL_RUNTIME_DIR",
        "ABSSCTL_BACKUPS__ROOT",
        "ABSSCTL_BACKUPS__INDEX",
        "ABSSCTL_SYSTEMD__UNIT_DIR",
    ] {
        py.remove_env(var);
    }
    py
}

fn raw_entry(w: &World, id: &str) -> Value {
    let raw: Value = serde_json::from_slice(&w.index()).unwrap();
    raw["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_prune_and_our_removal_on_one_index_agree_on_removed() {
    let w = World::python(&["alpha"]);
    let c = w.client().await;
    let py = python(&w);
    let oldest = backup(&c, "alpha").await;
    let created = py.json(&["backup", "create", "alpha", "--json"]);
    let theirs = created["result"]["id"].as_str().unwrap().to_owned();
    let theirs_path = raw_entry(&w, &theirs)["path"].as_str().unwrap().to_owned();
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

    // We remove the Python tool's backup: its entry keeps every key it
    // wrote, with the two its own prune writes.
    let before = raw_entry(&w, &theirs);
    let items = remove(&c, &[&theirs]).await;
    assert_eq!(items[0]["outcome"], "removed", "{items:?}");
    let after = raw_entry(&w, &theirs);
    let mut expected = before.clone();
    expected["status"] = "removed".into();
    expected["removed_at"] = after["removed_at"].clone();
    assert_eq!(after, expected);
    assert!(!Path::new(&theirs_path).exists());
    assert!(!Path::new(&format!("{theirs_path}.sha256")).exists());

    // The Python tool's prune keeps the newest two (ours and its removed
    // one, which it counts) and removes our oldest.
    let out = py.run(&["backup", "prune", "--keep", "2", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!Path::new(&oldest.archive).exists());

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
    assert_eq!(raw_entry(&w, &newest.id)["protected"], true);
    assert!(show(&c, &newest.id).await.protected);
    // Our removal of an entry the Python tool removed keeps it as it is.
    let index = w.index();
    let items = remove(&c, &[&oldest.id]).await;
    assert_eq!(items[0]["reason"], "already_removed", "{items:?}");
    assert_eq!(w.index(), index);
    // And reconcile finds nothing to fix.
    let report = call::<BackupReconcile>(&c, &ReconcileParams::default())
        .await
        .unwrap()
        .result
        .unwrap();
    assert!(report.in_sync() && report.unresolved == 0, "{report:?}");
}
