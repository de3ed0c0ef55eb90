//! Remotes for the tests of off-host copies: a `remotes:` section of
//! abssd.yml pointing at an [`S3Server`], the root-only credentials file it
//! names, age keys made by the `age-keygen` command, and copies of backups
//! put in the bucket with abssd's own upload and recorded in the index the
//! way a push records them (helper code for tests that need a copy without
//! testing the push itself).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd::config::remotes::{CredentialSource, Endpoint, RemoteSettings};
use serde_json::{Value, json};

use crate::s3::S3Server;

/// An age identity file (root-only) and its recipient.
#[derive(Debug, Clone)]
pub struct AgeKey {
    /// The identity file, mode 0600.
    pub identity_file: PathBuf,
    /// Its public key (`age1…`).
    pub recipient: String,
}

/// A new age key in `dir/<name>.age-key` (by `age-keygen`, Debian's `age`).
pub fn age_key(dir: &Path, name: &str) -> AgeKey {
    fs::create_dir_all(dir).expect("mkdir");
    let file = dir.join(format!("{name}.age-key"));
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen runs (apt-get install age)");
    assert!(out.status.success(), "age-keygen: {out:?}");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = fs::read_to_string(&file).expect("read key");
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .trim()
        .to_owned();
    AgeKey {
        identity_file: file,
        recipient,
    }
}

/// A credentials file in `dir` (0600, owned by this process: root in the
/// tests that run the daemon) in the AWS shared-credentials shape.
pub fn credentials_file(dir: &Path, name: &str, access_key: &str, secret_key: &str) -> PathBuf {
    fs::create_dir_all(dir).expect("mkdir");
    let file = dir.join(format!("{name}.cred"));
    fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
        ),
    )
    .expect("write credentials");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    file
}

/// One remote of abssd.yml.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Its name.
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Key prefix (may be empty).
    pub prefix: String,
    /// The credentials file.
    pub credentials_file: PathBuf,
    /// age recipients (encrypted copies when not empty).
    pub recipients: Vec<String>,
    /// The identity file, if configured.
    pub identity_file: Option<PathBuf>,
}

impl Remote {
    /// Remote `name` of `server`'s bucket under `prefix`, with its
    /// credentials written into `dir`.
    pub fn of(server: &S3Server, dir: &Path, name: &str, prefix: &str) -> Remote {
        Remote {
            name: name.to_owned(),
            endpoint: server.endpoint(),
            bucket: server.bucket().to_owned(),
            prefix: prefix.to_owned(),
            credentials_file: credentials_file(dir, name, server.access_key(), server.secret_key()),
            recipients: Vec::new(),
            identity_file: None,
        }
    }

    /// Encrypted to `key`, which decrypts at pull.
    pub fn encrypted_to(mut self, key: &AgeKey) -> Remote {
        self.recipients = vec![key.recipient.clone()];
        self.identity_file = Some(key.identity_file.clone());
        self
    }

    /// Its mapping under `remotes:` (indented for it).
    pub fn yaml(&self) -> String {
        let mut text = format!(
            "  {}:\n    endpoint: {}\n    bucket: {}\n    prefix: {}\n    path_style: true\n    credentials_file: {}\n",
            self.name,
            json!(self.endpoint),
            json!(self.bucket),
            json!(self.prefix),
            json!(self.credentials_file),
        );
        if !self.recipients.is_empty() {
            text.push_str(&format!("    age_recipients: {}\n", json!(self.recipients)));
        }
        if let Some(file) = &self.identity_file {
            text.push_str(&format!("    age_identity_file: {}\n", json!(file)));
        }
        text
    }

    /// The settings abssd resolves from [`Remote::yaml`].
    pub fn settings(&self) -> RemoteSettings {
        RemoteSettings {
            name: self.name.clone(),
            endpoint: Endpoint::parse(&self.endpoint).expect("endpoint"),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: "us-east-1".to_owned(),
            path_style: true,
            credentials: CredentialSource::File(self.credentials_file.clone()),
            age_recipients: self.recipients.clone(),
            age_identity_file: self.identity_file.clone(),
            auto_push: false,
            part_size: 5 << 20,
            retention: Default::default(),
        }
    }
}

/// `remotes:` with `remotes` under it.
pub fn section(remotes: &[&Remote]) -> String {
    let mut text = "remotes:\n".to_owned();
    for r in remotes {
        text.push_str(&r.yaml());
    }
    text
}

/// Upload backup `id`'s archive (as the index at `index_file` has it) to
/// `remote` with abssd's own streamed upload, at the key a push uses, and
/// record the copy in the entry's `remotes` as a push does. The copy
/// recorded.
pub fn copy_backup(remote: &Remote, index_file: &Path, id: &str) -> Value {
    let mut index: Value =
        serde_json::from_slice(&fs::read(index_file).expect("read index")).expect("index");
    let entry = index["backups"]
        .as_array_mut()
        .expect("backups")
        .iter_mut()
        .find(|e| e["id"] == id)
        .expect("the backup is in the index");
    let (instance, path) = (
        entry["instance"].as_str().expect("instance").to_owned(),
        entry["path"].as_str().expect("path").to_owned(),
    );
    let sha = entry["checksum"]["value"].as_str().map(str::to_owned);
    let settings = remote.settings();
    let keys = abssd::remote::layout::keys(&settings, &instance, id, &path, settings.encrypted())
        .expect("keys");
    let s3 = abssd::remote::connect(&settings).expect("credentials");
    let mut file = fs::File::open(&path).expect("open archive");
    let up = abssd::remote::transfer::upload(
        &s3,
        &mut file,
        abssd::remote::transfer::Upload {
            key: &keys.archive,
            recipients: &settings.age_recipients,
            part_size: settings.part_size,
            expect_sha256: sha.as_deref(),
            progress: &mut |_| {},
            on_started: &mut |_| Ok(()),
        },
    )
    .unwrap_or_else(|e| panic!("upload of {id}: {e}"));
    let copy = json!({
        "name": remote.name,
        "key": up.key,
        "sha256": up.sha256,
        "size_bytes": up.size,
        "uploaded_at": "2026-12-04T00:00:00Z",
        "encrypted": up.encrypted,
    });
    let copies = entry
        .as_object_mut()
        .expect("entry")
        .entry("remotes")
        .or_insert_with(|| json!([]));
    copies.as_array_mut().expect("remotes").push(copy.clone());
    fs::write(index_file, serde_json::to_vec_pretty(&index).expect("json")).expect("write index");
    copy
}
