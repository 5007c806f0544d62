//! The contract every resource implements: observe ▸ diff ▸ apply, idempotently.

use async_trait::async_trait;
use metalk8s_transport::{Host, HostError};

/// What differs between a host and the desired state. Empty means converged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    pub changes: Vec<Change>,
}

impl Observation {
    pub fn converged() -> Self {
        Observation::default()
    }

    pub fn is_converged(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn change(summary: impl Into<String>) -> Self {
        Observation {
            changes: vec![Change::new(summary)],
        }
    }
}

/// One difference, said for people: `net.ipv4.ip_forward is 0, want 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub summary: String,
    /// A unified diff, for file contents.
    pub diff: Option<String>,
}

impl Change {
    pub fn new(summary: impl Into<String>) -> Self {
        Change {
            summary: summary.into(),
            diff: None,
        }
    }

    pub fn with_diff(mut self, diff: String) -> Self {
        self.diff = Some(diff);
        self
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ResourceError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Host(#[from] HostError),
    /// A command the resource ran failed; `what` says what it was trying to do.
    #[error("{what} failed (exit status {status}): {stderr}")]
    Command {
        what: String,
        status: i32,
        stderr: String,
    },
    /// The host cannot provide this at all (e.g. no loadable kernel modules in a container).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

/// Observe ▸ diff ▸ apply for one desired state.
#[async_trait]
pub trait Apply: Send + Sync {
    /// Reads the host and says what differs. Must not change anything.
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError>;

    /// Brings the host to the desired state, given what `observe` found.
    async fn apply(&self, host: &dyn Host, observed: &Observation) -> Result<(), ResourceError>;

    /// Called when a watched step changed (restart a service, rerun a command). Returns
    /// what was done, or `None` when this resource does not react.
    async fn react(&self, host: &dyn Host) -> Result<Option<String>, ResourceError> {
        let _ = host;
        Ok(None)
    }
}
