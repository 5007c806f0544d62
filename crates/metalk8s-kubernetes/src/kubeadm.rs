//! kubeadm's configuration, `kubeadm.k8s.io/v1beta4`: the types (field names exactly
//! upstream's, cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go) and the documents metalk8s
//! hands to `kubeadm init` on the first control-plane node and `kubeadm join` everywhere
//! else.
//!
//! What kubeadm stores cluster-wide (the ClusterConfiguration in the `kubeadm-config`
//! ConfigMap, the KubeletConfiguration in `kubelet-config`) cannot differ between nodes,
//! and `kubeadm join --control-plane` reads the cluster's copy, not ours. What must differ
//! (every bind address is the node's own control-plane IP, the kubelet's reservations
//! follow the node's size) goes in per-node patches kubeadm applies to what it writes
//! (`patches.directory`): [`node_patches`].
//!
//! Certificates: metalk8s-pki places every certificate and kubeconfig beforehand, so
//! kubeadm's certs phase only checks them. It checks that the existing `apiserver.crt`
//! names every `certSANs` entry, which is why `certSANs` lists only what every control
//! plane's certificate names (the VIP and extra names): the node's own name and IP, which
//! differ per certificate, kubeadm adds itself and finds in each node's own certificate.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::{self, Cluster, Node, paths};
use crate::error::InputError;
use crate::kubelet;
use crate::roles;

/// kubeadm's `init` phases metalk8s skips, and why.
pub const SKIPPED_INIT_PHASES: &[(&str, &str)] = &[(
    "show-join-command",
    "it prints the bootstrap token and the CA pin to kubeadm's output, which lands in logs; metalk8s runs every join itself with its own short-lived token",
)];

/// kubeadm's `join` phases metalk8s skips, and why (none: the joins run every phase).
pub const SKIPPED_JOIN_PHASES: &[(&str, &str)] = &[];

/// kubeadm addons metalk8s turns off in the ClusterConfiguration (so that
/// `kubeadm upgrade apply` does not bring them back either), and why.
pub const DISABLED_ADDONS: &[(&str, &str)] = &[
    (
        "proxy",
        "kubeadm's kube-proxy ConfigMap is one configuration for every node, so it cannot bind kube-proxy's health and metrics servers to each node's control-plane IP; metalk8s places a per-node KubeProxyConfiguration and runs kube-proxy as its own DaemonSet that reads it (crate::kube_proxy)",
    ),
    (
        "dns",
        "kubeadm's CoreDNS runs anywhere, always forwards to the nodes' resolv.conf (which an air-gapped node may not have) and is rewritten by `kubeadm upgrade apply`; metalk8s applies CoreDNS itself, on the infra or control-plane nodes, with the resolvers it chose (crate::coredns)",
    ),
];

/// Preflight errors ignored on `kubeadm init` (none but [`IGNORED_PREFLIGHT_WITH_VIP`]).
pub const IGNORED_PREFLIGHT_INIT: &[(&str, &str)] = &[];

/// Preflight errors ignored on `kubeadm join --control-plane` (none but
/// [`IGNORED_PREFLIGHT_WITH_VIP`]).
pub const IGNORED_PREFLIGHT_CONTROL_PLANE_JOIN: &[(&str, &str)] = &[];

/// Preflight errors also ignored on a control plane's `kubeadm init` or `join` when the
/// cluster has a VIP, and why.
pub const IGNORED_PREFLIGHT_WITH_VIP: &[(&str, &str)] = &[(
    "Port-6443",
    "haproxy serves the VIP on VIP:6443 on every control plane before kubeadm runs (crate::apiserver_proxy), and kubeadm's check listens on port 6443 of every address, so it would always fail; kube-apiserver binds the node's control-plane IP only, where nothing else listens (metalk8s's precheck finds port 6443 free before the deploy)",
)];

/// Preflight errors ignored on a worker's `kubeadm join`, and why.
pub const IGNORED_PREFLIGHT_WORKER_JOIN: &[(&str, &str)] = &[(
    "FileAvailable--etc-kubernetes-pki-ca.crt",
    "metalk8s places the cluster CA on every node before Kubernetes (containerd and APT check the bundle repository with it); kubeadm refuses a worker join when the file exists, although it would write the same CA it verifies against the pinned hash",
)];

/// The group kubeadm's bootstrap tokens authenticate as.
pub const BOOTSTRAP_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

// ---------------------------------------------------------------------------------------
// Types

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitConfiguration {
    pub api_version: &'static str,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_tokens: Vec<BootstrapToken>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub node_registration: NodeRegistrationOptions,
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_phases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches: Option<Patches>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub etcd: Etcd,
    pub networking: Networking,
    pub kubernetes_version: String,
    pub control_plane_endpoint: String,
    pub api_server: ApiServer,
    #[serde(skip_serializing_if = "ControlPlaneComponent::is_empty")]
    pub controller_manager: ControlPlaneComponent,
    #[serde(skip_serializing_if = "ControlPlaneComponent::is_empty")]
    pub scheduler: ControlPlaneComponent,
    pub dns: Dns,
    pub proxy: Proxy,
    pub certificates_dir: String,
    pub image_repository: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub feature_gates: std::collections::BTreeMap<String, bool>,
    pub cluster_name: String,
    pub encryption_algorithm: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinConfiguration {
    pub api_version: &'static str,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub node_registration: NodeRegistrationOptions,
    pub ca_cert_path: String,
    pub discovery: Discovery,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<JoinControlPlane>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_phases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches: Option<Patches>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapToken {
    /// `abcdef.0123456789abcdef`.
    pub token: String,
    pub description: String,
    /// A Go duration, `15m`.
    pub ttl: String,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRegistrationOptions {
    pub name: String,
    pub cri_socket: String,
    /// Always written, even empty: kubeadm reads a missing list as "taint control planes".
    pub taints: Vec<TaintSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kubelet_extra_args: Vec<Arg>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore_preflight_errors: Vec<String>,
    pub image_pull_policy: &'static str,
}

/// core/v1 Taint as kubeadm reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaintSpec {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: metalk8s_model::inventory::TaintEffect,
}

impl From<&metalk8s_model::inventory::Taint> for TaintSpec {
    fn from(taint: &metalk8s_model::inventory::Taint) -> Self {
        TaintSpec {
            key: taint.key.clone(),
            value: taint.value.clone(),
            effect: taint.effect,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub advertise_address: String,
    pub bind_port: u16,
}

/// v1beta4's structured extra argument (a list, so a flag may repeat).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

impl Arg {
    pub fn new(name: &str, value: impl Into<String>) -> Arg {
        Arg {
            name: name.to_owned(),
            value: value.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Etcd {
    pub external: ExternalEtcd,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    pub service_subnet: String,
    pub pod_subnet: String,
    pub dns_domain: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneComponent {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<Arg>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_volumes: Vec<HostPathMount>,
}

impl ControlPlaneComponent {
    fn is_empty(&self) -> bool {
        self.extra_args.is_empty() && self.extra_volumes.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    #[serde(flatten)]
    pub component: ControlPlaneComponent,
    #[serde(rename = "certSANs", skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPathMount {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
    pub path_type: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    pub disabled: bool,
    pub image_repository: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proxy {
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Patches {
    pub directory: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    pub control_plane_component_health_check: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    pub bootstrap_token: BootstrapTokenDiscovery,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapTokenDiscovery {
    pub token: String,
    pub api_server_endpoint: String,
    pub ca_cert_hashes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinControlPlane {
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
}

// ---------------------------------------------------------------------------------------
// Rendering

/// A bootstrap token metalk8s created for the joins (it deletes it afterwards).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// `abcdef.0123456789abcdef`.
    pub token: String,
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo.
    pub ca_cert_hash: String,
}

/// What `kubeadm init` is given on the first control-plane node: the config file (multi-
/// document YAML) and the patch files for its patches directory.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeadmFiles {
    /// `--config` file content.
    pub config: String,
    /// Its documents, for validation and display.
    pub documents: Vec<Value>,
    /// File name (under [`paths::KUBEADM_PATCHES_DIR`]) → content.
    pub patches: Vec<(String, String)>,
}

/// The `kubeadm init` configuration for `node`, the first control plane: InitConfiguration,
/// ClusterConfiguration and the cluster-wide KubeletConfiguration. `token` is created by
/// kubeadm with the TTL given (`15m`), so the joins that follow can use it.
pub fn init_files(
    cluster: &Cluster,
    node: &Node,
    token: &JoinToken,
    token_ttl: &str,
) -> Result<KubeadmFiles, InputError> {
    let supported = cluster.validate()?;
    control_plane(node)?;
    let init = InitConfiguration {
        api_version: supported.kubeadm_api,
        kind: "InitConfiguration",
        bootstrap_tokens: vec![BootstrapToken {
            token: token.token.clone(),
            description: "metalk8s: joins of this deploy; deleted once they are done".to_owned(),
            ttl: token_ttl.to_owned(),
            usages: vec!["signing".to_owned(), "authentication".to_owned()],
            groups: vec![BOOTSTRAP_TOKEN_GROUP.to_owned()],
        }],
        dry_run: false,
        node_registration: node_registration(
            node,
            ignored_preflight(cluster, node, IGNORED_PREFLIGHT_INIT),
        ),
        local_api_endpoint: local_endpoint(node),
        certificate_key: None,
        skip_phases: SKIPPED_INIT_PHASES
            .iter()
            .map(|(phase, _)| (*phase).to_owned())
            .collect(),
        patches: Some(patches_dir()),
        timeouts: None,
    };
    let documents = vec![
        to_value(&init),
        to_value(&cluster_configuration(cluster)?),
        to_value(&kubelet::cluster_configuration(cluster)?),
    ];
    Ok(KubeadmFiles {
        config: crate::yaml::documents(&documents),
        documents,
        patches: node_patches(cluster, node)?,
    })
}

/// The `kubeadm join` configuration for `node`: a control-plane join (with its
/// `controlPlane.localAPIEndpoint`) or a worker join.
pub fn join_files(
    cluster: &Cluster,
    node: &Node,
    token: &JoinToken,
) -> Result<KubeadmFiles, InputError> {
    let supported = cluster.validate()?;
    let control_plane = node.is_control_plane();
    let ignored = if control_plane {
        IGNORED_PREFLIGHT_CONTROL_PLANE_JOIN
    } else {
        IGNORED_PREFLIGHT_WORKER_JOIN
    };
    let join = JoinConfiguration {
        api_version: supported.kubeadm_api,
        kind: "JoinConfiguration",
        dry_run: false,
        node_registration: node_registration(node, ignored_preflight(cluster, node, ignored)),
        ca_cert_path: paths::CA_CERT.to_owned(),
        discovery: Discovery {
            bootstrap_token: BootstrapTokenDiscovery {
                token: token.token.clone(),
                api_server_endpoint: control_plane_endpoint(),
                ca_cert_hashes: vec![token.ca_cert_hash.clone()],
            },
        },
        control_plane: control_plane.then(|| JoinControlPlane {
            local_api_endpoint: local_endpoint(node),
        }),
        skip_phases: SKIPPED_JOIN_PHASES
            .iter()
            .map(|(phase, _)| (*phase).to_owned())
            .collect(),
        patches: Some(patches_dir()),
        timeouts: None,
    };
    let documents = vec![to_value(&join)];
    Ok(KubeadmFiles {
        config: crate::yaml::documents(&documents),
        documents,
        patches: node_patches(cluster, node)?,
    })
}

/// The cluster-wide ClusterConfiguration.
pub fn cluster_configuration(cluster: &Cluster) -> Result<ClusterConfiguration, InputError> {
    let mut api_server_args = vec![
        Arg::new("audit-policy-file", paths::AUDIT_POLICY),
        Arg::new("audit-log-path", paths::AUDIT_LOG),
        Arg::new("audit-log-maxage", "30"),
        Arg::new("audit-log-maxbackup", "10"),
        Arg::new("audit-log-maxsize", "100"),
        // Kubelet serving certificates are signed by the cluster CA once metalk8s approves
        // their CSRs (serverTLSBootstrap): the API server can then verify every kubelet.
        Arg::new("kubelet-certificate-authority", paths::CA_CERT),
        Arg::new("profiling", "false"),
    ];
    if let Some(oidc) = &cluster.oidc {
        api_server_args.push(Arg::new("oidc-issuer-url", &oidc.issuer_url));
        api_server_args.push(Arg::new("oidc-client-id", &oidc.client_id));
        let optional = [
            ("oidc-username-claim", &oidc.username_claim),
            ("oidc-username-prefix", &oidc.username_prefix),
            ("oidc-groups-claim", &oidc.groups_claim),
            ("oidc-groups-prefix", &oidc.groups_prefix),
            ("oidc-ca-file", &oidc.ca_file),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                api_server_args.push(Arg::new(name, value));
            }
        }
    }
    let mut cert_sans: Vec<String> = cluster
        .api_server_vip
        .iter()
        .map(IpAddr::to_string)
        .collect();
    for name in &cluster.extra_api_server_names {
        if !cert_sans.contains(name) {
            cert_sans.push(name.clone());
        }
    }
    let controller_args = vec![Arg::new("profiling", "false")];
    let supported = cluster.validate()?;
    Ok(ClusterConfiguration {
        api_version: supported.kubeadm_api,
        kind: "ClusterConfiguration",
        etcd: Etcd {
            external: ExternalEtcd {
                endpoints: cluster.etcd_endpoints(),
                ca_file: paths::ETCD_CA_CERT.to_owned(),
                cert_file: paths::APISERVER_ETCD_CLIENT_CERT.to_owned(),
                key_file: paths::APISERVER_ETCD_CLIENT_KEY.to_owned(),
            },
        },
        networking: Networking {
            service_subnet: cluster.services.to_string(),
            pod_subnet: cluster.pods.to_string(),
            dns_domain: cluster.dns_domain.clone(),
        },
        kubernetes_version: cluster.version.to_string(),
        control_plane_endpoint: control_plane_endpoint(),
        api_server: ApiServer {
            component: ControlPlaneComponent {
                extra_args: api_server_args,
                extra_volumes: vec![
                    HostPathMount {
                        name: "audit-policy".to_owned(),
                        host_path: paths::AUDIT_DIR.to_owned(),
                        mount_path: paths::AUDIT_DIR.to_owned(),
                        read_only: true,
                        path_type: "Directory",
                    },
                    HostPathMount {
                        name: "audit-log".to_owned(),
                        host_path: paths::AUDIT_LOG_DIR.to_owned(),
                        mount_path: paths::AUDIT_LOG_DIR.to_owned(),
                        read_only: false,
                        path_type: "DirectoryOrCreate",
                    },
                ],
            },
            cert_sans,
        },
        controller_manager: ControlPlaneComponent {
            extra_args: controller_args.clone(),
            extra_volumes: Vec::new(),
        },
        scheduler: ControlPlaneComponent {
            extra_args: controller_args,
            extra_volumes: Vec::new(),
        },
        // kubeadm drops CoreDNS's `coredns/` path component when the image repository is
        // not registry.k8s.io; the bundle keeps the upstream path (registry.k8s.io/
        // coredns/coredns → <registry>/coredns/coredns), so name it.
        dns: Dns {
            disabled: true,
            image_repository: format!("{}/coredns", cluster.image_repository()),
        },
        proxy: Proxy { disabled: true },
        certificates_dir: paths::PKI_DIR.to_owned(),
        image_repository: cluster.image_repository(),
        feature_gates: Default::default(),
        cluster_name: cluster.name.clone(),
        encryption_algorithm: cluster.key_algorithm.kubeadm_name(),
    })
}

/// `127.0.0.1:7443`: the local apiserver proxy every node runs.
pub fn control_plane_endpoint() -> String {
    cluster::host_port(
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        cluster::APISERVER_PROXY_PORT,
    )
}

/// The files of `node`'s kubeadm patches directory. On control planes: JSON patches that
/// bind the API server, controller-manager and scheduler to the node's control-plane IP
/// (kubeadm binds the two latter to 127.0.0.1 and probes them there, so the probes move
/// too). On every node: a merge patch of the KubeletConfiguration with the node's own
/// addresses and reservations.
pub fn node_patches(cluster: &Cluster, node: &Node) -> Result<Vec<(String, String)>, InputError> {
    let ip = node.control_plane_ip.to_string();
    let mut patches = Vec::new();
    if node.is_control_plane() {
        let bind = json!({"op": "add", "path": "/spec/containers/0/command/-", "value": format!("--bind-address={ip}")});
        let probe = |probe: &str| json!({"op": "replace", "path": format!("/spec/containers/0/{probe}/httpGet/host"), "value": ip});
        patches.push((
            "kube-apiserver+json.json".to_owned(),
            json_text(&json!([bind])),
        ));
        for component in ["kube-controller-manager", "kube-scheduler"] {
            patches.push((
                format!("{component}+json.json"),
                json_text(&json!([
                    bind,
                    probe("livenessProbe"),
                    probe("startupProbe")
                ])),
            ));
        }
    }
    patches.push((
        "kubeletconfiguration+merge.json".to_owned(),
        json_text(&kubelet::node_patch(cluster, node)?),
    ));
    Ok(patches)
}

fn json_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("plain data serializes");
    text.push('\n');
    text
}

/// The preflight errors `node`'s kubeadm run ignores: `base`, and on a control plane of a
/// cluster with a VIP, [`IGNORED_PREFLIGHT_WITH_VIP`].
fn ignored_preflight(cluster: &Cluster, node: &Node, base: &[(&str, &str)]) -> Vec<String> {
    let with_vip = if cluster.api_server_vip.is_some() && node.is_control_plane() {
        IGNORED_PREFLIGHT_WITH_VIP
    } else {
        &[]
    };
    base.iter()
        .chain(with_vip)
        .map(|(name, _)| (*name).to_owned())
        .collect()
}

fn node_registration(node: &Node, ignore_preflight_errors: Vec<String>) -> NodeRegistrationOptions {
    NodeRegistrationOptions {
        name: node.name.clone(),
        cri_socket: paths::CRI_SOCKET.to_owned(),
        taints: roles::node_taints(node)
            .iter()
            .map(TaintSpec::from)
            .collect(),
        kubelet_extra_args: vec![Arg::new("node-ip", node.control_plane_ip.to_string())],
        ignore_preflight_errors,
        // The images are in the bootstrap registry before any node pulls.
        image_pull_policy: "IfNotPresent",
    }
}

fn local_endpoint(node: &Node) -> ApiEndpoint {
    ApiEndpoint {
        advertise_address: node.control_plane_ip.to_string(),
        bind_port: cluster::APISERVER_PORT,
    }
}

fn patches_dir() -> Patches {
    Patches {
        directory: paths::KUBEADM_PATCHES_DIR.to_owned(),
    }
}

fn control_plane(node: &Node) -> Result<(), InputError> {
    if node.is_control_plane() {
        Ok(())
    } else {
        Err(InputError::NotControlPlane {
            node: node.name.clone(),
        })
    }
}

fn to_value(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("plain data serializes")
}
