//! The `etcd` phase: the cluster's external etcd, on every node with the `etcd` role.
//!
//! etcd comes from the node's package source (Debian's `etcd-server` and `etcd-client`;
//! a bundle later) but runs as metalk8s configures it, never with the distribution's
//! defaults: metalk8s's own `etcd.service` in /etc/systemd/system (it overrides the
//! package's and is in place before the package is installed, so the package's first start
//! is already ours), an environment file with every setting, TLS with client-certificate
//! authentication for clients and peers, listening only on the node's control-plane
//! address and 127.0.0.1, and metrics on 127.0.0.1 only.
//!
//! Per member, in order: the `etcd` account, the certificates from the PKI store, the data
//! directory, the environment file, the unit, the packages, the service (restarted when
//! any of them changed). A cluster being created starts all members at once (a member's
//! start waits for a quorum); a running cluster's members change one at a time, the
//! deploy's health gate checking the whole cluster after each.

use crate::phases::{HealthGate, Needs, PhaseUnit};
use metalk8s_model::PhaseName;
use std::collections::BTreeMap;

use metalk8s_model::etcd;
use metalk8s_model::inventory::Role;
use metalk8s_model::plan::{
    DirectoryResource, FileResource, GroupResource, HostPlan, NodeFile, PackageManager,
    PackageState, PackagesResource, Phase, Resource, Rollout, UnitResource, UserResource,
};

use crate::steps::{Steps, directory, file, managed_content, named, service};
use crate::{Cluster, Inputs, PlanError, PlannedNode};

pub(crate) const UNIT: PhaseUnit = PhaseUnit {
    name: PhaseName::Etcd,
    summary: "the cluster's external etcd on the etcd nodes, with TLS from the PKI store",
    needs: Needs {
        pki: true,
        staged_bundle: false,
        etcd_state: true,
        join_token: false,
    },
    gate: HealthGate::EtcdHealthy,
    plan: phase,
};

/// Backend quota: 8 GiB, etcd's recommended maximum (the default, 2 GiB, is reached by
/// large clusters, and then etcd refuses every write until defragmented).
const QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Raft entries between snapshots; etcd's default since 3.2, written down so that it stays.
const SNAPSHOT_COUNT: u32 = 10_000;

pub(crate) fn phase(cluster: &Cluster, inputs: &Inputs) -> Result<Phase, PlanError> {
    let members: Vec<&PlannedNode> = cluster
        .nodes
        .iter()
        .filter(|node| node.node.has_role(Role::Etcd))
        .collect();
    let initial_cluster = etcd::initial_cluster(
        members
            .iter()
            .map(|member| (member.node.name.as_str(), member.control_plane_ip)),
    );
    let hosts = members
        .iter()
        .map(|member| host_plan(cluster, member, &initial_cluster, inputs))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Phase {
        name: PhaseName::Etcd,
        rollout: if inputs.etcd_running {
            Rollout::Batches { size: 1 }
        } else {
            Rollout::Parallel
        },
        hosts,
        objects: None,
    })
}

fn host_plan(
    cluster: &Cluster,
    member: &PlannedNode,
    initial_cluster: &str,
    inputs: &Inputs,
) -> Result<HostPlan, PlanError> {
    let name = &member.node.name;
    let pki = inputs
        .pki
        .get(name)
        .ok_or_else(|| PlanError::MissingPki { node: name.clone() })?;
    let etcd_files: Vec<&NodeFile> = pki
        .iter()
        .filter(|file| file.path.starts_with(&format!("{}/", etcd::PKI_DIR)))
        .collect();
    for wanted in [
        etcd::CA_FILE,
        etcd::SERVER_CERT,
        etcd::SERVER_KEY,
        etcd::PEER_CERT,
        etcd::PEER_KEY,
        etcd::CLIENT_CERT,
        etcd::CLIENT_KEY,
    ] {
        if !etcd_files.iter().any(|file| file.path == wanted) {
            return Err(PlanError::MissingPki { node: name.clone() });
        }
    }

    let mut steps = Steps::default();
    let group = steps.add(named(Resource::Group(GroupResource {
        name: etcd::USER.to_owned(),
        system: true,
    })));
    let user = steps.add_with(
        named(Resource::User(UserResource {
            name: etcd::USER.to_owned(),
            system: true,
            home: Some(etcd::DATA_DIR.to_owned()),
            shell: Some("/usr/sbin/nologin".to_owned()),
            groups: Vec::new(),
        })),
        &[&group],
        &[],
    );

    for path in ["/etc/kubernetes", "/etc/kubernetes/pki", etcd::PKI_DIR] {
        steps.add(directory(path, 0o755, "root"));
    }
    let mut watched = Vec::new();
    for node_file in etcd_files {
        // etcd reads its own keys; the client key is for etcdctl and metalk8s, as root.
        let owned_by_etcd = node_file.path == etcd::SERVER_KEY || node_file.path == etcd::PEER_KEY;
        let owner = if owned_by_etcd { etcd::USER } else { "root" };
        let id = steps.add_with(
            named(Resource::File(FileResource {
                path: node_file.path.clone(),
                content: node_file.content.clone(),
                mode: node_file.mode,
                owner: owner.to_owned(),
                group: owner.to_owned(),
                secret: node_file.private,
            })),
            &[&user],
            &[],
        );
        watched.push(id);
    }

    let data = steps.add_with(
        named(Resource::Directory(DirectoryResource {
            path: etcd::DATA_DIR.to_owned(),
            mode: 0o700,
            owner: etcd::USER.to_owned(),
            group: etcd::USER.to_owned(),
        })),
        &[&user],
        &[],
    );
    steps.add(directory("/etc/metalk8s", 0o755, "root"));
    steps.add(directory("/etc/metalk8s/etcd", 0o755, "root"));
    let environment = steps.add(file(
        etcd::ENV_FILE,
        managed_content("#", &environment(cluster, member, initial_cluster)),
        0o644,
    ));
    watched.push(environment);
    let unit = steps.add(named(Resource::Unit(UnitResource {
        name: etcd::SERVICE.to_owned(),
        drop_in: None,
        content: managed_content("#", &unit()),
    })));
    watched.push(unit.clone());

    let manager = package_manager(member)?;
    let packages = steps.add_with(
        (
            "packages/etcd".to_owned(),
            Resource::Packages(PackagesResource {
                manager,
                names: vec!["etcd-server".to_owned(), "etcd-client".to_owned()],
                state: PackageState::Present,
            }),
        ),
        &[&unit, &data],
        &[],
    );
    let watched: Vec<&String> = watched.iter().collect();
    steps.add_with(service(etcd::SERVICE, true), &[&packages], &watched);
    Ok(HostPlan {
        node: name.clone(),
        steps: steps.into_vec(),
    })
}

/// etcd's packages come from the distribution on the apt family only; elsewhere they come
/// from the offline bundle, which is not supported yet.
fn package_manager(member: &PlannedNode) -> Result<PackageManager, PlanError> {
    let family = crate::os::family_of(&member.node.name, member.facts)?;
    match family {
        PackageManager::Apt => Ok(PackageManager::Apt),
        PackageManager::Dnf => Err(PlanError::NoEtcdPackage {
            node: member.node.name.clone(),
        }),
    }
}

/// The member's settings, as etcd's `ETCD_*` environment variables.
fn environment(cluster: &Cluster, member: &PlannedNode, initial_cluster: &str) -> String {
    let ip = member.control_plane_ip;
    let settings: BTreeMap<&str, String> = BTreeMap::from([
        ("ETCD_NAME", member.node.name.clone()),
        ("ETCD_DATA_DIR", etcd::DATA_DIR.to_owned()),
        ("ETCD_LISTEN_PEER_URLS", etcd::peer_url(ip)),
        (
            "ETCD_LISTEN_CLIENT_URLS",
            format!("{},{}", etcd::client_url(ip), etcd::local_client_url()),
        ),
        ("ETCD_ADVERTISE_CLIENT_URLS", etcd::client_url(ip)),
        ("ETCD_INITIAL_ADVERTISE_PEER_URLS", etcd::peer_url(ip)),
        ("ETCD_INITIAL_CLUSTER", initial_cluster.to_owned()),
        ("ETCD_INITIAL_CLUSTER_STATE", "new".to_owned()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", cluster.inventory.name.clone()),
        (
            "ETCD_LISTEN_METRICS_URLS",
            format!("http://127.0.0.1:{}", etcd::METRICS_PORT),
        ),
        ("ETCD_CLIENT_CERT_AUTH", "true".to_owned()),
        ("ETCD_TRUSTED_CA_FILE", etcd::CA_FILE.to_owned()),
        ("ETCD_CERT_FILE", etcd::SERVER_CERT.to_owned()),
        ("ETCD_KEY_FILE", etcd::SERVER_KEY.to_owned()),
        ("ETCD_PEER_CLIENT_CERT_AUTH", "true".to_owned()),
        ("ETCD_PEER_TRUSTED_CA_FILE", etcd::CA_FILE.to_owned()),
        ("ETCD_PEER_CERT_FILE", etcd::PEER_CERT.to_owned()),
        ("ETCD_PEER_KEY_FILE", etcd::PEER_KEY.to_owned()),
        ("ETCD_QUOTA_BACKEND_BYTES", QUOTA_BACKEND_BYTES.to_string()),
        ("ETCD_SNAPSHOT_COUNT", SNAPSHOT_COUNT.to_string()),
        ("ETCD_AUTO_COMPACTION_MODE", "periodic".to_owned()),
        ("ETCD_AUTO_COMPACTION_RETENTION", "1h".to_owned()),
        ("ETCD_LOGGER", "zap".to_owned()),
    ]);
    let mut text =
        String::from("# Read by etcd.service; every setting of this member (see `etcd --help`).\n");
    for (key, value) in settings {
        text.push_str(&format!("{key}={value}\n"));
    }
    text
}

/// Ours, not the package's: no `$DAEMON_ARGS`, no /etc/default/etcd, settings only from
/// our environment files (the join file, written by `etcd member replace`, wins).
fn unit() -> String {
    format!(
        "\
[Unit]
Description=etcd key-value store of the Kubernetes cluster
Documentation=https://etcd.io/docs
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
User={user}
Group={user}
EnvironmentFile={env}
EnvironmentFile=-{join}
ExecStart=/usr/bin/etcd
Restart=on-failure
RestartSec=5s
TimeoutStartSec=120s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
",
        user = etcd::USER,
        env = etcd::ENV_FILE,
        join = etcd::JOIN_ENV_FILE,
    )
}
