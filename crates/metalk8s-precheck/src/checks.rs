//! The checks themselves: pure functions of the inventory and the gathered facts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use metalk8s_model::ByteSize;
use metalk8s_model::facts::Facts;
use metalk8s_model::inventory::{Inventory, Node, Role};
use metalk8s_model::network::workload_plane_interface;
use metalk8s_model::report::{CheckResult, CheckStatus, NodeReport};

use crate::gather::CONFLICTING_PACKAGES;

/// Supported distributions: `ID` from os-release and the accepted major versions.
const SUPPORTED_OS: &[(&str, &[&str])] = &[
    ("debian", &["12"]),
    ("ubuntu", &["22.04", "24.04"]),
    ("rhel", &["8", "9"]),
    ("rocky", &["8", "9"]),
    ("almalinux", &["8", "9"]),
];

/// MemTotal excludes what the firmware and kernel reserve, so a machine sold with the
/// required memory reports a little less.
const MEMORY_TOLERANCE: f64 = 0.9;

/// TCP ports the node's roles will listen on, with what uses them.
pub fn ports_for(node: &Node) -> Vec<(u16, &'static str)> {
    let mut ports = vec![
        (10250, "kubelet"),
        (10256, "kube-proxy health"),
        (9100, "node_exporter"),
    ];
    if node.has_role(Role::Etcd) {
        ports.extend([
            (2379, "etcd client"),
            (2380, "etcd peer"),
            (2381, "etcd metrics"),
        ]);
    }
    if node.has_role(Role::ControlPlane) {
        ports.extend([
            (6443, "kube-apiserver"),
            (10257, "kube-controller-manager"),
            (10259, "kube-scheduler"),
        ]);
    }
    if node.has_role(Role::Bootstrap) {
        ports.push((8443, "metalk8s repository and registry"));
    }
    ports
}

fn result(check: &str, status: CheckStatus, message: String, hint: Option<String>) -> CheckResult {
    CheckResult {
        check: check.to_owned(),
        status,
        message,
        hint,
    }
}

fn pass(check: &str, message: String) -> CheckResult {
    result(check, CheckStatus::Pass, message, None)
}

fn fail(check: &str, message: String, hint: impl Into<String>) -> CheckResult {
    result(check, CheckStatus::Fail, message, Some(hint.into()))
}

fn warn(check: &str, message: String, hint: impl Into<String>) -> CheckResult {
    result(check, CheckStatus::Warn, message, Some(hint.into()))
}

/// Why a node has no facts, as shown in its `connection` check.
#[derive(Clone, Debug, PartialEq)]
pub struct NotGathered {
    pub reason: String,
    pub hint: Option<String>,
}

/// The facts of every node, or why they could not be gathered, by node name.
pub type Gathered = BTreeMap<String, Result<Facts, NotGathered>>;

/// The report for every node. A node whose facts could not be gathered gets a single
/// failed `connection` check carrying the reason and its hint.
pub fn check_all(inventory: &Inventory, facts: &Gathered) -> Vec<NodeReport> {
    let gathered: BTreeMap<&str, &Facts> = facts
        .iter()
        .filter_map(|(name, facts)| Some((name.as_str(), facts.as_ref().ok()?)))
        .collect();
    let clock_reference = median_clock_offset(&gathered);
    inventory
        .nodes
        .iter()
        .map(|node| {
            let checks = match facts.get(&node.name) {
                Some(Ok(node_facts)) => {
                    check_node(inventory, node, node_facts, &gathered, clock_reference)
                }
                Some(Err(not_gathered)) => vec![result(
                    "connection",
                    CheckStatus::Fail,
                    not_gathered.reason.clone(),
                    not_gathered.hint.clone(),
                )],
                None => vec![fail(
                    "connection",
                    "no facts were gathered".to_owned(),
                    "rerun the pre-checks",
                )],
            };
            NodeReport {
                node: node.name.clone(),
                checks,
            }
        })
        .collect()
}

fn check_node(
    inventory: &Inventory,
    node: &Node,
    facts: &Facts,
    everyone: &BTreeMap<&str, &Facts>,
    clock_reference: f64,
) -> Vec<CheckResult> {
    let mut checks = vec![
        check_os(facts),
        check_kernel(inventory, facts),
        check_cpu(inventory, node, facts),
        check_memory(inventory, node, facts),
        check_var_free(inventory, facts),
        check_swap(facts),
        check_clock(inventory, facts, clock_reference),
        check_ports(node, facts),
        check_packages(facts),
        check_hostname_unique(node, facts, everyone),
        check_names_resolve(inventory, node, facts),
        check_plane_ip(
            "control-plane-ip",
            "networks.controlPlane",
            "controlPlaneIP",
            node.control_plane_ip,
            &inventory.networks.control_plane,
            facts,
        ),
        check_plane_ip(
            "workload-plane-ip",
            "networks.workloadPlane",
            "workloadPlaneIP",
            node.workload_plane_ip,
            &inventory.networks.workload_plane,
            facts,
        ),
    ];
    checks.extend(check_disks(node, facts));
    checks.push(check_cluster_range(
        "pods-network",
        "networks.pods",
        inventory.networks.pods,
        inventory,
        node,
        facts,
    ));
    checks.push(check_cluster_range(
        "services-network",
        "networks.services",
        inventory.networks.services,
        inventory,
        node,
        facts,
    ));
    checks.extend(check_workload_mtu(inventory, node, facts, everyone));
    checks
}

/// Interfaces the cluster itself creates, whose addresses and routes lie inside the pod
/// and service ranges once deployed: Calico's (veths, IP-in-IP, VXLAN, WireGuard) and
/// kube-proxy's IPVS dummy.
fn is_cluster_device(device: &str) -> bool {
    device.starts_with("cali")
        || matches!(
            device,
            "tunl0"
                | "vxlan.calico"
                | "vxlan-v6.calico"
                | "wireguard.cali"
                | "wg-v6.cali"
                | "kube-ipvs0"
        )
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether `net` is one the cluster made: inside the pod or service range, on a device of
/// the cluster's, or a blackhole route Calico keeps for its pod address blocks.
fn made_by_cluster(
    inventory: &Inventory,
    net: &IpNet,
    device: Option<&str>,
    kind: Option<&str>,
) -> bool {
    let networks = &inventory.networks;
    let inside_pods = networks.pods.contains(net);
    let inside_cluster = inside_pods || networks.services.contains(net);
    inside_cluster
        && (device.is_some_and(is_cluster_device) || (inside_pods && kind == Some("blackhole")))
}

/// `networks.pods` / `networks.services` must not overlap an address network of the node,
/// nor a route of its (default routes aside, and those the cluster itself made), or the
/// node would send cluster traffic to its LAN or the other way round. That the ranges do
/// not overlap each other or the planes is checked with the inventory already.
fn check_cluster_range(
    check: &str,
    field: &str,
    range: IpNet,
    inventory: &Inventory,
    node: &Node,
    facts: &Facts,
) -> CheckResult {
    let mut conflicts = Vec::new();
    let mut seen = Vec::new();
    for held in &facts.addresses {
        let Ok(network) = IpNet::new(held.address, held.prefix_len).map(|net| net.trunc()) else {
            continue;
        };
        if overlaps(&range, &network)
            && !made_by_cluster(inventory, &network, Some(&held.interface), None)
        {
            conflicts.push(format!(
                "the address {}/{} of {}",
                held.address, held.prefix_len, held.interface
            ));
            seen.push(network);
        }
    }
    for route in &facts.routes {
        let destination = route.destination.trunc();
        if route.is_default()
            || seen.contains(&destination)
            || !overlaps(&range, &destination)
            || made_by_cluster(
                inventory,
                &destination,
                route.device.as_deref(),
                route.kind.as_deref(),
            )
        {
            continue;
        }
        let mut text = format!("the route to {destination}");
        if let Some(kind) = &route.kind {
            text = format!("the {kind} route to {destination}");
        }
        if let Some(gateway) = route.gateway {
            text.push_str(&format!(" via {gateway}"));
        }
        if let Some(device) = &route.device {
            text.push_str(&format!(" dev {device}"));
        }
        conflicts.push(text);
    }
    if conflicts.is_empty() {
        pass(
            check,
            format!("`{field}` {range} overlaps no address or route of the node"),
        )
    } else {
        fail(
            check,
            format!(
                "`{field}` {range} overlaps, on {}, {}",
                node.name,
                conflicts.join("; ")
            ),
            format!(
                "set `{field}` to a range no node uses or routes to (or renumber that network): \
                 traffic to those addresses would go to the cluster instead"
            ),
        )
    }
}

/// The workload-plane interface and its MTU, said for the record (the pods' MTU is
/// derived from it); a warning when the nodes' workload-plane MTUs differ. Nothing when
/// the node has no workload-plane interface: `workload-plane-ip` fails then.
fn check_workload_mtu(
    inventory: &Inventory,
    node: &Node,
    facts: &Facts,
    everyone: &BTreeMap<&str, &Facts>,
) -> Option<CheckResult> {
    const CHECK: &str = "workload-plane-mtu";
    let interface = workload_plane_interface(inventory, node, facts)?;
    let Some(mtu) = interface.mtu else {
        return Some(pass(
            CHECK,
            format!(
                "{} ({}), MTU not gathered",
                interface.name, interface.address
            ),
        ));
    };
    let others: Vec<String> = inventory
        .nodes
        .iter()
        .filter(|other| other.name != node.name)
        .filter_map(|other| {
            let found =
                workload_plane_interface(inventory, other, everyone.get(other.name.as_str())?)?;
            let other_mtu = found.mtu?;
            (other_mtu != mtu).then(|| format!("{} has {other_mtu} on {}", other.name, found.name))
        })
        .collect();
    let said = format!("{} ({}), MTU {mtu}", interface.name, interface.address);
    Some(if others.is_empty() {
        pass(CHECK, said)
    } else {
        warn(
            CHECK,
            format!("{said}; other nodes differ: {}", others.join(", ")),
            "give every node's workload-plane interface the same MTU: the pods' MTU follows \
             the smallest, and larger packets between the nodes are dropped or fragmented",
        )
    })
}

fn check_os(facts: &Facts) -> CheckResult {
    let os = &facts.os;
    let supported = SUPPORTED_OS.iter().any(|(id, versions)| {
        *id == os.id
            && versions
                .iter()
                .any(|v| os.version_id == *v || os.version_id.split('.').next() == Some(*v))
    });
    let name = if os.pretty_name.is_empty() {
        format!("{} {}", os.id, os.version_id)
    } else {
        os.pretty_name.clone()
    };
    if supported {
        pass("os", name)
    } else {
        fail(
            "os",
            format!("{name} is not a supported operating system"),
            "install Debian 12, Ubuntu 22.04/24.04, or RHEL/Rocky/AlmaLinux 8 or 9",
        )
    }
}

fn kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn check_kernel(inventory: &Inventory, facts: &Facts) -> CheckResult {
    let minimum = &inventory.prechecks.min_kernel;
    match (kernel_version(&facts.kernel), kernel_version(minimum)) {
        (Some(found), Some(wanted)) if found >= wanted => pass("kernel", facts.kernel.clone()),
        (Some(_), Some(_)) => fail(
            "kernel",
            format!("kernel {} is older than {minimum}", facts.kernel),
            format!("upgrade the kernel to {minimum} or later"),
        ),
        _ => fail(
            "kernel",
            format!("cannot read kernel version `{}`", facts.kernel),
            "check `uname -r` on the node, or `prechecks.minKernel` in the inventory",
        ),
    }
}

fn roles_text(node: &Node) -> String {
    node.roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_cpu(inventory: &Inventory, node: &Node, facts: &Facts) -> CheckResult {
    let Some(requirement) = inventory.requirement_for(node) else {
        return pass("cpu", format!("{} CPUs", facts.cpus));
    };
    if facts.cpus >= requirement.cpus {
        pass(
            "cpu",
            format!("{} CPUs (need {})", facts.cpus, requirement.cpus),
        )
    } else {
        fail(
            "cpu",
            format!(
                "{} CPUs, the roles {} need {}",
                facts.cpus,
                roles_text(node),
                requirement.cpus
            ),
            "add CPUs, move roles to a larger node, or lower `prechecks.requirements` in the inventory",
        )
    }
}

fn check_memory(inventory: &Inventory, node: &Node, facts: &Facts) -> CheckResult {
    let found = ByteSize(facts.memory_bytes);
    let Some(requirement) = inventory.requirement_for(node) else {
        return pass("memory", human(found));
    };
    let needed = requirement.memory;
    if facts.memory_bytes as f64 >= needed.bytes() as f64 * MEMORY_TOLERANCE {
        pass(
            "memory",
            format!("{} (need {})", human(found), human(needed)),
        )
    } else {
        fail(
            "memory",
            format!(
                "{} of memory, the roles {} need {}",
                human(found),
                roles_text(node),
                human(needed)
            ),
            "add memory, move roles to a larger node, or lower `prechecks.requirements` in the inventory",
        )
    }
}

/// A size rounded for people (`7.7 GiB`), unlike `ByteSize`'s exact display.
pub fn human(size: ByteSize) -> String {
    let bytes = size.bytes() as f64;
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let exponent = ((bytes.max(1.0).log2() / 10.0).floor() as usize).min(units.len() - 1);
    let value = bytes / f64::powi(1024.0, exponent as i32);
    if exponent == 0 {
        format!("{} B", size.bytes())
    } else {
        format!("{value:.1} {}", units[exponent])
    }
}

fn check_var_free(inventory: &Inventory, facts: &Facts) -> CheckResult {
    let free = ByteSize(facts.var_free_bytes);
    let needed = inventory.prechecks.min_var_free;
    if free >= needed {
        pass("var-free", format!("{} free under /var", human(free)))
    } else {
        fail(
            "var-free",
            format!("{} free under /var, need {}", human(free), human(needed)),
            "free space on the filesystem holding /var or grow it",
        )
    }
}

fn check_swap(facts: &Facts) -> CheckResult {
    if facts.swap_bytes == 0 {
        pass("swap", "no swap".to_owned())
    } else {
        warn(
            "swap",
            format!("{} of swap is enabled", human(ByteSize(facts.swap_bytes))),
            "deploy turns swap off (kubelet requires it); nothing to do unless something relies on it",
        )
    }
}

fn median_clock_offset(facts: &BTreeMap<&str, &Facts>) -> f64 {
    let mut offsets: Vec<f64> = facts.values().map(|f| f.clock_offset).collect();
    offsets.sort_by(f64::total_cmp);
    offsets.get(offsets.len() / 2).copied().unwrap_or(0.0)
}

/// Compares each clock with the median of all nodes, so that one wrong clock is blamed on
/// its own node rather than on every pair it belongs to.
fn check_clock(inventory: &Inventory, facts: &Facts, reference: f64) -> CheckResult {
    let skew = facts.clock_offset - reference;
    let tolerated = inventory.prechecks.max_clock_skew_seconds + facts.clock_uncertainty;
    if skew.abs() <= tolerated {
        pass(
            "clock",
            format!("within {:.3}s of the other nodes", skew.abs()),
        )
    } else {
        fail(
            "clock",
            format!(
                "clock is {:.1}s {} the other nodes (tolerated: {}s)",
                skew.abs(),
                if skew > 0.0 { "ahead of" } else { "behind" },
                inventory.prechecks.max_clock_skew_seconds
            ),
            "set the time (e.g. `chronyc makestep`); deploy keeps clocks in step with chrony afterwards",
        )
    }
}

fn check_ports(node: &Node, facts: &Facts) -> CheckResult {
    let busy: Vec<String> = ports_for(node)
        .into_iter()
        .filter_map(|(port, user)| {
            let listener = facts.listening.iter().find(|l| l.port == port)?;
            let holder = listener
                .process
                .as_deref()
                .map(|p| format!(" by {p}"))
                .unwrap_or_default();
            Some(format!(
                "{port} ({user}) is in use on {}{holder}",
                listener.address
            ))
        })
        .collect();
    if busy.is_empty() {
        let list: Vec<String> = ports_for(node).iter().map(|(p, _)| p.to_string()).collect();
        pass("ports", format!("free: {}", list.join(", ")))
    } else {
        fail(
            "ports",
            busy.join("; "),
            "stop the service holding the port, or move this role to another node",
        )
    }
}

fn check_packages(facts: &Facts) -> CheckResult {
    let conflicts: Vec<String> = CONFLICTING_PACKAGES
        .iter()
        .filter_map(|name| Some(format!("{name} {}", facts.packages.get(*name)?)))
        .collect();
    if conflicts.is_empty() {
        pass("packages", "no conflicting packages".to_owned())
    } else {
        fail(
            "packages",
            format!("conflicting packages installed: {}", conflicts.join(", ")),
            "remove them (metalk8s installs and manages containerd itself)",
        )
    }
}

fn check_hostname_unique(
    node: &Node,
    facts: &Facts,
    everyone: &BTreeMap<&str, &Facts>,
) -> CheckResult {
    let twins: Vec<&str> = everyone
        .iter()
        .filter(|(name, other)| **name != node.name && other.hostname == facts.hostname)
        .map(|(name, _)| *name)
        .collect();
    if twins.is_empty() {
        pass("hostname", format!("`{}` is unique", facts.hostname))
    } else {
        fail(
            "hostname",
            format!(
                "hostname `{}` is also the hostname of {}",
                facts.hostname,
                twins.join(", ")
            ),
            "give every node its own hostname (deploy sets it to the inventory name)",
        )
    }
}

fn check_names_resolve(inventory: &Inventory, node: &Node, facts: &Facts) -> CheckResult {
    let unresolved: Vec<&str> = inventory
        .nodes
        .iter()
        .map(|other| other.name.as_str())
        .filter(|name| facts.resolved.get(*name).is_none_or(Vec::is_empty))
        .collect();
    if unresolved.is_empty() {
        pass("name-resolution", "every node name resolves".to_owned())
    } else if unresolved.contains(&node.name.as_str()) && facts.hostname != node.name {
        warn(
            "name-resolution",
            format!(
                "hostname is `{}`, not `{}`; these names do not resolve: {}",
                facts.hostname,
                node.name,
                unresolved.join(", ")
            ),
            "deploy sets the hostname and adds every node to /etc/hosts",
        )
    } else {
        warn(
            "name-resolution",
            format!("these names do not resolve: {}", unresolved.join(", ")),
            "deploy adds every node to /etc/hosts; add them to DNS if other machines must reach them",
        )
    }
}

fn check_plane_ip(
    check: &str,
    network_field: &str,
    ip_field: &str,
    declared: Option<IpAddr>,
    networks: &[IpNet],
    facts: &Facts,
) -> CheckResult {
    let present: Vec<IpAddr> = facts.addresses.iter().map(|a| a.address).collect();
    if let Some(ip) = declared {
        return if present.contains(&ip) {
            pass(check, format!("{ip} is configured"))
        } else {
            fail(
                check,
                format!("{ip_field} {ip} is not configured on any interface"),
                format!("configure {ip} on the node, or correct `{ip_field}` in the inventory"),
            )
        };
    }
    let inside: Vec<IpAddr> = present
        .into_iter()
        .filter(|ip| networks.iter().any(|net| net.contains(ip)))
        .collect();
    match inside.as_slice() {
        [ip] => pass(check, format!("found {ip} in {network_field}")),
        [] => fail(
            check,
            format!("no address of this node is inside {network_field}"),
            format!(
                "configure an address in {network_field}, or fix `{network_field}` in the inventory"
            ),
        ),
        several => fail(
            check,
            format!(
                "several addresses are inside {network_field}: {}",
                several
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("choose one with `{ip_field}` on the node in the inventory"),
        ),
    }
}

fn check_disks(node: &Node, facts: &Facts) -> Vec<CheckResult> {
    node.storage
        .volumes
        .iter()
        .flat_map(|volume| volume.devices().into_iter().map(move |device| (volume, device)))
        .map(|(volume, device)| {
            let check = format!("disk {device}");
            let Some(found) = facts.devices.get(device) else {
                return fail(&check, "not inspected".to_owned(), "rerun the pre-checks");
            };
            if !found.exists {
                return fail(
                    &check,
                    format!("{device} (volume {}) does not exist", volume.name),
                    "attach the disk, or correct the device path in the inventory",
                );
            }
            if !found.is_block {
                return fail(
                    &check,
                    format!("{device} (volume {}) is not a block device", volume.name),
                    "give the path of a disk or partition",
                );
            }
            let mut uses: Vec<String> = found
                .signatures
                .iter()
                .map(|s| format!("a {s} signature"))
                .collect();
            if !found.children.is_empty() {
                uses.push(format!("partitions {}", found.children.join(", ")));
            }
            if !found.mountpoints.is_empty() {
                uses.push(format!("mounted on {}", found.mountpoints.join(", ")));
            }
            if uses.is_empty() {
                pass(
                    &check,
                    format!("{device} is empty ({})", human(ByteSize(found.size_bytes))),
                )
            } else {
                fail(
                    &check,
                    format!("{device} (volume {}) is not empty: {}", volume.name, uses.join(", ")),
                    format!(
                        "if its data is not needed, wipe it with `wipefs -a {device}`; otherwise choose another disk"
                    ),
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::facts::{
        DeviceFacts, Interface, InterfaceAddress, Listener, OsRelease, Route,
    };

    fn inventory() -> Inventory {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metalk8s.io/v1alpha1",
            "kind": "Inventory",
            "name": "test",
            "networks": {"controlPlane": ["10.0.0.0/24"], "workloadPlane": ["10.1.0.0/24"]},
            "nodes": [
                {"name": "node1", "address": "10.0.0.11", "roles": ["bootstrap", "etcd", "control-plane"]},
                {"name": "node2", "address": "10.0.0.12", "roles": ["worker"],
                 "storage": {"volumes": [{"name": "data", "rawBlock": {"device": "/dev/vdb"}}]}},
                {"name": "node3", "address": "10.0.0.13", "roles": ["worker"],
                 "workloadPlaneIP": "10.1.0.99"}
            ]
        }))
        .unwrap()
    }

    fn healthy(index: u8) -> Facts {
        Facts {
            hostname: format!("node{index}"),
            os: OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            kernel: "6.1.0-18-amd64".into(),
            cpus: 4,
            memory_bytes: 8 << 30,
            swap_bytes: 0,
            var_free_bytes: 50 << 30,
            clock_offset: 0.01 * f64::from(index),
            clock_uncertainty: 0.001,
            addresses: vec![
                InterfaceAddress {
                    interface: "eth0".into(),
                    address: format!("10.0.0.{}", 10 + index).parse().unwrap(),
                    prefix_len: 24,
                },
                InterfaceAddress {
                    interface: "eth1".into(),
                    address: format!("10.1.0.{}", 10 + index).parse().unwrap(),
                    prefix_len: 24,
                },
            ],
            listening: vec![Listener {
                address: "0.0.0.0".parse().unwrap(),
                port: 22,
                process: Some("sshd".into()),
            }],
            packages: BTreeMap::new(),
            nameservers: Vec::new(),
            resolved: (1..=3)
                .map(|i| {
                    (
                        format!("node{i}"),
                        vec![format!("10.0.0.{}", 10 + i).parse().unwrap()],
                    )
                })
                .collect(),
            devices: BTreeMap::from([(
                "/dev/vdb".to_owned(),
                DeviceFacts {
                    exists: true,
                    is_block: true,
                    size_bytes: 2 << 30,
                    ..DeviceFacts::default()
                },
            )]),
            kubernetes: Default::default(),
            interfaces: vec![
                Interface {
                    name: "eth0".into(),
                    mtu: 1500,
                },
                Interface {
                    name: "eth1".into(),
                    mtu: 9000,
                },
            ],
            routes: vec![
                route("0.0.0.0/0", Some("10.0.0.1"), Some("eth0"), None),
                route("10.0.0.0/24", None, Some("eth0"), None),
                route("10.1.0.0/24", None, Some("eth1"), None),
                route("::/0", Some("fe80::1"), Some("eth0"), None),
            ],
            wireguard: None,
        }
    }

    fn route(
        destination: &str,
        gateway: Option<&str>,
        device: Option<&str>,
        kind: Option<&str>,
    ) -> Route {
        Route {
            destination: destination.parse().unwrap(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            device: device.map(str::to_owned),
            kind: kind.map(str::to_owned),
        }
    }

    fn check_of(facts: &Gathered, node: &str, check: &str) -> CheckResult {
        check_all(&inventory(), facts)
            .into_iter()
            .find(|report| report.node == node)
            .unwrap()
            .checks
            .into_iter()
            .find(|c| c.check == check)
            .unwrap_or_else(|| panic!("no {check} on {node}"))
    }

    #[test]
    fn an_address_inside_the_pod_range_fails_naming_node_field_and_address() {
        let mut facts = all_healthy();
        facts_mut(&mut facts, "node2")
            .addresses
            .push(InterfaceAddress {
                interface: "eth2".into(),
                address: "10.233.7.5".parse().unwrap(),
                prefix_len: 24,
            });
        // Its kernel route is the same conflict, said once.
        facts_mut(&mut facts, "node2").routes.push(route(
            "10.233.7.0/24",
            None,
            Some("eth2"),
            None,
        ));
        assert_eq!(
            problems(&facts),
            [("node2".into(), "pods-network".into(), CheckStatus::Fail)]
        );
        let found = check_of(&facts, "node2", "pods-network");
        assert_eq!(
            found.message,
            "`networks.pods` 10.233.0.0/16 overlaps, on node2, the address 10.233.7.5/24 of eth2"
        );
        assert!(found.hint.unwrap().contains("set `networks.pods`"));
    }

    #[test]
    fn a_route_into_the_service_range_fails() {
        let mut facts = all_healthy();
        facts_mut(&mut facts, "node1").routes.push(route(
            "10.100.0.0/16",
            Some("10.0.0.254"),
            Some("eth0"),
            None,
        ));
        assert_eq!(
            problems(&facts),
            [("node1".into(), "services-network".into(), CheckStatus::Fail)]
        );
        assert!(
            check_of(&facts, "node1", "services-network")
                .message
                .contains("`networks.services` 10.96.0.0/12 overlaps, on node1, the route to 10.100.0.0/16 via 10.0.0.254 dev eth0")
        );
    }

    #[test]
    fn what_a_deployed_cluster_adds_and_default_routes_pass() {
        let mut facts = all_healthy();
        let node1 = facts_mut(&mut facts, "node1");
        node1.routes.extend([
            route("10.233.1.0/26", None, None, Some("blackhole")),
            route("10.233.1.5/32", None, Some("cali12ab34"), None),
            route("10.233.2.0/26", Some("10.0.0.12"), Some("tunl0"), None),
            route(
                "10.233.3.0/26",
                Some("10.233.3.0"),
                Some("vxlan.calico"),
                None,
            ),
        ]);
        node1.addresses.extend([
            InterfaceAddress {
                interface: "tunl0".into(),
                address: "10.233.1.0".parse().unwrap(),
                prefix_len: 32,
            },
            InterfaceAddress {
                interface: "kube-ipvs0".into(),
                address: "10.96.0.1".parse().unwrap(),
                prefix_len: 32,
            },
        ]);
        assert_eq!(problems(&facts), []);
        // A blackhole route outside the pod range is someone else's, and counts.
        facts_mut(&mut facts, "node1").routes.push(route(
            "10.100.0.0/24",
            None,
            None,
            Some("blackhole"),
        ));
        assert!(
            check_of(&facts, "node1", "services-network")
                .message
                .contains("the blackhole route to 10.100.0.0/24")
        );
    }

    #[test]
    fn the_workload_plane_mtu_is_reported_and_differences_warned() {
        let mut facts = all_healthy();
        let reported = check_of(&facts, "node2", "workload-plane-mtu");
        assert_eq!(reported.status, CheckStatus::Pass);
        assert_eq!(reported.message, "eth1 (10.1.0.12), MTU 9000");
        facts_mut(&mut facts, "node3").interfaces[1].mtu = 1500;
        assert_eq!(
            problems(&facts),
            [
                (
                    "node1".into(),
                    "workload-plane-mtu".into(),
                    CheckStatus::Warn
                ),
                (
                    "node2".into(),
                    "workload-plane-mtu".into(),
                    CheckStatus::Warn
                ),
                (
                    "node3".into(),
                    "workload-plane-mtu".into(),
                    CheckStatus::Warn
                ),
            ]
        );
        assert_eq!(
            check_of(&facts, "node1", "workload-plane-mtu").message,
            "eth1 (10.1.0.11), MTU 9000; other nodes differ: node3 has 1500 on eth1"
        );
        // Facts from an older agent say the interface without an MTU.
        facts_mut(&mut facts, "node3").interfaces.clear();
        let older = check_of(&facts, "node3", "workload-plane-mtu");
        assert_eq!(older.message, "eth1 (10.1.0.99), MTU not gathered");
        assert_eq!(problems(&facts), []);
    }

    fn all_healthy() -> Gathered {
        let mut facts: Gathered = (1..=3)
            .map(|i| (format!("node{i}"), Ok(healthy(i))))
            .collect();
        // node3 declares its workload-plane IP explicitly.
        if let Some(Ok(node3)) = facts.get_mut("node3") {
            node3.addresses[1].address = "10.1.0.99".parse().unwrap();
        }
        facts
    }

    /// `(node, check)` pairs that did not pass, with their status.
    fn problems(facts: &Gathered) -> Vec<(String, String, CheckStatus)> {
        check_all(&inventory(), facts)
            .into_iter()
            .flat_map(|report| {
                report
                    .checks
                    .into_iter()
                    .filter(|c| c.status != CheckStatus::Pass)
                    .map(move |c| (report.node.clone(), c.check, c.status))
            })
            .collect()
    }

    fn facts_mut<'a>(facts: &'a mut Gathered, node: &str) -> &'a mut Facts {
        facts.get_mut(node).unwrap().as_mut().unwrap()
    }

    #[test]
    fn healthy_nodes_pass_everything() {
        assert_eq!(problems(&all_healthy()), []);
    }

    #[test]
    fn a_busy_etcd_port_fails_only_that_node() {
        let mut facts = all_healthy();
        facts_mut(&mut facts, "node1").listening.push(Listener {
            address: "127.0.0.1".parse().unwrap(),
            port: 2379,
            process: Some("nc".into()),
        });
        // 2379 on a worker is not a conflict: workers run no etcd.
        facts_mut(&mut facts, "node2").listening.push(Listener {
            address: "0.0.0.0".parse().unwrap(),
            port: 2379,
            process: None,
        });
        assert_eq!(
            problems(&facts),
            [("node1".into(), "ports".into(), CheckStatus::Fail)]
        );
        let report = check_all(&inventory(), &facts);
        let ports = report[0]
            .checks
            .iter()
            .find(|c| c.check == "ports")
            .unwrap();
        assert!(
            ports
                .message
                .contains("2379 (etcd client) is in use on 127.0.0.1 by nc")
        );
    }

    #[test]
    fn a_disk_with_a_filesystem_fails() {
        let mut facts = all_healthy();
        let disk = facts_mut(&mut facts, "node2")
            .devices
            .get_mut("/dev/vdb")
            .unwrap();
        disk.signatures.push("ext4".into());
        assert_eq!(
            problems(&facts),
            [("node2".into(), "disk /dev/vdb".into(), CheckStatus::Fail)]
        );
    }

    #[test]
    fn a_missing_disk_fails() {
        let mut facts = all_healthy();
        facts_mut(&mut facts, "node2")
            .devices
            .insert("/dev/vdb".into(), DeviceFacts::default());
        assert_eq!(
            problems(&facts),
            [("node2".into(), "disk /dev/vdb".into(), CheckStatus::Fail)]
        );
    }

    #[test]
    fn swap_only_warns() {
        let mut facts = all_healthy();
        facts_mut(&mut facts, "node3").swap_bytes = 1 << 30;
        assert_eq!(
            problems(&facts),
            [("node3".into(), "swap".into(), CheckStatus::Warn)]
        );
    }

    #[test]
    fn one_wrong_clock_is_blamed_on_its_node() {
        let mut facts = all_healthy();
        facts_mut(&mut facts, "node2").clock_offset = 30.0;
        assert_eq!(
            problems(&facts),
            [("node2".into(), "clock".into(), CheckStatus::Fail)]
        );
    }

    #[test]
    fn too_small_a_node_fails_cpu_and_memory_for_its_roles() {
        let mut facts = all_healthy();
        let node1 = facts_mut(&mut facts, "node1");
        node1.cpus = 1;
        node1.memory_bytes = 1 << 30;
        assert_eq!(
            problems(&facts),
            [
                ("node1".into(), "cpu".into(), CheckStatus::Fail),
                ("node1".into(), "memory".into(), CheckStatus::Fail)
            ]
        );
    }

    #[test]
    fn unsupported_os_old_kernel_conflicting_package_and_full_var_fail() {
        let mut facts = all_healthy();
        let node3 = facts_mut(&mut facts, "node3");
        node3.os.id = "centos".into();
        node3.os.version_id = "7".into();
        node3.kernel = "3.10.0-1160.el7.x86_64".into();
        node3.packages.insert("docker-ce".into(), "24.0".into());
        node3.var_free_bytes = 1 << 30;
        let found: Vec<String> = problems(&facts).into_iter().map(|(_, c, _)| c).collect();
        assert_eq!(found, ["os", "kernel", "var-free", "packages"]);
    }

    #[test]
    fn duplicate_hostnames_fail_on_both_nodes() {
        let mut facts = all_healthy();
        facts_mut(&mut facts, "node3").hostname = "node2".into();
        let found: Vec<(String, String)> = problems(&facts)
            .into_iter()
            .map(|(n, c, _)| (n, c))
            .collect();
        assert!(found.contains(&("node2".into(), "hostname".into())));
        assert!(found.contains(&("node3".into(), "hostname".into())));
    }

    #[test]
    fn plane_addresses_must_be_present() {
        let mut facts = all_healthy();
        // node3 declared 10.1.0.99 but has 10.1.0.13; node2 has nothing in the workload plane.
        facts_mut(&mut facts, "node3").addresses[1].address = "10.1.0.13".parse().unwrap();
        facts_mut(&mut facts, "node2").addresses.truncate(1);
        let found: Vec<(String, String)> = problems(&facts)
            .into_iter()
            .map(|(n, c, _)| (n, c))
            .collect();
        assert_eq!(
            found,
            [
                ("node2".into(), "workload-plane-ip".into()),
                ("node3".into(), "workload-plane-ip".into())
            ]
        );
    }

    #[test]
    fn unreachable_node_reports_its_connection_error() {
        let mut facts = all_healthy();
        facts.insert(
            "node2".into(),
            Err(NotGathered {
                reason: "cannot reach node2".into(),
                hint: Some("check it".into()),
            }),
        );
        assert_eq!(
            problems(&facts),
            [("node2".into(), "connection".into(), CheckStatus::Fail)]
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(ByteSize(512)), "512 B");
        assert_eq!(human(ByteSize(8 << 30)), "8.0 GiB");
        assert_eq!(human(ByteSize(1536 << 20)), "1.5 GiB");
    }
}
