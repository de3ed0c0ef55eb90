//! `backup list` and `backup show`: read-only views of the index, through the
//! daemon's [`crate::index::Cache`] (parsed again only when the file changed;
//! it is replaced atomically, so a read never sees half a file).

use abssd_proto::{ListParams, ListResult, ShowParams, ShowResult};

use std::sync::Arc;

use crate::error::Result;
use crate::ops::Ctx;
use crate::registry::validate_name;

/// Entries newest first, optionally for one instance.
pub async fn list(ctx: &Ctx, params: &ListParams) -> Result<ListResult> {
    if let Some(name) = &params.instance {
        validate_name(name)?;
    }
    let (file, cache) = (ctx.config.layout.index_file.clone(), Arc::clone(&ctx.index));
    let index = tokio::task::spawn_blocking(move || cache.read(&file)).await??;
    Ok(ListResult {
        backups: index.newest_first(params.instance.as_deref()),
    })
}

/// One entry.
pub async fn show(ctx: &Ctx, params: &ShowParams) -> Result<ShowResult> {
    let (file, cache) = (ctx.config.layout.index_file.clone(), Arc::clone(&ctx.index));
    let index = tokio::task::spawn_blocking(move || cache.read(&file)).await??;
    let backup = index
        .require(&params.id, &ctx.config.layout.index_file)?
        .clone();
    Ok(ShowResult { backup })
}
