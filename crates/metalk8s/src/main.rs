//! The `metalk8s` command. Each subcommand lives in its own file under `commands/`, parses
//! its options and calls the library crates; no real work happens here.

mod cli;
mod commands;
mod exit;
mod ops;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_colours();
    match commands::run(cli) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
