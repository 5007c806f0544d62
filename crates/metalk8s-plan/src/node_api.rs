//! What the `kubernetes` phase does through the Kubernetes API for each node, once the
//! node has registered (its health gate does it: nothing of this exists before): the
//! labels the kubelet may not set on itself and the taints, as a server-side apply body,
//! and what the node's kubelet serving certificate may name, against which its
//! certificate signing requests are judged.
//!
//! Pure like the rest of the planner, and from the same conversion of the inventory the
//! phase's plan renders ([`kubernetes::kubernetes_cluster`]), so that the labels applied
//! and the labels the kubelet gets in `--node-labels` never disagree.

use std::collections::BTreeMap;

use metalk8s_kubernetes::csr::KnownNode;
use metalk8s_kubernetes::objects;
use metalk8s_model::Facts;
use metalk8s_model::inventory::Inventory;

use crate::{Cluster, PlanError, StagedBundle, address, kubernetes};

/// One node, as the `kubernetes` phase's gate treats it through the API.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeApi {
    pub name: String,
    /// The server-side apply body of the Node fields metalk8s owns
    /// ([`objects::node_labels_patch`]).
    pub labels_and_taints: serde_json::Value,
    /// The names and addresses its kubelet serving certificate may carry.
    pub serving: KnownNode,
}

/// Every node of the inventory, in inventory order. Without a staged bundle carrying
/// Kubernetes the `kubernetes` phase has no hosts, so its gate never runs: nothing then.
pub fn node_api(
    inventory: &Inventory,
    facts: &BTreeMap<String, Facts>,
    bundle: Option<&StagedBundle>,
) -> Result<Vec<NodeApi>, PlanError> {
    let Some(bundle) = bundle.filter(|bundle| bundle.kubernetes_version.is_some()) else {
        return Ok(Vec::new());
    };
    let cluster = Cluster::new(inventory, facts)?;
    let version = kubernetes::kubernetes_version(&cluster, bundle)?;
    let k8s = kubernetes::kubernetes_cluster(&cluster, version);
    Ok(cluster
        .nodes
        .iter()
        .zip(&k8s.nodes)
        .map(|(planned, node)| {
            let workload_plane_ip =
                address::workload_plane_ip(inventory, planned.node, planned.facts);
            // The kubelet names itself by the host's name, lowercased, unless overridden.
            let hostname = planned.facts.hostname.to_lowercase();
            NodeApi {
                name: node.name.clone(),
                labels_and_taints: objects::node_labels_patch(node),
                serving: KnownNode {
                    name: node.name.clone(),
                    addresses: std::iter::once(planned.control_plane_ip)
                        .chain(workload_plane_ip.filter(|ip| *ip != planned.control_plane_ip))
                        .collect(),
                    hostnames: (!hostname.is_empty() && hostname != node.name)
                        .then_some(hostname)
                        .into_iter()
                        .collect(),
                },
            }
        })
        .collect())
}
