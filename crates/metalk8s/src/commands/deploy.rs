use std::process::ExitCode;

use comfy_table::Cell;
use metalk8s_engine::report::DeployReport;
use metalk8s_model::report::StepOutcome;

use crate::cli::DeployArgs;
use crate::exit::{CommandResult, Failure, PROBLEM_FOUND};
use crate::ops::bundle::BundleSource;
use crate::ops::deploy::{DeployRequest, deploy};
use crate::output;

pub fn run(args: DeployArgs) -> CommandResult {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    let mut request = DeployRequest::new(args.phases.phases, super::connect_options(&args.connect));
    request.limit = args.limit;
    request.dry_run = args.dry_run;
    request.bundle = args
        .bundle
        .zip(args.bundle_key)
        .map(|(path, public_key)| BundleSource { path, public_key });
    let report = super::runtime()
        .block_on(deploy(&inventory, &request))?
        .report;
    if !output::print_data(args.output, &report) {
        print_report(&report);
    }
    Ok(if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PROBLEM_FOUND)
    })
}

pub(crate) fn print_report(report: &DeployReport) {
    let mut table = output::table(&[
        "phase",
        "node",
        "changed",
        "unchanged",
        "unsupported",
        "failed",
        "skipped",
        "time",
    ]);
    for phase in &report.phases {
        for host in &phase.hosts {
            let tally = host.tally();
            table.add_row(vec![
                Cell::new(&phase.name),
                Cell::new(&host.node),
                Cell::new(tally.changed),
                Cell::new(tally.unchanged),
                Cell::new(tally.unsupported),
                Cell::new(if host.error.is_some() {
                    "host".to_owned()
                } else {
                    tally.failed.to_string()
                }),
                Cell::new(tally.skipped),
                Cell::new(format!("{:.1}s", host.duration_ms as f64 / 1000.0)),
            ]);
        }
    }
    println!("{table}");
    for phase in &report.phases {
        for gate in &phase.gates {
            let verdict = if gate.passed { "passed" } else { "FAILED" };
            println!(
                "[{}] health gate after {}: {verdict}: {}",
                phase.name,
                gate.after.join(", "),
                gate.summary
            );
        }
        for host in &phase.hosts {
            if let Some(error) = &host.error {
                println!("{} [{}] failed: {error}", host.node, phase.name);
            }
            for step in &host.steps {
                print_step(&host.node, &phase.name, step);
            }
        }
    }
    let verb = if report.dry_run {
        "would change"
    } else {
        "changed"
    };
    let resumed: usize = report
        .phases
        .iter()
        .flat_map(|p| &p.hosts)
        .map(|h| h.tally().resumed)
        .sum();
    if let Some(run) = &report.resumed_from {
        println!("resumed interrupted run {run}: {resumed} steps it had completed were verified");
    }
    let not_run: Vec<&str> = report
        .phases
        .iter()
        .filter(|p| !p.completed)
        .map(|p| p.name.as_str())
        .collect();
    if report.succeeded {
        println!(
            "run {}: done ({} steps {verb} in total)",
            report.run,
            count_changed(report)
        );
    } else {
        println!(
            "run {}: FAILED; phases not completed: {}",
            report.run,
            not_run.join(", ")
        );
    }
}

fn count_changed(report: &DeployReport) -> usize {
    report
        .phases
        .iter()
        .flat_map(|p| &p.hosts)
        .map(|h| h.tally().changed)
        .sum()
}

fn print_step(node: &str, phase: &str, step: &metalk8s_engine::runner::StepReport) {
    let detail = match &step.outcome {
        StepOutcome::Unchanged => return,
        StepOutcome::Changed { changes } => changes.join("; "),
        StepOutcome::WouldChange { changes, diffs } => {
            let mut text = changes.join("; ");
            for diff in diffs {
                text.push('\n');
                text.push_str(diff.trim_end());
            }
            text
        }
        StepOutcome::Unsupported { reason } => reason.clone(),
        StepOutcome::Failed { error } => error.clone(),
        StepOutcome::Skipped { reason } => reason.clone(),
    };
    println!(
        "{node} [{phase}] {} {}: {detail}",
        step.step,
        step.outcome.label()
    );
}
