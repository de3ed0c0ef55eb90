//! `backup prune`: which backups a retention policy keeps, and removing the rest.

pub mod policy;
