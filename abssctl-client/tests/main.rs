//! The integration tests of abssctl, one binary: each file beside this one is
//! a module (ripgrep's layout), so the daemon the harness brings in is linked
//! once.
//!
//! A new file here must be named below: cargo no longer finds test files on
//! its own (`autotests = false`), and `every_test_file_is_a_module` fails
//! until it is.

mod cli;
mod cli_daemon;
mod cli_doctor;
mod cli_fake;
mod cli_push;
mod cli_remote;
mod cli_remote_reconcile;
mod cli_run;
mod cli_schedule;
mod common;
mod generate;
mod interop_exit;

#[test]
fn every_test_file_is_a_module() {
    abssd_tests::assert_every_file_is_a_module(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        include_str!("main.rs"),
    );
}
