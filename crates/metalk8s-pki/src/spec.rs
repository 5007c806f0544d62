//! What a certificate must say: its issuer, subject, purpose, names and where it lives.
//! Pure data, compared against what is on disk to decide whether a file must be re-issued.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

/// The three certificate authorities of a cluster, as kubeadm names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Authority {
    /// Signs the API server, its kubelet client, the kubeconfig users and (through the
    /// controller-manager) kubelet certificates.
    Kubernetes,
    /// Signs everything etcd: its servers, peers and clients.
    Etcd,
    /// Signs the API server's identity towards aggregated API servers.
    FrontProxy,
}

impl Authority {
    pub const ALL: [Authority; 3] = [
        Authority::Kubernetes,
        Authority::Etcd,
        Authority::FrontProxy,
    ];

    /// kubeadm's name for this CA (`kubeadm certs` prints it).
    pub fn name(self) -> &'static str {
        match self {
            Authority::Kubernetes => "ca",
            Authority::Etcd => "etcd-ca",
            Authority::FrontProxy => "front-proxy-ca",
        }
    }

    /// Path of the `.crt`/`.key` pair without extension, relative to the PKI directory.
    pub fn base_name(self) -> &'static str {
        match self {
            Authority::Kubernetes => "ca",
            Authority::Etcd => "etcd/ca",
            Authority::FrontProxy => "front-proxy-ca",
        }
    }

    /// The subject common name kubeadm gives this CA.
    pub fn common_name(self) -> &'static str {
        match self {
            Authority::Kubernetes => "kubernetes",
            Authority::Etcd => "etcd-ca",
            Authority::FrontProxy => "front-proxy-ca",
        }
    }

    pub fn cert_path(self) -> PathBuf {
        PathBuf::from(format!("{}.crt", self.base_name()))
    }

    pub fn key_path(self) -> PathBuf {
        PathBuf::from(format!("{}.key", self.base_name()))
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which side of a TLS connection a certificate authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Serves TLS: extended key usage `serverAuth`.
    Server,
    /// Authenticates to a server: `clientAuth`.
    Client,
    /// Both serves and connects: `serverAuth` and `clientAuth` (etcd members).
    Peer,
}

impl Purpose {
    pub fn server_auth(self) -> bool {
        matches!(self, Purpose::Server | Purpose::Peer)
    }

    pub fn client_auth(self) -> bool {
        matches!(self, Purpose::Client | Purpose::Peer)
    }

    /// The extended key usages, named as [`crate::CertInfo`] reports them.
    pub fn extended_key_usages(self) -> Vec<&'static str> {
        let mut usages = Vec::new();
        if self.server_auth() {
            usages.push("serverAuth");
        }
        if self.client_auth() {
            usages.push("clientAuth");
        }
        usages
    }
}

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubjectAltName {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectAltName::Dns(name) => write!(f, "DNS:{name}"),
            SubjectAltName::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// Where an issued certificate and its key are kept on a node, relative to the node's
/// Kubernetes directory (`/etc/kubernetes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Output {
    /// `pki/<base>.crt` and `pki/<base>.key`.
    Files { base_name: String },
    /// A kubeconfig at `<file>` embedding the certificate, its key and the CA, pointing at
    /// `server`.
    Kubeconfig {
        file: String,
        cluster: String,
        server: String,
    },
}

/// Everything needed to issue (and later check or renew) one leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertSpec {
    /// The node the certificate belongs to.
    pub node: String,
    /// kubeadm's name for it (`apiserver`, `etcd-peer`, `admin.conf`…).
    pub name: String,
    pub issuer: Authority,
    pub common_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    pub purpose: Purpose,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alt_names: Vec<SubjectAltName>,
    pub output: Output,
}

impl CertSpec {
    /// Files this certificate occupies, relative to the node's `/etc/kubernetes`.
    pub fn files(&self) -> Vec<PathBuf> {
        match &self.output {
            Output::Files { base_name } => vec![
                PathBuf::from(format!("pki/{base_name}.crt")),
                PathBuf::from(format!("pki/{base_name}.key")),
            ],
            Output::Kubeconfig { file, .. } => vec![PathBuf::from(file)],
        }
    }

    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.alt_names.iter().filter_map(|name| match name {
            SubjectAltName::Dns(dns) => Some(dns.as_str()),
            SubjectAltName::Ip(_) => None,
        })
    }

    pub fn ip_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.alt_names.iter().filter_map(|name| match name {
            SubjectAltName::Ip(ip) => Some(*ip),
            SubjectAltName::Dns(_) => None,
        })
    }
}

impl fmt::Display for CertSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of node {}", self.name, self.node)
    }
}

impl CertSpec {
    /// How an existing certificate differs from this spec, in words for the report; `None`
    /// when it says everything the spec asks (validity and key are judged elsewhere).
    pub fn difference(&self, cert: &crate::CertInfo) -> Option<String> {
        use std::collections::BTreeSet;

        if cert.is_ca {
            return Some("is a CA certificate".to_owned());
        }
        if cert.common_name.as_deref() != Some(self.common_name.as_str()) {
            return Some(format!(
                "common name {:?} instead of {:?}",
                cert.common_name.as_deref().unwrap_or(""),
                self.common_name
            ));
        }
        let organizations: BTreeSet<&str> = cert.organizations.iter().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = self.organizations.iter().map(String::as_str).collect();
        if organizations != wanted {
            return Some(format!(
                "organizations {organizations:?} instead of {wanted:?}"
            ));
        }
        let dns: BTreeSet<&str> = cert.dns_names.iter().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = self.dns_names().collect();
        if dns != wanted {
            return Some(format!("DNS names {dns:?} instead of {wanted:?}"));
        }
        let ips: BTreeSet<IpAddr> = cert.ip_addresses.iter().copied().collect();
        let wanted: BTreeSet<IpAddr> = self.ip_addresses().collect();
        if ips != wanted {
            return Some(format!("IP addresses {ips:?} instead of {wanted:?}"));
        }
        let usages: BTreeSet<&str> = cert
            .extended_key_usages
            .iter()
            .map(String::as_str)
            .collect();
        let wanted: BTreeSet<&str> = self.purpose.extended_key_usages().into_iter().collect();
        if usages != wanted {
            return Some(format!(
                "extended key usages {usages:?} instead of {wanted:?}"
            ));
        }
        None
    }
}
