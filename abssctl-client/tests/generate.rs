//! `abssctl-gen` as `make build` runs it: man pages and shell completions made from
//! the clap definition, so that they follow every new verb and flag.

use std::fs;
use std::path::Path;
use std::process::Command;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn writes_man_pages_and_completions_that_cover_the_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_abssctl-gen"))
        .arg(dir.path())
        .output()
        .expect("abssctl-gen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();

    let man = dir.path().join("man");
    let top = read(&man.join("abssctl.1"));
    assert!(top.contains(".TH ABSSCTL 1"), "{top}");
    assert!(top.contains("abssctl\\-backup(1)"), "{top}");
    assert!(top.contains("backup"), "{top}");
    assert!(top.contains("EXIT STATUS"), "{top}");
    let restore = read(&man.join("abssctl-backup-restore.1"));
    assert!(restore.contains("\\-\\-no\\-pre\\-backup"), "{restore}");
    let reconcile = read(&man.join("abssctl-backup-reconcile.1"));
    assert!(reconcile.contains("\\-\\-adopt"), "{reconcile}");

    let completions = dir.path().join("completions");
    for file in ["abssctl.bash", "_abssctl", "abssctl.fish"] {
        let path = completions.join(file);
        assert!(read(&path).contains("reconcile"), "{file} lacks reconcile");
        assert!(listed.contains(&path.display().to_string()), "{listed}");
    }
    // The bash completion at least parses.
    let bash = Command::new("bash")
        .arg("-n")
        .arg(completions.join("abssctl.bash"))
        .status()
        .expect("bash runs");
    assert!(bash.success());
}

#[test]
fn without_a_directory_it_exits_2_with_its_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_abssctl-gen"))
        .output()
        .expect("abssctl-gen runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: abssctl-gen OUT_DIR"));
}
