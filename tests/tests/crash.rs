//! Crash safety (SPEC §9): abssd is killed in the middle of a create, a live
//! restore or a prune's removal — at every crash point in its source, and by `SIGKILL` at random
//! moments — then started again; recovery must leave the instance exactly as
//! before the operation or exactly as restored, the unit in its running state,
//! and nothing behind (staging, `.partial`, `.pre-restore-*`, `.bak-*`,
//! temporary files, journals); a `schedule enable|disable` killed after any
//! of its steps leaves exactly the steps done, and the same call again
//! finishes it; a pull killed anywhere leaves no partial download and the
//! index as it was. Creates are killed in `snapshot` and `stop`
//! mode: one killed while it had the unit stopped gets it started again by
//! the recovery.
//!
//! The daemon runs as a child process (`abssd-failpoints`), systemd is faked on
//! a private bus by this process, `nginx -t` is the real one.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use abssd::config::unit_name;
use abssd_proto::methods::call::call;
use abssd_proto::methods::{
    BackupCreate, BackupRestore, DaemonStatusMethod, OpList, ScheduleDisable, ScheduleEnable,
};
use abssd_proto::*;
use abssd_tests::child::{ChildDaemon, aborted, crash_points};
use abssd_tests::inspect::{Node, snapshot, snapshot_content};
use abssd_tests::remotes::{self, Remote};
use abssd_tests::s3::S3Server;
use abssd_tests::{FakeSystemd, Sandbox, backup, client};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_abssd-failpoints");

/// A sandbox with instance `alpha` whose unit runs, nginx running, a fake
/// systemd for both, and the real nginx check.
struct Host {
    sb: Sandbox,
    fake: FakeSystemd,
}

/// Everything a restore may change, read from disk.
#[derive(Debug, Clone, PartialEq)]
struct State {
    data: BTreeMap<PathBuf, Node>,
    unit: Option<Vec<u8>>,
    site: Option<Vec<u8>>,
    link: Option<PathBuf>,
    registry: Value,
    index: Option<Vec<u8>>,
}

impl Host {
    fn new() -> Host {
        let sb = Sandbox::new();
        sb.add_instance("alpha");
        let cfg = sb.config();
        let fake = FakeSystemd::start(Some(&cfg.unit_dir));
        fake.set_unit(&unit_name("alpha"), true, true);
        fake.set_unit(&sb.full_config().services.nginx_unit, true, true);
        // The fake reads units and drop-ins from the unit dir (see World).
        sb.write_abssd_config(&format!(
            "systemd:\n  bus_address: {}\n  dropin_dir: {}\nnginx:\n  test_command: {}\n",
            json!(fake.address()),
            json!(cfg.unit_dir),
            json!(sb.nginx_test_command())
        ));
        Host { sb, fake }
    }

    fn daemon(&self, failpoint: Option<&str>) -> ChildDaemon {
        let armed = failpoint.map(|f| format!("{f}=return"));
        ChildDaemon::start(BIN, &self.sb, armed.as_deref())
    }

    /// Remote `off` of `s3` under `prefix`, added to abssd.yml.
    fn add_remote(&self, s3: &S3Server, prefix: &str) -> Remote {
        let off = Remote::of(s3, &self.sb.path("etc/abssctl/remotes"), "off", prefix);
        let file = self.sb.full_config().abssd_config_file;
        let conf = fs::read_to_string(file).unwrap();
        self.sb
            .write_abssd_config(&format!("{conf}{}", remotes::section(&[&off])));
        off
    }

    /// Two backups of alpha, made by a daemon stopped again; the first (to
    /// go) dated 2020, so `keep_last: 1` removes it whatever the clock.
    async fn older_and_newer(&self) -> (CreateResult, CreateResult) {
        let d = self.daemon(None);
        let c = client(&d.socket).await;
        let (gone, kept) = (backup(&c, "alpha").await, backup(&c, "alpha").await);
        d.stop();
        let file = self.sb.config().index_file;
        let mut index: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        for e in index["backups"].as_array_mut().unwrap() {
            if e["id"] == gone.id {
                e["created_at"] = "2020-01-01T00:00:00Z".into();
            }
        }
        fs::write(&file, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
        (gone, kept)
    }

    /// A daemon armed at `failpoint` and the op id of the detached
    /// `backup prune --keep-last 1` (of `remote`'s copies, when given) it
    /// was asked for.
    async fn prune_armed(&self, failpoint: &str, remote: Option<&str>) -> (ChildDaemon, String) {
        let d = self.daemon(Some(failpoint));
        let params = PruneParams {
            remote: remote.map(str::to_owned),
            keep_last: Some(1),
            yes: true,
            detach: true,
            ..Default::default()
        };
        let op_id = call::<abssd_proto::methods::BackupPrune>(&client(&d.socket).await, &params)
            .await
            .unwrap()
            .op_id;
        (d, op_id)
    }

    fn state(&self) -> State {
        let cfg = self.sb.config();
        let registry = abssd::registry::Registry::load(&cfg.registry_file()).unwrap();
        State {
            data: snapshot_content(&cfg.instance_root.join("alpha/data")),
            unit: fs::read(cfg.unit_file("alpha")).ok(),
            site: fs::read(cfg.site_file("alpha")).ok(),
            link: fs::read_link(cfg.site_link("alpha")).ok(),
            registry: serde_json::to_value(registry.get("alpha").unwrap()).unwrap(),
            index: fs::read(&cfg.index_file).ok(),
        }
    }

    /// Change data, unit file, site, link and registry entry, so that "as
    /// before" and "as restored" differ in each.
    fn vandalize(&self) {
        let cfg = self.sb.config();
        let data = cfg.instance_root.join("alpha/data");
        fs::write(data.join("user-files/budget-1/db.sqlite"), b"vandalized\n").unwrap();
        let _ = fs::remove_file(data.join("user-files/budget-1/metadata.json"));
        fs::write(data.join("stray-file"), b"stray\n").unwrap();
        let mut unit = fs::read(cfg.unit_file("alpha")).unwrap();
        unit.extend_from_slice(b"# edited\n");
        fs::write(cfg.unit_file("alpha"), unit).unwrap();
        fs::write(
            cfg.site_file("alpha"),
            b"server { listen 127.0.0.1:8081; server_name changed.test; }\n",
        )
        .unwrap();
        let _ = fs::remove_file(cfg.site_link("alpha"));
        let file = cfg.registry_file();
        let mut reg = abssd::registry::Registry::load(&file).unwrap();
        reg.get_mut("alpha").unwrap().version = Some("0.0.0-vandalized".into());
        reg.save(&file).unwrap();
    }

    fn unit_running(&self) -> bool {
        self.fake.state(&unit_name("alpha")).unwrap().is_active()
    }

    /// Nothing an interrupted operation works with is left anywhere.
    fn assert_no_leftovers(&self, what: &str) {
        for path in snapshot(&self.sb.prefix).keys() {
            let name = path.file_name().unwrap().to_string_lossy();
            let leftover = name.contains(".pre-restore-")
                || name.contains(".bak-")
                || name.contains(".restore-")
                || name.contains(".new-")
                || name.ends_with(".partial")
                || name.contains(".pull-")
                || name.ends_with(".tmp");
            assert!(!leftover, "{what}: leftover {}", path.display());
        }
        let journal = self.sb.config().state_dir.join("journal");
        assert!(
            snapshot(&journal).is_empty(),
            "{what}: journal left: {:?}",
            snapshot(&journal).keys()
        );
    }
}

/// Is `now` the restored state: data, unit, site and link as at backup time,
/// the registry entry as then plus `last_restored_*`, and the index entry of
/// `id` annotated with restore `op_id`?
fn restored(now: &State, at_backup: &State, id: &str, op_id: &str) -> Result<(), String> {
    if now.data != at_backup.data {
        return Err("data differs from the backup".into());
    }
    if (&now.unit, &now.site, &now.link) != (&at_backup.unit, &at_backup.site, &at_backup.link) {
        return Err("unit file, site or link differ from the backup".into());
    }
    let mut reg = now.registry.clone();
    let meta = reg["metadata"]
        .as_object_mut()
        .ok_or("no registry metadata")?;
    for key in [
        "last_restored_at",
        "last_restored_by",
        "last_restore_source",
        "last_restore_destination",
        "last_restore_actor",
    ] {
        if meta.remove(key).is_none() {
            return Err(format!(
                "registry entry not marked restored ({key} missing)"
            ));
        }
    }
    if reg != at_backup.registry {
        return Err(format!(
            "registry entry {reg} is not the archived {}",
            at_backup.registry
        ));
    }
    if !annotated(now, id, op_id) {
        return Err("the index entry does not record the restore".into());
    }
    Ok(())
}

/// Whether the index entry of `id` records restore `op_id`.
fn annotated(state: &State, id: &str, op_id: &str) -> bool {
    let index: Value = serde_json::from_slice(state.index.as_deref().unwrap_or(b"{}")).unwrap();
    index["backups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["id"] == id)
        .any(|e| {
            e["restores"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["op_id"] == op_id))
        })
}

/// Kill a live restore at `failpoint`, recover, and check. Returns whether the
/// instance ended up restored (else it is exactly as before).
async fn restore_killed_at(failpoint: &str) -> bool {
    let host = Host::new();
    let d = host.daemon(None);
    let made = backup(&client(&d.socket).await, "alpha").await;
    let at_backup = host.state();
    assert_eq!(d.stop().code(), Some(0));
    host.vandalize();
    let before = host.state();

    let d = host.daemon(Some(failpoint));
    let params = live(&made.id, false);
    let op_id = call::<BackupRestore>(&client(&d.socket).await, &params)
        .await
        .unwrap()
        .op_id;
    let d = died_and_recovered(&host, d, &op_id, failpoint).await;
    let now = host.state();
    let outcome = if now == before {
        false
    } else if let Err(why) = restored(&now, &at_backup, &made.id, &op_id) {
        panic!(
            "{failpoint}: neither as before nor as restored: {why}\nbefore: {before:#?}\nnow: {now:#?}"
        );
    } else {
        true
    };
    assert!(host.unit_running(), "{failpoint}: the unit is not running");
    host.assert_no_leftovers(failpoint);
    d.stop();
    outcome
}

/// Wait for `d` to die at `failpoint`, start a fresh daemon (which recovers),
/// and check that the recovery is listed and logged.
async fn died_and_recovered(
    host: &Host,
    d: ChildDaemon,
    op_id: &str,
    failpoint: &str,
) -> ChildDaemon {
    let status = d.wait(Duration::from_secs(60));
    assert!(aborted(&status), "{failpoint}: never reached ({status})");
    let d = host.daemon(None);
    check_recovered(host, &d, op_id, failpoint).await;
    d
}

/// The recovered operation is listed with its id, in `daemon status`, and in
/// the operations log.
async fn check_recovered(host: &Host, d: &ChildDaemon, op_id: &str, what: &str) {
    let c = client(&d.socket).await;
    let ops = call::<OpList>(&c, &OpListParams::default()).await.unwrap();
    let op = ops
        .operations
        .iter()
        .find(|o| o.op_id == op_id)
        .unwrap_or_else(|| panic!("{what}: {op_id} not in op list"));
    assert!(
        op.recovered && op.state != OpState::Running,
        "{what}: {op:?}"
    );
    let status = call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();
    assert!(status.recovered.iter().any(|o| o.op_id == op_id), "{what}");
    let log = fs::read_to_string(host.sb.config().oplog_file()).unwrap();
    let line = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["op_id"] == op_id && l["args"]["recovery"] == true)
        .unwrap_or_else(|| panic!("{what}: no operations-log line for the recovery"));
    assert_eq!(line["command"], op.command.as_str(), "{what}");
    // What was done: the clean-up of a finished operation, or the rollback.
    let said = match line["result"]["status"].as_str() {
        Some("success") => &line["result"]["data"],
        _ => &line["result"]["errors"][0]["detail"]["rolled_back"],
    };
    assert!(said.is_object() || said.is_array(), "{what}: {line}");
}

/// Kill a create in `mode` at `failpoint`, recover, and check. Returns
/// whether the backup survived (indexed, archive and sidecar intact); else no
/// trace of it is left. The unit runs after recovery; in `stop` mode, one
/// killed while the unit was down had it started by the recovery.
async fn create_killed_at(failpoint: &str, mode: Consistency) -> bool {
    let host = Host::new();
    let cfg = host.sb.config();
    let unit = unit_name("alpha");
    let before = fs::read(&cfg.index_file).ok();
    let d = host.daemon(Some(failpoint));
    let params = CreateParams {
        instance: "alpha".into(),
        consistency: Some(mode),
        detach: true,
        ..Default::default()
    };
    let op_id = call::<BackupCreate>(&client(&d.socket).await, &params)
        .await
        .unwrap()
        .op_id;
    let what = format!("create --consistency {mode:?} killed at {failpoint}");
    let status = d.wait(Duration::from_secs(60));
    assert!(aborted(&status), "{what}: never reached ({status})");
    let down = !host.unit_running();
    let stopped = host.fake.calls().contains(&format!("StopUnit {unit}"));
    assert_eq!(
        stopped,
        mode == Consistency::Stop && failpoint != "create-stop::before-stop-unit",
        "{what}: StopUnit sent"
    );
    // Down exactly between a stop-mode create's stop and start.
    let in_window = mode == Consistency::Stop
        && !matches!(
            failpoint,
            "create-stop::before-stop-unit"
                | "create-stop::after-start-unit"
                | "create::after-index"
                | "index::before-rename"
        );
    assert_eq!(down, in_window, "{what}: unit down at the kill");
    host.fake.clear_calls();
    let d = host.daemon(None);
    check_recovered(&host, &d, &op_id, &what).await;
    assert!(
        host.unit_running(),
        "{what}: the unit is not running after recovery"
    );
    // The recovery of a stop-mode create starts the unit whatever the moment
    // (a no-op when it runs); nothing else is sent.
    let expected: &[String] = if mode == Consistency::Stop {
        &[format!("StartUnit {unit}")]
    } else {
        &[]
    };
    let jobs: Vec<String> = host
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("StartUnit ") || c.starts_with("StopUnit "))
        .collect();
    assert_eq!(jobs, expected, "{what}: recovery's systemd jobs");
    let archives = snapshot(&cfg.backups_root);
    let index = fs::read(&cfg.index_file).ok();
    let kept = index != before;
    if kept {
        let idx: Value = serde_json::from_slice(index.as_deref().unwrap()).unwrap();
        let entry = &idx["backups"][0];
        let archive = PathBuf::from(entry["path"].as_str().unwrap());
        let out = std::process::Command::new("sha256sum")
            .arg(&archive)
            .output()
            .unwrap();
        let hex = String::from_utf8_lossy(&out.stdout);
        assert!(
            hex.starts_with(entry["checksum"]["value"].as_str().unwrap()),
            "{what}"
        );
        assert_eq!(
            entry["metadata"]["consistency"],
            if mode == Consistency::Stop {
                "stop"
            } else {
                "snapshot"
            },
            "{what}"
        );
        assert!(PathBuf::from(format!("{}.sha256", archive.display())).exists());
    } else {
        let files: Vec<_> = archives
            .iter()
            .filter(|(p, n)| n.0 == 'f' && !p.ends_with("backups.json"))
            .map(|(p, _)| p.clone())
            .collect();
        assert!(files.is_empty(), "{what}: left {files:?}");
    }
    host.assert_no_leftovers(&what);
    d.stop();
    kept
}

/// Kill `backup verify --all` and `backup reconcile --apply` at `failpoint`
/// (their only write is the index, replaced atomically), restart: the index
/// is as before and no temporary file is left.
async fn index_writers_killed_at(failpoint: &str) -> usize {
    let host = Host::new();
    let cfg = host.sb.config();
    let d = host.daemon(None);
    let made = backup(&client(&d.socket).await, "alpha").await;
    d.stop();
    // Something for each to write: a verify verdict, a missing archive.
    fs::write(&made.archive, b"not the archive any more").unwrap();
    let before = fs::read(&cfg.index_file).unwrap();
    let mut killed = 0;
    for method in ["verify", "reconcile"] {
        let d = host.daemon(Some(failpoint));
        let c = client(&d.socket).await;
        if method == "verify" {
            let p = VerifyParams {
                all: true,
                detach: true,
                ..Default::default()
            };
            call::<abssd_proto::methods::BackupVerify>(&c, &p)
                .await
                .unwrap();
        } else {
            fs::remove_file(&made.archive).unwrap();
            let p = ReconcileParams {
                apply: true,
                detach: true,
                ..Default::default()
            };
            call::<abssd_proto::methods::BackupReconcile>(&c, &p)
                .await
                .unwrap();
        }
        let status = d.wait(Duration::from_secs(60));
        assert!(
            aborted(&status),
            "{method} at {failpoint}: never reached ({status})"
        );
        let d = host.daemon(None);
        assert_eq!(
            fs::read(&cfg.index_file).unwrap(),
            before,
            "{method} at {failpoint}"
        );
        host.assert_no_leftovers(&format!("{method} at {failpoint}"));
        d.stop();
        killed += 1;
    }
    killed
}

/// Kill a removal (`ops::prune::remove`, through `backup.prune` of a policy
/// that removes the older of two backups) at `failpoint`, recover, and check:
/// an entry marked removed has neither archive nor sidecar left; one not
/// marked is exactly as before with both files intact (never an `available`
/// entry whose archive is gone); the other backup is untouched. Returns
/// whether the backup ended up removed.
async fn removal_killed_at(failpoint: &str) -> bool {
    let host = Host::new();
    let cfg = host.sb.config();
    let (gone, kept) = host.older_and_newer().await;
    let before = fs::read(&cfg.index_file).unwrap();
    let (d, op_id) = host.prune_armed(failpoint, None).await;
    let what = format!("removal killed at {failpoint}");
    let d = died_and_recovered(&host, d, &op_id, &what).await;
    let index: Value = serde_json::from_slice(&fs::read(&cfg.index_file).unwrap()).unwrap();
    let entry = |id: &str| {
        index["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    let present = |archive: &str| {
        (
            PathBuf::from(archive).exists(),
            PathBuf::from(format!("{archive}.sha256")).exists(),
        )
    };
    let removed = entry(&gone.id)["status"] == "removed";
    if removed {
        assert_eq!(present(&gone.archive), (false, false), "{what}");
        assert!(entry(&gone.id)["removed_at"].is_string(), "{what}");
    } else {
        assert_eq!(fs::read(&cfg.index_file).unwrap(), before, "{what}");
        assert_eq!(present(&gone.archive), (true, true), "{what}");
    }
    assert_eq!(entry(&kept.id)["status"], "available", "{what}");
    assert_eq!(present(&kept.archive), (true, true), "{what}");
    host.assert_no_leftovers(&what);
    d.stop();
    removed
}

/// Kill a `backup prune --remote` at `failpoint`: after the next start, the
/// copy's record and its objects are both there (the journal was written,
/// nothing else) or both gone (recovery deleted the objects of a record that
/// had left the index); the other copy and every local archive are intact.
/// Whether the copy went.
async fn remote_removal_killed_at(failpoint: &str) -> bool {
    let s3 = S3Server::start();
    let host = Host::new();
    let cfg = host.sb.config();
    let off = host.add_remote(&s3, "site");
    let (gone, kept) = host.older_and_newer().await;
    for b in [&gone, &kept] {
        remotes::copy_backup(&off, &cfg.index_file, &b.id);
    }
    let local = [
        fs::read(&gone.archive).unwrap(),
        fs::read(&kept.archive).unwrap(),
    ];
    let (d, op_id) = host.prune_armed(failpoint, Some("off")).await;
    let what = format!("remote removal killed at {failpoint}");
    let d = died_and_recovered(&host, d, &op_id, &what).await;
    let index: Value = serde_json::from_slice(&fs::read(&cfg.index_file).unwrap()).unwrap();
    let recorded = |id: &str| {
        index["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id && e.get("remotes").is_some())
    };
    let objects = |id: &str| {
        s3.list("site/")
            .iter()
            .filter(|o| o.key.contains(id))
            .count()
    };
    let removed = !recorded(&gone.id);
    assert_eq!(objects(&gone.id), if removed { 0 } else { 3 }, "{what}");
    assert!(recorded(&kept.id), "{what}");
    assert_eq!(objects(&kept.id), 3, "{what}");
    assert_eq!(
        [
            fs::read(&gone.archive).unwrap(),
            fs::read(&kept.archive).unwrap()
        ],
        local,
        "{what}"
    );
    host.assert_no_leftovers(&what);
    d.stop();
    removed
}

/// Kill a `backup pull` at `failpoint`: after recovery the index is as it
/// was, no partial download is left, and the archive is either absent or
/// (killed after its rename) the backup's exact bytes; a pull on the next
/// daemon makes it available.
async fn pull_killed_at(failpoint: &str) {
    use abssd_proto::methods::BackupPull;
    let s3 = S3Server::start();
    let host = Host::new();
    let cfg = host.sb.config();
    let off = host.add_remote(&s3, "actual");
    let d = host.daemon(None);
    let made = backup(&client(&d.socket).await, "alpha").await;
    d.stop();
    remotes::copy_backup(&off, &cfg.index_file, &made.id);
    let bytes = fs::read(&made.archive).unwrap();
    fs::remove_file(&made.archive).unwrap();
    fs::remove_file(&made.checksum_file).unwrap();
    let before = fs::read(&cfg.index_file).unwrap();
    let d = host.daemon(Some(failpoint));
    let pull = PullParams {
        id: made.id.clone(),
        remote: None,
        detach: true,
    };
    let op_id = call::<BackupPull>(&client(&d.socket).await, &pull)
        .await
        .unwrap()
        .op_id;
    let what = format!("pull killed at {failpoint}");
    let d = died_and_recovered(&host, d, &op_id, &what).await;
    assert_eq!(fs::read(&cfg.index_file).unwrap(), before, "{what}");
    if failpoint == "pull::renamed" {
        assert_eq!(fs::read(&made.archive).unwrap(), bytes, "{what}");
    } else {
        assert!(!PathBuf::from(&made.archive).exists(), "{what}");
    }
    host.assert_no_leftovers(&what);
    let c = client(&d.socket).await;
    let pulled = call::<BackupPull>(
        &c,
        &PullParams {
            detach: false,
            ..pull
        },
    )
    .await
    .unwrap();
    assert!(pulled.result.is_some(), "{what}");
    assert_eq!(fs::read(&made.archive).unwrap(), bytes, "{what}");
    let shown = abssd_tests::show(&c, &made.id).await;
    assert_eq!(shown.status, "available", "{what}");
    d.stop();
}

/// Kill a `schedule enable` or `schedule disable` (the point's name says
/// which) after one of its steps, and check what docs/API.md says it leaves:
/// the steps done, none of the others, nothing half-written; then the same
/// call on a fresh daemon completes it.
async fn schedule_killed_at(failpoint: &str) {
    let host = Host::new();
    let cfg = host.sb.config();
    abssd_tests::units::install(&cfg.unit_dir, &abssd_tests::units::TIMER_UNITS, None, None);
    let timer = "abssctl-backup@alpha.timer";
    let dir = cfg.unit_dir.join(format!("{timer}.d"));
    let file = dir.join("50-abssctl-calendar.conf");
    let one = |calendar: Option<&str>| ScheduleParams {
        instance: Some("alpha".into()),
        all: false,
        calendar: calendar.map(str::to_owned),
    };
    let enabling = failpoint.starts_with("schedule::enable-");
    if !enabling {
        let d = host.daemon(None);
        call::<ScheduleEnable>(&client(&d.socket).await, &one(Some("hourly")))
            .await
            .unwrap();
        d.stop();
    }
    host.fake.clear_calls();
    let d = host.daemon(Some(failpoint));
    let c = client(&d.socket).await;
    let sent = if enabling {
        call::<ScheduleEnable>(&c, &one(Some("weekly")))
            .await
            .map(drop)
    } else {
        call::<ScheduleDisable>(&c, &one(None)).await.map(drop)
    };
    assert!(sent.is_err(), "{failpoint}: the call was answered");
    let status = d.wait(Duration::from_secs(60));
    assert!(aborted(&status), "{failpoint}: never reached ({status})");

    // What a kill there leaves: the steps before it, none after, no temp file.
    let state = host.fake.state(timer).unwrap();
    let names: Vec<String> = fs::read_dir(&dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let (calls, enabled, active, drop_in): (&[&str], bool, bool, bool) = match failpoint {
        "schedule::enable-after-drop-in" => (&[], false, false, true),
        "schedule::enable-after-reload" => (&["Reload"], false, false, true),
        "schedule::enable-after-enable" => (&["Reload", "EnableUnitFiles"], true, false, true),
        "schedule::disable-after-stop" => (&["StopUnit"], true, false, true),
        "schedule::disable-after-disable" => {
            (&["StopUnit", "DisableUnitFiles"], false, false, true)
        }
        "schedule::disable-after-drop-in" => {
            (&["StopUnit", "DisableUnitFiles"], false, false, false)
        }
        other => panic!("crash point {other}: no expectation for it here; add one"),
    };
    let made: Vec<String> = host
        .fake
        .calls()
        .iter()
        .map(|c| c.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(made, calls, "{failpoint}: calls");
    assert_eq!(state.is_enabled(), enabled, "{failpoint}: {state:?}");
    assert_eq!(state.is_active(), active, "{failpoint}: {state:?}");
    if drop_in {
        let want = if enabling { "weekly" } else { "hourly" };
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.ends_with(&format!("OnCalendar=\nOnCalendar={want}\n")),
            "{failpoint}: {text}"
        );
        assert_eq!(names, ["50-abssctl-calendar.conf"], "{failpoint}");
    } else {
        assert!(!dir.exists(), "{failpoint}: {names:?}");
    }

    // The same call again finishes the job.
    let d = host.daemon(None);
    let c = client(&d.socket).await;
    if enabling {
        call::<ScheduleEnable>(&c, &one(Some("weekly")))
            .await
            .unwrap();
        let state = host.fake.state(timer).unwrap();
        assert!(
            state.is_enabled() && state.is_active(),
            "{failpoint}: {state:?}"
        );
        assert!(
            fs::read_to_string(&file)
                .unwrap()
                .ends_with("OnCalendar=weekly\n")
        );
    } else {
        call::<ScheduleDisable>(&c, &one(None)).await.unwrap();
        let state = host.fake.state(timer).unwrap();
        assert!(
            !state.is_enabled() && !state.is_active(),
            "{failpoint}: {state:?}"
        );
        assert!(!dir.exists(), "{failpoint}");
    }
    assert_eq!(
        host.fake.calls().last().map(String::as_str),
        Some(if enabling {
            "StartUnit abssctl-backup@alpha.timer"
        } else {
            "Reload"
        }),
        "{failpoint}"
    );
    d.stop();
}

/// Every crash point in the source is exercised; each prefix names the
/// operations that pass through it, so a new point cannot go unexercised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_crash_point_the_next_start_leaves_before_or_after() {
    let points = crash_points();
    assert!(
        points.len() >= 30,
        "only {} crash points found: {points:?}",
        points.len()
    );
    let mut runs = Vec::new();
    for point in &points {
        // The points of a `stop`-mode create's stop and start are passed only
        // in that mode; the archive's own points in every mode.
        let mut modes = vec![Consistency::Snapshot, Consistency::Stop];
        let (create, restore) = match point.split("::").next().unwrap() {
            "create" => (true, false),
            "create-stop" => {
                modes = vec![Consistency::Stop];
                (true, false)
            }
            "restore" => (false, true),
            "index" => {
                let n = index_writers_killed_at(point).await;
                runs.extend((0..n).map(|_| format!("verify/reconcile@{point}")));
                (true, true)
            }
            "registry" => (false, true),
            "prune" => {
                let removed = removal_killed_at(point).await;
                // Once its entry says removed, the removal is finished.
                assert_eq!(
                    removed,
                    point != "prune::journaled",
                    "removal killed at {point}"
                );
                runs.push(format!("removal@{point}"));
                (false, false)
            }
            "prune-remote" => {
                let removed = remote_removal_killed_at(point).await;
                // Once the record left the index, the copy is gone.
                assert_eq!(
                    removed,
                    point != "prune-remote::journaled",
                    "remote removal killed at {point}"
                );
                runs.push(format!("remote removal@{point}"));
                (false, false)
            }
            "push" => {
                crate::push::killed_at(point).await;
                runs.push(format!("push@{point}"));
                (false, false)
            }
            "schedule" => {
                schedule_killed_at(point).await;
                runs.push(format!("schedule@{point}"));
                (false, false)
            }
            "pull" => {
                pull_killed_at(point).await;
                runs.push(format!("pull@{point}"));
                (false, false)
            }
            other => panic!("crash point {point}: no scenario for {other}:: points; add one here"),
        };
        if create {
            for mode in modes {
                let kept = create_killed_at(point, mode).await;
                // Only a create that wrote its index entry had finished.
                assert_eq!(
                    kept,
                    point == "create::after-index",
                    "create --consistency {mode:?} killed at {point}"
                );
                runs.push(format!("create({mode:?})@{point}"));
            }
        }
        if restore {
            let after = restore_killed_at(point).await;
            let committed = matches!(
                point.as_str(),
                "restore::after-commit"
                    | "restore::after-cleanup"
                    | "restore::after-annotate"
                    // The first index write of a live restore without a
                    // pre-restore backup is its annotation, after the commit.
                    | "index::before-rename"
            );
            assert_eq!(after, committed, "restore killed at {point}");
            runs.push(format!("restore@{point}"));
        }
    }
    eprintln!("{} kill points exercised: {}", runs.len(), runs.join(", "));
}

/// Enough data that a restore takes a while: 8 MiB that does not compress and
/// 1 000 small files.
fn bulk_up(host: &Host) {
    let data = host.sb.config().instance_root.join("alpha/data");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut big = Vec::with_capacity(8 << 20);
    while big.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(data.join("server-files/blob.bin"), &big).unwrap();
    for i in 0..1000 {
        let dir = data.join(format!("user-files/many/{:02}", i % 40));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}.json")), format!("{{\"n\": {i}}}\n")).unwrap();
    }
}

/// A host with the bigger instance, one backup of it (its state at backup
/// time too), and no daemon running.
async fn bulky_with_backup() -> (Host, CreateResult, State) {
    let host = Host::new();
    bulk_up(&host);
    let d = host.daemon(None);
    let made = backup(&client(&d.socket).await, "alpha").await;
    let at_backup = host.state();
    d.stop();
    (host, made, at_backup)
}

/// A detached live restore of `id`, confirmed.
fn live(id: &str, pre_backup: bool) -> RestoreParams {
    RestoreParams {
        id: id.to_owned(),
        yes: true,
        no_pre_backup: !pre_backup,
        detach: true,
        ..Default::default()
    }
}

/// `kill -9` at deterministic pseudo-random moments of a live restore of a
/// larger instance (with its pre-restore backup), then a fresh start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_of_a_restore_leaves_before_or_after() {
    let (host, made, at_backup) = bulky_with_backup().await;
    let d = host.daemon(None);
    // How long a whole restore takes here, to spread the kills over it.
    host.vandalize();
    let params = live(&made.id, true);
    let started = std::time::Instant::now();
    let c = client(&d.socket).await;
    let whole = call::<BackupRestore>(
        &c,
        &RestoreParams {
            detach: false,
            ..params.clone()
        },
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(restored(&host.state(), &at_backup, &made.id, &whole.op_id).is_ok());
    d.stop();

    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut outcomes = Vec::new();
    for round in 0..6 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Somewhere in 5%..105% of a whole restore.
        let at = took.mul_f64(0.05 + (seed >> 11) as f64 / (1u64 << 53) as f64);
        host.vandalize();
        let before = host.state();
        let d = host.daemon(None);
        let op_id = call::<BackupRestore>(&client(&d.socket).await, &params)
            .await
            .unwrap()
            .op_id;
        tokio::time::sleep(at).await;
        d.kill();

        let d = host.daemon(None);
        let now = host.state();
        let what = format!("round {round}, killed after {at:?} of {took:?}");
        // The pre-restore backup, when it got that far, is an ordinary backup:
        // the rest of the index must be as before or as restored.
        let apart_from_index = |s: &State| State {
            index: None,
            ..s.clone()
        };
        let outcome = if apart_from_index(&now) == apart_from_index(&before) {
            assert!(
                !annotated(&now, &made.id, &op_id),
                "{what}: rolled back but annotated"
            );
            "before"
        } else {
            restored(&now, &at_backup, &made.id, &op_id)
                .unwrap_or_else(|why| panic!("{what}: neither as before nor as restored: {why}"));
            "after"
        };
        assert!(host.unit_running(), "{what}: the unit is not running");
        host.assert_no_leftovers(&what);
        d.stop();
        outcomes.push(format!("{at:?}: {outcome}"));
    }
    eprintln!("SIGKILL during a {took:?} restore: {}", outcomes.join(", "));
}

/// SIGTERM lets a running restore finish, then exits cleanly; a second signal
/// exits at once, and the next start recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_restore_finish_and_a_second_signal_exits_at_once() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (host, made, at_backup) = bulky_with_backup().await;
    let params = live(&made.id, false);

    // One SIGTERM mid-restore: new connections are refused, the restore ends.
    host.vandalize();
    let d = host.daemon(None);
    let socket = d.socket.clone();
    let op_id = call::<BackupRestore>(&client(&socket).await, &params)
        .await
        .unwrap()
        .op_id;
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(Pid::from_raw(d.pid() as i32), Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "still accepting after SIGTERM"
    );
    let status = d.wait(Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{status}");
    restored(&host.state(), &at_backup, &made.id, &op_id).expect("the restore finished");
    assert!(host.unit_running());
    host.assert_no_leftovers("after SIGTERM");
    // The client that lost its connection is told to `op watch` the id: the
    // next daemon answers for it from the operations log.
    let d = host.daemon(None);
    let c = client(&d.socket).await;
    let info = call::<abssd_proto::methods::OpGet>(
        &c,
        &OpIdParams {
            op_id: op_id.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!((info.state, info.recovered), (OpState::Succeeded, false));
    assert_eq!(info.command.as_str(), "backup restore");
    assert_eq!(
        info.result.unwrap().to_value()["result"]["id"],
        made.id.as_str()
    );
    let events = abssd_tests::inspect::events_of(&c, &op_id).await;
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Finished { result } if result.to_value()["result"]["id"] == made.id.as_str())
    );
    d.stop();

    // Two signals: out at once, and the next start leaves before or after.
    host.vandalize();
    let before = host.state();
    let d = host.daemon(None);
    let op_id = call::<BackupRestore>(&client(&d.socket).await, &params)
        .await
        .unwrap()
        .op_id;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = Pid::from_raw(d.pid() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    kill(pid, Signal::SIGTERM).unwrap();
    let status = d.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{status}");
    let d = host.daemon(None);
    let now = host.state();
    if now != before {
        restored(&now, &at_backup, &made.id, &op_id).expect("before or after");
    }
    assert!(host.unit_running());
    host.assert_no_leftovers("after two signals");
    d.stop();
}
