//! The checksum sidecar `<archive>.sha256`: one line `<hex>  <file name>`, as
//! `sha256sum` writes it and `sha256sum -c` reads it (the Python tool's format).

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::fsutil;

/// What the sidecar's name adds to the archive's.
pub const SUFFIX: &str = ".sha256";

/// The sidecar of `archive`.
pub fn path(archive: &Path) -> PathBuf {
    let mut s = archive.as_os_str().to_owned();
    s.push(SUFFIX);
    PathBuf::from(s)
}

/// The sidecar's content for an archive named `archive_name`.
pub fn line(sha256: &str, archive_name: &str) -> String {
    format!("{sha256}  {archive_name}\n")
}

/// `hex` is a SHA-256 digest in hex (either case).
pub fn is_digest(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The digest a sidecar's text starts with, if it is a sha256 in hex.
pub fn digest(text: &str) -> Option<&str> {
    let hex = text.split_whitespace().next()?;
    is_digest(hex).then_some(hex)
}

/// The digest of the line that names `file` in a sidecar of several lines
/// (a remote's sidecar has the plain archive's and the encrypted object's),
/// `<hex>  <file>` or sha256sum's binary-mode `<hex> *<file>`.
pub fn digest_for<'a>(text: &'a str, file: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (digest, rest) = line.split_once(' ')?;
        let named = rest.strip_prefix([' ', '*']).unwrap_or(rest);
        (named == file && is_digest(digest)).then_some(digest)
    })
}

/// Whether sidecar `text` gives `file` the digest `digest` (any case).
pub fn records(text: &str, file: &str, digest: &str) -> bool {
    digest_for(text, file).is_some_and(|d| d.eq_ignore_ascii_case(digest))
}

/// Whether the sidecar's text names `archive_name` (`*name` is sha256sum's
/// binary-mode spelling).
pub fn names(text: &str, archive_name: &str) -> bool {
    text.split_whitespace()
        .nth(1)
        .map(|n| n.trim_start_matches('*'))
        == Some(archive_name)
}

/// Write the missing sidecar of `archive` for `sha256`, a digest the caller
/// has just verified the archive against, the way a create writes it
/// (atomically, [`fsutil::FILE_MODE`], owned by the daemon). Nothing is
/// written when a sidecar appeared meanwhile (it is not ours to replace) or
/// the archive is gone (a sidecar beside nothing would be a stray). Returns
/// whether it wrote one. Blocking; the caller holds the global lock, under
/// which archives are pruned and sidecars written.
pub fn write_back(archive: &Path, sha256: &str) -> Result<bool> {
    let sidecar = path(archive);
    match std::fs::symlink_metadata(&sidecar) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at("reading", &sidecar),
    }
    match std::fs::symlink_metadata(archive) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).at("reading", archive),
    }
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fsutil::atomic_write(&sidecar, line(sha256, &name).as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_naming_a_file_gives_its_digest() {
        let (a, b) = ("a".repeat(64), "B".repeat(64));
        let text = format!("{a}  x.tar.zst\n{b}  x.tar.zst.age\n");
        assert_eq!(digest_for(&text, "x.tar.zst"), Some(a.as_str()));
        assert_eq!(digest_for(&text, "x.tar.zst.age"), Some(b.as_str()));
        assert_eq!(digest_for(&text, "x.tar"), None);
        assert_eq!(
            digest_for(&format!("{a} *x.tar\n"), "x.tar"),
            Some(a.as_str())
        );
        assert_eq!(digest_for("zz  x.tar\n", "x.tar"), None, "not a digest");
        assert_eq!(
            digest_for(&format!("{a} x.tar\n"), "x.tar"),
            Some(a.as_str())
        );
    }

    #[test]
    fn the_sha256sum_format_round_trips() {
        let hex = "ab".repeat(32);
        let text = line(&hex, "x.tar.zst");
        assert_eq!(text, format!("{hex}  x.tar.zst\n"));
        assert_eq!(digest(&text), Some(hex.as_str()));
        assert!(names(&text, "x.tar.zst"));
        assert!(names(&format!("{hex} *x.tar.zst\n"), "x.tar.zst"));
        assert!(!names(&text, "y.tar"));
        assert_eq!(digest("garbage  x.tar\n"), None);
        assert_eq!(digest(""), None);
        assert_eq!(path(Path::new("/b/x.tar")), Path::new("/b/x.tar.sha256"));
    }

    #[test]
    fn write_back_fills_only_a_missing_sidecar_beside_an_archive() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("x.tar.zst");
        let hex = "ab".repeat(32);
        // No archive: a sidecar would be a stray.
        assert!(!write_back(&archive, &hex).unwrap());
        assert!(!path(&archive).exists());
        std::fs::write(&archive, "a").unwrap();
        assert!(write_back(&archive, &hex).unwrap());
        let text = std::fs::read_to_string(path(&archive)).unwrap();
        assert_eq!(text, line(&hex, "x.tar.zst"));
        let mode = std::fs::metadata(path(&archive))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, fsutil::FILE_MODE);
        // One that is there, even another, is left alone.
        std::fs::write(path(&archive), "other").unwrap();
        assert!(!write_back(&archive, &hex).unwrap());
        assert_eq!(std::fs::read_to_string(path(&archive)).unwrap(), "other");
    }
}
