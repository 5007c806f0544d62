use std::io::Read;
use std::process::ExitCode;

use metalk8s_engine::agent::{AgentRequest, NODE_STATE_DIR, serve};
use metalk8s_transport::LocalHost;

use crate::cli::AgentCommand;
use crate::exit::{CommandResult, Failure};

pub fn run(command: AgentCommand) -> CommandResult {
    let AgentCommand::Apply = command;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|error| Failure::problem(miette::miette!("cannot read the request: {error}")))?;
    let request: AgentRequest = serde_json::from_slice(&input)
        .map_err(|error| Failure::invalid(miette::miette!("invalid agent request: {error}")))?;
    let host = LocalHost::new(request.node.clone());
    let mut stdout = std::io::stdout();
    super::runtime()
        .block_on(serve(&request, &host, NODE_STATE_DIR.as_ref(), &mut stdout))
        .map_err(|error| Failure::problem(miette::miette!("agent: {error}")))?;
    Ok(ExitCode::SUCCESS)
}
