use std::fmt::Write;
use std::process::ExitCode;

use comfy_table::Cell;
use metalk8s_engine::report::{DeployReport, ObjectsReport};
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
    print!("{}", render_report(report));
}

/// The report as the terminal shows it: a table of hosts, the gates, every step that did
/// not come out unchanged, and the verdict.
fn render_report(report: &DeployReport) -> String {
    let mut out = String::new();
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
                Cell::new(phase.name),
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
    writeln!(out, "{table}").unwrap();
    for phase in &report.phases {
        for gate in &phase.gates {
            let verdict = if gate.passed { "passed" } else { "FAILED" };
            writeln!(
                out,
                "[{}] health gate after {}: {verdict}: {}",
                phase.name,
                gate.after.join(", "),
                gate.summary
            )
            .unwrap();
            if let Some(hint) = &gate.hint {
                writeln!(out, "  hint: {hint}").unwrap();
            }
        }
        for host in &phase.hosts {
            if let Some(error) = &host.error {
                writeln!(out, "{} [{}] failed: {error}", host.node, phase.name).unwrap();
            }
            for step in &host.steps {
                render_step(&mut out, &host.node, phase.name.as_str(), step);
            }
        }
        if let Some(objects) = &phase.objects {
            render_objects(&mut out, phase.name.as_str(), objects, report.dry_run);
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
        writeln!(
            out,
            "resumed interrupted run {run}: {resumed} steps it had completed were verified"
        )
        .unwrap();
    }
    let not_run: Vec<&str> = report
        .phases
        .iter()
        .filter(|p| !p.completed)
        .map(|p| p.name.as_str())
        .collect();
    if report.succeeded {
        let (steps, objects) = count_changed(report);
        let objects = if report.phases.iter().any(|p| p.objects.is_some()) {
            format!(" and {objects} objects")
        } else {
            String::new()
        };
        writeln!(
            out,
            "run {}: done ({steps} steps{objects} {verb} in total)",
            report.run,
        )
        .unwrap();
    } else {
        writeln!(
            out,
            "run {}: FAILED; phases not completed: {}",
            report.run,
            not_run.join(", ")
        )
        .unwrap();
    }
    out
}

/// Steps and Kubernetes objects changed (or that would change).
fn count_changed(report: &DeployReport) -> (usize, usize) {
    let steps: usize = report
        .phases
        .iter()
        .flat_map(|p| &p.hosts)
        .map(|h| h.tally().changed)
        .sum();
    let objects: usize = report
        .phases
        .iter()
        .filter_map(|p| p.objects.as_ref())
        .map(|o| o.created.len() + o.changed.len() + o.pruned.len())
        .sum();
    (steps, objects)
}

/// A phase's object set: the counts, then each object created, changed or pruned, or why
/// it could not be applied.
fn render_objects(out: &mut String, phase: &str, objects: &ObjectsReport, dry_run: bool) {
    let (created, changed, pruned) = if dry_run {
        ("to apply", "to change", "to prune")
    } else {
        ("created", "changed", "pruned")
    };
    writeln!(
        out,
        "[{phase}] objects {}: {} {created}, {} {changed}, {} unchanged, {} {pruned}",
        objects.set,
        objects.created.len(),
        objects.changed.len(),
        objects.unchanged,
        objects.pruned.len()
    )
    .unwrap();
    if objects.offline {
        writeln!(
            out,
            "  the cluster's API did not answer: every object is listed as to apply, and what would be pruned is unknown"
        )
        .unwrap();
    }
    for (verb, names) in [
        (created, &objects.created),
        (changed, &objects.changed),
        (pruned, &objects.pruned),
    ] {
        for name in names {
            writeln!(out, "  {verb}: {name}").unwrap();
        }
    }
    if let Some(error) = &objects.error {
        writeln!(out, "[{phase}] objects {} FAILED: {error}", objects.set).unwrap();
        if let Some(hint) = &objects.hint {
            writeln!(out, "  hint: {hint}").unwrap();
        }
    }
}

fn render_step(
    out: &mut String,
    node: &str,
    phase: &str,
    step: &metalk8s_engine::runner::StepReport,
) {
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
    writeln!(
        out,
        "{node} [{phase}] {} {}: {detail}",
        step.step,
        step.outcome.label()
    )
    .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_engine::report::{GateReport, HostReport, PhaseReport};
    use metalk8s_engine::runner::StepReport;
    use metalk8s_model::PhaseName;

    fn step(step: &str, outcome: StepOutcome) -> StepReport {
        StepReport {
            step: step.to_owned(),
            outcome,
            duration_ms: 12,
            resumed: false,
        }
    }

    #[test]
    fn the_report_shows_hosts_gates_with_hints_changes_and_the_verdict() {
        let report = DeployReport {
            api_version: "metalk8s.io/v1alpha1".to_owned(),
            kind: "DeployReport".to_owned(),
            run: "20261204-101500-42".to_owned(),
            dry_run: false,
            resumed_from: None,
            succeeded: false,
            phases: vec![
                PhaseReport {
                    name: PhaseName::Os,
                    completed: true,
                    hosts: vec![HostReport {
                        node: "node1".to_owned(),
                        steps: vec![
                            step("swap", StepOutcome::Unchanged),
                            step(
                                "packages",
                                StepOutcome::Changed {
                                    changes: vec!["installed chrony".to_owned()],
                                },
                            ),
                        ],
                        error: None,
                        duration_ms: 1500,
                    }],
                    gates: Vec::new(),
                    objects: None,
                },
                PhaseReport {
                    name: PhaseName::Etcd,
                    completed: false,
                    hosts: vec![HostReport {
                        node: "node1".to_owned(),
                        steps: vec![step(
                            "service/etcd",
                            StepOutcome::Changed {
                                changes: vec!["restarted".to_owned()],
                            },
                        )],
                        error: None,
                        duration_ms: 4200,
                    }],
                    gates: vec![GateReport {
                        after: vec!["node1".to_owned()],
                        passed: false,
                        summary: "etcd is not healthy after 180 s: node2 unhealthy".to_owned(),
                        hint: Some("`metalk8s etcd status` shows each member".to_owned()),
                    }],
                    objects: None,
                },
                PhaseReport {
                    name: PhaseName::Containerd,
                    completed: false,
                    hosts: Vec::new(),
                    gates: Vec::new(),
                    objects: None,
                },
            ],
        };
        insta::assert_snapshot!(render_report(&report));
    }

    #[test]
    fn the_report_shows_each_object_created_changed_or_pruned_and_a_failed_set() {
        let phase = |objects: ObjectsReport| PhaseReport {
            name: PhaseName::Kubernetes,
            completed: objects.error.is_none(),
            hosts: Vec::new(),
            gates: Vec::new(),
            objects: Some(objects),
        };
        let report = |dry_run: bool, objects: ObjectsReport| DeployReport {
            api_version: "metalk8s.io/v1alpha1".to_owned(),
            kind: "DeployReport".to_owned(),
            run: "20261205-021500-42".to_owned(),
            dry_run,
            resumed_from: None,
            succeeded: objects.error.is_none(),
            phases: vec![phase(objects)],
        };
        let applied = ObjectsReport {
            set: "metalk8s-test".to_owned(),
            created: vec!["Namespace calico-system".to_owned()],
            changed: vec!["DaemonSet kube-system/calico-node".to_owned()],
            unchanged: 40,
            pruned: vec!["ConfigMap kube-system/old".to_owned()],
            ..ObjectsReport::default()
        };
        let offline = ObjectsReport {
            set: "metalk8s-test".to_owned(),
            created: vec!["Namespace calico-system".to_owned()],
            offline: true,
            ..ObjectsReport::default()
        };
        let failed = ObjectsReport {
            set: "metalk8s-test".to_owned(),
            error: Some(
                "DaemonSet kube-system/calico-node: 1 of 3 pods ready after 300 s".to_owned(),
            ),
            hint: Some("`kubectl -n kube-system describe pod calico-node-x2x9q`".to_owned()),
            ..ObjectsReport::default()
        };
        insta::assert_snapshot!(format!(
            "{}\n{}\n{}",
            render_report(&report(false, applied)),
            render_report(&report(true, offline)),
            render_report(&report(false, failed))
        ));
    }
}
