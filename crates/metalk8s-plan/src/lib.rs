//! The planner: turns the inventory and the facts gathered from every node into a
//! [`Plan`] — phases of ordered, per-host steps, each the desired state of one thing.
//!
//! In DESIGN.md's layers it sits between the model (inventory, facts) and the engine,
//! which executes the plan. It is pure: no I/O, and the same input always gives the same
//! plan, byte for byte, so plans are snapshot-tested and `--dry-run` output is stable.
//!
//! - [`plan`]: the whole plan, or the phases asked for.
//! - [`PHASES`]: the phases, in the order they run.
//! - [`control_plane_ip`]: the address a node is known by on the control-plane network.
//!
//! Phases: `os` ([`os`](crate::os)) prepares the operating system: kernel modules and
//! parameters, swap, names, packages, time, journal, limits.

mod address;
mod error;
mod os;
mod steps;

use std::collections::BTreeMap;
use std::net::IpAddr;

use metalk8s_model::Facts;
use metalk8s_model::inventory::{self, Inventory, Node, Role};
use metalk8s_model::plan::{PLAN_KIND, Phase};

pub use address::control_plane_ip;
pub use error::PlanError;
pub use metalk8s_model::plan::Plan;

/// Every phase, in the order they run.
pub const PHASES: &[&str] = &[os::PHASE];

/// The plan of the `phases` asked for (all of them when empty), in the order they run.
///
/// Every node of the inventory needs its facts: the plan of one node depends on the others
/// (their addresses go into /etc/hosts, the bootstrap node is everyone's time server).
pub fn plan(
    inventory: &Inventory,
    facts: &BTreeMap<String, Facts>,
    phases: &[&str],
) -> Result<Plan, PlanError> {
    let selected = select_phases(phases)?;
    let cluster = Cluster::new(inventory, facts)?;
    let phases = selected
        .into_iter()
        .map(|name| match name {
            os::PHASE => os::phase(&cluster),
            _ => unreachable!("select_phases returns known phases only"),
        })
        .collect::<Result<Vec<Phase>, PlanError>>()?;
    Ok(Plan {
        api_version: inventory::API_VERSION.to_owned(),
        kind: PLAN_KIND.to_owned(),
        cluster: inventory.name.clone(),
        phases,
    })
}

/// The phases asked for, each once, in the order they run.
fn select_phases(asked: &[&str]) -> Result<Vec<&'static str>, PlanError> {
    if let Some(unknown) = asked.iter().find(|name| !PHASES.contains(name)) {
        return Err(PlanError::UnknownPhase {
            phase: (*unknown).to_owned(),
            known: PHASES.iter().map(|name| (*name).to_owned()).collect(),
        });
    }
    Ok(PHASES
        .iter()
        .copied()
        .filter(|name| asked.is_empty() || asked.contains(name))
        .collect())
}

/// What every phase needs to know about the whole cluster, worked out once.
pub(crate) struct Cluster<'a> {
    pub inventory: &'a Inventory,
    /// Each node with its facts and control-plane address, in inventory order.
    pub nodes: Vec<PlannedNode<'a>>,
    /// Index of the bootstrap node in `nodes`.
    bootstrap: usize,
}

pub(crate) struct PlannedNode<'a> {
    pub node: &'a Node,
    pub facts: &'a Facts,
    pub control_plane_ip: IpAddr,
}

impl<'a> Cluster<'a> {
    fn new(
        inventory: &'a Inventory,
        facts: &'a BTreeMap<String, Facts>,
    ) -> Result<Self, PlanError> {
        let nodes = inventory
            .nodes
            .iter()
            .map(|node| planned_node(inventory, node, facts))
            .collect::<Result<Vec<_>, _>>()?;
        let bootstraps: Vec<usize> = (0..nodes.len())
            .filter(|index| nodes[*index].node.has_role(Role::Bootstrap))
            .collect();
        let [bootstrap] = bootstraps[..] else {
            return Err(PlanError::BootstrapCount {
                count: bootstraps.len(),
            });
        };
        Ok(Cluster {
            inventory,
            nodes,
            bootstrap,
        })
    }

    pub fn bootstrap(&self) -> &PlannedNode<'a> {
        &self.nodes[self.bootstrap]
    }
}

fn planned_node<'a>(
    inventory: &'a Inventory,
    node: &'a Node,
    facts: &'a BTreeMap<String, Facts>,
) -> Result<PlannedNode<'a>, PlanError> {
    let facts = facts
        .get(&node.name)
        .ok_or_else(|| PlanError::MissingFacts {
            node: node.name.clone(),
        })?;
    let control_plane_ip =
        control_plane_ip(inventory, node, facts).ok_or_else(|| PlanError::NoControlPlaneIp {
            node: node.name.clone(),
        })?;
    Ok(PlannedNode {
        node,
        facts,
        control_plane_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_selected_in_run_order_once() {
        assert_eq!(select_phases(&[]).unwrap(), PHASES);
        assert_eq!(select_phases(&["os", "os"]).unwrap(), ["os"]);
    }

    #[test]
    fn an_unknown_phase_lists_the_known_ones() {
        let error = select_phases(&["os", "etcd"]).unwrap_err();
        assert!(
            matches!(&error, PlanError::UnknownPhase { phase, known } if phase == "etcd" && known == &["os"]),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "unknown phase `etcd`");
        let help = miette::Diagnostic::help(&error).unwrap().to_string();
        assert_eq!(help, "the phases are: os");
    }
}
