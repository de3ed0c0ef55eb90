//! What `--consistency snapshot` changes in the list of members the walk made:
//! every SQLite database (told by its header, read through the tree's
//! descriptors, never by its name) becomes a [`Body::Database`], snapshotted
//! when its entry is written; the `-journal`, `-wal` and `-shm` files beside
//! one are left out (the snapshot is the database's last committed state, and
//! needs none of them); blobs (`*.blob`) become [`Body::Stable`]; an empty
//! file named `*.sqlite` is left out, with its journals (see [`EMPTY_DATABASE`]).
//! In every other
//! capture nothing changes: an offline instance's hot journal must go in
//! beside its database, which SQLite rolls back on its next open.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::member::{Body, Member, Origin};
use super::snapshot::{self, HEADER, Kind};
use super::tree::Gone;
use crate::error::{Error, Result};
use crate::scratch::Scratch;

/// What [`classify`] found.
#[derive(Debug, Default)]
pub struct Captured {
    /// The databases that will be snapshotted (paths on the host).
    pub databases: Vec<PathBuf>,
    /// What is left out or done differently, for the plan's notes.
    pub notes: Vec<String>,
    /// What is left out that an operator should know of, for the plan's
    /// warnings.
    pub warnings: Vec<String>,
}

/// Why an empty `*.sqlite` is left out. The sync server creates
/// `group-<id>.sqlite`, then its tables, and only when the file is missing:
/// archived as an empty file (it has no header, so it is no database to
/// snapshot), it would come back without them and break that budget's sync
/// for good ("no such table: messages_binary").
pub const EMPTY_DATABASE: &str = "an empty database file, being created; the server makes it \
     again with its tables when it is missing";

/// Most journal paths a note names; the rest are counted.
const MAX_NAMED: usize = 10;

/// Turn the walk's `members` into what snapshot mode archives (see the module
/// comment). A database in WAL mode is refused: a read-only connection needs
/// its `-shm`, which SQLite would create beside it.
pub fn classify(members: &mut Vec<Member>, scratch: &Arc<Scratch>) -> Result<Captured> {
    let mut captured = Captured::default();
    let mut databases = HashSet::new();
    let mut empty = HashSet::new();
    for m in members.iter_mut() {
        let Body::File {
            from: Origin::Tree(tree, rel),
            ident,
            size,
        } = &m.body
        else {
            continue;
        };
        if *size == 0 && m.name.ends_with(b".sqlite") {
            empty.insert(m.name.clone());
            continue;
        }
        let kind = if *size < HEADER as u64 {
            Kind::Other
        } else {
            match snapshot::probe(tree, rel, *ident) {
                Ok(kind) => kind,
                // The writer says so when it comes to it.
                Err(Gone::Changed(_)) => continue,
                Err(Gone::Failed(e)) => return Err(e),
            }
        };
        match kind {
            Kind::Database => {
                captured.databases.push(tree.display(rel));
                databases.insert(m.name.clone());
                m.body = Body::Database {
                    tree: tree.clone(),
                    rel: rel.clone(),
                    ident: *ident,
                    size: *size,
                };
            }
            Kind::Wal => {
                return Err(Error::Environment(format!(
                    "{} is a SQLite database in WAL mode, which a snapshot cannot read without \
                     writing beside it; back this instance up with --consistency stop",
                    tree.display(rel).display()
                )));
            }
            Kind::Other if m.name.ends_with(b".blob") => {
                m.body = Body::Stable {
                    from: Origin::Tree(tree.clone(), rel.clone()),
                    ident: *ident,
                    size: *size,
                    scratch: scratch.clone(),
                };
            }
            Kind::Other => {}
        }
    }
    let mut left_out = Vec::new();
    let mut journals = Vec::new();
    members.retain(|m| {
        let Body::File { from, .. } = &m.body else {
            return true;
        };
        if empty.contains(&m.name) {
            left_out.push(format!(
                "left out {}: {EMPTY_DATABASE}",
                from.display().display()
            ));
        } else if is_journal_of(&m.name, &empty) {
            left_out.push(format!(
                "left out {}: the journal of {EMPTY_DATABASE}",
                from.display().display()
            ));
        } else if is_journal_of(&m.name, &databases) {
            journals.push(from.display());
        } else {
            return true;
        }
        false
    });
    let more = left_out.len().saturating_sub(MAX_NAMED);
    left_out.truncate(MAX_NAMED);
    captured.warnings = left_out;
    if more > 0 {
        captured.warnings.push(format!(
            "... and {more} more empty database files or their journals left out"
        ));
    }
    if !journals.is_empty() {
        let mut named: Vec<String> = journals
            .iter()
            .take(MAX_NAMED)
            .map(|p| p.display().to_string())
            .collect();
        if journals.len() > MAX_NAMED {
            named.push(format!("and {} more", journals.len() - MAX_NAMED));
        }
        captured.notes.push(format!(
            "not archived: {} journal file(s) beside snapshotted databases (each snapshot is \
             its database's last committed state and needs no journal): {}",
            journals.len(),
            named.join(", ")
        ));
    }
    Ok(captured)
}

/// Whether the member `name` is the `-journal`, `-wal` or `-shm` of one of
/// the `databases` (member names).
pub fn is_journal_of(name: &[u8], databases: &HashSet<Vec<u8>>) -> bool {
    super::snapshot::JOURNAL_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix.as_bytes())
            .is_some_and(|db| databases.contains(db))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Budget, Tree, walk};

    #[test]
    fn only_the_journals_of_detected_databases_are_journals() {
        let dbs: HashSet<Vec<u8>> = [b"id/data/a.sqlite".to_vec(), b"id/data/x/db".to_vec()]
            .into_iter()
            .collect();
        for yes in [
            "id/data/a.sqlite-journal",
            "id/data/a.sqlite-wal",
            "id/data/a.sqlite-shm",
            "id/data/x/db-journal",
        ] {
            assert!(is_journal_of(yes.as_bytes(), &dbs), "{yes}");
        }
        for no in [
            "id/data/a.sqlite",
            "id/data/b.sqlite-journal",
            "id/data/a.sqlite-journal2",
            "id/data/a-journal",
            "id/data/db-journal",
            "id/data/x/db-journal/",
        ] {
            assert!(!is_journal_of(no.as_bytes(), &dbs), "{no}");
        }
    }

    #[test]
    fn classify_finds_databases_by_header_and_drops_only_their_journals() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let root = dir.path();
        let c = rusqlite::Connection::open(root.join("plain.name")).unwrap();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        drop(c);
        std::fs::write(root.join("plain.name-journal"), b"journal bytes").unwrap();
        std::fs::write(root.join("fake.sqlite"), vec![b'x'; 4096]).unwrap();
        std::fs::write(root.join("fake.sqlite-journal"), b"kept").unwrap();
        std::fs::write(root.join("file-1.blob"), b"PK zip").unwrap();
        std::fs::write(root.join("group-new.sqlite"), b"").unwrap();
        std::fs::write(root.join("group-new.sqlite-journal"), b"").unwrap();
        std::fs::write(root.join("empty.db"), b"").unwrap();
        let tree = Arc::new(Tree::open(root).unwrap());
        let (mut members, _) = walk(&tree, "id/data", &mut Budget::new(0)).unwrap();
        let scratch = Arc::new(Scratch::new(state.path()));
        let got = classify(&mut members, &scratch).unwrap();
        assert_eq!(got.databases, [root.join("plain.name")]);
        assert_eq!(got.notes.len(), 1);
        assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
        assert!(
            got.warnings[0].ends_with(&format!(
                "{}: {EMPTY_DATABASE}",
                root.join("group-new.sqlite").display()
            )),
            "{:?}",
            got.warnings
        );
        assert!(got.warnings[1].contains("group-new.sqlite-journal: the journal of"));
        assert!(
            got.notes[0].contains("plain.name-journal"),
            "{:?}",
            got.notes
        );
        let kinds: Vec<(String, &str)> = members
            .iter()
            .map(|m| {
                let kind = match m.body {
                    Body::Database { .. } => "db",
                    Body::Stable { .. } => "stable",
                    Body::File { .. } => "file",
                    _ => "other",
                };
                (m.shown().into_owned(), kind)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("id/data/".to_owned(), "other"),
                ("id/data/empty.db".to_owned(), "file"),
                ("id/data/fake.sqlite".to_owned(), "file"),
                ("id/data/fake.sqlite-journal".to_owned(), "file"),
                ("id/data/file-1.blob".to_owned(), "stable"),
                ("id/data/plain.name".to_owned(), "db"),
            ]
        );
    }
}
