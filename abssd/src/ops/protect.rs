//! `backup protect ID` / `backup unprotect ID`: set or clear an entry's
//! `protected` flag, which every prune honours.

use abssd_proto::{ProtectResult, status};

use crate::error::{Error, Result};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};

/// Set backup `id`'s protection to `protected`, under the global lock on a
/// fresh read of the index. The file is written only when the flag changes.
pub async fn set(
    ctx: &Ctx,
    id: &str,
    protected: bool,
    progress: &Reporter,
) -> Result<ProtectResult> {
    let _global = ctx.locks.acquire(true, &[], progress).await?;
    let (file, key) = (ctx.config.layout.index_file.clone(), id.to_owned());
    let result = tokio::task::spawn_blocking(move || apply(&file, &key, protected)).await??;
    if result.changed {
        progress.changed(id);
    }
    Ok(result)
}

/// The blocking part of [`set`], for the caller holding the global lock.
pub fn apply(file: &std::path::Path, id: &str, protected: bool) -> Result<ProtectResult> {
    crate::index::check_id(id)?;
    let changed = crate::index::update(file, id, |entry| {
        // Protection keeps an archive; a removed entry has none left to keep.
        if protected && entry.status == status::REMOVED {
            return Err(Error::validation(format!(
                "backup {id} was removed by a prune (status: removed): there is no archive left to protect"
            )));
        }
        let changed = entry.protected != protected;
        entry.protected = protected;
        Ok((changed, changed))
    })?
    .ok_or_else(|| crate::index::not_found(id, file))?;
    Ok(ProtectResult {
        id: id.to_owned(),
        protected,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    const INDEX: &str = r#"{
  "backups": [
    {
      "id": "20250102-030405-alpha-a1b2c3",
      "instance": "alpha",
      "created_at": "2025-01-02T03:04:05Z",
      "path": "/srv/backups/alpha/20250102-030405-alpha-a1b2c3.tar.zst",
      "status": "available",
      "python_extra": [1]
    },
    {
      "id": "20250101-000000-alpha-000001",
      "instance": "alpha",
      "created_at": "2025-01-01T00:00:00Z",
      "path": "/srv/backups/alpha/20250101-000000-alpha-000001.tar.zst",
      "status": "removed",
      "removed_at": "2025-02-01T00:00:00Z"
    }
  ]
}
"#;
    const ID: &str = "20250102-030405-alpha-a1b2c3";

    #[test]
    fn protect_sets_the_flag_once_and_unprotect_gives_back_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backups.json");
        std::fs::write(&file, INDEX).unwrap();
        let before = Index::load(&file).unwrap();
        let r = apply(&file, ID, true).unwrap();
        assert!(r.changed && r.protected);
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(raw["backups"][0]["protected"], true);
        assert_eq!(raw["backups"][0]["python_extra"][0], 1);
        // Again: nothing to change, the file is not written.
        let written = std::fs::read(&file).unwrap();
        assert!(!apply(&file, ID, true).unwrap().changed);
        assert_eq!(std::fs::read(&file).unwrap(), written);
        let r = apply(&file, ID, false).unwrap();
        assert!(r.changed && !r.protected);
        // No `protected: false` left behind: the entry is as it was.
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert!(raw["backups"][0].get("protected").is_none());
        assert_eq!(Index::load(&file).unwrap(), before);
    }

    #[test]
    fn an_unknown_id_is_not_found_and_a_removed_entry_cannot_be_protected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backups.json");
        std::fs::write(&file, INDEX).unwrap();
        let err = apply(&file, "20990101-000000-alpha-ffffff", true).unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::NotFound);
        let err = apply(&file, "20250101-000000-alpha-000001", true).unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::Validation);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), INDEX);
    }
}
