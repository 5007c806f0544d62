//! What can go wrong in a lab, each error naming the container, network or file involved.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use thiserror::Error;

/// An external program (docker, losetup, debootstrap, ssh…) that could not run or failed.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

impl CommandError {
    /// What the program wrote on stderr, empty when it could not start.
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Spawn { .. } => "",
            CommandError::Failed { stderr, .. } => stderr,
        }
    }
}

#[derive(Debug, Error)]
pub enum LabError {
    #[error("invalid lab name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("invalid lab spec for `{name}`: {reason}")]
    InvalidSpec { name: String, reason: String },

    #[error("`{program}` is not on PATH; {hint}")]
    ToolMissing {
        program: &'static str,
        hint: &'static str,
    },

    #[error(
        "the docker daemon is not answering; start it with \
         `nohup dockerd >/var/log/dockerd.log 2>&1 &` (or `systemctl start docker`)"
    )]
    DockerNotRunning {
        #[source]
        source: CommandError,
    },

    #[error(
        "the lab must run as root (it attaches loop devices and starts systemd containers); \
         run it again with sudo"
    )]
    NotRoot,

    #[error("no lab named `{name}` (nothing in {dir})")]
    NotFound { name: String, dir: PathBuf },

    #[error("lab `{lab}` has no node `{node}`; its nodes are: {known}")]
    UnknownNode {
        lab: String,
        node: String,
        known: String,
    },

    #[error("could not build the lab node image {image} (build log: {log})")]
    ImageBuild {
        image: String,
        log: PathBuf,
        #[source]
        source: CommandError,
    },

    #[error("could not import the lab node image {image} from {tarball}")]
    ImageImport {
        image: String,
        tarball: PathBuf,
        #[source]
        source: CommandError,
    },

    #[error("no free /24 left in {supernet} for the network {network}")]
    NoFreeSubnet { network: String, supernet: String },

    #[error("docker command for {object} failed")]
    Docker {
        object: String,
        #[source]
        source: CommandError,
    },

    #[error("could not attach the spare disk {file} as a loop device")]
    Disk {
        file: PathBuf,
        #[source]
        source: CommandError,
    },

    #[error("could not create the SSH key {path}")]
    KeyGen {
        path: PathBuf,
        #[source]
        source: CommandError,
    },

    #[error(
        "node {container} did not finish booting within {seconds}s \
         (systemd state: `{state}`; see `docker logs {container}`)"
    )]
    Boot {
        container: String,
        seconds: u64,
        state: String,
    },

    #[error("sshd on {container} ({ip}) did not accept the lab key within {seconds}s")]
    Ssh {
        container: String,
        ip: String,
        seconds: u64,
        #[source]
        source: CommandError,
    },

    #[error("could not {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not parse the lab state {path}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not render the lab inventory {path}")]
    Inventory {
        path: PathBuf,
        #[source]
        source: serde_saphyr::SerializeError,
    },

    #[error("could not remove everything of lab `{name}` ({count} failure(s); first shown)")]
    Cleanup {
        name: String,
        count: usize,
        #[source]
        source: Box<LabError>,
    },
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn docker(object: impl Into<String>) -> impl FnOnce(CommandError) -> LabError {
        let object = object.into();
        move |source| LabError::Docker { object, source }
    }
}
