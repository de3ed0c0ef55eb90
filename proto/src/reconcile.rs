//! `backup.reconcile`: parameters, plan and result.
//!
//! Reconcile compares the backup index with the archives under the backups root
//! and sorts what disagrees into four categories (SPEC §7):
//!
//! * **missing** — an entry whose archive is absent (and not yet marked so);
//! * **orphaned** — an archive no entry points at;
//! * **mismatched** — an archive that is present but whose entry does not say
//!   `available`, or whose size (or, with `verify`, checksum) differs;
//! * **missing sidecars** — an archive that is present without its `.sha256`
//!   sidecar.
//!
//! Each finding is a [`ReconcileItem`] saying why it was classified so and what
//! `apply` does (or did) about it.

use serde::{Deserialize, Serialize};

/// `backup.reconcile` parameters (flags of `abssctl backup reconcile`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileParams {
    /// `--instance`: only this instance's entries and archives.
    #[serde(default)]
    pub instance: Option<String>,
    /// `--apply`: write the fixes into the index (global lock, one atomic write).
    /// Without it reconcile changes nothing.
    #[serde(default)]
    pub apply: bool,
    /// `--adopt` (needs `apply`): give orphaned archives index entries.
    #[serde(default)]
    pub adopt: bool,
    /// `--verify`: also re-hash every present archive in scope.
    #[serde(default)]
    pub verify: bool,
    /// `--deep` (needs `verify`): also deep-verify each present archive.
    #[serde(default)]
    pub deep: bool,
    /// Return `{op_id}` at once.
    #[serde(default)]
    pub detach: bool,
    /// `--remote NAME`: compare the index with what remote `NAME` holds
    /// instead of the disk (see [`ReconcileResult::local_only`]). `verify`
    /// and `deep` do not apply; `adopt` adopts the remote-only backups'
    /// entries (status `missing`, their copy recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

impl ReconcileParams {
    /// Whether this run may change anything (and so needs an operator).
    pub fn mutates(&self) -> bool {
        self.apply || self.adopt
    }
}

/// What reconcile looked at, and what it will read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcilePlan {
    /// The scanned directory.
    pub backups_root: String,
    /// The index compared against it.
    pub index: String,
    /// `--instance`, when given.
    pub instance: Option<String>,
    /// Archives found under the root (all instances).
    pub archives: u64,
    /// Index entries (all instances).
    pub index_entries: u64,
    /// `.partial` files of creates in progress (or interrupted), not archives.
    pub partial_files: u64,
    /// Bytes that will be read: archives to re-hash (`verify`) and orphans to
    /// adopt (`adopt`). Zero for a plain reconcile.
    pub read_bytes: u64,
    /// `--apply`.
    pub apply: bool,
    /// `--adopt`.
    pub adopt: bool,
    /// `--verify`.
    pub verify: bool,
    /// `--deep`: each re-hashed archive's content is checked too.
    #[serde(default)]
    pub deep: bool,
    /// Remote mode: the remote compared with the index. `backups_root` is
    /// then the bucket and prefix it lists (`s3://BUCKET/PREFIX`), `archives`
    /// the backups found there, `partial_files` 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// Why an orphan or a stray sidecar is not an [`ReconcileItem::status`] of an entry.
pub mod item_status {
    /// An archive with no index entry.
    pub const UNINDEXED: &str = "unindexed";
    /// A `.sha256` sidecar with neither archive nor index entry.
    pub const SIDECAR_ONLY: &str = "sidecar-only";
    /// Remote mode: a backup in the remote with no local index entry.
    pub const REMOTE_ONLY: &str = "remote-only";
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileItem {
    /// Backup id (for orphans: inferred from the file name, or the archive's top
    /// directory once adopted).
    pub id: String,
    /// Instance, when known.
    pub instance: Option<String>,
    /// Archive path (the sidecar's path for a stray sidecar).
    pub path: String,
    /// The entry's status in the index when reconcile looked (after `apply`, in
    /// the `applied` list: the status written); [`item_status`] for orphans and
    /// stray sidecars.
    pub status: String,
    /// Why it was classified so.
    pub reason: String,
    /// What `--apply` does about it (or did, when `resolved`); absent when
    /// reconcile cannot fix it and a person has to look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// This run fixed it: the next reconcile will not report it.
    #[serde(default)]
    pub resolved: bool,
    /// The archive's size in bytes, for orphans (as the Python tool's
    /// reconcile reports them); absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// `backup.reconcile` result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileResult {
    /// Entries whose archive is absent (and not yet marked `missing`).
    pub missing: Vec<ReconcileItem>,
    /// Archives without an entry.
    pub orphaned: Vec<ReconcileItem>,
    /// Archives whose entry disagrees with them.
    pub mismatched: Vec<ReconcileItem>,
    /// Present archives of entries in scope without their `.sha256` sidecar
    /// (each item names the archive). `apply` hashes each and writes its
    /// sidecar when the hash is the entry's checksum.
    #[serde(default)]
    pub missing_sidecars: Vec<ReconcileItem>,
    /// `.sha256` sidecars with neither an archive nor an entry: reported, not
    /// drift (nothing in the index is wrong), never deleted.
    #[serde(default)]
    pub stray_sidecars: Vec<ReconcileItem>,
    /// Index changes written (`--apply`), each with the status written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<ReconcileItem>>,
    /// Orphans given an index entry (`--adopt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<Vec<ReconcileItem>>,
    /// Remote mode: entries with their local archive available and no copy
    /// recorded in the remote. Informational (a push makes one); not counted
    /// in `unresolved`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_only: Vec<ReconcileItem>,
    /// Entries already marked `missing` whose archive is still absent: in sync,
    /// counted for the record.
    #[serde(default)]
    pub known_missing: u64,
    /// Index entries this run changed or added (`--apply`; the Python tool's
    /// count of the same name). Sidecars written are not counted.
    #[serde(default)]
    pub updates_applied: u64,
    /// Findings this run did not fix. The client exits 3 when it is not zero.
    pub unresolved: u64,
    /// Items left out of each list above that passed
    /// [`crate::limits::PLAN_ROWS`] (the first that many are listed);
    /// `unresolved` and `updates_applied` count them all.
    #[serde(default, skip_serializing_if = "Unlisted::is_empty")]
    pub unlisted: Unlisted,
}

/// How many items each list of a [`ReconcileResult`] left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlisted {
    /// Of `missing`.
    #[serde(default)]
    pub missing: u64,
    /// Of `orphaned`.
    #[serde(default)]
    pub orphaned: u64,
    /// Of `mismatched`.
    #[serde(default)]
    pub mismatched: u64,
    /// Of `missing_sidecars`.
    #[serde(default)]
    pub missing_sidecars: u64,
    /// Of `stray_sidecars`.
    #[serde(default)]
    pub stray_sidecars: u64,
    /// Of `applied`.
    #[serde(default)]
    pub applied: u64,
    /// Of `adopted`.
    #[serde(default)]
    pub adopted: u64,
    /// Of `local_only`.
    #[serde(default)]
    pub local_only: u64,
}

impl Unlisted {
    /// Nothing was left out.
    pub fn is_empty(&self) -> bool {
        *self == Unlisted::default()
    }
}

impl ReconcileResult {
    /// Whether nothing was found at all.
    pub fn in_sync(&self) -> bool {
        self.missing.is_empty()
            && self.orphaned.is_empty()
            && self.mismatched.is_empty()
            && self.missing_sidecars.is_empty()
    }

    /// Findings of each kind, listed or not: missing, orphaned, mismatched,
    /// missing sidecars.
    pub fn counts(&self) -> [u64; 4] {
        let u = &self.unlisted;
        [
            self.missing.len() as u64 + u.missing,
            self.orphaned.len() as u64 + u.orphaned,
            self.mismatched.len() as u64 + u.mismatched,
            self.missing_sidecars.len() as u64 + u.missing_sidecars,
        ]
    }

    /// Keep at most [`crate::limits::PLAN_ROWS`] items in each list (after
    /// [`ReconcileResult::count_unresolved`]) and count the rest in
    /// `unlisted`, so the answer stays small whatever the drift.
    pub fn cap(&mut self) {
        fn cut(list: &mut Vec<ReconcileItem>, left_out: &mut u64) {
            let rows = crate::limits::PLAN_ROWS;
            if list.len() > rows {
                *left_out += (list.len() - rows) as u64;
                list.truncate(rows);
            }
        }
        let u = &mut self.unlisted;
        cut(&mut self.missing, &mut u.missing);
        cut(&mut self.orphaned, &mut u.orphaned);
        cut(&mut self.mismatched, &mut u.mismatched);
        cut(&mut self.missing_sidecars, &mut u.missing_sidecars);
        cut(&mut self.stray_sidecars, &mut u.stray_sidecars);
        cut(&mut self.local_only, &mut u.local_only);
        if let Some(list) = self.applied.as_mut() {
            cut(list, &mut u.applied);
        }
        if let Some(list) = self.adopted.as_mut() {
            cut(list, &mut u.adopted);
        }
    }

    /// Count the findings not fixed (sets [`ReconcileResult::unresolved`]).
    pub fn count_unresolved(&mut self) {
        self.unresolved = [
            &self.missing,
            &self.orphaned,
            &self.mismatched,
            &self.missing_sidecars,
        ]
        .into_iter()
        .flatten()
        .filter(|i| !i.resolved)
        .count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(resolved: bool) -> ReconcileItem {
        ReconcileItem {
            id: "x".into(),
            instance: Some("a".into()),
            path: "/srv/backups/a/x.tar.zst".into(),
            status: "available".into(),
            reason: "archive not found".into(),
            action: Some("mark missing".into()),
            resolved,
            size_bytes: None,
        }
    }

    #[test]
    fn unresolved_counts_only_what_was_not_fixed() {
        let mut r = ReconcileResult {
            missing: vec![item(true), item(false)],
            mismatched: vec![item(false)],
            missing_sidecars: vec![item(false), item(true)],
            stray_sidecars: vec![item(false)],
            ..ReconcileResult::default()
        };
        r.count_unresolved();
        assert_eq!(r.unresolved, 3);
        assert!(!r.in_sync());
        assert!(ReconcileResult::default().in_sync());
    }

    #[test]
    fn json_has_the_three_categories_and_omits_unused_lists() {
        let v = serde_json::to_value(ReconcileResult::default()).unwrap();
        for key in [
            "missing",
            "orphaned",
            "mismatched",
            "missing_sidecars",
            "stray_sidecars",
        ] {
            assert!(v[key].as_array().unwrap().is_empty(), "{key}");
        }
        assert!(v.get("applied").is_none());
        assert!(v.get("adopted").is_none());
        let bad = serde_json::from_str::<ReconcileParams>(r#"{"aply":true}"#);
        assert!(bad.is_err());
    }
}
