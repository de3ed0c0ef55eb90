//! The backup job's hooks and monitoring pings (`hooks:` in abssd.yml, issue
//! 16): a real HTTP server on 127.0.0.1 records the pings (start, then
//! success or fail, the body the end of the job's log, bounded); an
//! unreachable one is a warning; the commands get their documented
//! environment and nothing else, are killed at their timeout, and never
//! change the job's outcome, but a failing `before`, which fails the
//! instance's job before it backs anything up.

use std::collections::BTreeMap;
use std::path::Path;

use abssd_proto::*;
use abssd_tests::child::ChildDaemon;
use abssd_tests::inspect::events_of;
use abssd_tests::jobs::{job, only};
use abssd_tests::pings::{PingServer, TestCa, closed_port};
use abssd_tests::world::World;
use abssd_tests::{FakeSystemd, Sandbox, client};
use serde_json::Value;

/// The secret part of the monitoring URL: never in a log or a message.
const SECRET: &str = "ping/5f0c-secret-uuid";
/// The bound of a ping's body.
const BODY_BYTES: usize = 10 * 1024;

/// The summary a failed job's error carries, and its op id.
fn failed(err: &WireError) -> (String, RunResult) {
    let detail = err.detail.clone().expect("a detail");
    let summary = serde_json::from_value(detail["summary"].clone()).expect("a summary");
    (
        detail["op_id"].as_str().expect("an op id").to_owned(),
        summary,
    )
}

fn oplog(w: &World) -> String {
    std::fs::read_to_string(w.cfg().oplog_file()).expect("operations log")
}

/// A command that writes its environment to `file`.
fn env_to(file: &Path) -> String {
    format!("[/bin/sh, -c, 'env > {}']", file.display())
}

/// `NAME=value` lines as a map, without what `sh` sets itself.
fn env_of(file: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !matches!(k.as_str(), "PWD" | "SHLVL" | "_" | "OLDPWD"))
        .collect()
}

fn messages(events: &[Event], level: Level) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Message { level: l, text } if *l == level => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_job_pings_start_then_success_with_the_end_of_its_log() {
    let server = PingServer::start(tempfile::tempdir().unwrap().keep().join("pings.jsonl"));
    let url = server.url(&format!("/{SECRET}"));
    let w = World::with_config(&["alpha"], |_| format!("hooks:\n  ping_url: {url}\n"));
    let c = w.client().await;
    let (op_id, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    assert!(
        result.ok && result.instances[0].warnings.is_empty(),
        "{result:?}"
    );

    let got = server.requests();
    let paths: Vec<(&str, &str)> = got
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    let (start, done) = (format!("/{SECRET}/start"), format!("/{SECRET}"));
    assert_eq!(paths, [("POST", start.as_str()), ("POST", done.as_str())]);
    for r in &got {
        assert_eq!(
            r.user_agent.as_deref(),
            Some(concat!("abssd/", env!("CARGO_PKG_VERSION")))
        );
        assert!(r.body_bytes <= BODY_BYTES, "{}", r.body_bytes);
    }
    let id = result.instances[0].backup_id.clone().unwrap();
    let body = &got[1].body;
    assert!(body.contains("alpha: create ok: created"), "{body}");
    assert!(body.contains(&id), "{body}");
    assert!(body.contains("alpha: reconcile ok"), "{body}");
    // The URL's secret path is nowhere in the operations log.
    let log = oplog(&w);
    assert!(
        log.contains(&op_id) && !log.contains("secret-uuid"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_pings_start_then_fail_and_says_why() {
    let server = PingServer::start(tempfile::tempdir().unwrap().keep().join("pings.jsonl"));
    let url = server.url(&format!("/{SECRET}"));
    let w = World::with_config(&["alpha"], |_| format!("hooks:\n  ping_url: {url}\n"));
    let c = w.client().await;
    std::fs::remove_dir_all(w.data("alpha")).unwrap();
    let err = job(&c, &only("alpha")).await.expect_err("alpha fails");
    // The job's outcome is the create's, as without pings.
    assert_eq!(err.kind, ErrorKind::Environment, "{}", err.message);

    let got = server.requests();
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    let (start, fail) = (format!("/{SECRET}/start"), format!("/{SECRET}/fail"));
    assert_eq!(paths, [start.as_str(), fail.as_str()]);
    assert!(
        got[1].body.contains("alpha: create failed"),
        "{}",
        got[1].body
    );
    assert!(got[1].body.contains("srv/alpha/data"), "{}", got[1].body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_log_sends_a_body_within_the_bound_ending_with_the_outcome() {
    let server = PingServer::start(tempfile::tempdir().unwrap().keep().join("pings.jsonl"));
    let url = server.url("/p");
    let w = World::with_config(&["alpha"], |_| format!("hooks:\n  ping_url: {url}\n"));
    // Sixty FIFOs with long names: long warnings of the create, more than
    // the tail's 40 lines hold within a body.
    for i in 0..60 {
        let name = format!("{i:02}-{}", "f".repeat(250));
        nix::unistd::mkfifo(
            &w.data("alpha").join(name),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
    }
    let c = w.client().await;
    let (op_id, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    assert!(result.ok, "{result:?}");
    let warned: usize = messages(&events_of(&c, &op_id).await, Level::Warning)
        .iter()
        .map(String::len)
        .sum();
    assert!(
        warned > BODY_BYTES + 2048,
        "the log is larger than a body: {warned} bytes"
    );

    let got = server.requests();
    assert_eq!(got.len(), 2);
    let body = &got[1].body;
    assert!(got[1].body_bytes <= BODY_BYTES, "{}", got[1].body_bytes);
    assert!(
        got[1].body_bytes > BODY_BYTES - 512,
        "cut at the bound: {}",
        got[1].body_bytes
    );
    assert!(
        body.trim_end().ends_with("index and archives agree"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ping_url_is_a_warning_and_the_job_succeeds() {
    let url = format!("http://127.0.0.1:{}/{SECRET}", closed_port());
    let w = World::with_config(&["alpha"], |_| format!("hooks:\n  ping_url: {url}\n"));
    let c = w.client().await;
    let (op_id, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let alpha = &result.instances[0];
    assert!(
        result.ok && alpha.ok && alpha.backup_id.is_some(),
        "{result:?}"
    );
    let shown = format!("{}/…", &url[..url.len() - SECRET.len() - 1]);
    let [start, success] = &alpha.warnings[..] else {
        panic!("two warnings: {:?}", alpha.warnings)
    };
    assert!(
        start.starts_with(&format!("the start ping to {shown} failed")),
        "{start}"
    );
    assert!(
        success.starts_with(&format!("the success ping to {shown} failed")),
        "{success}"
    );
    let log = oplog(&w);
    assert!(
        log.contains(&op_id) && log.contains("the start ping to"),
        "{log}"
    );
    assert!(!log.contains("secret-uuid"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_get_the_documented_environment_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap().keep();
    let (before, after, on_error) = (
        dir.join("before.env"),
        dir.join("after.env"),
        dir.join("on_error.env"),
    );
    let yaml = format!(
        "hooks:\n  before: {}\n  after: {}\n  on_error: {}\n",
        env_to(&before),
        env_to(&after),
        env_to(&on_error)
    );
    // The daemon's own environment (HOME, CARGO_*, ...) is not passed on.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let w = World::with_config(&["alpha"], |_| yaml);
    let c = w.client().await;
    let (op_id, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let id = result.instances[0].backup_id.clone().unwrap();
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())])
            .collect()
    };
    assert_eq!(
        env_of(&before),
        expect(&[
            ("ABSSCTL_HOOK_EVENT", "before"),
            ("ABSSCTL_HOOK_INSTANCE", "alpha"),
            ("ABSSCTL_HOOK_OP_ID", &op_id),
        ])
    );
    assert_eq!(
        env_of(&after),
        expect(&[
            ("ABSSCTL_HOOK_EVENT", "after"),
            ("ABSSCTL_HOOK_INSTANCE", "alpha"),
            ("ABSSCTL_HOOK_OP_ID", &op_id),
            ("ABSSCTL_HOOK_STATUS", "ok"),
            ("ABSSCTL_HOOK_BACKUP_ID", &id),
        ])
    );
    assert!(!on_error.exists(), "on_error runs only when the job fails");

    // A failed job: on_error, with its status and no backup.
    std::fs::remove_dir_all(w.data("alpha")).unwrap();
    let err = job(&c, &only("alpha")).await.expect_err("alpha fails");
    let (op_id, _) = failed(&err);
    assert_eq!(
        env_of(&on_error),
        expect(&[
            ("ABSSCTL_HOOK_EVENT", "on_error"),
            ("ABSSCTL_HOOK_INSTANCE", "alpha"),
            ("ABSSCTL_HOOK_OP_ID", &op_id),
            ("ABSSCTL_HOOK_STATUS", "failed"),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_never_ends_is_killed_at_its_timeout_and_the_job_succeeds() {
    let dir = tempfile::tempdir().unwrap().keep();
    let pid_file = dir.join("sleeper.pid");
    // A background sleeper of the hook's too: killed with its process group.
    let yaml = format!(
        "hooks:\n  timeout: 1\n  after: [/bin/sh, -c, 'sleep 1000 & echo $! > {}; echo waiting; wait']\n",
        pid_file.display()
    );
    let w = World::with_config(&["alpha"], |_| yaml);
    let c = w.client().await;
    let (op_id, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let alpha = &result.instances[0];
    assert!(result.ok && alpha.ok, "{result:?}");
    let [killed] = &alpha.warnings[..] else {
        panic!("one warning: {:?}", alpha.warnings)
    };
    assert!(
        killed.starts_with("the after hook /bin/sh failed: killed at its timeout"),
        "{killed}"
    );
    let events = events_of(&c, &op_id).await;
    assert!(messages(&events, Level::Info).contains(&"after hook: waiting".to_owned()));
    assert!(messages(&events, Level::Warning).contains(killed));
    // The sleeper got SIGKILL: a zombie or gone, never running on.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
    assert!(
        matches!(state, None | Some("Z") | Some("X")),
        "the sleeper runs on: {stat}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_after_hook_leaves_the_job_ok_with_a_warning() {
    let w = World::with_config(&["alpha"], |_| {
        "hooks:\n  after: [/bin/sh, -c, 'echo disk full >&2; exit 7']\n".to_owned()
    });
    let c = w.client().await;
    let (op_id, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let alpha = &result.instances[0];
    assert!(
        result.ok && alpha.ok && alpha.backup_id.is_some(),
        "{result:?}"
    );
    assert_eq!(
        alpha.warnings,
        ["the after hook /bin/sh failed: exit status: 7"]
    );
    let events = events_of(&c, &op_id).await;
    assert!(messages(&events, Level::Info).contains(&"after hook: disk full".to_owned()));
    let line: Value = oplog(&w)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["op_id"] == op_id.as_str())
        .unwrap();
    assert_eq!(line["result"]["status"], "success", "{line}");
    assert!(
        line["result"]["warnings"]
            .to_string()
            .contains("the after hook")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_before_hook_fails_the_instance_without_a_backup() {
    let server = PingServer::start(tempfile::tempdir().unwrap().keep().join("pings.jsonl"));
    let url = server.url("/p");
    let dir = tempfile::tempdir().unwrap().keep();
    let on_error = dir.join("on_error.env");
    let yaml = format!(
        "hooks:\n  ping_url: {url}\n  before: [/bin/sh, -c, 'echo no mount; exit 2']\n  on_error: {}\n",
        env_to(&on_error)
    );
    let w = World::with_config(&["alpha", "beta"], |_| yaml);
    let c = w.client().await;
    let err = job(
        &c,
        &RunParams {
            all: true,
            ..RunParams::default()
        },
    )
    .await
    .expect_err("the before hook fails every instance");
    assert_eq!(err.kind, ErrorKind::Environment, "{}", err.message);
    let (op_id, summary) = failed(&err);
    use JobStepStatus::*;
    for i in &summary.instances {
        let steps: Vec<_> = i.steps.iter().map(|s| (s.step, s.status)).collect();
        assert_eq!(
            steps,
            [
                (JobStep::Create, Failed),
                (JobStep::Prune, Skipped),
                (JobStep::Verify, Skipped),
                (JobStep::Reconcile, Skipped)
            ],
            "{i:?}"
        );
        assert_eq!(
            i.steps[0].message,
            "the before hook /bin/sh failed: exit status: 2"
        );
        assert!(i.backup_id.is_none());
    }
    assert!(!w.cfg().backups_root.join("alpha").exists());
    assert!(!w.cfg().backups_root.join("beta").exists());
    let events = events_of(&c, &op_id).await;
    assert!(messages(&events, Level::Info).contains(&"before hook: no mount".to_owned()));
    // on_error ran (for beta, the last), and each instance pinged start, fail.
    assert_eq!(env_of(&on_error)["ABSSCTL_HOOK_INSTANCE"], "beta");
    assert_eq!(env_of(&on_error)["ABSSCTL_HOOK_STATUS"], "failed");
    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/p/start", "/p/fail", "/p/start", "/p/fail"]);
    // What the hook printed is the operation's, never the third party's.
    for r in &requests {
        assert!(!r.body.contains("no mount"), "{:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_whose_child_left_its_group_holding_the_output_does_not_hang_the_job() {
    let dir = tempfile::tempdir().unwrap().keep();
    let pid_file = dir.join("escaped.pid");
    // setsid: out of the hook's process group (the hook waits until it is),
    // holding its stdout.
    let yaml = format!(
        "hooks:\n  after: [/bin/sh, -c, 'setsid sleep 1000 & p=$!; \
         while [ \"$(cut -d\" \" -f6 /proc/$p/stat)\" != $p ]; do :; done; \
         echo $p > {}; echo left']\n",
        pid_file.display()
    );
    let w = World::with_config(&["alpha"], |_| yaml);
    let c = w.client().await;
    let (op_id, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = nix::unistd::Pid::from_raw(pid.trim().parse().unwrap());
    let escaped = nix::sys::signal::kill(pid, None).is_ok();
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    assert!(escaped, "the child outlived its hook's group");
    assert!(
        result.ok && result.instances[0].warnings.is_empty(),
        "{result:?}"
    );
    let events = events_of(&c, &op_id).await;
    assert!(messages(&events, Level::Info).contains(&"after hook: left".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pings_are_verified_an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = TestCa::new(&dir);
    let server = PingServer::start_tls(dir.join("pings.jsonl"), &ca);
    let url = server.https_url(&format!("/{SECRET}"));
    // This daemon trusts the host's certificates, not the test CA.
    let w = World::with_config(&["alpha"], |_| format!("hooks:\n  ping_url: {url}\n"));
    let c = w.client().await;
    let (_, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    let alpha = &result.instances[0];
    assert!(result.ok && alpha.ok, "{result:?}");
    let shown = format!("https://127.0.0.1:{}/…", server.port);
    assert_eq!(alpha.warnings.len(), 2, "{:?}", alpha.warnings);
    assert!(
        alpha.warnings[0].starts_with(&format!("the start ping to {shown} failed")),
        "{:?}",
        alpha.warnings
    );
    assert!(
        alpha.warnings[0].to_lowercase().contains("cert"),
        "a certificate problem: {:?}",
        alpha.warnings
    );
    assert!(server.requests().is_empty(), "no request got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pings_reach_a_server_whose_ca_the_host_trusts() {
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = TestCa::new(&dir);
    let server = PingServer::start_tls(dir.join("pings.jsonl"), &ca);
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let fake = FakeSystemd::start(Some(&sb.config().unit_dir));
    fake.set_unit(&abssd::config::unit_name("alpha"), true, true);
    sb.write_abssd_config(&format!(
        "systemd:\n  bus_address: {}\nnginx:\n  test_command: {}\nhooks:\n  ping_url: {}\n",
        serde_json::json!(fake.address()),
        serde_json::json!(sb.nginx_test_command()),
        server.https_url("/p")
    ));
    // The host's trust store, as rustls-native-certs reads it, is the test CA.
    let daemon = ChildDaemon::start_with_env(
        env!("CARGO_BIN_EXE_abssd-failpoints"),
        &sb,
        &[("SSL_CERT_FILE", ca.ca.as_os_str())],
    );
    let c = client(&daemon.socket).await;
    let (_, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
    assert!(
        result.ok && result.instances[0].warnings.is_empty(),
        "{result:?}"
    );
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/p/start", "/p"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_endpoint_is_asked_once_a_failing_one_three_times() {
    let server = PingServer::start(tempfile::tempdir().unwrap().keep().join("pings.jsonl"));
    for (status, attempts) in [("404", 1), ("503", 3)] {
        let url = server.url(&format!("/{status}/{SECRET}"));
        let w = World::with_config(&["alpha"], |_| format!("hooks:\n  ping_url: {url}\n"));
        let c = w.client().await;
        let before = server.requests().len();
        let (_, result) = job(&c, &only("alpha")).await.expect("the job succeeds");
        let alpha = &result.instances[0];
        assert!(result.ok && alpha.ok, "{result:?}");
        assert_eq!(alpha.warnings.len(), 2, "{:?}", alpha.warnings);
        for w in &alpha.warnings {
            assert!(w.contains(&format!("answered {status}")), "{w}");
            assert!(!w.contains("secret-uuid"), "{w}");
        }
        let paths: Vec<String> = server.requests()[before..]
            .iter()
            .map(|r| r.path.clone())
            .collect();
        let start = format!("/{status}/{SECRET}/start");
        let done = format!("/{status}/{SECRET}");
        // Once a ping failed, the job's later pings make one attempt: a dead
        // endpoint costs each instance one timeout, not three.
        let expect: Vec<&str> = std::iter::repeat_n(start.as_str(), attempts)
            .chain([done.as_str()])
            .collect();
        assert_eq!(paths, expect);
    }
}
