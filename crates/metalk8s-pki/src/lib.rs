//! The cluster PKI of metalk8s: its certificate authorities, the certificates and
//! kubeconfigs every node needs, and their expiry and renewal.
//!
//! Where it sits (see DESIGN.md): the planner-like part, [`cluster_certificates`], is pure
//! (inventory + control-plane addresses → a [`CertSpec`] per certificate per node, in
//! kubeadm's names and layout); [`PkiStore`] is the only I/O, a directory on the bootstrap
//! node holding the CAs and every node's files, which the deploy phases copy to
//! `/etc/kubernetes` on the nodes. Certificates are read back with [`CertInfo`] and judged
//! with [`renewal_decision`] for `metalk8s certs check` and `certs renew`; kubelets'
//! certificate signing requests are read with [`RequestInfo`] for their approval.
//!
//! Cryptography is rcgen and x509-parser on aws-lc-rs, the only crypto provider in the
//! build (ring must never be enabled beside it). Keys are ECDSA P-256 by default
//! ([`KeyAlgorithm`]); CAs live 10 years and leaves 1 year ([`IssueOptions`]).
//! docs/pki.md describes the layout, renewal and the CA rotation design.

mod cluster;
mod error;
mod exchange;
mod inspect;
mod issue;
pub mod kubeconfig;
mod request;
mod spec;
mod store;

pub use cluster::{
    AuthorityFiles, CLUSTER_ADMINS_GROUP, ClusterAddresses, DEFAULT_API_SERVER_PORT, NodePki,
    OPERATOR, REPOSITORY_CERTIFICATE, cluster_certificates, first_service_ip, operator_kubeconfig,
};
pub use error::{ParseError, PkiError, SpecError};
pub use exchange::{
    NODE_KUBERNETES_DIR, PkiAction, PkiRequest, PkiResponse, STORE_DIR, answer as answer_request,
};
pub use inspect::{
    CertInfo, RenewalDecision, certificate_in_file, certificates_from_pem, renewal_decision,
};
pub use issue::{
    CertificateAuthority, IssueOptions, IssuedCertificate, KeyAlgorithm, LoadCaError, PrivateKey,
    ServiceAccountKeys, public_key_of,
};
pub use request::RequestInfo;
pub use spec::{Authority, CertSpec, Output, Purpose, SubjectAltName};
pub use store::{
    DIRECTORY_MODE, EnsureReport, Outcome, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, PkiStore,
    Placement, RenewScope, Renewal, ReportEntry, inspect_file,
};
pub use time::{Duration, OffsetDateTime};
