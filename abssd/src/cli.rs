//! The `abssd` command line: flags, logging, the runtime, and the signals that
//! stop it. `main.rs` (and the crash tests' `abssd-failpoints`) call [`main`].

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

const SERVICE: &str = "\
Under systemd (abssd.socket + abssd.service, Type=notify):
  - the socket passed by systemd (LISTEN_FDS) is served instead of binding one, and
    abssd exits after daemon.idle_timeout seconds (default 300) with no client and no
    running operation; the socket unit starts it again on the next connection;
  - READY=1 is sent once interrupted operations are recovered and the socket is
    served, STATUS= says what it is doing, and the watchdog (WatchdogSec=) is fed;
  - logs go to the journal when stderr is connected to it.
Before serving, every operation a previous run was stopped in the middle of is
finished or rolled back from its journal (state_dir/journal/).
SIGTERM/SIGINT: stop accepting, let running operations end (up to daemon.stop_timeout,
default 120 s), exit; whatever is still running then is abandoned, and the process
exits 10 s later at the latest whatever its threads are doing. A second signal exits
at once (143 for SIGTERM, 130 for SIGINT); the next start recovers.

Configuration, lowest precedence first (README, Daemon flags and configuration):
  defaults; config.yml (the Python abssctl's keys only); abssd.yml (abssd's own:
  daemon:, nginx:, backups.restores_root, systemd.bus_address); the Python tool's
  ABSSCTL_<SECTION>__<KEY> variables (e.g. ABSSCTL_BACKUPS__ROOT,
  ABSSCTL_SYSTEMD__UNIT_DIR); abssd's ABSSD_SOCKET, ABSSD_OPERATOR_GROUP,
  ABSSD_RESTORES_ROOT, ABSSD_NGINX_SITES_AVAILABLE, ABSSD_NGINX_SITES_ENABLED;
  flags. Deprecated, still read in this release with a warning: abssd's keys in
  config.yml and the flat ABSSCTL_SOCKET, ABSSCTL_OPERATOR_GROUP,
  ABSSCTL_RESTORES_ROOT, ABSSCTL_NGINX_SITES_*, ABSSCTL_BACKUPS_ROOT,
  ABSSCTL_BACKUPS_INDEX, ABSSCTL_UNIT_DIR (the Python abssctl refuses to run
  while any of them is set). `abssctl daemon status` shows each path's source.";

/// The abssctl daemon: backs up, restores and reconciles Actual Budget sync
/// server instances, and serves JSON-RPC on a Unix socket for `abssctl` and
/// other local services. Runs as root under systemd in production.
#[derive(Debug, Parser)]
#[command(version, about, after_help = SERVICE)]
struct Args {
    /// Re-root every default path (config, socket, state, backups, unit and nginx
    /// dirs, logs, runtime) under DIR. For sandboxes, tests and the demo.
    #[arg(long, value_name = "DIR", env = "ABSSD_PREFIX")]
    prefix: Option<PathBuf>,
    /// The config file shared with the Python abssctl, only its keys (default
    /// /etc/abssctl/config.yml, under --prefix if given; env ABSSCTL_CONFIG_FILE,
    /// as the Python tool reads it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// abssd's own config file: daemon:, nginx:, backups.restores_root,
    /// systemd.bus_address (default /etc/abssctl/abssd.yml, under --prefix if given).
    #[arg(long, value_name = "FILE", env = "ABSSD_CONFIG_FILE")]
    abssd_config: Option<PathBuf>,
    /// Socket to serve (default runtime_dir/abssd.sock; env ABSSD_SOCKET).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Group whose members may mutate, and the socket's group (default abssctl;
    /// env ABSSD_OPERATOR_GROUP).
    #[arg(long, value_name = "NAME")]
    operator_group: Option<String>,
    /// D-Bus address where systemd is reached (default: the system bus).
    #[arg(long, value_name = "ADDRESS", env = "DBUS_SYSTEM_BUS_ADDRESS")]
    bus: Option<String>,
    /// Log filter, e.g. `info` or `abssd=debug` (env RUST_LOG).
    #[arg(long, value_name = "FILTER", default_value = "info", env = "RUST_LOG")]
    log: String,
}

/// Parse the flags and run the daemon until SIGTERM/SIGINT.
pub fn main() -> ExitCode {
    // Before any thread exists.
    crate::memory::limit_arenas();
    let args = Args::parse();
    init_logging(&args.log);
    let over = crate::Overrides {
        prefix: args.prefix,
        config_file: args.config,
        abssd_config_file: args.abssd_config,
        socket: args.socket,
        operator_group: args.operator_group,
        bus_address: args.bus,
    };
    let config = match crate::Config::load(&over) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("abssd: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the runtime's threads exist (they inherit the signal mask).
    let shutdown = match shutdown_signal(config.daemon.stop_timeout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("abssd: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    // umask 027: everything the daemon creates is closed to "other".
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("abssd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let daemon = crate::start(config).await?;
        // Bound once recovery is done: a client never meets a half-restored
        // instance, and the socket's existence says the daemon serves.
        let listener = crate::listen(daemon.config())?;
        daemon.run(listener, shutdown).await
    });
    // A thread still stuck in an abandoned operation must not keep the process.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("abssd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log to the journal when systemd connected stderr to it (structured fields,
/// priorities), else plain lines on stderr.
fn init_logging(filter: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::new(filter);
    if crate::service::logging_to_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal.with_syslog_identifier("abssd".into()))
                    .init();
                return;
            }
            Err(e) => eprintln!("abssd: cannot log to the journal ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// SIGTERM and SIGINT, handled on a thread of their own rather than by the
/// runtime, so that they work whatever the runtime's threads are doing (all of
/// them could be stuck in a read that never returns).
///
/// The first signal resolves the returned future: the daemon stops accepting
/// and lets running operations end, for at most `daemon.stop_timeout`. Should
/// the process still exist `HARD_STOP_MARGIN` later, it exits from here. A
/// second signal exits at once with 128 + its number; the journal's recovery
/// at the next start finishes or rolls back what was cut short.
fn shutdown_signal(stop_timeout: Duration) -> std::io::Result<impl Future<Output = ()>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    // Called before the runtime starts: every thread inherits the mask, so the
    // signals reach only `sigwait` below. (Child processes get a clean mask:
    // std resets it before exec.)
    set.thread_block().map_err(std::io::Error::from)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("abssd-signals".into())
        .spawn(move || {
            let Ok(first) = set.wait() else { return };
            tracing::info!("{first}: stopping; a second signal exits at once");
            let _ = tx.send(());
            let hard = stop_timeout + HARD_STOP_MARGIN;
            let _ = std::thread::Builder::new()
                .name("abssd-stop-deadline".into())
                .spawn(move || {
                    std::thread::sleep(hard);
                    tracing::error!(
                        secs = hard.as_secs(),
                        "still running this long after the stop signal: exiting now; the next start recovers interrupted work"
                    );
                    std::process::exit(1);
                });
            let second = set.wait().unwrap_or(first);
            tracing::warn!("second signal ({second}): exiting now; the next start recovers interrupted work");
            std::process::exit(128 + second as i32);
        })?;
    Ok(async move {
        let _ = rx.await;
    })
}

/// How long after `daemon.stop_timeout` a stopping daemon exits regardless:
/// the connections' drain plus slack.
const HARD_STOP_MARGIN: Duration = Duration::from_secs(10);
