//! `abssctl backup push` against the real abssd and a real S3 server (moto):
//! the table and `--json` document of a push, `already` the second time,
//! and the exit codes of refused credentials (3, the summary in the error)
//! and of a remote that is not configured (2); a backup named by its id that
//! is skipped exits 3, one passed by in a scope does not.

use abssd_tests::remotes::Remote;

use crate::common::{S3Host, assert_exit, json_doc, text};

/// A push of every backup of alpha to `off`.
const SCOPE: [&str; 6] = ["backup", "push", "--instance", "alpha", "--remote", "off"];

/// Remotes `off` (its credentials) and `bad` (a wrong secret) on one server.
fn host() -> S3Host {
    S3Host::new(|s3, dir| {
        vec![
            Remote::of(s3, dir, "off", "o"),
            Remote::of(s3, dir, "bad", "b").with_credentials(s3.access_key(), "not-the-secret"),
        ]
    })
}

#[test]
fn push_prints_its_table_then_already_and_exits_by_the_failures_kind() {
    let host = host();
    let made = host.json(&["backup", "create", "alpha"], 0);
    let id = made["result"]["id"].as_str().unwrap().to_owned();
    let index = std::fs::read(host.sandbox.config().index_file).unwrap();

    let refused = host.abssctl(&["--json", "backup", "push", &id, "--remote", "bad"]);
    assert_exit(&refused, 3);
    let err = json_doc(&refused);
    assert_eq!(
        err["error"]["detail"]["summary"]["items"][0]["outcome"], "failed",
        "{err}"
    );
    assert!(text(&refused.stderr).contains("bad") || err.to_string().contains("bad"));
    assert_eq!(
        std::fs::read(host.sandbox.config().index_file).unwrap(),
        index,
        "nothing recorded"
    );

    let pushed = host.abssctl(&["backup", "push", &id, "--remote", "off"]);
    assert_exit(&pushed, 0);
    let table = text(&pushed.stdout);
    let key = format!("o/alpha/{id}.tar.zst");
    assert!(table.contains(&key) && table.contains("pushed"), "{table}");
    assert!(table.contains("off: 1 pushed"), "{table}");
    assert!(host.s3.head(&key).is_some());

    let again = host.json(&SCOPE, 0);
    assert_eq!(again["result"]["items"][0]["outcome"], "already");

    assert_exit(
        &host.abssctl(&["backup", "push", &id, "--remote", "nope"]),
        2,
    );
    assert_exit(&host.abssctl(&["backup", "push", &id]), 2);
    assert_exit(&host.abssctl(&["backup", "push", &id, "--all"]), 2);
}

#[test]
fn a_named_backup_that_is_skipped_exits_3_and_a_scope_passes_it_by() {
    let host = host();
    let made = host.json(&["backup", "create", "alpha"], 0);
    let result = &made["result"];
    let id = result["id"].as_str().unwrap().to_owned();
    // Its archive is gone from this host: nothing to copy.
    std::fs::remove_file(result["archive"].as_str().unwrap()).unwrap();

    let named = host.abssctl(&["--json", "backup", "push", &id, "--remote", "off"]);
    assert_exit(&named, 3);
    assert_eq!(json_doc(&named)["result"]["items"][0]["outcome"], "skipped");

    let scope = host.json(&SCOPE, 0);
    assert_eq!(scope["result"]["items"][0]["outcome"], "skipped");
    assert!(host.s3.list("").is_empty(), "nothing was sent");
}
