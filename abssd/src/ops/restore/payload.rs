//! What the extracted archive holds, checked before anything live changes
//! (SPEC §7 step 4): `data/`, and `metadata/instance.json` when present.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, IoContext, Result};

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
pub(super) fn instance_metadata(payload: &Path) -> Result<Option<serde_json::Map<String, Value>>> {
    let path = payload.join("metadata/instance.json");
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(Error::Archive(format!(
                "metadata/instance.json in the archive is not a JSON object ({})",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at("reading", &path),
    }
}
