//! The Kubernetes layer's pure groundwork: everything the `kubernetes` deploy phase places
//! on the nodes or in the cluster, generated from plain inputs with no I/O.
//!
//! In the picture of DESIGN.md this sits beside the planner: the planner turns the
//! inventory, the facts and the bundle into a [`cluster::Cluster`] and asks this crate for
//! the files (kubeadm's `--config`, its per-node patches, the kubelet's unit and drop-in,
//! kube-proxy's configuration, haproxy's and keepalived's configurations) and the objects
//! (RBAC, kube-proxy's DaemonSet, Node labels and taints, CSR approvals, Calico's objects
//! from its upstream manifest) to place. The
//! [`version`] module decides which Kubernetes versions are deployable and which upgrades
//! upstream's skew policy allows. docs/kubernetes.md explains every choice.
//!
//! Every configuration document is checked by the tests against JSON Schemas written from
//! the upstream Go types (`tests/schemas/`), and every object against the Kubernetes API
//! schemas with `kubernetes-validate --strict`.

pub mod apiserver_proxy;
pub mod audit;
pub mod calico;
pub mod cluster;
pub mod coredns;
pub mod csr;
pub mod error;
pub mod keepalived;
pub mod kube_proxy;
pub mod kubeadm;
pub mod kubelet;
pub mod objects;
pub mod rbac;
pub mod reservation;
pub mod roles;
pub mod version;
pub mod yaml;

pub use cluster::{Cluster, KeyAlgorithm, Node, Oidc};
pub use error::{InputError, VersionError};
pub use version::{KubernetesVersion, SupportedMinor};
