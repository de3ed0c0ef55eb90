//! Present archives without their `.sha256` sidecar: a drift of its own
//! (`missing_sidecars`). The Python tool restores such a backup from the
//! index's checksum and so does abssd, but `sha256sum -c` and whoever reads
//! the sidecar beside the archive lose it. Which entries lack one is the
//! scan's to say (`Scan::lacks_sidecar`); here is the finding for each: a
//! sidecar is written only from a hash of the archive that equals the index's
//! checksum, never from the index alone.

use abssd_proto::{BackupEntry, ReconcileItem};

use super::classify::{Change, entry_item};

/// What hashing the archive found: the digest, or why there is none.
#[derive(Debug)]
pub struct Hashed<'a> {
    /// The archive's sha256, when it could be read.
    pub observed: Option<&'a str>,
    /// Why it could not be, otherwise.
    pub message: &'a str,
}

/// The finding for `entry`, whose `size`-byte archive has no sidecar, and the
/// change that writes it back. `hashed` is the archive's hash, taken under
/// `--apply` (and `--verify`); without it the finding says what `--apply`
/// would do.
pub fn judge(
    entry: &BackupEntry,
    size: u64,
    hashed: Option<Hashed<'_>>,
) -> (ReconcileItem, Option<Change>) {
    let mut reason = "archive present but its .sha256 sidecar is missing".to_owned();
    let indexed = entry
        .sha256()
        .filter(|v| !v.is_empty())
        .map(str::to_ascii_lowercase);
    let (action, change) = match (indexed, hashed) {
        (None, _) => {
            reason.push_str(
                "; the index records no checksum to check the archive against, so none is written (check the archive, e.g. restore it with --dest)",
            );
            (None, None)
        }
        (Some(_), None) => (
            Some("hash the archive; write the sidecar if the hash is the index's checksum"),
            None,
        ),
        (Some(indexed), Some(Hashed { observed, message })) => match observed {
            Some(hex) if hex.eq_ignore_ascii_case(&indexed) => (
                Some("write the sidecar"),
                Some(Change::WriteSidecar {
                    sha256: indexed,
                    size,
                }),
            ),
            Some(hex) => {
                reason.push_str(&format!(
                    "; the archive hashes to {hex}, not the index's {indexed}: sidecar not written"
                ));
                (None, None)
            }
            None => {
                reason.push_str(&format!(
                    "; the archive could not be hashed ({message}): sidecar not written"
                ));
                (None, None)
            }
        },
    };
    let item = entry_item(entry, reason, action);
    (item, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha256: Option<&str>) -> BackupEntry {
        let mut e = BackupEntry::new(
            "20250102-030405-alpha-a1b2c3".into(),
            "alpha".into(),
            "2025-01-02T03:04:05Z".into(),
            "/b/alpha/x.tar.zst".into(),
            "zstd",
            10,
            sha256.unwrap_or_default().to_owned(),
        );
        if sha256.is_none() {
            e.checksum = None;
        }
        e
    }

    #[test]
    fn a_sidecar_is_written_only_from_a_hash_that_is_the_index_checksum() {
        let (good, bad) = ("ab".repeat(32), "cd".repeat(32));
        let e = entry(Some(&good));
        let (item, change) = judge(&e, 10, None);
        assert!(
            item.reason.contains("sidecar is missing"),
            "{}",
            item.reason
        );
        assert!(item.action.is_some() && change.is_none());

        let upper = good.to_ascii_uppercase();
        let hashed = Hashed {
            observed: Some(&upper),
            message: "checksum matches",
        };
        let (item, change) = judge(&e, 10, Some(hashed));
        assert_eq!(item.action.as_deref(), Some("write the sidecar"));
        match change {
            Some(Change::WriteSidecar { sha256, size }) => assert_eq!((sha256, size), (good, 10)),
            other => panic!("{other:?}"),
        }

        let hashed = Hashed {
            observed: Some(&bad),
            message: "checksum mismatch",
        };
        let (item, change) = judge(&e, 10, Some(hashed));
        assert!(item.action.is_none() && change.is_none());
        assert!(item.reason.contains("not written"), "{}", item.reason);

        let hashed = Hashed {
            observed: None,
            message: "cannot read it",
        };
        let (item, change) = judge(&e, 10, Some(hashed));
        assert!(change.is_none() && item.reason.contains("cannot read it"));
    }

    #[test]
    fn without_an_index_checksum_nothing_is_written() {
        let e = entry(None);
        assert!(e.sha256().is_none());
        let hex = "ab".repeat(32);
        let hashed = Hashed {
            observed: Some(&hex),
            message: "",
        };
        let (item, change) = judge(&e, 10, Some(hashed));
        assert!(item.action.is_none() && change.is_none());
        assert!(item.reason.contains("no checksum"), "{}", item.reason);
    }
}
