//! End to end on a 3-node lab (real systemd, apt, sysctl, over SSH; needs root and docker):
//! the OS phase is planned, dry-run without touching /etc, killed halfway and resumed,
//! converged, re-run as a no-op, repaired after a change by hand, and locked against a
//! concurrent deploy.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::TestLab;

/// The lab, with what this test asks of it.
struct Lab(TestLab);

impl std::ops::Deref for Lab {
    type Target = TestLab;
    fn deref(&self) -> &TestLab {
        &self.0
    }
}

impl Lab {
    /// A digest of every file, link and permission under /etc.
    fn etc_digest(&self, node: &str) -> String {
        self.ssh(
            node,
            "cd /etc && { find . -xdev -printf '%p %y %m %u %g %l\\n' | sort; \
             find . -xdev -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum",
        )
    }

    fn deploy(&self, inventory: &Path, extra: &[&str]) -> (Output, Value) {
        let output = self
            .metalk8s()
            .args(["deploy", "--phase", "os", "-o", "json", "-i"])
            .arg(inventory)
            .args(extra)
            .output()
            .unwrap();
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "deploy printed no report ({error}); status {:?}, stderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output, report)
    }
}

/// `(node, step, status)` of every step of a report.
fn steps(report: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for phase in report["phases"].as_array().unwrap() {
        for host in phase["hosts"].as_array().unwrap() {
            assert!(host["error"].is_null(), "host error: {host}");
            for step in host["steps"].as_array().unwrap() {
                found.push((
                    host["node"].as_str().unwrap().to_owned(),
                    step["step"].as_str().unwrap().to_owned(),
                    step["outcome"]["status"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    found
}

fn with_status<'a>(steps: &'a [(String, String, String)], status: &str) -> Vec<(&'a str, &'a str)> {
    steps
        .iter()
        .filter(|(_, _, s)| s == status)
        .map(|(node, step, _)| (node.as_str(), step.as_str()))
        .collect()
}

fn journal_steps(journal: &Path) -> usize {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("\"type\":\"step\""))
        .count()
}

#[test]
fn os_phase_dry_run_kill_resume_noop_repair_and_lock() {
    let lab = Lab(TestLab::up("dp", 3));
    let inventory: PathBuf = lab.info.inventory.clone();
    let nodes = ["node1", "node2", "node3"];

    // Dry run: reports what would change, with diffs, and leaves /etc byte-identical.
    let before: Vec<String> = nodes.iter().map(|n| lab.etc_digest(n)).collect();
    let (output, report) = lab.deploy(&inventory, &["--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["dryRun"], true);
    let planned = steps(&report);
    assert!(!with_status(&planned, "wouldChange").is_empty(), "{report}");
    assert!(
        report.to_string().contains("@@"),
        "a unified diff: {report}"
    );
    let after: Vec<String> = nodes.iter().map(|n| lab.etc_digest(n)).collect();
    assert_eq!(before, after, "the dry run changed /etc");

    // First run, killed with SIGKILL once it has recorded a few steps.
    let journal = lab.state.path().join(&lab.name).join("journal.jsonl");
    let mut first = lab
        .metalk8s()
        .args(["deploy", "--phase", "os", "-i"])
        .arg(&inventory)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while journal_steps(&journal) < 3 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first deploy ended before it could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "the first deploy recorded no steps"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = journal_steps(&journal);
    // Everything dies halfway: the agents on the nodes too, as if the nodes rebooted
    // (what they had started, e.g. apt, may go on: the next agent waits for apt's lock).
    for node in nodes {
        lab.ssh(
            node,
            "pkill -KILL -f 'metalk8s-[0-9a-f]* agent apply'; true",
        );
    }

    // The next run resumes it: takes over the stale lock, verifies what was done, and does
    // the rest.
    let (output, report) = lab.deploy(&inventory, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{report}\n{stderr}");
    assert!(stderr.contains("took over the lock"), "{stderr}");
    assert!(report["resumedFrom"].is_string(), "{report}");
    let resumed = report.to_string().matches("\"resumed\":true").count();
    assert!(
        resumed >= 1 && resumed <= killed_at,
        "{resumed} resumed of {killed_at}: {report}"
    );
    let converged = steps(&report);
    assert_eq!(with_status(&converged, "failed"), []);
    assert!(!with_status(&converged, "changed").is_empty(), "{report}");

    // Converged: a second run changes nothing.
    let (output, report) = lab.deploy(&inventory, &[]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    let noop = steps(&report);
    assert_eq!(with_status(&noop, "changed"), [], "{report}");
    assert_eq!(with_status(&noop, "failed"), []);
    assert!(report["resumedFrom"].is_null());

    // A sysctl changed by hand on node2 is repaired, and nothing else changes.
    lab.ssh("node2", "sysctl -w net.ipv4.ip_forward=0");
    let (output, report) = lab.deploy(&inventory, &[]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(
        with_status(&steps(&report), "changed"),
        [("node2", "sysctl")],
        "{report}"
    );
    assert_eq!(
        lab.ssh("node2", "sysctl -n net.ipv4.ip_forward").trim(),
        "1"
    );

    // --limit runs on the named nodes only; an unknown name is invalid input.
    let (output, report) = lab.deploy(&inventory, &["--limit", "node3"]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    let limited: std::collections::BTreeSet<String> = steps(&report)
        .into_iter()
        .map(|(node, _, _)| node)
        .collect();
    assert_eq!(limited, ["node3".to_owned()].into());
    let output = lab
        .metalk8s()
        .args(["deploy", "--phase", "os", "--limit", "node9", "-i"])
        .arg(&inventory)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--limit node9"));

    // A deploy from another machine holds the lock: refused, naming the holder.
    lab.ssh(
        "node1",
        r#"mkdir /var/lib/metalk8s/deploy.lock && printf '%s' '{"who":"ops@elsewhere","machine":"other","pid":1,"run":"r-elsewhere","since":0}' > /var/lib/metalk8s/deploy.lock/holder"#,
    );
    let output = lab
        .metalk8s()
        .args(["deploy", "--phase", "os", "-i"])
        .arg(&inventory)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // miette wraps long lines: compare without the breaks and the margin it draws.
    let flat: String = stderr
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect();
    assert!(
        flat.contains("anotherdeployholdsthelockonnode1:ops@elsewhere(pid1,runr-elsewhere"),
        "{stderr}"
    );
    lab.ssh("node1", "rm -rf /var/lib/metalk8s/deploy.lock");
}
