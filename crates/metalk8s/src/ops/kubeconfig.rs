//! `metalk8s kubeconfig`: an admin kubeconfig for the operator. The key store on the
//! bootstrap node issues it (`agent pki` with [`PkiAction::AdminKubeconfig`]: a new key
//! and certificate in `kubeadm:cluster-admins`, stored nowhere); the server it names is
//! the inventory's API server VIP, else the first control-plane node
//! ([`ClusterAddresses::client_server`]). Only the bootstrap node is connected to, and the
//! first control-plane node too when its address must be read from its facts.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use metalk8s_engine::agent::AgentBinary;
use metalk8s_model::inventory::{Inventory, Role};
use metalk8s_model::report::error_chain;
use metalk8s_pki::kubeconfig::Kubeconfig;
use metalk8s_pki::{PkiAction, SpecError};
use metalk8s_precheck::GatherRequest;
use metalk8s_transport::ConnectOptions;

use super::OpsError;

/// The mode of a written kubeconfig: it holds a cluster admin's private key.
const FILE_MODE: u32 = 0o600;

/// Asks the bootstrap node's key store for a new admin kubeconfig.
pub async fn issue(
    inventory: &Inventory,
    options: &ConnectOptions,
) -> Result<Kubeconfig, OpsError> {
    let bootstrap = inventory
        .bootstrap()
        .ok_or_else(|| OpsError::invalid("the inventory has no bootstrap node"))?;
    // The first control-plane node's address comes from its facts when the inventory
    // names neither a VIP nor its `controlPlaneIP`.
    let first_control_plane = inventory.nodes_with(Role::ControlPlane).next();
    let read_facts_of = first_control_plane
        .filter(|node| {
            inventory.networks.api_server_vip.is_none() && node.control_plane_ip.is_none()
        })
        .map(|node| node.name.clone());
    let mut wanted = inventory.clone();
    wanted
        .nodes
        .retain(|node| node.name == bootstrap.name || Some(&node.name) == read_facts_of.as_ref());
    let (connections, binary) = futures::join!(
        metalk8s_transport::connect_all(&wanted, options),
        tokio::task::spawn_blocking(AgentBinary::current)
    );
    let mut hosts = BTreeMap::new();
    for (node, connection) in connections {
        let host = connection.map_err(|error| OpsError::Unusable {
            message: format!("cannot connect to {node}: {}", error_chain(&error)),
            help: Some(
                error
                    .hint()
                    .unwrap_or("check that the node is up and reachable over SSH")
                    .to_owned(),
            ),
        })?;
        hosts.insert(node, host);
    }
    let mut facts = BTreeMap::new();
    if let Some(node) = read_facts_of {
        let gathered =
            metalk8s_precheck::gather(hosts[&node].as_ref(), &GatherRequest::for_planning())
                .await
                .map_err(|error| {
                    OpsError::unusable(format!(
                        "cannot read the facts of {node}, to find its control-plane IP: {}",
                        error_chain(&error)
                    ))
                })?;
        facts.insert(node, gathered);
    }
    // Checked here, where the failure can say what to do, before the store is asked.
    super::pki::addresses(inventory, &facts)
        .client_server(inventory)
        .map_err(no_server)?;
    let binary = binary
        .map_err(io::Error::other)
        .and_then(|read| read)
        .map_err(|error| {
            OpsError::local(format!(
                "cannot read the metalk8s binary to run it on {}: {error}",
                bootstrap.name
            ))
        })?;
    let response = super::pki::ask(
        inventory,
        &hosts,
        &facts,
        &binary,
        PkiAction::AdminKubeconfig,
        false,
    )
    .await?;
    response.admin_kubeconfig.ok_or_else(|| OpsError::OnNode {
        message: format!(
            "the PKI store on {} ({}) holds no cluster CA yet",
            bootstrap.name,
            metalk8s_pki::STORE_DIR
        ),
        help: Some("run `metalk8s deploy` first: it creates the cluster's PKI".into()),
    })
}

fn no_server(error: SpecError) -> OpsError {
    match error {
        SpecError::NoControlPlane => OpsError::Invalid {
            message: error.to_string(),
            help: Some(
                "give at least one node the `control-plane` role, or set `networks.apiServerVIP`"
                    .into(),
            ),
        },
        SpecError::MissingControlPlaneIp { ref node } => OpsError::Unusable {
            message: error.to_string(),
            help: Some(format!(
                "declare `controlPlaneIP` for {node} in the inventory, or give the node an address inside `networks.controlPlane`"
            )),
        },
        other => OpsError::Addresses(other),
    }
}

/// Why a kubeconfig could not be written to a file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum WriteError {
    #[error("{} exists and is not a kubeconfig", path.display())]
    #[diagnostic(help("pass `--force` to replace it, or choose another `--out` path"))]
    NotAKubeconfig { path: PathBuf },
    #[error("{} is a directory", path.display())]
    #[diagnostic(help("give `--out` a file path, such as {}/admin.conf", path.display()))]
    Directory { path: PathBuf },
    #[error("cannot write {}", path.display())]
    #[diagnostic(help("check that its directory exists and is writable by the current user"))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes `yaml` to `path` with mode 0600: into a new temporary file beside it, synced,
/// then renamed over it, so that a reader (or a crash) sees the old file or the new one,
/// and the key is never readable by others, even for a moment. An existing file is
/// replaced only when it is a kubeconfig (a cluster's earlier one), or when `force`.
pub fn write_file(path: &Path, yaml: &str, force: bool) -> Result<(), WriteError> {
    let io_error = |source| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    if path.is_dir() {
        return Err(WriteError::Directory {
            path: path.to_owned(),
        });
    }
    if !force {
        match fs::read_to_string(path) {
            Ok(text) if Kubeconfig::from_yaml(&text).is_ok() => {}
            Ok(_) => {
                return Err(WriteError::NotAKubeconfig {
                    path: path.to_owned(),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            // Unreadable, or not text: not something to replace without being told.
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(WriteError::NotAKubeconfig {
                    path: path.to_owned(),
                });
            }
            Err(error) => return Err(io_error(error)),
        }
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kubeconfig".to_owned());
    let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = write_new(&temporary, yaml.as_bytes())
        .and_then(|()| fs::rename(&temporary, path))
        .and_then(|()| fs::File::open(directory)?.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(io_error)
}

fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    // The mode given at creation is cut by the umask only, never widened: set it exactly.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_pki::{ClusterAddresses, OffsetDateTime, PkiRequest, answer_request};

    /// A real admin kubeconfig from a fresh store, as the bootstrap node answers.
    fn issued() -> Kubeconfig {
        let store = tempfile::tempdir().unwrap();
        let root = store.path().join("pki");
        let inventory = metalk8s_inventory::parse(
            "three-nodes-storage.yaml",
            include_str!(
                "../../../metalk8s-inventory/tests/fixtures/valid/three-nodes-storage.yaml"
            ),
        )
        .unwrap();
        let now = OffsetDateTime::now_utc();
        let mut request = PkiRequest {
            addresses: ClusterAddresses::declared(&inventory),
            inventory,
            action: PkiAction::Ensure,
            dry_run: false,
            leaf_validity_seconds: None,
        };
        answer_request(&root, &request, now).unwrap();
        request.action = PkiAction::AdminKubeconfig;
        answer_request(&root, &request, now)
            .unwrap()
            .admin_kubeconfig
            .unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_is_private_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        let yaml = issued().to_yaml().unwrap();
        write_file(&path, &yaml, false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), yaml);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(entries(dir.path()), ["admin.conf"]);
    }

    #[test]
    fn an_earlier_kubeconfig_is_replaced_and_a_wider_mode_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        fs::write(&path, issued().to_yaml().unwrap()).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let yaml = issued().to_yaml().unwrap();
        write_file(&path, &yaml, false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), yaml);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn another_file_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = issued().to_yaml().unwrap();
        for (name, content) in [
            ("notes.txt", b"my notes\n".as_slice()),
            ("binary", &[0xff, 0xfe, 0x00][..]),
            ("other.yaml", b"apiVersion: v1\nkind: Pod\n"),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, content).unwrap();
            let error = write_file(&path, &yaml, false).unwrap_err();
            assert!(
                matches!(error, WriteError::NotAKubeconfig { .. }),
                "{name}: {error:?}"
            );
            assert_eq!(fs::read(&path).unwrap(), content, "{name} untouched");
            write_file(&path, &yaml, true).unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), yaml);
            assert_eq!(mode(&path), 0o600);
        }
    }

    #[test]
    fn a_directory_or_a_missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = issued().to_yaml().unwrap();
        let error = write_file(dir.path(), &yaml, true).unwrap_err();
        assert!(matches!(error, WriteError::Directory { .. }));
        let missing = dir.path().join("nowhere/admin.conf");
        let error = write_file(&missing, &yaml, false).unwrap_err();
        assert!(matches!(error, WriteError::Io { .. }));
        assert!(error.to_string().contains("nowhere/admin.conf"), "{error}");
    }

    /// The file is what kubectl reads: Debian's kubectl (installed by
    /// scripts/prerequisites) loads it and finds the server, the user and the CA in it.
    #[test]
    fn kubectl_reads_the_written_file() {
        if std::process::Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "kubectl is missing: scripts/prerequisites installs it"
            );
            eprintln!("kubectl is not installed: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        let kubeconfig = issued();
        write_file(&path, &kubeconfig.to_yaml().unwrap(), false).unwrap();
        let output = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path)
            .args(["config", "view", "--raw", "-o", "json"])
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kubectl: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(seen["current-context"], "kubernetes-admin@lab");
        assert_eq!(
            seen["clusters"][0]["cluster"]["server"],
            "https://10.10.0.11:6443"
        );
        assert_eq!(
            seen["clusters"][0]["cluster"]["certificate-authority-data"],
            kubeconfig.clusters[0]
                .cluster
                .certificate_authority_data
                .as_str()
        );
        assert_eq!(seen["users"][0]["name"], "kubernetes-admin");
        assert_eq!(
            seen["users"][0]["user"]["client-certificate-data"],
            kubeconfig.users[0].user.client_certificate_data.as_str()
        );
        assert_eq!(seen["contexts"][0]["context"]["user"], "kubernetes-admin");
    }
}
