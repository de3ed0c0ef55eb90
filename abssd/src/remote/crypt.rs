//! age encryption of copies (X25519 recipients; the output is the standard
//! age format, which `age -d -i KEY` reads), and decryption with the
//! identities of a root-only file read at pull time.

use std::io::{Read, Write};
use std::path::Path;

use crate::config::remotes::RemoteSettings;
use crate::error::{Error, Result};

/// A writer that encrypts to `recipients` (checked when the configuration
/// was read) into `out`; `finish()` it to write the last chunk.
pub fn encrypt<W: Write>(recipients: &[String], out: W) -> Result<age::stream::StreamWriter<W>> {
    let parsed = recipients
        .iter()
        .map(|r| {
            r.parse::<age::x25519::Recipient>().map_err(|_| {
                Error::Validation(format!(
                    "{:?} is not an age X25519 public key",
                    crate::error::shown(r)
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::Validation(format!("cannot encrypt: {e}")))?;
    encryptor.wrap_output(out).map_err(|e| Error::Io {
        action: "starting encryption",
        path: Default::default(),
        source: e,
    })
}

/// The identities that decrypt `remote`'s copies, from its
/// `age_identity_file`; an environment error naming the key when it is not
/// set. `what` says what is encrypted, for that error.
pub fn identities_of(
    remote: &RemoteSettings,
    what: &str,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let file = remote.age_identity_file.as_deref().ok_or_else(|| {
        Error::Environment(format!(
            "{what} is encrypted, and remotes.{}.age_identity_file is not set in abssd.yml: name the file holding the age identity that decrypts this remote's copies",
            remote.name
        ))
    })?;
    identities(file)
}

/// The identities of `file` (root-only, as credentials are).
pub fn identities(file: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let text = super::creds::read_secret_file(file, "age identity")?;
    age::IdentityFile::from_buffer(text.as_bytes())
        .and_then(|f| f.into_identities().map_err(std::io::Error::other))
        .map_err(|e| {
            Error::Environment(format!(
                "the age identity file {} cannot be read as one: {e}",
                file.display()
            ))
        })
}

/// A reader of `input` decrypted with `identities`.
pub fn decrypt<R: Read>(
    identities: &[Box<dyn age::Identity + Send + Sync>],
    input: R,
) -> Result<age::stream::StreamReader<R>> {
    let decryptor = age::Decryptor::new(input)
        .map_err(|e| Error::CorruptArchive(format!("the remote copy is not an age file: {e}")))?;
    decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            Error::Environment(format!(
                "the remote copy cannot be decrypted with the configured identity: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use age::secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_copy_encrypted_to_a_key_decrypts_with_its_identity() {
        let key = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("id");
        std::fs::write(&file, key.to_string().expose_secret()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut w = encrypt(&[key.to_public().to_string()], Vec::new()).unwrap();
        w.write_all(b"budget").unwrap();
        let sealed = w.finish().unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"));
        let ids = identities(&file).unwrap();
        let mut plain = String::new();
        decrypt(&ids, sealed.as_slice())
            .unwrap()
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "budget");
        let other = age::x25519::Identity::generate();
        std::fs::write(&file, other.to_string().expose_secret()).unwrap();
        let e = decrypt(&identities(&file).unwrap(), sealed.as_slice())
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot be decrypted"), "{e}");
    }
}
