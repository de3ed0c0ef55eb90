//! Text for people about operations and the daemon itself.

use abssd_proto::{DaemonStatus, OpInfo, OpState};

use super::{Align, esc, fields, human_duration, table, yes_no};

/// `op list` (and the running operations of `daemon status`).
pub fn list(ops: &[OpInfo]) -> String {
    if ops.is_empty() {
        return "no operations\n".to_owned();
    }
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|op| {
            vec![
                op.op_id.clone(),
                op.command.to_string(),
                op.target.clone().unwrap_or_else(|| "-".to_owned()),
                state_text(op),
                op.started_at.clone(),
                op.actor.user.clone(),
            ]
        })
        .collect();
    table(
        &[
            ("op_id", Align::Left),
            ("command", Align::Left),
            ("target", Align::Left),
            ("state", Align::Left),
            ("started", Align::Left),
            ("user", Align::Left),
        ],
        &rows,
    )
}

/// The state, and whether start-up recovery ended it (after the daemon stopped
/// during it): `rolled back` or `finished at start-up`.
fn state_text(op: &OpInfo) -> String {
    match (op.state, op.recovered) {
        (OpState::Running, _) => "running".into(),
        (OpState::Succeeded, false) => "succeeded".into(),
        (OpState::Failed, false) => "failed".into(),
        (OpState::Succeeded, true) => "interrupted, finished at start-up".into(),
        (OpState::Failed, true) => "interrupted, rolled back at start-up".into(),
    }
}

/// `daemon status`.
pub fn status(s: &DaemonStatus) -> String {
    let mut text = format!("abssd {} (protocol {})\n", s.version, s.protocol);
    text.push_str(&fields(
        2,
        &[
            ("pid", s.pid.to_string()),
            (
                "uptime",
                format!("{} (since {})", human_duration(s.uptime_secs), s.started_at),
            ),
            (
                "socket",
                with_origin(&s.socket, s.path_origins.get("socket")),
            ),
            ("config file", s.config_file.clone()),
            ("abssd config file", s.abssd_config_file.clone()),
            ("operator group", s.operator_group.clone()),
            ("you may change things", yes_no(s.caller_may_mutate)),
        ],
    ));
    if !s.paths.is_empty() {
        text.push_str("paths:\n");
        let pairs: Vec<(&str, String)> = s
            .paths
            .iter()
            .map(|(k, v)| (k.as_str(), with_origin(v, s.path_origins.get(k))))
            .collect();
        text.push_str(&fields(2, &pairs));
    }
    if !s.config_warnings.is_empty() {
        text.push_str("configuration warnings:\n");
        for w in &s.config_warnings {
            text.push_str(&format!("  {}\n", esc(w)));
        }
    }
    if s.operations_running.is_empty() {
        text.push_str("running operations: none\n");
    } else {
        text.push_str("running operations:\n");
        indented(&mut text, &list(&s.operations_running));
    }
    if !s.recovered.is_empty() {
        text.push_str("recovered at start-up (the daemon had stopped during them):\n");
        indented(&mut text, &list(&s.recovered));
        for op in &s.recovered {
            if let Some(e) = &op.error {
                text.push_str(&format!("  {}: {}\n", esc(&op.op_id), esc(&e.message)));
            }
        }
    }
    text
}

/// A path and, when the daemon said, where it came from.
fn with_origin(path: &str, origin: Option<&String>) -> String {
    match origin {
        Some(o) => format!("{path}  ({})", esc(o)),
        None => path.to_owned(),
    }
}

fn indented(text: &mut String, block: &str) {
    for line in block.lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abssd_proto::Actor;

    fn op() -> OpInfo {
        OpInfo {
            op_id: "0190-aaaa".to_owned(),
            command: abssd_proto::Command::BackupCreate,
            args: serde_json::json!({}),
            actor: Actor {
                uid: 1000,
                user: "alice".to_owned(),
                pid: 7,
            },
            target: Some("alpha".to_owned()),
            state: OpState::Running,
            started_at: "2025-01-02T03:04:05Z".to_owned(),
            finished_at: None,
            lock_wait_ms: 0,
            events: 3,
            result: None,
            error: None,
            recovered: false,
        }
    }

    #[test]
    fn op_rows_name_command_target_state_and_user() {
        let text = list(&[op()]);
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "0190-aaaa  backup create  alpha   running  2025-01-02T03:04:05Z  alice"
        );
    }

    #[test]
    fn status_lists_paths_and_running_operations() {
        let daemon = DaemonStatus {
            version: "0.1.0".to_owned(),
            protocol: 1,
            pid: 99,
            started_at: "2025-01-02T03:04:05Z".to_owned(),
            uptime_secs: 3725,
            socket: "/run/abssctl/abssd.sock".to_owned(),
            operator_group: "abssctl".to_owned(),
            config_file: "/etc/abssctl/config.yml".to_owned(),
            paths: [
                ("backups_root".to_owned(), "/srv/backups".to_owned()),
                ("unit_dir".to_owned(), "/run/abssctl/systemd".to_owned()),
            ]
            .into(),
            abssd_config_file: "/etc/abssctl/abssd.yml".to_owned(),
            path_origins: [
                (
                    "unit_dir".to_owned(),
                    "default under runtime_dir (environment ABSSCTL_RUNTIME_DIR)".to_owned(),
                ),
                (
                    "socket".to_owned(),
                    "file /etc/abssctl/abssd.yml".to_owned(),
                ),
            ]
            .into(),
            config_warnings: vec!["environment variable ABSSCTL_SOCKET is deprecated".to_owned()],
            operations_running: vec![op()],
            recovered: vec![OpInfo {
                op_id: "0190-bbbb".to_owned(),
                state: OpState::Failed,
                recovered: true,
                error: Some(abssd_proto::WireError::new(
                    abssd_proto::ErrorKind::Environment,
                    "rolled back: data put back",
                )),
                ..op()
            }],
            caller_may_mutate: false,
        };
        let text = status(&daemon);
        assert!(text.starts_with("abssd 0.1.0 (protocol 1)\n"), "{text}");
        assert!(
            text.contains("1h 02m (since 2025-01-02T03:04:05Z)"),
            "{text}"
        );
        assert!(text.contains("  backups_root:  /srv/backups\n"), "{text}");
        assert!(
            text.contains(
                "  unit_dir:      /run/abssctl/systemd  (default under runtime_dir \
                 (environment ABSSCTL_RUNTIME_DIR))\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("/run/abssctl/abssd.sock  (file /etc/abssctl/abssd.yml)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "configuration warnings:\n  environment variable ABSSCTL_SOCKET is deprecated\n"
            ),
            "{text}"
        );
        assert!(text.contains("  0190-aaaa  backup create"), "{text}");
        assert!(text.contains("recovered at start-up"), "{text}");
        assert!(
            text.contains("interrupted, rolled back at start-up"),
            "{text}"
        );
        assert!(
            text.contains("0190-bbbb: rolled back: data put back"),
            "{text}"
        );
    }
}
