//! The lab's life cycle: `up`, `status`, `down`, and the paths and commands the CLI needs.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crate::docker::{self, Kind, NetworkCreation};
use crate::error::LabError;
use crate::image::{self, RECIPE};
use crate::layout::{self, InventoryNode};
use crate::node::{self, Booted, NodeSetup};
use crate::paths::LabPaths;
use crate::{LabInfo, LabNode, LabSpec, LabStatus, NodeStatus, WorkloadNetwork, cmd, disks, ssh};

/// Generous: a node boots in about two seconds, but a loaded CI machine booting many at
/// once is much slower.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const SSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes the lab described by `spec`, replacing any lab of the same name (or its
/// leftovers), and returns it once every node runs systemd and accepts the lab key over
/// SSH. `progress` receives one line per step; the first call builds the node image, which
/// takes a few minutes.
pub fn up(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<LabInfo, LabError> {
    let started = Instant::now();
    validate(spec)?;
    preflight()?;
    let paths = LabPaths::new(&spec.name);
    if clean(&spec.name, &paths)? {
        progress(&format!("removed an earlier lab `{}`", spec.name));
    }
    let image = image::ensure(&RECIPE, progress)?;

    create_private_dir(&paths.dir)?;
    create_private_dir(&paths.disks)?;
    ssh::generate_key(&paths.identity_file, &spec.name)?;
    let (network, subnet) = create_network(
        &spec.name,
        &layout::network_name(&spec.name),
        &spec.name,
        None,
    )?;
    progress(&format!("created network {network} ({subnet})"));
    let workload = if spec.workload_network {
        let mtu = LabSpec::WORKLOAD_MTU;
        let name = layout::workload_network_name(&spec.name);
        let (network, subnet) = create_network(&spec.name, &name, &name, Some(mtu))?;
        progress(&format!(
            "created workload network {network} ({subnet}, MTU {mtu})"
        ));
        Some(WorkloadNetwork {
            network,
            subnet,
            mtu,
        })
    } else {
        None
    };
    let mut info = LabInfo {
        name: spec.name.clone(),
        image,
        network,
        subnet,
        dir: paths.dir.clone(),
        identity_file: paths.identity_file.clone(),
        known_hosts_file: paths.known_hosts.clone(),
        inventory: paths.inventory.clone(),
        nodes: Vec::new(),
        workload,
    };
    save(&paths, &info)?;

    let setup = NodeSetup {
        lab: &spec.name,
        image: &info.image,
        network: &info.network,
        paths: &paths,
        disks_per_node: spec.disks_per_node,
        disk_size: spec.disk_size,
    };
    for index in 1..=spec.nodes {
        let created = node::create(&setup, index, layout::node_ip(subnet, index))?;
        info.nodes.push(created);
        // Recorded as soon as made, so `down` knows them even if `up` dies next.
        save(&paths, &info)?;
    }

    // Every node boots in parallel: start them all, then wait for them all.
    progress(&format!("booting {} node(s)", info.nodes.len()));
    for (position, lab_node) in info.nodes.iter_mut().enumerate() {
        docker::start(&lab_node.container)?;
        if let Some(workload) = &info.workload {
            let ip = layout::node_ip(workload.subnet, position + 1);
            docker::connect(&workload.network, &lab_node.container, ip)?;
            lab_node.workload_ip = Some(ip);
        }
    }
    save(&paths, &info)?;
    let booted = for_each_node(&info.nodes, progress, |lab_node| {
        let booted = node::wait_booted(&lab_node.container, BOOT_TIMEOUT)?;
        let message = boot_message(lab_node, &booted);
        Ok((booted, message))
    })?;
    write_known_hosts(&paths, &info.nodes, &booted)?;
    for_each_node(&info.nodes, progress, |lab_node| {
        node::wait_for_login(&paths, lab_node, SSH_TIMEOUT)?;
        Ok((
            (),
            format!("{} accepts SSH at root@{}", lab_node.name, lab_node.ip),
        ))
    })?;

    write_inventory(&info)?;
    progress(&format!(
        "lab `{}` is up in {:.0?}; inventory: {}",
        spec.name,
        started.elapsed(),
        info.inventory.display()
    ));
    Ok(info)
}

/// Removes everything the lab `name` made: containers, volumes, network, loop devices,
/// disk files and state directory. Removing a lab that is not there succeeds, and so does
/// removing one whose state file is lost: its docker objects are found by label and its
/// loop devices by backing file.
pub fn down(name: &str) -> Result<(), LabError> {
    layout::validate_name(name)?;
    preflight_docker()?;
    clean(name, &LabPaths::new(name)).map(drop)
}

/// The state of every node of the lab `name`.
pub fn status(name: &str) -> Result<LabStatus, LabError> {
    let info = load(name)?;
    docker::check_daemon()?;
    let mut nodes = Vec::new();
    for lab_node in &info.nodes {
        let container_state = docker::container_state(&lab_node.container)?;
        let systemd_state = (container_state.as_deref() == Some("running"))
            .then(|| node::exec_output(&lab_node.container, &["systemctl", "is-system-running"]))
            // Nothing printed: systemd is not answering yet (or any more).
            .filter(|state| !state.is_empty());
        nodes.push(NodeStatus {
            name: lab_node.name.clone(),
            container: lab_node.container.clone(),
            ip: lab_node.ip,
            workload_ip: lab_node.workload_ip,
            container_state,
            systemd_state,
        });
    }
    Ok(LabStatus {
        name: info.name,
        network: info.network,
        subnet: info.subnet,
        workload: info.workload,
        inventory: info.inventory,
        nodes,
    })
}

/// The inventory file of the lab `name`, written once the lab is up.
pub fn inventory_path(name: &str) -> Result<PathBuf, LabError> {
    layout::validate_name(name)?;
    let paths = LabPaths::new(name);
    if paths.inventory.is_file() {
        Ok(paths.inventory)
    } else {
        Err(not_found(name, &paths))
    }
}

/// `ssh` logged in as root on `node` (`node1`…) of the lab `name`, checking the node's host
/// key; append a remote command, or run it as is for a shell.
pub fn ssh_command(name: &str, node: &str) -> Result<Command, LabError> {
    cmd::require("ssh", "install it with `apt-get install -y openssh-client`")?;
    let info = load(name)?;
    let Some(lab_node) = info.nodes.iter().find(|candidate| candidate.name == node) else {
        return Err(LabError::UnknownNode {
            lab: name.to_owned(),
            node: node.to_owned(),
            known: info
                .nodes
                .iter()
                .map(|lab_node| lab_node.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    Ok(ssh::command(
        &info.identity_file,
        &info.known_hosts_file,
        lab_node.ip,
        &["ConnectTimeout=10"],
    ))
}

fn validate(spec: &LabSpec) -> Result<(), LabError> {
    layout::validate_name(&spec.name)?;
    let invalid = |reason: String| {
        Err(LabError::InvalidSpec {
            name: spec.name.clone(),
            reason,
        })
    };
    if spec.nodes == 0 || spec.nodes > layout::MAX_NODES {
        return invalid(format!("nodes must be 1 to {}", layout::MAX_NODES));
    }
    if spec.disks_per_node > layout::MAX_DISKS {
        return invalid(format!("at most {} disks per node", layout::MAX_DISKS));
    }
    if spec.disks_per_node > 0 && spec.disk_size < 1 << 20 {
        return invalid("disks must be at least 1 MiB".to_owned());
    }
    Ok(())
}

/// Checks up front what `up` needs, so a missing piece is named before anything is made.
fn preflight() -> Result<(), LabError> {
    preflight_docker()?;
    cmd::require("losetup", "install it with `apt-get install -y mount`")?;
    cmd::require(
        "ssh-keygen",
        "install it with `apt-get install -y openssh-client`",
    )?;
    cmd::require("ssh", "install it with `apt-get install -y openssh-client`")
}

fn preflight_docker() -> Result<(), LabError> {
    if !rustix::process::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    docker::check_daemon()
}

fn create_private_dir(dir: &Path) -> Result<(), LabError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(LabError::io("create", dir))
}

/// Creates the lab network `network` on the first free /24 of those `seed` picks (the lab's
/// name for its first network, so it keeps its addresses from one run to the next); a
/// parallel `up` taking the same subnet between the check and the creation only moves it
/// to the next.
fn create_network(
    lab: &str,
    network: &str,
    seed: &str,
    mtu: Option<u32>,
) -> Result<(String, Ipv4Net), LabError> {
    let network = network.to_owned();
    let mut taken = docker::network_subnets()?;
    while let Some(subnet) = layout::choose_subnet(seed, &taken) {
        match docker::create_network(&network, subnet, layout::gateway(subnet), lab, mtu)? {
            NetworkCreation::Created => return Ok((network, subnet)),
            NetworkCreation::SubnetTaken => taken.push(subnet.into()),
        }
    }
    Err(LabError::NoFreeSubnet {
        network,
        supernet: layout::SUPERNET.to_string(),
    })
}

/// Runs `work` for every node on its own thread and reports each success through
/// `progress` as it comes (`progress` itself stays on this thread); fails with the first
/// node's error once all are done.
fn for_each_node<T: Send>(
    nodes: &[LabNode],
    progress: &dyn Fn(&str),
    work: impl Fn(&LabNode) -> Result<(T, String), LabError> + Sync,
) -> Result<Vec<T>, LabError> {
    let (sender, receiver) = mpsc::channel();
    let mut results: Vec<Option<Result<T, LabError>>> = nodes.iter().map(|_| None).collect();
    thread::scope(|scope| {
        for (position, lab_node) in nodes.iter().enumerate() {
            let sender = sender.clone();
            let work = &work;
            scope.spawn(move || {
                // The receiver outlives every sender inside this scope.
                let _ = sender.send((position, work(lab_node)));
            });
        }
        drop(sender);
        for (position, result) in receiver {
            results[position] = Some(result.map(|(value, message)| {
                progress(&message);
                value
            }));
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("every node thread reports"))
        .collect()
}

fn boot_message(lab_node: &LabNode, booted: &Booted) -> String {
    if booted.failed_units.is_empty() {
        format!(
            "{} booted (systemd {})",
            lab_node.name, booted.systemd_state
        )
    } else {
        format!(
            "{} booted (systemd {}; failed units: {})",
            lab_node.name,
            booted.systemd_state,
            booted.failed_units.join(", ")
        )
    }
}

fn write_known_hosts(
    paths: &LabPaths,
    nodes: &[LabNode],
    booted: &[Booted],
) -> Result<(), LabError> {
    let lines: String = nodes
        .iter()
        .zip(booted)
        .map(|(lab_node, booted)| ssh::known_hosts_line(lab_node.ip, &booted.host_key) + "\n")
        .collect();
    fs::write(&paths.known_hosts, lines).map_err(LabError::io("write", &paths.known_hosts))
}

fn write_inventory(info: &LabInfo) -> Result<(), LabError> {
    let device_lists: Vec<Vec<String>> = info
        .nodes
        .iter()
        .map(|lab_node| {
            lab_node
                .disks
                .iter()
                .map(|disk| disk.device.clone())
                .collect()
        })
        .collect();
    let nodes: Vec<InventoryNode<'_>> = info
        .nodes
        .iter()
        .zip(&device_lists)
        .map(|(lab_node, disks)| InventoryNode {
            name: &lab_node.name,
            ip: lab_node.ip,
            workload_ip: lab_node.workload_ip,
            disks,
        })
        .collect();
    let inventory = layout::inventory(
        &info.name,
        info.subnet,
        info.workload.as_ref().map(|workload| workload.subnet),
        &info.identity_file,
        &info.known_hosts_file,
        &nodes,
    );
    let yaml = serde_saphyr::to_string(&inventory).map_err(|source| LabError::Inventory {
        path: info.inventory.clone(),
        source,
    })?;
    let text = format!(
        "# Inventory of the metalk8s lab `{}`, written when the lab came up.\n{yaml}",
        info.name
    );
    fs::write(&info.inventory, text).map_err(LabError::io("write", &info.inventory))
}

fn save(paths: &LabPaths, info: &LabInfo) -> Result<(), LabError> {
    let json = serde_json::to_string_pretty(info).expect("lab state always serializes");
    // Written aside and renamed, so a crash never leaves a half-written state file.
    let partial = paths.state.with_extension("json.partial");
    fs::write(&partial, json).map_err(LabError::io("write", &partial))?;
    fs::rename(&partial, &paths.state).map_err(LabError::io("rename", &partial))
}

fn load(name: &str) -> Result<LabInfo, LabError> {
    layout::validate_name(name)?;
    let paths = LabPaths::new(name);
    let text = match fs::read_to_string(&paths.state) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(name, &paths));
        }
        Err(error) => return Err(LabError::io("read", &paths.state)(error)),
    };
    serde_json::from_str(&text).map_err(|source| LabError::State {
        path: paths.state.clone(),
        source,
    })
}

fn not_found(name: &str, paths: &LabPaths) -> LabError {
    LabError::NotFound {
        name: name.to_owned(),
        dir: paths.dir.clone(),
    }
}

/// Removes every trace of the lab `name`, whatever state it is in, and tells whether there
/// was anything. Keeps going past failures so one stuck object does not leave the rest.
fn clean(name: &str, paths: &LabPaths) -> Result<bool, LabError> {
    // The state file may be missing, partial or unreadable: it only adds names to what
    // the labels find.
    let recorded = load(name).ok();
    let mut errors = Vec::new();
    let mut found = false;

    for kind in [Kind::Container, Kind::Volume, Kind::Network] {
        let mut names: BTreeSet<String> = match docker::labelled(kind, name) {
            Ok(names) => names.into_iter().collect(),
            Err(error) => {
                errors.push(error);
                BTreeSet::new()
            }
        };
        if let Some(info) = &recorded {
            names.extend(recorded_names(kind, info));
        }
        for object in names {
            match docker::remove(kind, &object) {
                Ok(()) => found = true,
                Err(error) => errors.push(error),
            }
        }
    }

    // Only devices backed by this lab's files: loop numbers are reused by others.
    match disks::attached_under(&paths.disks) {
        Ok(attached) => {
            for device in attached {
                found = true;
                if let Err(error) = disks::detach(&device) {
                    errors.push(error);
                }
            }
        }
        Err(error) => errors.push(error),
    }

    if paths.dir.exists() {
        found = true;
        if let Err(error) = fs::remove_dir_all(&paths.dir) {
            errors.push(LabError::io("remove", &paths.dir)(error));
        }
    }

    let count = errors.len();
    match errors.into_iter().next() {
        None => Ok(found),
        Some(first) => Err(LabError::Cleanup {
            name: name.to_owned(),
            count,
            source: Box::new(first),
        }),
    }
}

/// Names a state file records for `kind`; removing one that is already gone is a no-op,
/// so these only matter for objects that somehow lost their label.
fn recorded_names(kind: Kind, info: &LabInfo) -> Vec<String> {
    match kind {
        Kind::Container => info.nodes.iter().map(|n| n.container.clone()).collect(),
        Kind::Volume => info
            .nodes
            .iter()
            .map(|n| n.containerd_volume.clone())
            .collect(),
        Kind::Network => std::iter::once(info.network.clone())
            .chain(
                info.workload
                    .iter()
                    .map(|workload| workload.network.clone()),
            )
            .collect(),
    }
}
