//! The probes' judgements: pure functions from what was gathered (index
//! entries, the job record, the timers, leftovers, reconcile's findings, free
//! space) and a clock to one [`ProbeResult`] each. Which are red, and with
//! which impact, is decided here and only here (docs/API.md, `daemon.health`).
//!
//! * `common`   — building results, and the small helpers every probe uses.
//! * `backups`  — `backups.age`, `backups.verify`, `job.last`: the index and the job record.
//! * `host`     — `timer`, `leftovers`, `drift`, `disk.free`: systemd and the filesystem.

mod backups;
mod common;
mod host;

pub use backups::{JobFile, age, job, verification, verified_at};
pub use common::*;
pub use host::{disk, drift, leftovers, timer, timer_names, usec_time};
