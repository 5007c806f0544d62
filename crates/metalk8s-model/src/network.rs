//! Which address and interface of a node carry its control plane and its workload plane,
//! read from the inventory and the node's facts. The planner (the CNI's MTU, the
//! interface it autodetects) and the pre-checks both ask here, so they never disagree.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::facts::Facts;
use crate::inventory::{Inventory, Node};

/// The interface holding a node's address on one plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaneInterface {
    /// As `ip` names it, without the `@peer` suffix: `eth1`, `bond0.20`.
    pub name: String,
    /// The node's address on the plane.
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The interface's MTU; `None` when the facts come from an agent that did not gather
    /// interfaces.
    pub mtu: Option<u32>,
}

/// The node's address on a plane: `declared` (its `controlPlaneIP` / `workloadPlaneIP`)
/// when set, else the one address among its interfaces that lies in `networks`.
///
/// Several such addresses (a second interface, a floating IP) are ambiguous and give
/// `None`, as `metalk8s precheck` refuses them: guessing would let a node advertise an
/// address that may move away. The same address on two interfaces is still one address.
pub fn plane_address(
    declared: Option<IpAddr>,
    networks: &[IpNet],
    facts: &Facts,
) -> Option<IpAddr> {
    if let Some(declared) = declared {
        return Some(declared);
    }
    let mut inside = facts
        .addresses
        .iter()
        .map(|interface| interface.address)
        .filter(|address| networks.iter().any(|network| network.contains(address)));
    let first = inside.next()?;
    inside.all(|other| other == first).then_some(first)
}

/// The interface carrying the node's control-plane traffic: the one holding its
/// `controlPlaneIP`, or else its one address inside `networks.controlPlane`
/// ([`plane_address`]). `None` when there is no such address, or no interface holds it.
pub fn control_plane_interface(
    inventory: &Inventory,
    node: &Node,
    facts: &Facts,
) -> Option<PlaneInterface> {
    let address = plane_address(
        node.control_plane_ip,
        &inventory.networks.control_plane,
        facts,
    )?;
    interface_holding(facts, address)
}

/// The interface carrying the node's pod traffic: the one holding its `workloadPlaneIP`,
/// or else its one address inside `networks.workloadPlane` ([`plane_address`]). Its MTU
/// minus the encapsulation overhead is the pods' MTU. `None` when there is no such
/// address, or no interface holds it.
pub fn workload_plane_interface(
    inventory: &Inventory,
    node: &Node,
    facts: &Facts,
) -> Option<PlaneInterface> {
    let address = plane_address(
        node.workload_plane_ip,
        &inventory.networks.workload_plane,
        facts,
    )?;
    interface_holding(facts, address)
}

/// The first interface holding `address`, with its MTU when gathered.
pub fn interface_holding(facts: &Facts, address: IpAddr) -> Option<PlaneInterface> {
    let held = facts
        .addresses
        .iter()
        .find(|held| held.address == address)?;
    let mtu = facts
        .interfaces
        .iter()
        .find(|interface| interface.name == held.interface)
        .map(|interface| interface.mtu);
    Some(PlaneInterface {
        name: held.interface.clone(),
        address,
        prefix_len: held.prefix_len,
        mtu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Interface, InterfaceAddress};

    fn inventory(workload_plane_ip: Option<&str>) -> Inventory {
        let mut node =
            serde_json::json!({"name": "n1", "address": "10.0.0.11", "roles": ["worker"]});
        if let Some(ip) = workload_plane_ip {
            node["workloadPlaneIP"] = ip.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metalk8s.io/v1alpha1",
            "kind": "Inventory",
            "name": "test",
            "networks": {"controlPlane": ["10.0.0.0/24"], "workloadPlane": ["10.1.0.0/24"]},
            "nodes": [node],
        }))
        .unwrap()
    }

    fn facts() -> Facts {
        let address = |interface: &str, address: &str| InterfaceAddress {
            interface: interface.to_owned(),
            address: address.parse().unwrap(),
            prefix_len: 24,
        };
        let interface = |name: &str, mtu| Interface {
            name: name.to_owned(),
            mtu,
        };
        Facts {
            addresses: vec![
                address("lo", "127.0.0.1"),
                address("eth0", "10.0.0.11"),
                address("eth1", "10.1.0.11"),
                address("eth2", "10.9.0.5"),
            ],
            interfaces: vec![
                interface("lo", 65536),
                interface("eth0", 1500),
                interface("eth1", 9000),
                interface("eth2", 1400),
            ],
            ..Facts::default()
        }
    }

    #[test]
    fn each_plane_has_its_own_interface_and_mtu() {
        let inventory = inventory(None);
        let node = &inventory.nodes[0];
        let workload = workload_plane_interface(&inventory, node, &facts()).unwrap();
        assert_eq!(
            (
                workload.name.as_str(),
                workload.mtu,
                workload.address.to_string()
            ),
            ("eth1", Some(9000), "10.1.0.11".to_owned())
        );
        let control = control_plane_interface(&inventory, node, &facts()).unwrap();
        assert_eq!((control.name.as_str(), control.mtu), ("eth0", Some(1500)));
    }

    #[test]
    fn a_declared_address_outside_the_networks_names_its_interface() {
        let inventory = inventory(Some("10.9.0.5"));
        let found = workload_plane_interface(&inventory, &inventory.nodes[0], &facts()).unwrap();
        assert_eq!((found.name.as_str(), found.mtu), ("eth2", Some(1400)));
    }

    #[test]
    fn no_interface_or_no_mtu_is_said() {
        let inventory = inventory(Some("10.1.0.99"));
        assert_eq!(
            workload_plane_interface(&inventory, &inventory.nodes[0], &facts()),
            None
        );
        let mut older = facts();
        older.interfaces.clear();
        let inventory = super::tests::inventory(None);
        let found = workload_plane_interface(&inventory, &inventory.nodes[0], &older).unwrap();
        assert_eq!((found.name.as_str(), found.mtu), ("eth1", None));
    }

    #[test]
    fn facts_without_the_network_fields_still_read() {
        let older = serde_json::json!({
            "hostname": "n1", "os": {"id": "debian", "versionId": "12", "prettyName": ""},
            "kernel": "6.1", "cpus": 1, "memoryBytes": 1, "swapBytes": 0, "varFreeBytes": 1,
            "clockOffset": 0.0, "clockUncertainty": 0.0, "addresses": [], "listening": [],
            "packages": {}, "resolved": {}, "devices": {}
        });
        let facts: Facts = serde_json::from_value(older).unwrap();
        assert!(facts.interfaces.is_empty() && facts.routes.is_empty());
        assert_eq!(facts.wireguard, None);
    }
}
