//! `abssd::extract`: archives made by GNU tar (zstd, gzip, multi-member gzip,
//! plain, pax) and by our own writer come back exactly — content, modes,
//! owners, mtimes, symlinks, hardlinks — with setuid/setgid dropped and the
//! archive's sha256 as `sha256sum` sees it; extraction also works unprivileged.
//! Hostile archives are in `extract_hostile.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd::extract::{Expect, Extracted, extract};
use abssd_proto::Algorithm;
use abssd_tests::{share, tar};

const TOP: &str = "20250101-000000-budget-abc123";

/// (kind, mode, uid, gid, mtime s, mtime ns, content or link target) of a path.
type Node = (char, u32, u32, u32, i64, i64, Vec<u8>);

/// Every path under `root`, relative.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let (kind, body) = if m.is_dir() {
                ('d', vec![])
            } else if m.file_type().is_symlink() {
                (
                    'l',
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                )
            } else {
                ('f', fs::read(&p).unwrap())
            };
            let rel = p.strip_prefix(root).unwrap().to_owned();
            let node = (
                kind,
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec(),
                body,
            );
            out.insert(rel, node);
            if m.is_dir() {
                go(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// What extraction must produce from a source snapshot: setuid/setgid
/// dropped, symlink modes as the system makes them, and sub-second times
/// dropped unless the format keeps them.
fn expected(src: &BTreeMap<PathBuf, Node>, keep_ns: bool) -> BTreeMap<PathBuf, Node> {
    src.iter()
        .map(|(p, n)| {
            let mut n = n.clone();
            if n.0 != 'l' {
                n.1 &= 0o1777;
            }
            if !keep_ns {
                n.5 = 0;
            }
            (p.clone(), n)
        })
        .collect()
}

fn without_ns(snap: BTreeMap<PathBuf, Node>) -> BTreeMap<PathBuf, Node> {
    snap.into_iter()
        .map(|(p, mut n)| {
            n.5 = 0;
            (p, n)
        })
        .collect()
}

fn touch(path: &Path, at: &str) {
    let ok = Command::new("touch")
        .args(["-h", "-d", at])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {}", path.display());
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A backup payload under `<src>/<TOP>` exercising everything extraction
/// keeps, hardlinks and non-UTF-8 names included.
fn make_source(src: &Path) -> PathBuf {
    let top = src.join(TOP);
    let data = top.join("data");
    for d in ["sub/deep/ro", "up", "sticky", "sgid", "private"] {
        fs::create_dir_all(data.join(d)).unwrap();
    }
    for d in ["systemd", "nginx", "nginx-enabled", "metadata"] {
        fs::create_dir_all(top.join(d)).unwrap();
    }
    fs::write(data.join("a.txt"), b"hello\n").unwrap();
    fs::write(data.join("empty"), b"").unwrap();
    fs::write(data.join("exec"), b"#!/bin/sh\n").unwrap();
    fs::write(data.join("suid"), b"setuid\n").unwrap();
    // 3 MiB that does not compress, spanning many read chunks.
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(data.join("sub/big.bin"), &big).unwrap();
    fs::write(data.join("sub/deep/ro/inside"), b"read-only dir\n").unwrap();
    fs::write(data.join("private/secret.key"), b"k3y\n").unwrap();
    let long = "n".repeat(150);
    fs::write(data.join(&long), b"a name longer than 100 bytes\n").unwrap();
    fs::write(
        data.join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
        b"latin-1 name\n",
    )
    .unwrap();
    // A long one, stored in a GNU long-name record, in a non-UTF-8 directory.
    let mut long_raw = b"d\xff\xfe/".to_vec();
    long_raw.extend_from_slice(&[b'\xe9'; 120]);
    fs::create_dir(data.join(std::ffi::OsStr::from_bytes(b"d\xff\xfe"))).unwrap();
    fs::write(
        data.join(std::ffi::OsStr::from_bytes(&long_raw)),
        b"a long latin-1 name\n",
    )
    .unwrap();
    fs::hard_link(data.join("a.txt"), data.join("sub/hard")).unwrap();
    symlink("sub/deep", data.join("current")).unwrap();
    symlink("../a.txt", data.join("up/link")).unwrap();
    symlink(
        format!("sub/{}", "x".repeat(120)),
        data.join("dangling-long"),
    )
    .unwrap();
    fs::write(top.join("systemd/abssctl-budget.service"), b"[Unit]\n").unwrap();
    fs::write(top.join("nginx/abssctl-budget.conf"), b"server {}\n").unwrap();
    fs::write(
        top.join("nginx-enabled/abssctl-budget.conf"),
        b"server {}\n",
    )
    .unwrap();
    fs::write(top.join("metadata/instances.yml"), b"instances: []\n").unwrap();
    fs::write(top.join("metadata/instance.json"), b"{}\n").unwrap();

    lchown(data.join("sub/big.bin"), Some(1234), Some(5678)).unwrap();
    lchown(data.join("current"), Some(1234), Some(5678)).unwrap();
    lchown(data.join("sub"), Some(4321), Some(8765)).unwrap();
    chmod(&data.join("suid"), 0o4755);
    chmod(&data.join("exec"), 0o755);
    chmod(&data.join("empty"), 0o600);
    chmod(&data.join("private/secret.key"), 0o400);
    chmod(&data.join("private"), 0o700);
    chmod(&data.join("sticky"), 0o1777);
    chmod(&data.join("sgid"), 0o2750);
    // Times last, deepest first, so creating children does not move them.
    let status = Command::new("find")
        .arg(&top)
        .args([
            "-depth",
            "-exec",
            "touch",
            "-h",
            "-d",
            "@1600000000.25",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    touch(&data.join("a.txt"), "@1500000000.123456789");
    touch(&data.join("current"), "@1400000000");
    touch(&data.join("sub/deep/ro"), "@1300000000");
    chmod(&data.join("sub/deep/ro"), 0o500);
    top
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
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

/// Extract, returning the result and the progress total.
fn run(archive: &Path, staging: &Path, expect: &Expect) -> (abssd::Result<Extracted>, u64) {
    let _share = share();
    let mut read = 0u64;
    let result = extract(archive, staging, expect, &mut |n| read += n);
    (result, read)
}

/// Extract `archive` into a new staging dir next to it and check the result
/// against `src`.
fn round_trip(work: &Path, src_top: &Path, archive: &Path, algorithm: Algorithm, keep_ns: bool) {
    let staging = work.join(format!(
        "staging-{}",
        archive.file_name().unwrap().display()
    ));
    fs::create_dir(&staging).unwrap();
    let sha = sha256sum(archive);
    let (result, read) = run(archive, &staging, &expect(algorithm, sha.clone()));
    let done = result.unwrap_or_else(|e| panic!("{}: {e}", archive.display()));
    let size = fs::metadata(archive).unwrap().len();
    assert_eq!(done.sha256, sha);
    assert_eq!(done.archive_bytes, size);
    assert_eq!(read, size, "progress adds up to the archive size");
    let src = snapshot(src_top.parent().unwrap());
    let got = snapshot(&staging);
    let want = expected(&src, keep_ns);
    let got = if keep_ns { got } else { without_ns(got) };
    for (p, n) in &want {
        assert_eq!(
            got.get(p),
            Some(n),
            "{}: {}",
            archive.display(),
            p.display()
        );
    }
    assert_eq!(got.len(), want.len(), "{}", archive.display());
    assert_eq!(done.entries, want.len() as u64);
    let content: u64 = src
        .iter()
        .filter(|(p, n)| n.0 == 'f' && !p.ends_with("sub/hard"))
        .map(|(_, n)| n.6.len() as u64)
        .sum();
    assert_eq!(done.content_bytes, content);
    let data = staging.join(TOP).join("data");
    let a = fs::metadata(data.join("a.txt")).unwrap();
    let hard = fs::metadata(data.join("sub/hard")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (hard.ino(), 2), "hardlink kept");
    // What the tests check for setuid must have been there to drop.
    assert_eq!(src[&PathBuf::from(TOP).join("data/suid")].1, 0o4755);
    assert_eq!(got[&PathBuf::from(TOP).join("data/suid")].1, 0o755);
}

#[test]
fn gnu_tar_archives_in_every_compression_come_back_exactly() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    let top = make_source(&src);
    let src_s = src.to_str().unwrap();

    let zst = w.join("a.tar.zst");
    tar(&["--zstd", "-cf", zst.to_str().unwrap(), "-C", src_s, TOP]);
    round_trip(w, &top, &zst, Algorithm::Zstd, false);

    let gz = w.join("a.tar.gz");
    tar(&["-czf", gz.to_str().unwrap(), "-C", src_s, TOP]);
    round_trip(w, &top, &gz, Algorithm::Gzip, false);

    // pax keeps sub-second times; a plain tar goes through uncompressed.
    let plain = w.join("a.tar");
    tar(&[
        "--format=posix",
        "-cf",
        plain.to_str().unwrap(),
        "-C",
        src_s,
        TOP,
    ]);
    round_trip(w, &top, &plain, Algorithm::None, true);

    // Two gzip members back to back, split in the middle of an entry: GNU tar
    // reads it, so must we.
    let bytes = fs::read(&plain).unwrap();
    let mut multi = Vec::new();
    for part in [
        &bytes[..bytes.len() / 2 + 77],
        &bytes[bytes.len() / 2 + 77..],
    ] {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let part = part.to_vec();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(&part).unwrap();
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(out.status.success());
        multi.extend_from_slice(&out.stdout);
    }
    let multi_path = w.join("multi.tar.gz");
    fs::write(&multi_path, &multi).unwrap();
    tar(&["-tzf", multi_path.to_str().unwrap()]);
    round_trip(w, &top, &multi_path, Algorithm::Gzip, true);
}

#[test]
fn our_own_archives_come_back_exactly() {
    use abssd::archive::{Budget, Codec, Tree, walk, write};

    // The walk and the writer pass the create hooks.
    let _share = share();
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_owned();
    let top = make_source(&w.join("src"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    for (algorithm, name) in [
        (Algorithm::Zstd, "ours.tar.zst"),
        (Algorithm::Gzip, "ours.tar.gz"),
        (Algorithm::None, "ours.tar"),
    ] {
        let archive = w.join(name);
        let file = fs::File::create(&archive).unwrap();
        let tree = std::sync::Arc::new(Tree::open(&top).unwrap());
        let (members, skipped) = walk(&tree, TOP, &mut Budget::new(u64::MAX)).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let codec = Codec {
            algorithm,
            level: 3,
            workers: 2,
        };
        let written = rt
            .block_on(rt.spawn_blocking(move || write(file, &members, codec, &mut |_| {})))
            .unwrap()
            .unwrap();
        assert_eq!(written.sha256, sha256sum(&archive));
        round_trip(&w, &top, &archive, algorithm, false);
    }
}

#[test]
fn dot_slash_names_and_missing_directory_entries_are_accepted() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_source(&src);
    // `./<id>/...` names, as `tar -C staging ./<id>` writes them.
    let dotted = w.join("dotted.tar");
    tar(&[
        "-cf",
        dotted.to_str().unwrap(),
        "-C",
        src.to_str().unwrap(),
        &format!("./{TOP}"),
    ]);
    let staging = w.join("s1");
    fs::create_dir(&staging).unwrap();
    let (r, _) = run(
        &dotted,
        &staging,
        &expect(Algorithm::None, sha256sum(&dotted)),
    );
    r.unwrap();
    assert_eq!(
        without_ns(snapshot(&staging)),
        expected(&snapshot(&src), false)
    );

    // Only files listed: every directory is created as a parent, 0750 at the end.
    let bare = w.join("bare.tar");
    tar(&[
        "-cf",
        bare.to_str().unwrap(),
        "-C",
        src.to_str().unwrap(),
        &format!("{TOP}/data/sub/deep/ro/inside"),
        &format!("{TOP}/metadata/instance.json"),
    ]);
    let staging = w.join("s2");
    fs::create_dir(&staging).unwrap();
    let (r, _) = run(&bare, &staging, &expect(Algorithm::None, sha256sum(&bare)));
    assert_eq!(r.unwrap().entries, 2);
    for d in [
        "",
        "/data",
        "/data/sub",
        "/data/sub/deep",
        "/data/sub/deep/ro",
        "/metadata",
    ] {
        let m = fs::metadata(staging.join(format!("{TOP}{d}"))).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o750, "{d}");
    }
    assert_eq!(
        fs::read(staging.join(TOP).join("data/sub/deep/ro/inside")).unwrap(),
        b"read-only dir\n"
    );
}

#[test]
fn a_repeated_directory_entry_updates_its_metadata() {
    use abssd_tests::rawtar::{RawTar, kind};
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let bytes = RawTar::new()
        .entry(format!("{TOP}/").as_bytes(), kind::DIR, b"", b"", 0o755)
        .entry(
            format!("{TOP}/data/").as_bytes(),
            kind::DIR,
            b"",
            b"",
            0o755,
        )
        .file(&format!("{TOP}/data/x"), b"x")
        .entry(
            format!("{TOP}/data/").as_bytes(),
            kind::DIR,
            b"",
            b"",
            0o711,
        )
        .finish();
    let archive = w.join("a.tar");
    fs::write(&archive, bytes).unwrap();
    let staging = w.join("s");
    fs::create_dir(&staging).unwrap();
    let (r, _) = run(
        &archive,
        &staging,
        &expect(Algorithm::None, sha256sum(&archive)),
    );
    assert_eq!(r.unwrap().entries, 4);
    let m = fs::metadata(staging.join(TOP).join("data")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o711);
    assert_eq!(m.mtime(), 1_600_000_000);
}

/// Unprivileged extraction (`same_owner: false`) fills read-only directories
/// and leaves everything owned by the extracting user. As root, the test runs
/// itself again as `nobody`.
#[test]
fn extraction_works_unprivileged_without_owners() {
    const CHILD: &str = "ABSSD_TEST_EXTRACT_AS_CHILD";
    if let Ok(spec) = std::env::var(CHILD) {
        let (archive, staging) = spec.split_once('\n').unwrap();
        let archive = Path::new(archive);
        let mut e = expect(Algorithm::Zstd, sha256sum(archive));
        e.same_owner = false;
        let (r, _) = run(archive, Path::new(staging), &e);
        r.unwrap();
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_source(&src);
    let archive = w.join("a.tar.zst");
    tar(&[
        "--zstd",
        "-cf",
        archive.to_str().unwrap(),
        "-C",
        src.to_str().unwrap(),
        TOP,
    ]);
    let staging = w.join("staging");
    fs::create_dir(&staging).unwrap();
    let me = nix::unistd::geteuid().as_raw();
    let (uid, gid) = if me == 0 {
        let (uid, gid) = (65534, 65534);
        for p in [w, &staging, &archive] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                // Its name in the test binary: its module's path, the crate's
                // name left out.
                &format!(
                    "{}::extraction_works_unprivileged_without_owners",
                    module_path!().split_once("::").expect("a module").1
                ),
                "--test-threads=1",
            ])
            .env(
                CHILD,
                format!("{}\n{}", archive.display(), staging.display()),
            )
            .uid(uid)
            .gid(gid)
            .status()
            .unwrap();
        assert!(status.success(), "extraction as nobody failed");
        (uid, gid)
    } else {
        let mut e = expect(Algorithm::Zstd, sha256sum(&archive));
        e.same_owner = false;
        run(&archive, &staging, &e).0.unwrap();
        (me, nix::unistd::getegid().as_raw())
    };
    let want: BTreeMap<_, _> = expected(&snapshot(&src), false)
        .into_iter()
        .map(|(p, mut n)| {
            n.2 = uid;
            n.3 = gid;
            (p, n)
        })
        .collect();
    let got = without_ns(snapshot(&staging));
    assert_eq!(got, want);
    let ro = staging.join(TOP).join("data/sub/deep/ro");
    assert_eq!(fs::metadata(&ro).unwrap().mode() & 0o7777, 0o500);
}
