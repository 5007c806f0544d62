//! Results of checks, as shown to the operator and printed with `-o json`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    /// Not a blocker; something metalk8s will change or the operator should know.
    Warn,
    Fail,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Stable identifier, e.g. `ports`, `disk-empty`.
    pub check: String,
    pub status: CheckStatus,
    pub message: String,
    /// What to do about a warning or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub node: String,
    pub checks: Vec<CheckResult>,
}

impl NodeReport {
    pub fn worst(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(|check| check.status)
            .max()
            .unwrap_or(CheckStatus::Pass)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrecheckReport {
    pub api_version: String,
    pub kind: String,
    pub nodes: Vec<NodeReport>,
    pub summary: Summary,
}

impl PrecheckReport {
    pub fn new(nodes: Vec<NodeReport>) -> Self {
        let mut summary = Summary::default();
        for check in nodes.iter().flat_map(|node| &node.checks) {
            match check.status {
                CheckStatus::Pass => summary.pass += 1,
                CheckStatus::Warn => summary.warn += 1,
                CheckStatus::Fail => summary.fail += 1,
            }
        }
        PrecheckReport {
            api_version: crate::inventory::API_VERSION.to_owned(),
            kind: "PrecheckReport".to_owned(),
            nodes,
            summary,
        }
    }

    pub fn failed(&self) -> bool {
        self.summary.fail > 0
    }
}

/// What happened to one step of a plan on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum StepOutcome {
    /// Already as desired; nothing done.
    Unchanged,
    /// Brought to the desired state; `changes` says what was different.
    Changed {
        changes: Vec<String>,
    },
    /// Dry run: what would change, with unified diffs for files.
    WouldChange {
        changes: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        diffs: Vec<String>,
    },
    /// The host cannot do this (e.g. a kernel module in a container without modules);
    /// reported, never counted as a success.
    Unsupported {
        reason: String,
    },
    Failed {
        error: String,
    },
    /// Not run because a step it comes after failed or was unsupported.
    Skipped {
        reason: String,
    },
}

impl StepOutcome {
    /// Whether steps that come after this one may run.
    pub fn succeeded(&self) -> bool {
        matches!(
            self,
            StepOutcome::Unchanged | StepOutcome::Changed { .. } | StepOutcome::WouldChange { .. }
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            StepOutcome::Unchanged => "unchanged",
            StepOutcome::Changed { .. } => "changed",
            StepOutcome::WouldChange { .. } => "would change",
            StepOutcome::Unsupported { .. } => "unsupported",
            StepOutcome::Failed { .. } => "failed",
            StepOutcome::Skipped { .. } => "skipped",
        }
    }
}

/// An error and its causes on one line (`a: b: c`), for a table cell or a JSON field.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
