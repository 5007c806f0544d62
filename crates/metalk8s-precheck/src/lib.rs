//! Pre-checks: is every server of the inventory ready to become a cluster node?
//!
//! Sits between the transport and the binary in DESIGN.md's picture: it gathers [`Facts`]
//! from every host in parallel through the `Host` trait ([`gather`]), then judges them
//! with pure functions of the inventory and the facts ([`checks`]).

pub mod checks;
pub mod gather;

use std::sync::Arc;

use futures::StreamExt;
use metalk8s_model::inventory::Inventory;
use metalk8s_model::report::{PrecheckReport, error_chain};
use metalk8s_transport::{Host, HostError};

pub use checks::{Gathered, NotGathered};
pub use gather::{GatherRequest, gather};

/// A node's name with its connection, or why there is none.
pub type Connection = (String, Result<Arc<dyn Host>, HostError>);

/// What to ask a node: every node name (to check resolution) and its declared disks.
pub fn request_for(inventory: &Inventory, node_name: &str) -> GatherRequest {
    let devices = inventory
        .node(node_name)
        .map(|node| {
            node.storage
                .volumes
                .iter()
                .flat_map(|volume| volume.devices())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    GatherRequest {
        names: inventory.nodes.iter().map(|n| n.name.clone()).collect(),
        devices,
        planning_only: false,
    }
}

/// Gathers facts from every connected host (at most `parallelism` at once) and checks them.
pub async fn run(
    inventory: &Inventory,
    connections: Vec<Connection>,
    parallelism: usize,
) -> PrecheckReport {
    let facts: Gathered = futures::stream::iter(connections)
        .map(|(name, connection)| async move {
            let facts = match connection {
                Ok(host) => gather(host.as_ref(), &request_for(inventory, &name))
                    .await
                    .map_err(describe_gather_error),
                Err(error) => Err(describe_host_error(&error)),
            };
            (name, facts)
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    PrecheckReport::new(checks::check_all(inventory, &facts))
}

fn describe_host_error(error: &HostError) -> NotGathered {
    NotGathered {
        reason: error_chain(error),
        hint: error.hint().map(str::to_owned),
    }
}

fn describe_gather_error(error: gather::GatherError) -> NotGathered {
    match &error {
        gather::GatherError::Host(host_error) => describe_host_error(host_error),
        _ => NotGathered {
            reason: error_chain(&error),
            hint: None,
        },
    }
}
