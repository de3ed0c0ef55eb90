//! Off-host copies of backups in S3-compatible object storage:
//! the client, the credentials, the object layout and the streamed,
//! optionally encrypted transfers. The operations built on them (push,
//! pull, `remote test`) are in [`crate::ops`]; the remotes' settings in
//! [`crate::config::remotes`].
//!
//! Layout:
//! * [`s3`]       — S3 requests: signed by `aws-sigv4`, sent by ureq.
//! * [`listing`]  — paging through a listing a server may answer endlessly.
//! * [`creds`]    — reading a remote's credentials (root-only files, systemd credentials).
//! * [`layout`]   — the keys of a backup's objects under `<prefix>/<instance>/`.
//! * [`crypt`]    — age encryption and decryption of copies.
//! * [`transfer`] — streamed uploads (multipart, never overwriting) and
//!   downloads, hashed as they go.

pub mod creds;
pub mod crypt;
#[cfg(test)]
pub(crate) mod fake;
pub mod layout;
pub mod listing;
pub mod s3;
pub mod transfer;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

pub use crate::config::remotes::{CredentialSource, RemoteSettings};
pub use creds::Credentials;
pub use s3::{Patience, S3, S3Error, S3ErrorKind};

/// A client of `remote`, its credentials read now.
pub fn connect(remote: &RemoteSettings) -> crate::Result<S3> {
    connect_with(remote, Patience::OPERATION)
}

/// A client of `remote` as patient as `patience` (start-up recovery's is
/// short: systemd waits 90 s for the daemon in all).
pub fn connect_with(remote: &RemoteSettings, patience: Patience) -> crate::Result<S3> {
    let credentials = Credentials::load(&remote.name, &remote.credentials)?;
    Ok(S3::new(remote, credentials, patience))
}

/// The remotes that failed once in one start-up recovery pass: not asked
/// again until the next start (their journals are kept), so a dead or
/// black-holed endpoint costs one short timeout, not one per request of
/// every journal, and the daemon is ready within systemd's start timeout.
#[derive(Debug, Clone, Default)]
pub struct Unreachable(Arc<Mutex<BTreeSet<String>>>);

impl Unreachable {
    /// Whether remote `name` failed earlier in this pass.
    pub fn has(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Remote `name` failed: leave it alone for the rest of the pass.
    pub fn mark(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
    }
}
