//! `abssctl backup restore`: ask abssd for the plan, confirm a live restore with the
//! operator, then start the restore and follow it.
//!
//! The plan comes from a dry run, which changes nothing, so the question shows what
//! the daemon will really do (the unit's state, where the pre-restore backup goes).
//! Only a confirmed request carries `yes: true`; abssd refuses a live restore
//! without it, so a request that skipped the question could not change anything
//! either.

use abssd_proto::methods::BackupRestore;
use abssd_proto::methods::call::call;
use abssd_proto::{ErrorKind, RestoreMode, RestoreParams, RestorePlan, RestoreResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

use super::{Exit, absolute_utf8, ask_operator, decode, follow_and_show, show_started};
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
        pull: args.pull,
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
        // The question says the archive is pulled first: a yes agrees to it.
        confirm(&plan, args.no_pre_backup).await?;
        params.pull = true;
    } else if plan.pull.is_some() && !args.pull {
        confirm_pull(&plan).await?;
        params.pull = true;
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

/// Ask the operator on the terminal; without one, refuse (see [`ask_operator`]).
async fn confirm(plan: &RestorePlan, no_pre_backup: bool) -> Result<(), WireError> {
    let pull = match &plan.pull {
        Some(src) => format!(
            " (and --pull: the archive is not here and is pulled from remote {} first)",
            src.remote
        ),
        None => String::new(),
    };
    let no_terminal = format!(
        "restoring backup {} replaces the data of instance {} in {}; there is no \
         terminal to ask for confirmation, so pass --yes{pull} (or --dry-run to see the \
         plan); nothing changed",
        plan.id, plan.instance, plan.target
    );
    let question = render::restore::confirmation(plan, no_pre_backup);
    let prompt = format!("Restore instance {} now?", plan.instance);
    ask_operator(
        question,
        prompt,
        no_terminal,
        "restore cancelled; nothing changed",
    )
    .await
}

/// A restore that needs no other confirmation (--yes, --dest) of an archive
/// that is missing here: ask before pulling it; without a terminal, refuse
/// with the flag to pass.
async fn confirm_pull(plan: &RestorePlan) -> Result<(), WireError> {
    let Some(src) = &plan.pull else {
        return Ok(());
    };
    let no_terminal = format!(
        "the archive of backup {} is not here, but remote {} holds a copy: pass --pull to pull it first (or run abssctl backup pull {}); nothing changed",
        plan.id, src.remote, plan.id
    );
    let question = format!(
        "Restore backup {}. This will:\n  - {}\n",
        plan.id,
        render::restore::pull_item(plan, src)
    );
    ask_operator(
        question,
        "Pull it and restore?".to_owned(),
        no_terminal,
        "restore cancelled; nothing changed",
    )
    .await
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
