//! Recording a copy in its backup's index entry, once its objects are all
//! in the bucket.

use abssd_proto::{BackupEntry, Lenient, RemoteCopy};

use crate::error::{Error, Result};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};

/// Add `copy` to backup `id`'s entry, under the global lock, on a fresh
/// read of the index.
pub(super) async fn record(
    ctx: &Ctx,
    id: &str,
    copy: RemoteCopy,
    progress: &Reporter,
) -> Result<()> {
    {
        let _global = ctx.locks.acquire(true, &[], progress).await?;
        let file = ctx.config.layout.index_file.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let (key, name) = (copy.key.clone(), copy.name.clone());
            crate::index::update(&file, &id, |entry| add_copy(entry, copy).map(|()| (true, ())))?
                .ok_or_else(|| {
                    Error::Environment(format!(
                        "the index entry of {id} went away while it was pushed: the copy at {key} in {name} is not recorded"
                    ))
                })
        })
        .await??;
    }
    progress.changed(id);
    Ok(())
}

/// Put `copy` in `entry.remotes`, replacing the record of the same remote;
/// refused when the field holds something else than a list (another
/// writer's; it is never thrown away).
fn add_copy(entry: &mut BackupEntry, copy: RemoteCopy) -> Result<()> {
    match &mut entry.remotes {
        None => entry.remotes = Some(Lenient::Typed(vec![Lenient::Typed(copy)])),
        Some(Lenient::Typed(list)) => {
            list.retain(|c| c.typed().is_none_or(|t| t.name != copy.name));
            list.push(Lenient::Typed(copy));
        }
        Some(Lenient::Other(_)) => {
            return Err(Error::Environment(format!(
                "the remotes field of {}'s index entry is not a list abssd knows: the copy at {} is not recorded (fix the entry)",
                entry.id, copy.key
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(name: &str, key: &str) -> RemoteCopy {
        RemoteCopy {
            name: name.into(),
            key: key.into(),
            sha256: "00".into(),
            size_bytes: 1,
            uploaded_at: "2026-01-01T00:00:00Z".into(),
            encrypted: false,
            extra: Default::default(),
        }
    }

    #[test]
    fn a_copy_joins_the_list_replacing_only_its_remotes_record() {
        let mut entry: BackupEntry = serde_json::from_value(serde_json::json!({
            "id": "20260101-000000-alpha-0a1b2c", "instance": "alpha",
            "created_at": "2026-01-01T00:00:00Z", "path": "/x.tar.zst", "status": "available",
            "remotes": [{"someone": "else"}]
        }))
        .unwrap();
        add_copy(&mut entry, copy("a", "k1")).unwrap();
        add_copy(&mut entry, copy("b", "k2")).unwrap();
        add_copy(&mut entry, copy("a", "k3")).unwrap();
        let v = serde_json::to_value(&entry).unwrap();
        let list = v["remotes"].as_array().unwrap();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[0], serde_json::json!({"someone": "else"}));
        assert_eq!(entry.remote_copy("a").unwrap().key, "k3");
        let mut odd: BackupEntry = serde_json::from_value(serde_json::json!({
            "id": "20260101-000000-alpha-0a1b2c", "instance": "alpha",
            "created_at": "2026-01-01T00:00:00Z", "path": "/x.tar.zst", "status": "available",
            "remotes": "elsewhere"
        }))
        .unwrap();
        assert!(add_copy(&mut odd, copy("a", "k")).is_err());
        assert_eq!(
            serde_json::to_value(&odd).unwrap()["remotes"],
            serde_json::json!("elsewhere")
        );
    }
}
