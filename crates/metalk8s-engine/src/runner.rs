//! Runs the steps of one host plan, in order, on one host: observe ▸ diff ▸ apply each
//! step, then let watchers react to the steps that changed.
//!
//! Used by the agent on the node itself (with a local host) and by unit tests (with a
//! recording fake). Reactions owed by an interrupted run are kept in [`Pending`] so that a
//! service whose configuration changed just before a crash is still restarted next time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use metalk8s_model::plan::Step;
use metalk8s_model::report::{StepOutcome, error_chain};
use metalk8s_transport::Host;
use serde::{Deserialize, Serialize};

use crate::resource::{Observation, ResourceError};
use crate::resources::implementation;

/// Steps that must react (restart, rerun) because something they watch changed, and have
/// not done so yet. Persisted by the agent before and after each reaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub reactions: BTreeSet<String>,
}

/// What happened to one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub step: String,
    pub outcome: StepOutcome,
    pub duration_ms: u64,
    /// An interrupted run had completed this step; this run verified it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// Told about progress as it happens.
pub trait Observer: Send {
    fn started(&mut self, step: &str);
    fn finished(&mut self, report: &StepReport);
    /// The set of owed reactions changed; the agent persists it.
    fn pending_changed(&mut self, pending: &Pending);
}

pub struct RunOptions {
    pub dry_run: bool,
}

/// Runs `steps` on `host`. The first failure stops the host: later steps are skipped, as
/// they may build on what failed. An unsupported step only skips the steps that come
/// `after` it.
pub async fn run_steps(
    host: &dyn Host,
    steps: &[Step],
    pending: &mut Pending,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Vec<StepReport> {
    let watchers = watchers_of(steps);
    let mut outcomes: BTreeMap<&str, StepOutcome> = BTreeMap::new();
    let mut reports = Vec::with_capacity(steps.len());
    let mut failed = false;
    for step in steps {
        observer.started(&step.id);
        let started = Instant::now();
        let outcome = if failed {
            StepOutcome::Skipped {
                reason: "an earlier step failed".to_owned(),
            }
        } else if let Some(blocker) = blocked_by(step, &outcomes) {
            StepOutcome::Skipped {
                reason: format!("`{blocker}` did not succeed"),
            }
        } else {
            let watched_would_change = step.watch.iter().any(|watched| {
                matches!(
                    outcomes.get(watched.as_str()),
                    Some(StepOutcome::WouldChange { .. })
                )
            });
            let context = StepContext {
                options,
                watchers: &watchers,
                watched_would_change,
            };
            run_step(host, step, pending, &context, observer).await
        };
        failed |= matches!(outcome, StepOutcome::Failed { .. });
        let report = StepReport {
            step: step.id.clone(),
            outcome: outcome.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            resumed: false,
        };
        observer.finished(&report);
        outcomes.insert(&step.id, outcome);
        reports.push(report);
    }
    reports
}

/// For each step id, the steps that watch it.
fn watchers_of(steps: &[Step]) -> BTreeMap<&str, Vec<&str>> {
    let mut watchers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for step in steps {
        for watched in &step.watch {
            watchers.entry(watched).or_default().push(&step.id);
        }
    }
    watchers
}

fn blocked_by<'a>(step: &'a Step, outcomes: &BTreeMap<&str, StepOutcome>) -> Option<&'a str> {
    step.after
        .iter()
        .find(|id| outcomes.get(id.as_str()).is_none_or(|o| !o.succeeded()))
        .map(String::as_str)
}

struct StepContext<'a> {
    options: &'a RunOptions,
    watchers: &'a BTreeMap<&'a str, Vec<&'a str>>,
    /// Dry run only: a step this one watches would change, so this one would react.
    watched_would_change: bool,
}

async fn run_step(
    host: &dyn Host,
    step: &Step,
    pending: &mut Pending,
    context: &StepContext<'_>,
    observer: &mut dyn Observer,
) -> StepOutcome {
    let resource = implementation(&step.resource);
    let observed = match resource.observe(host).await {
        Ok(observed) => observed,
        Err(error) => return failure(error),
    };
    if context.options.dry_run {
        let reacts = context.watched_would_change || pending.reactions.contains(&step.id);
        return dry_run_outcome(&observed, reacts);
    }
    let mut changes: Vec<String> = observed.changes.iter().map(|c| c.summary.clone()).collect();
    if !observed.is_converged() {
        // The reactions are owed, and recorded, before the change is made: a crash (or a
        // failure) during or right after it still restarts the watchers next time. A
        // change that then fails costs at most one restart too many.
        if let Some(step_watchers) = context.watchers.get(step.id.as_str()) {
            pending
                .reactions
                .extend(step_watchers.iter().map(|w| (*w).to_owned()));
            observer.pending_changed(pending);
        }
        if let Err(error) = resource.apply(host, &observed).await {
            return failure(error);
        }
    }
    if pending.reactions.contains(&step.id) {
        match resource.react(host).await {
            Ok(Some(done)) => changes.push(done),
            Ok(None) => {}
            Err(error) => return failure(error),
        }
        pending.reactions.remove(&step.id);
        observer.pending_changed(pending);
    }
    if changes.is_empty() {
        StepOutcome::Unchanged
    } else {
        StepOutcome::Changed { changes }
    }
}

fn dry_run_outcome(observed: &Observation, reacts: bool) -> StepOutcome {
    let mut changes: Vec<String> = observed.changes.iter().map(|c| c.summary.clone()).collect();
    if reacts {
        changes.push("would react to a watched change (restart or rerun)".to_owned());
    }
    if changes.is_empty() {
        return StepOutcome::Unchanged;
    }
    StepOutcome::WouldChange {
        changes,
        diffs: observed
            .changes
            .iter()
            .filter_map(|c| c.diff.clone())
            .collect(),
    }
}

fn failure(error: ResourceError) -> StepOutcome {
    match error {
        ResourceError::Unsupported(reason) => StepOutcome::Unsupported { reason },
        error => StepOutcome::Failed {
            error: error_chain(&error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::plan::{CommandResource, Resource};
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    fn command(id: &str, watch: &[&str], only_on_watch: bool) -> Step {
        Step {
            id: id.to_owned(),
            resource: Resource::Command(CommandResource {
                command: format!("apply-{id}"),
                creates: None,
                unless: (!only_on_watch).then(|| format!("probe-{id}")),
                only_on_watch,
            }),
            after: Vec::new(),
            watch: watch.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    #[derive(Default)]
    struct Recorder {
        pending: Vec<Pending>,
        finished: Vec<String>,
    }

    impl Observer for Recorder {
        fn started(&mut self, _: &str) {}
        fn finished(&mut self, report: &StepReport) {
            self.finished.push(report.step.clone());
        }
        fn pending_changed(&mut self, pending: &Pending) {
            self.pending.push(pending.clone());
        }
    }

    async fn run(
        host: &RecordingHost,
        steps: &[Step],
        pending: &mut Pending,
        dry_run: bool,
    ) -> (Vec<StepOutcome>, Recorder) {
        let mut recorder = Recorder::default();
        let reports = run_steps(host, steps, pending, &RunOptions { dry_run }, &mut recorder).await;
        (reports.into_iter().map(|r| r.outcome).collect(), recorder)
    }

    fn ran(host: &RecordingHost, part: &str) -> bool {
        host.scripts().iter().any(|script| script.contains(part))
    }

    #[tokio::test]
    async fn a_change_makes_its_watchers_react_once_and_the_debt_is_persisted() {
        let host = RecordingHost::new("node1")
            .on("probe-config", Output::ok("pending\n"))
            .otherwise(Output::ok(""));
        let steps = [
            command("config", &[], false),
            command("service", &["config"], true),
        ];
        let mut pending = Pending::default();
        let (outcomes, recorder) = run(&host, &steps, &mut pending, false).await;
        assert!(
            matches!(outcomes[0], StepOutcome::Changed { .. }),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[1], StepOutcome::Changed { .. }),
            "{outcomes:?}"
        );
        assert!(ran(&host, "apply-service"));
        // Owed right after the change, paid after the reaction.
        let owed: Vec<Vec<String>> = recorder
            .pending
            .iter()
            .map(|p| p.reactions.iter().cloned().collect())
            .collect();
        assert_eq!(owed, [vec!["service".to_owned()], vec![]]);
        assert!(pending.reactions.is_empty());
        assert_eq!(recorder.finished, ["config", "service"]);
    }

    #[tokio::test]
    async fn a_reaction_owed_by_an_interrupted_run_is_made_though_nothing_changed() {
        let host = RecordingHost::new("node1")
            .on("probe-config", Output::ok("done\n"))
            .otherwise(Output::ok(""));
        let steps = [
            command("config", &[], false),
            command("service", &["config"], true),
        ];
        let mut pending = Pending {
            reactions: ["service".to_owned()].into(),
        };
        let (outcomes, _) = run(&host, &steps, &mut pending, false).await;
        assert_eq!(outcomes[0], StepOutcome::Unchanged);
        assert!(
            matches!(outcomes[1], StepOutcome::Changed { .. }),
            "{outcomes:?}"
        );
        assert!(!ran(&host, "apply-config"));
        assert!(ran(&host, "apply-service"));
        assert!(pending.reactions.is_empty());
    }

    #[tokio::test]
    async fn without_changes_watchers_do_not_react() {
        let host = RecordingHost::new("node1")
            .on("probe-config", Output::ok("done\n"))
            .otherwise(Output::ok(""));
        let steps = [
            command("config", &[], false),
            command("service", &["config"], true),
        ];
        let (outcomes, recorder) = run(&host, &steps, &mut Pending::default(), false).await;
        assert_eq!(outcomes, [StepOutcome::Unchanged, StepOutcome::Unchanged]);
        assert!(!ran(&host, "apply-"));
        assert!(recorder.pending.is_empty());
    }

    #[tokio::test]
    async fn the_first_failure_stops_the_host() {
        let host = RecordingHost::new("node1")
            .on("probe-", Output::ok("pending\n"))
            .on("apply-broken", Output::failed(3, "boom"))
            .otherwise(Output::ok(""));
        let steps = [command("broken", &[], false), command("later", &[], false)];
        let (outcomes, _) = run(&host, &steps, &mut Pending::default(), false).await;
        let StepOutcome::Failed { error } = &outcomes[0] else {
            panic!("{outcomes:?}");
        };
        assert!(error.contains("boom"), "{error}");
        assert!(
            matches!(&outcomes[1], StepOutcome::Skipped { reason } if reason.contains("earlier step failed"))
        );
        assert!(!ran(&host, "apply-later"));
    }

    #[tokio::test]
    async fn a_step_after_one_that_did_not_succeed_is_skipped() {
        let host = RecordingHost::new("node1")
            .on("probe-", Output::ok("done\n"))
            .otherwise(Output::ok(""));
        let mut dependent = command("dependent", &[], false);
        dependent.after = vec!["missing".to_owned()];
        let (outcomes, _) = run(&host, &[dependent], &mut Pending::default(), false).await;
        assert!(
            matches!(&outcomes[0], StepOutcome::Skipped { reason } if reason.contains("`missing`"))
        );
    }

    #[tokio::test]
    async fn a_dry_run_says_what_would_change_and_reacts_to_nothing() {
        let host = RecordingHost::new("node1")
            .on("probe-config", Output::ok("pending\n"))
            .otherwise(Output::ok(""));
        let steps = [
            command("config", &[], false),
            command("service", &["config"], true),
        ];
        let mut pending = Pending::default();
        let (outcomes, recorder) = run(&host, &steps, &mut pending, true).await;
        assert!(
            matches!(outcomes[0], StepOutcome::WouldChange { .. }),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[1], StepOutcome::WouldChange { .. }),
            "{outcomes:?}"
        );
        assert!(!ran(&host, "apply-"));
        assert!(recorder.pending.is_empty() && pending.reactions.is_empty());
    }

    /// A host that logs each command into a log the observer shares, so that the order of
    /// "the debt is recorded" and "the change is made" can be checked.
    struct Ordered {
        host: RecordingHost,
        log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl Host for Ordered {
        fn name(&self) -> &str {
            self.host.name()
        }
        async fn run(
            &self,
            command: &metalk8s_transport::Command,
        ) -> Result<Output, metalk8s_transport::HostError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("run {}", command.script));
            self.host.run(command).await
        }
        async fn upload(
            &self,
            path: &str,
            contents: &[u8],
            mode: u32,
            as_root: bool,
        ) -> Result<(), metalk8s_transport::HostError> {
            self.host.upload(path, contents, mode, as_root).await
        }
    }

    struct OrderedRecorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl Observer for OrderedRecorder {
        fn started(&mut self, _: &str) {}
        fn finished(&mut self, _: &StepReport) {}
        fn pending_changed(&mut self, pending: &Pending) {
            let owed: Vec<&str> = pending.reactions.iter().map(String::as_str).collect();
            self.0
                .lock()
                .unwrap()
                .push(format!("owed [{}]", owed.join(",")));
        }
    }

    /// A kill between a change and the record of the restart it owes used to leave a
    /// changed configuration and a service never restarted: the debt now comes first, and
    /// survives a change that fails half-way.
    #[tokio::test]
    async fn the_restart_a_change_owes_is_recorded_before_the_change() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let host = Ordered {
            host: RecordingHost::new("node1")
                .on("probe-config", Output::ok("pending\n"))
                .on("apply-config", Output::failed(137, "killed"))
                .otherwise(Output::ok("")),
            log: log.clone(),
        };
        let steps = [
            command("config", &[], false),
            command("service", &["config"], true),
        ];
        let mut pending = Pending::default();
        let mut recorder = OrderedRecorder(log.clone());
        let outcomes = run_steps(
            &host,
            &steps,
            &mut pending,
            &RunOptions { dry_run: false },
            &mut recorder,
        )
        .await;
        assert!(matches!(outcomes[0].outcome, StepOutcome::Failed { .. }));
        let log = log.lock().unwrap().clone();
        let owed = log.iter().position(|l| l == "owed [service]").unwrap();
        let applied = log.iter().position(|l| l.contains("apply-config")).unwrap();
        assert!(owed < applied, "{log:?}");
        // The next run restarts the service, though the change itself is then found made.
        assert_eq!(pending.reactions, ["service".to_owned()].into());
    }
}
