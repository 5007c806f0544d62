//! Helpers shared by the integration tests: fixture inventories and facts.
#![allow(dead_code)] // each test crate uses part of these helpers

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use metalk8s_model::{Facts, Inventory};

pub fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", root.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

pub fn fixture(name: &str) -> (Inventory, BTreeMap<String, Facts>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    (inventory(&dir), facts(&dir))
}

pub fn inventory(dir: &Path) -> Inventory {
    let path = dir.join("inventory.yaml");
    metalk8s_inventory::load(&path)
        .unwrap_or_else(|error| panic!("{} is not valid: {error:?}", path.display()))
}

/// facts.yaml holds, per node, only the facts the planner reads; the others keep their
/// defaults, as if the node had reported nothing about them.
pub fn facts(dir: &Path) -> BTreeMap<String, Facts> {
    let path = dir.join("facts.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let written: BTreeMap<String, serde_json::Value> =
        serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    written
        .into_iter()
        .map(|(node, partial)| {
            let mut facts = serde_json::to_value(Facts::default()).unwrap();
            merge(&mut facts, partial);
            let facts = serde_json::from_value(facts)
                .unwrap_or_else(|error| panic!("{}: facts of {node}: {error}", path.display()));
            (node, facts)
        })
        .collect()
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                merge(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}

/// Stand-ins for what the PKI store returns: every etcd member's etcd files, every node's
/// Kubernetes CA and APT keyring, the bootstrap node's repository certificate and APT
/// signing key, with a readable placeholder instead of PEM (the planner copies content; it
/// never parses it). No bundle is staged.
pub fn inputs(inventory: &Inventory) -> metalk8s_plan::Inputs {
    use metalk8s_model::inventory::Role;
    use metalk8s_model::plan::NodeFile;
    let placeholder = |node: &str, path: &str, mode: u32| NodeFile {
        path: path.to_owned(),
        content: format!("{} of {}\n", path.rsplit('/').next().unwrap(), node),
        mode,
        private: mode == 0o600,
    };
    let pki = inventory
        .nodes
        .iter()
        .map(|node| {
            let mut files = vec![
                placeholder(&node.name, "/etc/kubernetes/pki/ca.crt", 0o644),
                placeholder(&node.name, "/etc/apt/keyrings/metalk8s.asc", 0o644),
            ];
            if node.has_role(Role::Etcd) {
                files.extend(
                    [
                        ("ca.crt", 0o644),
                        ("server.crt", 0o644),
                        ("server.key", 0o600),
                        ("peer.crt", 0o644),
                        ("peer.key", 0o600),
                        ("healthcheck-client.crt", 0o644),
                        ("healthcheck-client.key", 0o600),
                    ]
                    .into_iter()
                    .map(|(file, mode)| {
                        placeholder(
                            &node.name,
                            &format!("/etc/kubernetes/pki/etcd/{file}"),
                            mode,
                        )
                    }),
                );
            }
            if node.has_role(Role::Bootstrap) {
                files.extend([
                    placeholder(
                        &node.name,
                        "/etc/kubernetes/pki/metalk8s-repository.crt",
                        0o644,
                    ),
                    placeholder(
                        &node.name,
                        "/etc/kubernetes/pki/metalk8s-repository.key",
                        0o600,
                    ),
                    placeholder(
                        &node.name,
                        "/etc/metalk8s/repository/apt-signing.key",
                        0o600,
                    ),
                ]);
            }
            (node.name.clone(), files)
        })
        .collect();
    metalk8s_plan::Inputs {
        pki,
        etcd_running: false,
        bundle: None,
        agent_path: "/var/lib/metalk8s/agent/metalk8s-0123456789abcdef".to_owned(),
        join: Some(metalk8s_plan::JoinCredentials {
            token: "abcdef.0123456789abcdef".to_owned(),
            ca_cert_hash: format!("sha256:{}", "ab".repeat(32)),
        }),
    }
}

/// A staged Kubernetes bundle, as one built from `bundles/kubernetes-1.36.yaml`: the
/// packages, binaries and images the `containerd` and `kubernetes` phases install.
pub fn bundle() -> metalk8s_plan::StagedBundle {
    let image = |name: &str, tag: &str| metalk8s_plan::BundleImage {
        name: name.to_owned(),
        tag: tag.to_owned(),
    };
    let binary = |name: &str, digit: &str| metalk8s_plan::BundleBinary {
        name: name.to_owned(),
        version: "1.36.4".to_owned(),
        sha256: digit.repeat(64),
    };
    metalk8s_plan::StagedBundle {
        version: "1.36.4-1".to_owned(),
        dir: "/var/lib/metalk8s/bundles/1.36.4-1".to_owned(),
        images: vec![
            image("coredns/coredns", "v1.13.1"),
            image("kube-apiserver", "v1.36.4"),
            image("kube-controller-manager", "v1.36.4"),
            image("kube-proxy", "v1.36.4"),
            image("kube-scheduler", "v1.36.4"),
            image("pause", "3.10.2"),
        ],
        packages: [
            "conntrack",
            "containerd",
            "curl",
            "ebtables",
            "ethtool",
            "haproxy",
            "iptables",
            "keepalived",
            "runc",
            "socat",
        ]
        .map(str::to_owned)
        .to_vec(),
        binaries: vec![
            binary("kubeadm", "a"),
            binary("kubectl", "b"),
            binary("kubelet", "c"),
        ],
        kubernetes_version: Some("1.36.4".to_owned()),
    }
}

/// [`inputs`] with [`bundle`] staged.
pub fn bundled(inventory: &Inventory) -> metalk8s_plan::Inputs {
    metalk8s_plan::Inputs {
        bundle: Some(bundle()),
        ..inputs(inventory)
    }
}

/// [`bundled`] when every node uses apt (the bundle repository serves APT only), else
/// [`inputs`].
pub fn inputs_for(inventory: &Inventory, facts: &BTreeMap<String, Facts>) -> metalk8s_plan::Inputs {
    let all_apt = inventory.nodes.iter().all(|node| {
        facts
            .get(&node.name)
            .is_some_and(|facts| matches!(facts.os.id.as_str(), "debian" | "ubuntu"))
    });
    if all_apt {
        bundled(inventory)
    } else {
        inputs(inventory)
    }
}
