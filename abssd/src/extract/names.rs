//! What an archive may name: entry types, entry paths under `<top>/`, symlink
//! targets that stay inside `<top>/data/`, hardlink targets. Pure functions over
//! bytes (names need not be UTF-8), so every rule is unit-tested without
//! touching a disk. [`check`] is the one door: extraction, adoption's and
//! verify's inspection all go through it, so they refuse the same entries.

use std::fmt;

use tokio_tar::EntryType;

/// The longest entry path accepted, in bytes: the kernel's `PATH_MAX`. A
/// longer relative path cannot be opened beneath the staging directory, so
/// extraction could not create it anyway; refusing it by name keeps every
/// name held in memory small.
pub const MAX_PATH: usize = 4096;

/// What [`check`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Checked {
    /// The entry's normalized path.
    pub(super) path: EntryPath,
    /// A hardlink's target, normalized.
    pub(super) hardlink: Option<EntryPath>,
}

/// Every rule on one entry that does not depend on the entries before it:
/// its type, its name, and its link target (`link`: the header's, for links).
/// The error says what is wrong, for `refused`.
pub(super) fn check(
    kind: EntryType,
    raw: &[u8],
    link: Option<&[u8]>,
    top: &str,
) -> Result<Checked, String> {
    if !matches!(
        kind,
        EntryType::Regular | EntryType::Directory | EntryType::Symlink | EntryType::Link
    ) {
        return Err(format!(
            "is a {}; only regular files, directories, symlinks and hardlinks are extracted",
            type_name(kind)
        ));
    }
    let path = entry_path(raw, top, kind == EntryType::Directory).map_err(str::to_owned)?;
    if path.parent().is_empty() && kind != EntryType::Directory {
        return Err("names the backup's top directory but is not a directory".into());
    }
    let mut hardlink = None;
    match kind {
        EntryType::Symlink => {
            let target = link.ok_or("is a link without a target")?;
            check_symlink(&path, target)?;
        }
        EntryType::Link => {
            let target = link.ok_or("is a link without a target")?;
            let to = entry_path(target, top, false).map_err(|why| {
                format!(
                    "is a hardlink to {:?}, which {why}",
                    String::from_utf8_lossy(target)
                )
            })?;
            hardlink = Some(to);
        }
        _ => {}
    }
    Ok(Checked { path, hardlink })
}

/// An entry type for people.
pub(super) fn type_name(kind: EntryType) -> String {
    match kind {
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "FIFO".into(),
        EntryType::Continuous => "contiguous file".into(),
        EntryType::GNUSparse => "GNU sparse file".into(),
        EntryType::XGlobalHeader => "pax global header".into(),
        EntryType::SolarisXHeader => "Solaris extended header".into(),
        other => format!("entry of type {:?}", char::from(other.as_byte())),
    }
}

/// A checked entry name, relative to the staging directory: `<top>/a/b`, with
/// no `.`, `..` or empty components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntryPath {
    /// The components joined by `/`.
    full: Vec<u8>,
    /// Where the last component starts in `full`.
    name_at: usize,
}

impl EntryPath {
    /// The whole relative path.
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.full
    }

    /// The directory holding this entry (empty for `<top>` itself).
    pub(super) fn parent(&self) -> &[u8] {
        match self.name_at {
            0 => b"",
            n => &self.full[..n - 1],
        }
    }

    /// The last component.
    pub(super) fn name(&self) -> &[u8] {
        &self.full[self.name_at..]
    }

    /// Components below `<top>/` (0 for `<top>` itself).
    fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.full.split(|&b| b == b'/').skip(1)
    }
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.full))
    }
}

/// Check an entry name from the archive: relative, no `..`, under `<top>/`.
/// One or more leading `./` and any `.` or empty components are dropped (GNU
/// tar writes `./` prefixes and tolerates `a//b`); a trailing `/` is only
/// accepted on directories. The error says what is wrong with the name.
pub(super) fn entry_path(raw: &[u8], top: &str, is_dir: bool) -> Result<EntryPath, &'static str> {
    if raw.is_empty() {
        return Err("has an empty name");
    }
    if raw.len() > MAX_PATH {
        return Err("has a name longer than 4096 bytes (PATH_MAX), which cannot be created");
    }
    if raw[0] == b'/' {
        return Err("has an absolute name");
    }
    if !is_dir && raw.ends_with(b"/") {
        return Err("has a directory name (trailing '/') but is not a directory");
    }
    let mut full = Vec::with_capacity(raw.len());
    let mut name_at = 0;
    let mut first = true;
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("has a '..' component"),
            _ => {}
        }
        if first {
            if comp != top.as_bytes() {
                return Err("is outside the backup's top directory");
            }
            first = false;
        } else {
            full.push(b'/');
        }
        name_at = full.len();
        full.extend_from_slice(comp);
    }
    if first {
        return Err("is outside the backup's top directory");
    }
    Ok(EntryPath { full, name_at })
}

/// Check a symlink: the link must live under `<top>/data/` and its target,
/// read from the link's directory, must stay inside `<top>/data/`.
///
/// `..` is only accepted as leading components. Lexical resolution is only
/// sound while no component of the target is itself a symlink: `s/..` is the
/// parent of `s`'s *target* for the kernel, so `d -> .` followed by
/// `e -> d/../..` would climb out while looking inside. Leading `..` climbs
/// real directories (extraction never creates a path through a symlink), and
/// names after them only descend, into links that obey the same rule.
pub(super) fn check_symlink(link: &EntryPath, target: &[u8]) -> Result<(), String> {
    let mut comps = link.components();
    let below_data = match comps.next() {
        Some(b"data") => comps.count(),
        _ => 0,
    };
    if below_data == 0 {
        return Err("is a symlink outside data/".into());
    }
    // Directories between data/ and the link: how far `..` may climb.
    let depth = below_data - 1;
    let shown = String::from_utf8_lossy(target);
    if target.is_empty() {
        return Err("is a symlink with an empty target".into());
    }
    if target[0] == b'/' {
        return Err(format!("is a symlink to an absolute path ({shown})"));
    }
    let mut ups = 0usize;
    let mut named = false;
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." if named => {
                return Err(format!(
                    "is a symlink whose target ({shown}) has '..' after a name; only leading '..' is accepted"
                ));
            }
            b".." => ups += 1,
            _ => named = true,
        }
    }
    if ups > depth {
        return Err(format!(
            "is a symlink whose target ({shown}) leaves the backup's data/ directory"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        entry_path(raw.as_bytes(), "id", raw.ends_with('/'))
            .unwrap()
            .to_string()
    }

    fn err(raw: &str) -> &'static str {
        entry_path(raw.as_bytes(), "id", raw.ends_with('/')).unwrap_err()
    }

    #[test]
    fn names_are_normalized_under_top() {
        assert_eq!(ok("id/"), "id");
        assert_eq!(ok("id"), "id");
        assert_eq!(ok("./id/data/x"), "id/data/x");
        assert_eq!(ok("././id//data/./x"), "id/data/x");
        assert_eq!(ok("id/data/dir/"), "id/data/dir");
        let p = entry_path(b"id/data/a/b", "id", false).unwrap();
        assert_eq!(p.parent(), b"id/data/a");
        assert_eq!(p.name(), b"b");
        let top = entry_path(b"id", "id", true).unwrap();
        assert_eq!(top.parent(), b"");
        assert_eq!(top.name(), b"id");
    }

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(err("/etc/passwd"), "has an absolute name");
        assert_eq!(err("/id/data/x"), "has an absolute name");
        assert_eq!(err("id/../x"), "has a '..' component");
        assert_eq!(err("id/data/../../x"), "has a '..' component");
        assert_eq!(err("../id/data/x"), "has a '..' component");
        assert_eq!(err("other/data/x"), "is outside the backup's top directory");
        assert_eq!(err("idx/data"), "is outside the backup's top directory");
        assert_eq!(err("./"), "is outside the backup's top directory");
        assert_eq!(err("."), "is outside the backup's top directory");
        assert_eq!(err(""), "has an empty name");
        assert!(
            entry_path(b"id/data/x/", "id", false)
                .unwrap_err()
                .starts_with("has a directory name")
        );
    }

    #[test]
    fn one_check_for_types_names_and_links() {
        let c = |kind, raw: &str, link: Option<&str>| {
            check(kind, raw.as_bytes(), link.map(str::as_bytes), "id")
        };
        let ok = c(EntryType::Link, "id/data/b", Some("./id/data/a")).unwrap();
        assert_eq!(ok.hardlink.unwrap().to_string(), "id/data/a");
        assert!(c(EntryType::Symlink, "id/data/l", Some("x")).is_ok());
        assert!(
            c(EntryType::Symlink, "id/data/l", Some("/etc/shadow"))
                .unwrap_err()
                .contains("absolute path (/etc/shadow)")
        );
        assert!(
            c(EntryType::Symlink, "id/data/l", None)
                .unwrap_err()
                .contains("without a target")
        );
        assert!(
            c(EntryType::Link, "id/data/b", Some("../etc/passwd"))
                .unwrap_err()
                .contains("is a hardlink to")
        );
        assert!(
            c(EntryType::Fifo, "id/data/p", None)
                .unwrap_err()
                .contains("FIFO")
        );
        assert!(
            c(EntryType::Regular, "id", None)
                .unwrap_err()
                .contains("top directory but is not a directory")
        );
        let long = format!("id/{}", "a/".repeat(MAX_PATH / 2));
        assert!(
            c(EntryType::Directory, &long, None)
                .unwrap_err()
                .contains("longer than 4096")
        );
    }

    #[test]
    fn names_need_not_be_utf8_but_hostile_ones_stay_refused() {
        let p = entry_path(b"id/data/caf\xe9", "id", false).unwrap();
        assert_eq!(p.name(), b"caf\xe9");
        let p = entry_path(b"id/data/\xff\xfe/x\x80", "id", false).unwrap();
        assert_eq!(p.as_bytes(), b"id/data/\xff\xfe/x\x80");
        let refused = |raw: &[u8]| entry_path(raw, "id", false).unwrap_err();
        assert_eq!(refused(b"/id/data/caf\xe9"), "has an absolute name");
        assert_eq!(refused(b"id/data/\xe9/../../x"), "has a '..' component");
        assert_eq!(
            refused(b"\xe9d/data/x"),
            "is outside the backup's top directory"
        );
        let mut long = b"id/".to_vec();
        long.extend_from_slice(&[0xe9; MAX_PATH]);
        assert!(refused(&long).contains("longer than 4096"));
        // A link to a raw name is checked like any other name.
        let c = check(
            EntryType::Link,
            b"id/data/b",
            Some(b"id/data/caf\xe9"),
            "id",
        )
        .unwrap();
        assert_eq!(c.hardlink.unwrap().as_bytes(), b"id/data/caf\xe9");
        assert!(
            check(
                EntryType::Link,
                b"id/data/b",
                Some(b"id/\xe9/../../x"),
                "id"
            )
            .unwrap_err()
            .contains("'..'")
        );
    }

    fn link(at: &str, target: &str) -> Result<(), String> {
        check_symlink(
            &entry_path(at.as_bytes(), "id", false).unwrap(),
            target.as_bytes(),
        )
    }

    #[test]
    fn symlinks_inside_data_are_accepted() {
        link("id/data/current", "user-files/budget-1").unwrap();
        link("id/data/a/b/l", "../../x").unwrap();
        link("id/data/a/l", "..").unwrap(); // data/ itself
        link("id/data/a/l", "./x/./y/").unwrap();
        link("id/data/l", ".").unwrap();
        link("id/data/l", "l").unwrap(); // a loop, but harmless
    }

    #[test]
    fn symlinks_leaving_data_are_refused() {
        assert!(
            link("id/data/l", "/tmp/x")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(link("id/data/l", "..").unwrap_err().contains("leaves"));
        assert!(
            link("id/data/l", "../../..")
                .unwrap_err()
                .contains("leaves")
        );
        assert!(
            link("id/data/a/l", "../../systemd")
                .unwrap_err()
                .contains("leaves")
        );
        assert!(link("id/data/l", "").unwrap_err().contains("empty"));
        assert!(
            link("id/data/l", "d/../..")
                .unwrap_err()
                .contains("after a name")
        );
        assert!(
            link("id/data/a/l", "x/../y")
                .unwrap_err()
                .contains("after a name")
        );
        assert!(
            link("id/systemd/l", "x")
                .unwrap_err()
                .contains("outside data/")
        );
        assert!(
            link("id/l", "data/x")
                .unwrap_err()
                .contains("outside data/")
        );
        assert!(link("id/data", "x").unwrap_err().contains("outside data/"));
    }
}
