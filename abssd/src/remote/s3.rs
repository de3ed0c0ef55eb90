//! The S3 requests abssd sends: each one signed with AWS's own SigV4 signer
//! (`aws-sigv4`, `Authorization` header, the payload's SHA-256 signed too)
//! and sent with ureq, blocking (callers run on `spawn_blocking`). Only what
//! off-host copies need: single and multipart uploads that never overwrite
//! (`If-None-Match: *`), streamed downloads, `HEAD`, `DELETE`, listings.
//!
//! Every failure is an [`S3Error`] whose [`S3ErrorKind`] says what a caller
//! can do about it, and whose text says it in plain words without the
//! credentials (they are never formatted; [`Credentials`]' `Debug` hides
//! them).

use std::io::Read;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::creds::Credentials;
use crate::config::remotes::RemoteSettings;

/// A connection that neither sends nor receives a byte for this long is
/// given up (an idle timeout: a large part or object may take much longer).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest transfer waited for: a request moving `n` bytes may take
/// [`Patience::request`] plus `n` divided by this (bytes per second), so a
/// server that trickles a byte a minute cannot hold a request forever.
const MIN_RATE: u64 = 256 << 10;
/// Most bytes of an error answer or a listing read into memory.
const MAX_ANSWER_BYTES: u64 = 4 << 20;
/// Most keys one listing page asks for (S3's own maximum).
pub const PAGE_KEYS: u32 = 1000;
/// The longest `LastModified` kept from a listing (ISO 8601 with
/// milliseconds is 24 bytes): a longer one is dropped, so a hostile bucket
/// cannot make a survey hold megabytes per object.
const MAX_LAST_MODIFIED: usize = 40;

/// How long a client waits, and how often it tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// Connecting to the endpoint.
    pub connect: Duration,
    /// A whole request that moves little (`HEAD`, `DELETE`, a listing, a
    /// small object, starting or ending a multipart upload), from the
    /// connection to the answer's last byte; one that moves `n` bytes gets
    /// `n / MIN_RATE` seconds more.
    pub request: Duration,
    /// Attempts of a request that may be repeated (reads, deletes, parts)
    /// when the connection failed or the server answered 5xx.
    pub attempts: u32,
}

impl Patience {
    /// Pushes, pulls, listings, `remote test`.
    pub const OPERATION: Patience = Patience {
        connect: Duration::from_secs(15),
        request: Duration::from_secs(120),
        attempts: 3,
    };
    /// Start-up recovery, which systemd gives 90 s in all (Type=notify):
    /// one short attempt; what fails is left to the next start.
    pub const START_UP: Patience = Patience {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(15),
        attempts: 1,
    };

    /// The most a request moving `bytes` (sent or received) may take.
    pub fn deadline(&self, bytes: u64) -> Duration {
        self.request
            .saturating_add(Duration::from_secs(bytes / MIN_RATE))
    }
}

/// What went wrong, by what a caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ErrorKind {
    /// The endpoint could not be reached, or the connection broke.
    Network,
    /// The credentials were refused, or they may not do this.
    Denied,
    /// The bucket does not exist.
    NoBucket,
    /// The object (or the multipart upload) does not exist.
    NotFound,
    /// A conditional create found the object already there: nothing was
    /// overwritten.
    Exists,
    /// The server failed (5xx) or answered something that is not S3.
    Server,
    /// The server refused the request as malformed (4xx otherwise).
    Refused,
}

/// A failed S3 request, in plain words.
#[derive(Debug, Clone)]
pub struct S3Error {
    /// What went wrong.
    pub kind: S3ErrorKind,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// S3's error code (`SignatureDoesNotMatch`, `NoSuchKey`), when given.
    pub code: Option<String>,
    /// What was being done and what happened.
    pub message: String,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for S3Error {}

impl S3Error {
    fn retryable(&self) -> bool {
        matches!(self.kind, S3ErrorKind::Network | S3ErrorKind::Server)
    }
}

impl From<S3Error> for crate::Error {
    fn from(e: S3Error) -> Self {
        crate::Error::Environment(e.message)
    }
}

/// `Result` of an S3 request.
pub type S3Result<T> = std::result::Result<T, S3Error>;

/// An object as a listing or `HEAD` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its full key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, quotes removed.
    pub etag: String,
    /// When it was written, as the server says (ISO 8601, UTC); listings
    /// give it, `HEAD` leaves it out.
    pub last_modified: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The objects of this page, in key order.
    pub objects: Vec<ObjectInfo>,
    /// Where the next page starts, if the server gave it.
    pub next: Option<String>,
    /// The server said there is more (a well-behaved one then gives `next`).
    pub truncated: bool,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based.
    pub number: u32,
    /// What the server answered for it.
    pub etag: String,
}

/// A streamed object body: read it to its end.
pub type Body = Box<dyn Read + Send>;

/// A client of one bucket of one remote.
pub struct S3 {
    agent: ureq::Agent,
    /// `scheme://host[:port]` of the endpoint, no trailing slash.
    origin: String,
    /// The endpoint's path (empty or `/something`), for gateways under a path.
    base_path: String,
    bucket: String,
    region: String,
    path_style: bool,
    credentials: Credentials,
    /// The remote's name, for messages.
    name: String,
    /// Its timeouts and attempts.
    patience: Patience,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("remote", &self.name)
            .field("endpoint", &self.origin)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3 {
    /// A client of `remote`'s bucket with `credentials`, as patient as `patience`.
    pub fn new(remote: &RemoteSettings, credentials: Credentials, patience: Patience) -> S3 {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(patience.connect))
            .timeout_per_read(Some(IDLE_TIMEOUT))
            .timeout_per_write(Some(IDLE_TIMEOUT))
            // S3 never redirects a signed request somewhere it should follow.
            .max_redirects(0)
            .user_agent(concat!("abssd/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent();
        let (origin, base_path) = remote.endpoint.split();
        S3 {
            agent,
            origin,
            base_path,
            bucket: remote.bucket.clone(),
            region: remote.region.clone(),
            path_style: remote.path_style,
            credentials,
            name: remote.name.clone(),
            patience,
        }
    }

    /// The remote's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of `key` (empty: the bucket itself), `query` already encoded.
    fn url(&self, key: &str, query: &str) -> String {
        let mut url = if self.path_style {
            format!("{}{}/{}", self.origin, self.base_path, self.bucket)
        } else {
            let (scheme, host) = self.origin.split_once("://").unwrap_or(("https", ""));
            format!("{scheme}://{}.{host}{}", self.bucket, self.base_path)
        };
        url.push('/');
        url.push_str(&encode(key, false));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Sends one request that expects at most `receive` bytes back (beyond
    /// a small answer), within [`Patience::deadline`] of what it moves;
    /// answers 2xx as they are, anything else as an error.
    fn send(
        &self,
        what: &str,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        receive: u64,
    ) -> S3Result<ureq::http::Response<ureq::Body>> {
        let payload_hash = hex::encode(Sha256::digest(body));
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = self.credentials.aws().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| self.local(what, &e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Precomputed(payload_hash),
        )
        .map_err(|e| self.local(what, &e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| self.local(what, &e.to_string()))?
            .into_parts();
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let mut request = request
            .body(body)
            .map_err(|e| self.local(what, &e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        let deadline = self
            .patience
            .deadline((body.len() as u64).saturating_add(receive));
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(deadline))
            .build();
        let response = self
            .agent
            .run(request)
            .map_err(|e| self.transport(what, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.answer_error(what, response))
    }

    /// [`S3::send`], repeated (up to [`Patience::attempts`] in all) when
    /// the connection failed or the server failed: for requests that may be
    /// sent twice.
    fn send_again(
        &self,
        what: &str,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        receive: u64,
    ) -> S3Result<ureq::http::Response<ureq::Body>> {
        let mut attempt = 1;
        loop {
            match self.send(what, method, url, headers, body, receive) {
                Err(e) if e.retryable() && attempt < self.patience.attempts => {
                    std::thread::sleep(Duration::from_millis(500 << attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// An error before anything was sent (a URL or header that cannot be signed).
    fn local(&self, what: &str, message: &str) -> S3Error {
        S3Error {
            kind: S3ErrorKind::Refused,
            status: None,
            code: None,
            message: format!("{what} on remote {:?}: {message}", self.name),
        }
    }

    fn transport(&self, what: &str, e: &ureq::Error) -> S3Error {
        // systemd sets INVOCATION_ID in the services it starts.
        self.transport_error(what, e, std::env::var_os("INVOCATION_ID").is_some())
    }

    /// A request that got no answer. Under systemd, a connection that was
    /// refused by the system or never set up is what abssd.service's sandbox
    /// (IPAddressDeny=any) makes of every request until the drop-in allows
    /// it: the message says so.
    fn transport_error(&self, what: &str, e: &ureq::Error, under_systemd: bool) -> S3Error {
        let detail = match e {
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::Timeout(t) => format!("timed out ({t})"),
            ureq::Error::HostNotFound => "the endpoint's host name was not found".to_owned(),
            other => other.to_string(),
        };
        // The host's resolver (systemd-resolved's 127.0.0.53) is out of
        // reach too: a name is then not found.
        let sandboxed = matches!(
            e,
            ureq::Error::Timeout(ureq::Timeout::Connect) | ureq::Error::HostNotFound
        ) || matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied);
        let hint = if under_systemd && sandboxed {
            "; check the endpoint and the network, and that abssd.service may reach it: as shipped it lets no packet out until the drop-in remote-network.conf allows it (README.md, \"Off-host copies\")"
        } else {
            "; check the endpoint and the network"
        };
        S3Error {
            kind: S3ErrorKind::Network,
            status: None,
            code: None,
            message: format!(
                "{what} on remote {:?}: cannot reach {}: {detail}{hint}",
                self.name, self.origin
            ),
        }
    }

    fn answer_error(&self, what: &str, response: ureq::http::Response<ureq::Body>) -> S3Error {
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let _ = response
            .into_body()
            .into_with_config()
            .limit(MAX_ANSWER_BYTES)
            .reader()
            .take(64 << 10)
            .read_to_end(&mut body);
        let parsed: Option<ErrorXml> = quick_xml::de::from_reader(body.as_slice()).ok();
        let code = parsed.as_ref().and_then(|p| p.code.clone());
        let server_says = parsed
            .and_then(|p| p.message)
            .map(|m| crate::error::shown(&m))
            .unwrap_or_default();
        let kind = match (status, code.as_deref()) {
            (404, Some("NoSuchBucket")) => S3ErrorKind::NoBucket,
            (404, _) => S3ErrorKind::NotFound,
            (412, _) | (409, Some("ConditionalRequestConflict")) => S3ErrorKind::Exists,
            (401 | 403, _) => S3ErrorKind::Denied,
            (500..=599, _) => S3ErrorKind::Server,
            _ => S3ErrorKind::Refused,
        };
        let plain = match kind {
            S3ErrorKind::NoBucket => format!("bucket {:?} does not exist", self.bucket),
            S3ErrorKind::NotFound => "no such object".to_owned(),
            S3ErrorKind::Exists => "the object already exists (nothing was overwritten)".to_owned(),
            S3ErrorKind::Denied => match code.as_deref() {
                Some("SignatureDoesNotMatch") => {
                    "the server refused the secret key (SignatureDoesNotMatch); check the credentials file".to_owned()
                }
                Some("InvalidAccessKeyId") => {
                    "the server does not know the access key (InvalidAccessKeyId); check the credentials file".to_owned()
                }
                Some("RequestTimeTooSkewed") => {
                    "the server refused the request's time (RequestTimeTooSkewed); check this host's clock".to_owned()
                }
                _ => "access denied; check the credentials and what they may do in this bucket"
                    .to_owned(),
            },
            S3ErrorKind::Server => "the server failed".to_owned(),
            _ => "the server refused the request".to_owned(),
        };
        let code_text = code
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default();
        let server_text = if server_says.is_empty() {
            String::new()
        } else {
            format!(": {server_says}")
        };
        S3Error {
            kind,
            status: Some(status),
            message: format!(
                "{what} on remote {:?}: {plain} (HTTP {status}{code_text}{server_text})",
                self.name,
                code_text = crate::error::shown(&code_text),
            ),
            code,
        }
    }

    /// Uploads `body` as `key` in one request; with `create_only`, only if
    /// no object has that key ([`S3ErrorKind::Exists`] otherwise).
    pub fn put(&self, key: &str, body: &[u8], create_only: bool) -> S3Result<()> {
        let mut headers = vec![("content-length", body.len().to_string())];
        if create_only {
            headers.push(("if-none-match", "*".to_owned()));
        }
        let what = format!("uploading {key}");
        let url = self.url(key, "");
        if create_only {
            self.send(&what, "PUT", &url, &headers, body, 0)?;
        } else {
            self.send_again(&what, "PUT", &url, &headers, body, 0)?;
        }
        Ok(())
    }

    /// Starts a multipart upload of `key`; its id. Sent once: a repeat
    /// after a lost answer would start a second upload nobody journals.
    pub fn create_multipart(&self, key: &str) -> S3Result<String> {
        let what = format!("starting an upload of {key}");
        let response = self.send(&what, "POST", &self.url(key, "uploads="), &[], &[], 0)?;
        let answer: InitiateXml = self.parse(&what, response)?;
        Ok(answer.upload_id)
    }

    /// Uploads part `number` (1-based, at most 10,000) of an upload.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: &[u8],
    ) -> S3Result<Part> {
        let what = format!("uploading part {number} of {key}");
        let query = format!("partNumber={number}&uploadId={}", encode(upload_id, true));
        let headers = [("content-length", body.len().to_string())];
        let response = self.send_again(&what, "PUT", &self.url(key, &query), &headers, body, 0)?;
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_owned())
            .ok_or_else(|| S3Error {
                kind: S3ErrorKind::Server,
                status: None,
                code: None,
                message: format!("{what} on remote {:?}: the answer had no ETag", self.name),
            })?;
        Ok(Part { number, etag })
    }

    /// Completes an upload from `parts`; only if no object has that key
    /// ([`S3ErrorKind::Exists`] otherwise, and the upload stays open: abort it).
    pub fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[Part]) -> S3Result<()> {
        let what = format!("completing the upload of {key}");
        let mut xml = String::from("<CompleteMultipartUpload>");
        for p in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>",
                p.number,
                xml_escape(&p.etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let query = format!("uploadId={}", encode(upload_id, true));
        let headers = [
            ("content-length", xml.len().to_string()),
            ("if-none-match", "*".to_owned()),
        ];
        let mut response = self.send(
            &what,
            "POST",
            &self.url(key, &query),
            &headers,
            xml.as_bytes(),
            0,
        )?;
        // S3 may answer 200 and put the failure in the body.
        let mut text = Vec::new();
        response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .reader()
            .read_to_end(&mut text)
            .map_err(|e| self.read_failed(&what, &e))?;
        if let Ok(err) = quick_xml::de::from_reader::<_, ErrorXml>(text.as_slice())
            && err.code.is_some()
        {
            return Err(S3Error {
                kind: if err.code.as_deref() == Some("PreconditionFailed") {
                    S3ErrorKind::Exists
                } else {
                    S3ErrorKind::Server
                },
                status: Some(200),
                message: format!(
                    "{what} on remote {:?}: the server failed it ({})",
                    self.name,
                    crate::error::shown(err.code.as_deref().unwrap_or(""))
                ),
                code: err.code,
            });
        }
        Ok(())
    }

    /// Abandons an upload and its parts. One that is gone already is no error.
    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> S3Result<()> {
        let what = format!("abandoning the upload of {key}");
        let query = format!("uploadId={}", encode(upload_id, true));
        match self.send_again(&what, "DELETE", &self.url(key, &query), &[], &[], 0) {
            Ok(_) => Ok(()),
            Err(e) if e.kind == S3ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The object's size and ETag, or `None` when there is none.
    pub fn head(&self, key: &str) -> S3Result<Option<ObjectInfo>> {
        let what = format!("looking up {key}");
        match self.send_again(&what, "HEAD", &self.url(key, ""), &[], &[], 0) {
            Ok(response) => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let size = header("content-length")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let etag = header("etag")
                    .map(|s| s.trim_matches('"').to_owned())
                    .unwrap_or_default();
                Ok(Some(ObjectInfo {
                    key: key.to_owned(),
                    size,
                    etag,
                    last_modified: None,
                }))
            }
            Err(e) if e.kind == S3ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The object's bytes, streamed; at most `limit` of them are read (a
    /// server that sends more makes the read fail), and all of them within
    /// [`Patience::deadline`] of `limit` (a server slower than 256 KiB/s on
    /// average fails the read: the reader's own time counts too).
    pub fn get(&self, key: &str, limit: u64) -> S3Result<Body> {
        let what = format!("downloading {key}");
        let response = self.send_again(&what, "GET", &self.url(key, ""), &[], &[], limit)?;
        let reader = response
            .into_body()
            .into_with_config()
            .limit(limit)
            .reader();
        Ok(Box::new(reader))
    }

    /// A small object read whole (at most `limit` bytes).
    pub fn get_small(&self, key: &str, limit: u64) -> S3Result<Vec<u8>> {
        let what = format!("downloading {key}");
        let mut bytes = Vec::new();
        self.get(key, limit)?
            .read_to_end(&mut bytes)
            .map_err(|e| self.read_failed(&what, &e))?;
        Ok(bytes)
    }

    /// Deletes `key`. One that is gone already is no error.
    pub fn delete(&self, key: &str) -> S3Result<()> {
        let what = format!("deleting {key}");
        match self.send_again(&what, "DELETE", &self.url(key, ""), &[], &[], 0) {
            Ok(_) => Ok(()),
            Err(e) if e.kind == S3ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of the keys under `prefix`, from `after` (the `next` of the
    /// page before).
    pub fn list(&self, prefix: &str, after: Option<&str>) -> S3Result<Page> {
        let what = format!("listing {prefix:?}");
        let mut query = vec![
            ("list-type".to_owned(), "2".to_owned()),
            ("max-keys".to_owned(), PAGE_KEYS.to_string()),
            ("prefix".to_owned(), prefix.to_owned()),
        ];
        if let Some(token) = after {
            query.push(("continuation-token".to_owned(), token.to_owned()));
        }
        query.sort();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v, true)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self.send_again(&what, "GET", &self.url("", &query), &[], &[], 0)?;
        let answer: ListXml = self.parse(&what, response)?;
        Ok(Page {
            objects: answer
                .contents
                .into_iter()
                .map(|c| ObjectInfo {
                    key: c.key,
                    size: c.size,
                    etag: c.etag.trim_matches('"').to_owned(),
                    last_modified: c.last_modified.filter(|t| t.len() <= MAX_LAST_MODIFIED),
                })
                .collect(),
            next: if answer.is_truncated {
                answer.next_continuation_token
            } else {
                None
            },
            truncated: answer.is_truncated,
        })
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        response: ureq::http::Response<ureq::Body>,
    ) -> S3Result<T> {
        let mut text = Vec::new();
        response
            .into_body()
            .into_with_config()
            .limit(MAX_ANSWER_BYTES)
            .reader()
            .read_to_end(&mut text)
            .map_err(|e| self.read_failed(what, &e))?;
        quick_xml::de::from_reader(text.as_slice()).map_err(|e| S3Error {
            kind: S3ErrorKind::Server,
            status: None,
            code: None,
            message: format!(
                "{what} on remote {:?}: the answer is not S3's ({})",
                self.name,
                crate::error::shown(&e.to_string())
            ),
        })
    }

    fn read_failed(&self, what: &str, e: &std::io::Error) -> S3Error {
        S3Error {
            kind: S3ErrorKind::Network,
            status: None,
            code: None,
            message: format!(
                "{what} on remote {:?}: reading the answer failed: {e}",
                self.name
            ),
        }
    }
}

/// S3's percent-encoding: every byte but `A-Za-z0-9-_.~` (and `/` in a key
/// path unless `slash` says to encode it too).
pub fn encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateXml {
    upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListXml {
    #[serde(default)]
    contents: Vec<ContentsXml>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContentsXml {
    key: String,
    size: u64,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(default)]
    last_modified: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::remote::fake;

    #[test]
    fn a_request_may_take_longer_the_more_it_moves() {
        let p = Patience::OPERATION;
        assert_eq!(p.deadline(0), Duration::from_secs(120));
        // A 5 MiB part at 256 KiB/s: 20 s more.
        assert_eq!(p.deadline(5 << 20), Duration::from_secs(140));
        assert!(
            p.deadline(u64::MAX) > p.deadline(5 << 20),
            "saturates, never wraps"
        );
    }

    #[test]
    fn an_answer_trickled_past_the_deadline_is_given_up() {
        // One byte each 50 ms: never idle, 100 bytes in 5 s; the client
        // allows 1 s. Without an overall deadline the read succeeds.
        let fake = fake::serve(|_, _, stream| {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
            for _ in 0..100 {
                if stream
                    .write_all(b"x")
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let s3 = fake.client(Patience {
            request: Duration::from_secs(1),
            ..Patience::START_UP
        });
        let e = s3.get_small("p/k", 4096).unwrap_err();
        assert_eq!(e.kind, S3ErrorKind::Network, "{e}");
        assert!(
            e.message.contains("timed out") || e.message.contains("reading"),
            "{e}"
        );
    }

    #[test]
    fn starting_a_multipart_upload_is_sent_once_whatever_the_server_answers() {
        let fake = fake::serve(|_, _, stream| fake::reply(stream, 503, ""));
        let s3 = fake.client(Patience {
            attempts: 2,
            ..Patience::OPERATION
        });
        let e = s3.create_multipart("p/k").unwrap_err();
        assert_eq!(e.kind, S3ErrorKind::Server);
        assert_eq!(fake.count(), 1, "not sent again");
        // A delete may be sent again: the fake does count repeats.
        s3.delete("p/k").unwrap_err();
        assert_eq!(fake.count(), 3);
    }

    #[test]
    fn a_connection_the_sandbox_stops_names_the_drop_in_that_allows_it() {
        let fake = fake::serve(|_, _, stream| fake::reply(stream, 503, ""));
        let s3 = fake.client(Patience::START_UP);
        let denied = || ureq::Error::Io(std::io::ErrorKind::PermissionDenied.into());
        let never = || ureq::Error::Timeout(ureq::Timeout::Connect);
        let refused = || ureq::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        for (e, under_systemd, named) in [
            (denied(), true, true),
            (never(), true, true),
            (ureq::Error::HostNotFound, true, true),
            (ureq::Error::HostNotFound, false, false),
            (refused(), true, false),
            (denied(), false, false),
            (never(), false, false),
        ] {
            let err = s3.transport_error("list", &e, under_systemd);
            assert_eq!(err.kind, S3ErrorKind::Network);
            assert!(err.message.contains("cannot reach"), "{err}");
            assert_eq!(
                err.message.contains("remote-network.conf"),
                named,
                "{e:?} {under_systemd}: {err}"
            );
        }
    }

    #[test]
    fn start_up_patience_tries_once() {
        let fake = fake::serve(|_, _, stream| fake::reply(stream, 503, ""));
        let s3 = fake.client(Patience::START_UP);
        s3.head("p/k").unwrap_err();
        assert_eq!(fake.count(), 1);
    }

    #[test]
    fn a_long_last_modified_is_dropped() {
        let fake = fake::serve(|_, _, stream| {
            let body = format!(
                "<ListBucketResult><IsTruncated>false</IsTruncated>\
                 <Contents><Key>p/a</Key><LastModified>{}</LastModified><Size>1</Size></Contents>\
                 <Contents><Key>p/b</Key><LastModified>2026-12-04T05:30:01.000Z</LastModified><Size>1</Size></Contents>\
                 </ListBucketResult>",
                "9".repeat(100_000)
            );
            fake::reply(stream, 200, &body);
        });
        let page = fake.client(Patience::OPERATION).list("p/", None).unwrap();
        let times: Vec<_> = page
            .objects
            .iter()
            .map(|o| o.last_modified.as_deref())
            .collect();
        assert_eq!(times, [None, Some("2026-12-04T05:30:01.000Z")]);
    }

    #[test]
    fn keys_and_query_values_are_encoded_as_s3_signs_them() {
        assert_eq!(encode("a/b c+d~e", false), "a/b%20c%2Bd~e");
        assert_eq!(encode("a/b=", true), "a%2Fb%3D");
    }

    #[test]
    fn a_listing_and_an_error_parse() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<IsTruncated>true</IsTruncated><NextContinuationToken>t/1=</NextContinuationToken>
<Contents><Key>p/a</Key><LastModified>2026-12-04T05:30:01.000Z</LastModified><Size>3</Size><ETag>"abc"</ETag></Contents>
<Contents><Key>p/b</Key><Size>0</Size><ETag>"def"</ETag></Contents></ListBucketResult>"#;
        let l: ListXml = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(l.contents.len(), 2);
        assert_eq!(l.contents[0].key, "p/a");
        assert_eq!(l.contents[0].size, 3);
        assert_eq!(
            l.contents[0].last_modified.as_deref(),
            Some("2026-12-04T05:30:01.000Z")
        );
        assert_eq!(l.contents[1].last_modified, None);
        assert!(l.is_truncated);
        assert_eq!(l.next_continuation_token.as_deref(), Some("t/1="));
        let empty: ListXml = quick_xml::de::from_str(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .unwrap();
        assert!(empty.contents.is_empty());
        let e: ErrorXml =
            quick_xml::de::from_str("<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>")
                .unwrap();
        assert_eq!(e.code.as_deref(), Some("NoSuchKey"));
    }
}
