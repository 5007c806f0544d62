//! Paths inside an inventory are relative to the inventory file, not to where metalk8s runs.

use std::path::Path;

const INVENTORY: &str = "\
apiVersion: metalk8s.io/v1alpha1
kind: Inventory
name: paths
networks:
  controlPlane: [10.0.0.0/24]
  workloadPlane: [10.0.0.0/24]
ssh:
  identityFile: keys/id_ed25519
  knownHostsFile: /etc/ssh/ssh_known_hosts
nodes:
  - name: node1
    address: 10.0.0.11
    roles: [bootstrap, etcd, control-plane, worker]
    ssh:
      identityFile: ~/.ssh/node1
  - name: node2
    address: 10.0.0.12
    roles: [worker]
    ssh:
      identityFile: ../other/key
";

#[test]
fn relative_paths_are_resolved_against_the_inventory_directory() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("inventory.yaml");
    std::fs::write(&path, INVENTORY).unwrap();
    let inventory = metalk8s_inventory::load(&path).unwrap();
    let under = |relative: &str| directory.path().join(relative).display().to_string();
    assert_eq!(inventory.ssh.identity_file, Some(under("keys/id_ed25519")));
    assert_eq!(
        inventory.ssh.known_hosts_file.as_deref(),
        Some("/etc/ssh/ssh_known_hosts")
    );
    assert_eq!(
        inventory.nodes[0].ssh.identity_file.as_deref(),
        Some("~/.ssh/node1")
    );
    assert_eq!(
        inventory.nodes[1].ssh.identity_file,
        Some(under("../other/key"))
    );
    assert!(Path::new(inventory.ssh.identity_file.as_deref().unwrap()).is_absolute());
}
