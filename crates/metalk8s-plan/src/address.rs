//! Which address a node uses on the control-plane network (what /etc/hosts and chrony
//! point at) and on the workload-plane network (what its kubelet serving certificate may
//! also name).

use std::collections::BTreeMap;
use std::net::IpAddr;

use metalk8s_model::Facts;
use metalk8s_model::inventory::{Inventory, Node};

/// The node's address in `networks.controlPlane`: its declared `controlPlaneIP`, else the
/// one address among its interfaces that lies in those networks.
///
/// Several such addresses (a second interface, a floating IP) are ambiguous and give
/// `None`, as `metalk8s precheck` refuses them: guessing would let a node advertise an
/// address that may move away.
pub fn control_plane_ip(inventory: &Inventory, node: &Node, facts: &Facts) -> Option<IpAddr> {
    metalk8s_model::network::plane_address(
        node.control_plane_ip,
        &inventory.networks.control_plane,
        facts,
    )
}

/// The node's address in `networks.workloadPlane`: its declared `workloadPlaneIP`, else the
/// one address among its interfaces that lies in those networks (several give `None`, for
/// the reason [`control_plane_ip`] gives).
pub fn workload_plane_ip(inventory: &Inventory, node: &Node, facts: &Facts) -> Option<IpAddr> {
    metalk8s_model::network::plane_address(
        node.workload_plane_ip,
        &inventory.networks.workload_plane,
        facts,
    )
}

/// Every node's control-plane address that can be resolved ([`control_plane_ip`]), by
/// node name; a node without facts counts only with a declared `controlPlaneIP`.
pub fn control_plane_ips(
    inventory: &Inventory,
    facts: &BTreeMap<String, Facts>,
) -> BTreeMap<String, IpAddr> {
    inventory
        .nodes
        .iter()
        .filter_map(|node| {
            let ip = match facts.get(&node.name) {
                Some(facts) => control_plane_ip(inventory, node, facts)?,
                None => node.control_plane_ip?,
            };
            Some((node.name.clone(), ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::facts::InterfaceAddress;

    fn inventory(declared: Option<&str>) -> Inventory {
        let mut node =
            serde_json::json!({"name": "n1", "address": "10.0.0.1", "roles": ["worker"]});
        if let Some(ip) = declared {
            node["controlPlaneIP"] = ip.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metalk8s.io/v1alpha1",
            "kind": "Inventory",
            "name": "test",
            "networks": {"controlPlane": ["10.0.0.0/24", "fd00::/64"], "workloadPlane": ["10.1.0.0/24"]},
            "nodes": [node],
        }))
        .unwrap()
    }

    fn facts(addresses: &[&str]) -> Facts {
        Facts {
            addresses: addresses
                .iter()
                .enumerate()
                .map(|(index, address)| InterfaceAddress {
                    interface: format!("eth{index}"),
                    address: address.parse().unwrap(),
                    prefix_len: 24,
                })
                .collect(),
            ..Facts::default()
        }
    }

    fn ip_of(declared: Option<&str>, addresses: &[&str]) -> Option<IpAddr> {
        let inventory = inventory(declared);
        control_plane_ip(&inventory, &inventory.nodes[0], &facts(addresses))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_declared_address_wins_even_when_not_seen() {
        assert_eq!(ip_of(Some("10.0.0.9"), &["10.0.0.5"]), ip("10.0.0.9"));
        assert_eq!(ip_of(Some("10.0.0.9"), &[]), ip("10.0.0.9"));
    }

    #[test]
    fn the_one_address_inside_the_network_is_found() {
        assert_eq!(
            ip_of(None, &["127.0.0.1", "10.1.0.5", "10.0.0.5"]),
            ip("10.0.0.5")
        );
        assert_eq!(ip_of(None, &["fe80::1", "fd00::5"]), ip("fd00::5"));
        assert_eq!(ip_of(None, &["10.0.0.5", "10.0.0.5"]), ip("10.0.0.5"));
    }

    #[test]
    fn no_address_or_several_give_none() {
        assert_eq!(ip_of(None, &["10.1.0.5", "192.168.1.5"]), None);
        assert_eq!(ip_of(None, &[]), None);
        assert_eq!(ip_of(None, &["10.0.0.5", "10.0.0.6"]), None);
        assert_eq!(ip_of(None, &["10.0.0.5", "fd00::5"]), None);
    }

    #[test]
    fn the_workload_plane_address_is_found_in_its_own_networks() {
        let inventory = inventory(None);
        let node = &inventory.nodes[0];
        let found = workload_plane_ip(&inventory, node, &facts(&["10.0.0.5", "10.1.0.5"]));
        assert_eq!(found, ip("10.1.0.5"));
        assert_eq!(
            workload_plane_ip(&inventory, node, &facts(&["10.0.0.5"])),
            None
        );
    }
}
