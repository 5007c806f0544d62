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
//! parameters, swap, names, packages, time, journal, limits; `repository`
//! ([`repository`](crate::repository)) serves the staged offline bundle from the bootstrap
//! node and points every node's APT at it; `etcd` ([`etcd`](crate::etcd)) installs and
//! configures the cluster's etcd on the `etcd` nodes, with the certificates the PKI store
//! returned ([`Inputs`]); `containerd` ([`containerd`](crate::containerd)) installs
//! containerd from the repository, with the bootstrap registry as its mirror.

mod address;
mod containerd;
mod error;
mod etcd;
mod os;
mod repository;
mod steps;

use std::collections::BTreeMap;
use std::net::IpAddr;

use metalk8s_model::Facts;
use metalk8s_model::inventory::{self, Inventory, Node, Role};
use metalk8s_model::plan::{NodeFile, PLAN_KIND, Phase};

pub use address::control_plane_ip;
pub use error::PlanError;
pub use metalk8s_model::plan::Plan;

/// Every phase, in the order they run. `repository` comes after `os` because the `os`
/// packages still come from the nodes' own sources (the bundle does not carry them yet):
/// `os` installs curl and the tools the repository phase relies on, then `repository`
/// switches every node's APT to the bootstrap node, so `etcd` and `containerd` install
/// from the bundle.
pub const PHASES: &[&str] = &[os::PHASE, repository::PHASE, etcd::PHASE, containerd::PHASE];

/// What the planner is given besides the inventory and the facts: material made off the
/// nodes, and what the controller found out about running services.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    /// By node, the files it holds under /etc/kubernetes, from the PKI store on the
    /// bootstrap node (`metalk8s agent pki`).
    pub pki: BTreeMap<String, Vec<NodeFile>>,
    /// etcd already serves the cluster: its members then change one at a time (a cluster
    /// being created starts every member at once).
    pub etcd_running: bool,
    /// The bundle staged on the bootstrap node, if any. Without one, the `repository` and
    /// `containerd` phases have no hosts and the nodes keep their own package sources.
    pub bundle: Option<StagedBundle>,
    /// Where the metalk8s binary (the agent) is on every node; `metalk8s-repo.service`
    /// runs it.
    pub agent_path: String,
}

/// A bundle staged on the bootstrap node (`deploy --bundle`), as its manifest describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StagedBundle {
    /// The manifest's version.
    pub version: String,
    /// Its directory on the bootstrap node.
    pub dir: String,
    /// Its images (`images/<name>/`), each with its tag.
    pub images: Vec<BundleImage>,
    /// The names of its `.deb` packages.
    pub packages: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleImage {
    pub name: String,
    pub tag: String,
}

impl Inputs {
    /// Whether the phases asked for (all when empty) need files from the PKI store.
    pub fn need_pki(phases: &[&str]) -> bool {
        phases.is_empty() || phases.contains(&etcd::PHASE) || phases.contains(&repository::PHASE)
    }
}

/// The plan of the `phases` asked for (all of them when empty), in the order they run.
///
/// Every node of the inventory needs its facts: the plan of one node depends on the others
/// (their addresses go into /etc/hosts, the bootstrap node is everyone's time server).
pub fn plan(
    inventory: &Inventory,
    facts: &BTreeMap<String, Facts>,
    inputs: &Inputs,
    phases: &[&str],
) -> Result<Plan, PlanError> {
    let selected = select_phases(phases)?;
    let cluster = Cluster::new(inventory, facts)?;
    let phases = selected
        .into_iter()
        .map(|name| match name {
            os::PHASE => os::phase(&cluster),
            repository::PHASE => repository::phase(&cluster, inputs),
            etcd::PHASE => etcd::phase(&cluster, inputs),
            containerd::PHASE => containerd::phase(&cluster, inputs),
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
        assert_eq!(select_phases(&["etcd", "os"]).unwrap(), ["os", "etcd"]);
        assert_eq!(
            select_phases(&["containerd", "repository"]).unwrap(),
            ["repository", "containerd"]
        );
    }

    #[test]
    fn an_unknown_phase_lists_the_known_ones() {
        let error = select_phases(&["os", "kubelet"]).unwrap_err();
        assert!(
            matches!(&error, PlanError::UnknownPhase { phase, known } if phase == "kubelet" && known == &["os", "repository", "etcd", "containerd"]),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "unknown phase `kubelet`");
        let help = miette::Diagnostic::help(&error).unwrap().to_string();
        assert_eq!(help, "the phases are: os, repository, etcd, containerd");
    }
}
