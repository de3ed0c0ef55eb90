//! Checking one SQLite database: our private copy of an archived database,
//! opened by SQLite itself (the bundled one, rusqlite) and asked for
//! `PRAGMA integrity_check`, the tables the sync server needs, and what
//! `account.sqlite` lists. A database from an archive is untrusted input:
//! SQLite's defensive mode is on, the schema is not trusted (no functions run
//! from it), and nothing is ever written to it except a hot journal's rollback.

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

/// The first bytes of every SQLite 3 database file.
pub use crate::archive::snapshot::MAGIC;

/// Errors `PRAGMA integrity_check` may list before it stops: the first is what
/// gets reported.
const INTEGRITY_MAX_ERRORS: u32 = 10;

/// What [`files`] reads of one row of `account.sqlite`'s `files` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `files.id`: the budget file's id (`user-files/file-<id>.blob`).
    pub id: String,
    /// `encrypt_meta` holds something: the blob is ciphertext, not a zip.
    pub encrypted: bool,
    /// `deleted`: the server no longer serves it (its blob may stay).
    pub deleted: bool,
}

/// Open our copy at `path`. With `journal` (a hot journal archived beside the
/// database, copied beside our copy as `<path>-journal`) read-write, so that
/// SQLite rolls it back as the server would on its next open; otherwise
/// read-only and immutable: nothing is locked, nothing is created beside it.
pub fn open(path: &Path, journal: bool) -> Result<Connection, String> {
    if journal {
        refuse_super_journal(path)?;
    }
    let conn = if journal {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    } else {
        Connection::open_with_flags(
            immutable_uri(path),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }
    .map_err(|e| format!("SQLite cannot open it: {e}"))?;
    harden(&conn).map_err(|e| format!("SQLite cannot open it: {e}"))?;
    Ok(conn)
}

/// What ends a rollback journal that names a super-journal (SQLite's
/// `aJournalMagic`, after the name, its length and checksum).
const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// A hot journal may end with the path of a super-journal (a transaction
/// over several attached databases). Rolling it back, SQLite then opens that
/// path, anywhere on the host, reads it whole and may delete it: a FIFO there
/// would stop the check for good (the open does not use `O_NONBLOCK`), a
/// large file would be read into memory. The sync server never attaches
/// databases, so such a journal is refused, not rolled back.
fn refuse_super_journal(db: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut name = db.as_os_str().to_owned();
    name.push("-journal");
    let unreadable = |e: std::io::Error| format!("our copy of its journal cannot be read: {e}");
    let mut file = std::fs::File::open(&name).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    if size < 16 {
        return Ok(());
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(size - 8)).map_err(unreadable)?;
    file.read_exact(&mut tail).map_err(unreadable)?;
    if tail == JOURNAL_MAGIC {
        return Err(
            "its rollback journal names a super-journal (a transaction over several \
             databases, which the sync server never makes); not rolled back"
                .into(),
        );
    }
    Ok(())
}

/// Defensive mode (no writes that corrupt the file through SQL), an
/// untrusted schema, no memory map (reads go through the small page cache).
fn harden(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.pragma_update(None, "cell_size_check", true)?;
    Ok(())
}

/// `file:<path>?immutable=1`, the path percent-encoded where a URI needs it.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// `PRAGMA integrity_check`: `Ok` when SQLite says `ok`, else its first
/// complaint.
pub fn integrity(conn: &Connection) -> Result<(), String> {
    let sql = format!("PRAGMA integrity_check({INTEGRITY_MAX_ERRORS})");
    let first: String = conn
        .query_row(&sql, [], |row| row.get(0))
        .map_err(|e| format!("PRAGMA integrity_check failed: {e}"))?;
    if first == "ok" {
        Ok(())
    } else {
        Err(format!(
            "PRAGMA integrity_check says: {}",
            crate::text::bounded(&first)
        ))
    }
}

/// Which of `wanted` are not tables of the database.
pub fn missing_tables(conn: &Connection, wanted: &[&str]) -> Result<Vec<String>, String> {
    let mut missing = Vec::new();
    for name in wanted {
        let found: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
                [name],
                |row| row.get(0),
            )
            .map_err(|e| format!("reading its schema failed: {e}"))?;
        if !found {
            missing.push((*name).to_owned());
        }
    }
    Ok(missing)
}

/// The rows of `files` (at most `cap`; `Ok((rows, true))` when there were
/// more). Ids longer than `max_id` bytes are kept cut short, so the caller
/// finds them invalid.
pub fn files(conn: &Connection, cap: usize, max_id: usize) -> Result<(Vec<Listed>, bool), String> {
    // `encrypt_meta` is the upload's X-ACTUAL-ENCRYPT-META header: JSON of the
    // key the blob is encrypted with, or absent for a plain zip.
    let sql = "SELECT CAST(id AS BLOB), \
                      encrypt_meta IS NOT NULL AND trim(encrypt_meta) NOT IN ('', 'null'), \
                      coalesce(deleted, 0) != 0 \
               FROM files";
    let failed = |e: rusqlite::Error| format!("reading its files table failed: {e}");
    let mut stmt = conn.prepare(sql).map_err(failed)?;
    let mut rows = stmt.query([]).map_err(failed)?;
    let mut listed = Vec::new();
    while let Some(row) = rows.next().map_err(failed)? {
        if listed.len() == cap {
            return Ok((listed, true));
        }
        let id = match row.get_ref(0).map_err(failed)? {
            rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                String::from_utf8_lossy(&b[..b.len().min(max_id + 1)]).into_owned()
            }
            _ => String::new(),
        };
        listed.push(Listed {
            id,
            encrypted: row.get(1).map_err(failed)?,
            deleted: row.get(2).map_err(failed)?,
        });
    }
    Ok((listed, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path, sql: &str) -> std::path::PathBuf {
        let path = dir.join("x?#%.sqlite");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(sql).unwrap();
        path
    }

    #[test]
    fn a_sound_database_opens_immutable_and_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(
            dir.path(),
            "CREATE TABLE files (id TEXT); CREATE VIEW auth AS SELECT 1;",
        );
        let c = open(&path, false).unwrap();
        integrity(&c).unwrap();
        assert_eq!(missing_tables(&c, &["files", "auth"]).unwrap(), ["auth"]);
        drop(c);
        // Nothing was created beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn files_rows_say_what_is_encrypted_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(
            dir.path(),
            "CREATE TABLE files (id TEXT PRIMARY KEY, encrypt_meta TEXT, deleted BOOLEAN DEFAULT FALSE);
             INSERT INTO files VALUES ('a', NULL, 0), ('b', '{\"keyId\":\"k\"}', 0),
                                      ('c', 'null', 1), ('d', '', NULL);",
        );
        let c = open(&path, false).unwrap();
        let (rows, more) = files(&c, 10, 64).unwrap();
        assert!(!more);
        let got: Vec<(&str, bool, bool)> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.encrypted, r.deleted))
            .collect();
        assert_eq!(
            got,
            [
                ("a", false, false),
                ("b", true, false),
                ("c", false, true),
                ("d", false, false)
            ]
        );
        let (rows, more) = files(&c, 2, 64).unwrap();
        assert_eq!((rows.len(), more), (2, true));
    }

    #[test]
    fn damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(
            dir.path(),
            "CREATE TABLE t (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000)
             INSERT INTO t SELECT randomblob(100) FROM n;",
        );
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len / 2).unwrap();
        let err = open(&path, false).and_then(|c| integrity(&c)).unwrap_err();
        assert!(
            err.contains("integrity_check") || err.contains("malformed"),
            "{err}"
        );
    }
}
