use std::io::Read;
use std::process::ExitCode;

use metalk8s_engine::agent::{AgentRequest, NODE_STATE_DIR, ObserveRequest, serve};
use metalk8s_pki::{PkiRequest, STORE_DIR};
use metalk8s_transport::LocalHost;

use crate::cli::AgentCommand;
use crate::exit::{CommandResult, Failure};
use crate::ops::OpsError;

pub fn run(command: AgentCommand) -> CommandResult {
    match command {
        AgentCommand::Apply => apply(&request()?),
        AgentCommand::Observe => observe(&request()?),
        AgentCommand::Pki => pki(&request()?),
        AgentCommand::Fetch(args) => {
            crate::ops::fetch::place(&args).map_err(OpsError::from)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The request on standard input.
fn request() -> Result<Vec<u8>, Failure> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|error| Failure::problem(miette::miette!("cannot read the request: {error}")))?;
    Ok(input)
}

fn pki(input: &[u8]) -> CommandResult {
    let request: PkiRequest = serde_json::from_slice(input)
        .map_err(|error| Failure::invalid(miette::miette!("invalid PKI request: {error}")))?;
    let now = metalk8s_pki::OffsetDateTime::now_utc();
    let mut response = metalk8s_pki::answer_request(STORE_DIR.as_ref(), &request, now)
        .map_err(|error| Failure::problem(miette::Report::from_err(error)))?;
    if request.action.places_node_files() {
        crate::ops::apt_key::add_node_files(
            STORE_DIR.as_ref(),
            &request.inventory,
            request.dry_run,
            &mut response.files,
        )?;
    }
    let mut stdout = std::io::stdout();
    serde_json::to_writer(&mut stdout, &response)
        .map_err(|error| Failure::problem(miette::miette!("cannot write the answer: {error}")))?;
    Ok(ExitCode::SUCCESS)
}

fn apply(input: &[u8]) -> CommandResult {
    let request: AgentRequest = serde_json::from_slice(input)
        .map_err(|error| Failure::invalid(miette::miette!("invalid agent request: {error}")))?;
    let host = LocalHost::new(request.node.clone());
    let mut stdout = std::io::stdout();
    super::runtime()
        .block_on(serve(&request, &host, NODE_STATE_DIR.as_ref(), &mut stdout))
        .map_err(|error| Failure::problem(miette::miette!("agent: {error}")))?;
    Ok(ExitCode::SUCCESS)
}

fn observe(input: &[u8]) -> CommandResult {
    let request: ObserveRequest = serde_json::from_slice(input)
        .map_err(|error| Failure::invalid(miette::miette!("invalid observe request: {error}")))?;
    let host = LocalHost::new(request.node.clone());
    let observations = super::runtime()
        .block_on(metalk8s_engine::agent::observe(
            &request,
            &host,
            NODE_STATE_DIR.as_ref(),
        ))
        .map_err(|error| Failure::problem(miette::miette!("agent: {error}")))?;
    let mut stdout = std::io::stdout();
    serde_json::to_writer(&mut stdout, &observations)
        .map_err(|error| Failure::problem(miette::miette!("cannot write the answer: {error}")))?;
    Ok(ExitCode::SUCCESS)
}
