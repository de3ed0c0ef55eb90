//! `schedule enable | disable | show` for people.

use abssd_proto::{ScheduleResult, ScheduleShowResult};

use super::{Align, esc, table};

/// `schedule enable`: the timer and when it runs.
pub fn enabled(r: &ScheduleResult) -> String {
    let when = match (&r.calendar, &r.normalized) {
        (Some(given), Some(norm)) if given != norm => {
            format!("{} ({})", esc(given), esc(norm))
        }
        (Some(given), _) => esc(given).into_owned(),
        (None, _) => "its unit file's calendar".to_owned(),
    };
    format!(
        "{} enabled and started: runs {when}\nsee it with: abssctl schedule show\n",
        esc(&r.unit)
    )
}

/// `schedule disable`: one line.
pub fn disabled(r: &ScheduleResult) -> String {
    format!("{} stopped and disabled\n", esc(&r.unit))
}

/// `schedule show`: one row per timer.
pub fn timers(r: &ScheduleShowResult) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = r
        .timers
        .iter()
        .map(|t| {
            vec![
                t.instance.clone().unwrap_or_else(|| "--all".to_owned()),
                if t.enabled { "yes" } else { "no" }.to_owned(),
                if t.calendar.is_empty() {
                    dash()
                } else {
                    t.calendar.join("; ")
                },
                t.next_run.clone().unwrap_or_else(dash),
                t.last_run.clone().unwrap_or_else(dash),
                t.last_result.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut text = table(
        &[
            ("instance", Align::Left),
            ("enabled", Align::Left),
            ("calendar", Align::Left),
            ("next run", Align::Left),
            ("last run", Align::Left),
            ("last result", Align::Left),
        ],
        &rows,
    );
    if r.left_out > 0 {
        text.push_str(&format!(
            "{} more instances not shown: abssctl schedule show NAME\n",
            r.left_out
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use abssd_proto::TimerInfo;

    #[test]
    fn a_row_per_timer_with_dashes_for_nothing() {
        let t = |instance: Option<&str>, enabled| TimerInfo {
            unit: "u".into(),
            instance: instance.map(str::to_owned),
            enabled,
            unit_file_state: String::new(),
            active_state: String::new(),
            calendar: vec!["*-*-* 00:00:00".into()],
            next_run: enabled.then(|| "2026-01-01T00:00:00Z".into()),
            last_run: None,
            last_result: enabled.then(|| "success".into()),
        };
        let text = timers(&ScheduleShowResult {
            timers: vec![t(Some("alpha\u{1b}"), true), t(None, false)],
            left_out: 3,
        });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("INSTANCE"), "{text}");
        assert!(
            lines[1].contains("alpha\\u{1b}") || lines[1].contains("alpha\\u001b"),
            "{text}"
        );
        assert!(lines[1].contains("2026-01-01T00:00:00Z") && lines[1].ends_with("success"));
        assert!(
            lines[2].starts_with("--all") && lines[2].ends_with('-'),
            "{text}"
        );
        assert!(lines[3].starts_with("3 more"), "{text}");
    }
}
