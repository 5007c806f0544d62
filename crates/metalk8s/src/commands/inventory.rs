use std::path::{Path, PathBuf};
use std::process::ExitCode;

use metalk8s_inventory::InventoryError;

use crate::cli::InventoryCommand;
use crate::exit::{CommandResult, Failure, INVALID_INPUT};
use crate::output::{self, Format};

pub fn run(command: InventoryCommand) -> CommandResult {
    match command {
        InventoryCommand::Validate { file, output } => validate(&file, output),
        InventoryCommand::Show { file, output } => show(&file, output),
        InventoryCommand::Schema => {
            output::print_json(&metalk8s_inventory::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        InventoryCommand::Import {
            file,
            group_vars,
            host_vars,
        } => import(&file, group_vars, host_vars),
    }
}

fn validate(file: &Path, format: Format) -> CommandResult {
    let result = metalk8s_inventory::load(file);
    if format == Format::Table {
        let inventory = result.map_err(Failure::invalid)?;
        println!(
            "{}: valid, cluster `{}` with {} nodes",
            file.display(),
            inventory.name,
            inventory.nodes.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let problems = match result {
        Ok(_) => Vec::new(),
        // A file that cannot be read has no problem list: it is reported as an error.
        Err(error @ InventoryError::Read { .. }) => return Err(Failure::invalid(error)),
        Err(error) => error.problems().to_vec(),
    };
    let valid = problems.is_empty();
    output::print_data(
        format,
        &serde_json::json!({ "file": file, "valid": valid, "problems": problems }),
    );
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INVALID_INPUT)
    })
}

fn show(file: &Path, format: Format) -> CommandResult {
    let inventory = metalk8s_inventory::load(file).map_err(Failure::invalid)?;
    match format {
        Format::Json => output::print_json(&inventory),
        Format::Yaml | Format::Table => print!("{}", metalk8s_inventory::to_yaml(&inventory)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Ansible keeps group_vars and host_vars next to the inventory; use them when present.
fn beside(file: &Path, explicit: Option<PathBuf>, name: &str) -> Option<PathBuf> {
    explicit.or_else(|| {
        let candidate = file.parent()?.join(name);
        candidate.is_dir().then_some(candidate)
    })
}

fn import(file: &Path, group_vars: Option<PathBuf>, host_vars: Option<PathBuf>) -> CommandResult {
    let text = std::fs::read_to_string(file).map_err(|error| {
        Failure::invalid(miette::miette!("cannot read {}: {error}", file.display()))
    })?;
    let group_vars = beside(file, group_vars, "group_vars");
    let host_vars = beside(file, host_vars, "host_vars");
    let imported =
        metalk8s_inventory::import::import_ini(&text, group_vars.as_deref(), host_vars.as_deref())
            .map_err(Failure::invalid)?;
    print!("{}", metalk8s_inventory::to_yaml(&imported.inventory));
    for line in &imported.unmapped {
        eprintln!("not mapped: {line}");
    }
    Ok(ExitCode::SUCCESS)
}
