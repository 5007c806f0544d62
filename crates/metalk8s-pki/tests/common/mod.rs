//! Helpers shared by the integration tests: fixture inventories and populated stores.
#![allow(dead_code)] // each test crate uses part of these helpers

use std::path::Path;

use metalk8s_model::Inventory;
use metalk8s_pki::{
    CertSpec, ClusterAddresses, IssueOptions, NodePki, OffsetDateTime, PkiStore,
    cluster_certificates,
};

pub fn inventory(name: &str) -> Inventory {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.yaml"));
    metalk8s_inventory::load(&path)
        .unwrap_or_else(|error| panic!("{} is not valid: {error:?}", path.display()))
}

/// The PKI of the three-node lab, from its declared addresses.
pub fn lab_pki() -> Vec<NodePki> {
    let inventory = inventory("lab-3");
    cluster_certificates(&inventory, &ClusterAddresses::declared(&inventory)).unwrap()
}

pub fn all_specs(pki: &[NodePki]) -> Vec<CertSpec> {
    pki.iter()
        .flat_map(|node| node.certificates.iter().cloned())
        .collect()
}

pub fn spec<'a>(specs: &'a [CertSpec], node: &str, name: &str) -> &'a CertSpec {
    specs
        .iter()
        .find(|spec| spec.node == node && spec.name == name)
        .unwrap_or_else(|| panic!("no {name} for {node}"))
}

/// A fresh store holding the lab's whole PKI, issued at `now`.
pub fn populated_store(
    root: &Path,
    options: IssueOptions,
    now: OffsetDateTime,
) -> (PkiStore, Vec<CertSpec>) {
    let store = PkiStore::new(root.join("pki"), options);
    let specs = all_specs(&lab_pki());
    store.ensure(&specs, now).expect("ensure on an empty store");
    (store, specs)
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
