//! One backup's objects in a remote: the archive, its sidecar, its entry.
//! Blocking (the S3 client is); run in `spawn_blocking`.

use std::cell::Cell;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use abssd_proto::{BackupEntry, Command, Phase, RemoteCopy};

use crate::archive::sidecar;
use crate::config::remotes::RemoteSettings;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::journal::{Journal, Record, Step};
use crate::progress::Reporter;
use crate::remote::layout::{AGE_SUFFIX, Keys};
use crate::remote::transfer::{self, Upload, UploadError};
use crate::remote::{S3, S3ErrorKind, crypt};

/// Longest sidecar read back (two lines of a hash and a file name).
const SIDECAR_BYTES: u64 = 4096;
/// Plain bytes past the first part at which one part has surely been sent
/// (an encrypted stream is slightly longer than the plain one).
const PAST_FIRST_PART: u64 = 64 << 10;

/// What one backup's push works with.
pub(super) struct Job {
    pub s3: Arc<S3>,
    pub remote: RemoteSettings,
    pub entry: BackupEntry,
    pub keys: Keys,
    pub state_dir: PathBuf,
    pub op_id: String,
    pub progress: Reporter,
}

/// The copy made, or found.
pub(super) enum Done {
    /// Uploaded now.
    Pushed(RemoteCopy),
    /// This backup's copy, made by an earlier push.
    Already(RemoteCopy),
}

/// Make the objects of `job.entry` in the remote, or find them there: the
/// copy to record, and the journal to close once it is recorded.
pub(super) fn copy(job: Job) -> Result<(Done, Option<Journal>)> {
    let s3 = job.s3.as_ref();
    if let Some(info) = s3.head(&job.keys.archive)? {
        match adopt(&job, info.size) {
            Ok(c) => return Ok((Done::Already(c), None)),
            // An archive an earlier push of this daemon left without its
            // sidecar (the remote went away before it could be removed):
            // its journal names it, so it is ours to remove, and the push
            // starts again.
            Err(e) if !leftover(&job)? => return Err(e),
            Err(_) => {}
        }
    }
    let sha = job.entry.sha256().unwrap_or_default().to_ascii_lowercase();
    let mut journal = Journal::create(
        &job.state_dir,
        Record {
            steps: vec![step(&job, None)],
            ..Record::new(
                job.op_id.clone(),
                Command::BackupPush,
                job.entry.instance.clone(),
                job.entry.id.clone(),
            )
        },
    )?;
    let uploaded = match upload(&job, &sha, &mut journal) {
        Ok(u) => u,
        Err(e) if transfer::is_exists(&e) => {
            // Taken while we uploaded: not ours (ours never became
            // visible); the journal must never delete it.
            let _ = journal.close();
            return Err(in_the_way(&job, "appeared while it was uploaded"));
        }
        Err(e) => return Err(abandon(&job, journal, e.into())),
    };
    crash_point!("push::archive-stored");
    // The archive complete, its sidecar not yet there: tests cut the
    // connection here.
    hook_point!("push::stored");
    if let Err(e) = sidecar(&job, &uploaded.plain_sha256, &uploaded.sha256) {
        return Err(abandon(&job, journal, e));
    }
    // From here the objects are complete and checked: whatever fails next,
    // the next push finds them (`already`).
    let entry = entry_object(&job)?;
    put_entry(&job, &entry)?;
    crash_point!("push::entry-stored");
    Ok((
        Done::Pushed(RemoteCopy {
            name: job.remote.name.clone(),
            key: uploaded.key,
            sha256: uploaded.sha256,
            size_bytes: uploaded.size,
            uploaded_at: fsutil::now_utc(),
            encrypted: uploaded.encrypted,
            extra: Default::default(),
        }),
        Some(journal),
    ))
}

fn step(job: &Job, upload_id: Option<&str>) -> Step {
    Step::RemoteArchive {
        remote: job.remote.name.clone(),
        key: job.keys.archive.clone(),
        sidecar: job.keys.sidecar.clone(),
        upload_id: upload_id.map(str::to_owned),
    }
}

/// Stream the archive up, the plain SHA-256 checked against `sha`.
fn upload(
    job: &Job,
    sha: &str,
    journal: &mut Journal,
) -> std::result::Result<transfer::Uploaded, UploadError> {
    let path = &job.entry.path;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            UploadError::Local(Error::Io {
                action: "opening the archive to push",
                path: path.into(),
                source: e,
            })
        })?;
    let size = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => {
            return Err(UploadError::Local(Error::Environment(format!(
                "{path} is not a regular file: not pushed"
            ))));
        }
    };
    let mut bytes = job.progress.bytes(Phase::Push(job.entry.id.clone()), size);
    let part_size = job.remote.part_size as u64;
    let (started, fired, last) = (Cell::new(false), Cell::new(false), Cell::new(0u64));
    let mut progress = |total: u64| {
        bytes.add(total.saturating_sub(last.replace(total)));
        if started.get() && !fired.get() && total >= part_size + PAST_FIRST_PART {
            fired.set(true);
            // A multipart upload is open and its first part sent.
            hook_point!("push::first-part");
            crash_point!("push::part-sent");
        }
    };
    let mut on_started = |id: &str| {
        journal.begin(step(job, Some(id)))?;
        started.set(true);
        Ok(())
    };
    transfer::upload_sized(
        &job.s3,
        &mut file,
        size,
        Upload {
            key: &job.keys.archive,
            recipients: &job.remote.age_recipients,
            part_size: job.remote.part_size,
            expect_sha256: Some(sha),
            progress: &mut progress,
            on_started: &mut on_started,
        },
    )
}

/// The sidecar's text: the plain archive's line, and the stored object's
/// when it is encrypted, so `sha256sum -c` checks whichever is there.
pub(super) fn sidecar_text(file: &str, plain: &str, stored: Option<&str>) -> String {
    let mut text = format!("{plain}  {file}\n");
    if let Some(stored) = stored {
        text.push_str(&format!("{stored}  {file}{AGE_SUFFIX}\n"));
    }
    text
}

/// The archive's file name (as the keys name it).
fn file_name(job: &Job) -> &str {
    job.entry.path.rsplit('/').next().unwrap_or("")
}

/// Create the sidecar; one there already must say the same.
fn sidecar(job: &Job, plain: &str, stored: &str) -> Result<()> {
    let encrypted = job.remote.encrypted();
    let text = sidecar_text(file_name(job), plain, encrypted.then_some(stored));
    match job.s3.put(&job.keys.sidecar, text.as_bytes(), true) {
        Ok(()) => Ok(()),
        Err(e) if e.kind == S3ErrorKind::Exists => {
            let there = job.s3.get_small(&job.keys.sidecar, SIDECAR_BYTES)?;
            let there = String::from_utf8_lossy(&there);
            let names = |file: &str, digest: &str| sidecar::records(&there, file, digest);
            if names(file_name(job), plain)
                && (!encrypted || names(&format!("{}{AGE_SUFFIX}", file_name(job)), stored))
            {
                Ok(())
            } else {
                // The archive object was made by this push: it goes again.
                let removed = match job.s3.delete(&job.keys.archive) {
                    Ok(()) => "the archive uploaded was removed again".to_owned(),
                    Err(e) => format!("the archive uploaded is left at {}: {e}", job.keys.archive),
                };
                Err(Error::Environment(format!(
                    "{} in {} is a sidecar not made for this copy: nothing was overwritten; {removed}",
                    job.keys.sidecar, job.remote.name
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The index entry as it goes to the remote: JSON, encrypted like the
/// archive.
fn entry_object(job: &Job) -> Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(&job.entry)
        .map_err(|e| Error::Internal(format!("encoding the index entry: {e}")))?;
    if !job.remote.encrypted() {
        return Ok(json);
    }
    let io = |e: std::io::Error| Error::Io {
        action: "encrypting the index entry",
        path: Default::default(),
        source: e,
    };
    let mut sealed = crypt::encrypt(&job.remote.age_recipients, Vec::new())?;
    sealed.write_all(&json).map_err(io)?;
    sealed.finish().map_err(io)
}

/// Create the entry object; one there already is an earlier push's.
fn put_entry(job: &Job, bytes: &[u8]) -> Result<()> {
    match job.s3.put(&job.keys.entry, bytes, true) {
        Ok(()) => Ok(()),
        Err(e) if e.kind == S3ErrorKind::Exists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The archive key is taken: this backup's copy, when the sidecar beside it
/// names the entry's SHA-256 (and, encrypted, the stored object's) and, not
/// encrypted, the object is as long as the archive the entry records; its
/// entry object is made when missing.
fn adopt(job: &Job, size: u64) -> Result<RemoteCopy> {
    if !job.remote.encrypted()
        && let Some(recorded) = job.entry.size_bytes
        && recorded != size
    {
        return Err(in_the_way(
            job,
            &format!("is {size} bytes long, the archive {recorded}"),
        ));
    }
    let sha = job.entry.sha256().unwrap_or_default().to_ascii_lowercase();
    let text = match job.s3.get_small(&job.keys.sidecar, SIDECAR_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind == S3ErrorKind::NotFound => {
            return Err(in_the_way(job, "has no sidecar beside it"));
        }
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8_lossy(&text);
    if !sidecar::records(&text, file_name(job), &sha) {
        return Err(in_the_way(job, "has a sidecar naming other bytes"));
    }
    let encrypted = job.remote.encrypted();
    let stored = if encrypted {
        let name = format!("{}{AGE_SUFFIX}", file_name(job));
        match sidecar::digest_for(&text, &name) {
            Some(s) => s.to_ascii_lowercase(),
            None => return Err(in_the_way(job, "has a sidecar without its encrypted line")),
        }
    } else {
        sha
    };
    if job.s3.head(&job.keys.entry)?.is_none() {
        put_entry(job, &entry_object(job)?)?;
    }
    Ok(RemoteCopy {
        name: job.remote.name.clone(),
        key: job.keys.archive.clone(),
        sha256: stored,
        size_bytes: size,
        uploaded_at: fsutil::now_utc(),
        encrypted,
        extra: Default::default(),
    })
}

fn in_the_way(job: &Job, how: &str) -> Error {
    Error::Environment(format!(
        "an object not made by this backup is at {} in {} (it {how}): nothing was overwritten; move it away or push to another prefix",
        job.keys.archive, job.remote.name
    ))
}

/// Whether a journal an earlier push left (its clean-up failed) names this
/// backup's archive key in this remote with no sidecar beside it; if so,
/// its uploads are abandoned, the object deleted and the journal closed.
/// Only this daemon's pushes write those journals, and one push of a key
/// runs at a time ([`super::Pushing`]).
fn leftover(job: &Job) -> Result<bool> {
    let s3 = job.s3.as_ref();
    let mut found = false;
    for (path, record) in Journal::pending(&job.state_dir)? {
        let Ok(record) = record else { continue };
        if record.command != Command::BackupPush || record.backup_id != job.entry.id {
            continue;
        }
        let mut uploads = Vec::new();
        let mut ours = false;
        for step in &record.steps {
            if let Step::RemoteArchive {
                remote,
                key,
                upload_id,
                ..
            } = step
                && *remote == job.remote.name
                && *key == job.keys.archive
            {
                ours = true;
                uploads.extend(upload_id.clone());
            }
        }
        if !ours {
            continue;
        }
        if s3.head(&job.keys.sidecar)?.is_some() {
            return Ok(false);
        }
        for id in &uploads {
            s3.abort_multipart(&job.keys.archive, id)?;
        }
        s3.delete(&job.keys.archive)?;
        Journal::resume(path, record).close()?;
        found = true;
    }
    Ok(found)
}

/// A push that failed before its sidecar: abandon the upload and delete
/// the archive object when it was completed (it is ours: the key was free
/// when the upload began), then close the journal. When the remote cannot
/// be reached for that, the journal stays: start-up recovery does it.
fn abandon(job: &Job, journal: Journal, cause: Error) -> Error {
    let uploads: Vec<String> = journal
        .record()
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::RemoteArchive {
                upload_id: Some(id),
                ..
            } => Some(id.clone()),
            _ => None,
        })
        .collect();
    let s3 = job.s3.as_ref();
    let cleaned = uploads
        .iter()
        .try_for_each(|id| s3.abort_multipart(&job.keys.archive, id))
        .and_then(|()| match s3.head(&job.keys.sidecar)? {
            Some(_) => Ok(()),
            None => s3.delete(&job.keys.archive),
        });
    match cleaned {
        Ok(()) => {
            let _ = journal.close();
            cause
        }
        Err(_) => Error::Environment(format!(
            "{cause}; what was uploaded is removed when abssd next starts"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_names_the_plain_and_the_stored_bytes() {
        let (a, b) = ("a".repeat(64), "B".repeat(64));
        let text = sidecar_text("x.tar.zst", &a, Some(&b));
        assert_eq!(
            text,
            format!("{a}  x.tar.zst\n{b}  x.tar.zst.age\n"),
            "sha256sum -c reads both lines"
        );
        assert_eq!(
            sidecar::digest_for(&text, "x.tar.zst.age"),
            Some(b.as_str())
        );
        assert_eq!(sidecar_text("x", &a, None), format!("{a}  x\n"));
    }
}
