//! Node labels and taints from the inventory roles, and which of them the kubelet may set
//! on its own Node.
//!
//! Roles become `node-role.kubernetes.io/<role>=""` labels. The kubelet may not set those
//! itself: the NodeRestriction admission plugin forbids a kubelet to label its Node under
//! `kubernetes.io`/`k8s.io` except a short allow-list, and the kubelet refuses to start
//! when `--node-labels` names such a label. So labels are split in two: the ones the
//! kubelet registers with (`--node-labels`), and the rest, which metalk8s applies through
//! the API with its admin credentials ([`crate::objects::node_labels_patch`]).
//!
//! Taints: a control-plane node is tainted `node-role.kubernetes.io/control-plane:NoSchedule`
//! (kubeadm's taint) unless it is also a `worker` or `infra` node; an `infra` node that is
//! not a `worker` is tainted `node-role.kubernetes.io/infra:NoSchedule`, so that only the
//! cluster services (which tolerate it) run there. The inventory's own taints come after.

use std::collections::BTreeMap;

use metalk8s_model::inventory::{Role, Taint, TaintEffect};

use crate::cluster::Node;

pub const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";
pub const INFRA_TAINT: &str = "node-role.kubernetes.io/infra";

/// Roles that become a `node-role.kubernetes.io/<role>` label. `bootstrap` and `etcd` are
/// metalk8s's own roles (repository, external etcd), not Kubernetes node roles.
const LABELLED_ROLES: [Role; 3] = [Role::ControlPlane, Role::Infra, Role::Worker];

/// Every label the node should carry: role labels, then the inventory's (which win on a
/// clash, as the operator's word).
pub fn node_labels(node: &Node) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = LABELLED_ROLES
        .iter()
        .filter(|role| node.has_role(**role))
        .map(|role| (format!("{ROLE_LABEL_PREFIX}{role}"), String::new()))
        .collect();
    labels.extend(node.labels.clone());
    labels
}

/// Every taint the node should carry: from its roles, then the inventory's.
pub fn node_taints(node: &Node) -> Vec<Taint> {
    let runs_workloads = node.has_role(Role::Worker) || node.has_role(Role::Infra);
    let mut taints = Vec::new();
    if node.is_control_plane() && !runs_workloads {
        taints.push(no_schedule(CONTROL_PLANE_TAINT));
    }
    if node.has_role(Role::Infra) && !node.has_role(Role::Worker) {
        taints.push(no_schedule(INFRA_TAINT));
    }
    for taint in &node.taints {
        if !taints
            .iter()
            .any(|own| own.key == taint.key && own.effect == taint.effect)
        {
            taints.push(taint.clone());
        }
    }
    taints
}

fn no_schedule(key: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        value: None,
        effect: TaintEffect::NoSchedule,
    }
}

/// Whether the kubelet may set `key` on its own Node (`--node-labels`), as NodeRestriction
/// and the kubelet's own flag validation allow: any label outside the `kubernetes.io` and
/// `k8s.io` namespaces, the well-known topology and instance labels, and the
/// `kubelet.kubernetes.io/` and `node.kubernetes.io/` prefixes.
pub fn kubelet_may_set(key: &str) -> bool {
    const ALLOWED: [&str; 11] = [
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ];
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted = |domain: &str| prefix == domain || prefix.ends_with(&format!(".{domain}"));
    if !restricted("kubernetes.io") && !restricted("k8s.io") {
        return true;
    }
    ALLOWED.contains(&key)
        || prefix == "kubelet.kubernetes.io"
        || prefix.ends_with(".kubelet.kubernetes.io")
        || prefix == "node.kubernetes.io"
        || prefix.ends_with(".node.kubernetes.io")
}

/// The labels the kubelet registers the node with (`--node-labels`).
pub fn kubelet_labels(node: &Node) -> BTreeMap<String, String> {
    node_labels(node)
        .into_iter()
        .filter(|(key, _)| kubelet_may_set(key))
        .collect()
}

/// The labels metalk8s applies through the API: those the kubelet may not set.
pub fn api_labels(node: &Node) -> BTreeMap<String, String> {
    node_labels(node)
        .into_iter()
        .filter(|(key, _)| !kubelet_may_set(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn node(roles: &[Role]) -> Node {
        Node {
            name: "node-1".to_owned(),
            control_plane_ip: "10.0.0.1".parse().unwrap(),
            roles: roles.iter().copied().collect::<BTreeSet<_>>(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            cpus: 4,
            memory_bytes: 8 << 30,
            control_plane_interface: None,
        }
    }

    fn keys(taints: &[Taint]) -> Vec<&str> {
        taints.iter().map(|taint| taint.key.as_str()).collect()
    }

    #[test]
    fn dedicated_control_planes_are_tainted_and_shared_ones_are_not() {
        assert_eq!(
            keys(&node_taints(&node(&[Role::ControlPlane, Role::Etcd]))),
            [CONTROL_PLANE_TAINT]
        );
        assert!(node_taints(&node(&[Role::ControlPlane, Role::Worker])).is_empty());
        assert_eq!(
            keys(&node_taints(&node(&[Role::ControlPlane, Role::Infra]))),
            [INFRA_TAINT]
        );
        assert!(node_taints(&node(&[Role::Worker, Role::Infra])).is_empty());
        assert_eq!(keys(&node_taints(&node(&[Role::Infra]))), [INFRA_TAINT]);
        assert!(node_taints(&node(&[Role::Worker])).is_empty());
    }

    #[test]
    fn inventory_taints_follow_role_taints_without_duplicates() {
        let mut node = node(&[Role::ControlPlane]);
        node.taints = vec![
            no_schedule(CONTROL_PLANE_TAINT),
            Taint {
                key: "example.com/gpu".to_owned(),
                value: Some("true".to_owned()),
                effect: TaintEffect::NoExecute,
            },
        ];
        assert_eq!(
            keys(&node_taints(&node)),
            [CONTROL_PLANE_TAINT, "example.com/gpu"]
        );
    }

    #[test]
    fn role_labels_go_through_the_api_and_plain_labels_through_the_kubelet() {
        let mut node = node(&[
            Role::ControlPlane,
            Role::Worker,
            Role::Etcd,
            Role::Bootstrap,
        ]);
        node.labels.insert("rack".to_owned(), "r1".to_owned());
        node.labels
            .insert("topology.kubernetes.io/zone".to_owned(), "z1".to_owned());
        node.labels
            .insert("node-role.kubernetes.io/storage".to_owned(), String::new());
        assert_eq!(
            api_labels(&node).keys().collect::<Vec<_>>(),
            [
                "node-role.kubernetes.io/control-plane",
                "node-role.kubernetes.io/storage",
                "node-role.kubernetes.io/worker",
            ]
        );
        assert_eq!(
            kubelet_labels(&node).keys().collect::<Vec<_>>(),
            ["rack", "topology.kubernetes.io/zone"]
        );
    }

    #[test]
    fn kubelet_label_restrictions_follow_node_restriction() {
        for allowed in [
            "rack",
            "example.com/disk",
            "kubernetes.io/hostname",
            "node.kubernetes.io/instance-type",
            "node.kubernetes.io/anything",
            "team.kubelet.kubernetes.io/x",
            "kubernetes.io.example.com/x",
        ] {
            assert!(kubelet_may_set(allowed), "{allowed}");
        }
        for refused in [
            "node-role.kubernetes.io/worker",
            "kubernetes.io/role",
            "example.k8s.io/x",
            "k8s.io/x",
            "node-restriction.kubernetes.io/x",
        ] {
            assert!(!kubelet_may_set(refused), "{refused}");
        }
    }
}
