//! `abssd::extract` against hostile and damaged archives: each one gets a clear
//! error, and nothing outside the staging directory changes (SPEC §9).
//!
//! Every case runs in a fixture whose staging directory sits beside a
//! `victim/` directory; absolute and `..` names aim at it. After each refusal
//! the whole fixture outside `staging/` must be byte-for-byte what it was.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use abssd::extract::{Expect, Extracted, extract};
use abssd_proto::Algorithm;
use abssd_tests::rawtar::{RawTar, kind};
use abssd_tests::{Share, share, tar};

const TOP: &str = "20250101-000000-budget-abc123";

/// A temporary directory with `victim/`, `archives/` and `work/staging/`.
struct Fixture {
    dir: tempfile::TempDir,
    /// Extraction passes a hook (see [`abssd_tests::serial`]).
    _share: Share,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::create_dir_all(victim.join("dir")).unwrap();
        fs::write(victim.join("passwd"), b"root:x:0:0\n").unwrap();
        fs::create_dir_all(dir.path().join("archives")).unwrap();
        fs::create_dir_all(dir.path().join("work/staging")).unwrap();
        Fixture {
            dir,
            _share: share(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn victim(&self) -> PathBuf {
        self.root().join("victim")
    }

    fn staging(&self) -> PathBuf {
        self.root().join("work/staging")
    }

    /// Every path of the fixture outside `staging/`, with type, mode, size,
    /// mtime and content.
    fn outside(&self) -> BTreeMap<PathBuf, (u32, u64, i64, i64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let staging = self.staging();
        let mut stack = vec![self.root().to_owned()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p == staging {
                    continue;
                }
                let m = fs::symlink_metadata(&p).unwrap();
                let body = if m.is_file() {
                    fs::read(&p).unwrap()
                } else {
                    vec![]
                };
                out.insert(
                    p.clone(),
                    (m.mode(), m.size(), m.mtime(), m.mtime_nsec(), body),
                );
                if m.is_dir() {
                    stack.push(p);
                }
            }
        }
        out
    }

    /// Write `tar_bytes` compressed with `algorithm` as an archive.
    fn archive(&self, name: &str, tar_bytes: &[u8], algorithm: Algorithm) -> PathBuf {
        let path = self.root().join("archives").join(name);
        let bytes = match algorithm {
            Algorithm::None => tar_bytes.to_vec(),
            Algorithm::Zstd => filter(&["zstd", "-q", "-c"], tar_bytes),
            Algorithm::Gzip => filter(&["gzip", "-c"], tar_bytes),
        };
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Extract into a fresh staging directory with the archive's true sha256
    /// and a generous size bound.
    fn extract(&self, archive: &Path, algorithm: Algorithm) -> abssd::Result<Extracted> {
        fs::remove_dir_all(self.staging()).unwrap();
        fs::create_dir(self.staging()).unwrap();
        let e = expect(algorithm, sha256sum(archive));
        self.extract_with(archive, &e)
    }

    fn extract_with(&self, archive: &Path, e: &Expect) -> abssd::Result<Extracted> {
        extract(archive, &self.staging(), e, &mut |_| {})
    }

    /// The archive (tar bytes, compressed here) must be refused with an
    /// archive error containing `needle`.
    fn refused(&self, tar_bytes: &[u8], algorithm: Algorithm, needle: &str) -> String {
        let archive = self.archive("hostile", tar_bytes, algorithm);
        self.refused_file(&archive, &expect(algorithm, sha256sum(&archive)), needle)
    }

    /// Extract `archive` into a fresh staging directory: it must be refused
    /// with an archive error containing `needle` (and naming the archive),
    /// leaving everything outside staging as it was.
    fn refused_file(&self, archive: &Path, e: &Expect, needle: &str) -> String {
        fs::remove_dir_all(self.staging()).unwrap();
        fs::create_dir(self.staging()).unwrap();
        let before = self.outside();
        let err = self.extract_with(archive, e).unwrap_err();
        let msg = err.to_string();
        // A damaged archive is refused as corrupt (exit 2, as the Python tool's
        // checksum refusal); an intact one holding what we refuse, as archive work.
        if msg.contains("is truncated or corrupt") || msg.starts_with("checksum mismatch for ") {
            assert!(matches!(err, abssd::Error::CorruptArchive(_)), "{err:?}");
        } else {
            assert!(matches!(err, abssd::Error::Archive(_)), "{err:?}");
        }
        assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
        assert!(msg.contains(&archive.display().to_string()), "{msg}");
        assert_eq!(
            self.outside(),
            before,
            "something changed outside staging: {msg}"
        );
        msg
    }
}

fn expect(algorithm: Algorithm, sha256: String) -> Expect {
    Expect {
        algorithm,
        sha256,
        top: TOP.into(),
        max_bytes: 1 << 30,
        limits: abssd::extract::Limits {
            max_entries: 1_000_000,
            recorded_bytes: None,
        },
        reserve: abssd::extract::Reserve { percent: 0 },
        same_owner: true,
    }
}

fn filter(cmd: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "{cmd:?}");
    out.stdout
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn name(rel: &str) -> String {
    format!("{TOP}/{rel}")
}

/// A valid start: the top directory and data/.
fn start() -> RawTar {
    RawTar::new().dir(&name("")).dir(&name("data/"))
}

#[test]
fn absolute_names_are_refused() {
    let fx = Fixture::new();
    let evil = fx.victim().join("evil");
    for algorithm in [Algorithm::None, Algorithm::Zstd, Algorithm::Gzip] {
        let bytes = start().file(evil.to_str().unwrap(), b"pwned").finish();
        fx.refused(&bytes, algorithm, "has an absolute name");
    }
    let bytes = start().file("/etc/cron.d/evil", b"pwned").finish();
    fx.refused(&bytes, Algorithm::None, "has an absolute name");
    assert!(!evil.exists());

    // GNU tar itself writes one with -P.
    let archive = fx.root().join("archives/abs.tar");
    tar(&[
        "-P",
        "-cf",
        archive.to_str().unwrap(),
        fx.victim().join("passwd").to_str().unwrap(),
    ]);
    let bytes = fs::read(&archive).unwrap();
    fx.refused(&bytes, Algorithm::None, "has an absolute name");
}

#[test]
fn dot_dot_and_names_outside_the_top_directory_are_refused() {
    let fx = Fixture::new();
    for (entry, why) in [
        (name("../../victim/evil"), "has a '..' component"),
        (name("data/../../../victim/evil"), "has a '..' component"),
        ("../victim/evil".to_owned(), "has a '..' component"),
        (
            "other-id/data/x".to_owned(),
            "is outside the backup's top directory",
        ),
        (
            format!("{TOP}x/data/x"),
            "is outside the backup's top directory",
        ),
        ("x".to_owned(), "is outside the backup's top directory"),
    ] {
        let bytes = start().file(&entry, b"pwned").finish();
        let msg = fx.refused(&bytes, Algorithm::Zstd, why);
        assert!(msg.contains(&entry), "{msg}");
    }
    // `./` itself is the staging directory, not the backup.
    let bytes = RawTar::new().dir("./").dir(&name("")).finish();
    fx.refused(
        &bytes,
        Algorithm::None,
        "is outside the backup's top directory",
    );
    // The top directory must be a directory.
    let bytes = RawTar::new().file(TOP, b"x").finish();
    fx.refused(&bytes, Algorithm::None, "is not a directory");

    // GNU tar with --transform.
    let src = fx.root().join("archives/src");
    fs::create_dir_all(src.join(TOP).join("data")).unwrap();
    fs::write(src.join(TOP).join("data/x"), b"x").unwrap();
    let archive = fx.root().join("archives/transformed.tar");
    tar(&[
        "-cf",
        archive.to_str().unwrap(),
        "-C",
        src.to_str().unwrap(),
        "--transform",
        "s,data/x,data/../../victim/evil,",
        TOP,
    ]);
    let bytes = fs::read(&archive).unwrap();
    fx.refused(&bytes, Algorithm::None, "has a '..' component");
    assert!(!fx.victim().join("evil").exists());
}

#[test]
fn symlink_escapes_are_refused_and_never_written_through() {
    let fx = Fixture::new();
    let victim = fx.victim();
    let absolute = victim.to_str().unwrap().to_owned();
    for target in [absolute.as_str(), "../../..", "..", "../../victim", "/tmp"] {
        let bytes = start()
            .symlink(&name("data/link"), target)
            .file(&name("data/link/evil"), b"pwned")
            .finish();
        fx.refused(&bytes, Algorithm::Zstd, "is a symlink");
    }
    // `d -> .` is fine on its own; `e -> d/../..` would climb out through it.
    let bytes = start()
        .symlink(&name("data/d"), ".")
        .symlink(&name("data/e"), "d/../../..")
        .finish();
    fx.refused(&bytes, Algorithm::None, "has '..' after a name");
    // Symlinks belong in data/ only.
    let bytes = start()
        .dir(&name("nginx-enabled/"))
        .symlink(&name("nginx-enabled/site"), "../nginx/site")
        .finish();
    fx.refused(&bytes, Algorithm::None, "is a symlink outside data/");
    // Even a link that stays inside data/ is never followed to write.
    let bytes = start()
        .dir(&name("data/sub/"))
        .symlink(&name("data/link"), "sub")
        .file(&name("data/link/evil"), b"through a link")
        .finish();
    fx.refused(&bytes, Algorithm::None, "is needed as a directory");
    assert!(!fx.staging().join(TOP).join("data/sub/evil").exists());
    assert!(!victim.join("evil").exists());
}

#[test]
fn hardlink_escapes_are_refused() {
    let fx = Fixture::new();
    let passwd = fx.victim().join("passwd");
    for (target, why) in [
        (passwd.to_str().unwrap().to_owned(), "has an absolute name"),
        ("/etc/passwd".to_owned(), "has an absolute name"),
        ("../x".to_owned(), "has a '..' component"),
        (name("../victim/passwd"), "has a '..' component"),
        (
            "victim/passwd".to_owned(),
            "is outside the backup's top directory",
        ),
        (name("data/later"), "not a regular file extracted before it"),
        (name("data"), "not a regular file extracted before it"),
        (name("data/link"), "not a regular file extracted before it"),
    ] {
        let bytes = start()
            .symlink(&name("data/link"), "later")
            .hardlink(&name("data/h"), &target)
            .file(&name("data/later"), b"later")
            .finish();
        let msg = fx.refused(&bytes, Algorithm::Gzip, why);
        assert!(msg.contains("is a hardlink"), "{msg}");
    }
    assert_eq!(fs::metadata(&passwd).unwrap().nlink(), 1);
}

#[test]
fn device_nodes_fifos_and_other_types_are_refused() {
    let fx = Fixture::new();
    for (k, what) in [
        (kind::CHAR, "character device"),
        (kind::BLOCK, "block device"),
        (kind::FIFO, "FIFO"),
        (kind::CONTIGUOUS, "contiguous file"),
        (kind::SPARSE, "GNU sparse file"),
        (b'Z', "entry of type 'Z'"),
    ] {
        let bytes = start()
            .entry(name("data/node").as_bytes(), k, b"", b"", 0o666)
            .finish();
        let msg = fx.refused(&bytes, Algorithm::Zstd, what);
        assert!(msg.contains("data/node"), "{msg}");
    }
    let bytes = start()
        .entry(b"pax_global_header", kind::PAX_GLOBAL, b"", b"", 0o644)
        .finish();
    fx.refused(&bytes, Algorithm::None, "pax global header");
    // A real sparse file, as GNU tar stores it with --sparse.
    let src = fx.root().join("archives/src");
    let data = src.join(TOP).join("data");
    fs::create_dir_all(&data).unwrap();
    let holey = fs::File::create(data.join("holey")).unwrap();
    holey.set_len(4 << 20).unwrap();
    drop(holey);
    let archive = fx.root().join("archives/sparse.tar");
    tar(&[
        "--sparse",
        "-cf",
        archive.to_str().unwrap(),
        "-C",
        src.to_str().unwrap(),
        TOP,
    ]);
    fs::remove_dir_all(&src).unwrap();
    let msg = fx.refused_file(
        &archive,
        &expect(Algorithm::None, sha256sum(&archive)),
        "GNU sparse file",
    );
    assert!(msg.contains("data/holey"), "{msg}");
    assert_eq!(
        fs::read_dir(fx.staging().join(TOP).join("data"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn duplicate_entries_are_refused() {
    let fx = Fixture::new();
    let cases = [
        start()
            .file(&name("data/x"), b"one")
            .file(&name("data/x"), b"two"),
        start()
            .symlink(&name("data/l"), "a")
            .symlink(&name("data/l"), "b"),
        start()
            .file(&name("data/x"), b"one")
            .symlink(&name("data/x"), "a"),
        start()
            .file(&name("data/x"), b"one")
            .hardlink(&name("data/x"), &name("data/x")),
        start().dir(&name("data/x/")).file(&name("data/x"), b"one"),
        start().file(&name("data/x"), b"one").dir(&name("data/x/")),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let msg = fx.refused(&case.finish(), Algorithm::None, "duplicate entry");
        assert!(
            msg.contains("data/x") || msg.contains("data/l"),
            "case {i}: {msg}"
        );
    }
    // The first of the two files is what is on disk: nothing was replaced.
    assert_eq!(
        fs::read(fx.staging().join(TOP).join("data/x")).unwrap(),
        b"one"
    );
}

/// A real archive of a few files, made by GNU tar.
fn real_archive(fx: &Fixture, flag: &str, name: &str) -> PathBuf {
    let src = fx.root().join("archives/src");
    let data = src.join(TOP).join("data");
    fs::create_dir_all(&data).unwrap();
    let mut x: u32 = 1;
    for i in 0..4 {
        let bytes: Vec<u8> = (0..300_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        fs::write(data.join(format!("f{i}")), bytes).unwrap();
    }
    let archive = fx.root().join("archives").join(name);
    let mut args = vec![
        flag,
        "-cf",
        archive.to_str().unwrap(),
        "-C",
        src.to_str().unwrap(),
        TOP,
    ];
    args.retain(|a| !a.is_empty());
    tar(&args);
    fs::remove_dir_all(&src).unwrap();
    archive
}

#[test]
fn truncated_archives_are_refused() {
    let fx = Fixture::new();
    for (flag, algorithm) in [("--zstd", Algorithm::Zstd), ("-z", Algorithm::Gzip)] {
        let good = real_archive(&fx, flag, "good");
        let bytes = fs::read(&good).unwrap();
        let cut = fx.root().join("archives/cut");
        for len in [bytes.len() / 2, bytes.len() - 3] {
            fs::write(&cut, &bytes[..len]).unwrap();
            // The checksum of the cut file: the damage must be seen in the stream.
            fx.refused_file(
                &cut,
                &expect(algorithm, sha256sum(&cut)),
                "is truncated or corrupt",
            );
        }
    }
    // Plain tar cut in the middle of a file's data, and cut cleanly between
    // entries (no end-of-archive marker).
    let bytes = start().file(&name("data/x"), &[7u8; 5000]).unfinished();
    fx.refused(&bytes[..3000], Algorithm::None, "ends unexpectedly");
    fx.refused(&bytes, Algorithm::Zstd, "without an end-of-archive marker");
    // A header cut in half.
    fx.refused(
        &bytes[..1024 + 200],
        Algorithm::None,
        "is truncated or corrupt",
    );
}

#[test]
fn corrupt_archives_are_refused() {
    let fx = Fixture::new();
    for (flag, algorithm) in [
        ("--zstd", Algorithm::Zstd),
        ("-z", Algorithm::Gzip),
        ("", Algorithm::None),
    ] {
        let good = real_archive(&fx, flag, "good");
        let sha = sha256sum(&good);
        let mut bytes = fs::read(&good).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 16] {
            *b ^= 0x5a;
        }
        fs::write(&good, &bytes).unwrap();
        // Whatever notices first (the codec, the tar parser or the checksum
        // over the bytes as read), it is an archive error saying "corrupt".
        fx.refused_file(&good, &expect(algorithm, sha), "corrupt");
    }
    // A damaged tar header.
    let mut bytes = start().file(&name("data/x"), b"x").finish();
    bytes[1024 + 10] ^= 1;
    fx.refused(&bytes, Algorithm::None, "checksum");
    // Something after the end-of-archive marker.
    let bytes = start()
        .file(&name("data/x"), b"x")
        .raw(&[0u8; 1024])
        .raw(b"junk")
        .finish();
    fx.refused(&bytes, Algorithm::Gzip, "after its end-of-archive marker");
    // Not compressed as claimed.
    let bytes = start().file(&name("data/x"), b"x").finish();
    let archive = fx.archive("plain-as-zstd", &bytes, Algorithm::None);
    fx.refused_file(
        &archive,
        &expect(Algorithm::Zstd, sha256sum(&archive)),
        "zstd data",
    );
}

#[test]
fn a_checksum_mismatch_is_reported_after_the_whole_archive() {
    let fx = Fixture::new();
    let archive = real_archive(&fx, "--zstd", "good.tar.zst");
    let before = fx.outside();
    let wrong = "0".repeat(64);
    let err = fx
        .extract_with(&archive, &expect(Algorithm::Zstd, wrong.clone()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, abssd::Error::CorruptArchive(_)));
    assert_eq!(
        msg,
        format!(
            "checksum mismatch for {}: expected {wrong}, got {}; the archive is corrupt or was changed",
            archive.display(),
            sha256sum(&archive)
        )
    );
    assert_eq!(fx.outside(), before);
    // Everything was read (and so extracted): the caller removes staging.
    for i in 0..4 {
        let f = fx.staging().join(TOP).join(format!("data/f{i}"));
        assert_eq!(fs::metadata(f).unwrap().len(), 300_000);
    }
    // The same archive with its real checksum (in capitals, from a sidecar).
    fs::remove_dir_all(fx.staging()).unwrap();
    fs::create_dir(fx.staging()).unwrap();
    let done = fx
        .extract_with(
            &archive,
            &expect(Algorithm::Zstd, sha256sum(&archive).to_uppercase()),
        )
        .unwrap();
    assert_eq!(done.sha256, sha256sum(&archive));
    assert_eq!(done.content_bytes, 1_200_000);
}

#[test]
fn content_beyond_the_size_bound_is_refused_before_it_is_written() {
    let fx = Fixture::new();
    let bytes = start()
        .file(&name("data/small"), &[1u8; 1000])
        .file(&name("data/big"), &vec![2u8; 1 << 20])
        .finish();
    let archive = fx.archive("big", &bytes, Algorithm::Zstd);
    let mut e = expect(Algorithm::Zstd, sha256sum(&archive));
    e.max_bytes = 500_000;
    let err = fx.extract_with(&archive, &e).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, abssd::Error::Environment(_)), "{err:?}");
    assert!(msg.contains("would need more than 500000 bytes"), "{msg}");
    assert!(msg.contains("not enough free space"), "{msg}");
    assert!(fx.staging().join(TOP).join("data/small").exists());
    assert!(!fx.staging().join(TOP).join("data/big").exists());
    // Exactly at the bound is fine.
    fs::remove_dir_all(fx.staging()).unwrap();
    fs::create_dir(fx.staging()).unwrap();
    e.max_bytes = 1000 + (1 << 20);
    assert_eq!(
        fx.extract_with(&archive, &e).unwrap().content_bytes,
        e.max_bytes
    );
}

#[test]
fn oversized_name_records_are_refused_without_reading_them() {
    let fx = Fixture::new();
    // 64 MiB of "name": zstd makes it a few KiB on disk.
    let bytes = start()
        .long_name_record(64 << 20)
        .file(&name("data/x"), b"x")
        .finish();
    fx.refused(&bytes, Algorithm::Zstd, "is larger than 1048576 bytes");
    // Real long names (thousands of bytes, below PATH_MAX) are fine.
    let long = name(&format!("data/{}", "d/".repeat(1500)));
    let bytes = start()
        .entry(
            format!("{long}f").as_bytes(),
            kind::FILE,
            b"deep",
            b"",
            0o644,
        )
        .finish();
    let archive = fx.archive("long", &bytes, Algorithm::Zstd);
    let done = fx.extract(&archive, Algorithm::Zstd).unwrap();
    assert_eq!(done.content_bytes, 4);
}

#[test]
fn an_archive_without_entries_is_refused() {
    let fx = Fixture::new();
    fx.refused(&RawTar::new().finish(), Algorithm::Zstd, "holds no entries");
}

#[test]
fn symlinks_and_hardlinks_that_stay_inside_are_extracted() {
    let fx = Fixture::new();
    let bytes = start()
        .dir(&name("data/a/b/"))
        .file(&name("data/a/b/f"), b"f")
        .symlink(&name("data/a/b/up"), "../../x")
        .symlink(&name("data/a/self"), "..")
        .symlink(&name("data/cur"), "a/b")
        .hardlink(&name("data/a/h"), &name("data/a/b/f"))
        .hardlink(&name("data/a/h2"), &format!("./{}", name("data/a/h")))
        .finish();
    let archive = fx.archive("ok", &bytes, Algorithm::Gzip);
    let done = fx.extract(&archive, Algorithm::Gzip).unwrap();
    assert_eq!(done.entries, 9);
    let data = fx.staging().join(TOP).join("data");
    assert_eq!(
        fs::read_link(data.join("a/b/up")).unwrap(),
        Path::new("../../x")
    );
    assert_eq!(fs::read(data.join("cur/f")).unwrap(), b"f");
    assert_eq!(fs::metadata(data.join("a/h2")).unwrap().nlink(), 3);
}

#[test]
fn a_backup_id_that_is_not_one_name_is_refused_up_front() {
    let fx = Fixture::new();
    let archive = fx.archive("a.tar", &start().finish(), Algorithm::None);
    for top in ["", ".", "..", "a/b", "../victim"] {
        let mut e = expect(Algorithm::None, sha256sum(&archive));
        e.top = top.into();
        let err = fx.extract_with(&archive, &e).unwrap_err();
        assert!(matches!(err, abssd::Error::Validation(_)), "{top}: {err:?}");
    }
    assert_eq!(fs::read_dir(fx.staging()).unwrap().count(), 0);
}
