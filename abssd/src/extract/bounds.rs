//! What one archive may expand to and what extraction leaves free: the
//! caller's expectations ([`Expect`]), the entry and content caps
//! ([`Limits`]), and the free-space reserve ([`Reserve`], [`Room`]).

use std::path::Path;

use abssd_proto::Algorithm;

use super::tree::Tree;
use crate::error::{Error, IoContext, Result};

/// What the caller knows about the archive before extracting it.
#[derive(Debug, Clone)]
pub struct Expect {
    /// How the archive is compressed.
    pub algorithm: Algorithm,
    /// Expected sha256 of the archive file, hex (from its sidecar / the index).
    pub sha256: String,
    /// The backup id: every entry must be under `<top>/`.
    pub top: String,
    /// Bound on the total bytes of entry content: the free space pre-flight
    /// found, less the reserve.
    pub max_bytes: u64,
    /// Bounds on entries and content, the same as for inspection.
    pub limits: Limits,
    /// What stays free on the staging filesystem whatever else writes there.
    pub reserve: Reserve,
    /// Restore numeric owners (true when running as root).
    pub same_owner: bool,
}

/// Bounds on what one archive may expand to, for extraction and inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tar entries (`daemon.max_restore_entries`).
    pub max_entries: u64,
    /// Bytes of content its index entry records (`metadata.uncompressed_bytes`),
    /// when it does: more than that (plus a margin) is refused.
    pub recorded_bytes: Option<u64>,
}

/// Content accepted beyond the recorded size: 10 % and this. abssd records the
/// sum of the entries' sizes, which is what is counted here; the margin covers
/// a tool that counted slightly differently.
const RECORDED_MARGIN: u64 = 1 << 20;

impl Limits {
    /// The most content accepted, when the size is recorded.
    pub fn content_cap(&self) -> Option<u64> {
        self.recorded_bytes
            .map(|r| r.saturating_add(r / 10).saturating_add(RECORDED_MARGIN))
    }

    /// May one more entry come after `entries`, bringing the content to `content`?
    pub(super) fn admit(&self, entries: u64, content: u64, archive: &Path) -> Result<()> {
        if entries >= self.max_entries {
            return Err(Error::Archive(format!(
                "refusing {}: it holds more than {} entries (daemon.max_restore_entries); nothing was changed. Raise the limit if the archive is genuine",
                archive.display(),
                self.max_entries
            )));
        }
        if let (Some(recorded), Some(cap)) = (self.recorded_bytes, self.content_cap())
            && content > cap
        {
            return Err(Error::Archive(format!(
                "refusing {}: its entries hold more than {cap} bytes, but its index entry records {recorded} bytes of content (metadata.uncompressed_bytes); the archive or its entry was changed. Nothing was changed; check it with `abssctl backup verify`",
                archive.display()
            )));
        }
        Ok(())
    }
}

/// Room kept free on the filesystem that receives the staging directory, so a
/// restore never fills the filesystem the instances live on: a percentage of
/// its size, at most [`RESERVE_MAX_BYTES`] (and as many inodes, at most
/// [`RESERVE_MAX_INODES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// `daemon.restore_reserve_percent`.
    pub percent: u8,
}

/// The most bytes [`Reserve`] keeps free, whatever the filesystem's size: on
/// a large filesystem a percentage would refuse restores for no good reason.
pub const RESERVE_MAX_BYTES: u64 = 1 << 30;
/// The most inodes [`Reserve`] keeps free.
pub const RESERVE_MAX_INODES: u64 = 1 << 20;

impl Reserve {
    /// Bytes kept free on a filesystem of `size` bytes.
    pub fn bytes(&self, size: u64) -> u64 {
        (size / 100)
            .saturating_mul(u64::from(self.percent))
            .min(RESERVE_MAX_BYTES)
    }

    /// Inodes kept free on a filesystem of `inodes` inodes.
    fn inodes(&self, inodes: u64) -> u64 {
        (inodes / 100)
            .saturating_mul(u64::from(self.percent))
            .min(RESERVE_MAX_INODES)
    }
}

/// What extraction may still write before it looks at the filesystem again.
/// Each entry is charged more than it can take (its size rounded up to 4 KiB,
/// plus 4 KiB, and an inode). The filesystem is measured afresh when a charge
/// does not fit, before every entry of [`REMEASURE_BYTES`] or more, and after
/// that much (or [`REMEASURE_ENTRIES`] entries) since the last measure: so the
/// reserve holds while others write there too, give or take what they write
/// between two measures.
#[derive(Debug, Default)]
pub(super) struct Room {
    bytes: u64,
    inodes: u64,
    /// Charged since the last measure.
    charged: u64,
    entries: u64,
}

const BLOCK: u64 = 4096;
/// See [`Room`].
const REMEASURE_BYTES: u64 = 1 << 20;
/// See [`Room`].
const REMEASURE_ENTRIES: u64 = 1024;

impl Room {
    pub(super) fn take(
        &mut self,
        size: u64,
        tree: &Tree,
        reserve: Reserve,
        archive: &Path,
    ) -> Result<()> {
        let bytes = size.div_ceil(BLOCK).saturating_add(1).saturating_mul(BLOCK);
        let stale = bytes >= REMEASURE_BYTES
            || self.charged.saturating_add(bytes) >= REMEASURE_BYTES
            || self.entries >= REMEASURE_ENTRIES;
        if stale || bytes > self.bytes || self.inodes == 0 {
            *self = Room::measure(tree, reserve)?;
            if bytes > self.bytes || self.inodes == 0 {
                return Err(Error::Environment(format!(
                    "extracting {} would leave less than the reserve free on the filesystem of {} ({}% of its size, at most 1 GiB, and as many inodes: daemon.restore_reserve_percent); stopped, nothing was changed. Free some space there or restore elsewhere with --dest",
                    archive.display(),
                    tree.staging().display(),
                    reserve.percent
                )));
            }
        }
        self.bytes -= bytes;
        self.inodes -= 1;
        self.charged = self.charged.saturating_add(bytes);
        self.entries += 1;
        Ok(())
    }

    fn measure(tree: &Tree, reserve: Reserve) -> Result<Room> {
        let st = rustix::fs::fstatvfs(tree.root())
            .map_err(std::io::Error::from)
            .at("checking free space on", tree.staging())?;
        let size = st.f_blocks.saturating_mul(st.f_frsize);
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        // Some filesystems (btrfs) have no fixed number of inodes and say 0.
        let inodes = if st.f_files == 0 {
            u64::MAX
        } else {
            st.f_favail.saturating_sub(reserve.inodes(st.f_files))
        };
        Ok(Room {
            bytes: free.saturating_sub(reserve.bytes(size)),
            inodes,
            charged: 0,
            entries: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_sizes_get_a_margin_and_entries_a_cap() {
        let limits = Limits {
            max_entries: 3,
            recorded_bytes: Some(10 << 20),
        };
        let cap = (10 << 20) + (1 << 20) + RECORDED_MARGIN;
        assert_eq!(limits.content_cap(), Some(cap));
        let a = Path::new("/a.tar");
        limits.admit(2, cap, a).unwrap();
        let err = limits.admit(2, cap + 1, a).unwrap_err().to_string();
        assert!(err.contains("records 10485760 bytes"), "{err}");
        let err = limits.admit(3, 0, a).unwrap_err().to_string();
        assert!(err.contains("more than 3 entries"), "{err}");
        let unknown = Limits {
            max_entries: 3,
            recorded_bytes: None,
        };
        unknown.admit(0, u64::MAX, a).unwrap();
    }

    #[test]
    fn the_reserve_is_a_share_of_the_filesystem_at_most_1_gib() {
        let r = Reserve { percent: 5 };
        assert_eq!(r.bytes(16 << 20), (16 << 20) / 100 * 5);
        assert_eq!(r.bytes(1 << 40), RESERVE_MAX_BYTES);
        assert_eq!(Reserve { percent: 0 }.bytes(1 << 40), 0);
        assert_eq!(r.inodes(1000), 50);
    }
}
