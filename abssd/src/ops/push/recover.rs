//! Start-up recovery of a push the daemon was stopped in: its open multipart
//! upload is abandoned, and an archive object no sidecar followed and no
//! index entry records is deleted (the journal names its key, and the key
//! was free when the upload began), so the next push starts clean. A copy
//! whose sidecar is there is left: the next push finds it (`already`).
//! Blocking.

use std::path::Path;

use crate::config::remotes::RemoteSettings;
use crate::index::Index;
use crate::journal::{Record, Step};
use crate::remote::{self, Patience, S3Error, Unreachable};

/// What recovery did, and what it left for the next start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Done, one line each.
    pub done: Vec<String>,
    /// Not done (the remote unreachable or gone), one line each.
    pub left: Vec<String>,
    /// The index records the copy: the push had finished.
    pub recorded: bool,
}

/// Recover the push journaled in `record`, with the configured `remotes`.
/// Each request is tried once, briefly; a remote that fails is marked in
/// `unreachable` and not asked again in this start-up pass.
pub fn recover(
    index_file: &Path,
    remotes: &[RemoteSettings],
    record: &Record,
    unreachable: &Unreachable,
) -> Recovered {
    let mut out = Recovered::default();
    let mut archives: Vec<(&str, &str, &str, Vec<&str>)> = Vec::new();
    for step in &record.steps {
        if let Step::RemoteArchive {
            remote,
            key,
            sidecar,
            upload_id,
        } = step
        {
            match archives
                .iter_mut()
                .find(|(r, k, _, _)| r == remote && k == key)
            {
                Some((_, _, _, ids)) => ids.extend(upload_id.as_deref()),
                None => archives.push((
                    remote,
                    key,
                    sidecar,
                    upload_id.as_deref().into_iter().collect(),
                )),
            }
        }
    }
    for (name, key, sidecar, uploads) in archives {
        let Some(settings) = remotes.iter().find(|r| r.name == name) else {
            out.left.push(format!(
                "remote {name} is no longer configured: an unfinished upload of {key} may be left in it"
            ));
            continue;
        };
        let recorded = match Index::load(index_file) {
            Ok(index) => index
                .get(&record.backup_id)
                .and_then(|e| e.remote_copy(name))
                .is_some_and(|c| c.key == key),
            Err(e) => {
                out.left.push(format!(
                    "the index cannot be read ({e}): the upload of {key} to {name} is left as it is"
                ));
                continue;
            }
        };
        if recorded {
            out.recorded = true;
            continue;
        }
        if unreachable.has(name) {
            out.left.push(format!(
                "remote {name} failed earlier in this start: the upload of {key} to it is left for the next start"
            ));
            continue;
        }
        let s3 = match remote::connect_with(settings, Patience::START_UP) {
            Ok(s) => s,
            Err(e) => {
                unreachable.mark(name);
                out.left
                    .push(format!("{e}: the upload of {key} to {name} is left"));
                continue;
            }
        };
        let cleaned = uploads
            .iter()
            .try_for_each(|id| {
                s3.abort_multipart(key, id)?;
                out.done.push(format!(
                    "abandoned the unfinished upload of {key} to {name}"
                ));
                Ok::<_, S3Error>(())
            })
            .and_then(|()| match s3.head(key)? {
                None => Ok(false),
                Some(_) => match s3.head(sidecar)? {
                    Some(_) => Ok(false),
                    None => s3.delete(key).map(|()| true),
                },
            });
        match cleaned {
            Ok(true) => out.done.push(format!(
                "deleted {key} from {name}: its push had not finished"
            )),
            Ok(false) => {}
            Err(e) => {
                unreachable.mark(name);
                out.left.push(format!("{e}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use abssd_proto::Command;

    use super::*;
    use crate::config::remotes::CredentialSource;
    use crate::remote::fake;

    fn record(key: &str) -> Record {
        Record {
            steps: vec![Step::RemoteArchive {
                remote: "fake".into(),
                key: key.into(),
                sidecar: format!("{key}.sha256"),
                upload_id: Some("u1".into()),
            }],
            ..Record::new(
                "op".into(),
                Command::BackupPush,
                "alpha".into(),
                "20260101-000000-alpha-a1b2c3".into(),
            )
        }
    }

    #[test]
    fn a_failing_remote_is_asked_once_in_a_start_up_pass_and_its_journals_are_left() {
        let fake = fake::serve(|_, _, stream| fake::reply(stream, 503, ""));
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join("cred");
        std::fs::write(&cred, "aws_access_key_id = a\naws_secret_access_key = b\n").unwrap();
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
        let remote = RemoteSettings {
            credentials: CredentialSource::File(cred),
            ..fake.remote()
        };
        let index = dir.path().join("index.json");
        std::fs::write(&index, r#"{"backups":[]}"#).unwrap();
        let unreachable = Unreachable::default();
        let remotes = [remote];

        let first = recover(&index, &remotes, &record("p/alpha/1"), &unreachable);
        assert!(!first.left.is_empty(), "{first:?}");
        assert!(first.done.is_empty(), "{first:?}");
        // One request, not repeated (the abort failed: nothing else tried).
        assert_eq!(fake.count(), 1, "{:?}", fake.requests.lock().unwrap());
        assert!(unreachable.has("fake"));

        let second = recover(&index, &remotes, &record("p/alpha/2"), &unreachable);
        assert_eq!(second.left.len(), 1, "{second:?}");
        assert!(second.left[0].contains("failed earlier"), "{second:?}");
        assert_eq!(fake.count(), 1, "not asked again in this pass");
    }
}
