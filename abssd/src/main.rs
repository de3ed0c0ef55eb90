//! `abssd`: see [`abssd::cli`].

fn main() -> std::process::ExitCode {
    abssd::cli::main()
}
