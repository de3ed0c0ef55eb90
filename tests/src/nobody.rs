//! The attacker of the hardening tests: uid/gid 65534 (`nobody`), standing in
//! for an instance's service user, as a real second process.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The unprivileged uid (and gid) the attacks run as.
pub const NOBODY: u32 = 65534;

/// Run `script` with `sh -c` as [`NOBODY`], in `dir` when given; panics with
/// its stderr when it fails.
#[track_caller]
pub fn sh(dir: Option<&Path>, script: &str) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).uid(NOBODY).gid(NOBODY);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().expect("sh");
    assert!(
        out.status.success(),
        "as uid {NOBODY}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `chown -R uid:uid path`.
#[track_caller]
pub fn chown_r(path: &Path, uid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(st.success(), "chown -R {uid} {}", path.display());
}
