//! `remotes:` (abssd's own): the S3-compatible buckets that hold off-host
//! copies of backups, by name.
//!
//! ```yaml
//! remotes:
//!   offsite:
//!     endpoint: https://s3.eu-central-1.amazonaws.com
//!     bucket: acme-backups
//!     prefix: actual            # objects go under actual/<instance>/
//!     region: eu-central-1
//!     path_style: false         # default true (MinIO, Garage, Ceph, moto)
//!     credentials_file: /etc/abssctl/remotes/offsite.cred   # or:
//!     # credential: offsite     # systemd's LoadCredential=offsite:…
//!     age_recipients: [age1…]   # encrypt copies (optional)
//!     age_identity_file: /etc/abssctl/remotes/offsite.age-key  # read at pull only
//!     auto_push: true           # push after each create and backup job
//!     part_size_mib: 16
//! ```
//!
//! Credentials are never in this file, on a command line or in a log: only
//! where they are ([`CredentialSource`]), read when a request is made.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::merge::{Merge, Unknown};
use super::retention::{Retention, RetentionSection};
use super::value::{absolute, whole};

/// Longest remote name.
pub const MAX_NAME: usize = 32;
/// Most remotes one configuration holds.
pub const MAX_REMOTES: usize = 16;
/// Most age recipients of one remote.
pub const MAX_RECIPIENTS: usize = 32;
/// Default part size of a multipart upload, in MiB: what one upload holds in
/// memory at a time.
pub const DEFAULT_PART_SIZE_MIB: u32 = 8;

/// One remote as the file (or a layer above it) says, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of settings")]
pub struct RemoteSection {
    /// `endpoint`: `http(s)://host[:port][/path]`.
    pub endpoint: Option<String>,
    /// `bucket`.
    pub bucket: Option<String>,
    /// `prefix`: objects go under `<prefix>/<instance>/`.
    pub prefix: Option<String>,
    /// `region` (default `us-east-1`).
    pub region: Option<String>,
    /// `path_style`: `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    pub path_style: Option<bool>,
    /// `credentials_file`: a root-only file (see [`CredentialSource::File`]).
    #[serde(deserialize_with = "absolute")]
    pub credentials_file: Option<PathBuf>,
    /// `credential`: the name of a systemd credential (`LoadCredential=`).
    pub credential: Option<String>,
    /// `age_recipients`: X25519 public keys (`age1…`); copies are encrypted to them.
    pub age_recipients: Option<Vec<String>>,
    /// `age_identity_file`: the private key(s) that decrypt, read at pull only.
    #[serde(deserialize_with = "absolute")]
    pub age_identity_file: Option<PathBuf>,
    /// `auto_push`: push each new backup of `create` and `backup run`.
    pub auto_push: Option<bool>,
    /// `part_size_mib`: 5 to 512.
    #[serde(deserialize_with = "whole::<_, u32, 5, 512>")]
    pub part_size_mib: Option<u32>,
    /// `retention:`: what `backup prune --remote NAME` keeps of this remote's
    /// copies (the keys of `backups.retention`; it may keep longer).
    pub retention: RetentionSection,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

impl Merge for RemoteSection {
    fn merge(self, upper: Self) -> Self {
        RemoteSection {
            endpoint: self.endpoint.merge(upper.endpoint),
            bucket: self.bucket.merge(upper.bucket),
            prefix: self.prefix.merge(upper.prefix),
            region: self.region.merge(upper.region),
            path_style: self.path_style.merge(upper.path_style),
            credentials_file: self.credentials_file.merge(upper.credentials_file),
            credential: self.credential.merge(upper.credential),
            age_recipients: self.age_recipients.merge(upper.age_recipients),
            age_identity_file: self.age_identity_file.merge(upper.age_identity_file),
            auto_push: self.auto_push.merge(upper.auto_push),
            part_size_mib: self.part_size_mib.merge(upper.part_size_mib),
            retention: self.retention.merge(upper.retention),
            unknown: self.unknown.merge(upper.unknown),
        }
    }
}

/// `remotes:`, by name; a layer's remote is laid over the same name's below.
#[derive(Debug, Default)]
pub struct RemotesSection(pub BTreeMap<String, RemoteSection>);

impl<'de> Deserialize<'de> for RemotesSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Option::<BTreeMap<String, RemoteSection>>::deserialize(d)?.unwrap_or_default();
        if map.len() > MAX_REMOTES {
            return Err(de::Error::custom(format!(
                "at most {MAX_REMOTES} remotes, found {}",
                map.len()
            )));
        }
        for name in map.keys() {
            check_name(name).map_err(de::Error::custom)?;
        }
        Ok(RemotesSection(map))
    }
}

impl Merge for RemotesSection {
    fn merge(mut self, upper: Self) -> Self {
        for (name, section) in upper.0 {
            let below = self.0.remove(&name).unwrap_or_default();
            self.0.insert(name, below.merge(section));
        }
        self
    }
}

impl RemotesSection {
    /// Keys no remote knows, as `remotes.<name>.<key>`.
    pub fn unknown_keys(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|(name, s)| {
                let own = s.unknown.keys().map(move |k| format!("remotes.{name}.{k}"));
                let rules = s
                    .retention
                    .unknown
                    .keys()
                    .map(move |k| format!("remotes.{name}.retention.{k}"));
                own.chain(rules)
            })
            .collect()
    }
}

/// A remote's name: `[a-z0-9][a-z0-9_-]*`, at most [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a remote's name is 1 to {MAX_NAME} of a-z, 0-9, - and _, starting with a letter or digit; found {:?}",
            crate::error::shown(name)
        ))
    }
}

/// Where a remote's access key and secret are read from, when a request is
/// made (never at start, never logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum CredentialSource {
    /// A file that only root can read (owner root, no group or other
    /// permission, a regular file), in the AWS shared-credentials shape:
    /// `aws_access_key_id = …`, `aws_secret_access_key = …`, optionally
    /// `aws_session_token = …`; a `[section]` line and `#` comments are allowed.
    File(PathBuf),
    /// A systemd credential of abssd.service (`LoadCredential=NAME:/path`),
    /// read from `$CREDENTIALS_DIRECTORY/NAME`, same shape.
    Systemd(String),
}

/// An endpoint URL, checked: `http` or `https`, a host, no user name or
/// password, no query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    /// `text` if it is one (see the type); else why not.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if text.len() > 512 {
            return Err("endpoint must be at most 512 bytes".to_owned());
        }
        let lower = text.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(format!(
                "endpoint must be an http:// or https:// URL, found {:?}",
                crate::error::shown(text)
            ));
        }
        let uri: ureq::http::Uri = text
            .parse()
            .map_err(|_| format!("endpoint {:?} is not a URL", crate::error::shown(text)))?;
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or("endpoint must name a host")?;
        if authority.as_str().contains('@') {
            return Err("endpoint must not hold a user name or password (credentials go in credentials_file)".to_owned());
        }
        if uri.query().is_some() || text.contains('#') {
            return Err("endpoint must not have a query or a fragment".to_owned());
        }
        Ok(Endpoint(text.trim_end_matches('/').to_owned()))
    }

    /// `scheme://host[:port]` and the path (empty, or starting with `/`).
    pub fn split(&self) -> (String, String) {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("https", &self.0));
        match rest.find('/') {
            Some(i) => (format!("{scheme}://{}", &rest[..i]), rest[i..].to_owned()),
            None => (self.0.clone(), String::new()),
        }
    }

    /// `http://` to a host other than this one (loopback).
    pub fn is_plain_off_host(&self) -> bool {
        let (origin, _) = self.split();
        let Some(rest) = origin.strip_prefix("http://") else {
            return false;
        };
        let host = match rest.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => rest.split(':').next().unwrap_or(""),
        };
        !(host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
    }

    /// The URL as written (it holds no secret).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One remote, resolved and checked.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Its name in `remotes:`.
    pub name: String,
    /// The S3 endpoint.
    pub endpoint: Endpoint,
    /// The bucket.
    pub bucket: String,
    /// Key prefix, no leading or trailing `/` (may be empty).
    pub prefix: String,
    /// SigV4 region.
    pub region: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Where the credentials are.
    pub credentials: CredentialSource,
    /// age recipients (`age1…`), checked; empty: copies are not encrypted.
    pub age_recipients: Vec<String>,
    /// The identity file that decrypts (pull only).
    pub age_identity_file: Option<PathBuf>,
    /// Push each new backup.
    pub auto_push: bool,
    /// Bytes per part of a multipart upload (and the one-request limit).
    pub part_size: usize,
    /// What `backup prune --remote` keeps when the request names no rule.
    pub retention: Retention,
}

impl RemoteSettings {
    /// A remote for unit tests: `name` at `endpoint` under `prefix`, bucket
    /// `bbb`, defaults elsewhere, a systemd credential that is never read.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str, endpoint: &str, prefix: &str) -> RemoteSettings {
        RemoteSettings {
            name: name.into(),
            endpoint: Endpoint::parse(endpoint).expect("endpoint"),
            bucket: "bbb".into(),
            prefix: prefix.into(),
            region: "us-east-1".into(),
            path_style: true,
            credentials: CredentialSource::Systemd("unused".into()),
            age_recipients: vec![],
            age_identity_file: None,
            auto_push: false,
            part_size: 5 << 20,
            retention: Default::default(),
        }
    }

    /// Copies to this remote are encrypted.
    pub fn encrypted(&self) -> bool {
        !self.age_recipients.is_empty()
    }

    /// The two remotes' objects may meet: one bucket at one endpoint, and one
    /// prefix equal to the other or a folder of it (an empty prefix holds
    /// every other).
    fn shares_keys_with(&self, other: &RemoteSettings) -> bool {
        let within = |inner: &str, outer: &str| {
            outer.is_empty()
                || inner == outer
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        self.endpoint
            .as_str()
            .eq_ignore_ascii_case(other.endpoint.as_str())
            && self.bucket == other.bucket
            && (within(&self.prefix, &other.prefix) || within(&other.prefix, &self.prefix))
    }

    fn resolve(name: &str, s: &RemoteSection) -> Result<RemoteSettings, String> {
        let key = |k: &str| format!("remotes.{name}.{k}");
        let endpoint = s
            .endpoint
            .as_deref()
            .ok_or_else(|| format!("{} is missing", key("endpoint")))
            .and_then(|e| Endpoint::parse(e).map_err(|m| format!("{}: {m}", key("endpoint"))))?;
        let bucket = s
            .bucket
            .clone()
            .ok_or_else(|| format!("{} is missing", key("bucket")))?;
        check_bucket(&bucket).map_err(|m| format!("{}: {m}", key("bucket")))?;
        let prefix = s.prefix.clone().unwrap_or_default();
        let prefix = prefix.trim_matches('/').to_owned();
        check_prefix(&prefix).map_err(|m| format!("{}: {m}", key("prefix")))?;
        let region = s.region.clone().unwrap_or_else(|| "us-east-1".to_owned());
        if region.is_empty()
            || region.len() > 64
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{}: must be a region name such as eu-central-1",
                key("region")
            ));
        }
        let credentials = match (&s.credentials_file, &s.credential) {
            (Some(path), None) => CredentialSource::File(path.clone()),
            (None, Some(cred)) => {
                check_credential_name(cred).map_err(|m| format!("{}: {m}", key("credential")))?;
                CredentialSource::Systemd(cred.clone())
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{} and {} both set: give one",
                    key("credentials_file"),
                    key("credential")
                ));
            }
            (None, None) => {
                return Err(format!(
                    "{} (a root-only file) or {} (a systemd credential) is missing",
                    key("credentials_file"),
                    key("credential")
                ));
            }
        };
        let age_recipients = s.age_recipients.clone().unwrap_or_default();
        if age_recipients.len() > MAX_RECIPIENTS {
            return Err(format!(
                "{}: at most {MAX_RECIPIENTS} recipients",
                key("age_recipients")
            ));
        }
        for r in &age_recipients {
            if r.parse::<age::x25519::Recipient>().is_err() {
                return Err(format!(
                    "{}: {:?} is not an age X25519 public key (age1…)",
                    key("age_recipients"),
                    crate::error::shown(r)
                ));
            }
        }
        Ok(RemoteSettings {
            name: name.to_owned(),
            endpoint,
            bucket,
            prefix,
            region,
            path_style: s.path_style.unwrap_or(true),
            credentials,
            age_recipients,
            age_identity_file: s.age_identity_file.clone(),
            auto_push: s.auto_push.unwrap_or(false),
            part_size: s.part_size_mib.unwrap_or(DEFAULT_PART_SIZE_MIB) as usize * (1 << 20),
            retention: Retention::of(&s.retention),
        })
    }
}

fn check_bucket(b: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an S3 bucket name (3 to 63 of a-z, 0-9, - and .)",
            crate::error::shown(b)
        ))
    }
}

fn check_prefix(p: &str) -> Result<(), String> {
    let ok = p.len() <= 256
        && p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        });
    if p.is_empty() || ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a key prefix (segments of A-Z, a-z, 0-9, -, _ and . joined by /)",
            crate::error::shown(p)
        ))
    }
}

fn check_credential_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !n.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a credential name (A-Z, a-z, 0-9, -, _ and .)",
            crate::error::shown(n)
        ))
    }
}

/// Every remote of the configuration, checked.
#[derive(Debug, Clone, Default)]
pub struct Remotes {
    list: Vec<RemoteSettings>,
}

impl Remotes {
    /// The remotes of `section`; the first problem found, naming its key.
    pub fn resolve(section: &RemotesSection) -> Result<Remotes, String> {
        let list = section
            .0
            .iter()
            .map(|(name, s)| RemoteSettings::resolve(name, s))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in list.iter().enumerate() {
            if let Some(b) = list[i + 1..].iter().find(|b| a.shares_keys_with(b)) {
                return Err(format!(
                    "remotes.{} and remotes.{} store into the same place (bucket {} at {}, prefixes {:?} and {:?}): each would take the other's copies for its own, and a prune of one would delete them; give each its own bucket or a prefix beside the other's",
                    a.name,
                    b.name,
                    a.bucket,
                    a.endpoint.as_str(),
                    a.prefix,
                    b.prefix
                ));
            }
        }
        Ok(Remotes { list })
    }

    /// What an operator should know of these remotes: a plain-http endpoint
    /// off this host carries the copies readable on the wire unless they
    /// are encrypted (the credentials themselves are never sent: requests
    /// are signed).
    pub fn warnings(&self) -> Vec<String> {
        self.list
            .iter()
            .filter(|r| !r.encrypted() && r.endpoint.is_plain_off_host())
            .map(|r| {
                format!(
                    "remotes.{}.endpoint is plain http to another host: copies travel unencrypted; use https or set remotes.{}.age_recipients",
                    r.name, r.name
                )
            })
            .collect()
    }

    /// Every remote, by name.
    pub fn all(&self) -> &[RemoteSettings] {
        &self.list
    }

    /// The remote `name`; with no name, the only one there is.
    pub fn pick(&self, name: Option<&str>) -> crate::Result<&RemoteSettings> {
        match name {
            Some(n) => {
                self.list
                    .iter()
                    .find(|r| r.name == n)
                    .ok_or_else(|| crate::Error::NotFound {
                        what: "remote",
                        name: crate::error::shown(n),
                        hint: if self.list.is_empty() {
                            "; no remote is configured (remotes: in abssd.yml)".to_owned()
                        } else {
                            format!(
                                "; configured: {}",
                                self.list
                                    .iter()
                                    .map(|r| r.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        },
                    })
            }
            None => match self.list.as_slice() {
                [only] => Ok(only),
                [] => Err(crate::Error::validation(
                    "no remote is configured: add one under remotes: in abssd.yml",
                )),
                _ => Err(crate::Error::validation(format!(
                    "several remotes are configured ({}): name one with --remote",
                    self.list
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> Result<Remotes, String> {
        let s: RemotesSection = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        Remotes::resolve(&s)
    }

    const KEY: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn two_remotes_may_not_share_a_place() {
        let two = |a: &str, b: &str| {
            section(&format!(
                "one:\n  endpoint: https://s3.example.com\n  bucket: bkt\n  credential: c\n{a}two:\n  endpoint: HTTPS://S3.example.com/\n  bucket: bkt\n  credential: c\n{b}"
            ))
        };
        for (a, b) in [
            ("", ""),
            ("  prefix: p\n", "  prefix: /p/\n"),
            ("  prefix: p\n", "  prefix: p/q\n"),
            ("", "  prefix: p\n"),
        ] {
            let err = two(a, b).unwrap_err();
            assert!(
                err.contains("remotes.one and remotes.two store into the same place"),
                "{a:?} {b:?}: {err}"
            );
        }
        for (a, b) in [
            ("  prefix: p\n", "  prefix: q\n"),
            ("  prefix: p\n", "  prefix: pq\n"),
        ] {
            assert_eq!(two(a, b).unwrap().all().len(), 2, "{a:?} {b:?}");
        }
    }

    #[test]
    fn a_full_remote_resolves() {
        let r = section(&format!(
            "offsite:\n  endpoint: https://s3.example.com/gw/\n  bucket: acme-backups\n  prefix: /a/b/\n  credentials_file: /etc/abssctl/o.cred\n  age_recipients: [{KEY}]\n  part_size_mib: 16\n  retention:\n    keep_daily: 30\n"
        ))
        .unwrap();
        let o = r.pick(None).unwrap();
        assert_eq!(o.prefix, "a/b");
        assert_eq!(o.retention.keep_daily, Some(30));
        assert_eq!(o.region, "us-east-1");
        assert!(o.path_style && o.encrypted() && !o.auto_push);
        assert_eq!(o.part_size, 16 << 20);
        assert_eq!(
            o.endpoint.split(),
            ("https://s3.example.com".to_owned(), "/gw".to_owned())
        );
    }

    #[test]
    fn bad_remotes_are_refused_naming_the_key() {
        for (yaml, says) in [
            ("Bad:\n  bucket: b\n", "remote's name"),
            (
                "o:\n  bucket: bbb\n  credential: c\n",
                "remotes.o.endpoint is missing",
            ),
            (
                "o:\n  endpoint: ftp://x\n  bucket: bbb\n  credential: c\n",
                "http://",
            ),
            (
                "o:\n  endpoint: https://u:p@x\n  bucket: bbb\n  credential: c\n",
                "user name",
            ),
            (
                "o:\n  endpoint: https://x\n  bucket: B\n  credential: c\n",
                "remotes.o.bucket",
            ),
            (
                "o:\n  endpoint: https://x\n  bucket: bbb\n",
                "credentials_file",
            ),
            (
                "o:\n  endpoint: https://x\n  bucket: bbb\n  credential: ../x\n",
                "credential",
            ),
            (
                "o:\n  endpoint: https://x\n  bucket: bbb\n  credential: c\n  prefix: a/../b\n",
                "prefix",
            ),
            (
                "o:\n  endpoint: https://x\n  bucket: bbb\n  credential: c\n  age_recipients: [nope]\n",
                "age X25519",
            ),
        ] {
            let err = section(yaml).unwrap_err();
            assert!(err.contains(says), "{yaml}: {err}");
        }
    }

    #[test]
    fn plain_http_off_the_host_is_warned_about_unless_encrypted() {
        let yaml = |endpoint: &str, extra: &str| {
            section(&format!(
                "o:\n  endpoint: {endpoint}\n  bucket: bbb\n  credential: c\n{extra}"
            ))
            .unwrap()
            .warnings()
        };
        assert_eq!(yaml("http://backup.example", "").len(), 1);
        assert!(
            yaml("http://backup.example", "")
                .iter()
                .all(|w| w.contains("remotes.o.endpoint"))
        );
        for quiet in [
            "https://backup.example",
            "http://127.0.0.1:9000",
            "http://[::1]:9000",
            "http://localhost",
        ] {
            assert!(yaml(quiet, "").is_empty(), "{quiet}");
        }
        assert!(
            yaml(
                "http://backup.example",
                &format!("  age_recipients: [{KEY}]\n")
            )
            .is_empty()
        );
    }

    #[test]
    fn picking_a_remote_names_the_choices() {
        let r = section(
            "a:\n  endpoint: https://x\n  bucket: bbb\n  credential: c\nb:\n  endpoint: https://x\n  bucket: ccc\n  credential: c\n",
        )
        .unwrap();
        assert!(r.pick(None).unwrap_err().to_string().contains("a, b"));
        assert_eq!(r.pick(Some("b")).unwrap().name, "b");
        assert!(
            r.pick(Some("c"))
                .unwrap_err()
                .to_string()
                .contains("configured: a, b")
        );
    }
}
