//! Checks that span several values: roles across nodes, unique names and addresses, IPs
//! inside their networks, the API server VIP inside the control plane and free, networks
//! that do not overlap, volumes that do not share disks.
//!
//! They run on the typed inventory, look up where each value was written to point at it,
//! and skip values that were already reported wrong (tainted) so that a typo is not
//! reported a second time as, say, a missing bootstrap node.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use metalk8s_model::Inventory;
use metalk8s_model::inventory::{Node, Role, Volume};

use crate::decode::Decoded;
use crate::diagnostics::Finding;
use crate::paths::item_path;

/// Largest etcd cluster worth running: past seven members, writes slow down more than
/// availability improves.
const MAX_ETCD_MEMBERS: usize = 7;

pub(crate) fn validate(inventory: &Inventory, decoded: &Decoded) -> Vec<Finding> {
    let mut checker = Checker {
        inventory,
        decoded,
        findings: Vec::new(),
    };
    checker.roles();
    checker.unique_node_values();
    checker.ips_inside_networks();
    checker.api_server_vip();
    checker.networks_apart();
    checker.volumes();
    checker.findings
}

struct Checker<'a> {
    inventory: &'a Inventory,
    decoded: &'a Decoded,
    findings: Vec<Finding>,
}

/// Reads one of a node's IPs (`None` when unset, or not an IP).
type NodeIp = fn(&Node) -> Option<IpAddr>;

/// A node network and the node field that must fall inside it.
struct Plane<'a> {
    field: &'static str,
    networks_path: &'static str,
    ip_of: NodeIp,
    networks: &'a [IpNet],
}

fn node_path(index: usize) -> String {
    item_path("nodes", index)
}

impl<'a> Checker<'a> {
    fn clean(&self, path: &str) -> bool {
        self.decoded.tainted.is_clean(path)
    }

    fn value_span(&self, path: &str) -> std::ops::Range<usize> {
        self.decoded.spans.value(path)
    }

    fn key_span(&self, path: &str) -> std::ops::Range<usize> {
        self.decoded.spans.key(path)
    }

    fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Nodes whose `field` is as written, with their index.
    fn nodes_with_clean(&self, field: &str) -> Vec<(usize, &'a Node)> {
        self.inventory
            .nodes
            .iter()
            .enumerate()
            .filter(|(index, _)| self.clean(&format!("{}.{field}", node_path(*index))))
            .collect()
    }

    fn roles(&mut self) {
        let all_known = (0..self.inventory.nodes.len())
            .all(|index| self.clean(&format!("{}.roles", node_path(index))));
        for (index, node) in self.nodes_with_clean("roles") {
            self.roles_listed_once(index, node);
        }
        if !all_known || self.inventory.nodes.is_empty() {
            return;
        }
        self.exactly_one_bootstrap();
        self.etcd_quorum();
        self.at_least_one(
            Role::ControlPlane,
            "no node has the `control-plane` role",
            "give at least one node (three for high availability) the `control-plane` role: it runs the API server",
        );
        if !self.inventory.nodes.iter().any(Node::runs_workloads) {
            self.push(
                Finding::new(
                    "inventory::no-workload-node",
                    "nodes",
                    self.key_span("nodes"),
                    "no node can run workloads",
                )
                .label("no `worker` or `infra` node in this list")
                .help("give at least one node the `worker` role (or `infra`, for the cluster services)"),
            );
        }
    }

    fn role_span(&self, index: usize, node: &Node, role: Role) -> std::ops::Range<usize> {
        let position = node.roles.iter().position(|r| *r == role).unwrap_or(0);
        self.value_span(&format!("{}.roles[{position}]", node_path(index)))
    }

    fn roles_listed_once(&mut self, index: usize, node: &Node) {
        for (position, role) in node.roles.iter().enumerate() {
            if let Some(first) = node.roles[..position].iter().position(|r| r == role) {
                let path = format!("{}.roles", node_path(index));
                self.push(
                    Finding::new(
                        "inventory::duplicate-role",
                        &path,
                        self.value_span(&format!("{path}[{position}]")),
                        format!("node `{}` lists the role `{role}` twice", node.name),
                    )
                    .label("listed again here")
                    .also(
                        self.value_span(&format!("{path}[{first}]")),
                        "first listed here",
                    )
                    .help("list each role once"),
                );
            }
        }
    }

    fn with_role(&self, role: Role) -> Vec<(usize, &'a Node)> {
        self.inventory
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.has_role(role))
            .collect()
    }

    fn exactly_one_bootstrap(&mut self) {
        let bootstraps = self.with_role(Role::Bootstrap);
        if bootstraps.is_empty() {
            self.push(
                Finding::new(
                    "inventory::bootstrap-count",
                    "nodes",
                    self.key_span("nodes"),
                    "no node has the `bootstrap` role",
                )
                .label("no bootstrap node in this list")
                .help("give exactly one node the `bootstrap` role: it serves the offline repository and registry and holds the CA"),
            );
            return;
        }
        let Some(((first_index, first), others)) = bootstraps.split_first() else {
            return;
        };
        if let Some(((second_index, second), rest)) = others.split_first() {
            let names: Vec<String> = bootstraps
                .iter()
                .map(|(_, node)| format!("`{}`", node.name))
                .collect();
            let mut finding = Finding::new(
                "inventory::bootstrap-count",
                &format!("{}.roles", node_path(*second_index)),
                self.role_span(*second_index, second, Role::Bootstrap),
                format!(
                    "{} nodes have the `bootstrap` role ({}); exactly one must",
                    bootstraps.len(),
                    names.join(", ")
                ),
            )
            .label("second bootstrap node")
            .also(
                self.role_span(*first_index, first, Role::Bootstrap),
                "first bootstrap node",
            )
            .help("keep the `bootstrap` role on one node only");
            for (index, node) in rest {
                finding = finding.also(
                    self.role_span(*index, node, Role::Bootstrap),
                    "another bootstrap node",
                );
            }
            self.push(finding);
        }
    }

    fn etcd_quorum(&mut self) {
        let members = self.with_role(Role::Etcd);
        let count = members.len();
        if count == 0 {
            self.push(
                Finding::new(
                    "inventory::etcd-count",
                    "nodes",
                    self.key_span("nodes"),
                    "no node has the `etcd` role",
                )
                .label("no etcd member in this list")
                .help("give 1, 3 or 5 nodes the `etcd` role: etcd holds the cluster state"),
            );
            return;
        }
        if count % 2 == 1 && count <= MAX_ETCD_MEMBERS {
            return;
        }
        let names: Vec<String> = members
            .iter()
            .map(|(_, node)| format!("`{}`", node.name))
            .collect();
        let help = if count > MAX_ETCD_MEMBERS {
            format!(
                "keep at most {MAX_ETCD_MEMBERS} etcd members: more make every write slower without surviving more failures in practice"
            )
        } else {
            format!(
                "use {} or {} members: {count} members tolerate no more failures than {}, and split votes can stall them",
                count - 1,
                count + 1,
                count - 1
            )
        };
        let mut finding = Finding::new(
            "inventory::etcd-count",
            "nodes",
            self.key_span("nodes"),
            format!(
                "{count} nodes have the `etcd` role ({}); etcd needs 1, 3, 5 or 7 members",
                names.join(", ")
            ),
        )
        .label(format!("{count} etcd members"))
        .help(help);
        for (index, node) in &members {
            finding = finding.also(self.role_span(*index, node, Role::Etcd), "etcd member");
        }
        self.push(finding);
    }

    fn at_least_one(&mut self, role: Role, message: &str, help: &str) {
        if self.with_role(role).is_empty() {
            self.push(
                Finding::new(
                    "inventory::role-missing",
                    "nodes",
                    self.key_span("nodes"),
                    message,
                )
                .label(format!("no `{role}` node in this list"))
                .help(help),
            );
        }
    }

    fn unique_node_values(&mut self) {
        self.unique_per_node("name", "name", |node| Some(node.name.clone()));
        self.unique_per_node("address", "address", |node| Some(node.address.clone()));
        self.unique_per_node("controlPlaneIP", "control-plane IP", |node| {
            node.control_plane_ip.map(|ip| ip.to_string())
        });
        self.unique_per_node("workloadPlaneIP", "workload-plane IP", |node| {
            node.workload_plane_ip.map(|ip| ip.to_string())
        });
    }

    fn unique_per_node(
        &mut self,
        field: &str,
        what: &str,
        value_of: impl Fn(&Node) -> Option<String>,
    ) {
        let mut first_seen: HashMap<String, (usize, String)> = HashMap::new();
        for (index, node) in self.nodes_with_clean(field) {
            let Some(value) = value_of(node) else {
                continue;
            };
            let path = format!("{}.{field}", node_path(index));
            match first_seen.get(&value) {
                Some((_, first_path)) => {
                    let finding = Finding::new(
                        "inventory::duplicate-value",
                        &path,
                        self.value_span(&path),
                        format!("two nodes have the {what} `{value}`"),
                    )
                    .label("used again here")
                    .also(self.value_span(first_path), "first used here")
                    .help(format!("give every node its own {what}"));
                    self.push(finding);
                }
                None => {
                    first_seen.insert(value, (index, path));
                }
            }
        }
    }

    fn ips_inside_networks(&mut self) {
        let networks = &self.inventory.networks;
        let planes = [
            Plane {
                field: "controlPlaneIP",
                networks_path: "networks.controlPlane",
                ip_of: |node| node.control_plane_ip,
                networks: &networks.control_plane,
            },
            Plane {
                field: "workloadPlaneIP",
                networks_path: "networks.workloadPlane",
                ip_of: |node| node.workload_plane_ip,
                networks: &networks.workload_plane,
            },
        ];
        for plane in planes {
            if self.clean(plane.networks_path) {
                self.ips_inside(&plane);
            }
        }
    }

    fn ips_inside(&mut self, plane: &Plane<'_>) {
        let Plane {
            field,
            networks_path,
            ip_of,
            networks,
        } = plane;
        for (index, node) in self.nodes_with_clean(field) {
            let Some(ip) = ip_of(node) else {
                continue;
            };
            if networks.iter().any(|net| net.contains(&ip)) {
                continue;
            }
            let path = format!("{}.{field}", node_path(index));
            let listed: Vec<String> = networks.iter().map(|net| format!("`{net}`")).collect();
            let finding = Finding::new(
                "inventory::ip-outside-network",
                &path,
                self.value_span(&path),
                format!(
                    "the {field} of node `{}`, `{ip}`, is in none of the `{networks_path}` CIDRs ({})",
                    node.name,
                    listed.join(", ")
                ),
            )
            .label(format!("outside `{networks_path}`"))
            .also(self.key_span(networks_path), "declared here")
            .help(format!(
                "fix the address, or add its network to `{networks_path}`"
            ));
            self.push(finding);
        }
    }

    /// `networks.apiServerVIP` is held by keepalived on a control-plane node's interface
    /// in the control-plane network, so it must lie in one of those CIDRs; and it moves
    /// between nodes, so it cannot be an address a node already has.
    fn api_server_vip(&mut self) {
        const PATH: &str = "networks.apiServerVIP";
        let Some(vip) = self.inventory.networks.api_server_vip else {
            return;
        };
        if !self.clean(PATH) {
            return;
        }
        if self.clean("networks.controlPlane") {
            self.vip_inside_control_plane(PATH, vip);
        }
        let fields: [(&str, &str, NodeIp); 3] = [
            ("address", "address", |node| node.address.parse().ok()),
            ("controlPlaneIP", "control-plane IP", |node| {
                node.control_plane_ip
            }),
            ("workloadPlaneIP", "workload-plane IP", |node| {
                node.workload_plane_ip
            }),
        ];
        for (field, what, ip_of) in fields {
            for (index, node) in self.nodes_with_clean(field) {
                if ip_of(node) != Some(vip) {
                    continue;
                }
                let node_field = format!("{}.{field}", node_path(index));
                self.push(
                    Finding::new(
                        "inventory::vip-is-node-address",
                        PATH,
                        self.value_span(PATH),
                        format!(
                            "the API server VIP `{vip}` is also the {what} of node `{}`",
                            node.name
                        ),
                    )
                    .label("the VIP")
                    .also(self.value_span(&node_field), format!("`{}`'s {what}", node.name))
                    .help(
                        "pick a free address in the control-plane network for the VIP: keepalived moves it between the control-plane nodes, so no node may own it",
                    ),
                );
            }
        }
    }

    fn vip_inside_control_plane(&mut self, path: &str, vip: IpAddr) {
        let networks = &self.inventory.networks.control_plane;
        if networks.iter().any(|net| net.contains(&vip)) {
            return;
        }
        let listed: Vec<String> = networks.iter().map(|net| format!("`{net}`")).collect();
        let same_family = networks
            .iter()
            .any(|net| net.addr().is_ipv4() == vip.is_ipv4());
        let (message, help) = if same_family {
            (
                format!(
                    "the API server VIP `{vip}` is in none of the `networks.controlPlane` CIDRs ({})",
                    listed.join(", ")
                ),
                "pick a free address inside a `networks.controlPlane` CIDR: the control-plane nodes hold the VIP on their control-plane interface".to_owned(),
            )
        } else {
            let (family, other) = if vip.is_ipv4() {
                ("IPv4", "IPv6")
            } else {
                ("IPv6", "IPv4")
            };
            (
                format!(
                    "the API server VIP `{vip}` is an {family} address but the `networks.controlPlane` CIDRs ({}) are {other}",
                    listed.join(", ")
                ),
                format!(
                    "pick a free {other} address inside a `networks.controlPlane` CIDR, or add an {family} network there"
                ),
            )
        };
        self.push(
            Finding::new(
                "inventory::vip-outside-network",
                path,
                self.value_span(path),
                message,
            )
            .label("outside `networks.controlPlane`")
            .also(self.key_span("networks.controlPlane"), "declared here")
            .help(help),
        );
    }

    /// The networks, each with its path and how to name it in a message.
    fn named_networks(&self) -> Vec<(String, String, IpNet)> {
        let networks = &self.inventory.networks;
        let mut named = Vec::new();
        for (name, list) in [
            ("controlPlane", &networks.control_plane),
            ("workloadPlane", &networks.workload_plane),
        ] {
            for (index, net) in list.iter().enumerate() {
                let path = format!("networks.{name}[{index}]");
                named.push((path.clone(), format!("`{path}`"), *net));
            }
        }
        for (name, net, default_name) in [
            ("pods", networks.pods, "the default pod network"),
            ("services", networks.services, "the default service network"),
        ] {
            let path = format!("networks.{name}");
            let label = if self.decoded.spans.has(&path) {
                format!("`{path}`")
            } else {
                default_name.to_owned()
            };
            named.push((path, label, net));
        }
        named
    }

    fn networks_apart(&mut self) {
        let named: Vec<_> = self
            .named_networks()
            .into_iter()
            .filter(|(path, ..)| self.clean(path))
            .collect();
        for (later, this) in named.iter().enumerate() {
            for earlier in &named[..later] {
                if overlap(&this.2, &earlier.2) && !planes_may_share(&this.0, &earlier.0) {
                    self.overlapping(this, earlier);
                }
            }
        }
    }

    /// Reports two overlapping networks at the one written last, or at the written one when
    /// the other is a default (which has no place in the file to point at).
    fn overlapping(&mut self, a: &(String, String, IpNet), b: &(String, String, IpNet)) {
        let written = |path: &str| self.decoded.spans.has(path);
        let (here, there) = if written(&a.0) { (a, b) } else { (b, a) };
        let (path, label, net) = here;
        let (other_path, other_label, other) = there;
        let mut finding = Finding::new(
            "inventory::networks-overlap",
            path,
            self.value_span(path),
            format!("{label} `{net}` overlaps {other_label} `{other}`"),
        )
        .label(format!("overlaps `{other}`"));
        let fix = if written(other_path) {
            finding = finding.also(self.value_span(other_path), format!("`{other}`"));
            "change one of them".to_owned()
        } else {
            format!("set `{other_path}` to a free range, or move this network out of `{other}`")
        };
        self.push(finding.help(format!(
            "{fix}: pods, services and node networks must not overlap"
        )));
    }

    fn volumes(&mut self) {
        for (index, node) in self.inventory.nodes.iter().enumerate() {
            let storage_path = format!("{}.storage.volumes", node_path(index));
            let volumes: Vec<(String, &Volume)> = node
                .storage
                .volumes
                .iter()
                .enumerate()
                .map(|(position, volume)| (item_path(&storage_path, position), volume))
                .filter(|(path, _)| self.clean(path))
                .collect();
            for (path, volume) in &volumes {
                self.volume_kind(node, path, volume);
            }
            self.unique_volume_names(node, &volumes);
            self.devices_not_shared(node, &volumes);
        }
    }

    fn volume_kind(&mut self, node: &Node, path: &str, volume: &Volume) {
        let kinds: Vec<&str> = [
            ("lvm", volume.lvm.is_some()),
            ("sparse", volume.sparse.is_some()),
            ("rawBlock", volume.raw_block.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, set)| set.then_some(kind))
        .collect();
        match kinds.as_slice() {
            [_] => {}
            [] => self.push(
                Finding::new(
                    "inventory::volume-kind",
                    path,
                    self.value_span(path),
                    format!(
                        "volume `{}` of node `{}` says neither `lvm`, `sparse` nor `rawBlock`",
                        volume.name, node.name
                    ),
                )
                .label("where do its bytes live?")
                .help("add one of `lvm: {vg: ..., size: ...}`, `sparse: {size: ...}` or `rawBlock: {device: ...}`"),
            ),
            [first, second, ..] => {
                let second_path = format!("{path}.{second}");
                self.push(
                    Finding::new(
                        "inventory::volume-kind",
                        &second_path,
                        self.key_span(&second_path),
                        format!(
                            "volume `{}` of node `{}` sets both `{first}` and `{second}`",
                            volume.name, node.name
                        ),
                    )
                    .label(format!("`{second}` here"))
                    .also(self.key_span(&format!("{path}.{first}")), format!("`{first}` here"))
                    .help("keep exactly one of `lvm`, `sparse` and `rawBlock`; declare another volume for the other"),
                );
            }
        }
    }

    fn unique_volume_names(&mut self, node: &Node, volumes: &[(String, &Volume)]) {
        let mut first_seen: HashMap<&str, &str> = HashMap::new();
        for (path, volume) in volumes {
            let name_path = format!("{path}.name");
            if let Some(first) = first_seen.insert(&volume.name, path) {
                let finding = Finding::new(
                    "inventory::duplicate-volume",
                    &name_path,
                    self.value_span(&name_path),
                    format!(
                        "node `{}` has two volumes named `{}`",
                        node.name, volume.name
                    ),
                )
                .label("used again here")
                .also(self.value_span(&format!("{first}.name")), "first used here")
                .help("give every volume of a node its own name");
                self.push(finding);
            }
        }
    }

    /// A disk belongs to one volume, except that the LVM volumes of one volume group all
    /// name the group's disks (or leave them to one of them).
    fn devices_not_shared(&mut self, node: &Node, volumes: &[(String, &Volume)]) {
        let mut owners: HashMap<&str, (&str, &Volume, String)> = HashMap::new();
        let mut group_devices: HashMap<&str, (&str, Vec<&str>)> = HashMap::new();
        for (path, volume) in volumes {
            for (device, device_path) in device_paths(path, volume) {
                match owners.get(device) {
                    Some((_, owner, _)) if same_volume_group(owner, volume) => {}
                    Some((_, owner, first_path)) => {
                        let finding = Finding::new(
                            "inventory::device-shared",
                            &device_path,
                            self.value_span(&device_path),
                            format!(
                                "volumes `{}` and `{}` of node `{}` both use the device `{device}`",
                                owner.name, volume.name, node.name
                            ),
                        )
                        .label("used again here")
                        .also(self.value_span(first_path), "first used here")
                        .help("give each volume its own device; only LVM volumes of the same `vg` may share disks");
                        self.push(finding);
                    }
                    None => {
                        owners.insert(device, (path.as_str(), volume, device_path));
                    }
                }
            }
            self.volume_group_consistent(node, path, volume, &mut group_devices);
        }
    }

    fn volume_group_consistent<'v>(
        &mut self,
        node: &Node,
        path: &'v str,
        volume: &'v Volume,
        group_devices: &mut HashMap<&'v str, (&'v str, Vec<&'v str>)>,
    ) {
        let Some(lvm) = &volume.lvm else {
            return;
        };
        if lvm.devices.is_empty() {
            return;
        }
        let mut devices: Vec<&str> = lvm.devices.iter().map(String::as_str).collect();
        devices.sort_unstable();
        match group_devices.get(lvm.vg.as_str()) {
            Some((first_path, first_devices)) if *first_devices != devices => {
                let devices_path = format!("{path}.lvm.devices");
                let finding = Finding::new(
                    "inventory::volume-group-devices",
                    &devices_path,
                    self.value_span(&devices_path),
                    format!(
                        "volumes of node `{}` list different devices for the volume group `{}`",
                        node.name, lvm.vg
                    ),
                )
                .label("these devices")
                .also(
                    self.value_span(&format!("{first_path}.lvm.devices")),
                    "differ from these",
                )
                .help("list the same devices on every volume of a volume group, or on one of them only");
                self.push(finding);
            }
            Some(_) => {}
            None => {
                group_devices.insert(&lvm.vg, (path, devices));
            }
        }
    }
}

fn device_paths<'v>(path: &str, volume: &'v Volume) -> Vec<(&'v str, String)> {
    let mut devices = Vec::new();
    if let Some(lvm) = &volume.lvm {
        for (position, device) in lvm.devices.iter().enumerate() {
            devices.push((device.as_str(), format!("{path}.lvm.devices[{position}]")));
        }
    }
    if let Some(raw) = &volume.raw_block {
        devices.push((raw.device.as_str(), format!("{path}.rawBlock.device")));
    }
    devices
}

fn same_volume_group(a: &Volume, b: &Volume) -> bool {
    match (&a.lvm, &b.lvm) {
        (Some(a), Some(b)) => a.vg == b.vg,
        _ => false,
    }
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The control-plane and workload-plane networks may be the same network: small sites
/// often have a single one.
fn planes_may_share(a: &str, b: &str) -> bool {
    let plane = |path: &str| {
        if path.starts_with("networks.controlPlane[") {
            Some("controlPlane")
        } else if path.starts_with("networks.workloadPlane[") {
            Some("workloadPlane")
        } else {
            None
        }
    };
    matches!((plane(a), plane(b)), (Some(x), Some(y)) if x != y)
}
