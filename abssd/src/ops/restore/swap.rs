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
    let aside = fsutil::suffixed(live, &format!(".pre-restore-{stamp}"));
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
