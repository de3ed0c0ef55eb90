use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;

use super::local::Dir;
use super::*;

const SHA_OF_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn the_archive_must_be_named_like_one_beneath_the_root() {
    let root = tempfile::tempdir().unwrap();
    for bad in [
        "/elsewhere/a.tar.zst",
        "alpha/../../x.tar.zst",
        "alpha/backups.json",
        "alpha/x.tar.zst.sha256",
    ] {
        let path = root.path().join(bad);
        let path = if bad.starts_with('/') {
            PathBuf::from(bad)
        } else {
            path
        };
        let e = Dir::open(root.path(), &path).err().unwrap();
        assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation, "{bad}: {e}");
    }
    // A symlink on the way is not followed.
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();
    assert!(Dir::open(root.path(), &root.path().join("evil/x.tar.zst")).is_err());
}

#[test]
fn a_file_is_renamed_in_only_over_nothing_and_a_present_archive_is_checked() {
    let root = tempfile::tempdir().unwrap();
    let archive = root.path().join("alpha/x.tar.zst");
    let dir = Dir::open(root.path(), &archive).unwrap();
    assert_eq!(dir.present(SHA_OF_EMPTY).unwrap(), None);
    let temp = OsStr::new(".x.tar.zst.pull-1");
    drop(dir.create(temp).unwrap());
    let mode = std::fs::metadata(root.path().join("alpha").join(temp))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, fsutil::FILE_MODE);
    // Never over an existing temporary file.
    assert!(dir.create(temp).is_err());
    dir.rename_into_place(temp).unwrap();
    assert_eq!(dir.present(SHA_OF_EMPTY).unwrap(), Some(0));
    // Another file is not renamed over the archive.
    std::fs::write(root.path().join("alpha/.other"), b"x").unwrap();
    let e = dir.rename_into_place(OsStr::new(".other")).unwrap_err();
    assert!(e.to_string().contains("appeared"), "{e}");
    assert_eq!(std::fs::read(&archive).unwrap(), b"");
    // An archive with other bytes is refused, and left alone.
    std::fs::write(&archive, b"other").unwrap();
    let e = dir.present(SHA_OF_EMPTY).unwrap_err();
    assert!(e.to_string().contains("not replacing"), "{e}");
    dir.remove(OsStr::new(".other")).unwrap();
    dir.remove(OsStr::new(".other")).unwrap();
    assert!(!root.path().join("alpha/.other").exists());
}

#[test]
fn recovery_removes_only_the_temporary_file_it_journaled() {
    let root = tempfile::tempdir().unwrap();
    let archive = root.path().join("alpha/x.tar.zst");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let temp = fsutil::hidden_sibling(&archive, "pull", "op1");
    std::fs::write(&temp, b"half").unwrap();
    std::fs::write(&archive, b"kept").unwrap();
    let mut record = Record {
        version: 1,
        op_id: "op1".into(),
        command: Command::BackupPull,
        instance: "alpha".into(),
        backup_id: "b".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        unit_was_active: None,
        steps: vec![Step::Download {
            temp: temp.clone(),
            archive: archive.clone(),
        }],
        outcome: None,
    };
    let done = recover(root.path(), &record).unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(!temp.exists());
    assert_eq!(std::fs::read(&archive).unwrap(), b"kept");
    // Again: nothing to do.
    assert!(recover(root.path(), &record).unwrap().is_empty());
    // A journal naming another file is refused, and the file left alone.
    record.steps = vec![Step::Download {
        temp: archive.clone(),
        archive: archive.clone(),
    }];
    assert!(recover(root.path(), &record).is_err());
    assert!(archive.exists());
}

#[test]
fn the_source_is_the_recorded_copy_checked_against_the_layout() {
    let remote = RemoteSettings::for_tests("off", "http://127.0.0.1:9", "p");
    let id = "20260101-000000-alpha-a1b2c3";
    let mut entry: BackupEntry = serde_json::from_value(serde_json::json!({
        "id": id, "instance": "alpha", "created_at": "2026-01-01T00:00:00Z",
        "path": format!("/srv/b/alpha/{id}.tar.zst"), "status": "missing"
    }))
    .unwrap();
    let s = source(&remote, &entry).unwrap();
    assert_eq!(s.key, format!("p/alpha/{id}.tar.zst"));
    assert_eq!(s.size_bytes, None);
    let copy = |key: &str| {
        serde_json::json!([{ "name": "off", "key": key, "sha256": SHA_OF_EMPTY,
            "size_bytes": 7, "uploaded_at": "2026-01-01T00:00:00Z", "encrypted": true }])
    };
    entry.remotes = serde_json::from_value(copy(&format!("p/alpha/{id}.tar.zst.age"))).unwrap();
    let s = source(&remote, &entry).unwrap();
    assert!(s.encrypted);
    assert_eq!(s.size_bytes, Some(7));
    // A recorded key elsewhere (another backup's, outside the prefix) is refused.
    entry.remotes = serde_json::from_value(copy("p/beta/secret.tar.zst")).unwrap();
    assert!(source(&remote, &entry).is_err());
    let _ = std::fs::Permissions::from_mode(0o600);
}
