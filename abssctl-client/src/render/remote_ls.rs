//! Text for people about `remote ls`: what was listed, one row per backup,
//! and what was left out.

use abssd_proto::{RemoteBackup, RemoteLsResult};

use super::{Align, esc, fields, human_size, table, yes_no};

/// `remote ls`: the location, the table of backups, and the notes.
pub fn listed(r: &RemoteLsResult) -> String {
    let mut text = fields(
        0,
        &[
            ("remote", r.remote.clone()),
            (
                "listed",
                format!("{} ({} keys)", r.location, r.keys_scanned),
            ),
        ],
    );
    let rows: Vec<Vec<String>> = r.backups.iter().map(row).collect();
    if rows.is_empty() {
        text.push_str("no backups in this remote\n");
    } else {
        text.push_str(&table(
            &[
                ("instance", Align::Left),
                ("id", Align::Left),
                ("size", Align::Right),
                ("encrypted", Align::Left),
                ("sidecar", Align::Left),
                ("entry", Align::Left),
                ("index", Align::Left),
                ("recorded", Align::Left),
            ],
            &rows,
        ));
    }
    let shown = r.backups.len() as u64;
    if r.backups_found > shown {
        text.push_str(&format!(
            "{} more backups not shown (at most {shown} are)\n",
            r.backups_found - shown
        ));
    }
    if r.truncated {
        text.push_str(&format!(
            "the listing stopped after {} keys: there is more in the remote (list one instance with --instance)\n",
            r.keys_scanned
        ));
    }
    if r.unplaced > 0 {
        let keys: Vec<String> = r
            .unplaced_keys
            .iter()
            .map(|k| esc(k).into_owned())
            .collect();
        text.push_str(&format!(
            "{} other key(s) are not objects abssd writes: {}{}\n",
            r.unplaced,
            keys.join(", "),
            if r.unplaced > keys.len() as u64 {
                ", …"
            } else {
                ""
            }
        ));
    }
    text
}

fn row(b: &RemoteBackup) -> Vec<String> {
    vec![
        b.instance.clone(),
        b.id.clone(),
        b.size_bytes
            .map_or_else(|| "no archive".to_owned(), human_size),
        yes_no(b.encrypted),
        yes_no(b.has_sidecar),
        yes_no(b.has_entry),
        yes_no(b.in_index),
        yes_no(b.recorded),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(id: &str, size: Option<u64>) -> RemoteBackup {
        RemoteBackup {
            instance: "alpha".into(),
            id: id.into(),
            archive_key: size.map(|_| format!("p/alpha/{id}.tar.zst")),
            size_bytes: size,
            encrypted: false,
            has_sidecar: true,
            has_entry: true,
            in_index: true,
            recorded: false,
        }
    }

    #[test]
    fn a_listing_is_a_table_with_what_was_left_out() {
        let r = RemoteLsResult {
            remote: "off".into(),
            location: "s3://b/p/".into(),
            backups: vec![backup("a1", Some(2048)), backup("a2", None)],
            backups_found: 3,
            keys_scanned: 7,
            truncated: true,
            unplaced: 2,
            unplaced_keys: vec!["p/x\u{1b}[2J".into()],
        };
        let text = listed(&r);
        assert!(text.contains("s3://b/p/ (7 keys)"), "{text}");
        assert!(text.contains("INSTANCE  ID"), "{text}");
        assert!(text.contains("2.0 KiB"), "{text}");
        assert!(text.contains("no archive"), "{text}");
        assert!(text.contains("1 more backups not shown"), "{text}");
        assert!(text.contains("stopped after 7 keys"), "{text}");
        assert!(text.contains("2 other key(s)"), "{text}");
        assert!(!text.contains('\u{1b}'), "escaped: {text:?}");
        let empty = listed(&RemoteLsResult::default());
        assert!(empty.contains("no backups in this remote"), "{empty}");
    }
}
