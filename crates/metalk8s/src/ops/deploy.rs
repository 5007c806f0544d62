//! `metalk8s deploy`: connect, gather, plan, lock, execute with the journal, unlock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use metalk8s_engine::agent::AgentBinary;
use metalk8s_engine::executor::Executor;
use metalk8s_engine::journal::{Entry, Journal, now};
use metalk8s_engine::lock::{self, Holder};
use metalk8s_engine::poll::SystemClock;
use metalk8s_engine::report::DeployReport;
use metalk8s_model::PhaseName;
use metalk8s_model::inventory::Inventory;
use metalk8s_model::inventory::Role;
use metalk8s_model::plan::{Plan, Resource};
use metalk8s_pki::{PkiAction, PkiResponse};
use metalk8s_plan::NodeApi;
use metalk8s_transport::{Command, ConnectOptions, Host};

use crate::ops::OpsError;
use crate::ops::bundle::BundleSource;
use crate::ops::gates::DeployGates;
use crate::ops::inputs::{self, GatherOptions};
use crate::ops::session;
use crate::progress::DeployProgress;

pub struct DeployRequest {
    /// The phases to run (all when empty).
    pub phases: Vec<PhaseName>,
    /// Of those, run only the phases that place a certificate the PKI store renewed now
    /// (`certs renew`).
    pub placing_renewed_only: bool,
    pub limit: Vec<String>,
    pub dry_run: bool,
    pub connect: ConnectOptions,
    /// What the PKI store does before the plan is made (ensure, or renew for `certs renew`).
    pub pki: PkiAction,
    /// Whether etcd members change one at a time; `None`: when etcd already runs.
    pub etcd_rolling: Option<bool>,
    /// The offline bundle to stage on the bootstrap node and serve (`--bundle`); without
    /// one, the bundle already staged there (if any) is served.
    pub bundle: Option<BundleSource>,
}

impl DeployRequest {
    pub fn new(phases: Vec<PhaseName>, connect: ConnectOptions) -> Self {
        DeployRequest {
            phases,
            placing_renewed_only: false,
            limit: Vec::new(),
            dry_run: false,
            connect,
            pki: PkiAction::Ensure,
            etcd_rolling: None,
            bundle: None,
        }
    }
}

/// What a deploy did, and what the PKI store did before it.
pub struct DeployOutcome {
    pub report: DeployReport,
    pub pki: Option<PkiResponse>,
}

/// Where this machine keeps its journal of a cluster's runs.
pub fn state_dir(cluster: &str) -> PathBuf {
    let base = std::env::var_os("METALK8S_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state/metalk8s"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/metalk8s/controller"));
    base.join(cluster)
}

fn run_id() -> String {
    let stamp = metalk8s_engine::report::format_time(now())
        .replace(['-', ':'], "")
        .replace(' ', "-");
    format!("{stamp}-{}", std::process::id())
}

fn holder(run: &str) -> Holder {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
    Holder {
        who: format!("{user}@{hostname}"),
        machine: std::fs::read_to_string("/etc/machine-id")
            .map(|id| id.trim().to_owned())
            .unwrap_or(hostname),
        pid: std::process::id(),
        boot: lock::boot_id(),
        started: lock::process_start(std::process::id()).unwrap_or_default(),
        run: run.to_owned(),
        since: now(),
    }
}

/// Keeps only the nodes of `limit` (all when empty); unknown names are invalid input.
fn limit_plan(mut plan: Plan, limit: &[String], inventory: &Inventory) -> Result<Plan, OpsError> {
    if limit.is_empty() {
        return Ok(plan);
    }
    if let Some(unknown) = limit.iter().find(|name| inventory.node(name).is_none()) {
        let known: Vec<&str> = inventory.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(OpsError::Invalid {
            message: format!("--limit {unknown}: no such node in the inventory"),
            help: Some(format!("the inventory's nodes are: {}", known.join(", "))),
        });
    }
    for phase in &mut plan.phases {
        phase.hosts.retain(|host| limit.contains(&host.node));
    }
    Ok(plan)
}

pub async fn deploy(
    inventory: &Inventory,
    request: &DeployRequest,
) -> Result<DeployOutcome, OpsError> {
    // Hashing the binary shipped as the agent reads tens of MB: done while the nodes are
    // connected and their facts gathered.
    let (session, binary) = futures::join!(
        session::open(inventory, &request.connect),
        tokio::task::spawn_blocking(AgentBinary::current)
    );
    let session = session.map_err(OpsError::from)?;
    let binary = binary
        .map_err(std::io::Error::other)
        .and_then(|read| read)
        .map_err(|error| {
            OpsError::local(format!(
                "cannot read the metalk8s binary to ship it to the nodes: {error}"
            ))
        })?;
    let run = run_id();
    let progress = DeployProgress::new();
    if request.dry_run {
        let Planned { plan, pki, .. } = make_plan(inventory, request, &session, &binary).await?;
        let executor = executor(
            &session.hosts,
            &binary,
            inventory,
            &run,
            None,
            None,
            &progress,
            true,
        );
        return Ok(DeployOutcome {
            report: executor.execute(&plan).await,
            pki,
        });
    }

    let journal =
        Journal::open(&state_dir(&inventory.name).join("journal.jsonl")).map_err(OpsError::from)?;
    let bootstrap = inputs::bootstrap_host(inventory, &session.hosts)?;
    let me = holder(&run);
    let holder_description = me.describe();
    let lock = lock::acquire(bootstrap.as_ref(), me, &lock::process_alive)
        .await
        .map_err(OpsError::from)?;
    if let Some(stale) = &lock.took_over {
        eprintln!(
            "took over the lock of an interrupted deploy: {}",
            stale.describe()
        );
    }
    let locked = async {
        let Planned {
            plan,
            pki,
            join_token,
            node_api,
        } = make_plan(inventory, request, &session, &binary).await?;
        let interrupted = journal.interrupted().map_err(OpsError::from)?;
        if let Some(interrupted) = &interrupted {
            eprintln!(
                "resuming interrupted run {}: {} completed steps will be verified",
                interrupted.run,
                interrupted.completed.len()
            );
        }
        journal
            .record(&Entry::RunStarted {
                run: run.clone(),
                time: now(),
                phases: plan.phases.iter().map(|p| p.name.to_string()).collect(),
                holder: holder_description,
            })
            .map_err(OpsError::from)?;
        let addresses = metalk8s_plan::control_plane_ips(inventory, &session.facts);
        let gates = DeployGates {
            hosts: &session.hosts,
            registry: inventory
                .bootstrap()
                .and_then(|node| addresses.get(&node.name))
                .map(|ip| (bootstrap.clone(), *ip)),
            etcd: super::etcd::cluster(inventory, &session.hosts, &session.facts),
            control_planes: inventory
                .nodes_with(Role::ControlPlane)
                .map(|node| node.name.clone())
                .collect(),
            node_api: &node_api,
            kubernetes_nodes: inventory
                .nodes
                .iter()
                .filter(|node| {
                    [Role::ControlPlane, Role::Worker, Role::Infra]
                        .iter()
                        .any(|role| node.has_role(*role))
                })
                .map(|node| node.name.clone())
                .collect(),
            clock: &SystemClock,
        };
        let mut executor = executor(
            &session.hosts,
            &binary,
            inventory,
            &run,
            Some(&journal),
            interrupted.as_ref(),
            &progress,
            false,
        );
        executor.gate = Some(&gates);
        let report = executor.execute(&plan).await;
        if let Some(token) = &join_token {
            delete_join_token(inventory, &session, token).await;
        }
        journal
            .record(&Entry::RunFinished {
                run: run.clone(),
                time: now(),
                succeeded: report.succeeded,
            })
            .map_err(OpsError::from)?;
        Ok(DeployOutcome { report, pki })
    }
    .await;
    if let Err(error) = lock.release(bootstrap.as_ref()).await {
        eprintln!("warning: could not release the deploy lock: {error}");
    }
    locked
}

/// Deletes the bootstrap token of this deploy's joins from the cluster, through the first
/// control plane that has joined. A failure is only reported: the token expires by itself
/// ([`metalk8s_plan::kubernetes::JOIN_TOKEN_TTL`]).
async fn delete_join_token(inventory: &Inventory, session: &session::Session, token: &str) {
    let Some(host) = inventory
        .nodes_with(Role::ControlPlane)
        .find_map(|node| session.hosts.get(&node.name))
    else {
        return;
    };
    // The token's id is the part before the dot: deleting by id never puts the secret on
    // a command line that does not already hold it.
    let id = token.split('.').next().unwrap_or(token);
    let command = Command::new(format!(
        "if [ -e {marker} ]; then kubeadm token delete {id} --kubeconfig /etc/kubernetes/admin.conf; fi",
        marker = metalk8s_model::facts::KUBEADM_DONE_MARKER
    ))
    .as_root();
    match host.run(&command).await {
        Ok(output) if output.success() => {}
        Ok(output) => eprintln!(
            "warning: the joins' bootstrap token {id} could not be deleted on {} ({}); it expires within {}",
            host.name(),
            output.stderr_text().trim(),
            metalk8s_plan::kubernetes::JOIN_TOKEN_TTL
        ),
        Err(error) => eprintln!(
            "warning: the joins' bootstrap token {id} could not be deleted on {} ({error}); it expires within {}",
            host.name(),
            metalk8s_plan::kubernetes::JOIN_TOKEN_TTL
        ),
    }
}

/// The plan of the phases asked for, and what goes with it.
struct Planned {
    plan: Plan,
    /// What the PKI store answered, when the phases need it.
    pki: Option<PkiResponse>,
    /// The bootstrap token made for the joins, if any.
    join_token: Option<String>,
    /// What the `kubernetes` phase's gate applies and approves for each node, when that
    /// phase is in the plan.
    node_api: Vec<NodeApi>,
}

async fn make_plan(
    inventory: &Inventory,
    request: &DeployRequest,
    session: &session::Session,
    binary: &AgentBinary,
) -> Result<Planned, OpsError> {
    let options = GatherOptions {
        pki: request.pki,
        dry_run: request.dry_run,
        bundle: request.bundle.as_ref(),
        etcd_rolling: request.etcd_rolling,
    };
    let gathered = inputs::gather(inventory, session, binary, &request.phases, &options).await?;
    let mut plan =
        metalk8s_plan::plan(inventory, &session.facts, &gathered.inputs, &request.phases)
            .map_err(OpsError::from)?;
    if request.placing_renewed_only {
        let renewed: BTreeSet<(&str, &str)> = gathered
            .pki
            .iter()
            .flat_map(|pki| &pki.renewals)
            .flat_map(|renewal| {
                renewal
                    .node_files
                    .iter()
                    .map(|path| (renewal.node.as_str(), path.as_str()))
            })
            .collect();
        keep_phases_placing(&mut plan, &renewed);
    }
    // Only with the phase planned: another phase's deploy must not depend on whether the
    // staged bundle's Kubernetes part could be planned.
    let node_api = if plan
        .phases
        .iter()
        .any(|phase| phase.name == PhaseName::Kubernetes)
    {
        metalk8s_plan::node_api(inventory, &session.facts, gathered.inputs.bundle.as_ref())
            .map_err(OpsError::from)?
    } else {
        Vec::new()
    };
    Ok(Planned {
        plan: limit_plan(plan, &request.limit, inventory)?,
        pki: gathered.pki,
        join_token: gathered.inputs.join.map(|join| join.token),
        node_api,
    })
}

/// Keeps the phases whose plan places one of `files` (node, path) on its node: the phases
/// that consume those files, found from the plans themselves.
fn keep_phases_placing(plan: &mut Plan, files: &BTreeSet<(&str, &str)>) {
    plan.phases.retain(|phase| {
        phase.hosts.iter().any(|host| {
            host.steps.iter().any(|step| match &step.resource {
                Resource::File(file) => files.contains(&(host.node.as_str(), file.path.as_str())),
                _ => false,
            })
        })
    });
}

#[allow(clippy::too_many_arguments)]
fn executor<'a>(
    hosts: &'a BTreeMap<String, Arc<dyn Host>>,
    binary: &'a AgentBinary,
    inventory: &Inventory,
    run: &str,
    journal: Option<&'a Journal>,
    interrupted: Option<&'a metalk8s_engine::journal::Interrupted>,
    progress: &'a DeployProgress,
    dry_run: bool,
) -> Executor<'a> {
    Executor {
        hosts,
        binary,
        parallelism: inventory.ssh.parallelism.max(1) as usize,
        dry_run,
        run: run.to_owned(),
        journal,
        interrupted,
        progress,
        gate: None,
        observe_first: true,
        objects: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::plan::{FileResource, HostPlan, Phase, Rollout, Step};

    fn phase(name: PhaseName, node: &str, path: &str) -> Phase {
        Phase {
            name,
            rollout: Rollout::Parallel,
            hosts: vec![HostPlan {
                node: node.to_owned(),
                steps: vec![Step {
                    id: format!("file{path}"),
                    resource: Resource::File(FileResource {
                        path: path.to_owned(),
                        content: String::new(),
                        mode: 0o644,
                        owner: "root".to_owned(),
                        group: "root".to_owned(),
                        secret: false,
                    }),
                    after: Vec::new(),
                    watch: Vec::new(),
                }],
            }],
            objects: None,
        }
    }

    /// `certs renew --all` used to deploy `etcd` only, so the repository kept serving its
    /// old certificate: the phases to deploy now come from what each one places.
    #[test]
    fn a_renewed_repository_certificate_selects_the_repository_phase() {
        let mut plan = Plan {
            api_version: "metalk8s.io/v1alpha1".to_owned(),
            kind: "Plan".to_owned(),
            cluster: "test".to_owned(),
            phases: vec![
                phase(
                    PhaseName::Repository,
                    "node1",
                    metalk8s_model::repository::CERT_FILE,
                ),
                phase(
                    PhaseName::Etcd,
                    "node1",
                    "/etc/kubernetes/pki/etcd/peer.crt",
                ),
            ],
        };
        let renewed = BTreeSet::from([("node1", metalk8s_model::repository::CERT_FILE)]);
        keep_phases_placing(&mut plan, &renewed);
        let kept: Vec<PhaseName> = plan.phases.iter().map(|p| p.name).collect();
        assert_eq!(kept, [PhaseName::Repository]);
        // The same path on another node is another file.
        let elsewhere = BTreeSet::from([("node2", "/etc/kubernetes/pki/etcd/peer.crt")]);
        keep_phases_placing(&mut plan, &elsewhere);
        assert!(plan.phases.is_empty());
    }
}
