//! The `kubernetes` phase: who runs `kubeadm init` or `join`, what a joined node skips,
//! what each role gets, and the bundles it refuses (before any node is touched).

mod common;

use metalk8s_model::PhaseName;
use metalk8s_model::plan::{Phase, Resource, Rollout};
use metalk8s_plan::{PlanError, plan};

fn kubernetes_phase(
    fixture: &str,
    inputs: impl FnOnce(&mut metalk8s_plan::Inputs),
) -> Result<Phase, PlanError> {
    let (inventory, facts) = common::fixture(fixture);
    let mut planned_inputs = common::bundled(&inventory);
    inputs(&mut planned_inputs);
    let plan = plan(
        &inventory,
        &facts,
        &planned_inputs,
        &[PhaseName::Kubernetes],
    )?;
    Ok(plan.phases.into_iter().next().unwrap())
}

fn step_ids(phase: &Phase, node: &str) -> Vec<String> {
    phase
        .hosts
        .iter()
        .find(|host| host.node == node)
        .unwrap_or_else(|| panic!("no host plan for {node}"))
        .steps
        .iter()
        .map(|step| step.id.clone())
        .collect()
}

#[test]
fn the_first_control_plane_creates_the_cluster_and_every_other_node_joins() {
    let phase = kubernetes_phase("k8s-5", |_| {}).unwrap();
    let order: Vec<&str> = phase.hosts.iter().map(|h| h.node.as_str()).collect();
    assert_eq!(order, ["cp-1", "cp-2", "cp-3", "infra-1", "worker-1"]);
    assert_eq!(phase.rollout, Rollout::OneAtATimeFirst { count: 3 });
    assert!(step_ids(&phase, "cp-1").contains(&"command/kubeadm-init".to_owned()));
    for node in ["cp-2", "cp-3", "infra-1", "worker-1"] {
        let ids = step_ids(&phase, node);
        assert!(ids.contains(&"command/kubeadm-join".to_owned()), "{node}");
        assert!(!ids.contains(&"command/kubeadm-init".to_owned()), "{node}");
    }
    // kubeadm's configuration is shown with a placeholder for the bootstrap token, which
    // is a secret file of its own, readable by root only.
    let file = |path: &str| {
        phase.hosts[1]
            .steps
            .iter()
            .find_map(|step| match &step.resource {
                Resource::File(file) if file.path == path => Some(file.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {path}"))
    };
    let config = file("/etc/kubernetes/kubeadm/join.yaml");
    assert!(!config.secret && config.mode == 0o600);
    assert!(config.content.contains("@METALK8S_BOOTSTRAP_TOKEN@"));
    assert!(!config.content.contains("abcdef"));
    let token = file("/etc/kubernetes/kubeadm/bootstrap-token");
    assert!(token.secret && token.mode == 0o600);
    assert_eq!(token.content, "abcdef.0123456789abcdef\n");
}

#[test]
fn only_control_planes_hold_the_vip_and_get_kubectl_and_the_audit_policy() {
    let phase = kubernetes_phase("k8s-5", |_| {}).unwrap();
    for node in ["cp-1", "cp-2", "cp-3"] {
        let ids = step_ids(&phase, node);
        assert!(ids.contains(&"service/keepalived".to_owned()), "{node}");
        assert!(
            ids.contains(&"file/etc/kubernetes/audit/policy.yaml".to_owned()),
            "{node}"
        );
    }
    for node in ["infra-1", "worker-1"] {
        let ids = step_ids(&phase, node);
        assert!(!ids.iter().any(|id| id.contains("keepalived")), "{node}");
        assert!(!ids.iter().any(|id| id.contains("audit")), "{node}");
        assert!(!ids.contains(&"fetch/usr/bin/kubectl".to_owned()), "{node}");
        // Every node runs kubeadm and the kubelet from the bundle, and reaches the API
        // servers through its own proxy.
        for binary in ["kubeadm", "kubelet"] {
            assert!(ids.contains(&format!("fetch/usr/bin/{binary}")), "{node}");
        }
        assert!(ids.contains(&"service/haproxy".to_owned()), "{node}");
    }
}

#[test]
fn a_joined_node_never_runs_kubeadm_again() {
    // node-1 created the cluster in an earlier deploy: nobody runs `init` again, the
    // others join it.
    let phase = kubernetes_phase("k8s-3", |_| {}).unwrap();
    let node1 = step_ids(&phase, "node-1");
    assert!(
        !node1
            .iter()
            .any(|id| id.contains("kubeadm-") || id.ends_with(".yaml") && id.contains("/kubeadm/"))
    );
    for node in ["node-2", "node-3"] {
        assert!(step_ids(&phase, node).contains(&"command/kubeadm-join".to_owned()));
    }
}

#[test]
fn a_node_to_join_without_a_bootstrap_token_cannot_be_planned() {
    let error = kubernetes_phase("k8s-3", |inputs| inputs.join = None).unwrap_err();
    assert!(
        matches!(&error, PlanError::NoJoinToken { node } if node == "node-2"),
        "{error:?}"
    );
}

#[test]
fn a_kubernetes_bundle_missing_a_binary_an_image_or_a_package_is_refused_naming_each() {
    let error = kubernetes_phase("k8s-5", |inputs| {
        let bundle = inputs.bundle.as_mut().unwrap();
        bundle.binaries.retain(|binary| binary.name != "kubeadm");
        bundle.images.retain(|image| image.name != "kube-scheduler");
        bundle.packages.retain(|package| package != "keepalived");
    })
    .unwrap_err();
    let PlanError::NotAKubernetesBundle { bundle, missing } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(bundle, "1.36.4-1");
    assert_eq!(
        missing,
        "binary `kubeadm`; image `kube-scheduler:v1.36.4`; package `keepalived`"
    );
    let help = miette::Diagnostic::help(&error).unwrap().to_string();
    assert!(help.contains("bundles/kubernetes-<minor>.yaml"), "{help}");
}

#[test]
fn an_unsupported_kubernetes_version_is_refused_with_the_supported_ones() {
    let error = kubernetes_phase("k8s-1", |inputs| {
        inputs.bundle.as_mut().unwrap().kubernetes_version = Some("1.30.2".to_owned());
    })
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("1.35, 1.36, 1.37"), "{text}");
}

#[test]
fn a_bundle_without_kubernetes_leaves_the_phase_empty_unless_it_is_asked_for() {
    let (inventory, facts) = common::fixture("k8s-1");
    let mut inputs = common::bundled(&inventory);
    let bundle = inputs.bundle.as_mut().unwrap();
    bundle.kubernetes_version = None;
    bundle.binaries.clear();
    let all = plan(&inventory, &facts, &inputs, &[]).unwrap();
    let kubernetes = all
        .phases
        .iter()
        .find(|p| p.name == PhaseName::Kubernetes)
        .unwrap();
    assert!(kubernetes.hosts.is_empty());
    let error = plan(&inventory, &facts, &inputs, &[PhaseName::Kubernetes]).unwrap_err();
    assert!(
        matches!(error, PlanError::NotAKubernetesBundle { .. }),
        "{error:?}"
    );
}

#[test]
fn each_node_gets_its_role_labels_taints_and_serving_names_for_the_gate() {
    let (inventory, facts) = common::fixture("k8s-5");
    let bundle = common::bundle();
    let nodes = metalk8s_plan::node_api(&inventory, &facts, Some(&bundle)).unwrap();
    let names: Vec<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
    assert_eq!(names, ["cp-1", "cp-2", "cp-3", "infra-1", "worker-1"]);
    let worker = &nodes[4];
    let body = &worker.labels_and_taints;
    assert_eq!(body["kind"], "Node");
    assert_eq!(body["metadata"]["name"], "worker-1");
    assert_eq!(
        body["metadata"]["labels"]["node-role.kubernetes.io/worker"],
        ""
    );
    assert_eq!(body["spec"]["taints"][0]["key"], "example.com/gpu");
    assert_eq!(
        nodes[0].labels_and_taints["spec"]["taints"][0]["key"],
        "node-role.kubernetes.io/control-plane"
    );
    let addresses: Vec<String> = worker
        .serving
        .addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(addresses, ["10.10.0.31", "10.20.0.31"]);
    // The host name is the node name here: nothing more to allow.
    assert!(worker.serving.hostnames.is_empty());

    let mut renamed = facts.clone();
    renamed.get_mut("worker-1").unwrap().hostname = "Worker-1.Example.COM".to_owned();
    let nodes = metalk8s_plan::node_api(&inventory, &renamed, Some(&bundle)).unwrap();
    assert_eq!(nodes[4].serving.hostnames, ["worker-1.example.com"]);
}

#[test]
fn without_a_kubernetes_bundle_there_is_nothing_for_the_gate_to_do() {
    let (inventory, facts) = common::fixture("k8s-5");
    assert_eq!(
        metalk8s_plan::node_api(&inventory, &facts, None).unwrap(),
        []
    );
    let etcd_only = metalk8s_plan::StagedBundle {
        kubernetes_version: None,
        ..common::bundle()
    };
    assert_eq!(
        metalk8s_plan::node_api(&inventory, &facts, Some(&etcd_only)).unwrap(),
        []
    );
}
