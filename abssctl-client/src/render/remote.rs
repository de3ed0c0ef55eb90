//! Text for people about remotes (`remote list`, `remote test`) and pulls.

use abssd_proto::{
    CredentialsInfo, PullOutcome, PullResult, RemoteInfo, RemoteTestResult, STEP_OK,
};

use super::{Align, esc, human_size, table, yes_no};

/// `remote list`: one row per remote; never a key or secret (abssd sends none).
pub fn list(remotes: &[RemoteInfo]) -> String {
    if remotes.is_empty() {
        return "no remotes configured (remotes: in abssd.yml)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = remotes
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.endpoint.clone(),
                r.bucket.clone(),
                if r.prefix.is_empty() {
                    "-".to_owned()
                } else {
                    r.prefix.clone()
                },
                r.region.clone(),
                if r.encrypted {
                    format!(
                        "age ({} recipient{}{})",
                        r.recipients,
                        if r.recipients == 1 { "" } else { "s" },
                        if r.identity_file {
                            ", identity file set"
                        } else {
                            ", no identity file"
                        }
                    )
                } else {
                    "no".to_owned()
                },
                yes_no(r.auto_push),
                credentials(&r.credentials),
            ]
        })
        .collect();
    table(
        &[
            ("name", Align::Left),
            ("endpoint", Align::Left),
            ("bucket", Align::Left),
            ("prefix", Align::Left),
            ("region", Align::Left),
            ("encrypted", Align::Left),
            ("auto push", Align::Left),
            ("credentials", Align::Left),
        ],
        &rows,
    )
}

/// Where credentials are read from, for people.
fn credentials(c: &CredentialsInfo) -> String {
    match c {
        CredentialsInfo::File { path } => format!("file {path}"),
        CredentialsInfo::Systemd { name } => format!("systemd credential {name}"),
    }
}

/// `remote test`: one line per step, then the verdict.
pub fn tested(r: &RemoteTestResult) -> String {
    let mut text = format!("remote {}:\n", esc(&r.name));
    let width = r.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
    for s in &r.steps {
        text.push_str(&format!(
            "  {:width$}  {:7}  {}\n",
            esc(&s.step),
            esc(&s.status),
            esc(&s.message)
        ));
    }
    if r.ok {
        text.push_str("every step passed\n");
    } else {
        let failed: Vec<&str> = r
            .steps
            .iter()
            .filter(|s| s.status != STEP_OK)
            .map(|s| s.step.as_str())
            .collect();
        text.push_str(&format!(
            "not every step passed ({})\n",
            esc(&failed.join(", "))
        ));
    }
    text
}

/// A finished pull.
pub fn pulled(r: &PullResult) -> String {
    let how = match r.outcome {
        PullOutcome::Pulled => format!(
            "pulled backup {} from remote {}{}",
            esc(&r.id),
            esc(&r.source.remote),
            if r.source.encrypted {
                " (decrypted)"
            } else {
                ""
            }
        ),
        PullOutcome::Already => format!(
            "backup {}'s archive was already here with the recorded checksum; nothing downloaded",
            esc(&r.id)
        ),
    };
    let mut text = format!(
        "{how}\n  archive: {} ({})\n  sha256:  {}\n  status:  available (was {})\n",
        esc(&r.archive),
        human_size(r.bytes),
        esc(&r.sha256),
        esc(&r.previous_status)
    );
    if r.sidecar_written {
        text.push_str("  the missing .sha256 sidecar was written\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use abssd_proto::RemoteTestStep;

    use super::*;

    #[test]
    fn a_failed_step_is_named_in_the_verdict() {
        let r = RemoteTestResult {
            name: "off".into(),
            ok: false,
            probe_key: "p/.abssd-probe-1".into(),
            steps: vec![
                RemoteTestStep {
                    step: "credentials".into(),
                    status: "ok".into(),
                    message: "read".into(),
                },
                RemoteTestStep {
                    step: "list".into(),
                    status: "failed".into(),
                    message: "the bucket does not exist".into(),
                },
            ],
        };
        let text = tested(&r);
        assert!(
            text.contains("  list         failed   the bucket does not exist\n"),
            "{text}"
        );
        assert!(text.ends_with("not every step passed (list)\n"), "{text}");
    }
}
