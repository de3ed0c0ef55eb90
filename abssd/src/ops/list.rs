//! `backup list` and `backup show`: read-only views of the index, through the
//! daemon's [`crate::index::Cache`] (parsed and sorted again only when the
//! file changed; it is replaced atomically, so a read never sees half a file).

use abssd_proto::limits::{LIST_PAGE, LIST_PAGE_BYTES};
use abssd_proto::{ListParams, ListResult, ShowParams, ShowResult};

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::{Cursor, Filter};
use crate::ops::Ctx;
use crate::registry::validate_name;

/// One page of the entries the filters match, newest first.
pub async fn list(ctx: &Ctx, params: &ListParams) -> Result<ListResult> {
    if let Some(name) = &params.instance {
        validate_name(name)?;
    }
    let filter = Filter {
        instance: params.instance.clone(),
        status: params.status.clone(),
        label: params.label.clone(),
        since: params
            .since
            .as_deref()
            .map(|t| time("since", t))
            .transpose()?,
        until: params
            .until
            .as_deref()
            .map(|t| time("until", t))
            .transpose()?,
    };
    let after = params.cursor.as_deref().map(Cursor::parse).transpose()?;
    let limit = params.limit.unwrap_or(LIST_PAGE);
    let (file, cache) = (ctx.config.layout.index_file.clone(), Arc::clone(&ctx.index));
    tokio::task::spawn_blocking(move || {
        let page = cache.page(&file, &filter, after.as_ref(), limit, LIST_PAGE_BYTES)?;
        // A big page parsed thousands of entries: what that freed goes back
        // now (the answer's own buffer goes back after the next operation).
        if page.entries.len() > 1000 {
            crate::memory::release_freed();
        }
        Ok(ListResult {
            backups: page.entries,
            total: page.total,
            next_cursor: page.next.map(|c| c.to_string()),
        })
    })
    .await?
}

/// `since`/`until`: an RFC 3339 timestamp, or a date meaning its midnight in
/// the host's time zone (where prune's calendar rules count days too).
fn time(field: &str, text: &str) -> Result<jiff::Timestamp> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| {
            jiff::tz::TimeZone::system()
                .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                .ok()
        })
        .ok_or_else(|| {
            Error::validation(format!(
                "{field} \"{}\" is neither a date (2026-12-01) nor an RFC 3339 time \
                 (2026-12-01T08:00:00Z)",
                crate::error::shown(text)
            ))
        })
}

/// One entry.
pub async fn show(ctx: &Ctx, params: &ShowParams) -> Result<ShowResult> {
    let (file, cache) = (ctx.config.layout.index_file.clone(), Arc::clone(&ctx.index));
    let id = params.id.clone();
    crate::index::check_id(&id)?;
    let found = tokio::task::spawn_blocking(move || cache.get(&file, &id)).await??;
    let backup =
        found.ok_or_else(|| crate::index::not_found(&params.id, &ctx.config.layout.index_file))?;
    Ok(ShowResult { backup })
}
