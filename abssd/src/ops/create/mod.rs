//! `backup create`: plan, then one streaming pass into `<archive>.partial`,
//! rename, sidecar, index entry (SPEC §7).
//!
//! The instance lock is held for the whole run, and with it the global lock
//! file the Python tool sees (taken first); the daemon's own global lock only
//! around the index write (see [`crate::locks`]). On any failure the partial archive and sidecar are removed and no
//! index entry is written.
//!
//! * `pass` — what every mode runs: the archive pass, the index entry, and
//!   the end of the journal.
//! * `plan` — validation, the walk of the sources, and the archive's name.
//! * `stop` — `--consistency stop`: the unit stopped (journaled) around the
//!   walk and the archive pass, and started again.

use std::path::Path;

use abssd_proto::{Actor, Capture, CreateParams, CreatePlan, CreateResult};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::{Record, Step};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::registry::validate_name;
use crate::systemd::Units;

mod pass;
mod plan;
mod stop;

use pass::{Pass, Resolved, end, index, pass};
use plan::{Reading, effective_level, out_dir};
pub use stop::recover_unit;

/// Run `backup create`. Returns the plan, and the result unless `dry_run`.
pub async fn run(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    let resolved = resolve(ctx, params)?;
    let _instance_lock = ctx
        .locks
        .acquire(false, &[params.instance.as_str()], progress)
        .await?;
    hook_point!("create::locked");
    run_locked(ctx, params, actor, progress, resolved).await
}

/// `backup create` as the socket runs it: [`run`], then the new backup
/// pushed to each remote with `auto_push: true`, as the operation's last
/// step. A push that fails does not fail the create (the backup is good): it
/// is a warning of the result and of the operation.
pub async fn run_and_push(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    let (plan, mut result) = run(ctx, params, actor, progress).await?;
    if let Some(made) = result.as_mut() {
        for (remote, pushed) in crate::ops::push::auto(ctx, &made.id, progress).await {
            if let Err(e) = pushed {
                let warning = format!(
                    "backup {} was not pushed to {remote} (auto_push): {e}; push it with abssctl backup push {}",
                    made.id, made.id
                );
                progress.warn(warning.clone());
                made.warnings.push(warning);
            }
        }
    }
    Ok((plan, result))
}

/// A create for an instance whose lock the caller already holds (the restore's
/// pre-restore backup).
pub async fn run_under_lock(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    let resolved = resolve(ctx, params)?;
    run_locked(ctx, params, actor, progress, resolved).await
}

/// Validate the parameters and settle algorithm, level, directory and labels.
fn resolve(ctx: &Ctx, params: &CreateParams) -> Result<Resolved> {
    validate_name(&params.instance)?;
    if let Some(m) = &params.message {
        crate::ops::check_message("--message", m)?;
    }
    let labels = split_labels(&params.labels)?;
    let algorithm = match params.compression {
        abssd_proto::Compression::Auto => ctx.config.daemon.default_compression.algorithm(),
        other => other.algorithm(),
    };
    let level = effective_level(
        algorithm,
        params.compression_level.or(ctx.config.daemon.default_level),
    )?;
    let out_dir = out_dir(ctx, params)?;
    Ok(Resolved {
        algorithm,
        level,
        out_dir,
        labels,
        mode: params.consistency.unwrap_or(ctx.config.daemon.consistency),
    })
}

/// The unit's state, asked of systemd, and the connection it was asked on;
/// `None`s when systemd cannot be reached (a host or test without it).
async fn unit_running(ctx: &Ctx, unit: &str) -> (Option<Box<dyn Units>>, Option<bool>) {
    let asked = async {
        let systemd = ctx.systemd.connect().await?;
        let state = systemd.state(unit).await?;
        Ok::<_, Error>((systemd, state))
    };
    match asked.await {
        Ok((systemd, state)) => (Some(systemd), Some(state.is_active())),
        Err(e) => {
            tracing::info!("not asking systemd whether {unit} runs: {e}");
            (None, None)
        }
    }
}

async fn run_locked(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Reporter,
    resolved: Resolved,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    let unit = crate::config::unit_name(&params.instance);
    // Asked under the instance lock: a restore cannot start or stop it now.
    let (systemd, running) = unit_running(ctx, &unit).await;
    let reading = Reading::decide(resolved.mode, running, &unit)?;
    if reading.capture == Capture::Stop && !params.dry_run {
        // `stop` is only decided on systemd's word, so the connection is there.
        let systemd =
            systemd.ok_or_else(|| Error::Internal("stop mode decided without systemd".into()))?;
        let job = stop::Job {
            ctx,
            units: &*systemd,
            unit: &unit,
            params,
            actor,
            progress,
        };
        return job.run(resolved, reading).await;
    }
    let mut journal = None;
    let result = match pass(ctx, params, progress, resolved, reading, &mut journal).await {
        Ok(Pass::Planned(plan)) => Ok((plan, None)),
        Ok(Pass::Written(w)) => index(ctx, &w, params, actor, progress)
            .await
            .map(|r| (w.plan, Some(r))),
        Err(e) => Err(e),
    };
    end(journal, result)
}

/// Start-up recovery of a create the daemon stopped during (see
/// [`crate::recovery`]). When its index entry was written it had finished and
/// `Ok(None)` is returned; otherwise its `.partial` file, archive and sidecar
/// are removed and listed. Blocking.
pub fn recover(index_file: &Path, record: &Record) -> Result<Option<Vec<String>>> {
    if crate::index::stream::find(index_file, &record.backup_id)?.is_some() {
        return Ok(None);
    }
    let mut removed = Vec::new();
    for step in &record.steps {
        if let Step::Archive {
            partial,
            archive,
            sidecar,
        } = step
        {
            for path in [partial, archive, sidecar] {
                match std::fs::remove_file(path) {
                    Ok(()) => removed.push(format!("removed {}", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).at("removing", path),
                }
            }
            // Killed while the sidecar was being written: its temporary file,
            // not yet renamed into place.
            for path in fsutil::remove_stale_temps(sidecar) {
                removed.push(format!("removed {}", path.display()));
            }
            if !removed.is_empty()
                && let Some(dir) = archive.parent()
            {
                fsutil::sync_dir(dir)?;
            }
        }
    }
    Ok(Some(removed))
}

/// Labels from repeated and comma-separated values; empty ones dropped, order
/// kept, duplicates removed.
pub fn split_labels(raw: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for label in raw
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if label.chars().any(char::is_control) || label.len() > 100 {
            return Err(Error::validation(format!("invalid label {label:?}")));
        }
        if !out.iter().any(|l| l == label) {
            out.push(label.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use abssd_proto::{EventKind, Level, Phase, VerifyParams};

    use super::*;
    use crate::config::{Config, Overrides};
    use crate::progress::Recorder;

    /// A context under a temporary prefix with one instance, `alpha`, whose
    /// data is one small file; systemd cannot be reached, whatever the host.
    pub(super) fn one_instance(dir: &Path) -> std::sync::Arc<Ctx> {
        let over = Overrides {
            prefix: Some(dir.into()),
            bus_address: Some(format!("unix:path={}", dir.join("no-bus").display())),
            ..Overrides::default()
        };
        let config = Config::load_with_env(&over, &Default::default()).unwrap();
        let data = config.layout.instance_root.join("alpha");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("budget.txt"), "x".repeat(3000)).unwrap();
        let registry = config.layout.registry_file();
        std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
        std::fs::write(&registry, "instances:\n- name: alpha\n").unwrap();
        Ctx::new(config)
    }

    /// root asks for a data-only create of `alpha`.
    fn root_creates_alpha_data() -> (Actor, CreateParams) {
        let actor = Actor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        };
        let params = CreateParams {
            instance: "alpha".into(),
            data_only: true,
            ..CreateParams::default()
        };
        (actor, params)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_reports_its_phases_in_order_and_a_verify_of_it_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = one_instance(dir.path());
        let (actor, params) = root_creates_alpha_data();

        let (rec, progress) = Recorder::start("op-create");
        let (plan, result) = run(&ctx, &params, &actor, &progress).await.unwrap();
        let result = result.unwrap();
        assert_eq!(rec.phases(), [Phase::Archive, Phase::Index]);
        assert!(matches!(rec.events()[0], EventKind::Plan { .. }));
        assert_eq!(
            rec.progress_of(&Phase::Archive).last(),
            Some(&(result.uncompressed_bytes, plan.total_bytes)),
            "the last count is every content byte archived"
        );
        assert!(result.uncompressed_bytes >= 3000);
        assert_eq!(rec.messages(Level::Warning), plan.warnings);
        assert_eq!(rec.messages(Level::Info), plan.notes);
        assert_eq!(rec.changed_backups(), std::slice::from_ref(&result.id));

        let (rec, progress) = Recorder::start("op-verify");
        let verify = VerifyParams {
            id: Some(result.id.clone()),
            ..VerifyParams::default()
        };
        let (_, verified) = crate::ops::verify::run(&ctx, &verify, &progress)
            .await
            .unwrap();
        assert_eq!(verified.results[0].status, abssd_proto::status::AVAILABLE);
        assert_eq!(rec.phases(), [Phase::Verify(result.id.clone())]);
        assert_eq!(
            rec.progress_of(&Phase::Verify(result.id.clone())).last(),
            Some(&(result.size_bytes, result.size_bytes)),
            "every byte of the archive was read"
        );
        assert!(rec.warnings().is_empty());
        assert_eq!(rec.changed_backups(), [result.id]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_ends_at_the_total_when_a_file_has_two_names() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = one_instance(dir.path());
        let data = ctx.config.layout.instance_root.join("alpha");
        std::fs::hard_link(data.join("budget.txt"), data.join("second-name")).unwrap();
        let (actor, params) = root_creates_alpha_data();
        let (rec, progress) = Recorder::start("op-create");
        let (plan, result) = run(&ctx, &params, &actor, &progress).await.unwrap();
        assert!(result.unwrap().warnings.is_empty());
        assert!(
            plan.total_bytes >= 6000,
            "both names are counted in the plan"
        );
        assert_eq!(
            rec.progress_of(&Phase::Archive).last(),
            Some(&(plan.total_bytes, plan.total_bytes))
        );
    }

    /// A create killed while its sidecar was being written leaves the
    /// sidecar's temporary file; recovery removes it with the rest.
    #[test]
    fn recovery_removes_a_sidecar_temporary_too() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("backups.json");
        std::fs::write(&index, r#"{"backups": []}"#).unwrap();
        let archive = dir.path().join("b1.tar.zst");
        let sidecar = dir.path().join("b1.tar.zst.sha256");
        let partial = dir.path().join("b1.tar.zst.partial");
        std::fs::write(&archive, b"archive").unwrap();
        let temp = fsutil::write_temp(&sidecar, b"digest").unwrap();
        let (_, temp_path) = temp.keep().unwrap();
        let record = Record {
            version: 1,
            op_id: "op".into(),
            command: abssd_proto::Command::BackupCreate,
            instance: "alpha".into(),
            backup_id: "b1".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            unit_was_active: None,
            steps: vec![Step::Archive {
                partial,
                archive: archive.clone(),
                sidecar,
            }],
            outcome: None,
        };
        let removed = recover(&index, &record).unwrap().unwrap();
        assert!(!archive.exists());
        assert!(!temp_path.exists(), "{removed:?}");
        assert_eq!(removed.len(), 2, "{removed:?}");
    }

    #[test]
    fn labels_split_on_commas_and_dedupe() {
        let raw = vec![
            "a,b".to_owned(),
            " c ".to_owned(),
            "a".to_owned(),
            ",".to_owned(),
        ];
        assert_eq!(split_labels(&raw).unwrap(), ["a", "b", "c"]);
        assert!(split_labels(&["bad\nlabel".to_owned()]).is_err());
    }
}
