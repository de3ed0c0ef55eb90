//! `backup prune`: which backups a retention policy removes, and removing them.

pub mod remove;
