use std::process::ExitCode;

use crate::cli::KubeconfigArgs;
use crate::exit::{CommandResult, Failure};
use crate::ops::OpsError;
use crate::ops::kubeconfig::{issue, write_file};

pub fn run(args: KubeconfigArgs) -> CommandResult {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    let kubeconfig =
        super::runtime().block_on(issue(&inventory, &super::connect_options(&args.connect)))?;
    let yaml = kubeconfig.to_yaml().map_err(Failure::error)?;
    let server = kubeconfig.server().unwrap_or_default();
    match &args.out {
        None => print!("{yaml}"),
        Some(path) => {
            write_file(path, &yaml, args.force).map_err(OpsError::from)?;
            eprintln!(
                "wrote {} ({} at {server}); use it with `export KUBECONFIG={}`",
                path.display(),
                kubeconfig.current_context,
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
