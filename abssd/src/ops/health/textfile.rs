//! The Prometheus text-format file node_exporter's textfile collector reads:
//! `<health.textfile_dir>/abssctl.prom`, written to a temporary file beside it
//! (a name not ending in `.prom`, which the collector skips) and renamed over
//! it, so a scrape never sees half a file. Written with every full report;
//! the backup job can call [`write_textfile`] after each run.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use abssd_proto::{HealthReport, ProbeStatus};

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::ops::Ctx;

/// The file's name in `health.textfile_dir`.
pub const FILE_NAME: &str = "abssctl.prom";

/// Write `report` as `abssctl.prom` when `health.textfile_dir` is set;
/// returns the file written.
pub fn write_textfile(ctx: &Ctx, report: &HealthReport) -> Result<Option<PathBuf>> {
    let Some(dir) = &ctx.config.daemon.textfile_dir else {
        return Ok(None);
    };
    let path = dir.join(FILE_NAME);
    let tmp = fsutil::write_temp(&path, render(report).as_bytes())?;
    // node_exporter runs as its own user.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .at("setting the mode of", tmp.path())?;
    fsutil::replace(tmp, &path)?;
    Ok(Some(path))
}

/// The report as Prometheus gauges, one series per instance.
pub fn render(report: &HealthReport) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    type Pick = fn(&abssd_proto::InstanceFacts) -> Option<f64>;
    let series: [(&str, &str, Pick); 8] = [
        (
            "abssctl_backups",
            "Available backups of the instance.",
            |f| Some(f.backups as f64),
        ),
        (
            "abssctl_backups_bytes",
            "Bytes of the instance's available backup archives.",
            |f| Some(f.bytes as f64),
        ),
        (
            "abssctl_newest_backup_age_seconds",
            "Age of the instance's newest available backup.",
            |f| f.newest_backup_age_seconds.map(|s| s as f64),
        ),
        (
            "abssctl_newest_backup_timestamp_seconds",
            "When the instance's newest available backup was made.",
            |f| seconds(f.newest_backup_at.as_deref()),
        ),
        (
            "abssctl_last_verify_timestamp_seconds",
            "When a backup of the instance was last verified.",
            |f| seconds(f.last_verified_at.as_deref()),
        ),
        (
            "abssctl_last_job_success",
            "Whether the instance's last backup job succeeded (1) or failed (0).",
            |f| f.last_job_ok.map(|ok| if ok { 1.0 } else { 0.0 }),
        ),
        (
            "abssctl_last_job_timestamp_seconds",
            "When the instance's last backup job ended.",
            |f| seconds(f.last_job_finished_at.as_deref()),
        ),
        (
            "abssctl_backups_free_bytes",
            "Bytes free in the instance's backups directory.",
            |f| f.free_bytes.map(|b| b as f64),
        ),
    ];
    for (name, help, pick) in series {
        gauge(&mut out, name, help);
        for f in &report.instances {
            if let Some(v) = pick(f) {
                let _ = writeln!(out, "{name}{{instance=\"{}\"}} {v}", f.instance);
            }
        }
    }
    gauge(
        &mut out,
        "abssctl_health_status",
        "Worst probe status of the instance: 0 green, 1 yellow, 2 red.",
    );
    for f in &report.instances {
        let worst = report
            .results
            .iter()
            .filter(|r| r.instance.as_deref() == Some(&f.instance))
            .map(|r| r.status)
            .max()
            .unwrap_or(ProbeStatus::Green);
        let _ = writeln!(
            out,
            "abssctl_health_status{{instance=\"{}\"}} {}",
            f.instance, worst as u8
        );
    }
    gauge(
        &mut out,
        "abssctl_health_exit_code",
        "What abssctl doctor exits with (ADR-013).",
    );
    let _ = writeln!(out, "abssctl_health_exit_code {}", report.summary.exit_code);
    out
}

/// An RFC 3339 time as Unix seconds.
fn seconds(text: Option<&str>) -> Option<f64> {
    super::probes::parse_time(text?).map(|t| t.as_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use abssd_proto::{HealthMetadata, HealthSummary, InstanceFacts};

    #[test]
    fn gauges_per_instance_and_only_known_values() {
        let report = HealthReport {
            summary: HealthSummary::of(&[]),
            results: Vec::new(),
            instances: vec![InstanceFacts {
                instance: "alpha".into(),
                backups: 2,
                bytes: 300,
                newest_backup_at: Some("2026-01-01T00:00:00Z".into()),
                last_job_ok: Some(false),
                ..InstanceFacts::default()
            }],
            metadata: HealthMetadata {
                generated_at: "2026-01-01T00:00:00Z".into(),
                duration_ms: 0,
                probe_count: 0,
                max_age_seconds: 1,
                textfile: None,
            },
        };
        let text = render(&report);
        assert!(
            text.contains("abssctl_backups{instance=\"alpha\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("abssctl_backups_bytes{instance=\"alpha\"} 300\n"));
        assert!(
            text.contains(
                "abssctl_newest_backup_timestamp_seconds{instance=\"alpha\"} 1767225600\n"
            )
        );
        assert!(text.contains("abssctl_last_job_success{instance=\"alpha\"} 0\n"));
        assert!(
            !text.contains("abssctl_last_verify_timestamp_seconds{"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE abssctl_health_exit_code gauge\nabssctl_health_exit_code 0\n")
        );
    }
}
