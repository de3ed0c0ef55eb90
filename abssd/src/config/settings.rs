//! The daemon's own settings and the host services it drives, resolved from
//! the merged configuration with their defaults.

use std::time::Duration;

use abssd_proto::{Compression, Consistency};

use super::file::ConfigFile;
pub use super::retention::Retention;
use super::value::PingUrl;

/// Default of `daemon.max_restore_entries`.
pub const DEFAULT_MAX_RESTORE_ENTRIES: u64 = 1_000_000;
/// Default of `daemon.restore_reserve_percent`.
pub const DEFAULT_RESTORE_RESERVE_PERCENT: u8 = 5;

/// How the daemon behaves: who may do what, its limits and timeouts, and the
/// defaults a request leaves open.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Longest wait for any lock (`lock_timeout`, shared with the Python tool).
    pub lock_timeout: Duration,
    /// Group whose members may mutate (`daemon.operator_group`).
    pub operator_group: String,
    /// Group owning the socket (who may connect at all); default the operator
    /// group (`daemon.socket_group`).
    pub socket_group: String,
    /// Most simultaneous connections (`daemon.max_connections`).
    pub max_connections: u32,
    /// Most simultaneous connections of one uid other than root and the daemon's
    /// own (`daemon.max_connections_per_uid`), so one peer cannot take every slot.
    pub max_connections_per_uid: u32,
    /// Connections only root and operators may use (`daemon.reserved_connections`):
    /// an operator can always connect while readers fill the rest.
    pub reserved_connections: u32,
    /// Largest request body accepted (`daemon.max_request_bytes`).
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
    /// Compression when a request says `auto` (`backups.compression.algorithm`).
    pub default_compression: Compression,
    /// Level when a request gives none (`backups.compression.level`).
    pub default_level: Option<i32>,
    /// The policy of a `backup prune` that names no rule (`backups.retention`).
    pub retention: Retention,
    /// No prune removes a pre-restore backup younger than this
    /// (`backups.pre_restore_min_age`, default 7 days).
    pub pre_restore_min_age: Duration,
    /// `abssctl doctor` reports an instance whose newest backup is older
    /// (`backups.max_age`, default [`DEFAULT_MAX_AGE`]).
    pub max_age: Duration,
    /// Where `daemon.health` writes `abssctl.prom` (`health.textfile_dir`).
    pub textfile_dir: Option<std::path::PathBuf>,
    /// Bytes the backups filesystem keeps free besides the next backup
    /// (`health.min_free_bytes`, default 0).
    pub min_free_bytes: u64,
    /// What the backup job verifies (`backups.job`).
    pub job: JobSettings,
    /// Commands and pings around each instance's backup job (`hooks`).
    pub hooks: HookSettings,
}

/// Default of `hooks.ping_timeout`.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `hooks.timeout`.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest timeout of a ping or a hook (a zero one could never succeed).
pub const MIN_HOOK_TIMEOUT: Duration = Duration::from_millis(100);

/// `hooks`: what runs, and who is told, around each instance's backup job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    /// The monitoring URL (`ping_url`), none by default.
    pub ping_url: Option<PingUrl>,
    /// Longest one ping attempt may take (`ping_timeout`, default 10 s).
    pub ping_timeout: Duration,
    /// Run before each instance's job (`before`); its failure fails that
    /// instance's job, which then backs nothing up.
    pub before: Option<Vec<String>>,
    /// Run after an instance's job succeeded (`after`).
    pub after: Option<Vec<String>>,
    /// Run after an instance's job failed (`on_error`).
    pub on_error: Option<Vec<String>>,
    /// Longest one command may run before its process group is killed
    /// (`timeout`, default 10 min).
    pub timeout: Duration,
}

/// Default of `backups.job.verify_sample`.
pub const DEFAULT_VERIFY_SAMPLE: u32 = 1;

/// `backups.job`: what a backup job (`backup run`) verifies besides the
/// backup it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSettings {
    /// Older available backups of the instance verified too, those whose last
    /// verification is oldest (or absent) first (`verify_sample`, default 1).
    pub verify_sample: u32,
    /// Verify deep (`deep`, default false).
    pub deep: bool,
}

/// Default of `backups.max_age`: a daily backup that missed one night is
/// reported the next morning, one that is merely late is not.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

/// Default of `backups.pre_restore_min_age`: a week to notice that a restore
/// was a mistake.
pub const DEFAULT_PRE_RESTORE_MIN_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

impl DaemonSettings {
    /// What `merged` sets, defaults for the rest.
    pub fn resolve(merged: &ConfigFile) -> DaemonSettings {
        let d = &merged.daemon;
        let operator_group = d
            .operator_group
            .clone()
            .unwrap_or_else(|| "abssctl".to_owned());
        let max_connections = d.max_connections.unwrap_or(64);
        DaemonSettings {
            lock_timeout: merged.lock_timeout.unwrap_or(Duration::from_secs(30)),
            socket_group: d
                .socket_group
                .clone()
                .unwrap_or_else(|| operator_group.clone()),
            operator_group,
            max_connections,
            max_connections_per_uid: d.max_connections_per_uid.unwrap_or(16),
            // Else no operator could ever connect while readers fill the rest.
            reserved_connections: d
                .reserved_connections
                .unwrap_or(16)
                .min(max_connections.saturating_sub(1)),
            max_request_bytes: d.max_request_bytes.unwrap_or(1 << 20),
            max_response_bytes: d.max_response_bytes.unwrap_or(16 << 20),
            max_batch: d.max_batch.unwrap_or(abssd_proto::limits::BATCH),
            max_calls_per_connection: d.max_calls_per_connection.unwrap_or(16),
            message_buffer: d.message_buffer.unwrap_or(16),
            // A zero timeout would drop every client at its first answer.
            send_timeout: d
                .send_timeout
                .unwrap_or(Duration::from_secs(10))
                .max(Duration::from_millis(100)),
            max_operations_per_reader: d.max_operations_per_reader.unwrap_or(2),
            oplog_max_bytes: u64::from(d.operations_log_max_bytes.unwrap_or(64 << 20)),
            max_sparse_hole_bytes: d.max_sparse_hole_bytes.unwrap_or(1 << 30),
            idle_timeout: d.idle_timeout.unwrap_or(Duration::from_secs(300)),
            stop_timeout: d.stop_timeout.unwrap_or(Duration::from_secs(120)),
            max_restore_entries: d.max_restore_entries.unwrap_or(DEFAULT_MAX_RESTORE_ENTRIES),
            restore_reserve_percent: d
                .restore_reserve_percent
                .unwrap_or(DEFAULT_RESTORE_RESERVE_PERCENT),
            consistency: d.consistency.unwrap_or_default(),
            default_compression: merged.backups.compression.algorithm.unwrap_or_default(),
            default_level: merged.backups.compression.level,
            retention: Retention::of(&merged.backups.retention),
            pre_restore_min_age: merged
                .backups
                .pre_restore_min_age
                .unwrap_or(DEFAULT_PRE_RESTORE_MIN_AGE),
            // Zero would call every instance stale.
            max_age: merged
                .backups
                .max_age
                .unwrap_or(DEFAULT_MAX_AGE)
                .max(Duration::from_secs(1)),
            textfile_dir: merged.health.textfile_dir.clone(),
            min_free_bytes: merged.health.min_free_bytes.unwrap_or(0),
            job: JobSettings {
                verify_sample: merged
                    .backups
                    .job
                    .verify_sample
                    .unwrap_or(DEFAULT_VERIFY_SAMPLE),
                deep: merged.backups.job.deep.unwrap_or(false),
            },
            hooks: {
                let h = &merged.hooks;
                HookSettings {
                    ping_url: h.ping_url.clone(),
                    ping_timeout: h
                        .ping_timeout
                        .unwrap_or(DEFAULT_PING_TIMEOUT)
                        .max(MIN_HOOK_TIMEOUT),
                    before: h.before.clone(),
                    after: h.after.clone(),
                    on_error: h.on_error.clone(),
                    timeout: h
                        .timeout
                        .unwrap_or(DEFAULT_HOOK_TIMEOUT)
                        .max(MIN_HOOK_TIMEOUT),
                }
            },
        }
    }
}

/// The host's services the daemon drives: systemd over D-Bus, the nginx check
/// and reload, the instances' account.
#[derive(Debug, Clone)]
pub struct Services {
    /// The account instances run as (`service_user`; kept for the Python tool,
    /// informational here).
    pub service_user: Option<String>,
    /// D-Bus address of systemd's bus (`systemd.bus_address`, `--bus`); `None` =
    /// the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the well-known socket).
    pub bus_address: Option<String>,
    /// The nginx config check, argv form (`nginx.test_command`).
    pub nginx_test_command: Vec<String>,
    /// The unit reloaded after a site changed (`nginx.service`).
    pub nginx_unit: String,
}

impl Services {
    /// What `merged` sets, defaults for the rest.
    pub fn resolve(merged: &ConfigFile) -> Services {
        Services {
            service_user: merged.service_user.clone(),
            bus_address: merged.systemd.bus_address.clone(),
            nginx_test_command: merged
                .nginx
                .test_command
                .clone()
                .unwrap_or_else(|| vec!["nginx".to_owned(), "-t".to_owned()]),
            nginx_unit: merged
                .nginx
                .service
                .clone()
                .unwrap_or_else(|| "nginx.service".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn merged(yaml: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/c.yml"), yaml).unwrap()
    }

    #[test]
    fn daemon_defaults() {
        let d = DaemonSettings::resolve(&ConfigFile::default());
        assert_eq!(d.lock_timeout, Duration::from_secs(30));
        assert_eq!(
            (d.operator_group.as_str(), d.socket_group.as_str()),
            ("abssctl", "abssctl")
        );
        assert_eq!(
            [
                d.max_connections,
                d.max_connections_per_uid,
                d.reserved_connections,
                d.max_request_bytes,
                d.max_response_bytes,
                d.max_batch,
                d.max_calls_per_connection,
                d.message_buffer,
                d.max_operations_per_reader,
            ],
            [
                64,
                16,
                16,
                1 << 20,
                16 << 20,
                abssd_proto::limits::BATCH,
                16,
                16,
                2
            ]
        );
        assert_eq!(
            [d.send_timeout, d.idle_timeout, d.stop_timeout],
            [10, 300, 120].map(Duration::from_secs)
        );
        assert_eq!(
            [
                d.oplog_max_bytes,
                d.max_sparse_hole_bytes,
                d.max_restore_entries
            ],
            [64 << 20, 1 << 30, 1_000_000]
        );
        assert_eq!(d.restore_reserve_percent, 5);
        assert_eq!(d.consistency, Consistency::Snapshot);
        assert_eq!(
            (d.default_compression, d.default_level),
            (Compression::Auto, None)
        );
    }

    #[test]
    fn daemon_settings_are_read_and_bent_where_they_must_be() {
        let d = DaemonSettings::resolve(&merged(
            "lock_timeout: 2.5\nbackups:\n  compression:\n    algorithm: gzip\n    level: 9\n\
             daemon:\n  operator_group: ops\n  max_connections: 4\n  reserved_connections: 10\n\
             \x20 send_timeout: 0\n  consistency: stop\n  operations_log_max_bytes: 4294967295\n",
        ));
        assert_eq!(d.lock_timeout, Duration::from_millis(2500));
        assert_eq!(
            (d.operator_group.as_str(), d.socket_group.as_str()),
            ("ops", "ops")
        );
        // At least one connection stays open to readers; a zero send timeout
        // would drop every client.
        assert_eq!(d.reserved_connections, 3);
        assert_eq!(d.send_timeout, Duration::from_millis(100));
        assert_eq!(d.consistency, Consistency::Stop);
        assert_eq!(d.oplog_max_bytes, u64::from(u32::MAX));
        assert_eq!(
            (d.default_compression, d.default_level),
            (Compression::Gzip, Some(9))
        );
    }

    #[test]
    fn retention_and_pre_restore_age_are_read_checked_and_defaulted() {
        let d = DaemonSettings::resolve(&ConfigFile::default());
        assert_eq!(d.retention, Retention::default());
        assert_eq!(d.pre_restore_min_age, DEFAULT_PRE_RESTORE_MIN_AGE);
        assert_eq!(d.max_age, DEFAULT_MAX_AGE);
        assert_eq!((d.textfile_dir.as_deref(), d.min_free_bytes), (None, 0));

        let d = DaemonSettings::resolve(&merged(
            "backups:\n  pre_restore_min_age: 3600\n  retention:\n    keep_last: 3\n\
             \x20   keep_daily: 7\n    keep_within: 2y5m\n",
        ));
        assert_eq!(
            d.retention,
            Retention {
                keep_last: Some(3),
                keep_daily: Some(7),
                keep_within: Some("2y5m".into()),
                ..Retention::default()
            }
        );
        assert_eq!(d.pre_restore_min_age, Duration::from_secs(3600));
        for (text, secs) in [
            ("7d", 7 * 86400),
            ("36h", 36 * 3600),
            ("\"90\"", 90),
            ("1.5", 1),
            ("2min", 120),
            ("PT2M", 120),
            ("1h 30min", 5400),
        ] {
            let d = DaemonSettings::resolve(&merged(&format!(
                "backups:\n  pre_restore_min_age: {text}\n"
            )));
            assert_eq!(d.pre_restore_min_age.as_secs(), secs, "{text}");
        }
        let d = DaemonSettings::resolve(&merged(
            "backups:\n  max_age: 2d\nhealth:\n  textfile_dir: /var/lib/prom\n  min_free_bytes: 1024\n",
        ));
        assert_eq!(d.max_age, Duration::from_secs(2 * 86400));
        assert_eq!(
            (d.textfile_dir.as_deref(), d.min_free_bytes),
            (Some(std::path::Path::new("/var/lib/prom")), 1024)
        );
        // Zero would call every instance stale.
        let d = DaemonSettings::resolve(&merged("backups:\n  max_age: 0\n"));
        assert_eq!(d.max_age, Duration::from_secs(1));
        for bad in [
            "backups:\n  max_age: 3mo\n",
            "health:\n  textfile_dir: prom\n",
            "health:\n  min_free_bytes: -1\n",
            "backups:\n  pre_restore_min_age: 1mo\n",
            "backups:\n  pre_restore_min_age: -5\n",
            "backups:\n  pre_restore_min_age: soon\n",
            "backups:\n  retention:\n    keep_last: -1\n",
            "backups:\n  retention:\n    keep_within: \"\"\n",
            // Months to restic (keep_within, beside it), minutes to jiff.
            "backups:\n  pre_restore_min_age: 1m\n",
            "backups:\n  pre_restore_min_age: 2d 30 m\n",
            // Checked when read, not at the first prune that uses it.
            "backups:\n  retention:\n    keep_within: 30days\n",
            "backups:\n  retention:\n    keep_within: 5m5m\n",
        ] {
            let e = ConfigFile::parse(Path::new("/c.yml"), bad);
            assert!(e.is_err(), "{bad}");
        }
        let unknown = merged("backups:\n  retention:\n    keep_lats: 3\n").unknown_keys();
        assert_eq!(unknown, ["backups.retention.keep_lats"]);
    }

    #[test]
    fn the_job_settings_are_read_checked_and_defaulted() {
        let d = DaemonSettings::resolve(&ConfigFile::default());
        assert_eq!(
            d.job,
            JobSettings {
                verify_sample: DEFAULT_VERIFY_SAMPLE,
                deep: false
            }
        );
        let d = DaemonSettings::resolve(&merged(
            "backups:\n  job:\n    verify_sample: 3\n    deep: true\n",
        ));
        assert_eq!(
            d.job,
            JobSettings {
                verify_sample: 3,
                deep: true
            }
        );
        for bad in [
            "backups:\n  job:\n    verify_sample: -1\n",
            "backups:\n  job:\n    verify_sample: 101\n",
            "backups:\n  job:\n    deep: maybe\n",
            "backups:\n  job: 3\n",
        ] {
            assert!(
                ConfigFile::parse(Path::new("/c.yml"), bad).is_err(),
                "{bad}"
            );
        }
        let unknown = merged("backups:\n  job:\n    verify_samples: 3\n").unknown_keys();
        assert_eq!(unknown, ["backups.job.verify_samples"]);
    }

    #[test]
    fn the_hook_settings_are_read_checked_and_defaulted() {
        let d = DaemonSettings::resolve(&ConfigFile::default());
        assert_eq!(d.hooks.ping_url, None);
        assert_eq!(d.hooks.ping_timeout, DEFAULT_PING_TIMEOUT);
        assert_eq!(d.hooks.timeout, DEFAULT_HOOK_TIMEOUT);
        assert_eq!(d.hooks.before, None);
        let d = DaemonSettings::resolve(&merged(
            "hooks:\n  ping_url: https://hc-ping.com/0b5e-secret-uuid\n  ping_timeout: 5s\n  \
             before: [/usr/local/bin/x, arg]\n  after: [/bin/true]\n  on_error: [/bin/false]\n  \
             timeout: 5min\n",
        ));
        let url = d.hooks.ping_url.clone().unwrap();
        assert_eq!(url.secret(), "https://hc-ping.com/0b5e-secret-uuid");
        assert_eq!(
            url.with("start"),
            "https://hc-ping.com/0b5e-secret-uuid/start"
        );
        assert_eq!(url.shown(), "https://hc-ping.com/…");
        let debug = format!("{d:?}");
        assert!(!debug.contains("secret-uuid"), "{debug}");
        assert_eq!(d.hooks.ping_timeout, Duration::from_secs(5));
        assert_eq!(d.hooks.timeout, Duration::from_secs(300));
        assert_eq!(
            d.hooks.before.as_deref(),
            Some(&["/usr/local/bin/x".to_owned(), "arg".to_owned()][..])
        );
        assert_eq!(
            d.hooks.on_error.as_deref(),
            Some(&["/bin/false".to_owned()][..])
        );
        let http = merged("hooks:\n  ping_url: http://127.0.0.1:8000/p/x/?rid=1\n");
        let url = DaemonSettings::resolve(&http).hooks.ping_url.unwrap();
        assert_eq!(url.with("fail"), "http://127.0.0.1:8000/p/x/fail?rid=1");
        let long = format!("hooks:\n  ping_url: https://h/{}\n", "a".repeat(3000));
        let many = format!("hooks:\n  after: [/bin/x{}]\n", ", a".repeat(64));
        for bad in [
            "hooks:\n  ping_url: ftp://hc-ping.com/uuid\n",
            "hooks:\n  ping_url: hc-ping.com/uuid\n",
            "hooks:\n  ping_url: https:///uuid\n",
            "hooks:\n  ping_url: https://user:pw@h/uuid\n",
            "hooks:\n  ping_url: \"https://h/a b\"\n",
            &long,
            "hooks:\n  before: [x, arg]\n",
            "hooks:\n  before: []\n",
            "hooks:\n  after: /bin/true\n",
            &many,
            "hooks:\n  timeout: 7h\n",
            "hooks:\n  ping_timeout: 121\n",
            "hooks: 3\n",
        ] {
            let e = ConfigFile::parse(Path::new("/c.yml"), bad);
            assert!(e.is_err(), "{bad}");
        }
        let e = ConfigFile::parse(Path::new("/c.yml"), "hooks:\n  ping_url: ftp://h/s3cr3t\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hooks.ping_url") && !e.contains("s3cr3t"), "{e}");
        let unknown = merged("hooks:\n  pingurl: x\n").unknown_keys();
        assert_eq!(unknown, ["hooks.pingurl"]);
    }

    #[test]
    fn services_defaults_and_settings() {
        let s = Services::resolve(&ConfigFile::default());
        assert_eq!(s.service_user, None);
        assert_eq!(s.bus_address, None);
        assert_eq!(s.nginx_test_command, ["nginx", "-t"]);
        assert_eq!(s.nginx_unit, "nginx.service");

        let s = Services::resolve(&merged(
            "service_user: actual\nsystemd:\n  bus_address: unix:path=/b\n\
             nginx:\n  test_command: [nginx, -t, -c, /n.conf]\n  service: web.service\n",
        ));
        assert_eq!(s.service_user.as_deref(), Some("actual"));
        assert_eq!(s.bus_address.as_deref(), Some("unix:path=/b"));
        assert_eq!(s.nginx_test_command, ["nginx", "-t", "-c", "/n.conf"]);
        assert_eq!(s.nginx_unit, "web.service");
    }
}
