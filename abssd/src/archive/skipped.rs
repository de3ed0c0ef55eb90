//! What a create left out or archived imperfectly, and the bounded warnings
//! that say so.

use std::path::PathBuf;

/// Something left out of the archive, reported as a warning.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Path on disk.
    pub path: PathBuf,
    /// Why, for people.
    pub reason: String,
    /// What became of it.
    pub kind: SkipKind,
}

/// What became of a [`Skipped`] file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// Not in the archive.
    LeftOut,
    /// In the archive, padded: it shrank while it was read.
    Incomplete,
    /// In the archive as read, but it was written to while it was read (its
    /// size or mtime changed), so it may be torn.
    Changed,
}

impl Skipped {
    /// The warning shown in the create's events and result: bounded, however
    /// long the path or the symlink target it names.
    pub fn warning(&self) -> String {
        format!(
            "{} {}: {}",
            match self.kind {
                SkipKind::LeftOut => "left out",
                SkipKind::Incomplete => "incomplete",
                SkipKind::Changed => "changed",
            },
            elide(&self.path.display().to_string()),
            elide(&self.reason)
        )
    }
}

/// Most warnings one create reports one by one; the rest are counted.
pub const MAX_WARNINGS: usize = 50;
/// Longest path or reason shown in a warning, in characters.
const MAX_SHOWN: usize = 512;

/// The warnings for what was left out: the first [`MAX_WARNINGS`], then a count.
pub fn warnings(skipped: &[Skipped]) -> Vec<String> {
    let mut out: Vec<String> = skipped
        .iter()
        .take(MAX_WARNINGS)
        .map(Skipped::warning)
        .collect();
    if skipped.len() > MAX_WARNINGS {
        out.push(format!(
            "... and {} more left out, {} in all",
            skipped.len() - MAX_WARNINGS,
            skipped.len()
        ));
    }
    out
}

/// `text` with its middle replaced by `...` when it is longer than [`MAX_SHOWN`].
fn elide(text: &str) -> String {
    let n = text.chars().count();
    if n <= MAX_SHOWN {
        return text.to_owned();
    }
    let keep = MAX_SHOWN / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(n - keep).collect();
    format!("{head}...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(path: &str, reason: &str) -> Skipped {
        Skipped {
            path: PathBuf::from(path),
            reason: reason.to_owned(),
            kind: SkipKind::LeftOut,
        }
    }

    #[test]
    fn warnings_are_bounded_in_number_and_length() {
        let many: Vec<_> = (0..MAX_WARNINGS + 7)
            .map(|i| skipped(&format!("/d/{i}"), "why"))
            .collect();
        let w = warnings(&many);
        assert_eq!(w.len(), MAX_WARNINGS + 1);
        assert_eq!(w[0], "left out /d/0: why");
        assert_eq!(
            w[MAX_WARNINGS],
            format!("... and 7 more left out, {} in all", MAX_WARNINGS + 7)
        );
        assert_eq!(warnings(&many[..3]).len(), 3);

        let long = skipped(&format!("/{}/end", "x".repeat(5000)), &"y".repeat(5000));
        let w = long.warning();
        assert!(w.len() < 2 * MAX_SHOWN + 32, "{}", w.len());
        assert!(
            w.starts_with("left out /xxx") && w.contains("x...x") && w.contains("x/end: yyy"),
            "{w}"
        );
    }
}
