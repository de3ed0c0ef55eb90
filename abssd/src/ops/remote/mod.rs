//! `remote list` and `remote test NAME`: the remotes of abssd.yml as abssd
//! resolved them, and a check that one works end to end.
//!
//! * [`list`] — every remote's settings and where its credentials are read
//!   from; never the credentials (any peer that may read may call it).
//! * [`test`] — reads the credentials, lists, puts a probe object, reads it
//!   back and deletes it, each step reported in plain words; the probe is
//!   deleted whatever failed after it was put.

use abssd_proto::{CredentialsInfo, RemoteInfo, RemoteListResult, RemoteTestResult};

use crate::config::remotes::{CredentialSource, RemoteSettings};
use crate::error::Result;
use crate::ops::Ctx;

mod probe;

pub use probe::{PROBE_PREFIX, probe_key};

/// `remote.list`.
pub fn list(ctx: &Ctx) -> RemoteListResult {
    RemoteListResult {
        remotes: ctx.config.remotes.all().iter().map(info).collect(),
    }
}

/// What `remote.list` shows of one remote: where it is and how it is
/// reached, never what the credentials are.
pub fn info(r: &RemoteSettings) -> RemoteInfo {
    RemoteInfo {
        name: r.name.clone(),
        endpoint: r.endpoint.as_str().to_owned(),
        bucket: r.bucket.clone(),
        prefix: r.prefix.clone(),
        region: r.region.clone(),
        path_style: r.path_style,
        encrypted: r.encrypted(),
        recipients: r.age_recipients.len(),
        identity_file: r.age_identity_file.is_some(),
        auto_push: r.auto_push,
        part_size_bytes: r.part_size as u64,
        credentials: match &r.credentials {
            CredentialSource::File(path) => CredentialsInfo::File {
                path: path.display().to_string(),
            },
            CredentialSource::Systemd(name) => CredentialsInfo::Systemd { name: name.clone() },
        },
    }
}

/// `remote.test NAME`: the steps run off the runtime (every request has its
/// timeouts, but they are network waits all the same).
pub async fn test(ctx: &Ctx, name: &str) -> Result<RemoteTestResult> {
    let remote = ctx.config.remotes.pick(Some(name))?.clone();
    // Each test holds a blocking thread and its connections for as long as
    // the remote's timeouts allow: a few at once, the others wait their turn.
    let _turn = RUNNING
        .acquire()
        .await
        .map_err(|_| crate::error::Error::Internal("the remote tests' semaphore closed".into()))?;
    Ok(tokio::task::spawn_blocking(move || probe::run(&remote)).await?)
}

/// `remote test`s that may run at once.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_names_where_credentials_are_and_never_what() {
        let r = RemoteSettings {
            region: "eu-central-1".into(),
            credentials: CredentialSource::File("/etc/abssctl/off.cred".into()),
            age_recipients: vec![
                "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into(),
            ],
            age_identity_file: Some("/etc/abssctl/off.key".into()),
            auto_push: true,
            part_size: 8 << 20,
            ..RemoteSettings::for_tests("off", "http://127.0.0.1:9/gw", "a/b")
        };
        let i = info(&r);
        assert_eq!(i.endpoint, "http://127.0.0.1:9/gw");
        assert!(i.encrypted && i.identity_file && i.auto_push);
        assert_eq!(i.recipients, 1);
        assert_eq!(
            i.credentials,
            CredentialsInfo::File {
                path: "/etc/abssctl/off.cred".into()
            }
        );
        let json = serde_json::to_value(&i).unwrap();
        assert_eq!(json["credentials"]["kind"], "file");
        assert!(json.get("age_identity_file").is_none());
    }
}
