//! Text for people about backups: the list, one entry, a create plan or result,
//! verify results.

use abssd_proto::{
    BackupEntry, Capture, CreatePlan, CreateResult, DeepVerification, VerifyResult, status,
};
use serde_json::Value;

use super::{Align, ellipsize, esc, fields, human_size, table, value_text, yes_no};

/// The widest the labels/message column gets in `backup list`.
const NOTE_WIDTH: usize = 48;

/// The line under a `backup list` page when more backups match: how many
/// are shown (the newest, or `further` ones after an earlier page), and the
/// commands for all of them and for the next page (`command` with `limit`).
pub fn more(
    shown: usize,
    total: u64,
    further: bool,
    (command, limit): (&str, &str),
    cursor: &str,
) -> String {
    let which = if further { "more" } else { "newest" };
    format!(
        "{shown} {which} of {total} backups shown; all: {command} --all; next page: {command}{limit} --cursor={}\n",
        super::shell_word(cursor)
    )
}

/// `backup list`: one row per entry, in the order given (newest first).
pub fn list(entries: &[BackupEntry]) -> String {
    if entries.is_empty() {
        return "no backups\n".to_owned();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.instance.clone(),
                e.created_at.clone(),
                e.size_bytes.map_or_else(|| "-".to_owned(), human_size),
                e.algorithm.clone().unwrap_or_else(|| "-".to_owned()),
                if e.protected {
                    format!("{} (protected)", e.status)
                } else {
                    e.status.clone()
                },
                ellipsize(&note(e), NOTE_WIDTH),
            ]
        })
        .collect();
    table(
        &[
            ("id", Align::Left),
            ("instance", Align::Left),
            ("created", Align::Left),
            ("size", Align::Right),
            ("algorithm", Align::Left),
            ("status", Align::Left),
            ("labels/message", Align::Left),
        ],
        &rows,
    )
}

/// `backup protect` / `unprotect`: one line.
pub fn protected(r: &abssd_proto::ProtectResult) -> String {
    let now = if r.protected {
        "protected: no prune removes it"
    } else {
        "not protected: prunes may remove it"
    };
    let was = if r.changed { "" } else { " (it was already)" };
    format!(
        "backup {} is {now}{was}
",
        esc(&r.id)
    )
}

/// `[label, label] message`, whichever parts there are.
fn note(entry: &BackupEntry) -> String {
    let labels = &entry.metadata.labels;
    let message = entry.message.as_deref().unwrap_or("");
    match (labels.is_empty(), message.is_empty()) {
        (true, _) => message.to_owned(),
        (false, true) => format!("[{}]", labels.join(", ")),
        (false, false) => format!("[{}] {message}", labels.join(", ")),
    }
}

/// `backup show`: every field of the entry, unknown keys included.
pub fn detail(e: &BackupEntry) -> String {
    let mut pairs: Vec<(&str, String)> = vec![
        ("id", e.id.clone()),
        ("instance", e.instance.clone()),
        ("status", status_text(e)),
        ("protected", yes_no(e.protected)),
        ("created", e.created_at.clone()),
        (
            "created by",
            e.created_by
                .as_ref()
                .map_or_else(|| "-".to_owned(), actor_text),
        ),
        (
            "archive",
            if e.status == status::REMOVED {
                format!("{} (deleted)", e.path)
            } else {
                e.path.clone()
            },
        ),
        (
            "size",
            e.size_bytes.map_or_else(|| "-".to_owned(), size_with_bytes),
        ),
    ];
    if let Some(bytes) = e.metadata.uncompressed_bytes {
        pairs.push(("uncompressed", size_with_bytes(bytes)));
    }
    pairs.push((
        "algorithm",
        algorithm_text(e.algorithm.as_deref(), e.compression_level),
    ));
    match &e.checksum {
        Some(c) => {
            pairs.push(("checksum", format!("{} {}", c.algorithm, c.value)));
            if let Some(observed) = c.observed.as_ref().filter(|o| **o != c.value) {
                pairs.push(("observed", observed.clone()));
            }
            if let Some(at) = &c.last_verified {
                pairs.push(("last verified", at.clone()));
            }
        }
        None => pairs.push(("checksum", "-".to_owned())),
    }
    if let Some(at) = &e.verified_at {
        pairs.push(("verified at", at.clone()));
    }
    if let Some(why) = &e.metadata.verification_error {
        pairs.push(("verification error", why.clone()));
    }
    if let Some(d) = &e.metadata.verification {
        pairs.push((
            "deep check",
            format!("{} ({})", deep_summary(d), d.checked_at),
        ));
        if let Some(problem) = &d.problem {
            pairs.push(("deep problem", problem.clone()));
        }
    }
    pairs.push(("data only", yes_no(e.metadata.data_only)));
    pairs.push(("labels", list_or_dash(&e.metadata.labels)));
    pairs.push((
        "message",
        e.message.clone().unwrap_or_else(|| "-".to_owned()),
    ));
    if let Some(at) = &e.reconciled_at {
        pairs.push(("reconciled at", at.clone()));
    }
    let mut text = fields(0, &pairs);
    // The restore history, and keys this client has no name for (Python-tool
    // extras), show under their own names.
    let extras: Vec<(String, String)> = restore_history(e)
        .into_iter()
        .chain(e.extra.iter().map(|(k, v)| (k.clone(), value_text(v))))
        .chain(
            e.metadata
                .extra
                .iter()
                .map(|(k, v)| (format!("metadata.{k}"), value_text(v))),
        )
        .chain(
            e.checksum
                .iter()
                .flat_map(|c| &c.extra)
                .map(|(k, v)| (format!("checksum.{k}"), value_text(v))),
        )
        .collect();
    if !extras.is_empty() {
        let pairs: Vec<(&str, String)> = extras
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        text.push_str("other:\n");
        text.push_str(&fields(2, &pairs));
    }
    text
}

/// The status, and for an entry a prune removed (the Python tool's `backup
/// prune` deletes the archive and keeps the entry with `removed_at`) when and
/// that it was meant: such an entry is a record, not drift.
fn status_text(e: &BackupEntry) -> String {
    if e.status != status::REMOVED {
        return e.status.clone();
    }
    match e.extra.get("removed_at").and_then(Value::as_str) {
        Some(at) => format!("removed {at} (pruned: the archive was deleted on purpose)"),
        None => "removed (pruned: the archive was deleted on purpose)".to_owned(),
    }
}

/// The restore history fields that are set, as the index names them.
fn restore_history(e: &BackupEntry) -> Vec<(String, String)> {
    fn text<T: serde::Serialize>(v: &T) -> String {
        value_text(&serde_json::to_value(v).unwrap_or(Value::Null))
    }
    let mut out = Vec::new();
    if let Some(at) = &e.last_restored_at {
        out.push(("last_restored_at".to_owned(), text(at)));
    }
    if let Some(dest) = &e.last_restore_destination {
        out.push(("last_restore_destination".to_owned(), text(dest)));
    }
    if let Some(by) = &e.restored_by {
        out.push(("restored_by".to_owned(), text(by)));
    }
    if let Some(restores) = &e.restores {
        out.push(("restores".to_owned(), text(restores)));
    }
    out
}

/// `created_by` / `restored_by`: `{uid, user, pid}` from this project, a user name
/// from the Python tool.
fn actor_text(actor: &Value) -> String {
    match (actor.get("user"), actor.get("uid"), actor.get("pid")) {
        (Some(user), Some(uid), pid) => {
            let pid = pid
                .map(|p| format!(", pid {}", value_text(p)))
                .unwrap_or_default();
            format!("{} (uid {}{pid})", value_text(user), value_text(uid))
        }
        _ => value_text(actor),
    }
}

fn size_with_bytes(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", human_size(bytes))
}

fn algorithm_text(algorithm: Option<&str>, level: Option<i64>) -> String {
    match (algorithm, level) {
        (Some(a), Some(l)) => format!("{a} (level {l})"),
        (Some(a), None) => a.to_owned(),
        (None, _) => "-".to_owned(),
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// `backup create --dry-run`: what would be archived, and where.
pub fn plan(p: &CreatePlan) -> String {
    let mut text = format!(
        "Dry run, nothing written: backup {} of instance {}\n",
        esc(&p.id),
        esc(&p.instance)
    );
    text.push_str(&fields(
        2,
        &[
            ("archive", p.archive.clone()),
            ("checksum file", p.checksum_file.clone()),
            (
                "algorithm",
                algorithm_text(
                    Some(p.algorithm.as_str()),
                    p.compression_level.map(i64::from),
                ),
            ),
            ("data only", yes_no(p.data_only)),
            ("content", human_size(p.total_bytes)),
            ("index", p.index.clone()),
            ("capture", capture_plan(p)),
        ],
    ));
    if !p.databases.is_empty() {
        text.push_str(&format!(
            "  SQLite databases to snapshot ({}):\n",
            p.databases.len()
        ));
        for db in &p.databases {
            text.push_str(&format!("    {}\n", esc(db)));
        }
    }
    for note in &p.notes {
        text.push_str(&format!("  note: {}\n", esc(note)));
    }
    let rows: Vec<Vec<String>> = p
        .sources
        .iter()
        .map(|s| {
            vec![
                s.role.clone(),
                if s.present {
                    human_size(s.bytes)
                } else {
                    "absent".to_owned()
                },
                s.entries.to_string(),
                s.path.clone(),
                s.member.clone(),
            ]
        })
        .collect();
    text.push('\n');
    text.push_str(&table(
        &[
            ("role", Align::Left),
            ("size", Align::Right),
            ("entries", Align::Right),
            ("path", Align::Left),
            ("member", Align::Left),
        ],
        &rows,
    ));
    text
}

/// How a create would read the instance, for the dry run: the capture, what
/// it means, and the mode and unit state it follows from.
fn capture_plan(p: &CreatePlan) -> String {
    let how = match p.capture {
        Capture::Stop => {
            "the unit will be stopped while the archive is written, then started again"
        }
        Capture::Snapshot => "SQLite databases copied through SQLite, the unit keeps running",
        Capture::None => "files copied as they are while the unit runs",
        Capture::Offline => "files read as they are",
    };
    let running = match p.unit_running {
        Some(true) => "unit running",
        Some(false) => "unit not running",
        None => "unit state unknown",
    };
    let asked = serde_json::to_value(p.consistency)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{}: {how} (--consistency {asked}; {running})",
        p.capture.as_str()
    )
}

/// `backup create`: what was written.
pub fn created(r: &CreateResult) -> String {
    let mut text = format!("Created backup {}\n", esc(&r.id));
    let mut pairs = vec![
        ("archive", r.archive.clone()),
        (
            "size",
            format!(
                "{} from {} of files",
                human_size(r.size_bytes),
                human_size(r.uncompressed_bytes)
            ),
        ),
        (
            "algorithm",
            algorithm_text(
                Some(r.algorithm.as_str()),
                r.compression_level.map(i64::from),
            ),
        ),
        ("sha256", r.checksum.clone()),
        ("checksum file", r.checksum_file.clone()),
        ("created", r.created_at.clone()),
        ("data only", yes_no(r.data_only)),
        ("labels", list_or_dash(&r.labels)),
        (
            "message",
            r.message.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        (
            "capture",
            match r.capture {
                Capture::Snapshot => format!("snapshot ({} SQLite snapshots)", r.snapshots),
                other => other.as_str().to_owned(),
            },
        ),
    ];
    if let Some(ms) = r.downtime_ms {
        pairs.push((
            "downtime",
            format!(
                "{} (the unit was stopped while the archive was written)",
                duration_text(ms)
            ),
        ));
    }
    text.push_str(&fields(2, &pairs));
    // The warnings went by on stderr while it ran; the summary must not hide
    // that the backup is not the whole data directory.
    if !r.warnings.is_empty() {
        text.push_str(&format!(
            "  warnings: {} (what was left out; shown above, or with --json)\n",
            r.warnings.len()
        ));
    }
    text
}

/// `850 ms`, `12.3 s`, `4 min 5 s`.
fn duration_text(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// What a deep check looked at, on one line.
pub fn deep_summary(d: &DeepVerification) -> String {
    let verdict = if d.ok { "passed" } else { "FAILED" };
    let mut text = format!(
        "{verdict}: {} database(s) intact, {} blob(s) read, {} listed file(s) present",
        d.databases, d.blobs, d.listed_files
    );
    if d.actual {
        text.push_str(if d.migrate {
            ", .migrate present"
        } else {
            ", .migrate missing"
        });
    } else {
        text.push_str("; not an Actual data directory (no server-files/account.sqlite)");
    }
    text
}

/// `backup verify`: one row per backup, what each deep check found, then a
/// one-line summary.
pub fn verified(v: &VerifyResult) -> String {
    if v.results.is_empty() {
        return "no backups to verify\n".to_owned();
    }
    let rows: Vec<Vec<String>> = v
        .results
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.status.clone(),
                r.previous_status.clone(),
                r.message.clone(),
            ]
        })
        .collect();
    let mut text = table(
        &[
            ("id", Align::Left),
            ("status", Align::Left),
            ("previous", Align::Left),
            ("message", Align::Left),
        ],
        &rows,
    );
    for r in &v.results {
        if let Some(d) = &r.deep {
            text.push_str(&format!("{}: deep check: {}\n", r.id, deep_summary(d)));
            if let Some(problem) = &d.problem {
                let more = match d.problems {
                    0 | 1 => String::new(),
                    n => format!(" ({} more)", n - 1),
                };
                text.push_str(&format!("  problem{more}: {problem}\n"));
            }
        }
    }
    let bad = v
        .results
        .iter()
        .filter(|r| r.status != status::AVAILABLE)
        .count();
    text.push_str(&format!(
        "{} checked: {} available, {bad} with problems\n",
        v.results.len(),
        v.results.len() - bad
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use abssd_proto::VerifyItem;

    fn entry() -> BackupEntry {
        serde_json::from_value(serde_json::json!({
            "id": "20250102-030405-alpha-a1b2c3", "instance": "alpha",
            "created_at": "2025-01-02T03:04:05Z", "path": "/srv/backups/alpha/x.tar.zst",
            "algorithm": "zstd", "compression_level": 3, "size_bytes": 12_897_485u64,
            "checksum": {"algorithm": "sha256", "value": "ab12"}, "status": "available",
            "message": "before upgrade", "created_by": {"uid": 0, "user": "root", "pid": 42},
            "metadata": {"data_only": false, "labels": ["nightly", "keep"]},
            "last_restored_at": "2025-02-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_dry_run_shows_the_capture_and_the_databases_to_snapshot() {
        let p: CreatePlan = serde_json::from_value(serde_json::json!({
            "instance": "alpha", "id": "x", "created_at": "2025-01-01T00:00:00Z",
            "archive": "/a", "checksum_file": "/a.sha256", "algorithm": "zstd",
            "compression_level": 3, "data_only": false, "total_bytes": 1, "sources": [],
            "index": "/i", "dry_run": true, "consistency": "snapshot", "capture": "snapshot",
            "unit_running": true,
            "databases": ["/srv/alpha/data/server-files/account.sqlite"],
            "notes": ["not archived: 1 journal file(s)"]
        }))
        .unwrap();
        let text = plan(&p);
        assert!(
            text.contains(
                "snapshot: SQLite databases copied through SQLite, the unit keeps running \
                 (--consistency snapshot; unit running)"
            ),
            "{text}"
        );
        assert!(
            text.contains("SQLite databases to snapshot (1):\n    /srv/alpha/data/server-files/account.sqlite\n"),
            "{text}"
        );
        assert!(text.contains("note: not archived: 1 journal"), "{text}");
    }

    #[test]
    fn created_says_when_something_was_left_out() {
        let mut r = CreateResult {
            id: "20250101-000000-alpha-abcdef".into(),
            archive: "/srv/backups/alpha/x.tar.zst".into(),
            checksum: "00".into(),
            checksum_file: "/srv/backups/alpha/x.tar.zst.sha256".into(),
            size_bytes: 10,
            algorithm: abssd_proto::Algorithm::Zstd,
            compression_level: Some(3),
            message: None,
            labels: vec![],
            data_only: false,
            uncompressed_bytes: 20,
            created_at: "2025-01-01T00:00:00Z".into(),
            capture: abssd_proto::Capture::Snapshot,
            snapshots: 0,
            downtime_ms: None,
            warnings: vec![],
        };
        assert!(!created(&r).contains("warnings"));
        r.snapshots = 3;
        let text = created(&r);
        assert!(
            text.contains("capture:") && text.contains("snapshot (3 SQLite snapshots)"),
            "{text}"
        );
        assert!(!created(&r).contains("downtime"));
        r.capture = abssd_proto::Capture::Stop;
        r.downtime_ms = Some(2345);
        assert!(
            created(&r).contains(
                "downtime:       2.3 s (the unit was stopped while the archive was written)"
            ),
            "{}",
            created(&r)
        );
        r.warnings = vec!["left out /srv/alpha/data/fifo: not a regular file".into(); 2];
        assert!(created(&r).contains("warnings: 2"), "{}", created(&r));
    }

    #[test]
    fn a_dry_run_in_stop_mode_says_the_unit_will_be_stopped() {
        let mut p: CreatePlan = serde_json::from_value(serde_json::json!({
            "instance": "alpha", "id": "20250101-000000-alpha-abcdef",
            "created_at": "2025-01-01T00:00:00Z", "archive": "/a.tar", "checksum_file": "/a.tar.sha256",
            "algorithm": "none", "compression_level": null, "data_only": false, "total_bytes": 1,
            "sources": [], "index": "/i.json", "dry_run": true, "consistency": "stop",
            "capture": "stop", "unit_running": true
        }))
        .unwrap();
        let text = plan(&p);
        assert!(
            text.contains("capture:        stop: the unit will be stopped while the archive is written, then started again"),
            "{text}"
        );
        p.capture = Capture::Offline;
        p.unit_running = Some(false);
        assert!(
            plan(&p)
                .contains("offline: files read as they are (--consistency stop; unit not running)"),
            "{}",
            plan(&p)
        );
    }

    #[test]
    fn list_row_has_human_size_and_note() {
        let text = list(&[entry()]);
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.starts_with("20250102-030405-alpha-a1b2c3  alpha     2025-01-02T03:04:05Z"),
            "{row}"
        );
        assert!(row.contains("12.3 MiB  zstd"), "{row}");
        assert!(
            row.ends_with("available  [nightly, keep] before upgrade"),
            "{row}"
        );
    }

    #[test]
    fn detail_shows_actor_and_unknown_keys() {
        let text = detail(&entry());
        assert!(text.contains("root (uid 0, pid 42)"), "{text}");
        assert!(text.contains("zstd (level 3)"), "{text}");
        assert!(
            text.contains("last_restored_at:  2025-02-01T00:00:00Z"),
            "{text}"
        );
    }

    #[test]
    fn a_pruned_entry_is_shown_as_removed_with_its_time() {
        let mut e = entry();
        e.status = status::REMOVED.into();
        e.extra
            .insert("removed_at".into(), "2025-03-01T00:00:00Z".into());
        let row = list(std::slice::from_ref(&e));
        assert!(row.lines().nth(1).unwrap().contains("  removed  "), "{row}");
        let text = detail(&e);
        assert!(
            text.contains(
                "status:      removed 2025-03-01T00:00:00Z (pruned: the archive was deleted on purpose)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("/srv/backups/alpha/x.tar.zst (deleted)\n"),
            "{text}"
        );
        // Without the time, still removed; and no other status says deleted.
        e.extra.clear();
        assert!(detail(&e).contains("removed (pruned"), "{}", detail(&e));
        assert!(!detail(&entry()).contains("(deleted)"));
    }

    #[test]
    fn verify_summary_counts_problems() {
        let item = |id: &str, status: &str| VerifyItem {
            id: id.to_owned(),
            status: status.to_owned(),
            message: "m".to_owned(),
            previous_status: "available".to_owned(),
            deep: None,
        };
        let text = verified(&VerifyResult {
            results: vec![item("a", "available"), item("b", "corrupt")],
        });
        assert!(
            text.ends_with("2 checked: 1 available, 1 with problems\n"),
            "{text}"
        );
    }

    #[test]
    fn a_deep_check_shows_what_it_checked_and_its_problem() {
        let deep = |ok: bool| DeepVerification {
            checked_at: "2025-01-01T00:00:00Z".into(),
            ok,
            databases: 3,
            blobs: 2,
            listed_files: 2,
            migrate: true,
            actual: true,
            problems: if ok { 0 } else { 3 },
            problem: (!ok).then(|| "data/user-files/file-x.blob: not a readable zip".into()),
            extra: Default::default(),
        };
        let item = |id: &str, ok: bool| VerifyItem {
            id: id.to_owned(),
            status: if ok { "available" } else { "corrupt" }.to_owned(),
            message: "m".to_owned(),
            previous_status: "available".to_owned(),
            deep: Some(deep(ok)),
        };
        let text = verified(&VerifyResult {
            results: vec![item("a", true), item("b", false)],
        });
        assert!(
            text.contains("a: deep check: passed: 3 database(s) intact, 2 blob(s) read, 2 listed file(s) present, .migrate present\n"),
            "{text}"
        );
        assert!(
            text.contains("b: deep check: FAILED: ")
                && text.contains(
                    "  problem (2 more): data/user-files/file-x.blob: not a readable zip\n"
                ),
            "{text}"
        );
        let mut d = deep(true);
        d.actual = false;
        assert!(
            deep_summary(&d)
                .ends_with("not an Actual data directory (no server-files/account.sqlite)")
        );
    }
}
