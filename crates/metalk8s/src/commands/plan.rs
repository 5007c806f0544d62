use std::process::ExitCode;

use metalk8s_model::plan::Plan;

use crate::cli::PlanArgs;
use crate::exit::{CommandResult, Failure};
use crate::ops::session;
use crate::output;

pub fn run(args: PlanArgs) -> CommandResult {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    let options = super::connect_options(&args.connect);
    let session = super::runtime()
        .block_on(session::open(&inventory, &options))
        .map_err(Failure::problem)?;
    let phases: Vec<&str> = args.phases.phases.iter().map(String::as_str).collect();
    let binary = metalk8s_engine::agent::AgentBinary::current().map_err(|error| {
        Failure::problem(miette::miette!("cannot read the metalk8s binary: {error}"))
    })?;
    let mut inputs = metalk8s_plan::Inputs {
        agent_path: binary.remote_path(),
        ..metalk8s_plan::Inputs::default()
    };
    let bootstrap = inventory
        .nodes_with(metalk8s_model::inventory::Role::Bootstrap)
        .next()
        .and_then(|node| session.hosts.get(&node.name));
    if let Some(bootstrap) = bootstrap {
        inputs.bundle =
            super::runtime().block_on(crate::ops::bundle::read_staged(bootstrap.as_ref()))?;
    }
    if metalk8s_plan::Inputs::need_pki(&phases) {
        // On a scratch copy of the store: planning writes nothing.
        let answer = super::runtime().block_on(crate::ops::pki::ask(
            &inventory,
            &session.hosts,
            &session.facts,
            &binary,
            metalk8s_pki::PkiAction::Ensure,
            true,
        ))?;
        inputs.pki = answer.files;
    }
    let plan = metalk8s_plan::plan(&inventory, &session.facts, &inputs, &phases)
        .map_err(|error| Failure::invalid(miette::Report::from_err(error)))?
        .redacted();
    if !output::print_data(args.output, &plan) {
        print_table(&plan);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(plan: &Plan) {
    for phase in &plan.phases {
        println!("phase {} ({:?})", phase.name, phase.rollout);
        let mut table = output::table(&["node", "steps"]);
        for host in &phase.hosts {
            let steps: Vec<&str> = host.steps.iter().map(|s| s.id.as_str()).collect();
            table.add_row(vec![host.node.clone(), steps.join("\n")]);
        }
        println!("{table}");
    }
    eprintln!("`metalk8s deploy --dry-run` shows what each step would change.");
}
