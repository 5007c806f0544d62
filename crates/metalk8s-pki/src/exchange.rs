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

use crate::cluster::{ClusterAddresses, cluster_certificates, operator_kubeconfig};
use crate::error::PkiError;
use crate::issue::IssueOptions;
use crate::kubeconfig::Kubeconfig;
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
    /// Issue an admin kubeconfig for the operator ([`operator_kubeconfig`]) and nothing
    /// else: the store is only read, never created or completed, so that asking before
    /// the first deploy answers "no cluster yet" rather than making a CA no node trusts.
    AdminKubeconfig,
}

impl PkiAction {
    /// Whether the answer carries every node's files (and so, in the binary, the APT key
    /// handed out with them).
    pub fn places_node_files(self) -> bool {
        !matches!(self, PkiAction::AdminKubeconfig)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PkiResponse {
    /// What `ensure` did to every CA, key and certificate.
    pub entries: Vec<ReportEntry>,
    pub renewals: Vec<Renewal>,
    /// By node: every file it holds under /etc/kubernetes, with its content.
    pub files: BTreeMap<String, Vec<NodeFile>>,
    /// The answer to [`PkiAction::AdminKubeconfig`]: `None` when the store holds no
    /// Kubernetes CA yet. Its `Debug` never shows the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_kubeconfig: Option<Kubeconfig>,
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
    if request.action == PkiAction::AdminKubeconfig {
        let spec = operator_kubeconfig(&request.inventory, &request.addresses)?;
        return Ok(PkiResponse {
            admin_kubeconfig: store.issue_unstored_kubeconfig(&spec, now)?,
            ..PkiResponse::default()
        });
    }
    let nodes = cluster_certificates(&request.inventory, &request.addresses)?;
    let specs: Vec<_> = nodes
        .iter()
        .flat_map(|node| node.certificates.iter().cloned())
        .collect();
    let entries = store.ensure(&specs, now)?.entries;
    let mut renewals = match request.action {
        PkiAction::Ensure | PkiAction::AdminKubeconfig => Vec::new(),
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
        admin_kubeconfig: None,
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

    const THREE_NODES: &str =
        include_str!("../../metalk8s-inventory/tests/fixtures/valid/three-nodes-storage.yaml");

    fn request(action: PkiAction, dry_run: bool) -> PkiRequest {
        request_for(THREE_NODES, action, dry_run)
    }

    /// The three-node fixture with `networks.apiServerVIP`.
    fn with_vip(vip: &str) -> String {
        THREE_NODES.replacen(
            "  workloadPlane:\n",
            &format!("  apiServerVIP: {vip}\n  workloadPlane:\n"),
            1,
        )
    }

    fn request_for(text: &str, action: PkiAction, dry_run: bool) -> PkiRequest {
        let inventory =
            metalk8s_inventory::parse("three-nodes-storage.yaml", text).expect("a valid fixture");
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

    fn file<'a>(response: &'a PkiResponse, node: &str, path: &str) -> &'a str {
        &response.files[node]
            .iter()
            .find(|file| file.path == path)
            .unwrap_or_else(|| panic!("{node} has no {path}"))
            .content
    }

    #[test]
    fn the_inventorys_vip_is_named_by_every_api_server_certificate_and_admin_conf() {
        let dir = tempfile::tempdir().unwrap();
        let with = request_for(&with_vip("10.10.0.100"), PkiAction::Ensure, false);
        let answered = answer(&dir.path().join("pki"), &with, now()).unwrap();
        let vip: std::net::IpAddr = "10.10.0.100".parse().unwrap();
        for node in ["node-1", "node-2", "node-3"] {
            let apiserver = file(&answered, node, "/etc/kubernetes/pki/apiserver.crt");
            let cert = crate::CertInfo::from_pem(apiserver).unwrap();
            assert!(
                cert.ip_addresses.contains(&vip),
                "{node}: {:?}",
                cert.ip_addresses
            );
            let admin =
                Kubeconfig::from_yaml(file(&answered, node, "/etc/kubernetes/admin.conf")).unwrap();
            assert_eq!(admin.server(), Some("https://10.10.0.100:6443"));
        }
        // Without the VIP, no certificate names it.
        let without = answer(
            &tempfile::tempdir().unwrap().path().join("pki"),
            &request(PkiAction::Ensure, false),
            now(),
        )
        .unwrap();
        let apiserver = file(&without, "node-1", "/etc/kubernetes/pki/apiserver.crt");
        assert!(
            !crate::CertInfo::from_pem(apiserver)
                .unwrap()
                .ip_addresses
                .contains(&vip)
        );
    }

    #[test]
    fn an_admin_kubeconfig_before_any_deploy_is_none_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pki");
        let answered = answer(&root, &request(PkiAction::AdminKubeconfig, false), now()).unwrap();
        assert_eq!(answered, PkiResponse::default());
        assert!(!root.exists(), "the store must not be created");
    }

    #[test]
    fn an_admin_kubeconfig_is_a_new_cluster_admin_signed_by_the_cluster_ca_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pki");
        let ensured = answer(&root, &request(PkiAction::Ensure, false), now()).unwrap();
        let listing = |root: &Path| {
            let mut paths: Vec<_> = walk(root);
            paths.sort();
            paths
        };
        let before = listing(&root);
        let answered = answer(&root, &request(PkiAction::AdminKubeconfig, false), now()).unwrap();
        assert_eq!(listing(&root), before, "nothing written to the store");
        assert!(answered.files.is_empty() && answered.entries.is_empty());
        let kubeconfig = answered.admin_kubeconfig.expect("a kubeconfig");
        // No VIP: the first control-plane node's own API server.
        assert_eq!(kubeconfig.server(), Some("https://10.10.0.11:6443"));
        assert_eq!(kubeconfig.clusters[0].name, "lab");
        let ca_pem = fs::read_to_string(root.join("ca.crt")).unwrap();
        assert_eq!(kubeconfig.certificate_authority_pem().unwrap(), ca_pem);
        let cert =
            crate::CertInfo::from_pem(&kubeconfig.client_certificate_pem().unwrap()).unwrap();
        assert_eq!(cert.common_name.as_deref(), Some("kubernetes-admin"));
        assert_eq!(cert.organizations, [crate::CLUSTER_ADMINS_GROUP]);
        assert_eq!(cert.extended_key_usages, ["clientAuth"]);
        assert!(cert.is_signed_by(&crate::CertInfo::from_pem(&ca_pem).unwrap()));
        let key = kubeconfig.client_key_pem().unwrap();
        assert_eq!(
            crate::public_key_of(&key).unwrap(),
            cert.public_key_der(),
            "the key is the certificate's"
        );
        // Its own key: not one of the nodes' admin.conf keys.
        let node_admin =
            Kubeconfig::from_yaml(file(&ensured, "node-1", "/etc/kubernetes/admin.conf")).unwrap();
        assert_ne!(node_admin.client_key_pem().unwrap(), key);
        assert!(!format!("{kubeconfig:?}").contains(&kubeconfig.users[0].user.client_key_data));
    }

    #[test]
    fn an_admin_kubeconfig_points_at_the_vip_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pki");
        let text = with_vip("10.10.0.100");
        answer(&root, &request_for(&text, PkiAction::Ensure, false), now()).unwrap();
        let answered = answer(
            &root,
            &request_for(&text, PkiAction::AdminKubeconfig, false),
            now(),
        )
        .unwrap();
        let kubeconfig = answered.admin_kubeconfig.unwrap();
        assert_eq!(kubeconfig.server(), Some("https://10.10.0.100:6443"));
    }

    fn walk(root: &Path) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for entry in fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                paths.extend(walk(&path));
            }
            paths.push(path);
        }
        paths
    }
}
