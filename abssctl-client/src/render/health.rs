//! `abssctl doctor`: a table of checks per instance, then one summary line.

use abssd_proto::{HealthReport, ProbeStatus};

use super::{Align, esc, table};

/// The report for people.
pub fn report(report: &HealthReport) -> String {
    let mut out = String::new();
    // Host-wide results first, then each instance in the order reported.
    let mut groups: Vec<Option<&str>> = Vec::new();
    for r in &report.results {
        let key = r.instance.as_deref();
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    groups.sort_by_key(|g| g.is_some());
    for group in groups {
        let rows: Vec<Vec<String>> = report
            .results
            .iter()
            .filter(|r| r.instance.as_deref() == group)
            .map(|r| {
                let mut message = r.message.clone();
                if let Some(fix) = &r.remediation
                    && r.status != ProbeStatus::Green
                {
                    message.push_str(" -> ");
                    message.push_str(fix);
                }
                vec![r.id.clone(), r.status.as_str().to_owned(), message]
            })
            .collect();
        match group {
            Some(name) => out.push_str(&format!("instance {}\n", esc(name))),
            None => out.push_str("host\n"),
        }
        out.push_str(&table(
            &[
                ("check", Align::Left),
                ("status", Align::Left),
                ("message", Align::Left),
            ],
            &rows,
        ));
        out.push('\n');
    }
    let s = &report.summary;
    let impact = serde_json::to_value(s.impact)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    out.push_str(&format!(
        "doctor: {} (green={} yellow={} red={}; impact={impact}, exit={})\n",
        s.status.as_str(),
        s.totals.green,
        s.totals.yellow,
        s.totals.red,
        s.exit_code
    ));
    out
}
