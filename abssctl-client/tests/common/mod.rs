//! Helpers shared by the CLI test files: reading a finished `abssctl` run.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::process::Output;

use serde_json::Value;

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
