//! The parts of `abssctl` that more than one target needs.
//!
//! * [`args`]     — the clap command line; the `abssctl` binary parses it.
//! * [`generate`] — shell completions and man pages made from that same
//!   definition; the `abssctl-gen` binary writes them for `make install` and
//!   the Debian package, so they cannot drift from `--help`.

// Its doc comments are clap's help text, written for a terminal (`<time>` is a
// placeholder there, not an HTML tag).
#[allow(rustdoc::invalid_html_tags)]
pub mod args;
pub mod generate;
