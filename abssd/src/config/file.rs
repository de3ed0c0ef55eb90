//! The configuration file as a serde model: one struct per section, shaped like
//! the YAML (SPEC §3), every value optional (absent means "the next layer down
//! decides"), and a flattened map of unknown keys at each level.
//!
//! Values are checked as they are read, so a bad one is refused naming its file
//! and its dotted key, and nothing past here converts with `as`: a count that
//! is negative or beyond its type is an error, never a wrapped number.
//!
//! The same struct carries every layer of the configuration (the file, the
//! environment, the command line; see [`super::Layer`]): layers are merged with
//! [`Merge::merge`], the upper one winning key by key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use abssd_proto::{Compression, Consistency};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Map, Value};

pub use super::merge::{Merge, Unknown};
use super::remotes::RemotesSection;
pub use super::retention::RetentionSection;
use super::value::{
    MAX_HOOK_TIMEOUT, MAX_PING_TIMEOUT, MAX_SECONDS, MAX_STOP_TIMEOUT, PingUrl, absolute, age,
    command, count, hook_command, non_empty, ping_url, seconds, section, whole,
};
use crate::error::{Error, Result};

/// Where a layer of settings comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A configuration file.
    File(PathBuf),
    /// An environment variable (its name).
    Environment(String),
    /// Command-line flags.
    Flags,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Environment(v) => write!(f, "environment {v}"),
            Source::Flags => f.write_str("command line"),
        }
    }
}

/// One source's settings, checked as they were read. Every source has the
/// file's shape, and a value's source is the highest layer that sets it.
#[derive(Debug)]
pub struct Layer {
    /// Where they come from.
    pub source: Source,
    /// What it sets.
    pub settings: ConfigFile,
}

/// A struct of the file's model and its [`Merge`], field by field: a new
/// setting is a new field here and nothing else in this file.
macro_rules! layered {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Merge for $name {
            fn merge(self, upper: Self) -> Self {
                $name {
                    $( $field: Merge::merge(self.$field, upper.$field), )*
                }
            }
        }
    };
}

layered! {
    /// One layer of settings, shaped like `/etc/abssctl/config.yml`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct ConfigFile {
        /// `instance_root`: default instance data roots live here.
        #[serde(deserialize_with = "absolute")]
        pub instance_root: Option<PathBuf>,
        /// `state_dir`: daemon state (journal, registry by default).
        #[serde(deserialize_with = "absolute")]
        pub state_dir: Option<PathBuf>,
        /// `registry_dir`: holds `instances.yml`.
        #[serde(deserialize_with = "absolute")]
        pub registry_dir: Option<PathBuf>,
        /// `logs_dir`: holds `operations.jsonl`.
        #[serde(deserialize_with = "absolute")]
        pub logs_dir: Option<PathBuf>,
        /// `runtime_dir`: holds the lock files shared with the Python tool.
        #[serde(deserialize_with = "absolute")]
        pub runtime_dir: Option<PathBuf>,
        /// `lock_timeout`: longest wait for any lock.
        #[serde(deserialize_with = "seconds::<_, MAX_SECONDS>")]
        pub lock_timeout: Option<Duration>,
        /// `service_user`: the account instances run as.
        #[serde(deserialize_with = "non_empty")]
        pub service_user: Option<String>,
        /// `backups:`.
        #[serde(deserialize_with = "section")]
        pub backups: BackupsSection,
        /// `systemd:`.
        #[serde(deserialize_with = "section")]
        pub systemd: SystemdSection,
        /// `nginx:` (abssd's own).
        #[serde(deserialize_with = "section")]
        pub nginx: NginxSection,
        /// `daemon:` (abssd's own).
        #[serde(deserialize_with = "section")]
        pub daemon: DaemonSection,
        /// `health:` (abssd's own).
        #[serde(deserialize_with = "section")]
        pub health: HealthSection,
        /// `hooks:` (abssd's own): commands and monitoring pings around each
        /// instance's backup job.
        #[serde(deserialize_with = "section")]
        pub hooks: HooksSection,
        /// `remotes:` (abssd's own): the buckets that hold off-host copies.
        pub remotes: RemotesSection,
        /// The Python tool's keys that abssd does not read: known, so not warned
        /// about; the Python tool checks their values itself.
        #[serde(flatten)]
        pub python: PythonOnly,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// Top-level keys of the Python tool (its `config.py` defaults, and the
    /// sections older versions had) that abssd has no use for.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    #[allow(missing_docs)]
    pub struct PythonOnly {
        pub config_file: Option<IgnoredAny>,
        pub install_root: Option<IgnoredAny>,
        pub templates_dir: Option<IgnoredAny>,
        pub npm_package_name: Option<IgnoredAny>,
        pub reverse_proxy: Option<IgnoredAny>,
        pub default_version: Option<IgnoredAny>,
        pub node_compat_file: Option<IgnoredAny>,
        pub ports: Option<IgnoredAny>,
        pub tls: Option<IgnoredAny>,
        pub node: Option<IgnoredAny>,
        pub versions: Option<IgnoredAny>,
        pub npm: Option<IgnoredAny>,
    }
}

layered! {
    /// `backups:`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct BackupsSection {
        /// `backups.root`: archives live in `<root>/<instance>/`.
        #[serde(deserialize_with = "absolute")]
        pub root: Option<PathBuf>,
        /// `backups.index`: the backup index file.
        #[serde(deserialize_with = "absolute")]
        pub index: Option<PathBuf>,
        /// `backups.restores_root` (abssd's own): where `restore --dest` may write.
        #[serde(deserialize_with = "absolute")]
        pub restores_root: Option<PathBuf>,
        /// `backups.compression:`.
        #[serde(deserialize_with = "section")]
        pub compression: CompressionSection,
        /// `backups.retention:` (abssd's own): the policy of a `backup prune`
        /// that names no rule.
        #[serde(deserialize_with = "section")]
        pub retention: RetentionSection,
        /// `backups.pre_restore_min_age` (abssd's own): no prune removes a
        /// pre-restore backup younger than this (seconds, or a duration such
        /// as `7d` or `36h`).
        #[serde(deserialize_with = "age::<_, MAX_SECONDS>")]
        pub pre_restore_min_age: Option<Duration>,
        /// `backups.max_age` (abssd's own): `abssctl doctor` reports an
        /// instance whose newest backup is older than this (seconds, or a
        /// duration such as `36h` or `2d`).
        #[serde(deserialize_with = "age::<_, MAX_SECONDS>")]
        pub max_age: Option<Duration>,
        /// `backups.job:` (abssd's own): what the backup job (`backup run`)
        /// verifies besides the backup it made.
        #[serde(deserialize_with = "section")]
        pub job: JobSection,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// `backups.job:` (abssd's own), the backup job's verification.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct JobSection {
        /// `backups.job.verify_sample`: how many older backups of the instance
        /// each job verifies besides the new one (those verified longest ago
        /// first); at most 100.
        #[serde(deserialize_with = "whole::<_, u32, 0, 100>")]
        pub verify_sample: Option<u32>,
        /// `backups.job.deep`: the job's verifications are deep
        /// (`backup verify --deep`).
        pub deep: Option<bool>,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// `hooks:` (abssd's own): what runs, and who is told, around each
    /// instance's backup job (`backup run`). See `ops::run::hooks`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct HooksSection {
        /// `hooks.ping_url`: a Healthchecks-style URL (http or https) told
        /// `<url>/start`, `<url>` (success) and `<url>/fail`.
        #[serde(deserialize_with = "ping_url")]
        pub ping_url: Option<PingUrl>,
        /// `hooks.ping_timeout`: longest one ping may take (at most 120 s).
        #[serde(deserialize_with = "age::<_, MAX_PING_TIMEOUT>")]
        pub ping_timeout: Option<Duration>,
        /// `hooks.before`: a command (argv, no shell) run before the job.
        #[serde(deserialize_with = "hook_command")]
        pub before: Option<Vec<String>>,
        /// `hooks.after`: a command run after a successful job.
        #[serde(deserialize_with = "hook_command")]
        pub after: Option<Vec<String>>,
        /// `hooks.on_error`: a command run after a failed job.
        #[serde(deserialize_with = "hook_command")]
        pub on_error: Option<Vec<String>>,
        /// `hooks.timeout`: longest one command may run (at most 6 h).
        #[serde(deserialize_with = "age::<_, MAX_HOOK_TIMEOUT>")]
        pub timeout: Option<Duration>,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// `backups.compression:`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct CompressionSection {
        /// `backups.compression.algorithm`: what `auto` means.
        pub algorithm: Option<Compression>,
        /// `backups.compression.level`: the level when a request gives none; the
        /// algorithm's own range is checked when a create uses it.
        #[serde(deserialize_with = "whole::<_, i32, 1, { i32::MAX as u64 }>")]
        pub level: Option<i32>,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// `systemd:`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct SystemdSection {
        /// `systemd.unit_dir`: where the instances' unit files are.
        #[serde(deserialize_with = "absolute")]
        pub unit_dir: Option<PathBuf>,
        /// `systemd.bus_address` (abssd's own): systemd's D-Bus address.
        #[serde(deserialize_with = "non_empty")]
        pub bus_address: Option<String>,
        /// `systemd.dropin_dir` (abssd's own): where `schedule enable` writes
        /// a backup timer's calendar drop-in.
        #[serde(deserialize_with = "absolute")]
        pub dropin_dir: Option<PathBuf>,
        /// The Python tool's `systemd.systemctl_bin`; abssd speaks D-Bus instead.
        pub systemctl_bin: Option<IgnoredAny>,
        /// The Python tool's `systemd.journalctl_bin`.
        pub journalctl_bin: Option<IgnoredAny>,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// `nginx:` (abssd's own).
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct NginxSection {
        /// `nginx.sites_available`.
        #[serde(deserialize_with = "absolute")]
        pub sites_available: Option<PathBuf>,
        /// `nginx.sites_enabled`.
        #[serde(deserialize_with = "absolute")]
        pub sites_enabled: Option<PathBuf>,
        /// `nginx.test_command`: the configuration check, argv form.
        #[serde(deserialize_with = "command")]
        pub test_command: Option<Vec<String>>,
        /// `nginx.service`: the unit reloaded after a site changed.
        #[serde(deserialize_with = "non_empty")]
        pub service: Option<String>,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// `health:` (abssd's own): what `daemon.health` checks against and writes.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    pub struct HealthSection {
        /// `health.textfile_dir`: write `abssctl.prom` there (node_exporter's
        /// textfile collector) with each report.
        #[serde(deserialize_with = "absolute")]
        pub textfile_dir: Option<PathBuf>,
        /// `health.min_free_bytes`: bytes the backups filesystem must keep
        /// free besides the next backup.
        #[serde(deserialize_with = "whole::<_, u64, 0, { u64::MAX }>")]
        pub min_free_bytes: Option<u64>,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

layered! {
    /// `daemon:` (abssd's own). What each setting does is told where it is
    /// resolved, [`super::DaemonSettings`].
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, expecting = "a mapping of settings")]
    #[allow(missing_docs)]
    pub struct DaemonSection {
        #[serde(deserialize_with = "absolute")]
        pub socket: Option<PathBuf>,
        #[serde(deserialize_with = "non_empty")]
        pub operator_group: Option<String>,
        #[serde(deserialize_with = "non_empty")]
        pub socket_group: Option<String>,
        #[serde(deserialize_with = "count::<_, 1>")]
        pub max_connections: Option<u32>,
        #[serde(deserialize_with = "count::<_, 1>")]
        pub max_connections_per_uid: Option<u32>,
        #[serde(deserialize_with = "count::<_, 0>")]
        pub reserved_connections: Option<u32>,
        #[serde(deserialize_with = "count::<_, 1024>")]
        pub max_request_bytes: Option<u32>,
        #[serde(deserialize_with = "count::<_, { 64 << 10 }>")]
        pub max_response_bytes: Option<u32>,
        #[serde(deserialize_with = "count::<_, 1>")]
        pub max_batch: Option<u32>,
        #[serde(deserialize_with = "count::<_, 1>")]
        pub max_calls_per_connection: Option<u32>,
        #[serde(deserialize_with = "count::<_, 1>")]
        pub message_buffer: Option<u32>,
        #[serde(deserialize_with = "seconds::<_, MAX_SECONDS>")]
        pub send_timeout: Option<Duration>,
        #[serde(deserialize_with = "count::<_, 0>")]
        pub max_operations_per_reader: Option<u32>,
        #[serde(deserialize_with = "count::<_, { 64 << 10 }>")]
        pub operations_log_max_bytes: Option<u32>,
        #[serde(deserialize_with = "whole::<_, u64, 0, { u64::MAX }>")]
        pub max_sparse_hole_bytes: Option<u64>,
        #[serde(deserialize_with = "seconds::<_, MAX_SECONDS>")]
        pub idle_timeout: Option<Duration>,
        #[serde(deserialize_with = "seconds::<_, MAX_STOP_TIMEOUT>")]
        pub stop_timeout: Option<Duration>,
        #[serde(deserialize_with = "whole::<_, u64, 1, { u64::MAX }>")]
        pub max_restore_entries: Option<u64>,
        #[serde(deserialize_with = "whole::<_, u8, 0, 50>")]
        pub restore_reserve_percent: Option<u8>,
        pub consistency: Option<Consistency>,
        /// Anything else.
        #[serde(flatten)]
        pub unknown: Unknown,
    }
}

impl ConfigFile {
    /// Read and check a configuration file; a missing or empty file is an empty
    /// layer (all defaults).
    pub fn read(path: &Path) -> Result<ConfigFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
            Err(source) => {
                return Err(Error::Io {
                    action: "reading config",
                    path: path.into(),
                    source,
                });
            }
        };
        ConfigFile::parse(path, &text)
    }

    /// Parse the text of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
        typed(path, Value::Object(tree(path, text)?))
    }

    /// Read a file and part the Python tool's keys from abssd's own
    /// ([`ABSSD_ONLY`]); a missing file is two empty parts.
    pub fn read_split(path: &Path) -> Result<Split> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Split::default()),
            Err(source) => {
                return Err(Error::Io {
                    action: "reading config",
                    path: path.into(),
                    source,
                });
            }
        };
        let mut shared = tree(path, &text)?;
        let mut own = Map::new();
        let mut own_keys = Vec::new();
        for key in ABSSD_ONLY {
            let (section, name) = key.split_once('.').unwrap_or(("", key));
            let holder = if section.is_empty() {
                Some(&mut shared)
            } else {
                shared.get_mut(section).and_then(Value::as_object_mut)
            };
            let Some(value) = holder.and_then(|m| m.shift_remove(name)) else {
                continue;
            };
            if !is_set(&value) {
                continue;
            }
            own_keys.push(key.to_owned());
            if section.is_empty() {
                own.insert(name.to_owned(), value);
            } else if let Some(m) = own
                .entry(section)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
            {
                m.insert(name.to_owned(), value);
            }
        }
        let mut shared_keys = Vec::new();
        leaves("", &shared, &mut shared_keys);
        Ok(Split {
            shared: typed(path, Value::Object(shared))?,
            own: typed(path, Value::Object(own))?,
            own_keys,
            shared_keys,
        })
    }

    /// The dotted names of every unknown key, at any depth, in file order.
    pub fn unknown_keys(&self) -> Vec<String> {
        let sections: [(&str, &Unknown); 10] = [
            ("", &self.unknown),
            ("backups.", &self.backups.unknown),
            ("backups.compression.", &self.backups.compression.unknown),
            ("backups.retention.", &self.backups.retention.unknown),
            ("backups.job.", &self.backups.job.unknown),
            ("systemd.", &self.systemd.unknown),
            ("nginx.", &self.nginx.unknown),
            ("daemon.", &self.daemon.unknown),
            ("health.", &self.health.unknown),
            ("hooks.", &self.hooks.unknown),
        ];
        sections
            .into_iter()
            .flat_map(|(prefix, map)| map.keys().map(move |k| format!("{prefix}{k}")))
            .chain(self.remotes.unknown_keys())
            .collect()
    }
}

/// The keys only abssd reads (dotted; a section's name stands for all of it):
/// the Python tool refuses each of them in `config.yml`.
pub const ABSSD_ONLY: [&str; 12] = [
    "daemon",
    "remotes",
    "hooks",
    "nginx",
    "health",
    "backups.max_age",
    "backups.restores_root",
    "backups.retention",
    "backups.pre_restore_min_age",
    "backups.job",
    "systemd.bus_address",
    "systemd.dropin_dir",
];

/// A file's settings parted by owner (see [`ConfigFile::read_split`]).
#[derive(Debug, Default)]
pub struct Split {
    /// The keys the Python tool knows (and unknown ones).
    pub shared: ConfigFile,
    /// abssd's own keys ([`ABSSD_ONLY`]).
    pub own: ConfigFile,
    /// Which of [`ABSSD_ONLY`] the file sets.
    pub own_keys: Vec<String>,
    /// The dotted names of every other key the file sets, in file order.
    pub shared_keys: Vec<String>,
}

/// The text of a file as an untyped mapping (empty when the file is): YAML
/// syntax errors stay apart from bad values, and a bad value is then found with
/// the path of keys leading to it.
fn tree(path: &Path, text: &str) -> Result<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let tree: Value = serde_saphyr::from_str(text).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        format: "YAML",
        message: e.to_string().lines().next().unwrap_or_default().to_owned(),
    })?;
    match tree {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m),
        other => Err(Error::Environment(format!(
            "{}: expected a mapping of settings at the top level, found {}",
            path.display(),
            type_name(&other)
        ))),
    }
}

/// Whether `v` sets anything: not null, or a section with a value set in it.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => m.values().any(is_set),
        _ => true,
    }
}

/// The dotted names of the values set (not null) in `map`, sections descended.
fn leaves(prefix: &str, map: &Map<String, Value>, out: &mut Vec<String>) {
    for (k, v) in map {
        match v {
            Value::Null => {}
            Value::Object(m) => leaves(&format!("{prefix}{k}."), m, out),
            _ => out.push(format!("{prefix}{k}")),
        }
    }
}

/// The typed model of a parsed tree; a bad value names the file and its key.
fn typed<T: DeserializeOwned>(path: &Path, tree: Value) -> Result<T> {
    typed_as(&path.display().to_string(), tree)
}

/// [`typed`] for settings that are not a file (`what` names their source).
pub(super) fn typed_as<T: DeserializeOwned>(what: &str, tree: Value) -> Result<T> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        Error::Environment(format!(
            "{what}: key {:?}: {}",
            e.path().to_string(),
            e.inner()
        ))
    })
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

    fn parse(yaml: &str) -> Result<ConfigFile> {
        ConfigFile::parse(Path::new("/etc/abssctl/config.yml"), yaml)
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        for text in ["", "  \n", "~\n", "# only a comment\n"] {
            let f = parse(text).unwrap();
            assert_eq!(f.state_dir, None, "{text:?}");
            assert_eq!(f.daemon.max_connections, None, "{text:?}");
            assert!(f.unknown_keys().is_empty(), "{text:?}");
        }
        let err = parse("- a\n- b\n").unwrap_err().to_string();
        assert!(
            err.contains("mapping of settings") && err.contains("a list"),
            "{err}"
        );
    }

    #[test]
    fn layers_merge_key_by_key_the_upper_winning() {
        // As config.yml and a file of abssd's own will: the same model, merged.
        let lower = parse(
            "state_dir: /lower\nlock_timeout: 5\nodd: 1\n\
             backups: {root: /b, compression: {algorithm: gzip, level: 4}}\n\
             daemon: {max_batch: 2, idle_timeout: 60, odd: 1}\n",
        )
        .unwrap();
        let upper = ConfigFile::parse(
            Path::new("/etc/abssctl/abssd.yml"),
            "lock_timeout: 7\nbackups: {compression: {level: 9}}\n\
             daemon: {idle_timeout: 0, consistency: none, other: 2}\n",
        )
        .unwrap();
        let m = lower.merge(upper);
        assert_eq!(m.state_dir, Some(PathBuf::from("/lower")));
        assert_eq!(m.lock_timeout, Some(Duration::from_secs(7)));
        assert_eq!(m.backups.root, Some(PathBuf::from("/b")));
        assert_eq!(m.backups.compression.algorithm, Some(Compression::Gzip));
        assert_eq!(m.backups.compression.level, Some(9));
        assert_eq!(m.daemon.max_batch, Some(2));
        assert_eq!(m.daemon.idle_timeout, Some(Duration::ZERO));
        assert_eq!(m.daemon.consistency, Some(Consistency::None));
        assert_eq!(m.unknown_keys(), ["odd", "daemon.odd", "daemon.other"]);
    }

    #[test]
    fn values_of_the_wrong_kind_are_refused_naming_the_key() {
        for (yaml, key, says) in [
            ("lock_timeout: soon\n", "lock_timeout", "number of seconds"),
            ("lock_timeout: -1\n", "lock_timeout", "from 0 to"),
            ("lock_timeout: 'NaN'\n", "lock_timeout", "from 0 to"),
            ("service_user: ''\n", "service_user", "non-empty"),
            ("state_dir: var/lib\n", "state_dir", "absolute"),
            ("backups: [1]\n", "backups", "mapping"),
            (
                "backups:\n  compression:\n    algorithm: lz4\n",
                "backups.compression.algorithm",
                "zstd",
            ),
            (
                "backups:\n  compression:\n    level: '3'\n",
                "backups.compression.level",
                "whole number",
            ),
            (
                "nginx:\n  test_command: nginx -t\n",
                "nginx.test_command",
                "sequence",
            ),
            (
                "nginx:\n  test_command: []\n",
                "nginx.test_command",
                "non-empty list",
            ),
            (
                "daemon:\n  consistency: fast\n",
                "daemon.consistency",
                "snapshot",
            ),
            (
                "daemon:\n  max_batch: true\n",
                "daemon.max_batch",
                "whole number",
            ),
            (
                "daemon:\n  max_request_bytes: 1023\n",
                "daemon.max_request_bytes",
                "from 1024",
            ),
            (
                "daemon:\n  idle_timeout: 1e30\n",
                "daemon.idle_timeout",
                "from 0 to",
            ),
        ] {
            let err = parse(yaml).expect_err(yaml);
            assert_eq!(err.kind(), abssd_proto::ErrorKind::Environment);
            let err = err.to_string();
            assert!(
                err.starts_with(&format!("/etc/abssctl/config.yml: key {key:?}: "))
                    && err.contains(says),
                "{yaml}: {err}"
            );
        }
    }
}
