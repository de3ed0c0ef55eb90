//! The write-ahead journal of destructive work: one file per operation under
//! `state_dir/journal/<op_id>.json`, rewritten atomically (temp file, fsync,
//! rename, fsync of the directory) *before* each step is carried out.
//!
//! Every [`Step`] carries what is needed to undo it, and every undo looks at the
//! filesystem rather than trusting that the step completed, so undoing a step that
//! was journaled but never happened (or already undone) is harmless. A failed
//! restore is rolled back from its journal; the same file is what start-up
//! recovery reads after a crash.

use std::path::{Path, PathBuf};

use abssd_proto::{Actor, Command};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil;

/// One destructive step, recorded before it is taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A create is about to write `partial`, rename it to `archive` and write
    /// `sidecar` (undo, when no index entry was written: remove all three).
    Archive {
        /// `<archive>.partial`.
        partial: PathBuf,
        /// The final archive path.
        archive: PathBuf,
        /// `<archive>.sha256`.
        sidecar: PathBuf,
    },
    /// A staging directory was created (undo: remove it).
    Staging {
        /// The directory.
        dir: PathBuf,
    },
    /// The unit was stopped (undo: start it again when it was running).
    StopUnit {
        /// Unit name.
        unit: String,
    },
    /// Live data renamed aside (undo: rename it back).
    MoveAside {
        /// The live directory.
        live: PathBuf,
        /// Where it went (`<live>.pre-restore-<ts>`).
        aside: PathBuf,
    },
    /// Staged data renamed into place (undo: rename it back into staging).
    PlaceData {
        /// The staged directory.
        from: PathBuf,
        /// The live directory.
        to: PathBuf,
    },
    /// A file or symlink replaced, created or removed: `path` is renamed to
    /// `backup` (when it existed), then `new` (prepared beside it, when given) is
    /// renamed to `path`. Undo: remove `new`, then put `backup` back or, when
    /// there was no previous file, remove `path`.
    Replace {
        /// The live file.
        path: PathBuf,
        /// Where the previous file is kept, when there was one.
        backup: Option<PathBuf>,
        /// The prepared replacement, when the step installs one.
        new: Option<PathBuf>,
    },
    /// systemd was told to reload its units (undo: reload again, after the
    /// files are back).
    DaemonReload,
    /// The registry entry of `instance` was rewritten (undo: write `before`
    /// back into the entry).
    Registry {
        /// Instance name.
        instance: String,
        /// The entry as it was (JSON form of the YAML mapping).
        before: serde_json::Value,
    },
    /// The unit was started (undo: stop it).
    StartUnit {
        /// Unit name.
        unit: String,
    },
    /// nginx was reloaded (undo: reload it again once the site is back).
    ReloadNginx,
    /// A prune is about to mark backup `id` removed in the index and delete
    /// `archive` and its sidecar. Never undone: start-up recovery finishes it
    /// when the entry says removed, and has nothing to do when it does not.
    RemoveBackup {
        /// Backup id.
        id: String,
        /// The archive its entry names.
        archive: PathBuf,
    },
    /// A prune is about to take the record of backup `id`'s copy in
    /// `remote` out of the index, then delete the copy's objects `keys`.
    /// Never undone: start-up recovery deletes the objects when the record
    /// is gone, and leaves them when it is still there.
    RemoveRemoteCopy {
        /// The remote's name.
        remote: String,
        /// Backup id.
        id: String,
        /// The copy's objects (archive, sidecar, entry).
        keys: Vec<String>,
    },
    /// The removal of backup `id` is over (removed, or its entry put back).
    Removed {
        /// Backup id.
        id: String,
    },
    /// A push is about to create the archive object `key` in remote
    /// `remote`, its sidecar beside it at `sidecar`; journaled again with
    /// `upload_id` once a multipart upload exists. Undo, when the index
    /// records no copy of the backup in `remote`: abort the upload, and
    /// delete the object when no sidecar is beside it (only a push puts a
    /// sidecar there, after the archive completed; an object that was in
    /// the way before the push began is never journaled).
    RemoteArchive {
        /// The remote's name (`remotes:` in abssd.yml).
        remote: String,
        /// The archive object's key.
        key: String,
        /// The sidecar object's key.
        sidecar: String,
        /// The multipart upload, once it exists.
        upload_id: Option<String>,
    },
    /// A pull is about to download into `temp` (in the archive's directory)
    /// and rename it to `archive` only if nothing is there. Undo: remove
    /// `temp`; an archive renamed into place is the checked copy and stays.
    Download {
        /// The temporary file (`.<archive name>.pull-<op id>`).
        temp: PathBuf,
        /// The archive the index entry names.
        archive: PathBuf,
    },
    /// Past this point the operation is complete: recovery finishes the clean-up
    /// instead of rolling back.
    Commit,
}

/// The journal file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Format version.
    pub version: u32,
    /// The operation.
    pub op_id: String,
    /// `backup restore` or `backup create`.
    pub command: Command,
    /// Instance concerned.
    pub instance: String,
    /// Backup id concerned.
    pub backup_id: String,
    /// Start of the operation (UTC).
    pub started_at: String,
    /// Whether the unit was running before the operation touched it.
    pub unit_was_active: Option<bool>,
    /// Steps in the order they were begun.
    pub steps: Vec<Step>,
    /// What finishing a committed restore still needs (set at the commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

impl Record {
    /// The journal of a new operation: no step yet, started now.
    pub fn new(op_id: String, command: Command, instance: String, backup_id: String) -> Record {
        Record {
            version: 1,
            op_id,
            command,
            instance,
            backup_id,
            started_at: fsutil::now_utc(),
            unit_was_active: None,
            steps: Vec::new(),
            outcome: None,
        }
    }

    /// The backups whose removal this (prune's) journal says is over.
    pub fn finished_removals(&self) -> std::collections::HashSet<&str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Removed { id } => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// What a committed restore records for the index annotation, so start-up
/// recovery can finish it exactly as the operation would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// sha256 of the archive as extracted.
    pub sha256: String,
    /// The pre-restore backup's id, when one was taken.
    pub pre_restore_backup: Option<String>,
    /// Who asked.
    pub by: Actor,
    /// Where the data was restored.
    pub destination: PathBuf,
}

/// A live journal: the record plus where it is written.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    record: Record,
}

impl Journal {
    /// The directory holding journals.
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("journal")
    }

    /// Start a journal for an operation and write it. The file is named after
    /// the operation and its command, so a restore and its pre-restore backup
    /// (one operation) never share a file.
    pub fn create(state_dir: &Path, record: Record) -> Result<Journal> {
        let kind = record.command.as_str().replace(' ', "-");
        let dir = Journal::dir(state_dir);
        // One operation may run several journaled steps (a backup job's
        // create and prune, per instance): a journal still there (kept for
        // start-up recovery) is never written over.
        let path = (1..)
            .map(|n| match n {
                1 => dir.join(format!("{}.{kind}.json", record.op_id)),
                n => dir.join(format!("{}.{kind}.{n}.json", record.op_id)),
            })
            .find(|p| std::fs::symlink_metadata(p).is_err())
            .unwrap_or_else(|| dir.join(format!("{}.{kind}.json", record.op_id)));
        let journal = Journal { path, record };
        journal.write()?;
        Ok(journal)
    }

    /// Record `step` durably. Call before taking it.
    pub fn begin(&mut self, step: Step) -> Result<()> {
        self.record.steps.push(step);
        self.write()
    }

    /// Record `steps` durably, in one write. Call before taking them.
    pub fn begin_all(&mut self, steps: impl IntoIterator<Item = Step>) -> Result<()> {
        self.record.steps.extend(steps);
        self.write()
    }

    /// Pass the commit point, recording what finishing needs.
    pub fn commit(&mut self, outcome: Outcome) -> Result<()> {
        self.record.outcome = Some(outcome);
        self.begin(Step::Commit)
    }

    /// Journals left by operations that did not end: each file with its record,
    /// or why it cannot be read. Oldest operation first (ids are UUIDv7).
    pub fn pending(state_dir: &Path) -> Result<Vec<(PathBuf, Result<Record, String>)>> {
        use crate::error::IoContext;
        let dir = Journal::dir(state_dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at("reading", &dir),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.at("reading", &dir)?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()));
            out.push((path, record));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Take over the journal of an interrupted operation (start-up recovery).
    pub fn resume(path: PathBuf, record: Record) -> Journal {
        Journal { path, record }
    }

    /// Name the backup once it is known: a `stop`-mode create journals the
    /// stop before its walk fixes the backup's id. Recovery decides from the
    /// id whether the create had finished, so it is set before the archive
    /// step is.
    pub fn set_backup_id(&mut self, id: &str) -> Result<()> {
        self.record.backup_id = id.to_owned();
        self.write()
    }

    /// Record the unit's state before the operation.
    pub fn set_unit_was_active(&mut self, active: bool) -> Result<()> {
        self.record.unit_was_active = Some(active);
        self.write()
    }

    /// What has been recorded.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Whether the operation passed its commit point.
    pub fn committed(&self) -> bool {
        self.record.steps.contains(&Step::Commit)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The operation is over and nothing needs recovery: remove the file.
    pub fn close(self) -> Result<()> {
        use crate::error::IoContext;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at("removing journal", &self.path),
        }
        if let Some(dir) = self.path.parent() {
            fsutil::sync_dir(dir)?;
        }
        Ok(())
    }

    fn write(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| crate::Error::Internal(format!("encoding journal: {e}")))?;
        fsutil::atomic_write(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_written_before_they_are_taken_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(
            dir.path(),
            Record {
                version: 1,
                op_id: "op1".into(),
                command: Command::BackupRestore,
                instance: "a".into(),
                backup_id: "b".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                unit_was_active: None,
                steps: vec![],
                outcome: None,
            },
        )
        .unwrap();
        j.begin(Step::MoveAside {
            live: "/x".into(),
            aside: "/x.pre-restore-1".into(),
        })
        .unwrap();
        let on_disk: Record = serde_json::from_slice(&std::fs::read(j.path()).unwrap()).unwrap();
        assert_eq!(on_disk.steps.len(), 1);
        assert!(!j.committed());
        j.begin(Step::Commit).unwrap();
        assert!(j.committed());
        let path = j.path().to_owned();
        j.close().unwrap();
        assert!(!path.exists());
    }

    /// One operation's second journal of a kind (a backup job's prune of
    /// the next instance) never writes over the first, kept for recovery.
    #[test]
    fn a_second_journal_of_one_operation_leaves_the_first_alone() {
        let dir = tempfile::tempdir().unwrap();
        let record = |instance: &str| Record {
            version: 1,
            op_id: "op1".into(),
            command: Command::BackupPrune,
            instance: instance.into(),
            backup_id: String::new(),
            started_at: "2026-01-01T00:00:00Z".into(),
            unit_was_active: None,
            steps: vec![],
            outcome: None,
        };
        let kept = Journal::create(dir.path(), record("alpha")).unwrap();
        let second = Journal::create(dir.path(), record("beta")).unwrap();
        assert_ne!(kept.path(), second.path());
        second.close().unwrap();
        let pending = Journal::pending(dir.path()).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1.as_ref().unwrap().instance, "alpha");
    }
}
