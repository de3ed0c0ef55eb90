//! `daemon.health` (`abssctl doctor`): is each instance being backed up, and
//! could its backups be restored?
//!
//! The report has the Python tool's doctor shape: a list of probe results
//! (`id`, `category`, `status` green/yellow/red, `impact`, `message`, optional
//! `remediation` and `data`), a `summary` with the worst status, the worst
//! impact and the exit code it maps to (ADR-013), and `metadata`. It adds the
//! instance each result is about, and per-instance facts for dashboards.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `daemon.health` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    /// Only this instance (else every instance of the registry).
    #[serde(default)]
    pub instance: Option<String>,
}

/// How a probe came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStatus {
    /// Fine.
    Green,
    /// Worth a look; does not change the exit code.
    Yellow,
    /// A problem; its impact sets the exit code.
    Red,
}

impl ProbeStatus {
    /// `green`, `yellow`, `red`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Green => "green",
            ProbeStatus::Yellow => "yellow",
            ProbeStatus::Red => "red",
        }
    }
}

/// What kind of problem a probe found, which picks the exit code (ADR-013),
/// as in the Python tool's doctor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// None: exit 0.
    Ok,
    /// Bad configuration or input: exit 2.
    Validation,
    /// The host's state (stale or failed backups, disk, drift): exit 3.
    Environment,
    /// systemd could not be asked, or the daemon failed: exit 4.
    Provider,
}

impl Impact {
    /// The exit code: 0, 2, 3 or 4.
    pub fn code(self) -> u8 {
        match self {
            Impact::Ok => 0,
            Impact::Validation => 2,
            Impact::Environment => 3,
            Impact::Provider => 4,
        }
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Which probe: `backups.age`, `backups.verify`, `job.last`, `timer`,
    /// `leftovers`, `drift`, `disk.free`, or `registry` / `index` when those
    /// could not be read.
    pub id: String,
    /// `backups`, `job`, `systemd`, `fs`, `disk` or `state`.
    pub category: String,
    /// The instance it is about; absent for host-wide results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Green, yellow or red.
    pub status: ProbeStatus,
    /// What a red result means for the exit code (`ok` for green and yellow).
    pub impact: Impact,
    /// [`Impact::code`], as the Python tool writes it.
    pub impact_code: u8,
    /// One line for people.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// The figures behind the message (bounded lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Results by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Green results.
    pub green: u32,
    /// Yellow results.
    pub yellow: u32,
    /// Red results.
    pub red: u32,
}

/// The whole report in one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    /// The worst status of any result.
    pub status: ProbeStatus,
    /// The worst impact of any result.
    pub impact: Impact,
    /// [`Impact::code`] of it.
    pub impact_code: u8,
    /// What `abssctl doctor` exits with.
    pub exit_code: u8,
    /// Results by status.
    pub totals: Totals,
}

/// Facts about one instance, for dashboards and the Prometheus textfile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceFacts {
    /// The instance.
    pub instance: String,
    /// Its `available` backups in the index.
    pub backups: u64,
    /// Their archives' bytes.
    pub bytes: u64,
    /// When the newest `available` backup was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup_at: Option<String>,
    /// Its age in seconds when the report was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup_age_seconds: Option<u64>,
    /// The newest archive's size, which the free-space probe expects the next
    /// backup to need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup_bytes: Option<u64>,
    /// When any of its backups was last verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_at: Option<String>,
    /// Whether its last backup job succeeded (absent: none ran, or its record
    /// could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_ok: Option<bool>,
    /// When that job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_finished_at: Option<String>,
    /// The next run of its backup timer, when one is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
    /// Bytes free to the daemon in its backups directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
}

/// How the report was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthMetadata {
    /// When (RFC 3339, UTC).
    pub generated_at: String,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
    /// Results in the report.
    pub probe_count: u32,
    /// `backups.max_age` in seconds.
    pub max_age_seconds: u64,
    /// The Prometheus textfile written, when `health.textfile_dir` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile: Option<String>,
}

/// `daemon.health` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The worst of it.
    pub summary: HealthSummary,
    /// Every probe's result, instance by instance.
    pub results: Vec<ProbeResult>,
    /// Facts per instance.
    pub instances: Vec<InstanceFacts>,
    /// How it was made.
    pub metadata: HealthMetadata,
}

impl HealthSummary {
    /// The summary of `results`: worst status, worst impact, its exit code.
    pub fn of(results: &[ProbeResult]) -> HealthSummary {
        let mut totals = Totals::default();
        for r in results {
            match r.status {
                ProbeStatus::Green => totals.green += 1,
                ProbeStatus::Yellow => totals.yellow += 1,
                ProbeStatus::Red => totals.red += 1,
            }
        }
        let status = results
            .iter()
            .map(|r| r.status)
            .max()
            .unwrap_or(ProbeStatus::Green);
        let impact = results.iter().map(|r| r.impact).max().unwrap_or(Impact::Ok);
        HealthSummary {
            status,
            impact,
            impact_code: impact.code(),
            exit_code: impact.code(),
            totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(status: ProbeStatus, impact: Impact) -> ProbeResult {
        ProbeResult {
            id: "x".into(),
            category: "backups".into(),
            instance: None,
            status,
            impact,
            impact_code: impact.code(),
            message: String::new(),
            remediation: None,
            data: None,
        }
    }

    #[test]
    fn the_worst_impact_is_the_exit_code() {
        let s = HealthSummary::of(&[]);
        assert_eq!((s.status, s.exit_code), (ProbeStatus::Green, 0));
        let s = HealthSummary::of(&[
            r(ProbeStatus::Green, Impact::Ok),
            r(ProbeStatus::Yellow, Impact::Ok),
        ]);
        assert_eq!((s.status, s.exit_code), (ProbeStatus::Yellow, 0));
        let s = HealthSummary::of(&[
            r(ProbeStatus::Red, Impact::Environment),
            r(ProbeStatus::Red, Impact::Provider),
            r(ProbeStatus::Green, Impact::Ok),
        ]);
        assert_eq!(
            (s.status, s.exit_code, s.impact_code),
            (ProbeStatus::Red, 4, 4)
        );
        assert_eq!(
            s.totals,
            Totals {
                green: 1,
                yellow: 0,
                red: 2
            }
        );
        let json = serde_json::to_value(r(ProbeStatus::Red, Impact::Environment)).unwrap();
        assert_eq!(json["status"], "red");
        assert_eq!(json["impact"], "environment");
        assert_eq!(json["impact_code"], 3);
    }
}
