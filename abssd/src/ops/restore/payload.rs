//! What the extracted archive holds, checked before anything live changes
//! (SPEC §7 step 4): `data/`, and `metadata/instance.json` when present.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::extract::INSTANCE_JSON_MAX;

/// The payload must hold `data/` (a directory); metadata, when present, must be
/// readable JSON naming the same instance (when it names one): what the archive
/// says about itself never makes it another instance's backup.
pub(super) fn validate(payload: &Path, instance: &str) -> Result<()> {
    let data = payload.join("data");
    match std::fs::symlink_metadata(&data) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(Error::Archive(format!(
                "the archive has no {}/data/ directory; it is not an abssctl backup",
                payload.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
    }
    if let Some(meta) = instance_metadata(payload)?
        && let Some(named) = meta.get("name")
        && named.as_str() != Some(instance)
    {
        return Err(Error::Archive(format!(
            "the archive's metadata/instance.json names instance {}, not {instance}; refusing to restore it into {instance}",
            crate::error::shown(&named.to_string())
        )));
    }
    Ok(())
}

/// `metadata/instance.json` from the payload, when present.
///
/// Read with the bound extraction holds it to ([`INSTANCE_JSON_MAX`]), and
/// only as the regular file it names: extraction bounds a regular entry of
/// that name, but a hard-link entry there carries the content of any file of
/// the archive's data (gigabytes of zeros compress to almost nothing), which
/// an unbounded read would take into the daemon's memory whole.
pub(super) fn instance_metadata(payload: &Path) -> Result<Option<serde_json::Map<String, Value>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = payload.join("metadata/instance.json");
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("reading", &path),
    };
    let refuse = |why: String| {
        Err(Error::Archive(format!(
            "metadata/instance.json in the archive {why} ({})",
            path.display()
        )))
    };
    if !file.metadata().at("reading", &path)?.is_file() {
        return refuse("is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(INSTANCE_JSON_MAX + 1)
        .read_to_end(&mut bytes)
        .at("reading", &path)?;
    if bytes.len() as u64 > INSTANCE_JSON_MAX {
        return refuse(format!("is larger than {INSTANCE_JSON_MAX} bytes"));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        _ => refuse("is not a JSON object".into()),
    }
}
