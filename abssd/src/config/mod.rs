//! Configuration and the path layout derived from it.
//!
//! Two files: `/etc/abssctl/config.yml` holds the Python tool's keys (SPEC §3;
//! abssd reads the ones it shares, one truth for both tools), and abssd's own
//! `/etc/abssctl/abssd.yml` holds the keys only abssd reads
//! ([`file::ABSSD_ONLY`]: `daemon:`, `nginx:`, `health:`, `hooks:`, `backups.restores_root`,
//! `backups.max_age`, `systemd.bus_address`). Precedence, lowest first: built-in defaults
//! (re-rooted under `--prefix`), `config.yml`, `abssd.yml`, the Python tool's
//! `ABSSCTL_<A>__<B>` variables (its own names and nesting, [`env`]), abssd's
//! `ABSSD_*` variables, command-line flags. Each source is a [`Layer`] of one
//! shape, the serde model of the file ([`ConfigFile`]); layers merge key by
//! key, and the merged settings resolve into the [`Config`] the daemon runs
//! with: its paths ([`Layout`], every path the daemon touches is derived there
//! and nowhere else) and where each came from, its own settings
//! ([`DaemonSettings`]) and the host services it drives ([`Services`]).
//!
//! Old spellings are read for one release with a warning: abssd's keys in
//! `config.yml` (the Python tool refuses them there) and the flat `ABSSCTL_*`
//! names of [`env::DEPRECATED`].
//!
//! Layout:
//! * [`file`]     — the file's serde model: sections, checked values, unknown keys, merging.
//! * [`env`]      — the environment's variables as layers.
//! * [`layout`]   — the paths, and `--prefix`.
//! * [`settings`] — the daemon's settings and the services', with their defaults.
//! * `value`      — the checked values the file's fields are read as.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Result;

pub mod env;
pub mod file;
pub mod layout;
mod merge;
pub mod remotes;
pub mod retention;
pub mod settings;
mod value;

pub use file::{ConfigFile, Layer, Merge, Source};
pub use layout::{Layout, site_name, unit_name};
pub use remotes::{CredentialSource, Endpoint, RemoteSettings, Remotes};
pub use settings::{
    DEFAULT_MAX_RESTORE_ENTRIES, DEFAULT_PRE_RESTORE_MIN_AGE, DEFAULT_RESTORE_RESERVE_PERCENT,
    DaemonSettings, HookSettings, JobSettings, Retention, Services,
};
pub use value::{PingUrl, restic_span};

/// What the command line (or a test) asks for, before the files and env are read.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--prefix`: re-root every default path.
    pub prefix: Option<PathBuf>,
    /// `--config`: the Python tool's file.
    pub config_file: Option<PathBuf>,
    /// `--abssd-config`: abssd's own file.
    pub abssd_config_file: Option<PathBuf>,
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
    /// abssd's own file read (it may not exist).
    pub abssd_config_file: PathBuf,
    /// Where each path of [`Layout::paths`] (and `socket`) came from, by role:
    /// shown by `daemon status`, so an operator can tell which setting to change.
    pub origins: BTreeMap<String, String>,
    /// How the daemon behaves: groups, limits, timeouts, defaults.
    pub daemon: DaemonSettings,
    /// The host services it drives: systemd, nginx.
    pub services: Services,
    /// The buckets that hold off-host copies (`remotes:`).
    pub remotes: Remotes,
    /// Non-fatal findings (unknown keys, deprecated spellings), logged at start
    /// and shown by `daemon status`.
    pub warnings: Vec<String>,
}

impl Config {
    /// Resolve from defaults, the config files, the process environment and flags.
    pub fn load(over: &Overrides) -> Result<Config> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("ABSSCTL_") || k.starts_with("ABSSD_"))
            .collect();
        Config::load_with_env(over, &env)
    }

    /// [`Config::load`] with an explicit environment (tests).
    pub fn load_with_env(over: &Overrides, env: &BTreeMap<String, String>) -> Result<Config> {
        let prefix = over.prefix.as_deref();
        let config_file = over
            .config_file
            .clone()
            .or_else(|| env.get("ABSSCTL_CONFIG_FILE").map(PathBuf::from))
            .unwrap_or_else(|| layout::rerooted(prefix, "/etc/abssctl/config.yml"));
        let abssd_file = over
            .abssd_config_file
            .clone()
            .or_else(|| env.get("ABSSD_CONFIG_FILE").map(PathBuf::from))
            .unwrap_or_else(|| layout::rerooted(prefix, "/etc/abssctl/abssd.yml"));
        let mut warnings = Vec::new();
        let shared = ConfigFile::read_split(&config_file)?;
        for key in &shared.own_keys {
            warnings.push(format!(
                "{}: key {key:?} is abssd's own setting, which the Python abssctl refuses: \
                 move it to {} (deprecated in config.yml, still read in this release)",
                config_file.display(),
                abssd_file.display()
            ));
        }
        let own = ConfigFile::read_split(&abssd_file)?;
        if !own.shared_keys.is_empty() {
            warnings.push(format!(
                "{}: {} ignored: the settings the Python abssctl knows are read from {} only, \
                 so that both tools use the same ones",
                abssd_file.display(),
                own.shared_keys.join(", "),
                config_file.display()
            ));
        }
        let (env_layers, env_warnings) = env::layers(env)?;
        warnings.extend(env_warnings);
        let layers = [
            Layer {
                source: Source::File(config_file.clone()),
                settings: shared.shared.merge(shared.own),
            },
            Layer {
                source: Source::File(abssd_file.clone()),
                settings: own.own,
            },
        ]
        .into_iter()
        .chain(env_layers)
        .chain([Layer {
            source: Source::Flags,
            settings: from_flags(over),
        }]);
        let mut config = Config::resolve(prefix, config_file, layers)?;
        config.abssd_config_file = abssd_file;
        warnings.append(&mut config.warnings);
        config.warnings = warnings;
        Ok(config)
    }

    /// Merge `layers` (lowest first) and fill in the defaults; refused when
    /// a remote is incomplete (its keys may come from several layers, so it
    /// is checked once they are merged).
    pub fn resolve(
        prefix: Option<&Path>,
        config_file: PathBuf,
        layers: impl IntoIterator<Item = Layer>,
    ) -> Result<Config> {
        let mut warnings = Vec::new();
        let mut merged = ConfigFile::default();
        let mut set_by = BTreeMap::new();
        for layer in layers {
            if let Source::File(path) = &layer.source {
                // abssd only warns, but the Python tool will not run on the
                // shared file while it holds a key it does not know.
                let python = if *path == config_file {
                    " (the Python abssctl refuses to run while it is in this file)"
                } else {
                    ""
                };
                for key in layer.settings.unknown_keys() {
                    warnings.push(format!(
                        "{}: unknown key {key:?} ignored{python}",
                        path.display()
                    ));
                }
            }
            for role in layout::roles_set(&layer.settings) {
                set_by.insert(role, layer.source.clone());
            }
            merged = merged.merge(layer.settings);
        }
        let abssd_config_file = layout::rerooted(prefix, "/etc/abssctl/abssd.yml");
        let remotes = Remotes::resolve(&merged.remotes).map_err(crate::Error::Validation)?;
        warnings.extend(remotes.warnings());
        Ok(Config {
            layout: Layout::resolve(prefix, config_file, &merged),
            abssd_config_file,
            origins: layout::origins(&set_by),
            daemon: DaemonSettings::resolve(&merged),
            services: Services::resolve(&merged),
            remotes,
            warnings,
        })
    }
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
            dir.path()
                .join("run/abssctl/nginx/sites-enabled/abssctl-a.conf")
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
        .map(|k| {
            format!(
                "{}: unknown key {k:?} ignored (the Python abssctl refuses to run while it is \
                 in this file)",
                path.display()
            )
        })
        .collect();
        let unknown: Vec<String> = c
            .warnings
            .iter()
            .filter(|w| w.contains("unknown key"))
            .cloned()
            .collect();
        assert_eq!(unknown, want);
        // The known keys beside them were read.
        assert_eq!(c.daemon.max_batch, 4);
        assert_eq!(c.layout.unit_dir, PathBuf::from("/u"));
        assert_eq!(c.daemon.default_level, Some(3));

        // In abssd's own file an unknown key troubles only abssd.
        let c = load_both(
            dir.path(),
            "",
            "daemon: {max_batches: 5}\n",
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.warnings,
            [format!(
                "{}: unknown key \"daemon.max_batches\" ignored",
                dir.path().join("etc/abssctl/abssd.yml").display()
            )]
        );
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

    /// `load` with abssd's own file beside config.yml.
    fn load_both(
        prefix: &Path,
        config: &str,
        abssd: &str,
        env: &[(&str, &str)],
        over: Overrides,
    ) -> Result<Config> {
        std::fs::create_dir_all(prefix.join("etc/abssctl")).unwrap();
        std::fs::write(prefix.join("etc/abssctl/abssd.yml"), abssd).unwrap();
        load(prefix, Some(config), env, over)
    }

    #[test]
    fn abssd_yml_holds_abssds_own_keys_above_config_yml_and_shared_keys_there_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let abssd = "daemon: {socket: /own/sock, max_batch: 3}\nnginx: {sites_enabled: /own/en}\n\
                     backups: {restores_root: /own/r, root: /own/b}\nlock_timeout: 9\n\
                     systemd: {bus_address: 'unix:path=/own/bus'}\n";
        let config = "backups: {root: /cfg/b}\nlock_timeout: 4\n";
        let c = load_both(dir.path(), config, abssd, &[], Overrides::default()).unwrap();
        assert_eq!(c.layout.socket, PathBuf::from("/own/sock"));
        assert_eq!(c.daemon.max_batch, 3);
        assert_eq!(c.layout.sites_enabled, PathBuf::from("/own/en"));
        assert_eq!(c.layout.restores_root, PathBuf::from("/own/r"));
        assert_eq!(
            c.services.bus_address.as_deref(),
            Some("unix:path=/own/bus")
        );
        // One truth for what both tools read: config.yml's.
        assert_eq!(c.layout.backups_root, PathBuf::from("/cfg/b"));
        assert_eq!(c.daemon.lock_timeout, Duration::from_secs(4));
        let own = dir.path().join("etc/abssctl/abssd.yml");
        assert_eq!(c.abssd_config_file, own);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with(&format!(
                "{}: backups.root, lock_timeout ignored",
                own.display()
            )),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn abssds_keys_in_config_yml_are_read_below_abssd_yml_with_a_deprecation_warning() {
        let dir = tempfile::tempdir().unwrap();
        let config = "daemon: {socket: /old/sock, operator_group: oldgrp}\n\
                      nginx: {test_command: [/bin/true]}\nbackups: {root: /b, restores_root: /old/r}\n\
                      systemd: {unit_dir: /u, bus_address: 'unix:path=/old/bus'}\n";
        let c = load_both(
            dir.path(),
            config,
            "daemon: {socket: /own/sock}\n",
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.layout.socket, PathBuf::from("/own/sock"));
        assert_eq!(c.daemon.operator_group, "oldgrp");
        assert_eq!(c.services.nginx_test_command, ["/bin/true"]);
        assert_eq!(c.layout.restores_root, PathBuf::from("/old/r"));
        assert_eq!(
            c.services.bus_address.as_deref(),
            Some("unix:path=/old/bus")
        );
        let keys: Vec<&str> = c
            .warnings
            .iter()
            .filter(|w| w.contains("deprecated in config.yml") && w.contains("abssd.yml"))
            .filter_map(|w| w.split('"').nth(1))
            .collect();
        assert_eq!(
            keys,
            [
                "daemon",
                "nginx",
                "backups.restores_root",
                "systemd.bus_address"
            ]
        );
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        // A config.yml of the Python tool's keys only warns of nothing.
        let c = load_both(
            dir.path(),
            "backups: {root: /b}\n",
            "",
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn python_variables_nest_coerce_and_leave_reserved_and_abssd_keys_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("ABSSCTL_BACKUPS__ROOT", "/py/b"),
            ("ABSSCTL_BACKUPS__COMPRESSION__LEVEL", "0x3"),
            ("ABSSCTL_BACKUPS__COMPRESSION__ALGORITHM", "gzip"),
            ("ABSSCTL_SYSTEMD__UNIT_DIR", " /py/units "),
            ("ABSSCTL_LOCK_TIMEOUT", "1_5"),
            ("ABSSCTL_RUNTIME_DIR", "/py/run"),
            ("ABSSCTL_SKIP_NPM", "1"),
            ("ABSSCTL_VERSIONS_CACHE", "/whatever"),
            ("ABSSCTL_PORTS__BASE", "6000"),
            ("ABSSCTL_DAEMON__SOCKET", "/py/sock"),
            ("ABSSCTL_NGINX__SITES_ENABLED", "/py/en"),
            ("ABSSCTL_FROBNICATE", "1"),
        ];
        let c = load(
            dir.path(),
            Some("backups: {root: /cfg/b}\n"),
            &env,
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.layout.backups_root, PathBuf::from("/py/b"));
        assert_eq!(c.layout.index_file, PathBuf::from("/py/b/backups.json"));
        assert_eq!(c.daemon.default_level, Some(3));
        assert_eq!(c.daemon.default_compression, abssd_proto::Compression::Gzip);
        assert_eq!(c.layout.unit_dir, PathBuf::from("/py/units"));
        assert_eq!(c.daemon.lock_timeout, Duration::from_secs(15));
        // abssd's own keys through the Python tool's names: not read (it refuses them).
        assert_eq!(c.layout.socket, PathBuf::from("/py/run/abssd.sock"));
        assert_eq!(
            c.layout.sites_enabled,
            PathBuf::from("/py/run/nginx/sites-enabled")
        );
        let w = c.warnings.join("\n");
        assert_eq!(c.warnings.len(), 3, "{w}");
        assert!(
            w.contains("ABSSCTL_DAEMON__SOCKET ignored: daemon is abssd's own")
                && w.contains("ABSSCTL_NGINX__SITES_ENABLED ignored: nginx is abssd's own")
                && w.contains("ABSSCTL_FROBNICATE: unknown key \"frobnicate\""),
            "{w}"
        );

        // A bad value names its variable; a scalar where the Python tool nests
        // is refused as it would be.
        for (name, value, says) in [
            ("ABSSCTL_BACKUPS__ROOT", "relative", "absolute"),
            ("ABSSCTL_LOCK_TIMEOUT", "yes", "seconds"),
            ("ABSSCTL_BACKUPS", "/b", "mapping"),
        ] {
            let err = load(dir.path(), None, &[(name, value)], Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("environment variable {name}: key")) && err.contains(says),
                "{err}"
            );
        }
    }

    #[test]
    fn old_flat_variables_are_read_below_their_new_names_with_a_deprecation_warning() {
        let dir = tempfile::tempdir().unwrap();
        let old = [
            ("ABSSCTL_SOCKET", "/old/sock"),
            ("ABSSCTL_OPERATOR_GROUP", "oldgrp"),
            ("ABSSCTL_RESTORES_ROOT", "/old/r"),
            ("ABSSCTL_NGINX_SITES_AVAILABLE", "/old/av"),
            ("ABSSCTL_NGINX_SITES_ENABLED", "/old/en"),
            ("ABSSCTL_BACKUPS_ROOT", "/old/b"),
            ("ABSSCTL_BACKUPS_INDEX", "/old/i.json"),
            ("ABSSCTL_UNIT_DIR", "/old/u"),
        ];
        let c = load(dir.path(), None, &old, Overrides::default()).unwrap();
        let p = c.layout.paths();
        for role in [
            "restores_root",
            "sites_available",
            "sites_enabled",
            "backups_root",
            "index",
            "unit_dir",
        ] {
            assert!(p[role].starts_with("/old/"), "{role}: {p:?}");
        }
        assert_eq!(c.layout.socket, PathBuf::from("/old/sock"));
        assert_eq!(c.daemon.operator_group, "oldgrp");
        assert_eq!(c.warnings.len(), old.len(), "{:?}", c.warnings);
        let w = c.warnings.join("\n");
        assert!(
            w.contains(
                "environment variable ABSSCTL_BACKUPS_ROOT is deprecated (still read in this \
                 release): use ABSSCTL_BACKUPS__ROOT; the Python abssctl reads it as a top-level \
                 key \"backups_root\" and refuses to run while it is set"
            ) && w.contains(
                "ABSSCTL_SOCKET is deprecated (still read in this release): use ABSSD_SOCKET"
            ),
            "{w}"
        );

        let new = [
            ("ABSSD_SOCKET", "/new/sock"),
            ("ABSSD_OPERATOR_GROUP", "newgrp"),
            ("ABSSD_RESTORES_ROOT", "/new/r"),
            ("ABSSD_NGINX_SITES_AVAILABLE", "/new/av"),
            ("ABSSD_NGINX_SITES_ENABLED", "/new/en"),
            ("ABSSCTL_BACKUPS__ROOT", "/new/b"),
            ("ABSSCTL_BACKUPS__INDEX", "/new/i.json"),
            ("ABSSCTL_SYSTEMD__UNIT_DIR", "/new/u"),
        ];
        let both: Vec<_> = old.iter().chain(&new).copied().collect();
        let c = load(dir.path(), None, &both, Overrides::default()).unwrap();
        let p = c.layout.paths();
        for role in [
            "restores_root",
            "sites_available",
            "sites_enabled",
            "backups_root",
            "index",
            "unit_dir",
        ] {
            assert!(p[role].starts_with("/new/"), "{role}: {p:?}");
        }
        assert_eq!(c.layout.socket, PathBuf::from("/new/sock"));
        assert_eq!(c.daemon.operator_group, "newgrp");
        let c = load(dir.path(), None, &new, Overrides::default()).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn every_path_says_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("etc/abssctl/config.yml");
        let own = dir.path().join("etc/abssctl/abssd.yml");
        let c = load_both(
            dir.path(),
            "state_dir: /f/state\nbackups: {root: /f/b}\n",
            "nginx: {sites_available: /o/av}\n",
            &[
                ("ABSSCTL_RUNTIME_DIR", "/e/run"),
                ("ABSSCTL_BACKUPS__INDEX", "/e/i.json"),
                ("ABSSD_RESTORES_ROOT", "/e/r"),
            ],
            Overrides {
                socket: Some("/flag/sock".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        let o = |role: &str| c.origins[role].clone();
        assert_eq!(o("instance_root"), "default");
        assert_eq!(o("state_dir"), format!("file {}", cfg.display()));
        assert_eq!(
            o("registry"),
            format!("default under state_dir (file {})", cfg.display())
        );
        assert_eq!(o("operations_log"), "default");
        assert_eq!(o("backups_root"), format!("file {}", cfg.display()));
        assert_eq!(o("index"), "environment ABSSCTL_BACKUPS__INDEX");
        assert_eq!(o("restores_root"), "environment ABSSD_RESTORES_ROOT");
        assert_eq!(o("sites_available"), format!("file {}", own.display()));
        assert_eq!(
            o("sites_enabled"),
            "default under runtime_dir (environment ABSSCTL_RUNTIME_DIR)"
        );
        assert_eq!(
            o("unit_dir"),
            "default under runtime_dir (environment ABSSCTL_RUNTIME_DIR)"
        );
        assert_eq!(o("socket"), "command line");
        // Every path shown has its origin.
        let mut roles: Vec<String> = c.layout.paths().into_keys().collect();
        roles.push("socket".into());
        roles.sort();
        assert_eq!(c.origins.keys().cloned().collect::<Vec<_>>(), roles);
    }

    #[test]
    fn abssds_file_is_the_flag_else_its_variable_else_beside_config_yml_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let by_var = dir.path().join("var.yml");
        let by_flag = dir.path().join("flag.yml");
        std::fs::write(&by_var, "daemon: {socket: /var/sock}\n").unwrap();
        std::fs::write(&by_flag, "daemon: {socket: /flag/sock}\n").unwrap();
        let env = [("ABSSD_CONFIG_FILE", by_var.to_str().unwrap())];
        let c = load_both(
            dir.path(),
            "",
            "daemon: {socket: /d/sock}\n",
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.layout.socket, PathBuf::from("/d/sock"));
        let c = load_both(
            dir.path(),
            "",
            "daemon: {socket: /d/sock}\n",
            &env,
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (c.layout.socket, c.abssd_config_file),
            ("/var/sock".into(), by_var.clone())
        );
        let over = Overrides {
            abssd_config_file: Some(by_flag.clone()),
            ..Overrides::default()
        };
        let c = load_both(dir.path(), "", "daemon: {socket: /d/sock}\n", &env, over).unwrap();
        assert_eq!(
            (c.layout.socket, c.abssd_config_file),
            ("/flag/sock".into(), by_flag)
        );
    }
}
