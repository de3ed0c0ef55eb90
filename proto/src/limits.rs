//! How long each string field of a request may be, checked by the daemon before a
//! call becomes an operation (docs/API.md "Limits"). A request that breaks one is
//! refused with a validation error naming the field and its limit, and costs the
//! daemon nothing more than its parse.
//!
//! Lengths are in bytes of UTF-8. The values leave room for every legitimate use:
//! an instance name is at most 64 bytes anyway (`[a-z0-9][a-z0-9-]*`), a backup id
//! is `YYYYMMDD-HHMMSS-<instance>-<6 hex>`, a path is at most `PATH_MAX`.

use crate::error::{ErrorKind, WireError};

/// Instance names (`instance`).
pub const NAME: usize = 64;
/// Backup ids and operation ids (`id`, `op_id`, `before`).
pub const ID: usize = 128;
/// Free text: `message`, `backup_message`.
pub const MESSAGE: usize = 1024;
/// One label.
pub const LABEL: usize = 100;
/// Labels on one backup.
pub const LABELS: usize = 32;
/// Paths (`out_dir`, `dest`): Linux's `PATH_MAX`.
pub const PATH: usize = 4096;
/// `keep_within`: a restic duration such as `2y5m7d3h`.
pub const KEEP_WITHIN: usize = 32;
/// `expect_digest`: a sha256 in hex.
pub const DIGEST: usize = 64;
/// Requests in one JSON-RPC batch.
pub const BATCH: u32 = 16;
/// `backup.prune`: the most backups a plan or a result lists one by one
/// (their counts cover them all).
pub const PLAN_ROWS: usize = 1000;
/// At most [`PLAN_ROWS`] of `items`, in their order: those `first` picks
/// before the others, when not all fit.
pub fn rows<T>(items: Vec<T>, first: impl Fn(&T) -> bool) -> Vec<T> {
    if items.len() <= PLAN_ROWS {
        return items;
    }
    let firsts = items.iter().filter(|i| first(i)).count().min(PLAN_ROWS);
    let (mut taken_first, mut taken_other) = (0, 0);
    items
        .into_iter()
        .filter(|i| {
            let (n, cap) = if first(i) {
                (&mut taken_first, firsts)
            } else {
                (&mut taken_other, PLAN_ROWS - firsts)
            };
            *n += 1;
            *n <= cap
        })
        .collect()
}

/// `backup.list`: entries per page when `limit` is not given: all of most
/// indexes, as a list answered before it paged.
pub const LIST_PAGE: usize = 10_000;
/// `backup.list`: the largest `limit`.
pub const LIST_PAGE_MAX: usize = 10_000;
/// `backup.list`: a page ends before its entries' JSON grows past this many
/// bytes (a page always holds at least one entry).
pub const LIST_PAGE_BYTES: usize = 8 << 20;
/// `backup.list`: `since`, `until` (a timestamp or a date).
pub const TIME: usize = 64;
/// `backup.list`: `cursor` (a timestamp, an id of up to 2048 bytes in hex,
/// and a count).
pub const CURSOR: usize = TIME + 1 + 2 * 2048 + 1 + 10;
/// `backup.list`: `status`.
pub const STATUS: usize = 32;
/// `op.list`: operations per page when `limit` is not given.
pub const OP_PAGE: usize = 100;
/// `op.list`: the largest `limit`.
pub const OP_PAGE_MAX: usize = 1000;

/// A request's parameters whose fields have documented length limits.
pub trait Bounded {
    /// The first field over its limit, as a validation error.
    fn check(&self) -> Result<(), WireError>;
}

/// `value` of `field` is at most `max` bytes.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), WireError> {
    if value.len() <= max {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorKind::Validation,
            format!(
                "{field} is {} bytes long; the limit is {max} bytes",
                value.len()
            ),
        ))
    }
}

/// [`text`] for an optional field.
pub fn opt(field: &str, value: Option<&String>, max: usize) -> Result<(), WireError> {
    value.map_or(Ok(()), |v| text(field, v, max))
}

/// A list of at most `count` strings of at most `max` bytes each.
pub fn list(field: &str, values: &[String], count: usize, max: usize) -> Result<(), WireError> {
    if values.len() > count {
        return Err(WireError::new(
            ErrorKind::Validation,
            format!("{field} has {} items; the limit is {count}", values.len()),
        ));
    }
    values.iter().try_for_each(|v| text(field, v, max))
}

use crate::backup::{CreateParams, ListParams, ProtectParams, ShowParams, VerifyParams};
use crate::op::{NoParams, OpIdParams, OpListParams};
use crate::prune::PruneParams;
use crate::reconcile::ReconcileParams;
use crate::restore::RestoreParams;
use crate::run::RunParams;

impl Bounded for NoParams {
    fn check(&self) -> Result<(), WireError> {
        Ok(())
    }
}

impl Bounded for crate::health::HealthParams {
    fn check(&self) -> Result<(), WireError> {
        opt("instance", self.instance.as_ref(), NAME)
    }
}

impl Bounded for ListParams {
    fn check(&self) -> Result<(), WireError> {
        opt("instance", self.instance.as_ref(), NAME)?;
        opt("status", self.status.as_ref(), STATUS)?;
        opt("label", self.label.as_ref(), LABEL)?;
        opt("since", self.since.as_ref(), TIME)?;
        opt("until", self.until.as_ref(), TIME)?;
        opt("cursor", self.cursor.as_ref(), CURSOR)?;
        page("backups", self.limit, LIST_PAGE_MAX)
    }
}

impl Bounded for ShowParams {
    fn check(&self) -> Result<(), WireError> {
        text("id", &self.id, ID)
    }
}

impl Bounded for ProtectParams {
    fn check(&self) -> Result<(), WireError> {
        text("id", &self.id, ID)
    }
}

impl Bounded for CreateParams {
    fn check(&self) -> Result<(), WireError> {
        text("instance", &self.instance, NAME)?;
        opt("message", self.message.as_ref(), MESSAGE)?;
        list("labels", &self.labels, LABELS, LABEL)?;
        opt("out_dir", self.out_dir.as_ref(), PATH)
    }
}

impl Bounded for RestoreParams {
    fn check(&self) -> Result<(), WireError> {
        text("id", &self.id, ID)?;
        opt("instance", self.instance.as_ref(), NAME)?;
        opt("dest", self.dest.as_ref(), PATH)?;
        opt("backup_message", self.backup_message.as_ref(), MESSAGE)
    }
}

impl Bounded for RunParams {
    fn check(&self) -> Result<(), WireError> {
        opt("instance", self.instance.as_ref(), NAME)
    }
}

impl Bounded for ReconcileParams {
    fn check(&self) -> Result<(), WireError> {
        opt("instance", self.instance.as_ref(), NAME)?;
        opt("remote", self.remote.as_ref(), NAME)
    }
}

impl Bounded for PruneParams {
    fn check(&self) -> Result<(), WireError> {
        opt("instance", self.instance.as_ref(), NAME)?;
        opt("keep_within", self.keep_within.as_ref(), KEEP_WITHIN)?;
        opt("expect_digest", self.expect_digest.as_ref(), DIGEST)
    }
}

impl Bounded for VerifyParams {
    fn check(&self) -> Result<(), WireError> {
        opt("id", self.id.as_ref(), ID)
    }
}

impl Bounded for OpIdParams {
    fn check(&self) -> Result<(), WireError> {
        text("op_id", &self.op_id, ID)
    }
}

impl Bounded for OpListParams {
    fn check(&self) -> Result<(), WireError> {
        opt("before", self.before.as_ref(), ID)?;
        page("operations", self.limit, OP_PAGE_MAX)
    }
}

/// A page's `limit`: at least 1, at most `max`.
fn page(what: &str, limit: Option<usize>, max: usize) -> Result<(), WireError> {
    match limit {
        Some(0) => Err(WireError::new(
            ErrorKind::Validation,
            "limit must be at least 1",
        )),
        Some(n) if n > max => Err(WireError::new(
            ErrorKind::Validation,
            format!("limit is {n}; the largest page is {max} {what}"),
        )),
        _ => Ok(()),
    }
}

impl Bounded for crate::pull::PullParams {
    fn check(&self) -> Result<(), WireError> {
        text("id", &self.id, ID)?;
        opt("remote", self.remote.as_ref(), NAME)
    }
}

impl Bounded for crate::remotes::RemoteTestParams {
    fn check(&self) -> Result<(), WireError> {
        text("name", &self.name, NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_the_limit() {
        assert!(text("instance", "alpha", NAME).is_ok());
        let e = text("instance", &"a".repeat(65), NAME).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(
            e.message.contains("instance") && e.message.contains("64"),
            "{e}"
        );
        let many = vec!["x".to_owned(); LABELS + 1];
        assert!(list("labels", &many, LABELS, LABEL).is_err());
        assert!(list("labels", &many[..LABELS], LABELS, LABEL).is_ok());
        assert!(opt("dest", None, PATH).is_ok());
    }
}
