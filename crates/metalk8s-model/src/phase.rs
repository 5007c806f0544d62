//! The names of the deploy phases, in the order they run.
//!
//! A phase is a unit declared once, in the planner's registry (`metalk8s_plan::phases`):
//! its name here, what it needs, its planner and its health gate. Everything that selects,
//! gates or reports phases (`deploy --phase`, `certs renew`, the executor's gates, shell
//! completions) works with this type, never with a string, so a misspelt phase is a
//! compile error instead of a gate silently turned off.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One deploy phase. The declaration order is the run order (`Ord` follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseName {
    /// Kernel modules and parameters, swap, names, packages, time, journal, limits.
    Os,
    /// The staged bundle served from the bootstrap node; every node's APT pointed at it.
    Repository,
    /// The cluster's external etcd on the `etcd` nodes.
    Etcd,
    /// containerd from the repository, with the bootstrap registry as its mirror.
    Containerd,
    /// Kubernetes with kubeadm: the local API server proxy, the kubelet, the control
    /// plane on external etcd, every node joined.
    Kubernetes,
}

impl PhaseName {
    /// Every phase, in the order they run.
    pub const ALL: [PhaseName; 5] = [
        PhaseName::Os,
        PhaseName::Repository,
        PhaseName::Etcd,
        PhaseName::Containerd,
        PhaseName::Kubernetes,
    ];

    /// The name `--phase` takes and plans, reports and journals show.
    pub const fn as_str(self) -> &'static str {
        match self {
            PhaseName::Os => "os",
            PhaseName::Repository => "repository",
            PhaseName::Etcd => "etcd",
            PhaseName::Containerd => "containerd",
            PhaseName::Kubernetes => "kubernetes",
        }
    }

    /// The phase called `name`, if there is one.
    pub fn parse(name: &str) -> Option<PhaseName> {
        PhaseName::ALL
            .into_iter()
            .find(|phase| phase.as_str() == name)
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no phase; says which ones there are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase `{name}` (the phases are: {})", known_phases())]
pub struct UnknownPhase {
    pub name: String,
}

/// The phases' names, comma-separated in run order.
pub fn known_phases() -> String {
    PhaseName::ALL.map(PhaseName::as_str).join(", ")
}

impl FromStr for PhaseName {
    type Err = UnknownPhase;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        PhaseName::parse(name).ok_or_else(|| UnknownPhase {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for phase in PhaseName::ALL {
            assert_eq!(phase.as_str().parse::<PhaseName>(), Ok(phase));
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{phase}\""));
            assert_eq!(serde_json::from_str::<PhaseName>(&json).unwrap(), phase);
        }
    }

    #[test]
    fn the_run_order_is_the_declaration_order() {
        let mut sorted = PhaseName::ALL;
        sorted.sort();
        assert_eq!(sorted, PhaseName::ALL);
    }

    #[test]
    fn an_unknown_name_lists_the_phases() {
        let error = "kubelet".parse::<PhaseName>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown phase `kubelet` (the phases are: os, repository, etcd, containerd, kubernetes)"
        );
    }
}
