//! The deep check of an archive (`backup verify --deep`, `reconcile --verify
//! --deep`, `restore --verify-deep`): beyond the checksum, is what the archive
//! holds an Actual sync server that will work once restored?
//!
//! What the server keeps, read from `@actual-app/sync-server` 26.9.0
//! (`build/chunks/*.js`; the sources they map to are named here):
//! * `<data dir>/server-files/account.sqlite` (`src/account-db.js`): logins
//!   (`auth`), `sessions`, and `files`, one row per budget: `id`, `group_id`,
//!   `encrypt_meta`, `encrypt_keyid`, `deleted`, ... (migration
//!   `1694360479680-create-account-db`; later ones add `users`, `user_access`,
//!   `secrets`, `server_prefs`, `pending_openid_requests`). The server opens
//!   it with better-sqlite3's defaults (rollback journal).
//! * `<data dir>/user-files/file-<id>.blob` (`src/util/paths.ts`,
//!   `src/app-sync.ts` `/upload-user-file`): the budget as uploaded, written
//!   with a plain `fs.writeFile` before its `files` row exists. A zip of
//!   `db.sqlite` and `metadata.json`, unless the upload carried an
//!   `X-ACTUAL-ENCRYPT-META` header: then `files.encrypt_meta` holds that JSON
//!   (the key id, IV, auth tag) and the blob is ciphertext, never a zip.
//!   `encrypt_keyid` only says a key exists (`/user-create-key`); the blob is
//!   encrypted once an upload sets `encrypt_meta`. Deleting a budget sets
//!   `deleted` and leaves its blob; the server serves only non-deleted rows.
//! * `<data dir>/user-files/group-<group_id>.sqlite` (`src/sync-simple.js`):
//!   the sync messages (`messages_binary`, `messages_merkles`), opened and
//!   written by every `/sync`. The tables are created only when the file does
//!   not exist, so an empty or torn file breaks sync ("no such table:
//!   messages_binary"). A missing one is created empty on the next sync (a
//!   budget uploaded but never synced has none), and clients send their
//!   messages again: not a problem here.
//! * `<data dir>/.migrate` (`src/migrations.ts`, the `migrate` package's state
//!   file): the migrations applied. Without it the server runs them all again
//!   over existing tables and fails to start (`1718889148000-openid` copies
//!   `auth.password`, a column the migration itself removed); with it but
//!   without `account.sqlite`, the server skips them and finds no tables.
//!
//! An Actual data directory is therefore any directory of the archived data
//! tree holding `server-files/account.sqlite` (`data/` itself, or `data/data/`
//! when the instance root holds the data dir and the config). An archive
//! without one is not called broken (an instance that never started has
//! none, and restoring it starts the server afresh, as before); the result says
//! `actual: false` and only its SQLite databases are checked.
//!
//! One pass ([`extract::inspect_with`], the restore pipeline's checks,
//! checksum and decompression): every regular file under `<id>/data/` is
//! sniffed for SQLite's 16-byte header; databases and blobs are copied, one at
//! a time, into the check's [scratch](crate::scratch) directory and checked there
//! (`sqlite`, `blob`); everything else only passes by. A rollback journal
//! archived right after its database (the order `backup create` writes) is
//! copied beside the copy and rolled back by SQLite, as the server would.
//!
//! * `actual`  — names and rules (pure).
//! * `sqlite`  — one database: integrity, tables, `files` rows.
//! * `blob`    — one zip, read through.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use abssd_proto::{Algorithm, DeepVerification};

use crate::error::{Error, Result};
use crate::extract::{self, EntryType, Inspected, Limits, Visit};
use crate::text::bounded;

pub mod actual;
mod blob;
mod sqlite;

pub use crate::scratch::Scratch;
use crate::scratch::ScratchFile;
use actual::Role;

/// Rows of `account.sqlite`'s `files` table read: far more budgets than any
/// server holds; the rest are not checked.
pub const MAX_LISTED: usize = 100_000;
/// What one pass found.
#[derive(Debug)]
pub struct Checked {
    /// What the inspection found (checksum, top directory, ...).
    pub inspected: Inspected,
    /// The deep check's verdict (its `checked_at` is left empty for the caller),
    /// or why it could not conclude (our side: space, the scratch directory).
    pub deep: Result<DeepVerification>,
}

/// Inspect `archive` and check what its data tree holds, in one pass, keeping
/// copies in `scratch`. Blocking. `Err` as from [`extract::inspect`]: the
/// archive itself is unreadable or restore would refuse it.
pub fn check(
    archive: &Path,
    algorithm: Algorithm,
    limits: Limits,
    scratch: &Scratch,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Checked> {
    let mut deep = Deep::new(scratch);
    let inspected = extract::inspect_with(archive, algorithm, limits, progress, &mut deep)?;
    let deep = deep.finish();
    Ok(Checked { inspected, deep })
}

/// The first problem and how many there were.
#[derive(Debug, Default)]
struct Problems {
    first: Option<String>,
    count: u64,
}

impl Problems {
    fn add(&mut self, text: String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(bounded(&text));
        }
    }
}

/// What `account.sqlite` of one data directory amounted to.
#[derive(Debug, Default)]
enum Account {
    /// Not in the archive.
    #[default]
    Absent,
    /// There, but unusable (the problem is recorded) or not a regular file.
    Unread,
    /// Its `files` rows.
    Read(Vec<sqlite::Listed>),
}

/// One Actual data directory (keyed by its path in the data tree).
#[derive(Debug, Default)]
struct DataDir {
    account: Account,
    migrate: bool,
    /// Ids of the `file-<id>.blob`s present.
    blobs: HashSet<String>,
    /// Blobs that are not readable zips, and why: a problem unless
    /// `account.sqlite` says they are encrypted.
    unreadable: Vec<(String, String)>,
}

/// What kind of copy is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Database,
    Blob,
}

/// A database or blob copied into the scratch directory.
#[derive(Debug)]
struct Copy {
    rel: String,
    role: Role,
    kind: Kind,
    size: u64,
    path: PathBuf,
    file: Option<File>,
    /// A rollback journal was copied beside it.
    journal: bool,
}

/// The entry being read.
#[derive(Debug)]
enum Current {
    Idle,
    /// Its first bytes, until there are 16 to compare with SQLite's header.
    Sniff {
        rel: String,
        role: Role,
        size: u64,
        head: Vec<u8>,
    },
    Copying(Copy),
    /// The journal of the database waiting in `pending`.
    Journal(File, PathBuf),
    Skip,
}

/// The visitor: per entry a few bytes of state, one copy at a time on disk.
struct Deep<'s> {
    scratch: &'s Scratch,
    current: Current,
    /// A database copied and not yet checked: its journal may come next.
    pending: Option<Copy>,
    dirs: BTreeMap<String, DataDir>,
    problems: Problems,
    databases: u64,
    blobs: u64,
    /// Why the check cannot conclude (our side); nothing more is copied.
    failed: Option<Error>,
}

impl<'s> Deep<'s> {
    fn new(scratch: &'s Scratch) -> Self {
        Deep {
            scratch,
            current: Current::Idle,
            pending: None,
            dirs: BTreeMap::new(),
            problems: Problems::default(),
            databases: 0,
            blobs: 0,
            failed: None,
        }
    }

    fn fail(&mut self, e: Error) {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
        if let Current::Copying(c) = std::mem::replace(&mut self.current, Current::Skip) {
            Scratch::remove(&c.path);
        }
    }

    fn problem(&mut self, rel: &str, what: impl std::fmt::Display) {
        self.problems.add(format!("data/{}: {what}", bounded(rel)));
    }

    fn dir(&mut self, dir: &str) -> &mut DataDir {
        self.dirs.entry(dir.to_owned()).or_default()
    }

    /// The entry's first bytes are in: a database by its header, a blob by its
    /// name, or something to let pass.
    fn decide(&mut self, rel: String, role: Role, size: u64, head: &[u8]) {
        let kind = if head == sqlite::MAGIC {
            Kind::Database
        } else {
            match &role {
                Role::Account { dir } => {
                    let dir = dir.clone();
                    self.problem(&rel, format!("not a SQLite database ({size} bytes); the server would find none of its tables"));
                    self.dir(&dir).account = Account::Unread;
                    self.current = Current::Skip;
                    return;
                }
                Role::Group { .. } => {
                    self.problem(&rel, format!("not a SQLite database ({size} bytes); the server creates a group's tables only in a new file, so sync would fail (no such table: messages_binary)"));
                    self.current = Current::Skip;
                    return;
                }
                Role::Blob { .. } | Role::OtherBlob => Kind::Blob,
                _ => {
                    self.current = Current::Skip;
                    return;
                }
            }
        };
        if self.failed.is_some() {
            self.current = Current::Skip;
            return;
        }
        match self
            .scratch
            .file(Path::new(&rel), size)
            .and_then(ScratchFile::into_parts)
        {
            Ok((path, mut file)) => {
                if let Err(e) = file.write_all(head) {
                    self.current = Current::Skip;
                    Scratch::remove(&path);
                    self.fail(Error::Io {
                        action: "writing",
                        path,
                        source: e,
                    });
                    return;
                }
                self.current = Current::Copying(Copy {
                    rel,
                    role,
                    kind,
                    size,
                    path,
                    file: Some(file),
                    journal: false,
                });
            }
            Err(e) => {
                self.current = Current::Skip;
                self.fail(e);
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let (file, path) = match &mut self.current {
            Current::Copying(c) => match c.file.as_mut() {
                Some(f) => (f, &c.path),
                None => return,
            },
            Current::Journal(f, path) => (f, &*path),
            _ => return,
        };
        if let Err(e) = file.write_all(bytes) {
            let path = path.clone();
            self.fail(Error::Io {
                action: "writing",
                path,
                source: e,
            });
        }
    }

    /// Check the database waiting for its journal.
    fn settle(&mut self) {
        if let Some(copy) = self.pending.take() {
            self.check_database(&copy);
            Scratch::remove(&copy.path);
        }
    }

    fn check_database(&mut self, copy: &Copy) {
        let rel = copy.rel.as_str();
        let conn = match sqlite::open(&copy.path, copy.journal) {
            Ok(c) => c,
            Err(why) => {
                self.problem(rel, why);
                self.unread_account(&copy.role);
                return;
            }
        };
        if let Err(why) = sqlite::integrity(&conn) {
            self.problem(rel, why);
            self.unread_account(&copy.role);
            return;
        }
        let wanted = match &copy.role {
            Role::Account { .. } => actual::ACCOUNT_TABLES,
            Role::Group { .. } => actual::GROUP_TABLES,
            _ => &[],
        };
        match sqlite::missing_tables(&conn, wanted) {
            Ok(missing) if missing.is_empty() => {}
            Ok(missing) => {
                self.problem(
                    rel,
                    format!(
                        "it lacks the table(s) {} the server needs",
                        missing.join(", ")
                    ),
                );
                self.unread_account(&copy.role);
                return;
            }
            Err(why) => {
                self.problem(rel, why);
                self.unread_account(&copy.role);
                return;
            }
        }
        if let Role::Account { dir } = &copy.role {
            match sqlite::files(&conn, MAX_LISTED, actual::MAX_ID) {
                Ok((rows, more)) => {
                    if more {
                        tracing::warn!(
                            "{rel} lists more than {MAX_LISTED} files; the deep check looked at the first {MAX_LISTED}"
                        );
                    }
                    let dir = dir.clone();
                    self.dir(&dir).account = Account::Read(rows);
                }
                Err(why) => {
                    self.problem(rel, why);
                    self.unread_account(&copy.role);
                    return;
                }
            }
        }
        self.databases += 1;
    }

    fn unread_account(&mut self, role: &Role) {
        if let Role::Account { dir } = role {
            let dir = dir.clone();
            self.dir(&dir).account = Account::Unread;
        }
    }

    fn check_blob(&mut self, copy: &Copy) {
        match blob::check(&copy.path, copy.size) {
            Ok(()) => self.blobs += 1,
            Err(why) => match &copy.role {
                Role::Blob { dir, id } => {
                    let text = format!("data/{}: {why}", bounded(&copy.rel));
                    let (dir, id) = (dir.clone(), id.clone());
                    self.dir(&dir).unreadable.push((id, bounded(&text)));
                }
                _ => self.problem(&copy.rel, why),
            },
        }
    }

    /// The rules that need the whole archive seen, and the verdict.
    fn finish(mut self) -> Result<DeepVerification> {
        self.settle();
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut listed_files = 0;
        let mut actual = false;
        let mut migrate = true;
        for (dir, d) in std::mem::take(&mut self.dirs) {
            let shown = actual::shown_dir(&dir);
            let rows = match &d.account {
                Account::Absent => {
                    if d.migrate {
                        self.problems.add(format!("{shown}.migrate says the server's migrations ran, but {shown}server-files/account.sqlite is not in the archive: the server would skip them and find no tables"));
                    }
                    for (_, why) in d.unreadable {
                        self.problems.add(why);
                    }
                    continue;
                }
                Account::Unread => &[][..],
                Account::Read(rows) => &rows[..],
            };
            actual = true;
            if !d.migrate {
                migrate = false;
                self.problems.add(format!("{shown}.migrate is not in the archive: the server would run its migrations again over account.sqlite and fail to start"));
            }
            let by_id: HashMap<&str, &sqlite::Listed> =
                rows.iter().map(|r| (r.id.as_str(), r)).collect();
            for row in rows {
                if !actual::valid_id(&row.id) {
                    self.problems.add(format!(
                        "{shown}server-files/account.sqlite lists file id {:?}, which the server refuses",
                        bounded(&row.id)
                    ));
                } else if row.deleted {
                    // A deleted budget's blob may be gone; nothing to find.
                } else if d.blobs.contains(&row.id) {
                    listed_files += 1;
                } else {
                    self.problems.add(format!(
                        "{shown}server-files/account.sqlite lists budget file {}, but data/{} is not in the archive",
                        row.id,
                        actual::blob_path(&dir, &row.id)
                    ));
                }
            }
            for (id, why) in d.unreadable {
                if !by_id.get(id.as_str()).is_some_and(|r| r.encrypted) {
                    self.problems.add(why);
                }
            }
        }
        Ok(DeepVerification {
            checked_at: String::new(),
            ok: self.problems.count == 0,
            databases: self.databases,
            blobs: self.blobs,
            listed_files,
            migrate: actual && migrate,
            actual,
            problems: self.problems.count,
            problem: self.problems.first,
            extra: Default::default(),
        })
    }
}

impl Visit for Deep<'_> {
    fn entry(&mut self, kind: EntryType, below: &[u8], size: u64) -> bool {
        self.current = Current::Idle;
        let Some(rel) = below.strip_prefix(b"data/").filter(|r| !r.is_empty()) else {
            self.settle();
            return false;
        };
        let rel = String::from_utf8_lossy(rel).into_owned();
        let role = actual::role(&rel);
        if let Role::Journal { db } = &role
            && kind == EntryType::Regular
            && self.failed.is_none()
            && let Some(pending) = self.pending.as_mut()
            && pending.rel == *db
        {
            return match self.scratch.journal(&pending.path) {
                Ok((path, file)) => {
                    pending.journal = true;
                    self.current = Current::Journal(file, path);
                    true
                }
                Err(e) => {
                    self.fail(e);
                    false
                }
            };
        }
        self.settle();
        match &role {
            Role::Blob { dir, id } => {
                let (dir, id) = (dir.clone(), id.clone());
                self.dir(&dir).blobs.insert(id);
            }
            Role::Migrate { dir } => {
                let dir = dir.clone();
                self.dir(&dir).migrate = true;
            }
            Role::Account { dir } => {
                // Not a regular file: there, but not read (a link's target is
                // checked under its own name).
                let dir = dir.clone();
                let d = self.dir(&dir);
                if matches!(d.account, Account::Absent) {
                    d.account = Account::Unread;
                }
            }
            _ => {}
        }
        if kind != EntryType::Regular || matches!(role, Role::Journal { .. } | Role::Migrate { .. })
        {
            return false;
        }
        self.current = Current::Sniff {
            rel,
            role,
            size,
            head: Vec::with_capacity(sqlite::MAGIC.len()),
        };
        true
    }

    fn content(&mut self, mut bytes: &[u8]) {
        if let Current::Sniff { head, .. } = &mut self.current {
            let take = (sqlite::MAGIC.len() - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if head.len() < sqlite::MAGIC.len() {
                return;
            }
            if let Current::Sniff {
                rel,
                role,
                size,
                head,
            } = std::mem::replace(&mut self.current, Current::Idle)
            {
                self.decide(rel, role, size, &head);
            }
        }
        if !bytes.is_empty() {
            self.write(bytes);
        }
    }

    fn end(&mut self) {
        // A file shorter than SQLite's header is decided on what there is.
        if matches!(self.current, Current::Sniff { .. })
            && let Current::Sniff {
                rel,
                role,
                size,
                head,
            } = std::mem::replace(&mut self.current, Current::Idle)
        {
            self.decide(rel, role, size, &head);
        }
        match std::mem::replace(&mut self.current, Current::Idle) {
            Current::Copying(mut copy) => {
                if let Some(file) = copy.file.take() {
                    drop(file);
                }
                match copy.kind {
                    Kind::Database => self.pending = Some(copy),
                    Kind::Blob => {
                        self.check_blob(&copy);
                        Scratch::remove(&copy.path);
                    }
                }
            }
            Current::Journal(file, _) => drop(file),
            _ => {}
        }
    }
}
