//! Container images for `images/<name>/`: one OCI image layout per image.
//!
//! Every image lands as `oci-layout`, `index.json` with a single descriptor annotated
//! `org.opencontainers.image.ref.name: <tag>`, and `blobs/sha256/…` holding exactly the
//! blobs reachable from it, each checked against its digest and size on the way in.
//!
//! Sources: an OCI image layout directory; a `docker save` archive, in the OCI format
//! (docker 25 and later) or the legacy one (`manifest.json`, `<config>.json`,
//! `<id>/layer.tar`, as docker 20.10 writes it), which is converted here; an image of
//! the local docker daemon, exported with `docker save` first; or an image pulled from a
//! registry ([`crate::registry`]), pinned by digest. A legacy layer is an
//! uncompressed tar whose sha256 is its diff ID, so it becomes an
//! `application/vnd.oci.image.layer.v1.tar` blob as is, and the config keeps its bytes
//! (and so its digest, the docker image ID).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use oci_spec::image::{
    Descriptor, Digest, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, OciLayout, OciLayoutBuilder, PlatformBuilder,
};
use serde::Deserialize;

use crate::Component;
use crate::download::LazyDownloader;
use crate::progress::Progress;
use crate::registry::{RegistryError, pull};
use crate::spec::{ImageSource, ImageSpec};
use crate::unpack::{UnpackError, unpack};
use crate::walk::{sha256_file, sha256_reader};

/// The annotation naming a manifest's tag in an image layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Why an image could not be put into the bundle. Each names the source.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not an OCI image layout ({reason})", path.display())]
    NotALayout { path: PathBuf, reason: String },
    #[error("{}: not valid JSON for {what}", path.display())]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{}: no image tagged {tag:?} (found: {})\n    hint: set `tag` to one of those",
        origin.display(),
        if found.is_empty() { "none".to_owned() } else { found.join(", ") }
    )]
    NoSuchTag {
        origin: PathBuf,
        tag: String,
        found: Vec<String>,
    },
    #[error("{}: {count} images are tagged {tag:?}; cannot choose", origin.display())]
    AmbiguousTag {
        origin: PathBuf,
        tag: String,
        count: usize,
    },
    #[error("{}: blob {digest} is missing", layout.display())]
    MissingBlob { layout: PathBuf, digest: String },
    #[error(
        "{}: blob {digest} is corrupt (its content hashes to sha256:{actual}, {size} bytes, \
         where {expected_size} bytes were announced)",
        layout.display()
    )]
    CorruptBlob {
        layout: PathBuf,
        digest: String,
        actual: String,
        size: u64,
        expected_size: u64,
    },
    #[error("{}: digest {digest} is not sha256, the only algorithm supported", layout.display())]
    UnsupportedDigest { layout: PathBuf, digest: String },
    #[error("{}: not a docker save archive ({reason})", path.display())]
    NotADockerArchive { path: PathBuf, reason: String },
    #[error(
        "{}: layer {layer} hashes to sha256:{actual}, but the image config lists diff ID {expected}",
        archive.display()
    )]
    LayerMismatch {
        archive: PathBuf,
        layer: String,
        expected: String,
        actual: String,
    },
    #[error(
        "`docker save {reference}` failed ({status}): {stderr}\n    hint: the image must be \
         in the local docker daemon (`docker images`); `docker pull` or `docker load` it first"
    )]
    DockerSave {
        reference: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error(
        "cannot run docker\n    hint: `docker:` images need the docker CLI and a running daemon"
    )]
    DockerMissing(#[source] io::Error),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("cannot describe the converted image")]
    Oci(#[from] oci_spec::OciSpecError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Puts `image` into `dest` (its future `images/<name>/`), using `work` as scratch space
/// on the same file system, and returns its component.
pub(crate) fn import_image(
    image: &ImageSpec,
    dest: &Path,
    work: &Path,
    downloads: &LazyDownloader<'_>,
    progress: &dyn Progress,
) -> Result<Component, ImageError> {
    fs::create_dir_all(work).map_err(io_error(work))?;
    let (origin, digest) = match &image.source {
        ImageSource::OciLayout(path) => {
            progress.step(&format!(
                "image {}:{} from {}",
                image.name, image.tag, path.written
            ));
            let digest = copy_layout(&path.resolved, &path.resolved, image, dest)?;
            (format!("oci-layout:{}", path.written), digest)
        }
        ImageSource::DockerArchive(path) => {
            progress.step(&format!(
                "image {}:{} from {}",
                image.name, image.tag, path.written
            ));
            let digest = import_docker_archive(&path.resolved, image, dest, work)?;
            (format!("docker-archive:{}", path.written), digest)
        }
        ImageSource::Docker(reference) => {
            progress.step(&format!(
                "image {}:{} from docker ({reference})",
                image.name, image.tag
            ));
            let archive = work.join("docker-save.tar");
            docker_save(reference, &archive)?;
            let digest = import_docker_archive(&archive, image, dest, work)?;
            (format!("docker:{reference}"), digest)
        }
        ImageSource::Registry(registry) => {
            let reference = &registry.reference;
            progress.step(&format!(
                "image {}:{} from {reference} ({})",
                image.name, image.tag, registry.platform
            ));
            let downloader = downloads.get().map_err(RegistryError::from)?;
            let writer = LayoutWriter::create(dest)?;
            let digest = pull(registry, &image.tag, &writer, downloader, progress)?;
            (
                format!(
                    "registry:{}/{}:{}",
                    reference.host, reference.repository, reference.tag
                ),
                digest,
            )
        }
    };
    Ok(Component {
        name: image.name.clone(),
        version: image.tag.clone(),
        origin: format!("{origin}@{digest}"),
    })
}

fn docker_save(reference: &str, archive: &Path) -> Result<(), ImageError> {
    let output = Command::new("docker")
        .args(["save", "--output"])
        .arg(archive)
        .arg(reference)
        .stdin(Stdio::null())
        .output()
        .map_err(ImageError::DockerMissing)?;
    if output.status.success() {
        return Ok(());
    }
    Err(ImageError::DockerSave {
        reference: reference.to_owned(),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// A layout being written: `oci-layout`, `index.json`, `blobs/sha256/`.
pub(crate) struct LayoutWriter {
    root: PathBuf,
}

impl LayoutWriter {
    pub(crate) fn create(root: &Path) -> Result<Self, ImageError> {
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
        Ok(LayoutWriter {
            root: root.to_owned(),
        })
    }

    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs").join("sha256").join(hex)
    }

    /// Stores `bytes` as a blob; returns its sha256 hex.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let (_, hex) = sha256_reader(bytes).expect("hashing bytes in memory cannot fail");
        let path = self.blob_path(&hex);
        fs::write(&path, bytes).map_err(io_error(&path))?;
        Ok(hex)
    }

    /// Moves the file at `source` in as a blob (renaming, as it is on the same file
    /// system); returns its size and sha256 hex.
    fn adopt(&self, source: &Path) -> Result<(u64, String), ImageError> {
        let (size, hex) = sha256_file(source).map_err(io_error(source))?;
        let path = self.blob_path(&hex);
        if !path.exists() {
            fs::rename(source, &path).map_err(io_error(&path))?;
        }
        Ok((size, hex))
    }

    /// Copies a blob of another layout, checking its digest and size.
    fn copy_checked(&self, layout: &Path, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let hex = sha256_hex(layout, descriptor.digest())?;
        let source = layout.join("blobs").join("sha256").join(&hex);
        let file = File::open(&source).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => ImageError::MissingBlob {
                layout: layout.to_owned(),
                digest: descriptor.digest().to_string(),
            },
            _ => ImageError::Io {
                path: source.clone(),
                source: error,
            },
        })?;
        let dest = self.blob_path(&hex);
        let mut out = File::create(&dest).map_err(io_error(&dest))?;
        // Manifests and indexes are kept to be walked; layers only pass through.
        let keep = is_walkable(descriptor.media_type());
        let mut kept = Vec::new();
        let mut tee = Tee {
            inner: file,
            out: &mut out,
            keep: keep.then_some(&mut kept),
        };
        let (size, actual) = sha256_reader(&mut tee).map_err(io_error(&source))?;
        if actual != hex || size != descriptor.size() {
            drop(out);
            fs::remove_file(&dest).ok();
            return Err(ImageError::CorruptBlob {
                layout: layout.to_owned(),
                digest: descriptor.digest().to_string(),
                actual,
                size,
                expected_size: descriptor.size(),
            });
        }
        Ok(kept)
    }

    /// Writes `oci-layout` and an `index.json` naming only `manifest`.
    pub(crate) fn finish(&self, mut manifest: Descriptor, tag: &str) -> Result<(), ImageError> {
        manifest.set_annotations(Some(
            [(REF_NAME_ANNOTATION.to_owned(), tag.to_owned())].into(),
        ));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest])
            .build()?;
        let layout = OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()?;
        for (name, json) in [
            ("index.json", to_json(&index)),
            ("oci-layout", to_json(&layout)),
        ] {
            let path = self.root.join(name);
            fs::write(&path, json).map_err(io_error(&path))?;
        }
        Ok(())
    }
}

/// Copies bytes to `out` (and into `keep`) while they are read.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut File,
    keep: Option<&'a mut Vec<u8>>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buf)?;
        self.out.write_all(&buf[..count])?;
        if let Some(keep) = self.keep.as_deref_mut() {
            keep.extend_from_slice(&buf[..count]);
        }
        Ok(count)
    }
}

/// JSON with sorted keys (through `serde_json::Value`), so that the same image always
/// gives the same bytes and digests.
fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("OCI types serialize to JSON");
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

fn sha256_hex(layout: &Path, digest: &Digest) -> Result<String, ImageError> {
    let text = digest.to_string();
    match text.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(hex.to_lowercase())
        }
        _ => Err(ImageError::UnsupportedDigest {
            layout: layout.to_owned(),
            digest: text,
        }),
    }
}

pub(crate) fn digest_of(hex: &str) -> Digest {
    format!("sha256:{hex}")
        .parse()
        .expect("a sha256 hex is a valid digest")
}

fn is_index(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageIndex || media_type.to_string() == DOCKER_MANIFEST_LIST
}

fn is_manifest(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageManifest || media_type.to_string() == DOCKER_MANIFEST
}

fn is_walkable(media_type: &MediaType) -> bool {
    is_index(media_type) || is_manifest(media_type)
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, ImageError> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ImageError::NotALayout {
            path: path.parent().unwrap_or(path).to_owned(),
            reason: format!(
                "no {}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
        },
        _ => ImageError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
        path: path.to_owned(),
        what,
        source,
    })
}

/// Copies the image tagged `image.tag` of the layout in `layout` (read from `source`,
/// named in messages) into `dest`; returns the manifest digest.
fn copy_layout(
    layout: &Path,
    source: &Path,
    image: &ImageSpec,
    dest: &Path,
) -> Result<String, ImageError> {
    let header: OciLayout = read_json(&layout.join("oci-layout"), "an oci-layout file")?;
    if !header.image_layout_version().starts_with("1.") {
        return Err(ImageError::NotALayout {
            path: layout.to_owned(),
            reason: format!("layout version {}", header.image_layout_version()),
        });
    }
    let index: ImageIndex = read_json(&layout.join("index.json"), "an image index")?;
    let selected = select(index.manifests(), &image.tag, source)?.clone();
    let writer = LayoutWriter::create(dest)?;
    let mut pending = vec![selected.clone()];
    let mut copied = BTreeSet::new();
    while let Some(descriptor) = pending.pop() {
        if !copied.insert(descriptor.digest().to_string()) {
            continue;
        }
        let bytes = writer.copy_checked(layout, &descriptor)?;
        let blob = || {
            layout
                .join("blobs")
                .join(descriptor.digest().to_string().replace(':', "/"))
        };
        if is_index(descriptor.media_type()) {
            let child: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
                    path: blob(),
                    what: "an image index",
                    source,
                })?;
            pending.extend(child.manifests().iter().cloned());
        } else if is_manifest(descriptor.media_type()) {
            let manifest: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
                    path: blob(),
                    what: "an image manifest",
                    source,
                })?;
            pending.push(manifest.config().clone());
            pending.extend(manifest.layers().iter().cloned());
        }
    }
    writer.finish(selected.clone(), &image.tag)?;
    Ok(selected.digest().to_string())
}

/// The manifest of an index tagged `tag`: by its ref name (or containerd image name), or
/// the only one there is.
fn select<'a>(
    manifests: &'a [Descriptor],
    tag: &str,
    source: &Path,
) -> Result<&'a Descriptor, ImageError> {
    let annotation = |descriptor: &'a Descriptor, key: &str| {
        descriptor
            .annotations()
            .as_ref()
            .and_then(|annotations| annotations.get(key))
            .map(String::as_str)
    };
    let tagged: Vec<&Descriptor> = manifests
        .iter()
        .filter(|descriptor| {
            annotation(descriptor, REF_NAME_ANNOTATION).is_some_and(|name| {
                name == tag || name.rsplit_once(':').is_some_and(|(_, t)| t == tag)
            }) || annotation(descriptor, CONTAINERD_NAME_ANNOTATION)
                .is_some_and(|name| name.rsplit_once(':').is_some_and(|(_, t)| t == tag))
        })
        .collect();
    match tagged.as_slice() {
        [one] => Ok(one),
        [] if manifests.len() == 1 => Ok(&manifests[0]),
        [] => Err(ImageError::NoSuchTag {
            origin: source.to_owned(),
            tag: tag.to_owned(),
            found: manifests
                .iter()
                .filter_map(|d| annotation(d, REF_NAME_ANNOTATION))
                .map(str::to_owned)
                .collect(),
        }),
        many => Err(ImageError::AmbiguousTag {
            origin: source.to_owned(),
            tag: tag.to_owned(),
            count: many.len(),
        }),
    }
}

/// An entry of a legacy `docker save` manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The parts of an image config the conversion needs.
#[derive(Debug, Deserialize)]
struct LegacyConfig {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
    rootfs: LegacyRootFs,
}

#[derive(Debug, Deserialize)]
struct LegacyRootFs {
    diff_ids: Vec<String>,
}

fn import_docker_archive(
    archive: &Path,
    image: &ImageSpec,
    dest: &Path,
    work: &Path,
) -> Result<String, ImageError> {
    let unpacked = work.join("unpacked");
    if unpacked.exists() {
        fs::remove_dir_all(&unpacked).map_err(io_error(&unpacked))?;
    }
    fs::create_dir_all(&unpacked).map_err(io_error(&unpacked))?;
    let file = File::open(archive).map_err(io_error(archive))?;
    unpack(io::BufReader::new(file), archive, &unpacked)?;
    let result = if unpacked.join("index.json").is_file() && unpacked.join("oci-layout").is_file() {
        copy_layout(&unpacked, archive, image, dest)
    } else {
        convert_legacy(&unpacked, archive, image, dest)
    };
    fs::remove_dir_all(&unpacked).map_err(io_error(&unpacked))?;
    result
}

/// Builds an OCI layout in `dest` from an unpacked legacy `docker save` archive.
fn convert_legacy(
    unpacked: &Path,
    archive: &Path,
    image: &ImageSpec,
    dest: &Path,
) -> Result<String, ImageError> {
    let not_docker = |reason: String| ImageError::NotADockerArchive {
        path: archive.to_owned(),
        reason,
    };
    let manifest_path = unpacked.join("manifest.json");
    if !manifest_path.is_file() {
        return Err(not_docker(
            "neither index.json and oci-layout nor manifest.json".into(),
        ));
    }
    let entries: Vec<LegacyEntry> = read_json(&manifest_path, "a docker save manifest")?;
    let entry = select_legacy(&entries, image, archive)?;
    let member = |name: &str| -> Result<PathBuf, ImageError> {
        crate::unpack::normalize(name)
            .ok()
            .flatten()
            .map(|path| unpacked.join(path))
            .filter(|path| path.is_file())
            .ok_or_else(|| not_docker(format!("manifest.json names {name:?}, which is not in it")))
    };
    let config_path = member(&entry.config)?;
    let config_bytes = fs::read(&config_path).map_err(io_error(&config_path))?;
    let config: LegacyConfig =
        serde_json::from_slice(&config_bytes).map_err(|source| ImageError::Json {
            path: config_path.clone(),
            what: "an image config",
            source,
        })?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(not_docker(format!(
            "{} layers for {} diff IDs in the config",
            entry.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let writer = LayoutWriter::create(dest)?;
    let mut layers = Vec::new();
    for (layer, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let path = member(layer)?;
        let (size, hex) = writer.adopt(&path)?;
        if *diff_id != format!("sha256:{hex}") {
            return Err(ImageError::LayerMismatch {
                archive: archive.to_owned(),
                layer: layer.clone(),
                expected: diff_id.clone(),
                actual: hex,
            });
        }
        layers.push(Descriptor::new(
            MediaType::ImageLayer,
            size,
            digest_of(&hex),
        ));
    }
    let config_hex = writer.put_bytes(&config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            digest_of(&config_hex),
        ))
        .layers(layers)
        .build()?;
    let manifest_bytes = to_json(&manifest);
    let manifest_hex = writer.put_bytes(&manifest_bytes)?;
    let mut platform = PlatformBuilder::default()
        .architecture(config.architecture.as_str())
        .os(config.os.as_str());
    if let Some(variant) = config.variant {
        platform = platform.variant(variant);
    }
    let mut descriptor = Descriptor::new(
        MediaType::ImageManifest,
        manifest_bytes.len() as u64,
        digest_of(&manifest_hex),
    );
    descriptor.set_platform(Some(platform.build()?));
    writer.finish(descriptor, &image.tag)?;
    Ok(format!("sha256:{manifest_hex}"))
}

/// The entry of a multi-image archive tagged `name:tag` (or `…/name:tag`), or the only one.
fn select_legacy<'a>(
    entries: &'a [LegacyEntry],
    image: &ImageSpec,
    archive: &Path,
) -> Result<&'a LegacyEntry, ImageError> {
    let wanted = format!("{}:{}", image.name, image.tag);
    let tagged: Vec<&LegacyEntry> =
        entries
            .iter()
            .filter(|entry| {
                entry.repo_tags.iter().flatten().any(|repo_tag| {
                    *repo_tag == wanted || repo_tag.ends_with(&format!("/{wanted}"))
                })
            })
            .collect();
    match tagged.as_slice() {
        [one] => Ok(one),
        [] if entries.len() == 1 => Ok(&entries[0]),
        [] => Err(ImageError::NoSuchTag {
            origin: archive.to_owned(),
            tag: wanted,
            found: entries
                .iter()
                .flat_map(|entry| entry.repo_tags.iter().flatten().cloned())
                .collect(),
        }),
        many => Err(ImageError::AmbiguousTag {
            origin: archive.to_owned(),
            tag: wanted,
            count: many.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};
    use tar::EntryType;

    use super::*;
    use crate::progress::Silent;
    use crate::spec::LocalPath;
    use crate::unpack::tests::raw_tar;

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn layer_tar(content: &[u8]) -> Vec<u8> {
        raw_tar(&[("hello.txt", EntryType::Regular, "", content)])
    }

    /// [`import_image`] of a local source: no download cache.
    fn import(image: &ImageSpec, dest: &Path, work: &Path) -> Result<Component, ImageError> {
        let downloads = LazyDownloader::new(Path::new("/nonexistent/download-cache"));
        import_image(image, dest, work, &downloads, &Silent)
    }

    fn spec(name: &str, tag: &str, source: ImageSource) -> ImageSpec {
        ImageSpec {
            name: name.into(),
            tag: tag.into(),
            source,
        }
    }

    fn local(path: &Path) -> LocalPath {
        LocalPath {
            written: path.file_name().unwrap().to_string_lossy().into_owned(),
            resolved: path.to_owned(),
        }
    }

    /// A legacy `docker save` archive of two images sharing their first layer, the second
    /// image's copy of it being a symlink, as docker writes it.
    fn legacy_archive(dir: &Path, diff_id_override: Option<&str>) -> (PathBuf, Vec<Vec<u8>>) {
        let base = layer_tar(b"base");
        let top = layer_tar(b"top");
        let diff_ids = [
            diff_id_override.map_or_else(|| format!("sha256:{}", sha256(&base)), str::to_owned),
            format!("sha256:{}", sha256(&top)),
        ];
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/hello"],"Env":null}},"container_config":{{}},"docker_version":"20.10.24","rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
            diff_ids[0], diff_ids[1]
        );
        let config_name = format!("{}.json", sha256(config.as_bytes()));
        let manifest = format!(
            r#"[{{"Config":"{config_name}","RepoTags":["example.com/app:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}},
               {{"Config":"{config_name}","RepoTags":["other:2"],"Layers":["ccc/layer.tar","bbb/layer.tar"]}}]"#
        );
        let bytes = raw_tar(&[
            ("aaa/", EntryType::Directory, "", b""),
            ("aaa/layer.tar", EntryType::Regular, "", &base),
            ("bbb/layer.tar", EntryType::Regular, "", &top),
            ("ccc/layer.tar", EntryType::Symlink, "../aaa/layer.tar", b""),
            (&config_name, EntryType::Regular, "", config.as_bytes()),
            ("manifest.json", EntryType::Regular, "", manifest.as_bytes()),
        ]);
        let path = dir.join("save.tar");
        fs::write(&path, bytes).unwrap();
        (path, vec![base, top, config.into_bytes()])
    }

    fn read_index(dest: &Path) -> ImageIndex {
        serde_json::from_slice(&fs::read(dest.join("index.json")).unwrap()).unwrap()
    }

    fn blob(dest: &Path, digest: &Digest) -> Vec<u8> {
        fs::read(dest.join("blobs/sha256").join(digest.digest())).unwrap()
    }

    #[test]
    fn a_legacy_docker_archive_becomes_an_oci_layout_with_correct_digests() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, parts) = legacy_archive(dir.path(), None);
        let dest = dir.path().join("out");
        let image = spec("app", "1", ImageSource::DockerArchive(local(&archive)));
        let component = import(&image, &dest, &dir.path().join("work")).unwrap();

        let layout: serde_json::Value =
            serde_json::from_slice(&fs::read(dest.join("oci-layout")).unwrap()).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index = read_index(&dest);
        let [descriptor] = index.manifests().as_slice() else {
            panic!("{index:?}")
        };
        assert_eq!(*descriptor.media_type(), MediaType::ImageManifest);
        assert_eq!(
            descriptor.annotations().as_ref().unwrap()[REF_NAME_ANNOTATION],
            "1"
        );
        let platform = descriptor.platform().as_ref().unwrap();
        assert_eq!(platform.architecture().to_string(), "amd64");
        assert_eq!(platform.os().to_string(), "linux");
        let manifest_bytes = blob(&dest, descriptor.digest());
        assert_eq!(descriptor.digest().digest(), sha256(&manifest_bytes));
        assert_eq!(descriptor.size(), manifest_bytes.len() as u64);
        assert_eq!(
            component.origin,
            format!("docker-archive:save.tar@{}", descriptor.digest())
        );
        assert_eq!(component.version, "1");

        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).unwrap();
        assert_eq!(manifest.schema_version(), 2);
        assert_eq!(*manifest.config().media_type(), MediaType::ImageConfig);
        assert_eq!(blob(&dest, manifest.config().digest()), parts[2]);
        assert_eq!(manifest.config().digest().digest(), sha256(&parts[2]));
        let layers = manifest.layers();
        assert_eq!(layers.len(), 2);
        for (layer, content) in layers.iter().zip(&parts[..2]) {
            assert_eq!(*layer.media_type(), MediaType::ImageLayer);
            assert_eq!(layer.digest().digest(), sha256(content));
            assert_eq!(layer.size(), content.len() as u64);
            assert_eq!(blob(&dest, layer.digest()), *content);
        }
        // Exactly the four blobs, and the scratch space is gone.
        assert_eq!(fs::read_dir(dest.join("blobs/sha256")).unwrap().count(), 4);
        assert!(!dir.path().join("work/unpacked").exists());
    }

    #[test]
    fn the_second_image_of_an_archive_resolves_its_symlinked_layer() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, parts) = legacy_archive(dir.path(), None);
        let dest = dir.path().join("out");
        let image = spec("other", "2", ImageSource::DockerArchive(local(&archive)));
        import(&image, &dest, &dir.path().join("work")).unwrap();
        let index = read_index(&dest);
        let manifest: ImageManifest =
            serde_json::from_slice(&blob(&dest, index.manifests()[0].digest())).unwrap();
        assert_eq!(blob(&dest, manifest.layers()[0].digest()), parts[0]);

        let missing = spec("app", "9", ImageSource::DockerArchive(local(&archive)));
        let error = import(&missing, &dir.path().join("x"), &dir.path().join("w")).unwrap_err();
        assert!(
            error.to_string().contains("example.com/app:1, other:2"),
            "{error}"
        );
    }

    #[test]
    fn a_layer_that_does_not_match_its_diff_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wrong = format!("sha256:{}", "0".repeat(64));
        let (archive, _) = legacy_archive(dir.path(), Some(&wrong));
        let image = spec("app", "1", ImageSource::DockerArchive(local(&archive)));
        let error = import(&image, &dir.path().join("out"), &dir.path().join("w")).unwrap_err();
        assert!(
            matches!(&error, ImageError::LayerMismatch { layer, expected, .. }
                if layer == "aaa/layer.tar" && *expected == wrong),
            "{error:?}"
        );
    }

    /// An OCI layout with one image tagged `v1` (and one tagged `v2`), built by hand.
    fn hand_made_layout(dir: &Path) -> PathBuf {
        let root = dir.join("layout");
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        let put = |bytes: &[u8]| {
            let hex = sha256(bytes);
            fs::write(root.join("blobs/sha256").join(&hex), bytes).unwrap();
            (hex, bytes.len())
        };
        let (layer, layer_size) = put(&layer_tar(b"oci"));
        let (config, config_size) = put(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer}","size":{layer_size}}}]}}"#
        );
        let (manifest, manifest_size) = put(manifest.as_bytes());
        let other = put(b"{}").0;
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{other}","size":2,"annotations":{{"org.opencontainers.image.ref.name":"v2"}}}}]}}"#
        );
        fs::write(root.join("index.json"), index).unwrap();
        fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        root
    }

    #[test]
    fn an_oci_layout_is_copied_with_only_the_tagged_image() {
        let dir = tempfile::tempdir().unwrap();
        let layout = hand_made_layout(dir.path());
        let dest = dir.path().join("out");
        let image = spec("app", "v1", ImageSource::OciLayout(local(&layout)));
        import(&image, &dest, &dir.path().join("w")).unwrap();
        // manifest, config, layer; not the `v2` blob.
        assert_eq!(fs::read_dir(dest.join("blobs/sha256")).unwrap().count(), 3);
        let index = read_index(&dest);
        assert_eq!(index.manifests().len(), 1);
    }

    #[test]
    fn a_corrupt_blob_in_an_oci_layout_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let layout = hand_made_layout(dir.path());
        let index: ImageIndex = read_index(&layout);
        let manifest: ImageManifest =
            serde_json::from_slice(&blob(&layout, index.manifests()[0].digest())).unwrap();
        let layer = manifest.layers()[0].digest().clone();
        let path = layout.join("blobs/sha256").join(layer.digest());
        let mut bytes = fs::read(&path).unwrap();
        bytes[600] ^= 1;
        fs::write(&path, bytes).unwrap();
        let image = spec("app", "v1", ImageSource::OciLayout(local(&layout)));
        let error = import(&image, &dir.path().join("out"), &dir.path().join("w")).unwrap_err();
        assert!(
            matches!(&error, ImageError::CorruptBlob { digest, .. } if *digest == layer.to_string()),
            "{error:?}"
        );
        assert!(error.to_string().contains(&layer.to_string()));
    }
}
