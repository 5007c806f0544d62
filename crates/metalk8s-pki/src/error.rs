//! Errors of this crate. Each names the file or the certificate it is about; the cause
//! sits in `source`.

use std::io;
use std::path::PathBuf;

/// Why a PEM text could not be read as a certificate or a key (no path: the caller knows
/// where the text came from and wraps this in a [`PkiError`]).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("no PEM block labelled {label} found")]
    NoPemBlock { label: &'static str },
    #[error("invalid PEM encoding")]
    Pem(#[source] x509_parser::error::PEMError),
    #[error("invalid X.509 certificate")]
    X509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("invalid PKCS #10 certificate request")]
    Request(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("the certificate request's signature does not verify with its own key")]
    RequestSignature(#[source] x509_parser::error::X509Error),
    #[error("the certificate request cannot be judged: {0}")]
    RequestContent(String),
    #[error("invalid extension {extension}")]
    Extension {
        extension: &'static str,
        #[source]
        source: x509_parser::error::X509Error,
    },
    #[error("invalid private key")]
    Key(#[source] rcgen::Error),
    #[error("invalid base64 in {field}")]
    Base64 {
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{field} is not UTF-8 PEM text")]
    NotText { field: &'static str },
    #[error("invalid kubeconfig YAML")]
    Kubeconfig(#[source] Box<serde_saphyr::Error>),
    #[error("the kubeconfig has no {what}")]
    KubeconfigIncomplete { what: &'static str },
}

/// Why a certificate plan could not be made from the inventory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "node {node} needs certificates but its control-plane IP is unknown (declare `controlPlaneIP` or gather facts)"
    )]
    MissingControlPlaneIp { node: String },
    #[error("the services network {cidr} has no address for the API server's service IP")]
    ServicesTooSmall { cidr: String },
    #[error("the inventory has no control-plane node, so no API server to point clients at")]
    NoControlPlane,
}

/// Errors of key generation, signing and the key store.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate a private key for {what}")]
    GenerateKey {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot sign the certificate {what}")]
    Sign {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} cannot be used")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("{path} holds no CA certificate matching the key in {key}")]
    NoMatchingCa { path: PathBuf, key: PathBuf },
    #[error("{path} does not exist: the CA is created by deploy before anything is renewed")]
    NoAuthority { path: PathBuf },
    #[error("{path} is not a CA certificate")]
    NotCa { path: PathBuf },
    #[error(
        "{present} exists but {missing} does not: refusing to generate a new one over half of an existing pair"
    )]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error("no random bytes for a serial number")]
    Random,
    #[error("the inventory does not say what certificates the nodes need")]
    Spec(#[from] SpecError),
    #[error("cannot serialize the kubeconfig {what}")]
    SerializeKubeconfig {
        what: String,
        #[source]
        source: Box<serde_saphyr::SerializeError>,
    },
}
