//! The result of a deploy, as printed in the final table and with `-o json`.

use metalk8s_model::PhaseName;
use serde::{Deserialize, Serialize};

use crate::runner::StepReport;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub api_version: String,
    pub kind: String,
    pub run: String,
    pub dry_run: bool,
    /// The interrupted run this one resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
    pub phases: Vec<PhaseReport>,
    pub succeeded: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    pub name: PhaseName,
    /// False when the phase stopped on a failure (or never started).
    pub completed: bool,
    pub hosts: Vec<HostReport>,
    /// The health checks run after each batch of hosts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateReport>,
    /// What became of the phase's Kubernetes objects, when it has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectsReport>,
}

/// What applying a phase's object set did (or, on a dry run, would do). Objects are named
/// `Kind namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectsReport {
    /// The set's name.
    pub set: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// How many objects were already as planned.
    pub unchanged: usize,
    /// Objects of the set that the plan no longer holds, deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
    /// A dry run without an API to ask: every object is listed as `created` (would be
    /// applied) and nothing as pruned, since the cluster's side is unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// Why the set could not be applied (or its rollouts did not finish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ObjectsReport {
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Whether anything in the cluster was (or would be) created, changed or deleted.
    pub fn changed_anything(&self) -> bool {
        !(self.created.is_empty() && self.changed.is_empty() && self.pruned.is_empty())
    }
}

/// One health check of a phase's service (the etcd cluster after a member changed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    /// The hosts of the batch just finished.
    pub after: Vec<String>,
    pub passed: bool,
    /// What was seen: "3 members healthy, leader node1", or what is wrong.
    pub summary: String,
    /// What the operator can do about a failed check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    pub node: String,
    pub steps: Vec<StepReport>,
    /// Why the host could not run its steps at all (connection lost, agent failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Step counts of one host, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub changed: usize,
    pub unchanged: usize,
    pub unsupported: usize,
    pub failed: usize,
    pub skipped: usize,
    pub resumed: usize,
}

impl HostReport {
    pub fn failed(&self) -> bool {
        self.error.is_some()
            || self.steps.iter().any(|s| {
                matches!(
                    s.outcome,
                    metalk8s_model::report::StepOutcome::Failed { .. }
                )
            })
    }

    pub fn tally(&self) -> Tally {
        use metalk8s_model::report::StepOutcome::*;
        let mut tally = Tally::default();
        for step in &self.steps {
            match step.outcome {
                Changed { .. } | WouldChange { .. } => tally.changed += 1,
                Unchanged => tally.unchanged += 1,
                Unsupported { .. } => tally.unsupported += 1,
                Failed { .. } => tally.failed += 1,
                Skipped { .. } => tally.skipped += 1,
            }
            tally.resumed += usize::from(step.resumed);
        }
        tally
    }
}

/// `2026-11-27 21:04:05` from seconds since the epoch (UTC), without a date library.
pub fn format_time(seconds: u64) -> String {
    let days = seconds / 86_400;
    let time = seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for any date after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_795_813_445), "2026-11-27 21:04:05");
    }
}
