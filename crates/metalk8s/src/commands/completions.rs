use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::CommandResult;

pub fn run(shell: Shell) -> CommandResult {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "metalk8s",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
