//! Why a plan cannot be made. Each error names the node or phase at fault and says what to
//! change.

use miette::Diagnostic;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum PlanError {
    #[error("no certificates from the PKI store for etcd member `{node}`")]
    #[diagnostic(
        code(plan::missing_pki),
        help(
            "the deploy asks the bootstrap node's key store for every node's files before planning; a node added to the inventory since then needs a new deploy"
        )
    )]
    MissingPki { node: String },

    #[error("etcd member `{node}` uses dnf, and etcd packages are only taken from apt sources yet")]
    #[diagnostic(
        code(plan::no_etcd_package),
        help("run etcd members on Debian or Ubuntu until the offline bundle carries etcd")
    )]
    NoEtcdPackage { node: String },

    #[error("no `{path}` from the PKI store for node `{node}`")]
    #[diagnostic(
        code(plan::missing_node_file),
        help(
            "the deploy asks the bootstrap node's key store for every node's files (certificates, the APT signing key) before planning; a node added to the inventory since then needs a new deploy"
        )
    )]
    MissingNodeFile { node: String, path: String },

    #[error("node `{node}` uses dnf, and the bundle repository serves APT packages only yet")]
    #[diagnostic(
        code(plan::no_bundle_repository),
        help(
            "run every node on Debian or Ubuntu to deploy from an offline bundle, or deploy without one"
        )
    )]
    NoBundleRepository { node: String },

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

    #[error("the staged bundle {bundle} cannot install Kubernetes; missing: {missing}")]
    #[diagnostic(
        code(plan::not_a_kubernetes_bundle),
        help(
            "build a Kubernetes bundle from a spec shipped in the repository (`metalk8s bundle build --spec bundles/kubernetes-<minor>.yaml …`, docs/bundle.md) and deploy it with `--bundle`; or leave the phase out (`--phase os,repository,etcd,containerd`)"
        )
    )]
    NotAKubernetesBundle { bundle: String, missing: String },

    #[error("Kubernetes: {problem}")]
    #[diagnostic(code(plan::kubernetes), help("{hint}"))]
    Kubernetes { problem: String, hint: String },

    #[error("node `{node}` has not joined Kubernetes and the deploy has no bootstrap token for it")]
    #[diagnostic(
        code(plan::no_join_token),
        help(
            "the deploy creates a bootstrap token when a node has not joined; plan the `kubernetes` phase with the other inputs the deploy gathers (`metalk8s plan`, `metalk8s deploy`)"
        )
    )]
    NoJoinToken { node: String },
}

impl PlanError {
    /// The Kubernetes renderers' refusal, with its hint.
    pub(crate) fn kubernetes(error: metalk8s_kubernetes::InputError) -> PlanError {
        let hint = match &error {
            metalk8s_kubernetes::InputError::Version(version) => version.hint(),
            metalk8s_kubernetes::InputError::NoControlPlane => {
                "give at least one node the `control-plane` role".to_owned()
            }
            metalk8s_kubernetes::InputError::NoEtcdEndpoint => {
                "give at least one node the `etcd` role".to_owned()
            }
            metalk8s_kubernetes::InputError::NoInterface { .. } => {
                "keepalived puts the VIP on the interface holding the node's control-plane IP; check that the address is configured on the node (`ip -o addr`)".to_owned()
            }
            _ => "check `networks` in the inventory (`metalk8s inventory check`)".to_owned(),
        };
        PlanError::Kubernetes {
            problem: error.to_string(),
            hint,
        }
    }
}
