//! Why a plan cannot be made. Each error names the node or phase at fault and says what to
//! change.

use miette::Diagnostic;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum PlanError {
    #[error("unknown phase `{phase}`")]
    #[diagnostic(code(plan::unknown_phase), help("the phases are: {}", known.join(", ")))]
    UnknownPhase { phase: String, known: Vec<String> },

    #[error("no facts were gathered from node `{node}`")]
    #[diagnostic(
        code(plan::missing_facts),
        help(
            "every node of the inventory must be reachable: the plan of each node depends on the others (/etc/hosts, time server)"
        )
    )]
    MissingFacts { node: String },

    #[error("the inventory has {count} bootstrap nodes")]
    #[diagnostic(
        code(plan::bootstrap_count),
        help(
            "give exactly one node the `bootstrap` role (`metalk8s inventory check` says so too)"
        )
    )]
    BootstrapCount { count: usize },

    #[error("node `{node}` has no single address in networks.controlPlane")]
    #[diagnostic(
        code(plan::no_control_plane_ip),
        help(
            "configure one address of networks.controlPlane on the node, or choose one with `controlPlaneIP` in the inventory"
        )
    )]
    NoControlPlaneIp { node: String },

    #[error("node `{node}` runs `{os_id}` version `{version}`, which metalk8s cannot prepare")]
    #[diagnostic(
        code(plan::unsupported_os),
        help(
            "metalk8s prepares Debian and Ubuntu (apt) and RHEL, Rocky Linux and AlmaLinux 8 or later (dnf); `metalk8s precheck` lists the supported versions"
        )
    )]
    UnsupportedOs {
        node: String,
        os_id: String,
        version: String,
    },
}
