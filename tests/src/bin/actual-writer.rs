//! `actual-writer`: writes a data directory the way Actual's sync server does
//! while it is busy, at full speed, for the consistency proof
//! (tests/tests/consistency_proof.rs). The layout, SQL and the checks of a copy
//! are in `abssd_tests::actual`.
//!
//! What the server does that this copies (`@actual-app/sync-server` 26.x):
//! every database is opened with better-sqlite3's defaults, the rollback
//! journal (no WAL) and a 5 s busy timeout; each `/sync` opens
//! `group-<id>.sqlite` (creating it with its two `CREATE TABLE`s run one by one
//! when it does not exist), reads the newer messages, then inserts messages and
//! rewrites the merkle row in one transaction, and closes it again; an upload
//! rewrites `file-<id>.blob` in place with a plain write (truncate, then the
//! bytes) and records the file in `account.sqlite`; a reset forgets the file's
//! group and deletes its database. Transactions are `BEGIN IMMEDIATE` (the
//! server's are deferred, which differs only when two writers race; here there
//! is one). Where the server keeps a merkle trie, this keeps the count and byte
//! sum of the messages, so a copy can be checked.
//!
//! Prints `ready` once the initial files exist, then writes until its stdin
//! reaches end of input (`commit N` after each transaction with
//! `--report-commits`), prints `committed N transactions (...)` and exits 0.
//! Any SQLite error (e.g. a lock held past the 5 s busy timeout, which the
//! server would answer with a 500) ends it with status 1.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use abssd_tests::actual::{
    ACCOUNT_SCHEMA, FILES_COUNT_KEY, GROUP_SCHEMA, Rng, blob, migrate_state,
};
use clap::Parser;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

/// Write an Actual sync-server data directory at full speed until stdin closes.
#[derive(Debug, Parser)]
struct Args {
    /// The data directory (created if missing); what is in it is replaced.
    data: PathBuf,
    /// Budget files (each a blob and a group database) written at start.
    #[arg(long, default_value_t = 3)]
    files: usize,
    /// Budget files at most; uploads add files up to this many.
    #[arg(long, default_value_t = 8)]
    max_files: usize,
    /// Messages in each group database at start.
    #[arg(long, default_value_t = 400)]
    messages: u64,
    /// Messages a group database keeps at most; a sync past it drops the
    /// oldest (bounds the directory's growth).
    #[arg(long, default_value_t = 1000)]
    cap: u64,
    /// Largest blob, in KiB (each rewrite picks a size up to it).
    #[arg(long, default_value_t = 96)]
    blob_kib: u64,
    /// Seed of the writer's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print `commit N` after each committed transaction (N counts them), so a
    /// test can wait for a write to land while a backup runs.
    #[arg(long)]
    report_commits: bool,
}

/// One budget file: its blob's generation and its current group.
struct File {
    id: String,
    group: Option<String>,
    generation: u64,
}

struct Writer {
    args: Args,
    rng: Rng,
    files: Vec<File>,
    /// Transactions committed, by kind.
    syncs: u64,
    account: u64,
    uploads: u64,
    resets: u64,
    rewrites: u64,
    /// Number of the last transaction, stored in the merkle row.
    seq: u64,
}

type Result<T> = std::result::Result<T, String>;

fn sql<T>(what: &str, r: rusqlite::Result<T>) -> Result<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// A connection as better-sqlite3 opens one: rollback journal, 5 s busy timeout.
fn open(path: &Path) -> Result<Connection> {
    let db = sql(&path.display().to_string(), Connection::open(path))?;
    sql("busy_timeout", db.busy_timeout(Duration::from_millis(5000)))?;
    Ok(db)
}

impl Writer {
    fn user_files(&self) -> PathBuf {
        self.args.data.join("user-files")
    }

    fn account_db(&self) -> Result<Connection> {
        open(&self.args.data.join("server-files/account.sqlite"))
    }

    /// `.migrate`, `account.sqlite` and the first files, as a server that ran
    /// for a while leaves them.
    fn init(&mut self) -> Result<()> {
        let data = self.args.data.clone();
        let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
        for dir in [data.join("server-files"), data.join("user-files")] {
            fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        let account = data.join("server-files/account.sqlite");
        for name in ["account.sqlite", "account.sqlite-journal"] {
            let p = data.join("server-files").join(name);
            if p.exists() {
                fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        fs::write(data.join(".migrate"), migrate_state()).map_err(|e| io(&data, e))?;
        let db = open(&account)?;
        sql("account schema", db.execute_batch(ACCOUNT_SCHEMA))?;
        sql(
            "account rows",
            db.execute_batch(&format!(
                "INSERT INTO auth VALUES ('password', 'Password', '$2b$12$x', 1);
                 INSERT INTO users VALUES ('owner', '', '', 'ADMIN', 1, 1);
                 INSERT INTO server_prefs VALUES ('{FILES_COUNT_KEY}', '0');"
            )),
        )?;
        drop(db);
        for _ in 0..self.args.files {
            self.upload_new()?;
            let group = self
                .files
                .last()
                .and_then(|f| f.group.clone())
                .expect("group");
            self.sync(&group, self.args.messages)?;
        }
        Ok(())
    }

    /// Rewrite a blob in place as `fs.writeFile` does: truncate, then write in
    /// pieces, so a reader can see it empty or half written.
    fn write_blob(&mut self, index: usize) -> Result<()> {
        let len = self.rng.range(16, self.args.blob_kib.max(16)) as usize * 1024;
        let file = &mut self.files[index];
        file.generation += 1;
        let bytes = blob(&file.id, file.generation, len);
        let path = self
            .args
            .data
            .join(format!("user-files/file-{}.blob", file.id));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for chunk in bytes.chunks(64 * 1024) {
            f.write_all(chunk)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        self.rewrites += 1;
        Ok(())
    }

    /// `/upload-user-file` of a new budget: the blob, then its `files` row with
    /// a new group (whose database the first sync creates).
    fn upload_new(&mut self) -> Result<()> {
        let (id, group) = (self.rng.uuid(), self.rng.uuid());
        self.files.push(File {
            id: id.clone(),
            group: Some(group.clone()),
            generation: 0,
        });
        self.write_blob(self.files.len() - 1)?;
        let mut db = self.account_db()?;
        let tx = sql(
            "begin",
            db.transaction_with_behavior(TransactionBehavior::Immediate),
        )?;
        sql(
            "insert file",
            tx.execute(
                "INSERT INTO files (id, group_id, sync_version, name, owner) VALUES (?1, ?2, 2, ?3, 'owner')",
                params![id, group, format!("Budget {}", &id[..8])],
            ),
        )?;
        sql(
            "files count",
            tx.execute(
                "UPDATE server_prefs SET value = (SELECT count(*) FROM files) WHERE key = ?1",
                [FILES_COUNT_KEY],
            ),
        )?;
        sql("commit", tx.commit())?;
        self.account += 1;
        self.uploads += 1;
        Ok(())
    }

    /// `/reset-user-file` then a new upload: the group is forgotten and its
    /// database deleted, then the blob is rewritten and given a new group.
    fn reset(&mut self, index: usize) -> Result<()> {
        let id = self.files[index].id.clone();
        let db = self.account_db()?;
        sql(
            "reset",
            db.execute("UPDATE files SET group_id = NULL WHERE id = ?1", [&id]),
        )?;
        self.account += 1;
        if let Some(old) = self.files[index].group.take() {
            let _ = fs::remove_file(self.user_files().join(format!("group-{old}.sqlite")));
        }
        self.write_blob(index)?;
        let group = self.rng.uuid();
        sql(
            "new group",
            db.execute(
                "UPDATE files SET group_id = ?2 WHERE id = ?1",
                [&id, &group],
            ),
        )?;
        self.account += 1;
        self.files[index].group = Some(group);
        self.resets += 1;
        Ok(())
    }

    /// `/sync` with `count` new messages on `group`.
    fn sync(&mut self, group: &str, count: u64) -> Result<()> {
        let path = self.user_files().join(format!("group-{group}.sqlite"));
        let needs_init = !path.exists();
        let mut db = open(&path)?;
        if needs_init {
            sql("group schema", db.execute_batch(GROUP_SCHEMA))?;
        }
        self.seq += 1;
        let since = format!("{:020}", self.seq.saturating_sub(50));
        sql(
            "newer messages",
            db.query_row(
                "SELECT count(*) FROM messages_binary WHERE timestamp > ?1",
                [&since],
                |r| r.get::<_, i64>(0),
            ),
        )?;
        let tx = sql(
            "begin",
            db.transaction_with_behavior(TransactionBehavior::Immediate),
        )?;
        let merkle: Option<String> = sql(
            "merkle",
            tx.query_row(
                "SELECT merkle FROM messages_merkles WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional(),
        )?;
        let m: serde_json::Value = merkle
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| format!("merkle: {e}"))?
            .unwrap_or_else(|| json!({"count": 0, "bytes": 0}));
        let (mut n, mut bytes) = (
            m["count"].as_u64().unwrap_or(0),
            m["bytes"].as_u64().unwrap_or(0),
        );
        for k in 0..count {
            let len = self.rng.range(40, 1200) as usize;
            let content = self.rng.bytes(len);
            let ts = format!("{:020}-{k:04}-{:016x}", self.seq, self.args.seed);
            let changed = sql(
                "insert message",
                tx.execute(
                    "INSERT OR IGNORE INTO messages_binary (timestamp, is_encrypted, content) VALUES (?1, ?2, ?3)",
                    params![ts, k % 3 == 0, content],
                ),
            )?;
            if changed > 0 {
                n += 1;
                bytes += len as u64;
            }
        }
        if n > self.args.cap {
            let drop = (n - self.args.cap) as i64;
            let (gone, gone_bytes): (i64, f64) = sql(
                "oldest",
                tx.query_row(
                    "SELECT count(*), total(length(content)) FROM
                       (SELECT content FROM messages_binary ORDER BY timestamp LIMIT ?1)",
                    [drop],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                ),
            )?;
            sql(
                "drop oldest",
                tx.execute(
                    "DELETE FROM messages_binary WHERE timestamp IN
                       (SELECT timestamp FROM messages_binary ORDER BY timestamp LIMIT ?1)",
                    [drop],
                ),
            )?;
            n -= gone as u64;
            bytes -= gone_bytes as u64;
        }
        let merkle = json!({"count": n, "bytes": bytes, "seq": self.seq}).to_string();
        sql(
            "merkle",
            tx.execute(
                "INSERT INTO messages_merkles (id, merkle) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET merkle = ?1",
                [&merkle],
            ),
        )?;
        sql("commit", tx.commit())?;
        self.syncs += 1;
        Ok(())
    }

    /// A login: a session row, older ones expired.
    fn login(&mut self) -> Result<()> {
        let mut db = self.account_db()?;
        let tx = sql(
            "begin",
            db.transaction_with_behavior(TransactionBehavior::Immediate),
        )?;
        sql(
            "session",
            tx.execute(
                "INSERT INTO sessions VALUES (?1, ?2, 'owner', 'password')",
                params![self.rng.uuid(), self.seq as i64],
            ),
        )?;
        sql(
            "expire",
            tx.execute(
                "DELETE FROM sessions WHERE expires_at < ?1",
                [self.seq as i64 - 2000],
            ),
        )?;
        sql("commit", tx.commit())?;
        self.account += 1;
        Ok(())
    }

    /// One request, chosen the way a busy server sees them: mostly syncs.
    fn step(&mut self) -> Result<()> {
        let roll = self.rng.range(0, 999);
        let pick = self.rng.range(0, self.files.len() as u64 - 1) as usize;
        match roll {
            0..=1 if self.files.len() < self.args.max_files => self.upload_new(),
            0 => self.reset(pick),
            2..=26 => self.write_blob(pick),
            27..=36 => self.login(),
            _ => {
                let group = self.files[pick].group.clone().expect("a group");
                let count = self.rng.range(1, 12);
                self.sync(&group, count)
            }
        }
    }

    fn committed(&self) -> u64 {
        self.syncs + self.account
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed;
    let mut w = Writer {
        args,
        rng: Rng::new(seed),
        files: Vec::new(),
        syncs: 0,
        account: 0,
        uploads: 0,
        resets: 0,
        rewrites: 0,
        seq: 0,
    };
    if let Err(e) = w.init() {
        eprintln!("actual-writer: setting up: {e}");
        return ExitCode::FAILURE;
    }
    // Stop at end of input: also when the parent dies.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut sink);
        flag.store(true, Ordering::SeqCst);
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    // Count what happens from here on only.
    (w.syncs, w.account, w.uploads, w.resets, w.rewrites) = (0, 0, 0, 0, 0);
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let before = w.committed();
        if let Err(e) = w.step() {
            eprintln!("actual-writer: after {} transactions: {e}", w.committed());
            return ExitCode::FAILURE;
        }
        if w.args.report_commits && w.committed() > before {
            let _ = writeln!(out, "commit {}", w.committed());
            let _ = out.flush();
        }
    }
    let _ = writeln!(
        out,
        "committed {} transactions ({} syncs, {} account) in {:.1}s; {} uploads, {} resets, {} blob writes",
        w.committed(),
        w.syncs,
        w.account,
        start.elapsed().as_secs_f64(),
        w.uploads,
        w.resets,
        w.rewrites
    );
    let _ = out.flush();
    ExitCode::SUCCESS
}
