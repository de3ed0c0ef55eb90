//! `remote.list` and `remote.test` against a real S3
//! server (moto, [`abssd_tests::s3`]): the listing never holds a secret; the
//! test passes against a working remote, fails step by step in plain words
//! for a wrong secret, a missing bucket and an unreachable endpoint, and
//! never leaves its probe behind.

use abssd_proto::methods::call::call;
use abssd_proto::methods::{RemoteList, RemoteTest};
use abssd_proto::{
    CredentialsInfo, ErrorKind, NoParams, RemoteTestParams, RemoteTestResult, STEP_FAILED, STEP_OK,
    STEP_SKIPPED,
};
use abssd_tests::remotes::{self, Remote};
use abssd_tests::s3::S3Server;
use abssd_tests::world::World;

/// Remotes on one server: `good`; `wrong` (another secret); `nobucket` (a
/// bucket that does not exist); `down` (a port nothing listens on).
fn host(s3: &S3Server) -> World {
    World::with_config(&["alpha"], |sb| {
        let dir = sb.path("etc/abssctl/remotes");
        let good = Remote::of(s3, &dir, "good", "g");
        let wrong =
            Remote::of(s3, &dir, "wrong", "w").with_credentials(s3.access_key(), "not-the-secret");
        let mut nobucket = Remote::of(s3, &dir, "nobucket", "p");
        nobucket.bucket = "no-such-bucket".into();
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = Remote::of(s3, &dir, "down", "p").at(&format!("http://127.0.0.1:{port}"));
        // One remote reading a systemd credential instead of a file.
        let sys = Remote::of(s3, &dir, "sys", "a/b").with_systemd_credential("sys-cred");
        remotes::section(&[&good, &wrong, &nobucket, &down, &sys])
    })
}

async fn test(w: &World, name: &str) -> RemoteTestResult {
    let c = w.client().await;
    call::<RemoteTest>(&c, &RemoteTestParams { name: name.into() })
        .await
        .unwrap()
}

fn statuses(r: &RemoteTestResult) -> Vec<(&str, &str)> {
    r.steps
        .iter()
        .map(|s| (s.step.as_str(), s.status.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_says_where_credentials_are_and_never_what_they_are() {
    let s3 = S3Server::start();
    let w = host(&s3);
    let c = w.client().await;
    let list = call::<RemoteList>(&c, &NoParams {}).await.unwrap();
    let names: Vec<&str> = list.remotes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["down", "good", "nobucket", "sys", "wrong"]);
    let good = &list.remotes[1];
    assert_eq!(good.endpoint, s3.endpoint());
    assert_eq!(good.bucket, "abssd-test");
    assert!(good.path_style && !good.encrypted && !good.identity_file);
    assert_eq!(
        good.credentials,
        CredentialsInfo::File {
            path: w
                .sb
                .path("etc/abssctl/remotes/good.cred")
                .display()
                .to_string()
        }
    );
    assert_eq!(
        list.remotes[3].credentials,
        CredentialsInfo::Systemd {
            name: "sys-cred".into()
        }
    );
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains(s3.secret_key()), "{text}");
    assert!(!text.contains(s3.access_key()), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_remote_passes_every_step_and_keeps_no_probe() {
    let s3 = S3Server::start();
    let w = host(&s3);
    let r = test(&w, "good").await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        statuses(&r),
        [
            ("credentials", STEP_OK),
            ("list", STEP_OK),
            ("put", STEP_OK),
            ("get", STEP_OK),
            ("no_overwrite", STEP_OK),
            ("delete", STEP_OK)
        ]
    );
    assert!(
        r.probe_key.starts_with("g/.abssd-probe-"),
        "{}",
        r.probe_key
    );
    assert!(s3.list("").is_empty(), "{:?}", s3.list(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_told_in_plain_words_and_leave_nothing_behind() {
    let s3 = S3Server::start();
    let w = host(&s3);

    let r = test(&w, "wrong").await;
    assert!(!r.ok);
    assert_eq!(
        statuses(&r),
        [
            ("credentials", STEP_OK),
            ("list", STEP_FAILED),
            ("put", STEP_FAILED),
            ("get", STEP_SKIPPED),
            ("no_overwrite", STEP_SKIPPED),
            ("delete", STEP_SKIPPED)
        ]
    );
    assert!(
        r.steps[1].message.contains("refused the secret key"),
        "{}",
        r.steps[1].message
    );
    assert!(!r.steps[1].message.contains("not-the-secret"));

    let r = test(&w, "nobucket").await;
    assert_eq!(
        statuses(&r),
        [
            ("credentials", STEP_OK),
            ("list", STEP_FAILED),
            ("put", STEP_SKIPPED),
            ("get", STEP_SKIPPED),
            ("no_overwrite", STEP_SKIPPED),
            ("delete", STEP_SKIPPED)
        ]
    );
    assert!(
        r.steps[1]
            .message
            .contains("bucket \"no-such-bucket\" does not exist"),
        "{}",
        r.steps[1].message
    );

    let r = test(&w, "down").await;
    assert_eq!(r.steps[1].status, STEP_FAILED);
    assert!(
        r.steps[1].message.contains("cannot reach"),
        "{}",
        r.steps[1].message
    );
    assert_eq!(r.steps[2].status, STEP_SKIPPED);

    // A systemd credential abssd was not given: the first step says so.
    let r = test(&w, "sys").await;
    assert_eq!(r.steps[0].status, STEP_FAILED, "{r:?}");

    assert!(s3.list("").is_empty(), "{:?}", s3.list(""));

    // An unknown remote is not found, naming the configured ones.
    let c = w.client().await;
    let e = call::<RemoteTest>(
        &c,
        &RemoteTestParams {
            name: "nope".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert!(e.message.contains("good"), "{}", e.message);
}
