//! Configuration and the path layout derived from it.
//!
//! Precedence, lowest first: built-in defaults (re-rooted under `--prefix`), the
//! YAML config file (the Python tool's keys, SPEC §3), `ABSSCTL_*` environment
//! variables, command-line flags. Each source is a [`Layer`] of one shape, the
//! serde model of the file ([`ConfigFile`]); layers merge key by key, and the
//! merged settings resolve into the [`Config`] the daemon runs with: its paths
//! ([`Layout`], every path the daemon touches is derived there and nowhere
//! else), its own settings ([`DaemonSettings`]) and the host services it drives
//! ([`Services`]).
//!
//! Layout:
//! * [`file`]     — the file's serde model: sections, checked values, unknown keys, merging.
//! * [`layout`]   — the paths, and `--prefix`.
//! * [`settings`] — the daemon's settings and the services', with their defaults.
//! * `value`      — the checked values the file's fields are read as.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub mod file;
pub mod layout;
pub mod settings;
mod value;

pub use file::{ConfigFile, Merge};
pub use layout::{Layout, site_name, unit_name};
pub use settings::{
    DEFAULT_MAX_RESTORE_ENTRIES, DEFAULT_RESTORE_RESERVE_PERCENT, DaemonSettings, Services,
};

/// What the command line (or a test) asks for, before the file and env are read.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--prefix`: re-root every default path.
    pub prefix: Option<PathBuf>,
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--operator-group`.
    pub operator_group: Option<String>,
    /// D-Bus address for systemd (`--bus`).
    pub bus_address: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every path the daemon touches.
    pub layout: Layout,
    /// How the daemon behaves: groups, limits, timeouts, defaults.
    pub daemon: DaemonSettings,
    /// The host services it drives: systemd, nginx.
    pub services: Services,
    /// Non-fatal findings (unknown keys), logged at start.
    pub warnings: Vec<String>,
}

/// Where a layer of settings comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A configuration file.
    File(PathBuf),
    /// `ABSSCTL_*` environment variables.
    Environment,
    /// Command-line flags.
    Flags,
}

/// One source's settings, checked as they were read. Every source has the
/// file's shape, so another file (settings of abssd's own beside the Python
/// tool's `config.yml`) is one more layer, and a value's source is the highest
/// layer that sets it.
#[derive(Debug)]
pub struct Layer {
    /// Where they come from.
    pub source: Source,
    /// What it sets.
    pub settings: ConfigFile,
}

impl Config {
    /// Resolve from defaults, the config file, the process environment and flags.
    pub fn load(over: &Overrides) -> Result<Config> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("ABSSCTL_"))
            .collect();
        Config::load_with_env(over, &env)
    }

    /// [`Config::load`] with an explicit environment (tests).
    pub fn load_with_env(over: &Overrides, env: &BTreeMap<String, String>) -> Result<Config> {
        let config_file = over
            .config_file
            .clone()
            .or_else(|| env.get("ABSSCTL_CONFIG_FILE").map(PathBuf::from))
            .unwrap_or_else(|| layout::rerooted(over.prefix.as_deref(), "/etc/abssctl/config.yml"));
        let layers = [
            Layer {
                settings: ConfigFile::read(&config_file)?,
                source: Source::File(config_file.clone()),
            },
            Layer {
                source: Source::Environment,
                settings: from_env(env)?,
            },
            Layer {
                source: Source::Flags,
                settings: from_flags(over),
            },
        ];
        Ok(Config::resolve(over.prefix.as_deref(), config_file, layers))
    }

    /// Merge `layers` (lowest first) and fill in the defaults.
    pub fn resolve(
        prefix: Option<&Path>,
        config_file: PathBuf,
        layers: impl IntoIterator<Item = Layer>,
    ) -> Config {
        let mut warnings = Vec::new();
        let mut merged = ConfigFile::default();
        for layer in layers {
            if let Source::File(path) = &layer.source {
                for key in layer.settings.unknown_keys() {
                    warnings.push(format!("{}: unknown key {key:?} ignored", path.display()));
                }
            }
            merged = merged.merge(layer.settings);
        }
        Config {
            layout: Layout::resolve(prefix, config_file, &merged),
            daemon: DaemonSettings::resolve(&merged),
            services: Services::resolve(&merged),
            warnings,
        }
    }
}

/// The `ABSSCTL_*` variables as a layer. Their paths are taken as given (as
/// they always were); only a lock timeout is checked.
fn from_env(env: &BTreeMap<String, String>) -> Result<ConfigFile> {
    let path = |key: &str| env.get(key).map(PathBuf::from);
    let mut layer = ConfigFile {
        instance_root: path("ABSSCTL_INSTANCE_ROOT"),
        state_dir: path("ABSSCTL_STATE_DIR"),
        registry_dir: path("ABSSCTL_REGISTRY_DIR"),
        logs_dir: path("ABSSCTL_LOGS_DIR"),
        runtime_dir: path("ABSSCTL_RUNTIME_DIR"),
        ..ConfigFile::default()
    };
    layer.backups.root = path("ABSSCTL_BACKUPS_ROOT");
    layer.backups.index = path("ABSSCTL_BACKUPS_INDEX");
    layer.backups.restores_root = path("ABSSCTL_RESTORES_ROOT");
    layer.systemd.unit_dir = path("ABSSCTL_UNIT_DIR");
    layer.nginx.sites_available = path("ABSSCTL_NGINX_SITES_AVAILABLE");
    layer.nginx.sites_enabled = path("ABSSCTL_NGINX_SITES_ENABLED");
    layer.daemon.socket = path("ABSSCTL_SOCKET");
    layer.daemon.operator_group = env.get("ABSSCTL_OPERATOR_GROUP").cloned();
    if let Some(v) = env.get("ABSSCTL_LOCK_TIMEOUT") {
        let seconds = value::parse_seconds(v)
            .filter(|s| *s <= f64::from(value::MAX_SECONDS))
            .ok_or_else(|| {
                Error::Environment(format!(
                    "environment variable ABSSCTL_LOCK_TIMEOUT={v:?} is not a number of seconds \
                     from 0 to {}",
                    value::MAX_SECONDS
                ))
            })?;
        layer.lock_timeout = Some(std::time::Duration::from_secs_f64(seconds));
    }
    Ok(layer)
}

/// The command-line flags as a layer.
fn from_flags(over: &Overrides) -> ConfigFile {
    let mut layer = ConfigFile::default();
    layer.daemon.socket = over.socket.clone();
    layer.daemon.operator_group = over.operator_group.clone();
    layer.systemd.bus_address = over.bus_address.clone();
    layer
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn load(
        prefix: &Path,
        file: Option<&str>,
        env: &[(&str, &str)],
        over: Overrides,
    ) -> Result<Config> {
        let cfg = prefix.join("etc/abssctl/config.yml");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        match file {
            Some(text) => std::fs::write(&cfg, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&cfg);
            }
        }
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(
            &Overrides {
                prefix: Some(prefix.to_owned()),
                ..over
            },
            &env,
        )
    }

    #[test]
    fn defaults_are_rerooted_under_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(dir.path(), None, &[], Overrides::default()).unwrap();
        assert_eq!(c.layout.instance_root, dir.path().join("srv"));
        assert_eq!(
            c.layout.registry_file(),
            dir.path().join("var/lib/abssctl/registry/instances.yml")
        );
        assert_eq!(
            c.layout.index_file,
            dir.path().join("srv/backups/backups.json")
        );
        assert_eq!(c.layout.socket, dir.path().join("run/abssctl/abssd.sock"));
        assert_eq!(
            c.layout.site_link("a"),
            dir.path().join("etc/nginx/sites-enabled/abssctl-a.conf")
        );
        assert_eq!(c.daemon.lock_timeout, Duration::from_secs(30));
        assert_eq!(c.daemon.operator_group, "abssctl");
        assert_eq!(c.daemon.max_restore_entries, 1_000_000);
        assert_eq!(c.daemon.restore_reserve_percent, 5);
    }

    #[test]
    fn restore_limits_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = "daemon:\n  max_restore_entries: 10\n  restore_reserve_percent: 0\n";
        let c = load(dir.path(), Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(
            (
                c.daemon.max_restore_entries,
                c.daemon.restore_reserve_percent
            ),
            (10, 0)
        );
        for bad in [
            "daemon:\n  max_restore_entries: 0\n",
            "daemon:\n  restore_reserve_percent: 51\n",
            "daemon:\n  restore_reserve_percent: -1\n",
        ] {
            let err = load(dir.path(), Some(bad), &[], Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("daemon."), "{err}");
        }
    }

    #[test]
    fn precedence_is_default_file_env_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = "state_dir: /data/state\nlock_timeout: 5\nbackups:\n  root: /data/backups\n";
        let c = load(dir.path(), Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(c.layout.state_dir, PathBuf::from("/data/state"));
        // Derived defaults follow the key they derive from.
        assert_eq!(c.layout.registry_dir, PathBuf::from("/data/state/registry"));
        assert_eq!(
            c.layout.index_file,
            PathBuf::from("/data/backups/backups.json")
        );
        assert_eq!(c.daemon.lock_timeout, Duration::from_secs(5));

        let env = [
            ("ABSSCTL_STATE_DIR", "/env/state"),
            ("ABSSCTL_LOCK_TIMEOUT", "1.5"),
        ];
        let c = load(dir.path(), Some(file), &env, Overrides::default()).unwrap();
        assert_eq!(c.layout.state_dir, PathBuf::from("/env/state"));
        assert_eq!(c.daemon.lock_timeout, Duration::from_millis(1500));

        let env = [
            ("ABSSCTL_SOCKET", "/env/sock"),
            ("ABSSCTL_OPERATOR_GROUP", "envgrp"),
        ];
        let over = Overrides {
            socket: Some("/flag/sock".into()),
            operator_group: Some("flaggrp".into()),
            ..Overrides::default()
        };
        let c = load(dir.path(), Some(file), &env, over).unwrap();
        assert_eq!(c.layout.socket, PathBuf::from("/flag/sock"));
        assert_eq!(c.daemon.operator_group, "flaggrp");
    }

    #[test]
    fn durations_beyond_reason_are_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        for yaml in [
            "daemon:\n  idle_timeout: 1e30\n",
            "lock_timeout: \"1e300\"\n",
        ] {
            let err = load(dir.path(), Some(yaml), &[], Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("from 0 to"), "{err}");
        }
    }

    #[test]
    fn bad_values_name_key_and_file_and_unknown_keys_only_warn() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(
            dir.path(),
            Some("lock_timeout: soon\n"),
            &[],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("lock_timeout") && err.contains("config.yml"),
            "{err}"
        );

        let err = load(
            dir.path(),
            Some("backups:\n  root: relative/dir\n"),
            &[],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("backups.root") && err.contains("absolute"),
            "{err}"
        );

        let err = load(
            dir.path(),
            Some("state_dir: [unclosed\n"),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Environment);

        let c = load(
            dir.path(),
            Some("frobnicate: 1\nservice_user: actual\n"),
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.services.service_user.as_deref(), Some("actual"));
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("frobnicate"));
    }

    #[test]
    fn unknown_keys_are_warned_at_every_level_and_python_keys_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let file = "\
frobnicate: 1
templates_dir: /etc/abssctl/templates
install_root: /srv/app
npm_package_name: x
reverse_proxy: nginx
default_version: current
node_compat_file: null
config_file: /etc/abssctl/config.yml
ports: {base: 5000, strategy: sequential}
tls: {enabled: true, system: {cert: /c, key: /k}}
backups:
  root: /b
  keep: 3
  compression: {algorithm: zstd, level: 3, threads: 2}
systemd: {unit_dir: /u, systemctl_bin: systemctl, journalctl_bin: journalctl, user: x}
nginx: {service: nginx.service, reload: yes}
daemon: {max_batch: 4, max_batches: 5}
";
        let c = load(dir.path(), Some(file), &[], Overrides::default()).unwrap();
        let path = dir.path().join("etc/abssctl/config.yml");
        let want: Vec<String> = [
            "frobnicate",
            "backups.keep",
            "backups.compression.threads",
            "systemd.user",
            "nginx.reload",
            "daemon.max_batches",
        ]
        .iter()
        .map(|k| format!("{}: unknown key {k:?} ignored", path.display()))
        .collect();
        assert_eq!(c.warnings, want);
        // The known keys beside them were read.
        assert_eq!(c.daemon.max_batch, 4);
        assert_eq!(c.layout.unit_dir, PathBuf::from("/u"));
        assert_eq!(c.daemon.default_level, Some(3));
    }

    #[test]
    fn negative_or_overflowing_numbers_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for (yaml, key) in [
            // 2³² + 3: a cast to i32 made it level 3.
            (
                "backups:\n  compression:\n    level: 4294967299\n",
                "backups.compression.level",
            ),
            (
                "backups:\n  compression:\n    level: -3\n",
                "backups.compression.level",
            ),
            ("daemon:\n  max_connections: -1\n", "daemon.max_connections"),
            (
                "daemon:\n  max_connections: 4294967296\n",
                "daemon.max_connections",
            ),
            ("daemon:\n  max_batch: 1.5\n", "daemon.max_batch"),
            (
                "daemon:\n  max_sparse_hole_bytes: -1\n",
                "daemon.max_sparse_hole_bytes",
            ),
            (
                "daemon:\n  max_restore_entries: -5\n",
                "daemon.max_restore_entries",
            ),
            (
                "daemon:\n  restore_reserve_percent: 256\n",
                "daemon.restore_reserve_percent",
            ),
            (
                "daemon:\n  operations_log_max_bytes: 4294967296\n",
                "daemon.operations_log_max_bytes",
            ),
            ("daemon:\n  stop_timeout: -1\n", "daemon.stop_timeout"),
            ("daemon:\n  stop_timeout: 3601\n", "daemon.stop_timeout"),
            ("daemon: 3\n", "daemon"),
        ] {
            let err = load(dir.path(), Some(yaml), &[], Overrides::default())
                .expect_err(yaml)
                .to_string();
            assert!(
                err.contains(&format!("key {key:?}")) && err.contains("config.yml"),
                "{yaml}: {err}"
            );
        }
        // The largest values that fit are taken as they are.
        let c = load(
            dir.path(),
            Some("daemon:\n  max_connections: 4294967295\n  max_restore_entries: 18446744073709551615\n"),
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.daemon.max_connections, u32::MAX);
        assert_eq!(c.daemon.max_restore_entries, u64::MAX);
    }

    #[test]
    fn nothing_given_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = "backups: ~\nnginx:\ndaemon:\n  max_connections: ~\n  consistency: null\n";
        let c = load(dir.path(), Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(c.daemon.max_connections, 64);
        assert_eq!(c.layout.backups_root, dir.path().join("srv/backups"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn every_environment_variable_beats_the_file_and_flags_beat_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = "\
instance_root: /f/srv
state_dir: /f/state
registry_dir: /f/reg
logs_dir: /f/logs
runtime_dir: /f/run
lock_timeout: 7
backups: {root: /f/b, index: /f/i.json, restores_root: /f/r}
systemd: {unit_dir: /f/units, bus_address: 'unix:path=/f/bus'}
nginx: {sites_available: /f/av, sites_enabled: /f/en}
daemon: {socket: /f/sock, operator_group: fgrp}
";
        let env = [
            ("ABSSCTL_INSTANCE_ROOT", "/e/srv"),
            ("ABSSCTL_STATE_DIR", "/e/state"),
            ("ABSSCTL_REGISTRY_DIR", "/e/reg"),
            ("ABSSCTL_LOGS_DIR", "/e/logs"),
            ("ABSSCTL_RUNTIME_DIR", "/e/run"),
            ("ABSSCTL_LOCK_TIMEOUT", "0.25"),
            ("ABSSCTL_BACKUPS_ROOT", "/e/b"),
            ("ABSSCTL_BACKUPS_INDEX", "/e/i.json"),
            ("ABSSCTL_RESTORES_ROOT", "/e/r"),
            ("ABSSCTL_UNIT_DIR", "/e/units"),
            ("ABSSCTL_NGINX_SITES_AVAILABLE", "/e/av"),
            ("ABSSCTL_NGINX_SITES_ENABLED", "/e/en"),
            ("ABSSCTL_SOCKET", "/e/sock"),
            ("ABSSCTL_OPERATOR_GROUP", "egrp"),
        ];
        let c = load(dir.path(), Some(file), &[], Overrides::default()).unwrap();
        let f = c.layout.paths();
        assert!(f.values().all(|p| p.starts_with("/f/")), "{f:?}");
        assert_eq!(c.layout.socket, PathBuf::from("/f/sock"));
        assert_eq!(c.daemon.lock_timeout, Duration::from_secs(7));

        let c = load(dir.path(), Some(file), &env, Overrides::default()).unwrap();
        let e = c.layout.paths();
        assert!(e.values().all(|p| p.starts_with("/e/")), "{e:?}");
        assert_eq!(c.layout.socket, PathBuf::from("/e/sock"));
        assert_eq!(c.daemon.operator_group, "egrp");
        assert_eq!(c.daemon.lock_timeout, Duration::from_millis(250));
        // No variable for it: the file's.
        assert_eq!(c.services.bus_address.as_deref(), Some("unix:path=/f/bus"));

        let over = Overrides {
            socket: Some("/flag/sock".into()),
            operator_group: Some("flaggrp".into()),
            bus_address: Some("unix:path=/flag/bus".into()),
            ..Overrides::default()
        };
        let c = load(dir.path(), Some(file), &env, over).unwrap();
        assert_eq!(c.layout.socket, PathBuf::from("/flag/sock"));
        assert_eq!(c.daemon.operator_group, "flaggrp");
        assert_eq!(c.daemon.socket_group, "flaggrp");
        assert_eq!(
            c.services.bus_address.as_deref(),
            Some("unix:path=/flag/bus")
        );
        assert_eq!(c.layout.state_dir, PathBuf::from("/e/state"));

        for bad in ["soon", "-1", "1e300", "NaN"] {
            let err = load(
                dir.path(),
                None,
                &[("ABSSCTL_LOCK_TIMEOUT", bad)],
                Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("ABSSCTL_LOCK_TIMEOUT"), "{err}");
        }
    }

    #[test]
    fn the_config_file_is_the_flag_else_the_variable_else_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.yml");
        std::fs::write(&other, "state_dir: /other\n").unwrap();
        let env = [("ABSSCTL_CONFIG_FILE", other.to_str().unwrap())];
        let under = "state_dir: /under-prefix\n";
        let c = load(dir.path(), Some(under), &[], Overrides::default()).unwrap();
        assert_eq!(
            c.layout.config_file,
            dir.path().join("etc/abssctl/config.yml")
        );
        assert_eq!(c.layout.state_dir, PathBuf::from("/under-prefix"));

        let c = load(dir.path(), Some(under), &env, Overrides::default()).unwrap();
        assert_eq!(c.layout.config_file, other);
        assert_eq!(c.layout.state_dir, PathBuf::from("/other"));

        let flag = dir.path().join("flag.yml");
        let over = Overrides {
            config_file: Some(flag.clone()),
            ..Overrides::default()
        };
        // A missing file is all defaults, still re-rooted under the prefix.
        let c = load(dir.path(), Some(under), &env, over).unwrap();
        assert_eq!(c.layout.config_file, flag);
        assert_eq!(c.layout.state_dir, dir.path().join("var/lib/abssctl"));
    }
}
