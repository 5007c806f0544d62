//! The deploy's health gates: after each batch of a phase's hosts, the check its unit
//! declares ([`HealthGate`]) runs here. The dispatch is one exhaustive match, so a new
//! kind of check cannot be declared without being implemented.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metalk8s_engine::executor::{Gate, GateOutcome};
use metalk8s_engine::poll::{Clock, Patience, poll_until};
use metalk8s_etcd::EtcdCluster;
use metalk8s_kubernetes::csr::{self, Decision, KnownNode, ServingRequest};
use metalk8s_model::PhaseName;
use metalk8s_model::report::error_chain;
use metalk8s_model::repository as repo;
use metalk8s_plan::{HealthGate, NodeApi};
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
    /// What the `kubernetes` gate applies and approves for each node once it has
    /// registered (every node of the inventory, when that phase is planned).
    pub node_api: &'a [NodeApi],
    /// The inventory's Kubernetes nodes (control planes, workers, infra nodes): the pod
    /// network gate waits for each to be `Ready`.
    pub kubernetes_nodes: Vec<String>,
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
            HealthGate::PodNetwork => Some(self.pod_network().await),
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
    ///
    /// Then what can only be done once a node has registered, through the same control
    /// plane: each node's labels and taints are applied ([`Self::apply_labels_and_taints`]),
    /// and its kubelet's serving certificate requests are approved or denied
    /// ([`Self::approve_serving_certificates`]).
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
        let (asked, host) = match self.api_node() {
            Ok(found) => found,
            Err(failed) => return failed,
        };
        let registered = self
            .poll_kubectl(host.as_ref(), "get nodes -o json", |answer| {
                let names = node_names(answer)?;
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
        if let Err(problem) = registered {
            return GateOutcome::failed(
                format!(
                    "nodes are not registered with the cluster after {} s (asked {asked}): {problem}",
                    KUBERNETES_PATIENCE.timeout.as_secs()
                ),
                "`journalctl -u kubelet` on a node named says why its kubelet does not register",
            );
        }
        let mut done = Vec::new();
        if !control_planes.is_empty() {
            done.push(format!(
                "/readyz ok on {}",
                control_planes
                    .iter()
                    .map(|node| node.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        done.push(format!("registered: {}", batch.join(", ")));
        match self
            .apply_labels_and_taints(asked, host.as_ref(), batch)
            .await
        {
            Ok(applied) => done.push(applied),
            Err(failed) => return failed,
        }
        match self
            .approve_serving_certificates(asked, host.as_ref(), batch)
            .await
        {
            Ok(decided) => done.push(decided),
            Err(failed) => return failed,
        }
        GateOutcome::Passed(done.join("; "))
    }

    /// The first control plane with a connection: it answers the gates' API questions.
    fn api_node(&self) -> Result<(&String, &Arc<dyn Host>), GateOutcome> {
        self.control_planes
            .iter()
            .find_map(|node| Some((node, self.hosts.get(node)?)))
            .ok_or_else(|| {
                GateOutcome::failed(
                    "no control-plane node to ask",
                    "give at least one node the `control-plane` role",
                )
            })
    }

    /// Runs `kubectl ARGUMENTS` on `host` until `check` accepts its answer, for at most
    /// [`KUBERNETES_PATIENCE`]; the last problem seen when it never does.
    async fn poll_kubectl<T>(
        &self,
        host: &dyn Host,
        arguments: &str,
        check: impl Fn(&str) -> Result<T, String> + Sync,
    ) -> Result<T, String> {
        let command = kubectl(arguments);
        poll_until(self.clock, KUBERNETES_PATIENCE, || async {
            let output = host
                .run(&command)
                .await
                .map_err(|error| error_chain(&error))?;
            if !output.success() {
                return Err(first_line(&output.stderr_text(), &output.stdout_text()));
            }
            check(&output.stdout_text())
        })
        .await
    }

    /// Every Kubernetes node `Ready`, then CoreDNS's replicas all available: the pod
    /// network works on every node and pods reach the API and each other.
    async fn pod_network(&self) -> GateOutcome {
        let (asked, host) = match self.api_node() {
            Ok(found) => found,
            Err(failed) => return failed,
        };
        let ready = self
            .poll_kubectl(host.as_ref(), "get nodes -o json", |answer| {
                let waiting = not_ready(answer, &self.kubernetes_nodes)?;
                if waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not Ready: {}", waiting.join(", ")))
                }
            })
            .await;
        if let Err(problem) = ready {
            return GateOutcome::failed(
                format!(
                    "nodes are not Ready after {} s (asked {asked}): {problem}",
                    KUBERNETES_PATIENCE.timeout.as_secs()
                ),
                format!(
                    "on {asked}: `kubectl -n kube-system get pods -o wide -l k8s-app=calico-node` shows the pod network's agent on each node, `kubectl describe node NODE` why a node is not Ready"
                ),
            );
        }
        let coredns = format!(
            "-n {} get deployment {} -o json",
            metalk8s_kubernetes::coredns::NAMESPACE,
            metalk8s_kubernetes::coredns::NAME
        );
        let available = self
            .poll_kubectl(host.as_ref(), &coredns, deployment_available)
            .await;
        match available {
            Ok(replicas) => GateOutcome::Passed(format!(
                "Ready: {}; CoreDNS {replicas} available",
                self.kubernetes_nodes.join(", ")
            )),
            Err(problem) => GateOutcome::failed(
                format!(
                    "the cluster DNS is not available after {} s (asked {asked}): {problem}",
                    KUBERNETES_PATIENCE.timeout.as_secs()
                ),
                format!(
                    "on {asked}: `kubectl -n kube-system get pods -o wide -l k8s-app=kube-dns` and `kubectl -n kube-system describe pod POD` say where CoreDNS runs and why it is not ready"
                ),
            ),
        }
    }

    /// Server-side applies each node's labels and taints (field manager `metalk8s`, taking
    /// over kubeadm's taints): the kubelet may not set its role labels itself
    /// (NodeRestriction), and a Node object exists only once its kubelet registered.
    async fn apply_labels_and_taints(
        &self,
        asked: &str,
        host: &dyn Host,
        batch: &[String],
    ) -> Result<String, GateOutcome> {
        for node in batch {
            let Some(api) = self.node_api.iter().find(|api| api.name == *node) else {
                return Err(GateOutcome::failed(
                    format!("{node}: no labels and taints were planned for it"),
                    "the node is missing from the inventory the deploy planned from; run `metalk8s deploy` again",
                ));
            };
            let apply = kubectl(
                "apply --server-side --field-manager=metalk8s --force-conflicts -o name -f -",
            )
            .stdin(api.labels_and_taints.to_string());
            let applied = poll_until(self.clock, KUBERNETES_PATIENCE, || async {
                let output = host
                    .run(&apply)
                    .await
                    .map_err(|error| error_chain(&error))?;
                if output.success() {
                    Ok(())
                } else {
                    Err(first_line(&output.stderr_text(), &output.stdout_text()))
                }
            })
            .await;
            if let Err(problem) = applied {
                return Err(GateOutcome::failed(
                    format!(
                        "the labels and taints of {node} could not be applied after {} s (asked {asked}): {problem}",
                        KUBERNETES_PATIENCE.timeout.as_secs()
                    ),
                    format!(
                        "`kubectl get node {node} -o yaml --show-managed-fields` on {asked} shows who owns its labels and taints; the API server's log says why the apply is refused"
                    ),
                ));
            }
        }
        Ok(format!("labels and taints applied: {}", batch.join(", ")))
    }

    /// Decides every pending kubelet serving CSR of the batch's nodes
    /// ([`csr::decide`], against every node of the inventory), writes the decision with
    /// its reason as the CSR's condition, and waits until each node's kubelet holds its
    /// serving certificate: the API server verifies kubelets with the cluster CA, so
    /// without one `kubectl logs` and `exec` fail on that node. A denial is reported but
    /// is no failure by itself (the kubelet asks again); a kubelet still without a
    /// certificate at the end of the patience is.
    async fn approve_serving_certificates(
        &self,
        asked: &str,
        host: &dyn Host,
        batch: &[String],
    ) -> Result<String, GateOutcome> {
        let known: Vec<KnownNode> = self
            .node_api
            .iter()
            .map(|api| api.serving.clone())
            .collect();
        let list = kubectl("get csr -o json");
        let holds_certificate = Command::new(format!(
            "test -s {}",
            metalk8s_kubernetes::cluster::paths::KUBELET_SERVING_CERT
        ))
        .as_root()
        .timeout(Duration::from_secs(10));
        // Kept across tries: each CSR is decided once, and every decision is reported.
        let decided: Mutex<Vec<Decided>> = Mutex::new(Vec::new());
        let served: Mutex<Vec<&str>> = Mutex::new(Vec::new());
        let outcome = poll_until(self.clock, KUBERNETES_PATIENCE, || async {
            let output = host
                .run(&list)
                .await
                .map_err(|error| error_chain(&error))?;
            if !output.success() {
                return Err(first_line(&output.stderr_text(), &output.stdout_text()));
            }
            let pending = pending_serving_requests(&output.stdout_text(), batch)?;
            let mut problems = Vec::new();
            for request in pending {
                if lock(&decided).iter().any(|seen| seen.csr == request.name) {
                    continue;
                }
                let decision = match &request.serving {
                    Ok(serving) => csr::decide(serving, &known),
                    Err(unreadable) => Decision::Deny {
                        reason: unreadable.clone(),
                    },
                };
                let write = kubectl(&format!(
                    "replace --raw /apis/certificates.k8s.io/v1/certificatesigningrequests/{}/approval -f -",
                    request.name
                ))
                .stdin(csr::with_decision(request.object, &decision).to_string());
                match host.run(&write).await {
                    Ok(written) if written.success() => lock(&decided).push(Decided {
                        csr: request.name,
                        node: request.node,
                        decision,
                    }),
                    Ok(written) => problems.push(format!(
                        "{}: {}",
                        request.name,
                        first_line(&written.stderr_text(), &written.stdout_text())
                    )),
                    Err(error) => {
                        problems.push(format!("{}: {}", request.name, error_chain(&error)))
                    }
                }
            }
            for node in batch {
                if lock(&served).contains(&node.as_str()) {
                    continue;
                }
                let Some(node_host) = self.hosts.get(node) else {
                    problems.push(format!("{node}: no connection"));
                    continue;
                };
                match node_host.run(&holds_certificate).await {
                    Ok(output) if output.success() => lock(&served).push(node),
                    Ok(_) => problems.push(format!("{node}: no serving certificate yet")),
                    Err(error) => problems.push(format!("{node}: {}", error_chain(&error))),
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        })
        .await;
        let decisions = lock(&decided)
            .iter()
            .map(Decided::describe)
            .collect::<Vec<_>>();
        let decisions = if decisions.is_empty() {
            String::new()
        } else {
            format!(" ({})", decisions.join("; "))
        };
        match outcome {
            Ok(()) => Ok(format!(
                "serving certificates held: {}{decisions}",
                batch.join(", ")
            )),
            Err(problem) => {
                let missing: Vec<&str> = batch
                    .iter()
                    .map(String::as_str)
                    .filter(|node| !lock(&served).contains(node))
                    .collect();
                Err(GateOutcome::failed(
                    format!(
                        "kubelets without an approved serving certificate after {} s: {} (asked {asked}): {problem}{decisions}",
                        KUBERNETES_PATIENCE.timeout.as_secs(),
                        missing.join(", "),
                    ),
                    format!(
                        "`kubectl get csr` on {asked} lists the kubelets' requests and the reason of each denial (a node must ask for its own name and addresses only, as the inventory says); `journalctl -u kubelet` on {} says whether it asked",
                        missing.join(", ")
                    ),
                ))
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A serving CSR this gate decided.
struct Decided {
    csr: String,
    node: String,
    decision: Decision,
}

impl Decided {
    fn describe(&self) -> String {
        format!(
            "{} {} of {}: {}",
            if self.decision.is_approved() {
                "approved"
            } else {
                "denied"
            },
            self.csr,
            self.node,
            self.decision.reason()
        )
    }
}

/// A pending kubelet serving CSR from one of the batch's nodes.
struct PendingRequest {
    name: String,
    node: String,
    /// What it asks for, or why its request cannot be read (then it is denied).
    serving: Result<ServingRequest, String>,
    /// As read: the approval is written over it, with its resourceVersion, so a decision
    /// made meanwhile by someone else is not overwritten.
    object: serde_json::Value,
}

/// The CSRs of a `kubectl get csr -o json` answer that are for the kubelet serving signer,
/// from a node of `batch` (`system:node:<name>`), with neither an `Approved` nor a
/// `Denied` condition.
fn pending_serving_requests(json: &str, batch: &[String]) -> Result<Vec<PendingRequest>, String> {
    let list: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("unreadable CSR list: {error}"))?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .into_iter()
        .filter_map(|object| {
            let spec = &object["spec"];
            if spec["signerName"] != csr::KUBELET_SERVING_SIGNER {
                return None;
            }
            let username = spec["username"].as_str()?;
            let node = username.strip_prefix(csr::NODE_USER_PREFIX)?;
            if !batch.iter().any(|member| member == node) {
                return None;
            }
            let decided = object["status"]["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions.iter().any(|condition| {
                        matches!(condition["type"].as_str(), Some("Approved" | "Denied"))
                    })
                });
            if decided {
                return None;
            }
            let strings = |field: &str| -> Vec<String> {
                spec[field]
                    .as_array()
                    .map(|values| {
                        values
                            .iter()
                            .filter_map(|value| value.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let serving =
                metalk8s_pki::RequestInfo::from_api(spec["request"].as_str().unwrap_or_default())
                    .map(|info| ServingRequest {
                        signer_name: csr::KUBELET_SERVING_SIGNER.to_owned(),
                        username: username.to_owned(),
                        groups: strings("groups"),
                        usages: strings("usages"),
                        common_name: info.common_name,
                        organizations: info.organizations,
                        dns_names: info.dns_names,
                        ip_addresses: info.ip_addresses,
                        email_addresses: info.email_addresses,
                        uris: info.uris,
                    })
                    .map_err(|error| {
                        format!("its request cannot be read: {}", error_chain(&error))
                    });
            Some(PendingRequest {
                name: object["metadata"]["name"].as_str()?.to_owned(),
                node: node.to_owned(),
                serving,
                object,
            })
        })
        .collect())
}

/// Of `expected`, the nodes a `kubectl get nodes -o json` answer does not show `Ready`,
/// each with why (the Ready condition's reason and message, or that it is not
/// registered).
fn not_ready(json: &str, expected: &[String]) -> Result<Vec<String>, String> {
    let list: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("unreadable node list: {error}"))?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(expected
        .iter()
        .filter_map(|name| {
            let Some(node) = items.iter().find(|item| item["metadata"]["name"] == **name) else {
                return Some(format!("{name} (not registered)"));
            };
            let conditions = node["status"]["conditions"].as_array();
            let ready = conditions
                .into_iter()
                .flatten()
                .find(|condition| condition["type"] == "Ready");
            match ready {
                Some(condition) if condition["status"] == "True" => None,
                Some(condition) => Some(format!(
                    "{name} ({}: {})",
                    condition["reason"].as_str().unwrap_or("NotReady"),
                    condition["message"].as_str().unwrap_or("").trim()
                )),
                None => Some(format!("{name} (no Ready condition yet)")),
            }
        })
        .collect())
}

/// `available/wanted` replicas of a `kubectl get deployment -o json` answer, when all are
/// available (and the status is of the current generation).
fn deployment_available(json: &str) -> Result<String, String> {
    let deployment: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("unreadable Deployment: {error}"))?;
    let wanted = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let status = &deployment["status"];
    let available = status["availableReplicas"].as_u64().unwrap_or(0);
    let updated = status["updatedReplicas"].as_u64().unwrap_or(0);
    let current =
        status["observedGeneration"].as_u64() >= deployment["metadata"]["generation"].as_u64();
    if current && available >= wanted && updated >= wanted {
        Ok(format!("{available}/{wanted}"))
    } else {
        Err(format!("{available} of {wanted} replicas available"))
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
            node_api: &[],
            kubernetes_nodes: vec!["node1".into(), "node2".into()],
            clock,
        }
    }

    fn node(name: &str, ready: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": ready, "reason": reason, "message": format!("{reason} on {name}")},
            ]},
        })
    }

    fn coredns(available: u64) -> String {
        serde_json::json!({
            "metadata": {"name": "coredns", "generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "availableReplicas": available, "updatedReplicas": available},
        })
        .to_string()
    }

    #[tokio::test]
    async fn the_pod_network_gate_waits_for_every_node_ready_then_the_cluster_dns() {
        let items = serde_json::json!({"items": [
            node("node1", "True", "KubeletReady"),
            node("node2", "False", "KubeletNotReady"),
        ]})
        .to_string();
        let node1 = Arc::new(
            RecordingHost::new("node1")
                .on("get nodes", Output::ok(items))
                .on("get deployment coredns", Output::ok(coredns(2))),
        );
        let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
        hosts.insert("node1".into(), node1.clone());
        let clock = ManualClock::new();
        let GateOutcome::Failed { problem, hint } = gates(&hosts, &clock).pod_network().await
        else {
            panic!("node2 is not Ready");
        };
        assert!(
            problem.contains("not Ready: node2 (KubeletNotReady: KubeletNotReady on node2)"),
            "{problem}"
        );
        assert!(hint.unwrap().contains("k8s-app=calico-node"));
        assert_eq!(
            count(&node1, "get deployment"),
            0,
            "DNS is asked about once nodes are Ready"
        );

        let items = serde_json::json!({"items": [
            node("node1", "True", "KubeletReady"),
            node("node2", "True", "KubeletReady"),
        ]})
        .to_string();
        for (available, passes) in [(2, true), (1, false)] {
            let node1 = Arc::new(
                RecordingHost::new("node1")
                    .on("get nodes", Output::ok(items.clone()))
                    .on("get deployment coredns", Output::ok(coredns(available))),
            );
            let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
            hosts.insert("node1".into(), node1);
            let clock = ManualClock::new();
            let outcome = gates(&hosts, &clock).pod_network().await;
            match outcome {
                GateOutcome::Passed(seen) => {
                    assert!(passes);
                    assert_eq!(seen, "Ready: node1, node2; CoreDNS 2/2 available");
                }
                GateOutcome::Failed { problem, .. } => {
                    assert!(!passes);
                    assert!(problem.contains("1 of 2 replicas available"), "{problem}");
                }
            }
        }
    }

    fn count(host: &RecordingHost, part: &str) -> usize {
        host.commands()
            .iter()
            .filter(|c| c.script.contains(part))
            .count()
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

    /// What the inventory says `node` is: node2 is 10.0.0.12 and 10.1.0.12, and so on.
    fn node_api(node: &str) -> NodeApi {
        let number: u8 = node.trim_start_matches("node").parse().unwrap();
        NodeApi {
            name: node.to_owned(),
            labels_and_taints: serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node, "labels": {"node-role.kubernetes.io/worker": ""}},
                "spec": {"taints": []},
            }),
            serving: KnownNode {
                name: node.to_owned(),
                addresses: vec![
                    format!("10.0.0.{}", 10 + number).parse().unwrap(),
                    format!("10.1.0.{}", 10 + number).parse().unwrap(),
                ],
                hostnames: Vec::new(),
            },
        }
    }

    /// A kubelet serving CSR from `node`, as `kubectl get csr -o json` shows it, asking
    /// for `ips`, with these `conditions`.
    fn serving_csr(name: &str, node: &str, ips: &[&str], conditions: &[&str]) -> serde_json::Value {
        use base64::Engine;
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params.subject_alt_names =
            std::iter::once(rcgen::SanType::DnsName(node.try_into().unwrap()))
                .chain(
                    ips.iter()
                        .map(|ip| rcgen::SanType::IpAddress(ip.parse().unwrap())),
                )
                .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name, "resourceVersion": "7"},
            "spec": {
                "signerName": csr::KUBELET_SERVING_SIGNER,
                "username": format!("system:node:{node}"),
                "groups": ["system:nodes", "system:authenticated"],
                "usages": ["digital signature", "server auth"],
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
            },
            "status": {
                "conditions": conditions
                    .iter()
                    .map(|kind| serde_json::json!({"type": kind, "status": "True"}))
                    .collect::<Vec<_>>(),
            },
        })
    }

    fn list(items: Vec<serde_json::Value>) -> Output {
        Output::ok(serde_json::json!({"items": items}).to_string())
    }

    fn node_list(nodes: &[&str]) -> Output {
        list(
            nodes
                .iter()
                .map(|node| serde_json::json!({"metadata": {"name": node}}))
                .collect(),
        )
    }

    /// node1 is the control plane asked; node2 and node3, workers, are the batch.
    fn cluster(
        node1: RecordingHost,
        node3_holds_a_certificate: bool,
    ) -> (Arc<RecordingHost>, BTreeMap<String, Arc<dyn Host>>) {
        let node1 = Arc::new(node1);
        let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
        hosts.insert("node1".into(), node1.clone());
        hosts.insert(
            "node2".into(),
            Arc::new(RecordingHost::new("node2").on("test -s", Output::ok(""))),
        );
        let node3 = RecordingHost::new("node3");
        let node3 = if node3_holds_a_certificate {
            node3.on("test -s", Output::ok(""))
        } else {
            node3.on("test -s", Output::failed(1, ""))
        };
        hosts.insert("node3".into(), Arc::new(node3));
        (node1, hosts)
    }

    /// The `kubernetes` gate after the workers' batch (node2 and node3).
    async fn check_workers(hosts: &BTreeMap<String, Arc<dyn Host>>) -> GateOutcome {
        let clock = ManualClock::new();
        let node_api = [node_api("node1"), node_api("node2"), node_api("node3")];
        let gates = DeployGates {
            node_api: &node_api,
            ..gates(hosts, &clock)
        };
        let batch = ["node2".to_owned(), "node3".to_owned()];
        gates.check(PhaseName::Kubernetes, &batch).await.unwrap()
    }

    fn stdin_json(command: &Command) -> serde_json::Value {
        serde_json::from_slice(command.stdin.as_deref().expect("a body on stdin")).unwrap()
    }

    #[tokio::test]
    async fn the_kubernetes_gate_labels_every_node_and_decides_their_serving_certificates() {
        let csrs = list(vec![
            serving_csr("csr-own", "node2", &["10.0.0.12", "10.1.0.12"], &[]),
            serving_csr("csr-theirs", "node3", &["10.0.0.12"], &[]),
            serving_csr("csr-node3", "node3", &["10.0.0.13"], &[]),
            serving_csr("csr-done", "node2", &["10.0.0.12"], &["Approved"]),
            // Not of the batch: its own batch decides it.
            serving_csr("csr-cp", "node1", &["10.0.0.11"], &[]),
        ]);
        let (node1, hosts) = cluster(
            RecordingHost::new("node1")
                .on("get nodes -o json", node_list(&["node1", "node2", "node3"]))
                .on(
                    "apply --server-side",
                    Output::ok("node/x serverside-applied"),
                )
                .on("get csr -o json", csrs)
                .on("replace --raw", Output::ok("{}")),
            true,
        );
        let GateOutcome::Passed(seen) = check_workers(&hosts).await else {
            panic!("both nodes registered and hold a serving certificate");
        };
        assert!(
            seen.contains("labels and taints applied: node2, node3"),
            "{seen}"
        );
        assert!(seen.contains("approved csr-own of node2"), "{seen}");
        assert!(
            seen.contains(
                "denied csr-theirs of node3: address 10.0.0.12 is not one of node node3's"
            ),
            "{seen}"
        );

        let commands = node1.commands();
        let applied: Vec<serde_json::Value> = commands
            .iter()
            .filter(|command| {
                command
                    .script
                    .contains("apply --server-side --field-manager=metalk8s --force-conflicts")
            })
            .map(stdin_json)
            .collect();
        assert_eq!(
            applied,
            [
                node_api("node2").labels_and_taints,
                node_api("node3").labels_and_taints
            ]
        );
        let decisions: Vec<(String, String)> = commands
            .iter()
            .filter(|command| command.script.contains("replace --raw"))
            .map(|command| {
                let body = stdin_json(command);
                (
                    body["metadata"]["name"].as_str().unwrap().to_owned(),
                    body["status"]["conditions"][0]["type"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        let decision = |csr: &str, kind: &str| (csr.to_owned(), kind.to_owned());
        assert_eq!(
            decisions,
            [
                decision("csr-own", "Approved"),
                decision("csr-theirs", "Denied"),
                decision("csr-node3", "Approved"),
            ]
        );
        assert!(commands.iter().any(|command| {
            command
                .script
                .contains("certificatesigningrequests/csr-own/approval -f -")
        }));
    }

    #[tokio::test]
    async fn the_kubernetes_gate_fails_naming_a_kubelet_without_a_serving_certificate() {
        let (node1, hosts) = cluster(
            RecordingHost::new("node1")
                .on("get nodes -o json", node_list(&["node1", "node2", "node3"]))
                .on("apply --server-side", Output::ok(""))
                .on(
                    "get csr -o json",
                    list(vec![serving_csr(
                        "csr-theirs",
                        "node3",
                        &["10.0.0.99"],
                        &[],
                    )]),
                )
                .on("replace --raw", Output::ok("{}")),
            false,
        );
        let GateOutcome::Failed { problem, hint } = check_workers(&hosts).await else {
            panic!("node3's kubelet never gets a serving certificate");
        };
        assert!(
            problem.contains(
                "without an approved serving certificate after 180 s: node3 (asked node1)"
            ),
            "{problem}"
        );
        assert!(
            problem.contains("denied csr-theirs of node3: address 10.0.0.99"),
            "{problem}"
        );
        assert!(hint.unwrap().contains("`kubectl get csr` on node1"));
        // Decided once, however many times the list is read.
        let denials = node1
            .scripts()
            .iter()
            .filter(|script| script.contains("replace --raw"))
            .count();
        assert_eq!(denials, 1);
    }

    #[tokio::test]
    async fn the_kubernetes_gate_fails_with_a_hint_when_a_node_never_registers() {
        let (node1, hosts) = cluster(
            RecordingHost::new("node1").on("get nodes -o json", node_list(&["node1", "node2"])),
            true,
        );
        let GateOutcome::Failed { problem, hint } = check_workers(&hosts).await else {
            panic!("node3 never registers");
        };
        assert!(
            problem.contains(
                "not registered with the cluster after 180 s (asked node1): not registered: node3"
            ),
            "{problem}"
        );
        assert!(hint.unwrap().contains("journalctl -u kubelet"));
        // Nothing is applied to a cluster that does not hold the batch yet.
        assert!(
            node1
                .scripts()
                .iter()
                .all(|script| !script.contains("apply") && !script.contains("csr"))
        );
    }
}
