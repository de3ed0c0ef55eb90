//! `backup run`: the backup job, what a timer runs every night. For each
//! instance in scope (one, or every instance of the registry in name order):
//!
//! 1. `create` — a backup as `backup create` with no flags makes it (the
//!    configured capture mode, compression and level);
//! 2. `prune` — the configured policy (`backups.retention`), scoped to the
//!    instance and confirmed by the job (the job is the operator's standing
//!    order); `skipped` when no policy is configured;
//! 3. `verify` — the new archive, and the `backups.job.verify_sample` older
//!    available backups of the instance verified longest ago (or never),
//!    deep when `backups.job.deep`;
//! 4. `push` — the new backup to each remote with `auto_push: true`
//!    ([`push::auto`](crate::ops::push::auto)); the step is left out when no
//!    remote pushes automatically;
//! 5. `reconcile` — the instance's index entries against the disk,
//!    read-only: drift is a warning of the summary, not fixed.
//!
//! Each step is the existing operation called as it is ([`create::run`],
//! [`prune::run`], [`verify::run`], [`reconcile::run`]), one after the other;
//! the job holds no lock of its own, so each step takes and releases its
//! locks as it does when called alone, and nothing is held across steps.
//!
//! A step that fails fails its instance (its later steps are `skipped`), never
//! the others. Each instance's outcome is written to
//! `state_dir/jobs/<instance>.json` ([`record`]) and told to an
//! [`Observer`] (hooks and pings attach there). When any instance failed the
//! operation fails with the kind of the first failure, the summary in its
//! detail.
//!
//! * `hooks`    — the daemon's observer: `hooks:` of abssd.yml, commands and
//!   monitoring pings around each instance's job.
//! * `observer` — the [`Observer`] seam, and the bounded log tail it is given.
//! * `record`   — the job record file, written safely.
//! * `steps`    — the steps of one instance's job.

pub mod hooks;
pub mod observer;
pub mod record;
mod steps;

use abssd_proto::{
    Actor, EventKind, JobRecord, JobStep, JobStepStatus, RunInstance, RunParams, RunPlan,
    RunResult, WireError,
};

use crate::config::Retention;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::registry::{Registry, validate_name};
use crate::text::cut;
pub use hooks::Hooks;
use observer::Tail;
pub use observer::{Answer, Nobody, Observer};
use steps::{Job, MESSAGE_BYTES};

/// Failed instances named in the error's message (the summary has them all).
const NAMED_FAILURES: usize = 8;

/// Check the parameters: exactly one of `instance` and `all`.
pub fn validate(params: &RunParams) -> Result<()> {
    match (&params.instance, params.all) {
        (Some(_), true) => Err(Error::validation("give an instance or --all, not both")),
        (None, false) => Err(Error::validation(
            "give an instance (--instance NAME) or --all",
        )),
        (Some(name), false) => validate_name(name),
        (None, true) => Ok(()),
    }
}

/// Run the job. `Ok` when every instance's job succeeded; otherwise
/// [`Error::JobFailed`] carrying the summary.
pub async fn run(
    ctx: &Ctx,
    params: &RunParams,
    actor: &Actor,
    observer: &dyn Observer,
    progress: &Reporter,
) -> Result<(RunPlan, RunResult)> {
    validate(params)?;
    let instances = scope(ctx, params).await?;
    let settings = ctx.config.daemon.job;
    let plan = RunPlan {
        instances: instances.clone(),
        prune: has_policy(&ctx.config.daemon.retention),
        verify_sample: settings.verify_sample,
        deep: settings.deep,
    };
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(&plan),
    });
    if instances.is_empty() {
        progress.info("the registry has no instances: nothing to back up".into());
    }

    let mut outcomes = Vec::with_capacity(instances.len());
    let mut first_failure: Option<WireError> = None;
    for instance in &instances {
        let Some(_claim) = ctx.jobs.claim(instance.to_owned()) else {
            outcomes.push(passed_by(
                instance,
                crate::ops::push::any_auto(ctx),
                progress,
            ));
            continue;
        };
        let (outcome, failure) = one(ctx, instance, &plan, actor, observer, progress).await;
        if first_failure.is_none() {
            first_failure = failure;
        }
        outcomes.push(outcome);
    }
    let ok = outcomes.iter().all(|o| o.ok);
    let result = RunResult {
        instances: outcomes,
        ok,
    };
    match first_failure {
        None => Ok((plan, result)),
        Some(first) => Err(failed(&result, first)),
    }
}

/// The instances in scope, in name order; a named one must be registered.
async fn scope(ctx: &Ctx, params: &RunParams) -> Result<Vec<String>> {
    let file = ctx.config.layout.registry_file();
    let registry = tokio::task::spawn_blocking(move || Registry::load(&file)).await??;
    match &params.instance {
        Some(name) => {
            if registry.get(name).is_none() {
                return Err(Error::not_found("instance", name));
            }
            Ok(vec![name.clone()])
        }
        None => {
            let mut names: Vec<String> = registry
                .instances
                .iter()
                .map(|i| i.name.clone())
                // An entry whose name no operation accepts cannot be backed
                // up; create would refuse it all the same.
                .filter(|n| validate_name(n).is_ok())
                .collect();
            names.sort();
            names.dedup();
            Ok(names)
        }
    }
}

/// An instance another job is working on now: passed by, every step
/// skipped, not a failure (that job reports it, and writes its record).
fn passed_by(instance: &str, pushes: bool, progress: &Reporter) -> RunInstance {
    let why = "another backup job of this instance is running";
    progress.warn(format!("backup job of {instance}: passed by: {why}"));
    RunInstance {
        instance: instance.to_owned(),
        ok: true,
        backup_id: None,
        steps: JobStep::ALL
            .iter()
            .filter(|&&step| step != JobStep::Push || pushes)
            .map(|&step| abssd_proto::JobStepOutcome {
                step,
                status: JobStepStatus::Skipped,
                message: why.into(),
            })
            .collect(),
        warnings: vec![format!("passed by: {why}")],
    }
}

/// Whether `backups.retention` names a rule that keeps something (a policy
/// of zeros is no policy: the prune step is skipped, not refused).
fn has_policy(r: &Retention) -> bool {
    [
        r.keep_last,
        r.keep_hourly,
        r.keep_daily,
        r.keep_weekly,
        r.keep_monthly,
        r.keep_yearly,
    ]
    .iter()
    .any(|n| n.is_some_and(|n| n > 0))
        || r.keep_within
            .as_deref()
            .and_then(crate::config::restic_span)
            .is_some_and(|s| !s.is_zero())
}

/// The error of a job in which an instance failed.
fn failed(result: &RunResult, first: WireError) -> Error {
    let failed: Vec<String> = result
        .instances
        .iter()
        .filter(|i| !i.ok)
        .map(|i| {
            let step = i
                .steps
                .iter()
                .find(|s| s.status == JobStepStatus::Failed)
                .map_or("?", |s| s.step.name());
            format!("{} ({step})", i.instance)
        })
        .collect();
    let more = failed.len().saturating_sub(NAMED_FAILURES);
    let mut names = failed
        .iter()
        .take(NAMED_FAILURES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        names.push_str(&format!(" and {more} more"));
    }
    Error::JobFailed {
        kind: first.kind,
        message: format!(
            "the backup job failed for {} of {} instance(s): {names}; first failure: {}",
            failed.len(),
            result.instances.len(),
            cut(first.message, MESSAGE_BYTES)
        ),
        summary: Box::new(serde_json::to_value(result).unwrap_or_default()),
    }
}

/// One instance's job: its outcome, and its first failure.
async fn one(
    ctx: &Ctx,
    instance: &str,
    plan: &RunPlan,
    actor: &Actor,
    observer: &dyn Observer,
    progress: &Reporter,
) -> (RunInstance, Option<WireError>) {
    let started_at = fsutil::now_utc();
    let op_id = progress.op_id();
    let (tail, lines) = Tail::over(progress.clone());
    // Hooks report to the operation, not to the tail: what a hook prints
    // (perhaps a secret) never goes into a ping's body.
    let heard = observer.started(instance, &op_id, progress).await;
    let mut job = Job {
        ctx,
        instance,
        progress: &tail,
        lines: &lines,
        steps: Vec::with_capacity(JobStep::ALL.len()),
        warnings: Vec::new(),
        failure: None,
    };
    job.heard(heard.warnings);
    if let Some(refusal) = heard.refused {
        // As borgmatic's before hooks: nothing is backed up.
        job.fail(JobStep::Create, Error::Environment(refusal).to_wire());
    }

    let backup_id = match job.failure {
        None => job.create(actor).await,
        Some(_) => None,
    };
    job.prune(plan.prune).await;
    job.verify(backup_id.as_deref(), plan).await;
    job.push(backup_id.as_deref()).await;
    job.reconcile(actor).await;

    let ok = job.failure.is_none();
    let record = JobRecord {
        instance: instance.to_owned(),
        op_id,
        started_at,
        finished_at: fsutil::now_utc(),
        ok,
        backup_id: backup_id.clone(),
        steps: job.steps.clone(),
    };
    let state_dir = ctx.config.layout.state_dir.clone();
    let written = record.clone();
    match tokio::task::spawn_blocking(move || record::write(&state_dir, &written)).await {
        Ok(Ok(_)) => {}
        // The job's outcome stands; the record is what is missing.
        Ok(Err(e)) => progress.warn(format!("the job record of {instance} was not written: {e}")),
        Err(e) => progress.warn(format!("the job record of {instance} was not written: {e}")),
    }
    let heard = observer.ended(&record, &lines.lines(), progress).await;
    job.heard(heard.warnings);
    let failure = job.failure.take();
    (
        RunInstance {
            instance: instance.to_owned(),
            ok,
            backup_id,
            steps: job.steps,
            warnings: job.warnings,
        },
        failure,
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use abssd_proto::Phase;
    use std::sync::{Arc, Mutex};

    use abssd_proto::ErrorKind;

    use super::*;
    use crate::config::{Config, Overrides};
    use crate::progress::Recorder;

    /// Two instances, `alpha` and `beta`, each with one small file;
    /// systemd cannot be reached.
    fn two_instances(dir: &Path) -> Arc<Ctx> {
        two_instances_with(dir, |_| {})
    }

    fn two_instances_with(dir: &Path, set: impl FnOnce(&mut Config)) -> Arc<Ctx> {
        let over = Overrides {
            prefix: Some(dir.into()),
            bus_address: Some(format!("unix:path={}", dir.join("no-bus").display())),
            ..Overrides::default()
        };
        let mut config = Config::load_with_env(&over, &Default::default()).unwrap();
        set(&mut config);
        for name in ["beta", "alpha"] {
            let data = config.layout.instance_root.join(name);
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("budget.txt"), name.repeat(500)).unwrap();
        }
        let registry = config.layout.registry_file();
        std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
        std::fs::write(&registry, "instances:\n- name: beta\n- name: alpha\n").unwrap();
        Ctx::new(config)
    }

    fn root() -> Actor {
        Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        }
    }

    /// Remembers what it was told.
    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Observer for Heard {
        fn started<'a>(
            &'a self,
            instance: &'a str,
            _: &'a str,
            _: &'a Reporter,
        ) -> futures_util::future::BoxFuture<'a, Answer> {
            self.0.lock().unwrap().push(format!("started {instance}"));
            Box::pin(std::future::ready(Answer::default()))
        }
        fn ended<'a>(
            &'a self,
            record: &'a JobRecord,
            tail: &'a [String],
            _: &'a Reporter,
        ) -> futures_util::future::BoxFuture<'a, Answer> {
            assert!(!tail.is_empty() && tail.len() <= observer::TAIL_LINES);
            self.0
                .lock()
                .unwrap()
                .push(format!("ended {} ok={}", record.instance, record.ok));
            Box::pin(std::future::ready(Answer {
                warnings: vec![format!("heard {}", record.instance)],
                refused: None,
            }))
        }
    }

    fn statuses(i: &RunInstance) -> Vec<(JobStep, JobStepStatus)> {
        i.steps.iter().map(|s| (s.step, s.status)).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_runs_every_step_per_instance_in_name_order_and_records_each() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = two_instances(dir.path());
        let (rec, progress) = Recorder::start("op-job");
        let heard = Heard::default();
        let all = RunParams {
            all: true,
            ..RunParams::default()
        };
        let (plan, result) = run(&ctx, &all, &root(), &heard, &progress).await.unwrap();
        assert_eq!(plan.instances, ["alpha", "beta"]);
        assert!(result.ok);
        use JobStepStatus::*;
        for i in &result.instances {
            assert_eq!(
                i.warnings,
                [format!("heard {}", i.instance)],
                "an observer's warnings join the summary"
            );
            assert_eq!(
                statuses(i),
                [
                    (JobStep::Create, Ok),
                    (JobStep::Prune, Skipped),
                    (JobStep::Verify, Ok),
                    (JobStep::Reconcile, Ok),
                ],
                "{i:?}"
            );
        }
        let job_phases: Vec<String> = rec
            .phases()
            .into_iter()
            .filter(|p| matches!(p, Phase::Job(..)))
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            job_phases,
            [
                "alpha:create",
                "alpha:verify",
                "alpha:reconcile",
                "beta:create",
                "beta:verify",
                "beta:reconcile"
            ]
        );
        let plans = rec
            .events()
            .iter()
            .filter(|e| matches!(e, EventKind::Plan { .. }))
            .count();
        assert_eq!(plans, 1, "only the job's own plan");
        let state = &ctx.config.layout.state_dir;
        for i in &result.instances {
            let r = record::read(state, &i.instance).unwrap().unwrap();
            assert_eq!(
                (r.ok, &r.backup_id, &r.steps),
                (true, &i.backup_id, &i.steps)
            );
            assert_eq!(r.op_id, "op-job");
        }
        assert_eq!(
            *heard.0.lock().unwrap(),
            [
                "started alpha",
                "ended alpha ok=true",
                "started beta",
                "ended beta ok=true"
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_instance_fails_alone_and_the_error_carries_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = two_instances(dir.path());
        std::fs::remove_dir_all(ctx.config.layout.instance_root.join("alpha")).unwrap();
        let (_rec, progress) = Recorder::start("op-job");
        let all = RunParams {
            all: true,
            ..RunParams::default()
        };
        let err = run(&ctx, &all, &root(), &Nobody, &progress)
            .await
            .unwrap_err();
        let wire = err.to_wire();
        assert_ne!(wire.kind, ErrorKind::Internal);
        assert!(wire.message.contains("1 of 2") && wire.message.contains("alpha (create)"));
        let summary: RunResult =
            serde_json::from_value(wire.detail.unwrap()["summary"].clone()).unwrap();
        assert!(!summary.ok);
        let (alpha, beta) = (&summary.instances[0], &summary.instances[1]);
        use JobStepStatus::*;
        assert_eq!(
            statuses(alpha),
            [
                (JobStep::Create, Failed),
                (JobStep::Prune, Skipped),
                (JobStep::Verify, Skipped),
                (JobStep::Reconcile, Skipped),
            ]
        );
        assert!(beta.ok && beta.backup_id.is_some(), "{beta:?}");
        let state = &ctx.config.layout.state_dir;
        assert!(!record::read(state, "alpha").unwrap().unwrap().ok);
        assert!(record::read(state, "beta").unwrap().unwrap().ok);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sample_takes_the_least_recently_verified_and_deep_is_obeyed() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = two_instances_with(dir.path(), |c| {
            c.daemon.job = crate::config::JobSettings {
                verify_sample: 1,
                deep: true,
            };
        });
        let alpha = RunParams {
            instance: Some("alpha".into()),
            ..RunParams::default()
        };
        let (_rec, progress) = Recorder::start("op-1");
        let (_, first) = run(&ctx, &alpha, &root(), &Nobody, &progress)
            .await
            .unwrap();
        let (_rec, progress) = Recorder::start("op-2");
        let (_, second) = run(&ctx, &alpha, &root(), &Nobody, &progress)
            .await
            .unwrap();
        let [first, second] = [first, second].map(|r| r.instances[0].backup_id.clone().unwrap());
        // Verified within one second by the jobs: dated apart here, the
        // second verified longest ago.
        let file = &ctx.config.layout.index_file;
        let mut raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        for e in raw["backups"].as_array_mut().unwrap() {
            let at = if e["id"] == first.as_str() {
                "2026-01-02T00:00:00Z"
            } else {
                "2026-01-01T00:00:00Z"
            };
            e["checksum"]["last_verified"] = at.into();
        }
        std::fs::write(file, serde_json::to_vec(&raw).unwrap()).unwrap();
        let (rec, progress) = Recorder::start("op-3");
        let (plan, third) = run(&ctx, &alpha, &root(), &Nobody, &progress)
            .await
            .unwrap();
        assert!(plan.deep && plan.verify_sample == 1);
        let third = third.instances[0].backup_id.clone().unwrap();
        let verified: Vec<Phase> = rec
            .phases()
            .into_iter()
            .filter(|p| matches!(p, Phase::Verify(_) | Phase::VerifyDeep(_)))
            .collect();
        assert_eq!(
            verified,
            [Phase::VerifyDeep(third), Phase::VerifyDeep(second)],
            "first: {first}"
        );
    }

    #[tokio::test]
    async fn bad_scopes_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = two_instances(dir.path());
        let (_rec, progress) = Recorder::start("op-job");
        for (params, kind) in [
            (RunParams::default(), ErrorKind::Validation),
            (
                RunParams {
                    instance: Some("alpha".into()),
                    all: true,
                    ..RunParams::default()
                },
                ErrorKind::Validation,
            ),
            (
                RunParams {
                    instance: Some("../x".into()),
                    ..RunParams::default()
                },
                ErrorKind::Validation,
            ),
            (
                RunParams {
                    instance: Some("gamma".into()),
                    ..RunParams::default()
                },
                ErrorKind::NotFound,
            ),
        ] {
            let err = run(&ctx, &params, &root(), &Nobody, &progress)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), kind, "{params:?}: {err}");
        }
        assert!(!ctx.config.layout.state_dir.join(record::DIR).exists());
        assert!(!ctx.config.layout.backups_root.join("alpha").exists());
    }
}
