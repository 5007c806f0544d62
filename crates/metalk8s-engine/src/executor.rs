//! The executor: runs a plan on many hosts. Phases are barriers; within a phase hosts run
//! in parallel (bounded) or batch by batch; each host runs its steps through its agent.
//! The first phase with a failed host is the last one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use metalk8s_model::inventory::API_VERSION;
use metalk8s_model::plan::{HostPlan, Phase, Plan, Rollout};
use metalk8s_transport::Host;

use crate::agent::{self, AgentBinary, AgentEvent, AgentRequest};
use crate::journal::{Entry, Interrupted, Journal, StepKey, fingerprint};
use crate::report::{DeployReport, HostReport, PhaseReport};
use crate::runner::{StepReport, error_chain};

/// Told what happens, for progress bars or plain lines.
pub trait Progress: Send + Sync {
    fn phase_started(&self, phase: &Phase);
    fn step_started(&self, node: &str, step: &str);
    fn step_finished(&self, node: &str, report: &StepReport);
    fn host_finished(&self, report: &HostReport);
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
}

impl Executor<'_> {
    pub async fn execute(&self, plan: &Plan) -> DeployReport {
        let mut phases = Vec::new();
        let mut stopped = false;
        for phase in &plan.phases {
            if stopped {
                phases.push(PhaseReport {
                    name: phase.name.clone(),
                    completed: false,
                    hosts: Vec::new(),
                });
                continue;
            }
            let report = self.run_phase(phase).await;
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

    async fn run_phase(&self, phase: &Phase) -> PhaseReport {
        self.progress.phase_started(phase);
        let batch_size = match phase.rollout {
            Rollout::Parallel => phase.hosts.len().max(1),
            Rollout::Batches { size } => (size as usize).max(1),
        };
        let mut hosts = Vec::new();
        let mut completed = true;
        for batch in phase.hosts.chunks(batch_size) {
            let reports: Vec<HostReport> = futures::stream::iter(batch)
                .map(|host_plan| self.run_host(&phase.name, host_plan))
                .buffer_unordered(self.parallelism.max(1))
                .collect()
                .await;
            completed &= !reports.iter().any(HostReport::failed);
            hosts.extend(reports);
            if !completed {
                break;
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
        PhaseReport {
            name: phase.name.clone(),
            completed,
            hosts,
        }
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
        let path = agent::install(host, self.binary).await?;
        let request = AgentRequest::new(
            &self.run,
            phase,
            &host_plan.node,
            self.dry_run,
            host_plan.steps.clone(),
        );
        let fingerprints: BTreeMap<&str, String> = host_plan
            .steps
            .iter()
            .map(|step| (step.id.as_str(), fingerprint(step)))
            .collect();
        let node = host_plan.node.as_str();
        let mark = |report: &mut StepReport| {
            let key = StepKey {
                phase: phase.to_owned(),
                node: node.to_owned(),
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
        };
        let on_event = |event: AgentEvent| match event {
            AgentEvent::Started { step } => self.progress.step_started(node, &step),
            AgentEvent::Finished(mut report) => {
                let key = mark(&mut report);
                self.record(key, &report);
                self.progress.step_finished(node, &report);
            }
            AgentEvent::Done => {}
        };
        let mut reports = agent::run(host, &path, &request, &on_event).await?;
        for report in &mut reports {
            mark(report);
        }
        Ok(reports)
    }

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
