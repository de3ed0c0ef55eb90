//! Checking a calendar specification before it reaches a unit file.
//!
//! Two gates. Ours: at most [`CALENDAR_MAX`] bytes of the characters the
//! systemd.time(7) grammar uses (letters, digits, space and `*,./~:_+-`), so
//! that a specification can never add a line or a specifier (`%`) to the
//! drop-in. Then systemd's own parser, `systemd-analyze calendar -- SPEC`: the
//! same code that will read `OnCalendar=`, of the same systemd version, run
//! without a shell, with a bounded time and output. It changes nothing, so a
//! bad specification is refused before any file is touched. (Letting
//! daemon-reload reject a written drop-in would not do: systemd ignores a bad
//! `OnCalendar=` with a warning and loads the timer without it.)

use std::process::Stdio;
use std::time::Duration;

use abssd_proto::schedule::CALENDAR_MAX;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result, shown};

/// How long `systemd-analyze calendar` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The most output of it read (it prints four short lines).
const MAX_OUTPUT: u64 = 16 * 1024;

/// The program that parses calendars (found on `PATH`).
pub const ANALYZE: &str = "systemd-analyze";

/// A specification systemd accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// As given (written to the drop-in).
    pub given: String,
    /// systemd's normalized form (`*-*-* 00:00:00` for `daily`).
    pub normalized: String,
}

/// Our own gate: length and characters. Cheap, so the RPC layer runs it
/// before an operation exists.
pub fn check_syntax(spec: &str) -> Result<()> {
    if spec.trim().is_empty() {
        return Err(Error::validation(
            "--calendar is empty; give a systemd calendar specification such as daily or 'Mon..Fri 02:30'",
        ));
    }
    if spec.len() > CALENDAR_MAX {
        return Err(Error::validation(format!(
            "--calendar is {} bytes long; the limit is {CALENDAR_MAX} bytes",
            spec.len()
        )));
    }
    if let Some(c) = spec.chars().find(|c| !allowed(*c)) {
        return Err(Error::validation(format!(
            "--calendar {:?} contains {c:?}, which no systemd calendar specification uses; allowed: letters, digits, space and * , . / ~ : _ + -",
            shown(spec)
        )));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || " *,./~:_+-".contains(c)
}

/// Both gates: our syntax check, then systemd's parser.
pub async fn check(spec: &str) -> Result<Calendar> {
    check_syntax(spec)?;
    let mut cmd = tokio::process::Command::new(ANALYZE);
    // Nothing of the daemon's environment but where programs are and the time
    // zone (the normalized form and the next elapse are local time): a child
    // given NOTIFY_SOCKET or LISTEN_FDS would speak for abssd to systemd.
    cmd.env_clear();
    for keep in ["PATH", "TZ"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    let mut child = cmd
        .args(["calendar", "--no-pager", "--", spec])
        .env("LC_ALL", "C")
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::Environment(format!(
                "cannot run {ANALYZE} to check the calendar: {e}; it comes with systemd (Debian package systemd)"
            ))
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::Internal(format!("{ANALYZE}: no pipes")));
    };
    let run = async {
        let (mut out, mut err) = (String::new(), String::new());
        let (mut stdout, mut stderr) = (stdout.take(MAX_OUTPUT), stderr.take(MAX_OUTPUT));
        let (o, e, status) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err),
            child.wait()
        );
        o.and(e).and(status).map(|s| (s, out, err))
    };
    let (status, out, err) = tokio::time::timeout(CHECK_TIMEOUT, run)
        .await
        .map_err(|_| {
            Error::Environment(format!(
                "{ANALYZE} calendar did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Error::Environment(format!("running {ANALYZE} calendar: {e}")))?;
    if !status.success() {
        let why = err.lines().next().unwrap_or("rejected").trim();
        return Err(Error::validation(format!(
            "--calendar {:?} is not a systemd calendar specification ({}); see systemd.time(7), e.g. daily, 'Mon..Fri 02:30', '*-*-* 03:00:00 UTC'",
            shown(spec),
            shown(why)
        )));
    }
    let normalized = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Normalized form:"))
        .map(|n| n.trim().to_owned())
        .ok_or_else(|| {
            Error::Internal(format!(
                "{ANALYZE} calendar accepted {:?} but printed no normalized form",
                shown(spec)
            ))
        })?;
    Ok(Calendar {
        given: spec.to_owned(),
        normalized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_gate_refuses_lines_specifiers_and_length() {
        for good in [
            "daily",
            "Mon..Fri 02:30",
            "*-*-* 03:00:00 Europe/Berlin",
            "*:0/15",
        ] {
            check_syntax(good).unwrap();
        }
        for bad in [
            "",
            "  ",
            "daily\nOnCalendar=hourly",
            "daily\r",
            "%H",
            "daily;reboot",
            "d\u{e9}daily",
        ] {
            let e = check_syntax(bad).unwrap_err();
            assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation, "{bad:?}");
        }
        assert!(check_syntax(&"1".repeat(CALENDAR_MAX + 1)).is_err());
    }

    #[tokio::test]
    async fn systemd_normalizes_and_refuses() {
        let c = check("daily").await.unwrap();
        assert_eq!(c.normalized, "*-*-* 00:00:00");
        let e = check("Mon..Fri 25:00").await.unwrap_err();
        assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation);
        assert!(e.to_string().contains("not a systemd calendar"), "{e}");
        // `--` keeps a leading dash from being an option.
        let e = check("-h").await.unwrap_err();
        assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation, "{e}");
    }
}
