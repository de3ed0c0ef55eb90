//! `backup.list` pages over the socket: a reader that follows `next_cursor`
//! sees every backup exactly once, in order, while creates and prunes change
//! the index between and during its calls; the filters; bad parameters.

use std::collections::{BTreeSet, HashMap};

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupList, BackupPrune};
use abssd_proto::*;
use abssd_tests::world::World;
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

/// Seeded backups of alpha: one an hour, going back this many hours.
const ALPHA: i64 = 400;
/// Seeded backups of beta: one every three minutes over the last ten hours,
/// so they sit among the first pages and a prune of beta's oldest removes
/// entries a reader has already passed.
const BETA: i64 = 200;
const PAGE: usize = 50;

/// Add the seeded entries to the index (clones of the real entry of each
/// instance, with their own id, time and archive path; no archive behind
/// them). Returns every id in the index.
fn seed(w: &World) -> BTreeSet<String> {
    let mut raw: Value = serde_json::from_slice(&w.index()).unwrap();
    let backups = raw["backups"].as_array_mut().unwrap();
    let real: HashMap<String, Value> = backups
        .iter()
        .map(|b| (b["instance"].as_str().unwrap().to_owned(), b.clone()))
        .collect();
    let now = jiff::Timestamp::now();
    let mut add = |instance: &str, i: i64, minutes_ago: i64| {
        let at = now - jiff::SignedDuration::from_mins(minutes_ago);
        let at = at.round(jiff::Unit::Second).unwrap();
        let stamp = at.strftime("%Y%m%d-%H%M%S");
        let id = format!("{stamp}-{instance}-{i:06x}");
        let mut e = real[instance].clone();
        let dir = w.cfg().instance_backup_dir(instance);
        e["id"] = json!(id);
        e["created_at"] = json!(at.to_string());
        e["path"] = json!(dir.join(format!("{id}.tar.zst")).display().to_string());
        backups.push(e);
    };
    for i in 1..=ALPHA {
        add("alpha", i, i * 60);
    }
    for i in 1..=BETA {
        add("beta", i, 60 + i * 3);
    }
    std::fs::write(
        &w.cfg().index_file,
        serde_json::to_vec_pretty(&raw).unwrap(),
    )
    .unwrap();
    ids(w)
}

fn ids(w: &World) -> BTreeSet<String> {
    let raw: Value = serde_json::from_slice(&w.index()).unwrap();
    raw["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] != "removed")
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn page(c: &Client, params: &ListParams) -> ListResult {
    call::<BackupList>(c, params).await.unwrap()
}

/// Remove beta's oldest backups down to `keep` (a confirmed keep-last prune),
/// and drop the entries earlier prunes marked removed from the index.
async fn prune_beta(c: &Client, keep: u32) -> u32 {
    let params = PruneParams {
        instance: Some("beta".into()),
        keep_last: Some(keep),
        purge_index: Some(0),
        yes: true,
        ..Default::default()
    };
    let out = call::<BackupPrune>(c, &params).await.unwrap();
    let result = out.result.unwrap();
    assert!(result.items.iter().all(|i| i.removed), "{result:?}");
    u32::try_from(result.items.len()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_sees_every_backup_once_while_creates_and_prunes_run() {
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    abssd_tests::backup(&c, "alpha").await;
    abssd_tests::backup(&c, "beta").await;
    let before = seed(&w);
    let mut beta_left = u32::try_from(BETA).unwrap() + 1;

    let mut listed: Vec<BackupEntry> = Vec::new();
    let mut cursor = None;
    let (mut pages, mut pruned) = (0, 0);
    loop {
        let params = ListParams {
            limit: Some(PAGE),
            cursor: cursor.take(),
            ..Default::default()
        };
        // The page is read while one create and one prune run.
        beta_left = beta_left.saturating_sub(10);
        let (answer, made, removed) = tokio::join!(
            page(&c, &params),
            abssd_tests::backup(&c, "alpha"),
            prune_beta(&c, beta_left),
        );
        assert!(answer.backups.len() <= PAGE);
        assert!(!answer.backups.iter().any(|b| b.id == made.id) || pages == 0);
        listed.extend(answer.backups);
        pruned += removed;
        pages += 1;
        match answer.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let after = ids(&w);
    assert!(pruned >= 100, "{pruned} backups pruned along the way");

    // Exactly once each, in the list order.
    let mut seen = BTreeSet::new();
    for b in &listed {
        assert!(seen.insert(b.id.clone()), "{} listed twice", b.id);
    }
    for pair in listed.windows(2) {
        let key = |b: &BackupEntry| {
            (
                b.created_at.parse::<jiff::Timestamp>().unwrap(),
                b.id.clone(),
            )
        };
        assert!(
            key(&pair[0]) > key(&pair[1]),
            "{} before {}",
            pair[0].id,
            pair[1].id
        );
    }
    // Every backup there all along was seen; nothing seen was never there.
    let stayed: BTreeSet<_> = before.intersection(&after).cloned().collect();
    let missed: Vec<_> = stayed.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "{} never listed: {missed:?}",
        missed.len()
    );
    let ever: BTreeSet<_> = before.union(&after).cloned().collect();
    assert!(seen.is_subset(&ever));
    // The prunes removed backups the reader had passed (an offset would have
    // skipped as many others) and some it had not reached.
    let gone: BTreeSet<_> = before.difference(&after).cloned().collect();
    assert!(
        gone.iter().any(|id| seen.contains(id)),
        "no pruned backup was listed first"
    );
    assert!(
        gone.iter().any(|id| !seen.contains(id)),
        "every pruned backup was listed first"
    );
    assert!(pages >= 10, "{pages} pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_list_and_its_total() {
    let w = World::new(&["alpha", "beta"]);
    let c = w.client().await;
    abssd_tests::backup(&c, "alpha").await;
    abssd_tests::backup(&c, "beta").await;
    seed(&w);
    let c = &c;
    let count = |params: ListParams| async move {
        let answer = page(
            c,
            &ListParams {
                limit: Some(10),
                ..params
            },
        )
        .await;
        (answer.backups.len(), answer.total)
    };
    assert_eq!(
        count(ListParams::default()).await,
        (10, (ALPHA + BETA + 2) as u64)
    );
    let beta = ListParams {
        instance: Some("beta".into()),
        ..Default::default()
    };
    assert_eq!(count(beta).await.1, (BETA + 1) as u64);
    let since = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(150)).to_string();
    let recent = ListParams {
        instance: Some("alpha".into()),
        since: Some(since),
        ..Default::default()
    };
    // The real backup and the seeded ones of 1 and 2 hours ago.
    assert_eq!(count(recent).await.1, 3);
    let removed = ListParams {
        status: Some("removed".into()),
        ..Default::default()
    };
    assert_eq!(count(removed).await, (0, 0));
    let labelled = ListParams {
        label: Some("no-such-label".into()),
        ..Default::default()
    };
    assert_eq!(count(labelled).await.1, 0);
    // A date is midnight in the host's time zone: everything is after 2000.
    let dated = ListParams {
        since: Some("2000-01-01".into()),
        ..Default::default()
    };
    assert_eq!(count(dated).await.1, (ALPHA + BETA + 2) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_parameters_are_refused_by_name() {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let cases = [
        (
            ListParams {
                limit: Some(0),
                ..Default::default()
            },
            "limit",
        ),
        (
            ListParams {
                limit: Some(10_001),
                ..Default::default()
            },
            "limit",
        ),
        (
            ListParams {
                cursor: Some("page 2".into()),
                ..Default::default()
            },
            "cursor",
        ),
        (
            ListParams {
                since: Some("last tuesday".into()),
                ..Default::default()
            },
            "since",
        ),
        (
            ListParams {
                until: Some("2026-13-01".into()),
                ..Default::default()
            },
            "until",
        ),
        (
            ListParams {
                label: Some("x".repeat(101)),
                ..Default::default()
            },
            "label",
        ),
    ];
    for (params, field) in cases {
        let e = call::<BackupList>(&c, &params).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{params:?}: {e:?}");
        assert!(e.message.contains(field), "{params:?}: {}", e.message);
    }
}
