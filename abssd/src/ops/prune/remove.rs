//! Removing backups a prune decided on: mark each index entry the way the
//! Python tool's `backup prune` does (`status: removed`, `removed_at`, every
//! other field kept), then delete its archive and `.sha256` sidecar.
//!
//! In batches of up to [`BATCH`] backups, each under one hold of the global
//! lock on one fresh read of the index:
//!
//! 1. re-check each: an entry now protected, read by a running restore or
//!    verify ([`crate::ops::claims`]), changed since it was planned (another
//!    path or checksum), already removed or gone, whose id another entry
//!    has, whose file another live entry names (by any path: compared by
//!    device and inode), or that the plan's policy keeps when asked again on
//!    this index ([`Recheck`]) is kept, with the reason;
//! 2. journal the batch's removals ([`Step::RemoveBackup`]), one write;
//! 3. mark the entries removed and write the index, once;
//! 4. delete each archive and sidecar, through a descriptor of their
//!    directory opened beneath the backups root without following symlinks
//!    (the index names the files, and whoever can write it must not make a
//!    root daemon delete anything else); a deletion that fails puts its
//!    entry back as it was;
//! 5. journal that they are done ([`Step::Removed`]), one write.
//!
//! The index is written before anything is deleted, so no `available` entry
//! ever points at a deleted archive; an entry marked removed whose archive is
//! still there is what a crash between 3 and 4 leaves, and [`recover`]
//! deletes it at start-up.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use abssd_proto::{Command, Phase, status};
use rustix::fs::{AtFlags, FileType, StatxFlags};
use serde::Serialize;

use crate::archive;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::index::Index;
use crate::journal::{Journal, Record, Step};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};

/// One backup to remove, as the plan saw it: removal re-checks the entry
/// against it and keeps a backup that changed since.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    /// Backup id.
    pub id: String,
    /// Its instance (for reports).
    pub instance: String,
    /// The archive path the plan saw.
    pub path: String,
    /// The sha256 digest the plan saw, if any.
    pub sha256: Option<String>,
}

impl Removal {
    /// The removal of `entry` as it is now.
    pub fn of(entry: &abssd_proto::BackupEntry) -> Removal {
        Removal {
            id: entry.id.clone(),
            instance: entry.instance.clone(),
            path: entry.path.clone(),
            sha256: entry.sha256().map(str::to_owned),
        }
    }
}

pub use abssd_proto::KeptReason;

/// What became of one planned removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The entry says removed and the files are gone.
    Removed {
        /// The entry's `removed_at`.
        removed_at: String,
        /// Bytes the archive and sidecar took.
        bytes: u64,
    },
    /// Nothing was changed for it.
    Kept {
        /// Why.
        reason: KeptReason,
        /// For people.
        detail: String,
    },
}

/// One planned removal and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Removed {
    /// Backup id.
    pub id: String,
    /// Its instance.
    pub instance: String,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Removals per hold of the global lock. Each batch reads and writes the
/// index once and the journal twice, whatever its size (a removal at a time
/// rewrote a 6 MB index 8,800 times for the bench's prune); other operations
/// get the lock between batches.
const BATCH: usize = 256;

/// Asked under the global lock, on the fresh index of each batch: the ids of
/// the backups the confirmed plan's policy (same rules, same clock) removes
/// now. A backup it keeps now is kept: the index changed since the plan in a
/// way the policy cares about (a backup found corrupt, so an older verified
/// one is the newest good one again).
pub type Recheck = Arc<dyn Fn(&Index) -> Result<HashSet<String>> + Send + Sync>;

/// Remove `removals` in order (see the module doc), one `remove:<id>` phase
/// each, in batches of [`BATCH`]. A removal kept for a reason does not stop
/// the others; an error reading or writing the index or the journal does.
pub async fn remove(
    ctx: &Ctx,
    removals: Vec<Removal>,
    recheck: Recheck,
    progress: &Reporter,
) -> Result<Vec<Removed>> {
    let layout = &ctx.config.layout;
    let record = Record::new(
        progress.op_id(),
        Command::BackupPrune,
        String::new(),
        String::new(),
    );
    let state_dir = layout.state_dir.clone();
    let mut journal =
        tokio::task::spawn_blocking(move || Journal::create(&state_dir, record)).await??;
    let mut out = Vec::with_capacity(removals.len());
    for batch in removals.chunks(BATCH) {
        let _global = match ctx.locks.acquire(true, &[], progress).await {
            Ok(held) => held,
            Err(e) => return Err(abandon(ctx, journal, e, progress).await),
        };
        // Taken before the index is read: from here no restore or verify of
        // these backups can start, and one running now keeps its backup.
        let mut claims = Vec::with_capacity(batch.len());
        let mut todo = Vec::with_capacity(batch.len());
        let mut busy = Vec::new();
        for removal in batch {
            match ctx.in_use.begin_removal(&removal.id) {
                Some(claim) => {
                    claims.push(claim);
                    todo.push(removal.clone());
                }
                None => busy.push(kept(
                    removal,
                    KeptReason::InUse,
                    "a running restore or verify reads it".into(),
                )),
            }
        }
        let (file, root) = (layout.index_file.clone(), layout.backups_root.clone());
        let recheck = Arc::clone(&recheck);
        let (j, done) = tokio::task::spawn_blocking(move || {
            let done = remove_batch(&file, &root, &mut journal, &todo, &*recheck);
            (journal, done)
        })
        .await?;
        journal = j;
        drop(claims);
        let mut done = match done {
            Ok(done) => done.into_iter().peekable(),
            Err(e) => return Err(abandon(ctx, journal, e, progress).await),
        };
        let mut busy = busy.into_iter().peekable();
        // In the plan's order.
        for removal in batch {
            let next = if busy.peek().is_some_and(|b| b.id == removal.id) {
                busy.next()
            } else {
                done.next()
            };
            if let Some(removed) = next {
                progress.phase(Phase::Remove(removed.id.clone()));
                report(progress, &removed);
                out.push(removed);
            }
        }
    }
    tokio::task::spawn_blocking(move || journal.close()).await??;
    Ok(out)
}

/// What became of one removal, as events.
fn report(progress: &Reporter, removed: &Removed) {
    match &removed.outcome {
        Outcome::Removed { bytes, .. } => {
            progress.emit(abssd_proto::EventKind::Progress {
                phase: Phase::Remove(removed.id.clone()),
                done: *bytes,
                total: *bytes,
            });
            progress.changed(&removed.id);
            progress.info(format!("removed backup {} ({bytes} bytes)", removed.id));
        }
        Outcome::Kept { detail, .. } => {
            progress.info(format!("kept backup {}: {detail}", removed.id));
        }
    }
}

/// A removal failed with `error` (reading or writing the index or the
/// journal): finish now what [`recover`] would at start-up (a backup whose
/// entry says removed loses its files) and close the journal; if even that
/// fails, the journal stays for start-up recovery. The caller holds the
/// global lock when a removal was under way.
async fn abandon(ctx: &Ctx, journal: Journal, error: Error, progress: &Reporter) -> Error {
    let layout = &ctx.config.layout;
    let (file, root) = (layout.index_file.clone(), layout.backups_root.clone());
    let finished = tokio::task::spawn_blocking(move || {
        let recovered = recover(&file, &root, journal.record())?;
        if recovered.left.is_empty() {
            journal.close()?;
        }
        Ok::<_, Error>(recovered)
    })
    .await;
    match finished {
        Ok(Ok(Recovered { done, left })) => {
            done.into_iter().for_each(|l| progress.info(l));
            left.into_iter().for_each(|l| progress.warn(l));
        }
        Ok(Err(e)) => progress.warn(format!(
            "could not finish the interrupted removal ({e}); abssd finishes it at its next start"
        )),
        Err(e) => progress.warn(format!(
            "could not finish the interrupted removal ({e}); abssd finishes it at its next start"
        )),
    }
    error
}

/// The bytes `items` freed (what an operation's result and its
/// operations-log line report).
pub fn removed_bytes(items: &[Removed]) -> u64 {
    items
        .iter()
        .map(|r| match r.outcome {
            Outcome::Removed { bytes, .. } => bytes,
            Outcome::Kept { .. } => 0,
        })
        .sum()
}

fn kept(removal: &Removal, reason: KeptReason, detail: String) -> Removed {
    Removed {
        id: removal.id.clone(),
        instance: removal.instance.clone(),
        outcome: Outcome::Kept { reason, detail },
    }
}

/// Steps 1–5 for one batch: one read of the index, one journal write of
/// every removal, one index write marking them all, the deletions, one
/// journal write saying they are done. The caller holds the global lock and
/// the backups' removal claims. Blocking. Results in the batch's order.
fn remove_batch(
    file: &Path,
    root: &Path,
    journal: &mut Journal,
    batch: &[Removal],
    recheck: &(dyn Fn(&Index) -> Result<HashSet<String>> + Send + Sync),
) -> Result<Vec<Removed>> {
    let mut index = Index::load(file)?;
    let still = recheck(&index)?;
    let removing: HashSet<&str> = batch.iter().map(|r| r.id.as_str()).collect();
    let shared = identities(&index, &removing);
    let mut results: Vec<Option<Removed>> = vec![None; batch.len()];
    let mut going: Vec<(usize, Files)> = Vec::new();
    for (i, removal) in batch.iter().enumerate() {
        match check(&index, root, removal, &still, &shared) {
            Ok(files) => going.push((i, files)),
            Err((reason, detail)) => results[i] = Some(kept(removal, reason, detail)),
        }
    }
    if !going.is_empty() {
        journal.begin_all(going.iter().map(|(i, _)| Step::RemoveBackup {
            id: batch[*i].id.clone(),
            archive: PathBuf::from(&batch[*i].path),
        }))?;
        crash_point!("prune::journaled");
        let removed_at = fsutil::now_utc();
        let mut before = Vec::with_capacity(going.len());
        for (i, _) in &going {
            if let Some(entry) = index.get_mut(&batch[*i].id) {
                before.push(entry.clone());
                entry.status = status::REMOVED.to_owned();
                entry
                    .extra
                    .insert("removed_at".to_owned(), removed_at.clone().into());
            }
        }
        index.save(file)?;
        crash_point!("prune::marked");
        let mut failed = Vec::new();
        for (i, files) in &going {
            let removal = &batch[*i];
            let outcome = match files.delete_archive() {
                Ok(bytes) => {
                    crash_point!("prune::archive-deleted");
                    // The archive is gone: the entry rightly says removed
                    // whatever becomes of the sidecar; a sidecar left is a
                    // stray for reconcile to list.
                    let bytes = bytes + files.delete_sidecar().unwrap_or(0);
                    Outcome::Removed {
                        removed_at: removed_at.clone(),
                        bytes,
                    }
                }
                Err(e) => {
                    failed.extend(before.iter().find(|b| b.id == removal.id).cloned());
                    Outcome::Kept {
                        reason: KeptReason::Failed,
                        detail: format!("{e}; its entry is as it was"),
                    }
                }
            };
            results[*i] = Some(Removed {
                id: removal.id.clone(),
                instance: removal.instance.clone(),
                outcome,
            });
        }
        // Each directory once (a batch is mostly one instance's).
        let mut synced = HashSet::new();
        for (_, files) in &going {
            if synced.insert(files.dir_path.clone()) {
                files.sync()?;
            }
        }
        // Still there: their entries say so again, as they were.
        if !failed.is_empty() {
            put_back(file, failed)?;
        }
        journal.begin_all(going.iter().map(|(i, _)| Step::Removed {
            id: batch[*i].id.clone(),
        }))?;
    }
    Ok(results.into_iter().flatten().collect())
}

/// Step 1 for one backup of a batch: its files, opened, when it may go; else
/// why it is kept.
fn check(
    index: &Index,
    root: &Path,
    removal: &Removal,
    still: &HashSet<String>,
    shared: &HashMap<(u64, u64), String>,
) -> std::result::Result<Files, (KeptReason, String)> {
    if let Some(other) = sharer(index, &removal.id, Path::new(&removal.path)) {
        return Err((
            KeptReason::Unsafe,
            format!("its archive is also backup {other}'s, which is not removed; left alone"),
        ));
    }
    let mut same_id = index.backups.iter().filter(|e| e.id == removal.id);
    let (Some(entry), None) = (same_id.next(), same_id.next()) else {
        return Err(match index.get(&removal.id) {
            None => (KeptReason::Gone, "it is no longer in the index".into()),
            Some(_) => (
                KeptReason::Unsafe,
                "another index entry has the same id; left alone".into(),
            ),
        });
    };
    if entry.status == status::REMOVED {
        return Err((
            KeptReason::AlreadyRemoved,
            "another prune removed it meanwhile".into(),
        ));
    }
    if entry.protected {
        return Err((
            KeptReason::Protected,
            "it is protected (abssctl backup unprotect ID lifts that)".into(),
        ));
    }
    if entry.path != removal.path || entry.sha256() != removal.sha256.as_deref() {
        return Err((
            KeptReason::Changed,
            "its archive path or checksum changed since the plan; prune again to decide on it"
                .into(),
        ));
    }
    if !still.contains(&removal.id) {
        return Err((
            KeptReason::Changed,
            "the policy keeps it now (the index changed since the plan: a backup was found \
             bad, made or protected); prune again to see why"
                .into(),
        ));
    }
    let files = match Files::open(root, Path::new(&entry.path)) {
        Ok(f) => f,
        Err(Unopened::Refused(why) | Unopened::Root(why)) => {
            return Err((KeptReason::Unsafe, why));
        }
    };
    if let Some(other) = files.identity().and_then(|id| shared.get(&id)) {
        return Err((
            KeptReason::Unsafe,
            format!(
                "its archive is the very file backup {other}'s entry names (another path to \
                 it); left alone"
            ),
        ));
    }
    Ok(files)
}

/// The file identity (device, inode) of every archive a live entry names,
/// but those being removed: a removal whose file is one of them would take
/// another backup's archive, however its path is spelt (a renamed or
/// symlinked directory).
fn identities(index: &Index, removing: &HashSet<&str>) -> HashMap<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    index
        .backups
        .iter()
        .filter(|e| e.status != status::REMOVED && !removing.contains(e.id.as_str()))
        .filter_map(|e| {
            let meta = std::fs::metadata(&e.path).ok()?;
            Some(((meta.dev(), meta.ino()), e.id.clone()))
        })
        .collect()
}

/// Another entry than `id`'s, not removed, whose archive is `archive`:
/// deleting it would leave that entry pointing at nothing (an index the
/// Python tool or a hand edit wrote can name one file twice).
fn sharer<'a>(index: &'a Index, id: &str, archive: &Path) -> Option<&'a str> {
    index
        .backups
        .iter()
        .find(|e| e.id != id && e.status != status::REMOVED && Path::new(&e.path) == archive)
        .map(|e| e.id.as_str())
}

/// Write each of `before` back over its entry (failed deletions).
fn put_back(file: &Path, before: Vec<abssd_proto::BackupEntry>) -> Result<()> {
    let mut index = Index::load(file)?;
    for b in before {
        if let Some(e) = index.get_mut(&b.id) {
            *e = b;
        }
    }
    index.save(file)
}

/// Why [`Files::open`] did not open an archive's directory, for people.
enum Unopened {
    /// The archive is not where a removal may delete (outside the root, a
    /// symlink on the way, not named like an archive): left alone for good.
    Refused(String),
    /// The backups root itself cannot be opened now (not mounted yet?).
    Root(String),
}

/// An archive and its sidecar, by their directory's descriptor.
struct Files {
    /// The directory, opened beneath the backups root.
    dir: OwnedFd,
    /// Where it is, for messages.
    dir_path: PathBuf,
    archive: OsString,
    sidecar: OsString,
}

impl Files {
    /// Open the directory of `archive`, which must lie beneath `root` with no
    /// symlink on the way; `Err` says why not, for people.
    fn open(root: &Path, archive: &Path) -> std::result::Result<Files, Unopened> {
        let outside = || {
            format!(
                "its archive {} is not a file beneath the backups root {}; left alone",
                archive.display(),
                root.display()
            )
        };
        let rel = archive
            .strip_prefix(root)
            .map_err(|_| Unopened::Refused(outside()))?;
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Unopened::Refused(outside()));
        }
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            return Err(Unopened::Refused(outside()));
        };
        // Only an archive by its name (what create writes and reconcile
        // adopts): an entry naming the index (`backups.json` beside the
        // archives), a sidecar or anything else under the root is not one.
        if name
            .to_str()
            .and_then(abssd_proto::Algorithm::from_file_name)
            .is_none()
        {
            return Err(Unopened::Refused(format!(
                "its archive {} is not named like one (*.tar, *.tar.gz, *.tar.zst); left alone",
                archive.display()
            )));
        }
        let dir = fsutil::open_beneath(root, parent).map_err(|e| match e {
            fsutil::Beneath::Root(e) => Unopened::Root(format!(
                "cannot open the backups root {}: {e}",
                root.display()
            )),
            fsutil::Beneath::Below(e) => Unopened::Refused(format!("{}: {e}", outside())),
        })?;
        let sidecar = archive::sidecar::path(archive);
        Ok(Files {
            dir,
            dir_path: root.join(parent),
            archive: name.to_owned(),
            sidecar: sidecar.file_name().unwrap_or_default().to_owned(),
        })
    }

    /// Delete the archive; its size, 0 when it was gone already.
    fn delete_archive(&self) -> Result<u64> {
        self.delete(&self.archive)
    }

    /// Delete the sidecar; its size, 0 when there was none.
    fn delete_sidecar(&self) -> Result<u64> {
        self.delete(&self.sidecar)
    }

    /// Unlink a regular file `name` of the directory (never anything else:
    /// `unlinkat` removes a symlink itself, but a symlink or directory there
    /// is not what the index names, so it is refused).
    fn delete(&self, name: &OsString) -> Result<u64> {
        let path = self.dir_path.join(name);
        let st = match rustix::fs::statx(
            &self.dir,
            name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::TYPE | StatxFlags::SIZE,
        ) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(0),
            Err(e) => return Err(std::io::Error::from(e)).at("reading", &path),
        };
        if FileType::from_raw_mode(st.stx_mode.into()) != FileType::RegularFile {
            return Err(Error::Environment(format!(
                "{} is not a regular file; not deleted",
                path.display()
            )));
        }
        match rustix::fs::unlinkat(&self.dir, name.as_os_str(), AtFlags::empty()) {
            Ok(()) => Ok(st.stx_size),
            Err(rustix::io::Errno::NOENT) => Ok(0),
            Err(e) => Err(std::io::Error::from(e)).at("deleting", &path),
        }
    }

    /// The archive's identity (device, inode), when it is there.
    fn identity(&self) -> Option<(u64, u64)> {
        let st = rustix::fs::statat(
            &self.dir,
            self.archive.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ok()?;
        Some((st.st_dev, st.st_ino))
    }

    /// Make the deletions durable.
    fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.dir)
            .map_err(std::io::Error::from)
            .at("syncing", &self.dir_path)
    }
}

/// Start-up recovery of a prune the daemon stopped during: every removal
/// journaled and not done is completed when its entry says removed (the
/// archive and sidecar, if still there, are deleted) and left alone when it
/// does not (the crash came before the entry was marked: nothing was
/// deleted). One removal that cannot be finished (its directory swapped, a
/// read-only disk) does not stop the others: it is reported in
/// [`Recovered::left`], and the journal must then stay for the next start.
/// The caller holds the global lock. Blocking. Fails only when the index
/// cannot be read (nothing was done then).
pub fn recover(index_file: &Path, backups_root: &Path, record: &Record) -> Result<Recovered> {
    let done = record.finished_removals();
    let pending: Vec<(&String, &PathBuf)> = record
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::RemoveBackup { id, archive } if !done.contains(id.as_str()) => {
                Some((id, archive))
            }
            _ => None,
        })
        .collect();
    // Nothing under way: the index need not even be readable.
    if pending.is_empty() {
        return Ok(Recovered::default());
    }
    let index = Index::load(index_file)?;
    let mut out = Recovered::default();
    let lines = &mut out.done;
    for (id, archive) in pending {
        let marked = index
            .get(id)
            .is_some_and(|e| e.status == status::REMOVED && Path::new(&e.path) == archive);
        if !marked {
            lines.push(format!(
                "backup {id} was not removed (the daemon stopped before its entry was marked); it is kept"
            ));
            continue;
        }
        if let Some(other) = sharer(&index, id, archive) {
            lines.push(format!(
                "backup {id}'s archive {} is also backup {other}'s, which is not removed; left alone",
                archive.display()
            ));
            continue;
        }
        let files = match Files::open(backups_root, archive) {
            Ok(files) => files,
            Err(Unopened::Refused(why)) => {
                lines.push(format!("backup {id}: {why}"));
                continue;
            }
            Err(Unopened::Root(why)) => {
                out.left.push(format!(
                    "backup {id}'s entry says removed, but {why}; abssd tries again at its next start"
                ));
                continue;
            }
        };
        let deleted = (|| {
            let bytes = files.delete_archive()? + files.delete_sidecar()?;
            files.sync()?;
            Ok::<_, Error>(bytes)
        })();
        match deleted {
            Ok(bytes) => lines.push(format!(
                "finished removing backup {id}: its entry said removed; deleted {bytes} bytes left of {}",
                archive.display()
            )),
            Err(e) => out.left.push(format!(
                "backup {id}'s entry says removed, but its files could not be deleted ({e}); \
                 abssd tries again at its next start"
            )),
        }
    }
    Ok(out)
}

/// What [`recover`] did, and what it could not do; each line for people.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Removals finished, and removals left alone on purpose.
    pub done: Vec<String>,
    /// Removals that failed: their journal must stay.
    pub left: Vec<String>,
}

#[cfg(test)]
mod tests {
    use abssd_proto::BackupEntry;

    use super::*;
    use crate::ops::testkit::Host;

    fn index(host: &Host) -> Index {
        Index::load(&host.cfg().layout.index_file).unwrap()
    }

    /// A policy that removes every backup of the index.
    fn every() -> Recheck {
        Arc::new(|index: &Index| Ok(index.backups.iter().map(|e| e.id.clone()).collect()))
    }

    fn entry(host: &Host, id: &str) -> BackupEntry {
        index(host).get(id).unwrap().clone()
    }

    fn sidecar(e: &BackupEntry) -> PathBuf {
        archive::sidecar::path(Path::new(&e.path))
    }

    #[tokio::test]
    async fn a_removal_marks_the_entry_as_the_python_tool_does_and_deletes_both_files() {
        let host = Host::new();
        let (old, new) = (host.backup().await, host.backup().await);
        let before = entry(&host, &old);
        let size = before.size_bytes.unwrap();
        let sidecar_size = std::fs::metadata(sidecar(&before)).unwrap().len();
        let (recorder, sink) = host.progress();
        let out = remove(&host.ctx, vec![Removal::of(&before)], every(), &sink)
            .await
            .unwrap();
        let after = entry(&host, &old);
        let Outcome::Removed { removed_at, bytes } = &out[0].outcome else {
            panic!("{out:?}");
        };
        assert_eq!(*bytes, size + sidecar_size);
        assert_eq!(removed_bytes(&out), size + sidecar_size);
        assert_eq!(
            recorder.progress_of(&Phase::Remove(old.clone())),
            vec![(*bytes, *bytes)]
        );
        assert_eq!(after.status, status::REMOVED);
        assert_eq!(after.extra["removed_at"], removed_at.as_str());
        // Every other field as it was.
        let mut expected = before.clone();
        expected.status = status::REMOVED.into();
        expected
            .extra
            .insert("removed_at".into(), removed_at.clone().into());
        assert_eq!(after, expected);
        assert!(!Path::new(&before.path).exists());
        assert!(!sidecar(&before).exists());
        // The other backup is untouched, and nothing is left to recover.
        let other = entry(&host, &new);
        assert_eq!(other.status, status::AVAILABLE);
        assert!(Path::new(&other.path).exists());
        assert!(host.journals().is_empty());
        assert_eq!(recorder.phases(), vec![Phase::Remove(old.clone())]);
        assert_eq!(recorder.changed_backups(), vec![old]);
    }

    #[tokio::test]
    async fn protected_read_changed_and_already_removed_backups_are_kept_with_the_reason() {
        let host = Host::new();
        let ids = [
            host.backup().await,
            host.backup().await,
            host.backup().await,
            host.backup().await,
        ];
        let planned: Vec<Removal> = ids
            .iter()
            .map(|id| Removal::of(&entry(&host, id)))
            .collect();
        // Since the plan: one protected, one read by a restore, one re-pointed,
        // one removed by the Python tool.
        let file = host.cfg().layout.index_file.clone();
        let mut idx = index(&host);
        idx.get_mut(&ids[0]).unwrap().protected = true;
        idx.get_mut(&ids[2])
            .unwrap()
            .checksum
            .as_mut()
            .unwrap()
            .value = "00".repeat(32);
        let gone = idx.get_mut(&ids[3]).unwrap();
        gone.status = status::REMOVED.into();
        idx.save(&file).unwrap();
        let before = std::fs::read(&file).unwrap();
        let reading = host.ctx.in_use.claim(&ids[1]).unwrap();
        let (recorder, sink) = host.progress();
        let out = remove(&host.ctx, planned, every(), &sink).await.unwrap();
        drop(reading);
        let reasons: Vec<_> = out
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Kept { reason, .. } => *reason,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                KeptReason::Protected,
                KeptReason::InUse,
                KeptReason::Changed,
                KeptReason::AlreadyRemoved
            ]
        );
        assert_eq!(std::fs::read(&file).unwrap(), before, "index unchanged");
        for id in &ids[..3] {
            assert!(Path::new(&entry(&host, id).path).exists(), "{id}");
        }
        assert!(recorder.changed_backups().is_empty());
        assert!(host.journals().is_empty());
    }

    #[tokio::test]
    async fn an_archive_outside_the_backups_root_or_through_a_symlink_is_left_alone() {
        let host = Host::new();
        let id = host.backup().await;
        let root = host.cfg().layout.backups_root.clone();
        let e = entry(&host, &id);
        // A file elsewhere that an edited index names.
        let victim = host.cfg().layout.state_dir.join("victim.tar.zst");
        std::fs::write(&victim, b"keep me").unwrap();
        // And a directory under the root that is a symlink to it.
        let linked = root.join("linked");
        std::os::unix::fs::symlink(victim.parent().unwrap(), &linked).unwrap();
        let file = host.cfg().layout.index_file.clone();
        for path in [
            victim.clone(),
            linked.join("victim.tar.zst"),
            root.join("a/../../state/victim.tar.zst"),
        ] {
            let mut idx = index(&host);
            idx.get_mut(&id).unwrap().path = path.display().to_string();
            idx.save(&file).unwrap();
            let (_, sink) = host.progress();
            let planned = Removal::of(&entry(&host, &id));
            let out = remove(&host.ctx, vec![planned], every(), &sink)
                .await
                .unwrap();
            assert!(
                matches!(
                    out[0].outcome,
                    Outcome::Kept {
                        reason: KeptReason::Unsafe,
                        ..
                    }
                ),
                "{path:?}: {out:?}"
            );
            assert_eq!(entry(&host, &id).status, status::AVAILABLE);
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        }
        assert!(Path::new(&e.path).exists());
    }

    /// Beneath the root and no symlink on the way, yet not this backup's to
    /// delete: the index itself (beside the archives by default), another
    /// backup's sidecar, another live backup's archive. Each is kept whole.
    #[tokio::test]
    async fn an_entry_naming_the_index_a_sidecar_or_another_backups_archive_deletes_nothing() {
        let host = Host::new();
        let (id, other) = (host.backup().await, host.backup().await);
        let layout = &host.cfg().layout;
        let file = layout.index_file.clone();
        assert!(file.starts_with(&layout.backups_root), "{file:?}");
        let theirs = entry(&host, &other);
        for path in [
            file.display().to_string(),
            sidecar(&theirs).display().to_string(),
            theirs.path.clone(),
        ] {
            let mut idx = index(&host);
            idx.get_mut(&id).unwrap().path = path.clone();
            idx.save(&file).unwrap();
            let planned = Removal::of(&entry(&host, &id));
            let (_, sink) = host.progress();
            let out = remove(&host.ctx, vec![planned], every(), &sink)
                .await
                .unwrap();
            assert!(
                matches!(
                    out[0].outcome,
                    Outcome::Kept {
                        reason: KeptReason::Unsafe,
                        ..
                    }
                ),
                "{path}: {out:?}"
            );
            assert!(Path::new(&path).is_file(), "{path} deleted");
            assert_eq!(entry(&host, &id).status, status::AVAILABLE, "{path}");
            assert!(host.journals().is_empty());
        }
        assert!(Path::new(&theirs.path).is_file());
        assert!(sidecar(&theirs).is_file());
        assert_eq!(entry(&host, &other), theirs);
    }

    /// Recovery trusts the journal no more than a removal trusts the index: a
    /// marked entry whose archive another live entry names is left alone.
    #[tokio::test]
    async fn recovery_leaves_an_archive_another_live_entry_names() {
        let host = Host::new();
        let (id, other) = (host.backup().await, host.backup().await);
        let layout = &host.cfg().layout;
        let theirs = entry(&host, &other);
        let mut idx = index(&host);
        let e = idx.get_mut(&id).unwrap();
        e.status = status::REMOVED.into();
        e.path = theirs.path.clone();
        idx.save(&layout.index_file).unwrap();
        let lines = recover(
            &layout.index_file,
            &layout.backups_root,
            &journal_of(&id, &theirs.path),
        )
        .unwrap()
        .done;
        assert!(lines[0].contains("left alone"), "{lines:?}");
        assert!(Path::new(&theirs.path).is_file());
        assert!(sidecar(&theirs).is_file());
    }

    #[tokio::test]
    async fn an_unreadable_index_fails_the_removal_and_leaves_no_journal() {
        let host = Host::new();
        let id = host.backup().await;
        let e = entry(&host, &id);
        let file = host.cfg().layout.index_file.clone();
        std::fs::write(&file, b"{\"backups\": [").unwrap();
        let (_, sink) = host.progress();
        let err = remove(&host.ctx, vec![Removal::of(&e)], every(), &sink)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Environment, "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"{\"backups\": [");
        assert!(Path::new(&e.path).exists());
        assert!(host.journals().is_empty());
    }

    #[tokio::test]
    async fn an_archive_that_cannot_be_deleted_gets_its_entry_back() {
        let host = Host::new();
        let id = host.backup().await;
        let e = entry(&host, &id);
        // A directory where the archive was: not what the index names.
        std::fs::remove_file(&e.path).unwrap();
        std::fs::create_dir(&e.path).unwrap();
        let (_, sink) = host.progress();
        let out = remove(&host.ctx, vec![Removal::of(&e)], every(), &sink)
            .await
            .unwrap();
        assert!(
            matches!(
                out[0].outcome,
                Outcome::Kept {
                    reason: KeptReason::Failed,
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(entry(&host, &id), e);
        assert!(Path::new(&e.path).is_dir());
        assert!(host.journals().is_empty());
    }

    fn journal_of(id: &str, archive: &str) -> Record {
        Record {
            version: 1,
            op_id: "op".into(),
            command: Command::BackupPrune,
            instance: String::new(),
            backup_id: String::new(),
            started_at: "2026-01-01T00:00:00Z".into(),
            unit_was_active: None,
            steps: vec![Step::RemoveBackup {
                id: id.into(),
                archive: archive.into(),
            }],
            outcome: None,
        }
    }

    /// One removal that cannot be finished does not stop the others, and
    /// says so (the journal must then stay); one whose archive is no longer
    /// where a removal may delete is left alone for good.
    #[tokio::test]
    async fn recovery_finishes_every_removal_it_can_and_reports_the_rest() {
        let host = Host::new();
        let ids = [
            host.backup().await,
            host.backup().await,
            host.backup().await,
        ];
        let layout = &host.cfg().layout;
        let entries: Vec<BackupEntry> = ids.iter().map(|id| entry(&host, id)).collect();
        let mut idx = index(&host);
        for id in &ids {
            idx.get_mut(id).unwrap().status = status::REMOVED.into();
        }
        // The first's archive is now a directory (its deletion fails: EISDIR).
        let stuck = Path::new(&entries[0].path);
        std::fs::remove_file(stuck).unwrap();
        std::fs::create_dir(stuck).unwrap();
        std::fs::write(stuck.join("x"), "x").unwrap();
        // The second's entry now names an archive outside the backups root.
        let elsewhere = layout.state_dir.join("elsewhere.tar.zst");
        std::fs::copy(&entries[1].path, &elsewhere).unwrap();
        idx.get_mut(&ids[1]).unwrap().path = elsewhere.display().to_string();
        idx.save(&layout.index_file).unwrap();
        let mut journal = journal_of(&ids[0], &entries[0].path);
        journal.steps.push(Step::RemoveBackup {
            id: ids[1].clone(),
            archive: elsewhere.clone(),
        });
        journal.steps.push(Step::RemoveBackup {
            id: ids[2].clone(),
            archive: entries[2].path.clone().into(),
        });

        let out = recover(&layout.index_file, &layout.backups_root, &journal).unwrap();
        assert_eq!(out.left.len(), 1, "{out:?}");
        assert!(out.left[0].contains(&ids[0]), "{out:?}");
        assert!(stuck.is_dir());
        assert_eq!(out.done.len(), 2, "{out:?}");
        assert!(out.done[0].contains("left alone"), "{out:?}");
        assert!(elsewhere.is_file());
        assert!(out.done[1].contains("finished removing"), "{out:?}");
        assert!(!Path::new(&entries[2].path).exists());
        assert!(!sidecar(&entries[2]).exists());
    }

    /// Asked again on the fresh index, a policy that keeps a backup now
    /// keeps it, whatever the plan said.
    #[tokio::test]
    async fn a_backup_the_policy_keeps_by_the_time_of_its_removal_is_kept() {
        let host = Host::new();
        let id = host.backup().await;
        let e = entry(&host, &id);
        let (_rec, sink) = host.progress();
        let none: Recheck = Arc::new(|_: &Index| Ok(HashSet::new()));
        let out = remove(&host.ctx, vec![Removal::of(&e)], none, &sink)
            .await
            .unwrap();
        assert!(
            matches!(&out[0].outcome, Outcome::Kept { reason: KeptReason::Changed, detail } if detail.contains("policy keeps it now")),
            "{out:?}"
        );
        assert_eq!(entry(&host, &id), e);
        assert!(Path::new(&e.path).is_file());
    }

    /// Another live entry naming the same file by another path (a directory
    /// symlinked or renamed by whoever can write the backups root) keeps it.
    #[tokio::test]
    async fn an_archive_another_entry_names_by_another_path_is_kept() {
        let host = Host::new();
        let (id, other) = (host.backup().await, host.backup().await);
        let layout = &host.cfg().layout;
        let e = entry(&host, &id);
        let archive = Path::new(&e.path);
        let alias = layout.backups_root.join("alias");
        std::os::unix::fs::symlink(archive.parent().unwrap(), &alias).unwrap();
        let mut idx = index(&host);
        idx.get_mut(&other).unwrap().path = alias
            .join(archive.file_name().unwrap())
            .display()
            .to_string();
        idx.save(&layout.index_file).unwrap();
        let (_rec, sink) = host.progress();
        let out = remove(&host.ctx, vec![Removal::of(&e)], every(), &sink)
            .await
            .unwrap();
        assert!(
            matches!(&out[0].outcome, Outcome::Kept { reason: KeptReason::Unsafe, detail } if detail.contains(&other)),
            "{out:?}"
        );
        assert!(archive.is_file());
        assert_eq!(entry(&host, &id).status, status::AVAILABLE);
    }

    #[tokio::test]
    async fn recovery_deletes_what_a_marked_entry_left_and_keeps_an_unmarked_one() {
        let host = Host::new();
        let (marked, unmarked) = (host.backup().await, host.backup().await);
        let layout = &host.cfg().layout;
        let (m, u) = (entry(&host, &marked), entry(&host, &unmarked));
        // A crash after the entry was marked, before the files were deleted.
        let mut idx = index(&host);
        idx.get_mut(&marked).unwrap().status = status::REMOVED.into();
        idx.save(&layout.index_file).unwrap();
        let lines = recover(
            &layout.index_file,
            &layout.backups_root,
            &journal_of(&marked, &m.path),
        )
        .unwrap()
        .done;
        assert!(lines[0].contains("finished removing"), "{lines:?}");
        assert!(!Path::new(&m.path).exists());
        assert!(!sidecar(&m).exists());
        // Again (a crash during recovery): nothing left to do, no error.
        recover(
            &layout.index_file,
            &layout.backups_root,
            &journal_of(&marked, &m.path),
        )
        .unwrap();
        // A crash before the entry was marked: the backup stays whole.
        let lines = recover(
            &layout.index_file,
            &layout.backups_root,
            &journal_of(&unmarked, &u.path),
        )
        .unwrap()
        .done;
        assert!(lines[0].contains("kept"), "{lines:?}");
        assert!(Path::new(&u.path).exists());
        assert_eq!(entry(&host, &unmarked), u);
        // A removal journaled as done is not looked at again.
        let mut done = journal_of(&unmarked, &u.path);
        done.steps.push(Step::Removed {
            id: unmarked.clone(),
        });
        assert!(
            recover(&layout.index_file, &layout.backups_root, &done)
                .unwrap()
                .done
                .is_empty()
        );
    }
}
