//! The bootstrap node's repository server (DESIGN.md, "Offline bundle"): it serves a
//! verified offline bundle directory (layout in `metalk8s-bundle`) over HTTPS with a
//! certificate from the cluster CA, as
//!
//! - a read-only OCI distribution registry under `/v2/` ([`registry`]), one repository per
//!   OCI image layout under `images/`, that containerd on every node uses as its mirror.
//!   Every blob and manifest is checked against its digest before it is served
//!   ([`images`] explains when);
//! - a signed APT repository under `/apt/` ([`apt`]): indexes generated at startup, in
//!   memory, from `debs/*.deb`, `InRelease` signed with the cluster's APT key
//!   ([`AptSigningKey`]), whose public keyring the nodes trust with `signed-by=`;
//! - the bundle's binaries under `/files/<name>` ([`binaries`]), each checked against the
//!   manifest's sha256 before it is served, that the nodes fetch (kubeadm, kubelet…)
//!   with [`client::fetch_file`].
//!
//! [`serve`] is what `metalk8s repo serve` runs; [`start`] runs the same server in the
//! background (the tests use it on `127.0.0.1:0`). docs/repository.md describes the URLs,
//! keys and errors for operators.

pub mod apt;
pub mod binaries;
pub mod client;
pub mod deb;
mod files;
pub mod images;
pub mod range;
pub mod reference;
pub mod registry;
mod server;
mod signing;
pub mod verify;

pub use apt::{AptError, AptIndexes, AptRepository, PoolPackage};
pub use binaries::{Binaries, FILES_PREFIX};
pub use images::{FetchError, ImageError, ImageStore};
pub use reference::Digest;
pub use server::{
    APT_PREFIX, LoadError, Repository, RunningServer, ServeConfig, ServeError, Transport, router,
    serve, start, tls_config,
};
pub use signing::{AptSigningKey, DEFAULT_USER_ID, KeyError, SECRET_KEY_MODE};
