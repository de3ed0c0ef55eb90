//! The unit files shipped in the repository's `systemd/` directory, for tests
//! that install them: into the fake systemd's unit directory (schedule tests),
//! or into the systemd an end-to-end test boots in a namespace.

use std::fs;
use std::path::{Path, PathBuf};

/// The repository's `systemd/` directory.
pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("systemd")
}

/// The scheduled-backup units (`abssctl schedule`).
pub const TIMER_UNITS: [&str; 4] = [
    "abssctl-backup@.service",
    "abssctl-backup@.timer",
    "abssctl-backup-all.service",
    "abssctl-backup-all.timer",
];

/// Copy the shipped `units` into `unit_dir` (created when missing), each
/// `0644`, with `/usr/bin/abssctl` and `/usr/sbin/abssd` replaced by `abssctl`
/// and `abssd` when given: what `make install` does for another prefix.
/// Returns the installed paths.
pub fn install(
    unit_dir: &Path,
    units: &[&str],
    abssctl: Option<&Path>,
    abssd: Option<&Path>,
) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(unit_dir).expect("create the unit directory");
    let mut installed = Vec::new();
    for unit in units {
        let mut text = fs::read_to_string(shipped_dir().join(unit))
            .unwrap_or_else(|e| panic!("reading systemd/{unit}: {e}"));
        if let Some(p) = abssctl {
            text = text.replace("/usr/bin/abssctl", &p.display().to_string());
        }
        if let Some(p) = abssd {
            text = text.replace("/usr/sbin/abssd", &p.display().to_string());
        }
        let to = unit_dir.join(unit);
        fs::write(&to, text).expect("write a unit file");
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).expect("chmod");
        installed.push(to);
    }
    installed
}
