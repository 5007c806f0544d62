//! The planner: turns the inventory and the facts gathered from every node into a
//! [`Plan`] — phases of ordered, per-host steps, each the desired state of one thing.
//!
//! In DESIGN.md's layers it sits between the model (inventory, facts) and the engine,
//! which executes the plan. It is pure: no I/O, and the same input always gives the same
//! plan, byte for byte, so plans are snapshot-tested and `--dry-run` output is stable.
//!
//! - [`plan`]: the whole plan, or the phases asked for.
//! - [`phases`]: the registry of phases, each one unit (needs, planner, health gate).
//! - [`control_plane_ip`]: the address a node is known by on the control-plane network.
//! - [`node_api`]: what the `kubernetes` phase's gate applies and approves through the
//!   Kubernetes API for each node once it has registered.
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
pub mod kubernetes;
mod node_api;
mod os;
pub mod phases;
mod repository;
mod steps;

use std::collections::BTreeMap;
use std::net::IpAddr;

use metalk8s_model::inventory::{self, Inventory, Node, Role};
use metalk8s_model::plan::{NodeFile, PLAN_KIND, Phase};
use metalk8s_model::{Facts, PhaseName};

pub use address::{control_plane_ip, control_plane_ips, workload_plane_ip};
pub use error::PlanError;
pub use kubernetes::JoinCredentials;
pub use metalk8s_model::plan::Plan;
pub use node_api::{NodeApi, node_api};
pub use phases::{HealthGate, Needs, PhaseUnit};

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
    /// The bootstrap token for the nodes that have not joined Kubernetes yet; `None` when
    /// every node has.
    pub join: Option<JoinCredentials>,
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
    /// Its binaries (`bin/<name>`), which nodes fetch from the bootstrap repository
    /// ([`steps::fetch`]).
    pub binaries: Vec<BundleBinary>,
    /// The Kubernetes release it carries (`1.36.4`, no `v`), if any.
    pub kubernetes_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleImage {
    pub name: String,
    pub tag: String,
}

/// A binary of the bundle, served as `/files/<name>` by the bootstrap repository
/// ([`metalk8s_model::repository::file_url`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleBinary {
    pub name: String,
    pub version: String,
    /// Lower-case hex, from the manifest.
    pub sha256: String,
}

impl Inputs {
    /// Only what `needs` asks for: a phase is planned with what its unit declares, so a
    /// phase reading an input it did not declare plans as if it were absent (and its
    /// tests show it) instead of working by accident when another phase asked for it.
    fn restricted_to(&self, needs: Needs) -> Inputs {
        Inputs {
            pki: if needs.pki {
                self.pki.clone()
            } else {
                BTreeMap::new()
            },
            etcd_running: needs.etcd_state && self.etcd_running,
            bundle: self.bundle.clone().filter(|_| needs.staged_bundle),
            agent_path: self.agent_path.clone(),
            join: self.join.clone().filter(|_| needs.join_token),
        }
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
    phases: &[PhaseName],
) -> Result<Plan, PlanError> {
    let cluster = Cluster::new(inventory, facts)?;
    // Asked for by name, the `kubernetes` phase must have something to install; planned
    // with every phase it has no hosts without a Kubernetes bundle (its module says why).
    if phases.contains(&PhaseName::Kubernetes) {
        kubernetes::require_kubernetes_bundle(inputs)?;
    }
    let phases = phases::select(phases)
        .into_iter()
        .map(|name| {
            let unit = phases::unit(name);
            (unit.plan)(&cluster, &inputs.restricted_to(unit.needs))
        })
        .collect::<Result<Vec<Phase>, PlanError>>()?;
    Ok(Plan {
        api_version: inventory::API_VERSION.to_owned(),
        kind: PLAN_KIND.to_owned(),
        cluster: inventory.name.clone(),
        phases,
    })
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
