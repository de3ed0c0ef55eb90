//! The steps of `remote test`: blocking, each one's outcome in plain words.

use abssd_proto::{RemoteTestResult, RemoteTestStep, STEP_FAILED, STEP_OK, STEP_SKIPPED};

use crate::config::remotes::RemoteSettings;
use crate::remote::{self, S3, S3ErrorKind, layout};

/// What a probe object's name starts with. No key [`layout::classify`]
/// reads as a backup's object starts with a `.`, so a probe left behind
/// (the daemon killed between put and delete) is never taken for one.
pub const PROBE_PREFIX: &str = ".abssd-probe-";

/// Most bytes read back of the probe.
const PROBE_LIMIT: u64 = 4096;
/// The step that checks the server refuses to overwrite.
const NO_OVERWRITE: &str = "no_overwrite";

/// A fresh probe key of `remote`: `<prefix>/.abssd-probe-<uuid>`.
pub fn probe_key(remote: &RemoteSettings) -> String {
    format!(
        "{}{PROBE_PREFIX}{}",
        layout::root_prefix(remote),
        uuid::Uuid::now_v7()
    )
}

/// The steps, in order; a step that cannot run after an earlier failure is
/// `skipped`.
struct Steps(Vec<RemoteTestStep>);

impl Steps {
    fn push(&mut self, step: &str, outcome: std::result::Result<String, String>) -> bool {
        let ok = outcome.is_ok();
        let (status, message) = match outcome {
            Ok(m) => (STEP_OK, m),
            Err(m) => (STEP_FAILED, m),
        };
        self.0.push(RemoteTestStep {
            step: step.to_owned(),
            status: status.to_owned(),
            message,
        });
        ok
    }

    fn skip(&mut self, steps: &[&str], why: &str) {
        for step in steps {
            self.0.push(RemoteTestStep {
                step: (*step).to_owned(),
                status: STEP_SKIPPED.to_owned(),
                message: why.to_owned(),
            });
        }
    }
}

/// Run every step against `remote`. Blocking.
pub fn run(remote: &RemoteSettings) -> RemoteTestResult {
    let key = probe_key(remote);
    let mut steps = Steps(Vec::new());
    let s3 = remote::connect(remote);
    let ok = steps.push(
        "credentials",
        s3.as_ref()
            .map(|_| "read".to_owned())
            .map_err(|e| e.to_string()),
    );
    if let Ok(s3) = s3.as_ref() {
        exercise(s3, remote, &key, &mut steps);
    } else if !ok {
        steps.skip(
            &["list", "put", "get", NO_OVERWRITE, "delete"],
            "the credentials could not be read",
        );
    }
    RemoteTestResult {
        name: remote.name.clone(),
        ok: steps.0.iter().all(|s| s.status == STEP_OK),
        probe_key: key,
        steps: steps.0,
    }
}

fn exercise(s3: &S3, remote: &RemoteSettings, key: &str, steps: &mut Steps) {
    let prefix = layout::root_prefix(remote);
    let listed = s3.list(&prefix, None);
    // Nothing further can work when the endpoint is unreachable or the
    // bucket does not exist; a refused listing may still allow the rest.
    let hopeless = listed
        .as_ref()
        .err()
        .filter(|e| matches!(e.kind, S3ErrorKind::Network | S3ErrorKind::NoBucket))
        .map(|e| e.message.clone());
    steps.push(
        "list",
        listed
            .map(|page| {
                format!(
                    "listed {prefix:?}: {} object(s){}",
                    page.objects.len(),
                    if page.next.is_some() { " and more" } else { "" }
                )
            })
            .map_err(|e| e.message),
    );
    if let Some(why) = hopeless {
        steps.skip(
            &["put", "get", NO_OVERWRITE, "delete"],
            &format!("not tried: {why}"),
        );
        return;
    }
    let body = format!(
        "abssd remote test probe of remote {}; safe to delete\n",
        remote.name
    );
    let put = s3.put(key, body.as_bytes(), true);
    let put_ok = steps.push(
        "put",
        put.map(|()| format!("wrote {key} ({} bytes)", body.len()))
            .map_err(|e| e.message),
    );
    if !put_ok {
        steps.skip(
            &["get", NO_OVERWRITE, "delete"],
            "the probe was not written",
        );
        return;
    }
    // Written: from here on it is deleted whatever fails.
    let got = s3.get_small(key, PROBE_LIMIT);
    steps.push(
        "get",
        match got {
            Ok(bytes) if bytes == body.as_bytes() => Ok(format!("read {key} back, same bytes")),
            Ok(bytes) => Err(format!(
                "read {key} back, but got {} bytes that are not the {} written",
                bytes.len(),
                body.len()
            )),
            Err(e) => Err(e.message),
        },
    );
    // abssd never overwrites because the server refuses a create-only PUT
    // of a key that exists; a server that ignores If-None-Match breaks that.
    let again = s3.put(
        key,
        b"abssd remote test: this must not replace the probe\n",
        true,
    );
    steps.push(
        NO_OVERWRITE,
        match again {
            Err(e) if e.kind == S3ErrorKind::Exists || e.status == Some(409) => Ok(format!(
                "a create-only PUT of {key} was refused (HTTP {}): nothing is overwritten",
                e.status.unwrap_or_default()
            )),
            Ok(()) => Err(format!(
                "a create-only PUT of {key}, which exists, succeeded: this server overwrites \
                 objects; abssd's no-overwrite guarantee does not hold there"
            )),
            Err(e) => Err(format!(
                "a create-only PUT of {key}, which exists, failed otherwise than refused as \
                 existing, so whether this server overwrites is unknown: {}",
                e.message
            )),
        },
    );
    steps.push(
        "delete",
        s3.delete(key)
            .map(|()| format!("deleted {key}"))
            .map_err(|e| e.message),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::remotes::{CredentialSource, Endpoint};
    use crate::remote::{Patience, fake};

    #[test]
    fn a_probe_is_never_read_as_a_backup_object() {
        for prefix in ["", "a/b"] {
            let r = RemoteSettings::for_tests("o", "http://127.0.0.1:9", prefix);
            let key = probe_key(&r);
            assert!(key.starts_with(&layout::root_prefix(&r)), "{key}");
            assert_eq!(layout::classify(&r, &key), None, "{key}");
            assert_ne!(probe_key(&r), key);
        }
    }

    /// The steps after `credentials` against a fake that lists, reads the
    /// probe back, deletes, and answers a second PUT with `second`.
    fn against(second: u16) -> (Vec<RemoteTestStep>, Vec<String>) {
        let puts = Arc::new(AtomicUsize::new(0));
        let fake = fake::serve(move |_, line, stream| {
            if line.starts_with("GET /b/?") {
                fake::reply(
                    stream,
                    200,
                    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
                );
            } else if line.starts_with("GET ") {
                fake::reply(
                    stream,
                    200,
                    "abssd remote test probe of remote fake; safe to delete\n",
                );
            } else if line.starts_with("PUT ") && puts.fetch_add(1, Ordering::SeqCst) == 1 {
                fake::reply(stream, second, "");
            } else {
                fake::reply(
                    stream,
                    if line.starts_with("DELETE ") {
                        204
                    } else {
                        200
                    },
                    "",
                );
            }
        });
        let mut steps = Steps(Vec::new());
        let key = probe_key(&fake.remote());
        exercise(
            &fake.client(Patience::START_UP),
            &fake.remote(),
            &key,
            &mut steps,
        );
        let requests = fake.requests.lock().unwrap().clone();
        (steps.0, requests)
    }

    #[test]
    fn a_server_that_overwrites_fails_the_no_overwrite_step_and_the_probe_is_deleted() {
        let (steps, requests) = against(200);
        let seen: Vec<_> = steps
            .iter()
            .map(|s| (s.step.as_str(), s.status.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("list", STEP_OK),
                ("put", STEP_OK),
                ("get", STEP_OK),
                (NO_OVERWRITE, STEP_FAILED),
                ("delete", STEP_OK)
            ]
        );
        assert!(
            steps[3].message.contains(
                "this server overwrites objects; abssd's no-overwrite guarantee does not hold there"
            ),
            "{}",
            steps[3].message
        );
        assert!(
            requests.last().unwrap().starts_with("DELETE "),
            "{requests:?}"
        );

        let (steps, _) = against(412);
        assert_eq!(steps[3].status, STEP_OK, "{:?}", steps[3]);
        let (steps, _) = against(409);
        assert_eq!(steps[3].status, STEP_OK, "{:?}", steps[3]);
        let (steps, _) = against(403);
        assert_eq!(steps[3].status, STEP_FAILED, "{:?}", steps[3]);
    }

    #[test]
    fn unreadable_credentials_fail_the_first_step_and_skip_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let r = RemoteSettings {
            name: "o".into(),
            endpoint: Endpoint::parse("http://127.0.0.1:9").unwrap(),
            bucket: "bbb".into(),
            prefix: String::new(),
            region: "us-east-1".into(),
            path_style: true,
            credentials: CredentialSource::File(dir.path().join("absent")),
            age_recipients: vec![],
            age_identity_file: None,
            auto_push: false,
            part_size: 5 << 20,
            retention: Default::default(),
        };
        let result = run(&r);
        assert!(!result.ok);
        let statuses: Vec<_> = result.steps.iter().map(|s| s.status.as_str()).collect();
        assert_eq!(
            statuses,
            [
                STEP_FAILED,
                STEP_SKIPPED,
                STEP_SKIPPED,
                STEP_SKIPPED,
                STEP_SKIPPED,
                STEP_SKIPPED
            ]
        );
        assert!(
            result.steps[0].message.contains("absent"),
            "{:?}",
            result.steps[0]
        );
    }
}
