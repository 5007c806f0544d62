//! The certificates a cluster needs, snapshot-tested for fixture inventories.

mod common;

use metalk8s_pki::{
    Authority, ClusterAddresses, Output, Purpose, SpecError, SubjectAltName, cluster_certificates,
};

#[test]
fn three_node_lab_certificates() {
    insta::assert_yaml_snapshot!(common::lab_pki());
}

fn split_roles_addresses() -> ClusterAddresses {
    let inventory = common::inventory("split-roles");
    let mut addresses = ClusterAddresses::declared(&inventory);
    // cp1 declares no controlPlaneIP: its address comes from facts, outside this crate.
    addresses
        .control_plane_ips
        .insert("cp1".to_owned(), "10.10.0.11".parse().unwrap());
    addresses.control_plane_vip = Some("10.10.0.100".parse().unwrap());
    addresses.extra_api_server_names = vec![
        SubjectAltName::Dns("k8s.example.com".to_owned()),
        // Already among the names: listed once.
        SubjectAltName::Ip("127.0.0.1".parse().unwrap()),
    ];
    addresses
}

#[test]
fn split_roles_with_a_vip_and_extra_names() {
    let inventory = common::inventory("split-roles");
    let pki = cluster_certificates(&inventory, &split_roles_addresses()).unwrap();
    insta::assert_yaml_snapshot!(pki);
}

#[test]
fn workers_and_the_bootstrap_node_only_trust_the_kubernetes_ca() {
    let inventory = common::inventory("split-roles");
    let pki = cluster_certificates(&inventory, &split_roles_addresses()).unwrap();
    for node in ["boot", "worker1"] {
        let node = pki.iter().find(|pki| pki.node == node).unwrap();
        // The bootstrap node's one certificate serves the bundle repository.
        let names: Vec<&str> = node.certificates.iter().map(|c| c.name.as_str()).collect();
        let expected: &[&str] = if node.node == "boot" {
            &["metalk8s-repository"]
        } else {
            &[]
        };
        assert_eq!(names, expected, "{}", node.node);
        assert!(!node.service_account_keys);
        assert_eq!(node.authorities.len(), 1);
        assert_eq!(node.authorities[0].authority, Authority::Kubernetes);
        assert!(
            !node.authorities[0].key,
            "{} must not get ca.key",
            node.node
        );
    }
}

#[test]
fn api_server_names_cover_every_way_it_is_reached() {
    let specs = common::all_specs(&common::lab_pki());
    let apiserver = common::spec(&specs, "node2", "apiserver");
    assert_eq!(apiserver.purpose, Purpose::Server);
    assert_eq!(apiserver.common_name, "kube-apiserver");
    let names: Vec<String> = apiserver
        .alt_names
        .iter()
        .map(ToString::to_string)
        .collect();
    for expected in [
        "DNS:node2",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "IP:172.29.7.12",
        "IP:10.96.0.1",
        "IP:127.0.0.1",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing: {names:?}"
        );
    }
    // Another node's address is not this certificate's business.
    assert!(!names.contains(&"IP:172.29.7.11".to_owned()));
}

#[test]
fn etcd_members_are_named_by_node_and_serve_both_ways() {
    let specs = common::all_specs(&common::lab_pki());
    for name in ["etcd-server", "etcd-peer"] {
        let spec = common::spec(&specs, "node3", name);
        assert_eq!(spec.issuer, Authority::Etcd);
        assert_eq!(spec.common_name, "node3");
        assert_eq!(spec.purpose, Purpose::Peer);
        let names: Vec<String> = spec.alt_names.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "DNS:node3",
                "DNS:localhost",
                "IP:172.29.7.13",
                "IP:127.0.0.1",
                "IP:::1"
            ]
        );
    }
}

#[test]
fn kubeconfigs_point_at_the_vip_or_the_local_api_server() {
    let inventory = common::inventory("split-roles");
    let pki = cluster_certificates(&inventory, &split_roles_addresses()).unwrap();
    let specs = common::all_specs(&pki);
    let server = |name: &str| match &common::spec(&specs, "cp1", name).output {
        Output::Kubeconfig { server, .. } => server.clone(),
        other => panic!("{name} is {other:?}"),
    };
    assert_eq!(server("admin.conf"), "https://10.10.0.100:6443");
    assert_eq!(server("controller-manager.conf"), "https://10.10.0.11:6443");
    assert_eq!(server("scheduler.conf"), "https://10.10.0.11:6443");

    // Without a VIP admin.conf uses the node's own API server, as kubeadm does.
    let lab = common::all_specs(&common::lab_pki());
    match &common::spec(&lab, "node2", "admin.conf").output {
        Output::Kubeconfig { server, .. } => assert_eq!(server, "https://172.29.7.12:6443"),
        other => panic!("admin.conf is {other:?}"),
    }
}

#[test]
fn ipv6_servers_are_bracketed_in_urls() {
    let inventory = common::inventory("lab-3");
    let mut addresses = ClusterAddresses::declared(&inventory);
    addresses.control_plane_vip = Some("fd00::100".parse().unwrap());
    let specs = common::all_specs(&cluster_certificates(&inventory, &addresses).unwrap());
    match &common::spec(&specs, "node1", "admin.conf").output {
        Output::Kubeconfig { server, .. } => assert_eq!(server, "https://[fd00::100]:6443"),
        other => panic!("admin.conf is {other:?}"),
    }
}

#[test]
fn a_node_needing_certificates_without_an_address_is_an_error() {
    let inventory = common::inventory("split-roles");
    let error =
        cluster_certificates(&inventory, &ClusterAddresses::declared(&inventory)).unwrap_err();
    assert_eq!(
        error,
        SpecError::MissingControlPlaneIp {
            node: "cp1".to_owned()
        }
    );
    assert!(error.to_string().contains("node cp1"));
}

#[test]
fn workers_need_no_address() {
    let inventory = common::inventory("split-roles");
    let mut addresses = split_roles_addresses();
    addresses.control_plane_ips.remove("worker1");
    assert!(cluster_certificates(&inventory, &addresses).is_ok());
    // The bootstrap node's repository certificate names its address.
    addresses.control_plane_ips.remove("boot");
    assert_eq!(
        cluster_certificates(&inventory, &addresses).unwrap_err(),
        SpecError::MissingControlPlaneIp {
            node: "boot".to_owned()
        }
    );
}

#[test]
fn the_repository_certificate_is_a_server_certificate_of_the_kubernetes_ca() {
    let specs = common::all_specs(&common::lab_pki());
    let spec = common::spec(&specs, "node1", "metalk8s-repository");
    assert_eq!(spec.issuer, Authority::Kubernetes);
    assert_eq!(spec.purpose, Purpose::Server);
    let names: Vec<String> = spec.alt_names.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "DNS:node1",
            "DNS:localhost",
            "IP:172.29.7.11",
            "IP:127.0.0.1"
        ]
    );
    assert_eq!(
        spec.files(),
        [
            std::path::PathBuf::from("pki/metalk8s-repository.crt"),
            std::path::PathBuf::from("pki/metalk8s-repository.key")
        ]
    );
    assert!(
        !specs
            .iter()
            .any(|s| s.name == "metalk8s-repository" && s.node != "node1"),
        "only the bootstrap node serves the repository"
    );
}
