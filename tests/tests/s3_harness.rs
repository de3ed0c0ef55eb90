//! The S3 test harness itself ([`abssd_tests::s3`]): the server it starts
//! stores and serves objects, refuses an overwrite under `If-None-Match: *`
//! and a wrong secret, comes back empty with the same credentials after a
//! kill, and its [`Cutter`] drops a connection after the bytes it was told.

use abssd_tests::s3::{Cutter, ObjectInfo, S3Server, Upload};

/// `len` bytes that are not all alike.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

#[test]
fn put_then_list_and_get_round_trip() {
    let s3 = S3Server::start();
    assert!(s3.list("").is_empty(), "a fresh bucket is empty");
    let body = bytes(100_000, 1);
    s3.put("inst/a.tar.zst", &body);
    s3.put("other/b", b"b");

    let listed = s3.list("inst/");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, "inst/a.tar.zst");
    assert_eq!(listed[0].size, 100_000);
    assert!(
        listed[0].etag.len() == 32 && listed[0].etag.bytes().all(|b| b.is_ascii_hexdigit()),
        "a single-part ETag is an MD5 in hex: {:?}",
        listed[0].etag
    );
    assert_eq!(s3.head("inst/a.tar.zst").as_ref(), Some(&listed[0]));
    assert_eq!(s3.get("inst/a.tar.zst"), body);
    assert_eq!(s3.head("inst/missing"), None);
    assert_eq!(
        s3.list("")
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        ["inst/a.tar.zst", "other/b"]
    );
}

/// moto 5.2.1 alone refuses these correctly signed requests (see
/// tests/src/s3/server.py); the harness's server takes them.
#[test]
fn keys_and_prefixes_with_reserved_characters_are_signed_right() {
    let s3 = S3Server::start();
    let key = "p/x:y=z,a+b@c d~é.tar";
    s3.put(key, b"odd");
    assert_eq!(s3.get(key), b"odd");
    assert_eq!(
        s3.list("p/x:y=")
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        [key]
    );
    let wrong = s3.view().with_secret("not-the-secret");
    let refused = wrong.try_list("p/x:y=").expect_err("still checked");
    assert_eq!(refused.code, "SignatureDoesNotMatch", "{refused:?}");
}

#[test]
fn if_none_match_refuses_an_overwrite() {
    let s3 = S3Server::start();
    let view = s3.view();
    view.try_put("k", b"first", true)
        .expect("a conditional put of a new key is accepted");
    let refused = view
        .try_put("k", b"second", true)
        .expect_err("a conditional put over an existing key is refused");
    assert_eq!(
        (refused.code.as_str(), refused.status),
        ("PreconditionFailed", Some(412)),
        "{refused:?}"
    );
    assert_eq!(s3.get("k"), b"first", "the refused put changed nothing");
    // Without the condition the same put overwrites: the refusal was the condition's.
    view.try_put("k", b"second", false)
        .expect("an unconditional put");
    assert_eq!(s3.get("k"), b"second");
}

#[test]
fn a_wrong_secret_is_refused() {
    let s3 = S3Server::start();
    assert!(!s3.access_key().is_empty() && !s3.secret_key().is_empty());
    let wrong = s3
        .view()
        .with_secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let refused = wrong
        .try_list("")
        .expect_err("a wrong secret lists nothing");
    assert_eq!(
        (refused.code.as_str(), refused.status),
        ("SignatureDoesNotMatch", Some(403)),
        "{refused:?}"
    );
    let refused = wrong
        .try_put("planted", b"x", false)
        .expect_err("a wrong secret writes nothing");
    assert_eq!(refused.status, Some(403), "{refused:?}");
    assert_eq!(s3.head("planted"), None);
}

#[test]
fn kill_and_restart_give_an_empty_server_with_the_same_credentials() {
    let mut s3 = S3Server::start();
    let (endpoint, access, secret) = (
        s3.endpoint(),
        s3.access_key().to_owned(),
        s3.secret_key().to_owned(),
    );
    s3.put("before", b"lost with the server");

    s3.kill();
    let down = s3
        .view()
        .try_list("")
        .expect_err("a killed server answers nothing");
    assert_eq!(down.status, None, "no answer at all: {down:?}");

    s3.restart();
    assert_eq!(s3.endpoint(), endpoint, "the same port");
    assert_eq!(
        (s3.access_key(), s3.secret_key()),
        (access.as_str(), secret.as_str())
    );
    assert_eq!(s3.list(""), Vec::<ObjectInfo>::new(), "moto keeps nothing");
    s3.put("after", b"kept");
    assert_eq!(s3.get("after"), b"kept");
    let refused = s3
        .view()
        .with_secret("not-the-secret")
        .try_list("")
        .expect_err("credentials are checked after a restart too");
    assert_eq!(refused.code, "SignatureDoesNotMatch", "{refused:?}");
}

#[test]
fn an_open_multipart_upload_is_listed_and_is_no_object() {
    let s3 = S3Server::start();
    assert_eq!(s3.multipart_uploads(), Vec::<Upload>::new());
    let id = s3.view().start_multipart("inst/big.tar.zst");
    assert_eq!(
        s3.multipart_uploads(),
        [Upload {
            key: "inst/big.tar.zst".into(),
            upload_id: id
        }]
    );
    assert_eq!(s3.head("inst/big.tar.zst"), None);
    assert!(s3.list("").is_empty());
}

#[test]
fn the_cutter_drops_an_upload_after_the_bytes_it_was_told_and_heals() {
    const CUT: u64 = 1 << 20;
    let s3 = S3Server::start();
    let cutter = Cutter::start(s3.addr());
    let via = s3.view_at(&cutter.endpoint());

    // It passes everything until armed.
    via.put("small", b"through the cutter");
    assert_eq!(s3.get("small"), b"through the cutter");
    let before = cutter.bytes_forwarded();
    assert!(before > 0, "the put went through it");

    let big = bytes(8 << 20, 7);
    cutter.cut_after(CUT);
    let dropped = via
        .try_put("big", &big, false)
        .expect_err("an 8 MiB put through a cut after 1 MiB fails");
    assert_eq!(
        dropped.status, None,
        "no answer, a dropped connection: {dropped:?}"
    );
    assert!(cutter.is_cut());
    assert_eq!(
        cutter.bytes_forwarded() - before,
        CUT,
        "exactly the allowed bytes reached the server"
    );
    assert_eq!(s3.head("big"), None, "no half object");
    // While cut, a new connection fails too.
    let refused = via
        .try_list("")
        .expect_err("no connection passes while cut");
    assert_eq!(refused.status, None, "{refused:?}");
    assert_eq!(cutter.bytes_forwarded() - before, CUT);

    cutter.heal();
    assert!(!cutter.is_cut());
    // Cut on the next request: not one byte of it reaches the server.
    cutter.cut_after(0);
    let refused = via
        .try_put("next", b"never", false)
        .expect_err("the next request is cut");
    assert_eq!(refused.status, None, "{refused:?}");
    assert_eq!(cutter.bytes_forwarded() - before, CUT);
    assert_eq!(s3.head("next"), None);

    cutter.heal();
    via.put("big", &big);
    assert_eq!(s3.get("big"), big);
    assert!(cutter.bytes_forwarded() - before > CUT + (8 << 20));
}
