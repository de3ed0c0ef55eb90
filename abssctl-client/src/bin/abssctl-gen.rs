//! `abssctl-gen OUT_DIR`: write the shell completions (`OUT_DIR/completions/`) and
//! man pages (`OUT_DIR/man/`) of abssctl, made from its clap definition.
//!
//! A build step, not an installed program: `make build` runs it into
//! `target/release/gen`, where `make install` and `cargo deb` find the files.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: abssctl-gen OUT_DIR");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    match abssctl_client::generate::write_all(&out) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("abssctl-gen: writing into {}: {err}", out.display());
            ExitCode::FAILURE
        }
    }
}
