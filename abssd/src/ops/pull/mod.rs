//! `backup pull ID [--remote NAME]`: download a backup's copy from a remote
//! and make its local archive available again. Also the first step of a
//! restore whose archive is missing here (`restore --pull`).
//!
//! The entry must be in the local index: its checksum says what the copy
//! must be. The copy streams into a new temporary file beside the archive
//! (journaled first: start-up recovery removes it), decrypted when it is
//! encrypted, hashed as it is written; a copy whose plain SHA-256 is not
//! the entry's is thrown away. The file is fsynced and renamed to the
//! archive's name only if nothing is there; then, under the global lock,
//! the sidecar is written if missing and the entry marked `available` (as
//! a verify that found the checksum matching marks it).
//!
//! * `local` — the archive's directory, opened beneath the backups root, and
//!   the files in it.

use std::path::{Path, PathBuf};

use abssd_proto::{
    BackupEntry, Command, Phase, PullOutcome, PullParams, PullResult, PullSource, VerifyItem,
    status,
};

use crate::config::remotes::{RemoteSettings, Remotes};
use crate::error::{Error, Result};
use crate::journal::{Journal, Record, Step};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::remote::{self, layout, transfer};
use crate::{archive, fsutil};

mod local;

pub use local::recover;

/// Bytes a download may run over what the remote recorded (or `HEAD` said)
/// before it is cut: a server that sends more is not sending the copy.
const SLACK: u64 = 1 << 20;

/// Run `backup pull`.
pub async fn run(ctx: &Ctx, params: &PullParams, progress: &Reporter) -> Result<PullResult> {
    // Held to the end, so no prune removes the backup meanwhile.
    let _reading = ctx.in_use.claim(&params.id)?;
    fetch(ctx, &params.id, params.remote.as_deref(), progress).await
}

/// Pull backup `id` from `remote` (or the one its entry names), for a caller
/// that holds the backup's in-use claim (a restore).
pub async fn fetch(
    ctx: &Ctx,
    id: &str,
    remote: Option<&str>,
    progress: &Reporter,
) -> Result<PullResult> {
    let file = ctx.config.layout.index_file.clone();
    let key = id.to_owned();
    let entry = tokio::task::spawn_blocking(move || crate::index::require(&file, &key)).await??;
    if entry.status == status::REMOVED {
        return Err(Error::validation(format!(
            "backup {id} was removed by a prune (status: removed): its index entry is a record, not a backup to pull"
        )));
    }
    let expect = entry
        .sha256()
        .filter(|v| archive::sidecar::is_digest(v))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            Error::validation(format!(
                "backup {id} has no SHA-256 in its index entry: nothing says what a pulled copy must be"
            ))
        })?;
    let settings = choose(&ctx.config.remotes, &entry, remote)?.clone();
    let source = source(&settings, &entry)?;
    let root = ctx.config.layout.backups_root.clone();
    let archive = PathBuf::from(&entry.path);
    let op_id = progress.op_id();
    let state_dir = ctx.config.layout.state_dir.clone();
    let (sink, src, exp, ent) = (
        progress.clone(),
        source.clone(),
        expect.clone(),
        entry.clone(),
    );
    let placed = tokio::task::spawn_blocking(move || {
        download(
            &Download {
                root: &root,
                archive: &archive,
                op_id: &op_id,
                state_dir: &state_dir,
                remote: &settings,
                source: &src,
                expect: &exp,
                entry: &ent,
            },
            &sink,
        )
    })
    .await??;
    let (sidecar_written, previous) = record(ctx, &entry, &expect, &source, progress).await?;
    Ok(PullResult {
        id: entry.id.clone(),
        outcome: placed.outcome,
        source,
        archive: entry.path.clone(),
        bytes: placed.bytes,
        sha256: expect,
        sidecar_written,
        previous_status: previous,
    })
}

/// The remote to pull from: `name`; else the first configured remote the
/// entry's copies name; else the only remote.
pub fn choose<'r>(
    remotes: &'r Remotes,
    entry: &BackupEntry,
    name: Option<&str>,
) -> Result<&'r RemoteSettings> {
    if name.is_some() {
        return remotes.pick(name);
    }
    entry
        .remote_copies()
        .find_map(|c| remotes.all().iter().find(|r| r.name == c.name))
        .map_or_else(|| remotes.pick(None), Ok)
}

/// Where backup `entry`'s copy is in `remote`: the key its copy records,
/// else where a push puts it.
pub fn source(remote: &RemoteSettings, entry: &BackupEntry) -> Result<PullSource> {
    if let Some(copy) = entry.remote_copy(&remote.name) {
        let made = layout::recorded(remote, entry, copy)?;
        return Ok(PullSource {
            remote: remote.name.clone(),
            key: made.archive,
            size_bytes: Some(copy.size_bytes),
            encrypted: copy.encrypted,
        });
    }
    let keys = layout::keys(
        remote,
        &entry.instance,
        &entry.id,
        &entry.path,
        remote.encrypted(),
    )?;
    Ok(PullSource {
        remote: remote.name.clone(),
        key: keys.archive,
        size_bytes: None,
        encrypted: remote.encrypted(),
    })
}

/// What [`download`] needs.
struct Download<'a> {
    root: &'a Path,
    archive: &'a Path,
    op_id: &'a str,
    state_dir: &'a Path,
    remote: &'a RemoteSettings,
    source: &'a PullSource,
    expect: &'a str,
    entry: &'a BackupEntry,
}

/// What [`download`] left in place.
struct Placed {
    outcome: PullOutcome,
    bytes: u64,
}

/// Blocking: the archive is already there (checked), or the copy is
/// downloaded into a journaled temporary file, checked, and renamed in.
fn download(d: &Download<'_>, progress: &Reporter) -> Result<Placed> {
    let dir = local::Dir::open(d.root, d.archive)?;
    if let Some(bytes) = dir.present(d.expect)? {
        progress.info(format!(
            "{} is there already with the recorded SHA-256; nothing downloaded",
            d.archive.display()
        ));
        return Ok(Placed {
            outcome: PullOutcome::Already,
            bytes,
        });
    }
    let identities = if d.source.encrypted {
        let copy = format!("the copy {} in remote {}", d.source.key, d.remote.name);
        Some(remote::crypt::identities_of(d.remote, &copy)?)
    } else {
        None
    };
    let s3 = remote::connect(d.remote)?;
    let stored = match d.source.size_bytes {
        Some(size) => size,
        None => {
            s3.head(&d.source.key)?
                .ok_or_else(|| {
                    Error::Environment(format!(
                        "remote {} holds no object {}: backup {} was not pushed there (abssctl backup push)",
                        d.remote.name, d.source.key, d.entry.id
                    ))
                })?
                .size
        }
    };
    let total = d.entry.size_bytes.unwrap_or(stored);
    let need = total.max(stored).saturating_add(SLACK);
    let free = dir.free_bytes()?;
    if free < need {
        return Err(Error::Environment(format!(
            "not enough free space in {} to pull backup {}: it needs {need} bytes, {free} are free",
            dir.path().display(),
            d.entry.id
        )));
    }
    let temp = fsutil::hidden_sibling(d.archive, "pull", d.op_id);
    let mut journal = Journal::create(
        d.state_dir,
        Record::new(
            d.op_id.to_owned(),
            Command::BackupPull,
            d.entry.instance.clone(),
            d.entry.id.clone(),
        ),
    )?;
    journal.begin(Step::Download {
        temp: temp.clone(),
        archive: d.archive.to_owned(),
    })?;
    let temp_name = temp
        .file_name()
        .map(|n| n.to_owned())
        .ok_or_else(|| Error::Internal("a temporary file without a name".into()))?;
    let placed = (|| {
        let mut out = dir.create(&temp_name)?;
        crash_point!("pull::temp-created");
        let mut bytes = progress.bytes(Phase::Pull, total);
        let mut last = 0u64;
        let got = transfer::download(
            &s3,
            &d.source.key,
            stored.saturating_add(SLACK),
            identities.as_deref(),
            Some(d.expect),
            &mut out,
            &mut |n| {
                bytes.add(n - last);
                last = n;
            },
        )?;
        crash_point!("pull::downloaded");
        out.sync_all().map_err(|e| Error::Io {
            action: "syncing",
            path: temp.clone(),
            source: e,
        })?;
        drop(out);
        dir.rename_into_place(&temp_name)?;
        crash_point!("pull::renamed");
        Ok(Placed {
            outcome: PullOutcome::Pulled,
            bytes: got.plain_size,
        })
    })();
    // Whatever happened, the temporary file goes (after a rename it is not
    // there any more).
    let removed = dir.remove(&temp_name);
    match (placed, removed) {
        (Ok(p), Ok(())) => {
            journal.close()?;
            Ok(p)
        }
        (Err(e), Ok(())) => {
            journal.close()?;
            Err(e)
        }
        // The journal stays: start-up recovery removes it.
        (_, Err(e)) => Err(e),
    }
}

/// Under the global lock, on a fresh read of the index: the sidecar written
/// when missing, the entry marked `available` as a matching verify marks it.
/// Whether a sidecar was written, and the entry's status before.
async fn record(
    ctx: &Ctx,
    entry: &BackupEntry,
    sha256: &str,
    source: &PullSource,
    progress: &Reporter,
) -> Result<(bool, String)> {
    let _global = ctx.locks.acquire(true, &[], progress).await?;
    let file = ctx.config.layout.index_file.clone();
    let (id, sha, archive) = (
        entry.id.clone(),
        sha256.to_owned(),
        PathBuf::from(&entry.path),
    );
    let message = format!("checksum matches (pulled from remote {})", source.remote);
    let (written, previous) = tokio::task::spawn_blocking(move || {
        crate::index::update(&file, &id, |e| mark_pulled(e, &archive, sha, message))?
            .ok_or_else(|| crate::index::not_found(&id, &file))
    })
    .await??;
    progress.changed(&entry.id);
    Ok((written, previous))
}

/// The index entry `e` of a backup whose archive was just pulled to
/// `pulled` with digest `sha`: its sidecar written back when missing, the
/// entry marked as a matching verify marks it. Refused when a prune marked
/// it removed or it now names another file meanwhile. Whether a sidecar was
/// written, and the status before.
fn mark_pulled(
    e: &mut BackupEntry,
    pulled: &Path,
    sha: String,
    message: String,
) -> Result<(bool, (bool, String))> {
    // A prune that ran meanwhile (the Python tool's: ours waits for the
    // claim) decided this backup goes: the pulled archive is its to remove.
    if e.status == status::REMOVED || e.path != pulled.to_string_lossy() {
        return Err(Error::Environment(format!(
            "backup {}'s index entry changed while it was pulled (status {}); the archive {} was left as it is: run abssctl backup reconcile",
            e.id,
            e.status,
            pulled.display()
        )));
    }
    let written = archive::sidecar::write_back(pulled, &sha)?;
    let finding = crate::ops::verify::Finding {
        item: VerifyItem {
            id: e.id.clone(),
            status: status::AVAILABLE.to_owned(),
            message,
            previous_status: e.status.clone(),
            deep: None,
        },
        observed: Some(sha),
        matched: true,
    };
    let previous = e.status.clone();
    finding.record(e, &fsutil::now_utc());
    Ok((true, (written, previous)))
}

#[cfg(test)]
mod tests;
