//! The deploy's health gates: after each batch of a phase's hosts, the check its unit
//! declares ([`HealthGate`]) runs here. The dispatch is one exhaustive match, so a new
//! kind of check cannot be declared without being implemented.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use metalk8s_engine::executor::{Gate, GateOutcome};
use metalk8s_engine::poll::{Clock, Patience, poll_until};
use metalk8s_etcd::EtcdCluster;
use metalk8s_model::PhaseName;
use metalk8s_model::report::error_chain;
use metalk8s_model::repository as repo;
use metalk8s_plan::HealthGate;
use metalk8s_transport::{Command, Host};

/// How long the repository gate waits for the registry to answer.
pub const REGISTRY_PATIENCE: Patience =
    Patience::new(Duration::from_secs(60), Duration::from_secs(1));
/// How long the etcd gate waits for every member to be healthy.
pub const ETCD_PATIENCE: Patience = Patience::new(Duration::from_secs(180), Duration::from_secs(2));
/// How long the containerd gate waits for containerd to answer on a node.
pub const CONTAINERD_PATIENCE: Patience =
    Patience::new(Duration::from_secs(30), Duration::from_secs(1));
/// How long the Kubernetes gate waits for an API server to be ready, or a node to be
/// registered (`kubeadm` returns once the kubelet has its credentials; its first status
/// follows within seconds).
pub const KUBERNETES_PATIENCE: Patience =
    Patience::new(Duration::from_secs(180), Duration::from_secs(2));

/// What the gates check, connected.
pub struct DeployGates<'a> {
    pub hosts: &'a BTreeMap<String, Arc<dyn Host>>,
    /// The bootstrap node and its control-plane address, where the registry listens.
    pub registry: Option<(Arc<dyn Host>, IpAddr)>,
    pub etcd: EtcdCluster,
    /// The control-plane nodes, in inventory order: they answer the Kubernetes API.
    pub control_planes: Vec<String>,
    pub clock: &'a dyn Clock,
}

#[async_trait::async_trait]
impl Gate for DeployGates<'_> {
    async fn check(&self, phase: PhaseName, batch: &[String]) -> Option<GateOutcome> {
        match metalk8s_plan::phases::unit(phase).gate {
            HealthGate::StepsOnly { .. } => None,
            HealthGate::RegistryAnswers => Some(self.registry_answers().await),
            HealthGate::EtcdHealthy => Some(self.etcd_healthy().await),
            HealthGate::ContainerdAnswers => Some(self.containerd_answers(batch).await),
            HealthGate::KubernetesNodes => Some(self.kubernetes_nodes(batch).await),
        }
    }
}

impl DeployGates<'_> {
    /// The registry answers `GET /v2/` with 200 over TLS checked with the cluster CA,
    /// asked from the bootstrap node itself (the nodes' view: the control-plane address).
    async fn registry_answers(&self) -> GateOutcome {
        let Some((bootstrap, ip)) = &self.registry else {
            return GateOutcome::failed(
                "the bootstrap node's control-plane address is unknown",
                "set `controlPlaneIP` on the bootstrap node in the inventory",
            );
        };
        let url = repo::registry_url(*ip);
        let command = Command::new(format!(
            "curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert {ca} {url}",
            ca = repo::CA_FILE
        ))
        .as_root();
        let answered = poll_until(self.clock, REGISTRY_PATIENCE, || async {
            let output = bootstrap
                .run(&command)
                .await
                .map_err(|error| error_chain(&error))?;
            let code = output.stdout_text().trim().to_owned();
            if output.success() && code == "200" {
                Ok(())
            } else {
                Err(format!("HTTP {code}: {}", output.stderr_text().trim()))
            }
        })
        .await;
        match answered {
            Ok(()) => GateOutcome::Passed(format!("{url} answered 200 on {}", bootstrap.name())),
            Err(problem) => GateOutcome::failed(
                format!(
                    "{url} did not answer 200 on {} within {} s ({problem})",
                    bootstrap.name(),
                    REGISTRY_PATIENCE.timeout.as_secs()
                ),
                format!(
                    "look at `journalctl -u {}` on {}",
                    repo::SERVICE,
                    bootstrap.name()
                ),
            ),
        }
    }

    /// Every member healthy, one leader.
    async fn etcd_healthy(&self) -> GateOutcome {
        let looked = poll_until(self.clock, ETCD_PATIENCE, || async {
            match metalk8s_etcd::status(&self.etcd).await {
                Ok(status) if status.healthy() => Ok(status.summary()),
                Ok(status) => Err(status.summary()),
                Err(error) => Err(error_chain(&error)),
            }
        })
        .await;
        match looked {
            Ok(summary) => GateOutcome::Passed(summary),
            Err(problem) => GateOutcome::failed(
                format!(
                    "etcd is not healthy after {} s: {problem}",
                    ETCD_PATIENCE.timeout.as_secs()
                ),
                "`metalk8s etcd status` shows each member; `journalctl -u etcd` on a failed member says why",
            ),
        }
    }

    /// containerd answers on its socket on every host of the batch.
    async fn containerd_answers(&self, batch: &[String]) -> GateOutcome {
        let command = Command::new("ctr --address /run/containerd/containerd.sock version")
            .as_root()
            .timeout(Duration::from_secs(10));
        let checks = batch.iter().map(|node| {
            let command = &command;
            async move {
                let Some(host) = self.hosts.get(node) else {
                    return Err(format!("{node}: no connection"));
                };
                poll_until(self.clock, CONTAINERD_PATIENCE, || async {
                    let output = host
                        .run(command)
                        .await
                        .map_err(|error| error_chain(&error))?;
                    if output.success() {
                        Ok(())
                    } else {
                        Err(output.stderr_text().trim().to_owned())
                    }
                })
                .await
                .map_err(|problem| format!("{node}: {problem}"))
            }
        });
        let failed: Vec<String> = futures::future::join_all(checks)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if failed.is_empty() {
            GateOutcome::Passed(format!("containerd answers on {}", batch.join(", ")))
        } else {
            GateOutcome::failed(
                format!("containerd does not answer: {}", failed.join("; ")),
                "look at `journalctl -u containerd` on the nodes named",
            )
        }
    }
}

/// `kubectl` on a control plane, as cluster admin, through the node's local API server
/// proxy: what the node's own components see.
fn kubectl(arguments: &str) -> Command {
    Command::new(format!(
        "kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://{endpoint} --request-timeout=5s {arguments}",
        endpoint = metalk8s_kubernetes::kubeadm::control_plane_endpoint(),
    ))
    .as_root()
    .timeout(Duration::from_secs(15))
}

impl DeployGates<'_> {
    /// Every control plane of the batch answers `/readyz` through its local proxy, then
    /// every node of the batch is registered (asked of the first control plane that
    /// answers). Nodes are not yet `Ready` here: that needs the pod network, whose phase
    /// checks it.
    async fn kubernetes_nodes(&self, batch: &[String]) -> GateOutcome {
        let readyz = kubectl("get --raw=/readyz");
        let control_planes: Vec<&String> = batch
            .iter()
            .filter(|node| self.control_planes.contains(node))
            .collect();
        for node in &control_planes {
            let Some(host) = self.hosts.get(*node) else {
                return GateOutcome::failed(
                    format!("{node}: no connection"),
                    "check SSH to the node",
                );
            };
            let ready = poll_until(self.clock, KUBERNETES_PATIENCE, || async {
                let output = host
                    .run(&readyz)
                    .await
                    .map_err(|error| error_chain(&error))?;
                if output.success() && output.stdout_text().trim() == "ok" {
                    Ok(())
                } else {
                    Err(first_line(&output.stderr_text(), &output.stdout_text()))
                }
            })
            .await;
            if let Err(problem) = ready {
                return GateOutcome::failed(
                    format!(
                        "the API server on {node} is not ready through its local proxy after {} s: {problem}",
                        KUBERNETES_PATIENCE.timeout.as_secs()
                    ),
                    format!(
                        "on {node}: `crictl ps -a` shows the control-plane containers, `journalctl -u kubelet` why they do not start, `journalctl -u haproxy` whether the proxy reaches them"
                    ),
                );
            }
        }
        let Some((asked, host)) = self
            .control_planes
            .iter()
            .find_map(|node| Some((node, self.hosts.get(node)?)))
        else {
            return GateOutcome::failed(
                "no control-plane node to ask",
                "give at least one node the `control-plane` role",
            );
        };
        let nodes = kubectl("get nodes -o json");
        let registered = poll_until(self.clock, KUBERNETES_PATIENCE, || async {
            let output = host
                .run(&nodes)
                .await
                .map_err(|error| error_chain(&error))?;
            if !output.success() {
                return Err(first_line(&output.stderr_text(), &output.stdout_text()));
            }
            let names = node_names(&output.stdout_text())?;
            let missing: Vec<&str> = batch
                .iter()
                .filter(|node| !names.contains(node))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not registered: {}", missing.join(", ")))
            }
        })
        .await;
        match registered {
            Ok(()) => GateOutcome::Passed(format!(
                "{}registered: {}",
                if control_planes.is_empty() {
                    String::new()
                } else {
                    format!(
                        "/readyz ok on {}; ",
                        control_planes
                            .iter()
                            .map(|node| node.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                batch.join(", ")
            )),
            Err(problem) => GateOutcome::failed(
                format!(
                    "nodes are not registered with the cluster after {} s (asked {asked}): {problem}",
                    KUBERNETES_PATIENCE.timeout.as_secs()
                ),
                "`journalctl -u kubelet` on a node named says why its kubelet does not register",
            ),
        }
    }
}

/// The names in a `kubectl get nodes -o json` answer.
fn node_names(json: &str) -> Result<Vec<String>, String> {
    let list: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("unreadable node list: {error}"))?;
    Ok(list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The first line saying something, of standard error or else standard output.
fn first_line(stderr: &str, stdout: &str) -> String {
    [stderr, stdout]
        .into_iter()
        .flat_map(str::lines)
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("no answer")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_engine::poll::ManualClock;
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    fn gates<'a>(
        hosts: &'a BTreeMap<String, Arc<dyn Host>>,
        clock: &'a ManualClock,
    ) -> DeployGates<'a> {
        DeployGates {
            hosts,
            registry: Some((hosts["node1"].clone(), "10.0.0.10".parse().unwrap())),
            etcd: EtcdCluster {
                token: "test".into(),
                members: Vec::new(),
            },
            control_planes: vec!["node1".into()],
            clock,
        }
    }

    fn hosts(node1: RecordingHost) -> BTreeMap<String, Arc<dyn Host>> {
        let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
        hosts.insert("node1".into(), Arc::new(node1));
        hosts
    }

    #[tokio::test]
    async fn the_registry_gate_passes_on_200_and_the_os_phase_has_none() {
        let hosts = hosts(RecordingHost::new("node1").on("curl", Output::ok("200")));
        let clock = ManualClock::new();
        let gates = gates(&hosts, &clock);
        assert_eq!(gates.check(PhaseName::Os, &[]).await, None);
        let Some(GateOutcome::Passed(seen)) = gates.check(PhaseName::Repository, &[]).await else {
            panic!("the registry answered 200");
        };
        assert!(seen.contains("https://10.0.0.10:8443/v2/"), "{seen}");
    }

    #[tokio::test]
    async fn the_registry_gate_times_out_with_a_hint() {
        let node1 = Arc::new(RecordingHost::new("node1").on("curl", Output::ok("503")));
        let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
        hosts.insert("node1".into(), node1.clone());
        let clock = ManualClock::new();
        let outcome = gates(&hosts, &clock)
            .check(PhaseName::Repository, &[])
            .await
            .unwrap();
        let GateOutcome::Failed { problem, hint } = outcome else {
            panic!("503 is no answer");
        };
        assert!(problem.contains("within 60 s (HTTP 503"), "{problem}");
        assert!(hint.unwrap().contains("journalctl -u metalk8s-repo"));
        // One try a second for 60 s, and one at the deadline.
        assert_eq!(node1.commands().len(), 61);
    }

    #[tokio::test]
    async fn the_containerd_gate_names_the_nodes_that_do_not_answer() {
        let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
        hosts.insert(
            "node1".into(),
            Arc::new(RecordingHost::new("node1").on("ctr", Output::ok("Server: v1.6"))),
        );
        hosts.insert(
            "node2".into(),
            Arc::new(
                RecordingHost::new("node2").on("ctr", Output::failed(1, "connection refused")),
            ),
        );
        let clock = ManualClock::new();
        let gates = gates(&hosts, &clock);
        let batch = ["node1".to_owned(), "node2".to_owned()];
        let GateOutcome::Failed { problem, .. } =
            gates.check(PhaseName::Containerd, &batch).await.unwrap()
        else {
            panic!("node2 does not answer");
        };
        assert_eq!(
            problem,
            "containerd does not answer: node2: connection refused"
        );
        let only_node1 = ["node1".to_owned()];
        assert!(matches!(
            gates.check(PhaseName::Containerd, &only_node1).await,
            Some(GateOutcome::Passed(_))
        ));
    }
}
