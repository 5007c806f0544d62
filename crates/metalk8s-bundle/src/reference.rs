//! What a `registry:` image of the spec names: `HOST[:PORT]/REPOSITORY:TAG@sha256:DIGEST`,
//! always with the registry host, the tag and the digest (a pull is pinned), and the
//! platform to take from an image index.

use std::fmt;
use std::net::IpAddr;

use metalk8s_model::oci;

/// Docker Hub as written in references, and the host its API answers on.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A pinned image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `host[:port]` as written.
    pub host: String,
    /// The repository as the registry's API names it (`library/` added on Docker Hub).
    pub repository: String,
    pub tag: String,
    /// 64 lower-case hex digits of the manifest's (or index's) sha256.
    pub digest: String,
}

/// Why a reference was refused: what is wrong, and what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceProblem {
    pub message: String,
    pub hint: &'static str,
}

const EXAMPLE: &str = "HOST/REPOSITORY:TAG@sha256:DIGEST, like \
     registry.k8s.io/pause:3.10.1@sha256:278fb9db…; `skopeo inspect --format '{{.Digest}}' \
     docker://HOST/REPOSITORY:TAG` prints the digest";

impl ImageReference {
    pub fn parse(text: &str) -> Result<ImageReference, ReferenceProblem> {
        let problem = |message: String| ReferenceProblem {
            message,
            hint: EXAMPLE,
        };
        let text = text.trim();
        let Some((named, digest)) = text.rsplit_once('@') else {
            return Err(problem(format!(
                "{text:?} has no digest: a registry image is pinned by its sha256"
            )));
        };
        let digest = digest
            .strip_prefix("sha256:")
            .filter(|hex| {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .ok_or_else(|| {
                problem(format!(
                    "{digest:?} is not a digest (`sha256:` and 64 lower-case hex digits)"
                ))
            })?;
        let Some((host, path)) = named.split_once('/').filter(|(host, _)| is_host_like(host))
        else {
            return Err(problem(format!(
                "{named:?} does not start with the registry's host name"
            )));
        };
        if !is_host(host) {
            return Err(problem(format!("{host:?} is not a host name[:port]")));
        }
        let Some((repository, tag)) = path.rsplit_once(':') else {
            return Err(problem(format!(
                "{named:?} has no tag: the image lands in the bundle under its tag"
            )));
        };
        if !oci::is_tag(tag) {
            return Err(problem(format!(
                "{tag:?} is not an image tag ({})",
                oci::TAG_GRAMMAR
            )));
        }
        let repository = if DOCKER_HUB.contains(&host) && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        if !oci::is_repository_name(&repository) {
            return Err(problem(format!(
                "{repository:?} is not an OCI repository name ({})",
                oci::REPOSITORY_NAME_GRAMMAR
            )));
        }
        Ok(ImageReference {
            host: host.to_owned(),
            repository,
            tag: tag.to_owned(),
            digest: digest.to_owned(),
        })
    }

    /// `sha256:<hex>`.
    pub fn pinned(&self) -> String {
        format!("sha256:{}", self.digest)
    }

    /// The base URL of the repository in the distribution API: `SCHEME://HOST/v2/REPO`.
    /// Plain HTTP is used for a registry on loopback and when `insecure` is asked for.
    pub fn api_base(&self, insecure: bool) -> String {
        let scheme = if insecure || self.is_loopback() {
            "http"
        } else {
            "https"
        };
        let host = if DOCKER_HUB.contains(&self.host.as_str()) {
            DOCKER_HUB_API
        } else {
            &self.host
        };
        format!("{scheme}://{host}/v2/{}", self.repository)
    }

    fn is_loopback(&self) -> bool {
        let name = match self.host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => &self.host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}:{}@sha256:{}",
            self.host, self.repository, self.tag, self.digest
        )
    }
}

/// The distribution reference grammar's rule: the first component names a registry when
/// it holds a `.` or a `:`, or is `localhost`.
fn is_host_like(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// `name[:port]` (DNS labels or an IPv4 address) or `[ipv6][:port]`.
fn is_host(host: &str) -> bool {
    // `port` is empty or `:` and the port number.
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((address, after)) if address.parse::<std::net::Ipv6Addr>().is_ok() => {
                (None, after)
            }
            _ => return false,
        },
        None => match host.split_once(':') {
            Some((name, _)) => (Some(name), &host[name.len()..]),
            None => (Some(host), ""),
        },
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|number| {
            (1..=5).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
        });
    let name_ok = name.is_none_or(|name| {
        name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    });
    port_ok && name_ok
}

/// The platform taken from an image index: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, what the nodes run.
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    pub fn parse(text: &str) -> Option<Platform> {
        let word = |part: &&str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        let parts: Vec<&str> = text.trim().split('/').collect();
        if !parts.iter().all(word) {
            return None;
        }
        match parts.as_slice() {
            [os, architecture] => Some(Platform {
                os: (*os).to_owned(),
                architecture: (*architecture).to_owned(),
                variant: None,
            }),
            [os, architecture, variant] => Some(Platform {
                os: (*os).to_owned(),
                architecture: (*architecture).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "278fb9dbcca9518083ad1e11276933a2e96f23de604a3a08cc3c80002767d24c";

    #[test]
    fn a_pinned_reference_names_host_repository_tag_and_digest() {
        let reference = ImageReference::parse(&format!(
            "registry.k8s.io/coredns/coredns:v1.14.2@sha256:{HEX}"
        ))
        .unwrap();
        assert_eq!(reference.host, "registry.k8s.io");
        assert_eq!(reference.repository, "coredns/coredns");
        assert_eq!(reference.tag, "v1.14.2");
        assert_eq!(reference.digest, HEX);
        assert_eq!(
            reference.to_string(),
            format!("registry.k8s.io/coredns/coredns:v1.14.2@sha256:{HEX}")
        );
        assert_eq!(
            reference.api_base(false),
            "https://registry.k8s.io/v2/coredns/coredns"
        );
        assert_eq!(
            reference.api_base(true),
            "http://registry.k8s.io/v2/coredns/coredns"
        );
    }

    #[test]
    fn loopback_registries_speak_plain_http_and_docker_hub_its_api_host() {
        for (written, base) in [
            ("127.0.0.1:5000/pause:1", "http://127.0.0.1:5000/v2/pause"),
            ("localhost:5000/a/b:1", "http://localhost:5000/v2/a/b"),
            ("[::1]:5000/pause:1", "http://[::1]:5000/v2/pause"),
            ("10.0.0.1:5000/pause:1", "https://10.0.0.1:5000/v2/pause"),
            (
                "docker.io/nginx:1.27",
                "https://registry-1.docker.io/v2/library/nginx",
            ),
            (
                "docker.io/calico/node:v3",
                "https://registry-1.docker.io/v2/calico/node",
            ),
        ] {
            let reference = ImageReference::parse(&format!("{written}@sha256:{HEX}")).unwrap();
            assert_eq!(reference.api_base(false), base, "{written}");
        }
    }

    #[test]
    fn references_without_host_tag_or_digest_are_refused() {
        for (text, says) in [
            ("registry.k8s.io/pause:3.10.1".to_owned(), "has no digest"),
            (format!("pause:3.10.1@sha256:{HEX}"), "registry's host name"),
            (
                format!("calico/node:v3@sha256:{HEX}"),
                "registry's host name",
            ),
            (format!("registry.k8s.io/pause@sha256:{HEX}"), "has no tag"),
            (
                "registry.k8s.io/pause:3.10.1@sha256:abc".to_owned(),
                "is not a digest",
            ),
            (
                format!("registry.k8s.io/pause:3.10.1@sha512:{HEX}"),
                "is not a digest",
            ),
            (
                format!("registry.k8s.io/Pause:3.10.1@sha256:{HEX}"),
                "not an OCI repository name",
            ),
            (
                format!("registry.k8s.io/pause:.x@sha256:{HEX}"),
                "not an image tag",
            ),
            (
                format!("bad_host.io/pause:1@sha256:{HEX}"),
                "not a host name",
            ),
            (
                format!("host.io:99999x/p:1@sha256:{HEX}"),
                "not a host name",
            ),
        ] {
            let problem = ImageReference::parse(&text).unwrap_err();
            assert!(
                problem.message.contains(says),
                "{text}: {}",
                problem.message
            );
        }
    }

    #[test]
    fn platforms_are_os_architecture_and_variant() {
        assert_eq!(
            Platform::parse("linux/amd64"),
            Some(Platform::linux_amd64())
        );
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        for bad in ["linux", "linux/", "Linux/amd64", "a/b/c/d"] {
            assert_eq!(Platform::parse(bad), None, "{bad}");
        }
    }
}
