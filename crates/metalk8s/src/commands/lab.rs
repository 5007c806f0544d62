use std::process::ExitCode;

use comfy_table::Cell;

use crate::cli::LabCommand;
use crate::exit::{CommandResult, Failure};
use crate::output::{self, Format};

pub fn run(command: LabCommand) -> CommandResult {
    match command {
        LabCommand::Up {
            lab,
            nodes,
            workload_network,
        } => {
            let spec = metalk8s_lab::LabSpec {
                workload_network,
                ..metalk8s_lab::LabSpec::new(&lab.name, usize::from(nodes))
            };
            let info = metalk8s_lab::up(&spec, &|message: &str| eprintln!("{message}"))
                .map_err(Failure::error)?;
            println!("{}", info.inventory.display());
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { lab, output } => {
            let status = metalk8s_lab::status(&lab.name).map_err(Failure::error)?;
            if output == Format::Table {
                print_status(&status);
            } else {
                output::print_data(output, &status);
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { lab } => {
            metalk8s_lab::down(&lab.name).map_err(Failure::error)?;
            eprintln!("Lab `{}` removed", lab.name);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Ssh { lab, node, command } => {
            let mut ssh = metalk8s_lab::ssh_command(&lab.name, &node).map_err(Failure::error)?;
            ssh.args(&command);
            let status = ssh
                .status()
                .map_err(|error| Failure::problem(miette::miette!("cannot run ssh: {error}")))?;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }
        LabCommand::Inventory { lab } => {
            let path = metalk8s_lab::inventory_path(&lab.name).map_err(Failure::error)?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(status: &metalk8s_lab::LabStatus) {
    let mut table = output::table(&[
        "node",
        "address",
        "workload address",
        "container",
        "systemd",
    ]);
    for node in &status.nodes {
        table.add_row(vec![
            Cell::new(&node.name),
            Cell::new(node.ip),
            Cell::new(node.workload_ip.map_or("-".to_owned(), |ip| ip.to_string())),
            Cell::new(node.container_state.as_deref().unwrap_or("gone")),
            Cell::new(node.systemd_state.as_deref().unwrap_or("-")),
        ]);
    }
    println!("{table}");
}
