//! Local "servers" for the metalk8s demo and end-to-end tests (the Lab of DESIGN.md).
//!
//! `up` makes N nodes: docker containers booting systemd and sshd from a Debian 12 root
//! filesystem built once with debootstrap, on their own docker network with fixed
//! addresses, each with sparse-file loop devices as spare disks (/dev/vdb, /dev/vdc…) and
//! a docker volume for /var/lib/containerd. It leaves a ready inventory that `metalk8s
//! deploy` uses exactly as for real servers: over SSH, with the lab's own key and
//! known_hosts.
//!
//! The API is synchronous (it drives the docker, losetup, debootstrap and ssh CLIs and
//! waits for nodes on threads); from async code call it inside `spawn_blocking`. It needs
//! root and a running docker daemon.
//!
//! Where things live:
//! - each lab: `$METALK8S_LAB_DIR/<name>` (default `/var/lib/metalk8s/labs/<name>`):
//!   SSH key, known_hosts, `inventory.yaml`, `state.json` and the disks' backing files;
//! - the node image cache: `$METALK8S_LAB_CACHE` (default `/var/cache/metalk8s/lab`):
//!   the root filesystem tarball and debootstrap's downloaded packages;
//! - every docker object carries the label `metalk8s.lab=<name>`, so `down` finds them
//!   even when `state.json` is lost.
//!
//! A failed `up` leaves what it made for inspection; `down`, or the next `up` of the same
//! name, removes it.

mod cmd;
mod disks;
mod docker;
mod error;
mod image;
mod lab;
mod layout;
mod node;
mod paths;
mod ssh;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use error::{CommandError, LabError};
pub use lab::{down, inventory_path, ssh_command, status, up};
pub use paths::{cache_dir, labs_dir};

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabSpec {
    /// Names the lab's docker objects and state directory: lowercase letters, digits, `-`.
    pub name: String,
    pub nodes: usize,
    /// Spare disks per node, seen inside as /dev/vdb, /dev/vdc…
    pub disks_per_node: usize,
    /// Size of each spare disk in bytes; sparse, so only what is written takes space.
    pub disk_size: u64,
    /// Also attach every node to a second docker network, for the workload plane, with
    /// the MTU [`LabSpec::WORKLOAD_MTU`] (the first keeps docker's 1500), as on servers
    /// with separate control-plane and workload networks.
    pub workload_network: bool,
}

impl LabSpec {
    pub const DEFAULT_DISKS_PER_NODE: usize = 2;
    pub const DEFAULT_DISK_SIZE: u64 = 2 << 30;
    /// The workload network's MTU: unlike the control plane's, so that the planes can be
    /// told apart by it.
    pub const WORKLOAD_MTU: u32 = 1450;

    /// A lab of `nodes` nodes with the default disks (2 × 2 GiB per node).
    pub fn new(name: impl Into<String>, nodes: usize) -> LabSpec {
        LabSpec {
            name: name.into(),
            nodes,
            disks_per_node: LabSpec::DEFAULT_DISKS_PER_NODE,
            disk_size: LabSpec::DEFAULT_DISK_SIZE,
            workload_network: false,
        }
    }
}

/// A lab that is up; also what `state.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabInfo {
    pub name: String,
    /// The node image, `metalk8s-lab-node:<recipe hash>`.
    pub image: String,
    pub network: String,
    pub subnet: Ipv4Net,
    /// The lab's state directory.
    pub dir: PathBuf,
    pub identity_file: PathBuf,
    pub known_hosts_file: PathBuf,
    pub inventory: PathBuf,
    pub nodes: Vec<LabNode>,
    /// The second network, for the workload plane ([`LabSpec::workload_network`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadNetwork>,
}

/// A lab's workload-plane network: every node's second interface (`eth1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadNetwork {
    pub network: String,
    pub subnet: Ipv4Net,
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabNode {
    /// Host name and inventory name: node1, node2…
    pub name: String,
    pub container: String,
    pub ip: Ipv4Addr,
    /// The node's address on the workload network, when the lab has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ip: Option<Ipv4Addr>,
    /// Docker volume mounted on /var/lib/containerd.
    pub containerd_volume: String,
    pub disks: Vec<LabDisk>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabDisk {
    /// Device path inside the node: /dev/vdb…
    pub device: String,
    /// Loop device on the host.
    pub loop_device: PathBuf,
    /// Sparse file behind the loop device.
    pub backing_file: PathBuf,
}

/// How a lab's nodes are doing right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabStatus {
    pub name: String,
    pub network: String,
    pub subnet: Ipv4Net,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadNetwork>,
    pub inventory: PathBuf,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub container: String,
    pub ip: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_ip: Option<Ipv4Addr>,
    /// Docker's state of the container (`running`, `exited`…); `None` when it is gone.
    pub container_state: Option<String>,
    /// `systemctl is-system-running` inside the node (`running`, `degraded`…), when the
    /// container runs.
    pub systemd_state: Option<String>,
}
