//! The kubelet: its `KubeletConfiguration` (`kubelet.config.k8s.io/v1beta1`), the systemd
//! unit and the kubeadm-style drop-in that start it.
//!
//! kubeadm stores one KubeletConfiguration for the cluster (the `kubelet-config`
//! ConfigMap) and writes it to every node's `/var/lib/kubelet/config.yaml`, applying the
//! node's patches first. So: [`cluster_configuration`] is what every kubelet shares,
//! [`node_patch`] what is the node's own (its API address on the control-plane IP, its
//! reservations), and [`node_configuration`] the two merged, which is what the node runs
//! and what the tests check against the upstream schema.
//!
//! `healthzBindAddress` stays on 127.0.0.1 (kubelet's default) rather than the
//! control-plane IP: it is plain, unauthenticated HTTP, and kubeadm waits for the kubelet on
//! the cluster-wide value, so a per-node address there would make every `kubeadm join`
//! time out. The authenticated API (`address`, port 10250) is on the control-plane IP.
//!
//! Binaries: the bundle's kubelet is installed as `/usr/bin/kubelet` (where upstream's
//! packages put it), started by metalk8s's own `kubelet.service` and its `10-kubeadm.conf`
//! drop-in, which also passes `--node-ip` and the labels the kubelet may set itself.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::{self, Cluster, Node, paths};
use crate::error::InputError;
use crate::reservation;
use crate::roles;

/// The resolver configuration handed to pods with `dnsPolicy: Default`. Debian's own file:
/// on hosts using systemd-resolved the planner must pass
/// `/run/systemd/resolve/resolv.conf` instead (the stub at 127.0.0.53 is unreachable from
/// pods).
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The settings every kubelet shares (a subset of upstream's fields, named as upstream).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub static_pod_path: String,
    pub healthz_bind_address: String,
    pub healthz_port: u16,
    pub port: u16,
    pub read_only_port: u16,
    pub tls_min_version: &'static str,
    pub rotate_certificates: bool,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: bool,
    pub authentication: Value,
    pub authorization: Value,
    pub cluster_domain: String,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Vec<String>,
    pub cgroup_driver: &'static str,
    pub container_runtime_endpoint: String,
    pub resolv_conf: String,
    pub container_log_max_size: &'static str,
    pub container_log_max_files: u32,
    pub eviction_hard: BTreeMap<String, String>,
    pub fail_swap_on: bool,
    pub shutdown_grace_period: &'static str,
    pub shutdown_grace_period_critical_pods: &'static str,
}

/// The cluster-wide KubeletConfiguration (the third document of `kubeadm init`'s config).
pub fn cluster_configuration(cluster: &Cluster) -> Result<KubeletConfiguration, InputError> {
    let supported = cluster.validate()?;
    Ok(KubeletConfiguration {
        api_version: supported.kubelet_api,
        kind: "KubeletConfiguration",
        static_pod_path: paths::STATIC_POD_DIR.to_owned(),
        healthz_bind_address: "127.0.0.1".to_owned(),
        healthz_port: cluster::KUBELET_HEALTHZ_PORT,
        port: cluster::KUBELET_PORT,
        read_only_port: 0,
        tls_min_version: "VersionTLS12",
        // Client certificates rotate by themselves (signed by the controller-manager);
        // serving certificates come from CSRs that metalk8s approves after checking the
        // node's name and addresses (crate::csr).
        rotate_certificates: true,
        server_tls_bootstrap: true,
        authentication: json!({
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true, "cacheTTL": "2m0s"},
            "x509": {"clientCAFile": paths::CA_CERT},
        }),
        authorization: json!({
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"},
        }),
        cluster_domain: cluster.dns_domain.clone(),
        cluster_dns: vec![cluster.cluster_dns_ip()?.to_string()],
        cgroup_driver: "systemd",
        container_runtime_endpoint: paths::CRI_SOCKET.to_owned(),
        resolv_conf: DEFAULT_RESOLV_CONF.to_owned(),
        // 5 × 50 MiB per container: the default 10 MiB rotates a chatty service's log away
        // before anyone reads it.
        container_log_max_size: "50Mi",
        container_log_max_files: 5,
        eviction_hard: [
            ("memory.available", "100Mi"),
            ("nodefs.available", "10%"),
            ("nodefs.inodesFree", "5%"),
            ("imagefs.available", "15%"),
        ]
        .into_iter()
        .map(|(signal, threshold)| (signal.to_owned(), threshold.to_owned()))
        .collect(),
        fail_swap_on: true,
        // Graceful node shutdown: pods get a minute, critical ones the last 20 s of it.
        shutdown_grace_period: "60s",
        shutdown_grace_period_critical_pods: "20s",
    })
}

/// What is the node's own, as the JSON merge patch kubeadm applies to the cluster-wide
/// configuration (`kubeletconfiguration+merge.json` in the patches directory).
pub fn node_patch(cluster: &Cluster, node: &Node) -> Result<Value, InputError> {
    let supported = cluster.validate()?;
    Ok(json!({
        "apiVersion": supported.kubelet_api,
        "kind": "KubeletConfiguration",
        "address": node.control_plane_ip.to_string(),
        "kubeReserved": reservation::kube_reserved(node.cpus, node.memory_bytes).to_map(),
        "systemReserved": reservation::system_reserved(node.cpus, node.memory_bytes).to_map(),
    }))
}

/// The configuration the node's kubelet runs with: the cluster's, with the node's patch
/// merged in (RFC 7386, as kubeadm applies it).
pub fn node_configuration(cluster: &Cluster, node: &Node) -> Result<Value, InputError> {
    let mut config = serde_json::to_value(cluster_configuration(cluster)?).expect("plain data");
    merge_patch(&mut config, &node_patch(cluster, node)?);
    Ok(config)
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let object = target.as_object_mut().expect("made an object above");
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// `kubelet.service`: starts the bundle's kubelet after containerd and restarts it for
/// ever (until kubeadm has written its configuration the kubelet exits at once; that
/// loop is expected).
pub fn unit() -> String {
    format!(
        "\
# Written by metalk8s.
[Unit]
Description=kubelet: the Kubernetes node agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target containerd.service
After=network-online.target containerd.service
StartLimitIntervalSec=0

[Service]
ExecStart={kubelet}
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
",
        kubelet = paths::KUBELET_BIN
    )
}

/// `kubelet.service.d/10-kubeadm.conf`: kubeadm's drop-in (its kubeconfigs, its config
/// file and the flags file it writes), plus the node's own flags in
/// `KUBELET_METALK8S_ARGS`: `--node-ip` (the control-plane IP, so the Node's InternalIP,
/// the API server's way to the kubelet and every pod's hostIP are on that network) and
/// the labels the kubelet may set itself. `KUBELET_EXTRA_ARGS` from /etc/default/kubelet
/// stays last, as the operator's escape hatch.
pub fn drop_in(node: &Node) -> String {
    let labels = roles::kubelet_labels(node)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = format!("--node-ip={}", node.control_plane_ip);
    if !labels.is_empty() {
        args.push_str(&format!(" --node-labels={labels}"));
    }
    format!(
        "\
# Written by metalk8s: kubeadm's kubelet drop-in, plus this node's own flags.
[Service]
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig={bootstrap} --kubeconfig={kubeconfig}\"
Environment=\"KUBELET_CONFIG_ARGS=--config={config}\"
Environment=\"KUBELET_METALK8S_ARGS={args}\"
# Written by kubeadm init/join: KUBELET_KUBEADM_ARGS.
EnvironmentFile=-{flags}
# The operator's last resort: KUBELET_EXTRA_ARGS.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart={kubelet} $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_METALK8S_ARGS $KUBELET_EXTRA_ARGS
",
        bootstrap = paths::KUBELET_BOOTSTRAP_KUBECONFIG,
        kubeconfig = paths::KUBELET_KUBECONFIG,
        config = paths::KUBELET_CONFIG,
        flags = paths::KUBELET_KUBEADM_FLAGS,
        kubelet = paths::KUBELET_BIN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut target,
            &json!({"b": {"c": null, "x": 4}, "e": [2], "f": "g"}),
        );
        assert_eq!(
            target,
            json!({"a": 1, "b": {"d": 3, "x": 4}, "e": [2], "f": "g"})
        );
    }
}
