//! What certificates a cluster needs, node by node: a pure function of the inventory and
//! the nodes' control-plane addresses, snapshot-tested like the plan.
//!
//! Names, subjects and usages follow kubeadm (`kubeadm init phase certs`), so that kubeadm
//! finds every file it expects and generates none of its own.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use metalk8s_model::inventory::{Inventory, Node, Role};
use serde::Serialize;

use crate::error::SpecError;
use crate::spec::{Authority, CertSpec, Output, Purpose, SubjectAltName};

/// kubeadm's group bound to `cluster-admin` by the `kubeadm:cluster-admins`
/// ClusterRoleBinding (since 1.29 `admin.conf` no longer uses `system:masters`, which no
/// RBAC rule can take away).
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";

/// Name, common name and file base name (`pki/metalk8s-repository.crt`) of the bundle
/// repository's server certificate on the bootstrap node.
pub const REPOSITORY_CERTIFICATE: &str = "metalk8s-repository";

/// The port the API server listens on.
pub const DEFAULT_API_SERVER_PORT: u16 = 6443;

/// Addresses the certificates must name, gathered outside this crate (from the inventory's
/// declared addresses or from facts) so that this crate stays independent of facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAddresses {
    /// Each node's address on the control-plane network, by node name.
    pub control_plane_ips: BTreeMap<String, IpAddr>,
    /// A virtual IP in front of the API servers, when the cluster has one: `admin.conf`
    /// points at it and every API server certificate names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_vip: Option<IpAddr>,
    /// More names for the API server certificates (a load balancer's DNS name…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_api_server_names: Vec<SubjectAltName>,
    /// The cluster DNS domain (`cluster.local`).
    pub dns_domain: String,
    pub api_server_port: u16,
}

impl ClusterAddresses {
    pub fn new(control_plane_ips: BTreeMap<String, IpAddr>) -> ClusterAddresses {
        ClusterAddresses {
            control_plane_ips,
            control_plane_vip: None,
            extra_api_server_names: Vec::new(),
            dns_domain: "cluster.local".to_owned(),
            api_server_port: DEFAULT_API_SERVER_PORT,
        }
    }

    /// The addresses of `inventory`'s cluster: the nodes' control-plane IPs (resolved by
    /// the caller, from the inventory or from facts) and the inventory's
    /// `networks.apiServerVIP`, which every API server certificate must then name.
    pub fn of_inventory(
        inventory: &Inventory,
        control_plane_ips: BTreeMap<String, IpAddr>,
    ) -> ClusterAddresses {
        ClusterAddresses {
            control_plane_vip: inventory.networks.api_server_vip,
            ..ClusterAddresses::new(control_plane_ips)
        }
    }

    /// The control-plane IPs the inventory declares (`controlPlaneIP`), and its VIP; nodes
    /// without a declared IP need theirs from facts.
    pub fn declared(inventory: &Inventory) -> ClusterAddresses {
        ClusterAddresses::of_inventory(
            inventory,
            inventory
                .nodes
                .iter()
                .filter_map(|node| Some((node.name.clone(), node.control_plane_ip?)))
                .collect(),
        )
    }

    /// Where clients outside the cluster reach the API servers: the VIP when there is
    /// one (it follows a healthy API server), else the first control-plane node of the
    /// inventory, whose own API server is the one to ask.
    pub fn client_server(&self, inventory: &Inventory) -> Result<String, SpecError> {
        if let Some(vip) = self.control_plane_vip {
            return Ok(self.url(vip));
        }
        let node = inventory
            .nodes
            .iter()
            .find(|node| node.has_role(Role::ControlPlane))
            .ok_or(SpecError::NoControlPlane)?;
        Ok(self.url(self.ip_of(node)?))
    }

    fn ip_of(&self, node: &Node) -> Result<IpAddr, SpecError> {
        self.control_plane_ips
            .get(&node.name)
            .copied()
            .ok_or_else(|| SpecError::MissingControlPlaneIp {
                node: node.name.clone(),
            })
    }

    fn url(&self, ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => format!("https://{v4}:{}", self.api_server_port),
            IpAddr::V6(v6) => format!("https://[{v6}]:{}", self.api_server_port),
        }
    }
}

/// The node name an operator's certificate is filed under in messages: it belongs to no
/// node.
pub const OPERATOR: &str = "operator";

/// The admin kubeconfig handed to an operator (`metalk8s kubeconfig`): the user and group
/// of `admin.conf` (`kubernetes-admin` in [`CLUSTER_ADMINS_GROUP`]), pointing at
/// [`ClusterAddresses::client_server`]. Its key is its own, made for each request, so that
/// no node's `admin.conf` key leaves the cluster.
pub fn operator_kubeconfig(
    inventory: &Inventory,
    addresses: &ClusterAddresses,
) -> Result<CertSpec, SpecError> {
    Ok(CertSpec {
        node: OPERATOR.to_owned(),
        name: "admin kubeconfig".to_owned(),
        issuer: Authority::Kubernetes,
        common_name: "kubernetes-admin".to_owned(),
        organizations: vec![CLUSTER_ADMINS_GROUP.to_owned()],
        purpose: Purpose::Client,
        alt_names: Vec::new(),
        output: Output::Kubeconfig {
            file: "admin.conf".to_owned(),
            cluster: inventory.name.clone(),
            server: addresses.client_server(inventory)?,
        },
    })
}

/// Which files of a CA a node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityFiles {
    pub authority: Authority,
    /// Whether the CA's private key goes to the node too.
    pub key: bool,
}

/// Everything PKI one node holds under `/etc/kubernetes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePki {
    pub node: String,
    pub authorities: Vec<AuthorityFiles>,
    /// `sa.key` and `sa.pub`.
    pub service_account_keys: bool,
    pub certificates: Vec<CertSpec>,
}

/// The PKI of every node of the inventory, in inventory order.
pub fn cluster_certificates(
    inventory: &Inventory,
    addresses: &ClusterAddresses,
) -> Result<Vec<NodePki>, SpecError> {
    let context = Context {
        cluster: &inventory.name,
        addresses,
        service_ip: first_service_ip(inventory.networks.services)?,
    };
    inventory
        .nodes
        .iter()
        .map(|node| context.node_pki(node))
        .collect()
}

struct Context<'a> {
    cluster: &'a str,
    addresses: &'a ClusterAddresses,
    service_ip: IpAddr,
}

impl Context<'_> {
    fn node_pki(&self, node: &Node) -> Result<NodePki, SpecError> {
        let control_plane = node.has_role(Role::ControlPlane);
        let etcd = node.has_role(Role::Etcd);
        let mut certificates = Vec::new();
        if control_plane {
            certificates.extend(self.control_plane_certificates(node)?);
        }
        if etcd {
            certificates.extend(self.etcd_certificates(node)?);
        }
        if node.has_role(Role::Bootstrap) {
            certificates.push(self.repository_certificate(node)?);
        }
        Ok(NodePki {
            node: node.name.clone(),
            authorities: authorities_of(control_plane, etcd),
            service_account_keys: control_plane,
            certificates,
        })
    }

    fn control_plane_certificates(&self, node: &Node) -> Result<Vec<CertSpec>, SpecError> {
        let ip = self.addresses.ip_of(node)?;
        let local_server = self.addresses.url(ip);
        // As kubeadm: admin.conf goes through the VIP when there is one, else to this
        // node's own API server, so that each copy works as long as its node does.
        let admin_server = self
            .addresses
            .url(self.addresses.control_plane_vip.unwrap_or(ip));
        let spec = |name: &str, issuer, common_name: &str, purpose| CertSpec {
            node: node.name.clone(),
            name: name.to_owned(),
            issuer,
            common_name: common_name.to_owned(),
            organizations: Vec::new(),
            purpose,
            alt_names: Vec::new(),
            output: Output::Files {
                base_name: name.to_owned(),
            },
        };
        let kubeconfig = |file: &str, common_name: &str, server: &str| CertSpec {
            output: Output::Kubeconfig {
                file: file.to_owned(),
                cluster: self.cluster.to_owned(),
                server: server.to_owned(),
            },
            ..spec(file, Authority::Kubernetes, common_name, Purpose::Client)
        };
        Ok(vec![
            CertSpec {
                alt_names: self.api_server_names(node, ip),
                ..spec(
                    "apiserver",
                    Authority::Kubernetes,
                    "kube-apiserver",
                    Purpose::Server,
                )
            },
            // No organization: current kubeadm authorizes this user through the
            // `kubeadm:apiserver-kubelet-client` binding to `system:kubelet-api-admin`
            // instead of making it a cluster admin.
            spec(
                "apiserver-kubelet-client",
                Authority::Kubernetes,
                "kube-apiserver-kubelet-client",
                Purpose::Client,
            ),
            spec(
                "apiserver-etcd-client",
                Authority::Etcd,
                "kube-apiserver-etcd-client",
                Purpose::Client,
            ),
            spec(
                "front-proxy-client",
                Authority::FrontProxy,
                "front-proxy-client",
                Purpose::Client,
            ),
            CertSpec {
                organizations: vec![CLUSTER_ADMINS_GROUP.to_owned()],
                ..kubeconfig("admin.conf", "kubernetes-admin", &admin_server)
            },
            // The controller-manager and the scheduler talk to their own node's API server,
            // as kubeadm sets them up, so that they keep working while a VIP moves.
            kubeconfig(
                "controller-manager.conf",
                "system:kube-controller-manager",
                &local_server,
            ),
            kubeconfig("scheduler.conf", "system:kube-scheduler", &local_server),
        ])
    }

    fn api_server_names(&self, node: &Node, ip: IpAddr) -> Vec<SubjectAltName> {
        let dns = |name: &str| SubjectAltName::Dns(name.to_owned());
        let mut names = vec![
            dns(&node.name),
            dns("kubernetes"),
            dns("kubernetes.default"),
            dns("kubernetes.default.svc"),
            dns(&format!(
                "kubernetes.default.svc.{}",
                self.addresses.dns_domain
            )),
            SubjectAltName::Ip(ip),
            SubjectAltName::Ip(self.service_ip),
            SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        names.extend(self.addresses.control_plane_vip.map(SubjectAltName::Ip));
        names.extend(self.addresses.extra_api_server_names.iter().cloned());
        dedup_keeping_order(names)
    }

    fn etcd_certificates(&self, node: &Node) -> Result<Vec<CertSpec>, SpecError> {
        let ip = self.addresses.ip_of(node)?;
        // kubeadm's etcd names: the member's own name and address, and loopback for
        // clients on the node itself (the API server, health checks).
        let member_names = dedup_keeping_order(vec![
            SubjectAltName::Dns(node.name.clone()),
            SubjectAltName::Dns("localhost".to_owned()),
            SubjectAltName::Ip(ip),
            SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SubjectAltName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
        let spec = |name: &str, base_name: &str, common_name: &str, purpose, alt_names| CertSpec {
            node: node.name.clone(),
            name: name.to_owned(),
            issuer: Authority::Etcd,
            common_name: common_name.to_owned(),
            organizations: Vec::new(),
            purpose,
            alt_names,
            output: Output::Files {
                base_name: base_name.to_owned(),
            },
        };
        Ok(vec![
            // Server and client: etcd since 3.2 also uses its serving certificate as a
            // client (its gRPC gateway dials itself) and refuses one without clientAuth.
            spec(
                "etcd-server",
                "etcd/server",
                &node.name,
                Purpose::Peer,
                member_names.clone(),
            ),
            spec(
                "etcd-peer",
                "etcd/peer",
                &node.name,
                Purpose::Peer,
                member_names,
            ),
            spec(
                "etcd-healthcheck-client",
                "etcd/healthcheck-client",
                "kube-etcd-healthcheck-client",
                Purpose::Client,
                Vec::new(),
            ),
        ])
    }
}

impl Context<'_> {
    /// The bundle repository's server certificate (`metalk8s repo serve` on the bootstrap
    /// node): nodes reach it by control-plane IP; the node name and loopback serve checks
    /// made on the node itself.
    fn repository_certificate(&self, node: &Node) -> Result<CertSpec, SpecError> {
        let ip = self.addresses.ip_of(node)?;
        Ok(CertSpec {
            node: node.name.clone(),
            name: REPOSITORY_CERTIFICATE.to_owned(),
            issuer: Authority::Kubernetes,
            common_name: REPOSITORY_CERTIFICATE.to_owned(),
            organizations: Vec::new(),
            purpose: Purpose::Server,
            alt_names: dedup_keeping_order(vec![
                SubjectAltName::Dns(node.name.clone()),
                SubjectAltName::Dns("localhost".to_owned()),
                SubjectAltName::Ip(ip),
                SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ]),
            output: Output::Files {
                base_name: REPOSITORY_CERTIFICATE.to_owned(),
            },
        })
    }
}

/// Every node trusts the Kubernetes CA (the kubelet checks the API server with it).
/// Control planes also sign with it (the controller-manager signs kubelet certificates)
/// and hold the front-proxy CA key because `kubeadm join --control-plane` requires it;
/// the etcd CA key never leaves the bootstrap node, as every etcd certificate is issued
/// there.
fn authorities_of(control_plane: bool, etcd: bool) -> Vec<AuthorityFiles> {
    let mut files = vec![AuthorityFiles {
        authority: Authority::Kubernetes,
        key: control_plane,
    }];
    if control_plane || etcd {
        files.push(AuthorityFiles {
            authority: Authority::Etcd,
            key: false,
        });
    }
    if control_plane {
        files.push(AuthorityFiles {
            authority: Authority::FrontProxy,
            key: true,
        });
    }
    files
}

/// The address the `kubernetes` Service gets: the first one after the services network's
/// own address (10.96.0.1 for 10.96.0.0/12).
pub fn first_service_ip(services: IpNet) -> Result<IpAddr, SpecError> {
    let too_small = || SpecError::ServicesTooSmall {
        cidr: services.to_string(),
    };
    let first = match services.network() {
        IpAddr::V4(network) => IpAddr::V4(Ipv4Addr::from(
            u32::from(network).checked_add(1).ok_or_else(too_small)?,
        )),
        IpAddr::V6(network) => IpAddr::V6(Ipv6Addr::from(
            u128::from(network).checked_add(1).ok_or_else(too_small)?,
        )),
    };
    if services.contains(&first) {
        Ok(first)
    } else {
        Err(too_small())
    }
}

fn dedup_keeping_order(names: Vec<SubjectAltName>) -> Vec<SubjectAltName> {
    let mut kept: Vec<SubjectAltName> = Vec::with_capacity(names.len());
    for name in names {
        if !kept.contains(&name) {
            kept.push(name);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn first_service_ip_is_the_network_address_plus_one() {
        assert_eq!(
            first_service_ip(net("10.96.0.0/12")).unwrap().to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            first_service_ip(net("fd00:10:96::/108"))
                .unwrap()
                .to_string(),
            "fd00:10:96::1"
        );
        // A CIDR written with host bits still starts at its network address.
        assert_eq!(
            first_service_ip(net("10.96.5.7/16")).unwrap().to_string(),
            "10.96.0.1"
        );
    }

    #[test]
    fn a_single_address_network_has_no_service_ip() {
        assert_eq!(
            first_service_ip(net("10.96.0.0/32")),
            Err(SpecError::ServicesTooSmall {
                cidr: "10.96.0.0/32".to_owned()
            })
        );
    }

    fn two_nodes(vip: Option<&str>) -> Inventory {
        let vip = vip.map_or(String::new(), |vip| format!("  apiServerVIP: \"{vip}\"\n"));
        metalk8s_inventory::parse(
            "two.yaml",
            &format!(
                "apiVersion: metalk8s.io/v1alpha1\nkind: Inventory\nname: two\nnetworks:\n  \
                 controlPlane: [10.10.0.0/24, \"fd00:10::/64\"]\n  workloadPlane: [10.20.0.0/24]\n{vip}\
                 nodes:\n  - name: a\n    address: 10.10.0.11\n    roles: [bootstrap, etcd, worker]\n  \
                 - name: b\n    address: b.example.com\n    roles: [control-plane]\n"
            ),
        )
        .unwrap()
    }

    fn ips(pairs: &[(&str, &str)]) -> BTreeMap<String, IpAddr> {
        pairs
            .iter()
            .map(|(node, ip)| ((*node).to_owned(), ip.parse().unwrap()))
            .collect()
    }

    #[test]
    fn clients_reach_the_vip_when_the_inventory_has_one() {
        for (vip, url) in [
            ("10.10.0.100", "https://10.10.0.100:6443"),
            ("fd00:10::100", "https://[fd00:10::100]:6443"),
        ] {
            let inventory = two_nodes(Some(vip));
            let addresses = ClusterAddresses::of_inventory(&inventory, BTreeMap::new());
            assert_eq!(addresses.control_plane_vip, Some(vip.parse().unwrap()));
            assert_eq!(addresses.client_server(&inventory).unwrap(), url);
        }
    }

    #[test]
    fn without_a_vip_clients_reach_the_first_control_plane_node() {
        let inventory = two_nodes(None);
        // `a` comes first but runs no API server.
        let addresses = ClusterAddresses::of_inventory(
            &inventory,
            ips(&[("a", "10.10.0.11"), ("b", "fd00:10::12")]),
        );
        assert_eq!(addresses.control_plane_vip, None);
        assert_eq!(
            addresses.client_server(&inventory).unwrap(),
            "https://[fd00:10::12]:6443"
        );
        // Its address unknown (not declared, no facts): said so, with the node's name.
        let unresolved = ClusterAddresses::of_inventory(&inventory, ips(&[("a", "10.10.0.11")]));
        assert_eq!(
            unresolved.client_server(&inventory),
            Err(SpecError::MissingControlPlaneIp {
                node: "b".to_owned()
            })
        );
    }

    #[test]
    fn without_a_control_plane_node_there_is_no_server() {
        let mut inventory = two_nodes(None);
        inventory.nodes[1].roles = vec![Role::Worker];
        let addresses = ClusterAddresses::of_inventory(&inventory, ips(&[("b", "10.10.0.12")]));
        assert_eq!(
            addresses.client_server(&inventory),
            Err(SpecError::NoControlPlane)
        );
    }
}
