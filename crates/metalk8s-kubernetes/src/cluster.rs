//! What the renderers need to know, as plain data: the cluster (version, networks, VIP,
//! registry, etcd, OIDC) and each node (name, control-plane IP, roles, labels, taints,
//! size). The planner fills these from the inventory, the facts and the bundle; nothing
//! here reads a file or a host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use metalk8s_model::inventory::{Role, Taint};
use serde::Serialize;

use crate::error::InputError;
use crate::version::{self, KubernetesVersion, SupportedMinor};

/// Where things are on a node. kubeadm's layout, plus metalk8s's own files.
pub mod paths {
    pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
    pub const PKI_DIR: &str = "/etc/kubernetes/pki";
    pub const CA_CERT: &str = "/etc/kubernetes/pki/ca.crt";
    pub const ETCD_CA_CERT: &str = "/etc/kubernetes/pki/etcd/ca.crt";
    /// The API server's etcd client certificate (metalk8s-pki's `apiserver-etcd-client`).
    pub const APISERVER_ETCD_CLIENT_CERT: &str = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
    pub const APISERVER_ETCD_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-etcd-client.key";
    pub const STATIC_POD_DIR: &str = "/etc/kubernetes/manifests";
    /// kubeadm's `--config` files, one per node and command.
    pub const KUBEADM_DIR: &str = "/etc/kubernetes/kubeadm";
    pub const KUBEADM_INIT_CONFIG: &str = "/etc/kubernetes/kubeadm/init.yaml";
    pub const KUBEADM_JOIN_CONFIG: &str = "/etc/kubernetes/kubeadm/join.yaml";
    /// Per-node patches kubeadm applies to the manifests and the kubelet configuration it
    /// writes (`patches.directory`): what differs from node to node lives here, since the
    /// ClusterConfiguration and KubeletConfiguration kubeadm stores are cluster-wide.
    pub const KUBEADM_PATCHES_DIR: &str = "/etc/kubernetes/kubeadm/patches";
    pub const AUDIT_DIR: &str = "/etc/kubernetes/audit";
    pub const AUDIT_POLICY: &str = "/etc/kubernetes/audit/policy.yaml";
    pub const AUDIT_LOG_DIR: &str = "/var/log/kubernetes/audit";
    pub const AUDIT_LOG: &str = "/var/log/kubernetes/audit/audit.log";
    /// The kubelet binary from the bundle. /usr/bin, where the upstream deb and rpm
    /// packages put it, so that kubeadm's messages and every guide match.
    pub const KUBELET_BIN: &str = "/usr/bin/kubelet";
    pub const KUBELET_UNIT: &str = "/etc/systemd/system/kubelet.service";
    pub const KUBELET_DROP_IN: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";
    pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
    pub const KUBELET_KUBEADM_FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";
    pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
    pub const KUBELET_BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
    /// The serving certificate the kubelet's certificate manager writes once its CSR is
    /// approved and signed (`serverTLSBootstrap`); absent until then.
    pub const KUBELET_SERVING_CERT: &str = "/var/lib/kubelet/pki/kubelet-server-current.pem";
    /// containerd's CRI socket.
    pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";
    /// kube-proxy's per-node configuration, read by its DaemonSet through a hostPath.
    pub const KUBE_PROXY_DIR: &str = "/etc/kubernetes/kube-proxy";
    pub const KUBE_PROXY_CONFIG: &str = "/etc/kubernetes/kube-proxy/config.conf";
    pub const HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
    pub const HAPROXY_DROP_IN: &str = "/etc/systemd/system/haproxy.service.d/10-metalk8s.conf";
    pub const KEEPALIVED_CONFIG: &str = "/etc/keepalived/keepalived.conf";
    pub const KEEPALIVED_CHECK: &str = "/etc/keepalived/check-apiserver.sh";
    pub const KEEPALIVED_DROP_IN: &str =
        "/etc/systemd/system/keepalived.service.d/10-metalk8s.conf";
}

/// The API server's secure port on every control-plane node.
pub const APISERVER_PORT: u16 = 6443;
/// The local apiserver proxy (haproxy) on every node, on loopback.
pub const APISERVER_PROXY_PORT: u16 = 7443;
pub const KUBELET_PORT: u16 = 10250;
pub const KUBELET_HEALTHZ_PORT: u16 = 10248;
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const SCHEDULER_PORT: u16 = 10259;
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 10256;
pub const KUBE_PROXY_METRICS_PORT: u16 = 10249;

/// How a health check runs: every `interval_seconds`, each attempt given `timeout_seconds`;
/// `fall` failures in a row make the checked thing unhealthy, `rise` successes healthy
/// again. haproxy's API server checks and keepalived's track script follow one each; the
/// lab tests derive their time bounds from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub fall: u32,
    pub rise: u32,
}

/// The cluster as the Kubernetes phase sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The inventory's name: kubeadm's `clusterName`, the kubeconfigs' cluster.
    pub name: String,
    /// The Kubernetes version of the bundle's binaries and images.
    pub version: KubernetesVersion,
    pub pods: IpNet,
    pub services: IpNet,
    /// `networks.workloadPlane`: where NodePorts are served.
    pub workload_plane: Vec<IpNet>,
    /// `cluster.local` unless the inventory says otherwise.
    pub dns_domain: String,
    /// `networks.apiServerVIP`, held by keepalived on the control-plane nodes.
    pub api_server_vip: Option<IpAddr>,
    /// More names for the API server certificates (a load balancer's DNS name…).
    pub extra_api_server_names: Vec<String>,
    /// The bootstrap node's control-plane IP: its registry is kubeadm's imageRepository.
    pub registry: IpAddr,
    /// The etcd members' control-plane IPs.
    pub etcd_members: Vec<IpAddr>,
    pub oidc: Option<Oidc>,
    /// The key algorithm of the cluster PKI, for the few keys kubeadm still makes itself
    /// (the first control plane's `kubelet.conf`).
    pub key_algorithm: KeyAlgorithm,
    pub nodes: Vec<Node>,
}

/// An OpenID Connect issuer the API server trusts for user tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Oidc {
    pub issuer_url: String,
    pub client_id: String,
    pub username_claim: Option<String>,
    pub username_prefix: Option<String>,
    pub groups_claim: Option<String>,
    pub groups_prefix: Option<String>,
    /// A CA file on the control-plane nodes for the issuer's certificate, when it is not
    /// signed by a system CA.
    pub ca_file: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KeyAlgorithm {
    EcdsaP256,
    Rsa2048,
}

impl KeyAlgorithm {
    /// kubeadm's `encryptionAlgorithm` value.
    pub fn kubeadm_name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::Rsa2048 => "RSA-2048",
        }
    }
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    /// Its address on `networks.controlPlane`: every component binds here.
    pub control_plane_ip: IpAddr,
    pub roles: BTreeSet<Role>,
    /// The inventory's labels for the node.
    pub labels: BTreeMap<String, String>,
    /// The inventory's taints for the node.
    pub taints: Vec<Taint>,
    /// Logical CPUs and memory, from the facts: they size the kubelet's reservations.
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The interface holding the control-plane IP (keepalived puts the VIP there).
    pub control_plane_interface: Option<String>,
}

impl Node {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_control_plane(&self) -> bool {
        self.has_role(Role::ControlPlane)
    }
}

impl Cluster {
    pub fn control_planes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|node| node.is_control_plane())
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// `IP:8443`, where kubeadm pulls the control-plane images from.
    pub fn image_repository(&self) -> String {
        metalk8s_model::repository::authority(self.registry)
    }

    /// `https://IP:2379` of every etcd member.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd_members
            .iter()
            .map(|ip| metalk8s_model::etcd::client_url(*ip))
            .collect()
    }

    /// The cluster DNS service's address: the tenth of the services network, as kubeadm
    /// gives CoreDNS (`10.96.0.10` for `10.96.0.0/12`).
    pub fn cluster_dns_ip(&self) -> Result<IpAddr, InputError> {
        nth_address(self.services, 10).ok_or_else(|| InputError::ServicesTooSmall {
            network: self.services.to_string(),
        })
    }

    /// Checks what every renderer relies on: a supported version, a control plane, etcd endpoints, a VIP that is
    /// no node's address and in the nodes' address family.
    pub fn validate(&self) -> Result<&'static SupportedMinor, InputError> {
        let supported = version::supported(&self.version)?;
        if self.control_planes().next().is_none() {
            return Err(InputError::NoControlPlane);
        }
        if self.etcd_members.is_empty() {
            return Err(InputError::NoEtcdEndpoint);
        }
        if let Some(vip) = self.api_server_vip {
            for node in &self.nodes {
                if node.control_plane_ip == vip {
                    return Err(InputError::VipIsNodeAddress {
                        vip,
                        node: node.name.clone(),
                    });
                }
                if node.is_control_plane() && node.control_plane_ip.is_ipv4() != vip.is_ipv4() {
                    return Err(InputError::VipFamily {
                        vip,
                        node: node.name.clone(),
                        ip: node.control_plane_ip,
                    });
                }
            }
        }
        self.cluster_dns_ip()?;
        Ok(supported)
    }
}

/// The `n`th address of `network` (its network address being the 0th).
pub(crate) fn nth_address(network: IpNet, n: u32) -> Option<IpAddr> {
    let candidate = match network.network() {
        IpAddr::V4(base) => IpAddr::V4(Ipv4Addr::from(u32::from(base).checked_add(n)?)),
        IpAddr::V6(base) => {
            IpAddr::V6(Ipv6Addr::from(u128::from(base).checked_add(u128::from(n))?))
        }
    };
    network.contains(&candidate).then_some(candidate)
}

/// `IP:port`, IPv6 bracketed.
pub fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_dns_is_the_tenth_service_address() {
        assert_eq!(
            nth_address("10.96.0.0/12".parse().unwrap(), 10),
            Some("10.96.0.10".parse().unwrap())
        );
        assert_eq!(
            nth_address("fd00:96::/108".parse().unwrap(), 10),
            Some("fd00:96::a".parse().unwrap())
        );
        assert_eq!(nth_address("10.96.0.0/29".parse().unwrap(), 10), None);
    }

    #[test]
    fn ipv6_host_ports_are_bracketed() {
        assert_eq!(
            host_port("10.0.0.1".parse().unwrap(), 6443),
            "10.0.0.1:6443"
        );
        assert_eq!(
            host_port("fd00::1".parse().unwrap(), 6443),
            "[fd00::1]:6443"
        );
    }
}
