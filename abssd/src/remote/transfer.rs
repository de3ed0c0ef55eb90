//! Streamed transfers with bounded memory.
//!
//! An upload reads its source once: the plain bytes are hashed (and checked
//! against the SHA-256 the index records, before the object is made visible),
//! encrypted when asked, hashed again as stored, and cut into parts of the
//! remote's part size, so at most one part is held in memory. A source
//! smaller than one part goes up in one `PUT`; a larger one as a multipart
//! upload. Either way the object is created only if its key is free
//! (`If-None-Match: *`): nothing is ever overwritten. A failed multipart
//! upload is aborted, and its id is handed to the caller as soon as it
//! exists ([`Upload::on_started`]) so that a crash can abort it later.
//!
//! A download streams the object through its hash, the decryption when
//! asked, and the plain hash into a writer, and fails when the plain bytes
//! are not the ones recorded.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use super::s3::{Part, S3, S3Error, S3ErrorKind};
use crate::error::{Error, Result};

/// Bytes read from a source at a time.
const CHUNK: usize = 256 << 10;
/// S3's most parts of one upload.
const MAX_PARTS: u32 = 10_000;

/// What to upload and how.
pub struct Upload<'a> {
    /// The object's key.
    pub key: &'a str,
    /// age recipients; empty: stored as it is.
    pub recipients: &'a [String],
    /// Bytes per part.
    pub part_size: usize,
    /// The plain bytes' SHA-256 (hex) as recorded: anything else is refused
    /// before the object is made visible.
    pub expect_sha256: Option<&'a str>,
    /// Told the plain bytes read so far, after each chunk.
    pub progress: &'a mut dyn FnMut(u64),
    /// Told a multipart upload's id as soon as it exists, before any part
    /// is sent (journal it: a crash leaves the upload to abort).
    pub on_started: &'a mut dyn FnMut(&str) -> Result<()>,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// An object made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Its key.
    pub key: String,
    /// Bytes stored (the encrypted size when encrypted).
    pub size: u64,
    /// SHA-256 of the stored bytes (hex).
    pub sha256: String,
    /// Bytes read from the source.
    pub plain_size: u64,
    /// SHA-256 of the source (hex).
    pub plain_sha256: String,
    /// Whether it was encrypted.
    pub encrypted: bool,
}

/// Why an upload failed.
#[derive(Debug)]
pub enum UploadError {
    /// The request failed (the kind tells: [`S3ErrorKind::Exists`] when the
    /// key was taken, nothing overwritten).
    S3(S3Error),
    /// Reading the source, encrypting, or a plain hash that is not the
    /// recorded one.
    Local(Error),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::S3(e) => e.fmt(f),
            UploadError::Local(e) => e.fmt(f),
        }
    }
}

impl From<UploadError> for Error {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::S3(e) => e.into(),
            UploadError::Local(e) => e,
        }
    }
}

/// Where stored bytes go: hashed, gathered into parts, parts sent.
struct Parts<'a, 'b> {
    s3: &'a S3,
    key: &'a str,
    part_size: usize,
    /// The bytes to store, when known: the buffer is no larger.
    expect: usize,
    /// Allocated as bytes come, never beyond `part_size` nor (at first)
    /// `expect`: a small archive does not cost a whole part of memory.
    buf: Vec<u8>,
    hash: Sha256,
    size: u64,
    upload_id: Option<String>,
    parts: Vec<Part>,
    on_started: &'b mut dyn FnMut(&str) -> Result<()>,
    /// The failure behind an `io::Error` this writer returned.
    failed: Option<UploadError>,
}

impl Parts<'_, '_> {
    fn send_part(&mut self) -> std::result::Result<(), UploadError> {
        if self.upload_id.is_none() {
            let id = self
                .s3
                .create_multipart(self.key)
                .map_err(UploadError::S3)?;
            self.upload_id = Some(id.clone());
            (self.on_started)(&id).map_err(UploadError::Local)?;
        }
        let number = self.parts.len() as u32 + 1;
        if number > MAX_PARTS {
            return Err(UploadError::Local(Error::validation(format!(
                "{} needs more than {MAX_PARTS} parts: raise part_size_mib",
                self.key
            ))));
        }
        let id = self.upload_id.as_deref().unwrap_or_default();
        let part = self
            .s3
            .upload_part(self.key, id, number, &self.buf)
            .map_err(UploadError::S3)?;
        self.parts.push(part);
        self.buf.clear();
        Ok(())
    }
}

impl Write for Parts<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.part_size - self.buf.len();
        let n = data.len().min(room);
        let need = self.buf.len() + n;
        if need > self.buf.capacity() {
            let grown = (self.buf.capacity() * 2).max(self.expect).max(need);
            self.buf
                .reserve_exact(grown.min(self.part_size) - self.buf.len());
        }
        self.buf.extend_from_slice(&data[..n]);
        self.hash.update(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == self.part_size
            && let Err(e) = self.send_part()
        {
            let text = e.to_string();
            self.failed = Some(e);
            return Err(std::io::Error::other(text));
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Uploads `source` as `spec.key`, never overwriting (see the module).
pub fn upload(
    s3: &S3,
    source: &mut dyn Read,
    spec: Upload<'_>,
) -> std::result::Result<Uploaded, UploadError> {
    upload_of(s3, source, None, spec)
}

/// [`upload`] of a source of `size` plain bytes: refused before anything is
/// sent when it needs more than S3's 10,000 parts, and a small one holds
/// no more memory than its size.
pub fn upload_sized(
    s3: &S3,
    source: &mut dyn Read,
    size: u64,
    spec: Upload<'_>,
) -> std::result::Result<Uploaded, UploadError> {
    upload_of(s3, source, Some(size), spec)
}

/// The most bytes storing `size` plain bytes takes: age adds a header
/// (a stanza per recipient) and 16 bytes per 64 KiB chunk.
fn stored_size(size: u64, recipients: usize) -> u64 {
    if recipients == 0 {
        return size;
    }
    size.saturating_add(size.div_ceil(64 << 10).saturating_add(1) * 16)
        .saturating_add(1024 + 512 * recipients as u64)
}

/// Refused when `stored` bytes in parts of `part_size` are more than S3's
/// 10,000 parts.
fn check_parts(key: &str, stored: u64, part_size: usize) -> Result<()> {
    let parts = stored.div_ceil(part_size.max(1) as u64);
    if parts <= u64::from(MAX_PARTS) {
        return Ok(());
    }
    let mib = stored.div_ceil(u64::from(MAX_PARTS) << 20);
    Err(Error::validation(format!(
        "{key} needs {parts} parts of {part_size} bytes, more than S3's {MAX_PARTS}: \
         raise the remote's part_size_mib to at least {mib} in abssd.yml"
    )))
}

fn upload_of(
    s3: &S3,
    source: &mut dyn Read,
    size: Option<u64>,
    spec: Upload<'_>,
) -> std::result::Result<Uploaded, UploadError> {
    let expect = size.map(|n| stored_size(n, spec.recipients.len()));
    if let Some(stored) = expect {
        check_parts(spec.key, stored, spec.part_size).map_err(UploadError::Local)?;
    }
    let mut sink = Parts {
        s3,
        key: spec.key,
        part_size: spec.part_size,
        expect: expect.map_or(CHUNK, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        buf: Vec::new(),
        hash: Sha256::new(),
        size: 0,
        upload_id: None,
        parts: Vec::new(),
        on_started: spec.on_started,
        failed: None,
    };
    let encrypted = !spec.recipients.is_empty();
    let result = stream(
        source,
        &mut sink,
        spec.recipients,
        spec.progress,
        spec.expect_sha256,
    );
    let finished = result.and_then(|(plain_size, plain_sha256)| {
        finish(&mut sink)?;
        Ok((plain_size, plain_sha256))
    });
    match finished {
        Ok((plain_size, plain_sha256)) => Ok(Uploaded {
            key: spec.key.to_owned(),
            size: sink.size,
            sha256: hex::encode(std::mem::take(&mut sink.hash).finalize()),
            plain_size,
            plain_sha256,
            encrypted,
        }),
        Err(e) => {
            let e = sink.failed.take().unwrap_or(e);
            if let Some(id) = &sink.upload_id {
                // Best effort: a crash or a dead server leaves it to the
                // journal's recovery.
                let _ = s3.abort_multipart(spec.key, id);
            }
            Err(e)
        }
    }
}

/// Reads `source` to its end into `sink` (through age when `recipients`
/// are given); the plain size and SHA-256, checked against `expect`.
fn stream(
    source: &mut dyn Read,
    sink: &mut Parts<'_, '_>,
    recipients: &[String],
    progress: &mut dyn FnMut(u64),
    expect: Option<&str>,
) -> std::result::Result<(u64, String), UploadError> {
    let io = |e: std::io::Error| {
        UploadError::Local(Error::Io {
            action: "uploading",
            path: Default::default(),
            source: e,
        })
    };
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut chunk = vec![0u8; CHUNK];
    let mut pump = |out: &mut dyn Write| -> std::result::Result<(), UploadError> {
        loop {
            let n = match source.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(UploadError::Local(Error::Io {
                        action: "reading the archive to upload",
                        path: Default::default(),
                        source: e,
                    }));
                }
            };
            hash.update(&chunk[..n]);
            total += n as u64;
            out.write_all(&chunk[..n]).map_err(io)?;
            progress(total);
        }
    };
    if recipients.is_empty() {
        pump(sink)?;
    } else {
        let mut sealed =
            super::crypt::encrypt(recipients, &mut *sink).map_err(UploadError::Local)?;
        pump(&mut sealed)?;
        sealed.finish().map_err(io)?;
    }
    let sha = hex::encode(hash.finalize());
    if let Some(want) = expect
        && !want.eq_ignore_ascii_case(&sha)
    {
        return Err(UploadError::Local(Error::CorruptArchive(format!(
            "the archive's SHA-256 is {sha}, not the {want} its index entry records: \
             it was not copied (run backup verify)"
        ))));
    }
    Ok((total, sha))
}

/// Makes the object visible: one `PUT` when it fits a part, else the last
/// part and the completion; both only if the key is free.
fn finish(sink: &mut Parts<'_, '_>) -> std::result::Result<(), UploadError> {
    let Some(id) = sink.upload_id.clone() else {
        return sink
            .s3
            .put(sink.key, &sink.buf, true)
            .map_err(UploadError::S3);
    };
    if !sink.buf.is_empty() {
        sink.send_part()?;
    }
    sink.s3
        .complete_multipart(sink.key, &id, &sink.parts)
        .map_err(UploadError::S3)
}

/// What a download wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes received (stored, encrypted when it was).
    pub size: u64,
    /// SHA-256 of the bytes received.
    pub sha256: String,
    /// Bytes written (plain).
    pub plain_size: u64,
    /// SHA-256 of the bytes written.
    pub plain_sha256: String,
}

/// Streams `key` (at most `limit` bytes) into `out`, decrypted with
/// `identities` when given; refused when the plain SHA-256 is not `expect`
/// (what was written must then be thrown away by the caller).
pub fn download(
    s3: &S3,
    key: &str,
    limit: u64,
    identities: Option<&[Box<dyn age::Identity + Send + Sync>]>,
    expect_sha256: Option<&str>,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Downloaded> {
    let body = s3.get(key, limit)?;
    let mut stored = Hashing {
        inner: body,
        hash: Sha256::new(),
        size: 0,
    };
    let io = |action: &'static str| {
        move |e: std::io::Error| Error::Io {
            action,
            path: Default::default(),
            source: e,
        }
    };
    let mut plain = Sha256::new();
    let mut total = 0u64;
    let mut chunk = vec![0u8; CHUNK];
    {
        let mut reader: Box<dyn Read + '_> = match identities {
            Some(ids) => Box::new(super::crypt::decrypt(ids, &mut stored)?),
            None => Box::new(&mut stored),
        };
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("downloading")(e)),
            };
            plain.update(&chunk[..n]);
            total += n as u64;
            out.write_all(&chunk[..n])
                .map_err(io("writing the download"))?;
            progress(total);
        }
    }
    let plain_sha256 = hex::encode(plain.finalize());
    if let Some(want) = expect_sha256
        && !want.eq_ignore_ascii_case(&plain_sha256)
    {
        return Err(Error::CorruptArchive(format!(
            "the remote copy {key} is not the backup recorded: its SHA-256 is {plain_sha256}, not {want}"
        )));
    }
    Ok(Downloaded {
        size: stored.size,
        sha256: hex::encode(stored.hash.finalize()),
        plain_size: total,
        plain_sha256,
    })
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Whether `e` says the key was taken (nothing was overwritten).
pub fn is_exists(e: &UploadError) -> bool {
    matches!(e, UploadError::S3(s) if s.kind == S3ErrorKind::Exists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Patience;
    use crate::remote::fake;

    fn spec<'a>(
        key: &'a str,
        part_size: usize,
        progress: &'a mut dyn FnMut(u64),
        on_started: &'a mut dyn FnMut(&str) -> Result<()>,
    ) -> Upload<'a> {
        Upload {
            key,
            recipients: &[],
            part_size,
            expect_sha256: None,
            progress,
            on_started,
        }
    }

    #[test]
    fn an_upload_of_more_than_10000_parts_is_refused_before_anything_is_sent() {
        let fake = fake::serve(|_, _, stream| fake::reply(stream, 500, ""));
        let s3 = fake.client(Patience::START_UP);
        let bytes = vec![7u8; 20_001];
        let (mut progress, mut started) = (|_| {}, |_: &str| Ok(()));
        let e = upload_sized(
            &s3,
            &mut bytes.as_slice(),
            bytes.len() as u64,
            spec("p/k", 2, &mut progress, &mut started),
        )
        .unwrap_err();
        assert!(e.to_string().contains("part_size_mib"), "{e}");
        assert!(e.to_string().contains("10001 parts"), "{e}");
        assert_eq!(fake.count(), 0, "nothing sent");
        // 10,000 parts exactly are allowed.
        assert!(check_parts("k", 20_000, 2).is_ok());
        // An encrypted copy is a little larger than its source.
        assert!(stored_size(10 << 20, 1) > 10 << 20);
    }

    #[test]
    fn a_small_upload_holds_no_more_than_its_size() {
        let fake = fake::serve(|_, _, stream| fake::reply(stream, 200, ""));
        let s3 = fake.client(Patience::START_UP);
        let mut started = |_: &str| Ok(());
        let mut sink = Parts {
            s3: &s3,
            key: "p/k",
            part_size: 64 << 20,
            expect: 10,
            buf: Vec::new(),
            hash: Sha256::new(),
            size: 0,
            upload_id: None,
            parts: Vec::new(),
            on_started: &mut started,
            failed: None,
        };
        assert_eq!(sink.buf.capacity(), 0, "nothing allocated before a byte");
        sink.write_all(b"0123456789").unwrap();
        assert!(sink.buf.capacity() < 1 << 10, "{}", sink.buf.capacity());
        // Bytes beyond what was expected grow it, never past a part.
        let more = vec![1u8; 40 << 20];
        sink.write_all(&more).unwrap();
        assert!(sink.buf.capacity() <= 64 << 20);
        finish(&mut sink).unwrap();
        assert_eq!(fake.count(), 1, "one PUT");
    }
}
