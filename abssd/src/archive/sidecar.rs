//! The checksum sidecar `<archive>.sha256`: one line `<hex>  <file name>`, as
//! `sha256sum` writes it and `sha256sum -c` reads it (the Python tool's format).

use std::path::{Path, PathBuf};

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

/// The digest a sidecar's text starts with, if it is a sha256 in hex.
pub fn digest(text: &str) -> Option<&str> {
    let hex = text.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Whether the sidecar's text names `archive_name` (`*name` is sha256sum's
/// binary-mode spelling).
pub fn names(text: &str, archive_name: &str) -> bool {
    text.split_whitespace()
        .nth(1)
        .map(|n| n.trim_start_matches('*'))
        == Some(archive_name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
