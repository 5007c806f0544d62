//! Why an operation of `ops` failed, by kind. The kind is all a command needs to choose its
//! exit code (`crate::exit`), so that the code is decided beside the command line and not
//! deep inside the work; the message and the hint are what the operator reads.

use metalk8s_bundle::BundleError;
use metalk8s_engine::journal::JournalError;
use metalk8s_engine::lock::LockError;
use metalk8s_pki::SpecError;
use metalk8s_plan::PlanError;
use metalk8s_repo::KeyError;
use metalk8s_transport::HostError;

use super::fetch::FetchFailure;
use super::kubeconfig::WriteError;
use super::session::NodesUnusable;

/// A library error wrapped here keeps its own diagnostic (`#[diagnostic(transparent)]`),
/// so its hint reaches the operator.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OpsError {
    /// The input is refused: the inventory, the command's arguments, the bundle given.
    #[error("{message}")]
    Invalid {
        message: String,
        #[help]
        help: Option<String>,
    },
    /// A node cannot be used: no connection to it, its facts unreadable or lacking what
    /// the operation needs.
    #[error("{message}")]
    Unusable {
        message: String,
        #[help]
        help: Option<String>,
    },
    /// A node did not do what it was asked: a command failed, an answer is unreadable.
    #[error("{message}")]
    OnNode {
        message: String,
        #[help]
        help: Option<String>,
    },
    /// This machine could not do its part: a local file, the metalk8s binary itself.
    #[error("{message}")]
    Local {
        message: String,
        #[help]
        help: Option<String>,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Nodes(#[from] NodesUnusable),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Journal(#[from] JournalError),
    /// Boxed: a lock held by another deploy carries its holder, the largest error here.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(Box<LockError>),
    /// No plan can be made from this inventory.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    /// The bundle's public key is refused.
    #[error(transparent)]
    BundleKey(#[from] BundleError),
    /// The cluster's addresses cannot be derived from the inventory and the facts.
    #[error(transparent)]
    Addresses(SpecError),
    /// The APT signing key cannot be made or read in the PKI store.
    #[error(transparent)]
    AptKey(#[from] KeyError),
    /// `agent fetch` could not place a binary.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Fetch(#[from] FetchFailure),
    /// The kubeconfig could not be written to its file.
    #[error(transparent)]
    #[diagnostic(transparent)]
    KubeconfigFile(#[from] WriteError),
}

impl OpsError {
    pub fn invalid(message: impl Into<String>) -> Self {
        OpsError::Invalid {
            message: message.into(),
            help: None,
        }
    }

    pub fn unusable(message: impl Into<String>) -> Self {
        OpsError::Unusable {
            message: message.into(),
            help: None,
        }
    }

    pub fn on_node(message: impl Into<String>) -> Self {
        OpsError::OnNode {
            message: message.into(),
            help: None,
        }
    }

    pub fn local(message: impl Into<String>) -> Self {
        OpsError::Local {
            message: message.into(),
            help: None,
        }
    }
}

impl From<LockError> for OpsError {
    fn from(error: LockError) -> Self {
        OpsError::Lock(Box::new(error))
    }
}
