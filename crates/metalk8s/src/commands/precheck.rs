use std::process::ExitCode;

use comfy_table::Cell;
use metalk8s_model::report::{CheckStatus, PrecheckReport};

use crate::cli::PrecheckArgs;
use crate::exit::{CommandResult, Failure, PROBLEM_FOUND};
use crate::output;

pub fn run(args: PrecheckArgs) -> CommandResult {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    let options = super::connect_options(&args.connect);
    let parallelism = inventory.ssh.parallelism as usize;
    let report = super::runtime().block_on(async {
        eprintln!("Gathering facts from {} nodes...", inventory.nodes.len());
        let connections = metalk8s_transport::connect_all(&inventory, &options).await;
        metalk8s_precheck::run(&inventory, connections, parallelism).await
    });
    if !output::print_data(args.output, &report) {
        print_tables(&report);
    }
    Ok(if report.failed() {
        ExitCode::from(PROBLEM_FOUND)
    } else {
        ExitCode::SUCCESS
    })
}

fn status_text(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "ok",
        CheckStatus::Warn => "WARN",
        CheckStatus::Fail => "FAIL",
    }
}

fn print_tables(report: &PrecheckReport) {
    for node in &report.nodes {
        println!("{} ({})", node.node, status_text(node.worst()));
        let mut table = output::table(&["check", "status", "detail"]);
        for check in &node.checks {
            let mut detail = check.message.clone();
            if let Some(hint) = &check.hint {
                detail.push_str(&format!("\nhint: {hint}"));
            }
            table.add_row(vec![
                Cell::new(&check.check),
                Cell::new(status_text(check.status)),
                Cell::new(detail),
            ]);
        }
        println!("{table}\n");
    }
    let summary = &report.summary;
    let failing: Vec<&str> = report
        .nodes
        .iter()
        .filter(|n| n.worst() == CheckStatus::Fail)
        .map(|n| n.node.as_str())
        .collect();
    println!(
        "{} nodes: {} passed, {} warnings, {} failed{}",
        report.nodes.len(),
        summary.pass,
        summary.warn,
        summary.fail,
        if failing.is_empty() {
            String::new()
        } else {
            format!(" (on {})", failing.join(", "))
        }
    );
}
