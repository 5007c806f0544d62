use std::collections::BTreeSet;
use std::path::{Component as PathComponent, Path};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::BundleError;

/// `apiVersion` of every manifest this crate writes and accepts.
pub const API_VERSION: &str = "metalk8s.io/v1alpha1";
/// `kind` of a bundle manifest.
pub const KIND: &str = "BundleManifest";

/// The bundle's table of contents: what it holds, where it came from, and the size and
/// sha256 of every file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub api_version: String,
    pub kind: String,
    /// Version of the bundle itself (usually the metalk8s release).
    pub version: String,
    /// The Kubernetes release the bundle carries (`1.36.4`), as its spec declares it; see
    /// [`Manifest::kubernetes_version`]. Absent when it carries none, and from manifests
    /// written before the field existed, which stay readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub components: Vec<Component>,
    /// Sorted by path.
    pub artifacts: Vec<Artifact>,
}

/// An upstream piece of software the bundle carries (Kubernetes, containerd, Calico…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub name: String,
    pub version: String,
    /// Where it was obtained: a URL, an APT repository, a registry reference.
    pub origin: String,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Relative to the bundle root, `/`-separated.
    pub path: String,
    pub kind: ArtifactKind,
    /// Lower-case hex.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ArtifactKind {
    Deb,
    Rpm,
    Binary,
    OciLayout,
    Manifest,
}

impl ArtifactKind {
    /// The file mode of an artifact of this kind, wherever a bundle is written out:
    /// binaries are executable, the rest is not.
    pub fn mode(self) -> u32 {
        if self == ArtifactKind::Binary {
            0o755
        } else {
            0o644
        }
    }

    /// The kind of a file from its top-level directory (see the crate doc).
    pub fn from_path(path: &str) -> Option<Self> {
        let top = path.split('/').next()?;
        match top {
            "debs" => Some(Self::Deb),
            "rpms" => Some(Self::Rpm),
            "bin" => Some(Self::Binary),
            "images" => Some(Self::OciLayout),
            "manifests" => Some(Self::Manifest),
            _ => None,
        }
    }
}

/// An image the bundle carries: the OCI layout `images/<name>/`, tagged `tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundledImage<'a> {
    pub name: &'a str,
    pub tag: &'a str,
}

/// A binary the bundle carries: `bin/<name>`, with the version of the component of the
/// same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundledBinary<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// Lower-case hex.
    pub sha256: &'a str,
}

impl Manifest {
    /// The Kubernetes release the bundle carries: `MAJOR.MINOR.PATCH[-PRERELEASE]`
    /// without a `v` (checked when the manifest is read), the version of its kubeadm,
    /// kubelet and kubectl, its control-plane images and kube-proxy being tagged with a
    /// `v` before it. `None` for a bundle that carries no Kubernetes.
    pub fn kubernetes_version(&self) -> Option<&str> {
        self.kubernetes_version.as_deref()
    }

    /// The images of the bundle, sorted by name: each `images/<name>/index.json` with the
    /// component of the same name, whose version is the tag.
    pub fn images(&self) -> Vec<BundledImage<'_>> {
        let mut images: Vec<BundledImage<'_>> = self
            .artifacts
            .iter()
            .filter(|artifact| artifact.kind == ArtifactKind::OciLayout)
            .filter_map(|artifact| {
                let name = artifact
                    .path
                    .strip_prefix("images/")?
                    .strip_suffix("/index.json")?;
                let component = self.components.iter().find(|c| c.name == name)?;
                Some(BundledImage {
                    name,
                    tag: &component.version,
                })
            })
            .collect();
        images.sort_by_key(|image| image.name);
        images
    }

    /// The binaries of the bundle, sorted by name: each `bin/<name>` with the component of
    /// the same name, whose version is the binary's.
    pub fn binaries(&self) -> Vec<BundledBinary<'_>> {
        let mut binaries: Vec<BundledBinary<'_>> = self
            .artifacts
            .iter()
            .filter(|artifact| artifact.kind == ArtifactKind::Binary)
            .filter_map(|artifact| {
                let name = artifact.path.strip_prefix("bin/")?;
                let component = self.components.iter().find(|c| c.name == name)?;
                Some(BundledBinary {
                    name,
                    version: &component.version,
                    sha256: &artifact.sha256,
                })
            })
            .collect();
        binaries.sort_by_key(|binary| binary.name);
        binaries
    }

    /// The names of the OS packages of the bundle, sorted, each once: the `<name>` of every
    /// `debs/<name>_<version>_<arch>.deb`.
    pub fn packages(&self) -> Vec<&str> {
        let mut packages: Vec<&str> = self
            .artifacts
            .iter()
            .filter(|artifact| artifact.kind == ArtifactKind::Deb)
            .filter_map(|artifact| {
                let file = artifact.path.rsplit('/').next()?;
                file.split('_').next()
            })
            .collect();
        packages.sort_unstable();
        packages.dedup();
        packages
    }

    /// Parses manifest bytes and refuses a wrong header, unsafe paths and duplicates.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(BundleError::ManifestJson)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The exact bytes written to `manifest.json` (and signed).
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes =
            serde_json::to_vec_pretty(self).expect("a manifest always serializes to JSON");
        bytes.push(b'\n');
        bytes
    }

    pub fn validate(&self) -> Result<(), BundleError> {
        check_header("apiVersion", API_VERSION, &self.api_version)?;
        check_header("kind", KIND, &self.kind)?;
        if let Some(found) = self
            .kubernetes_version
            .as_deref()
            .filter(|version| !is_kubernetes_version(version))
        {
            return Err(BundleError::KubernetesVersion {
                found: found.to_owned(),
            });
        }
        let mut seen = BTreeSet::new();
        for artifact in &self.artifacts {
            check_relative(&artifact.path)?;
            if !seen.insert(artifact.path.as_str()) {
                return Err(BundleError::DuplicateArtifact {
                    path: artifact.path.clone(),
                });
            }
        }
        Ok(())
    }
}

/// `MAJOR.MINOR.PATCH`, optionally `-PRERELEASE` (`1.37.0-rc.1`), without a leading `v`.
pub(crate) fn is_kubernetes_version(text: &str) -> bool {
    let (numbers, pre_release) = match text.split_once('-') {
        Some((numbers, pre)) => (numbers, Some(pre)),
        None => (text, None),
    };
    let number = |part: &str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part.len() == 1 || !part.starts_with('0'))
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| number(part))
        && pre_release.is_none_or(|pre| {
            !pre.is_empty()
                && pre
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
}

fn check_header(
    field: &'static str,
    expected: &'static str,
    found: &str,
) -> Result<(), BundleError> {
    if found == expected {
        return Ok(());
    }
    Err(BundleError::ManifestHeader {
        field,
        expected,
        found: found.to_owned(),
    })
}

/// A path is safe when it is non-empty, relative, `/`-separated and made of plain names
/// only (no `..`, no `.`, no root, no backslash).
fn check_relative(path: &str) -> Result<(), BundleError> {
    let plain = |c: PathComponent<'_>| matches!(c, PathComponent::Normal(_));
    let safe = !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && Path::new(path).components().all(plain);
    if safe {
        Ok(())
    } else {
        Err(BundleError::UnsafePath {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "debs/../../x",
            "debs//x",
            "./x",
            "a\\b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_relative("images/pause/blobs/sha256/ab").is_ok());
    }

    #[test]
    fn images_and_packages_are_listed_from_the_artifacts() {
        let manifest = Manifest::from_json(
            br#"{"apiVersion":"metalk8s.io/v1alpha1","kind":"BundleManifest","version":"1.2.3",
            "created":"2026-01-01T00:00:00Z",
            "components":[{"name":"pause","version":"3.9","origin":"oci-layout:x"},
                          {"name":"coredns/coredns","version":"v1.11.1","origin":"docker:x"},
                          {"name":"containerd","version":"1.6.20","origin":"http://x"}],
            "artifacts":[
              {"path":"debs/runc_1.1.5+ds1-1+deb12u1_amd64.deb","kind":"deb","sha256":"00","size":1},
              {"path":"debs/containerd_1.6.20~ds1-1+b1_amd64.deb","kind":"deb","sha256":"00","size":1},
              {"path":"debs/containerd_1.6.21~ds1-1_amd64.deb","kind":"deb","sha256":"00","size":1},
              {"path":"images/pause/index.json","kind":"ociLayout","sha256":"00","size":1},
              {"path":"images/pause/oci-layout","kind":"ociLayout","sha256":"00","size":1},
              {"path":"images/coredns/coredns/index.json","kind":"ociLayout","sha256":"00","size":1},
              {"path":"images/orphan/index.json","kind":"ociLayout","sha256":"00","size":1}]}"#,
        )
        .unwrap();
        assert_eq!(manifest.packages(), ["containerd", "runc"]);
        assert_eq!(
            manifest.images(),
            [
                BundledImage {
                    name: "coredns/coredns",
                    tag: "v1.11.1"
                },
                BundledImage {
                    name: "pause",
                    tag: "3.9"
                }
            ]
        );
    }

    #[test]
    fn the_kubernetes_version_is_optional_and_checked() {
        let manifest = |field: &str| {
            format!(
                r#"{{"apiVersion":"metalk8s.io/v1alpha1","kind":"BundleManifest","version":"1",{field}
                "created":"2026-01-01T00:00:00Z","components":[],"artifacts":[]}}"#
            )
        };
        // A manifest written before the field existed.
        let old = Manifest::from_json(manifest("").as_bytes()).unwrap();
        assert_eq!(old.kubernetes_version(), None);
        assert!(
            !String::from_utf8(old.to_json())
                .unwrap()
                .contains("kubernetesVersion")
        );

        let carrying =
            Manifest::from_json(manifest(r#""kubernetesVersion":"1.36.4","#).as_bytes()).unwrap();
        assert_eq!(carrying.kubernetes_version(), Some("1.36.4"));
        assert_eq!(Manifest::from_json(&carrying.to_json()).unwrap(), carrying);

        for bad in ["v1.36.4", "1.36", "1.36.04", "1.36.4-"] {
            let error = Manifest::from_json(
                manifest(&format!(r#""kubernetesVersion":"{bad}","#)).as_bytes(),
            )
            .unwrap_err();
            assert!(
                matches!(&error, BundleError::KubernetesVersion { found } if found == bad),
                "{bad}: {error:?}"
            );
        }
        assert!(is_kubernetes_version("1.37.0-rc.1"));
    }

    #[test]
    fn kinds_follow_the_top_directory() {
        assert_eq!(
            ArtifactKind::from_path("debs/a.deb"),
            Some(ArtifactKind::Deb)
        );
        assert_eq!(
            ArtifactKind::from_path("images/pause/index.json"),
            Some(ArtifactKind::OciLayout)
        );
        assert_eq!(ArtifactKind::from_path("notes.txt"), None);
    }
}
