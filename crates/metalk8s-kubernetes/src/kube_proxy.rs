//! kube-proxy: its per-node `KubeProxyConfiguration` (`kubeproxy.config.k8s.io/v1alpha1`)
//! and the objects that run it.
//!
//! kubeadm's kube-proxy addon shares one configuration between all nodes, which cannot
//! bind the health and metrics servers to each node's control-plane IP (v1alpha1 takes an
//! `IP:port`, and kube-proxy ignores the flags when a config file is given). So the addon
//! is disabled (`proxy.disabled`, see [`crate::kubeadm::DISABLED_ADDONS`]) and metalk8s runs
//! kube-proxy itself: a DaemonSet in kube-system whose pods read the node's own
//! configuration from a hostPath ([`paths::KUBE_PROXY_CONFIG`], placed by metalk8s on every
//! node) and authenticate with their service account through the local apiserver proxy.
//!
//! Mode: `iptables`. It is upstream's default and most exercised mode, Calico (the planned
//! CNI) runs beside it in its iptables data plane, and it needs nothing the nodes lack;
//! `ipvs` is deprecated upstream since 1.35 and `nftables` (GA in 1.33) is the later
//! move once the CNI runs in nftables mode too.

use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::{self, Cluster, Node, paths};
use crate::error::InputError;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-proxy";
/// Where the pod sees the node's configuration directory and its kubeconfig.
const POD_CONFIG_DIR: &str = "/etc/kube-proxy";
const POD_KUBECONFIG_DIR: &str = "/var/lib/kube-proxy";

/// The fields metalk8s sets, named as upstream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub client_connection: ClientConnection,
    pub hostname_override: String,
    pub bind_address: String,
    pub healthz_bind_address: String,
    pub metrics_bind_address: String,
    pub bind_address_hard_fail: bool,
    pub mode: &'static str,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    pub detect_local_mode: &'static str,
    pub node_port_addresses: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientConnection {
    pub kubeconfig: String,
}

/// `node`'s configuration.
pub fn configuration(cluster: &Cluster, node: &Node) -> Result<KubeProxyConfiguration, InputError> {
    let supported = cluster.validate()?;
    let ip = node.control_plane_ip;
    Ok(KubeProxyConfiguration {
        api_version: supported.kube_proxy_api,
        kind: "KubeProxyConfiguration",
        client_connection: ClientConnection {
            kubeconfig: format!("{POD_KUBECONFIG_DIR}/kubeconfig.conf"),
        },
        hostname_override: node.name.clone(),
        // Not a socket: kube-proxy's idea of its node's primary IP.
        bind_address: ip.to_string(),
        healthz_bind_address: cluster::host_port(ip, cluster::KUBE_PROXY_HEALTHZ_PORT),
        metrics_bind_address: cluster::host_port(ip, cluster::KUBE_PROXY_METRICS_PORT),
        // A server that cannot bind its address is a broken node: fail loudly.
        bind_address_hard_fail: true,
        mode: "iptables",
        cluster_cidr: cluster.pods.to_string(),
        detect_local_mode: "ClusterCIDR",
        // NodePorts answer on the workload plane only, not on the control-plane network.
        node_port_addresses: cluster
            .workload_plane
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

/// The configuration file's content (YAML).
pub fn configuration_file(cluster: &Cluster, node: &Node) -> Result<String, InputError> {
    let config = serde_json::to_value(configuration(cluster, node)?).expect("plain data");
    Ok(crate::yaml::documents(&[config]))
}

/// The objects that run kube-proxy: its ServiceAccount, the binding of that account to
/// `system:node-proxier` (kubeadm's name, `kubeadm:node-proxier`), the kubeconfig
/// ConfigMap and the DaemonSet.
pub fn objects(cluster: &Cluster) -> Result<Vec<Value>, InputError> {
    cluster.validate()?;
    let labels = json!({"k8s-app": NAME});
    let kubeconfig = format!(
        "\
apiVersion: v1
kind: Config
clusters:
- name: default
  cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: https://{endpoint}
contexts:
- name: default
  context:
    cluster: default
    namespace: default
    user: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
",
        endpoint = crate::kubeadm::control_plane_endpoint()
    );
    Ok(vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "kubeadm:node-proxier", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "data": {"kubeconfig.conf": kubeconfig},
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": NAME,
                        "hostNetwork": true,
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{
                            "name": NAME,
                            "image": format!("{}/kube-proxy:{}", cluster.image_repository(), cluster.version),
                            "imagePullPolicy": "IfNotPresent",
                            "command": [
                                "/usr/local/bin/kube-proxy",
                                format!("--config={POD_CONFIG_DIR}/config.conf"),
                            ],
                            "securityContext": {"privileged": true},
                            "volumeMounts": [
                                {"name": "config", "mountPath": POD_CONFIG_DIR, "readOnly": true},
                                {"name": "kubeconfig", "mountPath": POD_KUBECONFIG_DIR, "readOnly": true},
                                {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
                                {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true},
                            ],
                        }],
                        "volumes": [
                            {"name": "config", "hostPath": {"path": paths::KUBE_PROXY_DIR, "type": "Directory"}},
                            {"name": "kubeconfig", "configMap": {"name": NAME}},
                            {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                            {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                        ],
                    },
                },
            },
        }),
    ])
}
