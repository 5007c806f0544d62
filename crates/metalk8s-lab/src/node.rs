//! One lab node: its container, spare disks and containerd volume, and waiting for it to
//! boot.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::layout::{self, LABEL};
use crate::paths::LabPaths;
use crate::{LabDisk, LabNode, cmd, disks, docker, ssh};

/// Everything `create` needs to know about the lab the node joins.
pub(crate) struct NodeSetup<'a> {
    pub lab: &'a str,
    pub image: &'a str,
    pub network: &'a str,
    pub paths: &'a LabPaths,
    pub disks_per_node: usize,
    pub disk_size: u64,
}

/// Attaches the node's disks, creates its containerd volume and its (stopped) container
/// with the lab's public key already in place, so sshd accepts the key from its first
/// start.
pub(crate) fn create(
    setup: &NodeSetup<'_>,
    index: usize,
    ip: Ipv4Addr,
) -> Result<LabNode, LabError> {
    let name = layout::node_name(index);
    let container = layout::container_name(setup.lab, index);
    let volume = layout::containerd_volume_name(setup.lab, index);

    let mut node_disks = Vec::new();
    for disk in 0..setup.disks_per_node {
        let device = layout::disk_device(disk);
        let backing_file = setup
            .paths
            .disks
            .join(format!("{name}-{}.img", device.trim_start_matches("/dev/")));
        let loop_device = disks::create_and_attach(&backing_file, setup.disk_size)?;
        node_disks.push(LabDisk {
            device,
            loop_device,
            backing_file,
        });
    }

    docker::create_volume(&volume, setup.lab)?;
    let options = container_options(setup.lab, &name, setup.network, ip, &volume, &node_disks);
    docker::create_container(&container, &options, setup.image, &["/lib/systemd/systemd"])?;
    let public_key = public_key_path(&setup.paths.identity_file);
    docker::copy_into(&container, &public_key, "/root/.ssh/authorized_keys")?;

    Ok(LabNode {
        name,
        container,
        ip,
        workload_ip: None,
        containerd_volume: volume,
        disks: node_disks,
    })
}

pub(crate) fn public_key_path(identity_file: &Path) -> PathBuf {
    identity_file.with_extension("pub")
}

/// The `docker create` options that make a container behave like a small server.
fn container_options(
    lab: &str,
    hostname: &str,
    network: &str,
    ip: Ipv4Addr,
    containerd_volume: &str,
    disks: &[LabDisk],
) -> Vec<String> {
    let mut options: Vec<String> = [
        "--hostname",
        hostname,
        "--label",
        &format!("{LABEL}={lab}"),
        "--label",
        &format!("{LABEL}.node={hostname}"),
        "--network",
        network,
        "--ip",
        &ip.to_string(),
        // systemd needs nearly every capability; `--privileged` is refused by this kernel
        // (one capability it grants is not allowed) so all are added but that one.
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--volume",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        // overlayfs cannot stack on the node's own overlay root: containerd's snapshots
        // need a real directory.
        "--volume",
        &format!("{containerd_volume}:/var/lib/containerd"),
        // What systemd expects to be asked to shut down cleanly.
        "--stop-signal",
        "SIGRTMIN+3",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Lets `modprobe` in a node find the host's modules, where the host has any.
    if Path::new("/lib/modules").is_dir() {
        options.extend([
            "--volume".to_owned(),
            "/lib/modules:/lib/modules:ro".to_owned(),
        ]);
    }
    for disk in disks {
        options.push("--device".to_owned());
        options.push(format!("{}:{}", disk.loop_device.display(), disk.device));
    }
    options
}

/// What a booted node reported.
pub(crate) struct Booted {
    pub host_key: String,
    pub systemd_state: String,
    pub failed_units: Vec<String>,
}

/// Waits until systemd in `container` has finished booting (`running`, or `degraded`
/// when some unit failed) and reads the host key sshd generated on the way.
pub(crate) fn wait_booted(container: &str, timeout: Duration) -> Result<Booted, LabError> {
    let deadline = Instant::now() + timeout;
    let systemd_state = loop {
        // systemctl answers "Failed to connect to bus" until systemd is far enough along;
        // the in-node timeout keeps a hung boot from blocking past the deadline.
        let state = exec_output(
            container,
            &["timeout", "20", "systemctl", "is-system-running", "--wait"],
        );
        if state == "running" || state == "degraded" {
            break state;
        }
        let container_state = docker::container_state(container)?;
        if Instant::now() > deadline || container_state.as_deref() != Some("running") {
            return Err(LabError::Boot {
                container: container.to_owned(),
                seconds: timeout.as_secs(),
                state: match container_state {
                    Some(running) if running == "running" => state,
                    Some(other) => format!("container {other}"),
                    None => "container gone".to_owned(),
                },
            });
        }
        thread::sleep(Duration::from_millis(200));
    };
    let failed_units = exec_output(
        container,
        &[
            "systemctl",
            "list-units",
            "--failed",
            "--plain",
            "--no-legend",
            "--quiet",
        ],
    )
    .lines()
    .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
    .collect();
    let host_key = cmd::run(&mut docker::exec(
        container,
        &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
    ))
    .map_err(LabError::docker(format!("container {container}")))?;
    Ok(Booted {
        host_key,
        systemd_state,
        failed_units,
    })
}

/// stdout of a command in the node whatever its exit status (`systemctl
/// is-system-running` exits non-zero on a perfectly readable `degraded`).
pub(crate) fn exec_output(container: &str, command: &[&str]) -> String {
    docker::exec(container, command)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Waits until the node's sshd lets the lab key in, checking its host key against the
/// lab's known_hosts: the proof that the inventory will work.
pub(crate) fn wait_for_login(
    paths: &LabPaths,
    node: &LabNode,
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut probe = ssh::command(
            &paths.identity_file,
            &paths.known_hosts,
            node.ip,
            &["ConnectTimeout=5"],
        );
        probe.arg("true");
        match cmd::run(&mut probe) {
            Ok(_) => return Ok(()),
            Err(source) if Instant::now() > deadline => {
                return Err(LabError::Ssh {
                    container: node.container.clone(),
                    ip: node.ip.to_string(),
                    seconds: timeout.as_secs(),
                    source,
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_label_the_container_and_pass_disks_in_order() {
        let disks = [
            LabDisk {
                device: "/dev/vdb".into(),
                loop_device: "/dev/loop3".into(),
                backing_file: "/labs/demo/disks/node1-vdb.img".into(),
            },
            LabDisk {
                device: "/dev/vdc".into(),
                loop_device: "/dev/loop4".into(),
                backing_file: "/labs/demo/disks/node1-vdc.img".into(),
            },
        ];
        let options = container_options(
            "demo",
            "node1",
            "metalk8s-lab-demo",
            Ipv4Addr::new(172, 30, 1, 11),
            "metalk8s-lab-demo-node1-containerd",
            &disks,
        );
        let line = options.join(" ");
        assert!(line.contains("--label metalk8s.lab=demo "), "{line}");
        assert!(line.contains("--ip 172.30.1.11 "), "{line}");
        assert!(line.contains("--volume metalk8s-lab-demo-node1-containerd:/var/lib/containerd"));
        assert!(
            line.ends_with("--device /dev/loop3:/dev/vdb --device /dev/loop4:/dev/vdc"),
            "{line}"
        );
        assert!(!line.contains("--privileged"));
    }
}
