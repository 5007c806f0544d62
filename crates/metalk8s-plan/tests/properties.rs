//! Properties of the plans of generated valid inventories: 1 to 9 nodes with random roles
//! that satisfy the inventory's rules, mixed distributions, and random OS settings.

mod common;

use std::collections::BTreeMap;

use metalk8s_model::Facts;
use metalk8s_model::PhaseName;
use metalk8s_model::facts::{InterfaceAddress, OsRelease};
use metalk8s_model::plan::{Plan, Resource};
use metalk8s_plan::{PlanError, plan};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Value, json};

const DISTRIBUTIONS: &[(&str, &str)] = &[
    ("debian", "12"),
    ("ubuntu", "24.04"),
    ("rocky", "9.4"),
    ("rhel", "8.10"),
    ("almalinux", "9.3"),
];

/// One generated cluster: the inventory as JSON (which is YAML too) and every node's facts.
#[derive(Debug)]
struct Cluster {
    inventory: String,
    facts: BTreeMap<String, Facts>,
}

/// Which nodes get which role, by node index: exactly one bootstrap, 1, 3, 5 or 7 etcd
/// members, at least one control plane and at least one worker or infra node.
#[derive(Debug, Clone)]
struct Roles {
    bootstrap: usize,
    etcd: Vec<usize>,
    control_planes: Vec<usize>,
    workloads: Vec<usize>,
    infra: Vec<bool>,
}

fn roles(count: usize) -> impl Strategy<Value = Roles> {
    let indices: Vec<usize> = (0..count).collect();
    let etcd_sizes: Vec<usize> = [1, 3, 5, 7].into_iter().filter(|k| *k <= count).collect();
    let etcd = {
        let indices = indices.clone();
        select(etcd_sizes).prop_flat_map(move |size| subsequence(indices.clone(), size))
    };
    (
        0..count,
        etcd,
        subsequence(indices.clone(), 1..=count),
        subsequence(indices, 1..=count),
        prop::collection::vec(any::<bool>(), count),
    )
        .prop_map(
            |(bootstrap, etcd, control_planes, workloads, infra)| Roles {
                bootstrap,
                etcd,
                control_planes,
                workloads,
                infra,
            },
        )
}

impl Roles {
    fn of(&self, index: usize) -> Vec<&'static str> {
        let mut roles = Vec::new();
        if self.bootstrap == index {
            roles.push("bootstrap");
        }
        if self.etcd.contains(&index) {
            roles.push("etcd");
        }
        if self.control_planes.contains(&index) {
            roles.push("control-plane");
        }
        // A node left without a role by the draws above becomes a worker: every node has
        // at least one role.
        if self.workloads.contains(&index) || roles.is_empty() {
            roles.push(if self.infra[index] { "infra" } else { "worker" });
        }
        roles
    }
}

fn os_settings() -> impl Strategy<Value = Value> {
    (
        subsequence(
            vec!["ntp1.example.com", "10.0.0.1", "time.example.org"],
            0..=3,
        ),
        prop::collection::btree_map(
            select(vec![
                "vm.max_map_count",
                "net.core.somaxconn",
                "fs.nr_open",
                "kernel.pid_max",
            ]),
            select(vec!["1", "65536", "4194304"]),
            0..3,
        ),
        subsequence(vec!["ip_vs", "overlay", "nf_conntrack"], 0..=3),
        subsequence(vec!["jq", "lvm2", "chrony"], 0..=3),
        select(vec![65536u64, 1 << 20, 4 << 20]),
    )
        .prop_map(|(servers, sysctls, modules, packages, nofile)| {
            json!({
                "sysctls": sysctls,
                "kernelModules": modules,
                "packages": packages,
                "ntp": {"servers": servers},
                "nofile": nofile,
            })
        })
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (1usize..=9)
        .prop_flat_map(|count| {
            (
                roles(count),
                prop::collection::vec(any::<bool>(), count),
                prop::collection::vec(select(DISTRIBUTIONS), count),
                os_settings(),
                prop::option::of(select(vec!["http://proxy:3128", "https://proxy:3129"])),
                any::<bool>(),
            )
        })
        .prop_map(|(roles, declared, distributions, os, proxy, ipv6_pods)| {
            build(&roles, &declared, &distributions, os, proxy, ipv6_pods)
        })
}

fn build(
    roles: &Roles,
    declared: &[bool],
    distributions: &[(&str, &str)],
    os: Value,
    proxy: Option<&str>,
    ipv6_pods: bool,
) -> Cluster {
    let mut nodes = Vec::new();
    let mut facts = BTreeMap::new();
    for (index, declare) in declared.iter().enumerate() {
        let name = format!("node-{index}");
        // Two control-plane networks, nodes alternating between them.
        let address = format!("10.1{}.0.{}", index % 2, 10 + index);
        let mut node = json!({"name": name, "address": address, "roles": roles.of(index)});
        if *declare {
            node["controlPlaneIP"] = json!(address);
        }
        nodes.push(node);
        let (id, version) = distributions[index];
        facts.insert(name, facts_of(id, version, &address, index));
    }
    let mut inventory = json!({
        "apiVersion": "metalk8s.io/v1alpha1",
        "kind": "Inventory",
        "name": "generated",
        "networks": {
            "controlPlane": ["10.10.0.0/24", "10.11.0.0/24"],
            "workloadPlane": ["10.20.0.0/24"],
        },
        "os": os,
        "nodes": nodes,
    });
    if ipv6_pods {
        inventory["networks"]["pods"] = json!("fd00:10:233::/56");
    }
    if let Some(url) = proxy {
        inventory["proxy"] = json!({"https": url});
    }
    Cluster {
        inventory: serde_json::to_string_pretty(&inventory).unwrap(),
        facts,
    }
}

fn facts_of(id: &str, version: &str, address: &str, index: usize) -> Facts {
    let interface = |name: &str, address: &str, prefix_len| InterfaceAddress {
        interface: name.to_owned(),
        address: address.parse().unwrap(),
        prefix_len,
    };
    Facts {
        hostname: "localhost".to_owned(),
        os: OsRelease {
            id: id.to_owned(),
            version_id: version.to_owned(),
            pretty_name: String::new(),
        },
        addresses: vec![
            interface("lo", "127.0.0.1", 8),
            interface("eth0", address, 24),
            interface("eth1", &format!("10.20.0.{}", 10 + index), 24),
        ],
        ..Facts::default()
    }
}

fn planned(cluster: &Cluster) -> (metalk8s_model::Inventory, Plan) {
    let inventory =
        metalk8s_inventory::parse("generated.yaml", &cluster.inventory).unwrap_or_else(|error| {
            panic!(
                "generated an invalid inventory: {error:?}\n{}",
                cluster.inventory
            )
        });
    let plan = plan(
        &inventory,
        &cluster.facts,
        &common::bundled(&inventory),
        &phases(&inventory, cluster),
    )
    .expect("a valid cluster can be planned");
    (inventory, plan)
}

/// Every phase, but etcd only when every member runs an apt distribution: etcd packages
/// come from apt only yet (`etcd_is_refused_on_dnf_members` checks the other case), and
/// the bundle's phases only when every node does (the repository serves APT only).
fn phases(inventory: &metalk8s_model::Inventory, cluster: &Cluster) -> Vec<PhaseName> {
    let dnf_etcd = dnf_etcd_member(inventory, cluster).is_some();
    let dnf_node = cluster
        .facts
        .values()
        .any(|facts| !matches!(facts.os.id.as_str(), "debian" | "ubuntu"));
    PhaseName::ALL
        .into_iter()
        .filter(|phase| match phase {
            PhaseName::Etcd => !dnf_etcd,
            PhaseName::Repository | PhaseName::Containerd | PhaseName::Kubernetes => !dnf_node,
            PhaseName::Os => true,
        })
        .collect()
}

fn dnf_etcd_member(inventory: &metalk8s_model::Inventory, cluster: &Cluster) -> Option<String> {
    inventory
        .nodes_with(metalk8s_model::inventory::Role::Etcd)
        .find(|node| {
            !matches!(
                cluster.facts[&node.name].os.id.as_str(),
                "debian" | "ubuntu"
            )
        })
        .map(|node| node.name.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_node_has_a_host_plan_in_every_phase(cluster in cluster()) {
        let (inventory, plan) = planned(&cluster);
        let names: Vec<&str> = inventory.nodes.iter().map(|node| node.name.as_str()).collect();
        let phase_names: Vec<PhaseName> = plan.phases.iter().map(|phase| phase.name).collect();
        prop_assert_eq!(phase_names, phases(&inventory, &cluster));
        let bootstrap_of = |inventory: &metalk8s_model::Inventory| {
            inventory.nodes_with(metalk8s_model::inventory::Role::Bootstrap).next().unwrap().name.clone()
        };
        let members: Vec<&str> = inventory
            .nodes_with(metalk8s_model::inventory::Role::Etcd)
            .map(|node| node.name.as_str())
            .collect();
        for phase in &plan.phases {
            let hosts: Vec<&str> = phase.hosts.iter().map(|host| host.node.as_str()).collect();
            match phase.name {
                PhaseName::Etcd => prop_assert_eq!(&hosts, &members),
                // The bootstrap node first, then the others in inventory order.
                PhaseName::Repository => {
                    prop_assert_eq!(hosts.len(), names.len());
                    let bootstrap = bootstrap_of(&inventory);
                    prop_assert_eq!(hosts[0], bootstrap.as_str());
                }
                PhaseName::Os | PhaseName::Containerd => prop_assert_eq!(&hosts, &names),
                // Control planes first (one at a time), then the others, in inventory order.
                PhaseName::Kubernetes => {
                    let control_planes: Vec<&str> = inventory
                        .nodes_with(metalk8s_model::inventory::Role::ControlPlane)
                        .map(|node| node.name.as_str())
                        .collect();
                    let others = names.iter().filter(|name| !control_planes.contains(name));
                    let expected: Vec<&str> = control_planes.iter().copied().chain(others.copied()).collect();
                    prop_assert_eq!(&hosts, &expected);
                }
            }
        }
    }

    #[test]
    fn a_step_that_manages_one_named_thing_is_named_by_it(cluster in cluster()) {
        let (_, plan) = planned(&cluster);
        for host in plan.phases.iter().flat_map(|phase| &phase.hosts) {
            for step in &host.steps {
                if let Some(natural) = step.resource.natural_id() {
                    prop_assert_eq!(&step.id, &natural, "{} on {}", step.id, host.node);
                }
            }
        }
    }

    #[test]
    fn steps_are_unique_and_depend_only_on_earlier_steps(cluster in cluster()) {
        let (_, plan) = planned(&cluster);
        for host in plan.phases.iter().flat_map(|phase| &phase.hosts) {
            let mut earlier: Vec<&str> = Vec::new();
            for step in &host.steps {
                prop_assert!(!earlier.contains(&step.id.as_str()), "{} repeats {}", host.node, step.id);
                for needed in step.after.iter().chain(&step.watch) {
                    prop_assert!(
                        earlier.contains(&needed.as_str()),
                        "{}: {} refers to {}, not an earlier step", host.node, step.id, needed
                    );
                }
                earlier.push(&step.id);
            }
        }
    }

    #[test]
    fn etcd_is_refused_on_dnf_members(cluster in cluster()) {
        let (inventory, _) = planned(&cluster);
        if let Some(member) = dnf_etcd_member(&inventory, &cluster) {
            let error = plan(&inventory, &cluster.facts, &common::inputs(&inventory), &[PhaseName::Etcd]).unwrap_err();
            prop_assert!(matches!(&error, PlanError::NoEtcdPackage { node } if *node == member), "{:?}", error);
        }
    }

    #[test]
    fn planning_twice_gives_the_same_bytes(cluster in cluster()) {
        let (inventory, first) = planned(&cluster);
        let second = plan(&inventory, &cluster.facts, &common::bundled(&inventory), &phases(&inventory, &cluster)).unwrap();
        prop_assert_eq!(
            serde_json::to_string(&first).unwrap(),
            serde_json::to_string(&second).unwrap()
        );
    }

    #[test]
    fn keys_are_secret_and_no_source_is_trusted_blindly(cluster in cluster()) {
        let (_, plan) = planned(&cluster);
        for host in plan.phases.iter().flat_map(|phase| &phase.hosts) {
            for step in &host.steps {
                if let Resource::File(file) = &step.resource {
                    // Every key and the joins' bootstrap token, and only those, are secret
                    // (never shown, never backed up), 0600.
                    let token = file.path == "/etc/kubernetes/kubeadm/bootstrap-token";
                    prop_assert_eq!(file.secret, file.path.ends_with(".key") || token, "{}: {}", host.node, &file.path);
                    if file.secret {
                        prop_assert_eq!(file.mode, 0o600, "{}: {}", host.node, &file.path);
                    }
                    prop_assert!(!file.content.contains("trusted=yes"), "{}: {}", host.node, &file.path);
                }
            }
        }
    }

    #[test]
    fn the_bootstrap_node_alone_serves_time_and_everyone_knows_everyone(cluster in cluster()) {
        let (inventory, plan) = planned(&cluster);
        let bootstrap = &inventory.nodes_with(metalk8s_model::inventory::Role::Bootstrap).next().unwrap().name;
        for host in &plan.phases[0].hosts {
            let chrony = host.steps.iter().find_map(|step| match &step.resource {
                Resource::File(file) if file.path.contains("chrony") => Some(&file.content),
                _ => None,
            });
            let chrony = chrony.expect("every node configures chrony");
            prop_assert_eq!(chrony.contains("\nallow "), &host.node == bootstrap);
            let entries = host.steps.iter().find_map(|step| match &step.resource {
                Resource::HostsEntries(hosts) => Some(hosts.entries.len()),
                _ => None,
            });
            prop_assert_eq!(entries, Some(inventory.nodes.len()));
        }
    }
}
