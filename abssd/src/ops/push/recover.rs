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
use crate::remote;

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
pub fn recover(index_file: &Path, remotes: &[RemoteSettings], record: &Record) -> Recovered {
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
        let s3 = match remote::connect(settings) {
            Ok(s) => s,
            Err(e) => {
                out.left
                    .push(format!("{e}: the upload of {key} to {name} is left"));
                continue;
            }
        };
        for id in uploads {
            match s3.abort_multipart(key, id) {
                Ok(()) => out.done.push(format!(
                    "abandoned the unfinished upload of {key} to {name}"
                )),
                Err(e) => out.left.push(format!("{e}")),
            }
        }
        let cleaned = s3.head(key).and_then(|archive| match archive {
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
            Err(e) => out.left.push(format!("{e}")),
        }
    }
    out
}
