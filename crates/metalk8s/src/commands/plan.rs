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
    let plan = metalk8s_plan::plan(&inventory, &session.facts, &phases)
        .map_err(|error| Failure::invalid(miette::Report::from_err(error)))?;
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
