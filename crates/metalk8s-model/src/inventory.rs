//! The inventory: the one file an operator writes (`apiVersion: metalk8s.io/v1alpha1`,
//! `kind: Inventory`).
//!
//! Every field but the node list and the control-plane and workload-plane networks has an
//! opinionated default, applied when the file is read, so that the value held here is always
//! the fully defaulted form that `metalk8s inventory show` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::size::ByteSize;

pub const API_VERSION: &str = "metalk8s.io/v1alpha1";
pub const KIND: &str = "Inventory";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inventory {
    /// Always `metalk8s.io/v1alpha1` for this version of the format.
    pub api_version: String,
    /// Always `Inventory`.
    pub kind: String,
    /// Name of the cluster; used in kubeconfigs, certificates and the lab.
    pub name: String,
    pub networks: Networks,
    /// HTTP(S) proxy the nodes go through to reach anything outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
    /// How to reach every node over SSH; each node may override any field.
    #[serde(default)]
    pub ssh: SshSettings,
    /// Thresholds used by `metalk8s precheck`.
    #[serde(default)]
    pub prechecks: Prechecks,
    /// How the operating system of every node is prepared.
    #[serde(default)]
    pub os: OsSettings,
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networks {
    /// CIDRs of the network carrying etcd, the API server, kubelet and SSH.
    pub control_plane: Vec<IpNet>,
    /// CIDRs of the network carrying pod traffic and ingress.
    pub workload_plane: Vec<IpNet>,
    /// Pod CIDR handed to the CNI.
    #[serde(default = "default_pods")]
    pub pods: IpNet,
    /// Service CIDR handed to the API server.
    #[serde(default = "default_services")]
    pub services: IpNet,
    /// A virtual IP for clients outside the cluster to reach the API servers, held by
    /// keepalived on the control-plane nodes. Inside a control-plane CIDR and no node's
    /// address. Without it, clients use a control-plane node's address.
    #[serde(
        default,
        rename = "apiServerVIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_server_vip: Option<IpAddr>,
    /// The resolvers the cluster DNS forwards names outside the cluster to. When empty,
    /// those of the nodes' /etc/resolv.conf; when neither has any (an air-gapped site),
    /// the cluster DNS answers for the cluster's own names only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
    /// How pod traffic between nodes of different workload-plane subnets is encapsulated
    /// (inside one subnet it is routed as is): IP-in-IP, or VXLAN where IP protocol 4 is
    /// filtered.
    #[serde(default)]
    pub encapsulation: Encapsulation,
    /// Encrypts pod traffic between nodes. Needs the `wireguard` kernel module on every
    /// node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// `networks.encapsulation`: the tunnel Calico uses across workload-plane subnets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    /// IP-in-IP (IP protocol 4), 20 bytes a packet; Calico's BGP routes the pods.
    #[default]
    Ipip,
    /// VXLAN (UDP 4789), 50 bytes a packet; no BGP.
    Vxlan,
}

/// `networks.encryption`: how pod traffic between nodes is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// WireGuard tunnels between the nodes, keyed by Calico.
    Wireguard,
}

fn default_pods() -> IpNet {
    "10.233.0.0/16".parse().expect("valid default pod CIDR")
}

fn default_services() -> IpNet {
    "10.96.0.0/12".parse().expect("valid default service CIDR")
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proxy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
    /// Hosts and CIDRs reached directly; the cluster's own networks are always added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
}

impl Proxy {
    /// Whether a proxy URL carries a user (and maybe a password):
    /// `http://user:pw@host:port`. Files holding such a URL are secrets.
    pub fn has_credentials(&self) -> bool {
        [&self.http, &self.https].into_iter().flatten().any(|url| {
            url.split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or_default().contains('@'))
                .unwrap_or(false)
        })
    }
}

/// Cluster-wide SSH settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshSettings {
    #[serde(default = "default_ssh_user")]
    pub user: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Private key used to log in; the SSH agent and `~/.ssh/config` are used when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    /// Run commands through `sudo -n` (needed when `user` is not root).
    #[serde(default)]
    pub sudo: bool,
    /// known_hosts file that host keys are checked against (default: the user's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<String>,
    /// Accept and record host keys never seen before (keys that changed are always refused).
    #[serde(default)]
    pub accept_new_host_keys: bool,
    /// Seconds allowed to establish a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u32,
    /// Hosts contacted at the same time.
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            user: default_ssh_user(),
            port: default_ssh_port(),
            identity_file: None,
            sudo: false,
            known_hosts_file: None,
            accept_new_host_keys: false,
            connect_timeout_seconds: default_connect_timeout(),
            parallelism: default_parallelism(),
        }
    }
}

fn default_ssh_user() -> String {
    "root".to_owned()
}

fn default_ssh_port() -> u16 {
    22
}

fn default_connect_timeout() -> u32 {
    10
}

fn default_parallelism() -> u32 {
    20
}

/// Per-node SSH overrides; unset fields fall back to the cluster-wide settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
}

impl SshOverrides {
    pub fn is_empty(&self) -> bool {
        self == &SshOverrides::default()
    }
}

/// The SSH settings that apply to one node once its overrides are merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSsh {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<String>,
    pub sudo: bool,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Serves the offline repository and registry, holds the CA and the run journal.
    Bootstrap,
    Etcd,
    ControlPlane,
    Worker,
    /// Runs the cluster services (ingress, monitoring, logging).
    Infra,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Bootstrap,
        Role::Etcd,
        Role::ControlPlane,
        Role::Worker,
        Role::Infra,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bootstrap => "bootstrap",
            Role::Etcd => "etcd",
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Infra => "infra",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// Where SSH reaches the node: an IP address or a resolvable host name.
    pub address: String,
    /// The node's address in `networks.controlPlane`; found from its interfaces when unset.
    #[serde(
        default,
        rename = "controlPlaneIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub control_plane_ip: Option<IpAddr>,
    /// The node's address in `networks.workloadPlane`; found from its interfaces when unset.
    #[serde(
        default,
        rename = "workloadPlaneIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_plane_ip: Option<IpAddr>,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    #[serde(default, skip_serializing_if = "SshOverrides::is_empty")]
    pub ssh: SshOverrides,
    #[serde(default, skip_serializing_if = "Storage::is_empty")]
    pub storage: Storage,
}

impl Node {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether ordinary pods may be scheduled here (workers, and infra nodes for the
    /// cluster services).
    pub fn runs_workloads(&self) -> bool {
        self.has_role(Role::Worker) || self.has_role(Role::Infra)
    }

    pub fn ssh(&self, cluster: &SshSettings) -> NodeSsh {
        NodeSsh {
            user: self
                .ssh
                .user
                .clone()
                .unwrap_or_else(|| cluster.user.clone()),
            port: self.ssh.port.unwrap_or(cluster.port),
            identity_file: self
                .ssh
                .identity_file
                .clone()
                .or_else(|| cluster.identity_file.clone()),
            sudo: self.ssh.sudo.unwrap_or(cluster.sudo),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Storage {
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

impl Storage {
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }
}

/// A local persistent volume. Exactly one of `lvm`, `sparse` and `rawBlock` says where its
/// bytes live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvm: Option<LvmVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<SparseVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_block: Option<RawBlockVolume>,
    #[serde(default)]
    pub fs_type: FsType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mkfs_options: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_storage_class() -> String {
    "metalk8s-local".to_owned()
}

impl Volume {
    /// The block devices this volume consumes: they must exist and be empty.
    pub fn devices(&self) -> Vec<&str> {
        let mut devices: Vec<&str> = Vec::new();
        if let Some(lvm) = &self.lvm {
            devices.extend(lvm.devices.iter().map(String::as_str));
        }
        if let Some(raw) = &self.raw_block {
            devices.push(&raw.device);
        }
        devices
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LvmVolume {
    /// Volume group, created from `devices` when it does not exist.
    pub vg: String,
    pub size: ByteSize,
    #[serde(default)]
    pub devices: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SparseVolume {
    pub size: ByteSize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBlockVolume {
    pub device: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    #[default]
    Ext4,
    Xfs,
}

/// Thresholds for `metalk8s precheck`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prechecks {
    /// Minimum CPUs and memory for a node, by role; a node with several roles must meet
    /// the largest of each.
    #[serde(default = "default_requirements")]
    pub requirements: BTreeMap<Role, Requirement>,
    /// Minimum free space on the filesystem holding /var.
    #[serde(default = "default_min_var_free")]
    pub min_var_free: ByteSize,
    /// Largest clock difference tolerated between two nodes.
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew_seconds: f64,
    /// Minimum kernel version (`major.minor`).
    #[serde(default = "default_min_kernel")]
    pub min_kernel: String,
}

impl Default for Prechecks {
    fn default() -> Self {
        Prechecks {
            requirements: default_requirements(),
            min_var_free: default_min_var_free(),
            max_clock_skew_seconds: default_max_clock_skew(),
            min_kernel: default_min_kernel(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    pub cpus: u32,
    pub memory: ByteSize,
}

fn default_requirements() -> BTreeMap<Role, Requirement> {
    let requirement = |cpus, memory_gib| Requirement {
        cpus,
        memory: ByteSize::gib(memory_gib),
    };
    BTreeMap::from([
        (Role::Bootstrap, requirement(2, 2)),
        (Role::Etcd, requirement(2, 2)),
        (Role::ControlPlane, requirement(2, 2)),
        (Role::Worker, requirement(1, 1)),
        (Role::Infra, requirement(2, 4)),
    ])
}

fn default_min_var_free() -> ByteSize {
    ByteSize::gib(5)
}

fn default_max_clock_skew() -> f64 {
    2.0
}

fn default_min_kernel() -> String {
    "4.18".to_owned()
}

/// How the operating system of every node is prepared. Each field has a default that a
/// kubeadm node needs; maps and lists written here are merged into those defaults rather
/// than replacing them, so that adding one setting cannot drop a required one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsSettings {
    /// Kernel parameters, persisted under /etc/sysctl.d and applied live. A key written here
    /// replaces the default value of that key; the other defaults stay.
    #[serde(
        default = "default_sysctls",
        deserialize_with = "sysctls_over_defaults"
    )]
    #[schemars(schema_with = "sysctls_schema")]
    pub sysctls: BTreeMap<String, String>,
    /// Kernel modules loaded now and at boot, in this order; added to the defaults.
    #[serde(
        default = "default_kernel_modules",
        deserialize_with = "kernel_modules_over_defaults"
    )]
    pub kernel_modules: Vec<String>,
    /// OS packages installed on every node besides the ones metalk8s requires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Time synchronisation (chrony).
    #[serde(default)]
    pub ntp: Ntp,
    /// The system journal.
    #[serde(default)]
    pub journald: Journald,
    /// Open files allowed to every process (soft and hard limits), for logins and for
    /// systemd services.
    #[serde(default = "default_nofile")]
    pub nofile: u64,
}

impl Default for OsSettings {
    fn default() -> Self {
        OsSettings {
            sysctls: default_sysctls(),
            kernel_modules: default_kernel_modules(),
            packages: Vec::new(),
            ntp: Ntp::default(),
            journald: Journald::default(),
            nofile: default_nofile(),
        }
    }
}

/// Kernel parameters every node gets unless the inventory says otherwise.
pub const DEFAULT_SYSCTLS: &[(&str, &str)] = &[
    // Many pods each watching files (kubelet, log shippers) exhaust the distribution
    // defaults (8192 watches, 128 instances).
    ("fs.inotify.max_user_instances", "8192"),
    ("fs.inotify.max_user_watches", "1048576"),
    // The values the kubelet sets itself unless `protectKernelDefaults` is on; written
    // here so that it can be on (a CIS benchmark item) and the kubelet still starts.
    ("kernel.keys.root_maxbytes", "25000000"),
    ("kernel.keys.root_maxkeys", "1000000"),
    ("kernel.panic", "10"),
    ("kernel.panic_on_oops", "1"),
    ("vm.overcommit_memory", "1"),
    ("vm.panic_on_oom", "0"),
    // Bridged pod traffic must go through iptables for Services and network policies,
    // and nodes route pod traffic (kubeadm's preflight checks both).
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.ipv4.ip_forward", "1"),
    // The logging stack's search indexes map many files.
    ("vm.max_map_count", "262144"),
];

/// Kernel modules every node loads: bridge netfilter (for the `net.bridge` sysctls) and
/// overlayfs (containerd's snapshotter).
pub const DEFAULT_KERNEL_MODULES: &[&str] = &["br_netfilter", "overlay"];

/// Open files per process by default: the kernel's default `fs.nr_open`, which is as
/// high as a limit may go without raising that too.
pub const DEFAULT_NOFILE: u64 = 1 << 20;

fn default_sysctls() -> BTreeMap<String, String> {
    DEFAULT_SYSCTLS
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn default_kernel_modules() -> Vec<String> {
    DEFAULT_KERNEL_MODULES
        .iter()
        .map(|name| (*name).to_owned())
        .collect()
}

fn default_nofile() -> u64 {
    DEFAULT_NOFILE
}

/// Sysctl values are written as numbers or strings (`"32768 60999"`); both are kept as the
/// text written to /etc/sysctl.d.
fn sysctls_over_defaults<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Integer(i64),
        Text(String),
    }
    let written = BTreeMap::<String, Written>::deserialize(deserializer)?;
    let mut sysctls = default_sysctls();
    sysctls.extend(written.into_iter().map(|(key, value)| {
        let value = match value {
            Written::Integer(number) => number.to_string(),
            Written::Text(text) => text,
        };
        (key, value)
    }));
    Ok(sysctls)
}

fn kernel_modules_over_defaults<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let written = Vec::<String>::deserialize(deserializer)?;
    let mut modules = default_kernel_modules();
    for name in written {
        if !modules.contains(&name) {
            modules.push(name);
        }
    }
    Ok(modules)
}

fn sysctls_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Kernel parameters by name (`net.ipv4.ip_forward`), merged over the defaults.",
        "type": "object",
        "additionalProperties": {"type": ["string", "integer"]}
    })
}

/// Time synchronisation. The bootstrap node is the cluster's time server: it follows
/// `servers`, or its own clock when there are none, and every other node follows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ntp {
    /// NTP servers (host names or IPs) the bootstrap node synchronises with.
    #[serde(default)]
    pub servers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Journald {
    /// Largest disk space the persistent journal may take.
    #[serde(default = "default_journal_max_use")]
    pub system_max_use: ByteSize,
}

impl Default for Journald {
    fn default() -> Self {
        Journald {
            system_max_use: default_journal_max_use(),
        }
    }
}

fn default_journal_max_use() -> ByteSize {
    ByteSize::gib(2)
}

impl Inventory {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|node| node.name == name)
    }

    pub fn nodes_with(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |node| node.has_role(role))
    }

    /// The node with the `bootstrap` role (validation makes sure there is exactly one).
    pub fn bootstrap(&self) -> Option<&Node> {
        self.nodes_with(Role::Bootstrap).next()
    }

    /// The requirement a node must meet: the largest CPU and memory figure among its roles.
    pub fn requirement_for(&self, node: &Node) -> Option<Requirement> {
        node.roles
            .iter()
            .filter_map(|role| self.prechecks.requirements.get(role))
            .fold(None, |acc: Option<Requirement>, req| {
                Some(match acc {
                    None => req.clone(),
                    Some(acc) => Requirement {
                        cpus: acc.cpus.max(req.cpus),
                        memory: acc.memory.max(req.memory),
                    },
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(json: &str) -> OsSettings {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn os_defaults_apply_when_left_out() {
        assert_eq!(os("{}"), OsSettings::default());
        let defaults = OsSettings::default();
        assert_eq!(defaults.sysctls["net.ipv4.ip_forward"], "1");
        assert_eq!(defaults.kernel_modules, ["br_netfilter", "overlay"]);
        assert_eq!(defaults.journald.system_max_use, ByteSize::gib(2));
        assert_eq!(defaults.nofile, 1_048_576);
        assert!(defaults.ntp.servers.is_empty());
    }

    #[test]
    fn written_sysctls_and_modules_are_merged_over_the_defaults() {
        let settings = os(
            r#"{"sysctls": {"vm.max_map_count": 524288, "net.core.somaxconn": "4096"},
                "kernelModules": ["ip_vs", "overlay"]}"#,
        );
        assert_eq!(settings.sysctls["vm.max_map_count"], "524288");
        assert_eq!(settings.sysctls["net.core.somaxconn"], "4096");
        assert_eq!(settings.sysctls["net.ipv4.ip_forward"], "1");
        assert_eq!(settings.sysctls.len(), DEFAULT_SYSCTLS.len() + 1);
        assert_eq!(
            settings.kernel_modules,
            ["br_netfilter", "overlay", "ip_vs"]
        );
    }

    #[test]
    fn merged_settings_read_back_unchanged() {
        let settings =
            os(r#"{"sysctls": {"kernel.pid_max": 4194304}, "kernelModules": ["ip_vs"]}"#);
        let again: OsSettings =
            serde_json::from_value(serde_json::to_value(&settings).unwrap()).unwrap();
        assert_eq!(again, settings);
    }
}
