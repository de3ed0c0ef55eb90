//! A whole host for end-to-end tests of operations that touch services: a
//! [`Sandbox`] with instances, a [`FakeSystemd`] that knows their units, the
//! real `nginx -t`, and the daemon ([`World`]); snapshots of everything a live
//! restore may touch; and a small [`Tmpfs`] for full and foreign filesystems
//! (root only).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd::config::unit_name;
use abssd_proto::methods::BackupRestore;
use abssd_proto::methods::call::call;
use abssd_proto::{OpOutcome, RestoreParams, RestorePlan, RestoreResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::json;

use crate::inspect::{Node, snapshot, snapshot_content};
use crate::nobody::{self, NOBODY};
use crate::{Daemon, FakeSystemd, Sandbox, client};

/// A sandbox with instances, a fake systemd that knows their units (running and
/// enabled), the real nginx check, and the daemon.
#[derive(Debug)]
pub struct World {
    /// The prefix and its instances.
    pub sb: Sandbox,
    /// systemd, as the daemon sees it.
    pub fake: FakeSystemd,
    /// The daemon under test.
    pub daemon: Daemon,
}

impl World {
    /// Instances `instances`, units running and enabled.
    pub fn new(instances: &[&str]) -> World {
        World::with_config(instances, |_| String::new())
    }

    /// Like [`World::new`], with what `extra` returns for the sandbox appended
    /// to abssd's own config file (more of abssd's keys, e.g.
    /// `daemon:\n  max_batch: 2\n`; the Python tool's go to `config.yml`
    /// through [`Sandbox::write_config`]). The instances are registered first,
    /// where the default configuration puts them.
    pub fn with_config(instances: &[&str], extra: impl FnOnce(&Sandbox) -> String) -> World {
        World::build(instances, Sandbox::add_instance, extra)
    }

    /// Like [`World::new`], the instances laid out and registered the way the
    /// Python tool does ([`Sandbox::add_python_instance`]).
    /// The shared `config.yml` names every path (the Python tool's defaults
    /// are not re-rooted under a prefix), as a host's would.
    pub fn python(instances: &[&str]) -> World {
        World::build(
            instances,
            |sb, name| {
                if !sb.config().config_file.exists() {
                    sb.write_python_config();
                }
                sb.add_python_instance(name)
            },
            |_| String::new(),
        )
    }

    fn build(
        instances: &[&str],
        add: fn(&Sandbox, &str) -> PathBuf,
        extra: impl FnOnce(&Sandbox) -> String,
    ) -> World {
        let sb = Sandbox::new();
        for name in instances {
            add(&sb, name);
        }
        let cfg = sb.config();
        let fake = FakeSystemd::start(Some(&cfg.unit_dir));
        for name in instances {
            fake.set_unit(&unit_name(name), true, true);
        }
        let nginx = sb.nginx_test_command();
        let extra = extra(&sb);
        // The fake reads units and their drop-ins from the unit dir: the
        // timers' calendar drop-ins go there too.
        sb.write_abssd_config(&format!(
            "systemd:\n  bus_address: {}\n  dropin_dir: {}\nnginx:\n  test_command: {}\n{extra}",
            json!(fake.address()),
            json!(cfg.unit_dir),
            json!(nginx)
        ));
        let daemon = Daemon::start(&sb);
        World { sb, fake, daemon }
    }

    /// Stop the daemon, append `yaml` (more of abssd's own keys) to abssd's
    /// config file, and start a new daemon on it: e.g. to make backups first
    /// and then lower a limit.
    pub fn restart_with(&mut self, yaml: &str) {
        let file = self.sb.full_config().abssd_config_file;
        let mut text = std::fs::read_to_string(&file).expect("read config");
        text.push_str(yaml);
        std::fs::write(&file, text).expect("write config");
        // The old daemon must be gone (its lock released) before the new one starts.
        self.daemon.shutdown();
        self.daemon = Daemon::start(&self.sb);
    }

    /// The paths of the configuration the daemon runs with.
    pub fn cfg(&self) -> abssd::config::Layout {
        self.sb.config()
    }

    /// A new client of the daemon.
    pub async fn client(&self) -> Client {
        client(&self.daemon.socket).await
    }

    /// The data root of an instance.
    pub fn data(&self, name: &str) -> PathBuf {
        self.cfg().instance_root.join(name).join("data")
    }

    /// Hand the data directory of instance `name` to the service user, as on
    /// a real host: it owns everything below the data root, and can reach it
    /// (every directory above it in the prefix may be searched). Returns the
    /// data root.
    pub fn data_owned_by_nobody(&self, name: &str) -> PathBuf {
        let data = self.data(name);
        let mut dir = data.clone();
        while dir.starts_with(&self.sb.prefix) {
            let mode = fs::metadata(&dir).expect("stat").permissions().mode();
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o711)).expect("chmod");
            if !dir.pop() {
                break;
            }
        }
        nobody::chown_r(&data, NOBODY);
        data
    }

    /// Everything a live restore may touch, apart from the index and backups.
    pub fn live_state(&self) -> Vec<BTreeMap<PathBuf, Node>> {
        let cfg = self.cfg();
        // The backups and restores roots live under the instance root too.
        let mut instances = snapshot_content(&cfg.instance_root);
        instances.retain(|p, _| !(p.starts_with("backups") || p.starts_with("restores")));
        vec![
            instances,
            snapshot(&cfg.unit_dir),
            snapshot(&cfg.sites_available),
            snapshot(&cfg.sites_enabled),
            // A rolled-back registry is rewritten with its old content: compare
            // content and mode, not the file's mtime.
            snapshot(&cfg.registry_dir)
                .into_iter()
                .map(|(p, n)| (p, (n.0, n.1, n.2, n.3, 0, n.5)))
                .collect(),
        ]
    }

    /// The index file's bytes.
    pub fn index(&self) -> Vec<u8> {
        fs::read(self.cfg().index_file).unwrap()
    }

    /// The raw JSON of index entry `id`, as it stands in the file.
    pub fn raw_entry(&self, id: &str) -> serde_json::Value {
        let index: serde_json::Value = serde_json::from_slice(&self.index()).expect("index");
        index["backups"]
            .as_array()
            .expect("backups")
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("no entry {id}"))
            .clone()
    }

    /// Whether the fake systemd has the instance's unit running.
    pub fn unit_active(&self, name: &str) -> bool {
        self.fake
            .state(&unit_name(name))
            .expect("unit known")
            .is_active()
    }

    /// How many systemd calls were `prefix` or start with `prefix `.
    pub fn calls(&self, prefix: &str) -> usize {
        self.fake
            .calls()
            .iter()
            .filter(|c| *c == prefix || c.starts_with(&format!("{prefix} ")))
            .count()
    }

    /// The calls that change something: starts, stops and reloads, in order.
    pub fn jobs(&self) -> Vec<String> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| {
                ["StartUnit ", "StopUnit ", "RestartUnit ", "ReloadUnit "]
                    .iter()
                    .any(|p| c.starts_with(p))
                    || c == "Reload"
            })
            .collect()
    }

    /// Nothing the restore works with is left behind anywhere in the prefix.
    pub fn assert_no_leftovers(&self) {
        let all = snapshot(&self.sb.prefix);
        for path in all.keys() {
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                !(name.contains(".pre-restore-")
                    || name.contains(".bak-")
                    || name.contains(".restore-")
                    || name.contains(".new-")
                    || name.ends_with(".partial")),
                "leftover {}",
                path.display()
            );
        }
        let journal = self.cfg().state_dir.join("journal");
        assert!(
            snapshot(&journal).is_empty(),
            "journal left: {:?}",
            snapshot(&journal).keys()
        );
    }
}

/// Two sets of snapshots are equal; on failure name the paths that differ.
pub fn assert_same(before: &[BTreeMap<PathBuf, Node>], after: &[BTreeMap<PathBuf, Node>]) {
    let mut diffs = Vec::new();
    for (b, a) in before.iter().zip(after) {
        for (path, node) in b {
            match a.get(path) {
                None => diffs.push(format!("gone: {}", path.display())),
                Some(n) if n != node => diffs.push(format!(
                    "changed: {} (kind/mode/uid/gid/mtime {:?} -> {:?}, content same: {})",
                    path.display(),
                    (node.0, node.1, node.2, node.3, node.4),
                    (n.0, n.1, n.2, n.3, n.4),
                    n.5 == node.5
                )),
                _ => {}
            }
        }
        for path in a.keys().filter(|p| !b.contains_key(*p)) {
            diffs.push(format!("new: {}", path.display()));
        }
    }
    assert!(
        diffs.is_empty(),
        "live state differs:\n{}",
        diffs.join("\n")
    );
}

/// A confirmed live restore with the default flags.
pub fn live(id: &str) -> RestoreParams {
    RestoreParams {
        id: id.into(),
        yes: true,
        ..Default::default()
    }
}

/// A live restore without the pre-restore backup (most tests do not need it).
pub fn no_pre(id: &str) -> RestoreParams {
    RestoreParams {
        no_pre_backup: true,
        ..live(id)
    }
}

/// `backup.restore`, waiting for the outcome.
pub async fn restore(
    c: &Client,
    params: &RestoreParams,
) -> Result<OpOutcome<RestorePlan, RestoreResult>, WireError> {
    call::<BackupRestore>(c, params).await
}

/// A small tmpfs mounted for the life of the guard.
#[derive(Debug)]
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (`mount -o size=`) on `dir`, created if needed.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "abssd-test",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

impl Tmpfs {
    /// Mount a tmpfs of `size` on the existing directory `dir` with `dir`'s
    /// content copied in (`cp -a`), so the tree looks the same but lives on
    /// another filesystem. The content written there is lost on drop.
    pub fn mount_over(dir: &Path, size: &str) -> Tmpfs {
        let keep = dir.with_file_name(format!(
            "{}.before-tmpfs",
            dir.file_name().expect("name").to_string_lossy()
        ));
        fs::rename(dir, &keep).expect("move the content aside");
        let mounted = Tmpfs::mount(dir, size);
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", keep.display()))
            .arg(dir)
            .status()
            .expect("run cp");
        assert!(st.success(), "cp -a into {}", dir.display());
        fs::remove_dir_all(&keep).expect("remove the copy");
        mounted
    }

    /// Fill the filesystem with `.filler` until it reports `ENOSPC`.
    pub fn fill(&self) {
        let mut f = fs::File::create(self.0.join(".filler")).expect("create filler");
        let chunk = [0x5au8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", self.0.display()),
            }
        }
        let _ = f.sync_all();
    }
}
