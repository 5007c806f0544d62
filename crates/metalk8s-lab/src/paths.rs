//! Where a lab keeps its files: one state directory per lab and one shared image cache.

use std::env;
use std::path::{Path, PathBuf};

/// Directory holding one sub-directory per lab: `$METALK8S_LAB_DIR`, by default
/// `/var/lib/metalk8s/labs`.
pub fn labs_dir() -> PathBuf {
    env::var_os("METALK8S_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/metalk8s/labs"))
}

/// Directory caching the node root filesystem and debootstrap's downloads:
/// `$METALK8S_LAB_CACHE`, by default `/var/cache/metalk8s/lab`.
pub fn cache_dir() -> PathBuf {
    env::var_os("METALK8S_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/metalk8s/lab"))
}

/// The files of one lab, all inside its state directory so that removing the directory
/// removes the lab's every trace on the host.
#[derive(Clone, Debug)]
pub(crate) struct LabPaths {
    pub dir: PathBuf,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    pub inventory: PathBuf,
    pub state: PathBuf,
    pub disks: PathBuf,
}

impl LabPaths {
    pub fn new(name: &str) -> LabPaths {
        LabPaths::in_dir(&labs_dir().join(name))
    }

    fn in_dir(dir: &Path) -> LabPaths {
        LabPaths {
            dir: dir.to_owned(),
            identity_file: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            inventory: dir.join("inventory.yaml"),
            state: dir.join("state.json"),
            disks: dir.join("disks"),
        }
    }
}
