//! Exit codes: 0 when all is well, 1 when a problem was found (a failed check, a host that
//! cannot be reached), 2 when the input or the usage is invalid.

use std::process::ExitCode;

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

pub type CommandResult = Result<ExitCode, Failure>;
