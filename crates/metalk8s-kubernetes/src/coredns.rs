//! CoreDNS, the cluster's DNS: its objects as metalk8s runs it.
//!
//! kubeadm's CoreDNS addon is turned off (see [`crate::kubeadm::DISABLED_ADDONS`]) and
//! metalk8s applies CoreDNS's objects itself, for three reasons kubeadm's addon cannot
//! meet: the replicas must run on the nodes meant for cluster services (the `infra` nodes,
//! else the control planes) and never two on one node; the upstream resolvers are chosen
//! by metalk8s (an air-gapped site often has none, and then CoreDNS must not forward at
//! all rather than fail every outside lookup slowly); and `kubeadm upgrade apply` rewrites
//! its addon's Deployment, which would undo both.
//!
//! The objects keep kubeadm's names (`coredns` Deployment, ConfigMap, ServiceAccount; the
//! `kube-dns` Service at the tenth address of the services network, which the kubelets
//! hand to pods as their nameserver, [`Cluster::cluster_dns_ip`]), so tools that look for
//! them find them.

use std::net::IpAddr;

use metalk8s_model::inventory::Role;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::error::InputError;
use crate::roles::{CONTROL_PLANE_TAINT, INFRA_TAINT, ROLE_LABEL_PREFIX};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "coredns";
pub const SERVICE: &str = "kube-dns";
/// The image's path in the bundle (and upstream, under registry.k8s.io).
pub const IMAGE: &str = "coredns/coredns";
/// At most this many replicas: two keep DNS answering while one node is drained.
pub const MAX_REPLICAS: usize = 2;
const METRICS_PORT: u16 = 9153;
const HEALTH_PORT: u16 = 8080;
const READY_PORT: u16 = 8181;

/// Where CoreDNS sends the names that are not the cluster's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstreams {
    /// These resolvers, in order (from the inventory, or else the nodes' resolv.conf).
    Servers(Vec<IpAddr>),
    /// None known: CoreDNS answers for the cluster's names only and forwards nothing.
    None,
}

/// What CoreDNS needs beyond the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// The bundle's CoreDNS tag (`v1.14.2`).
    pub image_tag: String,
    pub upstreams: Upstreams,
}

/// The role whose nodes run CoreDNS: `infra` when the cluster has such nodes, else
/// `control-plane`.
pub fn placement_role(cluster: &Cluster) -> Role {
    if cluster.nodes.iter().any(|node| node.has_role(Role::Infra)) {
        Role::Infra
    } else {
        Role::ControlPlane
    }
}

/// How many replicas run: one per node of [`placement_role`], at most [`MAX_REPLICAS`].
pub fn replicas(cluster: &Cluster) -> usize {
    let role = placement_role(cluster);
    let eligible = cluster
        .nodes
        .iter()
        .filter(|node| node.has_role(role))
        .count();
    eligible.clamp(1, MAX_REPLICAS)
}

/// CoreDNS's configuration: the cluster domain and reverse zones from the API, metrics,
/// health and readiness endpoints, a cache, and forwarding to `upstreams` when there are
/// any (`loop` stops CoreDNS if a resolver sends its queries back to it).
pub fn corefile(cluster: &Cluster, upstreams: &Upstreams) -> String {
    let forward = match upstreams {
        Upstreams::Servers(servers) if !servers.is_empty() => {
            let servers: Vec<String> = servers.iter().map(ToString::to_string).collect();
            format!(
                "    forward . {} {{\n        max_concurrent 1000\n    }}\n",
                servers.join(" ")
            )
        }
        _ => "    # No upstream resolver: neither the inventory (networks.nameservers) nor the\n    # nodes' /etc/resolv.conf names one, so names outside the cluster do not resolve.\n".to_owned(),
    };
    format!(
        "\
.:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :{METRICS_PORT}
{forward}    cache 30
    loop
    reload
    loadbalance
}}
",
        domain = cluster.dns_domain,
    )
}

/// Every object of CoreDNS: ServiceAccount, ClusterRole and its binding, the Corefile
/// ConfigMap, the Deployment, its PodDisruptionBudget and the `kube-dns` Service.
pub fn objects(cluster: &Cluster, settings: &DnsSettings) -> Result<Vec<Value>, InputError> {
    cluster.validate()?;
    let dns_ip = cluster.cluster_dns_ip()?;
    let labels = json!({"k8s-app": SERVICE});
    let role = placement_role(cluster);
    let role_label = format!("{ROLE_LABEL_PREFIX}{role}");
    let corefile = corefile(cluster, &settings.upstreams);
    let config_hash = short_hash(&corefile);
    Ok(vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns", "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "data": {"Corefile": corefile},
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": replicas(cluster),
                "selector": {"matchLabels": labels},
                // Never two replicas on one node (below), and as many nodes as replicas
                // at most: a surge pod would have nowhere to go.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "template": {
                    "metadata": {
                        "labels": labels,
                        // A changed Corefile rolls the pods (CoreDNS's `reload` also
                        // picks it up, but only once the kubelet has synced the volume).
                        "annotations": {"metalk8s.io/corefile-sha256": config_hash},
                    },
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": NAME,
                        // The node's resolvers, not the cluster's own DNS (itself).
                        "dnsPolicy": "Default",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "affinity": {
                            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": [{"key": role_label, "operator": "Exists"}]}],
                            }},
                            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                                "labelSelector": {"matchLabels": labels},
                                "topologyKey": "kubernetes.io/hostname",
                            }]},
                        },
                        "tolerations": [
                            {"key": CONTROL_PLANE_TAINT, "operator": "Exists", "effect": "NoSchedule"},
                            {"key": INFRA_TAINT, "operator": "Exists", "effect": "NoSchedule"},
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        ],
                        "containers": [{
                            "name": NAME,
                            "image": format!("{}/{IMAGE}:{}", cluster.image_repository(), settings.image_tag),
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "70Mi"},
                                "limits": {"memory": "170Mi"},
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": HEALTH_PORT, "scheme": "HTTP"},
                                "initialDelaySeconds": 60,
                                "timeoutSeconds": 5,
                                "failureThreshold": 5,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": READY_PORT, "scheme": "HTTP"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                "readOnlyRootFilesystem": true,
                            },
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": true}],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": NAME, "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": SERVICE,
                "namespace": NAMESPACE,
                "labels": {"k8s-app": SERVICE, "kubernetes.io/name": "CoreDNS"},
            },
            "spec": {
                "selector": labels,
                "clusterIP": dns_ip.to_string(),
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP", "targetPort": METRICS_PORT},
                ],
            },
        }),
    ])
}

/// The first 16 hex digits of the sha256 of `text`.
fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(roles: &[&[Role]]) -> Cluster {
        let nodes: Vec<crate::Node> = roles
            .iter()
            .enumerate()
            .map(|(index, roles)| crate::Node {
                name: format!("node-{}", index + 1),
                control_plane_ip: format!("10.100.0.{}", 11 + index).parse().unwrap(),
                roles: roles.iter().copied().collect(),
                labels: Default::default(),
                taints: Vec::new(),
                cpus: 4,
                memory_bytes: 8 << 30,
                control_plane_interface: Some("eth0".to_owned()),
            })
            .collect();
        Cluster {
            name: "lab".to_owned(),
            version: "v1.36.4".parse().unwrap(),
            pods: "10.233.0.0/16".parse().unwrap(),
            services: "10.96.0.0/12".parse().unwrap(),
            workload_plane: vec!["10.200.0.0/16".parse().unwrap()],
            dns_domain: "cluster.local".to_owned(),
            api_server_vip: None,
            extra_api_server_names: Vec::new(),
            registry: nodes[0].control_plane_ip,
            etcd_members: vec![nodes[0].control_plane_ip],
            oidc: None,
            key_algorithm: crate::KeyAlgorithm::EcdsaP256,
            nodes,
        }
    }

    fn settings(upstreams: Upstreams) -> DnsSettings {
        DnsSettings {
            image_tag: "v1.14.2".to_owned(),
            upstreams,
        }
    }

    fn deployment(objects: &[Value]) -> &Value {
        objects
            .iter()
            .find(|object| object["kind"] == "Deployment")
            .expect("a Deployment")
    }

    #[test]
    fn replicas_run_on_infra_nodes_when_there_are_some() {
        let with_infra = cluster(&[
            &[Role::ControlPlane, Role::Etcd],
            &[Role::ControlPlane, Role::Etcd],
            &[Role::Infra],
            &[Role::Worker],
        ]);
        assert_eq!(placement_role(&with_infra), Role::Infra);
        assert_eq!(replicas(&with_infra), 1);
        let objects = objects(&with_infra, &settings(Upstreams::None)).unwrap();
        let spec = &deployment(&objects)["spec"]["template"]["spec"];
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["key"],
            "node-role.kubernetes.io/infra"
        );

        let control_planes = cluster(&[
            &[Role::ControlPlane],
            &[Role::ControlPlane],
            &[Role::ControlPlane],
            &[Role::Worker],
        ]);
        assert_eq!(placement_role(&control_planes), Role::ControlPlane);
        assert_eq!(replicas(&control_planes), MAX_REPLICAS);
        assert_eq!(replicas(&cluster(&[&[Role::ControlPlane]])), 1);
    }

    #[test]
    fn the_corefile_forwards_only_to_known_resolvers() {
        let cluster = cluster(&[&[Role::ControlPlane]]);
        let servers = Upstreams::Servers(vec![
            "10.0.0.53".parse().unwrap(),
            "10.0.1.53".parse().unwrap(),
        ]);
        let with = corefile(&cluster, &servers);
        assert!(
            with.contains("    forward . 10.0.0.53 10.0.1.53 {\n"),
            "{with}"
        );
        let without = corefile(&cluster, &Upstreams::None);
        assert!(!without.contains("    forward "), "{without}");
        assert!(without.contains("# No upstream resolver"), "{without}");
        assert!(without.contains("kubernetes cluster.local in-addr.arpa ip6.arpa {"));
        assert_eq!(
            corefile(&cluster, &Upstreams::Servers(Vec::new())),
            without,
            "an empty list forwards nowhere"
        );
    }

    #[test]
    fn a_changed_corefile_changes_the_pod_template() {
        let cluster = cluster(&[&[Role::ControlPlane]]);
        let hash = |upstreams| {
            let objects = objects(&cluster, &settings(upstreams)).unwrap();
            deployment(&objects)["spec"]["template"]["metadata"]["annotations"]
                ["metalk8s.io/corefile-sha256"]
                .clone()
        };
        assert_ne!(
            hash(Upstreams::None),
            hash(Upstreams::Servers(vec!["10.0.0.53".parse().unwrap()]))
        );
    }

    #[test]
    fn the_service_holds_the_address_the_kubelets_hand_out() {
        let cluster = cluster(&[&[Role::ControlPlane]]);
        let objects = objects(&cluster, &settings(Upstreams::None)).unwrap();
        let service = objects
            .iter()
            .find(|object| object["kind"] == "Service")
            .unwrap();
        assert_eq!(
            service["spec"]["clusterIP"],
            cluster.cluster_dns_ip().unwrap().to_string()
        );
        assert_eq!(
            deployment(&objects)["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("{}/coredns/coredns:v1.14.2", cluster.image_repository())
        );
    }
}
