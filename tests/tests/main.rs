//! The integration tests of abssd, one binary: each file beside this one is a
//! module (ripgrep's layout). One binary links the daemon once instead of once
//! per file; nextest still runs every test in a process of its own, and
//! `cargo test` runs them as threads of this one (see [`abssd_tests::serial`]
//! for what that asks of tests that arm failpoints).
//!
//! A new file here must be named below: cargo no longer finds test files on
//! its own (`autotests = false`), and `every_test_file_is_a_module` fails
//! until it is.

mod backup;
mod consistency;
mod consistency_proof;
mod consistency_stop;
mod crash;
mod deep;
mod extract;
mod extract_hostile;
mod guards;
mod hardening_create;
mod hardening_restore;
mod hardening_rpc;
mod health;
mod hooks;
mod interop;
mod interop_config;
mod interop_locks;
mod interop_registry;
mod list_paging;
mod prune;
mod prune_remote;
mod push;
mod reconcile;
mod remote_cmd;
mod remote_pull;
mod remote_reconcile;
mod restore;
mod run;
mod s3_harness;
mod schedule;
mod service;
mod systemd;

#[test]
fn every_test_file_is_a_module() {
    abssd_tests::assert_every_file_is_a_module(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        include_str!("main.rs"),
    );
}
