//! Extract one archive with [`abssd::extract::extract`] and print what it took:
//! the measurement side of `bench/extract.sh`.
//!
//! `extract ARCHIVE STAGING TOP zstd|gzip|none SHA256`; `RUST_LOG=abssd=debug`
//! also prints how long streaming and the final `syncfs` took.

use std::path::Path;
use std::time::Instant;

use abssd::extract::{Expect, extract};
use abssd_proto::Algorithm;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive, staging, top, algorithm, sha256] = args.as_slice() else {
        eprintln!("usage: extract ARCHIVE STAGING TOP zstd|gzip|none SHA256");
        std::process::exit(2);
    };
    let algorithm = match algorithm.as_str() {
        "zstd" => Algorithm::Zstd,
        "gzip" => Algorithm::Gzip,
        "none" => Algorithm::None,
        other => {
            eprintln!("unknown algorithm {other}");
            std::process::exit(2);
        }
    };
    let expect = Expect {
        algorithm,
        sha256: sha256.clone(),
        top: top.clone(),
        max_bytes: u64::MAX,
        limits: abssd::extract::Limits {
            max_entries: abssd::config::DEFAULT_MAX_RESTORE_ENTRIES,
            recorded_bytes: None,
        },
        reserve: abssd::extract::Reserve {
            percent: abssd::config::DEFAULT_RESTORE_RESERVE_PERCENT,
        },
        same_owner: nix::unistd::geteuid().is_root(),
    };
    let started = Instant::now();
    let mut read = 0u64;
    match extract(Path::new(archive), Path::new(staging), &expect, &mut |n| {
        read += n
    }) {
        Ok(done) => {
            println!(
                "{:.3} s  entries {}  content {} B  archive {} B  progress {} B",
                started.elapsed().as_secs_f64(),
                done.entries,
                done.content_bytes,
                done.archive_bytes,
                read
            );
        }
        Err(e) => {
            eprintln!("extract: {e}");
            std::process::exit(1);
        }
    }
}
