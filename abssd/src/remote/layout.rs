//! Where a backup's objects go in a remote: under `<prefix>/<instance>/`,
//!
//! * the archive, named as on disk (`<id>.tar.zst`), plus `.age` when encrypted;
//! * its checksum sidecar, as on disk (`<archive name>.sha256`, the plain
//!   archive's SHA-256 in `sha256sum`'s format, never encrypted);
//! * its index entry as JSON (`<id>.json`, plus `.age` when encrypted: it
//!   holds the operator's message and labels).
//!
//! So a bucket is readable with standard tools: `age -d` then `sha256sum -c`.

use abssd_proto::{BackupEntry, RemoteCopy};

use crate::config::remotes::RemoteSettings;
use crate::error::{Error, Result};

/// Longest file name of an archive that is copied.
const MAX_FILE_NAME: usize = 200;

/// The suffix of an encrypted object.
pub const AGE_SUFFIX: &str = ".age";
/// The suffix of a checksum sidecar.
pub const SIDECAR_SUFFIX: &str = ".sha256";
/// The suffix of an index entry.
pub const ENTRY_SUFFIX: &str = ".json";

/// The keys of one backup's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The archive (encrypted or not).
    pub archive: String,
    /// The checksum sidecar.
    pub sidecar: String,
    /// The index entry.
    pub entry: String,
}

/// `<prefix>/<instance>/` (or `<instance>/` with no prefix).
pub fn instance_prefix(remote: &RemoteSettings, instance: &str) -> String {
    if remote.prefix.is_empty() {
        format!("{instance}/")
    } else {
        format!("{}/{instance}/", remote.prefix)
    }
}

/// `<prefix>/` (empty with no prefix): everything abssd stores in the bucket.
pub fn root_prefix(remote: &RemoteSettings) -> String {
    if remote.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", remote.prefix)
    }
}

/// The keys of backup `id` of `instance` whose archive is `archive_path`
/// on disk, encrypted or not. Refused for a name a key should not hold
/// (an index entry is text others may have written).
pub fn keys(
    remote: &RemoteSettings,
    instance: &str,
    id: &str,
    archive_path: &str,
    encrypted: bool,
) -> Result<Keys> {
    let file = archive_path.rsplit('/').next().unwrap_or("");
    for (what, name) in [
        ("instance", instance),
        ("backup id", id),
        ("archive name", file),
    ] {
        if !safe(name) {
            return Err(Error::validation(format!(
                "the {what} {:?} cannot name an object in a remote (1 to {MAX_FILE_NAME} of A-Z, a-z, 0-9, -, _ and ., not starting with .)",
                crate::error::shown(name)
            )));
        }
    }
    let dir = instance_prefix(remote, instance);
    let age = if encrypted { AGE_SUFFIX } else { "" };
    Ok(Keys {
        archive: format!("{dir}{file}{age}"),
        sidecar: format!("{dir}{file}{SIDECAR_SUFFIX}"),
        entry: format!("{dir}{id}{ENTRY_SUFFIX}{age}"),
    })
}

/// The keys of `entry`'s recorded `copy` in `remote`: the copy must be where
/// a push puts it, under this remote's prefix. An index entry is text others
/// may have written, and whatever a record names is what a pull reads and a
/// prune deletes; so a record naming any other key is refused.
pub fn recorded(remote: &RemoteSettings, entry: &BackupEntry, copy: &RemoteCopy) -> Result<Keys> {
    let made = keys(
        remote,
        &entry.instance,
        &entry.id,
        &entry.path,
        copy.encrypted,
    )?;
    if copy.key != made.archive {
        return Err(Error::validation(format!(
            "backup {}'s copy in remote {} is recorded at {:?}, not at {:?} where its archive goes",
            crate::error::shown(&entry.id),
            remote.name,
            crate::error::shown(&copy.key),
            made.archive
        )));
    }
    Ok(made)
}

fn safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What an object under an instance's prefix is, from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// An index entry of backup `id`.
    Entry {
        /// The backup.
        id: String,
        /// `.json.age`.
        encrypted: bool,
    },
    /// A checksum sidecar of the archive named `archive`.
    Sidecar {
        /// The archive's file name.
        archive: String,
    },
    /// An archive named `file` (without `.age`).
    Archive {
        /// Its file name on disk.
        file: String,
        /// `.age`.
        encrypted: bool,
    },
}

/// `key`'s instance and what it is, if it is under `root_prefix(remote)`
/// and shaped as [`keys`] makes them.
pub fn classify(remote: &RemoteSettings, key: &str) -> Option<(String, Object)> {
    let rest = key.strip_prefix(&root_prefix(remote))?;
    let (instance, name) = rest.split_once('/')?;
    if !safe(instance) || !safe(name) {
        return None;
    }
    let object = if let Some(id) = name.strip_suffix(".json.age") {
        Object::Entry {
            id: id.to_owned(),
            encrypted: true,
        }
    } else if let Some(id) = name.strip_suffix(ENTRY_SUFFIX) {
        Object::Entry {
            id: id.to_owned(),
            encrypted: false,
        }
    } else if let Some(archive) = name.strip_suffix(SIDECAR_SUFFIX) {
        Object::Sidecar {
            archive: archive.to_owned(),
        }
    } else if let Some(file) = name.strip_suffix(AGE_SUFFIX) {
        Object::Archive {
            file: file.to_owned(),
            encrypted: true,
        }
    } else {
        Object::Archive {
            file: name.to_owned(),
            encrypted: false,
        }
    };
    Some((instance.to_owned(), object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(prefix: &str) -> RemoteSettings {
        RemoteSettings::for_tests("o", "http://127.0.0.1:9", prefix)
    }

    #[test]
    fn a_recorded_copy_names_only_where_a_push_puts_it() {
        let r = remote("site");
        let id = "20261204-010203-ab-0a1b2c";
        let entry: BackupEntry = serde_json::from_value(serde_json::json!({
            "id": id, "instance": "ab", "path": format!("/srv/backups/ab/{id}.tar.zst"),
            "created_at": "2026-12-04T01:02:03Z", "status": "available",
        }))
        .unwrap();
        let copy = |key: &str, encrypted: bool| -> RemoteCopy {
            serde_json::from_value(serde_json::json!({
                "name": "o", "key": key, "sha256": "0".repeat(64), "size_bytes": 1,
                "uploaded_at": "2026-12-04T01:02:04Z", "encrypted": encrypted,
            }))
            .unwrap()
        };
        let made = recorded(&r, &entry, &copy(&format!("site/ab/{id}.tar.zst"), false)).unwrap();
        assert_eq!(made.sidecar, format!("site/ab/{id}.tar.zst.sha256"));
        assert_eq!(made.entry, format!("site/ab/{id}.json"));
        for (key, encrypted) in [
            // another instance's archive, another prefix, any key at all
            (format!("site/cd/{id}.tar.zst"), false),
            (format!("other/ab/{id}.tar.zst"), false),
            ("backups.json".to_owned(), false),
            // encrypted key for a copy recorded plain, and the other way
            (format!("site/ab/{id}.tar.zst.age"), false),
            (format!("site/ab/{id}.tar.zst"), true),
        ] {
            let err = recorded(&r, &entry, &copy(&key, encrypted)).unwrap_err();
            assert!(err.to_string().contains("is recorded at"), "{key}: {err}");
        }
    }

    #[test]
    fn keys_round_trip_through_classify() {
        let r = remote("a/b");
        let id = "20261204-010203-ab-0a1b2c";
        let k = keys(&r, "ab", id, &format!("/srv/backups/ab/{id}.tar.zst"), true).unwrap();
        assert_eq!(k.archive, format!("a/b/ab/{id}.tar.zst.age"));
        assert_eq!(k.sidecar, format!("a/b/ab/{id}.tar.zst.sha256"));
        assert_eq!(k.entry, format!("a/b/ab/{id}.json.age"));
        assert_eq!(
            classify(&r, &k.archive),
            Some((
                "ab".into(),
                Object::Archive {
                    file: format!("{id}.tar.zst"),
                    encrypted: true
                }
            ))
        );
        assert_eq!(
            classify(&r, &k.entry),
            Some((
                "ab".into(),
                Object::Entry {
                    id: id.into(),
                    encrypted: true
                }
            ))
        );
        assert_eq!(classify(&r, "other/ab/x"), None);
        assert_eq!(classify(&r, "a/b/ab/deep/x"), None);
        let plain = keys(&remote(""), "ab", id, "x.tar", false).unwrap();
        assert_eq!(plain.archive, "ab/x.tar");
    }

    #[test]
    fn a_name_that_cannot_be_a_key_is_refused() {
        let r = remote("");
        for (instance, path) in [
            ("ab", "/x/../.."),
            ("ab", "/x/a b.tar"),
            ("a/b", "/x/y.tar"),
            ("ab", "/x/.hidden"),
        ] {
            assert!(
                keys(&r, instance, "id", path, false).is_err(),
                "{instance} {path}"
            );
        }
    }
}
