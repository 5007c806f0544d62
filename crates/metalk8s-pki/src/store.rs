//! The key store: the cluster's PKI in a local directory on the bootstrap node.
//!
//! ```text
//! <root>/                      kubeadm's layout for what is shared by the whole cluster
//!   ca.crt ca.key              Kubernetes CA
//!   front-proxy-ca.crt .key    front-proxy CA
//!   etcd/ca.crt etcd/ca.key    etcd CA
//!   sa.key sa.pub              service-account token signing pair
//!   nodes/<node>/              exactly what goes under /etc/kubernetes on that node
//!     pki/apiserver.crt .key, pki/etcd/server.crt .key, …
//!     admin.conf controller-manager.conf scheduler.conf
//! ```
//!
//! Private keys (and kubeconfigs, which embed one) are 0600 and every directory 0700;
//! certificates and `sa.pub` are 0644. Every file is written to a temporary file in the
//! same directory, synced, then renamed over the old one, so that a crash leaves either the
//! old or the new content, never a torn file.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::cluster::NodePki;
use crate::error::{ParseError, PkiError};
use crate::inspect::{CertInfo, RenewalDecision, certificate_in_file, renewal_decision};
use crate::issue::{
    CertificateAuthority, IssueOptions, IssuedCertificate, LoadCaError, PrivateKey,
    ServiceAccountKeys, public_key_of,
};
use crate::kubeconfig::{Kubeconfig, KubeconfigParts};
use crate::spec::{Authority, CertSpec, Output};

pub const PRIVATE_FILE_MODE: u32 = 0o600;
pub const PUBLIC_FILE_MODE: u32 = 0o644;
pub const DIRECTORY_MODE: u32 = 0o700;

/// The PKI directory of one cluster.
#[derive(Clone, Debug)]
pub struct PkiStore {
    root: PathBuf,
    options: IssueOptions,
}

/// What `ensure` did to one file (or pair of files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    Created,
    /// The file existed but no longer matched its spec (or its CA, or its key).
    Reissued {
        reason: String,
    },
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportEntry {
    /// The node the file belongs to; `None` for the cluster-wide CAs and `sa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// kubeadm's name (`ca`, `etcd-ca`, `sa`, `apiserver`, `admin.conf`…).
    pub name: String,
    pub path: PathBuf,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Everything `ensure` looked at, in order: CAs, `sa`, then the leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EnsureReport {
    pub entries: Vec<ReportEntry>,
}

impl EnsureReport {
    /// The entries that were written (created or re-issued).
    pub fn changed(&self) -> impl Iterator<Item = &ReportEntry> {
        self.entries
            .iter()
            .filter(|entry| entry.outcome != Outcome::Unchanged)
    }

    pub fn is_noop(&self) -> bool {
        self.changed().next().is_none()
    }
}

/// One renewed certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Renewal {
    pub node: String,
    pub name: String,
    pub path: PathBuf,
    /// Why it was renewed (`expired`, `expiring-soon`, or `ok` when asked for all).
    pub decision: RenewalDecision,
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_not_after: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Where the renewed certificate lands on its node (absolute paths): what the phases
    /// placing those files must deploy again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_files: Vec<String>,
}

/// What the store holds for one spec.
enum Stored {
    Usable(Box<StoredCertificate>),
    /// Missing or unreadable, and why.
    Unusable(String),
}

struct StoredCertificate {
    cert: CertInfo,
    cert_pem: String,
    key_pem: String,
    kubeconfig: Option<Kubeconfig>,
}

/// Which certificates `renew_expiring` renews.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewScope {
    /// `--all`.
    All,
    /// `--expiring-within 30d`: expired ones and those expiring within the duration.
    ExpiringWithin(Duration),
}

/// A file to copy from the store to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub source: PathBuf,
    /// Relative to the node's Kubernetes directory, `/etc/kubernetes`.
    pub target: PathBuf,
    pub mode: u32,
}

impl PkiStore {
    /// A store rooted at `root`; nothing is read or written until asked.
    pub fn new(root: impl Into<PathBuf>, options: IssueOptions) -> PkiStore {
        PkiStore {
            root: root.into(),
            options,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn options(&self) -> &IssueOptions {
        &self.options
    }

    /// The directory mirroring `/etc/kubernetes` of `node`.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }

    /// The file holding the certificate of `spec` (its `.crt`, or its kubeconfig).
    pub fn cert_path(&self, spec: &CertSpec) -> PathBuf {
        self.node_dir(&spec.node).join(&spec.files()[0])
    }

    fn key_path(&self, spec: &CertSpec) -> Option<PathBuf> {
        match spec.output {
            Output::Files { .. } => Some(self.node_dir(&spec.node).join(&spec.files()[1])),
            Output::Kubeconfig { .. } => None,
        }
    }

    fn service_account_paths(&self) -> (PathBuf, PathBuf) {
        (self.root.join("sa.key"), self.root.join("sa.pub"))
    }

    /// The CA as stored, `None` when neither of its files exists.
    ///
    /// A certificate without its key is an error (nothing could be signed, and a new CA
    /// would orphan every certificate trusting the old one). A key without its certificate
    /// is what a crash between the two writes of a new CA leaves: that is also an error
    /// here, and [`PkiStore::ensure_authority`] repairs it.
    pub fn load_authority(
        &self,
        authority: Authority,
    ) -> Result<Option<CertificateAuthority>, PkiError> {
        let cert_path = self.root.join(authority.cert_path());
        let key_path = self.root.join(authority.key_path());
        let (cert, key) = (read_optional(&cert_path)?, read_optional(&key_path)?);
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(half_pair(cert_path, key_path)),
            (None, Some(_)) => return Err(half_pair(key_path, cert_path)),
        };
        CertificateAuthority::from_pem(authority, &cert, &key)
            .map(Some)
            .map_err(|error| match error {
                LoadCaError::Parse(source) => PkiError::Parse {
                    path: cert_path,
                    source,
                },
                LoadCaError::NoMatchingCertificate => PkiError::NoMatchingCa {
                    path: cert_path,
                    key: key_path,
                },
                LoadCaError::NotCa => PkiError::NotCa { path: cert_path },
            })
    }

    /// Loads the CA, or generates it when neither of its files exists. An existing CA is
    /// never replaced: every certificate and kubeconfig of the cluster trusts it. A key
    /// whose certificate is missing gets a new self-signed certificate (same key, same
    /// subject, so whatever it signed still verifies).
    pub fn ensure_authority(
        &self,
        authority: Authority,
        now: OffsetDateTime,
    ) -> Result<(CertificateAuthority, Outcome), PkiError> {
        let cert_path = self.root.join(authority.cert_path());
        let key_path = self.root.join(authority.key_path());
        if let Some(repaired) = self.resign_lost_certificate(authority, now)? {
            return Ok(repaired);
        }
        if let Some(existing) = self.load_authority(authority)? {
            return Ok((existing, Outcome::Unchanged));
        }
        let generated = CertificateAuthority::generate(authority, &self.options, now)?;
        // The key first: a crash between the two writes leaves a key without its
        // certificate, which the next run repairs, rather than a certificate nothing can
        // sign for.
        self.write(&key_path, generated.key_pem().as_bytes(), PRIVATE_FILE_MODE)?;
        self.write(
            &cert_path,
            generated.cert_pem().as_bytes(),
            PUBLIC_FILE_MODE,
        )?;
        Ok((generated, Outcome::Created))
    }

    /// A new certificate for a CA key whose certificate is missing; `None` otherwise.
    fn resign_lost_certificate(
        &self,
        authority: Authority,
        now: OffsetDateTime,
    ) -> Result<Option<(CertificateAuthority, Outcome)>, PkiError> {
        let cert_path = self.root.join(authority.cert_path());
        let key_path = self.root.join(authority.key_path());
        if cert_path.exists() {
            return Ok(None);
        }
        let Some(key_pem) = read_optional(&key_path)? else {
            return Ok(None);
        };
        let key = PrivateKey::from_pem(&key_pem).map_err(|source| PkiError::Parse {
            path: key_path,
            source,
        })?;
        let repaired = CertificateAuthority::from_key(authority, key, &self.options, now)?;
        self.write(&cert_path, repaired.cert_pem().as_bytes(), PUBLIC_FILE_MODE)?;
        let reason = format!(
            "{} was missing: re-signed from its key",
            cert_path.display()
        );
        Ok(Some((repaired, Outcome::Reissued { reason })))
    }

    /// Loads or generates `sa.key`, and (re)writes `sa.pub` from it when missing or
    /// different: tokens signed by one key and checked against another fail everywhere.
    pub fn ensure_service_account(&self) -> Result<Outcome, PkiError> {
        let (key_path, pub_path) = self.service_account_paths();
        let private = read_optional(&key_path)?;
        let public = read_optional(&pub_path)?;
        let private = match (private, &public) {
            (Some(private), _) => private,
            (None, Some(_)) => return Err(half_pair(pub_path, key_path)),
            (None, None) => {
                let keys = ServiceAccountKeys::generate(self.options.key_algorithm)?;
                self.write(&key_path, keys.private_pem.as_bytes(), PRIVATE_FILE_MODE)?;
                self.write(&pub_path, keys.public_pem.as_bytes(), PUBLIC_FILE_MODE)?;
                return Ok(Outcome::Created);
            }
        };
        let expected =
            ServiceAccountKeys::public_pem_of(&private).map_err(|source| PkiError::Parse {
                path: key_path.clone(),
                source,
            })?;
        if public.as_deref() == Some(expected.as_str()) {
            return Ok(Outcome::Unchanged);
        }
        self.write(&pub_path, expected.as_bytes(), PUBLIC_FILE_MODE)?;
        Ok(Outcome::Reissued {
            reason: "sa.pub did not match sa.key".to_owned(),
        })
    }

    /// Makes the store hold the three CAs, `sa`, and a valid certificate for every spec,
    /// issuing only what is missing or no longer matches (names changed, another CA, a
    /// key that does not belong to it). A second run with the same specs changes nothing.
    ///
    /// Expiry is not judged here: renewing is [`PkiStore::renew_expiring`]'s job, run by
    /// `certs renew` with its health-gated restarts.
    pub fn ensure(
        &self,
        specs: &[CertSpec],
        now: OffsetDateTime,
    ) -> Result<EnsureReport, PkiError> {
        let mut report = EnsureReport::default();
        let mut authorities = BTreeMap::new();
        for authority in Authority::ALL {
            let (ca, outcome) = self.ensure_authority(authority, now)?;
            report.entries.push(ReportEntry {
                node: None,
                name: authority.name().to_owned(),
                path: self.root.join(authority.cert_path()),
                outcome,
            });
            authorities.insert(authority, ca);
        }
        report.entries.push(ReportEntry {
            node: None,
            name: "sa".to_owned(),
            path: self.service_account_paths().0,
            outcome: self.ensure_service_account()?,
        });
        for spec in specs {
            let ca = &authorities[&spec.issuer];
            let outcome = match self.why_reissue(spec, ca)? {
                None => Outcome::Unchanged,
                Some(reason) => {
                    let existed = self.cert_path(spec).exists();
                    self.issue_and_write(spec, ca, now)?;
                    if existed {
                        Outcome::Reissued { reason }
                    } else {
                        Outcome::Created
                    }
                }
            };
            report.entries.push(ReportEntry {
                node: Some(spec.node.clone()),
                name: spec.name.clone(),
                path: self.cert_path(spec),
                outcome,
            });
        }
        Ok(report)
    }

    /// Re-issues `spec` from its current CA with the spec's subject and names, whatever
    /// the state of the existing file.
    ///
    /// The key is rotated: a renewal then also retires a key that may have been copied
    /// off a node, and costs nothing more since the certificate must be redistributed and
    /// its service restarted anyway.
    pub fn renew(&self, spec: &CertSpec, now: OffsetDateTime) -> Result<Renewal, PkiError> {
        let previous = self.inspect(spec).ok();
        let decision = previous.as_ref().map_or(RenewalDecision::Expired, |cert| {
            renewal_decision(cert, now, Duration::ZERO)
        });
        self.renew_with(spec, now, previous, decision)
    }

    /// Renews the certificates of `specs` that `scope` selects; a missing or unreadable
    /// one counts as expired.
    pub fn renew_expiring(
        &self,
        specs: &[CertSpec],
        now: OffsetDateTime,
        scope: RenewScope,
    ) -> Result<Vec<Renewal>, PkiError> {
        let threshold = match scope {
            RenewScope::All => Duration::ZERO,
            RenewScope::ExpiringWithin(threshold) => threshold,
        };
        let mut renewals = Vec::new();
        for spec in specs {
            let previous = self.inspect(spec).ok();
            let decision = previous.as_ref().map_or(RenewalDecision::Expired, |cert| {
                renewal_decision(cert, now, threshold)
            });
            if decision != RenewalDecision::Ok || scope == RenewScope::All {
                renewals.push(self.renew_with(spec, now, previous, decision)?);
            }
        }
        Ok(renewals)
    }

    fn renew_with(
        &self,
        spec: &CertSpec,
        now: OffsetDateTime,
        previous: Option<CertInfo>,
        decision: RenewalDecision,
    ) -> Result<Renewal, PkiError> {
        let ca = self
            .load_authority(spec.issuer)?
            .ok_or_else(|| PkiError::NoAuthority {
                path: self.root.join(spec.issuer.cert_path()),
            })?;
        let issued = self.issue_and_write(spec, &ca, now)?;
        let cert = CertInfo::from_pem(&issued.cert_pem).expect("rcgen produces parseable PEM");
        Ok(Renewal {
            node: spec.node.clone(),
            name: spec.name.clone(),
            path: self.cert_path(spec),
            decision,
            previous_not_after: previous.map(|cert| cert.not_after),
            not_after: cert.not_after,
            node_files: Vec::new(),
        })
    }

    /// A kubeconfig for `spec` (a kubeconfig output) signed by the stored CA, with a new
    /// key, neither stored nor recorded here: for people, not nodes. `None` when the store
    /// holds no such CA yet (nothing was deployed); the store is never created by this.
    pub fn issue_unstored_kubeconfig(
        &self,
        spec: &CertSpec,
        now: OffsetDateTime,
    ) -> Result<Option<Kubeconfig>, PkiError> {
        let Some(ca) = self.load_authority(spec.issuer)? else {
            return Ok(None);
        };
        let issued = ca.issue(spec, &self.options, now)?;
        Ok(self.kubeconfig(spec, &ca, &issued.cert_pem, &issued.key_pem))
    }

    /// The stored certificate of `spec`.
    pub fn inspect(&self, spec: &CertSpec) -> Result<CertInfo, PkiError> {
        inspect_file(&self.cert_path(spec))
    }

    /// The files `node` must receive and where they go under `/etc/kubernetes`.
    pub fn placements(&self, node: &NodePki) -> Vec<Placement> {
        let mut placements = Vec::new();
        let shared = |relative: PathBuf, mode| Placement {
            source: self.root.join(&relative),
            target: Path::new("pki").join(relative),
            mode,
        };
        for files in &node.authorities {
            placements.push(shared(files.authority.cert_path(), PUBLIC_FILE_MODE));
            if files.key {
                placements.push(shared(files.authority.key_path(), PRIVATE_FILE_MODE));
            }
        }
        if node.service_account_keys {
            placements.push(shared("sa.key".into(), PRIVATE_FILE_MODE));
            placements.push(shared("sa.pub".into(), PUBLIC_FILE_MODE));
        }
        for spec in &node.certificates {
            for (index, file) in spec.files().into_iter().enumerate() {
                let private = index == 1 || matches!(spec.output, Output::Kubeconfig { .. });
                placements.push(Placement {
                    source: self.node_dir(&spec.node).join(&file),
                    target: file,
                    mode: if private {
                        PRIVATE_FILE_MODE
                    } else {
                        PUBLIC_FILE_MODE
                    },
                });
            }
        }
        placements
    }

    /// Why the stored certificate of `spec` cannot stay, or `None` when it can.
    fn why_reissue(
        &self,
        spec: &CertSpec,
        ca: &CertificateAuthority,
    ) -> Result<Option<String>, PkiError> {
        let stored = match self.read_stored(spec)? {
            Stored::Usable(stored) => stored,
            Stored::Unusable(reason) => return Ok(Some(reason)),
        };
        if public_key_of(&stored.key_pem).ok() != Some(stored.cert.public_key_der()) {
            return Ok(Some("its key does not belong to it".to_owned()));
        }
        if !stored.cert.is_signed_by(ca.info()) {
            return Ok(Some(format!(
                "not signed by the current {} CA",
                spec.issuer
            )));
        }
        if let Some(kubeconfig) = &stored.kubeconfig {
            // The envelope the spec asks for around the stored certificate and key.
            let expected = self.kubeconfig(spec, ca, &stored.cert_pem, &stored.key_pem);
            if expected.as_ref() != Some(kubeconfig) {
                return Ok(Some("its server, cluster, user or CA changed".to_owned()));
            }
        }
        Ok(spec.difference(&stored.cert))
    }

    /// The stored certificate and key of `spec`, or why they cannot be used.
    fn read_stored(&self, spec: &CertSpec) -> Result<Stored, PkiError> {
        let unreadable = |error: ParseError| Ok(Stored::Unusable(format!("unreadable ({error})")));
        let Some(text) = read_optional(&self.cert_path(spec))? else {
            return Ok(Stored::Unusable("missing".to_owned()));
        };
        let (cert_pem, key_pem, kubeconfig) = match self.key_path(spec) {
            Some(key_path) => match read_optional(&key_path)? {
                Some(key_pem) => (text, key_pem, None),
                None => return Ok(Stored::Unusable("its key is missing".to_owned())),
            },
            None => {
                let parts = Kubeconfig::from_yaml(&text).and_then(|config| {
                    Ok((
                        config.client_certificate_pem()?,
                        config.client_key_pem()?,
                        config,
                    ))
                });
                match parts {
                    Ok((cert_pem, key_pem, config)) => (cert_pem, key_pem, Some(config)),
                    Err(error) => return unreadable(error),
                }
            }
        };
        match CertInfo::from_pem(&cert_pem) {
            Ok(cert) => Ok(Stored::Usable(Box::new(StoredCertificate {
                cert,
                cert_pem,
                key_pem,
                kubeconfig,
            }))),
            Err(error) => unreadable(error),
        }
    }

    /// The kubeconfig of `spec` around a certificate and key; `None` for other outputs.
    fn kubeconfig(
        &self,
        spec: &CertSpec,
        ca: &CertificateAuthority,
        cert_pem: &str,
        key_pem: &str,
    ) -> Option<Kubeconfig> {
        let Output::Kubeconfig {
            cluster, server, ..
        } = &spec.output
        else {
            return None;
        };
        Some(Kubeconfig::new(KubeconfigParts {
            cluster,
            server,
            ca_pem: ca.cert_pem(),
            user: &spec.common_name,
            cert_pem,
            key_pem,
        }))
    }

    fn issue_and_write(
        &self,
        spec: &CertSpec,
        ca: &CertificateAuthority,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let issued = ca.issue(spec, &self.options, now)?;
        match &spec.output {
            Output::Files { .. } => {
                let key_path = self.key_path(spec).expect("file outputs have a key path");
                // Key before certificate: a reader restarted in between sees a key that
                // does not match, which the next `ensure` detects and repairs.
                self.write(&key_path, issued.key_pem.as_bytes(), PRIVATE_FILE_MODE)?;
                self.write(
                    &self.cert_path(spec),
                    issued.cert_pem.as_bytes(),
                    PUBLIC_FILE_MODE,
                )?;
            }
            Output::Kubeconfig { .. } => {
                let kubeconfig = self
                    .kubeconfig(spec, ca, &issued.cert_pem, &issued.key_pem)
                    .expect("a kubeconfig output");
                let yaml =
                    kubeconfig
                        .to_yaml()
                        .map_err(|source| PkiError::SerializeKubeconfig {
                            what: spec.to_string(),
                            source: Box::new(source),
                        })?;
                self.write(&self.cert_path(spec), yaml.as_bytes(), PRIVATE_FILE_MODE)?;
            }
        }
        Ok(issued)
    }

    /// Writes `contents` to `path` atomically with exactly `mode`, creating the missing
    /// directories between the root and it as 0700.
    fn write(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
        let directory = path.parent().expect("store paths have a parent");
        self.create_private_dirs(directory)?;
        write_atomic(path, contents, mode).map_err(|source| PkiError::Write {
            path: path.to_owned(),
            source,
        })
    }

    fn create_private_dirs(&self, directory: &Path) -> Result<(), PkiError> {
        let write_error = |source| PkiError::Write {
            path: directory.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(DIRECTORY_MODE)
            .create(directory)
            .map_err(write_error)?;
        // The mode given at creation is cut by the umask, and a root made beforehand by
        // someone else may be wider: set it on every directory of the store on the way.
        for ancestor in directory.ancestors() {
            fs::set_permissions(ancestor, Permissions::from_mode(DIRECTORY_MODE))
                .map_err(write_error)?;
            if ancestor == self.root {
                break;
            }
        }
        Ok(())
    }
}

/// The certificate in a file: a PEM certificate or a kubeconfig.
pub fn inspect_file(path: &Path) -> Result<CertInfo, PkiError> {
    let text = fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })?;
    certificate_in_file(&text).map_err(|source| PkiError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn half_pair(present: PathBuf, missing: PathBuf) -> PkiError {
    PkiError::HalfPair { present, missing }
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let directory = path.parent().expect("store paths have a parent");
    let name = path
        .file_name()
        .expect("store paths name a file")
        .to_string_lossy();
    let temporary = directory.join(format!(".{name}.tmp"));
    // A leftover of a crashed run may have another mode; start from nothing so that the
    // secret is never written into a file readable by others, even for a moment.
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    // The rename lives in the directory: sync it so that it survives a power loss.
    fs::File::open(directory)?.sync_all()
}
