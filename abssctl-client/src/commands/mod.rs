//! The verbs: each turns its flags into request parameters, calls the daemon, and
//! hands the answer to [`crate::render`].
//!
//! * [`backup`]  — `backup create | list | show | verify | reconcile`
//! * [`restore`] — `backup restore`: plan, confirmation, follow
//! * [`prune`]   — `backup prune`: plan, confirmation, follow
//! * [`run`]     — `backup run`: the backup job, followed, and its summary
//! * [`pull`]    — `backup pull`: a copy from a remote, followed
//! * [`remote`]  — `remote list | test`
//! * [`op`]      — `op list | watch`
//! * [`daemon`]  — `daemon status`
//! * [`schedule`] — `schedule enable | disable | show`
//! * [`doctor`]  — `doctor`: the health report
//! * [`remote_ls`] — `remote ls`: what a remote holds

pub mod backup;
pub mod daemon;
pub mod doctor;
pub mod op;
pub mod prune;
pub mod pull;
pub mod push;
pub mod remote;
pub mod restore;
pub mod run;
pub mod schedule;

use std::path::Path;

use abssd_proto::{ErrorKind, WireError};
use jsonrpsee::core::client::Client;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::args::{Cli, Command};
use crate::connect::connect;
use crate::follow::{Ended, Finished, Interrupt, detached_message, follow};
use crate::progress::ProgressView;
use crate::render::Output;

/// How a command that did not fail ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done, nothing to report.
    Success,
    /// Done, and it found problems (verify: missing, corrupt or unreadable archives;
    /// reconcile --check: drift between index and archives that it did not fix).
    Problems,
    /// Ctrl-C: the client let go of an operation that goes on in the daemon.
    Detached,
    /// `doctor`: the exit code the report's summary gives (0, 2, 3 or 4).
    Report(u8),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            // SPEC §9 counts "verify found corruption" as an environment problem
            // (the Python tool's verify exits 3 for it); drift left after
            // `reconcile --check` is the same kind of finding.
            Exit::Problems => ErrorKind::Environment.exit_code(),
            // The shell's convention for "ended by SIGINT".
            Exit::Detached => 130,
            Exit::Report(code) => i32::from(code),
        }
    }
}

/// Run the command line against the daemon at `--socket`.
pub async fn run(cli: Cli, out: Output) -> Result<Exit, WireError> {
    let client = connect(&cli.socket).await?;
    match cli.command {
        Command::Backup(cmd) => backup::run(&client, out, cmd).await,
        Command::Op(cmd) => op::run(&client, out, cmd).await,
        Command::Daemon(cmd) => daemon::run(&client, out, cmd).await,
        Command::Remote(cmd) => remote::run(&client, out, cmd).await,
        Command::Schedule(cmd) => schedule::run(&client, out, cmd).await,
        Command::Doctor(args) => doctor::run(&client, out, args).await,
    }
}

/// What `--detach` prints: the op id, and how to follow it.
fn show_started(out: Output, op_id: &str) -> Exit {
    out.show(&json!({ "op_id": op_id }), || {
        let op_id = crate::render::esc(op_id);
        format!("started operation {op_id}\nfollow it with: abssctl op watch {op_id}\n")
    });
    Exit::Success
}

/// Prints a finished operation's answer and says how the command ends.
type Present = fn(Output, Finished) -> Result<Exit, WireError>;

/// Follow a started operation to its end, then `present` its answer.
async fn follow_and_show(
    client: &Client,
    out: Output,
    op_id: &str,
    interrupt: &mut Interrupt,
    present: Present,
) -> Result<Exit, WireError> {
    let mut view = ProgressView::new(out);
    match follow(client, op_id, &mut view, interrupt).await? {
        Ended::Finished(finished) => present(out, finished),
        Ended::Failed(err) => Err(err),
        Ended::Detached => {
            eprintln!("{}", crate::render::esc(&detached_message(op_id)));
            if out.json {
                out.document(&json!({ "op_id": op_id, "detached": true }));
            }
            Ok(Exit::Detached)
        }
    }
}

/// Follow a started operation that sums up its work (a backup job, a push)
/// to its end, as [`follow_and_show`] does. When it fails, its error's
/// detail carries the same summary (a `T`): that is printed first, with
/// `summary`, and the error names the operation, as a blocking call's error
/// has it (where to look in the operations log, and `abssctl op watch`).
async fn follow_summed_up<T: DeserializeOwned>(
    client: &Client,
    out: Output,
    op_id: &str,
    interrupt: &mut Interrupt,
    present: Present,
    summary: fn(&T) -> String,
) -> Result<Exit, WireError> {
    match follow_and_show(client, out, op_id, interrupt, present).await {
        Err(mut err) => {
            let carried = err
                .detail
                .as_ref()
                .and_then(|d| d.get("summary"))
                .and_then(|s| serde_json::from_value::<T>(s.clone()).ok());
            if let Some(carried) = carried {
                if !out.json {
                    out.text(&summary(&carried));
                }
                if let Some(Value::Object(detail)) = err.detail.as_mut() {
                    detail
                        .entry("op_id")
                        .or_insert_with(|| Value::String(op_id.to_owned()));
                }
            }
            Err(err)
        }
        ended => ended,
    }
}

/// Present a finished operation of any command the way that command does
/// (`op watch`).
fn show_finished(out: Output, finished: Finished) -> Result<Exit, WireError> {
    // `backup create` in the events (the method spelling names it too).
    match finished.command {
        Some(abssd_proto::Command::BackupCreate) => backup::show_created(out, finished),
        Some(abssd_proto::Command::BackupVerify) => backup::show_verified(out, finished),
        Some(abssd_proto::Command::BackupReconcile) => backup::show_reconciled(out, finished),
        Some(abssd_proto::Command::BackupRestore) => restore::show_restored(out, finished),
        Some(abssd_proto::Command::BackupPrune) => prune::show_pruned(out, finished),
        Some(abssd_proto::Command::BackupRun) => run::show_ran(out, finished),
        Some(abssd_proto::Command::BackupPush) => push::show_pushed(out, finished),
        Some(abssd_proto::Command::BackupPull) => pull::show_pulled(out, finished),
        _ => {
            let doc = json!({ "op_id": finished.op_id, "plan": finished.plan, "result": finished.result });
            out.show(&doc, || {
                let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
                format!(
                    "operation {} finished\n{text}\n",
                    crate::render::esc(&finished.op_id)
                )
            });
            Ok(Exit::Success)
        }
    }
}

/// Ask the operator `question` and a y/N `prompt` on the terminal, before a
/// command that changes something it cannot undo is requested. Without a
/// terminal the answer is `no_terminal`; a "no" is `cancelled`. Either is a
/// `validation` error (exit 2) sent before anything was requested.
async fn ask_operator(
    question: String,
    prompt: String,
    no_terminal: String,
    cancelled: &str,
) -> Result<(), WireError> {
    use std::io::{self, IsTerminal};
    if !(io::stdin().is_terminal() && io::stderr().is_terminal()) {
        return Err(WireError::new(ErrorKind::Validation, no_terminal));
    }
    // Off the runtime's only thread: the connection keeps being served meanwhile.
    let answer = tokio::task::spawn_blocking(move || {
        ask(
            &question,
            &prompt,
            &mut io::stdin().lock(),
            &mut io::stderr(),
        )
    })
    .await
    .map_err(|err| WireError::new(ErrorKind::Internal, format!("the prompt failed: {err}")))?
    .map_err(|err| {
        WireError::new(
            ErrorKind::Environment,
            format!("cannot read the answer from the terminal: {err}"),
        )
    })?;
    if answer {
        Ok(())
    } else {
        Err(WireError::new(ErrorKind::Validation, cancelled))
    }
}

/// Write `question` and `prompt [y/N] ` to `output`, read one line from
/// `input`: `y` or `yes` (any case) agrees; anything else, or end of input,
/// declines.
fn ask(
    question: &str,
    prompt: &str,
    input: &mut impl std::io::BufRead,
    output: &mut impl std::io::Write,
) -> std::io::Result<bool> {
    write!(output, "{question}{prompt} [y/N] ")?;
    output.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Read a typed answer out of an operation's JSON result.
fn decode<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, WireError> {
    serde_json::from_value(value).map_err(|err| {
        WireError::new(
            ErrorKind::Internal,
            format!(
                "abssd sent a {what} this abssctl cannot read ({err}); are both the same version?"
            ),
        )
    })
}

/// A path flag (`--out-dir`, `--dest`) as the daemon needs it: absolute (its
/// working directory is not ours) and UTF-8 (it travels in JSON).
fn absolute_utf8(flag: &str, path: &Path) -> Result<String, WireError> {
    let absolute = std::path::absolute(path).map_err(|err| {
        WireError::new(
            ErrorKind::Validation,
            format!("{flag} {}: {err}", path.display()),
        )
    })?;
    absolute.into_os_string().into_string().map_err(|raw| {
        WireError::new(
            ErrorKind::Validation,
            format!("{flag} {} is not valid UTF-8", Path::new(&raw).display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(typed: &str) -> (bool, String) {
        let mut shown = Vec::new();
        let agreed = ask(
            "Q?\n",
            "Restore instance alpha now?",
            &mut typed.as_bytes(),
            &mut shown,
        )
        .unwrap();
        (agreed, String::from_utf8(shown).unwrap())
    }

    #[test]
    fn only_y_or_yes_agrees() {
        for typed in ["y\n", "Y\n", "yes\n", " YES \n", "y"] {
            assert!(answer(typed).0, "{typed:?}");
        }
        for typed in ["", "\n", "n\n", "no\n", "yep\n", "sure\n", "y es\n"] {
            assert!(!answer(typed).0, "{typed:?}");
        }
    }

    #[test]
    fn the_prompt_follows_the_question() {
        assert_eq!(answer("n\n").1, "Q?\nRestore instance alpha now? [y/N] ");
    }

    #[test]
    fn path_flags_are_made_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let got = absolute_utf8("--out-dir", Path::new("backups/x")).unwrap();
        assert_eq!(Path::new(&got), cwd.join("backups/x"));
        assert_eq!(
            absolute_utf8("--dest", Path::new("/srv/restores/x")).unwrap(),
            "/srv/restores/x"
        );
    }
}
