//! Command-line grammar (clap derive). Every command and option has its own help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use metalk8s_model::PhaseName;

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
    /// Operate the cluster's etcd: status, backup, restore, member replacement, defrag.
    #[command(subcommand)]
    Etcd(EtcdCommand),
    /// Check the certificates on every node, and renew them.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Print an admin kubeconfig for the cluster (a new client certificate in
    /// `kubeadm:cluster-admins`), or write it to a file.
    Kubeconfig(KubeconfigArgs),
    /// Run on a node by `deploy`: applies a host plan read from standard input.
    #[command(subcommand, hide = true)]
    Agent(AgentCommand),
    /// Local container "servers" for demos and tests.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Build, verify and inspect offline bundles (packages, binaries, images, manifests).
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Serve an offline bundle from the bootstrap node: OCI registry and APT repository.
    #[command(subcommand)]
    Repo(RepoCommand),
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
        /// Attach every server to a second network, with MTU 1450, used as the workload
        /// plane (`eth1`); the control plane stays on the first (`eth0`, MTU 1500).
        #[arg(long)]
        workload_network: bool,
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
    /// Only this phase (repeatable, or comma-separated); all phases when omitted
    /// (docs/phases.md).
    #[arg(
        long = "phase",
        value_name = "NAME",
        value_parser = phase_name(),
        value_delimiter = ','
    )]
    pub phases: Vec<PhaseName>,
}

/// `--phase` takes the registry's names; help and completions list them in run order.
fn phase_name() -> impl clap::builder::TypedValueParser<Value = PhaseName> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(PhaseName::ALL.map(|phase| {
        clap::builder::PossibleValue::new(phase.as_str())
            .help(metalk8s_plan::phases::unit(phase).summary)
    }))
    .map(|name| PhaseName::parse(&name).expect("clap accepts the phases' names only"))
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
    /// An offline bundle (directory or `.tar.zst`) to verify, stage on the bootstrap node
    /// and serve to every node; without it, the bundle staged before (if any) is served.
    #[arg(long, value_name = "PATH", requires = "bundle_key")]
    pub bundle: Option<PathBuf>,
    /// The bundle's trusted public key: 64 hex digits, or a file holding them.
    #[arg(long, value_name = "HEX|FILE", env = "METALK8S_BUNDLE_PUBLIC_KEY")]
    pub bundle_key: Option<String>,
    /// `json` prints the full report as data.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Apply the host plan given on standard input, printing events as JSON lines.
    Apply,
    /// Observe every phase's steps given on standard input, changing nothing; print what
    /// each phase would do as JSON.
    Observe,
    /// Answer a PKI request (standard input) from the key store of this bootstrap node.
    Pki,
    /// Place a bundle binary fetched from the bootstrap repository (the plan's `fetch`
    /// resource runs it: nodes have no curl).
    Fetch(AgentFetchArgs),
}

#[derive(Debug, Args)]
pub struct AgentFetchArgs {
    /// `https://BOOTSTRAP:8443/files/<name>`.
    #[arg(long)]
    pub url: String,
    /// The sha256 (hex) the file must have.
    #[arg(long)]
    pub sha256: String,
    /// The absolute path to place it at.
    #[arg(long)]
    pub out: PathBuf,
    /// Octal permission bits, e.g. 0755.
    #[arg(long, value_parser = parse_mode)]
    pub mode: u32,
    /// The CA certificate (PEM) the repository is checked with.
    #[arg(long)]
    pub ca: PathBuf,
}

/// An octal permission mode: `755`, `0755` or `0o755`.
fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("`{text}` is not an octal permission mode like 0755"))
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Build a signed bundle from a spec file: fetches its packages (with their
    /// dependencies) and pinned downloads through a resumable cache, converts its images.
    Build(BundleBuildArgs),
    /// Check a bundle's signature and every artifact's size and sha256 (exit 1 naming
    /// the first tampered, missing or unlisted file).
    Verify {
        /// A bundle directory or `.tar.zst` file.
        bundle: PathBuf,
        /// The trusted public key: 64 hex digits, or a file holding them.
        #[arg(long, value_name = "HEX|FILE", env = "METALK8S_BUNDLE_PUBLIC_KEY")]
        public_key: String,
    },
    /// Show a bundle's version, components and artifacts (not verified unless
    /// `--public-key` is given).
    Inspect {
        /// A bundle directory or `.tar.zst` file.
        bundle: PathBuf,
        /// Verify the bundle with this public key (64 hex digits, or a file) first.
        #[arg(long, value_name = "HEX|FILE")]
        public_key: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Make a signing key: writes the private key (mode 0600, never over an existing
    /// file) and prints the public key that nodes and `bundle verify` trust.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct BundleBuildArgs {
    /// The bundle spec (YAML); paths in it are relative to it.
    #[arg(long)]
    pub spec: PathBuf,
    /// The bundle to write: a directory, or a file ending in `.tar.zst`.
    #[arg(long)]
    pub out: PathBuf,
    /// The private key that signs the manifest (from `bundle keygen`).
    #[arg(long, value_name = "FILE", env = "METALK8S_BUNDLE_SIGNING_KEY")]
    pub signing_key: PathBuf,
    /// Download cache, kept between builds [default: ~/.cache/metalk8s/downloads].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Replace --out when it exists.
    #[arg(long)]
    pub force: bool,
}

/// What every command that works on a deployed cluster takes.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// `json` prints the result as data.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Every member: health, leader, version, database size (exit 1 when not all healthy).
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Take a snapshot from a healthy member and keep it on the bootstrap node.
    Backup {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Directory on the bootstrap node.
        #[arg(long, default_value = metalk8s_etcd::DEFAULT_BACKUP_DIR)]
        dir: String,
        /// How many snapshots to keep there (the newest).
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
        keep: u32,
        /// Also install a systemd timer on the bootstrap node that takes one on this
        /// schedule (systemd `OnCalendar=`: `daily`, `hourly`, `*-*-* 02:00:00`).
        #[arg(long, value_name = "CALENDAR")]
        schedule: Option<String>,
    },
    /// Rebuild the whole cluster from a snapshot (disaster recovery): every member's data
    /// is replaced, its previous data kept aside.
    Restore {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The snapshot, a file on the bootstrap node (as `etcd backup` printed it).
        #[arg(long)]
        snapshot: String,
    },
    /// Membership changes.
    #[command(subcommand)]
    Member(EtcdMemberCommand),
    /// Give freed space back to the file system, one member at a time.
    Defrag {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum EtcdMemberCommand {
    /// Replace a member whose data was lost: remove it, wipe it, add it back empty.
    Replace {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The member's node name.
        node: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// List every certificate on every node with its expiry (exit 1 when one expired).
    Check {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Warn about certificates expiring within this many days.
        #[arg(long, default_value_t = 30)]
        warn_days: u32,
    },
    /// Renew certificates, distribute them, and restart what uses them one node at a time.
    Renew {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Renew every leaf certificate.
        #[arg(long, conflicts_with = "expiring_within")]
        all: bool,
        /// Renew those expired or expiring within this many days (default 30).
        #[arg(long, value_name = "DAYS")]
        expiring_within: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Write it to FILE (mode 0600, replaced in one rename) instead of standard output. An
    /// existing FILE is replaced only when it is a kubeconfig.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace FILE even when it is not a kubeconfig.
    #[arg(long, requires = "out")]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Serve a bundle over HTTPS: a read-only OCI registry under /v2/ and a signed APT
    /// repository under /apt/ (what metalk8s-repo.service runs on the bootstrap node).
    Serve(RepoServeArgs),
    /// Make the cluster's APT signing key when there is none, write its public keyring
    /// (the nodes' /etc/apt/keyrings/metalk8s.gpg) and print its fingerprint.
    AptKey {
        /// The secret key file (armored OpenPGP, mode 0600); generated when missing.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the public keyring (binary OpenPGP).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RepoServeArgs {
    /// The bundle directory (checked with `bundle verify` beforehand).
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// TLS certificate chain (PEM) issued by the cluster CA.
    #[arg(long, value_name = "FILE", required_unless_present = "insecure_http")]
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", required_unless_present = "insecure_http")]
    pub key: Option<PathBuf>,
    /// The APT signing key (from `repo apt-key`).
    #[arg(long, value_name = "FILE")]
    pub apt_key: PathBuf,
    /// Serve plain HTTP instead of HTTPS (benchmarks only: nodes never use it).
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    pub insecure_http: bool,
}
