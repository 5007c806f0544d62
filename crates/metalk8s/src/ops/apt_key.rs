//! The cluster's APT signing key, on the bootstrap node beside the PKI store: made once
//! (metalk8s-repo's [`AptSigningKey`]) when `agent pki` answers, and handed out with the
//! certificates as node files: the secret key to the bootstrap node, which signs the
//! repository's `InRelease`, and its public part to every node, which trusts it with
//! `Signed-By`. Kept out of metalk8s-pki so that the PKI needs no OpenPGP.

use std::collections::BTreeMap;
use std::path::Path;

use metalk8s_model::inventory::{Inventory, Role};
use metalk8s_model::plan::NodeFile;
use metalk8s_model::repository as repo;
use metalk8s_repo::{AptSigningKey, SECRET_KEY_MODE};

use super::OpsError;

/// Where the key lives, relative to the PKI store (a directory only root reads).
pub const STORE_PATH: &str = "repository/apt-signing.key";

/// Adds the APT key's files to `files` (by node): loads the key from the store at `store`,
/// or makes it there. A dry run never writes: without a key it plans with a throwaway one.
pub fn add_node_files(
    store: &Path,
    inventory: &Inventory,
    dry_run: bool,
    files: &mut BTreeMap<String, Vec<NodeFile>>,
) -> Result<(), OpsError> {
    let path = store.join(STORE_PATH);
    let scratch = tempfile::tempdir().map_err(|error| OpsError::local(error.to_string()))?;
    let (key, secret) = if dry_run && !path.exists() {
        let key = AptSigningKey::generate(metalk8s_repo::DEFAULT_USER_ID)?;
        let throwaway = scratch.path().join("apt-signing.key");
        key.save(&throwaway)?;
        (key, read(&throwaway)?)
    } else {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .and_then(|()| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|error| {
                    OpsError::local(format!("cannot create {}: {error}", parent.display()))
                })?;
        }
        let (key, _generated) = AptSigningKey::load_or_generate(&path)?;
        (key, read(&path)?)
    };
    // Node files are text: the keyring goes armored, as `*.asc`.
    let keyring = key.armored_public_key()?;
    for node in &inventory.nodes {
        let node_files = files.entry(node.name.clone()).or_default();
        if node.has_role(Role::Bootstrap) {
            node_files.push(NodeFile {
                path: repo::APT_KEY_FILE.to_owned(),
                content: secret.clone(),
                mode: SECRET_KEY_MODE,
                private: true,
            });
        }
        node_files.push(NodeFile {
            path: repo::KEYRING_FILE.to_owned(),
            content: keyring.clone(),
            mode: 0o644,
            private: false,
        });
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, OpsError> {
    std::fs::read_to_string(path)
        .map_err(|error| OpsError::local(format!("cannot read {}: {error}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        metalk8s_inventory::parse(
            "three-nodes-storage.yaml",
            include_str!(
                "../../../metalk8s-inventory/tests/fixtures/valid/three-nodes-storage.yaml"
            ),
        )
        .unwrap()
    }

    #[test]
    fn the_key_is_made_once_its_secret_goes_to_the_bootstrap_node_only() {
        let store = tempfile::tempdir().unwrap();
        let inventory = inventory();
        let mut first = BTreeMap::new();
        add_node_files(store.path(), &inventory, false, &mut first).unwrap();
        let mut second = BTreeMap::new();
        add_node_files(store.path(), &inventory, false, &mut second).unwrap();
        assert_eq!(first, second, "the same key on every run");
        let bootstrap = inventory.nodes_with(Role::Bootstrap).next().unwrap();
        for (node, files) in &first {
            let secret = files.iter().find(|f| f.path == repo::APT_KEY_FILE);
            assert_eq!(secret.is_some(), *node == bootstrap.name, "{node}");
            if let Some(secret) = secret {
                assert!(secret.private && secret.mode == 0o600);
                assert!(secret.content.contains("PGP PRIVATE KEY BLOCK"));
            }
            let keyring = files.iter().find(|f| f.path == repo::KEYRING_FILE).unwrap();
            assert!(
                keyring
                    .content
                    .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
            );
            assert!(!keyring.private);
        }
    }

    #[test]
    fn a_dry_run_writes_no_key() {
        let store = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        add_node_files(store.path(), &inventory(), true, &mut files).unwrap();
        assert!(!store.path().join(STORE_PATH).exists());
        assert!(files.values().all(|f| !f.is_empty()));
    }
}
