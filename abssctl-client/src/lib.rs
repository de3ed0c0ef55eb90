//! The parts of `abssctl` that more than one target needs.
//!
//! * [`args`]     — the clap command line; the `abssctl` binary parses it.
//! * [`generate`] — shell completions and man pages made from that same
//!   definition; the `abssctl-gen` binary writes them for `make install` and
//!   the Debian package, so they cannot drift from `--help`.

pub mod args;
pub mod generate;
