//! The [`Observer`] the daemon gives the backup job: `hooks` in abssd.yml.
//!
//! Around each instance's job, in this order:
//!
//! 1. ping `<ping_url>/start`;
//! 2. `before`; when it fails (exits non-zero, is killed, cannot start), the
//!    instance's job fails without backing anything up (as borgmatic's
//!    `before_backup`): its create step is `failed`, the others `skipped`;
//! 3. the job's steps;
//! 4. `after` when the job succeeded, `on_error` when it failed (a failed
//!    `before` included);
//! 5. ping `<ping_url>` on success, `<ping_url>/fail` on failure, the body the
//!    last lines of the instance's job (at most [`BODY_BYTES`]).
//!
//! A ping is a POST with `User-Agent: abssd/<version>`, at most
//! [`ATTEMPTS`] attempts (backing off 1 s, then 2 s), each bounded by
//! `ping_timeout`, following at most [`REDIRECTS`] redirects, no proxy. It
//! runs on a blocking thread, never on the job's. A command runs with no
//! shell, stdin `/dev/null`, in `/`, in its own process group, with a clean
//! environment (`PATH` and the `ABSSCTL_HOOK_*` variables); the last
//! [`OUTPUT_BYTES`] of its stdout and stderr (at most [`OUTPUT_LINES`]
//! lines) become the operation's messages; at `timeout` its process group is
//! killed, and so is whatever it left running in the group when it exits.
//! Its output is read for [`OUTPUT_GRACE`] more at most (a process that
//! left the group may hold the pipes).
//!
//! A failed ping or command (but `before`) is a warning of the operation
//! and of the instance's summary: it never changes the job's outcome.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abssd_proto::JobRecord;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::observer::{Answer, Observer};
use crate::config::HookSettings;
use crate::progress::{Progress, Reporter};
use crate::text::cut;

/// Bytes of a ping's body: the end of the job's log.
pub const BODY_BYTES: usize = 10 * 1024;
/// Bytes of a command's output kept (its last ones).
pub const OUTPUT_BYTES: usize = 4 * 1024;
/// Attempts of one ping.
pub const ATTEMPTS: u32 = 3;
/// Redirects one ping follows.
pub const REDIRECTS: u32 = 3;
/// Lines of a command's output that become messages (its last ones).
pub const OUTPUT_LINES: usize = 64;
/// How long a command's output is read for after it ended.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// A hook command's `PATH`.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// When a hook command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Before the instance's job.
    Before,
    /// After it succeeded.
    After,
    /// After it failed.
    OnError,
}

impl Event {
    /// The key in `hooks:` and the value of `ABSSCTL_HOOK_EVENT`.
    pub fn name(self) -> &'static str {
        match self {
            Event::Before => "before",
            Event::After => "after",
            Event::OnError => "on_error",
        }
    }
}

/// Hooks and pings as configured.
#[derive(Debug)]
pub struct Hooks {
    settings: HookSettings,
    agent: ureq::Agent,
    /// A ping of this job failed every attempt: the endpoint is down (or
    /// silent), and later pings make one attempt each, so a dead endpoint
    /// costs each instance one timeout, not three.
    down: std::sync::atomic::AtomicBool,
}

impl Hooks {
    /// The observer of `settings`.
    pub fn new(settings: &HookSettings) -> Hooks {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.ping_timeout))
            .max_redirects(REDIRECTS)
            .user_agent(concat!("abssd/", env!("CARGO_PKG_VERSION")))
            .proxy(None)
            // An https URL is never followed to http (its secret in clear).
            .https_only(
                settings
                    .ping_url
                    .as_ref()
                    .is_some_and(|u| u.secret()[..5].eq_ignore_ascii_case("https")),
            )
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .new_agent();
        Hooks {
            settings: settings.clone(),
            agent,
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Ping `suffix` of the URL (if one is configured); a warning when it
    /// could not be delivered.
    async fn ping(&self, suffix: &'static str, body: String) -> Option<String> {
        let url = self.settings.ping_url.as_ref()?;
        let (agent, target, shown) = (self.agent.clone(), url.with(suffix), url.shown());
        let what = if suffix.is_empty() { "success" } else { suffix };
        use std::sync::atomic::Ordering;
        let attempts = if self.down.load(Ordering::Relaxed) {
            1
        } else {
            ATTEMPTS
        };
        let sent =
            tokio::task::spawn_blocking(move || send(&agent, &target, body.as_bytes(), attempts))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        if sent.is_err() {
            self.down.store(true, Ordering::Relaxed);
        }
        sent.err()
            .map(|e| format!("the {what} ping to {shown} failed: {e}"))
    }

    /// Run the command of `event` (if one is configured); `Err` with what
    /// went wrong when it did not succeed.
    async fn command(
        &self,
        event: Event,
        vars: &[(&str, &str)],
        progress: &Reporter,
    ) -> std::result::Result<(), String> {
        let argv = match event {
            Event::Before => &self.settings.before,
            Event::After => &self.settings.after,
            Event::OnError => &self.settings.on_error,
        };
        let Some(argv) = argv else {
            return Ok(());
        };
        let name = event.name();
        let program = crate::error::shown(&argv[0]);
        let ran = run(argv, vars, self.settings.timeout).await;
        let output = match &ran {
            Ok((_, out)) | Err((_, out)) => out,
        };
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in &lines[lines.len().saturating_sub(OUTPUT_LINES)..] {
            progress.info(format!("{name} hook: {line}"));
        }
        match ran {
            Ok((status, _)) if status.success() => Ok(()),
            Ok((status, _)) => Err(format!("the {name} hook {program} failed: {status}")),
            Err((e, _)) => Err(format!("the {name} hook {program} failed: {e}")),
        }
    }
}

/// One ping, with its retries; `Err` with the last attempt's failure.
fn send(
    agent: &ureq::Agent,
    url: &str,
    body: &[u8],
    attempts: u32,
) -> std::result::Result<(), String> {
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(u64::from(attempt)));
        }
        match agent
            .post(url)
            .content_type("text/plain; charset=utf-8")
            .send(body)
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            // Asking again would not change the answer (a 404 for a check
            // that does not exist); but for "too many requests".
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                return Err(format!("answered {}", r.status()));
            }
            Ok(r) => last = format!("answered {}", r.status()),
            // ureq's errors may name a URL (a refused redirect's target):
            // every part of the secret path is cut out.
            Err(e) => last = redact(&e.to_string(), url),
        }
    }
    Err(format!("{last} ({attempts} attempt(s))"))
}

/// `text` with `url` (a secret) replaced, should it appear.
fn redact(text: &str, url: &str) -> String {
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, p)| p);
    // The whole path, then each of its parts (a redirect may keep the uuid
    // and change the rest): any part long enough to be a secret.
    let mut text = if path.is_empty() {
        text.to_owned()
    } else {
        text.replace(path, "…")
    };
    for part in path
        .split(['/', '?', '&', '=', '#'])
        .filter(|p| p.len() >= 6)
    {
        text = text.replace(part, "…");
    }
    cut(text, 300)
}

/// The body of a ping: `lines`, the last [`BODY_BYTES`] of them, cut on a
/// character boundary.
pub fn body(lines: &[String]) -> String {
    let text = lines.join("\n");
    last_bytes(&text, BODY_BYTES).to_owned()
}

/// The last `max` bytes of `text` at most, starting on a character boundary.
fn last_bytes(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The last bytes of what a child wrote, bounded.
#[derive(Default)]
struct Output(Vec<u8>);

impl Output {
    fn add(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
        if self.0.len() > OUTPUT_BYTES {
            let extra = self.0.len() - OUTPUT_BYTES;
            self.0.drain(..extra);
        }
    }
}

async fn drain(mut from: impl AsyncRead + Unpin, into: Arc<Mutex<Output>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        into.lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&buf[..n]);
    }
}

type Ran = std::result::Result<(std::process::ExitStatus, String), (String, String)>;

/// Run `argv` as a hook: its exit status and the end of its output, or why
/// it did not end by itself, and the end of its output.
async fn run(argv: &[String], vars: &[(&str, &str)], timeout: Duration) -> Ran {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", PATH)
        .envs(vars.iter().copied())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Err((format!("could not start: {e}"), String::new())),
    };
    let output = Arc::new(Mutex::new(Output::default()));
    let readers = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(drain(o, output.clone()))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(drain(e, output.clone()))),
    ];
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(nix::unistd::Pid::from_raw);
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // The group goes, whatever it left running: nothing outlives its hook,
    // and the pipes close.
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
    let outcome = match waited {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("could not be waited for: {e}")),
        Err(_) => {
            let _ = child.wait().await;
            Err(format!(
                "killed at its timeout ({} s, hooks.timeout)",
                timeout.as_secs_f64()
            ))
        }
    };
    // A process that left the group (setsid) may hold the pipes open: its
    // output is read for a short while more, then no longer waited for.
    let deadline = tokio::time::Instant::now() + OUTPUT_GRACE;
    for mut reader in readers.into_iter().flatten() {
        if tokio::time::timeout_at(deadline, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
    let bytes = std::mem::take(&mut output.lock().unwrap_or_else(|p| p.into_inner()).0);
    let text = String::from_utf8_lossy(&bytes);
    let text = last_bytes(&text, OUTPUT_BYTES).to_owned();
    match outcome {
        Ok(status) => Ok((status, text)),
        Err(e) => Err((e, text)),
    }
}

impl Observer for Hooks {
    fn started<'a>(
        &'a self,
        instance: &'a str,
        op_id: &'a str,
        progress: &'a Reporter,
    ) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let mut answer = Answer::default();
            answer
                .warnings
                .extend(self.ping("start", String::new()).await);
            let vars = [
                ("ABSSCTL_HOOK_EVENT", Event::Before.name()),
                ("ABSSCTL_HOOK_INSTANCE", instance),
                ("ABSSCTL_HOOK_OP_ID", op_id),
            ];
            if let Err(e) = self.command(Event::Before, &vars, progress).await {
                answer.refused = Some(e);
            }
            answer
        })
    }

    fn ended<'a>(
        &'a self,
        record: &'a JobRecord,
        tail: &'a [String],
        progress: &'a Reporter,
    ) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let mut answer = Answer::default();
            let event = if record.ok {
                Event::After
            } else {
                Event::OnError
            };
            let mut vars = vec![
                ("ABSSCTL_HOOK_EVENT", event.name()),
                ("ABSSCTL_HOOK_INSTANCE", record.instance.as_str()),
                ("ABSSCTL_HOOK_OP_ID", record.op_id.as_str()),
                (
                    "ABSSCTL_HOOK_STATUS",
                    if record.ok { "ok" } else { "failed" },
                ),
            ];
            if let Some(id) = &record.backup_id {
                vars.push(("ABSSCTL_HOOK_BACKUP_ID", id));
            }
            let mut lines = tail.to_vec();
            if let Err(e) = self.command(event, &vars, progress).await {
                lines.push(e.clone());
                answer.warnings.push(e);
            }
            let suffix = if record.ok { "" } else { "fail" };
            answer
                .warnings
                .extend(self.ping(suffix, body(&lines)).await);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_end_of_the_log_bounded_on_a_char_boundary() {
        let lines: Vec<String> = (0..40)
            .map(|i| format!("{i:02} {}", "é".repeat(200)))
            .collect();
        let b = body(&lines);
        assert!(
            b.len() <= BODY_BYTES && b.len() > BODY_BYTES - 4,
            "{}",
            b.len()
        );
        assert!(b.ends_with(&lines[39]), "the end is kept");
        assert_eq!(body(&["a".into(), "b".into()]), "a\nb");
    }

    #[test]
    fn an_error_never_shows_the_secret_path() {
        let url = "https://hc-ping.com/1234-uuid/start";
        let e = redact(
            "connection to https://hc-ping.com/1234-uuid/start failed",
            url,
        );
        assert!(!e.contains("1234-uuid"), "{e}");
        // A refused redirect names its target: the uuid kept, the rest not.
        let e = redact(
            "redirect to http://hc-ping.com/ping/5f0c8e4a-2b9d-4c1e?x=1 refused",
            "https://hc-ping.com/5f0c8e4a-2b9d-4c1e/start",
        );
        assert!(!e.contains("5f0c8e4a-2b9d-4c1e"), "{e}");
    }

    #[tokio::test]
    async fn a_command_gets_the_clean_environment_and_its_output_is_bounded() {
        let argv = [
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "env | sort; head -c 9000 /dev/zero | tr '\\0' x; echo; exit 3".to_owned(),
        ];
        let (status, out) = run(
            &argv,
            &[("ABSSCTL_HOOK_EVENT", "after")],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(out.len() <= OUTPUT_BYTES, "{}", out.len());
        assert!(out.trim_end().ends_with("xxx"));
        let (_, out) = run(
            &argv[..2]
                .iter()
                .cloned()
                .chain(["env".to_owned()])
                .collect::<Vec<_>>(),
            &[("ABSSCTL_HOOK_EVENT", "after")],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let mut names: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        names.sort();
        names.retain(|n| *n != "PWD" && *n != "SHLVL" && *n != "_");
        assert_eq!(names, ["ABSSCTL_HOOK_EVENT", "PATH"], "{out}");
        assert!(out.contains(&format!("PATH={PATH}")));
    }
}
