//! The etcd members of an inventory with their connections, for `metalk8s etcd` and for
//! the deploy's health gate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metalk8s_etcd::{EtcdCluster, Member};
use metalk8s_model::Facts;
use metalk8s_model::inventory::{Inventory, Role};
use metalk8s_model::report::error_chain;
use metalk8s_precheck::GatherRequest;
use metalk8s_transport::{ConnectOptions, Host};

use super::OpsError;

/// How long `metalk8s etcd` waits for every member to be healthy: as long as the deploy's
/// gate does.
pub const GATE_TIMEOUT: Duration = super::gates::ETCD_PATIENCE.timeout;

/// The members, from connections already open (deploy).
pub fn cluster(
    inventory: &Inventory,
    hosts: &BTreeMap<String, Arc<dyn Host>>,
    facts: &BTreeMap<String, Facts>,
) -> EtcdCluster {
    let addresses = metalk8s_plan::control_plane_ips(inventory, facts);
    EtcdCluster {
        token: inventory.name.clone(),
        members: inventory
            .nodes_with(Role::Etcd)
            .filter_map(|node| {
                Some(Member {
                    name: node.name.clone(),
                    ip: *addresses.get(&node.name)?,
                    host: hosts.get(&node.name).cloned(),
                    unreachable: None,
                })
            })
            .collect(),
    }
}

/// The members and the bootstrap node, connected; a member that cannot be reached is
/// kept, without a connection (status reports it, other operations refuse to run).
pub async fn connect(
    inventory: &Inventory,
    options: &ConnectOptions,
) -> Result<(EtcdCluster, Option<Arc<dyn Host>>), OpsError> {
    let mut wanted = inventory.clone();
    wanted
        .nodes
        .retain(|node| node.has_role(Role::Etcd) || node.has_role(Role::Bootstrap));
    let connections = metalk8s_transport::connect_all(&wanted, options).await;
    let mut hosts = BTreeMap::new();
    let mut unreachable = BTreeMap::new();
    for (node, connection) in connections {
        match connection {
            Ok(host) => {
                hosts.insert(node, host);
            }
            Err(error) => {
                unreachable.insert(node, error_chain(&error));
            }
        }
    }
    let mut members = Vec::new();
    for node in inventory.nodes_with(Role::Etcd) {
        let host = hosts.get(&node.name).cloned();
        let ip = match (node.control_plane_ip, &host) {
            (Some(ip), _) => ip,
            (None, Some(host)) => {
                let facts =
                    metalk8s_precheck::gather(host.as_ref(), &GatherRequest::for_planning())
                        .await
                        .map_err(|error| {
                            OpsError::unusable(format!("{}: {}", node.name, error_chain(&error)))
                        })?;
                metalk8s_plan::control_plane_ip(inventory, node, &facts).ok_or_else(|| {
                    OpsError::OnNode {
                        message: format!(
                            "node {} has no single address in networks.controlPlane",
                            node.name
                        ),
                        help: Some("set `controlPlaneIP` on the node in the inventory".into()),
                    }
                })?
            }
            (None, None) => {
                return Err(OpsError::Unusable {
                    message: format!(
                        "etcd member {} cannot be reached ({}) and its control-plane address is not declared",
                        node.name,
                        unreachable
                            .get(&node.name)
                            .map(String::as_str)
                            .unwrap_or("no connection")
                    ),
                    help: Some(
                        "set `controlPlaneIP` on the node in the inventory, so that it can be named while it is unreachable".into(),
                    ),
                });
            }
        };
        members.push(Member {
            name: node.name.clone(),
            ip,
            host,
            unreachable: unreachable.get(&node.name).cloned(),
        });
    }
    let bootstrap = inventory
        .bootstrap()
        .and_then(|node| hosts.get(&node.name).cloned());
    Ok((
        EtcdCluster {
            token: inventory.name.clone(),
            members,
        },
        bootstrap,
    ))
}

/// A timestamp for file names: `20261127T101500Z` (UTC, as the deploy's run ids).
pub fn stamp() -> String {
    let time = metalk8s_engine::report::format_time(metalk8s_engine::journal::now());
    format!("{}Z", time.replace(['-', ':'], "").replace(' ', "T"))
}
