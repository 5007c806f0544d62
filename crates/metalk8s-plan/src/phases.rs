//! The phase registry: every deploy phase as one unit, declared once in its own module
//! (its [`PhaseUnit`]) and listed here in [`unit`].
//!
//! A unit says what the controller must find out before planning the phase ([`Needs`]),
//! how its plan is made, and which health check runs after each batch of its hosts
//! ([`HealthGate`]). `plan`, `deploy`, `certs renew`, the `--phase` parser, completions
//! and docs all read the registry; nothing else names a phase.
//!
//! Adding a phase: a variant of [`PhaseName`] (its place in the enum is its place in the
//! run order), a module with the planner and its `UNIT`, one arm in [`unit`], a line in
//! docs/phases.md; a new kind of health check is a new [`HealthGate`] variant, which the
//! binary's gate dispatch must then implement (the match there is exhaustive).

use metalk8s_model::PhaseName;
use metalk8s_model::plan::Phase;

use crate::{Cluster, Inputs, PlanError};

/// One deploy phase: what it needs, how it is planned, how its health is checked.
pub struct PhaseUnit {
    pub name: PhaseName,
    /// One line for `--help`, docs and the plan table.
    pub summary: &'static str,
    pub needs: Needs,
    pub gate: HealthGate,
    pub(crate) plan: fn(&Cluster, &Inputs) -> Result<Phase, PlanError>,
}

/// What the controller gathers before planning a phase ([`Inputs`]). A deploy gathers the
/// union of what its phases need, each thing once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Every node's files from the PKI store on the bootstrap node ([`Inputs::pki`]).
    pub pki: bool,
    /// The bundle staged on the bootstrap node ([`Inputs::bundle`]).
    pub staged_bundle: bool,
    /// Whether etcd already holds data ([`Inputs::etcd_running`]).
    pub etcd_state: bool,
    /// A bootstrap token when a node has not joined Kubernetes yet ([`Inputs::join`]).
    pub join_token: bool,
}

impl Needs {
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            pki: self.pki || other.pki,
            staged_bundle: self.staged_bundle || other.staged_bundle,
            etcd_state: self.etcd_state || other.etcd_state,
            join_token: self.join_token || other.join_token,
        }
    }

    /// What the phases asked for need together.
    pub fn of(phases: &[PhaseName]) -> Needs {
        phases.iter().fold(Needs::default(), |needs, phase| {
            needs.union(unit(*phase).needs)
        })
    }
}

/// The health check run after each batch of a phase's hosts; a failure stops the rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthGate {
    /// The phase's steps check their own result (each is observed again after it is
    /// applied) and it leaves no service others depend on; says why.
    StepsOnly { why: &'static str },
    /// The bootstrap registry answers `/v2/` over TLS checked with the cluster CA.
    RegistryAnswers,
    /// Every etcd member healthy, with one leader.
    EtcdHealthy,
    /// containerd answers on its socket on every host of the batch.
    ContainerdAnswers,
    /// Every control plane of the batch answers `/readyz` through its local API server
    /// proxy, and every node of the batch is registered with the cluster.
    KubernetesNodes,
    /// Every Kubernetes node of the inventory is `Ready` (its kubelet sees a pod network)
    /// and the cluster DNS has all its replicas available.
    PodNetwork,
}

/// The unit of `phase`.
pub fn unit(phase: PhaseName) -> &'static PhaseUnit {
    match phase {
        PhaseName::Os => &crate::os::UNIT,
        PhaseName::Repository => &crate::repository::UNIT,
        PhaseName::Etcd => &crate::etcd::UNIT,
        PhaseName::Containerd => &crate::containerd::UNIT,
        PhaseName::Kubernetes => &crate::kubernetes::UNIT,
    }
}

/// Every phase's unit, in run order.
pub fn registry() -> impl Iterator<Item = &'static PhaseUnit> {
    PhaseName::ALL.into_iter().map(unit)
}

/// The phases asked for (all when none), each once, in run order.
pub fn select(asked: &[PhaseName]) -> Vec<PhaseName> {
    PhaseName::ALL
        .into_iter()
        .filter(|phase| asked.is_empty() || asked.contains(phase))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_its_own_unit_with_a_summary_and_a_gate() {
        for phase in PhaseName::ALL {
            let unit = unit(phase);
            assert_eq!(
                unit.name, phase,
                "unit() maps {phase} to another phase's unit"
            );
            assert!(!unit.summary.trim().is_empty(), "{phase} has no summary");
            if let HealthGate::StepsOnly { why } = unit.gate {
                assert!(
                    why.len() > 20,
                    "{phase} has no health gate and does not say why"
                );
            }
        }
    }

    #[test]
    fn every_phase_is_documented() {
        let docs = include_str!("../../../docs/phases.md");
        for unit in registry() {
            let heading = format!("## `{}`", unit.name);
            assert!(
                docs.contains(&heading),
                "docs/phases.md has no section {heading}"
            );
        }
    }

    #[test]
    fn phases_are_selected_in_run_order_once() {
        use PhaseName::*;
        assert_eq!(select(&[]), PhaseName::ALL);
        assert_eq!(select(&[Os, Os]), [Os]);
        assert_eq!(select(&[Etcd, Os]), [Os, Etcd]);
        assert_eq!(select(&[Containerd, Repository]), [Repository, Containerd]);
    }

    #[test]
    fn needs_are_the_union_of_the_phases_asked_for() {
        use PhaseName::*;
        assert_eq!(Needs::of(&[Os]), Needs::default());
        let etcd = Needs::of(&[Os, Etcd]);
        assert!(etcd.pki && etcd.etcd_state);
        assert!(Needs::of(&[Containerd]).staged_bundle);
        assert!(!Needs::of(&[Containerd]).pki);
    }
}
