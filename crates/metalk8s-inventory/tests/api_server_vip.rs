//! `networks.apiServerVIP` against generated networks and nodes: the inventory is refused
//! exactly when the VIP lies outside every control-plane CIDR (another IP family included)
//! or is one of a node's addresses, each problem at the VIP with the code that says which,
//! as an oracle written here with std's and ipnet's own `contains` decides.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use metalk8s_inventory::parse;
use proptest::prelude::*;
use proptest::sample::select;

/// Addresses drawn from a few small ranges, so that VIPs, node addresses and networks
/// collide often.
fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..2, 0u8..6).prop_map(|(third, last)| IpAddr::V4(Ipv4Addr::new(10, 10, third, last))),
        (0u16..8).prop_map(|last| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, last))),
    ]
}

fn control_plane() -> impl Strategy<Value = Vec<IpNet>> {
    let nets: Vec<IpNet> = [
        "10.10.0.0/24",
        "10.10.1.0/30",
        "fd00:10::/126",
        "fd00:10::4/127",
    ]
    .iter()
    .map(|net| net.parse().unwrap())
    .collect();
    proptest::sample::subsequence(nets, 1..=2)
}

/// A node's `address`, `controlPlaneIP` and `workloadPlaneIP`.
type NodeIps = (IpAddr, Option<IpAddr>, Option<IpAddr>);

fn yaml(control_plane: &[IpNet], vip: IpAddr, nodes: &[NodeIps]) -> String {
    let nets: Vec<String> = control_plane
        .iter()
        .map(|net| format!("\"{net}\""))
        .collect();
    let mut text = format!(
        "apiVersion: metalk8s.io/v1alpha1\nkind: Inventory\nname: demo\nnetworks:\n  \
         controlPlane: [{nets}]\n  workloadPlane: [{nets}]\n  apiServerVIP: \"{vip}\"\nnodes:\n",
        nets = nets.join(", ")
    );
    for (index, (address, control_plane_ip, workload_plane_ip)) in nodes.iter().enumerate() {
        let roles = if index == 0 {
            "[bootstrap, etcd, control-plane, worker]"
        } else {
            "[worker]"
        };
        text.push_str(&format!(
            "  - name: node-{index}\n    address: \"{address}\"\n    roles: {roles}\n"
        ));
        if let Some(ip) = control_plane_ip {
            text.push_str(&format!("    controlPlaneIP: \"{ip}\"\n"));
        }
        if let Some(ip) = workload_plane_ip {
            text.push_str(&format!("    workloadPlaneIP: \"{ip}\"\n"));
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_vip_is_refused_exactly_when_outside_or_taken(
        control_plane in control_plane(),
        vip in ip(),
        // Distinct addresses per node, so that only the VIP's problems are at stake.
        offsets in proptest::collection::btree_set(0u8..8, 1..4),
        with_ips in proptest::collection::vec((any::<bool>(), any::<bool>()), 4),
        family in select(vec![4u8, 6]),
    ) {
        let address = |offset: u8| -> IpAddr {
            if family == 4 {
                IpAddr::V4(Ipv4Addr::new(10, 10, 0, offset))
            } else {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, u16::from(offset)))
            }
        };
        // Every node IP only from its own offset, so that nodes never share one.
        let nodes: Vec<NodeIps> = offsets
            .iter()
            .zip(&with_ips)
            .map(|(offset, (cp, wp))| {
                let own = address(*offset);
                (own, cp.then_some(own), wp.then_some(own))
            })
            .collect();
        let text = yaml(&control_plane, vip, &nodes);
        let inside = |ip: &IpAddr| control_plane.iter().any(|net| net.contains(ip));
        let mut expected = BTreeSet::new();
        if !inside(&vip) {
            expected.insert("inventory::vip-outside-network");
        }
        if nodes.iter().any(|(address, ..)| *address == vip) {
            expected.insert("inventory::vip-is-node-address");
        }
        let result = parse("generated.yaml", &text);
        let vip_problems: Vec<_> = match &result {
            Ok(_) => Vec::new(),
            Err(error) => error
                .problems()
                .iter()
                .filter(|problem| problem.code.starts_with("inventory::vip-"))
                .collect(),
        };
        let found: BTreeSet<&str> = vip_problems.iter().map(|problem| problem.code).collect();
        prop_assert_eq!(&found, &expected, "{}", text);
        for problem in &vip_problems {
            prop_assert_eq!(&problem.path, "networks.apiServerVIP");
            prop_assert_eq!(problem.line, 7, "the VIP is on line 7 of\n{}", text);
            prop_assert!(!problem.help.is_empty());
        }
        // Node IPs outside the networks are the only other problem these inventories have.
        if let Err(error) = &result {
            for problem in error.problems() {
                prop_assert!(
                    problem.code.starts_with("inventory::vip-")
                        || problem.code == "inventory::ip-outside-network",
                    "unexpected {}: {}\n{}",
                    problem.code,
                    problem.message,
                    common::render(error)
                );
            }
        } else {
            prop_assert!(expected.is_empty());
        }
    }
}
