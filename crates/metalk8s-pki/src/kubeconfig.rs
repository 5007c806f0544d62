//! Kubeconfig files (`admin.conf`, `controller-manager.conf`, `scheduler.conf`): one
//! cluster with its CA, one user with an embedded client certificate and key, and the
//! context joining them, as kubeadm writes them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::ParseError;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    pub users: Vec<NamedUser>,
}

// Never print embedded private keys.
impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("current_context", &self.current_context)
            .field("server", &self.server())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    #[serde(rename = "certificate-authority-data", default)]
    pub certificate_authority_data: String,
    pub server: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

impl std::fmt::Debug for NamedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "client-certificate-data", default)]
    pub client_certificate_data: String,
    #[serde(rename = "client-key-data", default)]
    pub client_key_data: String,
}

/// What a kubeconfig carries, in PEM.
#[derive(Clone, Copy, Debug)]
pub struct KubeconfigParts<'a> {
    /// The cluster's name (the inventory's).
    pub cluster: &'a str,
    pub server: &'a str,
    pub ca_pem: &'a str,
    /// The user's name: the certificate's common name, as kubeadm does.
    pub user: &'a str,
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

impl Kubeconfig {
    pub fn new(parts: KubeconfigParts<'_>) -> Kubeconfig {
        let context = format!("{}@{}", parts.user, parts.cluster);
        Kubeconfig {
            api_version: "v1".to_owned(),
            kind: "Config".to_owned(),
            clusters: vec![NamedCluster {
                name: parts.cluster.to_owned(),
                cluster: Cluster {
                    certificate_authority_data: STANDARD.encode(parts.ca_pem),
                    server: parts.server.to_owned(),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: Context {
                    cluster: parts.cluster.to_owned(),
                    user: parts.user.to_owned(),
                },
            }],
            current_context: context,
            users: vec![NamedUser {
                name: parts.user.to_owned(),
                user: User {
                    client_certificate_data: STANDARD.encode(parts.cert_pem),
                    client_key_data: STANDARD.encode(parts.key_pem),
                },
            }],
        }
    }

    pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        serde_saphyr::to_string(self)
    }

    pub fn from_yaml(text: &str) -> Result<Kubeconfig, ParseError> {
        serde_saphyr::from_str(text).map_err(|error| ParseError::Kubeconfig(Box::new(error)))
    }

    /// The current context's cluster and user (kubeadm writes exactly one of each).
    fn current(&self) -> Result<(&Cluster, &User), ParseError> {
        let context = self
            .contexts
            .iter()
            .find(|context| context.name == self.current_context)
            .or_else(|| self.contexts.first())
            .ok_or(ParseError::KubeconfigIncomplete { what: "context" })?;
        let cluster = self
            .clusters
            .iter()
            .find(|cluster| cluster.name == context.context.cluster)
            .ok_or(ParseError::KubeconfigIncomplete { what: "cluster" })?;
        let user = self
            .users
            .iter()
            .find(|user| user.name == context.context.user)
            .ok_or(ParseError::KubeconfigIncomplete { what: "user" })?;
        Ok((&cluster.cluster, &user.user))
    }

    pub fn server(&self) -> Option<&str> {
        self.current()
            .ok()
            .map(|(cluster, _)| cluster.server.as_str())
    }

    pub fn certificate_authority_pem(&self) -> Result<String, ParseError> {
        let (cluster, _) = self.current()?;
        decode(
            &cluster.certificate_authority_data,
            "certificate-authority-data",
        )
    }

    pub fn client_certificate_pem(&self) -> Result<String, ParseError> {
        let (_, user) = self.current()?;
        decode(&user.client_certificate_data, "client-certificate-data")
    }

    pub fn client_key_pem(&self) -> Result<String, ParseError> {
        let (_, user) = self.current()?;
        decode(&user.client_key_data, "client-key-data")
    }
}

fn decode(data: &str, field: &'static str) -> Result<String, ParseError> {
    if data.is_empty() {
        return Err(ParseError::KubeconfigIncomplete { what: field });
    }
    let bytes = STANDARD
        .decode(data.trim())
        .map_err(|source| ParseError::Base64 { field, source })?;
    String::from_utf8(bytes).map_err(|_| ParseError::NotText { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Kubeconfig {
        Kubeconfig::new(KubeconfigParts {
            cluster: "lab",
            server: "https://172.29.7.11:6443",
            ca_pem: "CA PEM\n",
            user: "kubernetes-admin",
            cert_pem: "CERT PEM\n",
            key_pem: "KEY PEM\n",
        })
    }

    #[test]
    fn kubeconfig_yaml_has_kubectl_field_names() {
        let yaml = sample().to_yaml().unwrap();
        for field in [
            "apiVersion: v1",
            "kind: Config",
            "certificate-authority-data:",
            "server: https://172.29.7.11:6443",
            "current-context: kubernetes-admin@lab",
            "client-certificate-data:",
            "client-key-data:",
        ] {
            assert!(yaml.contains(field), "{field} missing from:\n{yaml}");
        }
    }

    #[test]
    fn kubeconfig_reads_back_its_parts() {
        let parsed = Kubeconfig::from_yaml(&sample().to_yaml().unwrap()).unwrap();
        assert_eq!(parsed, sample());
        assert_eq!(parsed.server(), Some("https://172.29.7.11:6443"));
        assert_eq!(parsed.certificate_authority_pem().unwrap(), "CA PEM\n");
        assert_eq!(parsed.client_certificate_pem().unwrap(), "CERT PEM\n");
        assert_eq!(parsed.client_key_pem().unwrap(), "KEY PEM\n");
    }

    #[test]
    fn kubeconfig_without_the_context_user_is_incomplete() {
        let mut config = sample();
        config.users.clear();
        assert!(matches!(
            config.client_certificate_pem(),
            Err(ParseError::KubeconfigIncomplete { what: "user" })
        ));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let printed = format!("{:?}", sample());
        assert!(!printed.contains(&STANDARD.encode("KEY PEM\n")));
    }
}
