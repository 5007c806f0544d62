//! `metalk8s deploy`: connect, gather, plan, lock, execute with the journal, unlock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use metalk8s_engine::agent::AgentBinary;
use metalk8s_engine::executor::Executor;
use metalk8s_engine::journal::{Entry, Journal, now};
use metalk8s_engine::lock::{self, Holder};
use metalk8s_engine::report::DeployReport;
use metalk8s_model::inventory::{Inventory, Role};
use metalk8s_model::plan::Plan;
use metalk8s_pki::{PkiAction, PkiResponse};
use metalk8s_plan::Inputs;
use metalk8s_transport::{Command, ConnectOptions, Host};

use crate::exit::Failure;
use crate::ops::bundle::BundleSource;
use crate::ops::etcd::EtcdGate;
use crate::ops::repository::{PhaseGates, RepositoryGate};
use crate::ops::session;
use crate::progress::DeployProgress;

pub struct DeployRequest {
    pub phases: Vec<String>,
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
    pub fn new(phases: Vec<String>, connect: ConnectOptions) -> Self {
        DeployRequest {
            phases,
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
        run: run.to_owned(),
        since: now(),
    }
}

/// Keeps only the nodes of `limit` (all when empty); unknown names are invalid input.
fn limit_plan(mut plan: Plan, limit: &[String], inventory: &Inventory) -> Result<Plan, Failure> {
    if limit.is_empty() {
        return Ok(plan);
    }
    if let Some(unknown) = limit.iter().find(|name| inventory.node(name).is_none()) {
        let known: Vec<&str> = inventory.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(Failure::invalid(miette::miette!(
            help = format!("the inventory's nodes are: {}", known.join(", ")),
            "--limit {unknown}: no such node in the inventory"
        )));
    }
    for phase in &mut plan.phases {
        phase.hosts.retain(|host| limit.contains(&host.node));
    }
    Ok(plan)
}

pub async fn deploy(
    inventory: &Inventory,
    request: &DeployRequest,
) -> Result<DeployOutcome, Failure> {
    let session = session::open(inventory, &request.connect)
        .await
        .map_err(Failure::problem)?;
    let phases: Vec<&str> = request.phases.iter().map(String::as_str).collect();
    let binary = AgentBinary::current().map_err(|error| {
        Failure::problem(miette::miette!(
            "cannot read the metalk8s binary to ship it to the nodes: {error}"
        ))
    })?;
    let run = run_id();
    let progress = DeployProgress::new();
    if request.dry_run {
        let (plan, pki) = make_plan(inventory, request, &session, &binary, &phases).await?;
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
        Journal::open(&state_dir(&inventory.name).join("journal.jsonl")).map_err(Failure::error)?;
    let bootstrap = bootstrap_host(inventory, &session.hosts)?;
    let me = holder(&run);
    let holder_description = me.describe();
    let lock = lock::acquire(bootstrap.as_ref(), me, &lock::process_alive)
        .await
        .map_err(|error| {
            Failure::problem(match error.hint() {
                Some(hint) => miette::miette!(help = hint, "{error}"),
                None => miette::Report::from_err(error),
            })
        })?;
    if let Some(stale) = &lock.took_over {
        eprintln!(
            "took over the lock of an interrupted deploy: {}",
            stale.describe()
        );
    }
    let locked = async {
        let (plan, pki) = make_plan(inventory, request, &session, &binary, &phases).await?;
        let interrupted = journal.interrupted().map_err(Failure::error)?;
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
                phases: plan.phases.iter().map(|p| p.name.clone()).collect(),
                holder: holder_description,
            })
            .map_err(Failure::error)?;
        let mut gates: Vec<Box<dyn metalk8s_engine::executor::Gate>> = vec![Box::new(EtcdGate {
            cluster: super::etcd::cluster(inventory, &session.hosts, &session.facts),
        })];
        if let Some(ip) = bootstrap_ip(inventory, &session) {
            gates.push(Box::new(RepositoryGate {
                bootstrap: bootstrap.clone(),
                ip,
            }));
        }
        let gate = PhaseGates(gates);
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
        executor.gate = Some(&gate);
        let report = executor.execute(&plan).await;
        journal
            .record(&Entry::RunFinished {
                run: run.clone(),
                time: now(),
                succeeded: report.succeeded,
            })
            .map_err(Failure::error)?;
        Ok(DeployOutcome { report, pki })
    }
    .await;
    if let Err(error) = lock.release(bootstrap.as_ref()).await {
        eprintln!("warning: could not release the deploy lock: {error}");
    }
    locked
}

/// The plan of the phases asked for, with what the PKI store answered when they need it.
async fn make_plan(
    inventory: &Inventory,
    request: &DeployRequest,
    session: &session::Session,
    binary: &AgentBinary,
    phases: &[&str],
) -> Result<(Plan, Option<PkiResponse>), Failure> {
    let mut inputs = Inputs {
        agent_path: binary.remote_path(),
        ..Inputs::default()
    };
    let bootstrap = bootstrap_host(inventory, &session.hosts)?;
    inputs.bundle = match &request.bundle {
        Some(source) => Some(super::bundle::stage(&bootstrap, source, request.dry_run).await?),
        None => super::bundle::read_staged(bootstrap.as_ref()).await?,
    };
    let mut pki = None;
    if Inputs::need_pki(phases) {
        // Independent questions to different nodes: asked at once.
        let running = async {
            match request.etcd_rolling {
                Some(rolling) => rolling,
                None => etcd_exists(inventory, &session.hosts).await,
            }
        };
        let (answer, running) = futures::join!(
            super::pki::ask(
                inventory,
                &session.hosts,
                &session.facts,
                binary,
                request.pki,
                request.dry_run,
            ),
            running
        );
        let answer = answer?;
        inputs.pki = answer.files.clone();
        inputs.etcd_running = running;
        pki = Some(answer);
    }
    let plan = metalk8s_plan::plan(inventory, &session.facts, &inputs, phases)
        .map_err(|error| Failure::invalid(miette::Report::from_err(error)))?;
    Ok((limit_plan(plan, &request.limit, inventory)?, pki))
}

/// Whether an etcd member already holds data: the cluster exists, and its members must
/// change one at a time.
async fn etcd_exists(inventory: &Inventory, hosts: &BTreeMap<String, Arc<dyn Host>>) -> bool {
    let probes = inventory.nodes_with(Role::Etcd).filter_map(|node| {
        let host = hosts.get(&node.name)?.clone();
        Some(async move {
            let command =
                Command::new(format!("test -d {}/member", metalk8s_model::etcd::DATA_DIR))
                    .as_root();
            host.run(&command)
                .await
                .is_ok_and(|output| output.success())
        })
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .any(|exists| exists)
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
    }
}

fn bootstrap_host(
    inventory: &Inventory,
    hosts: &BTreeMap<String, Arc<dyn Host>>,
) -> Result<Arc<dyn Host>, Failure> {
    inventory
        .nodes_with(Role::Bootstrap)
        .next()
        .and_then(|node| hosts.get(&node.name).cloned())
        .ok_or_else(|| Failure::invalid(miette::miette!("the inventory has no bootstrap node")))
}

/// The bootstrap node's control-plane address, where the repository listens.
fn bootstrap_ip(inventory: &Inventory, session: &session::Session) -> Option<std::net::IpAddr> {
    let node = inventory.nodes_with(Role::Bootstrap).next()?;
    super::pki::addresses(inventory, &session.facts)
        .control_plane_ips
        .get(&node.name)
        .copied()
}
