//! `abssctl`: the unprivileged command-line client of the abssd daemon.
//!
//! It parses a command line, sends one JSON-RPC request over the daemon's Unix
//! socket (WebSocket, no TLS), follows long operations through `op.watch` with
//! progress bars on stderr, and prints a table or one `--json` document on stdout.
//! Every error arrives typed (`kind`, `message`); its kind alone decides the exit
//! code, through [`abssd_proto::ErrorKind::exit_code`].
//!
//! Layout:
//! * `args`      — the clap command line and its help text; label splitting. It
//!   lives in the library (`src/lib.rs`) so that `abssctl-gen` can make the
//!   completions and man pages from it.
//! * `connect`   — opening the connection; "daemon unreachable" errors.
//! * `commands/` — one file per verb group (`backup`, `op`, `daemon`): flags →
//!   request parameters → call → render.
//! * `follow`    — watching an operation to its terminal event; Ctrl-C detaches.
//! * `progress`  — indicatif bars and spinners driven by operation events.
//! * `render`    — [`render::Output`] (stdout/stderr, `--json`), aligned tables and
//!   the text views of backups, operations and the daemon.

mod commands;
mod connect;
mod follow;
mod progress;
mod render;

use std::process::ExitCode;

use abssctl_client::args;
use abssd_proto::{ErrorKind, WireError};

use crate::render::Output;

fn main() -> ExitCode {
    // Usage errors, --help and --version exit here (usage errors with 2).
    let cli = args::parse();
    let out = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let ended = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            WireError::new(
                ErrorKind::Internal,
                format!("cannot start the async runtime: {err}"),
            )
        })
        .and_then(|runtime| runtime.block_on(commands::run(cli, out)));
    let code = match ended {
        Ok(exit) => exit.code(),
        Err(err) => {
            out.error(&err);
            err.kind.exit_code()
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
