//! `backup create`: plan, then one streaming pass into `<archive>.partial`,
//! rename, sidecar, index entry (SPEC §7).
//!
//! The instance lock is held for the whole run; the global lock only around the
//! index write. On any failure the partial archive and sidecar are removed and no
//! index entry is written.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use abssd_proto::{
    Actor, Algorithm, BackupEntry, Checksum, CreateParams, CreatePlan, CreateResult, EntryMetadata,
    EventKind, PlanSource, status,
};
use serde_json::{Map, Value};

use crate::archive::{self, Body, Codec, Member};
use crate::config::{site_name, unit_name};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::index::{Index, new_backup_id};
use crate::ops::{ByteProgress, Ctx, LockEvents, Sink};
use crate::registry::{Registry, validate_name};

/// Run `backup create`. Returns the plan, and the result unless `dry_run`.
pub async fn run(
    ctx: &Ctx,
    params: &CreateParams,
    actor: &Actor,
    progress: &Sink,
) -> Result<(CreatePlan, Option<CreateResult>)> {
    validate_name(&params.instance)?;
    let labels = split_labels(&params.labels)?;
    let algorithm = match params.compression {
        abssd_proto::Compression::Auto => ctx.config.default_compression.algorithm(),
        other => other.algorithm(),
    };
    let level = effective_level(
        algorithm,
        params.compression_level.or(ctx.config.default_level),
    )?;
    let out_dir = out_dir(ctx, params)?;

    let _instance_lock = ctx
        .locks
        .acquire(false, &[params.instance.as_str()], &LockEvents(&**progress))
        .await?;

    let config = ctx.config.clone();
    let p = params.clone();
    let (plan, members, skipped) =
        tokio::task::spawn_blocking(move || build_plan(&config, &p, algorithm, level, &out_dir))
            .await??;
    progress.emit(EventKind::Plan {
        plan: serde_json::to_value(&plan).unwrap_or_default(),
    });
    for s in &skipped {
        progress.emit(EventKind::Message {
            level: "warning".into(),
            text: format!("skipped {}: {}", s.path.display(), s.reason),
        });
    }
    if params.dry_run {
        return Ok((plan, None));
    }

    let archive = PathBuf::from(&plan.archive);
    let sidecar = PathBuf::from(&plan.checksum_file);
    let written = write_archive(ctx, &plan, members, algorithm, level, progress).await?;
    let result = finish(ctx, &plan, &written, params, labels, actor, progress).await;
    match result {
        Ok(r) => Ok((plan, Some(r))),
        Err(e) => {
            // Nothing half-made survives a failure after the rename.
            let _ = std::fs::remove_file(&archive);
            let _ = std::fs::remove_file(&sidecar);
            Err(e)
        }
    }
}

/// Labels from repeated and comma-separated values; empty ones dropped, order
/// kept, duplicates removed.
pub fn split_labels(raw: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for label in raw
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if label.chars().any(char::is_control) || label.len() > 100 {
            return Err(Error::validation(format!("invalid label {label:?}")));
        }
        if !out.iter().any(|l| l == label) {
            out.push(label.to_owned());
        }
    }
    Ok(out)
}

fn effective_level(algorithm: Algorithm, level: Option<i32>) -> Result<Option<i32>> {
    let (range, default) = match algorithm {
        Algorithm::Zstd => (1..=19, 3),
        Algorithm::Gzip => (1..=9, 6),
        Algorithm::None => {
            return match level {
                None => Ok(None),
                Some(_) => Err(Error::validation(
                    "--compression-level needs --compression zstd or gzip",
                )),
            };
        }
    };
    match level {
        None => Ok(Some(default)),
        Some(l) if range.contains(&l) => Ok(Some(l)),
        Some(l) => Err(Error::validation(format!(
            "compression level {l} is out of range for {}: use {}..={}",
            algorithm.as_str(),
            range.start(),
            range.end()
        ))),
    }
}

/// `--out-dir` must be an absolute path under the backups root, without `..`,
/// and must not reach outside it through a symlink.
fn out_dir(ctx: &Ctx, params: &CreateParams) -> Result<PathBuf> {
    let root = &ctx.config.backups_root;
    let Some(dir) = &params.out_dir else {
        return Ok(ctx.config.instance_backup_dir(&params.instance));
    };
    let dir = PathBuf::from(dir);
    let outside = || {
        Error::validation(format!(
            "--out-dir {} must lie under the backups root {}",
            dir.display(),
            root.display()
        ))
    };
    if !dir.is_absolute() || dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(outside());
    }
    if !dir.starts_with(root) {
        return Err(outside());
    }
    // Resolve the deepest existing ancestor: a symlink inside the root must not
    // lead out of it.
    if let (Ok(real_root), Some(existing)) =
        (root.canonicalize(), dir.ancestors().find(|a| a.exists()))
    {
        let real = existing.canonicalize().at("resolving", existing)?;
        if !real.starts_with(&real_root) {
            return Err(outside());
        }
    }
    Ok(dir)
}

type Planned = (CreatePlan, Vec<Member>, Vec<archive::Skipped>);

/// Read the registry, walk the sources, and fix the archive name. Blocking.
fn build_plan(
    config: &crate::config::Config,
    params: &CreateParams,
    algorithm: Algorithm,
    level: Option<i32>,
    out_dir: &Path,
) -> Result<Planned> {
    let registry_file = config.registry_file();
    let registry_bytes = match std::fs::read(&registry_file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).at("reading registry", &registry_file),
    };
    let registry =
        Registry::parse(&String::from_utf8_lossy(&registry_bytes)).map_err(|message| {
            Error::Corrupt {
                path: registry_file.clone(),
                format: "YAML",
                message,
            }
        })?;
    let instance = registry.require(&params.instance, &registry_file)?.clone();
    // One instant names the backup and dates its entry.
    let at = jiff::Timestamp::now();
    let id = new_backup_id(&params.instance, at);
    let archive = out_dir.join(format!("{id}{}", algorithm.extension()));
    let checksum_file = PathBuf::from(format!("{}.sha256", archive.display()));

    let mut sources = Vec::new();
    let mut members = vec![Member::synthetic(format!("{id}/"), Body::Dir)];
    let data_root = instance.data_root(config);
    let (data, skipped) = archive::walk(&data_root, &format!("{id}/data"))?;
    sources.push(source(
        "data",
        &data_root,
        &format!("{id}/data/"),
        true,
        &data,
    ));
    members.extend(data);

    if !params.data_only {
        let assets = [
            (
                "unit",
                config.unit_file(&instance.name),
                "systemd",
                unit_name(&instance.name),
            ),
            (
                "site",
                config.site_file(&instance.name),
                "nginx",
                site_name(&instance.name),
            ),
            (
                "site_enabled",
                config.site_link(&instance.name),
                "nginx-enabled",
                site_name(&instance.name),
            ),
        ];
        for (role, path, dir, file) in assets {
            let member = format!("{id}/{dir}/{file}");
            // Followed, like the Python tool: the enabled link is stored as the file
            // it points to; its presence says the site was enabled.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    let mut m = vec![
                        Member::synthetic(format!("{id}/{dir}/"), Body::Dir),
                        Member::from_meta(
                            member.clone(),
                            Body::File {
                                path: path.clone(),
                                size: meta.len(),
                            },
                            &meta,
                        ),
                    ];
                    sources.push(source(role, &path, &member, true, &m));
                    members.append(&mut m);
                }
                Ok(_) => {
                    return Err(Error::Environment(format!(
                        "{} is not a regular file",
                        path.display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    sources.push(source(role, &path, &member, false, &[]));
                }
                Err(e) => return Err(e).at("reading", &path),
            }
        }
    }

    let instance_json = serde_json::to_vec_pretty(&instance)
        .map_err(|e| Error::Internal(format!("rendering instance.json: {e}")))?;
    let meta_members = vec![
        Member::synthetic(format!("{id}/metadata/"), Body::Dir),
        Member::synthetic(
            format!("{id}/metadata/instances.yml"),
            Body::Bytes(registry_bytes),
        ),
        Member::synthetic(
            format!("{id}/metadata/instance.json"),
            Body::Bytes(instance_json),
        ),
    ];
    sources.push(source(
        "registry",
        &registry_file,
        &format!("{id}/metadata/instances.yml"),
        true,
        &meta_members[1..2],
    ));
    sources.push(source(
        "instance",
        &registry_file,
        &format!("{id}/metadata/instance.json"),
        true,
        &meta_members[2..3],
    ));
    members.extend(meta_members);

    let plan = CreatePlan {
        instance: instance.name.clone(),
        id,
        created_at: fsutil::utc(at),
        archive: archive.display().to_string(),
        checksum_file: checksum_file.display().to_string(),
        algorithm,
        compression_level: level,
        data_only: params.data_only,
        total_bytes: members.iter().map(Member::content_len).sum(),
        sources,
        index: config.index_file.display().to_string(),
        dry_run: params.dry_run,
    };
    Ok((plan, members, skipped))
}

fn source(role: &str, path: &Path, member: &str, present: bool, members: &[Member]) -> PlanSource {
    PlanSource {
        role: role.to_owned(),
        path: path.display().to_string(),
        member: member.to_owned(),
        present,
        bytes: members.iter().map(Member::content_len).sum(),
        entries: members.len() as u64,
    }
}

/// Stream into `<archive>.partial`, then rename into place.
async fn write_archive(
    ctx: &Ctx,
    plan: &CreatePlan,
    members: Vec<Member>,
    algorithm: Algorithm,
    level: Option<i32>,
    progress: &Sink,
) -> Result<archive::Written> {
    let archive = PathBuf::from(&plan.archive);
    let partial = PathBuf::from(format!("{}.partial", plan.archive));
    let dir = archive
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| ctx.config.backups_root.clone());
    fsutil::ensure_dir(&dir)?;
    if archive.exists() {
        return Err(Error::Environment(format!(
            "{} already exists; not overwriting it",
            archive.display()
        )));
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .open(&partial)
        .at("creating", &partial)?;
    let codec = Codec {
        algorithm,
        level: level.unwrap_or(0),
        workers: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
            .min(8),
    };
    let total = plan.total_bytes;
    let sink = progress.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut bytes = ByteProgress::start(&*sink, "archive", total);
        archive::write(file, &members, codec, &mut bytes)
    })
    .await;
    let written = match result {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        Err(join) => {
            let _ = std::fs::remove_file(&partial);
            return Err(join.into());
        }
    };
    std::fs::rename(&partial, &archive).at("renaming", &partial)?;
    fsutil::sync_dir(&dir)?;
    Ok(written)
}

/// Sidecar, then the index entry under the global lock.
async fn finish(
    ctx: &Ctx,
    plan: &CreatePlan,
    written: &archive::Written,
    params: &CreateParams,
    labels: Vec<String>,
    actor: &Actor,
    progress: &Sink,
) -> Result<CreateResult> {
    let archive = PathBuf::from(&plan.archive);
    let file_name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sidecar = PathBuf::from(&plan.checksum_file);
    fsutil::atomic_write(
        &sidecar,
        format!("{}  {file_name}\n", written.sha256).as_bytes(),
    )?;

    progress.emit(EventKind::Phase {
        name: "index".into(),
        total_bytes: None,
    });
    let created_at = plan.created_at.clone();
    let entry = BackupEntry {
        id: plan.id.clone(),
        instance: plan.instance.clone(),
        created_at: created_at.clone(),
        path: plan.archive.clone(),
        algorithm: Some(plan.algorithm.as_str().to_owned()),
        compression_level: plan.compression_level.map(i64::from),
        size_bytes: Some(written.size),
        checksum: Some(Checksum {
            algorithm: "sha256".into(),
            value: written.sha256.clone(),
            last_verified: None,
            observed: None,
            extra: Map::new(),
        }),
        status: status::AVAILABLE.into(),
        message: params.message.clone(),
        created_by: Some(serde_json::to_value(actor).unwrap_or(Value::Null)),
        metadata: EntryMetadata {
            data_only: params.data_only,
            labels: labels.clone(),
            verification_error: None,
            uncompressed_bytes: Some(written.content_bytes),
            extra: Map::new(),
        },
        verified_at: None,
        reconciled_at: None,
        extra: Map::new(),
    };
    let index_file = ctx.config.index_file.clone();
    {
        let _global = ctx
            .locks
            .acquire(true, &[], &LockEvents(&**progress))
            .await?;
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || {
            let mut index = Index::load(&index_file)?;
            if index.get(&entry.id).is_some() {
                return Err(Error::Internal(format!(
                    "backup id {} is already in the index",
                    entry.id
                )));
            }
            index.backups.push(entry);
            index.save(&index_file)
        })
        .await??;
    }
    progress.changed(&plan.id);
    Ok(CreateResult {
        id: plan.id.clone(),
        archive: plan.archive.clone(),
        checksum: written.sha256.clone(),
        checksum_file: plan.checksum_file.clone(),
        size_bytes: written.size,
        algorithm: plan.algorithm,
        compression_level: plan.compression_level,
        message: params.message.clone(),
        labels,
        data_only: params.data_only,
        uncompressed_bytes: written.content_bytes,
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_split_on_commas_and_dedupe() {
        let raw = vec![
            "a,b".to_owned(),
            " c ".to_owned(),
            "a".to_owned(),
            ",".to_owned(),
        ];
        assert_eq!(split_labels(&raw).unwrap(), ["a", "b", "c"]);
        assert!(split_labels(&["bad\nlabel".to_owned()]).is_err());
    }

    #[test]
    fn levels_default_and_are_range_checked() {
        assert_eq!(effective_level(Algorithm::Zstd, None).unwrap(), Some(3));
        assert_eq!(effective_level(Algorithm::Gzip, None).unwrap(), Some(6));
        assert_eq!(effective_level(Algorithm::None, None).unwrap(), None);
        assert!(effective_level(Algorithm::Gzip, Some(12)).is_err());
        assert!(effective_level(Algorithm::None, Some(1)).is_err());
    }
}
