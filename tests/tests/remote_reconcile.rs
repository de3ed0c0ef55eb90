//! What a remote holds (`remote.ls`) and reconcile across a remote
//! (`backup.reconcile` with `remote`), against a real S3 server (moto, from
//! [`abssd_tests::s3`]) and the real daemon. The bucket is filled the way
//! `backup push` fills it (archive, sidecar, entry object; the copy recorded
//! in the index last) by [`abssd_tests::remotes`], with abssd's own transfer
//! code, and looked at through the harness's independent boto3 view.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use abssd::config::RemoteSettings;
use abssd::remote::layout;
use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupReconcile, RemoteLs};
use abssd_proto::*;
use abssd_tests::remotes::{self, Remote};
use abssd_tests::s3::S3Server;
use abssd_tests::{Daemon, Sandbox, backup, client};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

/// The remote's prefix in the bucket.
const PREFIX: &str = "hosts/h1";

/// Remote `name` at `s3`, `off` under [`PREFIX`] and any other under
/// `hosts/<name>`, its credentials in `sb`.
fn remote(sb: &Sandbox, s3: &S3Server, name: &str) -> Remote {
    let prefix = match name {
        "off" => PREFIX.to_owned(),
        _ => format!("hosts/{name}"),
    };
    Remote::of(s3, &sb.path("etc/abssctl"), name, &prefix)
}

/// Write `sb`'s abssd.yml: remote `off` at `s3` (and `sealed`, when given),
/// after `extra`.
fn configure(sb: &Sandbox, s3: &S3Server, sealed: Option<Remote>, extra: &str) {
    let off = remote(sb, s3, "off");
    let all: Vec<&Remote> = std::iter::once(&off).chain(&sealed).collect();
    sb.write_abssd_config(&format!("{extra}{}", remotes::section(&all)));
}

fn settings(sb: &Sandbox, name: &str) -> RemoteSettings {
    sb.full_config()
        .remotes
        .pick(Some(name))
        .expect("the remote is configured")
        .clone()
}

/// Push backup `id` of `sb`'s index to `remote` and record the copy.
fn push(sb: &Sandbox, remote: &RemoteSettings, id: &str) -> RemoteCopy {
    let entry = entry_of(sb, id);
    let copy = remotes::push_copy(remote, &entry, &fs::read(&entry.path).unwrap());
    remotes::record_copy(&sb.config().index_file, id, &copy);
    copy
}

fn index(sb: &Sandbox) -> Value {
    serde_json::from_slice(&fs::read(sb.config().index_file).unwrap()).unwrap()
}

fn entry_of(sb: &Sandbox, id: &str) -> BackupEntry {
    remotes::entry(&sb.config().index_file, id)
}

/// Every entry of the index but `id`, as JSON values.
fn others(idx: &Value, id: &str) -> Vec<Value> {
    idx["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"] != id)
        .cloned()
        .collect()
}

async fn reconcile(
    c: &Client,
    remote: &str,
    instance: Option<&str>,
    apply: bool,
    adopt: bool,
) -> (ReconcilePlan, ReconcileResult) {
    let params = ReconcileParams {
        remote: Some(remote.into()),
        instance: instance.map(str::to_owned),
        apply,
        adopt,
        ..Default::default()
    };
    let out = call::<BackupReconcile>(c, &params)
        .await
        .expect("backup.reconcile --remote");
    (out.plan.unwrap(), out.result.unwrap())
}

fn ids(items: &[ReconcileItem]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

/// A host with instances `alpha` and `beta`, remote `off` at a fresh server.
struct Host {
    s3: S3Server,
    sb: Sandbox,
    daemon: Daemon,
    c: Client,
}

async fn host() -> Host {
    let s3 = S3Server::start();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    sb.add_instance("beta");
    configure(&sb, &s3, None, "");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    Host { s3, sb, daemon, c }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ls_groups_the_objects_per_backup_against_the_index() {
    let h = host().await;
    let off = settings(&h.sb, "off");
    let pushed = backup(&h.c, "alpha").await.id;
    let local = backup(&h.c, "alpha").await.id;
    push(&h.sb, &off, &pushed);
    // Objects of `local` in the remote, no copy recorded (a push cut short).
    let entry = entry_of(&h.sb, &local);
    remotes::push_copy(&off, &entry, &fs::read(&entry.path).unwrap());
    let foreign = remotes::plant_foreign(&off, "beta", b"beta's archive", "from elsewhere");
    let view = h.s3.view();
    view.put(&format!("{PREFIX}/README"), b"not a backup");
    view.put(&format!("{PREFIX}/alpha/deeper/x.tar.zst"), b"nor this");
    view.put("elsewhere/alpha/y.tar.zst", b"outside the prefix");

    let r = call::<RemoteLs>(
        &h.c,
        &RemoteLsParams {
            remote: "off".into(),
            instance: None,
        },
    )
    .await
    .expect("remote.ls");
    assert_eq!(r.remote, "off");
    assert_eq!(r.location, format!("s3://{}/{PREFIX}/", h.s3.bucket()));
    assert_eq!(
        r.keys_scanned, 11,
        "three objects per backup and two strays"
    );
    assert!(!r.truncated);
    assert_eq!(r.unplaced, 2, "{:?}", r.unplaced_keys);
    assert_eq!(r.unplaced_keys.len(), 2);
    assert_eq!(r.backups_found, 3);
    let row = |id: &str| {
        r.backups
            .iter()
            .find(|b| b.id == id)
            .unwrap_or_else(|| panic!("{id} listed: {:?}", r.backups))
    };
    let p = row(&pushed);
    let recorded = entry_of(&h.sb, &pushed);
    let copy = recorded.remote_copy("off").unwrap();
    assert_eq!(
        (p.instance.as_str(), p.archive_key.as_deref(), p.size_bytes),
        ("alpha", Some(copy.key.as_str()), Some(copy.size_bytes))
    );
    assert!(p.has_sidecar && p.has_entry && p.in_index && p.recorded && !p.encrypted);
    let l = row(&local);
    assert!(l.in_index && !l.recorded, "{l:?}");
    let f = row(&foreign.id);
    assert_eq!(f.instance, "beta");
    assert!(
        !f.in_index && !f.recorded && f.has_entry && f.has_sidecar,
        "{f:?}"
    );

    // --instance lists that instance's directory only.
    let only = call::<RemoteLs>(
        &h.c,
        &RemoteLsParams {
            remote: "off".into(),
            instance: Some("beta".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(ids_of(&only), [foreign.id.as_str()]);
    assert_eq!((only.keys_scanned, only.unplaced), (3, 0));

    // An unknown remote is refused naming it (exit 2), before any request.
    let e = call::<RemoteLs>(
        &h.c,
        &RemoteLsParams {
            remote: "nowhere".into(),
            instance: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert!(e.message.contains("nowhere"), "{}", e.message);
    drop(h.daemon);
}

fn ids_of(r: &RemoteLsResult) -> Vec<&str> {
    r.backups.iter().map(|b| b.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_in_step_with_the_remote_reports_nothing() {
    let h = host().await;
    let off = settings(&h.sb, "off");
    for instance in ["alpha", "beta"] {
        let id = backup(&h.c, instance).await.id;
        push(&h.sb, &off, &id);
    }
    let before = fs::read(h.sb.config().index_file).unwrap();
    for apply in [false, true] {
        let (plan, r) = reconcile(&h.c, "off", None, apply, apply).await;
        assert_eq!(plan.remote.as_deref(), Some("off"));
        assert_eq!((plan.archives, plan.index_entries), (2, 2));
        assert!(r.in_sync() && r.local_only.is_empty(), "{r:?}");
        assert_eq!(r.unresolved, 0);
    }
    assert_eq!(fs::read(h.sb.config().index_file).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_copy_whose_archive_is_gone_is_missing_and_apply_drops_only_its_record() {
    let h = host().await;
    let off = settings(&h.sb, "off");
    let gone = backup(&h.c, "alpha").await.id;
    let kept = backup(&h.c, "alpha").await.id;
    let other = backup(&h.c, "beta").await.id;
    let copy = push(&h.sb, &off, &gone);
    push(&h.sb, &off, &kept);
    push(&h.sb, &off, &other);
    h.s3.view().delete(&copy.key);

    let before = index(&h.sb);
    let (_, r) = reconcile(&h.c, "off", None, false, false).await;
    assert_eq!(ids(&r.missing), [gone.as_str()]);
    assert_eq!(r.missing[0].path, copy.key);
    assert!(r.missing[0].reason.contains("is not there"), "{r:?}");
    assert!(r.missing[0].action.is_some());
    assert!(r.mismatched.is_empty() && r.orphaned.is_empty() && r.local_only.is_empty());
    assert_eq!(r.unresolved, 1);
    assert_eq!(
        index(&h.sb),
        before,
        "a reconcile without --apply writes nothing"
    );

    let (_, r) = reconcile(&h.c, "off", None, true, false).await;
    assert!(r.missing[0].resolved, "{r:?}");
    assert_eq!(r.updates_applied, 1);
    assert_eq!(r.unresolved, 0);
    assert_eq!(ids(r.applied.as_deref().unwrap()), [gone.as_str()]);
    let after = index(&h.sb);
    assert_eq!(
        others(&after, &gone),
        others(&before, &gone),
        "nothing else changed"
    );
    let mut was = entry_of_value(&before, &gone);
    let now = entry_of_value(&after, &gone);
    assert!(now.get("remotes").is_none(), "the record is gone: {now}");
    was.as_object_mut().unwrap().remove("remotes");
    assert_eq!(now, was, "only the record of the copy went");

    let (_, r) = reconcile(&h.c, "off", None, false, false).await;
    assert!(r.missing.is_empty(), "{r:?}");
    assert_eq!(
        ids(&r.local_only),
        [gone.as_str()],
        "its archive is here, no copy"
    );
}

fn entry_of_value(idx: &Value, id: &str) -> Value {
    idx["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_another_size_or_sidecar_checksum_are_mismatched_and_apply_leaves_them() {
    let h = host().await;
    let off = settings(&h.sb, "off");
    let sized = backup(&h.c, "alpha").await.id;
    let summed = backup(&h.c, "alpha").await.id;
    let mut copy = push(&h.sb, &off, &sized);
    copy.size_bytes += 1;
    remotes::record_copy(&h.sb.config().index_file, &sized, &copy);
    let c2 = push(&h.sb, &off, &summed);
    let file = c2.key.rsplit('/').next().unwrap().to_owned();
    h.s3.view().put(
        &format!("{}.sha256", c2.key),
        format!("{}  {file}\n", "0".repeat(64)).as_bytes(),
    );

    let before = fs::read(h.sb.config().index_file).unwrap();
    for apply in [false, true] {
        let (_, r) = reconcile(&h.c, "off", None, apply, false).await;
        let mut found = ids(&r.mismatched);
        found.sort_unstable();
        let mut want = vec![sized.as_str(), summed.as_str()];
        want.sort_unstable();
        assert_eq!(found, want, "{r:?}");
        let reason = |id: &str| &r.mismatched.iter().find(|i| i.id == id).unwrap().reason;
        assert!(reason(&sized).contains("bytes, the record says"), "{r:?}");
        assert!(
            reason(&summed).contains("remote sidecar says sha256 000"),
            "{r:?}"
        );
        assert!(
            r.mismatched
                .iter()
                .all(|i| !i.resolved && i.action.is_none())
        );
        assert!(r.missing.is_empty() && r.orphaned.is_empty());
        assert_eq!(r.unresolved, 2);
    }
    assert_eq!(fs::read(h.sb.config().index_file).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_only_backups_are_orphaned_and_local_only_ones_are_listed_apart() {
    let h = host().await;
    let off = settings(&h.sb, "off");
    let local = backup(&h.c, "alpha").await.id;
    let foreign = remotes::plant_foreign(&off, "beta", b"archive bytes", "elsewhere");
    // A sidecar alone, without its archive or entry.
    let lone = abssd::index::new_backup_id("alpha", jiff::Timestamp::now());
    h.s3.view().put(
        &format!("{PREFIX}/alpha/{lone}.tar.zst.sha256"),
        format!("{}  {lone}.tar.zst\n", "a".repeat(64)).as_bytes(),
    );

    let (plan, r) = reconcile(&h.c, "off", None, false, false).await;
    assert_eq!(plan.archives, 2, "two backups in the remote");
    let mut orphans = ids(&r.orphaned);
    orphans.sort_unstable();
    let mut want = vec![foreign.id.as_str(), lone.as_str()];
    want.sort_unstable();
    assert_eq!(orphans, want);
    let f = r.orphaned.iter().find(|i| i.id == foreign.id).unwrap();
    assert_eq!(f.status, item_status::REMOTE_ONLY);
    assert_eq!(f.instance.as_deref(), Some("beta"));
    assert_eq!(f.size_bytes, Some(13));
    assert!(f.action.is_some(), "it can be adopted: {f:?}");
    let l = r.orphaned.iter().find(|i| i.id == lone).unwrap();
    assert!(
        l.action.is_none(),
        "a sidecar alone cannot be adopted: {l:?}"
    );
    assert_eq!(ids(&r.local_only), [local.as_str()]);
    assert!(r.local_only[0].reason.contains("no copy recorded"), "{r:?}");
    assert_eq!(r.unresolved, 2, "local only is not counted");

    // --instance alpha: only alpha's.
    let (_, r) = reconcile(&h.c, "off", Some("alpha"), false, false).await;
    assert_eq!(ids(&r.orphaned), [lone.as_str()]);
    assert_eq!(ids(&r.local_only), [local.as_str()]);
}

/// Host 1 backs up two instances and pushes them to a plain remote and an
/// encrypted one; host 2, a fresh prefix with an empty index (the disk is
/// lost), adopts them from both remotes: each entry comes back as host 1
/// had it, with status missing, its path on host 2, and its copy recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_lost_its_disk_adopts_plain_and_encrypted_entries() {
    let s3 = S3Server::start();
    let keys = tempfile::tempdir().unwrap();
    let key = remotes::age_key(keys.path(), "sealed");

    let one = Sandbox::new();
    one.add_instance("alpha");
    one.add_instance("beta");
    configure(
        &one,
        &s3,
        Some(remote(&one, &s3, "sealed").encrypted_to(&key)),
        "",
    );
    let (off, sealed) = (settings(&one, "off"), settings(&one, "sealed"));
    let (mut plain, mut secret) = (Vec::new(), Vec::new());
    {
        let daemon = Daemon::start(&one);
        let c = client(&daemon.socket).await;
        for _ in 0..2 {
            plain.push(backup(&c, "alpha").await.id);
        }
        secret.push(backup(&c, "beta").await.id);
        drop(c);
        daemon.stop();
    }
    let mut copies = std::collections::HashMap::new();
    for id in &plain {
        copies.insert(id.clone(), push(&one, &off, id));
    }
    for id in &secret {
        copies.insert(id.clone(), push(&one, &sealed, id));
    }
    assert!(
        s3.list("hosts/sealed/beta/")
            .iter()
            .any(|o| o.key.ends_with(".json.age")),
        "the encrypted remote holds an encrypted entry"
    );

    let two = Sandbox::new();
    configure(
        &two,
        &s3,
        Some(remote(&two, &s3, "sealed").encrypted_to(&key)),
        "",
    );
    let daemon = Daemon::start(&two);
    let c = client(&daemon.socket).await;
    for (remote, ids_there) in [("off", &plain), ("sealed", &secret)] {
        let (_, r) = reconcile(&c, remote, None, true, true).await;
        let mut adopted: Vec<&str> = ids(r.adopted.as_deref().unwrap());
        adopted.sort_unstable();
        let mut want: Vec<&str> = ids_there.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(adopted, want, "{remote}: {r:?}");
        assert!(r.orphaned.iter().all(|o| o.resolved), "{r:?}");
        assert_eq!(r.unresolved, 0);
    }
    let root = two.config().backups_root;
    for id in plain.iter().chain(&secret) {
        let was = entry_of(&one, id);
        let now = entry_of(&two, id);
        assert_eq!(now.status, status::MISSING, "{id}");
        let file = Path::new(&was.path).file_name().unwrap();
        assert_eq!(
            Path::new(&now.path),
            root.join(&was.instance).join(file),
            "where host 2 keeps it"
        );
        assert_eq!(now.remote_copies().count(), 1);
        let copy = now.remote_copies().next().unwrap();
        let recorded = &copies[id];
        assert_eq!(
            (
                &copy.name,
                &copy.key,
                &copy.sha256,
                copy.size_bytes,
                copy.encrypted
            ),
            (
                &recorded.name,
                &recorded.key,
                &recorded.sha256,
                recorded.size_bytes,
                recorded.encrypted
            ),
            "{id}"
        );
        assert_eq!(
            (
                &now.instance,
                &now.created_at,
                now.sha256(),
                now.size_bytes,
                &now.message
            ),
            (
                &was.instance,
                &was.created_at,
                was.sha256(),
                was.size_bytes,
                &was.message
            ),
            "{id}"
        );
    }
    // Adopted once: a second run finds everything in step.
    let (_, r) = reconcile(&c, "off", None, true, true).await;
    assert!(r.in_sync(), "{r:?}");
    drop(c);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_entries_are_not_adopted_without_an_identity_file() {
    let s3 = S3Server::start();
    let keys = tempfile::tempdir().unwrap();
    let key = remotes::age_key(keys.path(), "sealed");
    let sb = Sandbox::new();
    let mut sealed = remote(&sb, &s3, "sealed").encrypted_to(&key);
    sealed.identity_file = None;
    configure(&sb, &s3, Some(sealed), "");
    let sealed = settings(&sb, "sealed");
    let foreign = remotes::plant_foreign(&sealed, "beta", b"sealed archive", "secret");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let index_file = sb.config().index_file;
    let before = fs::read(&index_file).ok();

    let (_, r) = reconcile(&c, "sealed", None, true, true).await;
    assert_eq!(ids(&r.orphaned), [foreign.id.as_str()]);
    let o = &r.orphaned[0];
    assert!(!o.resolved && o.action.is_none(), "{o:?}");
    assert!(
        o.reason.contains("not adopted") && o.reason.contains("remotes.sealed.age_identity_file"),
        "{o:?}"
    );
    assert_eq!(r.adopted.as_deref(), Some(&[][..]));
    assert_eq!(r.unresolved, 1);
    assert_eq!(fs::read(&index_file).ok(), before, "the index is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_entry_objects_are_refused_with_a_reason_and_adopt_nothing() {
    let h = host().await;
    let off = settings(&h.sb, "off");
    let bytes = b"some archive".as_slice();
    // Each: a real archive and sidecar, and an entry object that lies.
    let mut cases = Vec::new();
    for (what, make) in [
        ("names another backup", 0),
        ("huge", 1),
        ("not JSON", 2),
        ("no time", 3),
        ("from the future", 4),
    ] {
        let e = remotes::plant_foreign(&off, "alpha", bytes, what);
        let keys = layout::keys(&off, "alpha", &e.id, &e.path, false).unwrap();
        let body = match make {
            0 => {
                let mut other = e.clone();
                other.id = abssd::index::new_backup_id("alpha", jiff::Timestamp::now());
                serde_json::to_vec(&other).unwrap()
            }
            1 => {
                let mut big = e.clone();
                big.extra
                    .insert("padding".into(), Value::String("x".repeat(100 << 10)));
                serde_json::to_vec(&big).unwrap()
            }
            2 => b"{\"id\": ".to_vec(),
            4 => {
                let mut ahead = e.clone();
                ahead.created_at = "2999-01-01T00:00:00Z".into();
                serde_json::to_vec(&ahead).unwrap()
            }
            _ => {
                let mut odd = e.clone();
                odd.created_at = "yesterday".into();
                serde_json::to_vec(&odd).unwrap()
            }
        };
        h.s3.put(&keys.entry, &body);
        cases.push((e.id, what));
    }
    let before = fs::read(h.sb.config().index_file).ok();

    let (_, r) = reconcile(&h.c, "off", None, true, true).await;
    assert_eq!(r.orphaned.len(), 5, "{r:?}");
    assert_eq!(r.adopted.as_deref(), Some(&[][..]), "{r:?}");
    assert_eq!(r.updates_applied, 0);
    for (id, what) in cases {
        let o = r.orphaned.iter().find(|o| o.id == id).unwrap();
        let want = match what {
            "names another backup" => "its entry object names backup",
            // 100 KiB: past the 64 KiB an entry object may have.
            "huge" => "larger than 65536 bytes",
            "not JSON" => "not an index entry in JSON",
            "from the future" => "created_at 2999-01-01T00:00:00Z is in the future",
            _ => "created_at \"yesterday\" is not a time",
        };
        assert!(
            !o.resolved && o.action.is_none() && o.reason.contains(want),
            "{what}: {o:?}"
        );
    }
    assert_eq!(fs::read(h.sb.config().index_file).ok(), before);
}

/// A socket a reader (uid 65534, not in the operator group) may use.
fn open_to_nobody(sb: &Sandbox) {
    for dir in ["", "run", "run/abssctl"] {
        let dir = sb.path(dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// One JSON-RPC call over HTTP on `socket`, made by uid 65534; its answer.
fn call_as_nobody(socket: &Path, method: &str, params: Value) -> Value {
    let script = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(sys.argv[1])
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": sys.argv[2], "params": json.loads(sys.argv[3])}).encode()
s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n\r\n", 1)[1].decode())
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(socket)
        .arg(method)
        .arg(params.to_string())
        .uid(abssd_tests::nobody::NOBODY)
        .gid(abssd_tests::nobody::NOBODY)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("a JSON-RPC answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_is_refused_remote_ls_and_a_remote_reconcile() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs a reader as uid 65534 and needs root (CI runs as root)"
    );
    let s3 = S3Server::start();
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    configure(
        &sb,
        &s3,
        None,
        "daemon:\n  socket_group: nogroup\n  operator_group: abssctl-test-nonexistent\n",
    );
    open_to_nobody(&sb);
    let off = settings(&sb, "off");
    let foreign = remotes::plant_foreign(&off, "alpha", b"archive", "m");
    let daemon = Daemon::start(&sb);

    // A reader may reconcile against the disk…
    let local = call_as_nobody(&daemon.socket, "backup.reconcile", json!({}));
    assert!(local.get("result").is_some(), "{local}");
    // …but nothing that makes requests with the remote's credentials.
    for (method, params) in [
        ("remote.ls", json!({"remote": "off"})),
        ("backup.reconcile", json!({"remote": "off"})),
        (
            "backup.reconcile",
            json!({"remote": "off", "apply": true, "adopt": true}),
        ),
    ] {
        let answer = call_as_nobody(&daemon.socket, method, params.clone());
        let error = &answer["error"];
        assert_eq!(
            error["data"]["kind"], "forbidden",
            "{method} {params}: {answer}"
        );
        assert!(
            error["message"].as_str().unwrap().contains("may only read"),
            "{answer}"
        );
    }
    assert!(
        fs::read(sb.config().index_file).is_err(),
        "no index written"
    );
    // The operator may.
    let c = client(&daemon.socket).await;
    let r = call::<RemoteLs>(
        &c,
        &RemoteLsParams {
            remote: "off".into(),
            instance: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(ids_of(&r), [foreign.id.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_an_unreachable_remote_are_refused_and_change_nothing() {
    let mut h = host().await;
    let off = settings(&h.sb, "off");
    let id = backup(&h.c, "alpha").await.id;
    push(&h.sb, &off, &id);
    let before = fs::read(h.sb.config().index_file).unwrap();
    let refused = |params: ReconcileParams| {
        let c = &h.c;
        async move { call::<BackupReconcile>(c, &params).await.unwrap_err() }
    };
    let e = refused(ReconcileParams {
        remote: Some("off".into()),
        verify: true,
        ..Default::default()
    })
    .await;
    assert_eq!(e.kind, ErrorKind::Validation, "{e:?}");
    assert!(e.message.contains("--remote"), "{}", e.message);
    let e = refused(ReconcileParams {
        remote: Some("../x".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(e.kind, ErrorKind::Validation, "{e:?}");
    let e = refused(ReconcileParams {
        remote: Some("nowhere".into()),
        apply: true,
        ..Default::default()
    })
    .await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert!(e.message.contains("configured: off"), "{}", e.message);

    h.s3.kill();
    let e = refused(ReconcileParams {
        remote: Some("off".into()),
        apply: true,
        adopt: true,
        ..Default::default()
    })
    .await;
    assert_eq!(e.kind, ErrorKind::Environment, "{e:?}");
    assert!(
        e.message.contains("\"off\""),
        "names the remote: {}",
        e.message
    );
    let e = call::<RemoteLs>(
        &h.c,
        &RemoteLsParams {
            remote: "off".into(),
            instance: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Environment, "{e:?}");
    assert_eq!(fs::read(h.sb.config().index_file).unwrap(), before);
}

/// A copy that is there again by the time apply writes (a push completed
/// meanwhile) keeps its record: apply looks each missing object up again
/// under the global lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_keeps_the_record_of_a_copy_that_is_back_by_the_time_it_writes() {
    // The hook below is process-wide.
    let _serial = abssd_tests::serial();
    let h = host().await;
    let off = settings(&h.sb, "off");
    let id = backup(&h.c, "alpha").await.id;
    let copy = push(&h.sb, &off, &id);
    let stored = h.s3.get(&copy.key);
    h.s3.view().delete(&copy.key);
    let before = fs::read(h.sb.config().index_file).unwrap();

    let mut gate = abssd_tests::hooks::Gate::at("reconcile::remote-compared");
    let socket = h.daemon.socket.clone();
    let running = tokio::spawn(async move {
        let c = client(&socket).await;
        reconcile(&c, "off", None, true, false).await
    });
    gate.entered().await;
    h.s3.view().put(&copy.key, &stored);
    gate.release();
    fail::remove("reconcile::remote-compared");
    let (_, r) = running.await.unwrap();

    assert_eq!(ids(&r.missing), [id.as_str()], "it was missing when listed");
    assert!(!r.missing[0].resolved, "{r:?}");
    assert!(
        r.missing[0]
            .reason
            .contains("changed since it was looked at"),
        "{r:?}"
    );
    assert_eq!(r.updates_applied, 0);
    assert_eq!(fs::read(h.sb.config().index_file).unwrap(), before);
    let (_, r) = reconcile(&h.c, "off", None, false, false).await;
    assert!(r.in_sync(), "{r:?}");
}
