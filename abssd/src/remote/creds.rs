//! A remote's access key and secret, read from a file only root can read or
//! from a systemd credential, when a request is about to be made. The
//! secret is never formatted: [`Credentials`]' `Debug` shows the key id only.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::config::remotes::CredentialSource;
use crate::error::{Error, Result};

/// Largest credentials (or identity) file read.
pub const MAX_SECRET_FILE: u64 = 16 << 10;

/// An access key, its secret and an optional session token.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The credentials of remote `name`, read from `source` now.
    pub fn load(name: &str, source: &CredentialSource) -> Result<Credentials> {
        let path = match source {
            CredentialSource::File(p) => p.clone(),
            CredentialSource::Systemd(cred) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    Error::Environment(format!(
                        "remote {name:?} takes its credentials from the systemd credential {cred:?}, \
                         but abssd was started without one: add LoadCredential={cred}:/path/to/file \
                         to abssd.service (systemctl edit abssd.service)"
                    ))
                })?;
                PathBuf::from(dir).join(cred)
            }
        };
        let text = read_secret_file(&path, "credentials")?;
        parse(&text).map_err(|problem| {
            Error::Environment(format!(
                "the credentials of remote {name:?} in {}: {problem}",
                path.display()
            ))
        })
    }

    /// For the signer.
    pub fn aws(&self) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "abssd",
        )
    }
}

/// `path`'s text, read only if it is a regular file (not a link, not a
/// FIFO: opened without following and without blocking), owned by root
/// (or abssd's own user), with no permission for group or others, and at
/// most [`MAX_SECRET_FILE`] bytes. `what` names it in errors.
pub fn read_secret_file(path: &Path, what: &str) -> Result<String> {
    let io = |source: std::io::Error| Error::Io {
        action: "reading a secret file",
        path: path.to_owned(),
        source,
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(io)?;
    let own = rustix::process::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(Error::Environment(format!(
            "the {what} file {} is not a regular file",
            path.display()
        )));
    }
    if meta.uid() != 0 && meta.uid() != own {
        return Err(Error::Environment(format!(
            "the {what} file {} is owned by uid {}: it must be owned by root (chown root {})",
            path.display(),
            meta.uid(),
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Environment(format!(
            "the {what} file {} may be read by others (mode {:o}): chmod 600 {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        )));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(Error::Environment(format!(
            "the {what} file {} is larger than {MAX_SECRET_FILE} bytes",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text)
}

/// The AWS shared-credentials shape: `key = value` lines, one optional
/// `[section]`, `#`/`;` comments. Messages name a line by its number and
/// never quote it: a line mistyped is as likely the secret as a key.
pub(super) fn parse(text: &str) -> std::result::Result<Credentials, String> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut sections = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            sections += 1;
            if sections > 1 {
                return Err("more than one [section]: give one set of credentials".to_owned());
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not key = value", n + 1));
        };
        let value = value.trim();
        if value.is_empty() || value.len() > 2048 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the value on line {} is empty or not printable ASCII",
                n + 1
            ));
        }
        let slot = match key.trim() {
            "aws_access_key_id" => &mut id,
            "aws_secret_access_key" => &mut secret,
            "aws_session_token" => &mut token,
            _ => {
                return Err(format!(
                    "line {} has an unknown key: expected aws_access_key_id, aws_secret_access_key, aws_session_token",
                    n + 1
                ));
            }
        };
        *slot = Some(value.to_owned());
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: token,
        }),
        _ => Err("aws_access_key_id and aws_secret_access_key are both needed".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_shared_credentials_shape_is_read() {
        let c =
            parse("[default]\n# note\naws_access_key_id = AKIA1\naws_secret_access_key=s/e+c\n")
                .unwrap();
        assert_eq!(c.access_key_id, "AKIA1");
        assert_eq!(c.secret_access_key, "s/e+c");
        assert!(!format!("{c:?}").contains("s/e+c"));
        for (bad, says) in [
            ("aws_access_key_id = a\n", "both needed"),
            (
                "aws_access_key_id = a\nsecret = x\n",
                "line 2 has an unknown key",
            ),
            // The secret pasted where a key belongs, or as a line of its own.
            (
                "aws_access_key_id = a\nhunter2 = x\n",
                "line 2 has an unknown key",
            ),
            ("aws_access_key_id = a\nhunter2= \n", "line 2 is empty"),
            (
                "aws_access_key_id = a\naws_secret_access_key =\n",
                "line 2 is empty",
            ),
            ("[a]\n[b]\n", "more than one"),
            ("hunter2\n", "line 1"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("hunter2") && !e.contains("secret ="), "{e}");
        }
    }

    #[test]
    fn a_secret_file_others_may_read_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&f, "credentials").unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&f, "credentials").unwrap(), "x");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(read_secret_file(&link, "credentials").is_err());
        let fifo = dir.path().join("p");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = read_secret_file(&fifo, "credentials").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
