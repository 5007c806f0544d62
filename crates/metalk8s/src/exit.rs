//! Exit codes: 0 when all is well, 1 when a problem was found (a failed check, a host that
//! cannot be reached), 2 when the input or the usage is invalid.

use std::process::ExitCode;

use crate::ops::OpsError;

pub const PROBLEM_FOUND: u8 = 1;
pub const INVALID_INPUT: u8 = 2;

/// An error on its way to the terminal, with the exit code it ends the process with.
pub struct Failure {
    pub report: miette::Report,
    pub code: u8,
}

impl Failure {
    pub fn invalid(report: impl Into<miette::Report>) -> Self {
        Failure {
            report: report.into(),
            code: INVALID_INPUT,
        }
    }

    pub fn problem(report: impl Into<miette::Report>) -> Self {
        Failure {
            report: report.into(),
            code: PROBLEM_FOUND,
        }
    }

    /// A problem from a library error without miette metadata; its causes are still shown.
    pub fn error(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure::problem(miette::Report::from_err(error))
    }

    pub fn report(self) -> ExitCode {
        eprintln!("{:?}", self.report);
        ExitCode::from(self.code)
    }
}

/// The exit code is chosen here, from the kind of the failure, not where it happened.
impl From<OpsError> for Failure {
    fn from(error: OpsError) -> Self {
        let code = match &error {
            OpsError::Invalid { .. } | OpsError::Plan(_) | OpsError::BundleKey(_) => INVALID_INPUT,
            OpsError::Unusable { .. }
            | OpsError::OnNode { .. }
            | OpsError::Local { .. }
            | OpsError::Nodes(_)
            | OpsError::Host(_)
            | OpsError::Journal(_)
            | OpsError::Lock(_)
            | OpsError::Addresses(_)
            | OpsError::AptKey(_)
            | OpsError::Fetch(_)
            | OpsError::KubeconfigFile(_) => PROBLEM_FOUND,
        };
        Failure {
            report: miette::Report::new(error),
            code,
        }
    }
}

pub type CommandResult = Result<ExitCode, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(report: &miette::Report) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, report.as_ref())
            .unwrap();
        out
    }

    #[test]
    fn refused_input_exits_2_and_a_problem_on_the_nodes_exits_1() {
        let invalid = [
            OpsError::Invalid {
                message: "--limit n9: no such node in the inventory".into(),
                help: Some("the inventory's nodes are: n1, n2".into()),
            },
            OpsError::Plan(metalk8s_plan::PlanError::MissingPki { node: "n1".into() }),
        ];
        for error in invalid {
            assert_eq!(Failure::from(error).code, INVALID_INPUT);
        }
        let problems = [
            OpsError::unusable("no connection to the bootstrap node n1"),
            OpsError::on_node("n1: `true` failed: no"),
            OpsError::local("cannot read manifest.json: gone"),
            OpsError::Host(metalk8s_transport::HostError::SudoRefused {
                host: "n1".into(),
                user: "ops".into(),
            }),
        ];
        for error in problems {
            assert_eq!(Failure::from(error).code, PROBLEM_FOUND);
        }
    }

    #[test]
    fn the_report_keeps_the_message_and_the_hint() {
        let failure = Failure::from(OpsError::Invalid {
            message: "--limit n9: no such node in the inventory".into(),
            help: Some("the inventory's nodes are: n1, n2".into()),
        });
        let text = rendered(&failure.report);
        assert!(
            text.contains("--limit n9: no such node in the inventory"),
            "{text}"
        );
        assert!(
            text.contains("help: the inventory's nodes are: n1, n2"),
            "{text}"
        );
    }

    /// A wrapped library error shows its own hint, as it did before it was wrapped (the
    /// lock's error through its box too).
    #[test]
    fn a_wrapped_library_error_keeps_its_hint() {
        let error = metalk8s_transport::HostError::SudoRefused {
            host: "n1".into(),
            user: "ops".into(),
        };
        let hint = error.hint().unwrap();
        let text = rendered(&Failure::from(OpsError::from(error)).report);
        assert!(
            text.contains("sudo on n1 refused to run a command as root for `ops`"),
            "{text}"
        );
        assert!(text.contains(hint), "{text}");

        let lock = metalk8s_engine::lock::LockError::Unreadable {
            node: "n1".into(),
            detail: "no holder".into(),
        };
        let text = rendered(&Failure::from(OpsError::from(lock)).report);
        assert!(
            text.contains("the deploy lock on n1 is unreadable"),
            "{text}"
        );
        assert!(
            text.contains("look at /var/lib/metalk8s/deploy.lock/holder on n1"),
            "{text}"
        );
    }
}
