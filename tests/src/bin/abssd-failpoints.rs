//! `abssd` built with its `failpoints` feature, for the crash-safety tests:
//! `FAILPOINTS=<name>=return` makes it abort at that crash point.

fn main() -> std::process::ExitCode {
    let _scenario = fail::FailScenario::setup();
    abssd::cli::main()
}
