//! The shape of a lab decided without touching anything: names, addresses, roles and the
//! inventory handed to `metalk8s deploy`. Pure functions, unit-tested.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use metalk8s_model::Inventory;
use metalk8s_model::inventory::{API_VERSION, KIND, Node, Prechecks, Role, SshSettings, Storage};
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::LabError;

/// Lab networks are /24s carved out of this range, which docker leaves alone by default.
pub(crate) const SUPERNET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(172, 30, 0, 0), 16);

/// Host part of node1's address; below it sit the gateway (.1) and room for later needs
/// (a virtual IP, say).
const FIRST_NODE_HOST: u8 = 11;

/// Label put on every docker object of a lab, so `down` finds them without any state file.
pub(crate) const LABEL: &str = "metalk8s.lab";

/// Lab names end up in docker object names, host names and paths: keep them to what all
/// three accept.
pub(crate) fn validate_name(name: &str) -> Result<(), LabError> {
    let invalid = |reason| {
        Err(LabError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 40 {
        return invalid("it must be 1 to 40 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return invalid("only lowercase letters, digits and `-` are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("it must start and end with a letter or a digit");
    }
    Ok(())
}

pub(crate) fn network_name(lab: &str) -> String {
    format!("metalk8s-lab-{lab}")
}

/// The second network of a lab that has one ([`crate::LabSpec::workload_network`]);
/// also what its subnet candidates are derived from, so it starts elsewhere than the first.
pub(crate) fn workload_network_name(lab: &str) -> String {
    format!("metalk8s-lab-{lab}-workload")
}

pub(crate) fn node_name(index: usize) -> String {
    format!("node{index}")
}

pub(crate) fn container_name(lab: &str, index: usize) -> String {
    format!("metalk8s-lab-{lab}-node{index}")
}

pub(crate) fn containerd_volume_name(lab: &str, index: usize) -> String {
    format!("metalk8s-lab-{lab}-node{index}-containerd")
}

/// The device name of the `disk`-th spare disk (0-based) inside a node: /dev/vdb, /dev/vdc…
/// (vda being, on a real VM, the system disk).
pub(crate) fn disk_device(disk: usize) -> String {
    let letter = char::from(b'b' + u8::try_from(disk).expect("disk index checked by the spec"));
    format!("/dev/vd{letter}")
}

/// Largest number of nodes: their addresses must fit in the lab's /24 from .11 up.
pub(crate) const MAX_NODES: usize = 254 - FIRST_NODE_HOST as usize + 1;

/// Largest number of spare disks per node: /dev/vdb to /dev/vdz.
pub(crate) const MAX_DISKS: usize = 25;

/// The /24s a lab may use, in the order they are tried: starting at one derived from the
/// name (so a lab keeps its addresses from one run to the next) and then every other one,
/// so a clash with an existing network only moves the lab, never fails it.
pub(crate) fn subnet_candidates(lab: &str) -> impl Iterator<Item = Ipv4Net> {
    let digest = Sha256::digest(lab.as_bytes());
    let start = usize::from(digest[0]);
    (0..256).map(move |offset| {
        let third = u8::try_from((start + offset) % 256).expect("modulo 256");
        let [a, b, _, _] = SUPERNET.network().octets();
        Ipv4Net::new_assert(Ipv4Addr::new(a, b, third, 0), 24)
    })
}

/// The first candidate subnet for `lab` that overlaps none of `taken`.
pub(crate) fn choose_subnet(lab: &str, taken: &[IpNet]) -> Option<Ipv4Net> {
    subnet_candidates(lab).find(|candidate| {
        let candidate = IpNet::V4(*candidate);
        !taken
            .iter()
            .any(|net| net.contains(&candidate.network()) || candidate.contains(&net.network()))
    })
}

pub(crate) fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Address of node `index` (1-based): .11, .12, …
pub(crate) fn node_ip(subnet: Ipv4Net, index: usize) -> Ipv4Addr {
    let host = u32::try_from(index - 1).expect("node count checked by the spec")
        + u32::from(FIRST_NODE_HOST);
    Ipv4Addr::from(u32::from(subnet.network()) + host)
}

/// Roles of node `index` (1-based) in a lab of `count` nodes.
///
/// node1 is bootstrap; the first three nodes run etcd and the control plane, except in a
/// 2-node lab where a second etcd member would give an even (fault-intolerant) count; the
/// others are workers. When that leaves no worker, every control-plane node also takes
/// workloads, so a deployed lab can always run pods.
pub(crate) fn roles(index: usize, count: usize) -> Vec<Role> {
    let control_planes = if count == 2 { 1 } else { count.min(3) };
    let is_control_plane = index <= control_planes;
    let mut roles = Vec::new();
    if index == 1 {
        roles.push(Role::Bootstrap);
    }
    if is_control_plane {
        roles.extend([Role::Etcd, Role::ControlPlane]);
    }
    if !is_control_plane || count == control_planes {
        roles.push(Role::Worker);
    }
    roles
}

/// What the inventory needs to know about one node.
pub(crate) struct InventoryNode<'a> {
    pub name: &'a str,
    pub ip: Ipv4Addr,
    /// On the workload network, when the lab has one.
    pub workload_ip: Option<Ipv4Addr>,
    pub disks: &'a [String],
}

/// The ready-to-deploy inventory of a lab.
pub(crate) fn inventory(
    lab: &str,
    subnet: Ipv4Net,
    workload_subnet: Option<Ipv4Net>,
    identity_file: &Path,
    known_hosts: &Path,
    nodes: &[InventoryNode<'_>],
) -> Inventory {
    let count = nodes.len();
    Inventory {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        name: lab.to_owned(),
        networks: with_model_defaults(json!({
            "controlPlane": [subnet.to_string()],
            "workloadPlane": [workload_subnet.unwrap_or(subnet).to_string()],
        })),
        proxy: None,
        ssh: SshSettings {
            user: "root".to_owned(),
            identity_file: Some(identity_file.display().to_string()),
            known_hosts_file: Some(known_hosts.display().to_string()),
            ..SshSettings::default()
        },
        prechecks: Prechecks::default(),
        os: Default::default(),
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(position, node)| inventory_node(node, roles(position + 1, count)))
            .collect(),
    }
}

fn inventory_node(node: &InventoryNode<'_>, roles: Vec<Role>) -> Node {
    let volumes = node
        .disks
        .iter()
        .map(|device| {
            let short = device.trim_start_matches("/dev/");
            with_model_defaults(json!({
                "name": format!("{}-{short}", node.name),
                "rawBlock": { "device": device },
            }))
        })
        .collect();
    Node {
        name: node.name.to_owned(),
        address: node.ip.to_string(),
        control_plane_ip: Some(node.ip.into()),
        workload_plane_ip: Some(node.workload_ip.unwrap_or(node.ip).into()),
        roles,
        labels: Default::default(),
        taints: Vec::new(),
        ssh: Default::default(),
        storage: Storage { volumes },
    }
}

/// Builds a model value from only the fields the lab decides, so every other field takes
/// the model's own default exactly as when an operator leaves it out of the file (rather
/// than the lab keeping a copy of those defaults that could drift).
fn with_model_defaults<T: DeserializeOwned>(fields: serde_json::Value) -> T {
    serde_json::from_value(fields).expect("the lab writes only fields the model knows")
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn subnet_is_a_stable_24_inside_the_supernet() {
        let first = subnet_candidates("demo").next().unwrap();
        assert_eq!(first, subnet_candidates("demo").next().unwrap());
        assert_eq!(first.prefix_len(), 24);
        assert!(SUPERNET.contains(&first));
    }

    #[test]
    fn different_names_usually_get_different_subnets() {
        let firsts: std::collections::BTreeSet<_> = (0..20)
            .map(|i| subnet_candidates(&format!("lab{i}")).next().unwrap())
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
    }

    #[test]
    fn candidates_cover_every_24_once() {
        let all: std::collections::BTreeSet<_> = subnet_candidates("demo").collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn clashing_subnets_are_skipped() {
        let mut candidates = subnet_candidates("demo");
        let first = candidates.next().unwrap();
        let second = candidates.next().unwrap();
        assert_eq!(choose_subnet("demo", &[]), Some(first));
        assert_eq!(choose_subnet("demo", &[IpNet::V4(first)]), Some(second));
        // A wider network covering the first candidate counts as a clash too.
        let wide: IpNet = format!("{}/20", first.network())
            .parse::<IpNet>()
            .unwrap()
            .trunc();
        let chosen = choose_subnet("demo", &[wide]).unwrap();
        assert!(!wide.contains(&IpNet::V4(chosen).network()));
        assert_eq!(
            choose_subnet("demo", &["172.30.0.0/16".parse().unwrap()]),
            None
        );
    }

    #[test]
    fn nodes_get_fixed_addresses_from_11() {
        let subnet: Ipv4Net = "172.30.7.0/24".parse().unwrap();
        assert_eq!(node_ip(subnet, 1), Ipv4Addr::new(172, 30, 7, 11));
        assert_eq!(node_ip(subnet, 3), Ipv4Addr::new(172, 30, 7, 13));
        assert_eq!(node_ip(subnet, MAX_NODES), Ipv4Addr::new(172, 30, 7, 254));
        assert_eq!(gateway(subnet), Ipv4Addr::new(172, 30, 7, 1));
    }

    fn all_roles(count: usize) -> Vec<Vec<Role>> {
        (1..=count).map(|index| roles(index, count)).collect()
    }

    #[test]
    fn single_node_does_everything() {
        assert_eq!(all_roles(1), [vec![Bootstrap, Etcd, ControlPlane, Worker]]);
    }

    #[test]
    fn two_nodes_keep_one_etcd_member() {
        assert_eq!(
            all_roles(2),
            [vec![Bootstrap, Etcd, ControlPlane], vec![Worker]]
        );
    }

    #[test]
    fn three_nodes_are_control_planes_that_also_run_workloads() {
        assert_eq!(
            all_roles(3),
            [
                vec![Bootstrap, Etcd, ControlPlane, Worker],
                vec![Etcd, ControlPlane, Worker],
                vec![Etcd, ControlPlane, Worker],
            ]
        );
    }

    #[test]
    fn larger_labs_have_three_control_planes_and_workers() {
        assert_eq!(
            all_roles(5),
            [
                vec![Bootstrap, Etcd, ControlPlane],
                vec![Etcd, ControlPlane],
                vec![Etcd, ControlPlane],
                vec![Worker],
                vec![Worker],
            ]
        );
    }

    #[test]
    fn every_lab_size_has_odd_etcd_and_a_worker() {
        for count in 1..=12 {
            let roles = all_roles(count);
            let etcd = roles.iter().filter(|r| r.contains(&Etcd)).count();
            assert_eq!(etcd % 2, 1, "{count} nodes: {roles:?}");
            assert!(roles.iter().any(|r| r.contains(&Worker)), "{count} nodes");
            assert_eq!(roles.iter().filter(|r| r.contains(&Bootstrap)).count(), 1);
        }
    }

    #[test]
    fn disks_are_named_like_virtio_disks() {
        assert_eq!(disk_device(0), "/dev/vdb");
        assert_eq!(disk_device(1), "/dev/vdc");
        assert_eq!(disk_device(MAX_DISKS - 1), "/dev/vdz");
    }

    #[test]
    fn names_must_fit_docker_and_hostnames() {
        assert!(validate_name("demo-1").is_ok());
        for bad in ["", "Demo", "a_b", "-a", "a-", "a/b", &"x".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_workload_network_is_the_workload_plane() {
        let subnet: Ipv4Net = "172.30.9.0/24".parse().unwrap();
        let workload: Ipv4Net = "172.30.40.0/24".parse().unwrap();
        let nodes = [InventoryNode {
            name: "node1",
            ip: node_ip(subnet, 1),
            workload_ip: Some(node_ip(workload, 1)),
            disks: &[],
        }];
        let inventory = inventory(
            "demo",
            subnet,
            Some(workload),
            Path::new("/k"),
            Path::new("/h"),
            &nodes,
        );
        assert_eq!(inventory.networks.control_plane, [IpNet::V4(subnet)]);
        assert_eq!(inventory.networks.workload_plane, [IpNet::V4(workload)]);
        let node1 = &inventory.nodes[0];
        assert_eq!(node1.control_plane_ip, Some("172.30.9.11".parse().unwrap()));
        assert_eq!(
            node1.workload_plane_ip,
            Some("172.30.40.11".parse().unwrap())
        );
        assert_ne!(
            subnet_candidates(&workload_network_name("demo")).next(),
            subnet_candidates("demo").next()
        );
    }

    #[test]
    fn inventory_round_trips_through_yaml() {
        let subnet: Ipv4Net = "172.30.9.0/24".parse().unwrap();
        let disks = vec!["/dev/vdb".to_owned(), "/dev/vdc".to_owned()];
        let nodes: Vec<_> = (1..=2)
            .map(|i| InventoryNode {
                name: if i == 1 { "node1" } else { "node2" },
                ip: node_ip(subnet, i),
                workload_ip: None,
                disks: &disks,
            })
            .collect();
        let inventory = inventory(
            "demo",
            subnet,
            None,
            Path::new("/labs/demo/id_ed25519"),
            Path::new("/labs/demo/known_hosts"),
            &nodes,
        );
        let yaml = serde_saphyr::to_string(&inventory).unwrap();
        let parsed: Inventory = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(parsed, inventory);

        assert_eq!(parsed.networks.control_plane, [IpNet::V4(subnet)]);
        assert_eq!(
            parsed.ssh.identity_file.as_deref(),
            Some("/labs/demo/id_ed25519")
        );
        let node2 = parsed.node("node2").unwrap();
        assert_eq!(node2.address, "172.30.9.12");
        assert_eq!(node2.roles, [Worker]);
        let volume = &node2.storage.volumes[1];
        assert_eq!(volume.name, "node2-vdc");
        assert_eq!(volume.devices(), ["/dev/vdc"]);
    }
}
