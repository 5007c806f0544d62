//! The executor: runs a plan on many hosts. Phases are barriers; within a phase hosts run
//! in parallel (bounded) or batch by batch; each host runs its steps through its agent.
//! The first phase with a failed host is the last one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use metalk8s_model::PhaseName;
use metalk8s_model::inventory::API_VERSION;
use metalk8s_model::plan::{HostPlan, ObjectSet, Phase, Plan, Rollout};
use metalk8s_transport::Host;

use crate::agent::{
    self, AgentBinary, AgentEvent, AgentRequest, Observation, ObserveRequest, PhaseSteps,
};
use crate::journal::{Entry, Interrupted, Journal, StepKey, fingerprint};
use crate::report::{DeployReport, GateReport, HostReport, ObjectsReport, PhaseReport};
use crate::runner::StepReport;
use metalk8s_model::report::{StepOutcome, error_chain};

/// Told what happens, for progress bars or plain lines.
pub trait Progress: Send + Sync {
    fn phase_started(&self, phase: &Phase);
    fn step_started(&self, node: &str, step: &str);
    fn step_finished(&self, node: &str, report: &StepReport);
    fn host_finished(&self, report: &HostReport);
    fn gate_checked(&self, _phase: PhaseName, _report: &GateReport) {}
    fn objects_applied(&self, _phase: PhaseName, _report: &ObjectsReport) {}
}

/// A phase's health gate: after each batch of hosts finished without failure, the
/// service the phase manages must be healthy before the next batch (or phase) starts.
#[async_trait::async_trait]
pub trait Gate: Send + Sync {
    /// `None` when `phase` has no gate; else whether it passed and what was seen. `batch`
    /// names the hosts that just finished.
    async fn check(&self, phase: PhaseName, batch: &[String]) -> Option<GateOutcome>;
}

/// Puts a phase's Kubernetes objects into the cluster through its API (the binary's apply
/// engine), or on a dry run tells what it would do. Never fails: a failure is the report's
/// `error`, with its hint.
#[async_trait::async_trait]
pub trait ObjectApplier: Send + Sync {
    async fn apply(&self, phase: PhaseName, set: &ObjectSet, dry_run: bool) -> ObjectsReport;
}

/// What a health gate saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateOutcome {
    /// Healthy: what was seen ("3 members healthy, leader node1").
    Passed(String),
    /// Not healthy: what is wrong, and what the operator can do about it.
    Failed {
        problem: String,
        hint: Option<String>,
    },
}

impl GateOutcome {
    pub fn failed(problem: impl Into<String>, hint: impl Into<String>) -> Self {
        GateOutcome::Failed {
            problem: problem.into(),
            hint: Some(hint.into()),
        }
    }

    fn into_report(self, after: Vec<String>) -> GateReport {
        match self {
            GateOutcome::Passed(summary) => GateReport {
                after,
                passed: true,
                summary,
                hint: None,
            },
            GateOutcome::Failed { problem, hint } => GateReport {
                after,
                passed: false,
                summary: problem,
                hint,
            },
        }
    }
}

pub struct Executor<'a> {
    pub hosts: &'a BTreeMap<String, Arc<dyn Host>>,
    pub binary: &'a AgentBinary,
    pub parallelism: usize,
    pub dry_run: bool,
    pub run: String,
    /// Not written on a dry run.
    pub journal: Option<&'a Journal>,
    pub interrupted: Option<&'a Interrupted>,
    pub progress: &'a dyn Progress,
    /// Not checked on a dry run (nothing changed).
    pub gate: Option<&'a dyn Gate>,
    /// Applies the object sets of phases that have one; a phase with objects and no
    /// applier fails.
    pub objects: Option<&'a dyn ObjectApplier>,
    /// Observe every phase of each host in one agent round trip first; phases found
    /// converged on all their hosts are reported from that (no apply, no gate) until a
    /// phase changes something, after which every phase runs in full. A host that cannot
    /// be observed just runs in full.
    pub observe_first: bool,
}

/// What each host saw of each phase in the one observation round trip.
type Observed = BTreeMap<(PhaseName, String), Observation>;

impl Executor<'_> {
    pub async fn execute(&self, plan: &Plan) -> DeployReport {
        let observed = if self.observe_first {
            self.observe(plan).await
        } else {
            Observed::new()
        };
        let mut phases = Vec::new();
        let mut stopped = false;
        // Observations hold only while nothing has changed since they were made.
        let mut changed = false;
        for phase in &plan.phases {
            if stopped {
                phases.push(PhaseReport {
                    name: phase.name,
                    completed: false,
                    hosts: Vec::new(),
                    gates: Vec::new(),
                    objects: None,
                });
                continue;
            }
            let seen: Option<Vec<&Observation>> = phase
                .hosts
                .iter()
                .map(|host| observed.get(&(phase.name, host.node.clone())))
                .collect();
            let report = match seen {
                Some(seen) if self.dry_run || (!changed && seen.iter().all(|o| o.converged())) => {
                    let report = self.observed_phase(phase, &seen);
                    // Hosts converged; the objects are still asked about (an apply that
                    // finds them as planned changes nothing), and only a change gates.
                    self.finish_objects(phase, report, false).await
                }
                _ => self.run_phase(phase).await,
            };
            changed |= report
                .hosts
                .iter()
                .flat_map(|host| &host.steps)
                .any(|step| !matches!(step.outcome, StepOutcome::Unchanged))
                || report
                    .objects
                    .as_ref()
                    .is_some_and(ObjectsReport::changed_anything);
            stopped = !report.completed;
            phases.push(report);
        }
        DeployReport {
            api_version: API_VERSION.to_owned(),
            kind: "DeployReport".to_owned(),
            run: self.run.clone(),
            dry_run: self.dry_run,
            resumed_from: self.interrupted.map(|i| i.run.clone()),
            succeeded: !stopped,
            phases,
        }
    }

    /// Every host's steps of every phase, observed in one agent call per host (in
    /// parallel, bounded); hosts that cannot answer are left out.
    async fn observe(&self, plan: &Plan) -> Observed {
        let mut by_node: BTreeMap<&str, Vec<PhaseSteps>> = BTreeMap::new();
        for phase in &plan.phases {
            for host in &phase.hosts {
                by_node.entry(&host.node).or_default().push(PhaseSteps {
                    phase: phase.name,
                    steps: host.steps.clone(),
                });
            }
        }
        let asks = by_node.into_iter().filter_map(|(node, phases)| {
            let host = self.hosts.get(node)?;
            let request = ObserveRequest {
                api_version: API_VERSION.to_owned(),
                node: node.to_owned(),
                phases,
            };
            Some(async move {
                let answer = agent::call_observe(host.as_ref(), self.binary, &request).await;
                (node.to_owned(), request, answer)
            })
        });
        let answers: Vec<_> = futures::stream::iter(asks)
            .buffer_unordered(self.parallelism.max(1))
            .collect()
            .await;
        let mut observed = Observed::new();
        for (node, request, answer) in answers {
            let Ok(observations) = answer else {
                continue;
            };
            for observation in observations {
                // Only an answer that covers the phase's every step stands for it.
                let asked = request
                    .phases
                    .iter()
                    .find(|phase| phase.phase == observation.phase);
                if asked.is_some_and(|asked| asked.steps.len() == observation.steps.len()) {
                    observed.insert((observation.phase, node.clone()), observation);
                }
            }
        }
        observed
    }

    /// A phase reported from its observation: nothing to apply (or a dry run).
    fn observed_phase(&self, phase: &Phase, seen: &[&Observation]) -> PhaseReport {
        self.progress.phase_started(phase);
        let mut hosts = Vec::new();
        for (host_plan, observation) in phase.hosts.iter().zip(seen) {
            let fingerprints = fingerprints(host_plan);
            let mut steps = observation.steps.clone();
            for report in &mut steps {
                let key = self.mark(phase.name.as_str(), host_plan, &fingerprints, report);
                self.record(key, report);
                self.progress.step_finished(&host_plan.node, report);
            }
            let report = HostReport {
                node: host_plan.node.clone(),
                duration_ms: steps.iter().map(|step| step.duration_ms).sum(),
                steps,
                error: None,
            };
            self.progress.host_finished(&report);
            hosts.push(report);
        }
        PhaseReport {
            name: phase.name,
            completed: !hosts.iter().any(HostReport::failed),
            hosts,
            gates: Vec::new(),
            objects: None,
        }
    }

    /// For a phase with objects whose hosts all finished: applies the objects, then runs
    /// the phase's gate once over all its hosts (`always_gate`), or only when applying
    /// changed something. A phase without objects, or one that already failed, is
    /// returned as it is.
    async fn finish_objects(
        &self,
        phase: &Phase,
        mut report: PhaseReport,
        always_gate: bool,
    ) -> PhaseReport {
        let Some(set) = &phase.objects else {
            return report;
        };
        if !report.completed {
            return report;
        }
        let objects = match self.objects {
            Some(applier) => applier.apply(phase.name, set, self.dry_run).await,
            None => ObjectsReport {
                set: set.name.clone(),
                error: Some("this run has no access to the cluster's API".to_owned()),
                ..ObjectsReport::default()
            },
        };
        self.progress.objects_applied(phase.name, &objects);
        report.completed = !objects.failed();
        let gate_now = report.completed && (always_gate || objects.changed_anything());
        report.objects = Some(objects);
        if gate_now {
            let nodes: Vec<String> = phase.hosts.iter().map(|host| host.node.clone()).collect();
            if let Some(gate) = self.gate.filter(|_| !self.dry_run)
                && let Some(outcome) = gate.check(phase.name, &nodes).await
            {
                let gate_report = outcome.into_report(nodes);
                self.progress.gate_checked(phase.name, &gate_report);
                report.completed = gate_report.passed;
                report.gates.push(gate_report);
            }
        }
        report
    }

    async fn run_phase(&self, phase: &Phase) -> PhaseReport {
        self.progress.phase_started(phase);
        let batches: Vec<&[metalk8s_model::plan::HostPlan]> = match phase.rollout {
            Rollout::Parallel => phase.hosts.chunks(phase.hosts.len().max(1)).collect(),
            Rollout::Batches { size } => phase.hosts.chunks((size as usize).max(1)).collect(),
            Rollout::FirstAlone => {
                let (first, rest) = phase.hosts.split_at(phase.hosts.len().min(1));
                [first, rest]
                    .into_iter()
                    .filter(|b| !b.is_empty())
                    .collect()
            }
            Rollout::OneAtATimeFirst { count } => {
                let (serial, rest) = phase.hosts.split_at(phase.hosts.len().min(count as usize));
                serial
                    .chunks(1)
                    .chain([rest].into_iter().filter(|b| !b.is_empty()))
                    .collect()
            }
        };
        let mut hosts = Vec::new();
        let mut gates = Vec::new();
        let mut completed = true;
        for batch in batches {
            let reports: Vec<HostReport> = futures::stream::iter(batch)
                .map(|host_plan| self.run_host(phase.name.as_str(), host_plan))
                .buffer_unordered(self.parallelism.max(1))
                .collect()
                .await;
            completed &= !reports.iter().any(HostReport::failed);
            hosts.extend(reports);
            if !completed {
                break;
            }
            let batch_nodes: Vec<String> = batch.iter().map(|host| host.node.clone()).collect();
            // A phase with objects is gated once, after they are applied.
            if let Some(gate) = self
                .gate
                .filter(|_| !self.dry_run && phase.objects.is_none())
                && let Some(outcome) = gate.check(phase.name, &batch_nodes).await
            {
                let report = outcome.into_report(batch_nodes);
                self.progress.gate_checked(phase.name, &report);
                completed = report.passed;
                gates.push(report);
                if !completed {
                    break;
                }
            }
        }
        // Report hosts in plan order, whatever order they finished in.
        let order: BTreeMap<&str, usize> = phase
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| (host.node.as_str(), index))
            .collect();
        hosts.sort_by_key(|h| order.get(h.node.as_str()).copied());
        let report = PhaseReport {
            name: phase.name,
            completed,
            hosts,
            gates,
            objects: None,
        };
        self.finish_objects(phase, report, true).await
    }

    async fn run_host(&self, phase: &str, host_plan: &HostPlan) -> HostReport {
        let started = Instant::now();
        let (steps, error) = match self.hosts.get(&host_plan.node) {
            Some(host) => match self.run_agent(host.as_ref(), phase, host_plan).await {
                Ok(steps) => (steps, None),
                Err(error) => (Vec::new(), Some(error_chain(&error))),
            },
            None => (
                Vec::new(),
                Some(format!("no connection to {}", host_plan.node)),
            ),
        };
        let report = HostReport {
            node: host_plan.node.clone(),
            steps,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        self.progress.host_finished(&report);
        report
    }

    async fn run_agent(
        &self,
        host: &dyn Host,
        phase: &str,
        host_plan: &HostPlan,
    ) -> Result<Vec<StepReport>, agent::AgentError> {
        let request = AgentRequest::new(
            &self.run,
            phase,
            &host_plan.node,
            self.dry_run,
            host_plan.steps.clone(),
        );
        let fingerprints = fingerprints(host_plan);
        let node = host_plan.node.as_str();
        let mark = |report: &mut StepReport| self.mark(phase, host_plan, &fingerprints, report);
        let on_event = |event: AgentEvent| match event {
            AgentEvent::Started { step } => self.progress.step_started(node, &step),
            AgentEvent::Finished(mut report) => {
                let key = mark(&mut report);
                self.record(key, &report);
                self.progress.step_finished(node, &report);
            }
            AgentEvent::Done => {}
        };
        let mut reports = agent::run(host, self.binary, &request, &on_event).await?;
        for report in &mut reports {
            mark(report);
        }
        Ok(reports)
    }

    /// A step's journal key; a step the interrupted run had completed, and that succeeded
    /// again, is marked `resumed`.
    fn mark(
        &self,
        phase: &str,
        host_plan: &HostPlan,
        fingerprints: &BTreeMap<&str, String>,
        report: &mut StepReport,
    ) -> StepKey {
        let key = StepKey {
            phase: phase.to_owned(),
            node: host_plan.node.clone(),
            step: report.step.clone(),
            fingerprint: fingerprints
                .get(report.step.as_str())
                .cloned()
                .unwrap_or_default(),
        };
        report.resumed = self
            .interrupted
            .is_some_and(|i| i.completed.contains(&key) && report.outcome.succeeded());
        key
    }

    /// Not written on a dry run (there is no journal then).
    fn record(&self, key: StepKey, report: &StepReport) {
        let Some(journal) = self.journal else {
            return;
        };
        let entry = Entry::Step {
            run: self.run.clone(),
            phase: key.phase,
            node: key.node,
            step: key.step,
            fingerprint: key.fingerprint,
            outcome: report.outcome.clone(),
        };
        // The journal is what a resumed run relies on; failing to write it must be loud.
        if let Err(error) = journal.record(&entry) {
            eprintln!("warning: {}", error_chain(&error));
        }
    }
}

/// Each step's fingerprint, by step id.
fn fingerprints(host_plan: &HostPlan) -> BTreeMap<&str, String> {
    host_plan
        .steps
        .iter()
        .map(|step| (step.id.as_str(), fingerprint(step)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use metalk8s_model::plan::{CommandResource, Resource, Step};
    use metalk8s_model::report::StepOutcome;
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    /// Stands in for the agent on the node: answers `agent apply` with the event lines a
    /// real agent prints (the agent itself is exercised end to end on lab nodes).
    fn agent_events(outcome: StepOutcome) -> String {
        let finished = AgentEvent::Finished(StepReport {
            step: "work".to_owned(),
            outcome,
            duration_ms: 1,
            resumed: false,
        });
        format!(
            "{}\n{}\n",
            serde_json::to_string(&finished).unwrap(),
            serde_json::to_string(&AgentEvent::Done).unwrap()
        )
    }

    fn node(name: &str, outcome: StepOutcome) -> Arc<dyn Host> {
        let finished = AgentEvent::Finished(StepReport {
            step: "work".to_owned(),
            outcome,
            duration_ms: 1,
            resumed: false,
        });
        let events = format!(
            "{}\n{}\n{}\n",
            serde_json::to_string(&AgentEvent::Started {
                step: "work".to_owned()
            })
            .unwrap(),
            serde_json::to_string(&finished).unwrap(),
            serde_json::to_string(&AgentEvent::Done).unwrap()
        );
        Arc::new(
            RecordingHost::new(name)
                .on("agent apply", Output::ok(events))
                .otherwise(Output::ok("metalk8s 0.1.0\n")),
        )
    }

    fn host_plan(node: &str) -> HostPlan {
        HostPlan {
            node: node.to_owned(),
            steps: vec![Step {
                id: "work".to_owned(),
                resource: Resource::Command(CommandResource {
                    command: "true".to_owned(),
                    creates: None,
                    unless: None,
                    only_on_watch: false,
                }),
                after: Vec::new(),
                watch: Vec::new(),
            }],
        }
    }

    #[derive(Default)]
    struct Seen {
        phases: Mutex<Vec<PhaseName>>,
        hosts: Mutex<Vec<String>>,
    }

    impl Progress for Seen {
        fn phase_started(&self, phase: &Phase) {
            self.phases.lock().unwrap().push(phase.name);
        }
        fn step_started(&self, _: &str, _: &str) {}
        fn step_finished(&self, _: &str, _: &StepReport) {}
        fn host_finished(&self, report: &HostReport) {
            self.hosts.lock().unwrap().push(report.node.clone());
        }
    }

    fn plan(rollout: Rollout, nodes: &[&str]) -> Plan {
        let phase = |name: PhaseName| Phase {
            name,
            rollout,
            hosts: nodes.iter().map(|n| host_plan(n)).collect(),
            objects: None,
        };
        Plan {
            api_version: API_VERSION.to_owned(),
            kind: "Plan".to_owned(),
            cluster: "test".to_owned(),
            phases: vec![phase(PhaseName::Os), phase(PhaseName::Etcd)],
        }
    }

    async fn execute(
        hosts: BTreeMap<String, Arc<dyn Host>>,
        plan: &Plan,
        seen: &Seen,
    ) -> DeployReport {
        execute_gated(hosts, plan, seen, None).await
    }

    async fn execute_gated(
        hosts: BTreeMap<String, Arc<dyn Host>>,
        plan: &Plan,
        seen: &Seen,
        gate: Option<&dyn Gate>,
    ) -> DeployReport {
        execute_with_objects(hosts, plan, seen, gate, None, false).await
    }

    async fn execute_with_objects(
        hosts: BTreeMap<String, Arc<dyn Host>>,
        plan: &Plan,
        seen: &Seen,
        gate: Option<&dyn Gate>,
        objects: Option<&dyn ObjectApplier>,
        dry_run: bool,
    ) -> DeployReport {
        let binary = AgentBinary::from_bytes(b"agent".to_vec());
        let executor = Executor {
            hosts: &hosts,
            binary: &binary,
            parallelism: 4,
            dry_run,
            run: "r1".to_owned(),
            journal: None,
            interrupted: None,
            progress: seen,
            gate,
            objects,
            observe_first: false,
        };
        executor.execute(plan).await
    }

    /// Answers every apply with `report` (its set name filled in), recording each call
    /// with the number of gate checks made before it.
    struct ScriptedApplier {
        report: ObjectsReport,
        gate: Arc<CountingGate>,
        calls: Mutex<Vec<(PhaseName, usize, bool, usize)>>,
    }

    #[async_trait::async_trait]
    impl ObjectApplier for ScriptedApplier {
        async fn apply(&self, phase: PhaseName, set: &ObjectSet, dry_run: bool) -> ObjectsReport {
            let checks = *self.gate.checks.lock().unwrap();
            self.calls
                .lock()
                .unwrap()
                .push((phase, set.objects.len(), dry_run, checks));
            ObjectsReport {
                set: set.name.clone(),
                ..self.report.clone()
            }
        }
    }

    fn with_objects(mut plan: Plan) -> Plan {
        plan.phases[0].objects = Some(ObjectSet {
            name: "metalk8s-test".to_owned(),
            objects: vec![
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}),
            ],
        });
        plan
    }

    #[tokio::test]
    async fn objects_are_applied_once_every_host_is_done_and_the_gate_runs_once_after_them() {
        let hosts: BTreeMap<String, Arc<dyn Host>> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| ((*n).to_owned(), node(n, StepOutcome::Unchanged)))
            .collect();
        let gate = Arc::new(CountingGate::passing());
        let applier = ScriptedApplier {
            report: ObjectsReport {
                created: vec!["Namespace a".to_owned()],
                unchanged: 1,
                ..ObjectsReport::default()
            },
            gate: Arc::clone(&gate),
            calls: Mutex::new(Vec::new()),
        };
        let seen = Seen::default();
        let plan = with_objects(plan(Rollout::Batches { size: 1 }, &["n1", "n2", "n3"]));
        let report = execute_with_objects(
            hosts,
            &plan,
            &seen,
            Some(gate.as_ref()),
            Some(&applier),
            false,
        )
        .await;
        assert!(report.succeeded);
        let phase = &report.phases[0];
        assert_eq!(phase.hosts.len(), 3);
        assert_eq!(
            *applier.calls.lock().unwrap(),
            [(PhaseName::Os, 2, false, 0)],
            "applied once, before any gate check"
        );
        assert_eq!(phase.gates.len(), 1, "one gate, after the objects");
        assert_eq!(phase.gates[0].after, ["n1", "n2", "n3"]);
        let objects = phase.objects.as_ref().unwrap();
        assert_eq!(objects.set, "metalk8s-test");
        assert_eq!(objects.created, ["Namespace a"]);
    }

    #[tokio::test]
    async fn objects_that_fail_stop_the_run_before_the_gate_and_later_phases() {
        let hosts: BTreeMap<String, Arc<dyn Host>> =
            [("n1".to_owned(), node("n1", StepOutcome::Unchanged))]
                .into_iter()
                .collect();
        let gate = Arc::new(CountingGate::passing());
        let applier = ScriptedApplier {
            report: ObjectsReport {
                error: Some("DaemonSet kube-system/calico-node: 0/1 ready after 300 s".to_owned()),
                hint: Some("see the pod's events".to_owned()),
                ..ObjectsReport::default()
            },
            gate: Arc::clone(&gate),
            calls: Mutex::new(Vec::new()),
        };
        let seen = Seen::default();
        let plan = with_objects(plan(Rollout::Parallel, &["n1"]));
        let report = execute_with_objects(
            hosts,
            &plan,
            &seen,
            Some(gate.as_ref()),
            Some(&applier),
            false,
        )
        .await;
        assert!(!report.succeeded);
        assert!(!report.phases[0].completed);
        assert!(
            report.phases[0].gates.is_empty(),
            "no gate after a failed apply"
        );
        assert_eq!(*gate.checks.lock().unwrap(), 0);
        assert!(report.phases[1].hosts.is_empty(), "no later phase");
    }

    #[tokio::test]
    async fn a_dry_run_asks_the_applier_what_it_would_do_and_a_missing_applier_fails() {
        let hosts = || -> BTreeMap<String, Arc<dyn Host>> {
            [("n1".to_owned(), node("n1", StepOutcome::Unchanged))]
                .into_iter()
                .collect()
        };
        let gate = Arc::new(CountingGate::passing());
        let applier = ScriptedApplier {
            report: ObjectsReport {
                offline: true,
                created: vec!["Namespace a".to_owned(), "Namespace b".to_owned()],
                ..ObjectsReport::default()
            },
            gate: Arc::clone(&gate),
            calls: Mutex::new(Vec::new()),
        };
        let seen = Seen::default();
        let plan = with_objects(plan(Rollout::Parallel, &["n1"]));
        let report = execute_with_objects(
            hosts(),
            &plan,
            &seen,
            Some(gate.as_ref()),
            Some(&applier),
            true,
        )
        .await;
        assert!(report.succeeded);
        assert!(applier.calls.lock().unwrap()[0].2, "asked as a dry run");
        assert!(report.phases[0].objects.as_ref().unwrap().offline);
        assert_eq!(*gate.checks.lock().unwrap(), 0, "no gate on a dry run");

        let report = execute_with_objects(hosts(), &plan, &seen, None, None, false).await;
        assert!(!report.succeeded);
        let objects = report.phases[0].objects.as_ref().unwrap();
        assert!(
            objects
                .error
                .as_deref()
                .unwrap()
                .contains("no access to the cluster's API")
        );
    }

    /// Passes its first `passes` checks of phase `os`, then fails; no other phase is gated.
    struct CountingGate {
        passes: usize,
        checks: Mutex<usize>,
    }

    impl CountingGate {
        /// Passes every check a test makes, counting them.
        fn passing() -> Self {
            CountingGate {
                passes: usize::MAX,
                checks: Mutex::new(0),
            }
        }
    }

    #[async_trait::async_trait]
    impl Gate for CountingGate {
        async fn check(&self, phase: PhaseName, _batch: &[String]) -> Option<GateOutcome> {
            if phase != PhaseName::Os {
                return None;
            }
            let mut checks = self.checks.lock().unwrap();
            *checks += 1;
            Some(if *checks <= self.passes {
                GateOutcome::Passed("healthy".to_owned())
            } else {
                GateOutcome::failed("member n2 unhealthy", "see `metalk8s etcd status`")
            })
        }
    }

    #[tokio::test]
    async fn a_gate_is_checked_after_each_batch_and_a_failed_one_stops_the_run() {
        let hosts: BTreeMap<String, Arc<dyn Host>> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| ((*n).to_owned(), node(n, StepOutcome::Unchanged)))
            .collect();
        let gate = CountingGate {
            passes: 1,
            checks: Mutex::new(0),
        };
        let seen = Seen::default();
        let report = execute_gated(
            hosts,
            &plan(Rollout::Batches { size: 1 }, &["n1", "n2", "n3"]),
            &seen,
            Some(&gate),
        )
        .await;
        assert!(!report.succeeded);
        let phase = &report.phases[0];
        assert!(!phase.completed);
        let nodes: Vec<&str> = phase.hosts.iter().map(|h| h.node.as_str()).collect();
        assert_eq!(nodes, ["n1", "n2"], "n3 waits for a healthy cluster");
        assert_eq!(phase.gates.len(), 2);
        assert!(phase.gates[0].passed && phase.gates[0].after == ["n1"]);
        assert!(!phase.gates[1].passed);
        assert_eq!(phase.gates[1].summary, "member n2 unhealthy");
        assert_eq!(
            phase.gates[1].hint.as_deref(),
            Some("see `metalk8s etcd status`")
        );
        assert!(report.phases[1].hosts.is_empty(), "no later phase");
    }

    #[tokio::test]
    async fn first_alone_gates_the_first_host_then_runs_the_others_together() {
        let hosts: BTreeMap<String, Arc<dyn Host>> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| ((*n).to_owned(), node(n, StepOutcome::Unchanged)))
            .collect();
        let gate = CountingGate {
            passes: 2,
            checks: Mutex::new(0),
        };
        let seen = Seen::default();
        let report = execute_gated(
            hosts,
            &plan(Rollout::FirstAlone, &["n1", "n2", "n3"]),
            &seen,
            Some(&gate),
        )
        .await;
        let phase = &report.phases[0];
        assert!(phase.completed, "{:?}", phase.gates);
        let after: Vec<&Vec<String>> = phase.gates.iter().map(|g| &g.after).collect();
        assert_eq!(
            after,
            [
                &vec!["n1".to_owned()],
                &vec!["n2".to_owned(), "n3".to_owned()]
            ]
        );
    }

    #[tokio::test]
    async fn control_planes_go_one_at_a_time_then_the_others_together() {
        let names = ["cp1", "cp2", "w1", "w2"];
        let hosts: BTreeMap<String, Arc<dyn Host>> = names
            .iter()
            .map(|n| ((*n).to_owned(), node(n, StepOutcome::Unchanged)))
            .collect();
        let gate = CountingGate {
            passes: 3,
            checks: Mutex::new(0),
        };
        let seen = Seen::default();
        let report = execute_gated(
            hosts,
            &plan(Rollout::OneAtATimeFirst { count: 2 }, &names),
            &seen,
            Some(&gate),
        )
        .await;
        let phase = &report.phases[0];
        assert!(phase.completed, "{:?}", phase.gates);
        let after: Vec<&Vec<String>> = phase.gates.iter().map(|g| &g.after).collect();
        assert_eq!(
            after,
            [
                &vec!["cp1".to_owned()],
                &vec!["cp2".to_owned()],
                &vec!["w1".to_owned(), "w2".to_owned()]
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_host_ends_its_batch_and_no_later_phase_starts() {
        let failed = StepOutcome::Failed {
            error: "boom".to_owned(),
        };
        let hosts: BTreeMap<String, Arc<dyn Host>> = [
            ("n1".to_owned(), node("n1", StepOutcome::Unchanged)),
            ("n2".to_owned(), node("n2", failed)),
            ("n3".to_owned(), node("n3", StepOutcome::Unchanged)),
        ]
        .into();
        let seen = Seen::default();
        let report = execute(
            hosts,
            &plan(Rollout::Batches { size: 2 }, &["n1", "n2", "n3"]),
            &seen,
        )
        .await;
        assert!(!report.succeeded);
        assert!(!report.phases[0].completed && !report.phases[1].completed);
        // n3's batch never started, nor did the second phase.
        let nodes: Vec<&str> = report.phases[0]
            .hosts
            .iter()
            .map(|h| h.node.as_str())
            .collect();
        assert_eq!(nodes, ["n1", "n2"]);
        assert!(report.phases[1].hosts.is_empty());
        assert_eq!(*seen.phases.lock().unwrap(), [PhaseName::Os]);
        assert!(report.phases[0].hosts[1].failed());
    }

    #[tokio::test]
    async fn healthy_hosts_go_through_every_phase_and_are_reported_in_plan_order() {
        let hosts: BTreeMap<String, Arc<dyn Host>> = ["n3", "n1", "n2"]
            .iter()
            .map(|n| ((*n).to_owned(), node(n, StepOutcome::Unchanged)))
            .collect();
        let seen = Seen::default();
        let report = execute(hosts, &plan(Rollout::Parallel, &["n3", "n1", "n2"]), &seen).await;
        assert!(report.succeeded, "{report:?}");
        for phase in &report.phases {
            let nodes: Vec<&str> = phase.hosts.iter().map(|h| h.node.as_str()).collect();
            assert_eq!(nodes, ["n3", "n1", "n2"]);
            assert!(
                phase
                    .hosts
                    .iter()
                    .all(|h| h.steps.len() == 1 && h.error.is_none())
            );
        }
        assert_eq!(seen.hosts.lock().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn an_agent_that_stops_without_done_fails_its_host() {
        let silent: Arc<dyn Host> = Arc::new(
            RecordingHost::new("n1")
                .on("agent apply", Output::failed(137, "Killed"))
                .otherwise(Output::ok("metalk8s 0.1.0\n")),
        );
        let hosts: BTreeMap<String, Arc<dyn Host>> = [("n1".to_owned(), silent)].into();
        let report = execute(hosts, &plan(Rollout::Parallel, &["n1"]), &Seen::default()).await;
        let error = report.phases[0].hosts[0].error.as_deref().unwrap();
        assert!(
            error.contains("stopped before finishing") && error.contains("Killed"),
            "{error}"
        );
        assert!(!report.succeeded);
    }

    #[tokio::test]
    async fn an_agent_missing_from_a_node_is_copied_there_then_run() {
        let launches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&launches);
        let recording = Arc::new(
            RecordingHost::new("n1")
                .on_with(move |command| {
                    command.script.contains("agent apply").then(|| {
                        let launch = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(if launch == 0 {
                            Output::failed(86, "")
                        } else {
                            Output::ok(agent_events(StepOutcome::Unchanged))
                        })
                    })
                })
                .otherwise(Output::ok("metalk8s 0.1.0\n")),
        );
        let host: Arc<dyn Host> = recording.clone();
        let hosts: BTreeMap<String, Arc<dyn Host>> = [("n1".to_owned(), host)].into();
        let report = execute(hosts, &plan(Rollout::Parallel, &["n1"]), &Seen::default()).await;
        assert!(report.succeeded, "{report:?}");
        let uploads = recording.uploads();
        assert_eq!(uploads.len(), 1, "copied once, in the first phase only");
        assert!(
            uploads[0]
                .path
                .starts_with("/var/lib/metalk8s/agent/metalk8s-")
        );
        assert_eq!(uploads[0].mode, 0o755);
        // Launched, found missing, launched again; then once for the second phase.
        assert_eq!(launches.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// A node whose agent answers `observe` with `observed` for both phases of [`plan`],
    /// and `apply` with `applied`.
    fn observed_node(
        name: &str,
        observed: StepOutcome,
        applied: StepOutcome,
    ) -> Arc<RecordingHost> {
        let observation = |phase| Observation {
            phase,
            steps: vec![StepReport {
                step: "work".to_owned(),
                outcome: observed.clone(),
                duration_ms: 1,
                resumed: false,
            }],
            owed: false,
        };
        let answer =
            serde_json::to_string(&[observation(PhaseName::Os), observation(PhaseName::Etcd)])
                .unwrap();
        Arc::new(
            RecordingHost::new(name)
                .on("agent observe", Output::ok(answer))
                .on("agent apply", Output::ok(agent_events(applied)))
                .otherwise(Output::ok("metalk8s 0.1.0\n")),
        )
    }

    /// Runs [`plan`] on `n1` and `n2` in batches of one, observing first.
    async fn execute_observing(
        n1: &Arc<RecordingHost>,
        n2: &Arc<RecordingHost>,
        gate: &dyn Gate,
    ) -> DeployReport {
        execute_observing_objects(
            n1,
            n2,
            gate,
            None,
            plan(Rollout::Batches { size: 1 }, &["n1", "n2"]),
        )
        .await
    }

    async fn execute_observing_objects(
        n1: &Arc<RecordingHost>,
        n2: &Arc<RecordingHost>,
        gate: &dyn Gate,
        objects: Option<&dyn ObjectApplier>,
        plan: Plan,
    ) -> DeployReport {
        let hosts: BTreeMap<String, Arc<dyn Host>> = [
            ("n1".to_owned(), n1.clone() as Arc<dyn Host>),
            ("n2".to_owned(), n2.clone() as Arc<dyn Host>),
        ]
        .into();
        let hosts = &hosts;
        let binary = AgentBinary::from_bytes(b"agent".to_vec());
        let seen = Seen::default();
        let executor = Executor {
            hosts,
            binary: &binary,
            parallelism: 4,
            dry_run: false,
            run: "r1".to_owned(),
            journal: None,
            interrupted: None,
            progress: &seen,
            gate: Some(gate),
            objects,
            observe_first: true,
        };
        executor.execute(&plan).await
    }

    #[tokio::test]
    async fn converged_hosts_still_have_their_objects_applied_and_only_a_change_is_gated() {
        for (created, gated) in [(Vec::new(), 0), (vec!["Namespace a".to_owned()], 1)] {
            let n1 = observed_node("n1", StepOutcome::Unchanged, StepOutcome::Unchanged);
            let n2 = observed_node("n2", StepOutcome::Unchanged, StepOutcome::Unchanged);
            let gate = Arc::new(CountingGate::passing());
            let applier = ScriptedApplier {
                report: ObjectsReport {
                    created: created.clone(),
                    unchanged: 2 - created.len(),
                    ..ObjectsReport::default()
                },
                gate: Arc::clone(&gate),
                calls: Mutex::new(Vec::new()),
            };
            let plan = with_objects(plan(Rollout::Batches { size: 1 }, &["n1", "n2"]));
            let report =
                execute_observing_objects(&n1, &n2, gate.as_ref(), Some(&applier), plan).await;
            assert!(report.succeeded);
            // The os phase's hosts were converged; once its objects changed something,
            // the next phase runs in full.
            assert_eq!(count(&n1, "agent apply"), gated, "created: {created:?}");
            assert_eq!(
                applier.calls.lock().unwrap().len(),
                1,
                "objects asked about"
            );
            assert_eq!(*gate.checks.lock().unwrap(), gated, "created: {created:?}");
        }
    }

    fn count(host: &RecordingHost, part: &str) -> usize {
        host.scripts().iter().filter(|s| s.contains(part)).count()
    }

    #[tokio::test]
    async fn a_converged_plan_is_one_observation_per_host_and_no_gate() {
        let n1 = observed_node("n1", StepOutcome::Unchanged, StepOutcome::Unchanged);
        let n2 = observed_node("n2", StepOutcome::Unchanged, StepOutcome::Unchanged);
        let gate = CountingGate::passing();
        let report = execute_observing(&n1, &n2, &gate).await;
        assert!(report.succeeded);
        for host in [&n1, &n2] {
            assert_eq!(host.scripts().len(), 1, "{:?}", host.scripts());
            assert_eq!(count(host, "agent observe"), 1);
        }
        assert_eq!(
            *gate.checks.lock().unwrap(),
            0,
            "nothing changed, nothing to gate"
        );
        for phase in &report.phases {
            assert!(phase.completed && phase.gates.is_empty());
            assert_eq!(phase.hosts.len(), 2);
            assert!(
                phase
                    .hosts
                    .iter()
                    .all(|h| h.steps[0].outcome == StepOutcome::Unchanged)
            );
        }
    }

    #[tokio::test]
    async fn a_phase_that_would_change_runs_in_full_and_so_do_the_phases_after_it() {
        let would = StepOutcome::WouldChange {
            changes: vec!["content differs".to_owned()],
            diffs: Vec::new(),
        };
        let changed = StepOutcome::Changed {
            changes: vec!["content differs".to_owned()],
        };
        let n1 = observed_node("n1", would, changed);
        let n2 = observed_node("n2", StepOutcome::Unchanged, StepOutcome::Unchanged);
        let gate = CountingGate::passing();
        let report = execute_observing(&n1, &n2, &gate).await;
        assert!(report.succeeded);
        // Both phases applied on both hosts (the first changed something), each batch of
        // the gated phase checked.
        assert_eq!(count(&n1, "agent apply"), 2);
        assert_eq!(count(&n2, "agent apply"), 2);
        assert_eq!(
            *gate.checks.lock().unwrap(),
            2,
            "os is gated after n1, then n2"
        );
        assert!(matches!(
            report.phases[0].hosts[0].steps[0].outcome,
            StepOutcome::Changed { .. }
        ));
    }

    #[tokio::test]
    async fn a_host_that_cannot_observe_runs_in_full() {
        let n1 = Arc::new(
            RecordingHost::new("n1")
                .on("agent observe", Output::failed(2, "unknown subcommand"))
                .on(
                    "agent apply",
                    Output::ok(agent_events(StepOutcome::Unchanged)),
                )
                .otherwise(Output::ok("metalk8s 0.1.0\n")),
        );
        let n2 = observed_node("n2", StepOutcome::Unchanged, StepOutcome::Unchanged);
        let gate = CountingGate::passing();
        let report = execute_observing(&n1, &n2, &gate).await;
        assert!(report.succeeded);
        assert_eq!(count(&n1, "agent apply"), 2);
    }
}
