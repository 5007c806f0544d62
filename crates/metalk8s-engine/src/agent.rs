//! The agent: the metalk8s binary itself, copied once to each node, applying its host plan
//! locally and streaming events back as JSON lines.
//!
//! The controller side runs `metalk8s agent apply` over one SSH session with the request on
//! standard input, copying the binary first when that version is not on the node yet
//! (cached under /var/lib/metalk8s/agent by its sha256, so it is copied only when it
//! changed). The node side ([`serve`]) runs the
//! steps with a local host and keeps its own journal and the reactions it still owes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metalk8s_model::PhaseName;
use metalk8s_model::inventory::API_VERSION;
use metalk8s_model::plan::Step;
use metalk8s_model::report::StepOutcome;
use metalk8s_transport::{Command, Host, HostError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runner::{Observer, Pending, RunOptions, StepReport, run_steps};

/// Where the agent keeps its binary, journal and owed reactions on a node.
pub const NODE_STATE_DIR: &str = "/var/lib/metalk8s";

/// What the controller asks of one node for one phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRequest {
    pub api_version: String,
    pub run: String,
    pub phase: String,
    pub node: String,
    pub dry_run: bool,
    pub steps: Vec<Step>,
}

/// What the controller asks of one node before a deploy: observe the steps of every
/// phase at once, changing nothing (`metalk8s agent observe`). A converged node answers
/// in one round trip for the whole plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserveRequest {
    pub api_version: String,
    pub node: String,
    pub phases: Vec<PhaseSteps>,
}

/// One phase's steps on one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseSteps {
    pub phase: PhaseName,
    pub steps: Vec<Step>,
}

/// What the node saw of one phase's steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub phase: PhaseName,
    /// Each step as a dry run reports it.
    pub steps: Vec<StepReport>,
    /// Reactions still owed from an earlier run (a restart after a crash).
    pub owed: bool,
}

impl Observation {
    /// Nothing to do: every step as desired and nothing owed.
    pub fn converged(&self) -> bool {
        !self.owed
            && self
                .steps
                .iter()
                .all(|step| matches!(step.outcome, StepOutcome::Unchanged))
    }
}

/// One line of the agent's standard output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum AgentEvent {
    Started {
        step: String,
    },
    Finished(StepReport),
    /// Every step was run; nothing more follows.
    Done,
}

/// The metalk8s binary as shipped to nodes.
#[derive(Clone)]
pub struct AgentBinary {
    bytes: Arc<Vec<u8>>,
    sha256: String,
}

impl AgentBinary {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        AgentBinary {
            bytes: Arc::new(bytes),
            sha256,
        }
    }

    /// The running executable.
    pub fn current() -> std::io::Result<Self> {
        Ok(AgentBinary::from_bytes(std::fs::read(
            std::env::current_exe()?,
        )?))
    }

    /// Path on a node; named by content so that a node never runs a stale agent.
    pub fn remote_path(&self) -> String {
        format!("{NODE_STATE_DIR}/agent/metalk8s-{}", &self.sha256[..16])
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AgentError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Host(#[from] HostError),
    #[error("the metalk8s agent cannot run on {host}: {detail}")]
    #[diagnostic(help(
        "the agent is this metalk8s binary, copied to the node: the node must be able to run it (same architecture, a C library at least as recent as the one it was built against)"
    ))]
    CannotRun { host: String, detail: String },
    #[error(
        "the metalk8s agent on {host} stopped before finishing (exit status {status}): {stderr}"
    )]
    #[diagnostic(help(
        "the node keeps every step result in /var/lib/metalk8s/journal.jsonl; run the deploy again to resume"
    ))]
    Stopped {
        host: String,
        status: i32,
        stderr: String,
    },
    #[error("the metalk8s agent on {host} answered what this metalk8s cannot read: {detail}")]
    #[diagnostic(help(
        "the agent is copied by version; remove /var/lib/metalk8s/agent on {host} if it was altered"
    ))]
    Unreadable { host: String, detail: String },
}

/// Exit status of the launcher when this version of the agent is not on the node yet.
const AGENT_MISSING: i32 = 86;

/// Whether an agent that printed nothing and ended with `status` is broken rather than
/// failed: it could not be executed (126) or died of a signal a sound binary does not get
/// (SIGILL, SIGABRT, SIGBUS, SIGSEGV: 128 + the signal). A file damaged on the node is
/// copied again.
fn broken(status: i32) -> bool {
    matches!(status, 126 | 132 | 134 | 135 | 139)
}

/// Runs the agent on `host`, copying it there first if this version is missing, and hands
/// each event to `on_event` as it arrives. The common case (the agent is there) is one
/// command: checking for the binary and running it are the same round trip.
pub async fn run(
    host: &dyn Host,
    binary: &AgentBinary,
    request: &AgentRequest,
    on_event: &(dyn Fn(AgentEvent) + Send + Sync),
) -> Result<Vec<StepReport>, AgentError> {
    if let Some(reports) = launch(host, binary, request, on_event).await? {
        return Ok(reports);
    }
    // Missing, or broken on the node: copied (again), then run once more.
    install(host, binary).await?;
    launch(host, binary, request, on_event)
        .await?
        .ok_or_else(|| AgentError::CannotRun {
            host: host.name().to_owned(),
            detail: format!("{} is missing right after its upload", binary.remote_path()),
        })
}

/// Copies the agent to the host, then checks that it runs there (a node with an older C
/// library cannot run a binary built against a newer one).
async fn install(host: &dyn Host, binary: &AgentBinary) -> Result<(), AgentError> {
    let path = binary.remote_path();
    let directory = Command::new(format!("mkdir -p -m 0700 {NODE_STATE_DIR}/agent")).as_root();
    host.run(&directory).await?;
    host.upload(&path, &binary.bytes, 0o755, true).await?;
    let output = host
        .run(&Command::new(format!("{path} --version")).as_root())
        .await?;
    if !output.success() {
        return Err(AgentError::CannotRun {
            host: host.name().to_owned(),
            detail: output.stderr_text().trim().to_owned(),
        });
    }
    Ok(())
}

/// Runs `metalk8s agent SUBCOMMAND` on `host` with `input` on its standard input, copying
/// the agent there first if this version is missing, and returns its output when it
/// succeeded. For the requests that are not a host plan (the PKI store on the bootstrap
/// node answering the controller).
pub async fn call(
    host: &dyn Host,
    binary: &AgentBinary,
    subcommand: &str,
    input: Vec<u8>,
) -> Result<Vec<u8>, AgentError> {
    let command = launcher(binary, subcommand, input, Duration::from_secs(600));
    let mut output = host.run(&command).await?;
    if output.status == AGENT_MISSING || (broken(output.status) && output.stdout.is_empty()) {
        install(host, binary).await?;
        output = host.run(&command).await?;
    }
    if !output.success() {
        return Err(AgentError::Stopped {
            host: host.name().to_owned(),
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

/// `metalk8s agent SUBCOMMAND` as root when this version is on the node; exit status
/// [`AGENT_MISSING`] otherwise (checking and running are one round trip).
fn launcher(binary: &AgentBinary, subcommand: &str, input: Vec<u8>, timeout: Duration) -> Command {
    let path = binary.remote_path();
    Command::new(format!(
        "if [ -x {path} ]; then exec {path} agent {subcommand}; else exit {AGENT_MISSING}; fi"
    ))
    .as_root()
    .stdin(input)
    .timeout(timeout)
}

/// Runs the agent if it is on the node; `None` when it is not.
async fn launch(
    host: &dyn Host,
    binary: &AgentBinary,
    request: &AgentRequest,
    on_event: &(dyn Fn(AgentEvent) + Send + Sync),
) -> Result<Option<Vec<StepReport>>, AgentError> {
    let input = serde_json::to_vec(request).expect("agent requests serialize");
    let reports: Mutex<Vec<StepReport>> = Mutex::default();
    let done = Mutex::new(false);
    let on_line = |line: &str| {
        // Anything else on stdout is not ours (a library printing); it is not an event.
        let Ok(event) = serde_json::from_str::<AgentEvent>(line) else {
            return;
        };
        match &event {
            AgentEvent::Finished(report) => reports.lock().unwrap().push(report.clone()),
            AgentEvent::Done => *done.lock().unwrap() = true,
            AgentEvent::Started { .. } => {}
        }
        on_event(event);
    };
    let command = launcher(binary, "apply", input, Duration::from_secs(3600));
    let output = host.run_streaming(&command, &on_line).await?;
    let reports = reports.into_inner().unwrap();
    if reports.is_empty() && (output.status == AGENT_MISSING || broken(output.status)) {
        return Ok(None);
    }
    if !*done.lock().unwrap() {
        return Err(AgentError::Stopped {
            host: host.name().to_owned(),
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    Ok(Some(reports))
}

/// The node side: runs the request's steps on `host` (the local machine), writing events
/// to `out` and, unless it is a dry run, its journal and owed reactions under `state_dir`.
pub async fn serve(
    request: &AgentRequest,
    host: &dyn Host,
    state_dir: &Path,
    out: &mut (dyn Write + Send),
) -> std::io::Result<()> {
    // Held until this function returns: the lock is released when the file closes.
    let _exclusive = if request.dry_run {
        None
    } else {
        std::fs::create_dir_all(state_dir)?;
        Some(wait_for_other_agents(state_dir, out).await?)
    };
    // Read under the lock: an earlier agent still running may add to it until it ends.
    let pending_path = pending_path(state_dir, &request.phase);
    let mut pending = read_pending(&pending_path);
    let mut observer = NodeObserver {
        out,
        request,
        pending_path,
        journal_path: state_dir.join("journal.jsonl"),
        error: None,
    };
    let options = RunOptions {
        dry_run: request.dry_run,
    };
    run_steps(host, &request.steps, &mut pending, &options, &mut observer).await;
    if let Some(error) = observer.error.take() {
        return Err(error);
    }
    emit(observer.out, &AgentEvent::Done)
}

/// The node side of [`ObserveRequest`]: every phase's steps observed as a dry run would,
/// with the reactions each phase still owes. Waits for an agent still changing the node,
/// so that what it reports is not a state half-way through a change.
pub async fn observe(
    request: &ObserveRequest,
    host: &dyn Host,
    state_dir: &Path,
) -> std::io::Result<Vec<Observation>> {
    let mut quiet = std::io::sink();
    let _exclusive = if state_dir.exists() {
        Some(wait_for_other_agents(state_dir, &mut quiet).await?)
    } else {
        None
    };
    let mut observations = Vec::new();
    for phase in &request.phases {
        let mut pending = read_pending(&pending_path(state_dir, phase.phase.as_str()));
        let owed = !pending.reactions.is_empty();
        let options = RunOptions { dry_run: true };
        let steps = run_steps(host, &phase.steps, &mut pending, &options, &mut Silent).await;
        observations.push(Observation {
            phase: phase.phase,
            steps,
            owed,
        });
    }
    Ok(observations)
}

/// Observes without telling anyone.
struct Silent;

impl Observer for Silent {
    fn started(&mut self, _: &str) {}
    fn finished(&mut self, _: &StepReport) {}
    fn pending_changed(&mut self, _: &Pending) {}
}

fn pending_path(state_dir: &Path, phase: &str) -> PathBuf {
    state_dir.join(format!("pending-{phase}.json"))
}

/// The reactions a phase still owes; none when the file is missing or unreadable.
fn read_pending(path: &Path) -> Pending {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Asks `host` to observe every phase of its plan at once ([`observe`]).
pub async fn call_observe(
    host: &dyn Host,
    binary: &AgentBinary,
    request: &ObserveRequest,
) -> Result<Vec<Observation>, AgentError> {
    let input = serde_json::to_vec(request).expect("observe requests serialize");
    let output = call(host, binary, "observe", input).await?;
    serde_json::from_slice(&output).map_err(|error| AgentError::Unreadable {
        host: host.name().to_owned(),
        detail: error.to_string(),
    })
}

/// How long an agent waits for an earlier one to finish on the same node.
const OTHER_AGENT_PATIENCE: Duration = Duration::from_secs(900);

/// One agent changes a node at a time. The agent of a run killed on the controller side
/// goes on until it has finished its steps (its SSH channel outlives the controller), so
/// the next run's agent waits for it rather than racing it (for apt's lock, say).
async fn wait_for_other_agents(
    state_dir: &Path,
    out: &mut (dyn Write + Send),
) -> std::io::Result<std::fs::File> {
    use rustix::fs::{FlockOperation, flock};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("agent.lock"))?;
    let started = std::time::Instant::now();
    let mut told = false;
    while flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        if started.elapsed() > OTHER_AGENT_PATIENCE {
            return Err(std::io::Error::other(format!(
                "another metalk8s agent has been changing this node for {}s; see `ps -ef | grep 'metalk8s.* agent'`",
                OTHER_AGENT_PATIENCE.as_secs()
            )));
        }
        if !told {
            eprintln!("waiting for the agent of an earlier run to finish on this node");
            told = true;
        }
        out.flush()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(file)
}

fn emit(out: &mut (dyn Write + Send), event: &AgentEvent) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).expect("agent events serialize");
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

struct NodeObserver<'a> {
    out: &'a mut (dyn Write + Send),
    request: &'a AgentRequest,
    pending_path: PathBuf,
    journal_path: PathBuf,
    /// The first I/O error; the run goes on (the steps are what matter) but ends failed.
    error: Option<std::io::Error>,
}

impl NodeObserver<'_> {
    fn keep(&mut self, result: std::io::Result<()>) {
        if let Err(error) = result {
            self.error.get_or_insert(error);
        }
    }

    fn journal(&self, report: &StepReport) -> std::io::Result<()> {
        let entry = serde_json::json!({
            "time": SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            "run": self.request.run,
            "phase": self.request.phase,
            "step": report.step,
            "outcome": report.outcome,
        });
        append_line(&self.journal_path, &entry, false)
    }
}

impl Observer for NodeObserver<'_> {
    fn started(&mut self, step: &str) {
        let result = emit(
            self.out,
            &AgentEvent::Started {
                step: step.to_owned(),
            },
        );
        self.keep(result);
    }

    fn finished(&mut self, report: &StepReport) {
        if !self.request.dry_run {
            let result = self.journal(report);
            self.keep(result);
        }
        let result = emit(self.out, &AgentEvent::Finished(report.clone()));
        self.keep(result);
    }

    fn pending_changed(&mut self, pending: &Pending) {
        let result = write_synced(
            &self.pending_path,
            &serde_json::to_vec(pending).expect("pending reactions serialize"),
        );
        self.keep(result);
    }
}

/// Appends one JSON line; with `durable`, also waits until it is on disk.
///
/// A line written by a process that is then killed survives in the page cache, so step
/// lines need no flush of their own; only a machine crash can lose the last few, and then
/// those steps are simply verified again by the next run, as all steps are. Run start and
/// end lines are made durable.
pub fn append_line(path: &Path, entry: &serde_json::Value, durable: bool) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry).expect("journal entries serialize");
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&line)?;
    if durable {
        file.sync_data()?;
    }
    Ok(())
}

/// Replaces a small file atomically and durably: the content, then the rename (the
/// directory entry), reach the disk before this returns.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    match path.parent() {
        Some(directory) => std::fs::File::open(directory)?.sync_all(),
        None => Ok(()),
    }
}

impl AgentRequest {
    pub fn new(run: &str, phase: &str, node: &str, dry_run: bool, steps: Vec<Step>) -> Self {
        AgentRequest {
            api_version: API_VERSION.to_owned(),
            run: run.to_owned(),
            phase: phase.to_owned(),
            node: node.to_owned(),
            dry_run,
            steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::plan::{FileResource, Resource};
    use metalk8s_transport::LocalHost;

    fn file_step(path: &Path, content: &str) -> Step {
        Step {
            id: format!("file{}", path.display()),
            resource: Resource::File(FileResource {
                path: path.display().to_string(),
                content: content.to_owned(),
                mode: 0o644,
                owner: "root".to_owned(),
                group: "root".to_owned(),
                secret: false,
            }),
            after: Vec::new(),
            watch: Vec::new(),
        }
    }

    #[tokio::test]
    async fn observing_reports_each_phase_and_what_it_owes_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let same = dir.path().join("same.conf");
        let other = dir.path().join("other.conf");
        std::fs::write(&same, "wanted\n").unwrap();
        std::fs::write(&other, "old\n").unwrap();
        std::fs::set_permissions(&same, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        std::fs::write(
            state.join("pending-etcd.json"),
            r#"{"reactions":["service/etcd"]}"#,
        )
        .unwrap();
        let request = ObserveRequest {
            api_version: API_VERSION.to_owned(),
            node: "local".to_owned(),
            phases: vec![
                PhaseSteps {
                    phase: PhaseName::Os,
                    steps: vec![file_step(&same, "wanted\n")],
                },
                PhaseSteps {
                    phase: PhaseName::Repository,
                    steps: vec![file_step(&other, "new\n")],
                },
                PhaseSteps {
                    phase: PhaseName::Etcd,
                    steps: Vec::new(),
                },
            ],
        };
        let host = LocalHost::new("local");
        let seen = observe(&request, &host, &state).await.unwrap();
        let converged: Vec<(PhaseName, bool)> =
            seen.iter().map(|o| (o.phase, o.converged())).collect();
        assert_eq!(
            converged,
            [
                (PhaseName::Os, true),
                (PhaseName::Repository, false),
                (PhaseName::Etcd, false),
            ],
            "{seen:?}"
        );
        assert!(seen[2].owed, "etcd still owes a restart");
        assert!(matches!(
            seen[1].steps[0].outcome,
            StepOutcome::WouldChange { .. }
        ));
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "old\n");
    }

    #[test]
    fn a_wrapped_host_error_keeps_its_hint() {
        let error = AgentError::Host(HostError::AuthRefused {
            host: "node1".into(),
            address: "10.0.0.1".into(),
            user: "root".into(),
        });
        let help = miette::Diagnostic::help(&error).unwrap().to_string();
        assert!(help.contains("ssh.user"), "{help}");
        let report = format!("{:?}", miette::Report::new(error));
        assert!(report.contains("refused the SSH login"), "{report}");
        assert!(report.contains("ssh.identityFile"), "{report}");
    }

    /// A partial upload used to leave a binary that crashed at every later deploy: an
    /// agent that dies of SIGSEGV before saying anything is copied again and re-run.
    #[tokio::test]
    async fn an_agent_that_crashes_before_a_word_is_copied_again() {
        use metalk8s_transport::Output;
        use metalk8s_transport::fake::RecordingHost;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let launches = Arc::new(AtomicUsize::new(0));
        let counted = launches.clone();
        let done = serde_json::to_string(&AgentEvent::Done).unwrap();
        let host = RecordingHost::new("node1")
            .on_with(move |command| {
                if !command.script.contains("agent apply") {
                    return None;
                }
                Some(Ok(if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    Output::failed(139, "Segmentation fault")
                } else {
                    Output::ok(format!("{done}\n"))
                }))
            })
            .otherwise(Output::ok("metalk8s 0.1.0\n"));
        let binary = AgentBinary::from_bytes(b"agent".to_vec());
        let request = AgentRequest::new("r1", "os", "node1", false, Vec::new());
        let reports = run(&host, &binary, &request, &|_| {}).await.unwrap();
        assert!(reports.is_empty());
        assert_eq!(launches.load(Ordering::SeqCst), 2);
        assert_eq!(
            host.uploaded(&binary.remote_path()).as_deref(),
            Some(&b"agent"[..])
        );
    }
}
