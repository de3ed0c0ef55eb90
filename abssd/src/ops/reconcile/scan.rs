//! The walk of the backups root: every archive (`*.tar`, `*.tar.gz`,
//! `*.tar.zst`) with its size, mtime and inode, the sidecars, and the
//! `.partial` files of creates (counted, never taken for archives).
//!
//! Only directory entries and one `lstat` per archive: no file is opened.
//! Hidden names (a leading `.`, e.g. the temporary files of atomic writes),
//! symlinks and the directories in `skip` (the restores root when it lies
//! inside the backups root) are not looked into.
//!
//! The walk goes no deeper than where archives belong: the root and the
//! directories directly in it (`<root>/<instance>/<archive>`, and a create's
//! `--out-dir` one level down). Anything deeper is counted, never read: it
//! may be a tree nobody meant as backups (a restore's output, an instance's
//! files copied there), and an archive found there is not one to adopt.
//! Index entries that name an archive deeper are still checked, by path.
//!
//! What an archive's path says about it (its id, its instance, when it was
//! made; the archive a sidecar belongs to) is read here too, from names only.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use abssd_proto::Algorithm;

use crate::archive::sidecar;
use crate::error::{IoContext, Result};
use crate::index;
use crate::registry::validate_name;

/// One archive file.
#[derive(Debug, Clone)]
pub struct Archive {
    /// Its path (under the root, as walked).
    pub path: String,
    /// Where its directory, relative to the root, starts in `path` (it ends
    /// before the file name: empty for the root itself).
    dir_at: usize,
    /// Where the file name starts in `path`.
    name_at: usize,
    /// Compression, from the extension.
    pub algorithm: Algorithm,
    /// Bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Its `.sha256` sidecar is beside it.
    pub has_sidecar: bool,
    /// (device, inode).
    inode: (u64, u64),
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Archives, by path (binary-searched: no second copy of the paths).
    pub archives: Vec<Archive>,
    /// (device, inode) → index in `archives`.
    pub by_inode: HashMap<(u64, u64), usize>,
    /// Sidecars (`<archive>.sha256`) whose archive was not found.
    pub lone_sidecars: Vec<String>,
    /// `.partial` files seen.
    pub partials: u64,
    /// Names that could not be considered (not UTF-8, unreadable
    /// directories), the first [`MAX_SKIPPED`].
    pub skipped: Vec<String>,
    /// Directories below the instance directories, not looked into.
    pub deeper: u64,
}

/// How many names [`Scan::skipped`] lists (the rest are counted in it).
pub const MAX_SKIPPED: usize = 20;

/// How deep the walk goes: 0 is the root, 1 its directories.
const MAX_DEPTH: usize = 1;

impl Archive {
    /// The file name.
    pub fn name(&self) -> &str {
        &self.path[self.name_at..]
    }

    /// The directory it is in, relative to the root (`""` for the root itself).
    pub fn dir(&self) -> &str {
        &self.path[self.dir_at..self.name_at.saturating_sub(1).max(self.dir_at)]
    }
}

impl Scan {
    /// Whether the present archive at `path` has no `.sha256` sidecar.
    pub fn lacks_sidecar(&self, path: &str) -> bool {
        // The scan is older than the index: a create writes its sidecar after
        // the scan saw its archive and before its entry is in the index, so a
        // sidecar the scan missed is looked for again.
        let has = self.at(path).is_some_and(|i| self.archives[i].has_sidecar)
            || std::fs::symlink_metadata(crate::archive::sidecar::path(Path::new(path))).is_ok();
        !has
    }

    /// The archive walked at exactly `path`.
    pub fn at(&self, path: &str) -> Option<usize> {
        self.archives
            .binary_search_by(|a| a.path.as_str().cmp(path))
            .ok()
    }

    /// The archive at `path`, by name or, failing that, by inode (an entry that
    /// names the file through a symlink or another spelling).
    pub fn find(&self, path: &str) -> Option<usize> {
        if let Some(i) = self.at(path) {
            return Some(i);
        }
        let meta = std::fs::metadata(path).ok()?;
        self.by_inode.get(&(meta.dev(), meta.ino())).copied()
    }
}

/// Walk `root`. A root that does not exist holds no archives.
pub fn scan(root: &Path, skip: &[PathBuf]) -> Result<Scan> {
    let mut out = Scan::default();
    let mut dirs = vec![(root.to_owned(), String::new(), 0usize)];
    let mut skipped = 0usize;
    let mut skip_note = |out: &mut Scan, note: String| {
        skipped += 1;
        if out.skipped.len() < MAX_SKIPPED {
            out.skipped.push(note);
        } else if skipped == MAX_SKIPPED + 1 {
            out.skipped.push("… and more not listed".into());
        }
    };
    while let Some((dir, rel, depth)) = dirs.pop() {
        let reader = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => return Ok(out),
            Err(e) if dir == root => return Err(e).at("reading the backups root", root),
            Err(e) => {
                skip_note(&mut out, format!("{}: {e}", dir.display()));
                continue;
            }
        };
        // This directory's archives (from `first`) and sidecar names, matched
        // when it has been read: a sidecar may come before its archive.
        let first = out.archives.len();
        let mut sidecars: Vec<String> = Vec::new();
        for dirent in reader {
            let dirent = dirent.at("reading", &dir)?;
            let path = dirent.path();
            let Ok(name) = dirent.file_name().into_string() else {
                skip_note(&mut out, format!("{}: name is not UTF-8", path.display()));
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let kind = dirent.file_type().at("reading", &path)?;
            if kind.is_dir() {
                if skip.contains(&path) {
                    continue;
                }
                if depth >= MAX_DEPTH {
                    out.deeper += 1;
                    continue;
                }
                let rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                dirs.push((path, rel, depth + 1));
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            if name.ends_with(".partial") {
                out.partials += 1;
            } else if let Some(archive) = name.strip_suffix(sidecar::SUFFIX) {
                if Algorithm::from_file_name(archive).is_some() {
                    sidecars.push(name);
                }
            } else if let Some(algorithm) = Algorithm::from_file_name(&name) {
                let meta = match dirent.metadata() {
                    Ok(m) => m,
                    // Gone since the directory was read (a prune, a rename).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).at("reading", &path),
                };
                let path = path_string(&path);
                let name_at = path.len() - name.len();
                out.archives.push(Archive {
                    dir_at: name_at - usize::from(!rel.is_empty()) - rel.len(),
                    name_at,
                    path,
                    algorithm,
                    size: meta.len(),
                    mtime: meta.mtime(),
                    has_sidecar: false,
                    inode: (meta.dev(), meta.ino()),
                });
            }
        }
        let names: HashMap<&str, usize> = out.archives[first..]
            .iter()
            .enumerate()
            .map(|(k, a)| (a.name(), first + k))
            .collect();
        let mut found = Vec::new();
        for s in sidecars {
            match names.get(archive_of(&s)) {
                Some(&i) => found.push(i),
                None => out.lone_sidecars.push(path_string(&dir.join(&s))),
            }
        }
        drop(names);
        for i in found {
            out.archives[i].has_sidecar = true;
        }
    }
    out.archives.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    out.by_inode = out
        .archives
        .iter()
        .enumerate()
        .map(|(i, a)| (a.inode, i))
        .collect();
    Ok(out)
}

/// A path known to be UTF-8 (built from UTF-8 names under a UTF-8 root).
fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The archive path a sidecar belongs to.
pub fn archive_of(sidecar: &str) -> &str {
    sidecar.strip_suffix(sidecar::SUFFIX).unwrap_or(sidecar)
}

/// Id, instance and how they were found, from an orphan's path:
/// `<instance>/<YYYYMMDD-HHMMSS-<instance>-<hex>>.<ext>`, else the file's
/// stem and the first directory under the root.
pub fn infer(archive: &Archive) -> (String, Option<String>, &'static str) {
    let id = strip_extension(archive.name()).to_owned();
    if let Some(instance) = index::instance_of_id(&id) {
        let instance = instance.to_owned();
        return (id, Some(instance), "id and instance from the file name");
    }
    let first = archive.dir().split('/').next().unwrap_or_default();
    if validate_name(first).is_ok() {
        return (
            id,
            Some(first.to_owned()),
            "id from the file name, instance from its directory",
        );
    }
    (
        id,
        None,
        "instance unknown (not in an instance directory, no backup id in the name)",
    )
}

/// The file name without `.tar`, `.tar.gz` or `.tar.zst`.
pub fn strip_extension(name: &str) -> &str {
    [".tar.zst", ".tar.gz", ".tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name)
}

/// `created_at` for an adopted archive: the time in its id, else its mtime.
pub fn created_at(id: &str, mtime: i64) -> String {
    let from_id = id
        .get(..15)
        .and_then(|t| jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S", t).ok())
        .and_then(|t| jiff::tz::TimeZone::UTC.to_timestamp(t).ok());
    let at = from_id
        .or_else(|| jiff::Timestamp::from_second(mtime).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    crate::fsutil::utc(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use abssd_proto::Algorithm;

    #[test]
    fn archives_sidecars_and_partials_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let touch = |rel: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        };
        touch("a/1.tar.zst");
        touch("a/1.tar.zst.sha256");
        touch("a/2.tar.gz.partial");
        touch("a/gone.tar.sha256");
        touch("a/notes.txt");
        touch("a/.hidden.tar");
        touch("top.tar");
        touch("restores/x/inner.tar");
        touch("a/deep/er/3.tar.gz");
        touch("a/deeper/4.tar.gz");
        std::os::unix::fs::symlink(root.join("top.tar"), root.join("a/link.tar")).unwrap();

        let scan = scan(root, &[root.join("restores")]).unwrap();
        let mut found: Vec<(String, String)> = scan
            .archives
            .iter()
            .map(|a| (a.dir().to_owned(), a.name().to_owned()))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("".to_owned(), "top.tar".to_owned()),
                ("a".to_owned(), "1.tar.zst".to_owned()),
            ]
        );
        assert_eq!(scan.deeper, 2, "a/deep and a/deeper are not looked into");
        assert_eq!(scan.partials, 1);
        assert_eq!(
            scan.lone_sidecars,
            [root.join("a/gone.tar.sha256").display().to_string()]
        );
        let with_sidecar: Vec<&String> = scan
            .archives
            .iter()
            .filter(|a| a.has_sidecar)
            .map(|a| &a.path)
            .collect();
        assert_eq!(
            with_sidecar,
            [&root.join("a/1.tar.zst").display().to_string()],
            "top.tar has none"
        );
        let one = root.join("a/1.tar.zst").display().to_string();
        assert!(!scan.lacks_sidecar(&one));
        assert!(scan.lacks_sidecar(&root.join("top.tar").display().to_string()));
        let via_link = root.join("a/link.tar").display().to_string();
        let top = scan.find(&via_link).unwrap();
        assert_eq!(scan.archives[top].name(), "top.tar");
        assert_eq!(
            scan.find(&root.join("none.tar").display().to_string()),
            None
        );
    }

    #[test]
    fn a_root_that_does_not_exist_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let scan = scan(&dir.path().join("absent"), &[]).unwrap();
        assert!(scan.archives.is_empty());
    }

    fn archive(dir: &str, name: &str) -> Archive {
        Archive {
            path: format!("/b/{dir}/{name}"),
            name_at: "/b/".len() + dir.len() + 1,
            dir_at: "/b/".len(),
            algorithm: Algorithm::Zstd,
            size: 1,
            mtime: 0,
            has_sidecar: false,
            inode: (0, 0),
        }
    }

    #[test]
    fn orphans_are_named_from_their_file_or_directory() {
        let (id, inst, _) = infer(&archive("beta", "20250102-030405-alpha-a1b2c3.tar.gz"));
        assert_eq!(
            (id.as_str(), inst.as_deref()),
            ("20250102-030405-alpha-a1b2c3", Some("alpha"))
        );
        let (id, inst, _) = infer(&archive("beta/weekly", "sunday.tar"));
        assert_eq!((id.as_str(), inst.as_deref()), ("sunday", Some("beta")));
        let (id, inst, _) = infer(&archive("", "loose.tar.zst"));
        assert_eq!((id.as_str(), inst), ("loose", None));
    }

    #[test]
    fn created_at_comes_from_the_id_else_the_mtime() {
        assert_eq!(
            created_at("20250102-030405-alpha-a1b2c3", 0),
            "2025-01-02T03:04:05Z"
        );
        assert_eq!(created_at("sunday", 86_400), "1970-01-02T00:00:00Z");
        assert_eq!(
            created_at("20251399-999999-x-000000", 0),
            "1970-01-01T00:00:00Z"
        );
    }
}
