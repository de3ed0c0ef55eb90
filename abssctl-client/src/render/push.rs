//! `backup push`: one row per backup (outcome, key, size), then why those
//! that failed or were skipped did, and the totals.

use abssd_proto::{PushOutcome, PushResult};

use super::{Align, human_size, table};

/// The table, the messages of failed and skipped backups, and the totals.
pub fn summary(r: &PushResult) -> String {
    if r.items.is_empty() {
        return format!(
            "no backups in scope: nothing pushed to {}\n",
            super::esc(&r.remote)
        );
    }
    let rows: Vec<Vec<String>> = r
        .items
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.outcome.as_str().to_owned(),
                i.key.clone().unwrap_or_else(|| "-".to_owned()),
                i.size_bytes.map_or_else(|| "-".to_owned(), human_size),
                if i.encrypted { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let mut text = table(
        &[
            ("backup", Align::Left),
            ("outcome", Align::Left),
            ("key", Align::Left),
            ("size", Align::Right),
            ("encrypted", Align::Left),
        ],
        &rows,
    );
    for i in &r.items {
        if matches!(i.outcome, PushOutcome::Failed | PushOutcome::Skipped) {
            text.push_str(&format!(
                "{} {}: {}\n",
                super::esc(&i.id),
                i.outcome.as_str(),
                super::esc(&i.message)
            ));
        }
    }
    text.push_str(&format!(
        "{}: {} pushed ({}), {} already there, {} failed, {} skipped\n",
        super::esc(&r.remote),
        r.pushed,
        human_size(r.pushed_bytes),
        r.already,
        r.failed,
        r.skipped
    ));
    text
}

#[cfg(test)]
mod tests {
    use abssd_proto::PushItem;

    use super::*;

    #[test]
    fn the_table_says_each_outcome_and_why_one_failed() {
        let item = |id: &str, outcome, message: &str| PushItem {
            id: id.into(),
            instance: "alpha".into(),
            remote: "off".into(),
            outcome,
            key: Some(format!("alpha/{id}.tar.zst")),
            size_bytes: Some(2048),
            encrypted: false,
            message: message.into(),
        };
        let r = PushResult::new(
            "off".into(),
            vec![
                item("b1", PushOutcome::Pushed, "2048 bytes stored"),
                item(
                    "b2",
                    PushOutcome::Failed,
                    "the remote off cannot be reached",
                ),
            ],
        );
        let text = summary(&r);
        assert!(text.contains("alpha/b1.tar.zst"), "{text}");
        assert!(
            text.contains("b2 failed: the remote off cannot be reached"),
            "{text}"
        );
        assert!(!text.contains("b1 pushed:"), "{text}");
        assert!(
            text.ends_with("off: 1 pushed (2.0 KiB), 0 already there, 1 failed, 0 skipped\n"),
            "{text}"
        );
    }
}
