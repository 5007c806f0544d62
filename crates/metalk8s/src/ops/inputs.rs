//! What the planner is given besides the inventory and the facts ([`Inputs`]), gathered
//! once for the phases of a run: `plan`, `deploy` and `certs renew` all come through
//! [`gather`], so they plan from the same inputs.
//!
//! Each phase declares what it needs ([`Needs`]); only that is asked for, and independent
//! questions to different nodes are asked at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use metalk8s_engine::agent::AgentBinary;
use metalk8s_model::PhaseName;
use metalk8s_model::inventory::{Inventory, Role};
use metalk8s_pki::{PkiAction, PkiResponse};
use metalk8s_plan::{Inputs, JoinCredentials, Needs};
use metalk8s_transport::{Command, Host};

use crate::ops::OpsError;
use crate::ops::bundle::BundleSource;
use crate::ops::session::Session;

/// How the inputs are gathered.
pub struct GatherOptions<'a> {
    /// What the PKI store does before answering (ensure, or renew for `certs renew`).
    pub pki: PkiAction,
    /// Nothing is written anywhere: the PKI store answers from a scratch copy, a bundle is
    /// verified but not staged.
    pub dry_run: bool,
    /// A bundle to stage on the bootstrap node (`deploy --bundle`); without one the bundle
    /// already staged there is read.
    pub bundle: Option<&'a BundleSource>,
    /// Whether etcd members change one at a time; `None`: when etcd already holds data.
    pub etcd_rolling: Option<bool>,
}

impl GatherOptions<'_> {
    /// For `metalk8s plan`: ask, write nothing.
    pub fn planning() -> Self {
        GatherOptions {
            pki: PkiAction::Ensure,
            dry_run: true,
            bundle: None,
            etcd_rolling: None,
        }
    }
}

/// The inputs, and what the PKI store did when it was asked.
pub struct Gathered {
    pub inputs: Inputs,
    pub pki: Option<PkiResponse>,
}

/// Gathers what the `phases` (all when empty) need.
pub async fn gather(
    inventory: &Inventory,
    session: &Session,
    binary: &AgentBinary,
    phases: &[PhaseName],
    options: &GatherOptions<'_>,
) -> Result<Gathered, OpsError> {
    let needs = Needs::of(&metalk8s_plan::phases::select(phases));
    let bootstrap = bootstrap_host(inventory, &session.hosts)?;
    let mut inputs = Inputs {
        agent_path: binary.remote_path(),
        ..Inputs::default()
    };
    // Independent questions to different nodes: asked at once.
    let bundle = async {
        if !needs.staged_bundle {
            return Ok(None);
        }
        match options.bundle {
            Some(source) => super::bundle::stage(&bootstrap, source, options.dry_run)
                .await
                .map(Some),
            None => super::bundle::read_staged(bootstrap.as_ref()).await,
        }
    };
    let pki = async {
        if !needs.pki {
            return Ok(None);
        }
        super::pki::ask(
            inventory,
            &session.hosts,
            &session.facts,
            binary,
            options.pki,
            options.dry_run,
        )
        .await
        .map(Some)
    };
    let etcd_running = async {
        match options.etcd_rolling {
            _ if !needs.etcd_state => false,
            Some(rolling) => rolling,
            None => etcd_holds_data(inventory, &session.hosts).await,
        }
    };
    let (bundle, pki, etcd_running) = futures::join!(bundle, pki, etcd_running);
    inputs.bundle = bundle?;
    let pki = pki?;
    if let Some(answer) = &pki {
        inputs.pki = answer.files.clone();
    }
    inputs.etcd_running = etcd_running;
    if needs.join_token {
        inputs.join = join_credentials(inventory, session, &inputs, options.dry_run).await?;
    }
    Ok(Gathered { inputs, pki })
}

/// A bootstrap token for the nodes that have not joined Kubernetes, when some have not
/// and the staged bundle carries Kubernetes; with the cluster CA's pin from the PKI store.
/// On a running cluster the token is created there now (a dry run creates nothing); on a
/// new one `kubeadm init` creates it from its configuration.
async fn join_credentials(
    inventory: &Inventory,
    session: &Session,
    inputs: &Inputs,
    dry_run: bool,
) -> Result<Option<JoinCredentials>, OpsError> {
    let kubernetes_bundle = inputs
        .bundle
        .as_ref()
        .is_some_and(|bundle| bundle.kubernetes_version.is_some());
    let joined = |name: &str| {
        session
            .facts
            .get(name)
            .is_some_and(|facts| facts.kubernetes.joined)
    };
    if !kubernetes_bundle || inventory.nodes.iter().all(|node| joined(&node.name)) {
        return Ok(None);
    }
    let first = inventory
        .nodes_with(Role::ControlPlane)
        .next()
        .ok_or_else(|| OpsError::Invalid {
            message: "the inventory has no control-plane node to run Kubernetes".into(),
            help: Some("give at least one node the `control-plane` role".into()),
        })?;
    let ca = inputs
        .pki
        .get(&first.name)
        .and_then(|files| {
            files
                .iter()
                .find(|file| file.path == metalk8s_kubernetes::cluster::paths::CA_CERT)
        })
        .ok_or_else(|| {
            OpsError::on_node(format!(
                "the PKI store returned no Kubernetes CA for {}",
                first.name
            ))
        })?;
    let pin = metalk8s_pki::CertInfo::from_pem(&ca.content)
        .map_err(|error| OpsError::on_node(format!("the Kubernetes CA: {error}")))?
        .kubeadm_pin();
    let credentials = JoinCredentials {
        token: new_bootstrap_token(),
        ca_cert_hash: pin,
    };
    let running = inventory
        .nodes_with(Role::ControlPlane)
        .find(|node| joined(&node.name));
    if let Some(node) = running
        && !dry_run
    {
        let host = session
            .hosts
            .get(&node.name)
            .ok_or_else(|| OpsError::unusable(format!("no connection to {}", node.name)))?;
        let command = Command::new(format!(
            "kubeadm token create {token} --ttl {ttl} --description 'metalk8s: joins of this deploy' --kubeconfig /etc/kubernetes/admin.conf",
            token = credentials.token,
            ttl = metalk8s_plan::kubernetes::JOIN_TOKEN_TTL,
        ))
        .as_root();
        let output = host.run(&command).await.map_err(OpsError::from)?;
        if !output.success() {
            return Err(OpsError::OnNode {
                message: format!(
                    "creating a bootstrap token for the joins on {} failed: {}",
                    node.name,
                    output.stderr_text().trim()
                ),
                help: Some(format!(
                    "the API server must answer on {}: `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw=/readyz` there says whether it does",
                    node.name
                )),
            });
        }
    }
    Ok(Some(credentials))
}

/// `[a-z0-9]{6}.[a-z0-9]{16}`, the form of a kubeadm bootstrap token.
fn new_bootstrap_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let mut part = |length: usize| -> String {
        (0..length)
            .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
            .collect()
    };
    format!("{}.{}", part(6), part(16))
}

/// Whether an etcd member already holds data: the cluster exists, and its members must
/// change one at a time.
pub async fn etcd_holds_data(
    inventory: &Inventory,
    hosts: &BTreeMap<String, Arc<dyn Host>>,
) -> bool {
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

/// The bootstrap node's connection.
pub fn bootstrap_host(
    inventory: &Inventory,
    hosts: &BTreeMap<String, Arc<dyn Host>>,
) -> Result<Arc<dyn Host>, OpsError> {
    let node = inventory
        .bootstrap()
        .ok_or_else(|| OpsError::invalid("the inventory has no bootstrap node"))?;
    hosts.get(&node.name).cloned().ok_or_else(|| {
        OpsError::unusable(format!("no connection to the bootstrap node {}", node.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::Facts;
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    fn inventory() -> Inventory {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metalk8s.io/v1alpha1",
            "kind": "Inventory",
            "name": "test",
            "networks": {"controlPlane": ["10.0.0.0/24"], "workloadPlane": ["10.0.0.0/24"]},
            "nodes": [
                {"name": "n1", "address": "10.0.0.1", "controlPlaneIP": "10.0.0.1", "roles": ["bootstrap", "etcd"]},
                {"name": "n2", "address": "10.0.0.2", "controlPlaneIP": "10.0.0.2", "roles": ["etcd"]},
            ],
        }))
        .unwrap()
    }

    fn session(n1: Arc<RecordingHost>, n2: Arc<RecordingHost>) -> Session {
        let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
        hosts.insert("n1".into(), n1);
        hosts.insert("n2".into(), n2);
        Session {
            hosts,
            facts: ["n1", "n2"]
                .iter()
                .map(|n| ((*n).to_owned(), Facts::default()))
                .collect(),
        }
    }

    /// `metalk8s plan` used to leave `etcd_running` false, so it showed a parallel etcd
    /// rollout on a running cluster where `deploy` rolls one member at a time.
    #[tokio::test]
    async fn planning_probes_etcd_data_like_deploy() {
        let n1 = Arc::new(RecordingHost::new("n1").on("test -d", Output::failed(1, "")));
        let n2 = Arc::new(RecordingHost::new("n2").on("test -d", Output::ok("")));
        let session = session(n1, n2);
        let running = etcd_holds_data(&inventory(), &session.hosts).await;
        assert!(running, "n2 holds data: the cluster exists");
    }

    #[tokio::test]
    async fn the_os_phase_alone_asks_nothing_of_the_nodes() {
        let n1 = Arc::new(RecordingHost::new("n1"));
        let n2 = Arc::new(RecordingHost::new("n2"));
        let session = session(n1.clone(), n2.clone());
        let binary = AgentBinary::from_bytes(b"agent".to_vec());
        let gathered = gather(
            &inventory(),
            &session,
            &binary,
            &[PhaseName::Os],
            &GatherOptions::planning(),
        )
        .await
        .unwrap_or_else(|error| panic!("{:?}", miette::Report::new(error)));
        assert!(gathered.pki.is_none());
        assert_eq!(gathered.inputs.bundle, None);
        assert!(!gathered.inputs.etcd_running);
        assert!(n1.commands().is_empty(), "{:?}", n1.commands());
        assert!(n2.commands().is_empty(), "{:?}", n2.commands());
    }
}
