//! What Actual's sync server keeps in its data directory, as the
//! `actual-writer` binary writes it and as the consistency proof
//! (tests/tests/consistency_proof.rs) checks a restored copy of it.
//!
//! The layout and the SQL are the sync server's (`@actual-app/sync-server`
//! 26.x): `server-files/account.sqlite` (its `files` table lists the budgets),
//! `user-files/group-<id>.sqlite` (sync messages, `messages_binary` and
//! `messages_merkles`), `user-files/file-<id>.blob` (a zip of the budget) and
//! `.migrate`. Two things are the writer's own, so that a copy can be checked
//! without the server: the `messages_merkles` row holds the count and byte sum
//! of the group's messages (the server keeps a merkle trie of their timestamps
//! there, updated in the same transaction), and `server_prefs` holds the number
//! of `files` rows. A blob's bytes follow from its id and generation, so a torn
//! or mixed blob is told from a whole one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use serde_json::json;

/// The group database schema, exactly as the server's `messages.sql`.
pub const GROUP_SCHEMA: &str = "CREATE TABLE messages_binary
  (timestamp TEXT PRIMARY KEY,
   is_encrypted BOOLEAN,
   content bytea);

CREATE TABLE messages_merkles
  (id INTEGER PRIMARY KEY,
   merkle TEXT);
";

/// `account.sqlite` as the server's migrations leave it (the tables it opens).
pub const ACCOUNT_SCHEMA: &str = "
CREATE TABLE auth (method TEXT PRIMARY KEY, display_name TEXT, extra_data TEXT, active INTEGER);
CREATE TABLE sessions (token TEXT PRIMARY KEY, expires_at INTEGER, user_id TEXT, auth_method TEXT);
CREATE TABLE files (id TEXT PRIMARY KEY, group_id TEXT, sync_version SMALLINT, encrypt_meta TEXT,
  encrypt_keyid TEXT, encrypt_salt TEXT, encrypt_test TEXT, deleted BOOLEAN DEFAULT FALSE,
  name TEXT, owner TEXT);
CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB);
CREATE TABLE users (id TEXT PRIMARY KEY, user_name TEXT, display_name TEXT, role TEXT,
  enabled INTEGER NOT NULL DEFAULT 1, owner INTEGER NOT NULL DEFAULT 0);
CREATE TABLE user_access (file_id TEXT, user_id TEXT, PRIMARY KEY (file_id, user_id));
CREATE TABLE pending_openid_requests (state TEXT PRIMARY KEY, code_verifier TEXT,
  return_url TEXT, expiry_time INTEGER);
CREATE TABLE server_prefs (key TEXT PRIMARY KEY, value TEXT);
";

/// The `server_prefs` key under which the writer keeps the number of `files`
/// rows, in the transaction that changes them.
pub const FILES_COUNT_KEY: &str = "abssd-proof.files";

/// The sync server's applied migrations, as the `migrate` package stores them.
pub fn migrate_state() -> String {
    let names = [
        "1694360000000-create-folders.js",
        "1694360479680-create-account-db.js",
        "1694362247011-create-secret-table.js",
        "1702667624000-rename-nordigen-secrets.js",
        "1718889148000-openid.js",
        "1719409568000-multiuser.js",
        "1763873568237-server-global-prefs.js",
        "1763873600000-backfill-files-owner.js",
    ];
    let migrations: Vec<_> = names
        .iter()
        .map(|n| json!({"title": n, "timestamp": 1_764_000_000_000u64}))
        .collect();
    json!({"lastRun": names[names.len() - 1], "migrations": migrations}).to_string()
}

/// A small deterministic generator (splitmix64): the writer's choices, and the
/// bytes of a blob from its id and generation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A UUID-shaped id, as the server's ids look.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// FNV-1a of a string: seeds a blob's bytes from its file id.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The bytes of `db.sqlite` inside generation `generation` of blob `file_id`.
fn blob_body(file_id: &str, generation: u64, len: usize) -> Vec<u8> {
    Rng::new(fnv(file_id) ^ generation.wrapping_mul(0x2545_f491_4f6c_dd1d)).bytes(len)
}

/// Generation `generation` of the blob of `file_id`: a zip of `metadata.json`
/// (id, generation, length) and a `db.sqlite` of `len` bytes that follow from
/// them, stored uncompressed (a zip's CRCs catch torn members, the metadata a
/// mix of two generations).
pub fn blob(file_id: &str, generation: u64, len: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(len + 1024)));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    let meta = json!({"fileId": file_id, "generation": generation, "length": len});
    zip.start_file("metadata.json", stored).expect("zip");
    zip.write_all(meta.to_string().as_bytes()).expect("zip");
    zip.start_file("db.sqlite", stored).expect("zip");
    zip.write_all(&blob_body(file_id, generation, len))
        .expect("zip");
    zip.finish().expect("zip").into_inner()
}

/// Whether `bytes` is one whole generation of the blob of `file_id`; the
/// reason when it is not.
pub fn check_blob(file_id: &str, bytes: &[u8]) -> Result<u64, String> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a zip: {e}"))?;
    let mut read = |name: &str| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        zip.by_name(name)
            .and_then(|mut f| Ok(f.read_to_end(&mut out)?))
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(out)
    };
    let meta: serde_json::Value = serde_json::from_slice(&read("metadata.json")?)
        .map_err(|e| format!("metadata.json: {e}"))?;
    let body = read("db.sqlite")?;
    let generation = meta["generation"]
        .as_u64()
        .ok_or("metadata.json: no generation")?;
    if meta["fileId"] != json!(file_id) {
        return Err(format!("metadata.json names {}", meta["fileId"]));
    }
    if meta["length"] != json!(body.len()) || body != blob_body(file_id, generation, body.len()) {
        return Err(format!("db.sqlite is not generation {generation}'s"));
    }
    Ok(generation)
}

/// What [`check_data`] found in a data directory.
#[derive(Debug, Default)]
pub struct Checked {
    /// Databases that passed `integrity_check` and their invariant.
    pub databases: usize,
    /// Group databases with their tables and no message yet (caught between
    /// the server's `CREATE TABLE`s and its first sync transaction): fine for
    /// the server, counted apart.
    pub fresh_groups: usize,
    /// Group databases caught between the server's two `CREATE TABLE`s:
    /// `messages_binary` alone, empty. The server runs `messages.sql` with
    /// `db.exec` (sync-simple.js `getGroupDb`), each statement its own
    /// transaction, so this is a committed state of its own (the one it is
    /// left in after a crash there) that a snapshot may take; not a torn copy.
    /// Restored, that budget's next sync fails ("no such table:
    /// messages_merkles") as it would on the live server after such a crash.
    pub half_created_groups: usize,
    /// Blobs that are one whole generation.
    pub blobs: usize,
    /// Files that start with SQLite's header (before anything opened them).
    pub sqlite_files: usize,
    /// `-journal`, `-wal` and `-shm` files found.
    pub journals: Vec<String>,
    /// What is wrong, one line per file.
    pub problems: Vec<String>,
    /// The highest writer transaction number found in a group database: tells
    /// copies taken at different moments apart.
    pub last_seq: u64,
}

/// Check a copy of a data directory written by `actual-writer`, opening its
/// databases read-write as the server would (so SQLite rolls back a hot
/// journal that came with a database). Changes the copy.
pub fn check_data(data: &Path) -> Checked {
    let mut out = Checked {
        sqlite_files: count_sqlite_files(data),
        ..Checked::default()
    };
    match fs::read(data.join(".migrate")) {
        Ok(b)
            if serde_json::from_slice::<serde_json::Value>(&b)
                .is_ok_and(|v| v["lastRun"].is_string()) => {}
        Ok(_) => out
            .problems
            .push(".migrate: not the migrations state".into()),
        Err(e) => out.problems.push(format!(".migrate: {e}")),
    }
    match check_account(&data.join("server-files/account.sqlite")) {
        Ok(()) => out.databases += 1,
        Err(e) => out
            .problems
            .push(format!("server-files/account.sqlite: {e}")),
    }
    let user_files = data.join("user-files");
    let mut names: Vec<String> = fs::read_dir(&user_files)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for dir in [data, &data.join("server-files")] {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if ["-journal", "-wal", "-shm"].iter().any(|s| n.ends_with(s)) {
                out.journals.push(n);
            }
        }
    }
    for name in names {
        let path = user_files.join(&name);
        if ["-journal", "-wal", "-shm"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            out.journals.push(name);
        } else if name.starts_with("group-") && name.ends_with(".sqlite") {
            match check_group(&path) {
                Ok(Group::Fresh) => out.fresh_groups += 1,
                Ok(Group::HalfCreated) => out.half_created_groups += 1,
                Ok(Group::Synced(seq)) => {
                    out.databases += 1;
                    out.last_seq = out.last_seq.max(seq);
                }
                Err(e) => out.problems.push(format!("user-files/{name}: {e}")),
            }
        } else if let Some(id) = name
            .strip_prefix("file-")
            .and_then(|n| n.strip_suffix(".blob"))
        {
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| check_blob(id, &b))
            {
                Ok(_) => out.blobs += 1,
                Err(e) => out.problems.push(format!("user-files/{name}: {e}")),
            }
        }
    }
    out
}

/// Files below `dir` that begin with SQLite's header.
fn count_sqlite_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            n += count_sqlite_files(&e.path());
        } else if kind.is_file() {
            let mut head = [0u8; 16];
            let whole = fs::File::open(e.path()).and_then(|mut f| f.read_exact(&mut head));
            n += usize::from(whole.is_ok() && &head == b"SQLite format 3\0");
        }
    }
    n
}

fn open(path: &Path) -> Result<rusqlite::Connection, String> {
    if !path.is_file() {
        return Err("missing".into());
    }
    let db = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let verdict: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if verdict != "ok" {
        return Err(format!("integrity_check: {verdict}"));
    }
    Ok(db)
}

fn tables(db: &rusqlite::Connection) -> Result<Vec<String>, String> {
    let mut st = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .map_err(|e| e.to_string())?;
    st.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())
}

fn check_account(path: &Path) -> Result<(), String> {
    let db = open(path)?;
    let have = tables(&db)?;
    for t in [
        "auth",
        "files",
        "secrets",
        "server_prefs",
        "sessions",
        "users",
    ] {
        if !have.iter().any(|h| h == t) {
            return Err(format!("no table {t}"));
        }
    }
    let (files, kept): (i64, Option<String>) = db
        .query_row(
            "SELECT (SELECT count(*) FROM files), (SELECT value FROM server_prefs WHERE key = ?1)",
            [FILES_COUNT_KEY],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| e.to_string())?;
    if kept.as_deref() != Some(files.to_string().as_str()) {
        return Err(format!(
            "{files} files rows, but the count kept with them says {kept:?}"
        ));
    }
    Ok(())
}

/// A group database that passed.
enum Group {
    /// Created, no message yet.
    Fresh,
    /// `messages_binary` made, `messages_merkles` not yet (see
    /// [`Checked::half_created_groups`]).
    HalfCreated,
    /// Holds messages; the writer's number of its last transaction.
    Synced(u64),
}

fn check_group(path: &Path) -> Result<Group, String> {
    let db = open(path)?;
    let have = tables(&db)?;
    let messages = |db: &rusqlite::Connection| -> Result<(i64, i64), String> {
        db.query_row(
            "SELECT count(*), total(length(content)) FROM messages_binary",
            [],
            |r| Ok((r.get(0)?, r.get::<_, f64>(1)? as i64)),
        )
        .map_err(|e| e.to_string())
    };
    // The server creates the tables only when the file does not exist: one
    // without them (an empty file, caught between the server's open and its
    // `CREATE TABLE`s) breaks that budget's sync for good.
    match have.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["messages_binary", "messages_merkles"] => {}
        ["messages_binary"] => {
            // Only the state between the two statements: nothing else
            // commits to a group database before both tables exist.
            return match messages(&db)? {
                (0, _) => Ok(Group::HalfCreated),
                (n, _) => Err(format!(
                    "{n} messages and no messages_merkles table: not a state the server commits"
                )),
            };
        }
        [] => {
            return Err(format!(
                "tables {have:?}: the server would fail its sync (no such table) and never \
                 create them"
            ));
        }
        _ => return Err(format!("unexpected tables {have:?}")),
    }
    let (count, bytes) = messages(&db)?;
    let merkle: Option<String> = db
        .query_row(
            "SELECT merkle FROM messages_merkles WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e.to_string()),
        })?;
    let Some(merkle) = merkle else {
        return if count == 0 {
            Ok(Group::Fresh)
        } else {
            Err(format!("{count} messages and no merkle row"))
        };
    };
    let m: BTreeMap<String, u64> =
        serde_json::from_str(&merkle).map_err(|e| format!("merkle row: {e}"))?;
    if m.get("count") != Some(&(count as u64)) || m.get("bytes") != Some(&(bytes as u64)) {
        return Err(format!(
            "{count} messages of {bytes} bytes, but the merkle row committed with them says {merkle}"
        ));
    }
    Ok(Group::Synced(m.get("seq").copied().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_checks_whole_and_fails_torn() {
        let b = blob("f1", 7, 100_000);
        assert_eq!(check_blob("f1", &b), Ok(7));
        assert!(check_blob("f2", &b).is_err());
        assert!(check_blob("f1", &b[..b.len() - 1]).is_err());
        assert!(check_blob("f1", &[]).is_err());
        // The old generation's tail after the new one's head: same length,
        // central directory intact, content mixed.
        let (old, new) = (blob("f1", 1, 100_000), blob("f1", 2, 100_000));
        let mut mixed = new[..50_000].to_vec();
        mixed.extend_from_slice(&old[50_000..]);
        assert!(check_blob("f1", &mixed).is_err());
    }
}
