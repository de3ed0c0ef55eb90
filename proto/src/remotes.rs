//! `remote.list` and `remote.test`: the remotes of abssd.yml (`remotes:`) as
//! abssd sees them, and a check that one works. Never a key or a secret.

use serde::{Deserialize, Serialize};

/// Where a remote's credentials are read from (never what they are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialsInfo {
    /// A root-only file (`credentials_file`).
    File {
        /// Its path.
        path: String,
    },
    /// A systemd credential (`credential`, `LoadCredential=`).
    Systemd {
        /// Its name.
        name: String,
    },
}

/// One remote, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteInfo {
    /// Its name in `remotes:`.
    pub name: String,
    /// The S3 endpoint URL.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Key prefix (may be empty): objects go under `<prefix>/<instance>/`.
    pub prefix: String,
    /// SigV4 region.
    pub region: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Copies are age-encrypted.
    pub encrypted: bool,
    /// How many age recipients copies are encrypted to.
    pub recipients: usize,
    /// Whether `age_identity_file` is set (pulls of encrypted copies need it).
    pub identity_file: bool,
    /// Each new backup is pushed.
    pub auto_push: bool,
    /// Bytes per part of a multipart upload.
    pub part_size_bytes: u64,
    /// Where the credentials are read from.
    pub credentials: CredentialsInfo,
}

/// `remote.list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteListResult {
    /// The remotes, by name.
    pub remotes: Vec<RemoteInfo>,
}

/// `remote.test` parameters (`abssctl remote test NAME`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTestParams {
    /// The remote's name; also read as `remote`, the name the other methods
    /// give it.
    #[serde(alias = "remote")]
    pub name: String,
}

/// One step of `remote.test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTestStep {
    /// `credentials`, `list`, `put`, `get`, `delete`.
    pub step: String,
    /// `ok`, `failed`, or `skipped` (an earlier step failed).
    pub status: String,
    /// What happened, in plain words.
    pub message: String,
}

/// `remote.test` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTestResult {
    /// The remote's name.
    pub name: String,
    /// Every step passed.
    pub ok: bool,
    /// The probe object's key.
    pub probe_key: String,
    /// The steps, in order.
    pub steps: Vec<RemoteTestStep>,
}

/// A step passed.
pub const STEP_OK: &str = "ok";
/// A step failed.
pub const STEP_FAILED: &str = "failed";
/// A step was not tried.
pub const STEP_SKIPPED: &str = "skipped";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remote_to_test_is_named_by_name_or_remote() {
        for text in [r#"{"name":"off"}"#, r#"{"remote":"off"}"#] {
            let p: RemoteTestParams = serde_json::from_str(text).unwrap();
            assert_eq!(p.name, "off", "{text}");
        }
        assert!(serde_json::from_str::<RemoteTestParams>(r#"{"name":"a","remote":"b"}"#).is_err());
    }
}
