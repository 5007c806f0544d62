//! One module per subcommand; `run` dispatches.

mod agent;
mod bundle;
mod certs;
mod completions;
mod deploy;
mod etcd;
mod inventory;
mod kubeconfig;
mod lab;
mod plan;
mod precheck;
mod repo;

use crate::cli::{Cli, Command};
use crate::exit::CommandResult;

pub fn run(cli: Cli) -> CommandResult {
    match cli.command {
        Command::Inventory(command) => inventory::run(command),
        Command::Precheck(args) => precheck::run(args),
        Command::Lab(command) => lab::run(command),
        Command::Bundle(command) => bundle::run(command),
        Command::Plan(args) => plan::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Etcd(command) => etcd::run(command),
        Command::Certs(command) => certs::run(command),
        Command::Kubeconfig(args) => kubeconfig::run(args),
        Command::Agent(command) => agent::run(command),
        Command::Repo(command) => repo::run(command),
        Command::Completions { shell } => completions::run(shell),
    }
}

/// A runtime for the commands that talk to many hosts at once.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

fn connect_options(args: &crate::cli::ConnectArgs) -> metalk8s_transport::ConnectOptions {
    metalk8s_transport::ConnectOptions {
        host_keys: args
            .accept_new_host_keys
            .then_some(metalk8s_transport::HostKeyPolicy::AcceptNew),
        reuse_connections: (!args.fresh_connections).then(ssh_connections_dir),
    }
}

/// Where SSH connections kept for later runs live: the user's runtime directory when there
/// is one (private, emptied at logout), else their cache.
fn ssh_connections_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(runtime).join("metalk8s/ssh");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/metalk8s/ssh"),
        None => std::env::temp_dir().join("metalk8s-ssh"),
    }
}
