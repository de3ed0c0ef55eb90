//! Remotes for the tests of off-host copies, the one way tests configure and
//! fill them:
//!
//! * [`Remote`]: one remote of abssd.yml's `remotes:` pointing at an
//!   [`S3Server`] (or anywhere, [`Remote::at`]), its root-only credentials
//!   file, and the settings abssd resolves from it; [`section`] writes them.
//! * [`age_key`]: an age identity made by the `age-keygen` command.
//! * [`push_copy`] lays out a backup's objects (archive, sidecar, entry
//!   object) exactly as `backup push` does, with abssd's own upload;
//!   [`record_copy`] records the copy in the index as a push does last;
//!   [`copy_backup`] does both for a backup of the index.
//! * [`plant_foreign`]: a backup only the remote has, as another host pushed
//!   it. Hostile objects are put straight with [`S3Server::put`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd::config::{ConfigFile, RemoteSettings, Remotes};
use abssd::remote::{crypt, layout, transfer};
use abssd_proto::{BackupEntry, RemoteCopy};
use serde_json::{Value, json};

use crate::s3::S3Server;

/// When the copies these helpers make say they were uploaded.
const UPLOADED_AT: &str = "2026-12-04T05:00:00Z";

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

/// A credentials file `dir/<name>.cred`; see [`write_credentials`].
pub fn credentials_file(dir: &Path, name: &str, access_key: &str, secret_key: &str) -> PathBuf {
    let file = dir.join(format!("{name}.cred"));
    write_credentials(&file, access_key, secret_key);
    file
}

/// Write `file` (0600, owned by this process: root in the tests that run
/// the daemon) in the AWS shared-credentials shape abssd reads.
fn write_credentials(file: &Path, access_key: &str, secret_key: &str) {
    fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
    fs::write(
        file,
        format!(
            "[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
        ),
    )
    .expect("write credentials");
    fs::set_permissions(file, fs::Permissions::from_mode(0o600)).expect("chmod");
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
    /// The region requests are signed for.
    pub region: String,
    /// Key prefix (may be empty).
    pub prefix: String,
    /// The credentials file.
    pub credentials_file: PathBuf,
    /// A systemd credential's name, read instead of the file when set.
    pub credential: Option<String>,
    /// age recipients (encrypted copies when not empty).
    pub recipients: Vec<String>,
    /// The identity file, if configured.
    pub identity_file: Option<PathBuf>,
    /// `part_size_mib`, when not abssd's default.
    pub part_size_mib: Option<u32>,
    /// `auto_push`.
    pub auto_push: bool,
    /// More of the remote's keys as YAML, unindented (`retention:\n  keep_last: 1`).
    pub extra: String,
}

impl Remote {
    /// Remote `name` of `server`'s bucket under `prefix`, with its
    /// credentials written into `dir`.
    pub fn of(server: &S3Server, dir: &Path, name: &str, prefix: &str) -> Remote {
        Remote {
            name: name.to_owned(),
            endpoint: server.endpoint(),
            bucket: server.bucket().to_owned(),
            region: server.region().to_owned(),
            prefix: prefix.to_owned(),
            credentials_file: credentials_file(dir, name, server.access_key(), server.secret_key()),
            credential: None,
            recipients: Vec::new(),
            identity_file: None,
            part_size_mib: None,
            auto_push: false,
            extra: String::new(),
        }
    }

    /// Reached at `endpoint` instead (a [`crate::s3::Cutter`] in front of
    /// the server, or a port nothing listens on).
    pub fn at(mut self, endpoint: &str) -> Remote {
        self.endpoint = endpoint.to_owned();
        self
    }

    /// Its credentials file rewritten with these keys (a wrong secret).
    pub fn with_credentials(self, access_key: &str, secret_key: &str) -> Remote {
        write_credentials(&self.credentials_file, access_key, secret_key);
        self
    }

    /// Reading systemd credential `name` (`credential:`) instead of its file.
    pub fn with_systemd_credential(mut self, name: &str) -> Remote {
        self.credential = Some(name.to_owned());
        self
    }

    /// Encrypted to `key`, which decrypts at pull.
    pub fn encrypted_to(mut self, key: &AgeKey) -> Remote {
        self.recipients = vec![key.recipient.clone()];
        self.identity_file = Some(key.identity_file.clone());
        self
    }

    /// Uploaded in parts of `mib` MiB.
    pub fn part_size_mib(mut self, mib: u32) -> Remote {
        self.part_size_mib = Some(mib);
        self
    }

    /// Pushed to after each create.
    pub fn auto_push(mut self) -> Remote {
        self.auto_push = true;
        self
    }

    /// With more keys (YAML, unindented, each line a key or under one).
    pub fn with(mut self, yaml: &str) -> Remote {
        for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
            self.extra.push_str(line);
            self.extra.push('\n');
        }
        self
    }

    /// Its mapping under `remotes:` (indented for it).
    pub fn yaml(&self) -> String {
        let mut keys = vec![
            format!("endpoint: {}", json!(self.endpoint)),
            format!("bucket: {}", json!(self.bucket)),
            format!("region: {}", json!(self.region)),
            format!("prefix: {}", json!(self.prefix)),
            "path_style: true".to_owned(),
            match &self.credential {
                Some(name) => format!("credential: {}", json!(name)),
                None => format!("credentials_file: {}", json!(self.credentials_file)),
            },
        ];
        if !self.recipients.is_empty() {
            keys.push(format!("age_recipients: {}", json!(self.recipients)));
        }
        if let Some(file) = &self.identity_file {
            keys.push(format!("age_identity_file: {}", json!(file)));
        }
        if let Some(mib) = self.part_size_mib {
            keys.push(format!("part_size_mib: {mib}"));
        }
        if self.auto_push {
            keys.push("auto_push: true".to_owned());
        }
        keys.extend(self.extra.lines().map(str::to_owned));
        let mut text = format!("  {}:\n", self.name);
        for key in keys {
            text.push_str(&format!("    {key}\n"));
        }
        text
    }

    /// The settings abssd resolves from [`Remote::yaml`] (by abssd's own
    /// reading of abssd.yml).
    pub fn settings(&self) -> RemoteSettings {
        let text = section(&[self]);
        let file = ConfigFile::parse(Path::new("abssd.yml"), &text)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        Remotes::resolve(&file.remotes)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .pick(Some(&self.name))
            .expect("the remote")
            .clone()
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

/// What `backup push` leaves in `remote` for `entry`, with `bytes` as the
/// archive (not necessarily the entry's: a copy of other bytes is what the
/// tests of mismatches want): the archive (encrypted when the remote
/// encrypts) by abssd's own upload, its sidecar and the entry object
/// (encrypted likewise). The copy to record; nothing is recorded.
pub fn push_copy(remote: &RemoteSettings, entry: &BackupEntry, bytes: &[u8]) -> RemoteCopy {
    let s3 = abssd::remote::connect(remote).expect("connect");
    let encrypted = remote.encrypted();
    let keys = layout::keys(remote, &entry.instance, &entry.id, &entry.path, encrypted)
        .expect("keys of the backup");
    let up = transfer::upload(
        &s3,
        &mut &bytes[..],
        transfer::Upload {
            key: &keys.archive,
            recipients: &remote.age_recipients,
            part_size: remote.part_size,
            expect_sha256: None,
            progress: &mut |_| {},
            on_started: &mut |_| Ok(()),
        },
    )
    .unwrap_or_else(|e| panic!("upload of {}: {e}", entry.id));
    let file = entry.path.rsplit('/').next().expect("a file name");
    let mut sidecar = format!("{}  {file}\n", up.plain_sha256);
    if encrypted {
        sidecar.push_str(&format!("{}  {file}.age\n", up.sha256));
    }
    s3.put(&keys.sidecar, sidecar.as_bytes(), true)
        .expect("put the sidecar");
    let mut object = serde_json::to_vec_pretty(entry).expect("json");
    if encrypted {
        let mut w = crypt::encrypt(&remote.age_recipients, Vec::new()).expect("age");
        w.write_all(&object).expect("encrypt");
        object = w.finish().expect("encrypt");
    }
    s3.put(&keys.entry, &object, true)
        .expect("put the entry object");
    RemoteCopy {
        name: remote.name.clone(),
        key: keys.archive,
        sha256: up.sha256,
        size_bytes: up.size,
        uploaded_at: UPLOADED_AT.into(),
        encrypted,
        extra: Default::default(),
    }
}

/// Record `copy` in backup `id`'s entry of the index at `index_file`, as a
/// push does: replacing the record of the same remote, if any.
pub fn record_copy(index_file: &Path, id: &str, copy: &RemoteCopy) {
    let mut index = read_index(index_file);
    let entry = index["backups"]
        .as_array_mut()
        .expect("backups")
        .iter_mut()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in the index"));
    let copies = entry
        .as_object_mut()
        .expect("entry")
        .entry("remotes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("remotes");
    copies.retain(|c| c["name"] != copy.name.as_str());
    copies.push(json!(copy));
    fs::write(index_file, serde_json::to_vec_pretty(&index).expect("json")).expect("write index");
}

/// Push backup `id` of the index at `index_file` to `remote` (its archive,
/// as [`push_copy`] does) and record the copy; the copy.
pub fn copy_backup(remote: &Remote, index_file: &Path, id: &str) -> RemoteCopy {
    let entry = entry(index_file, id);
    let bytes = fs::read(&entry.path).expect("read the archive");
    let copy = push_copy(&remote.settings(), &entry, &bytes);
    record_copy(index_file, id, &copy);
    copy
}

/// Backup `id`'s entry in the index at `index_file`.
pub fn entry(index_file: &Path, id: &str) -> BackupEntry {
    abssd::index::require(index_file, id).unwrap_or_else(|e| panic!("{id}: {e}"))
}

fn read_index(index_file: &Path) -> Value {
    serde_json::from_slice(&fs::read(index_file).expect("read index")).expect("index")
}

/// A backup of `instance` that only `remote` has, as another host pushed
/// it ([`push_copy`]): an archive holding `bytes`, its entry carrying
/// `message`. The entry.
pub fn plant_foreign(
    remote: &RemoteSettings,
    instance: &str,
    bytes: &[u8],
    message: &str,
) -> BackupEntry {
    // Made now: a copy dated ahead of the clock is not adopted.
    let now = jiff::Timestamp::now();
    let id = abssd::index::new_backup_id(instance, now);
    let mut e = BackupEntry::new(
        id.clone(),
        instance.into(),
        abssd::fsutil::utc(now),
        format!("/srv/elsewhere/{instance}/{id}.tar.zst"),
        "zstd",
        bytes.len() as u64,
        crate::sha256_hex(bytes),
    );
    e.message = Some(message.into());
    push_copy(remote, &e, bytes);
    e
}
