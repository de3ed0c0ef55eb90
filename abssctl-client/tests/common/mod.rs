//! Helpers shared by the CLI test files: running `abssctl` against a
//! daemon ([`abssctl`], [`S3Host`]) and reading a finished run.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use abssd_tests::remotes::{self, Remote};
use abssd_tests::s3::S3Server;
use abssd_tests::{Daemon, Sandbox};
use serde_json::Value;

/// `abssctl ARGS` against the daemon at `socket`, stdin not a terminal.
pub fn abssctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abssctl"))
        .args(args)
        .env("ABSSD_SOCKET", socket)
        .stdin(Stdio::null())
        .output()
        .expect("abssctl runs")
}

/// Instance `alpha`, the remotes a test configures on a fresh S3 server,
/// and a daemon (declared first: it stops before the sandbox goes away).
pub struct S3Host {
    pub daemon: Daemon,
    pub sandbox: Sandbox,
    pub s3: S3Server,
}

impl S3Host {
    /// `remotes` makes the remotes of abssd.yml, their credentials under
    /// the directory it is given.
    pub fn new(remotes: impl FnOnce(&S3Server, &Path) -> Vec<Remote>) -> S3Host {
        let s3 = S3Server::start();
        let sandbox = Sandbox::new();
        sandbox.add_instance("alpha");
        let all = remotes(&s3, &sandbox.path("etc/abssctl"));
        sandbox.write_abssd_config(&remotes::section(&all.iter().collect::<Vec<_>>()));
        let daemon = Daemon::start(&sandbox);
        S3Host {
            daemon,
            sandbox,
            s3,
        }
    }

    /// `abssctl ARGS` against this host's daemon.
    pub fn abssctl(&self, args: &[&str]) -> Output {
        abssctl(&self.daemon.socket, args)
    }

    /// `abssctl --json ARGS`: asserts exit `code`, returns the document.
    #[track_caller]
    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.abssctl(&all);
        assert_exit(&out, code);
        json_doc(&out)
    }
}

/// Output bytes as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The run ended with `code`; shows both streams when it did not.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// stdout parsed as exactly one JSON document.
#[track_caller]
pub fn json_doc(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            text(&out.stdout)
        )
    })
}
