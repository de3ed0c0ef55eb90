//! The swap of a live restore (SPEC §7 step 5): renames that put restored
//! files where live ones were, each written to the journal before it is taken
//! and each keeping what it replaces beside it until the restore is committed.
//!
//! * [`data`] — the live data aside to `<data>.pre-restore-<ts>`, the staged
//!   data in.
//! * [`file`] — a service file (unit, site) replaced when it differs, the
//!   previous one kept as `<file>.bak-<ts>`.
//! * [`link`] — the sites-enabled link made to match the archive, the previous
//!   one kept as a hidden `.<link>.bak-<ts>`.
//!
//! The undo of each is [`crate::journal::Step`]'s, in `rollback`.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::journal::{Journal, Step};

/// The tag of the previous data a live restore keeps beside the restored:
/// `<data>.pre-restore-<ts>`.
pub(super) const PRE_RESTORE: &str = ".pre-restore-";

/// A path the swap changed, and where its previous content is kept.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Replaced {
    /// The live path.
    pub path: PathBuf,
    /// Its previous file or link, until the clean-up; `None` when there was
    /// none (or the data directory did not exist).
    pub kept: Option<PathBuf>,
}

/// Which service asset [`file`] replaces (names its crash points).
#[derive(Debug, Clone, Copy)]
pub(super) enum Asset {
    Unit,
    Site,
}

/// Rename the live data directory `live` aside (when it exists) and the staged
/// data `staged` into its place.
pub(super) fn data(
    journal: &mut Journal,
    stamp: &str,
    staged: &Path,
    live: &Path,
) -> Result<Replaced> {
    let aside = fsutil::suffixed(live, &format!("{PRE_RESTORE}{stamp}"));
    if std::fs::symlink_metadata(&aside).is_ok() {
        return Err(Error::Environment(format!(
            "{} already exists; not overwriting it",
            aside.display()
        )));
    }
    let mut kept = None;
    if std::fs::symlink_metadata(live).is_ok() {
        journal.begin(Step::MoveAside {
            live: live.to_owned(),
            aside: aside.clone(),
        })?;
        crash_point!("restore::before-move-aside");
        std::fs::rename(live, &aside).at("moving the live data aside to", &aside)?;
        crash_point!("restore::after-move-aside");
        kept = Some(aside);
    }
    journal.begin(Step::PlaceData {
        from: staged.to_owned(),
        to: live.to_owned(),
    })?;
    crash_point!("restore::before-place-data");
    std::fs::rename(staged, live).at("moving the restored data into", live)?;
    fsutil::sync_dir(live.parent().unwrap_or(Path::new("/")))?;
    crash_point!("restore::after-place-data");
    Ok(Replaced {
        path: live.to_owned(),
        kept,
    })
}

/// Install the archived `src` at `dest` when it differs, through a hidden
/// `.<name>.new-<ts>` beside it. `None` when `src` is not in the archive or
/// `dest` already holds it.
pub(super) fn file(
    journal: &mut Journal,
    stamp: &str,
    src: &Path,
    dest: &Path,
    asset: Asset,
) -> Result<Option<Replaced>> {
    let Ok(meta) = std::fs::symlink_metadata(src) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err(Error::Archive(format!(
            "{} in the archive is not a regular file",
            src.display()
        )));
    }
    let content = std::fs::read(src).at("reading", src)?;
    if std::fs::read(dest).ok().as_deref() == Some(&content[..]) {
        return Ok(None);
    }
    let dir = dest.parent().unwrap_or(Path::new("/"));
    fsutil::ensure_dir(dir)?;
    let new = fsutil::hidden_sibling(dest, "new", stamp);
    let backup = std::fs::symlink_metadata(dest)
        .is_ok()
        .then(|| fsutil::bak_path(dest, stamp));
    refuse_existing(backup.as_deref())?;
    journal.begin(Step::Replace {
        path: dest.to_owned(),
        backup: backup.clone(),
        new: Some(new.clone()),
    })?;
    match asset {
        Asset::Unit => crash_point!("restore::before-unit-file"),
        Asset::Site => crash_point!("restore::before-site-file"),
    }
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.permissions().mode() & 0o777)
            .open(&new)
            .at("creating", &new)?;
        f.write_all(&content).at("writing", &new)?;
        f.sync_all().at("syncing", &new)?;
        if let Ok(m) = std::fs::metadata(src) {
            let _ = std::fs::set_permissions(&new, m.permissions());
        }
    }
    if let Some(b) = &backup {
        std::fs::rename(dest, b).at("keeping the previous file as", b)?;
    }
    std::fs::rename(&new, dest).at("installing", dest)?;
    fsutil::sync_dir(dir)?;
    match asset {
        Asset::Unit => crash_point!("restore::after-unit-file"),
        Asset::Site => crash_point!("restore::after-site-file"),
    }
    Ok(Some(Replaced {
        path: dest.to_owned(),
        kept: backup,
    }))
}

/// Make `link` a symlink to `site` (`enabled`) or absent. The previous entry is
/// kept hidden (nginx's `sites-enabled/*` does not match dot files). `None`
/// when it already is as asked.
pub(super) fn link(
    journal: &mut Journal,
    stamp: &str,
    link: &Path,
    site: &Path,
    enabled: bool,
) -> Result<Option<Replaced>> {
    let current = std::fs::symlink_metadata(link).ok();
    let already = match &current {
        Some(m) if m.file_type().is_symlink() => {
            enabled && std::fs::read_link(link).ok().as_deref() == Some(site)
        }
        Some(_) => false,
        None => !enabled,
    };
    if already {
        return Ok(None);
    }
    let dir = link.parent().unwrap_or(Path::new("/"));
    fsutil::ensure_dir(dir)?;
    let backup = current
        .is_some()
        .then(|| fsutil::hidden_sibling(link, "bak", stamp));
    let new = enabled.then(|| fsutil::hidden_sibling(link, "new", stamp));
    refuse_existing(backup.as_deref())?;
    journal.begin(Step::Replace {
        path: link.to_owned(),
        backup: backup.clone(),
        new: new.clone(),
    })?;
    crash_point!("restore::before-site-link");
    if let Some(new) = &new {
        std::os::unix::fs::symlink(site, new).at("creating", new)?;
    }
    if let Some(b) = &backup {
        std::fs::rename(link, b).at("keeping the previous link as", b)?;
    }
    if let Some(new) = &new {
        std::fs::rename(new, link).at("enabling", link)?;
    }
    fsutil::sync_dir(dir)?;
    crash_point!("restore::after-site-link");
    Ok(Some(Replaced {
        path: link.to_owned(),
        kept: backup,
    }))
}

/// A `.bak-*` name that is taken is never overwritten (it may be the only copy
/// of an earlier file).
fn refuse_existing(path: Option<&Path>) -> Result<()> {
    match path {
        Some(p) if std::fs::symlink_metadata(p).is_ok() => Err(Error::Environment(format!(
            "{} already exists; not overwriting it",
            p.display()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Record;

    fn journal(dir: &Path) -> Journal {
        Journal::create(
            dir,
            Record {
                version: 1,
                op_id: "op".into(),
                command: abssd_proto::Command::BackupRestore,
                instance: "a".into(),
                backup_id: "b".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                unit_was_active: None,
                steps: Vec::new(),
                outcome: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_file_that_differs_is_replaced_and_the_previous_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(&dir.path().join("state"));
        let (src, dest) = (dir.path().join("archived"), dir.path().join("unit"));
        std::fs::write(&src, "new").unwrap();
        std::fs::write(&dest, "old").unwrap();

        let r = file(&mut j, "ts", &src, &dest, Asset::Unit)
            .unwrap()
            .unwrap();
        let bak = dir.path().join("unit.bak-ts");
        assert_eq!(
            r,
            Replaced {
                path: dest.clone(),
                kept: Some(bak.clone())
            }
        );
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), "old");
        assert_eq!(
            j.record().steps,
            [Step::Replace {
                path: dest.clone(),
                backup: Some(bak),
                new: Some(dir.path().join(".unit.new-ts")),
            }]
        );
        // The same content again: nothing to do, nothing journaled.
        assert_eq!(file(&mut j, "ts2", &src, &dest, Asset::Unit).unwrap(), None);
        assert_eq!(j.record().steps.len(), 1);
    }

    #[test]
    fn a_taken_bak_name_is_refused_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(&dir.path().join("state"));
        let (src, dest) = (dir.path().join("archived"), dir.path().join("site"));
        std::fs::write(&src, "new").unwrap();
        std::fs::write(&dest, "old").unwrap();
        std::fs::write(dir.path().join("site.bak-ts"), "earlier").unwrap();

        let err = file(&mut j, "ts", &src, &dest, Asset::Site).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("site.bak-ts")).unwrap(),
            "earlier"
        );
        assert!(j.record().steps.is_empty());
    }

    #[test]
    fn the_link_is_made_to_match_and_the_previous_one_kept_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(&dir.path().join("state"));
        let (site, other) = (dir.path().join("site"), dir.path().join("other"));
        let enabled = dir.path().join("enabled");
        std::fs::create_dir(&enabled).unwrap();
        let l = enabled.join("site");
        std::os::unix::fs::symlink(&other, &l).unwrap();

        let r = link(&mut j, "ts", &l, &site, true).unwrap().unwrap();
        let hidden = enabled.join(".site.bak-ts");
        assert_eq!(r.kept.as_deref(), Some(hidden.as_path()));
        assert_eq!(std::fs::read_link(&l).unwrap(), site);
        assert_eq!(std::fs::read_link(&hidden).unwrap(), other);
        assert_eq!(link(&mut j, "ts2", &l, &site, true).unwrap(), None);

        // Disabled in the archive: the link goes, kept hidden again.
        let r = link(&mut j, "ts3", &l, &site, false).unwrap().unwrap();
        assert!(std::fs::symlink_metadata(&l).is_err());
        assert_eq!(r.kept, Some(enabled.join(".site.bak-ts3")));
        assert_eq!(j.record().steps.len(), 2);
    }

    #[test]
    fn the_data_goes_aside_and_the_staged_data_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(&dir.path().join("state"));
        let (staged, live) = (dir.path().join("staged"), dir.path().join("data"));
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("f"), "restored").unwrap();
        std::fs::create_dir(&live).unwrap();
        std::fs::write(live.join("f"), "live").unwrap();

        let r = data(&mut j, "ts", &staged, &live).unwrap();
        let aside = dir.path().join("data.pre-restore-ts");
        assert_eq!(r.kept.as_deref(), Some(aside.as_path()));
        assert_eq!(std::fs::read_to_string(live.join("f")).unwrap(), "restored");
        assert_eq!(std::fs::read_to_string(aside.join("f")).unwrap(), "live");
        assert!(!staged.exists());
        assert_eq!(
            j.record().steps,
            [
                Step::MoveAside {
                    live: live.clone(),
                    aside
                },
                Step::PlaceData {
                    from: staged,
                    to: live
                }
            ]
        );
    }
}
