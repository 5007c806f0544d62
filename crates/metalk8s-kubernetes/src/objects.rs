//! Every Kubernetes object metalk8s itself creates or applies for this phase, gathered for
//! the phase and for validation against the API schemas (`kubernetes-validate --strict`).

use serde_json::{Value, json};

use crate::cluster::{Cluster, Node};
use crate::coredns::{self, DnsSettings};
use crate::error::InputError;
use crate::kubeadm::TaintSpec;
use crate::{kube_proxy, rbac, roles};

/// The Node fields metalk8s owns, as a server-side apply body (field manager `metalk8s`):
/// the labels the kubelet may not set itself (roles) and the taints of the node's roles
/// and inventory. kubeadm registered the taints; applying them takes them over (force).
pub fn node_labels_patch(node: &Node) -> Value {
    let taints: Vec<TaintSpec> = roles::node_taints(node)
        .iter()
        .map(TaintSpec::from)
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": roles::api_labels(node)},
        "spec": {"taints": taints},
    })
}

/// The cluster-wide objects the `kubernetes` phase applies once the API is up: the RBAC
/// bindings, kube-proxy's and CoreDNS's objects.
pub fn cluster_objects(cluster: &Cluster, dns: &DnsSettings) -> Result<Vec<Value>, InputError> {
    let mut objects = rbac::bindings();
    objects.extend(kube_proxy::objects(cluster)?);
    objects.extend(coredns::objects(cluster, dns)?);
    Ok(objects)
}

/// [`cluster_objects`] and each node's apply body.
pub fn all(cluster: &Cluster, dns: &DnsSettings) -> Result<Vec<Value>, InputError> {
    let mut objects = cluster_objects(cluster, dns)?;
    objects.extend(cluster.nodes.iter().map(node_labels_patch));
    Ok(objects)
}
