//! Text for people about remotes (`remote list`, `remote test`) and pulls.

use abssd_proto::{
    CredentialsInfo, PullOutcome, PullResult, RemoteInfo, RemoteTestResult, STEP_OK,
};

use super::{esc, human_size, yes_no};

/// `remote list`: one block per remote (a table of eight columns would not
/// fit a terminal); never a key or secret (abssd sends none).
pub fn list(remotes: &[RemoteInfo]) -> String {
    if remotes.is_empty() {
        return "no remotes configured (remotes: in abssd.yml)\n".to_owned();
    }
    let mut text = String::new();
    for (i, r) in remotes.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let place = if r.prefix.is_empty() {
            format!("s3://{}", r.bucket)
        } else {
            format!("s3://{}/{}", r.bucket, r.prefix)
        };
        let addressing = if r.path_style {
            "path-style"
        } else {
            "virtual-hosted"
        };
        let encrypted = if r.encrypted {
            format!(
                "age, {} recipient{}; {}",
                r.recipients,
                if r.recipients == 1 { "" } else { "s" },
                if r.identity_file {
                    "identity file set (pull can decrypt)"
                } else {
                    "no identity file (pull cannot decrypt)"
                }
            )
        } else {
            "no".to_owned()
        };
        for (key, value) in [
            ("", esc(&r.name).to_string()),
            ("where", esc(&place).to_string()),
            (
                "endpoint",
                format!(
                    "{} (region {}, {addressing})",
                    esc(&r.endpoint),
                    esc(&r.region)
                ),
            ),
            ("encrypted", encrypted),
            (
                "auto push",
                format!(
                    "{} (parts of {})",
                    yes_no(r.auto_push),
                    human_size(r.part_size_bytes)
                ),
            ),
            ("credentials", esc(&credentials(&r.credentials)).to_string()),
        ] {
            if key.is_empty() {
                text.push_str(&format!("{value}\n"));
            } else {
                text.push_str(&format!("  {key:<12} {value}\n"));
            }
        }
    }
    text
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

    #[test]
    fn each_remote_is_a_block_of_short_lines() {
        let r = RemoteInfo {
            name: "offsite".into(),
            endpoint: "https://s3.eu-central-1.amazonaws.com".into(),
            bucket: "acme-backups".into(),
            prefix: "actual".into(),
            region: "eu-central-1".into(),
            path_style: false,
            encrypted: true,
            recipients: 1,
            identity_file: true,
            auto_push: true,
            part_size_bytes: 16 << 20,
            credentials: CredentialsInfo::File {
                path: "/etc/abssctl/remotes/offsite.cred".into(),
            },
        };
        let bare = RemoteInfo {
            name: "lab".into(),
            prefix: String::new(),
            path_style: true,
            encrypted: false,
            auto_push: false,
            ..r.clone()
        };
        let text = list(&[r, bare]);
        assert!(
            text.starts_with("offsite\n  where        s3://acme-backups/actual\n"),
            "{text}"
        );
        assert!(text.contains("eu-central-1, virtual-hosted)"), "{text}");
        assert!(
            text.contains("age, 1 recipient; identity file set"),
            "{text}"
        );
        assert!(
            text.contains("file /etc/abssctl/remotes/offsite.cred"),
            "{text}"
        );
        assert!(
            text.contains("\n\nlab\n  where        s3://acme-backups\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    }
}
