//! The `containerd` phase: containerd on every node, installed from the bundle repository
//! and configured by metalk8s, with the bootstrap node's registry as the mirror of every
//! registry.
//!
//! Per node, in order: the package (Debian 12: containerd 1.6 and runc), then our whole
//! `config.toml` (after the package, so that dpkg never finds a changed conffile to ask
//! about): CRI enabled, the systemd cgroup driver, the sandbox image from the bundle when
//! it carries `pause`, registry hosts read from `/etc/containerd/certs.d`; a `hosts.toml`
//! for the bootstrap registry itself and one for `_default` (every other registry), both
//! pulling and resolving through the bootstrap node and checking it with the cluster CA;
//! the proxy environment when the inventory has a proxy (the cluster's own networks and
//! the bootstrap node reached directly); the service, restarted when its configuration or
//! environment changed (`hosts.toml` files are read at each pull and need no restart).
//!
//! Like `repository`, the phase has no hosts without a staged bundle.

use crate::phases::{HealthGate, Needs, PhaseUnit};
use metalk8s_model::PhaseName;
use std::net::IpAddr;

use metalk8s_model::inventory::Proxy;
use metalk8s_model::plan::{
    HostPlan, PackageManager, PackageState, PackagesResource, Phase, Resource, Rollout,
    UnitResource,
};
use metalk8s_model::repository as repo;

use crate::steps::{Steps, directory, file, managed_content, named, service};
use crate::{Cluster, Inputs, PlanError, PlannedNode, StagedBundle};

pub(crate) const UNIT: PhaseUnit = PhaseUnit {
    name: PhaseName::Containerd,
    summary: "containerd from the repository, with the bootstrap registry as every registry's mirror",
    needs: Needs {
        pki: false,
        staged_bundle: true,
        etcd_state: false,
        join_token: false,
    },
    gate: HealthGate::ContainerdAnswers,
    plan: phase,
};

const SERVICE: &str = "containerd.service";
const CONFIG_DIR: &str = "/etc/containerd";
const CONFIG_FILE: &str = "/etc/containerd/config.toml";
/// containerd's registry host directory (`hosts.toml` per registry, `_default` for any).
pub(crate) const HOSTS_DIR: &str = "/etc/containerd/certs.d";
const PROXY_DROP_IN: &str = "90-metalk8s-proxy";

pub(crate) fn phase(cluster: &Cluster, inputs: &Inputs) -> Result<Phase, PlanError> {
    let mut hosts = Vec::new();
    if let Some(bundle) = &inputs.bundle {
        for node in &cluster.nodes {
            crate::repository::require_apt(node)?;
            hosts.push(host_plan(cluster, node, bundle));
        }
    }
    Ok(Phase {
        name: PhaseName::Containerd,
        rollout: Rollout::Parallel,
        hosts,
        objects: None,
    })
}

fn host_plan(cluster: &Cluster, node: &PlannedNode, bundle: &StagedBundle) -> HostPlan {
    let registry = cluster.bootstrap().control_plane_ip;
    let mut steps = Steps::default();
    let packages = steps.add((
        "packages/containerd".to_owned(),
        Resource::Packages(PackagesResource {
            manager: PackageManager::Apt,
            names: vec!["containerd".to_owned()],
            state: PackageState::Present,
        }),
    ));
    let config_dir = steps.add_with(directory(CONFIG_DIR, 0o755, "root"), &[&packages], &[]);
    let config = steps.add_with(
        file(CONFIG_FILE, config(registry, bundle), 0o644),
        &[&config_dir],
        &[],
    );
    let hosts_dir = steps.add_with(directory(HOSTS_DIR, 0o755, "root"), &[&config_dir], &[]);
    let host_file = hosts_toml(registry);
    for namespace in ["_default".to_owned(), repo::authority(registry)] {
        let dir = format!("{HOSTS_DIR}/{namespace}");
        let dir_step = steps.add_with(directory(&dir, 0o755, "root"), &[&hosts_dir], &[]);
        let content = match namespace.as_str() {
            "_default" => host_file.clone(),
            _ => format!(
                "server = \"{server}\"\n\n{host_file}",
                server = repo::base_url(registry)
            ),
        };
        steps.add_with(
            file(
                &format!("{dir}/hosts.toml"),
                managed_content("#", &content),
                0o644,
            ),
            &[&dir_step],
            &[],
        );
    }
    let mut watched = vec![config];
    if let Some(proxy) = &cluster.inventory.proxy
        && let Some(environment) = proxy_environment(cluster, proxy)
    {
        watched.push(steps.add(named(Resource::Unit(UnitResource {
            name: SERVICE.to_owned(),
            drop_in: Some(PROXY_DROP_IN.to_owned()),
            content: managed_content("#", &environment),
        }))));
    }
    let watched: Vec<&String> = watched.iter().collect();
    let mut after = vec![&packages];
    after.extend(watched.iter().copied());
    steps.add_with(service(SERVICE, true), &after, &watched);
    HostPlan {
        node: node.node.name.clone(),
        steps: steps.into_vec(),
    }
}

/// The whole configuration, ours: anything not written here is containerd's default.
fn config(registry: IpAddr, bundle: &StagedBundle) -> String {
    let sandbox = bundle
        .images
        .iter()
        .find(|image| image.name == "pause")
        .map(|pause| {
            format!(
                "  sandbox_image = \"{}/pause:{}\"\n",
                repo::authority(registry),
                pause.tag
            )
        })
        .unwrap_or_default();
    managed_content(
        "#",
        &format!(
            "\
version = 2
# Nothing disabled: the CRI plugin is what the kubelet talks to.
disabled_plugins = []

[plugins.\"io.containerd.grpc.v1.cri\"]
{sandbox}
[plugins.\"io.containerd.grpc.v1.cri\".containerd]
  default_runtime_name = \"runc\"

[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]
  runtime_type = \"io.containerd.runc.v2\"

[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins.\"io.containerd.grpc.v1.cri\".registry]
  config_path = \"{HOSTS_DIR}\"
"
        ),
    )
}

/// The bootstrap registry as a host that pulls and resolves, checked with the cluster CA
/// (containerd 1.6's `hosts.toml`, docs/hosts.md).
fn hosts_toml(registry: IpAddr) -> String {
    format!(
        "[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n",
        url = repo::base_url(registry),
        ca = repo::CA_FILE
    )
}

/// `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` for containerd, when the inventory's proxy
/// has a URL. NO_PROXY: the inventory's own list, loopback, the bootstrap registry, every
/// node, and the cluster's networks.
fn proxy_environment(cluster: &Cluster, proxy: &Proxy) -> Option<String> {
    if proxy.http.is_none() && proxy.https.is_none() {
        return None;
    }
    let networks = &cluster.inventory.networks;
    let mut no_proxy: Vec<String> = proxy.no_proxy.clone();
    no_proxy.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
    no_proxy.push(cluster.bootstrap().control_plane_ip.to_string());
    no_proxy.extend(cluster.nodes.iter().map(|n| n.control_plane_ip.to_string()));
    no_proxy.extend(networks.control_plane.iter().map(ToString::to_string));
    no_proxy.extend(networks.workload_plane.iter().map(ToString::to_string));
    no_proxy.push(networks.pods.to_string());
    no_proxy.push(networks.services.to_string());
    let mut seen = Vec::new();
    no_proxy.retain(|entry| {
        let new = !seen.contains(entry);
        seen.push(entry.clone());
        new
    });
    let mut text = String::from("[Service]\n");
    for (name, url) in [("HTTP_PROXY", &proxy.http), ("HTTPS_PROXY", &proxy.https)] {
        if let Some(url) = url {
            // systemd expands `%` specifiers in `Environment=`: a percent-encoded
            // credential (`p%40ss`) must reach containerd as written.
            let url = url.replace('%', "%%");
            text.push_str(&format!("Environment=\"{name}={url}\"\n"));
        }
    }
    text.push_str(&format!(
        "Environment=\"NO_PROXY={}\"\n",
        no_proxy.join(",")
    ));
    Some(text)
}
