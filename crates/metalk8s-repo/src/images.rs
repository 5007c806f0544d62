//! The bundle's container images: OCI image layouts under `images/<name>/`, found by their
//! `oci-layout` file, each one a registry repository named `<name>` whose tags are the
//! `org.opencontainers.image.ref.name` annotations of its `index.json`.
//!
//! Blobs and manifests are checked against their digests before they are served: see
//! [`crate::verify`] for blobs; manifests (at most 4 MiB) are read whole, checked and kept
//! in memory, so what is served is exactly what was checked.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use metalk8s_model::oci::{is_repository_name, is_tag};
use serde::Deserialize;

use crate::reference::{Digest, DigestError, Reference};
use crate::verify::{VerifiedFile, Verifier};

/// Directory of the bundle holding the image layouts.
pub const IMAGES_DIR: &str = "images";
/// The file that marks a directory as an OCI image layout.
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
/// The annotation of an `index.json` entry that names its tag.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Largest manifest served (the limit the distribution specification suggests registries
/// accept); a larger blob is not a manifest.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A malformed image layout found at startup. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a valid OCI {what}", path.display())]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{}: {name:?} is not a valid repository name (lower-case letters and digits separated by \
         `.`, `_`, `__`, `-` or `/`)",
        path.display()
    )]
    InvalidName { path: PathBuf, name: String },
    #[error("{}: manifest entry {digest} has no {REF_NAME_ANNOTATION} annotation", path.display())]
    MissingTag { path: PathBuf, digest: String },
    #[error("{}: {tag:?} is not a valid tag", path.display())]
    InvalidTag { path: PathBuf, tag: String },
    #[error("{}: tag {tag:?} is listed twice", path.display())]
    DuplicateTag { path: PathBuf, tag: String },
    #[error("{}: invalid manifest digest", path.display())]
    InvalidDigest {
        path: PathBuf,
        #[source]
        source: DigestError,
    },
    #[error("{}: symlinks and special files are refused", path.display())]
    NotRegularFile { path: PathBuf },
}

/// Why a manifest or blob cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("repository {name} is not in the bundle")]
    NameUnknown { name: String },
    #[error("manifest {reference} is not in repository {name}")]
    ManifestUnknown { name: String, reference: String },
    #[error("blob {digest} is not in repository {name}")]
    BlobUnknown { name: String, digest: Digest },
    #[error("{}: content hashes to sha256:{found}, not {digest}", path.display())]
    DigestMismatch {
        path: PathBuf,
        digest: Digest,
        found: String,
    },
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What an `index.json` entry says about a tagged manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// One OCI image layout of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRepository {
    /// Repository name: the layout's path under `images/`.
    pub name: String,
    pub dir: PathBuf,
    pub tags: BTreeMap<String, Descriptor>,
}

impl ImageRepository {
    /// Where the blob `digest` of this repository is (it may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        // `digest.hex()` is 64 hex digits: it cannot leave `blobs/sha256/`.
        self.dir.join("blobs/sha256").join(digest.hex())
    }
}

/// A manifest checked against its digest, held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

/// Every image repository of a bundle, and the verdicts of the checks made so far.
#[derive(Debug, Default)]
pub struct ImageStore {
    repositories: BTreeMap<String, ImageRepository>,
    manifests: Mutex<HashMap<(String, Digest), Arc<Manifest>>>,
    verifier: Verifier,
}

impl ImageStore {
    /// Finds every image layout under `bundle/images/` and reads its `index.json`. No
    /// `images/` directory means no repositories.
    pub fn load(bundle: &Path) -> Result<ImageStore, ImageError> {
        let root = bundle.join(IMAGES_DIR);
        let mut repositories = BTreeMap::new();
        if root.is_dir() {
            find_layouts(&root, "", &mut repositories)?;
        }
        Ok(ImageStore {
            repositories,
            ..ImageStore::default()
        })
    }

    pub fn repositories(&self) -> impl Iterator<Item = &ImageRepository> {
        self.repositories.values()
    }

    pub fn repository(&self, name: &str) -> Result<&ImageRepository, FetchError> {
        self.repositories
            .get(name)
            .ok_or_else(|| FetchError::NameUnknown {
                name: name.to_owned(),
            })
    }

    /// The manifest `reference` of repository `name`, checked against its digest.
    pub async fn manifest(
        &self,
        name: &str,
        reference: &Reference,
    ) -> Result<Arc<Manifest>, FetchError> {
        let repository = self.repository(name)?;
        let unknown = || FetchError::ManifestUnknown {
            name: name.to_owned(),
            reference: reference.to_string(),
        };
        let (digest, listed_type) = match reference {
            Reference::Tag(tag) => {
                let descriptor = repository.tags.get(tag).ok_or_else(unknown)?;
                (&descriptor.digest, Some(descriptor.media_type.as_str()))
            }
            Reference::Digest(digest) => {
                let listed = repository.tags.values().find(|d| &d.digest == digest);
                (digest, listed.map(|d| d.media_type.as_str()))
            }
        };
        let key = (name.to_owned(), digest.clone());
        if let Some(manifest) = self.cached_manifest(&key) {
            return Ok(manifest);
        }
        let path = repository.blob_path(digest);
        let expected = digest.clone();
        let content = tokio::task::spawn_blocking(move || read_manifest_file(&path, &expected))
            .await
            .map_err(|join| FetchError::Io {
                path: repository.blob_path(digest),
                source: io::Error::other(join),
            })?
            .inspect_err(|error| {
                if let FetchError::DigestMismatch { path, found, .. } = error {
                    tracing::error!(
                        path = %path.display(),
                        %digest,
                        %found,
                        "manifest does not hash to its digest; refusing to serve it"
                    );
                }
            })?
            .ok_or_else(unknown)?;
        let media_type = manifest_media_type(&content, listed_type).ok_or_else(unknown)?;
        let manifest = Arc::new(Manifest {
            digest: digest.clone(),
            media_type,
            content,
        });
        self.manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, manifest.clone());
        Ok(manifest)
    }

    fn cached_manifest(&self, key: &(String, Digest)) -> Option<Arc<Manifest>> {
        self.manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The blob `digest` of repository `name`, opened and checked against its digest.
    pub async fn blob(&self, name: &str, digest: &Digest) -> Result<VerifiedFile, FetchError> {
        let repository = self.repository(name)?;
        let path = repository.blob_path(digest);
        self.verifier
            .open(&path, digest)
            .await?
            .ok_or_else(|| FetchError::BlobUnknown {
                name: name.to_owned(),
                digest: digest.clone(),
            })
    }
}

fn find_layouts(
    root: &Path,
    prefix: &str,
    repositories: &mut BTreeMap<String, ImageRepository>,
) -> Result<(), ImageError> {
    let dir = root.join(prefix);
    if dir.join(OCI_LAYOUT_FILE).is_file() {
        let repository = read_layout(&dir, prefix)?;
        repositories.insert(repository.name.clone(), repository);
        return Ok(());
    }
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ImageError::Io { path, source }
    };
    let mut entries = fs::read_dir(&dir)
        .map_err(io_error(&dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error(&dir))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_symlink() {
            return Err(ImageError::NotRegularFile { path });
        }
        if !file_type.is_dir() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|name| ImageError::InvalidName {
                path: path.clone(),
                name: name.to_string_lossy().into_owned(),
            })?;
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        find_layouts(root, &relative, repositories)?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayout {
    #[allow(dead_code)] // Parsed to check the file, not otherwise used.
    image_layout_version: String,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &'static str,
) -> Result<T, ImageError> {
    let bytes = fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
        path: path.to_owned(),
        what,
        source,
    })
}

fn read_layout(dir: &Path, name: &str) -> Result<ImageRepository, ImageError> {
    if !is_repository_name(name) {
        return Err(ImageError::InvalidName {
            path: dir.to_owned(),
            name: name.to_owned(),
        });
    }
    read_json::<OciLayout>(&dir.join(OCI_LAYOUT_FILE), "image layout file")?;
    let index_path = dir.join("index.json");
    let index: OciIndex = read_json(&index_path, "image index")?;
    let mut tags = BTreeMap::new();
    for entry in index.manifests {
        let digest = Digest::parse(&entry.digest).map_err(|source| ImageError::InvalidDigest {
            path: index_path.clone(),
            source,
        })?;
        let tag =
            entry
                .annotations
                .get(REF_NAME_ANNOTATION)
                .ok_or_else(|| ImageError::MissingTag {
                    path: index_path.clone(),
                    digest: entry.digest.clone(),
                })?;
        if !is_tag(tag) {
            return Err(ImageError::InvalidTag {
                path: index_path.clone(),
                tag: tag.clone(),
            });
        }
        let descriptor = Descriptor {
            media_type: entry.media_type,
            digest,
            size: entry.size,
        };
        if tags.insert(tag.clone(), descriptor).is_some() {
            return Err(ImageError::DuplicateTag {
                path: index_path.clone(),
                tag: tag.clone(),
            });
        }
    }
    Ok(ImageRepository {
        name: name.to_owned(),
        dir: dir.to_owned(),
        tags,
    })
}

/// Reads a blob that may be a manifest. `None`: no such file, or too big to be one.
fn read_manifest_file(path: &Path, digest: &Digest) -> Result<Option<Bytes>, FetchError> {
    let io_error = |source| FetchError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(error)),
    };
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() || metadata.len() > MAX_MANIFEST_SIZE {
        return Ok(None);
    }
    let mut content = Vec::with_capacity(metadata.len() as usize);
    io::Read::read_to_end(
        &mut io::Read::take(&file, MAX_MANIFEST_SIZE + 1),
        &mut content,
    )
    .map_err(io_error)?;
    let found = Digest::of(&content);
    if &found != digest {
        return Err(FetchError::DigestMismatch {
            path: path.to_owned(),
            digest: digest.clone(),
            found: found.hex().to_owned(),
        });
    }
    Ok(Some(Bytes::from(content)))
}

/// The media type a manifest is served with: its own `mediaType` field, else the one its
/// `index.json` entry gives, else what its shape says. `None`: not a manifest.
fn manifest_media_type(content: &[u8], listed: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(content).ok()?;
    let media_type = match (probe.media_type.as_deref(), listed) {
        (Some(own), _) => own,
        (None, Some(listed)) => listed,
        (None, None) if probe.manifests.is_some() => OCI_INDEX,
        (None, None) if probe.config.is_some() && probe.layers.is_some() => OCI_MANIFEST,
        (None, None) => return None,
    };
    MANIFEST_MEDIA_TYPES
        .contains(&media_type)
        .then(|| media_type.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_come_from_the_manifest_then_the_index_then_its_shape() {
        let own = br#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(
            manifest_media_type(own, Some(OCI_MANIFEST)).unwrap(),
            OCI_INDEX
        );
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(manifest_media_type(bare, None).unwrap(), OCI_MANIFEST);
        assert_eq!(
            manifest_media_type(bare, Some(DOCKER_MANIFEST)).unwrap(),
            DOCKER_MANIFEST
        );
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(manifest_media_type(index, None).unwrap(), OCI_INDEX);
        // A config blob or a layer is not a manifest.
        assert_eq!(
            manifest_media_type(br#"{"architecture":"amd64"}"#, None),
            None
        );
        assert_eq!(manifest_media_type(b"\x1f\x8b binary", None), None);
        let other = br#"{"mediaType":"application/vnd.oci.image.config.v1+json"}"#;
        assert_eq!(manifest_media_type(other, None), None);
    }

    #[test]
    fn layouts_are_found_at_any_depth_and_checked() {
        let bundle = tempfile::tempdir().unwrap();
        let layout = |name: &str, index: &str| {
            let dir = bundle.path().join("images").join(name);
            fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
            fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
            fs::write(dir.join("index.json"), index).unwrap();
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        let entry = |tag: &str| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":3,
                    "annotations":{{"{REF_NAME_ANNOTATION}":"{tag}"}}}}"#
            )
        };
        layout("pause", &format!(r#"{{"manifests":[{}]}}"#, entry("3.9")));
        layout(
            "library/nginx",
            &format!(r#"{{"manifests":[{},{}]}}"#, entry("1.25"), entry("latest")),
        );
        let store = ImageStore::load(bundle.path()).unwrap();
        let names: Vec<_> = store.repositories().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["library/nginx", "pause"]);
        let nginx = store.repository("library/nginx").unwrap();
        assert_eq!(nginx.tags.keys().collect::<Vec<_>>(), ["1.25", "latest"]);
        assert_eq!(nginx.tags["latest"].media_type, OCI_MANIFEST);

        layout("Bad", r#"{"manifests":[]}"#);
        assert!(matches!(
            ImageStore::load(bundle.path()),
            Err(ImageError::InvalidName { name, .. }) if name == "Bad"
        ));
        fs::remove_dir_all(bundle.path().join("images/Bad")).unwrap();
        layout(
            "twice",
            &format!(r#"{{"manifests":[{},{}]}}"#, entry("a"), entry("a")),
        );
        assert!(matches!(
            ImageStore::load(bundle.path()),
            Err(ImageError::DuplicateTag { tag, .. }) if tag == "a"
        ));
        layout(
            "twice",
            r#"{"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}"#,
        );
        assert!(matches!(
            ImageStore::load(bundle.path()),
            Err(ImageError::InvalidDigest { .. })
        ));
    }
}
