//! Text for people about prunes: the plan (every backup, keep or remove, and
//! why) and the summary of a finished prune.

use abssd_proto::{PrunePlan, PruneResult};

use super::{Align, esc, human_size, table};

/// The plan: the policy, one row per backup, and the totals. `dry_run` says
/// whether this is all that happens.
pub fn plan(p: &PrunePlan, dry_run: bool) -> String {
    let mut text = String::new();
    if dry_run {
        text.push_str("Dry run, nothing changed.\n");
    }
    let source = match (
        &p.remote,
        p.policy_source == abssd_proto::policy_source::CONFIG,
    ) {
        (Some(r), true) => format!("from remotes.{}.retention in abssd.yml", esc(r)),
        (None, true) => "from backups.retention in abssd.yml".to_owned(),
        (_, false) => "from the command line".to_owned(),
    };
    if let Some(r) = &p.remote {
        text.push_str(&format!(
            "Copies in remote {}: the local archives are not touched.\n",
            esc(r)
        ));
    }
    text.push_str(&format!(
        "Policy: {} ({source}); calendar in {}\n",
        esc(&p.policy),
        esc(&p.time_zone)
    ));
    if p.backups.is_empty() {
        text.push_str("No backups in scope.\n");
    } else {
        let rows: Vec<Vec<String>> = p
            .backups
            .iter()
            .map(|b| {
                vec![
                    b.instance.clone(),
                    b.id.clone(),
                    b.status.clone(),
                    if b.keep { "keep" } else { "REMOVE" }.to_owned(),
                    human_size(b.size_bytes),
                    b.why.clone(),
                ]
            })
            .collect();
        text.push_str(&table(
            &[
                ("instance", Align::Left),
                ("id", Align::Left),
                ("status", Align::Left),
                ("decision", Align::Left),
                ("size", Align::Right),
                ("why", Align::Left),
            ],
            &rows,
        ));
    }
    if p.unlisted > 0 {
        text.push_str(&format!(
            "... and {} more not listed (every removal is listed first; --json has the same rows)\n",
            p.unlisted
        ));
    }
    text.push_str(&format!(
        "{} kept, {} to remove, freeing {}\n",
        p.keep,
        p.remove,
        human_size(p.freed_bytes)
    ));
    if !p.purge.is_empty() {
        text.push_str(&format!(
            "{} removed entr{} dropped from the index (--purge-index)\n",
            p.purge.len(),
            if p.purge.len() == 1 { "y" } else { "ies" }
        ));
    }
    text
}

/// A finished prune: what was removed, what was kept after all and why.
pub fn pruned(r: &PruneResult) -> String {
    let removed = r.removed();
    let mut text = format!(
        "Removed {removed} backup{}, freed {}\n",
        if removed == 1 { "" } else { "s" },
        human_size(r.removed_bytes)
    );
    for item in r.items.iter().filter(|i| !i.removed) {
        text.push_str(&format!(
            "  kept {} ({}): {}\n",
            esc(&item.id),
            esc(&item.instance),
            esc(item.reason.as_deref().unwrap_or("kept"))
        ));
    }
    if r.unlisted_kept > 0 {
        text.push_str(&format!(
            "  ... and {} more kept after all, not listed\n",
            r.unlisted_kept
        ));
    }
    if r.purged > 0 {
        text.push_str(&format!(
            "Dropped {} removed entr{} from the index\n",
            r.purged,
            if r.purged == 1 { "y" } else { "ies" }
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use abssd_proto::{PruneItem, PruneOutcome};

    use super::*;

    fn item(id: &str, keep: bool, why: &str) -> PruneItem {
        PruneItem {
            id: id.into(),
            instance: "alpha".into(),
            created_at: None,
            status: "available".into(),
            keep,
            reasons: Vec::new(),
            why: why.into(),
            size_bytes: 2048,
        }
    }

    #[test]
    fn the_plan_names_every_backup_its_decision_and_why() {
        let p = PrunePlan {
            policy: "keep-last 1".into(),
            policy_source: abssd_proto::policy_source::REQUEST.into(),
            time_zone: "UTC".into(),
            instance: None,
            backups: vec![
                item("b2", true, "newest, last 1"),
                item("b1", false, "no rule keeps it"),
            ],
            keep: 1,
            remove: 1,
            freed_bytes: 2048,
            purge: vec![],
            digest: String::new(),
            remote: None,
            unlisted: 0,
        };
        let text = plan(&p, true);
        assert!(
            text.starts_with(
                "Dry run, nothing changed.\nPolicy: keep-last 1 (from the command line)"
            ),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("alpha")).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].contains("b2")
                && rows[0].contains("keep")
                && rows[0].ends_with("newest, last 1"),
            "{text}"
        );
        assert!(
            rows[1].contains("b1")
                && rows[1].contains("REMOVE")
                && rows[1].ends_with("no rule keeps it"),
            "{text}"
        );
        assert!(
            text.ends_with("1 kept, 1 to remove, freeing 2.0 KiB\n"),
            "{text}"
        );
    }

    #[test]
    fn a_removal_kept_after_all_is_named_with_its_reason() {
        let r = PruneResult::new(
            vec![
                PruneOutcome {
                    id: "b1".into(),
                    instance: "alpha".into(),
                    removed: true,
                    removed_at: Some("2026-12-03T21:00:00Z".into()),
                    bytes: 4096,
                    reason: None,
                    kept: None,
                },
                PruneOutcome {
                    id: "b0".into(),
                    instance: "alpha".into(),
                    removed: false,
                    removed_at: None,
                    bytes: 0,
                    reason: Some("a restore reads it".into()),
                    kept: Some(abssd_proto::KeptReason::InUse),
                },
            ],
            4096,
            0,
        );
        assert_eq!(
            pruned(&r),
            "Removed 1 backup, freed 4.0 KiB\n  kept b0 (alpha): a restore reads it\n"
        );
    }

    #[test]
    fn a_result_of_thousands_lists_the_kept_ones_first_and_counts_the_rest() {
        let outcome = |i: usize, removed: bool| PruneOutcome {
            id: format!("b{i}"),
            instance: "alpha".into(),
            removed,
            removed_at: None,
            bytes: 1,
            reason: (!removed).then(|| "in use".into()),
            kept: (!removed).then_some(abssd_proto::KeptReason::InUse),
        };
        let items: Vec<_> = (0..5000).map(|i| outcome(i, i % 1000 != 999)).collect();
        let r = PruneResult::new(items, 4995, 0);
        assert_eq!(r.items.len(), abssd_proto::limits::PLAN_ROWS);
        assert_eq!(r.items.iter().filter(|i| !i.removed).count(), 5);
        assert_eq!((r.removed(), r.unlisted_kept), (4995, 0));
        let ids: Vec<usize> = r.items.iter().map(|i| i.id[1..].parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in plan order");
        assert!(
            pruned(&r).starts_with("Removed 4995 backups"),
            "{}",
            pruned(&r)
        );
    }
}
