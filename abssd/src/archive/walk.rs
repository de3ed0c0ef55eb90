//! The walk: what of a [`Tree`] goes into the archive, in write order.
//!
//! Depth first in name order, iteratively (no recursion, whatever the depth).
//! Each directory is opened through the tree's descriptors (never through a
//! symlink, and only if it is still the directory its parent listed), its
//! entries are `statx`ed without following symlinks while it is open, then
//! it is left: besides the root, the tree keeps one directory open, and two
//! for the moment a child is opened from its parent, so a tree of any depth
//! walks with the same few descriptors. What the walk leaves out is reported.

use std::sync::Arc;

use rustix::fs::{Dir, FileType};
use rustix::io::Errno;

use super::member::{Body, MAX_NAME, Member, Origin};
use super::skipped::{SkipKind, Skipped};
use super::tree::{self, Gone, Ident, Tree};
use crate::error::{Error, Result};

/// What the walk found in one directory, in name order.
enum Child {
    /// A file or symlink, complete.
    Leaf(Member),
    /// A directory, to be opened and listed in turn.
    Dir {
        member: Member,
        rel: Vec<u8>,
        ident: Ident,
    },
}

/// The bytes of holes (logical size beyond the allocated blocks) one create may
/// archive, and what is left of them.
///
/// Sparse files are capped, not stored as GNU/PAX sparse members: restore
/// (`extract/`) accepts only regular files, directories, symlinks and hardlinks
/// and writes every byte it is given, so a sparse member would either be
/// refused or cost its full logical size on restore (and in restore's
/// free-space check). A cap keeps create fast (holes are never read) and every
/// backup restorable; what it leaves out is said in the result.
///
/// The budget also bounds what the walk holds in memory, as the tree's owner
/// decides how much that is: the entries (a restore accepts at most
/// `daemon.max_restore_entries`, so the walk stops there rather than list a
/// tree it cannot archive) and the bytes of their names ([`MAX_HELD_BYTES`]).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes of holes one create archives (`daemon.max_sparse_hole_bytes`).
    pub max_holes: u64,
    /// What is left of it.
    pub holes_left: u64,
    /// Entries the walk may list (`daemon.max_restore_entries`, less what a
    /// create adds besides the data).
    pub max_entries: u64,
    /// What is left of it.
    pub entries_left: u64,
    /// Bytes of names (and paths) the walk may hold.
    pub bytes_left: u64,
}

/// Most bytes of member names and paths one walk holds: far above any real
/// instance (a million entries at 100-byte paths count about 250 MB), and a
/// bound on what deep paths could make a root daemon allocate.
pub const MAX_HELD_BYTES: u64 = 512 << 20;

impl Budget {
    /// `max_holes` bytes of holes, any number of entries.
    pub fn new(max_holes: u64) -> Budget {
        Budget {
            max_holes,
            holes_left: max_holes,
            max_entries: u64::MAX,
            entries_left: u64::MAX,
            bytes_left: MAX_HELD_BYTES,
        }
    }

    /// At most `max` entries.
    pub fn entries(mut self, max: u64) -> Budget {
        self.max_entries = max;
        self.entries_left = max;
        self
    }

    /// Count one listed entry whose name, archive name and path take `bytes`;
    /// an error once the tree is more than a create may take.
    fn take_entry(&mut self, bytes: u64) -> Result<()> {
        if self.entries_left == 0 {
            return Err(Error::validation(format!(
                "the data directory has more than {} files and directories, more than a \
                 restore accepts (daemon.max_restore_entries); raise that limit or clean up \
                 the data directory",
                self.max_entries
            )));
        }
        if self.bytes_left < bytes {
            return Err(Error::validation(format!(
                "the names in the data directory take more than {MAX_HELD_BYTES} bytes \
                 (deep paths of long names); clean up the data directory"
            )));
        }
        self.entries_left -= 1;
        self.bytes_left -= bytes;
        Ok(())
    }
}

/// List the tree as members named `<prefix>/<relative>`, depth first in name
/// order. Symlinks are recorded, never followed; sockets, FIFOs and device
/// nodes, names longer than restore accepts ([`MAX_NAME`]), sparse files beyond `holes` and whatever changed while it
/// was being walked are left out and reported.
pub fn walk(
    tree: &Arc<Tree>,
    prefix: &str,
    holes: &mut Budget,
) -> Result<(Vec<Member>, Vec<Skipped>)> {
    let mut out = vec![Member::from_stat(
        format!("{prefix}/"),
        Body::Dir,
        tree.root_stat(),
    )];
    let mut skipped = Vec::new();
    let root = list(
        tree,
        b"",
        None,
        format!("{prefix}/").as_bytes(),
        holes,
        &mut skipped,
    )
    .map_err(|gone| match gone {
        Gone::Failed(e) => e,
        Gone::Changed(why) => Error::Environment(format!("{} {why}", tree.display(b"").display())),
    })?;
    let mut stack = vec![root.into_iter()];
    while let Some(children) = stack.last_mut() {
        let Some(child) = children.next() else {
            stack.pop();
            continue;
        };
        match child {
            Child::Leaf(m) => out.push(m),
            Child::Dir { member, rel, ident } => {
                match list(tree, &rel, Some(ident), &member.name, holes, &mut skipped) {
                    Ok(grandchildren) => {
                        out.push(member);
                        stack.push(grandchildren.into_iter());
                    }
                    Err(Gone::Changed(reason)) => skipped.push(Skipped {
                        path: tree.display(&rel),
                        reason,
                        kind: SkipKind::LeftOut,
                    }),
                    Err(Gone::Failed(e)) => return Err(e),
                }
            }
        }
    }
    Ok((out, skipped))
}

/// Open the directory `rel` (if it is still `expect`) and describe its entries,
/// named `<name_prefix><name>`.
fn list(
    tree: &Arc<Tree>,
    rel: &[u8],
    expect: Option<Ident>,
    name_prefix: &[u8],
    holes: &mut Budget,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Child>, Gone> {
    let failed = |action: &'static str, at: &[u8], e: Errno| {
        Gone::Failed(Error::Io {
            action,
            path: tree.display(at),
            source: e.into(),
        })
    };
    tree.with_dir(rel, expect, |dir| {
        let mut names = Vec::new();
        let mut entries = Dir::read_from(dir).map_err(|e| failed("listing", rel, e))?;
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(|e| failed("listing", rel, e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                // What this entry will cost while the walk holds it: its
                // archive name and its path (or the path of its warning).
                let held = (name_prefix.len() + rel.len() + 2 * name.len() + 1) as u64;
                holes.take_entry(held).map_err(Gone::Failed)?;
                names.push(name.to_vec());
            }
        }
        drop(entries);
        names.sort_unstable();
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child_rel = tree::join(rel, &name);
            let mut skip = |reason: String| {
                skipped.push(Skipped {
                    path: tree.display(&child_rel),
                    reason,
                    kind: SkipKind::LeftOut,
                })
            };
            let st = match tree::stat_at(dir, &name) {
                Ok(st) => st,
                Err(Errno::NOENT) => {
                    skip("file removed before we read it".into());
                    continue;
                }
                Err(e) => return Err(failed("reading", &child_rel, e)),
            };
            let kind = tree::file_type(&st);
            // The name's bytes as they are (not necessarily UTF-8), as GNU tar
            // stores them; restore creates them byte for byte.
            let mut member_name = Vec::with_capacity(name_prefix.len() + name.len() + 1);
            member_name.extend_from_slice(name_prefix);
            member_name.extend_from_slice(&name);
            if kind == FileType::Directory {
                member_name.push(b'/');
            }
            if member_name.len() > MAX_NAME {
                skip(format!(
                    "restore would refuse it: its name in the archive would be longer than \
                     {MAX_NAME} bytes (PATH_MAX){}",
                    match kind {
                        FileType::Directory => ", so it is left out with everything below it",
                        _ => "",
                    }
                ));
                continue;
            }
            match kind {
                FileType::Directory => children.push(Child::Dir {
                    member: Member::from_stat(member_name, Body::Dir, &st),
                    ident: Ident::of(&st),
                    rel: child_rel,
                }),
                FileType::RegularFile => {
                    let hole = match tree::holes_at(dir, name.as_slice(), &st) {
                        Ok(Some(hole)) => hole,
                        Ok(None) => {
                            skip("changed during the backup".into());
                            continue;
                        }
                        Err(e) => return Err(failed("reading", &child_rel, e)),
                    };
                    if let Err(reason) = take_holes(st.stx_size, hole, holes) {
                        skip(reason);
                        continue;
                    }
                    let body = Body::File {
                        from: Origin::Tree(tree.clone(), child_rel),
                        ident: Ident::of(&st),
                        size: st.stx_size,
                    };
                    children.push(Child::Leaf(Member::from_stat(member_name, body, &st)));
                }
                FileType::Symlink => {
                    let target = match rustix::fs::readlinkat(dir, name.as_slice(), Vec::new()) {
                        Ok(t) => t.into_bytes(),
                        // Replaced by something else since the stat.
                        Err(Errno::NOENT | Errno::INVAL) => {
                            skip("changed during the backup".into());
                            continue;
                        }
                        Err(e) => return Err(failed("reading link", &child_rel, e)),
                    };
                    let body = Body::Symlink(tree::target_path(target));
                    children.push(Child::Leaf(Member::from_stat(member_name, body, &st)));
                }
                _ => skip("not a regular file, directory or symlink".into()),
            }
        }
        // The directory is listed and still open: tests swap what it names here.
        hook_point!("create::walk-dir");
        Ok(children)
    })
}

/// Count a file's holes against the budget, or say why it is left out.
fn take_holes(size: u64, hole: u64, holes: &mut Budget) -> std::result::Result<(), String> {
    if hole > holes.holes_left {
        return Err(format!(
            "is a sparse file ({size} bytes, of which {hole} are holes that use no disk); \
             archiving it would store the holes as data and restore them in full, and this \
             backup may hold at most {} bytes of holes (daemon.max_sparse_hole_bytes): left out",
            holes.max_holes
        ));
    }
    holes.holes_left -= hole;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(members: &[Member]) -> Vec<String> {
        members.iter().map(|m| m.shown().into_owned()).collect()
    }

    #[test]
    fn the_walk_stops_at_the_entry_and_name_budgets_not_after_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            fs::write(dir.path().join(format!("f{i:03}")), "x").unwrap();
        }
        let tree = Arc::new(Tree::open(dir.path()).unwrap());
        let err = walk(&tree, "t", &mut Budget::new(0).entries(10)).unwrap_err();
        assert!(err.to_string().contains("more than 10 files"), "{err}");
        let mut budget = Budget::new(0).entries(1000);
        budget.bytes_left = 500;
        let err = walk(&tree, "t", &mut budget).unwrap_err();
        assert!(
            err.to_string().contains("names in the data directory"),
            "{err}"
        );
        // Within both, the whole tree.
        let mut budget = Budget::new(0).entries(100);
        let (members, _) = walk(&tree, "t", &mut budget).unwrap();
        assert_eq!(members.len(), 101);
        assert_eq!(budget.entries_left, 0);
    }

    #[test]
    fn walks_depth_first_in_name_order_and_leaves_out_what_it_cannot_archive() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("b/c/f"), "x").unwrap();
        fs::write(root.join("a"), "x").unwrap();
        fs::write(root.join("z"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("l")).unwrap();
        nix::unistd::mkfifo(
            &root.join("p"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::File::create(root.join("s"))
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let tree = Arc::new(Tree::open(root).unwrap());
        let mut holes = Budget::new(1 << 20);
        let (members, skipped) = walk(&tree, "id/data", &mut holes).unwrap();
        assert_eq!(
            names(&members),
            [
                "id/data/",
                "id/data/a",
                "id/data/b/",
                "id/data/b/c/",
                "id/data/b/c/f",
                "id/data/l",
                "id/data/z"
            ]
        );
        assert!(matches!(&members[5].body, Body::Symlink(t) if t.as_os_str() == "/etc/passwd"));
        let why: Vec<_> = skipped.iter().map(Skipped::warning).collect();
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("/p: not a regular file"), "{why:?}");
        assert!(why[1].contains("/s: is a sparse file"), "{why:?}");
        assert_eq!(holes.holes_left, 1 << 20);
    }

    #[test]
    fn names_that_are_not_utf8_are_listed_as_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let raw = std::ffi::OsStr::from_bytes(b"caf\xe9");
        fs::create_dir(dir.path().join(raw)).unwrap();
        fs::write(dir.path().join(raw).join(raw), "x").unwrap();
        let tree = Arc::new(Tree::open(dir.path()).unwrap());
        let (members, skipped) = walk(&tree, "t", &mut Budget::new(0)).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let got: Vec<&[u8]> = members.iter().map(|m| m.name.as_slice()).collect();
        assert_eq!(got, [&b"t/"[..], b"t/caf\xe9/", b"t/caf\xe9/caf\xe9"]);
    }

    #[test]
    fn a_file_replaced_after_the_walk_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "mine").unwrap();
        fs::write(dir.path().join("secret"), "root's").unwrap();
        let tree = Arc::new(Tree::open(dir.path()).unwrap());
        let (members, _) = walk(&tree, "t", &mut Budget::new(0)).unwrap();
        let Body::File { from, ident, .. } = &members[1].body else {
            panic!("{members:?}");
        };
        assert!(from.open(*ident).is_ok());
        fs::remove_file(dir.path().join("f")).unwrap();
        std::os::unix::fs::symlink("secret", dir.path().join("f")).unwrap();
        assert!(matches!(from.open(*ident), Err(Gone::Changed(_))));
        fs::remove_file(dir.path().join("f")).unwrap();
        fs::write(dir.path().join("f"), "another").unwrap();
        assert!(matches!(from.open(*ident), Err(Gone::Changed(_))));
    }
}
