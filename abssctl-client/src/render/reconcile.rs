//! Text for people about `backup reconcile`: the findings grouped by category, what
//! was written, and a last line that says whether the index and the archives agree
//! and, when they do not, which flag would fix what.

use abssd_proto::{ReconcileItem, ReconcilePlan, ReconcileResult};

use super::{Align, ellipsize, fields, table};

/// The widest the reason column gets.
const REASON_WIDTH: usize = 60;

/// Marks an item this run fixed.
const FIXED: &str = "✓";

/// `backup reconcile`: what was compared (when the plan is known), then each
/// category with its count, the changes written, and the summary.
pub fn reconciled(r: &ReconcileResult, plan: Option<&ReconcilePlan>) -> String {
    let mut text = plan.map(compared).unwrap_or_default();
    text.push_str(&entries("missing", &r.missing));
    text.push_str(&orphans(
        &r.orphaned,
        plan.and_then(|p| p.remote.as_deref()),
    ));
    text.push_str(&entries("mismatched", &r.mismatched));
    if !r.local_only.is_empty() {
        let heading = format!(
            "local only ({}): no copy in the remote; not drift",
            r.local_only.len()
        );
        text.push_str(&listing(&heading, &r.local_only, &[ID, INSTANCE, REASON]));
    }
    if !r.missing_sidecars.is_empty() {
        text.push_str(&entries("missing sidecars", &r.missing_sidecars));
    }
    if !r.stray_sidecars.is_empty() {
        text.push_str(&sidecars(&r.stray_sidecars));
    }
    if let Some(applied) = &r.applied {
        text.push_str(&written("applied", applied, "written status"));
    }
    if let Some(adopted) = &r.adopted {
        text.push_str(&written("adopted", adopted, "status"));
    }
    text.push_str(&unlisted(&r.unlisted));
    text.push_str(&summary(r, plan));
    text
}

/// What the lists above left out (each lists its first 1000).
fn unlisted(u: &abssd_proto::Unlisted) -> String {
    let parts: Vec<String> = [
        ("missing", u.missing),
        ("orphaned", u.orphaned),
        ("mismatched", u.mismatched),
        ("missing sidecars", u.missing_sidecars),
        ("stray sidecars", u.stray_sidecars),
        ("local only", u.local_only),
        ("applied", u.applied),
        ("adopted", u.adopted),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} more {what}"))
    .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "not listed (each list shows its first {}): {}\n",
        abssd_proto::limits::PLAN_ROWS,
        parts.join(", ")
    )
}

/// What was compared with what, and how closely.
fn compared(p: &ReconcilePlan) -> String {
    let mut pairs = vec![
        (
            "index",
            format!(
                "{} ({} {})",
                p.index,
                p.index_entries,
                plural(p.index_entries, "entry", "entries")
            ),
        ),
        match &p.remote {
            None => (
                "archives",
                format!(
                    "{} ({} {})",
                    p.backups_root,
                    p.archives,
                    plural(p.archives, "archive", "archives")
                ),
            ),
            Some(remote) => (
                "remote",
                format!(
                    "{remote}: {} ({} {})",
                    p.backups_root,
                    p.archives,
                    plural(p.archives, "backup", "backups")
                ),
            ),
        },
    ];
    if let Some(instance) = &p.instance {
        pairs.push(("instance", format!("{instance} only")));
    }
    let checked = if p.remote.is_some() {
        "recorded copies: present, sizes, sidecars' checksums; backups only in the remote"
    } else if p.deep {
        "sizes, statuses, checksums and content (archives re-hashed and deep-checked)"
    } else if p.verify {
        "sizes, statuses and checksums (archives re-hashed)"
    } else {
        "sizes and statuses (--verify also re-hashes the archives)"
    };
    pairs.push(("checked", checked.to_owned()));
    fields(0, &pairs)
}

/// One column of a findings table: heading and what it shows of an item.
type Column<'a> = (&'a str, fn(&ReconcileItem) -> String);

const ID: Column<'static> = ("id", |i| i.id.clone());
const INSTANCE: Column<'static> = ("instance", instance);
const STATUS: Column<'static> = ("status", |i| i.status.clone());
const REASON: Column<'static> = ("reason", |i| ellipsize(&i.reason, REASON_WIDTH));
const ACTION: Column<'static> = ("action", action);
const PATH: Column<'static> = ("path", |i| i.path.clone());

/// A category of index entries (missing, mismatched): their status matters.
fn entries(title: &str, items: &[ReconcileItem]) -> String {
    let heading = format!("{title} ({})", items.len());
    listing(&heading, items, &[ID, INSTANCE, STATUS, REASON, ACTION])
}

/// Archives without an entry: the path is the handle a person has on them (and
/// holds the id inferred from the name).
fn orphans(items: &[ReconcileItem], remote: Option<&str>) -> String {
    let heading = match remote {
        Some(remote) => format!("orphaned ({}): only in remote {remote}", items.len()),
        None => format!("orphaned ({})", items.len()),
    };
    listing(&heading, items, &[PATH, INSTANCE, REASON, ACTION])
}

/// Stray `.sha256` sidecars: listed for a person to tidy up, nothing to fix.
fn sidecars(items: &[ReconcileItem]) -> String {
    let heading = format!(
        "stray sidecars ({}): not drift, reconcile never deletes them",
        items.len()
    );
    listing(&heading, items, &[PATH, INSTANCE, REASON])
}

/// Index changes this run wrote (`applied`, `adopted`).
fn written(title: &str, items: &[ReconcileItem], status: &str) -> String {
    let action: Column<'_> = ("action", |i| {
        i.action.clone().unwrap_or_else(|| "-".to_owned())
    });
    let heading = format!("{title} ({})", items.len());
    listing(
        &heading,
        items,
        &[ID, INSTANCE, (status, STATUS.1), action, PATH],
    )
}

/// `heading`, then one row per item with `columns`.
fn listing(heading: &str, items: &[ReconcileItem], columns: &[Column<'_>]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|(_, show)| show(i)).collect())
        .collect();
    let heads: Vec<(&str, Align)> = columns.iter().map(|(h, _)| (*h, Align::Left)).collect();
    section(heading, &heads, &rows)
}

/// The heading, then the rows as an indented table when there are any.
fn section(heading: &str, columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut text = format!("{heading}\n");
    if !rows.is_empty() {
        for line in table(columns, rows).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

fn instance(item: &ReconcileItem) -> String {
    item.instance.clone().unwrap_or_else(|| "-".to_owned())
}

/// What `--apply` does about an item, `… ✓` once done; `manual` when reconcile has
/// no fix and a person has to look.
fn action(item: &ReconcileItem) -> String {
    match (&item.action, item.resolved) {
        (Some(action), true) => format!("{action} {FIXED}"),
        (None, true) => format!("fixed {FIXED}"),
        (Some(action), false) => action.clone(),
        (None, false) => "manual".to_owned(),
    }
}

/// The last line(s): in sync, everything fixed, or what is left and how to fix it.
fn summary(r: &ReconcileResult, plan: Option<&ReconcilePlan>) -> String {
    let known = if r.known_missing > 0 {
        format!(
            "; {} {} already marked missing",
            r.known_missing,
            plural(r.known_missing, "entry", "entries")
        )
    } else {
        String::new()
    };
    if r.unresolved == 0 {
        let found = [&r.missing, &r.orphaned, &r.mismatched, &r.missing_sidecars]
            .iter()
            .map(|items| items.len())
            .sum::<usize>() as u64;
        let agree = match plan.and_then(|p| p.remote.as_deref()) {
            Some(remote) => format!("the index and remote {remote}"),
            None => "the index and the archives".to_owned(),
        };
        return if found == 0 {
            format!("in sync: {agree} agree{known}\n")
        } else {
            format!(
                "in sync now: {found} {} fixed{known}\n",
                plural(found, "finding", "findings")
            )
        };
    }

    // What was asked for, from the plan or, without it, from what was written.
    let applied = plan.is_some_and(|p| p.apply) || r.applied.is_some();
    let adopted = plan.is_some_and(|p| p.adopt) || r.adopted.is_some();
    let open = |items: &[ReconcileItem]| -> (u64, u64) {
        let fixable = items
            .iter()
            .filter(|i| !i.resolved && i.action.is_some())
            .count() as u64;
        let manual = items
            .iter()
            .filter(|i| !i.resolved && i.action.is_none())
            .count() as u64;
        (fixable, manual)
    };
    let (missing, missing_manual) = open(&r.missing);
    let (mismatched, mismatched_manual) = open(&r.mismatched);
    let (orphaned, orphaned_manual) = open(&r.orphaned);
    let (sidecars, sidecars_manual) = open(&r.missing_sidecars);

    let mut hints = Vec::new();
    if !applied && missing + mismatched > 0 {
        hints.push(format!(
            "--apply fixes the index {} of {}",
            plural(missing + mismatched, "entry", "entries"),
            counted(&[(missing, "missing"), (mismatched, "mismatched")]),
        ));
    }
    if !applied && sidecars > 0 {
        hints.push(format!(
            "--apply hashes {sidecars} {} and writes {} missing .sha256 sidecar when it matches the index",
            plural(sidecars, "archive", "archives"),
            plural(sidecars, "its", "their"),
        ));
    }
    if !adopted && orphaned > 0 {
        hints.push(format!(
            "--apply --adopt gives {orphaned} orphaned {} {}",
            plural(orphaned, "archive", "archives"),
            plural(orphaned, "an index entry", "index entries"),
        ));
    }
    let manual = missing_manual + mismatched_manual + orphaned_manual + sidecars_manual;
    if manual > 0 {
        hints.push(format!(
            "{manual} {} no automatic fix (ACTION manual): look at {}",
            plural(manual, "has", "have"),
            plural(manual, "it", "them"),
        ));
    }
    if applied && (missing + mismatched + sidecars > 0 || (adopted && orphaned > 0)) {
        // Asked for and still open (say, the index changed during the run).
        hints.push("asked for but not made: see REASON; a rerun compares again".to_owned());
    }

    let mut text = format!(
        "{} {} not fixed{known}\n",
        r.unresolved,
        plural(r.unresolved, "finding", "findings")
    );
    for hint in hints {
        text.push_str(&format!("  {hint}\n"));
    }
    text
}

/// `1 missing and 2 mismatched`, leaving out zero counts.
fn counted(parts: &[(u64, &str)]) -> String {
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, status: &str, action: Option<&str>, resolved: bool) -> ReconcileItem {
        ReconcileItem {
            id: id.to_owned(),
            instance: Some("alpha".to_owned()),
            path: format!("/srv/backups/alpha/{id}.tar.zst"),
            status: status.to_owned(),
            reason: "archive not found".to_owned(),
            action: action.map(str::to_owned),
            resolved,
            size_bytes: None,
        }
    }

    fn plan(apply: bool, adopt: bool, verify: bool) -> ReconcilePlan {
        ReconcilePlan {
            backups_root: "/srv/backups".to_owned(),
            index: "/srv/backups/backups.json".to_owned(),
            instance: None,
            archives: 10,
            index_entries: 11,
            partial_files: 0,
            read_bytes: 0,
            apply,
            adopt,
            verify,
            deep: false,
            remote: None,
        }
    }

    #[test]
    fn a_remote_reconcile_names_the_remote_and_lists_local_only_backups() {
        let p = ReconcilePlan {
            backups_root: "s3://bkt/hosts/".to_owned(),
            archives: 1,
            remote: Some("off".to_owned()),
            ..plan(false, false, false)
        };
        let mut r = ReconcileResult {
            local_only: vec![item("local-one", "available", Some("push it"), false)],
            ..ReconcileResult::default()
        };
        r.count_unresolved();
        assert_eq!(r.unresolved, 0, "local only is not drift");
        let text = reconciled(&r, Some(&p));
        assert!(text.contains("remote:"), "{text}");
        assert!(text.contains("off: s3://bkt/hosts/ (1 backup)"), "{text}");
        assert!(
            text.contains("local only (1): no copy in the remote"),
            "{text}"
        );
        assert!(text.contains("local-one"), "{text}");
        assert!(
            text.ends_with("in sync: the index and remote off agree\n"),
            "{text}"
        );
    }

    #[test]
    fn missing_sidecars_are_drift_with_their_own_list_and_hint() {
        let mut lost = item(
            "lost",
            "available",
            Some("hash the archive; write the sidecar if the hash is the index's checksum"),
            false,
        );
        lost.reason = "archive present but its .sha256 sidecar is missing".to_owned();
        let mut r = ReconcileResult {
            missing_sidecars: vec![lost],
            ..ReconcileResult::default()
        };
        r.count_unresolved();
        let text = reconciled(&r, Some(&plan(false, false, false)));
        assert!(text.contains("missing sidecars (1)\n"), "{text}");
        assert!(text.contains("sidecar is missing"), "{text}");
        assert!(
            text.contains("--apply hashes 1 archive and writes its missing .sha256 sidecar"),
            "{text}"
        );
        r.missing_sidecars[0].resolved = true;
        r.count_unresolved();
        let text = reconciled(&r, Some(&plan(true, false, false)));
        assert!(text.ends_with("in sync now: 1 finding fixed\n"), "{text}");
    }

    #[test]
    fn in_sync_shows_empty_categories_and_says_so() {
        let text = reconciled(&ReconcileResult::default(), None);
        assert_eq!(
            text,
            "missing (0)\norphaned (0)\nmismatched (0)\n\
             in sync: the index and the archives agree\n"
        );
        let r = ReconcileResult {
            known_missing: 1,
            ..ReconcileResult::default()
        };
        let text = reconciled(&r, Some(&plan(false, false, false)));
        assert_eq!(
            text,
            "index:     /srv/backups/backups.json (11 entries)\n\
             archives:  /srv/backups (10 archives)\n\
             checked:   sizes and statuses (--verify also re-hashes the archives)\n\
             missing (0)\norphaned (0)\nmismatched (0)\n\
             in sync: the index and the archives agree; 1 entry already marked missing\n"
        );
    }

    #[test]
    fn plan_names_the_instance_and_what_was_checked() {
        let mut p = plan(false, false, true);
        p.instance = Some("alpha".to_owned());
        let text = reconciled(&ReconcileResult::default(), Some(&p));
        assert!(text.contains("instance:  alpha only\n"), "{text}");
        assert!(
            text.contains("checked:   sizes, statuses and checksums (archives re-hashed)\n"),
            "{text}"
        );
    }

    #[test]
    fn each_category_is_a_table_under_its_count() {
        let mut orphan = item("o1", "unindexed", Some("adopt"), false);
        orphan.reason = "no index entry".to_owned();
        let mut mismatch = item("x1", "unknown", Some("mark available"), false);
        mismatch.reason = "archive present".to_owned();
        mismatch.instance = None;
        let r = ReconcileResult {
            missing: vec![
                item("m1", "available", Some("mark missing"), false),
                item("m2", "available", Some("mark missing"), false),
            ],
            orphaned: vec![orphan],
            mismatched: vec![mismatch],
            unresolved: 4,
            ..ReconcileResult::default()
        };
        assert_eq!(
            reconciled(&r, None),
            "missing (2)\n  \
             ID  INSTANCE  STATUS     REASON             ACTION\n  \
             m1  alpha     available  archive not found  mark missing\n  \
             m2  alpha     available  archive not found  mark missing\n\
             orphaned (1)\n  \
             PATH                           INSTANCE  REASON          ACTION\n  \
             /srv/backups/alpha/o1.tar.zst  alpha     no index entry  adopt\n\
             mismatched (1)\n  \
             ID  INSTANCE  STATUS   REASON           ACTION\n  \
             x1  -         unknown  archive present  mark available\n\
             4 findings not fixed\n  \
             --apply fixes the index entries of 2 missing and 1 mismatched\n  \
             --apply --adopt gives 1 orphaned archive an index entry\n"
        );
    }

    #[test]
    fn stray_sidecars_are_listed_but_are_not_drift() {
        let mut sidecar = item("old", "sidecar-only", None, false);
        sidecar.path = "/srv/backups/alpha/old.tar.zst.sha256".to_owned();
        sidecar.reason = "no archive, no entry".to_owned();
        let r = ReconcileResult {
            stray_sidecars: vec![sidecar],
            ..ReconcileResult::default()
        };
        let text = reconciled(&r, None);
        assert!(
            text.contains(
                "stray sidecars (1): not drift, reconcile never deletes them\n  \
                 PATH                                   INSTANCE  REASON\n  \
                 /srv/backups/alpha/old.tar.zst.sha256  alpha     no archive, no entry\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("in sync: the index and the archives agree\n"),
            "{text}"
        );
        assert!(!reconciled(&ReconcileResult::default(), None).contains("stray"));
    }

    #[test]
    fn fixed_items_are_marked_and_written_changes_listed() {
        let r = ReconcileResult {
            missing: vec![item("m1", "available", Some("mark missing"), true)],
            orphaned: vec![item("o1", "unindexed", Some("adopt"), true)],
            applied: Some(vec![item("m1", "missing", Some("mark missing"), true)]),
            adopted: Some(vec![item("o1", "available", Some("adopt"), true)]),
            ..ReconcileResult::default()
        };
        let text = reconciled(&r, Some(&plan(true, true, false)));
        assert!(
            text.contains("m1  alpha     available  archive not found  mark missing ✓\n"),
            "{text}"
        );
        assert!(text.contains("archive not found  adopt ✓\n"), "{text}");
        assert!(
            text.ends_with(
                "applied (1)\n  \
                 ID  INSTANCE  WRITTEN STATUS  ACTION        PATH\n  \
                 m1  alpha     missing         mark missing  /srv/backups/alpha/m1.tar.zst\n\
                 adopted (1)\n  \
                 ID  INSTANCE  STATUS     ACTION  PATH\n  \
                 o1  alpha     available  adopt   /srv/backups/alpha/o1.tar.zst\n\
                 in sync now: 2 findings fixed\n"
            ),
            "{text}"
        );
        // An --apply run that found nothing says so in an empty list.
        let r = ReconcileResult {
            applied: Some(Vec::new()),
            ..ReconcileResult::default()
        };
        assert!(reconciled(&r, None).contains("mismatched (0)\napplied (0)\nin sync:"));
    }

    #[test]
    fn unresolved_summary_names_what_is_left() {
        // --apply ran; one mismatch has no automatic fix, one orphan was not adopted.
        let mut odd = item("x1", "available", None, false);
        odd.reason = "size differs: index says 10 bytes, the file has 12".to_owned();
        let r = ReconcileResult {
            missing: vec![item("m1", "available", Some("mark missing"), true)],
            orphaned: vec![item("o1", "unindexed", Some("adopt"), false)],
            mismatched: vec![odd],
            applied: Some(vec![item("m1", "missing", Some("mark missing"), true)]),
            known_missing: 3,
            unresolved: 2,
            ..ReconcileResult::default()
        };
        let text = reconciled(&r, None);
        assert!(
            text.contains("index says 10 bytes, the file has 12  manual\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "2 findings not fixed; 3 entries already marked missing\n  \
                 --apply --adopt gives 1 orphaned archive an index entry\n  \
                 1 has no automatic fix (ACTION manual): look at it\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn fixes_asked_for_but_not_made_suggest_a_rerun() {
        let r = ReconcileResult {
            missing: vec![item("m1", "available", Some("mark missing"), false)],
            unresolved: 1,
            ..ReconcileResult::default()
        };
        let text = reconciled(&r, Some(&plan(true, false, false)));
        assert!(
            text.ends_with(
                "1 finding not fixed\n  asked for but not made: see REASON; a rerun compares again\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn long_reasons_are_cut() {
        let mut long = item("m1", "available", Some("mark missing"), false);
        long.reason = "word ".repeat(40);
        let r = ReconcileResult {
            missing: vec![long],
            unresolved: 1,
            ..ReconcileResult::default()
        };
        let text = reconciled(&r, None);
        let row = text.lines().nth(2).unwrap();
        assert!(row.contains("word…  mark missing"), "{row}");
        assert_eq!(
            row.chars().count(),
            2 + "m1  alpha     available  ".len() + REASON_WIDTH + 2 + 12
        );
    }
}
