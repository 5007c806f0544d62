//! Every kubeadm, kubelet and kube-proxy document metalk8s renders validates against the
//! JSON Schemas written from the upstream Go types (tests/schemas/, `additionalProperties:
//! false` everywhere), for every supported minor and cluster shape; and the schemas do
//! refuse what upstream would not read.

mod common;

use std::path::Path;

use jsonschema::Validator;
use metalk8s_kubernetes::cluster::Cluster;
use metalk8s_kubernetes::{kube_proxy, kubeadm, kubelet, yaml};
use serde_json::{Value, json};

fn schema(name: &str) -> Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert!(
        schema["$comment"]
            .as_str()
            .is_some_and(|comment| comment.contains("types.go")),
        "{name} must say which upstream file it was written from"
    );
    jsonschema::draft202012::new(&schema).unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// The schema for a document of `minor`, by its kind.
fn schema_for(document: &Value, minor: u32) -> Validator {
    let kind = document["kind"].as_str().unwrap();
    match kind {
        "InitConfiguration" | "ClusterConfiguration" | "JoinConfiguration" => {
            schema(&format!("kubeadm.k8s.io_v1beta4_{kind}.json"))
        }
        "KubeletConfiguration" => schema(&format!(
            "kubelet.config.k8s.io_v1beta1_KubeletConfiguration.1.{minor}.json"
        )),
        "KubeProxyConfiguration" => schema(&format!(
            "kubeproxy.config.k8s.io_v1alpha1_KubeProxyConfiguration.1.{minor}.json"
        )),
        other => panic!("no schema for {other}"),
    }
}

fn assert_valid(label: &str, document: &Value, minor: u32) {
    let validator = schema_for(document, minor);
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{label}: {} invalid:\n{}\n{document:#}",
        document["kind"],
        errors.join("\n")
    );
}

/// Every document of every node of `cluster`, as a node receives it (YAML parsed back).
fn documents(cluster: &Cluster) -> Vec<(String, Value)> {
    let mut documents = Vec::new();
    let first = cluster.control_planes().next().unwrap().clone();
    let init = kubeadm::init_files(cluster, &first, &common::token(), "15m").unwrap();
    for document in yaml::parse_documents(&init.config).unwrap() {
        documents.push((format!("init on {}", first.name), document));
    }
    for node in &cluster.nodes {
        if node.name != first.name {
            let join = kubeadm::join_files(cluster, node, &common::token()).unwrap();
            for document in yaml::parse_documents(&join.config).unwrap() {
                documents.push((format!("join of {}", node.name), document));
            }
        }
        documents.push((
            format!("kubelet of {}", node.name),
            kubelet::node_configuration(cluster, node).unwrap(),
        ));
        // The merge patch itself is a (partial) KubeletConfiguration.
        documents.push((
            format!("kubelet patch of {}", node.name),
            kubelet::node_patch(cluster, node).unwrap(),
        ));
        let proxy = kube_proxy::configuration_file(cluster, node).unwrap();
        for document in yaml::parse_documents(&proxy).unwrap() {
            documents.push((format!("kube-proxy of {}", node.name), document));
        }
    }
    documents
}

#[test]
fn every_rendered_document_matches_the_upstream_schema_of_its_minor() {
    let mut checked = 0;
    for (label, cluster) in common::every_shape() {
        let minor = cluster.version.minor;
        for (what, document) in documents(&cluster) {
            assert_valid(&format!("{label}, {what}"), &document, minor);
            checked += 1;
        }
    }
    // 3 minors × (1 + 3 + 5 nodes) × 3 variants, several documents per node.
    assert!(checked > 300, "only {checked} documents checked");
}

#[test]
fn kubeadm_config_carries_the_three_documents_of_an_init() {
    let cluster = common::cluster(3, 36, true, true);
    let first = cluster.nodes[0].clone();
    let init = kubeadm::init_files(&cluster, &first, &common::token(), "15m").unwrap();
    let kinds: Vec<String> = yaml::parse_documents(&init.config)
        .unwrap()
        .iter()
        .map(|document| document["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "InitConfiguration",
            "ClusterConfiguration",
            "KubeletConfiguration"
        ]
    );
}

#[test]
fn the_schemas_refuse_unknown_fields_and_wrong_types() {
    let cluster = common::cluster(3, 36, true, true);
    let first = cluster.nodes[0].clone();
    let init = kubeadm::init_files(&cluster, &first, &common::token(), "15m").unwrap();
    let documents = yaml::parse_documents(&init.config).unwrap();
    let mut cluster_config = documents[1].clone();
    assert!(schema_for(&cluster_config, 36).is_valid(&cluster_config));

    // A misspelt field, top level and nested.
    cluster_config["controlPlaneEndPoint"] = json!("127.0.0.1:7443");
    assert!(!schema_for(&cluster_config, 36).is_valid(&cluster_config));
    let mut nested = documents[1].clone();
    nested["etcd"]["external"]["caFiles"] = json!("/etc/kubernetes/pki/etcd/ca.crt");
    assert!(!schema_for(&nested, 36).is_valid(&nested));
    // v1beta3's map form of extraArgs is gone in v1beta4.
    let mut map_args = documents[1].clone();
    map_args["apiServer"]["extraArgs"] = json!({"audit-log-maxage": "30"});
    assert!(!schema_for(&map_args, 36).is_valid(&map_args));
    // A wrong type.
    let mut kubelet = kubelet::node_configuration(&cluster, &first).unwrap();
    kubelet["containerLogMaxFiles"] = json!("5");
    assert!(!schema_for(&kubelet, 36).is_valid(&kubelet));
    let mut proxy =
        serde_json::to_value(kube_proxy::configuration(&cluster, &first).unwrap()).unwrap();
    proxy["nodePortAddresses"] = json!("10.200.0.0/16");
    assert!(!schema_for(&proxy, 36).is_valid(&proxy));
    // A wrong apiVersion.
    let mut init_config = documents[0].clone();
    init_config["apiVersion"] = json!("kubeadm.k8s.io/v1beta3");
    assert!(!schema_for(&init_config, 36).is_valid(&init_config));
}

#[test]
fn each_minor_has_its_own_kubelet_fields() {
    let cluster = common::cluster(1, 35, false, false);
    let node = cluster.nodes[0].clone();
    let mut kubelet = kubelet::node_configuration(&cluster, &node).unwrap();
    kubelet["tlsCurvePreferences"] = json!([23]);
    // Added in 1.36: the 1.35 schema refuses it, the 1.36 one reads it.
    assert!(!schema_for(&kubelet, 35).is_valid(&kubelet));
    assert!(schema_for(&kubelet, 36).is_valid(&kubelet));
    let mut memory = kubelet::node_configuration(&cluster, &node).unwrap();
    memory["memoryReservationPolicy"] = json!("TieredReservation");
    assert!(!schema_for(&memory, 35).is_valid(&memory));
    assert!(schema_for(&memory, 37).is_valid(&memory));
}
