//! Deploy progress on stderr: a live bar per host on a terminal, plain lines otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use metalk8s_engine::executor::Progress;
use metalk8s_engine::report::{GateReport, HostReport, ObjectsReport};
use metalk8s_engine::runner::StepReport;
use metalk8s_model::PhaseName;
use metalk8s_model::plan::Phase;
use metalk8s_model::report::StepOutcome;

pub struct DeployProgress {
    /// `None` when stderr is not a terminal: plain lines instead of bars.
    bars: Option<(MultiProgress, Mutex<BTreeMap<String, ProgressBar>>)>,
    phase: Mutex<String>,
}

impl DeployProgress {
    pub fn new() -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            (multi, Mutex::new(BTreeMap::new()))
        });
        DeployProgress {
            bars,
            phase: Mutex::new(String::new()),
        }
    }

    fn plain(&self, node: &str, text: &str) {
        let phase = self.phase.lock().unwrap().clone();
        eprintln!("{node} [{phase}] {text}");
    }
}

/// A step worth a line of its own: anything but unchanged.
fn describe(report: &StepReport) -> Option<String> {
    let detail = match &report.outcome {
        StepOutcome::Unchanged => return None,
        StepOutcome::Changed { changes } | StepOutcome::WouldChange { changes, .. } => {
            changes.join("; ")
        }
        StepOutcome::Unsupported { reason } => reason.clone(),
        StepOutcome::Failed { error } => error.clone(),
        StepOutcome::Skipped { reason } => reason.clone(),
    };
    Some(format!(
        "{} {}: {detail}",
        report.step,
        report.outcome.label()
    ))
}

impl Progress for DeployProgress {
    fn phase_started(&self, phase: &Phase) {
        *self.phase.lock().unwrap() = phase.name.to_string();
        let Some((multi, bars)) = &self.bars else {
            eprintln!("phase {}: {} hosts", phase.name, phase.hosts.len());
            return;
        };
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid progress template")
            .progress_chars("=> ");
        let mut bars = bars.lock().unwrap();
        bars.clear();
        for host in &phase.hosts {
            let bar = multi.add(ProgressBar::new(host.steps.len() as u64));
            bar.set_style(style.clone());
            bar.set_prefix(host.node.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bars.insert(host.node.clone(), bar);
        }
    }

    fn step_started(&self, node: &str, step: &str) {
        if let Some((_, bars)) = &self.bars
            && let Some(bar) = bars.lock().unwrap().get(node)
        {
            bar.set_message(step.to_owned());
        }
    }

    fn step_finished(&self, node: &str, report: &StepReport) {
        let line = describe(report);
        match &self.bars {
            Some((multi, bars)) => {
                if let Some(bar) = bars.lock().unwrap().get(node) {
                    bar.inc(1);
                }
                if let Some(line) = line {
                    multi.println(format!("{node}: {line}")).ok();
                }
            }
            None => {
                if let Some(line) = line {
                    self.plain(node, &line);
                }
            }
        }
    }

    fn host_finished(&self, report: &HostReport) {
        let tally = report.tally();
        let summary = match &report.error {
            Some(error) => format!("failed: {error}"),
            None => format!(
                "done in {:.1}s: {} changed, {} unchanged, {} unsupported, {} failed",
                report.duration_ms as f64 / 1000.0,
                tally.changed,
                tally.unchanged,
                tally.unsupported,
                tally.failed
            ),
        };
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.lock().unwrap().get(&report.node) {
                    bar.finish_with_message(summary);
                }
            }
            None => self.plain(&report.node, &summary),
        }
    }

    fn gate_checked(&self, phase: PhaseName, report: &GateReport) {
        let verdict = if report.passed { "passed" } else { "FAILED" };
        let mut line = format!(
            "phase {phase}: health gate after {}: {verdict}: {}",
            report.after.join(", "),
            report.summary
        );
        if let Some(hint) = &report.hint {
            line.push_str(&format!("\n  hint: {hint}"));
        }
        self.println(line);
    }

    fn objects_applied(&self, phase: PhaseName, report: &ObjectsReport) {
        let line = match &report.error {
            Some(error) => format!("phase {phase}: objects {}: FAILED: {error}", report.set),
            None => format!(
                "phase {phase}: objects {}: {} created, {} changed, {} unchanged, {} pruned",
                report.set,
                report.created.len(),
                report.changed.len(),
                report.unchanged,
                report.pruned.len()
            ),
        };
        self.println(line);
    }
}

impl DeployProgress {
    /// A line above the progress bars (or on stderr without them).
    fn println(&self, line: String) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}
