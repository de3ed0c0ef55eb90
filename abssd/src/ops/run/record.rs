//! `state_dir/jobs/<instance>.json`: the record of an instance's last backup
//! job ([`JobRecord`]), which `daemon.health` reads.
//!
//! Replaced atomically (a temporary file in the same directory, fsync,
//! rename, fsync of the directory), mode 0644 in a root-owned 0755
//! directory: any local user may read when the last job ran and how it
//! ended, as `abssctl doctor` shows it to any peer. The directory is worked
//! on through its descriptor, opened without following a symlink and
//! refused unless the daemon's user owns it and no one else may write it;
//! a symlink planted at a record's name is replaced, never followed.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use abssd_proto::JobRecord;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, OPEN_DIR};
use crate::registry::validate_name;

/// The directory of job records, under the state directory.
pub const DIR: &str = "jobs";
/// Mode of the directory: anyone may look in.
pub const DIR_MODE: u32 = 0o755;
/// Mode of a record: anyone may read it.
pub const FILE_MODE: u32 = 0o644;

/// Where `instance`'s record is.
pub fn path(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join(DIR).join(format!("{instance}.json"))
}

/// Replace `record`'s file with it. Blocking.
pub fn write(state_dir: &Path, record: &JobRecord) -> Result<PathBuf> {
    validate_name(&record.instance)?;
    // One writer at a time: a write removes the temporary files it finds of
    // its record, which must never be another running write's.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let target = path(state_dir, &record.instance);
    let jobs = state_dir.join(DIR);
    let io = |action: &'static str, at: &Path| {
        let at = at.to_owned();
        move |e: Errno| Error::Io {
            action,
            path: at,
            source: e.into(),
        }
    };
    fsutil::ensure_dir(state_dir)?;
    let state = rustix::fs::open(
        state_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("opening", state_dir))?;
    match rustix::fs::mkdirat(&state, DIR, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io("creating directory", &jobs)(e)),
    }
    let dir = match rustix::fs::openat(&state, DIR, OPEN_DIR, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Err(Error::Environment(format!(
                "{} is not a directory (a symlink or a file is there); the job record was not written: remove it, abssd makes the directory",
                jobs.display()
            )));
        }
        Err(e) => return Err(io("opening", &jobs)(e)),
    };
    own_dir(&dir, &jobs)?;

    let name = format!("{}.json", record.instance);
    remove_stale_temps(&dir, &name);
    let temp = format!(".{name}.{}.tmp", uuid::Uuid::now_v7().as_simple());
    let mut bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::Internal(format!("encoding the job record: {e}")))?;
    bytes.push(b'\n');
    let written = write_new(&dir, &temp, &bytes)
        .map_err(|e| io("writing", &jobs.join(&temp))(e))
        .and_then(|()| {
            rustix::fs::renameat(&dir, temp.as_str(), &dir, name.as_str())
                .map_err(io("replacing", &target))
        })
        .and_then(|()| rustix::fs::fsync(&dir).map_err(io("syncing", &jobs)));
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, temp.as_str(), rustix::fs::AtFlags::empty());
        return Err(e);
    }
    Ok(target)
}

/// The records' directory is the daemon user's and no one else may write in
/// it (else another user could swap a record, or plant names in it); its
/// mode is set to [`DIR_MODE`] (a umask may have narrowed it).
fn own_dir(dir: &OwnedFd, at: &Path) -> Result<()> {
    let stat = rustix::fs::fstat(dir).map_err(|e| Error::Io {
        action: "inspecting",
        path: at.to_owned(),
        source: e.into(),
    })?;
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid != me || stat.st_mode & 0o022 != 0 {
        return Err(Error::Environment(format!(
            "{} is owned by uid {} with mode {:o}; job records are written only into a directory of uid {me} that no one else may write: fix its owner and mode (chown {me} and chmod 755), or remove it",
            at.display(),
            stat.st_uid,
            stat.st_mode & 0o7777
        )));
    }
    if stat.st_mode & 0o7777 != DIR_MODE {
        rustix::fs::fchmod(dir, Mode::from_raw_mode(DIR_MODE)).map_err(|e| Error::Io {
            action: "setting the mode of",
            path: at.to_owned(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Remove the temporary files of `name` that a daemon killed between writing
/// and renaming left in `dir` (`.<name>.<id>.tmp`). Best effort: the write
/// goes on whatever happens here.
fn remove_stale_temps(dir: &OwnedFd, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(mut entries) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    let mut stale = Vec::new();
    while let Some(Ok(entry)) = entries.next() {
        let Ok(file) = entry.file_name().to_str() else {
            continue;
        };
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            stale.push(file.to_owned());
        }
    }
    for file in stale {
        let _ = rustix::fs::unlinkat(dir, file.as_str(), rustix::fs::AtFlags::empty());
    }
}

/// Create `name` in `dir` (never through a symlink, never an existing file),
/// write `bytes`, and sync it.
fn write_new(dir: &OwnedFd, name: &str, bytes: &[u8]) -> std::result::Result<(), Errno> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

/// Read `instance`'s record, if there is one. Blocking.
pub fn read(state_dir: &Path, instance: &str) -> Result<Option<JobRecord>> {
    let at = path(state_dir, instance);
    let text = match std::fs::read(&at) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("reading", &at),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            path: at,
            format: "JSON",
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use abssd_proto::{JobStep, JobStepOutcome, JobStepStatus};

    use super::*;

    fn record(instance: &str, op_id: &str) -> JobRecord {
        JobRecord {
            instance: instance.into(),
            op_id: op_id.into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:05Z".into(),
            ok: true,
            backup_id: Some("20260101-000000-alpha-0a1b2c".into()),
            steps: vec![JobStepOutcome {
                step: JobStep::Create,
                status: JobStepStatus::Ok,
                message: "made".into(),
            }],
        }
    }

    #[test]
    fn a_record_is_replaced_whole_readable_by_all_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let at = write(&state, &record("alpha", "op-1")).unwrap();
        write(&state, &record("alpha", "op-2")).unwrap();
        assert_eq!(read(&state, "alpha").unwrap().unwrap().op_id, "op-2");
        assert_eq!(at.metadata().unwrap().mode() & 0o7777, FILE_MODE);
        let jobs = state.join(DIR);
        assert_eq!(jobs.metadata().unwrap().mode() & 0o7777, DIR_MODE);
        let names: Vec<_> = std::fs::read_dir(&jobs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["alpha.json"]);
        assert_eq!(read(&state, "beta").unwrap(), None);
    }

    #[test]
    fn a_temporary_file_left_by_a_killed_write_is_removed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        write(&state, &record("alpha", "op-1")).unwrap();
        let jobs = state.join(DIR);
        std::fs::write(jobs.join(".alpha.json.0197abc.tmp"), "half").unwrap();
        std::fs::write(jobs.join(".beta.json.0197abc.tmp"), "beta's").unwrap();
        write(&state, &record("alpha", "op-2")).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&jobs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".beta.json.0197abc.tmp", "alpha.json"]);
    }

    #[test]
    fn a_symlink_at_the_record_is_replaced_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::create_dir_all(state.join(DIR)).unwrap();
        symlink(&victim, state.join(DIR).join("alpha.json")).unwrap();
        write(&state, &record("alpha", "op-1")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(
            !std::fs::symlink_metadata(state.join(DIR).join("alpha.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_symlinked_or_foreign_writable_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        symlink(&elsewhere, state.join(DIR)).unwrap();
        let err = write(&state, &record("alpha", "op-1")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

        std::fs::remove_file(state.join(DIR)).unwrap();
        std::fs::create_dir(state.join(DIR)).unwrap();
        std::fs::set_permissions(state.join(DIR), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = write(&state, &record("alpha", "op-1")).unwrap_err();
        assert!(err.to_string().contains("no one else may write"), "{err}");
        assert!(!state.join(DIR).join("alpha.json").exists());
    }

    #[test]
    fn a_bad_instance_name_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path(), &record("../etc", "op")).is_err());
        assert!(!dir.path().join(DIR).exists());
    }
}
