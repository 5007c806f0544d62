//! The store answering the controller. The controller does not hold the PKI: it sends a
//! [`PkiRequest`] to `metalk8s agent pki` on the bootstrap node, which runs [`answer`]
//! against the store there and returns, in a [`PkiResponse`], what it did and the files
//! each node must hold. The deploy phases place those files; `certs renew` asks for a
//! renewal first.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use metalk8s_model::inventory::Inventory;
use metalk8s_model::plan::NodeFile;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::cluster::{ClusterAddresses, cluster_certificates};
use crate::error::PkiError;
use crate::issue::IssueOptions;
use crate::store::{PRIVATE_FILE_MODE, PkiStore, RenewScope, Renewal, ReportEntry};

/// Where the bootstrap node keeps the cluster's key store.
pub const STORE_DIR: &str = "/var/lib/metalk8s/pki";

/// Where a node's Kubernetes files live (kubeadm's directory).
pub const NODE_KUBERNETES_DIR: &str = "/etc/kubernetes";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PkiRequest {
    pub inventory: Inventory,
    pub addresses: ClusterAddresses,
    pub action: PkiAction,
    /// Work on a copy of the store, so that nothing is written: what would be issued is
    /// reported and its files returned all the same.
    #[serde(default)]
    pub dry_run: bool,
    /// Lifetime of newly issued leaf certificates, in seconds (the default otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_validity_seconds: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum PkiAction {
    /// Create what is missing, re-issue what no longer matches the inventory.
    Ensure,
    /// [`PkiAction::Ensure`], then renew every leaf certificate.
    RenewAll,
    /// [`PkiAction::Ensure`], then renew the leaves expired or expiring within the time.
    RenewExpiring { within_seconds: i64 },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PkiResponse {
    /// What `ensure` did to every CA, key and certificate.
    pub entries: Vec<ReportEntry>,
    pub renewals: Vec<Renewal>,
    /// By node: every file it holds under /etc/kubernetes, with its content.
    pub files: BTreeMap<String, Vec<NodeFile>>,
}

/// Carries out `request` on the store at `root`.
pub fn answer(
    root: &Path,
    request: &PkiRequest,
    now: OffsetDateTime,
) -> Result<PkiResponse, PkiError> {
    if request.dry_run {
        let scratch = scratch_copy(root)?;
        let answered = answer_in(&scratch, request, now);
        let _ = fs::remove_dir_all(&scratch);
        return answered;
    }
    answer_in(root, request, now)
}

fn answer_in(
    root: &Path,
    request: &PkiRequest,
    now: OffsetDateTime,
) -> Result<PkiResponse, PkiError> {
    let mut options = IssueOptions::default();
    if let Some(seconds) = request.leaf_validity_seconds {
        options.leaf_validity = Duration::seconds(seconds);
    }
    let store = PkiStore::new(root, options);
    let nodes = cluster_certificates(&request.inventory, &request.addresses)?;
    let specs: Vec<_> = nodes
        .iter()
        .flat_map(|node| node.certificates.iter().cloned())
        .collect();
    let entries = store.ensure(&specs, now)?.entries;
    let mut renewals = match request.action {
        PkiAction::Ensure => Vec::new(),
        PkiAction::RenewAll => store.renew_expiring(&specs, now, RenewScope::All)?,
        PkiAction::RenewExpiring { within_seconds } => store.renew_expiring(
            &specs,
            now,
            RenewScope::ExpiringWithin(Duration::seconds(within_seconds)),
        )?,
    };
    let mut files = BTreeMap::new();
    for node in &nodes {
        let placements = store.placements(node);
        for renewal in renewals.iter_mut().filter(|r| r.node == node.node) {
            renewal.node_files = placements
                .iter()
                .filter(|placement| placement.source == renewal.path)
                .map(|placement| node_path(&placement.target))
                .collect();
        }
        let placed = placements
            .into_iter()
            .map(|placement| {
                let content =
                    fs::read_to_string(&placement.source).map_err(|source| PkiError::Read {
                        path: placement.source.clone(),
                        source,
                    })?;
                Ok(NodeFile {
                    path: node_path(&placement.target),
                    content,
                    mode: placement.mode,
                    private: placement.mode == PRIVATE_FILE_MODE,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        files.insert(node.node.clone(), placed);
    }
    Ok(PkiResponse {
        entries,
        renewals,
        files,
    })
}

/// Where a file placed under /etc/kubernetes lands on the node.
fn node_path(target: &Path) -> String {
    Path::new(NODE_KUBERNETES_DIR)
        .join(target)
        .to_string_lossy()
        .into_owned()
}

/// A private copy of the store beside it (same filesystem, same permissions), for a dry
/// run; an absent store gives an empty directory.
fn scratch_copy(root: &Path) -> Result<PathBuf, PkiError> {
    let name = format!(
        ".{}-dry-run-{}",
        root.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pki".to_owned()),
        std::process::id()
    );
    let scratch = root.with_file_name(name);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PkiError::Write { path, source }
    };
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    }
    if let Some(parent) = scratch.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    copy_tree(root, &scratch).map_err(io(root))?;
    Ok(scratch)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o700))?;
    if !from.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: PkiAction, dry_run: bool) -> PkiRequest {
        let inventory = metalk8s_inventory::parse(
            "three-nodes-storage.yaml",
            include_str!("../../metalk8s-inventory/tests/fixtures/valid/three-nodes-storage.yaml"),
        )
        .expect("the fixture is valid");
        let addresses = ClusterAddresses::declared(&inventory);
        PkiRequest {
            inventory,
            addresses,
            action,
            dry_run,
            leaf_validity_seconds: None,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn ensure_returns_every_nodes_files_and_is_then_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pki");
        let first = answer(&root, &request(PkiAction::Ensure, false), now()).unwrap();
        assert!(
            first
                .entries
                .iter()
                .any(|e| e.outcome != crate::Outcome::Unchanged)
        );
        let etcd_key = first
            .files
            .values()
            .flatten()
            .find(|file| file.path == "/etc/kubernetes/pki/etcd/server.key");
        let etcd_key = etcd_key.expect("an etcd node gets its server key");
        assert!(etcd_key.private && etcd_key.mode == 0o600);
        assert!(etcd_key.content.contains("PRIVATE KEY"));
        let second = answer(&root, &request(PkiAction::Ensure, false), now()).unwrap();
        assert!(
            second
                .entries
                .iter()
                .all(|e| e.outcome == crate::Outcome::Unchanged)
        );
        assert_eq!(first.files, second.files);
    }

    #[test]
    fn a_dry_run_writes_nothing_yet_returns_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pki");
        let answered = answer(&root, &request(PkiAction::Ensure, true), now()).unwrap();
        assert!(!answered.files.is_empty());
        assert!(!root.join("ca.key").exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "scratch removed"
        );
    }

    #[test]
    fn renew_all_reissues_every_leaf_with_new_keys() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pki");
        let before = answer(&root, &request(PkiAction::Ensure, false), now()).unwrap();
        let later = now() + Duration::days(1);
        let renewed = answer(&root, &request(PkiAction::RenewAll, false), later).unwrap();
        assert!(!renewed.renewals.is_empty());
        let key = |response: &PkiResponse| {
            response
                .files
                .values()
                .flatten()
                .find(|f| f.path.ends_with("etcd/peer.key"))
                .unwrap()
                .content
                .clone()
        };
        assert_ne!(key(&before), key(&renewed));
        let ca = |response: &PkiResponse| {
            response
                .files
                .values()
                .flatten()
                .find(|f| f.path.ends_with("etcd/ca.crt"))
                .unwrap()
                .content
                .clone()
        };
        assert_eq!(ca(&before), ca(&renewed), "CAs are never renewed");
        // Each renewal names where its certificate lands on its node.
        for renewal in &renewed.renewals {
            assert!(!renewal.node_files.is_empty(), "{renewal:?}");
            for path in &renewal.node_files {
                assert!(
                    renewed.files[&renewal.node].iter().any(|f| &f.path == path),
                    "{path} is not one of {}'s files",
                    renewal.node
                );
            }
        }
        let peer = renewed
            .renewals
            .iter()
            .find(|r| r.name == "etcd-peer")
            .unwrap();
        assert_eq!(peer.node_files, ["/etc/kubernetes/pki/etcd/peer.crt"]);
    }

    #[test]
    fn requests_and_responses_survive_json() {
        let request = request(
            PkiAction::RenewExpiring {
                within_seconds: 86_400,
            },
            false,
        );
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(serde_json::from_str::<PkiRequest>(&text).unwrap(), request);
        let dir = tempfile::tempdir().unwrap();
        let response = answer(&dir.path().join("pki"), &request, now()).unwrap();
        let text = serde_json::to_string(&response).unwrap();
        assert_eq!(
            serde_json::from_str::<PkiResponse>(&text).unwrap(),
            response
        );
    }
}
