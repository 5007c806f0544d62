//! The work behind commands that combine several crates (connect, gather, plan, execute).

pub mod apt_key;
pub mod bundle;
pub mod certs;
pub mod deploy;
pub mod error;
pub mod etcd;
pub mod fetch;
pub mod gates;
pub mod inputs;
pub mod kubeconfig;
pub mod pki;
pub mod session;

pub use error::OpsError;
