//! Configuration and the path layout derived from it.
//!
//! Precedence, lowest first: built-in defaults (re-rooted under `--prefix`), the
//! YAML config file (the Python tool's keys, SPEC §3), `ABSSCTL_*` environment
//! variables, command-line flags. Every path the daemon touches is derived here and
//! nowhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use abssd_proto::{Compression, Consistency};
use serde_json::Value;

use crate::error::{Error, Result};

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
    /// Longest wait for any lock.
    pub lock_timeout: Duration,
    /// The account instances run as (kept for the Python tool; informational here).
    pub service_user: Option<String>,
    /// Backups root: archives live in `<root>/<instance>/`.
    pub backups_root: PathBuf,
    /// The backup index file.
    pub index_file: PathBuf,
    /// Compression when a request says `auto`.
    pub default_compression: Compression,
    /// Level when a request gives none.
    pub default_level: Option<i32>,
    /// systemd unit directory.
    pub unit_dir: PathBuf,
    /// nginx `sites-available`.
    pub sites_available: PathBuf,
    /// nginx `sites-enabled`.
    pub sites_enabled: PathBuf,
    /// The nginx config check, argv form.
    pub nginx_test_command: Vec<String>,
    /// The unit reloaded after a site changed (`nginx.service`).
    pub nginx_unit: String,
    /// D-Bus address of systemd's bus; `None` = the system bus
    /// (`DBUS_SYSTEM_BUS_ADDRESS`, else the well-known socket).
    pub bus_address: Option<String>,
    /// Where `restore --dest` may write besides the instance root
    /// (default: `restores/` beside the backups root).
    pub restores_root: PathBuf,
    /// The Unix socket served.
    pub socket: PathBuf,
    /// Group whose members may mutate.
    pub operator_group: String,
    /// Group owning the socket (who may connect at all); default the operator group.
    pub socket_group: String,
    /// Most simultaneous connections (`daemon.max_connections`).
    pub max_connections: u32,
    /// Most simultaneous connections of one uid other than root and the daemon's
    /// own (`daemon.max_connections_per_uid`), so one peer cannot take every slot.
    pub max_connections_per_uid: u32,
    /// Connections only root and operators may use (`daemon.reserved_connections`):
    /// an operator can always connect while readers fill the rest.
    pub reserved_connections: u32,
    /// Largest request body accepted.
    pub max_request_bytes: u32,
    /// Largest response (`daemon.max_response_bytes`).
    pub max_response_bytes: u32,
    /// Requests in one JSON-RPC batch (`daemon.max_batch`).
    pub max_batch: u32,
    /// Calls of one connection being answered at once (`daemon.max_calls_per_connection`);
    /// beyond it the daemon stops reading that connection until one is answered.
    pub max_calls_per_connection: u32,
    /// Answers and notifications queued for one WebSocket connection
    /// (`daemon.message_buffer`); a full queue stops reading that connection.
    pub message_buffer: u32,
    /// A connection whose answers cannot be written for this long is closed
    /// (`daemon.send_timeout`): a client that sends but never reads is dropped.
    pub send_timeout: Duration,
    /// Operations one non-operator uid may have running (`daemon.max_operations_per_reader`).
    pub max_operations_per_reader: u32,
    /// `operations.jsonl` is rotated to `operations.jsonl.1` once it reaches this
    /// size (`daemon.operations_log_max_bytes`).
    pub oplog_max_bytes: u64,
    /// Bytes of holes (a file's size beyond its allocated blocks) one create
    /// archives; sparse files beyond it are left out with a warning
    /// (`daemon.max_sparse_hole_bytes`, default 1 GiB).
    pub max_sparse_hole_bytes: u64,
    /// When socket-activated: exit after this long with no connection and no
    /// running operation (`daemon.idle_timeout`; zero: never).
    pub idle_timeout: Duration,
    /// On SIGTERM/SIGINT: how long running operations may take to end before
    /// the daemon exits anyway (`daemon.stop_timeout`, default 120 s; keep it
    /// 10 s below the unit's `TimeoutStopSec=`).
    pub stop_timeout: Duration,
    /// Most tar entries a restore extracts, an adoption or a verify reads
    /// (`daemon.max_restore_entries`).
    pub max_restore_entries: u64,
    /// Percent of the staging filesystem's size a restore leaves free, at most
    /// 1 GiB (`daemon.restore_reserve_percent`).
    pub restore_reserve_percent: u8,
    /// How `backup create` reads a running instance when the request does not
    /// say (`daemon.consistency`: `snapshot`, `stop` or `none`; default `snapshot`).
    pub consistency: Consistency,
    /// Non-fatal findings (unknown keys), logged at start.
    pub warnings: Vec<String>,
}

/// The longest duration any setting takes (about 31 years): beyond it a
/// `Duration` from the value could not even be made.
const MAX_SECONDS: f64 = 1e9;
/// The longest `daemon.stop_timeout`: a stop that waits longer is a hang.
const MAX_STOP_TIMEOUT: f64 = 3600.0;
/// Default of `daemon.max_restore_entries`.
pub const DEFAULT_MAX_RESTORE_ENTRIES: u64 = 1_000_000;
/// Default of `daemon.restore_reserve_percent`.
pub const DEFAULT_RESTORE_RESERVE_PERCENT: u8 = 5;

/// Top-level keys this project understands; anything else is kept and warned about.
const KNOWN_KEYS: &[&str] = &[
    "instance_root",
    "state_dir",
    "registry_dir",
    "logs_dir",
    "runtime_dir",
    "lock_timeout",
    "service_user",
    "backups",
    "systemd",
    "nginx",
    "daemon",
    // Python tool keys that the daemon does not use.
    "templates_dir",
    "ports",
    "tls",
    "node",
    "versions",
    "npm",
];

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
        let root = |p: &str| rerooted(over.prefix.as_deref(), p);
        let config_file = over
            .config_file
            .clone()
            .or_else(|| env.get("ABSSCTL_CONFIG_FILE").map(PathBuf::from))
            .unwrap_or_else(|| root("/etc/abssctl/config.yml"));
        let file = read_file(&config_file)?;
        let f = FileView {
            file: &config_file,
            value: &file,
        };
        let mut warnings = Vec::new();
        if let Value::Object(map) = &file {
            for key in map.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())) {
                warnings.push(format!(
                    "{}: unknown key {key:?} ignored",
                    config_file.display()
                ));
            }
        }

        // One resolution rule for every setting: flag > env > file > default.
        let path = |key: &str, env_key: &str, default: PathBuf| -> Result<PathBuf> {
            if let Some(v) = env.get(env_key) {
                return Ok(PathBuf::from(v));
            }
            Ok(f.path(key)?.unwrap_or(default))
        };
        let instance_root = path("instance_root", "ABSSCTL_INSTANCE_ROOT", root("/srv"))?;
        let state_dir = path("state_dir", "ABSSCTL_STATE_DIR", root("/var/lib/abssctl"))?;
        let registry_dir = path(
            "registry_dir",
            "ABSSCTL_REGISTRY_DIR",
            state_dir.join("registry"),
        )?;
        let logs_dir = path("logs_dir", "ABSSCTL_LOGS_DIR", root("/var/log/abssctl"))?;
        let runtime_dir = path("runtime_dir", "ABSSCTL_RUNTIME_DIR", root("/run/abssctl"))?;
        let backups_root = path("backups.root", "ABSSCTL_BACKUPS_ROOT", root("/srv/backups"))?;
        let index_file = path(
            "backups.index",
            "ABSSCTL_BACKUPS_INDEX",
            backups_root.join("backups.json"),
        )?;
        let unit_dir = path(
            "systemd.unit_dir",
            "ABSSCTL_UNIT_DIR",
            root("/etc/systemd/system"),
        )?;
        let sites_available = path(
            "nginx.sites_available",
            "ABSSCTL_NGINX_SITES_AVAILABLE",
            root("/etc/nginx/sites-available"),
        )?;
        let sites_enabled = path(
            "nginx.sites_enabled",
            "ABSSCTL_NGINX_SITES_ENABLED",
            root("/etc/nginx/sites-enabled"),
        )?;
        let restores_root = path(
            "backups.restores_root",
            "ABSSCTL_RESTORES_ROOT",
            backups_root
                .parent()
                .unwrap_or(&backups_root)
                .join("restores"),
        )?;
        let socket = match &over.socket {
            Some(s) => s.clone(),
            None => path(
                "daemon.socket",
                "ABSSCTL_SOCKET",
                runtime_dir.join("abssd.sock"),
            )?,
        };

        let lock_timeout = match env.get("ABSSCTL_LOCK_TIMEOUT") {
            Some(v) => parse_seconds(v).ok_or_else(|| {
                Error::Environment(format!(
                    "environment variable ABSSCTL_LOCK_TIMEOUT={v:?} is not a number of seconds"
                ))
            })?,
            None => f.seconds("lock_timeout")?.unwrap_or(30.0),
        };
        let default_compression = match f.string("backups.compression.algorithm")? {
            None => Compression::Auto,
            Some(s) => serde_json::from_value(Value::String(s.clone())).map_err(|_| {
                f.bad(
                    "backups.compression.algorithm",
                    "one of auto, zstd, gzip, none",
                    &s,
                )
            })?,
        };
        let default_level = f.int("backups.compression.level")?.map(|l| l as i32);
        let nginx_test_command = match f.get("nginx.test_command") {
            None | Some(Value::Null) => vec!["nginx".to_owned(), "-t".to_owned()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| f.bad("nginx.test_command", "a list of strings", items))?,
            Some(other) => return Err(f.bad("nginx.test_command", "a list of strings", other)),
        };
        let nginx_unit = f
            .string("nginx.service")?
            .unwrap_or_else(|| "nginx.service".to_owned());
        let bus_address = over
            .bus_address
            .clone()
            .map(Ok)
            .or_else(|| f.string("systemd.bus_address").transpose())
            .transpose()?;
        let operator_group = over
            .operator_group
            .clone()
            .or_else(|| env.get("ABSSCTL_OPERATOR_GROUP").cloned())
            .map(Ok)
            .or_else(|| f.string("daemon.operator_group").transpose())
            .transpose()?
            .unwrap_or_else(|| "abssctl".to_owned());
        let socket_group = f
            .string("daemon.socket_group")?
            .unwrap_or_else(|| operator_group.clone());
        let max_connections = f.count("daemon.max_connections", 64, 1)?;
        let max_connections_per_uid = f.count("daemon.max_connections_per_uid", 16, 1)?;
        let reserved_connections = f
            .count("daemon.reserved_connections", 16, 0)?
            .min(max_connections.saturating_sub(1));
        let max_request_bytes = f.count("daemon.max_request_bytes", 1 << 20, 1024)?;
        let max_response_bytes = f.count("daemon.max_response_bytes", 16 << 20, 64 << 10)?;
        let max_batch = f.count("daemon.max_batch", abssd_proto::limits::BATCH, 1)?;
        let max_calls_per_connection = f.count("daemon.max_calls_per_connection", 16, 1)?;
        let message_buffer = f.count("daemon.message_buffer", 16, 1)?;
        let send_timeout = f.seconds("daemon.send_timeout")?.unwrap_or(10.0).max(0.1);
        let max_operations_per_reader = f.count("daemon.max_operations_per_reader", 2, 0)?;
        let oplog_max_bytes =
            u64::from(f.count("daemon.operations_log_max_bytes", 64 << 20, 64 << 10)?);
        let idle_timeout = f.seconds("daemon.idle_timeout")?.unwrap_or(300.0);
        let stop_timeout = f.seconds("daemon.stop_timeout")?.unwrap_or(120.0);
        if stop_timeout > MAX_STOP_TIMEOUT {
            return Err(f.bad(
                "daemon.stop_timeout",
                &format!("at most {MAX_STOP_TIMEOUT} seconds"),
                stop_timeout,
            ));
        }
        let max_restore_entries = match f.int("daemon.max_restore_entries")? {
            None => DEFAULT_MAX_RESTORE_ENTRIES,
            Some(n) if n >= 1 => n as u64,
            Some(n) => return Err(f.bad("daemon.max_restore_entries", "an integer ≥ 1", n)),
        };
        let restore_reserve_percent = match f.int("daemon.restore_reserve_percent")? {
            None => DEFAULT_RESTORE_RESERVE_PERCENT,
            Some(n) if (0..=50).contains(&n) => n as u8,
            Some(n) => {
                return Err(f.bad(
                    "daemon.restore_reserve_percent",
                    "an integer from 0 to 50",
                    n,
                ));
            }
        };
        let consistency = match f.string("daemon.consistency")? {
            None => Consistency::default(),
            Some(s) => serde_json::from_value(Value::String(s.clone()))
                .map_err(|_| f.bad("daemon.consistency", "one of snapshot, stop, none", &s))?,
        };
        let max_sparse_hole_bytes = match f.int("daemon.max_sparse_hole_bytes")? {
            None => 1 << 30,
            Some(n) => u64::try_from(n).map_err(|_| {
                f.bad(
                    "daemon.max_sparse_hole_bytes",
                    "a number of bytes, 0 or more",
                    n,
                )
            })?,
        };

        Ok(Config {
            config_file: config_file.clone(),
            instance_root,
            state_dir,
            registry_dir,
            logs_dir,
            runtime_dir,
            lock_timeout: Duration::from_secs_f64(lock_timeout),
            service_user: f.string("service_user")?,
            backups_root,
            index_file,
            default_compression,
            default_level,
            unit_dir,
            sites_available,
            sites_enabled,
            nginx_test_command,
            nginx_unit,
            bus_address,
            restores_root,
            socket,
            operator_group,
            socket_group,
            max_connections,
            max_connections_per_uid,
            reserved_connections,
            max_request_bytes,
            max_response_bytes,
            max_batch,
            max_calls_per_connection,
            message_buffer,
            send_timeout: Duration::from_secs_f64(send_timeout),
            max_operations_per_reader,
            oplog_max_bytes,
            max_sparse_hole_bytes,
            idle_timeout: Duration::from_secs_f64(idle_timeout),
            stop_timeout: Duration::from_secs_f64(stop_timeout),
            max_restore_entries,
            restore_reserve_percent,
            consistency,
            warnings,
        })
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
            ("sites_available", show(&self.sites_available)),
            ("sites_enabled", show(&self.sites_enabled)),
            ("restores_root", show(&self.restores_root)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
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
fn rerooted(prefix: Option<&Path>, default: &str) -> PathBuf {
    match prefix {
        Some(p) => p.join(default.trim_start_matches('/')),
        None => PathBuf::from(default),
    }
}

fn parse_seconds(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Read the config file as an untyped tree; a missing file means "all defaults".
fn read_file(path: &Path) -> Result<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Value::Null),
        Err(source) => {
            return Err(Error::Io {
                action: "reading config",
                path: path.into(),
                source,
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let value: Value = serde_saphyr::from_str(&text).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        format: "YAML",
        message: e.to_string().lines().next().unwrap_or_default().to_owned(),
    })?;
    match value {
        Value::Object(_) | Value::Null => Ok(value),
        other => Err(Error::Environment(format!(
            "{}: expected a mapping of settings at the top level, found {}",
            path.display(),
            type_name(&other)
        ))),
    }
}

/// Typed access to dotted keys of the config file, with errors naming key and file.
struct FileView<'a> {
    file: &'a Path,
    value: &'a Value,
}

impl FileView<'_> {
    fn get(&self, dotted: &str) -> Option<&Value> {
        dotted.split('.').try_fold(self.value, |v, k| v.get(k))
    }

    fn bad(&self, key: &str, expected: &str, got: impl std::fmt::Debug) -> Error {
        Error::Environment(format!(
            "{}: key {key:?} must be {expected}, found {got:?}",
            self.file.display()
        ))
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(key, "a non-empty string", other)),
        }
    }

    fn path(&self, key: &str) -> Result<Option<PathBuf>> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
            Some(s) => Err(self.bad(key, "an absolute path", s)),
        }
    }

    fn seconds(&self, key: &str) -> Result<Option<f64>> {
        let expected = format!("a number of seconds from 0 to {MAX_SECONDS}");
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| (0.0..=MAX_SECONDS).contains(v))
                .map(Some)
                .ok_or_else(|| self.bad(key, &expected, n)),
            Some(Value::String(s)) => parse_seconds(s)
                .filter(|v| *v <= MAX_SECONDS)
                .map(Some)
                .ok_or_else(|| self.bad(key, &expected, s)),
            Some(other) => Err(self.bad(key, "a number of seconds", other)),
        }
    }

    /// A whole number of at least `min` (and at most `u32::MAX`), else `default`.
    fn count(&self, key: &str, default: u32, min: u32) -> Result<u32> {
        match self.int(key)? {
            None => Ok(default),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| self.bad(key, &format!("a whole number ≥ {min}"), n)),
        }
    }

    fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(other) => Err(self.bad(key, "an integer", other)),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.instance_root, dir.path().join("srv"));
        assert_eq!(
            c.registry_file(),
            dir.path().join("var/lib/abssctl/registry/instances.yml")
        );
        assert_eq!(c.index_file, dir.path().join("srv/backups/backups.json"));
        assert_eq!(c.socket, dir.path().join("run/abssctl/abssd.sock"));
        assert_eq!(
            c.site_link("a"),
            dir.path().join("etc/nginx/sites-enabled/abssctl-a.conf")
        );
        assert_eq!(c.lock_timeout, Duration::from_secs(30));
        assert_eq!(c.operator_group, "abssctl");
        assert_eq!(c.max_restore_entries, 1_000_000);
        assert_eq!(c.restore_reserve_percent, 5);
    }

    #[test]
    fn restore_limits_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = "daemon:\n  max_restore_entries: 10\n  restore_reserve_percent: 0\n";
        let c = load(dir.path(), Some(file), &[], Overrides::default()).unwrap();
        assert_eq!((c.max_restore_entries, c.restore_reserve_percent), (10, 0));
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
        assert_eq!(c.state_dir, PathBuf::from("/data/state"));
        // Derived defaults follow the key they derive from.
        assert_eq!(c.registry_dir, PathBuf::from("/data/state/registry"));
        assert_eq!(c.index_file, PathBuf::from("/data/backups/backups.json"));
        assert_eq!(c.lock_timeout, Duration::from_secs(5));

        let env = [
            ("ABSSCTL_STATE_DIR", "/env/state"),
            ("ABSSCTL_LOCK_TIMEOUT", "1.5"),
        ];
        let c = load(dir.path(), Some(file), &env, Overrides::default()).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/env/state"));
        assert_eq!(c.lock_timeout, Duration::from_millis(1500));

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
        assert_eq!(c.socket, PathBuf::from("/flag/sock"));
        assert_eq!(c.operator_group, "flaggrp");
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
        assert_eq!(c.service_user.as_deref(), Some("actual"));
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("frobnicate"));
    }
}
