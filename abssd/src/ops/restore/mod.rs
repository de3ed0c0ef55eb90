//! `backup restore` (SPEC §7): bring an instance back from an archive made by
//! this project, the Python tool or GNU tar, so that a failure never leaves it
//! half restored.
//!
//! [`run`] checks and plans, then hands the run to `live` or `dest`. Below
//! them, each module does one part and imports only the ones under it:
//!
//! * `plan`       — pre-flight checks and the plan (the whole `--dry-run` answer).
//! * `guards`     — pre-flight checks of the filesystem around the target: one
//!   mount for the swap's renames, and what earlier restores left there.
//! * `live`       — the live restore, SPEC §7 steps 3–7 in order: lock,
//!   pre-restore backup, staging, swap, assets, registry, unit, nginx,
//!   clean-up; every destructive step journaled first ([`crate::journal`]).
//! * `dest`       — `--dest`: the data only, into a new directory.
//! * `pre_backup` — step 3's backup of the live instance.
//! * `swap`       — the journaled renames of data, service files and the site
//!   link, each keeping what it replaces.
//! * `job`        — one run: its journal, staging, rollback, and the commit →
//!   clean-up → annotate → close tail every restore ends with.
//! * `payload`    — what the extracted archive must hold.
//! * `history`    — the restore's record on the backup's index entry.
//! * `rollback`   — undo from the journal, reporting what was put back and what
//!   could not be.
//! * `recover`    — start-up recovery of a restore the daemon stopped during.
//!
//! Extraction itself is [`crate::extract`]: every entry is created by us beneath
//! the staging directory, and the archive is hashed in the same pass.

use abssd_proto::{Actor, EventKind, Phase, RestoreParams, RestorePlan, RestoreResult, status};

use crate::config::unit_name;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};

mod dest;
pub mod guards;
mod history;
mod job;
mod live;
mod payload;
pub mod plan;
mod pre_backup;

pub(crate) use pre_backup::{LABEL as PRE_RESTORE_LABEL, PYTHON_LABEL as PYTHON_PRE_RESTORE_LABEL};
pub mod recover;
pub mod rollback;
mod swap;
mod unplaced;

use job::Job;

/// Run `backup restore`. Returns the plan, and the result unless `dry_run`.
pub async fn run(
    ctx: &Ctx,
    params: &RestoreParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(RestorePlan, Option<RestoreResult>)> {
    check_flags(params)?;
    // Held until the restore ends, so no prune removes the archive it reads;
    // taken before the index is read, so a prune that ended first is seen.
    let _reading = ctx.in_use.claim(&params.id)?;
    progress.phase(Phase::Preflight);
    let (config, p) = (ctx.config.clone(), params.clone());
    let pre = tokio::task::spawn_blocking(move || plan::preflight(&config, &p)).await??;
    let live = params.dest.is_none();
    let data_only = !live || params.data_only || pre.entry.metadata.data_only;

    let units = if live {
        Some(ctx.systemd.connect().await?)
    } else {
        None
    };
    let unit_before = match &units {
        Some(u) => Some(u.state(&unit_name(&pre.entry.instance)).await?),
        None => None,
    };
    let stamp = stamp(&progress.op_id());
    let staging = plan::staging_dir(&pre.target, &stamp);
    let pre_backup_dir = (live && !params.no_pre_backup)
        .then(|| ctx.config.layout.instance_backup_dir(&pre.entry.instance));
    let mut plan = plan::build(
        &ctx.config,
        plan::PlanInput {
            pre: &pre,
            params,
            unit: unit_before.as_ref(),
            staging: &staging,
            pre_backup_dir,
            data_only,
        },
    )?;
    // The dry run (which the client's confirmation shows) reads the archive
    // through for what the restore would not install; the restore itself
    // finds the same in the unpacked payload.
    if params.dry_run && !data_only && pre.pull.is_some() {
        plan.warnings.push(
            "the archive is not here yet: the unit and site files it holds are not listed before it is pulled".to_owned(),
        );
    } else if params.dry_run && !data_only {
        let (archive, algorithm, instance) = (
            pre.archive.clone(),
            pre.algorithm,
            pre.entry.instance.clone(),
        );
        let limits = crate::extract::Limits {
            max_entries: ctx.config.daemon.max_restore_entries,
            recorded_bytes: pre.entry.metadata.uncompressed_bytes,
        };
        let found =
            tokio::task::spawn_blocking(move || unplaced::in_archive(&archive, algorithm, limits))
                .await?;
        match found {
            Ok(found) => plan.warnings.extend(unplaced::warnings(&instance, &found)),
            Err(e) => plan.warnings.push(format!(
                "could not read the archive through to list its unit and site files: {e}"
            )),
        }
    }
    progress.emit(EventKind::Plan {
        plan: abssd_proto::Json::new(&plan),
    });
    for w in &plan.warnings {
        progress.warn(w.clone());
    }
    let short = plan.space.available_bytes
        < plan
            .space
            .needed_bytes
            .saturating_add(plan.space.reserve_bytes);
    if params.dry_run {
        if short {
            progress.warn(no_space(&plan).to_string());
        }
        return Ok((plan, None));
    }
    if let Some(src) = pre.pull.as_ref().filter(|_| !params.pull) {
        return Err(Error::validation(format!(
            "the archive of backup {} is not here ({}), but remote {} holds a copy: pass pull: true (abssctl: --pull) to pull it first, or run `abssctl backup pull {}`; nothing changed",
            plan.id, plan.archive, src.remote, plan.id
        )));
    }
    if live && !params.yes {
        return Err(Error::validation(format!(
            "a live restore replaces the data of instance {} in {}; confirm with yes: true (abssctl: --yes), or use --dry-run to see the plan",
            plan.instance, plan.target
        )));
    }
    if short {
        return Err(no_space(&plan));
    }
    // The plan said so, and the caller agreed (`pull`): the archive comes
    // first, and pre-flight runs again on it (sidecar, size).
    let pre = match &pre.pull {
        Some(src) => {
            crate::ops::pull::fetch(ctx, &params.id, Some(&src.remote), progress).await?;
            let (config, p) = (ctx.config.clone(), params.clone());
            let again = tokio::task::spawn_blocking(move || plan::preflight(&config, &p)).await??;
            if again.pull.is_some() {
                return Err(Error::Internal(format!(
                    "the archive of backup {} is still missing after it was pulled",
                    params.id
                )));
            }
            again
        }
        None => pre,
    };
    if params.verify_deep {
        verify_deep(ctx, &pre.entry, progress).await?;
    }

    let job = Job {
        ctx,
        params,
        actor,
        progress,
        pre: &pre,
        plan: &plan,
        staging,
        stamp,
        data_only,
    };
    let result = match units {
        Some(units) => live::run(&job, &*units).await?,
        None => dest::run(&job).await?,
    };
    Ok((plan, Some(result)))
}

/// `--verify-deep`: the deep check of the archive, before anything changes
/// (no pre-restore backup, no staging yet), recorded in the index like
/// `backup verify --deep`; any problem refuses the restore. The extraction
/// that follows checks the same sha256, so it unpacks the bytes checked here.
async fn verify_deep(
    ctx: &Ctx,
    entry: &abssd_proto::BackupEntry,
    progress: &Reporter,
) -> Result<()> {
    let (entry, sink) = (entry.clone(), progress.clone());
    let (max_entries, state_dir) = (
        ctx.config.daemon.max_restore_entries,
        ctx.config.layout.state_dir.clone(),
    );
    let finding = tokio::task::spawn_blocking(move || {
        crate::ops::verify::check(&entry, max_entries, &sink, Some(&state_dir))
    })
    .await?;
    let finding = crate::ops::verify::record(ctx, vec![finding], progress)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the deep check's finding went missing".into()))?;
    let item = finding.item;
    match item.status.as_str() {
        status::AVAILABLE => {
            progress.info(item.message);
            Ok(())
        }
        // Our side (space, the scratch directory, reading the archive): the
        // archive is not known to be bad, and the error says what to do.
        status::ERROR => Err(Error::Environment(format!(
            "the deep check of backup {} did not finish: {}; nothing was changed",
            item.id, item.message
        ))),
        _ => Err(Error::Archive(format!(
            "refusing to restore backup {}: {}; nothing was changed (the index now marks it {}). Restore another backup, or leave out --verify-deep to restore it as it is",
            item.id, item.message, item.status
        ))),
    }
}

/// Flags that contradict each other are refused before anything is read.
fn check_flags(params: &RestoreParams) -> Result<()> {
    if params.dest.is_some() {
        if params.restart.is_some() {
            return Err(Error::validation(
                "--restart/--no-restart apply to live restores; --dest never touches the unit",
            ));
        }
        // `no_pre_backup` is accepted and changes nothing: a --dest restore
        // takes no pre-restore backup anyway, and the Python tool accepts the
        // pair, so scripts written for it pass it.
        if params.backup_message.is_some() {
            return Err(Error::validation(
                "--backup-message applies to live restores; --dest changes nothing live, so no pre-restore backup is taken",
            ));
        }
    }
    if params.no_pre_backup && params.backup_message.is_some() {
        return Err(Error::validation(
            "--backup-message names the pre-restore backup, which --no-pre-backup skips",
        ));
    }
    if let Some(m) = &params.backup_message {
        crate::ops::check_message("--backup-message", m)?;
    }
    Ok(())
}

fn no_space(plan: &RestorePlan) -> Error {
    Error::Environment(format!(
        "not enough free space on {}: the restore needs {} bytes (max of archive × 1.2 and content × 1.1) and leaves {} free (daemon.restore_reserve_percent); {} are available. Free some space there or restore elsewhere with --dest",
        plan.space.filesystem,
        plan.space.needed_bytes,
        plan.space.reserve_bytes,
        plan.space.available_bytes
    ))
}

/// `<ts>` of `.pre-restore-<ts>` / `.bak-<ts>`: UTC time plus the start of the
/// operation id, so two restores in one second never share a name.
fn stamp(op_id: &str) -> String {
    let short: String = op_id
        .chars()
        .filter(|c| *c != '-')
        .skip(8)
        .take(6)
        .collect();
    format!("{}-{short}", fsutil::compact(jiff::Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use abssd_proto::{Phase, RestoreParams, RestorePlan};

    use super::plan::PlanStep;
    use crate::ops::testkit::Host;

    /// What a restore that runs every step of `plan` reports after its
    /// `preflight`: each step's phase (`lock` has none; the deep check's names
    /// the backup), and within `pre_backup` the nested create's own phases.
    fn reported(plan: &RestorePlan) -> Vec<Phase> {
        plan.steps
            .iter()
            .flat_map(|s| match &s.step {
                Phase::Lock => vec![],
                Phase::DeepCheck => vec![Phase::VerifyDeep(plan.id.clone())],
                Phase::PreBackup => vec![Phase::PreBackup, Phase::Archive, Phase::Index],
                step => vec![step.clone()],
            })
            .collect()
    }

    /// Run a restore of `params` that takes every step its plan lists, and
    /// check that it reported exactly those; the plan.
    async fn planned_and_reported(host: &Host, params: RestoreParams) -> RestorePlan {
        let (rec, progress) = host.progress();
        let (plan, result) = super::run(&host.ctx, &params, &host.actor(), &progress)
            .await
            .unwrap();
        assert!(result.is_some());
        assert_eq!(
            rec.phases(),
            [vec![Phase::Preflight], reported(&plan)].concat(),
            "the phases reported are the plan's steps"
        );
        plan
    }

    /// A step added to the plan that no restore reports, or a phase a restore
    /// reports that its plan does not list, fails here: the live restore
    /// below takes every live step (deep check, pre-restore backup, a running
    /// unit, changed service files and site), the `--dest` one every other.
    #[tokio::test]
    async fn every_step_is_planned_by_some_restore_and_reported_when_it_runs() {
        let host = Host::new();
        let id = host.backup().await;
        host.vandalize();
        let live = planned_and_reported(
            &host,
            RestoreParams {
                id: id.clone(),
                yes: true,
                verify_deep: true,
                ..RestoreParams::default()
            },
        )
        .await;
        let dest = planned_and_reported(
            &host,
            RestoreParams {
                id,
                dest: Some(
                    host.cfg()
                        .layout
                        .restores_root
                        .join("copy")
                        .display()
                        .to_string(),
                ),
                verify_deep: true,
                ..RestoreParams::default()
            },
        )
        .await;

        let mut planned = BTreeSet::new();
        for plan in [&live, &dest] {
            let at: Vec<usize> = plan
                .steps
                .iter()
                .map(|s| {
                    PlanStep::ALL
                        .iter()
                        .position(|p| p.phase() == s.step)
                        .unwrap()
                })
                .collect();
            assert!(
                at.is_sorted(),
                "{:?} is in PlanStep::ALL's order",
                plan.steps
            );
            planned.extend(plan.steps.iter().map(|s| s.step.to_string()));
        }
        // `pull` needs an S3 server: the integration test
        // remote_pull::a_restore_of_a_backup_only_a_remote_holds_pulls_first_only_when_asked
        // plans it and sees it reported.
        let all: BTreeSet<String> = PlanStep::ALL
            .iter()
            .filter(|s| **s != PlanStep::Pull)
            .map(|s| s.phase().to_string())
            .collect();
        assert_eq!(planned, all, "together the two plans list every step");
    }
}
