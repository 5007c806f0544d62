//! Real labs on the local docker: nodes boot systemd, answer over SSH with the lab's key
//! and known_hosts, see their spare disks, and leave nothing behind after `down`.
//!
//! These need root and a running docker daemon (CI has both); without them they fail
//! with the lab's own error saying what is missing, rather than passing silently.

use std::path::Path;
use std::process::Command;

use metalk8s_lab::{LabSpec, down, inventory_path, ssh_command, status, up};
use metalk8s_model::Inventory;
use metalk8s_model::inventory::Role;

/// Removes the lab however the test ends.
struct LabGuard(String);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(error) = down(&self.0) {
            eprintln!("could not remove lab {}: {error:?}", self.0);
        }
    }
}

/// A lab name no other test process uses at the same time.
fn lab_name(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

fn print_progress(message: &str) {
    eprintln!("lab: {message}");
}

/// Runs `command` on `node` over real SSH and returns its stdout.
fn on_node(lab: &str, node: &str, command: &str) -> String {
    let output = ssh_command(lab, node)
        .expect("ssh command")
        .arg(command)
        .output()
        .expect("run ssh");
    assert!(
        output.status.success(),
        "`{command}` on {node} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(output.status.success(), "docker {args:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Fails the test if anything labelled for `lab`, or any loop device on its files, remains.
fn assert_nothing_left(lab: &str, dir: &Path) {
    let filter = format!("label=metalk8s.lab={lab}");
    assert_eq!(
        docker_lines(&["ps", "-aq", "--filter", &filter]),
        Vec::<String>::new()
    );
    assert_eq!(
        docker_lines(&["network", "ls", "-q", "--filter", &filter]),
        Vec::<String>::new()
    );
    assert_eq!(
        docker_lines(&["volume", "ls", "-q", "--filter", &filter]),
        Vec::<String>::new()
    );
    let loops = Command::new("losetup")
        .args(["--list", "--noheadings", "-O", "BACK-FILE"])
        .output()
        .expect("losetup");
    let loops = String::from_utf8_lossy(&loops.stdout);
    assert!(
        !loops
            .lines()
            .any(|file| file.trim().starts_with(&dir.display().to_string())),
        "loop devices of {lab} remain:\n{loops}"
    );
    assert!(!dir.exists(), "{} remains", dir.display());
}

#[test]
fn two_node_lab_answers_over_ssh_with_disks_and_goes_away() {
    let name = lab_name("two");
    let _guard = LabGuard(name.clone());
    let info = up(&LabSpec::new(&name, 2), &print_progress).expect("lab up");

    for node in ["node1", "node2"] {
        assert_eq!(on_node(&name, node, "hostname"), node);
        assert_eq!(
            on_node(
                &name,
                node,
                "test -b /dev/vdb && test -b /dev/vdc && echo disks"
            ),
            "disks"
        );
        // Kernel parameters are writable, as on a real server (docker mounts them read-only).
        assert_eq!(
            on_node(
                &name,
                node,
                "sysctl -w net.ipv4.ip_forward=1 >/dev/null && sysctl -n net.ipv4.ip_forward"
            ),
            "1"
        );
        // containerd needs its own filesystem, not the node's overlay root.
        assert_eq!(
            on_node(&name, node, "mountpoint /var/lib/containerd"),
            "/var/lib/containerd is a mountpoint"
        );
    }
    // A spare disk is a usable block device, as on a real server.
    assert_eq!(
        on_node(
            &name,
            "node2",
            "mkfs.ext4 -q /dev/vdb && blkid -o value -s TYPE /dev/vdb"
        ),
        "ext4"
    );

    let path = inventory_path(&name).expect("inventory path");
    let inventory: Inventory =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("read inventory"))
            .expect("inventory parses");
    assert_eq!(inventory.name, name);
    assert_eq!(inventory.networks.control_plane, [info.subnet.into()]);
    let roles: Vec<(&str, &[Role])> = inventory
        .nodes
        .iter()
        .map(|node| (node.name.as_str(), node.roles.as_slice()))
        .collect();
    assert_eq!(
        roles,
        [
            (
                "node1",
                &[Role::Bootstrap, Role::Etcd, Role::ControlPlane][..]
            ),
            ("node2", &[Role::Worker][..]),
        ]
    );
    assert_eq!(inventory.nodes[1].address, info.nodes[1].ip.to_string());
    assert_eq!(inventory.nodes[1].storage.volumes.len(), 2);

    let lab_status = status(&name).expect("status");
    for node in &lab_status.nodes {
        assert_eq!(node.container_state.as_deref(), Some("running"), "{node:?}");
        assert!(
            matches!(node.systemd_state.as_deref(), Some("running" | "degraded")),
            "{node:?}"
        );
    }

    down(&name).expect("lab down");
    assert_nothing_left(&name, &info.dir);
    down(&name).expect("down is idempotent");
}

#[test]
fn up_replaces_the_leftovers_of_a_lost_lab() {
    let name = lab_name("leftover");
    let _guard = LabGuard(name.clone());
    let first = up(&LabSpec::new(&name, 1), &print_progress).expect("first lab up");
    // As if the host crashed: the containers stop and the state file is lost, while the
    // network, volumes and loop devices remain.
    docker_lines(&["stop", "--time", "0", &first.nodes[0].container]);
    std::fs::remove_file(first.dir.join("state.json")).expect("remove state");

    let second = up(&LabSpec::new(&name, 1), &print_progress).expect("second lab up");
    assert_eq!(on_node(&name, "node1", "hostname"), "node1");
    assert_eq!(
        status(&name).expect("status").nodes[0]
            .container_state
            .as_deref(),
        Some("running")
    );

    std::fs::remove_file(second.dir.join("state.json")).expect("remove state");
    down(&name).expect("down without state");
    assert_nothing_left(&name, &second.dir);
}
