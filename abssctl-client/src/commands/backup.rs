//! `abssctl backup create | list | show | protect | unprotect | verify |
//! reconcile`; `restore` is in
//! [`super::restore`].

use abssd_proto::methods::call::call;
use abssd_proto::methods::{
    BackupCreate, BackupList, BackupProtect, BackupReconcile, BackupShow, BackupUnprotect,
    BackupVerify,
};
use abssd_proto::{
    CreateParams, CreateResult, ErrorKind, ListParams, ListResult, ProtectParams, ReconcileParams,
    ReconcilePlan, ReconcileResult, ShowParams, VerifyParams, VerifyResult, WireError,
};
use jsonrpsee::core::client::Client;
use serde_json::{Value, json};

use super::{Exit, absolute_utf8, decode, follow_and_show, show_started};
use crate::args::{BackupCommand, CreateArgs, ListArgs, ReconcileArgs, VerifyArgs, split_labels};
use crate::follow::{Finished, Interrupt};
use crate::render::{self, Output};

/// Run one `backup` verb.
pub async fn run(client: &Client, out: Output, cmd: BackupCommand) -> Result<Exit, WireError> {
    match cmd {
        BackupCommand::Create(args) => create(client, out, args).await,
        BackupCommand::List(args) => list(client, out, args).await,
        BackupCommand::Show(args) => {
            let answer = call::<BackupShow>(client, &ShowParams { id: args.id }).await?;
            out.show(&answer, || render::backup::detail(&answer.backup));
            Ok(Exit::Success)
        }
        BackupCommand::Protect(args) => {
            let answer = call::<BackupProtect>(client, &ProtectParams { id: args.id }).await?;
            show_protected(out, &answer.op_id, answer.result)
        }
        BackupCommand::Unprotect(args) => {
            let answer = call::<BackupUnprotect>(client, &ProtectParams { id: args.id }).await?;
            show_protected(out, &answer.op_id, answer.result)
        }
        BackupCommand::Verify(args) => verify(client, out, args).await,
        BackupCommand::Pull(args) => super::pull::run(client, out, args).await,
        BackupCommand::Reconcile(args) => reconcile(client, out, args).await,
        BackupCommand::Restore(args) => super::restore::run(client, out, args).await,
        BackupCommand::Prune(args) => super::prune::run(client, out, args).await,
        BackupCommand::Run(args) => super::run::run(client, out, args).await,
        BackupCommand::Push(args) => super::push::run(client, out, args).await,
    }
}

/// Rows the table shows when no `--limit` is given.
const TABLE_PAGE: usize = 50;

/// Entries a call asks for when every page is read (`--all`, `--json`):
/// small enough that the daemon parses ~6 MB at a time, big enough that
/// 100 000 backups take 50 calls.
const ALL_PAGE: usize = 2000;

/// `backup list`: the newest page for people (with how to see more); with
/// `--json` every match unless a page was asked for (`--limit`, `--cursor`);
/// `--all` reads every page.
async fn list(client: &Client, out: Output, args: ListArgs) -> Result<Exit, WireError> {
    let filters = ListParams {
        instance: args.instance.clone(),
        status: args.status.clone(),
        label: args.label.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        ..Default::default()
    };
    let paged = args.limit.is_some() || args.cursor.is_some();
    if args.all || (out.json && !paged) {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let params = ListParams {
                limit: Some(ALL_PAGE),
                cursor: cursor.take(),
                ..filters.clone()
            };
            let page = call::<BackupList>(client, &params).await?;
            all.extend(page.backups);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let answer = ListResult {
            total: all.len() as u64,
            backups: all,
            next_cursor: None,
        };
        out.show(&answer, || render::backup::list(&answer.backups));
        return Ok(Exit::Success);
    }
    let limit = args
        .limit
        .map(usize::from)
        .or((!out.json).then_some(TABLE_PAGE));
    let params = ListParams {
        limit,
        cursor: args.cursor.clone(),
        ..filters
    };
    let answer = call::<BackupList>(client, &params).await?;
    out.show(&answer, || {
        let mut text = render::backup::list(&answer.backups);
        if let Some(next) = &answer.next_cursor {
            let limit = args
                .limit
                .map(|n| format!(" --limit={n}"))
                .unwrap_or_default();
            text.push_str(&render::backup::more(
                answer.backups.len(),
                answer.total,
                args.cursor.is_some(),
                (&list_command(&args), &limit),
                next,
            ));
        }
        text
    });
    Ok(Exit::Success)
}

/// The `backup list` command line of these filters, to print with the hint
/// (`--flag=value`, so no value reads as a flag).
fn list_command(args: &ListArgs) -> String {
    let mut line = String::from("abssctl backup list");
    let flags = [
        ("--instance", &args.instance),
        ("--status", &args.status),
        ("--label", &args.label),
        ("--since", &args.since),
        ("--until", &args.until),
    ];
    for (flag, value) in flags {
        if let Some(v) = value {
            line.push_str(&format!(" {}", render::shell_word(&format!("{flag}={v}"))));
        }
    }
    line
}

async fn create(client: &Client, out: Output, args: CreateArgs) -> Result<Exit, WireError> {
    let params = CreateParams {
        instance: args.instance,
        message: args.message,
        labels: split_labels(&args.labels),
        data_only: args.data_only,
        out_dir: args
            .out_dir
            .as_deref()
            .map(|dir| absolute_utf8("--out-dir", dir))
            .transpose()?,
        compression: args.compression.into(),
        compression_level: args.compression_level,
        consistency: args.consistency.map(Into::into),
        dry_run: args.dry_run,
        // Progress comes from following the operation; only a dry run (which
        // answers with its plan at once) blocks.
        detach: !args.dry_run,
    };
    if args.dry_run {
        let answer = call::<BackupCreate>(client, &params).await?;
        let plan = answer.plan.ok_or_else(|| {
            WireError::new(
                ErrorKind::Internal,
                "abssd answered a dry run without a plan",
            )
        })?;
        out.show(
            &json!({ "op_id": answer.op_id, "plan": plan, "result": Value::Null }),
            || render::backup::plan(&plan),
        );
        return Ok(Exit::Success);
    }
    let mut interrupt = Interrupt::install();
    let started = call::<BackupCreate>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    follow_and_show(client, out, &started.op_id, &mut interrupt, show_created).await
}

/// Print a finished create: `{op_id, plan, result}` or a summary.
pub fn show_created(out: Output, finished: Finished) -> Result<Exit, WireError> {
    if out.json {
        out.document(
            &json!({ "op_id": finished.op_id, "plan": finished.plan, "result": finished.result }),
        );
    } else {
        let result: CreateResult = decode("backup result", finished.result)?;
        out.text(&render::backup::created(&result));
    }
    Ok(Exit::Success)
}

/// Print a protect / unprotect: `{op_id, result}` or one line.
fn show_protected(
    out: Output,
    op_id: &str,
    result: Option<abssd_proto::ProtectResult>,
) -> Result<Exit, WireError> {
    let result = result
        .ok_or_else(|| WireError::new(ErrorKind::Internal, "abssd answered without a result"))?;
    out.show(&json!({ "op_id": op_id, "result": result }), || {
        render::backup::protected(&result)
    });
    Ok(Exit::Success)
}

async fn verify(client: &Client, out: Output, args: VerifyArgs) -> Result<Exit, WireError> {
    let params = VerifyParams {
        id: args.id,
        all: args.all,
        deep: args.deep,
        detach: true,
    };
    let mut interrupt = Interrupt::install();
    let started = call::<BackupVerify>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    follow_and_show(client, out, &started.op_id, &mut interrupt, show_verified).await
}

/// Print a finished verify: `{op_id, results}` or a table; [`Exit::Problems`] when
/// any archive is not `available`.
pub fn show_verified(out: Output, finished: Finished) -> Result<Exit, WireError> {
    let results: VerifyResult = decode("verify result", finished.result.clone())?;
    if out.json {
        let items = finished
            .result
            .get("results")
            .cloned()
            .unwrap_or(Value::Null);
        out.document(&json!({ "op_id": finished.op_id, "results": items }));
    } else {
        out.text(&render::backup::verified(&results));
    }
    Ok(if results.has_problems() {
        Exit::Problems
    } else {
        Exit::Success
    })
}

async fn reconcile(client: &Client, out: Output, args: ReconcileArgs) -> Result<Exit, WireError> {
    let params = ReconcileParams {
        instance: args.instance,
        apply: args.apply,
        adopt: args.adopt,
        verify: args.verify,
        deep: args.deep,
        detach: true,
        remote: args.remote,
    };
    let mut interrupt = Interrupt::install();
    let started = call::<BackupReconcile>(client, &params).await?;
    if args.detach {
        return Ok(show_started(out, &started.op_id));
    }
    let present = if args.check {
        show_reconciled_check
    } else {
        show_reconciled
    };
    follow_and_show(client, out, &started.op_id, &mut interrupt, present).await
}

/// Print a finished reconcile; a reconcile that ran succeeds, drift or not (the
/// Python tool's exit code: scripts beside it expect 0).
pub fn show_reconciled(out: Output, finished: Finished) -> Result<Exit, WireError> {
    present_reconciled(out, finished).map(|_| Exit::Success)
}

/// `reconcile --check`: print it, and [`Exit::Problems`] when findings are left
/// unfixed.
fn show_reconciled_check(out: Output, finished: Finished) -> Result<Exit, WireError> {
    let unresolved = present_reconciled(out, finished)?;
    Ok(if unresolved > 0 {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// Print a finished reconcile: the result's categories and counts with `op_id`
/// added, or the grouped tables; the number of findings left unfixed.
fn present_reconciled(out: Output, finished: Finished) -> Result<u64, WireError> {
    let result: ReconcileResult = decode("reconcile result", finished.result.clone())?;
    if out.json {
        // The result's own keys, so fields newer than this client are kept.
        let mut doc = serde_json::Map::new();
        doc.insert("op_id".to_owned(), Value::String(finished.op_id));
        if let Value::Object(fields) = finished.result {
            doc.extend(fields.into_iter().filter(|(key, _)| key != "op_id"));
        }
        out.document(&doc);
    } else {
        // The plan only adds the "compared ..." line; an unreadable one is left out.
        let plan = serde_json::from_value::<ReconcilePlan>(finished.plan).ok();
        out.text(&render::reconcile::reconciled(&result, plan.as_ref()));
    }
    Ok(result.unresolved)
}
