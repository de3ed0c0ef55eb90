//! Looking at results: whole-tree snapshots and an operation's event stream.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use abssd_proto::methods::call::watch;
use abssd_proto::{Event, EventKind};
use jsonrpsee::core::client::Client;

/// (kind, mode, uid, gid, mtime, content or link target) of one path.
pub type Node = (char, u32, u32, u32, i64, Vec<u8>);

/// Every path under `root`, relative, with its [`Node`]; sockets are left out.
/// An absent `root` is an empty map.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if !(m.is_dir() || m.is_file() || m.file_type().is_symlink()) {
                continue;
            }
            let (kind, body) = if m.is_dir() {
                ('d', vec![])
            } else if m.file_type().is_symlink() {
                (
                    'l',
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                ('f', fs::read(&p).unwrap())
            };
            let mtime = if kind == 'l' { 0 } else { m.mtime() };
            out.insert(
                rel,
                (kind, m.mode() & 0o7777, m.uid(), m.gid(), mtime, body),
            );
            if m.is_dir() {
                go(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// Like [`snapshot`] but without directory mtimes, which change whenever an
/// entry is added and removed again (staging, backups) even when the tree ends
/// up identical.
pub fn snapshot_content(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut s = snapshot(root);
    for node in s.values_mut() {
        if node.0 == 'd' {
            node.4 = 0;
        }
    }
    s
}

/// All events of an operation, replayed from the start through the terminal one.
pub async fn events_of(c: &Client, op_id: &str) -> Vec<Event> {
    let mut sub = watch(c, op_id).await.unwrap();
    let mut out = Vec::new();
    while let Some(ev) = sub.next().await {
        let ev = ev.unwrap();
        let end = ev.kind.is_terminal();
        out.push(ev);
        if end {
            break;
        }
    }
    out
}

/// The first `phase` event with this name (as it goes over the wire).
pub fn phase<'a>(events: &'a [Event], name: &str) -> Option<&'a Event> {
    let name = abssd_proto::Phase::from(name);
    events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Phase { name: n, .. } if *n == name))
}

/// Whether the operation waited for an instance lock.
pub fn waited_for_instance(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::LockWait { lock } if lock.starts_with("instance:")))
}
