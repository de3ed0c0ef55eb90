//! Where the report's facts come from, each read within its bound: a
//! read-only reconcile, the backup timers over systemd's D-Bus, the job
//! records, the free space.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use abssd_proto::{Actor, JobRecord, ReconcileItem, ReconcileParams, ReconcileResult};

use super::probes::{self, JobFile};
use crate::ops::Ctx;
use crate::progress::{Progress, Reporter};
use crate::systemd::TimerState;

/// How long the read-only reconcile may take before it is reported unchecked.
const RECONCILE_BUDGET: Duration = Duration::from_secs(60);
/// How long one timer query may take; after one times out, systemd is not
/// asked again in this report.
const TIMER_BUDGET: Duration = Duration::from_secs(5);
/// The largest job record read; a larger one is a finding.
pub const MAX_JOB_RECORD: u64 = 64 << 10;

/// Reconcile without `--apply`, for every instance at once (one walk of the
/// backups root), its findings by instance; `Err` says why there are none.
///
/// It runs as a task of its own, which goes on after the report stopped
/// waiting for it; until it ends, later reports do not start another (a
/// backups root too big to walk in time costs one walk at a time).
pub(super) async fn reconcile(
    ctx: &Arc<Ctx>,
    instance: Option<String>,
) -> std::result::Result<HashMap<String, ReconcileResult>, String> {
    static WALKING: AtomicBool = AtomicBool::new(false);
    /// Lets the next report walk once this one's walk ended.
    struct Walk;
    impl Drop for Walk {
        fn drop(&mut self) {
            WALKING.store(false, Ordering::Release);
        }
    }
    if WALKING.swap(true, Ordering::AcqRel) {
        return Err(
            "the comparison an earlier report started is still running (a very large backups root?)"
                .to_owned(),
        );
    }
    let walk = Walk;
    let params = ReconcileParams {
        instance,
        apply: false,
        adopt: false,
        verify: false,
        deep: false,
        detach: false,
        remote: None,
    };
    let actor = Actor {
        uid: rustix::process::getuid().as_raw(),
        user: "abssd".to_owned(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
    };
    let ctx = Arc::clone(ctx);
    let task = tokio::spawn(async move {
        let _walk = walk;
        let quiet = Reporter::new(Quiet);
        crate::ops::reconcile::run(&ctx, &params, &actor, &quiet).await
    });
    let (_, found) = match tokio::time::timeout(RECONCILE_BUDGET, task).await {
        Err(_) => {
            return Err(format!(
                "it took longer than {} s",
                RECONCILE_BUDGET.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(format!("it ended abnormally: {e}")),
        Ok(Ok(Err(e))) => return Err(e.to_string()),
        Ok(Ok(Ok(r))) => r,
    };
    let mut by: HashMap<String, ReconcileResult> = HashMap::new();
    let mut put = |items: Vec<ReconcileItem>,
                   pick: fn(&mut ReconcileResult) -> &mut Vec<ReconcileItem>| {
        for item in items {
            let Some(name) = item.instance.clone() else {
                continue;
            };
            let list = pick(by.entry(name).or_default());
            // Each list is shown capped; keep a bounded number in memory too.
            if list.len() <= probes::MAX_LISTED * 50 {
                list.push(item);
            }
        }
    };
    put(found.missing, |r| &mut r.missing);
    put(found.mismatched, |r| &mut r.mismatched);
    put(found.orphaned, |r| &mut r.orphaned);
    put(found.missing_sidecars, |r| &mut r.missing_sidecars);
    Ok(by)
}

/// A [`Progress`] that keeps nothing: the report says what matters.
struct Quiet;

impl Progress for Quiet {
    fn emit(&self, _event: abssd_proto::EventKind) {}
    fn changed(&self, _backup_id: &str) {}
    fn op_id(&self) -> String {
        "health".to_owned()
    }
}

/// The backup timers of each instance, or why systemd could not be asked.
pub(super) async fn timers(
    ctx: &Ctx,
    names: &[String],
) -> std::result::Result<HashMap<String, Vec<TimerState>>, String> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let units = match tokio::time::timeout(TIMER_BUDGET * 2, ctx.systemd.connect()).await {
        Err(_) => return Err("systemd did not answer in time".to_owned()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(u)) => u,
    };
    let mut all_timer: Option<TimerState> = None;
    let mut out = HashMap::new();
    for name in names {
        let [own, all] = probes::timer_names(name);
        let mut found = Vec::new();
        for unit in [own, all] {
            if let Some(t) = all_timer.as_ref().filter(|t| t.unit.unit == unit) {
                found.push(t.clone());
                continue;
            }
            let t = match tokio::time::timeout(TIMER_BUDGET, units.timer(&unit)).await {
                Err(_) => return Err(format!("systemd did not answer about {unit} in time")),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(t)) => t,
            };
            if unit.starts_with("abssctl-backup-all") {
                all_timer = Some(t.clone());
            }
            found.push(t);
        }
        out.insert(name.clone(), found);
    }
    Ok(out)
}

/// `instance`'s job record: absent, unreadable (why), or read. Not followed
/// through a symlink, never waited on (a FIFO), at most [`MAX_JOB_RECORD`]
/// bytes, and about `instance`.
pub(super) fn read_job(path: &Path, instance: &str) -> JobFile {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return JobFile::Absent,
        Err(e) => return JobFile::Unreadable(format!("{}: {e}", path.display())),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return JobFile::Unreadable(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_JOB_RECORD + 1).read_to_end(&mut bytes) {
        return JobFile::Unreadable(format!("{}: {e}", path.display()));
    }
    if bytes.len() as u64 > MAX_JOB_RECORD {
        return JobFile::Unreadable(format!(
            "{} is larger than {} KiB",
            path.display(),
            MAX_JOB_RECORD >> 10
        ));
    }
    match serde_json::from_slice::<JobRecord>(&bytes) {
        Ok(r) if r.instance != instance => JobFile::Unreadable(format!(
            "{} is the record of instance {:?}",
            path.display(),
            probes::clip(&r.instance)
        )),
        Ok(r) => JobFile::Read(Box::new(r)),
        Err(e) => JobFile::Unreadable(format!("{}: {e}", path.display())),
    }
}

/// Bytes an unprivileged writer could still use at `dir` (`f_bavail`): the
/// daemon writes as root, but this leaves the root reserve alone.
pub(super) fn free_bytes(dir: &Path) -> std::result::Result<u64, String> {
    // Not made yet (no backup so far): the filesystem it will be made on.
    let dir = dir
        .ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(Path::new("/"));
    let st = rustix::fs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(instance: &str, ok: bool) -> String {
        serde_json::json!({
            "instance": instance, "op_id": "o", "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:01:00Z", "ok": ok, "steps": [],
        })
        .to_string()
    }

    #[test]
    fn job_records_are_read_tolerantly_and_boundedly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alpha.json");
        assert!(matches!(read_job(&file, "alpha"), JobFile::Absent));

        std::fs::write(&file, record("alpha", false)).unwrap();
        let JobFile::Read(r) = read_job(&file, "alpha") else {
            panic!("not read")
        };
        assert!(!r.ok);

        let unreadable = |why: &str| match read_job(&file, "alpha") {
            JobFile::Unreadable(m) => assert!(m.contains(why), "{m}"),
            other => panic!("{other:?}"),
        };
        std::fs::write(&file, record("beta", true)).unwrap();
        unreadable("record of instance \"beta\"");
        std::fs::write(&file, b"{\"instance\": ").unwrap();
        unreadable("EOF");
        std::fs::write(&file, vec![b' '; MAX_JOB_RECORD as usize + 1]).unwrap();
        unreadable("larger than 64 KiB");

        // A symlink is not followed, a FIFO not waited on.
        std::fs::remove_file(&file).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, record("alpha", true)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert!(matches!(read_job(&file, "alpha"), JobFile::Unreadable(_)));
        std::fs::remove_file(&file).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &file,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        unreadable("not a regular file");
    }
}
