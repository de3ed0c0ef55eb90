//! `fake-systemd`: a private bus with the fake systemd on it, for scripts/demo.sh.
//! Prints the bus address as its first stdout line, then serves until SIGTERM,
//! SIGINT, or end of input on a piped stdin.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::process::ExitCode;

use abssd_tests::FakeSystemd;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// A fake systemd (org.freedesktop.systemd1) on a private dbus-daemon, for demos
/// and tests of abssd without PID 1.
///
/// The first line on stdout is the bus address; pass it to `abssd --bus` (or set
/// DBUS_SYSTEM_BUS_ADDRESS). Runs until SIGTERM or SIGINT, or until its stdin
/// reaches end of input when stdin is a pipe (so a parent's death stops it);
/// the private bus dies with it.
#[derive(Debug, Parser)]
#[command(
    version,
    after_long_help = KNOBS,
    after_help = "See --help for driving the fake's knobs with busctl or dbus-send."
)]
struct Args {
    /// Units whose file exists in DIR are loaded (checked at each call, like systemd
    /// after a daemon-reload). nginx.service is always loaded and active.
    #[arg(long, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
}

const KNOBS: &str = r#"Knobs (interface org.abssd.FakeSystemd, object /org/abssd/FakeSystemd, on the
bus name org.freedesktop.systemd1), with A the printed address:

  B='busctl --address=A call org.freedesktop.systemd1 /org/abssd/FakeSystemd org.abssd.FakeSystemd'
  $B SetUnit sbb abssctl-a.service true true     # load: active, enabled
  $B SetTimer stt abssctl-backup@a.timer 1893456000000000 0   # next run, last run (µs)
  $B Fail sss abssctl-a.service start failed     # every start of it fails
  $B Fail sss abssctl-a.service start ""         # clear (verbs: start stop reload;
                                                 #  result "hang": the job never ends)
  $B State s abssctl-a.service                   # -> ssss "loaded" "active" "running" "enabled"
  $B SetTimer stt abssctl-backup@a.timer 1767225600000000 0   # next elapse, last trigger (µs; 0 none)
  $B SetResult ss abssctl-backup@a.service exit-code          # the service's Result
  $B Calls                                       # -> as 2 "StartUnit abssctl-a.service" "Reload"
  $B ClearCalls

  or: dbus-send --bus=A --print-reply --dest=org.freedesktop.systemd1 \
        /org/abssd/FakeSystemd org.abssd.FakeSystemd.SetUnit \
        string:abssctl-a.service boolean:true boolean:true

The call log holds StartUnit/StopUnit/RestartUnit/ReloadUnit <unit>, Reload
(daemon-reload) and EnableUnitFiles/DisableUnitFiles <units>. systemd's own API answers as usual, e.g.
  busctl --address=A call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
    org.freedesktop.systemd1.Manager StartUnit ss abssctl-a.service replace"#;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake-systemd: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Handlers first, so a SIGTERM right after the address is printed is caught.
    let signals = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    });
    let (mut term, mut int) = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-systemd: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fake = match FakeSystemd::try_start(args.unit_dir.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-systemd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", fake.address())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);

    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    // Without a pipe on stdin the sender is just held, so `eof_rx` never fires.
    let _held = if stdin_is_pipe() {
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = eof_tx.send(());
        });
        None
    } else {
        Some(eof_tx)
    };
    rt.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = eof_rx => {}
        }
    });
    drop(fake);
    ExitCode::SUCCESS
}

/// Only a pipe (or socket) has a meaningful end of input: a background job's
/// stdin is /dev/null, which would end at once, and a terminal's never does.
fn stdin_is_pipe() -> bool {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return false;
    }
    let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false)
}
