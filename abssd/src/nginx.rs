//! nginx: the configuration check (`nginx -t`, command configurable). The reload
//! goes through systemd ([`crate::systemd`]).

use std::process::Stdio;
use std::time::Duration;

use crate::error::{Error, Result};

/// How long `nginx -t` may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Run the configured check; a non-zero exit is a `service` error carrying what
/// nginx said.
pub async fn test(command: &[String]) -> Result<()> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::Environment("nginx.test_command is empty".into()))?;
    let shown = command.join(" ");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Service(format!("cannot run `{shown}`: {e}")))?;
    let out = tokio::time::timeout(TEST_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Service(format!("`{shown}` did not finish within 60 s")))?
        .map_err(|e| Error::Service(format!("running `{shown}`: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(Error::Service(format!(
        "`{shown}` failed ({}): {}",
        out.status,
        said.join(" | ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_carries_the_output() {
        let cmd = ["sh", "-c", "echo 'bad directive' >&2; exit 1"].map(String::from);
        let err = test(&cmd).await.unwrap_err().to_string();
        assert!(err.contains("bad directive"), "{err}");
        test(&["true".to_owned()]).await.unwrap();
        assert!(test(&["/nonexistent/nginx".to_owned()]).await.is_err());
    }
}
