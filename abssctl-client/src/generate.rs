//! Shell completions and man pages of `abssctl`, made from the clap definition in
//! [`crate::args`].
//!
//! [`write_all`] lays them out the way `make install` and the Debian package pick
//! them up:
//!
//! ```text
//! OUT/completions/abssctl.bash   bash-completion  → share/bash-completion/completions/abssctl
//! OUT/completions/_abssctl       zsh              → share/zsh/vendor-completions/_abssctl
//! OUT/completions/abssctl.fish   fish             → share/fish/vendor_completions.d/abssctl.fish
//! OUT/man/abssctl.1              the command, its global options and exit status
//! OUT/man/abssctl-backup.1, abssctl-backup-create.1, ...   one page per subcommand
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use crate::args::Cli;

/// The name the completions complete and the man pages describe.
const BIN: &str = "abssctl";

/// Write the completions into `OUT/completions` and the man pages into `OUT/man`
/// (both created when missing); return every file written.
pub fn write_all(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = completions(&out.join("completions"))?;
    written.extend(man_pages(&out.join("man"))?);
    Ok(written)
}

/// Bash, zsh and fish completions, under the file names clap_complete gives them
/// (`abssctl.bash`, `_abssctl`, `abssctl.fish`).
pub fn completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, &mut cmd, BIN, dir))
        .collect()
}

/// `abssctl.1` and one page per (non-hidden) subcommand, named after its path
/// (`abssctl-backup-restore.1`), as `git` and `cargo` do.
pub fn man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    // `abssctl help ...` is the same text as `--help`: no page of its own.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives every subcommand its display name (`abssctl-backup-create`).
    cmd.build();
    let top = dir.join(format!("{BIN}.1"));
    let mut page = Vec::new();
    top_page(&cmd, &mut page)?;
    fs::write(&top, once_preamble(&page))?;
    let mut written = vec![top];
    subcommand_pages(&cmd, dir, &mut written)?;
    Ok(written)
}

/// The page of `abssctl` itself: clap_mangen's sections, with the exit codes
/// (clap's `after_help`) under EXIT STATUS, where man readers look for them,
/// instead of clap_mangen's generic EXTRA.
fn top_page(cmd: &Command, w: &mut Vec<u8>) -> io::Result<()> {
    let man = page(cmd);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    if let Some(after) = cmd.get_after_help() {
        let mut roff = Roff::default();
        roff.control("SH", ["EXIT STATUS"]);
        // The table is aligned with spaces: keep its lines as they are.
        roff.control("nf", []);
        for line in after.to_string().lines().skip_while(|l| l.ends_with(':')) {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
        roff.to_writer(w)?;
    }
    let mut roff = Roff::default();
    roff.control("SH", ["ENVIRONMENT"]);
    roff.control("TP", []);
    roff.text([roman("ABSSD_SOCKET")]);
    roff.text([roman("The daemon's socket, when --socket is not given.")]);
    roff.control("TP", []);
    roff.text([roman("ABSSCTL_SOCKET")]);
    roff.text([roman(
        "Deprecated name of ABSSD_SOCKET, still read in this release with a warning \
         (the Python abssctl refuses to run while it is set).",
    )]);
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([roman(abssd_proto::DEFAULT_SOCKET)]);
    roff.text([roman(
        "The socket of abssd (systemd's abssd.socket starts the daemon on demand). \
         Members of group abssctl may create, restore and reconcile; \
         other users who can reach it may only read.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "systemctl(1), systemd-analyze(1); /usr/share/doc/abssd/README.md and \
         /usr/share/doc/abssd/API.md (the socket API)",
    )]);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// Write a page for every subcommand below `cmd`, depth first.
fn subcommand_pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(page(sub).generate_to(dir)?);
        subcommand_pages(sub, dir, written)?;
    }
    Ok(())
}

/// One page with the header every page shares.
fn page(cmd: &Command) -> Man {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    Man::new(cmd.clone())
        .title(name.to_uppercase())
        .source(concat!("abssctl ", env!("CARGO_PKG_VERSION")))
        .manual("abssctl manual")
}

/// Each section rendered on its own starts with roff's apostrophe preamble; a
/// page needs it once, at the top.
fn once_preamble(page: &[u8]) -> Vec<u8> {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let text = String::from_utf8_lossy(page);
    let body = text.replace(PREAMBLE, "");
    format!("{PREAMBLE}{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_written_and_names_what_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        for expected in [
            "completions/abssctl.bash",
            "completions/_abssctl",
            "completions/abssctl.fish",
            "man/abssctl.1",
            "man/abssctl-backup.1",
            "man/abssctl-backup-restore.1",
            "man/abssctl-op-watch.1",
            "man/abssctl-daemon-status.1",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let top = fs::read_to_string(dir.path().join("man/abssctl.1")).unwrap();
        // One apostrophe preamble, first; then the title.
        assert!(top.starts_with(".ie"), "{top}");
        assert_eq!(top.matches(".el .ds Aq").count(), 1, "{top}");
        assert!(top.contains(".TH ABSSCTL 1"), "{top}");
        assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
        assert!(!top.contains(".SH EXTRA"), "{top}");
    }
}
