//! `restore --dest`: the archive's data into a new (or empty) directory. No
//! lock on the instance, no unit, asset or registry change; only the staging
//! directory and the final rename are journaled.

use std::path::Path;

use abssd_proto::{Phase, RestoreResult};

use super::job::{Done, Job};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::{Journal, Step};
use crate::progress::Progress;

/// Restore `job`'s data into its `--dest` directory.
pub(super) async fn run(job: &Job<'_>) -> Result<RestoreResult> {
    let mut journal = job.journal(None)?;
    match place(job, &mut journal).await {
        Ok(done) => job.finish(journal, done).await,
        Err(cause) => Err(job.roll_back(journal, None, cause).await),
    }
}

/// Extract into staging, then rename the data into the destination.
async fn place(job: &Job<'_>, journal: &mut Journal) -> Result<Done> {
    let done = job.stage(journal).await?;
    job.progress.phase(Phase::Place);
    let target = job.pre.target.clone();
    let from = job.payload().join("data");
    journal.begin(Step::PlaceData {
        from: from.clone(),
        to: target.clone(),
    })?;
    tokio::task::spawn_blocking(move || {
        // Checked empty in pre-flight; refuse if something appeared since.
        match std::fs::remove_dir(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => {
                return Err(Error::validation(format!(
                    "--dest {} is no longer empty",
                    target.display()
                )));
            }
        }
        std::fs::rename(&from, &target).at("moving the restored data to", &target)?;
        fsutil::sync_dir(target.parent().unwrap_or(Path::new("/")))
    })
    .await??;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use abssd_proto::{Phase, RestoreMode, RestoreParams};

    use crate::error::Error;
    use crate::ops::testkit::Host;

    fn dest(host: &Host, id: &str) -> RestoreParams {
        RestoreParams {
            id: id.into(),
            dest: Some(
                host.cfg()
                    .layout
                    .restores_root
                    .join("copy")
                    .display()
                    .to_string(),
            ),
            ..RestoreParams::default()
        }
    }

    /// What the restores root holds, by name.
    fn restores(host: &Host) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&host.cfg().layout.restores_root)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn the_data_lands_in_the_new_directory_and_the_unit_is_never_touched() {
        let host = Host::new();
        let id = host.backup().await;
        host.vandalize();
        let live_before = host.live_state();
        let (rec, sink) = host.progress();

        let (plan, result) = super::super::run(&host.ctx, &dest(&host, &id), &host.actor(), &sink)
            .await
            .unwrap();
        let result = result.unwrap();

        assert!(host.units.calls().is_empty(), "{:?}", host.units.calls());
        assert_eq!(result.mode, RestoreMode::Dest);
        assert_eq!(result.unit_running, None);
        assert!(result.assets.is_empty() && !result.nginx_reloaded);
        assert!(result.warnings.is_empty(), "{:?}", result.warnings);
        let copy = host.cfg().layout.restores_root.join("copy");
        assert_eq!(
            std::fs::read_to_string(copy.join("budget/db.txt")).unwrap(),
            "v1"
        );
        assert_eq!(host.live_state(), live_before);
        // The phases are the plan's steps, after the pre-flight.
        let steps: Vec<Phase> = plan.steps.iter().map(|s| s.step.clone()).collect();
        assert_eq!(
            steps,
            [Phase::Extract, Phase::Validate, Phase::Place, Phase::Index]
        );
        assert_eq!(rec.phases(), [vec![Phase::Preflight], steps].concat());
        // Staging removed, journal closed.
        assert_eq!(restores(&host), ["copy"]);
        assert!(host.journals().is_empty());
    }

    #[tokio::test]
    async fn a_damaged_archive_rolls_back_without_systemd() {
        let host = Host::new();
        let id = host.backup().await;
        let index = crate::index::Index::load(&host.cfg().layout.index_file).unwrap();
        let archive = index.get(&id).unwrap().path.clone();
        let mut bytes = std::fs::read(&archive).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&archive, bytes).unwrap();
        let (rec, sink) = host.progress();

        let err = super::super::run(&host.ctx, &dest(&host, &id), &host.actor(), &sink)
            .await
            .unwrap_err();

        assert!(
            !matches!(err, Error::RolledBack { .. }),
            "nothing to report: {err}"
        );
        assert!(host.units.calls().is_empty(), "{:?}", host.units.calls());
        assert!(rec.phases().contains(&Phase::Rollback));
        assert!(!rec.phases().contains(&Phase::Place));
        assert!(restores(&host).is_empty(), "{:?}", restores(&host));
        assert!(host.journals().is_empty());
    }
}
