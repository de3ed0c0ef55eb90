//! `backup prune`: which backups a retention policy keeps (`policy`, a pure
//! function of the index and a clock), and removing the rest (`remove`,
//! journaled and crash-safe).

pub mod policy;
pub mod remove;
