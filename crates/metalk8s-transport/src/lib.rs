//! How metalk8s reaches a host: the `Host` trait and its implementations.
//!
//! Everything above this crate in the layer picture of DESIGN.md (pre-checks, resources,
//! the executor) touches a node only through [`Host`]. Implementations:
//!
//! - [`SshHost`]: one multiplexed connection per node through the system `ssh` binary
//!   (ControlMaster), host keys checked against known_hosts, never prompting;
//!   [`connect_all`] opens them for a whole inventory with bounded parallelism.
//! - [`LocalHost`]: the machine metalk8s runs on.
//! - [`fake::RecordingHost`]: scripted answers and a record of every call, for the unit
//!   tests of the layers above; tests pass it explicitly.
//!
//! Observations read hosts through [`Probe`]s ([`Host::probe`]), which a host may answer
//! without running the probe's script: `LocalHost` (what the agent uses on a node) reads
//! the paths a probe asks about in-process, since spawning processes dominates observing
//! a converged node.
//!
//! Every implementation gives a [`Command`] the same meaning: `sh -c SCRIPT`, through
//! `sudo -n` when it must run as root and the login is not root, with its standard input
//! fed from the command and its timeout enforced both here and on the host (so a command
//! given up on does not linger there).

mod fleet;
mod local;
mod probe;
mod shell;
mod ssh;
mod stdio;

pub mod fake;

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

pub use fleet::{ConnectOptions, connect_all};
pub use local::LocalHost;
pub use probe::{END_SECTION, Probe, SCRIPT_PRELUDE, SECTION_MARK, Section};
pub use shell::quote;
pub use ssh::{HostKeyPolicy, SshHost, SshTarget};

/// A shell script to run on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Run by `sh -c` on the host.
    pub script: String,
    /// Fed to the script's standard input.
    pub stdin: Option<Vec<u8>>,
    /// Run as root (through `sudo -n` when the connection is not already root).
    pub become_root: bool,
    /// Give up, and report a timeout naming the host, after this long.
    pub timeout: Option<Duration>,
}

impl Command {
    pub fn new(script: impl Into<String>) -> Self {
        Command {
            script: script.into(),
            stdin: None,
            become_root: false,
            timeout: None,
        }
    }

    pub fn as_root(mut self) -> Self {
        self.become_root = true;
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a finished command left behind. A non-zero exit status is not a transport error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// A successful run that printed `stdout`.
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        Output {
            status: 0,
            stdout: stdout.into(),
            stderr: Vec::new(),
        }
    }

    /// A run that exited with `status` after printing `stderr`.
    pub fn failed(status: i32, stderr: impl Into<Vec<u8>>) -> Self {
        Output {
            status,
            stdout: Vec::new(),
            stderr: stderr.into(),
        }
    }
}

/// Receives each line of a command's standard output as it arrives. Spelled with an
/// explicit `for<'l>` because `async_trait` would otherwise tie the line's lifetime to the
/// call's.
pub type OnLine<'a> = dyn for<'l> Fn(&'l str) + Send + Sync + 'a;

/// A machine that commands run on and files are written to.
#[async_trait]
pub trait Host: Send + Sync {
    /// The inventory name of the node, used in every message about it.
    fn name(&self) -> &str;

    async fn run(&self, command: &Command) -> Result<Output, HostError>;

    /// Like [`Host::run`], calling `on_line` with each line of standard output as soon as
    /// it arrives (for progress); the full output is still returned. This default only
    /// calls it once the command has finished.
    async fn run_streaming(
        &self,
        command: &Command,
        on_line: &OnLine<'_>,
    ) -> Result<Output, HostError> {
        let output = self.run(command).await?;
        for line in output.stdout_text().lines() {
            on_line(line);
        }
        Ok(output)
    }

    /// Runs a read-only [`Probe`] as root. Its standard output holds the probe's sections
    /// whoever read them: this default runs the probe's script; a host that can read the
    /// path sections without a process says the same text, and runs a script only for
    /// its shell sections (and the status and standard error are then that script's).
    async fn probe(&self, probe: &Probe) -> Result<Output, HostError> {
        self.run(&probe.command()).await
    }

    /// Writes `contents` to `path` (as root when `become_root`), creating it with `mode`.
    async fn upload(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
        become_root: bool,
    ) -> Result<(), HostError>;

    /// A TCP address on this machine (the one running metalk8s) that reaches `remote` as
    /// the host sees it: `127.0.0.1:7443` on a control plane is its local API server
    /// proxy. Over SSH it is a forwarded loopback port that lasts as long as the
    /// connection; on the local machine, `remote` itself. This default has no way to
    /// forward and says so.
    async fn forward(&self, remote: SocketAddr) -> Result<SocketAddr, HostError> {
        Err(HostError::Connection {
            host: self.name().to_owned(),
            source: format!("this connection cannot forward a port to {remote}").into(),
        })
    }

    /// Releases the connection, if the host has one; commands run afterwards fail.
    async fn close(&self) -> Result<(), HostError> {
        Ok(())
    }
}

/// Why a host could not be used. Each variant names the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot reach {host} at {address}")]
    Unreachable {
        host: String,
        address: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{host} ({address}) refused the SSH login of user `{user}`")]
    AuthRefused {
        host: String,
        address: String,
        user: String,
    },
    #[error("the host key of {host} ({address}) changed since it was recorded in {known_hosts}")]
    HostKeyChanged {
        host: String,
        address: String,
        known_hosts: String,
    },
    #[error("the host key of {host} ({address}) is not in {known_hosts}")]
    HostKeyUnknown {
        host: String,
        address: String,
        known_hosts: String,
    },
    #[error("sudo on {host} refused to run a command as root for `{user}`")]
    SudoRefused { host: String, user: String },
    #[error("{what} on {host} did not finish within {seconds}s")]
    Timeout {
        host: String,
        what: String,
        seconds: u64,
    },
    #[error("the connection to {host} failed")]
    Connection {
        host: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot write {path} on {host}")]
    Upload {
        host: String,
        path: String,
        #[source]
        source: CommandFailed,
    },
}

/// A command on a host that exited unsuccessfully; the cause of errors such as
/// [`HostError::Upload`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("exit status {status}: {stderr}")]
pub struct CommandFailed {
    pub status: i32,
    /// The command's standard error, trimmed.
    pub stderr: String,
}

impl CommandFailed {
    pub fn from_output(output: &Output) -> Self {
        CommandFailed {
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        }
    }
}

impl HostError {
    /// The inventory name of the host the error is about.
    pub fn host(&self) -> &str {
        match self {
            HostError::Unreachable { host, .. }
            | HostError::AuthRefused { host, .. }
            | HostError::HostKeyChanged { host, .. }
            | HostError::HostKeyUnknown { host, .. }
            | HostError::SudoRefused { host, .. }
            | HostError::Timeout { host, .. }
            | HostError::Connection { host, .. }
            | HostError::Upload { host, .. } => host,
        }
    }

    /// What the operator can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            HostError::Unreachable { .. } => {
                "check the node's `address` in the inventory, that it is up, and that sshd listens on the configured port"
            }
            HostError::AuthRefused { .. } => {
                "check `ssh.user` and `ssh.identityFile` in the inventory, and that the public key is in the user's authorized_keys"
            }
            HostError::HostKeyChanged { .. } => {
                "if the node was reinstalled, remove its old entry with `ssh-keygen -R ADDRESS` (`[ADDRESS]:PORT` for a port other than 22); otherwise investigate before connecting"
            }
            HostError::HostKeyUnknown { .. } => {
                "record the key with `ssh-keyscan`, or set `ssh.acceptNewHostKeys: true` in the inventory to accept keys never seen before"
            }
            HostError::SudoRefused { .. } => {
                "allow the SSH user passwordless sudo (NOPASSWD) on the node, or log in as root"
            }
            HostError::Timeout { .. } => "check the node's load and network, or raise the timeout",
            HostError::Upload { .. } => {
                "check that the parent directory exists and that the login (or root, for files written as root) may write there"
            }
            HostError::Connection { .. } => return None,
        })
    }
}

/// Rendered with its hint, so that every error wrapping a host error
/// (`#[diagnostic(transparent)]`) shows the operator what to do.
impl miette::Diagnostic for HostError {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.hint()
            .map(|hint| Box::new(hint) as Box<dyn std::fmt::Display>)
    }
}
