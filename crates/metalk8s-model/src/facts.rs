//! What a host says about itself, gathered once per run and consumed by pre-checks and
//! (later) by the planner.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    /// `hostname` as the node reports it (short form).
    pub hostname: String,
    pub os: OsRelease,
    /// `uname -r`.
    pub kernel: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub swap_bytes: u64,
    /// Free bytes on the filesystem holding /var.
    pub var_free_bytes: u64,
    /// How far the node's clock is ahead of the machine running metalk8s, in seconds.
    pub clock_offset: f64,
    /// Half the round trip of the clock reading: the error bound of `clock_offset`.
    pub clock_uncertainty: f64,
    /// Every address configured on an interface.
    pub addresses: Vec<InterfaceAddress>,
    /// Sockets listening for TCP connections.
    pub listening: Vec<Listener>,
    /// Installed packages of interest, by name, with their versions.
    pub packages: BTreeMap<String, String>,
    /// What each queried name resolves to on this node (empty when it does not resolve).
    pub resolved: BTreeMap<String, Vec<IpAddr>>,
    /// Block devices asked about, by the path given in the inventory.
    pub devices: BTreeMap<String, DeviceFacts>,
    /// The resolvers of the node's /etc/resolv.conf, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
    /// What kubeadm has already done on the node.
    #[serde(default)]
    pub kubernetes: KubernetesFacts,
    /// Every network interface with its MTU (empty from an agent older than this field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// The main routing tables, IPv4 and IPv6 (not the kernel's `local` table of the
    /// node's own and broadcast addresses). Empty from an older agent, and when gathered
    /// for planning only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Whether the running kernel can do WireGuard; `None` when not asked (an older agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<ModuleAvailability>,
}

/// A network interface (`ip link`): what the address list does not say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// As in [`InterfaceAddress::interface`]: without the `@peer` suffix.
    pub name: String,
    pub mtu: u32,
}

/// One route of the node's routing table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Where the route leads: `0.0.0.0/0` or `::/0` for a default route, a /32 or /128
    /// for a host route.
    pub destination: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The interface the route leaves by; none for a blackhole or unreachable route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The route's type when it is not an ordinary (unicast) route: `blackhole`,
    /// `unreachable`, `prohibit`, `throw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Route {
    /// A default route (`0.0.0.0/0`, `::/0`): every address is "inside" it, so it says
    /// nothing about which ranges the node's networks use.
    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
    }
}

/// Whether a kernel module can be used on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ModuleAvailability {
    /// Loaded right now.
    Loaded,
    /// Compiled into the kernel (`modules.builtin`).
    BuiltIn,
    /// Not loaded, but the running kernel ships it (`modules.dep`): `modprobe` loads it.
    Loadable,
    /// The running kernel has no such module.
    Missing,
}

impl ModuleAvailability {
    pub fn is_available(self) -> bool {
        self != ModuleAvailability::Missing
    }
}

/// Written by metalk8s on a node once its `kubeadm init` or `kubeadm join` succeeded. Not
/// kubeadm's own files: kubeadm writes them part way through, so a failed run would look
/// done.
pub const KUBEADM_DONE_MARKER: &str = "/etc/kubernetes/kubeadm/joined";

/// What kubeadm has already done on the node: the planner runs `kubeadm init` or `join`
/// only where it has not succeeded yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesFacts {
    /// [`KUBEADM_DONE_MARKER`] exists: the node has joined the cluster (or created it).
    pub joined: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsRelease {
    /// `ID` from /etc/os-release (`debian`, `ubuntu`, `rhel`, `rocky`, `almalinux`).
    pub id: String,
    /// `VERSION_ID` from /etc/os-release.
    pub version_id: String,
    pub pretty_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceAddress {
    pub interface: String,
    pub address: IpAddr,
    pub prefix_len: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Local address; the unspecified address (0.0.0.0 or ::) means every address.
    pub address: IpAddr,
    pub port: u16,
    /// The process holding the socket, when it could be seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFacts {
    pub exists: bool,
    /// Whether the path is a block device.
    pub is_block: bool,
    pub size_bytes: u64,
    /// Signatures found on the device (filesystem type, `partition-table`, LVM, ...).
    pub signatures: Vec<String>,
    /// Partitions or holders seen below the device.
    pub children: Vec<String>,
    /// Where the device or one of its children is mounted.
    pub mountpoints: Vec<String>,
}
