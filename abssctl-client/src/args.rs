//! The command line: every verb and flag of `abssctl`, with the help text people read.
//!
//! Parsing is all clap does here; turning flags into request parameters happens in
//! `commands/`, so these types stay plain data.

use std::path::PathBuf;

use abssd_proto::{Compression, Consistency};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Help heading of the flags every command takes.
const GLOBAL: &str = "Global options";

const EXIT_CODES: &str = "\
Exit codes (ADR-013, as the Python abssctl answers):
  0    success; also a reconcile that ran, drift or not; doctor with nothing red
  2    validation error or refused request: bad flags (usage errors), an instance,
       backup or operation that does not exist, a backup whose archive is missing,
       a restore of a corrupt archive (checksum mismatch, truncated)
  3    environment: daemon unreachable, permission denied, disk, lock timeout, busy;
       or verify found a missing, corrupt or unreadable archive; or reconcile
       --check found drift that it did not fix; or doctor found a red environment
       problem (no or stale backup, failed verification or job, drift, disk low)
  4    systemd, nginx or archive work failed (an archive restore refuses to
       extract), or an internal error; doctor: systemd could not be asked
  130  interrupted: the client detached, the operation goes on in abssd";

/// Back up, restore and check Actual Budget sync server instances through abssd.
///
/// abssctl is the unprivileged client of the abssd daemon: it sends each request over
/// the daemon's Unix socket, shows progress on stderr, and prints tables (or one JSON
/// document with --json) on stdout. Operations belong to the daemon: interrupting
/// abssctl never stops one half-way; `abssctl op watch OP_ID` re-attaches.
#[derive(Debug, Parser)]
#[command(name = "abssctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The daemon's Unix socket (ABSSCTL_SOCKET, its old variable, is still read
    /// in this release with a warning; the Python abssctl refuses to run while it is set).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "PATH",
        env = "ABSSD_SOCKET",
        default_value = abssd_proto::DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Print exactly one JSON document on stdout (errors as {"error": {kind, message, detail?}});
    /// no progress bars.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// No progress bars and no informational notes on stderr; warnings and errors
    /// still appear.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, restore, list, show, verify, reconcile, prune and protect backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// List the daemon's operations, or re-attach to one.
    #[command(subcommand)]
    Op(OpCommand),
    /// Ask the daemon about itself.
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// The remotes (S3-compatible buckets) abssd copies backups to: list them, test one,
    /// see what one holds.
    ///
    /// Remotes are configured under remotes: in abssd.yml (endpoint, bucket, prefix,
    /// region, path_style, credentials_file or credential, age_recipients,
    /// age_identity_file, auto_push, part_size_mib). Credentials are never shown.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Run backup jobs on their own: the systemd timers of `backup run`.
    ///
    /// Each instance has a timer, abssctl-backup@NAME.timer, that runs
    /// `abssctl backup run --instance NAME` (abssctl-backup@NAME.service); the
    /// timer abssctl-backup-all.timer runs `abssctl backup run --all`. Enable
    /// one or the other for an instance, not both, or it is backed up twice.
    /// Timers are installed disabled; abssd enables them on request (the
    /// client needs no privilege but the operator group).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Check that each instance is being backed up, and that its backups could be restored.
    ///
    /// Per instance (every instance of the registry, or -i NAME), abssd checks:
    ///   backups.age     the newest available backup against backups.max_age (default 36h)
    ///   backups.verify  backups verify found corrupt or unreadable; when one was last verified
    ///   job.last        the last `backup run` job (state_dir/jobs/NAME.json)
    ///   timer           abssctl-backup@NAME.timer or abssctl-backup-all.timer enabled, next run
    ///   leftovers       .pre-restore-*, restore staging dirs and .bak-* files of earlier restores
    ///   drift           the index against the archives on disk (a read-only reconcile)
    ///   disk.free       free space for the next backup: red below the newest backup's size
    ///                   (plus health.min_free_bytes), yellow below twice that
    ///
    /// Each check is green, yellow or red. Yellow ones are printed and leave the exit code
    /// alone; a red one sets it by its impact, the worst winning, as the Python abssctl
    /// doctor does:
    ///   0  healthy: nothing red
    ///   2  an unknown or invalid instance name (-i)
    ///   3  environment: no or stale backup, failed verification, failed or unreadable
    ///      last job, drift (archives missing or not matching the index), disk low,
    ///      or the registry or index unreadable
    ///   4  systemd could not be asked about the timers
    ///
    /// Any user who may connect may run it. --json prints the report as daemon.health
    /// returns it (summary, results, instances, metadata), for dashboards. With
    /// health.textfile_dir set in abssd.yml, abssd also writes abssctl.prom there for
    /// node_exporter's textfile collector on each full report (without -i).
    #[command(verbatim_doc_comment)]
    Doctor(DoctorArgs),
}

/// `abssctl remote …`
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// List the configured remotes: endpoint, bucket, prefix, region, addressing,
    /// encryption, auto-push, and where the credentials are read from.
    ///
    /// Never a key or secret: only the kind of source (file or systemd credential)
    /// and its path or name. Anyone who may connect to abssd may run it.
    List,
    /// Check that a remote works: read its credentials, list, put a probe object,
    /// read it back, delete it.
    ///
    /// Each step is reported ok, failed (with what the server or network said, in
    /// plain words) or skipped (an earlier step made it pointless). The probe is
    /// <prefix>/.abssd-probe-<uuid>; it is deleted whatever failed after it was
    /// written, and a backup listing never takes it for a backup. Needs an operator
    /// (root or the operator group).
    ///
    /// Exit codes: 0 every step passed; 2 no such remote; 3 a step failed.
    #[command(verbatim_doc_comment)]
    Test(RemoteTestArgs),
    /// List what a remote holds, one row per backup, against the local index.
    ///
    /// abssd lists `<prefix>/[<instance>/]` in the remote's bucket (at most
    /// 1,000,000 keys; it says when it stopped there) and groups the objects
    /// per backup: the archive (`.age` when encrypted), its `.sha256` sidecar
    /// and its index entry (`<id>.json[.age]`). INDEX says whether the local
    /// index has the backup, RECORDED whether its entry records this copy.
    /// Keys abssd does not write are counted and the first few named.
    /// `backup reconcile --remote NAME --apply --adopt` adopts the backups
    /// only the remote has. Operators only: abssd makes the requests with the
    /// remote's credentials.
    #[command(verbatim_doc_comment)]
    Ls(RemoteLsArgs),
}

/// `abssctl remote ls`
#[derive(Debug, Args)]
pub struct RemoteLsArgs {
    /// The remote (a name under `remotes:` in abssd.yml).
    pub name: String,

    /// Only this instance's objects.
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,
}

/// `abssctl doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this instance.
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,
}

/// `abssctl backup ...`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Archive an instance's data, unit, nginx site and registry entry.
    ///
    /// Shows a byte progress bar on stderr while the daemon walks, compresses and
    /// hashes; prints the archive, size and checksum when done. Remotes with
    /// auto_push: true (abssd.yml) then get the new backup, as `backup push` sends
    /// it; a push that fails is a warning, and the backup stands.
    Create(CreateArgs),
    /// Put a backup back: into its instance (live), or its data into a new directory.
    ///
    /// A live restore replaces the instance:
    ///   1. abssd takes a pre-restore backup of the instance (unless --no-pre-backup),
    ///   2. unpacks the archive into a staging directory beside the data, checking
    ///      its sha256 on the way (a mismatch stops here, with nothing changed),
    ///   3. stops the instance's unit if it runs,
    ///   4. moves the live data aside to <data dir>.pre-restore-<time> and the
    ///      restored data in; replaces the unit file and nginx site (keeping .bak-<time>
    ///      copies) and reinstates the sites-enabled link, unless --data-only,
    ///   5. updates the registry entry, starts the unit again if it was running
    ///      (see --restart / --no-restart), checks and reloads nginx,
    ///   6. removes the .pre-restore-* and .bak-* copies once all of that succeeded.
    ///
    /// The pre-restore backup is an ordinary backup in the index: restoring it undoes
    /// the restore.
    ///
    /// If any step fails, everything is rolled back (data, unit file, site, link,
    /// registry, running state) and the error says what was put back.
    ///
    /// A live restore asks for confirmation on the terminal, or needs --yes; without
    /// a terminal and without --yes it changes nothing and exits 2. --dest restores
    /// only touch the new directory and need no confirmation. --dry-run prints the
    /// plan and changes nothing.
    #[command(verbatim_doc_comment)]
    Restore(RestoreArgs),
    /// List backups from the index, newest first.
    ///
    /// The table shows the newest 50 that match, then how many match in all
    /// and the commands for all of them (--all) and for the next page
    /// (--cursor). --json prints every match unless --limit or --cursor asks
    /// for one page (its next_cursor continues it). Pages hold their place:
    /// backups made or removed between two pages never make another one show
    /// twice or go missing.
    List(ListArgs),
    /// Show every recorded field of one backup.
    Show(ShowArgs),
    /// Protect a backup: no prune removes it until `backup unprotect`.
    ///
    /// The mark is kept in the index entry (`protected: true`). Exits 2 when
    /// there is no such backup.
    Protect(ProtectArgs),
    /// Take a backup's protection away: prunes may remove it again.
    Unprotect(ProtectArgs),
    /// Recompute archive checksums and record the outcome in the index.
    ///
    /// Exits 3 when any archive is missing, corrupt or unreadable.
    Verify(VerifyArgs),
    /// Download a backup's copy from a remote and make its archive available again.
    ///
    /// The backup must be in the local index: its SHA-256 says what the copy must
    /// be. abssd streams the copy into a temporary file beside the archive
    /// (decrypting it with the remote's age_identity_file when it is encrypted),
    /// checks the SHA-256 as it writes, then renames it to the archive's name only
    /// if nothing is there, writes the .sha256 sidecar if it is missing, and marks
    /// the entry available. A copy with other bytes is refused and nothing changes.
    /// An archive already there with the recorded SHA-256 is left as it is
    /// (outcome "already"); one with other bytes is never replaced.
    ///
    /// The remote is --remote, else the first configured remote the entry's
    /// copies name, else the only remote configured.
    ///
    /// Exit codes: 0 pulled (or already there); 2 no such backup or remote;
    /// 3 the remote cannot be reached or refused, the copy is missing or cannot
    /// be decrypted, or an archive with other bytes is in the way; 2 also when
    /// the copy's bytes are not the backup's (corrupt).
    #[command(verbatim_doc_comment)]
    Pull(PullArgs),
    /// Compare the backup index with the archives on disk; optionally fix the index.
    ///
    /// Reconcile scans the backups root for archives (*.tar, *.tar.gz, *.tar.zst) and
    /// sorts whatever disagrees with the index into four categories:
    ///   missing     an index entry whose archive is gone (not one a prune
    ///               marked "removed": that archive was deleted on purpose)
    ///   orphaned    an archive that no index entry points at
    ///   mismatched  an archive that is present but whose entry does not say
    ///               "available", or whose size (with --verify: checksum) differs
    ///   missing sidecars  an archive that is present without its .sha256 sidecar;
    ///               --apply hashes it and writes the sidecar when the hash is the
    ///               index's checksum
    ///
    /// .sha256 sidecars with neither an archive nor an entry are listed as stray
    /// sidecars: they are not drift, and reconcile never deletes anything.
    ///
    /// Without --apply it only reads, and anyone who may connect to abssd can run it.
    /// It never reads archive contents unless --verify or --adopt asks for that (or
    /// --apply, for archives without a sidecar), so it is cheap enough for cron.
    /// --apply (and --adopt) change the index and need an operator (root or the
    /// operator group).
    ///
    /// With --remote NAME it compares the index with what remote NAME holds instead:
    ///   missing     a copy the index records whose archive object is gone
    ///               (--apply drops the record)
    ///   mismatched  a recorded copy whose size, or remote sidecar checksum, differs
    ///   orphaned    a backup only the remote has (remote-only); --apply --adopt
    ///               adds its entry, read from the remote, with status missing and
    ///               its copy recorded, so `backup pull` can fetch it
    ///   local only  an archive here with no copy there (not drift: push it)
    /// It makes requests with the remote's credentials, so it needs an operator.
    ///
    /// Exit codes: 0 when the report ran, whether or not it found drift (as the
    /// Python abssctl's reconcile exits). With --check: 3 when drift is left after
    /// the run (found and not fixed), so a nightly `abssctl backup reconcile
    /// --check` can alert on it.
    #[command(verbatim_doc_comment)]
    Reconcile(ReconcileArgs),
    /// Remove old backups by a retention policy, per instance.
    ///
    /// Every backup of the scope is kept when any rule keeps it, and removed only
    /// when none does (restic's rules; they add up, never subtract):
    ///   --keep-last N                      the newest N backups that can be restored
    ///   --keep-hourly/daily/weekly/monthly/yearly N
    ///                                      the newest backup of each of the newest N
    ///                                      hours, days, ISO weeks, months, years that
    ///                                      have one (in the host's time zone)
    ///   --keep-within DURATION             every backup made within DURATION before the
    ///                                      instance's newest (restic's notation: 2y5m7d3h,
    ///                                      m = months)
    ///   -k/--keep N, --older-than DAYS     the Python abssctl's flags: --keep is
    ///                                      --keep-last; --older-than keeps every backup
    ///                                      newer than DAYS days (unlike the Python tool,
    ///                                      it never removes a backup another rule keeps;
    ///                                      alone, it removes every older one the safety
    ///                                      rules below do not keep)
    /// With no rule given, the policy is the daemon's `backups.retention` (abssd.yml);
    /// with none there either, prune refuses (exit 2). --purge-index applies with a
    /// policy, never instead of one.
    ///
    /// Whatever the policy, these are always kept: the newest backup of each
    /// instance whose checksum was last verified good (the newest of any status
    /// when none is), protected backups (`backup protect`), backups a running
    /// restore or verify reads, and pre-restore backups younger than
    /// `backups.pre_restore_min_age` (7 days).
    ///
    /// Removing a backup deletes its archive and .sha256 sidecar and marks its
    /// index entry `removed` (with `removed_at`), as the Python abssctl's prune
    /// does. --dry-run prints every backup with keep or remove and why, and the
    /// space freed; without it prune shows the same plan and asks for
    /// confirmation, or needs --yes (no terminal and no --yes: exit 2, nothing
    /// changed).
    #[command(verbatim_doc_comment)]
    Prune(PruneArgs),
    /// Run the backup job: back up, prune, verify and reconcile, per instance.
    ///
    /// This is what the systemd timers (abssctl-backup@.timer, abssctl-backup-all.timer)
    /// run; it can be run by hand the same way. For each instance (one with
    /// --instance, or every instance of the registry in name order with --all),
    /// abssd runs, one after the other:
    ///   create     a backup, as `backup create INSTANCE` with no flags makes it
    ///              (the configured consistency mode and compression), labelled "job"
    ///   prune      the retention policy of abssd.yml (backups.retention), for this
    ///              instance only, without asking: the job is a standing order.
    ///              Skipped when no policy is configured
    ///   verify     the new archive, and the backups.job.verify_sample (default 1)
    ///              older available backups of the instance verified longest ago
    ///              (or never); deep when backups.job.deep is true
    ///   push       the new backup to each remote with auto_push: true (abssd.yml,
    ///              remotes:); only on hosts with such a remote. A push that fails
    ///              fails the instance's job
    ///   reconcile  the instance's index entries against the archives, read-only:
    ///              drift is shown as a warning, never fixed by the job
    ///
    /// A step that fails fails its instance (its later steps are skipped) and never
    /// stops the other instances. The table shows each instance, its result, the
    /// backup it made and each step's status. Each instance's outcome is also kept
    /// in state_dir/jobs/<instance>.json for `abssctl doctor`. Every step is in the
    /// operations log.
    ///
    /// Hooks (abssd.yml, `hooks:`): per instance, a ping of hooks.ping_url/start,
    /// the hooks.before command (if it fails, that instance backs nothing up and
    /// fails), the steps, hooks.after on success or hooks.on_error on failure,
    /// then a ping of hooks.ping_url (success) or hooks.ping_url/fail with the end
    /// of the instance's log. A failed ping, after or on_error is a warning and
    /// never changes the outcome. See the README for the commands' environment.
    ///
    /// Exit codes: 0 when every instance's job succeeded; otherwise the code of
    /// the first failure's kind (3 environment or busy, 4 systemd, archive or
    /// internal, 2 validation), and with --json the error's detail.summary holds
    /// the whole summary. Needs an operator (root or the operator group).
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Copy backups to a remote (S3-compatible object storage).
    ///
    /// The remote is one of `remotes:` in abssd.yml (--remote NAME; optional when
    /// only one is configured). For each backup, abssd uploads under
    /// <prefix>/<instance>/ of the remote's bucket:
    ///   <archive file name>[.age]   the archive, streamed from disk; encrypted with
    ///                               age to the remote's age_recipients when it has
    ///                               any (.age), so `age -d -i KEY` reads it back
    ///   <archive file name>.sha256  its checksum in sha256sum's format: the plain
    ///                               archive's line and, when encrypted, the .age
    ///                               object's, so `sha256sum -c` checks either
    ///   <id>.json[.age]             its index entry, encrypted like the archive
    /// then records the copy in the backup's index entry (`remotes`). The archive's
    /// SHA-256 is checked against the index entry's before the object becomes
    /// visible, and the index never records a copy whose objects are not all there.
    ///
    /// Nothing is ever overwritten: every object is created only if its key is free.
    /// A backup whose copy is there already (from an earlier push) is `already`,
    /// nothing sent; a backup whose key holds anything else fails, the object left
    /// as it is. Only backups whose archive is on disk and whose entry has a checksum
    /// are pushed (others are `skipped`, with why). A push that was interrupted (the
    /// daemon stopped, the connection lost) leaves no partial object behind once
    /// abssd has started again; push again to finish.
    ///
    /// Remotes with auto_push: true get each new backup automatically, at the end of
    /// `backup create` and as the `push` step of `backup run`.
    ///
    /// Exit codes: 0 when every backup was pushed, already there or skipped (a
    /// backup named by its ID that is skipped: 3, it was not copied);
    /// otherwise the code of the first failure's kind (3 environment: the remote
    /// unreachable, refused credentials, a key in the way; 2 validation or not
    /// found), and with --json the error's detail.summary holds every backup's
    /// outcome. Needs an operator (root or the operator group).
    #[command(verbatim_doc_comment)]
    Push(PushArgs),
}

/// `abssctl backup run`
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).args(["instance", "all"]))]
pub struct RunArgs {
    /// Run the job for this instance.
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,

    /// Run the job for every instance of the registry, in name order.
    #[arg(long)]
    pub all: bool,

    /// Start the job, print its operation id and return at once.
    #[arg(long)]
    pub detach: bool,
}

/// `abssctl backup push`: what to push is IDs, --instance or --all (one of them).
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["ids", "instance", "all"])))]
pub struct PushArgs {
    /// The backups to push (as `backup list` shows their ids).
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,

    /// Push every backup of this instance (oldest first).
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,

    /// Push every backup in the index (oldest first).
    #[arg(long)]
    pub all: bool,

    /// The remote (`remotes:` in abssd.yml); optional when only one is configured.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,

    /// Start pushing, print the operation id and return at once.
    #[arg(long)]
    pub detach: bool,
}

/// `abssctl backup create`
///
/// What cannot be restored is left out with a warning (shown as it runs, and
/// counted in the summary): sockets, FIFOs, devices, symlinks that are
/// absolute or leave the data directory, names over 4096 bytes, sparse files
/// beyond the daemon's hole budget, and files replaced while the backup runs.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The instance to back up (its name in the registry).
    pub instance: String,

    /// A note stored with the backup (at most 1024 bytes; no control characters
    /// but newlines).
    #[arg(short, long, value_name = "TEXT")]
    pub message: Option<String>,

    /// A label stored with the backup; repeat the flag or separate labels with
    /// commas (at most 32 labels of 100 bytes).
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,

    /// Archive the data directory only: leave out the systemd unit and nginx site.
    #[arg(long)]
    pub data_only: bool,

    /// Write the archive into DIR: the backups root or a directory directly in it
    /// (default: the instance's own directory there).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Compression of the archive; auto means zstd.
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = CompressionArg::Auto)]
    pub compression: CompressionArg,

    /// Compression level (zstd 1-19, gzip 1-9); the daemon's default when omitted.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub compression_level: Option<i32>,

    /// How to read the instance while its unit runs: `snapshot` copies each
    /// SQLite database through SQLite and re-reads blobs until they hold still
    /// (no downtime); `stop` stops the unit while the archive is written and
    /// starts it again; `none` copies the files as they are. The daemon's
    /// default (daemon.consistency, itself snapshot) when omitted. A stopped
    /// unit is read as it is in every mode.
    #[arg(long, value_enum, value_name = "MODE")]
    pub consistency: Option<ConsistencyArg>,

    /// Print what would be archived and where, and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Start the backup, print its operation id and return at once.
    #[arg(long, conflicts_with = "dry_run")]
    pub detach: bool,
}

/// `abssctl backup restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore, as `backup list` prints it.
    pub id: String,

    /// Refuse unless the backup belongs to this instance (a guard against a wrong id).
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,

    /// Restore only the data, into this new or empty directory (under the instance
    /// root or the restores directory beside the backups root; never in a
    /// directory abssd manages, such as the backups root). The instance, its
    /// unit, site and registry entry are left alone, so no confirmation is needed.
    #[arg(long, value_name = "PATH")]
    pub dest: Option<PathBuf>,

    /// Print the plan (target, space, unit, steps) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not back up the live instance first. Once the restore succeeds, its
    /// current data cannot be brought back. A --dest restore takes no
    /// pre-restore backup anyway, so there the flag changes nothing (it is
    /// accepted, as the Python tool accepts it).
    #[arg(long)]
    pub no_pre_backup: bool,

    /// Message stored with the pre-restore backup.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["dest", "no_pre_backup"])]
    pub backup_message: Option<String>,

    /// Restore without asking for confirmation.
    #[arg(short, long)]
    pub yes: bool,

    /// Start the unit after the restore even if it was not running before.
    #[arg(long, conflicts_with = "dest")]
    pub restart: bool,

    /// Leave the unit stopped after the restore even if it was running before.
    #[arg(long, conflicts_with_all = ["restart", "dest"])]
    pub no_restart: bool,

    /// Restore the data directory only: leave the unit file, nginx site and
    /// sites-enabled link as they are.
    #[arg(long)]
    pub data_only: bool,

    /// Before changing anything (before the pre-restore backup), deep-verify
    /// the archive (SQLite integrity, Actual's tables, blobs, listed files, as
    /// `backup verify --deep` does) and refuse to restore it if that finds a
    /// problem: exit 4, nothing changed, the entry marked corrupt in the index.
    #[arg(long)]
    pub verify_deep: bool,

    /// Start the restore, print its operation id and return at once (after the
    /// confirmation).
    #[arg(long, conflicts_with = "dry_run")]
    pub detach: bool,

    /// When the archive is missing here but a remote holds a copy (the plan
    /// says "pull first"), pull it first (as `backup pull` does), then restore.
    /// On a terminal the question asks instead; without a terminal such a
    /// restore needs --pull, or it changes nothing and exits 2.
    #[arg(long)]
    pub pull: bool,
}

impl RestoreArgs {
    /// `--restart` / `--no-restart` as the request's `restart`; `None` keeps the
    /// unit's state from before the restore.
    pub fn restart(&self) -> Option<bool> {
        match (self.restart, self.no_restart) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            (false, false) => None,
        }
    }
}

/// `--consistency` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Snapshot SQLite databases, re-read changing blobs (the default).
    Snapshot,
    /// Stop the unit for the archive pass, then start it again.
    Stop,
    /// Copy the files as they are.
    None,
}

impl From<ConsistencyArg> for Consistency {
    fn from(arg: ConsistencyArg) -> Self {
        match arg {
            ConsistencyArg::Snapshot => Consistency::Snapshot,
            ConsistencyArg::Stop => Consistency::Stop,
            ConsistencyArg::None => Consistency::None,
        }
    }
}

/// `--compression` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// zstd (the default).
    Auto,
    /// Zstandard, multi-threaded (.tar.zst).
    Zstd,
    /// gzip (.tar.gz).
    Gzip,
    /// No compression (.tar).
    None,
}

impl From<CompressionArg> for Compression {
    fn from(arg: CompressionArg) -> Self {
        match arg {
            CompressionArg::Auto => Compression::Auto,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::None => Compression::None,
        }
    }
}

/// `abssctl backup list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this instance's backups.
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,
    /// Only backups with this status (available, missing, corrupt, removed, ...).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only backups carrying this label.
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Only backups made at or after this time: a date (2026-12-01, midnight
    /// in the host's time zone) or an RFC 3339 time (2026-12-01T08:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only backups made before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Show at most N backups (the table's default is 50; with --json, one
    /// page of at most N instead of every backup).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=10000), conflicts_with = "all")]
    pub limit: Option<u16>,
    /// Continue where a previous page ended (the cursor it printed).
    #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Show every backup that matches, however many (read page by page).
    #[arg(long)]
    pub all: bool,
}

/// `abssctl backup show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The backup id, as `backup list` prints it.
    pub id: String,
}

/// `abssctl backup protect` / `unprotect`
#[derive(Debug, Args)]
pub struct ProtectArgs {
    /// The backup id, as `backup list` prints it.
    pub id: String,
}

/// `abssctl backup pull`
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The backup id, as `backup list` prints it.
    pub id: String,

    /// The remote to pull from (a name under remotes: in abssd.yml).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,

    /// Start the pull, print the operation id and return at once.
    #[arg(long)]
    pub detach: bool,
}

/// `abssctl backup verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup to verify.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,

    /// Verify every backup in the index.
    #[arg(long)]
    pub all: bool,

    /// Also check what each archive holds, in the same pass: every SQLite
    /// database passes `PRAGMA integrity_check` and has the tables Actual
    /// needs, every blob is a readable zip (unless account.sqlite says the
    /// budget is encrypted), the budgets account.sqlite lists are there, and
    /// so is `.migrate`. A problem marks the backup corrupt (exit 3); the
    /// result is kept in the index (metadata.verification).
    #[arg(long)]
    pub deep: bool,

    /// Start verifying, print the operation id and return at once.
    #[arg(long)]
    pub detach: bool,
}

/// `abssctl backup reconcile`
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Only this instance's entries and archives.
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,

    /// Fix the index: mark entries whose archive is gone `missing`, set entries of
    /// archives that are present but marked missing or unknown back to `available`,
    /// and with --verify record size and checksum findings. One atomic write.
    #[arg(long)]
    pub apply: bool,

    /// With --apply: give orphaned archives index entries (label `adopted`). Reads
    /// each orphan to learn its id, instance and checksum.
    #[arg(long, requires = "apply")]
    pub adopt: bool,

    /// Also re-hash every present archive and compare it with the recorded
    /// checksum. Reads every archive in scope, so it takes as long as `backup
    /// verify --all`.
    #[arg(long)]
    pub verify: bool,

    /// With --verify: also deep-verify each present archive (its SQLite
    /// databases, blobs and listed files; see `backup verify --deep`).
    #[arg(long, requires = "verify")]
    pub deep: bool,

    /// Compare the index with what remote NAME holds (abssd.yml `remotes:`)
    /// instead of the disk: copies recorded but gone (missing), copies whose
    /// size or sidecar checksum differ (mismatched), backups only in the
    /// remote (orphaned), and, for information, backups here with no copy
    /// there (local only). --apply drops the records of missing copies;
    /// --apply --adopt adds each remote-only backup's entry (read from the
    /// remote, decrypted with the remote's age_identity_file) with status
    /// missing and its copy recorded, so `backup pull` can fetch it: the way
    /// back for a host that lost its disk. Operators only.
    #[arg(long, value_name = "NAME", conflicts_with = "verify")]
    pub remote: Option<String>,

    /// Exit 3 when drift is left after the run (found and not fixed by --apply),
    /// as `backup verify` exits 3 when it finds a problem: for cron. Without it
    /// a reconcile that ran exits 0, drift or not.
    #[arg(long, conflicts_with = "detach")]
    pub check: bool,

    /// Start reconciling, print the operation id and return at once.
    #[arg(long)]
    pub detach: bool,
}

/// `abssctl backup prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this instance's backups.
    #[arg(short, long, value_name = "NAME")]
    pub instance: Option<String>,

    /// Keep the newest N backups that can be restored.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,

    /// Keep the newest backup of each of the newest N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,

    /// Keep the newest backup of each of the newest N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,

    /// Keep the newest backup of each of the newest N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,

    /// Keep the newest backup of each of the newest N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,

    /// Keep the newest backup of each of the newest N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,

    /// Keep every backup made within DURATION before the instance's newest
    /// (restic's notation: 7d, 36h, 2y5m7d3h; m is months).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,

    /// The Python abssctl's --keep: the same as --keep-last.
    #[arg(short = 'k', long, value_name = "N")]
    pub keep: Option<u32>,

    /// The Python abssctl's --older-than, made safe: keep every backup newer
    /// than DAYS days (older ones go only if no other rule keeps them).
    #[arg(long, value_name = "DAYS")]
    pub older_than: Option<u32>,

    /// Also drop index entries marked `removed` more than DAYS days ago.
    #[arg(long, value_name = "DAYS", conflicts_with = "remote")]
    pub purge_index: Option<u32>,

    /// Prune the copies in remote NAME instead of the local archives: by the
    /// rules given, else by remotes.NAME.retention in abssd.yml (a remote may
    /// keep longer than the host). A copy that goes loses its archive,
    /// sidecar and entry objects and its record in the index entry; the local
    /// archive and entry stay as they are.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,

    /// Print every backup with keep or remove and why, and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Remove without asking for confirmation.
    #[arg(short, long)]
    pub yes: bool,

    /// Start the prune, print its operation id and return at once (after the
    /// confirmation).
    #[arg(long, conflicts_with = "dry_run")]
    pub detach: bool,
}

/// `abssctl op ...`
#[derive(Debug, Subcommand)]
pub enum OpCommand {
    /// List operations the daemon knows (running and recently ended), oldest first.
    List(OpListArgs),
    /// Follow an operation: replay its events, show progress, print its result.
    ///
    /// Exits like the command that started it would have: 0 when it finished,
    /// the error's exit code when it failed (a reconcile exits as one started
    /// without --check).
    Watch(OpWatchArgs),
}

/// `abssctl op list`
#[derive(Debug, Args)]
pub struct OpListArgs {
    /// Only operations still running.
    #[arg(long)]
    pub running: bool,
    /// Show at most N operations, the newest (daemon default 100, at most 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: Option<u16>,
    /// Only operations older than this one (the `next_before` of a previous page).
    #[arg(long, value_name = "OP_ID", conflicts_with = "all")]
    pub before: Option<String>,
    /// Every operation the daemon holds, however many (read page by page).
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
}

/// `abssctl op watch`
#[derive(Debug, Args)]
pub struct OpWatchArgs {
    /// The operation id, as printed by --detach or `op list`.
    pub op_id: String,
}

/// `abssctl schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Write the timer's calendar, enable the timer and start it.
    ///
    /// abssd checks the name (an instance of the registry) and the calendar
    /// (with systemd's own parser, `systemd-analyze calendar`), writes
    /// <unit dir>/abssctl-backup@NAME.timer.d/50-abssctl-calendar.conf, then
    /// over D-Bus reloads systemd, enables the timer and starts it. A bad
    /// calendar changes nothing (exit 2). Running it again with another
    /// --calendar replaces the calendar. The timer waits a fixed random delay
    /// of up to an hour after each calendar time (RandomizedDelaySec=1h,
    /// FixedRandomDelay=true), and catches up at boot on a run missed while
    /// the host was off (Persistent=true).
    Enable(ScheduleEnableArgs),
    /// Stop and disable the timer and remove its calendar drop-in.
    ///
    /// A timer that is not enabled, or an instance no longer in the registry,
    /// is no error: disable always leaves the timer off.
    Disable(ScheduleTarget),
    /// Each timer: enabled?, calendar, next run, last run and how it ended.
    ///
    /// Without NAME: every instance of the registry and the --all timer. Any
    /// user who can reach the socket may ask.
    Show(ScheduleShowArgs),
}

/// Which timer: an instance's, or with --all the one of every instance.
#[derive(Debug, Args)]
pub struct ScheduleTarget {
    /// The instance whose timer it is (abssctl-backup@NAME.timer).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// The timer that backs up every instance (abssctl-backup-all.timer).
    #[arg(long)]
    pub all: bool,
}

/// `abssctl schedule enable`
#[derive(Debug, Args)]
pub struct ScheduleEnableArgs {
    /// Which timer.
    #[command(flatten)]
    pub target: ScheduleTarget,
    /// When to run: a systemd calendar specification (OnCalendar=, see
    /// systemd.time(7)), e.g. daily, 'Mon..Fri 02:30', '*-*-* 03:00:00 UTC';
    /// at most 128 characters. Default: daily (midnight, local time).
    #[arg(long, value_name = "SPEC")]
    pub calendar: Option<String>,
}

/// `abssctl schedule show`
#[derive(Debug, Args)]
pub struct ScheduleShowArgs {
    /// Only this instance's timer.
    pub name: Option<String>,
}

/// `abssctl daemon ...`
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Version, pid, uptime, socket, paths and running operations.
    Status,
}

/// Labels as typed: each `--label` value may hold several labels separated by commas.
/// Blanks around labels and empty labels are dropped; the first spelling of a
/// repeated label is kept, in order.
pub fn split_labels(values: &[String]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for label in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if !label.is_empty() && !labels.iter().any(|l| l == label) {
            labels.push(label.to_owned());
        }
    }
    labels
}

/// The socket variable's old name, still read in this release when neither
/// `--socket` nor `ABSSD_SOCKET` is given.
pub const OLD_SOCKET_VARIABLE: &str = "ABSSCTL_SOCKET";

/// Parse the command line, reading the socket's old variable when the socket
/// was left at its default; the deprecation warning goes to stderr.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let defaulted = matches!(
        matches.value_source("socket"),
        None | Some(clap::parser::ValueSource::DefaultValue)
    );
    if defaulted && let Some(old) = std::env::var_os(OLD_SOCKET_VARIABLE) {
        eprintln!(
            "abssctl: warning: {OLD_SOCKET_VARIABLE} is deprecated (still read in this release): \
             use ABSSD_SOCKET; the Python abssctl refuses to run while {OLD_SOCKET_VARIABLE} is set"
        );
        cli.socket = old.into();
    }
    cli
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn labels_split_on_commas_trimmed_and_deduplicated() {
        let got = split_labels(&strings(&[
            "nightly",
            "pre-upgrade, keep",
            ",,",
            " keep ,x",
        ]));
        assert_eq!(got, strings(&["nightly", "pre-upgrade", "keep", "x"]));
    }

    #[test]
    fn no_labels_is_empty() {
        assert!(split_labels(&[]).is_empty());
        assert!(split_labels(&strings(&["", " , "])).is_empty());
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_flags_parse() {
        let cli = Cli::try_parse_from([
            "abssctl",
            "backup",
            "create",
            "alpha",
            "-m",
            "before upgrade",
            "--label",
            "a,b",
            "--label",
            "c",
            "--compression",
            "gzip",
            "--compression-level",
            "6",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Backup(BackupCommand::Create(args)) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(args.instance, "alpha");
        assert_eq!(args.message.as_deref(), Some("before upgrade"));
        assert_eq!(split_labels(&args.labels), strings(&["a", "b", "c"]));
        assert_eq!(Compression::from(args.compression), Compression::Gzip);
        assert_eq!(args.compression_level, Some(6));
    }

    fn restore(args: &[&str]) -> Result<RestoreArgs, clap::Error> {
        let line = ["abssctl", "backup", "restore"].iter().chain(args);
        match Cli::try_parse_from(line)?.command {
            Command::Backup(BackupCommand::Restore(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn restore_flags_parse() {
        let args = restore(&[
            "b1",
            "--instance",
            "alpha",
            "--no-pre-backup",
            "-y",
            "--no-restart",
            "--data-only",
            "--detach",
        ])
        .unwrap();
        assert_eq!(args.id, "b1");
        assert_eq!(args.instance.as_deref(), Some("alpha"));
        assert!(args.no_pre_backup && args.yes && args.data_only && args.detach);
        assert_eq!(args.restart(), Some(false));
        assert_eq!(restore(&["b1", "--restart"]).unwrap().restart(), Some(true));
        let args = restore(&["b1", "--dest", "x", "--backup-message", "m"]);
        assert!(
            args.is_err(),
            "--backup-message is about the pre-restore backup"
        );
        let args = restore(&["b1", "--dest", "x", "--dry-run"]).unwrap();
        assert_eq!(args.restart(), None);
        assert_eq!(args.dest.as_deref(), Some(std::path::Path::new("x")));
        assert!(args.dry_run && !args.yes);
    }

    #[test]
    fn restore_refuses_contradictory_flags() {
        for bad in [
            &["b1", "--restart", "--no-restart"][..],
            &["b1", "--dry-run", "--detach"],
            &["b1", "--dest", "/x", "--restart"],
            &["b1", "--dest", "/x", "--no-restart"],
            &["b1", "--no-pre-backup", "--backup-message", "m"],
            &[],
        ] {
            let err = restore(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn dest_restore_accepts_no_pre_backup() {
        let args = restore(&["b1", "--dest", "/x", "--no-pre-backup"]).unwrap();
        assert!(args.no_pre_backup);
        assert_eq!(args.dest.as_deref(), Some(std::path::Path::new("/x")));
    }

    #[test]
    fn short_i_is_instance_wherever_the_python_tool_has_it() {
        assert_eq!(
            restore(&["b1", "-i", "alpha"]).unwrap().instance.as_deref(),
            Some("alpha")
        );
        assert_eq!(
            reconcile(&["-i", "alpha"]).unwrap().instance.as_deref(),
            Some("alpha")
        );
        let cli = Cli::try_parse_from(["abssctl", "backup", "list", "-i", "alpha"]).unwrap();
        let Command::Backup(BackupCommand::List(args)) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(args.instance.as_deref(), Some("alpha"));
        // And -k for prune's --keep, as the Python tool's cron lines have it.
        let cli =
            Cli::try_parse_from(["abssctl", "backup", "prune", "-i", "alpha", "-k", "3"]).unwrap();
        let Command::Backup(BackupCommand::Prune(args)) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(
            (args.instance.as_deref(), args.keep),
            (Some("alpha"), Some(3))
        );
    }

    #[test]
    fn verify_needs_exactly_one_of_id_or_all() {
        assert!(Cli::try_parse_from(["abssctl", "backup", "verify"]).is_err());
        assert!(Cli::try_parse_from(["abssctl", "backup", "verify", "x", "--all"]).is_err());
        assert!(Cli::try_parse_from(["abssctl", "backup", "verify", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["abssctl", "backup", "verify", "x"]).is_ok());
    }

    #[test]
    fn push_takes_exactly_one_scope() {
        let push = |args: &[&str]| {
            let line = ["abssctl", "backup", "push"].iter().chain(args);
            Cli::try_parse_from(line).map(|c| match c.command {
                Command::Backup(BackupCommand::Push(a)) => a,
                other => panic!("parsed as {other:?}"),
            })
        };
        assert_eq!(push(&["a", "b"]).unwrap().ids, ["a", "b"]);
        assert_eq!(
            push(&["-i", "alpha"]).unwrap().instance.as_deref(),
            Some("alpha")
        );
        assert!(push(&["--all", "--remote", "off"]).unwrap().all);
        let none = push(&[]).unwrap_err();
        assert_eq!(none.exit_code(), 2);
        assert!(
            none.to_string().contains("<ID|--instance <NAME>|--all>"),
            "{none}"
        );
        for two in [
            &["a", "--all"][..],
            &["-i", "alpha", "--all"],
            &["a", "-i", "alpha"],
        ] {
            assert_eq!(push(two).unwrap_err().exit_code(), 2, "{two:?}");
        }
    }

    fn reconcile(args: &[&str]) -> Result<ReconcileArgs, clap::Error> {
        let line = ["abssctl", "backup", "reconcile"].iter().chain(args);
        match Cli::try_parse_from(line)?.command {
            Command::Backup(BackupCommand::Reconcile(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn reconcile_flags_parse_and_adopt_needs_apply() {
        let args = reconcile(&[]).unwrap();
        assert!(args.instance.is_none() && !args.apply && !args.adopt && !args.verify);
        let args = reconcile(&[
            "--instance",
            "alpha",
            "--apply",
            "--adopt",
            "--verify",
            "--detach",
        ])
        .unwrap();
        assert_eq!(args.instance.as_deref(), Some("alpha"));
        assert!(args.apply && args.adopt && args.verify && args.detach);
        let err = reconcile(&["--adopt"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--apply"), "{err}");
    }
}

/// `abssctl remote test`
#[derive(Debug, Args)]
pub struct RemoteTestArgs {
    /// The remote's name (see `abssctl remote list`).
    pub name: String,
}
