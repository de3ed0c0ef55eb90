//! `abssctl backup restore`: ask abssd for the plan, confirm a live restore with the
//! operator, then start the restore and follow it.
//!
//! The plan comes from a dry run, which changes nothing, so the question shows what
//! the daemon will really do (the unit's state, where the pre-restore backup goes).
//! Only a confirmed request carries `yes: true`; abssd refuses a live restore
//! without it, so a request that skipped the question could not change anything
//! either.

use std::io::{self, BufRead, IsTerminal, Write};

use abssd_proto::methods::BackupRestore;
use abssd_proto::methods::call::call;
use abssd_proto::{ErrorKind, RestoreMode, RestoreParams, RestorePlan, RestoreResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

use super::{Exit, absolute_utf8, decode, follow_and_show, show_started};
use crate::args::RestoreArgs;
use crate::follow::{Finished, Interrupt};
use crate::render::{self, Output};

/// Run `backup restore`.
pub async fn run(client: &Client, out: Output, args: RestoreArgs) -> Result<Exit, WireError> {
    let mut params = RestoreParams {
        id: args.id.clone(),
        instance: args.instance.clone(),
        dest: args
            .dest
            .as_deref()
            .map(|dest| absolute_utf8("--dest", dest))
            .transpose()?,
        dry_run: true,
        no_pre_backup: args.no_pre_backup,
        backup_message: args.backup_message.clone(),
        restart: args.restart(),
        data_only: args.data_only,
        verify_deep: args.verify_deep,
        yes: false,
        // The dry run answers with its plan at once.
        detach: false,
    };
    let answer = call::<BackupRestore>(client, &params).await?;
    let plan = answer.plan.ok_or_else(|| {
        WireError::new(
            ErrorKind::Internal,
            "abssd answered a dry run without a plan",
        )
    })?;
    if args.dry_run {
        out.show(
            &json!({ "op_id": answer.op_id, "plan": plan, "result": Value::Null }),
            || render::restore::plan(&plan),
        );
        return Ok(Exit::Success);
    }
    if plan.mode == RestoreMode::Live && !args.yes {
        confirm(&plan, args.no_pre_backup).await?;
    }
    // Caught from here on: Ctrl-C detaches instead of leaving the op id unknown.
    let mut interrupt = Interrupt::install();
    params.dry_run = false;
    params.yes = true;
    // Progress comes from following the operation.
    params.detach = true;
    let started = call::<BackupRestore>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    follow_and_show(client, out, &started.op_id, &mut interrupt, show_restored).await
}

/// Ask the operator on the terminal; without one, refuse. Either refusal is a
/// `validation` error (exit 2) sent before the restore was requested.
async fn confirm(plan: &RestorePlan, no_pre_backup: bool) -> Result<(), WireError> {
    if !(io::stdin().is_terminal() && io::stderr().is_terminal()) {
        return Err(WireError::new(
            ErrorKind::Validation,
            format!(
                "restoring backup {} replaces the data of instance {} in {}; there is no \
                 terminal to ask for confirmation, so pass --yes (or --dry-run to see the \
                 plan); nothing changed",
                plan.id, plan.instance, plan.target
            ),
        ));
    }
    let question = render::restore::confirmation(plan, no_pre_backup);
    let instance = plan.instance.clone();
    // Off the runtime's only thread: the connection keeps being served meanwhile.
    let answer = tokio::task::spawn_blocking(move || {
        ask(
            &question,
            &instance,
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
        Err(WireError::new(
            ErrorKind::Validation,
            "restore cancelled; nothing changed",
        ))
    }
}

/// Write `question` and a y/N prompt to `output`, read one line from `input`:
/// `y` or `yes` (any case) agrees; anything else, or end of input, declines.
fn ask(
    question: &str,
    instance: &str,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> io::Result<bool> {
    write!(output, "{question}Restore instance {instance} now? [y/N] ")?;
    output.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Print a finished restore: `{op_id, plan, result}` or a summary.
pub fn show_restored(out: Output, finished: Finished) -> Result<Exit, WireError> {
    if out.json {
        out.document(
            &json!({ "op_id": finished.op_id, "plan": finished.plan, "result": finished.result }),
        );
    } else {
        let result: RestoreResult = decode("restore result", finished.result)?;
        // The unit's name is only in the plan; the summary does without it.
        let plan: Option<RestorePlan> = serde_json::from_value(finished.plan).ok();
        let unit = plan.as_ref().and_then(|p| p.unit.as_ref());
        out.text(&render::restore::restored(
            &result,
            unit.map(|u| u.name.as_str()),
        ));
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(typed: &str) -> (bool, String) {
        let mut shown = Vec::new();
        let agreed = ask("Q?\n", "alpha", &mut typed.as_bytes(), &mut shown).unwrap();
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
}
