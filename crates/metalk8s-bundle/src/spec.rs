//! The bundle spec: the YAML file that tells `bundle build` what goes into a bundle.
//!
//! ```yaml
//! apiVersion: metalk8s.io/v1alpha1
//! kind: BundleSpec
//! version: 1.0.0
//! kubernetesVersion: 1.30.2                 # optional: the Kubernetes this bundle carries
//! packages:
//!   - jq                                  # from APT, with every dependency
//!   - name: containerd
//!     version: 1.6.20~ds1-1+b1
//!   - path: local/tool_1.0_amd64.deb      # a local file; its dependencies come from APT
//! binaries:
//!   - name: kubeadm
//!     version: 1.30.2
//!     url: https://dl.k8s.io/release/v1.30.2/bin/linux/amd64/kubeadm
//!     sha256: 0f5f8c…
//!   - name: helper
//!     version: 0.3.0
//!     path: build/helper
//! images:
//!   - name: pause
//!     tag: "3.9"
//!     ociLayout: images/pause            # or dockerArchive: FILE.tar, or docker: REF
//!   - registry: registry.k8s.io/kube-proxy:v1.30.2@sha256:…  # name and tag from it
//! manifests:
//!   - path: manifests/local.yaml
//!     version: 1.0.0
//!   - name: calico
//!     version: 3.32.1
//!     url: https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico.yaml
//!     sha256: a1df91…                     # downloaded like a binary, pinned
//! ```
//!
//! Paths are relative to the spec file. Every problem found is reported at once, each
//! naming the file, the line and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use metalk8s_model::oci;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

pub use crate::reference::{ImageReference, Platform};

/// `kind` of a bundle spec (its `apiVersion` is [`crate::API_VERSION`]).
pub const SPEC_KIND: &str = "BundleSpec";

/// A spec that parsed and passed every check; local paths are resolved against the
/// directory of the spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSpec {
    /// The spec file it was read from.
    pub file: PathBuf,
    pub version: String,
    /// The Kubernetes release the bundle carries (`1.36.4`), when it carries one: its
    /// kubeadm, kubelet and kubectl have this version and its control-plane images and
    /// kube-proxy this tag with a `v`.
    pub kubernetes_version: Option<String>,
    pub packages: Vec<PackageSource>,
    pub binaries: Vec<BinarySpec>,
    pub images: Vec<ImageSpec>,
    pub manifests: Vec<ManifestFileSpec>,
}

/// A path from the spec: as written (for messages and origins) and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath {
    pub written: String,
    pub resolved: PathBuf,
}

/// An OS package: by name from the machine's APT sources, or a local `.deb` file. Both
/// have their dependencies resolved by APT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSource {
    Apt {
        name: String,
        version: Option<String>,
    },
    File(LocalPath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinarySpec {
    /// File name under `bin/`.
    pub name: String,
    pub version: String,
    pub source: BinarySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinarySource {
    /// Downloaded (through the cache) and checked against the pinned sha256.
    Url { url: String, sha256: String },
    /// A local file, checked against `sha256` when one is given.
    File {
        path: LocalPath,
        sha256: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Repository name; the image lands in `images/<name>/`.
    pub name: String,
    pub tag: String,
    pub source: ImageSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A directory holding an OCI image layout.
    OciLayout(LocalPath),
    /// The output of `docker save` (legacy or OCI format).
    DockerArchive(LocalPath),
    /// An image of the local docker daemon, exported with `docker save`.
    Docker(String),
    /// An image pulled from a registry by tag, checked against its pinned digest.
    Registry(RegistryImage),
}

/// A `registry:` image: where, which platform of an index, and whether plain HTTP is
/// allowed for a registry that is not on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryImage {
    pub reference: ImageReference,
    pub platform: Platform,
    pub insecure: bool,
}

/// The binaries of a Kubernetes release, versioned like it.
pub const KUBERNETES_BINARIES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];
/// The images of a Kubernetes release, tagged `v<version>`.
pub const KUBERNETES_IMAGES: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
];
/// The images every Kubernetes node needs besides, each with a version of its own: the
/// sandbox image and the cluster DNS (etcd runs from packages, outside Kubernetes).
pub const KUBERNETES_ADDON_IMAGES: [&str; 2] = ["pause", "coredns/coredns"];
/// The network's (Calico's) images, tagged like its release manifest (`manifests:` entry
/// `calico`). Not yet among what [`BundleSpec::missing_for_kubernetes`] requires: no deploy
/// phase applies Calico yet; the shipped specs list them (commented out until pinned).
pub const CALICO_IMAGES: [&str; 3] = ["calico/cni", "calico/node", "calico/kube-controllers"];

impl BundleSpec {
    /// What a bundle declaring `kubernetesVersion` lacks to install Kubernetes: binaries
    /// and images of [`KUBERNETES_BINARIES`], [`KUBERNETES_IMAGES`] and
    /// [`KUBERNETES_ADDON_IMAGES`] it has no entry for. Empty without `kubernetesVersion`.
    pub fn missing_for_kubernetes(&self) -> Vec<&'static str> {
        if self.kubernetes_version.is_none() {
            return Vec::new();
        }
        let binaries = KUBERNETES_BINARIES
            .into_iter()
            .filter(|name| !self.binaries.iter().any(|binary| binary.name == *name));
        let images = KUBERNETES_IMAGES
            .into_iter()
            .chain(KUBERNETES_ADDON_IMAGES)
            .filter(|name| !self.images.iter().any(|image| image.name == *name));
        binaries.chain(images).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFileSpec {
    /// Component name (default: the file name without its extension).
    pub name: String,
    /// Component version (default: the bundle version).
    pub version: String,
    pub source: ManifestSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    /// A local file, copied as it is.
    File(LocalPath),
    /// Downloaded (through the cache, like a binary) and checked against the pinned sha256.
    Url { url: String, sha256: String },
}

impl ManifestFileSpec {
    /// The file's name under `manifests/`: the local file's, or the last segment of the
    /// URL's path.
    pub fn file_name(&self) -> String {
        match &self.source {
            ManifestSource::File(path) => file_name(&path.resolved),
            ManifestSource::Url { url, .. } => url_file_name(url).to_owned(),
        }
    }

    /// Where it comes from, as the bundle manifest records it.
    pub fn origin(&self) -> String {
        match &self.source {
            ManifestSource::File(path) => format!("file:{}", path.written),
            ManifestSource::Url { url, .. } => url.clone(),
        }
    }
}

/// The last segment of `url`'s path, without a query or fragment.
fn url_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default()
}

/// Why a spec file was refused. An invalid spec renders like an invalid inventory: every
/// problem at once, each with its line of the file, the field, and a hint.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SpecError {
    #[error("cannot read bundle spec {}", path.display())]
    #[diagnostic(help("check the path, and that the file is readable by the current user"))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bundle spec {}: not valid YAML for a BundleSpec", path.display())]
    #[diagnostic(help("docs/bundle.md describes the spec file and every field"))]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("bundle spec {}: {} problem(s)", path.display(), problems.len())]
    #[diagnostic(help("fix each problem below; docs/bundle.md describes every field"))]
    Invalid {
        path: PathBuf,
        problems: Vec<SpecProblem>,
        /// The same problems, each pointing into the file.
        #[related]
        shown: Vec<ProblemInFile>,
    },
}

impl SpecError {
    /// An invalid spec: `problems` found in `text`, the content of `path`.
    pub fn invalid(path: &Path, text: &str, problems: Vec<SpecProblem>) -> SpecError {
        let source = std::sync::Arc::new(miette::NamedSource::new(
            path.display().to_string(),
            text.to_owned(),
        ));
        let shown = problems
            .iter()
            .map(|problem| ProblemInFile {
                message: format!("{}: {}", problem.field, problem.message),
                file: source.clone(),
                span: span_at(text, problem.line, problem.column),
                hint: problem.hint.clone(),
            })
            .collect();
        SpecError::Invalid {
            path: path.to_owned(),
            problems,
            shown,
        }
    }
}

/// One problem of a spec, shown on the line of the file it is about.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
pub struct ProblemInFile {
    message: String,
    #[source_code]
    file: std::sync::Arc<miette::NamedSource<String>>,
    #[label("here")]
    span: miette::SourceSpan,
    #[help]
    hint: Option<String>,
}

/// The span of the word at 1-based `line` and `column` of `text` (a point when the
/// position is past the text).
fn span_at(text: &str, line: u64, column: u64) -> miette::SourceSpan {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let offset = (line_start + column.saturating_sub(1) as usize).min(text.len());
    let length = text[offset..]
        .find(|c: char| c.is_whitespace() || c == ',' || c == ']' || c == '}')
        .unwrap_or(text.len() - offset);
    (offset, length).into()
}

/// One problem in a spec: where, which field, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub line: u64,
    pub column: u64,
    /// Like `binaries[1].sha256`.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.field, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

impl SpecError {
    /// The problems of an invalid spec (empty for read and parse errors).
    pub fn problems(&self) -> &[SpecProblem] {
        match self {
            SpecError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Reads, parses and checks the spec file at `path`.
pub fn load_spec(path: &Path) -> Result<BundleSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_spec(&text, path, base)
}

/// Parses and checks spec text; `file` names it in messages and relative paths are
/// resolved against `base`.
pub fn parse_spec(text: &str, file: &Path, base: &Path) -> Result<BundleSpec, SpecError> {
    let raw: RawSpec = serde_saphyr::from_str(text).map_err(|source| SpecError::Parse {
        path: file.to_owned(),
        source: Box::new(source),
    })?;
    let mut checker = Checker {
        base,
        kubernetes_version: None,
        problems: Vec::new(),
    };
    let spec = checker.spec(raw, file);
    if checker.problems.is_empty() {
        Ok(spec)
    } else {
        Err(SpecError::invalid(file, text, checker.problems))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    kubernetes_version: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "empty_when_null")]
    packages: Vec<Spanned<RawPackage>>,
    #[serde(default, deserialize_with = "empty_when_null")]
    binaries: Vec<Spanned<RawBinary>>,
    #[serde(default, deserialize_with = "empty_when_null")]
    images: Vec<Spanned<RawImage>>,
    #[serde(default, deserialize_with = "empty_when_null")]
    manifests: Vec<Spanned<RawManifestFile>>,
}

/// A list whose entries are all commented out (`images:` and nothing under it) is empty.
fn empty_when_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A package entry: a bare name, or a map.
#[derive(Default)]
struct RawPackage {
    name: Option<String>,
    version: Option<String>,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackageFields {
    name: Option<String>,
    version: Option<String>,
    path: Option<String>,
}

impl<'de> Deserialize<'de> for RawPackage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PackageVisitor;
        impl<'de> Visitor<'de> for PackageVisitor {
            type Value = RawPackage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a package name or a map with `name` (and `version`) or `path`")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<RawPackage, E> {
                Ok(RawPackage {
                    name: Some(name.to_owned()),
                    ..RawPackage::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPackage, A::Error> {
                let fields =
                    RawPackageFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawPackage {
                    name: fields.name,
                    version: fields.version,
                    path: fields.path,
                })
            }
        }
        deserializer.deserialize_any(PackageVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinary {
    name: Option<String>,
    version: Option<String>,
    url: Option<String>,
    path: Option<String>,
    sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawImage {
    name: Option<String>,
    tag: Option<String>,
    oci_layout: Option<String>,
    docker_archive: Option<String>,
    docker: Option<String>,
    registry: Option<String>,
    platform: Option<String>,
    insecure: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifestFile {
    path: Option<String>,
    url: Option<String>,
    sha256: Option<String>,
    name: Option<String>,
    version: Option<String>,
}

struct Checker<'a> {
    base: &'a Path,
    /// `kubernetesVersion`, once checked: the entries of Kubernetes components must agree.
    kubernetes_version: Option<String>,
    problems: Vec<SpecProblem>,
}

/// Where an entry starts in the spec file.
#[derive(Clone, Copy)]
struct At {
    line: u64,
    column: u64,
}

impl<T> From<&Spanned<T>> for At {
    fn from(spanned: &Spanned<T>) -> Self {
        At {
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        }
    }
}

impl Checker<'_> {
    fn problem(&mut self, at: At, field: String, message: impl Into<String>, hint: Option<&str>) {
        self.problems.push(SpecProblem {
            line: at.line,
            column: at.column,
            field,
            message: message.into(),
            hint: hint.map(str::to_owned),
        });
    }

    fn spec(&mut self, raw: RawSpec, file: &Path) -> BundleSpec {
        if raw.api_version.value != crate::API_VERSION {
            self.problem(
                At::from(&raw.api_version),
                "apiVersion".into(),
                format!(
                    "expected {:?}, found {:?}",
                    crate::API_VERSION,
                    raw.api_version.value
                ),
                None,
            );
        }
        if raw.kind.value != SPEC_KIND {
            self.problem(
                At::from(&raw.kind),
                "kind".into(),
                format!("expected {SPEC_KIND:?}, found {:?}", raw.kind.value),
                None,
            );
        }
        let version = raw.version.value.trim().to_owned();
        if version.is_empty() {
            self.problem(
                At::from(&raw.version),
                "version".into(),
                "must not be empty",
                Some("the bundle's own version, usually the metalk8s release"),
            );
        }
        if let Some(written) = raw.kubernetes_version {
            if crate::manifest::is_kubernetes_version(&written.value) {
                self.kubernetes_version = Some(written.value);
            } else {
                self.problem(
                    At::from(&written),
                    "kubernetesVersion".into(),
                    format!("{:?} is not a Kubernetes release version", written.value),
                    Some(
                        "MAJOR.MINOR.PATCH without a `v`, like 1.36.4 (images are tagged v1.36.4)",
                    ),
                );
            }
        }
        let packages = raw
            .packages
            .into_iter()
            .enumerate()
            .filter_map(|(index, entry)| self.package(index, entry))
            .collect();
        let binaries = raw
            .binaries
            .into_iter()
            .enumerate()
            .filter_map(|(index, entry)| self.binary(index, entry))
            .collect::<Vec<_>>();
        self.unique(
            "binaries",
            binaries
                .iter()
                .map(|b: &(At, BinarySpec)| (b.0, b.1.name.as_str())),
        );
        let images = raw
            .images
            .into_iter()
            .enumerate()
            .filter_map(|(index, entry)| self.image(index, entry))
            .collect::<Vec<_>>();
        self.unique(
            "images",
            images
                .iter()
                .map(|i: &(At, ImageSpec)| (i.0, i.1.name.as_str())),
        );
        self.nested_image_names(&images);
        let manifests = raw
            .manifests
            .into_iter()
            .enumerate()
            .filter_map(|(index, entry)| self.manifest_file(index, entry, &version))
            .collect::<Vec<_>>();
        let file_names: Vec<(At, String)> = manifests
            .iter()
            .map(|(at, m): &(At, ManifestFileSpec)| (*at, m.file_name()))
            .collect();
        self.unique(
            "manifests",
            file_names.iter().map(|(at, name)| (*at, name.as_str())),
        );
        BundleSpec {
            file: file.to_owned(),
            version,
            kubernetes_version: self.kubernetes_version.clone(),
            packages,
            binaries: binaries.into_iter().map(|(_, b)| b).collect(),
            images: images.into_iter().map(|(_, i)| i).collect(),
            manifests: manifests.into_iter().map(|(_, m)| m).collect(),
        }
    }

    fn package(&mut self, index: usize, entry: Spanned<RawPackage>) -> Option<PackageSource> {
        let at = At::from(&entry);
        let field = |name: &str| format!("packages[{index}]{name}");
        let raw = entry.value;
        match (raw.name, raw.path) {
            (Some(name), None) => {
                if !is_debian_package_name(&name) {
                    self.problem(
                        at,
                        field(".name"),
                        format!("{name:?} is not a Debian package name"),
                        Some("lower-case letters, digits, `+`, `-` and `.`, optionally `:ARCH`"),
                    );
                    return None;
                }
                if raw.version.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    self.problem(at, field(".version"), "must not be empty", None);
                    return None;
                }
                Some(PackageSource::Apt {
                    name,
                    version: raw.version,
                })
            }
            (None, Some(path)) => {
                if raw.version.is_some() {
                    self.problem(
                        at,
                        field(".version"),
                        "a local .deb has the version written in it",
                        Some("remove `version`, or use `name` to fetch that version from APT"),
                    );
                }
                if !path.ends_with(".deb") {
                    self.problem(
                        at,
                        field(".path"),
                        format!("{path:?} is not a .deb file"),
                        Some("only Debian packages are supported today"),
                    );
                    return None;
                }
                self.existing_file(at, field(".path"), &path)
                    .map(PackageSource::File)
            }
            (Some(_), Some(_)) => {
                self.problem(
                    at,
                    field(""),
                    "has both `name` and `path`",
                    Some("`name` fetches from APT, `path` takes a local .deb: keep one"),
                );
                None
            }
            (None, None) => {
                self.problem(
                    at,
                    field(""),
                    "needs `name` or `path`",
                    Some("write the package name, e.g. `- jq`, or `- path: FILE.deb`"),
                );
                None
            }
        }
    }

    fn binary(&mut self, index: usize, entry: Spanned<RawBinary>) -> Option<(At, BinarySpec)> {
        let at = At::from(&entry);
        let field = |name: &str| format!("binaries[{index}].{name}");
        let raw = entry.value;
        let name = self.required(at, field("name"), raw.name)?;
        if !is_file_name(&name) {
            self.problem(
                at,
                field("name"),
                format!("{name:?} is not a plain file name"),
                Some("it becomes bin/<name>: letters, digits, `.`, `_`, `+` and `-`"),
            );
        }
        let version = self.required(at, field("version"), raw.version);
        let sha256 = self.sha256(at, field("sha256"), raw.sha256).ok()?;
        let source = match (raw.url, raw.path) {
            (Some(url), None) => {
                let (url, sha256) = self.pinned_url(at, &field, url, sha256)?;
                BinarySource::Url { url, sha256 }
            }
            (None, Some(path)) => BinarySource::File {
                path: self.existing_file(at, field("path"), &path)?,
                sha256,
            },
            (url, _) => {
                self.not_one_source(at, format!("binaries[{index}]"), url.is_some());
                return None;
            }
        };
        let version = version?;
        if let Some(kubernetes) = &self.kubernetes_version
            && KUBERNETES_BINARIES.contains(&name.as_str())
            && version != *kubernetes
        {
            self.problem(
                at,
                field("version"),
                format!("{name} {version} is not the bundle's Kubernetes {kubernetes}"),
                Some(
                    "kubeadm, kubelet and kubectl come from the release `kubernetesVersion` names",
                ),
            );
        }
        Some((
            at,
            BinarySpec {
                name,
                version,
                source,
            },
        ))
    }

    fn image(&mut self, index: usize, entry: Spanned<RawImage>) -> Option<(At, ImageSpec)> {
        let at = At::from(&entry);
        let field = |name: &str| format!("images[{index}].{name}");
        let raw = entry.value;
        let sources = [
            raw.oci_layout.map(|p| ("ociLayout", p)),
            raw.docker_archive.map(|p| ("dockerArchive", p)),
            raw.docker.map(|p| ("docker", p)),
            raw.registry.map(|p| ("registry", p)),
        ];
        let mut given = sources.into_iter().flatten();
        let (Some((kind, value)), None) = (given.next(), given.next()) else {
            self.problem(
                at,
                format!("images[{index}]"),
                "needs exactly one of `ociLayout`, `dockerArchive`, `docker` or `registry`",
                Some(
                    "ociLayout: DIR, dockerArchive: FILE.tar (docker save), docker: REF, \
                     registry: HOST/REPOSITORY:TAG@sha256:DIGEST",
                ),
            );
            return None;
        };
        if kind != "registry" {
            for (name, given) in [
                ("platform", raw.platform.is_some()),
                ("insecure", raw.insecure.is_some()),
            ] {
                if given {
                    self.problem(at, field(name), "only goes with `registry`", None);
                }
            }
        }
        let source = match kind {
            "ociLayout" => {
                let path = self.local(&value);
                if !path.resolved.join("index.json").is_file() {
                    self.problem(
                        at,
                        field("ociLayout"),
                        format!("{} is not an OCI image layout", path.resolved.display()),
                        Some("the directory must hold `oci-layout`, `index.json` and `blobs/`"),
                    );
                    return None;
                }
                ImageSource::OciLayout(path)
            }
            "dockerArchive" => ImageSource::DockerArchive(self.existing_file(
                at,
                field("dockerArchive"),
                &value,
            )?),
            "docker" => {
                if value.trim().is_empty() {
                    self.problem(at, field("docker"), "must not be empty", None);
                    return None;
                }
                ImageSource::Docker(value)
            }
            _ => ImageSource::Registry(self.registry_image(
                at,
                index,
                &value,
                raw.platform,
                raw.insecure,
            )?),
        };
        // A registry image is named and tagged as in its reference unless told otherwise.
        let (default_name, default_tag) = match &source {
            ImageSource::Registry(registry) => (
                Some(registry.reference.repository.clone()),
                Some(registry.reference.tag.clone()),
            ),
            _ => (None, None),
        };
        let name = self.required(at, field("name"), raw.name.or(default_name))?;
        if !oci::is_repository_name(&name) {
            self.problem(
                at,
                field("name"),
                format!("{name:?} is not an OCI repository name: a registry would refuse it"),
                Some(oci::REPOSITORY_NAME_GRAMMAR),
            );
        }
        let tag = self.required(at, field("tag"), raw.tag.or(default_tag))?;
        if !oci::is_tag(&tag) {
            self.problem(
                at,
                field("tag"),
                format!("{tag:?} is not an image tag"),
                Some(oci::TAG_GRAMMAR),
            );
        }
        if let Some(kubernetes) = &self.kubernetes_version
            && KUBERNETES_IMAGES.contains(&name.as_str())
            && tag != format!("v{kubernetes}")
        {
            self.problem(
                at,
                field("tag"),
                format!("{name}:{tag} is not the bundle's Kubernetes v{kubernetes}"),
                Some("the control-plane images and kube-proxy are tagged v`kubernetesVersion`"),
            );
        }
        Some((at, ImageSpec { name, tag, source }))
    }

    fn registry_image(
        &mut self,
        at: At,
        index: usize,
        reference: &str,
        platform: Option<String>,
        insecure: Option<bool>,
    ) -> Option<RegistryImage> {
        let field = |name: &str| format!("images[{index}].{name}");
        let reference = match ImageReference::parse(reference) {
            Ok(reference) => reference,
            Err(problem) => {
                self.problem(at, field("registry"), problem.message, Some(problem.hint));
                return None;
            }
        };
        let platform = match platform {
            None => Platform::linux_amd64(),
            Some(text) => match Platform::parse(&text) {
                Some(platform) => platform,
                None => {
                    self.problem(
                        at,
                        field("platform"),
                        format!("{text:?} is not OS/ARCHITECTURE[/VARIANT]"),
                        Some("like linux/amd64 (the default) or linux/arm64/v8"),
                    );
                    return None;
                }
            },
        };
        Some(RegistryImage {
            reference,
            platform,
            insecure: insecure.unwrap_or(false),
        })
    }

    fn manifest_file(
        &mut self,
        index: usize,
        entry: Spanned<RawManifestFile>,
        bundle_version: &str,
    ) -> Option<(At, ManifestFileSpec)> {
        let at = At::from(&entry);
        let field = |name: &str| format!("manifests[{index}].{name}");
        let raw = entry.value;
        let (source, stem) = match (raw.path, raw.url) {
            (Some(written), None) => {
                if raw.sha256.is_some() {
                    self.problem(at, field("sha256"), "only goes with `url`", None);
                }
                let path = self.existing_file(at, field("path"), &written)?;
                let stem = path.resolved.file_stem().unwrap_or_default();
                let stem = stem.to_string_lossy().into_owned();
                (ManifestSource::File(path), stem)
            }
            (None, Some(url)) => {
                let sha256 = self.sha256(at, field("sha256"), raw.sha256).ok()?;
                let (url, sha256) = self.pinned_url(at, &field, url, sha256)?;
                let name = url_file_name(&url);
                if name.is_empty() || !is_file_name(name) {
                    self.problem(
                        at,
                        field("url"),
                        format!("{url:?} does not end in a file name"),
                        Some("it becomes manifests/<the URL's last segment>"),
                    );
                    return None;
                }
                let stem = name
                    .rsplit_once('.')
                    .map_or(name, |(stem, _)| stem)
                    .to_owned();
                (ManifestSource::Url { url, sha256 }, stem)
            }
            (path, _) => {
                self.not_one_source(at, format!("manifests[{index}]"), path.is_some());
                return None;
            }
        };
        let name = raw.name.unwrap_or(stem);
        let version = raw.version.unwrap_or_else(|| bundle_version.to_owned());
        Some((
            at,
            ManifestFileSpec {
                name,
                version,
                source,
            },
        ))
    }

    /// A written sha256, normalized; Err when it is not one (the problem is recorded).
    fn sha256(
        &mut self,
        at: At,
        field: String,
        text: Option<String>,
    ) -> Result<Option<String>, ()> {
        let Some(text) = text else {
            return Ok(None);
        };
        match normalize_sha256(&text) {
            Some(hex) => Ok(Some(hex)),
            None => {
                self.problem(
                    at,
                    field,
                    format!("{text:?} is not a sha256 (64 hexadecimal digits)"),
                    Some("`sha256sum FILE` prints it"),
                );
                Err(())
            }
        }
    }

    /// A download: an http(s) URL and the sha256 that pins it.
    fn pinned_url(
        &mut self,
        at: At,
        field: &dyn Fn(&str) -> String,
        url: String,
        sha256: Option<String>,
    ) -> Option<(String, String)> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            self.problem(
                at,
                field("url"),
                format!("{url:?} is not an http:// or https:// URL"),
                None,
            );
            return None;
        }
        let Some(sha256) = sha256 else {
            self.problem(
                at,
                field("sha256"),
                "is required with `url`",
                Some("pin the download: the sha256 published next to it, or `sha256sum` of a copy you trust"),
            );
            return None;
        };
        Some((url, sha256))
    }

    /// An entry with both `url` and `path` (`both`), or neither.
    fn not_one_source(&mut self, at: At, entry: String, both: bool) {
        if both {
            self.problem(
                at,
                entry,
                "has both `url` and `path`",
                Some("keep one source"),
            );
        } else {
            self.problem(at, entry, "needs `url` (with `sha256`) or `path`", None);
        }
    }

    fn required(&mut self, at: At, field: String, value: Option<String>) -> Option<String> {
        match value {
            Some(value) if !value.trim().is_empty() => Some(value),
            Some(_) => {
                self.problem(at, field, "must not be empty", None);
                None
            }
            None => {
                self.problem(at, field, "is required", None);
                None
            }
        }
    }

    fn local(&self, written: &str) -> LocalPath {
        LocalPath {
            written: written.to_owned(),
            resolved: self.base.join(written),
        }
    }

    fn existing_file(&mut self, at: At, field: String, written: &str) -> Option<LocalPath> {
        let path = self.local(written);
        if path.resolved.is_file() {
            return Some(path);
        }
        self.problem(
            at,
            field,
            format!("{} is not a file", path.resolved.display()),
            Some("paths are relative to the spec file"),
        );
        None
    }

    fn unique<'n>(&mut self, list: &str, names: impl Iterator<Item = (At, &'n str)>) {
        let mut seen = std::collections::BTreeMap::new();
        let mut duplicates = Vec::new();
        for (index, (at, name)) in names.enumerate() {
            if let Some(first) = seen.insert(name, index) {
                duplicates.push((at, name.to_owned(), first));
            }
        }
        for (at, name, first) in duplicates {
            self.problem(
                at,
                list.to_owned(),
                format!("{name:?} is used twice (first at entry {first})"),
                Some("each entry needs its own name"),
            );
        }
    }

    /// `images/a/` and `images/a/b/` cannot both be image layouts.
    fn nested_image_names(&mut self, images: &[(At, ImageSpec)]) {
        let mut conflicts = Vec::new();
        for (at, image) in images {
            for (_, other) in images {
                if image.name.starts_with(&format!("{}/", other.name)) {
                    conflicts.push((*at, image.name.clone(), other.name.clone()));
                }
            }
        }
        for (at, name, outer) in conflicts {
            self.problem(
                at,
                "images".into(),
                format!("{name:?} would be nested inside image {outer:?}"),
                Some("rename one of them"),
            );
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Lower-case hex of a sha256 written as hex (any case), optionally `sha256:`-prefixed.
pub(crate) fn normalize_sha256(text: &str) -> Option<String> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_lowercase())
}

fn is_debian_package_name(name: &str) -> bool {
    let (package, arch) = match name.split_once(':') {
        Some((package, arch)) => (package, Some(arch)),
        None => (name, None),
    };
    let package_ok = package.len() >= 2
        && package.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && package
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let arch_ok = arch.is_none_or(|arch| {
        !arch.is_empty()
            && arch
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    package_ok && arch_ok
}

fn is_file_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<BundleSpec, SpecError> {
        parse_spec(text, &dir.join("bundle.yaml"), dir)
    }

    /// As the terminal shows it, without colour.
    fn render(error: &SpecError) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(200)
            .render_report(&mut out, error)
            .unwrap();
        out
    }

    fn problems(dir: &Path, text: &str) -> Vec<SpecProblem> {
        match parse_in(dir, text) {
            Err(SpecError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    const HEADER: &str = "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 1.0.0\n";
    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_full_spec_resolves_paths_against_the_spec_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tool_1.0_amd64.deb"), b"x").unwrap();
        std::fs::write(dir.path().join("helper"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("pause")).unwrap();
        std::fs::write(dir.path().join("pause/index.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("calico.yaml"), b"x").unwrap();
        let text = format!(
            "{HEADER}packages:\n  - jq\n  - name: containerd\n    version: 1.6.20\n  - path: tool_1.0_amd64.deb\n\
             binaries:\n  - name: kubeadm\n    version: 1.30.2\n    url: https://example.com/kubeadm\n    sha256: sha256:{}\n\
             \x20 - name: helper\n    version: 0.3.0\n    path: helper\n\
             images:\n  - name: pause\n    tag: \"3.9\"\n    ociLayout: pause\n  - name: calico/node\n    tag: v3.27.0\n    docker: calico/node:v3.27.0\n\
             manifests:\n  - path: calico.yaml\n",
            SHA.to_uppercase()
        );
        let spec = parse_in(dir.path(), &text).unwrap();
        assert_eq!(spec.version, "1.0.0");
        assert_eq!(
            spec.packages,
            vec![
                PackageSource::Apt {
                    name: "jq".into(),
                    version: None
                },
                PackageSource::Apt {
                    name: "containerd".into(),
                    version: Some("1.6.20".into())
                },
                PackageSource::File(LocalPath {
                    written: "tool_1.0_amd64.deb".into(),
                    resolved: dir.path().join("tool_1.0_amd64.deb"),
                }),
            ]
        );
        assert_eq!(
            spec.binaries[0].source,
            BinarySource::Url {
                url: "https://example.com/kubeadm".into(),
                sha256: SHA.into()
            }
        );
        assert_eq!(
            spec.images[1].source,
            ImageSource::Docker("calico/node:v3.27.0".into())
        );
        assert_eq!(spec.manifests[0].name, "calico");
        assert_eq!(spec.manifests[0].version, "1.0.0");
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{HEADER}binaries:\n  - name: a\n    version: 1\n    url: https://example.com/a\n\
             \x20 - name: b\n    version: 1\n    url: https://example.com/b\n    path: b\n\
             \x20 - name: c\n    version: 1\n    path: missing\n    sha256: {SHA}\n\
             images:\n  - name: Pause\n    tag: \"3.9\"\n    docker: pause:3.9\n"
        );
        let found = problems(dir.path(), &text);
        let fields: Vec<(u64, &str)> = found.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                (5, "binaries[0].sha256"),
                (8, "binaries[1]"),
                (12, "binaries[2].path"),
                (17, "images[0].name"),
            ]
        );
        assert!(
            found[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("pin the download")
        );
        // Rendered like inventory problems: each on its line of the file.
        let message = render(&parse_in(dir.path(), &text).unwrap_err());
        assert!(message.contains("bundle.yaml: 4 problem(s)"), "{message}");
        assert!(
            message.contains("binaries[0].sha256: is required with `url`"),
            "{message}"
        );
        assert!(message.contains("bundle.yaml:5:5]"), "{message}");
    }

    #[test]
    fn unknown_fields_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{HEADER}binaries:\n  - name: a\n    versoin: 1\n");
        let error = parse_in(dir.path(), &text).unwrap_err();
        let SpecError::Parse { source, .. } = &error else {
            panic!("{error:?}");
        };
        let rendered = source.to_string();
        assert!(rendered.contains("line 6"), "{rendered}");
        assert!(rendered.contains("versoin"), "{rendered}");
        assert!(error.to_string().contains("bundle.yaml"));
    }

    #[test]
    fn header_sources_and_duplicates_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let text = "apiVersion: v1\nkind: Bundle\nversion: \"\"\n\
                    packages:\n  - {}\n  - Not_A_Package\n  - name: a\n    path: b.deb\n\
                    binaries:\n  - name: x\n    version: 1\n    url: ftp://h/x\n    sha256: abc\n\
                    images:\n  - name: a\n    tag: t\n  - name: a\n    tag: t\n    docker: a\n  - name: a/b\n    tag: t\n    docker: a/b\n";
        let found = problems(dir.path(), text);
        let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "apiVersion",
                "kind",
                "version",
                "packages[0]",
                "packages[1].name",
                "packages[2]",
                "binaries[0].sha256",
                "images[0]",
                "images",
            ],
            "{found:#?}"
        );
        assert!(found[8].message.contains("nested inside image \"a\""));
    }

    #[test]
    fn registry_images_are_pinned_and_named_after_their_reference() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{HEADER}images:\n  - registry: registry.k8s.io/coredns/coredns:v1.14.2@sha256:{SHA}\n\
             \x20 - registry: 127.0.0.1:5000/pause:3.10@sha256:{SHA}\n    name: sandbox\n    tag: \"3\"\n\
             \x20   platform: linux/arm64/v8\n    insecure: true\n"
        );
        let spec = parse_in(dir.path(), &text).unwrap();
        assert_eq!(
            (spec.images[0].name.as_str(), spec.images[0].tag.as_str()),
            ("coredns/coredns", "v1.14.2")
        );
        let ImageSource::Registry(first) = &spec.images[0].source else {
            panic!("{:?}", spec.images[0]);
        };
        assert_eq!(first.reference.digest, SHA);
        assert_eq!(first.platform, Platform::linux_amd64());
        assert!(!first.insecure);
        let ImageSource::Registry(second) = &spec.images[1].source else {
            panic!("{:?}", spec.images[1]);
        };
        assert_eq!(
            (spec.images[1].name.as_str(), spec.images[1].tag.as_str()),
            ("sandbox", "3")
        );
        assert_eq!(second.platform.to_string(), "linux/arm64/v8");
        assert!(second.insecure);
    }

    #[test]
    fn a_registry_image_without_a_digest_or_with_stray_fields_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{HEADER}images:\n  - registry: registry.k8s.io/kube-proxy:v1.36.4\n\
             \x20 - registry: registry.k8s.io/pause:3.10@sha256:{SHA}\n    platform: amd64\n\
             \x20 - name: a\n    tag: \"1\"\n    docker: a:1\n    platform: linux/amd64\n"
        );
        let found = problems(dir.path(), &text);
        let fields: Vec<(u64, &str)> = found.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                (5, "images[0].registry"),
                (6, "images[1].platform"),
                (8, "images[2].platform"),
            ]
        );
        assert!(
            found[0]
                .message
                .contains("has no digest: a registry image is pinned by its sha256"),
            "{found:#?}"
        );
        assert!(found[0].hint.as_deref().unwrap().contains("skopeo inspect"));
        assert_eq!(found[2].message, "only goes with `registry`");
    }

    #[test]
    fn the_kubernetes_version_agrees_with_its_binaries_and_images() {
        let dir = tempfile::tempdir().unwrap();
        let kubernetes = |version: &str, kubelet: &str, apiserver: &str| {
            format!(
                "{HEADER}kubernetesVersion: {version}\nbinaries:\n  - name: kubelet\n    version: {kubelet}\n\
                 \x20   url: https://dl.k8s.io/kubelet\n    sha256: {SHA}\n\
                 images:\n  - registry: registry.k8s.io/kube-apiserver:{apiserver}@sha256:{SHA}\n\
                 \x20 - registry: registry.k8s.io/pause:3.10@sha256:{SHA}\n"
            )
        };
        let spec = parse_in(dir.path(), &kubernetes("1.36.4", "1.36.4", "v1.36.4")).unwrap();
        assert_eq!(spec.kubernetes_version.as_deref(), Some("1.36.4"));
        assert_eq!(
            spec.missing_for_kubernetes(),
            [
                "kubeadm",
                "kubectl",
                "kube-controller-manager",
                "kube-scheduler",
                "kube-proxy",
                "coredns/coredns"
            ]
        );
        let found = problems(dir.path(), &kubernetes("1.36.4", "1.36.3", "v1.36.2"));
        let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["binaries[0].version", "images[0].tag"]);
        assert_eq!(
            found[0].message,
            "kubelet 1.36.3 is not the bundle's Kubernetes 1.36.4"
        );
        assert_eq!(
            found[1].message,
            "kube-apiserver:v1.36.2 is not the bundle's Kubernetes v1.36.4"
        );
        let found = problems(dir.path(), &kubernetes("v1.36.4", "1.36.4", "v1.36.4"));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].field, "kubernetesVersion");
        assert!(found[0].hint.as_deref().unwrap().contains("without a `v`"));
        // Without `kubernetesVersion` nothing is asked of the entries.
        let text =
            kubernetes("1.36.4", "1.30.0", "v1.2.3").replace("kubernetesVersion: 1.36.4\n", "");
        let spec = parse_in(dir.path(), &text).unwrap();
        assert!(spec.missing_for_kubernetes().is_empty());
    }

    /// The bundle once had a grammar of its own that let `___` and `_-` through: such a
    /// bundle built, then its registry refused to serve the image.
    #[test]
    fn an_image_name_the_registry_would_refuse_is_refused_here() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{HEADER}images:\n  - name: kube___proxy\n    tag: v1\n    docker: kube-proxy:v1\n\
             \x20 - name: calico/node_-ebpf\n    tag: v1\n    docker: calico/node:v1\n"
        );
        let found = problems(dir.path(), &text);
        let fields: Vec<(u64, &str)> = found.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(fields, vec![(5, "images[0].name"), (8, "images[1].name")]);
        let message = render(&parse_in(dir.path(), &text).unwrap_err());
        assert!(
            message.contains(
                "images[0].name: \"kube___proxy\" is not an OCI repository name: a \
                 registry would refuse it"
            ),
            "{message}"
        );
        assert!(
            message.contains("name: kube___proxy"),
            "the line itself: {message}"
        );
        assert!(
            message.contains("help: lower-case letters and digits, joined by `.`, `_`, `__`"),
            "{message}"
        );
        for name in ["kube___proxy", "calico/node_-ebpf"] {
            assert!(!metalk8s_model::oci::is_repository_name(name));
        }
    }

    #[test]
    fn names_follow_their_grammars() {
        assert!(is_debian_package_name("libc6:amd64"));
        assert!(!is_debian_package_name("a"));
        assert_eq!(normalize_sha256(&format!(" {SHA} ")).as_deref(), Some(SHA));
        assert_eq!(normalize_sha256("abc"), None);
    }

    #[test]
    fn a_manifest_comes_from_a_pinned_url_or_a_local_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("local.yaml"), b"x").unwrap();
        let url = "https://example.com/v3.32.1/manifests/calico.yaml";
        let text = format!(
            "{HEADER}manifests:\n  - url: {url}\n    version: 3.32.1\n    sha256: {SHA}\n\
             \x20 - path: local.yaml\n"
        );
        let spec = parse_in(dir.path(), &text).unwrap();
        assert_eq!(spec.manifests[0].name, "calico");
        assert_eq!(spec.manifests[0].file_name(), "calico.yaml");
        assert_eq!(
            spec.manifests[0].source,
            ManifestSource::Url {
                url: url.into(),
                sha256: SHA.into()
            }
        );
        assert_eq!(spec.manifests[0].origin(), url);
        assert_eq!(spec.manifests[1].name, "local");
        assert_eq!(spec.manifests[1].origin(), "file:local.yaml");

        let text = format!(
            "{HEADER}manifests:\n  - url: {url}\n\
             \x20 - url: {url}\n    sha256: nope\n\
             \x20 - url: https://example.com/\n    sha256: {SHA}\n\
             \x20 - url: {url}\n    path: local.yaml\n\
             \x20 - path: local.yaml\n    sha256: {SHA}\n\
             \x20 - name: empty\n"
        );
        let found = problems(dir.path(), &text);
        let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "manifests[0].sha256",
                "manifests[1].sha256",
                "manifests[2].url",
                "manifests[3]",
                "manifests[4].sha256",
                "manifests[5]",
            ],
            "{found:#?}"
        );
        assert_eq!(found[0].message, "is required with `url`");
    }
}
