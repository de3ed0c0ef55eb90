//! What an S3 server holds, seen through an independent client: boto3 in the
//! venv of [`S3Server`](super::S3Server), one short process per call
//! (`view.py`), with one endpoint and one set of credentials.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

const VIEW: &str = include_str!("view.py");

/// One object, as a listing or a `HEAD` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ObjectInfo {
    /// Its whole key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, without quotes (a single-part object's is its MD5 in hex).
    pub etag: String,
}

/// A multipart upload started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Upload {
    /// The key it would create.
    pub key: String,
    /// Its id.
    pub upload_id: String,
}

/// A request the server refused, or one that got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct S3Error {
    /// S3's error code (`PreconditionFailed`, `SignatureDoesNotMatch`,
    /// `NoSuchKey`), or botocore's name for a failed connection
    /// (`ConnectionClosedError`, `EndpointConnectionError`).
    pub code: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What the server or botocore said (at most 500 characters).
    pub message: String,
}

/// An S3 client for assertions: boto3 in the venv, one process per call, with
/// one endpoint and one set of credentials. The plain methods panic on any
/// error; the `try_` ones return what the server said.
#[derive(Debug, Clone)]
pub struct S3View {
    /// The venv with boto3.
    pub(super) venv: PathBuf,
    /// `HOME` of the processes, where boto3 finds no configuration.
    pub(super) home: PathBuf,
    pub(super) endpoint: String,
    pub(super) bucket: String,
    pub(super) region: String,
    pub(super) access_key: String,
    pub(super) secret_key: String,
}

impl S3View {
    /// The same client, signing with another secret (a wrong one).
    pub fn with_secret(mut self, secret: &str) -> S3View {
        self.secret_key = secret.to_owned();
        self
    }

    /// Every object under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<ObjectInfo> {
        ok("list", self.try_list(prefix))
    }

    /// As [`S3View::list`], or the error.
    pub fn try_list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, S3Error> {
        self.call(&["list", prefix])
    }

    /// The bytes of object `key`.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let file = tempfile::NamedTempFile::new().expect("a temp file");
        ok("get", self.try_get_to(key, file.path()));
        std::fs::read(file.path()).expect("read what get wrote")
    }

    /// Write object `key` to `path` (for objects too big to hold); returns
    /// its size, or the error.
    pub fn try_get_to(&self, key: &str, path: &Path) -> Result<u64, S3Error> {
        self.call(&["get", key, &path.display().to_string()])
    }

    /// Store `bytes` as object `key`, overwriting what is there.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        ok("put", self.try_put(key, bytes, false));
    }

    /// Store `bytes` as object `key` in one `PutObject`; with
    /// `if_none_match`, only when no object `key` exists (`If-None-Match:
    /// *`, refused with `PreconditionFailed` otherwise). Returns the ETag.
    pub fn try_put(&self, key: &str, bytes: &[u8], if_none_match: bool) -> Result<String, S3Error> {
        let file = tempfile::NamedTempFile::new().expect("a temp file");
        std::fs::write(file.path(), bytes).expect("write the body");
        self.try_put_file(key, file.path(), if_none_match)
    }

    /// As [`S3View::try_put`], with the body read from `path`.
    pub fn try_put_file(
        &self,
        key: &str,
        path: &Path,
        if_none_match: bool,
    ) -> Result<String, S3Error> {
        let path = path.display().to_string();
        let mut args = vec!["put", key, &path];
        if if_none_match {
            args.push("if-none-match");
        }
        self.call(&args)
    }

    /// Object `key`'s size and ETag, or `None` when there is none.
    pub fn head(&self, key: &str) -> Option<ObjectInfo> {
        ok("head", self.call(&["head", key]))
    }

    /// Delete object `key` (no error when there is none).
    pub fn delete(&self, key: &str) {
        ok::<Option<()>>("delete", self.call(&["delete", key]));
    }

    /// The multipart uploads in progress (neither completed nor aborted).
    pub fn multipart_uploads(&self) -> Vec<Upload> {
        ok("uploads", self.call(&["uploads"]))
    }

    /// Start a multipart upload of `key` and leave it open, as a client that
    /// died mid-upload would; returns its id.
    pub fn start_multipart(&self, key: &str) -> String {
        ok("start-multipart", self.call(&["start-multipart", key]))
    }

    fn call<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> Result<T, S3Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Answer<T> {
            Ok(T),
            Error(S3Error),
        }
        let out = python(&self.venv, &self.home)
            .arg("-c")
            .arg(VIEW)
            .args(args)
            .env("S3_ENDPOINT", &self.endpoint)
            .env("S3_BUCKET", &self.bucket)
            .env("S3_REGION", &self.region)
            .env("S3_ACCESS_KEY", &self.access_key)
            .env("S3_SECRET_KEY", &self.secret_key)
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "view.py {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        match serde_json::from_slice(&out.stdout) {
            Ok(Answer::Ok(v)) => Ok(v),
            Ok(Answer::Error(e)) => Err(e),
            Err(e) => panic!(
                "view.py {args:?} printed no answer ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            ),
        }
    }
}

fn ok<T>(what: &str, r: Result<T, S3Error>) -> T {
    r.unwrap_or_else(|e| panic!("S3 {what} failed: {e:?}"))
}

/// The venv's python, with nothing of the test process's environment: no
/// `AWS_*` variable or `~/.aws` file of the machine reaches boto3.
pub(super) fn python(venv: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.env_clear()
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    cmd
}
