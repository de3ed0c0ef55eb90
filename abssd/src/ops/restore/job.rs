//! One restore run: [`Job`] holds what it works with, and its methods are the
//! parts every restore shares — its journal, the staging it starts with (SPEC
//! §7 step 4), the rollback on failure, and [`Job::finish`], the commit →
//! clean-up → annotate → close tail it ends with (step 7).

use std::path::{Path, PathBuf};

use abssd_proto::{Actor, Phase, RestoreMode, RestoreParams, RestorePlan, RestoreResult};

use super::{history, payload, plan, rollback};
use crate::error::{Error, IoContext, Result};
use crate::extract::{self, Expect, Limits, Reserve};
use crate::fsutil;
use crate::journal::{Journal, Outcome, Record, Step};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::systemd::Units;

/// Everything one restore run works with.
#[allow(missing_debug_implementations)]
pub(crate) struct Job<'a> {
    pub ctx: &'a Ctx,
    pub params: &'a RestoreParams,
    pub actor: &'a Actor,
    pub progress: &'a Reporter,
    pub pre: &'a plan::Preflight,
    pub plan: &'a RestorePlan,
    /// `<work dir>/.<name>.restore-<stamp>`, created by [`Job::stage`].
    pub staging: PathBuf,
    /// `<ts>` of the `.pre-restore-<ts>` and `.bak-<ts>` names.
    pub stamp: String,
    /// The service assets and the registry's paths stay as they are.
    pub data_only: bool,
}

/// What a restore did up to its commit point: the result's figures, and what
/// the clean-up removes once it is committed.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// sha256 of the archive as extracted.
    pub sha256: String,
    /// Tar entries extracted.
    pub entries: u64,
    /// Bytes of content extracted.
    pub content_bytes: u64,
    /// The pre-restore backup's id, when one was taken.
    pub pre_restore_backup: Option<String>,
    /// Service files and links that were replaced.
    pub assets: Vec<String>,
    /// Whether the unit runs afterwards (live restores).
    pub unit_running: Option<bool>,
    /// Whether nginx was reloaded with the archived site.
    pub nginx_reloaded: bool,
    /// What the restore kept or made beside the live paths: the staging
    /// directory, the previous data and service files.
    pub leftovers: Vec<PathBuf>,
    /// For the result, and as warning messages once finished.
    pub warnings: Vec<String>,
}

impl Job<'_> {
    /// Whether this is a live restore (not `--dest`).
    pub fn live(&self) -> bool {
        self.params.dest.is_none()
    }

    /// A fresh journal for this run.
    pub fn journal(&self, unit_was_active: Option<bool>) -> Result<Journal> {
        Journal::create(
            &self.ctx.config.layout.state_dir,
            Record {
                version: 1,
                op_id: self.progress.op_id(),
                command: abssd_proto::Command::BackupRestore,
                instance: self.plan.instance.clone(),
                backup_id: self.plan.id.clone(),
                started_at: fsutil::now_utc(),
                unit_was_active,
                steps: Vec::new(),
                outcome: None,
            },
        )
    }

    /// The payload's top directory inside staging: `<staging>/<id>`.
    pub fn payload(&self) -> PathBuf {
        self.staging.join(&self.plan.id)
    }

    /// Create the staging directory (journaled) and extract into it, hashing the
    /// archive in the same pass. A mismatch fails here, before anything live.
    /// The staging directory is the first of [`Done::leftovers`].
    pub async fn stage(&self, journal: &mut Journal) -> Result<Done> {
        journal.begin(Step::Staging {
            dir: self.staging.clone(),
        })?;
        crash_point!("restore::before-staging");
        let parent = self.staging.parent().unwrap_or(Path::new("/")).to_owned();
        fsutil::ensure_dir(&parent)?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&self.staging)
                .at("creating staging directory", &self.staging)?;
        }
        let config = &self.ctx.config;
        let expect = Expect {
            algorithm: self.pre.algorithm,
            sha256: self.pre.expected_sha256.clone(),
            top: self.plan.id.clone(),
            max_bytes: self
                .plan
                .space
                .available_bytes
                .saturating_sub(self.plan.space.reserve_bytes),
            limits: Limits {
                max_entries: config.daemon.max_restore_entries,
                recorded_bytes: self.pre.entry.metadata.uncompressed_bytes,
            },
            reserve: Reserve {
                percent: config.daemon.restore_reserve_percent,
            },
            same_owner: rustix::process::geteuid().is_root(),
        };
        let (archive, staging) = (self.pre.archive.clone(), self.staging.clone());
        let (progress, total) = (self.progress.clone(), self.plan.archive_bytes);
        let extracted = tokio::task::spawn_blocking(move || {
            let mut bytes = progress.bytes(Phase::Extract, total);
            extract::extract(&archive, &staging, &expect, &mut |n| bytes.add(n))
        })
        .await??;
        self.progress.phase(Phase::Validate);
        let payload = self.payload();
        let instance = self.plan.instance.clone();
        tokio::task::spawn_blocking(move || payload::validate(&payload, &instance)).await??;
        crash_point!("restore::after-extract");
        Ok(Done {
            sha256: extracted.sha256,
            entries: extracted.entries,
            content_bytes: extracted.content_bytes,
            leftovers: vec![self.staging.clone()],
            ..Done::default()
        })
    }

    /// Undo every journaled step after `cause` and return the error to end
    /// with. `units` is `None` for a restore that never touches systemd.
    pub async fn roll_back(
        &self,
        journal: Journal,
        units: Option<&dyn Units>,
        cause: Error,
    ) -> Error {
        let record = journal.record().clone();
        let report = rollback::rollback(&self.ctx.config, units, &record, self.progress).await;
        report.into_error(cause, journal)
    }

    /// Past the forward steps: commit, remove the leftovers, annotate the index
    /// entry, close the journal (SPEC §7 step 7). Nothing after the commit
    /// undoes the restore; what fails here becomes a warning, and start-up
    /// recovery redoes what a stop cuts short.
    pub async fn finish(&self, mut journal: Journal, mut done: Done) -> Result<RestoreResult> {
        let outcome = self.outcome(&done.sha256, done.pre_restore_backup.clone());
        journal.commit(outcome.clone())?;
        crash_point!("restore::after-commit");

        // The plan names this step only for live restores; a --dest restore
        // removes just its staging directory.
        if self.live() {
            self.progress.phase(Phase::Cleanup);
        }
        let leftovers = std::mem::take(&mut done.leftovers);
        let failed = tokio::task::spawn_blocking(move || {
            leftovers
                .iter()
                .filter_map(|p| fsutil::remove_path(p).err().map(|e| e.to_string()))
                .collect::<Vec<_>>()
        })
        .await?;
        for e in failed {
            done.warnings.push(format!("clean-up: {e}"));
        }
        crash_point!("restore::after-cleanup");

        let restored_at = match self.annotate_index(&outcome).await {
            Ok(at) => at,
            Err(e) => {
                done.warnings.push(format!(
                    "the restore is complete but the index was not annotated: {e}"
                ));
                fsutil::now_utc()
            }
        };
        if self.pre.sidecar_missing
            && let Err(e) = self.write_back_sidecar().await
        {
            done.warnings.push(format!(
                "the restore is complete but the missing sidecar of {} was not written back: {e} (`abssctl backup reconcile --apply` writes it)",
                self.pre.archive.display()
            ));
        }
        for w in &done.warnings {
            self.progress.warn(w.clone());
        }
        crash_point!("restore::after-annotate");
        journal.close()?;
        Ok(RestoreResult {
            id: self.plan.id.clone(),
            instance: self.plan.instance.clone(),
            mode: if self.live() {
                RestoreMode::Live
            } else {
                RestoreMode::Dest
            },
            destination: self.pre.target.display().to_string(),
            pre_restore_backup: done.pre_restore_backup,
            restored_at,
            checksum: done.sha256,
            entries: done.entries,
            content_bytes: done.content_bytes,
            assets: done.assets,
            unit_running: done.unit_running,
            nginx_reloaded: done.nginx_reloaded,
            warnings: done.warnings,
        })
    }

    /// What a committed restore records for its index annotation.
    fn outcome(&self, sha256: &str, pre_restore_backup: Option<String>) -> Outcome {
        Outcome {
            sha256: sha256.to_owned(),
            pre_restore_backup,
            by: self.actor.clone(),
            destination: self.pre.target.clone(),
        }
    }

    /// Write back the `.sha256` sidecar the archive was missing, now that the
    /// extraction has matched it against the index's checksum. A repair beside
    /// the restore, not part of it: it is not journaled, since rollback must
    /// never remove it (it is right whatever happens to the instance) and a
    /// stop before it leaves things as they were before the restore, which
    /// reconcile reports and `--apply` repairs. Under the global lock, where
    /// prunes remove archives and reconcile writes sidecars.
    async fn write_back_sidecar(&self) -> Result<()> {
        let _global = self.ctx.locks.acquire(true, &[], self.progress).await?;
        let (archive, sha256) = (self.pre.archive.clone(), self.pre.expected_sha256.clone());
        let written = tokio::task::spawn_blocking(move || {
            crate::archive::sidecar::write_back(&archive, &sha256)
        })
        .await??;
        if written {
            self.progress.info(format!(
                "wrote the missing sidecar {} back",
                crate::archive::sidecar::path(&self.pre.archive).display()
            ));
        }
        Ok(())
    }

    /// Record the restore on the index entry (SPEC §5), under the global lock.
    async fn annotate_index(&self, outcome: &Outcome) -> Result<String> {
        self.progress.phase(Phase::Index);
        let _global = self.ctx.locks.acquire(true, &[], self.progress).await?;
        let index_file = self.ctx.config.layout.index_file.clone();
        let now = fsutil::now_utc();
        let (id, op_id, outcome, at) = (
            self.plan.id.clone(),
            self.progress.op_id(),
            outcome.clone(),
            now.clone(),
        );
        tokio::task::spawn_blocking(move || {
            history::annotate(&index_file, &id, &op_id, &outcome, &at)
        })
        .await??;
        self.progress.changed(&self.plan.id);
        Ok(now)
    }
}
