//! Command-line grammar (clap derive). Every command and option has its own help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::output::Format;

/// metalk8s: an opinionated Kubernetes distribution for long-term on-prem deployments.
///
/// Write one inventory file, then check the servers (`precheck`) and deploy onto them.
/// `metalk8s lab up` makes local container "servers" to try it on.
#[derive(Debug, Parser)]
#[command(name = "metalk8s", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read, validate, convert and describe inventory files.
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Check that every server of an inventory is ready to become a node.
    Precheck(PrecheckArgs),
    /// Print what `deploy` would do: every phase, host and step.
    Plan(PlanArgs),
    /// Bring the nodes to the state the inventory describes (resumes an interrupted run).
    Deploy(DeployArgs),
    /// Run on a node by `deploy`: applies a host plan read from standard input.
    #[command(subcommand, hide = true)]
    Agent(AgentCommand),
    /// Local container "servers" for demos and tests.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Check an inventory and report every problem found (exit 2 when any).
    Validate {
        /// The inventory file.
        file: PathBuf,
        /// `json` lists the problems as data.
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Print an inventory with every default filled in.
    Show {
        /// The inventory file.
        file: PathBuf,
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: Format,
    },
    /// Print the JSON Schema of the inventory format, for editors.
    Schema,
    /// Convert a Kubespray or MetalK8s 1.x Ansible INI inventory to this format (stdout).
    Import {
        /// The Ansible INI inventory.
        file: PathBuf,
        /// Ansible group_vars directory (default: `group_vars` next to the INI file, if any).
        #[arg(long)]
        group_vars: Option<PathBuf>,
        /// Ansible host_vars directory (default: `host_vars` next to the INI file, if any).
        #[arg(long)]
        host_vars: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct InventoryArg {
    /// The inventory file.
    #[arg(short, long, env = "METALK8S_INVENTORY")]
    pub inventory: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Accept and record the host keys of servers never connected to before (keys that
    /// changed are still refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Log in to every node again instead of reusing the SSH connections that earlier runs
    /// keep open for 10 idle minutes.
    #[arg(long)]
    pub fresh_connections: bool,
}

#[derive(Debug, Args)]
pub struct PrecheckArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct LabName {
    /// Name of the lab; several labs can live side by side.
    #[arg(long, default_value = "demo")]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create (or re-create) a lab of N servers and write its inventory.
    Up {
        #[command(flatten)]
        lab: LabName,
        /// Number of servers.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
        nodes: u16,
    },
    /// Show the servers of a lab.
    Status {
        #[command(flatten)]
        lab: LabName,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Remove a lab: its servers, network, disks and files.
    Down {
        #[command(flatten)]
        lab: LabName,
    },
    /// Open a shell on a lab server, or run a command there.
    Ssh {
        #[command(flatten)]
        lab: LabName,
        /// The server (`node1`, `node2`, ...).
        node: String,
        /// The command to run instead of a shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print the path of the lab's generated inventory.
    Inventory {
        #[command(flatten)]
        lab: LabName,
    },
}

#[derive(Debug, Args)]
pub struct PhaseSelection {
    /// Only this phase (repeatable); all phases when omitted.
    #[arg(long = "phase", value_name = "NAME")]
    pub phases: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub phases: PhaseSelection,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub phases: PhaseSelection,
    /// Only these nodes (repeatable).
    #[arg(long = "limit", value_name = "NODE")]
    pub limit: Vec<String>,
    /// Show what would change, with a unified diff for files, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `json` prints the full report as data.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Apply the host plan given on standard input, printing events as JSON lines.
    Apply,
}
