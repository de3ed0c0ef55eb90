//! `backup run`: the job's summary, one row per instance with each step's
//! status, then what failed and what to look at.

use abssd_proto::{JobStep, JobStepStatus, RunResult};

use super::{Align, table};

/// The table, the failed steps' messages and the warnings, and a count.
pub fn summary(r: &RunResult) -> String {
    if r.instances.is_empty() {
        return "no instances in the registry: nothing was backed up\n".to_owned();
    }
    let status = |i: &abssd_proto::RunInstance, step: JobStep| {
        i.steps
            .iter()
            .find(|s| s.step == step)
            .map_or("-", |s| match s.status {
                JobStepStatus::Ok => "ok",
                JobStepStatus::Failed => "FAILED",
                JobStepStatus::Skipped => "skipped",
            })
            .to_owned()
    };
    // The push step is there only on hosts with a remote that pushes
    // automatically: its column too.
    let pushes = r
        .instances
        .iter()
        .any(|i| i.steps.iter().any(|s| s.step == JobStep::Push));
    let steps: Vec<JobStep> = JobStep::ALL
        .into_iter()
        .filter(|&s| s != JobStep::Push || pushes)
        .collect();
    let rows: Vec<Vec<String>> = r
        .instances
        .iter()
        .map(|i| {
            let mut row = vec![
                i.instance.clone(),
                if i.ok { "ok" } else { "FAILED" }.to_owned(),
                i.backup_id.clone().unwrap_or_else(|| "-".to_owned()),
            ];
            row.extend(steps.iter().map(|&s| status(i, s)));
            row
        })
        .collect();
    let mut columns = vec![
        ("instance", Align::Left),
        ("result", Align::Left),
        ("backup", Align::Left),
    ];
    columns.extend(steps.iter().map(|s| (s.name(), Align::Left)));
    let mut text = table(&columns, &rows);
    for i in &r.instances {
        for s in i.steps.iter().filter(|s| s.status == JobStepStatus::Failed) {
            text.push_str(&format!(
                "{}: {} failed: {}\n",
                super::esc(&i.instance),
                s.step.name(),
                super::esc(&s.message)
            ));
        }
        for w in &i.warnings {
            text.push_str(&format!(
                "{}: warning: {}\n",
                super::esc(&i.instance),
                super::esc(w)
            ));
        }
    }
    let failed = r.instances.iter().filter(|i| !i.ok).count();
    text.push_str(&format!(
        "{} instance(s): {} ok, {failed} failed\n",
        r.instances.len(),
        r.instances.len() - failed
    ));
    text
}

#[cfg(test)]
mod tests {
    use abssd_proto::{JobStepOutcome, RunInstance};

    use super::*;

    fn step(step: JobStep, status: JobStepStatus, message: &str) -> JobStepOutcome {
        JobStepOutcome {
            step,
            status,
            message: message.into(),
        }
    }

    #[test]
    fn the_summary_shows_each_step_and_says_what_failed() {
        use JobStepStatus::*;
        let r = RunResult {
            ok: false,
            instances: vec![
                RunInstance {
                    instance: "alpha".into(),
                    ok: true,
                    backup_id: Some("20260101-000000-alpha-0a1b2c".into()),
                    steps: vec![
                        step(JobStep::Create, Ok, "made"),
                        step(JobStep::Prune, Skipped, "no policy"),
                        step(JobStep::Verify, Ok, "1 verified"),
                        step(JobStep::Reconcile, Ok, "drift"),
                    ],
                    warnings: vec!["drift: 1 orphaned\u{1b}[2J".into()],
                },
                RunInstance {
                    instance: "beta".into(),
                    ok: false,
                    backup_id: None,
                    steps: vec![
                        step(JobStep::Create, Failed, "data directory missing"),
                        step(JobStep::Prune, Skipped, "an earlier step failed"),
                        step(JobStep::Verify, Skipped, "an earlier step failed"),
                        step(JobStep::Reconcile, Skipped, "an earlier step failed"),
                    ],
                    warnings: vec![],
                },
            ],
        };
        let text = summary(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "INSTANCE  RESULT  BACKUP                        CREATE  PRUNE    VERIFY   RECONCILE"
        );
        assert_eq!(
            lines[1],
            "alpha     ok      20260101-000000-alpha-0a1b2c  ok      skipped  ok       ok"
        );
        assert_eq!(
            lines[2],
            "beta      FAILED  -                             FAILED  skipped  skipped  skipped"
        );
        assert!(text.contains("beta: create failed: data directory missing\n"));
        assert!(
            text.contains("alpha: warning: drift: 1 orphaned\\u{1b}[2J\n"),
            "{text}"
        );
        assert!(text.ends_with("2 instance(s): 1 ok, 1 failed\n"));
    }
}
