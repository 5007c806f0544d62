//! The `repository` phase: the bootstrap node serves the staged offline bundle, and every
//! node's APT uses it and nothing else (docs/repository.md).
//!
//! The bootstrap node goes first, alone ([`Rollout::FirstAlone`]): its server certificate
//! and key (from the Kubernetes CA), the APT signing key, `metalk8s-repo.service` running
//! `metalk8s repo serve` on its control-plane address, restarted when any of them (or the
//! bundle version) changed. The deploy's gate then checks that the registry answers before
//! any other node is touched. Then every node, the bootstrap node included: the Kubernetes
//! CA, the repository's public key, one deb822 source signed by that key (`Signed-By`, never
//! `trusted=yes`), APT told to check the server with the CA and to reach it without a
//! proxy, every other source moved aside, and `apt-get update` when any of that changed.
//!
//! Without a staged bundle the phase has no hosts: nodes keep their own sources.

use crate::phases::{HealthGate, Needs, PhaseUnit};
use metalk8s_model::PhaseName;
use std::net::IpAddr;

use metalk8s_model::plan::{
    CommandResource, FileResource, HostPlan, NodeFile, PackageManager, Phase, Resource, Rollout,
    UnitResource,
};
use metalk8s_model::repository as repo;

use crate::steps::{Steps, directory, file, managed_content, named, reaction, service};
use crate::{Cluster, Inputs, PlanError, PlannedNode, StagedBundle};

pub(crate) const UNIT: PhaseUnit = PhaseUnit {
    name: PhaseName::Repository,
    summary: "the staged bundle served from the bootstrap node; every node's APT pointed at it only",
    needs: Needs {
        pki: true,
        staged_bundle: true,
        etcd_state: false,
        join_token: false,
    },
    gate: HealthGate::RegistryAnswers,
    plan: phase,
};

/// Debian's marker of a successful `apt-get update`, which the packages resource reads to
/// skip its own update.
const APT_UPDATE_STAMP: &str = "/var/lib/apt/periodic/update-success-stamp";

pub(crate) fn phase(cluster: &Cluster, inputs: &Inputs) -> Result<Phase, PlanError> {
    let mut hosts = Vec::new();
    if let Some(bundle) = &inputs.bundle {
        for node in &cluster.nodes {
            require_apt(node)?;
        }
        let bootstrap = cluster.bootstrap();
        hosts.push(host_plan(cluster, bootstrap, inputs, Some(bundle))?);
        for node in &cluster.nodes {
            if node.node.name != bootstrap.node.name {
                hosts.push(host_plan(cluster, node, inputs, None)?);
            }
        }
    }
    Ok(Phase {
        name: PhaseName::Repository,
        rollout: Rollout::FirstAlone,
        hosts,
        objects: None,
    })
}

/// The repository is an APT repository: dnf nodes cannot use it yet.
pub(crate) fn require_apt(node: &PlannedNode) -> Result<(), PlanError> {
    match crate::os::family_of(&node.node.name, node.facts)? {
        PackageManager::Apt => Ok(()),
        PackageManager::Dnf => Err(PlanError::NoBundleRepository {
            node: node.node.name.clone(),
        }),
    }
}

/// `server` is the staged bundle on the bootstrap node, `None` on the others.
fn host_plan(
    cluster: &Cluster,
    node: &PlannedNode,
    inputs: &Inputs,
    server: Option<&StagedBundle>,
) -> Result<HostPlan, PlanError> {
    let mut steps = Steps::default();
    let ip = cluster.bootstrap().control_plane_ip;
    let served = match server {
        Some(bundle) => Some(serve(&mut steps, node, ip, inputs, bundle)?),
        None => None,
    };
    use_repository(&mut steps, node, ip, inputs, served.as_ref())?;
    Ok(HostPlan {
        node: node.node.name.clone(),
        steps: steps.into_vec(),
    })
}

/// The file the PKI store returned for `node` at `path`, as a step.
fn node_file(inputs: &Inputs, node: &str, path: &str) -> Result<(String, Resource), PlanError> {
    let missing = || PlanError::MissingNodeFile {
        node: node.to_owned(),
        path: path.to_owned(),
    };
    let found: &NodeFile = inputs
        .pki
        .get(node)
        .and_then(|files| files.iter().find(|file| file.path == path))
        .ok_or_else(missing)?;
    Ok(named(Resource::File(FileResource {
        path: found.path.clone(),
        content: found.content.clone(),
        mode: found.mode,
        owner: "root".to_owned(),
        group: "root".to_owned(),
        secret: found.private,
    })))
}

/// The server's steps on the bootstrap node; returns the id of the step after which it
/// answers.
fn serve(
    steps: &mut Steps,
    node: &PlannedNode,
    ip: IpAddr,
    inputs: &Inputs,
    bundle: &StagedBundle,
) -> Result<String, PlanError> {
    let name = &node.node.name;
    steps.add_once(directory("/etc/kubernetes", 0o755, "root"));
    steps.add_once(directory("/etc/kubernetes/pki", 0o755, "root"));
    steps.add_once(directory("/etc/metalk8s", 0o755, "root"));
    steps.add(directory(repo::APT_KEY_DIR, 0o700, "root"));
    // Before the server: checking that it answers needs the CA.
    steps.add_once(node_file(inputs, name, repo::CA_FILE)?);
    let mut watched = Vec::new();
    for path in [repo::CERT_FILE, repo::KEY_FILE, repo::APT_KEY_FILE] {
        watched.push(steps.add(node_file(inputs, name, path)?));
    }
    watched.push(steps.add(named(Resource::Unit(UnitResource {
        name: repo::SERVICE.to_owned(),
        drop_in: None,
        content: managed_content("#", &unit(ip, &inputs.agent_path, bundle)),
    }))));
    let watched: Vec<&String> = watched.iter().collect();
    let service = steps.add_with(service(repo::SERVICE, true), &watched, &watched);
    // The service is started, not necessarily listening yet: this node's own APT update
    // comes right after.
    let url = repo::registry_url(ip);
    let check = format!(
        "curl -fsS -o /dev/null --max-time 5 --cacert {ca} {url}",
        ca = repo::CA_FILE
    );
    Ok(steps.add_with(
        (
            "command/wait-for-repository".to_owned(),
            Resource::Command(CommandResource {
                command: format!(
                    "for attempt in $(seq 30); do {check} && exit 0; sleep 1; done; {check}"
                ),
                creates: None,
                unless: Some(check),
                only_on_watch: false,
            }),
        ),
        &[&service],
        &[],
    ))
}

/// `metalk8s repo serve` on the control-plane address only. The bundle version is in the
/// unit so that staging a new bundle (the `current` link moves) restarts the server.
fn unit(ip: IpAddr, agent_path: &str, bundle: &StagedBundle) -> String {
    format!(
        "\
[Unit]
Description=metalk8s bundle repository: APT repository and OCI registry of the offline bundle
After=network-online.target
Wants=network-online.target

[Service]
Environment=METALK8S_BUNDLE_VERSION={version}
ExecStart={agent_path} repo serve --bundle {current} --listen {listen} --cert {cert} --key {key} --apt-key {apt_key}
Restart=on-failure
RestartSec=5s
# It only reads (the bundle, its certificate and keys, all owned by root) and listens on an
# unprivileged port: root without any capability, on a read-only view of the system that
# does not include the PKI store.
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
InaccessiblePaths=-{pki_store}
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
",
        version = bundle.version,
        current = repo::CURRENT_BUNDLE,
        listen = repo::authority(ip),
        cert = repo::CERT_FILE,
        key = repo::KEY_FILE,
        apt_key = repo::APT_KEY_FILE,
        pki_store = PKI_STORE,
    )
}

/// The key store on the bootstrap node (metalk8s-pki's `STORE_DIR`): the repository
/// server never needs it.
const PKI_STORE: &str = "/var/lib/metalk8s/pki";

/// Every node's APT uses the repository and nothing else.
fn use_repository(
    steps: &mut Steps,
    node: &PlannedNode,
    ip: IpAddr,
    inputs: &Inputs,
    served: Option<&String>,
) -> Result<(), PlanError> {
    let name = &node.node.name;
    steps.add_once(directory("/etc/kubernetes", 0o755, "root"));
    steps.add_once(directory("/etc/kubernetes/pki", 0o755, "root"));
    let ca = steps.add_once(node_file(inputs, name, repo::CA_FILE)?);
    steps.add(directory("/etc/apt/keyrings", 0o755, "root"));
    let keyring = steps.add(node_file(inputs, name, repo::KEYRING_FILE)?);
    let settings = steps.add(file(repo::APT_CONF_FILE, apt_settings(ip), 0o644));
    let source = steps.add(file(repo::SOURCES_FILE, sources(ip), 0o644));
    let mut after = vec![&ca, &keyring, &settings, &source];
    after.extend(served);
    let others = steps.add_with(
        (
            "command/disable-other-apt-sources".to_owned(),
            Resource::Command(CommandResource {
                command: disable_other_sources(),
                creates: None,
                unless: Some(format!("! {}", other_sources())),
                only_on_watch: false,
            }),
        ),
        &after,
        &[],
    );
    let changed = [&ca, &keyring, &settings, &source, &others];
    steps.add_with(
        reaction(
            "apt-get-update",
            &format!(
                "apt-get update -q --error-on=any && mkdir -p {dir} && touch {APT_UPDATE_STAMP}",
                dir = "/var/lib/apt/periodic"
            ),
        ),
        &changed,
        &changed,
    );
    Ok(())
}

/// `Acquire::https::IP::CaInfo` checks the server with the cluster CA only; `Proxy::IP
/// "DIRECT"` keeps apt from sending the repository's traffic to the inventory's proxy
/// (the `os` phase's proxy file applies to every other host).
fn apt_settings(ip: IpAddr) -> String {
    managed_content(
        "//",
        &format!(
            "Acquire::https::{ip}::CaInfo \"{ca}\";\nAcquire::https::{ip}::Verify-Peer \"true\";\nAcquire::https::Proxy::{ip} \"DIRECT\";\n",
            ca = repo::CA_FILE
        ),
    )
}

/// The one source, deb822, signed by the cluster's APT key.
fn sources(ip: IpAddr) -> String {
    managed_content(
        "#",
        &format!(
            "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: {component}\nSigned-By: {keyring}\n",
            uri = repo::apt_url(ip),
            suite = repo::APT_SUITE,
            component = repo::APT_COMPONENT,
            keyring = repo::KEYRING_FILE,
        ),
    )
}

/// Lists the APT sources other than ours (succeeds when there is one).
fn other_sources() -> String {
    format!(
        "ls -1 /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -qvxF {ours}",
        ours = repo::SOURCES_FILE
    )
}

/// Moves every other source aside (`NAME.metalk8s-disabled`), so that a node installs
/// nothing but what the bundle carries; putting the files back restores them.
fn disable_other_sources() -> String {
    format!(
        "for source in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do \
         if [ -e \"$source\" ] && [ \"$source\" != {ours} ]; then mv -f \"$source\" \"$source{suffix}\" || exit 1; fi; \
         done",
        ours = repo::SOURCES_FILE,
        suffix = repo::DISABLED_SUFFIX
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_signed_and_never_trusted_blindly() {
        let ip: IpAddr = "10.0.0.10".parse().unwrap();
        let text = sources(ip);
        assert!(
            text.contains("URIs: https://10.0.0.10:8443/apt\n"),
            "{text}"
        );
        assert!(text.contains("Signed-By: /etc/apt/keyrings/metalk8s.asc\n"));
        assert!(!text.contains("trusted"));
        let settings = apt_settings(ip);
        assert!(
            settings.contains("Acquire::https::10.0.0.10::CaInfo \"/etc/kubernetes/pki/ca.crt\";")
        );
        assert!(settings.contains("Acquire::https::Proxy::10.0.0.10 \"DIRECT\";"));
    }
}
