//! Service assets an archive holds that a live restore would not install: a
//! file in `systemd/`, `nginx/` or `nginx-enabled/` not named as this
//! instance's unit or site (the Python tool installs every file there under its
//! own name; abssd installs only the instance's own, so another name has no
//! destination it may write). Each is a warning — in the dry run, read from
//! the archive, and in the restore, read from the unpacked payload — never a
//! silent skip.

use std::path::Path;

use abssd_proto::Algorithm;

use crate::config::{site_name, unit_name};
use crate::error::Result;
use crate::extract::{self, EntryType, Limits, Visit};

/// The directories of the payload that hold service assets.
const ASSET_DIRS: [&str; 3] = ["systemd", "nginx", "nginx-enabled"];

/// One warning for each `(dir, name)` that is not the instance's own asset.
pub(super) fn warnings(instance: &str, found: &[(String, String)]) -> Vec<String> {
    let (unit, site) = (unit_name(instance), site_name(instance));
    let unplaced: Vec<_> = found
        .iter()
        .filter(|(dir, name)| {
            let own = if dir == "systemd" { &unit } else { &site };
            name != own
        })
        .collect();
    // An archive may hold any number of them: name a few, count the rest.
    let mut out: Vec<String> = unplaced
        .iter()
        .take(MAX_NAMED)
        .map(|(dir, name)| {
            let own = if dir == "systemd" { &unit } else { &site };
            format!(
                "the archive holds {dir}/{}, but the destination of a file by that name cannot be determined (only {dir}/{own} is installed for {instance}); it is not installed",
                crate::error::shown(name)
            )
        })
        .collect();
    if unplaced.len() > MAX_NAMED {
        out.push(format!(
            "... and {} more files in the archive's unit and site directories that are not installed",
            unplaced.len() - MAX_NAMED
        ));
    }
    out
}

/// Unplaced files named one by one in a plan or result.
const MAX_NAMED: usize = 20;

/// The files directly inside the asset directories of an unpacked payload.
pub(super) fn in_payload(payload: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for dir in ASSET_DIRS {
        let Ok(entries) = std::fs::read_dir(payload.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            found.push((dir.to_owned(), e.file_name().to_string_lossy().into_owned()));
        }
    }
    found.sort();
    found
}

/// The entries directly inside the asset directories of `archive`, read
/// through with the checks and limits of an extraction. Blocking.
pub(super) fn in_archive(
    archive: &Path,
    algorithm: Algorithm,
    limits: Limits,
) -> Result<Vec<(String, String)>> {
    let mut seen = Seen(Vec::new());
    extract::inspect_with(archive, algorithm, limits, &mut |_| {}, &mut seen)?;
    seen.0.sort();
    Ok(seen.0)
}

/// Collects `<dir>/<name>` entries of the asset directories.
struct Seen(Vec<(String, String)>);

impl Visit for Seen {
    fn entry(&mut self, kind: EntryType, below: &[u8], _: u64) -> bool {
        let below = String::from_utf8_lossy(below);
        let below = below.trim_end_matches('/');
        if kind != EntryType::Directory
            && let Some((dir, name)) = below.split_once('/')
            && ASSET_DIRS.contains(&dir)
            && !name.is_empty()
            && !name.contains('/')
        {
            self.0.push((dir.to_owned(), name.to_owned()));
        }
        false
    }
    fn content(&mut self, _: &[u8]) {}
    fn end(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_not_named_as_the_instance_s_own_are_warned_about() {
        let found = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(d, n)| (d.to_string(), n.to_string()))
                .collect()
        };
        let own = found(&[
            ("systemd", "abssctl-alpha.service"),
            ("nginx", "abssctl-alpha.conf"),
            ("nginx-enabled", "abssctl-alpha.conf"),
        ]);
        assert!(warnings("alpha", &own).is_empty());
        let other = found(&[
            ("nginx", "alpha.example.com.conf"),
            ("systemd", "abssctl-alpha.conf"),
        ]);
        let w = warnings("alpha", &other);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("nginx/alpha.example.com.conf") && w[0].contains("cannot be determined")
        );
        assert!(
            w[1].contains("systemd/abssctl-alpha.conf") && w[1].contains("abssctl-alpha.service")
        );
    }

    #[test]
    fn many_unplaced_files_are_named_a_few_and_counted() {
        let found: Vec<(String, String)> = (0..MAX_NAMED + 5)
            .map(|i| ("nginx".to_owned(), format!("other-{i}.conf")))
            .collect();
        let w = warnings("alpha", &found);
        assert_eq!(w.len(), MAX_NAMED + 1);
        assert!(
            w[MAX_NAMED].starts_with("... and 5 more"),
            "{}",
            w[MAX_NAMED]
        );
    }
}
