//! Cluster shapes the integration tests render: 1, 3 and 5 nodes with separate
//! control-plane and workload networks, with and without a VIP and OIDC, at every
//! supported minor.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use metalk8s_kubernetes::cluster::{Cluster, KeyAlgorithm, Node, Oidc};
use metalk8s_kubernetes::kubeadm::JoinToken;
use metalk8s_kubernetes::version::SUPPORTED;
use metalk8s_model::inventory::{Role, Taint, TaintEffect};

pub const GIB: u64 = 1 << 30;

pub fn node(index: u8, roles: &[Role]) -> Node {
    Node {
        name: format!("node-{index}"),
        control_plane_ip: format!("10.100.0.{}", 10 + index).parse().unwrap(),
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        labels: BTreeMap::new(),
        taints: Vec::new(),
        cpus: 4,
        memory_bytes: 16 * GIB,
        control_plane_interface: Some("eth0".to_owned()),
    }
}

/// `nodes` nodes: 1 → one node with every role; 3 → three control planes (etcd, the first
/// is bootstrap and infra), all workers; 5 → three dedicated control planes and two
/// workers, one of them infra, with inventory labels and a taint.
pub fn cluster(nodes: usize, minor: u32, vip: bool, oidc: bool) -> Cluster {
    use Role::*;
    let nodes = match nodes {
        1 => vec![node(1, &[Bootstrap, Etcd, ControlPlane, Worker, Infra])],
        3 => vec![
            node(1, &[Bootstrap, Etcd, ControlPlane, Worker, Infra]),
            node(2, &[Etcd, ControlPlane, Worker]),
            node(3, &[Etcd, ControlPlane, Worker]),
        ],
        5 => {
            let mut infra = node(4, &[Worker, Infra]);
            infra.labels.insert("rack".to_owned(), "r1".to_owned());
            infra.labels.insert(
                "topology.kubernetes.io/zone".to_owned(),
                "zone-a".to_owned(),
            );
            let mut worker = node(5, &[Worker]);
            worker.cpus = 32;
            worker.memory_bytes = 128 * GIB;
            worker.taints.push(Taint {
                key: "example.com/dedicated".to_owned(),
                value: Some("batch".to_owned()),
                effect: TaintEffect::NoSchedule,
            });
            vec![
                node(1, &[Bootstrap, Etcd, ControlPlane]),
                node(2, &[Etcd, ControlPlane]),
                node(3, &[Etcd, ControlPlane]),
                infra,
                worker,
            ]
        }
        other => panic!("no {other}-node shape"),
    };
    let etcd_members = nodes
        .iter()
        .filter(|node| node.has_role(Role::Etcd))
        .map(|node| node.control_plane_ip)
        .collect();
    Cluster {
        name: "lab".to_owned(),
        version: format!("v1.{minor}.2").parse().unwrap(),
        pods: "10.233.0.0/16".parse().unwrap(),
        services: "10.96.0.0/12".parse().unwrap(),
        workload_plane: vec!["10.200.0.0/16".parse().unwrap()],
        dns_domain: "cluster.local".to_owned(),
        api_server_vip: vip.then(|| "10.100.0.100".parse().unwrap()),
        extra_api_server_names: if vip {
            vec!["k8s.lab.example.com".to_owned()]
        } else {
            Vec::new()
        },
        registry: nodes[0].control_plane_ip,
        etcd_members,
        oidc: oidc.then(|| Oidc {
            issuer_url: "https://sso.example.com/realms/lab".to_owned(),
            client_id: "kubernetes".to_owned(),
            username_claim: Some("email".to_owned()),
            username_prefix: Some("oidc:".to_owned()),
            groups_claim: Some("groups".to_owned()),
            groups_prefix: Some("oidc:".to_owned()),
            ca_file: None,
        }),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        nodes,
    }
}

pub fn token() -> JoinToken {
    JoinToken {
        token: "abcdef.0123456789abcdef".to_owned(),
        ca_cert_hash: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            .to_owned(),
    }
}

/// Every shape at every supported minor: (label, cluster).
pub fn every_shape() -> Vec<(String, Cluster)> {
    let mut shapes = Vec::new();
    for supported in SUPPORTED {
        let minor = supported.minor.minor;
        for nodes in [1, 3, 5] {
            for (vip, oidc) in [(false, false), (true, true), (true, false)] {
                shapes.push((
                    format!("1.{minor} {nodes} nodes vip={vip} oidc={oidc}"),
                    cluster(nodes, minor, vip, oidc),
                ));
            }
        }
    }
    shapes
}

/// CoreDNS's settings for `cluster`: forwarding to two resolvers on clusters with a VIP,
/// to none otherwise (both Corefile shapes get checked).
pub fn dns(cluster: &Cluster) -> metalk8s_kubernetes::coredns::DnsSettings {
    use metalk8s_kubernetes::coredns::{DnsSettings, Upstreams};
    DnsSettings {
        image_tag: "v1.14.2".to_owned(),
        upstreams: if cluster.api_server_vip.is_some() {
            Upstreams::Servers(vec![
                "10.100.0.53".parse().unwrap(),
                "10.100.1.53".parse().unwrap(),
            ])
        } else {
            Upstreams::None
        },
    }
}

/// The minors `kubernetes-validate` checks objects against.
pub const VALIDATE_VERSIONS: [&str; 3] = ["1.35.0", "1.36.0", "1.37.0"];

/// `kubernetes-validate`: through `METALK8S_KUBERNETES_VALIDATE`, else at
/// `/opt/metalk8s-validate/bin/kubernetes-validate` (where scripts/prerequisites installs
/// it), else on PATH. None (the test is skipped, and says so) when it is not found, except
/// under CI (`CI=true`), where a missing tool fails the test.
pub fn validate_tool() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("METALK8S_KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(path));
    }
    let installed = PathBuf::from("/opt/metalk8s-validate/bin/kubernetes-validate");
    if installed.exists() {
        return Some(installed);
    }
    let on_path = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|_| PathBuf::from("kubernetes-validate"));
    if on_path.is_none() {
        let message = "kubernetes-validate not found (set METALK8S_KUBERNETES_VALIDATE or run scripts/prerequisites, which installs it in /opt/metalk8s-validate)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        eprintln!("skipped: {message}");
    }
    on_path
}

/// Runs `kubernetes-validate --strict` on `files` for every minor of [`VALIDATE_VERSIONS`]
/// and asserts that it passed `documents` documents: nothing was silently skipped.
pub fn validate_strict(tool: &Path, files: &[PathBuf], documents: usize) {
    for version in VALIDATE_VERSIONS {
        let output = Command::new(tool)
            .args(["--strict", "--kubernetes-version", version])
            .args(files)
            .output()
            .unwrap_or_else(|error| panic!("{}: {error}", tool.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "kubernetes-validate --strict -k {version} refused:\n{stdout}\n{stderr}"
        );
        let passed = stdout
            .lines()
            .filter(|line| line.contains(" passed for resource "))
            .count();
        assert_eq!(passed, documents, "{version}:\n{stdout}\n{stderr}");
    }
}
