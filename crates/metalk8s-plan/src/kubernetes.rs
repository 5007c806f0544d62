//! The `kubernetes` phase: Kubernetes with upstream kubeadm, on the cluster's own etcd and
//! PKI, every node reaching the API servers through a local proxy.
//!
//! Per node, in order:
//! - the packages kubeadm's preflight and the proxy need, from the bundle repository;
//! - the node's certificates and kubeconfigs from the PKI store (kubeadm finds them all
//!   and makes none of its own), except what the `etcd` and `repository` phases place;
//! - the local API server proxy (haproxy on 127.0.0.1:7443, and on the VIP on control
//!   planes) and, on control planes when the inventory has `networks.apiServerVIP`,
//!   keepalived holding the VIP;
//! - the kubelet's unit and kubeadm's drop-in, the kubelet enabled (kubeadm starts it);
//! - kube-proxy's per-node configuration, the audit policy (control planes), kubeadm's
//!   per-node patches;
//! - on a node that has not joined yet ([`KubernetesFacts`]): kubeadm's configuration (a
//!   secret: it holds the bootstrap token), then `kubeadm init` on the first control plane
//!   of a cluster that has none yet, `kubeadm join` everywhere else; on success the
//!   configuration is deleted and [`KUBEADM_DONE_MARKER`] written, so a converged node
//!   never runs kubeadm again.
//!
//! Control planes go one at a time, each checked by the phase's gate before the next
//! changes; the workers then go together ([`Rollout::OneAtATimeFirst`]). The first control
//! plane goes first, so `kubeadm init` runs before any join.
//!
//! Without a staged bundle, or with one that carries no Kubernetes (no Kubernetes version:
//! an etcd and containerd bundle), the phase has no hosts, like `repository` and
//! `containerd` without a bundle; asked for by name (`--phase kubernetes`) it then refuses
//! ([`require_kubernetes_bundle`]). A bundle that names a Kubernetes version but lacks a
//! binary, image or package is always refused, before any node is touched
//! ([`PlanError::NotAKubernetesBundle`]).
//!
//! [`KubernetesFacts`]: metalk8s_model::facts::KubernetesFacts

use std::collections::BTreeSet;

use metalk8s_kubernetes::cluster::{self as k8s, paths};
use metalk8s_kubernetes::kubeadm::{self, JoinToken};
use metalk8s_kubernetes::{
    KeyAlgorithm, KubernetesVersion, apiserver_proxy, audit, coredns, keepalived, kube_proxy,
    kubelet,
};
use metalk8s_model::PhaseName;
use metalk8s_model::facts::KUBEADM_DONE_MARKER;
use metalk8s_model::inventory::Role;
use metalk8s_model::plan::{
    CommandResource, FileResource, HostPlan, PackageManager, PackageState, PackagesResource, Phase,
    Resource, Rollout, UnitResource,
};

use crate::phases::{HealthGate, Needs, PhaseUnit};
use crate::steps::{Steps, directory, file, named, reaction, service};
use crate::{Cluster, Inputs, PlanError, PlannedNode, StagedBundle};

pub(crate) const UNIT: PhaseUnit = PhaseUnit {
    name: PhaseName::Kubernetes,
    summary: "Kubernetes with kubeadm: the local API server proxy (and VIP), the kubelet, the control plane on the cluster's etcd, every node joined",
    needs: Needs {
        pki: true,
        staged_bundle: true,
        etcd_state: false,
        join_token: true,
    },
    gate: HealthGate::KubernetesNodes,
    plan: phase,
};

/// Where the deploy's bootstrap token waits for kubeadm on a node that has not joined
/// (a secret file, deleted once kubeadm succeeded).
const TOKEN_FILE: &str = "/etc/kubernetes/kubeadm/bootstrap-token";
/// What stands for the token in kubeadm's configuration as placed and shown.
const TOKEN_PLACEHOLDER: &str = "@METALK8S_BOOTSTRAP_TOKEN@";

/// How long the bootstrap token of a deploy's joins lives. metalk8s deletes it once the
/// phase is done; the TTL only bounds its life when a deploy dies before that.
pub const JOIN_TOKEN_TTL: &str = "1h";

/// The bundle binaries every node runs, and those only control planes get.
const NODE_BINARIES: [&str; 2] = ["kubeadm", "kubelet"];
const CONTROL_PLANE_BINARIES: [&str; 1] = ["kubectl"];

/// The packages every node needs: haproxy (the local API server proxy) and what kubeadm's
/// preflight checks look for (iptables, conntrack… are required or warned about).
const NODE_PACKAGES: [&str; 6] = [
    "haproxy",
    "conntrack",
    "socat",
    "ethtool",
    "ebtables",
    "iptables",
];
/// On control planes when the cluster has a VIP: keepalived, and curl for its check of the
/// local API server.
const VIP_PACKAGES: [&str; 2] = ["keepalived", "curl"];

/// The control-plane images kubeadm pulls (tagged with the Kubernetes version), then the
/// images whose tags the bundle chooses.
const VERSIONED_IMAGES: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
];
const OTHER_IMAGES: [&str; 2] = ["pause", "coredns/coredns"];

/// The cluster-wide objects metalk8s applies (RBAC bindings, kube-proxy), on every
/// control plane, applied again whenever the file changes.
const CLUSTER_OBJECTS: &str = "/etc/kubernetes/metalk8s/cluster-objects.yaml";

const HAPROXY: &str = "haproxy.service";
const KEEPALIVED: &str = "keepalived.service";
const KUBELET: &str = "kubelet.service";
/// The drop-in names, as the paths of `metalk8s_kubernetes::cluster::paths` have them.
const METALK8S_DROP_IN: &str = "10-metalk8s";
const KUBEADM_DROP_IN: &str = "10-kubeadm";

/// A bootstrap token for the joins of this deploy and the hash kubeadm pins the cluster CA
/// with; gathered by the controller when a node has not joined yet ([`Inputs::join`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinCredentials {
    /// `abcdef.0123456789abcdef`.
    pub token: String,
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo.
    pub ca_cert_hash: String,
}

pub(crate) fn phase(cluster: &Cluster, inputs: &Inputs) -> Result<Phase, PlanError> {
    let Some(bundle) = &inputs.bundle else {
        return Ok(Phase {
            name: PhaseName::Kubernetes,
            rollout: Rollout::Parallel,
            hosts: Vec::new(),
            objects: None,
        });
    };
    if bundle.kubernetes_version.is_none() {
        return Ok(Phase {
            name: PhaseName::Kubernetes,
            rollout: Rollout::Parallel,
            hosts: Vec::new(),
            objects: None,
        });
    }
    for node in &cluster.nodes {
        crate::repository::require_apt(node)?;
    }
    let version = kubernetes_version(cluster, bundle)?;
    let k8s = kubernetes_cluster(cluster, version);
    k8s.validate().map_err(PlanError::kubernetes)?;

    // Control planes first, the first of them first: it initialises the cluster.
    let (control_planes, others): (Vec<&PlannedNode>, Vec<&PlannedNode>) = cluster
        .nodes
        .iter()
        .partition(|node| node.node.has_role(Role::ControlPlane));
    let initialised = control_planes
        .iter()
        .any(|node| node.facts.kubernetes.joined);
    let mut hosts = Vec::new();
    for (index, node) in control_planes.iter().chain(&others).enumerate() {
        let kubeadm = if node.facts.kubernetes.joined {
            Kubeadm::Done
        } else if index == 0 && !initialised {
            Kubeadm::Init
        } else {
            Kubeadm::Join
        };
        hosts.push(host_plan(cluster, &k8s, node, inputs, bundle, kubeadm)?);
    }
    Ok(Phase {
        name: PhaseName::Kubernetes,
        rollout: Rollout::OneAtATimeFirst {
            count: control_planes.len() as u32,
        },
        hosts,
        objects: None,
    })
}

/// Refuses to plan the phase, asked for by name, from a staged bundle that carries no
/// Kubernetes (or none at all): the operator asked for something that cannot happen.
pub(crate) fn require_kubernetes_bundle(inputs: &Inputs) -> Result<(), PlanError> {
    match &inputs.bundle {
        Some(bundle) if bundle.kubernetes_version.is_some() => Ok(()),
        Some(bundle) => Err(PlanError::NotAKubernetesBundle {
            bundle: bundle.version.clone(),
            missing:
                "a Kubernetes version (`kubernetesVersion` in its spec), its binaries and images"
                    .to_owned(),
        }),
        None => Err(PlanError::NotAKubernetesBundle {
            bundle: "(none staged)".to_owned(),
            missing: "the bundle itself: none is staged on the bootstrap node (`deploy --bundle`)"
                .to_owned(),
        }),
    }
}

/// What kubeadm does on a node in this deploy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kubeadm {
    /// Creates the cluster: the first control plane, when none has joined yet.
    Init,
    Join,
    /// The node has joined: kubeadm is not run again.
    Done,
}

/// The bundle's Kubernetes version, once the bundle is found to carry everything the phase
/// installs; otherwise every missing thing at once.
pub(crate) fn kubernetes_version(
    cluster: &Cluster,
    bundle: &StagedBundle,
) -> Result<KubernetesVersion, PlanError> {
    let refuse = |missing: Vec<String>| PlanError::NotAKubernetesBundle {
        bundle: bundle.version.clone(),
        missing: missing.join("; "),
    };
    let Some(text) = &bundle.kubernetes_version else {
        return Err(refuse(vec![
            "a Kubernetes version (`kubernetesVersion` in its spec)".to_owned(),
        ]));
    };
    let version: KubernetesVersion = text
        .parse()
        .map_err(|error: metalk8s_kubernetes::VersionError| PlanError::kubernetes(error.into()))?;
    metalk8s_kubernetes::version::supported(&version)
        .map_err(|error| PlanError::kubernetes(error.into()))?;
    let mut missing = Vec::new();
    let binaries: BTreeSet<&str> = bundle.binaries.iter().map(|b| b.name.as_str()).collect();
    for name in NODE_BINARIES.iter().chain(&CONTROL_PLANE_BINARIES) {
        if !binaries.contains(name) {
            missing.push(format!("binary `{name}`"));
        }
    }
    let tag = version.to_string();
    for name in VERSIONED_IMAGES {
        if !bundle
            .images
            .iter()
            .any(|image| image.name == name && image.tag == tag)
        {
            missing.push(format!("image `{name}:{tag}`"));
        }
    }
    for name in OTHER_IMAGES {
        if !bundle.images.iter().any(|image| image.name == name) {
            missing.push(format!("image `{name}`"));
        }
    }
    let mut packages: Vec<&str> = NODE_PACKAGES.to_vec();
    if cluster.inventory.networks.api_server_vip.is_some() {
        packages.extend(VIP_PACKAGES);
    }
    for name in packages {
        if !bundle.packages.iter().any(|package| package == name) {
            missing.push(format!("package `{name}`"));
        }
    }
    if missing.is_empty() {
        Ok(version)
    } else {
        Err(refuse(missing))
    }
}

/// CoreDNS's image from the bundle (checked present by [`require_kubernetes_bundle`]) and
/// its upstream resolvers: the inventory's `networks.nameservers`, else those of the
/// resolv.conf of the nodes CoreDNS runs on (in node order, each once; loopback
/// addresses left out: inside a pod they would be CoreDNS itself), else none.
fn dns_settings(
    cluster: &Cluster,
    k8s: &k8s::Cluster,
    bundle: &StagedBundle,
) -> coredns::DnsSettings {
    let image_tag = bundle
        .images
        .iter()
        .find(|image| image.name == coredns::IMAGE)
        .map(|image| image.tag.clone())
        .unwrap_or_default();
    let mut nameservers = cluster.inventory.networks.nameservers.clone();
    if nameservers.is_empty() {
        let role = coredns::placement_role(k8s);
        for node in cluster.nodes.iter().filter(|node| node.node.has_role(role)) {
            for address in &node.facts.nameservers {
                if !address.is_loopback() && !nameservers.contains(address) {
                    nameservers.push(*address);
                }
            }
        }
    }
    coredns::DnsSettings {
        image_tag,
        upstreams: if nameservers.is_empty() {
            coredns::Upstreams::None
        } else {
            coredns::Upstreams::Servers(nameservers)
        },
    }
}

/// The cluster as `metalk8s-kubernetes` renders it.
pub(crate) fn kubernetes_cluster(cluster: &Cluster, version: KubernetesVersion) -> k8s::Cluster {
    let inventory = cluster.inventory;
    let networks = &inventory.networks;
    k8s::Cluster {
        name: inventory.name.clone(),
        version,
        pods: networks.pods,
        services: networks.services,
        workload_plane: networks.workload_plane.clone(),
        dns_domain: "cluster.local".to_owned(),
        api_server_vip: networks.api_server_vip,
        extra_api_server_names: Vec::new(),
        registry: cluster.bootstrap().control_plane_ip,
        etcd_members: cluster
            .nodes
            .iter()
            .filter(|node| node.node.has_role(Role::Etcd))
            .map(|node| node.control_plane_ip)
            .collect(),
        oidc: None,
        // The PKI store's algorithm, for the one key kubeadm makes (the first control
        // plane's kubelet client key).
        key_algorithm: KeyAlgorithm::EcdsaP256,
        nodes: cluster
            .nodes
            .iter()
            .map(|node| k8s::Node {
                name: node.node.name.clone(),
                control_plane_ip: node.control_plane_ip,
                roles: node.node.roles.iter().copied().collect(),
                labels: node.node.labels.clone(),
                taints: node.node.taints.clone(),
                cpus: node.facts.cpus,
                memory_bytes: node.facts.memory_bytes,
                control_plane_interface: node
                    .facts
                    .addresses
                    .iter()
                    .find(|address| address.address == node.control_plane_ip)
                    .map(|address| address.interface.clone()),
            })
            .collect(),
    }
}

fn host_plan(
    cluster: &Cluster,
    k8s: &k8s::Cluster,
    planned: &PlannedNode,
    inputs: &Inputs,
    bundle: &StagedBundle,
    kubeadm: Kubeadm,
) -> Result<HostPlan, PlanError> {
    let name = &planned.node.name;
    let node = k8s
        .node(name)
        .expect("the Kubernetes cluster has every planned node");
    let control_plane = node.is_control_plane();
    let vip = k8s.api_server_vip.is_some() && control_plane;
    let mut steps = Steps::default();

    let mut packages: Vec<String> = NODE_PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    if vip {
        packages.extend(VIP_PACKAGES.map(str::to_owned));
    }
    let packages = steps.add((
        "packages/kubernetes".to_owned(),
        Resource::Packages(PackagesResource {
            manager: PackageManager::Apt,
            names: packages,
            state: PackageState::Present,
        }),
    ));

    for path in [paths::KUBERNETES_DIR, paths::PKI_DIR, paths::KUBEADM_DIR] {
        steps.add(directory(path, 0o755, "root"));
    }
    let pki = pki_files(inputs, name)?
        .into_iter()
        .map(|step| steps.add(step))
        .collect::<Vec<_>>();
    let binaries: Vec<String> = binaries(cluster, inputs, bundle, control_plane)
        .into_iter()
        .map(|step| steps.add(step))
        .collect();

    // The local API server proxy, before anything talks to the API servers.
    let proxy_config = steps.add_with(
        file(
            paths::HAPROXY_CONFIG,
            apiserver_proxy::config(k8s, node).map_err(PlanError::kubernetes)?,
            0o644,
        ),
        &[&packages],
        &[],
    );
    let proxy_drop_in = steps.add(named(Resource::Unit(UnitResource {
        name: HAPROXY.to_owned(),
        drop_in: Some(METALK8S_DROP_IN.to_owned()),
        content: apiserver_proxy::drop_in(),
    })));
    let mut proxy_after: Vec<&String> = vec![&proxy_config, &proxy_drop_in];
    proxy_after.extend(pki.iter());
    let proxy = steps.add_with(
        service(HAPROXY, true),
        &proxy_after,
        &[&proxy_config, &proxy_drop_in],
    );

    if let Some(files) = keepalived::files(k8s, node).map_err(PlanError::kubernetes)? {
        let config = steps.add_with(
            file(paths::KEEPALIVED_CONFIG, files.config, 0o644),
            &[&packages],
            &[],
        );
        let check = steps.add_with(
            file(paths::KEEPALIVED_CHECK, files.check_script, 0o755),
            &[&packages],
            &[],
        );
        let drop_in = steps.add(named(Resource::Unit(UnitResource {
            name: KEEPALIVED.to_owned(),
            drop_in: Some(METALK8S_DROP_IN.to_owned()),
            content: files.drop_in,
        })));
        steps.add_with(
            service(KEEPALIVED, true),
            &[&config, &check, &drop_in, &proxy],
            &[&config, &check, &drop_in],
        );
    }

    // The kubelet: enabled, started by kubeadm once it has written its configuration.
    let unit = steps.add(named(Resource::Unit(UnitResource {
        name: KUBELET.to_owned(),
        drop_in: None,
        content: kubelet::unit(),
    })));
    let drop_in = steps.add(named(Resource::Unit(UnitResource {
        name: KUBELET.to_owned(),
        drop_in: Some(KUBEADM_DROP_IN.to_owned()),
        content: kubelet::drop_in(node),
    })));
    let mut kubelet_after: Vec<&String> = vec![&unit, &drop_in];
    kubelet_after.extend(binaries.iter());
    let enabled = steps.add_with(
        (
            "command/enable-kubelet".to_owned(),
            Resource::Command(CommandResource {
                command: format!("systemctl enable {KUBELET}"),
                creates: None,
                unless: Some(format!("systemctl is-enabled --quiet {KUBELET}")),
                only_on_watch: false,
            }),
        ),
        &kubelet_after,
        &[],
    );
    // A joined kubelet restarts when its unit, its flags or its binary changed.
    let mut restart_watch: Vec<&String> = vec![&unit, &drop_in];
    restart_watch.extend(binaries.iter().filter(|id| id.ends_with("/kubelet")));
    let restart = steps.add_with(
        reaction(
            "restart-kubelet",
            &format!("if [ -e {KUBEADM_DONE_MARKER} ]; then systemctl restart {KUBELET}; fi"),
        ),
        &[&enabled],
        &restart_watch,
    );

    // What kubeadm reads besides its configuration.
    let mut ready: Vec<String> = vec![proxy.clone(), enabled, restart];
    ready.push(steps.add(directory(paths::KUBE_PROXY_DIR, 0o755, "root")));
    ready.push(steps.add(file(
        paths::KUBE_PROXY_CONFIG,
        kube_proxy::configuration_file(k8s, node).map_err(PlanError::kubernetes)?,
        0o644,
    )));
    if control_plane {
        ready.push(steps.add(directory(paths::AUDIT_DIR, 0o755, "root")));
        ready.push(steps.add(file(
            paths::AUDIT_POLICY,
            metalk8s_kubernetes::yaml::documents(&[audit::policy()]),
            0o644,
        )));
        ready.push(steps.add(directory("/var/log/kubernetes", 0o755, "root")));
        ready.push(steps.add(directory(paths::AUDIT_LOG_DIR, 0o700, "root")));
    }
    ready.push(steps.add(directory(paths::KUBEADM_PATCHES_DIR, 0o755, "root")));
    for (file_name, content) in kubeadm::node_patches(k8s, node).map_err(PlanError::kubernetes)? {
        ready.push(steps.add(file(
            &format!("{}/{file_name}", paths::KUBEADM_PATCHES_DIR),
            content,
            0o644,
        )));
    }
    ready.extend(pki);

    let objects = if control_plane {
        steps.add(directory("/etc/kubernetes/metalk8s", 0o755, "root"));
        let objects =
            metalk8s_kubernetes::objects::cluster_objects(k8s, &dns_settings(cluster, k8s, bundle))
                .map_err(PlanError::kubernetes)?;
        Some(steps.add(file(
            CLUSTER_OBJECTS,
            metalk8s_kubernetes::yaml::documents(&objects),
            0o644,
        )))
    } else {
        None
    };

    let mut joined = None;
    if kubeadm != Kubeadm::Done {
        let credentials = inputs
            .join
            .as_ref()
            .ok_or_else(|| PlanError::NoJoinToken { node: name.clone() })?;
        // kubeadm's configuration is shown in plans and diffs with a placeholder where the
        // token goes; the token itself is a secret file of its own, put in at run time.
        let token = JoinToken {
            token: TOKEN_PLACEHOLDER.to_owned(),
            ca_cert_hash: credentials.ca_cert_hash.clone(),
        };
        let (path, files, verb) = match kubeadm {
            Kubeadm::Init => (
                paths::KUBEADM_INIT_CONFIG,
                kubeadm::init_files(k8s, node, &token, JOIN_TOKEN_TTL),
                "init",
            ),
            _ => (
                paths::KUBEADM_JOIN_CONFIG,
                kubeadm::join_files(k8s, node, &token),
                "join",
            ),
        };
        let files = files.map_err(PlanError::kubernetes)?;
        ready.push(steps.add(file(path, files.config, 0o600)));
        ready.push(steps.add(named(Resource::File(FileResource {
            path: TOKEN_FILE.to_owned(),
            content: format!("{}\n", credentials.token),
            mode: 0o600,
            owner: "root".to_owned(),
            group: "root".to_owned(),
            secret: true,
        }))));
        let after: Vec<&String> = ready.iter().collect();
        joined = Some(steps.add_with(
            (
                format!("command/kubeadm-{verb}"),
                Resource::Command(CommandResource {
                    command: kubeadm_command(verb, path),
                    creates: Some(KUBEADM_DONE_MARKER.to_owned()),
                    unless: None,
                    only_on_watch: false,
                }),
            ),
            &after,
            &[],
        ));
    }
    if let Some(objects) = &objects {
        // Through this node's own proxy, once its API server is up (kubeadm returns
        // then); server-side apply, so each field has one owner.
        let mut after = vec![objects];
        after.extend(joined.as_ref());
        steps.add_with(
            reaction(
                "apply-cluster-objects",
                &format!(
                    "kubectl --kubeconfig {admin} --server https://{endpoint} apply --server-side --field-manager=metalk8s --force-conflicts -f {CLUSTER_OBJECTS}",
                    admin = "/etc/kubernetes/admin.conf",
                    endpoint = kubeadm::control_plane_endpoint(),
                ),
            ),
            &after,
            &[objects],
        );
    }
    Ok(HostPlan {
        node: name.clone(),
        steps: steps.into_vec(),
    })
}

/// The node's files from the PKI store under /etc/kubernetes, but those another phase
/// places: etcd's member certificates (`etcd`) and the repository's (`repository`).
/// kubeadm reads the etcd CA and the API server's etcd client certificate from here too.
fn pki_files(inputs: &Inputs, node: &str) -> Result<Vec<(String, Resource)>, PlanError> {
    let files = inputs.pki.get(node).ok_or_else(|| PlanError::MissingPki {
        node: node.to_owned(),
    })?;
    let etcd_dir = format!("{}/", metalk8s_model::etcd::PKI_DIR);
    let repository = [
        metalk8s_model::repository::CERT_FILE,
        metalk8s_model::repository::KEY_FILE,
    ];
    Ok(files
        .iter()
        .filter(|file| {
            file.path
                .starts_with(&format!("{}/", paths::KUBERNETES_DIR))
        })
        .filter(|file| !repository.contains(&file.path.as_str()))
        .filter(|file| !file.path.starts_with(&etcd_dir) || file.path == paths::ETCD_CA_CERT)
        .map(|file| {
            named(Resource::File(FileResource {
                path: file.path.clone(),
                content: file.content.clone(),
                mode: file.mode,
                owner: "root".to_owned(),
                group: "root".to_owned(),
                secret: file.private,
            }))
        })
        .collect())
}

/// The bundle's binaries the node runs, fetched from the bootstrap repository into
/// /usr/bin (kubectl on control planes only: the gates and metalk8s use it there).
fn binaries(
    cluster: &Cluster,
    inputs: &Inputs,
    bundle: &StagedBundle,
    control_plane: bool,
) -> Vec<(String, Resource)> {
    let registry = cluster.bootstrap().control_plane_ip;
    let mut wanted: Vec<&str> = NODE_BINARIES.to_vec();
    if control_plane {
        wanted.extend(CONTROL_PLANE_BINARIES);
    }
    wanted
        .into_iter()
        .filter_map(|name| bundle.binaries.iter().find(|binary| binary.name == name))
        .map(|binary| {
            crate::steps::fetch(
                &inputs.agent_path,
                &format!("/usr/bin/{}", binary.name),
                metalk8s_model::repository::file_url(registry, &binary.name),
                &binary.sha256,
                0o755,
            )
        })
        .collect()
}

/// `kubeadm VERB` with `config` and the token put in its place, in a copy readable by
/// root only that is removed whatever kubeadm's outcome; on success the token file goes
/// and the done-marker is written.
fn kubeadm_command(verb: &str, config: &str) -> String {
    let run = format!("{config}.run");
    format!(
        "umask 077
sed \"s/{TOKEN_PLACEHOLDER}/$(cat {TOKEN_FILE})/\" {config} > {run} || exit 1
kubeadm {verb} --config {run}; status=$?
rm -f {run}
[ $status -eq 0 ] || exit $status
rm -f {TOKEN_FILE} && touch {KUBEADM_DONE_MARKER}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubeadm command run by `sh` against a scratch copy of its directory, with a
    /// stand-in `kubeadm` on the PATH that records the configuration it was given (the
    /// test is about the command's plumbing, not kubeadm).
    fn run_kubeadm_command(kubeadm_succeeds: bool) -> (std::path::PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubeadm");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let scratch = root.to_str().unwrap();
        let config = format!("{}/join.yaml", paths::KUBEADM_DIR);
        std::fs::write(
            root.join("join.yaml"),
            format!("discovery:\n  bootstrapToken:\n    token: \"{TOKEN_PLACEHOLDER}\"\n"),
        )
        .unwrap();
        std::fs::write(root.join("bootstrap-token"), "abcdef.0123456789abcdef\n").unwrap();
        let seen = dir.path().join("seen.yaml");
        let stand_in = bin.join("kubeadm");
        std::fs::write(
            &stand_in,
            format!(
                "#!/bin/sh\ncp \"$3\" {seen}\nexit {}\n",
                if kubeadm_succeeds { 0 } else { 3 },
                seen = seen.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&stand_in)
            .status()
            .unwrap();
        let command = kubeadm_command("join", &config).replace(paths::KUBEADM_DIR, scratch);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .status()
            .unwrap();
        assert_eq!(status.success(), kubeadm_succeeds, "{command}");
        (root, dir)
    }

    #[test]
    fn kubeadm_gets_the_token_in_place_of_the_placeholder_and_leaves_no_copy() {
        let (root, dir) = run_kubeadm_command(true);
        let seen = std::fs::read_to_string(dir.path().join("seen.yaml")).unwrap();
        assert!(
            seen.contains("token: \"abcdef.0123456789abcdef\""),
            "{seen}"
        );
        assert!(!root.join("join.yaml.run").exists());
        assert!(
            !root.join("bootstrap-token").exists(),
            "the token goes once used"
        );
        assert!(root.join("joined").exists(), "the done-marker is written");
    }

    #[test]
    fn a_failed_kubeadm_leaves_no_marker_and_no_copy_of_the_token() {
        let (root, _dir) = run_kubeadm_command(false);
        assert!(!root.join("join.yaml.run").exists());
        assert!(!root.join("joined").exists());
        assert!(
            root.join("bootstrap-token").exists(),
            "kept for the next try"
        );
    }
}
