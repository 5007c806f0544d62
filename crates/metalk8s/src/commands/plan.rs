use std::process::ExitCode;

use std::fmt::Write;

use metalk8s_model::plan::{Plan, Rollout};

use crate::cli::PlanArgs;
use crate::exit::{CommandResult, Failure};
use crate::ops::OpsError;
use crate::ops::inputs::{self, GatherOptions};
use crate::ops::session;
use crate::output;

pub fn run(args: PlanArgs) -> CommandResult {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    let options = super::connect_options(&args.connect);
    let session = super::runtime()
        .block_on(session::open(&inventory, &options))
        .map_err(OpsError::from)?;
    let phases = &args.phases.phases;
    let binary = metalk8s_engine::agent::AgentBinary::current().map_err(|error| {
        Failure::problem(miette::miette!("cannot read the metalk8s binary: {error}"))
    })?;
    let gathered = super::runtime().block_on(inputs::gather(
        &inventory,
        &session,
        &binary,
        phases,
        &GatherOptions::planning(),
    ))?;
    let plan = metalk8s_plan::plan(&inventory, &session.facts, &gathered.inputs, phases)
        .map_err(OpsError::from)?
        .redacted();
    if !output::print_data(args.output, &plan) {
        print_table(&plan);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(plan: &Plan) {
    print!("{}", render_table(plan));
    eprintln!("`metalk8s deploy --dry-run` shows what each step would change.");
}

/// Each phase with its summary and rollout, then a table of its hosts and their steps.
fn render_table(plan: &Plan) -> String {
    let mut out = String::new();
    for phase in &plan.phases {
        let rollout = match phase.rollout {
            Rollout::Parallel => "all hosts at once".to_owned(),
            Rollout::Batches { size } => format!("{size} host(s) at a time"),
            Rollout::FirstAlone => "the first host alone, then the others".to_owned(),
            Rollout::OneAtATimeFirst { count } => {
                format!("the first {count} hosts one at a time, then the others")
            }
        };
        let unit = metalk8s_plan::phases::unit(phase.name);
        writeln!(out, "phase {}: {} ({rollout})", phase.name, unit.summary).unwrap();
        if phase.hosts.is_empty() {
            writeln!(out, "  no hosts").unwrap();
            continue;
        }
        let mut table = output::table(&["node", "steps"]);
        for host in &phase.hosts {
            let steps: Vec<&str> = host.steps.iter().map(|s| s.id.as_str()).collect();
            table.add_row(vec![host.node.clone(), steps.join("\n")]);
        }
        writeln!(out, "{table}").unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::PhaseName;
    use metalk8s_model::plan::{HostPlan, Phase, Resource, Step, SwapOffResource};

    fn host(node: &str, steps: &[&str]) -> HostPlan {
        HostPlan {
            node: node.to_owned(),
            steps: steps
                .iter()
                .map(|id| Step {
                    id: (*id).to_owned(),
                    resource: Resource::SwapOff(SwapOffResource {}),
                    after: Vec::new(),
                    watch: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_plan_table_shows_each_phase_its_rollout_and_steps() {
        let plan = Plan {
            api_version: "metalk8s.io/v1alpha1".to_owned(),
            kind: "Plan".to_owned(),
            cluster: "lab".to_owned(),
            phases: vec![
                Phase {
                    name: PhaseName::Os,
                    rollout: Rollout::Parallel,
                    hosts: vec![
                        host("node1", &["swap", "packages"]),
                        host("node2", &["swap"]),
                    ],
                    objects: None,
                },
                Phase {
                    name: PhaseName::Repository,
                    rollout: Rollout::FirstAlone,
                    hosts: Vec::new(),
                    objects: None,
                },
                Phase {
                    name: PhaseName::Etcd,
                    rollout: Rollout::Batches { size: 1 },
                    hosts: vec![host("node1", &["service/etcd"])],
                    objects: None,
                },
            ],
        };
        insta::assert_snapshot!(render_table(&plan));
    }
}
