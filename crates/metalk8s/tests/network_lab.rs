//! Network facts and pre-checks on a 2-node lab with separate control-plane (`eth0`, MTU
//! 1500) and workload (`eth1`, MTU 1450) networks; needs root and docker. Facts are
//! gathered as `metalk8s precheck` gathers them (SSH, one script per node).
//!
//! The lab's subnets are picked at run time: snapshots show them as `CONTROL.x` and
//! `WORKLOAD.x`.

use std::net::IpAddr;
use std::process::Command;
use std::time::Instant;

use assert_cmd::cargo::CommandCargoExt;
use metalk8s_model::Inventory;
use metalk8s_model::network::{control_plane_interface, workload_plane_interface};
use serde_json::Value;

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(error) = metalk8s_lab::down(&self.0) {
            eprintln!("cleaning up lab {}: {error}", self.0);
        }
    }
}

/// Replaces the lab's run-time subnets with stable names.
struct Redact {
    control: String,
    workload: String,
}

impl Redact {
    fn new(info: &metalk8s_lab::LabInfo) -> Redact {
        let prefix = |network: std::net::Ipv4Addr| {
            let [a, b, c, _] = network.octets();
            format!("{a}.{b}.{c}.")
        };
        let workload = info.workload.as_ref().expect("a workload network");
        Redact {
            control: prefix(info.subnet.network()),
            workload: prefix(workload.subnet.network()),
        }
    }

    fn text(&self, text: &str) -> String {
        text.replace(&self.control, "CONTROL.")
            .replace(&self.workload, "WORKLOAD.")
    }
}

fn precheck(state: &std::path::Path, inventory: &std::path::Path) -> (i32, Value) {
    let output = Command::cargo_bin("metalk8s")
        .unwrap()
        .env("METALK8S_STATE_DIR", state)
        .env("NO_COLOR", "1")
        .env_remove("METALK8S_INVENTORY")
        .args(["precheck", "-o", "json", "-i"])
        .arg(inventory)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "precheck printed no JSON ({error}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

const NETWORK_CHECKS: &[&str] = &[
    "control-plane-ip",
    "workload-plane-ip",
    "pods-network",
    "services-network",
    "workload-plane-mtu",
];

/// The network section of a precheck report: `node check status: message`.
fn network_section(report: &Value, redact: &Redact) -> String {
    let mut lines = Vec::new();
    for node in report["nodes"].as_array().unwrap() {
        for check in node["checks"].as_array().unwrap() {
            let name = check["check"].as_str().unwrap();
            if NETWORK_CHECKS.contains(&name) {
                lines.push(redact.text(&format!(
                    "{} {name} {}: {}",
                    node["node"].as_str().unwrap(),
                    check["status"].as_str().unwrap(),
                    check["message"].as_str().unwrap()
                )));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn the_planes_interfaces_mtus_and_pod_range_on_a_two_network_lab() {
    let started = Instant::now();
    let name = format!("netcheck{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let spec = metalk8s_lab::LabSpec {
        disks_per_node: 0,
        workload_network: true,
        ..metalk8s_lab::LabSpec::new(&name, 2)
    };
    let info = metalk8s_lab::up(&spec, &|m: &str| eprintln!("{m}")).expect("lab up");
    let redact = Redact::new(&info);
    let status = metalk8s_lab::status(&name).expect("lab status");
    assert_eq!(status.workload, info.workload);
    let workload_ips: Vec<String> = status
        .nodes
        .iter()
        .map(|node| redact.text(&format!("{:?}", node.workload_ip)))
        .collect();
    assert_eq!(workload_ips, ["Some(WORKLOAD.11)", "Some(WORKLOAD.12)"]);
    let inventory = metalk8s_inventory::load(&info.inventory).expect("the lab's inventory");
    let state = tempfile::tempdir().unwrap();

    // Facts as `metalk8s precheck` gathers them.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gathered = runtime.block_on(async {
        let options = metalk8s_transport::ConnectOptions::default();
        let mut gathered = Vec::new();
        for (node, host) in metalk8s_transport::connect_all(&inventory, &options).await {
            let host = host.unwrap_or_else(|error| panic!("connecting to {node}: {error}"));
            let request = metalk8s_precheck::request_for(&inventory, &node);
            let facts = metalk8s_precheck::gather(host.as_ref(), &request)
                .await
                .unwrap_or_else(|error| panic!("facts of {node}: {error}"));
            gathered.push((node, facts));
        }
        gathered
    });
    let mut planes = Vec::new();
    for (node_name, facts) in &gathered {
        let node = inventory.node(node_name).unwrap();
        let control = control_plane_interface(&inventory, node, facts).expect("control plane");
        let workload = workload_plane_interface(&inventory, node, facts).expect("workload plane");
        planes.push(redact.text(&format!(
            "{node_name}: control plane {} {} MTU {:?}; workload plane {} {} MTU {:?}",
            control.name,
            control.address,
            control.mtu,
            workload.name,
            workload.address,
            workload.mtu
        )));
        assert!(
            facts.wireguard.is_some(),
            "{node_name}: wireguard not asked"
        );
        // The workload subnet is routed through eth1, the default route goes somewhere.
        let workload_subnet = IpAddr::V4(info.workload.as_ref().unwrap().subnet.network());
        assert!(
            facts
                .routes
                .iter()
                .any(|route| route.device.as_deref() == Some("eth1")
                    && route.destination.contains(&workload_subnet)),
            "{node_name}: {:?}",
            facts.routes
        );
        assert!(facts.routes.iter().any(|route| route.is_default()));
    }
    insta::assert_snapshot!("planes", planes.join("\n"));

    let (code, report) = precheck(state.path(), &info.inventory);
    insta::assert_snapshot!(
        "precheck_network_section",
        network_section(&report, &redact)
    );
    assert_eq!(code, 0, "{report:#}");

    // The same nodes described with both planes on the first network, and a pod range
    // that is really the second network: static validation cannot see it, the nodes can.
    let mut collides: Inventory = inventory.clone();
    collides.networks.workload_plane = collides.networks.control_plane.clone();
    collides.networks.pods = info.workload.as_ref().unwrap().subnet.into();
    for node in &mut collides.nodes {
        node.workload_plane_ip = node.control_plane_ip;
    }
    let path = state.path().join("collides.yaml");
    std::fs::write(&path, serde_saphyr::to_string(&collides).unwrap()).unwrap();
    let (code, report) = precheck(state.path(), &path);
    assert_eq!(code, 1, "{report:#}");
    insta::assert_snapshot!(
        "pods_overlap_the_workload_network",
        network_section(&report, &redact)
    );

    // `down` removes both networks.
    metalk8s_lab::down(&name).expect("lab down");
    let left = Command::new("docker")
        .args(["network", "ls", "--format", "{{.Name}}", "--filter"])
        .arg(format!("label=metalk8s.lab={name}"))
        .output()
        .unwrap();
    assert!(left.status.success());
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");

    eprintln!("network lab test took {:.0?}", started.elapsed());
}
