//! Every Kubernetes object metalk8s creates for this phase (RBAC bindings, kube-proxy's
//! ServiceAccount, binding, ConfigMap and DaemonSet, the Node label/taint apply bodies, a
//! CSR with metalk8s's approval) validates with `kubernetes-validate --strict` (PyPI)
//! against the API schemas of 1.35, 1.36 and 1.37. The audit Policy is not an API object
//! and is not checked here.
//!
//! The tool is found through `METALK8S_KUBERNETES_VALIDATE`, else at
//! `/opt/metalk8s-validate/bin/kubernetes-validate` (where scripts/prerequisites installs
//! it), else on PATH. Under CI (`CI=true`) a missing tool fails the test; elsewhere the test
//! says it was skipped and why.

mod common;

use std::process::Command;

use metalk8s_kubernetes::csr::{self, KnownNode, ServingRequest};
use metalk8s_kubernetes::{objects, yaml};
use serde_json::{Value, json};

fn approved_csr() -> Value {
    let request = ServingRequest {
        signer_name: csr::KUBELET_SERVING_SIGNER.to_owned(),
        username: "system:node:node-1".to_owned(),
        groups: vec!["system:nodes".to_owned(), "system:authenticated".to_owned()],
        usages: vec!["digital signature".to_owned(), "server auth".to_owned()],
        common_name: "system:node:node-1".to_owned(),
        organizations: vec!["system:nodes".to_owned()],
        dns_names: vec!["node-1".to_owned()],
        ip_addresses: vec!["10.100.0.11".parse().unwrap()],
        ..Default::default()
    };
    let node = KnownNode {
        name: "node-1".to_owned(),
        addresses: vec!["10.100.0.11".parse().unwrap()],
        hostnames: Vec::new(),
    };
    let decision = csr::decide(&request, &[node]);
    assert!(decision.is_approved(), "{decision:?}");
    // As the API returns it; `request` is the base64 of the PEM request.
    let read = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr-node-1-serving"},
        "spec": {
            "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg==",
            "signerName": csr::KUBELET_SERVING_SIGNER,
            "usages": request.usages,
            "username": request.username,
            "groups": request.groups,
        },
    });
    csr::with_decision(read, &decision)
}

#[test]
fn every_object_validates_against_the_api_schemas_of_each_minor() {
    let Some(tool) = common::validate_tool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (label, cluster) in [
        ("1-node", common::cluster(1, 36, false, false)),
        ("3-node", common::cluster(3, 36, true, true)),
        ("5-node", common::cluster(5, 37, true, false)),
    ] {
        for (index, object) in objects::all(&cluster, &common::dns(&cluster))
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("{label}-{index:02}.yaml"));
            std::fs::write(&path, yaml::documents(&[object])).unwrap();
            files.push(path);
        }
    }
    let path = dir.path().join("csr-approval.yaml");
    std::fs::write(&path, yaml::documents(&[approved_csr()])).unwrap();
    files.push(path);

    common::validate_strict(&tool, &files, files.len());
}

#[test]
fn the_tool_does_refuse_an_unknown_field() {
    let Some(tool) = common::validate_tool() else {
        return;
    };
    let mut binding = metalk8s_kubernetes::rbac::cluster_admins();
    binding["roleRef"]["namespace"] = json!("default");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml::documents(&[binding])).unwrap();
    let output = Command::new(&tool)
        .args(["--strict", "--kubernetes-version", "1.36.0"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
