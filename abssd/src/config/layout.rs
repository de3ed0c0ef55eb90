//! Every path the daemon touches, derived in one place from the merged
//! configuration and `--prefix`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::ConfigFile;

/// The resolved paths.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The config file read (it may not exist; then defaults apply).
    pub config_file: PathBuf,
    /// Default instance data roots live here (`<instance_root>/<name>`).
    pub instance_root: PathBuf,
    /// Daemon state (journal, registry by default).
    pub state_dir: PathBuf,
    /// Holds `instances.yml`.
    pub registry_dir: PathBuf,
    /// Holds `operations.jsonl`.
    pub logs_dir: PathBuf,
    /// Holds the lock files shared with the Python tool.
    pub runtime_dir: PathBuf,
    /// Backups root: archives live in `<root>/<instance>/`.
    pub backups_root: PathBuf,
    /// The backup index file.
    pub index_file: PathBuf,
    /// systemd unit directory.
    pub unit_dir: PathBuf,
    /// Where a backup timer's calendar drop-in goes (`<dir>/<timer>.d/`): a
    /// directory systemd reads. `systemd.dropin_dir`, else `systemd.unit_dir`
    /// when set, else `/etc/systemd/system` (the default `unit_dir`,
    /// `runtime_dir/systemd`, is the Python tool's and systemd never reads it).
    pub timer_dropin_dir: PathBuf,
    /// nginx `sites-available`.
    pub sites_available: PathBuf,
    /// nginx `sites-enabled`.
    pub sites_enabled: PathBuf,
    /// Where `restore --dest` may write besides the instance root
    /// (default: `restores/` beside the backups root).
    pub restores_root: PathBuf,
    /// The Unix socket served.
    pub socket: PathBuf,
    /// `--prefix`, under which every default is re-rooted.
    pub prefix: Option<PathBuf>,
}

impl Layout {
    /// The paths `merged` sets, the defaults (re-rooted under `prefix`) for the
    /// rest; a derived default follows the path it derives from, whichever
    /// layer set that.
    pub fn resolve(prefix: Option<&Path>, config_file: PathBuf, merged: &ConfigFile) -> Layout {
        let root = |default: &str| rerooted(prefix, default);
        let state_dir = merged
            .state_dir
            .clone()
            .unwrap_or_else(|| root("/var/lib/abssctl"));
        let runtime_dir = merged
            .runtime_dir
            .clone()
            .unwrap_or_else(|| root("/run/abssctl"));
        let backups = &merged.backups;
        let backups_root = backups.root.clone().unwrap_or_else(|| root("/srv/backups"));
        Layout {
            config_file,
            instance_root: merged.instance_root.clone().unwrap_or_else(|| root("/srv")),
            registry_dir: merged
                .registry_dir
                .clone()
                .unwrap_or_else(|| state_dir.join("registry")),
            logs_dir: merged
                .logs_dir
                .clone()
                .unwrap_or_else(|| root("/var/log/abssctl")),
            index_file: backups
                .index
                .clone()
                .unwrap_or_else(|| backups_root.join("backups.json")),
            restores_root: backups.restores_root.clone().unwrap_or_else(|| {
                backups_root
                    .parent()
                    .unwrap_or(&backups_root)
                    .join("restores")
            }),
            // The Python tool's defaults for the same config (its `cli.py`),
            // so that both place an instance's unit and site alike.
            unit_dir: merged
                .systemd
                .unit_dir
                .clone()
                .unwrap_or_else(|| runtime_dir.join("systemd")),
            timer_dropin_dir: merged
                .systemd
                .dropin_dir
                .clone()
                .or_else(|| merged.systemd.unit_dir.clone())
                .unwrap_or_else(|| root("/etc/systemd/system")),
            sites_available: merged
                .nginx
                .sites_available
                .clone()
                .unwrap_or_else(|| runtime_dir.join("nginx/sites-available")),
            sites_enabled: merged
                .nginx
                .sites_enabled
                .clone()
                .unwrap_or_else(|| runtime_dir.join("nginx/sites-enabled")),
            socket: merged
                .daemon
                .socket
                .clone()
                .unwrap_or_else(|| runtime_dir.join("abssd.sock")),
            state_dir,
            runtime_dir,
            backups_root,
            prefix: prefix.map(Path::to_owned),
        }
    }

    /// `registry_dir/instances.yml`.
    pub fn registry_file(&self) -> PathBuf {
        self.registry_dir.join("instances.yml")
    }

    /// `logs_dir/operations.jsonl`.
    pub fn oplog_file(&self) -> PathBuf {
        self.logs_dir.join("operations.jsonl")
    }

    /// The Python tool's global lock file.
    pub fn global_lock_file(&self) -> PathBuf {
        self.runtime_dir.join("abssctl.lock")
    }

    /// The Python tool's per-instance lock file.
    pub fn instance_lock_file(&self, instance: &str) -> PathBuf {
        self.runtime_dir.join(format!("{instance}.lock"))
    }

    /// Default archive directory of an instance.
    pub fn instance_backup_dir(&self, instance: &str) -> PathBuf {
        self.backups_root.join(instance)
    }

    /// The instance's systemd unit file.
    pub fn unit_file(&self, instance: &str) -> PathBuf {
        self.unit_dir.join(unit_name(instance))
    }

    /// The instance's nginx site file.
    pub fn site_file(&self, instance: &str) -> PathBuf {
        self.sites_available.join(site_name(instance))
    }

    /// The instance's `sites-enabled` symlink.
    pub fn site_link(&self, instance: &str) -> PathBuf {
        self.sites_enabled.join(site_name(instance))
    }

    /// Every path in use, by role (for `daemon.status`).
    pub fn paths(&self) -> BTreeMap<String, String> {
        let show = |p: &Path| p.display().to_string();
        [
            ("instance_root", show(&self.instance_root)),
            ("state_dir", show(&self.state_dir)),
            ("registry", show(&self.registry_file())),
            ("logs_dir", show(&self.logs_dir)),
            ("operations_log", show(&self.oplog_file())),
            ("runtime_dir", show(&self.runtime_dir)),
            ("backups_root", show(&self.backups_root)),
            ("index", show(&self.index_file)),
            ("unit_dir", show(&self.unit_dir)),
            ("timer_dropin_dir", show(&self.timer_dropin_dir)),
            ("sites_available", show(&self.sites_available)),
            ("sites_enabled", show(&self.sites_enabled)),
            ("restores_root", show(&self.restores_root)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// Each path's role (as [`Layout::paths`] names it, and `socket`), the role
/// whose path its default derives from, and whether `f` sets it.
fn roles(f: &ConfigFile) -> [(&'static str, Option<&'static str>, bool); 14] {
    let b = &f.backups;
    [
        ("instance_root", None, f.instance_root.is_some()),
        ("state_dir", None, f.state_dir.is_some()),
        ("registry", Some("state_dir"), f.registry_dir.is_some()),
        ("logs_dir", None, f.logs_dir.is_some()),
        ("operations_log", Some("logs_dir"), false),
        ("runtime_dir", None, f.runtime_dir.is_some()),
        ("backups_root", None, b.root.is_some()),
        ("index", Some("backups_root"), b.index.is_some()),
        (
            "restores_root",
            Some("backups_root"),
            b.restores_root.is_some(),
        ),
        (
            "unit_dir",
            Some("runtime_dir"),
            f.systemd.unit_dir.is_some(),
        ),
        (
            "timer_dropin_dir",
            Some("unit_dir"),
            f.systemd.dropin_dir.is_some(),
        ),
        (
            "sites_available",
            Some("runtime_dir"),
            f.nginx.sites_available.is_some(),
        ),
        (
            "sites_enabled",
            Some("runtime_dir"),
            f.nginx.sites_enabled.is_some(),
        ),
        ("socket", Some("runtime_dir"), f.daemon.socket.is_some()),
    ]
}

/// The path roles a layer sets.
pub(super) fn roles_set(f: &ConfigFile) -> Vec<&'static str> {
    roles(f)
        .into_iter()
        .filter_map(|(role, _, set)| set.then_some(role))
        .collect()
}

/// Where each path came from, given the source that last set each role: that
/// source; else, for a default derived from another path, the default under
/// that path and where it came from; else `default`.
pub(super) fn origins(
    set_by: &BTreeMap<&'static str, super::file::Source>,
) -> BTreeMap<String, String> {
    roles(&ConfigFile::default())
        .into_iter()
        .map(|(role, parent, _)| {
            let origin = match (
                set_by.get(role),
                parent.and_then(|p| Some((p, set_by.get(p)?))),
            ) {
                (Some(source), _) => source.to_string(),
                (None, Some((p, source))) => format!("default under {p} ({source})"),
                (None, None) => "default".to_owned(),
            };
            (role.to_owned(), origin)
        })
        .collect()
}

/// `abssctl-<instance>.service`.
pub fn unit_name(instance: &str) -> String {
    format!("abssctl-{instance}.service")
}

/// `abssctl-<instance>.conf`.
pub fn site_name(instance: &str) -> String {
    format!("abssctl-{instance}.conf")
}

/// Re-root an absolute default path under the prefix.
pub fn rerooted(prefix: Option<&Path>, default: &str) -> PathBuf {
    match prefix {
        Some(p) => p.join(default.trim_start_matches('/')),
        None => PathBuf::from(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/etc/abssctl/config.yml"), yaml).unwrap()
    }

    #[test]
    fn every_default_is_rerooted_under_the_prefix() {
        let l = Layout::resolve(
            Some(Path::new("/p")),
            "/p/etc/abssctl/config.yml".into(),
            &ConfigFile::default(),
        );
        let p = |s: &str| PathBuf::from(s);
        let want = [
            ("instance_root", "/p/srv"),
            ("state_dir", "/p/var/lib/abssctl"),
            ("registry", "/p/var/lib/abssctl/registry/instances.yml"),
            ("logs_dir", "/p/var/log/abssctl"),
            ("operations_log", "/p/var/log/abssctl/operations.jsonl"),
            ("runtime_dir", "/p/run/abssctl"),
            ("backups_root", "/p/srv/backups"),
            ("index", "/p/srv/backups/backups.json"),
            // The Python tool's defaults: under runtime_dir.
            ("unit_dir", "/p/run/abssctl/systemd"),
            // A directory systemd reads, not the unit dir's default.
            ("timer_dropin_dir", "/p/etc/systemd/system"),
            ("sites_available", "/p/run/abssctl/nginx/sites-available"),
            ("sites_enabled", "/p/run/abssctl/nginx/sites-enabled"),
            ("restores_root", "/p/srv/restores"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(l.paths(), BTreeMap::from(want));
        assert_eq!(l.socket, p("/p/run/abssctl/abssd.sock"));
        assert_eq!(l.global_lock_file(), p("/p/run/abssctl/abssctl.lock"));
        assert_eq!(l.instance_lock_file("a"), p("/p/run/abssctl/a.lock"));
        assert_eq!(l.instance_backup_dir("a"), p("/p/srv/backups/a"));
        assert_eq!(
            l.unit_file("a"),
            p("/p/run/abssctl/systemd/abssctl-a.service")
        );
        assert_eq!(
            l.site_file("a"),
            p("/p/run/abssctl/nginx/sites-available/abssctl-a.conf")
        );

        let bare = Layout::resolve(None, "/c".into(), &ConfigFile::default());
        assert_eq!(bare.instance_root, p("/srv"));
        assert_eq!(bare.timer_dropin_dir, p("/etc/systemd/system"));
        // A unit dir set is where systemd reads units: drop-ins go there too,
        // unless systemd.dropin_dir says otherwise.
        let set = |yaml: &str| Layout::resolve(None, "/c".into(), &file(yaml)).timer_dropin_dir;
        assert_eq!(set("systemd:\n  unit_dir: /u\n"), p("/u"));
        assert_eq!(
            set("systemd:\n  unit_dir: /u\n  dropin_dir: /etc/systemd/system\n"),
            p("/etc/systemd/system")
        );
        assert_eq!(bare.socket, p("/run/abssctl/abssd.sock"));
    }

    #[test]
    fn paths_set_are_taken_as_they_are_and_derived_ones_follow() {
        let l = Layout::resolve(
            Some(Path::new("/p")),
            "/c".into(),
            &file(
                "state_dir: /s\nruntime_dir: /r\nbackups:\n  root: /b/all\n\
                 systemd:\n  unit_dir: /u\nnginx:\n  sites_enabled: /e\n",
            ),
        );
        assert_eq!(l.registry_dir, PathBuf::from("/s/registry"));
        assert_eq!(l.socket, PathBuf::from("/r/abssd.sock"));
        assert_eq!(l.index_file, PathBuf::from("/b/all/backups.json"));
        assert_eq!(l.restores_root, PathBuf::from("/b/restores"));
        assert_eq!(l.unit_dir, PathBuf::from("/u"));
        assert_eq!(l.sites_enabled, PathBuf::from("/e"));
        // What is not set follows runtime_dir, as the Python tool's does.
        assert_eq!(l.sites_available, PathBuf::from("/r/nginx/sites-available"));
        assert_eq!(l.instance_root, PathBuf::from("/p/srv"));

        let l = Layout::resolve(
            None,
            "/c".into(),
            &file(
                "registry_dir: /reg\nbackups:\n  root: /\n  index: /i.json\n  restores_root: /x\n\
                 daemon:\n  socket: /sock\n",
            ),
        );
        assert_eq!(l.registry_file(), PathBuf::from("/reg/instances.yml"));
        assert_eq!(l.index_file, PathBuf::from("/i.json"));
        assert_eq!(l.restores_root, PathBuf::from("/x"));
        assert_eq!(l.socket, PathBuf::from("/sock"));
    }
}
