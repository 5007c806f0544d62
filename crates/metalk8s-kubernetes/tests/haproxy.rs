//! The apiserver proxy configuration: what it routes where, and that the real haproxy
//! accepts it (`haproxy -c`). haproxy comes from Debian (scripts/prerequisites installs
//! it); under CI (`CI=true`) a missing haproxy fails that test, elsewhere it is skipped
//! with a message. The CA file the configuration names must exist and hold a certificate,
//! so the test points it at one it makes with openssl. tests/proxy_lab.rs runs it for real
//! on lab nodes.

mod common;

use std::process::Command;

use metalk8s_kubernetes::apiserver_proxy;
use metalk8s_kubernetes::cluster::Cluster;

/// The `server` lines of a configuration.
fn servers(config: &str) -> Vec<&str> {
    config
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("server "))
        .collect()
}

/// Its `bind` lines.
fn binds(config: &str) -> Vec<&str> {
    config
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("bind "))
        .collect()
}

fn config_of(cluster: &Cluster, node: &str) -> String {
    apiserver_proxy::config(cluster, cluster.node(node).unwrap()).unwrap()
}

#[test]
fn a_control_plane_sends_to_its_own_api_server_and_to_the_others_only_when_it_is_down() {
    let cluster = common::cluster(5, 36, true, false);
    let config = config_of(&cluster, "node-2");
    assert_eq!(
        servers(&config),
        [
            "server node-1 10.100.0.11:6443 verifyhost node-1 backup",
            "server node-2 10.100.0.12:6443 verifyhost node-2",
            "server node-3 10.100.0.13:6443 verifyhost node-3 backup",
        ]
    );
    // Every backup at once, not only the first.
    assert!(config.contains("\n    option allbackups\n"), "{config}");
}

#[test]
fn a_worker_spreads_over_every_api_server() {
    let cluster = common::cluster(5, 36, true, false);
    assert_eq!(
        servers(&config_of(&cluster, "node-4")),
        [
            "server node-1 10.100.0.11:6443 verifyhost node-1",
            "server node-2 10.100.0.12:6443 verifyhost node-2",
            "server node-3 10.100.0.13:6443 verifyhost node-3",
        ]
    );
}

#[test]
fn control_planes_serve_the_vip_because_the_api_server_listens_on_its_node_ip_only() {
    let cluster = common::cluster(5, 36, true, false);
    for node in ["node-1", "node-2", "node-3"] {
        assert_eq!(
            binds(&config_of(&cluster, node)),
            [
                "bind 127.0.0.1:7080",
                "bind 127.0.0.1:7443",
                "bind 10.100.0.100:6443 transparent"
            ],
            "{node}"
        );
    }
    // Workers never hold the VIP; without a VIP nobody binds one.
    let without_vip = common::cluster(5, 36, false, false);
    for (cluster, node) in [(&cluster, "node-4"), (&without_vip, "node-1")] {
        assert_eq!(
            binds(&config_of(cluster, node)),
            ["bind 127.0.0.1:7080", "bind 127.0.0.1:7443"]
        );
    }
    let mut ipv6 = cluster.clone();
    ipv6.api_server_vip = Some("fd00::100".parse().unwrap());
    for node in &mut ipv6.nodes {
        node.control_plane_ip = format!("fd00::{}", node.name.trim_start_matches("node-"))
            .parse()
            .unwrap();
    }
    assert!(
        binds(&config_of(&ipv6, "node-1")).contains(&"bind [fd00::100]:6443 transparent"),
        "{}",
        config_of(&ipv6, "node-1")
    );
}

#[test]
fn haproxy_asks_for_fewer_open_files_than_a_container_host_may_allow() {
    // haproxy wants 2 descriptors per connection plus a few (it asked for 40044 with
    // maxconn 20000) and refuses to start above its hard limit, which is 20000 on the lab
    // machine and may be lower under other container runtimes.
    let cluster = common::cluster(5, 36, true, false);
    let config = config_of(&cluster, "node-1");
    let maxconn: u32 = config
        .lines()
        .find_map(|line| line.trim().strip_prefix("maxconn "))
        .expect("a global maxconn")
        .parse()
        .unwrap();
    assert!(2 * maxconn + 100 <= 10_000, "maxconn {maxconn}");
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn haproxy_accepts_the_generated_configuration() {
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !have("haproxy") || !openssl {
        let message = "haproxy or openssl not found (scripts/prerequisites installs both)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        eprintln!("skipped: {message}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kubernetes",
        ])
        .arg("-keyout")
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for nodes in [1, 3, 5] {
        let cluster = common::cluster(nodes, 36, nodes > 1, false);
        for node in &cluster.nodes {
            let config = apiserver_proxy::config(&cluster, node)
                .unwrap()
                .replace("/etc/kubernetes/pki/ca.crt", ca.to_str().unwrap())
                // No syslog socket in a test sandbox.
                .replace("log /dev/log local0 notice", "log stdout format raw local0");
            let path = dir.path().join(format!("{nodes}-{}.cfg", node.name));
            std::fs::write(&path, &config).unwrap();
            let output = Command::new("haproxy")
                .arg("-c")
                .arg("-f")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "haproxy -c refused {}:\n{}{}\n{config}",
                path.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn kubeadm_skips_its_port_6443_check_where_haproxy_serves_the_vip() {
    use metalk8s_kubernetes::kubeadm;
    // kubeadm's check listens on port 6443 of every address, which haproxy's VIP bind
    // occupies on control planes (shown on lab nodes by tests/proxy_lab.rs).
    let ignored = |cluster: &Cluster, node: &str| -> Vec<String> {
        let node = cluster.node(node).unwrap();
        let files = if node.name == "node-1" {
            kubeadm::init_files(cluster, node, &common::token(), "15m").unwrap()
        } else {
            kubeadm::join_files(cluster, node, &common::token()).unwrap()
        };
        // An empty list is left out.
        match &files.documents[0]["nodeRegistration"]["ignorePreflightErrors"] {
            serde_json::Value::Null => Vec::new(),
            list => serde_json::from_value(list.clone()).unwrap(),
        }
    };
    let with_vip = common::cluster(5, 36, true, false);
    for node in ["node-1", "node-2", "node-3"] {
        assert_eq!(ignored(&with_vip, node), ["Port-6443"], "{node}");
    }
    assert_eq!(
        ignored(&with_vip, "node-4"),
        ["FileAvailable--etc-kubernetes-pki-ca.crt"]
    );
    let without_vip = common::cluster(5, 36, false, false);
    for node in ["node-1", "node-2"] {
        assert!(ignored(&without_vip, node).is_empty(), "{node}");
    }
}
