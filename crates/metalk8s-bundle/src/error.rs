use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading, building, signing or verifying a bundle. Each
/// message names the manifest, the signature or the artifact it is about.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("manifest.json: not a valid bundle manifest")]
    ManifestJson(#[source] serde_json::Error),
    #[error("manifest.json: expected {field} {expected:?}, found {found:?}")]
    ManifestHeader {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("manifest.json: kubernetesVersion {found:?} is not MAJOR.MINOR.PATCH[-PRERELEASE]")]
    KubernetesVersion { found: String },
    #[error("manifest.json: artifact path {path:?} is empty, absolute or leaves the bundle")]
    UnsafePath { path: String },
    #[error("manifest.json: artifact {path} is listed twice")]
    DuplicateArtifact { path: String },
    #[error("manifest.json.sig: malformed signature ({reason})")]
    MalformedSignature { reason: String },
    #[error("malformed public key ({reason})")]
    MalformedPublicKey { reason: String },
    #[error(
        "manifest.json: signature does not verify with the trusted public key \
         (the manifest was modified or signed with another key)"
    )]
    BadSignature,
    #[error("artifact {path}: missing from the bundle")]
    MissingArtifact { path: String },
    #[error("artifact {path}: size mismatch (expected {expected} bytes, found {found})")]
    SizeMismatch {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error("artifact {path}: sha256 mismatch (expected {expected}, found {found})")]
    Sha256Mismatch {
        path: String,
        expected: String,
        found: String,
    },
    #[error("file {path}: present in the bundle but not listed in manifest.json")]
    UnlistedFile { path: String },
    #[error("file {path}: not a regular file or directory (symlinks are refused)")]
    NotRegularFile { path: String },
    #[error("file {path}: path is not valid UTF-8")]
    NonUtf8Path { path: PathBuf },
    #[error("file {path}: outside the known locations (debs/, rpms/, bin/, images/, manifests/)")]
    UnknownLocation { path: String },
    #[error("{}: cannot read the bundle archive", path.display())]
    ArchiveRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: {found} comes before manifest.json and its signature; a bundle archive starts with them, so that nothing else is read before the signature is checked (rebuild it with `metalk8s bundle build`)",
        archive.display()
    )]
    SignedPartsNotFirst { archive: PathBuf, found: String },
    #[error("{}: no {name} in the bundle archive", archive.display())]
    MissingFromArchive {
        archive: PathBuf,
        name: &'static str,
    },
    #[error("archive entry {path:?}: refused ({reason})")]
    UnsafeEntry { path: String, reason: &'static str },
    #[error("file {path}: appears twice in the bundle archive")]
    DuplicateEntry { path: String },
    #[error("{}: malformed signing key ({reason})", path.display())]
    MalformedSigningKey { path: PathBuf, reason: String },
    #[error("{}: already exists; a signing key is never overwritten", path.display())]
    KeyExists { path: PathBuf },
}

impl BundleError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
