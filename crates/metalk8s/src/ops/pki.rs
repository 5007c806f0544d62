//! Asking the bootstrap node's key store for the cluster's certificates: the controller
//! sends a request to `metalk8s agent pki` there and gets back what each node must hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use metalk8s_engine::agent::{self, AgentBinary};
use metalk8s_model::Facts;
use metalk8s_model::inventory::Inventory;
use metalk8s_pki::{ClusterAddresses, PkiAction, PkiRequest, PkiResponse};
use metalk8s_transport::Host;

use super::OpsError;

/// Each node's control-plane address (declared in the inventory, else found in its
/// facts) and the inventory's API server VIP.
pub fn addresses(inventory: &Inventory, facts: &BTreeMap<String, Facts>) -> ClusterAddresses {
    ClusterAddresses::of_inventory(
        inventory,
        metalk8s_plan::control_plane_ips(inventory, facts),
    )
}

/// Runs `action` on the key store of the bootstrap node (on a scratch copy when
/// `dry_run`) and returns its answer.
pub async fn ask(
    inventory: &Inventory,
    hosts: &BTreeMap<String, Arc<dyn Host>>,
    facts: &BTreeMap<String, Facts>,
    binary: &AgentBinary,
    action: PkiAction,
    dry_run: bool,
) -> Result<PkiResponse, OpsError> {
    let bootstrap = inventory
        .bootstrap()
        .ok_or_else(|| OpsError::invalid("the inventory has no bootstrap node"))?;
    let host = hosts.get(&bootstrap.name).ok_or_else(|| {
        OpsError::unusable(format!(
            "no connection to the bootstrap node {}, which holds the PKI",
            bootstrap.name
        ))
    })?;
    let request = PkiRequest {
        inventory: inventory.clone(),
        addresses: addresses(inventory, facts),
        action,
        dry_run,
        leaf_validity_seconds: leaf_validity_override(),
    };
    let input = serde_json::to_vec(&request).expect("PKI requests serialize");
    let output = agent::call(host.as_ref(), binary, "pki", input)
        .await
        .map_err(|error| OpsError::OnNode {
            message: format!(
                "the PKI store on {} did not answer: {}",
                bootstrap.name,
                metalk8s_model::report::error_chain(&error)
            ),
            help: Some("the key store is /var/lib/metalk8s/pki on the bootstrap node".into()),
        })?;
    serde_json::from_slice(&output).map_err(|error| {
        OpsError::on_node(format!(
            "the PKI store on {} answered what this metalk8s cannot read: {error}",
            bootstrap.name
        ))
    })
}

/// `METALK8S_LEAF_VALIDITY_SECONDS`: how long new leaf certificates live. For tests that
/// need certificates about to expire; operators keep the default (1 year).
fn leaf_validity_override() -> Option<i64> {
    std::env::var("METALK8S_LEAF_VALIDITY_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
}
