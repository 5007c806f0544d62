//! Errors of this crate: a version refused, or inputs that cannot make a valid config.

use std::net::IpAddr;

use ipnet::IpNet;

use thiserror::Error;

use crate::version::{KubernetesVersion, SUPPORTED};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("{text:?} is not a Kubernetes version (expected vMAJOR.MINOR.PATCH, e.g. v1.36.2)")]
    Invalid { text: String },
    #[error("Kubernetes {version} is not supported; metalk8s deploys {supported}")]
    Unsupported {
        version: KubernetesVersion,
        supported: String,
    },
    #[error("kubelet {kubelet} is newer than kube-apiserver {apiserver}")]
    KubeletNewer {
        kubelet: KubernetesVersion,
        apiserver: KubernetesVersion,
    },
    #[error(
        "kubelet {kubelet} is more than {max} minor versions older than kube-apiserver {apiserver}"
    )]
    KubeletTooOld {
        kubelet: KubernetesVersion,
        apiserver: KubernetesVersion,
        max: i64,
    },
    #[error(
        "upgrading from {from} to {to} skips a minor version; kubeadm upgrades one minor at a time"
    )]
    SkipsMinor {
        from: KubernetesVersion,
        to: KubernetesVersion,
    },
    #[error("{to} is older than the running {from}; Kubernetes is never downgraded")]
    Downgrade {
        from: KubernetesVersion,
        to: KubernetesVersion,
    },
    #[error("kube-apiservers {oldest} and {newest} are more than one minor version apart")]
    ApiServerSkew {
        oldest: KubernetesVersion,
        newest: KubernetesVersion,
    },
    #[error(
        "a controller-manager or scheduler at {component} may not talk to kube-apiserver {apiserver} (it must be the same minor and not newer, or one minor older)"
    )]
    ControllerSkew {
        component: KubernetesVersion,
        apiserver: KubernetesVersion,
    },
}

impl VersionError {
    /// What the operator can do about it, as a `help:` line.
    pub fn hint(&self) -> String {
        match self {
            VersionError::Invalid { .. } => {
                "the bundle names the Kubernetes version of its binaries; rebuild it from one of the shipped specs".to_owned()
            }
            VersionError::Unsupported { .. } => {
                let newest = SUPPORTED[SUPPORTED.len() - 1].minor;
                format!(
                    "build a bundle for a supported minor from the spec shipped in the repository, e.g. `metalk8s bundle build bundles/kubernetes-{newest}.yaml`"
                )
            }
            VersionError::KubeletNewer { .. } => {
                "upgrade the control plane first: API servers before kubelets".to_owned()
            }
            VersionError::KubeletTooOld { .. } => {
                "upgrade the kubelets of the old nodes before moving the control plane further"
                    .to_owned()
            }
            VersionError::SkipsMinor { from, .. } => format!(
                "deploy a bundle of {}.{} first, then the next one",
                from.major,
                from.minor + 1
            ),
            VersionError::Downgrade { .. } => {
                "deploy a bundle of the running version or a newer one".to_owned()
            }
            VersionError::ApiServerSkew { .. } | VersionError::ControllerSkew { .. } => {
                "finish the rolling upgrade of the control plane one node at a time".to_owned()
            }
        }
    }
}

/// Inputs that cannot produce a valid configuration.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InputError {
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("the cluster has no control-plane node")]
    NoControlPlane,
    #[error("node {node} is not a control-plane node")]
    NotControlPlane { node: String },
    #[error("no etcd endpoint given for the API servers")]
    NoEtcdEndpoint,
    #[error("the API server VIP {vip} is the address of node {node}")]
    VipIsNodeAddress { vip: IpAddr, node: String },
    #[error("the API server VIP {vip} is not in the address family of node {node} ({ip})")]
    VipFamily {
        vip: IpAddr,
        node: String,
        ip: IpAddr,
    },
    #[error("node {node} has no network interface named for keepalived")]
    NoInterface { node: String },
    #[error("the services network {network} has no address for the cluster DNS service")]
    ServicesTooSmall { network: String },
    #[error("the pods network {network} is IPv6; Calico is set up for IPv4 pods only")]
    CalicoIpv6Pods { network: IpNet },
    #[error("no workload-plane network is IPv4: Calico finds no node address for pod traffic")]
    CalicoNoIpv4WorkloadPlane,
    #[error(
        "a workload-plane MTU of {workload_mtu} less {overhead} bytes of encapsulation leaves pods less than {minimum}"
    )]
    CalicoMtuTooSmall {
        workload_mtu: u32,
        overhead: u32,
        minimum: u32,
    },
    #[error("the Calico manifest cannot be read: {problem}")]
    CalicoManifest { problem: String },
    #[error("the Calico manifest has no {object}, which metalk8s adjusts")]
    CalicoObjectMissing { object: String },
    #[error("the Calico manifest's {object} has no {field}, which metalk8s adjusts")]
    CalicoFieldMissing { object: String, field: String },
    #[error("the Calico manifest's {object} names image {image:?}, not REGISTRY/REPOSITORY:TAG")]
    CalicoImage { object: String, image: String },
}

impl InputError {
    /// What the operator can do about it, where this crate knows better than its caller.
    pub fn hint(&self) -> Option<String> {
        match self {
            InputError::Version(version) => Some(version.hint()),
            InputError::CalicoIpv6Pods { .. } => {
                Some("set `networks.pods` to an IPv4 range, e.g. 10.233.0.0/16".to_owned())
            }
            InputError::CalicoNoIpv4WorkloadPlane => Some(
                "add the nodes' IPv4 workload-plane network to `networks.workloadPlane`".to_owned(),
            ),
            InputError::CalicoMtuTooSmall { .. } => Some(
                "raise the MTU of the nodes' workload-plane interfaces, or choose a lighter \
                 `networks.encapsulation` (ipip) or no `networks.encryption`"
                    .to_owned(),
            ),
            InputError::CalicoManifest { .. }
            | InputError::CalicoObjectMissing { .. }
            | InputError::CalicoFieldMissing { .. }
            | InputError::CalicoImage { .. } => Some(
                "the bundle carries a Calico release metalk8s does not know how to adjust; \
                 use a bundle built from a spec shipped with this metalk8s (bundles/)"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}
