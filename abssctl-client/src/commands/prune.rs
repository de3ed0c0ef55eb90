//! `abssctl backup prune`: ask abssd for the plan (every backup, keep or
//! remove, and why), confirm it with the operator, then start the prune and
//! follow it.
//!
//! As with restore, the plan comes from a dry run, and only a confirmed
//! request carries `yes: true`: abssd refuses a prune without it.

use abssd_proto::methods::BackupPrune;
use abssd_proto::methods::call::call;
use abssd_proto::{ErrorKind, PruneParams, PrunePlan, PruneResult, WireError};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

use super::{Exit, ask_operator, decode, follow_and_show, show_started};
use crate::args::PruneArgs;
use crate::follow::{Finished, Interrupt};
use crate::render::{self, Output, human_size};

/// Run `backup prune`.
pub async fn run(client: &Client, out: Output, args: PruneArgs) -> Result<Exit, WireError> {
    let mut params = PruneParams {
        instance: args.instance.clone(),
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within.clone(),
        keep: args.keep,
        older_than: args.older_than,
        dry_run: true,
        yes: false,
        purge_index: args.purge_index,
        expect_digest: None,
        // The dry run answers with its plan at once.
        detach: false,
        remote: args.remote.clone(),
    };
    let answer = call::<BackupPrune>(client, &params).await?;
    let plan = answer.plan.ok_or_else(|| {
        WireError::new(
            ErrorKind::Internal,
            "abssd answered a dry run without a plan",
        )
    })?;
    let nothing_to_do = plan.remove == 0 && plan.purge.is_empty();
    if args.dry_run || nothing_to_do {
        out.show(
            &json!({ "op_id": answer.op_id, "plan": plan, "result": Value::Null }),
            || render::prune::plan(&plan, args.dry_run),
        );
        return Ok(Exit::Success);
    }
    if !args.yes {
        confirm(&plan).await?;
        // What was confirmed, and nothing else: abssd refuses if its plan
        // now differs. (--yes accepts the policy's plan at the time it runs.)
        params.expect_digest = Some(plan.digest.clone());
    }
    // Caught from here on: Ctrl-C detaches instead of leaving the op id unknown.
    let mut interrupt = Interrupt::install();
    params.dry_run = false;
    params.yes = true;
    params.detach = true;
    let started = call::<BackupPrune>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    follow_and_show(client, out, &started.op_id, &mut interrupt, show_pruned).await
}

async fn confirm(plan: &PrunePlan) -> Result<(), WireError> {
    let what = format!(
        "{} backup{} ({})",
        plan.remove,
        if plan.remove == 1 { "" } else { "s" },
        human_size(plan.freed_bytes)
    );
    let no_terminal = format!(
        "this prune removes {what}; there is no terminal to ask for confirmation, so pass \
         --yes (or --dry-run to see the plan); nothing changed"
    );
    ask_operator(
        render::prune::plan(plan, false),
        format!("Remove {what} now?"),
        no_terminal,
        "prune cancelled; nothing changed",
    )
    .await
}

/// Print a finished prune: `{op_id, plan, result}` or a summary.
pub fn show_pruned(out: Output, finished: Finished) -> Result<Exit, WireError> {
    if out.json {
        out.document(
            &json!({ "op_id": finished.op_id, "plan": finished.plan, "result": finished.result }),
        );
    }
    let result: PruneResult = decode("prune result", finished.result)?;
    if !out.json {
        out.text(&render::prune::pruned(&result));
    }
    // A backup that should have gone and could not needs a person (exit 3).
    Ok(if result.has_problems() {
        Exit::Problems
    } else {
        Exit::Success
    })
}
