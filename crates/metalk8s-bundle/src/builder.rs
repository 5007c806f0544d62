//! `bundle build`: a spec in, a signed bundle directory or `.tar.zst` out.
//!
//! Everything is assembled in a private staging directory next to the output (so on the
//! same file system) and renamed into place at the very end: a failed or interrupted
//! build leaves no half bundle at the output path, only its downloads in the cache.

use std::fs;
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use time::OffsetDateTime;

use crate::apt::{AptError, gather_packages};
use crate::archive::write_archive;
use crate::download::{DownloadError, LazyDownloader};
use crate::image::{ImageError, import_image};
use crate::progress::Progress;
use crate::spec::{BinarySource, BundleSpec, ManifestSource};
use crate::walk::sha256_file;
use crate::{BundleError, Component, Manifest, build_manifest, write_signed};

/// How to build.
pub struct BuildOptions {
    /// A directory, or a file whose name ends in `.tar.zst`.
    pub out: PathBuf,
    /// The download cache (downloads by sha256, and APT's archive cache).
    pub cache: PathBuf,
    pub signing_key: SigningKey,
    /// The manifest's `created`, and the mtime of every entry of an archive.
    pub created: OffsetDateTime,
    /// Replace an existing output instead of refusing.
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Directory,
    Archive,
}

impl OutputFormat {
    /// An archive when the name ends in `.tar.zst`, a directory otherwise.
    pub fn of(path: &Path) -> Self {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".tar.zst") {
            OutputFormat::Archive
        } else {
            OutputFormat::Directory
        }
    }
}

/// A bundle that was written.
#[derive(Debug, Clone)]
pub struct Built {
    pub out: PathBuf,
    pub format: OutputFormat,
    pub manifest: Manifest,
}

/// Why a build failed; nothing was written at the output path.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}: already exists\n    hint: remove it, or pass --force to replace it", path.display())]
    OutputExists { path: PathBuf },
    #[error(
        "{}: declares Kubernetes {version}, but has no entry for {}\n    hint: fill in what the \
         spec's comments say is missing (each download needs its sha256, each image its \
         digest), or remove `kubernetesVersion` for a bundle that does not carry Kubernetes",
        spec.display(),
        missing.join(", ")
    )]
    IncompleteKubernetes {
        spec: PathBuf,
        version: String,
        missing: Vec<&'static str>,
    },
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("OS packages")]
    Packages(#[source] AptError),
    #[error("binary {name}")]
    Download {
        name: String,
        #[source]
        source: DownloadError,
    },
    #[error("manifest {name}")]
    ManifestDownload {
        name: String,
        #[source]
        source: DownloadError,
    },
    #[error(
        "binary {name}: {} has sha256 {actual}, but the spec pins {expected}",
        path.display()
    )]
    LocalChecksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("image {name}:{tag}")]
    Image {
        name: String,
        tag: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Builds the bundle `spec` describes, as `options` say.
pub fn build_bundle(
    spec: &BundleSpec,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Built, BuildError> {
    if let Some(version) = &spec.kubernetes_version {
        let missing = spec.missing_for_kubernetes();
        if !missing.is_empty() {
            return Err(BuildError::IncompleteKubernetes {
                spec: spec.file.clone(),
                version: version.clone(),
                missing,
            });
        }
    }
    let out = &options.out;
    let format = OutputFormat::of(out);
    if fs::symlink_metadata(out).is_ok() && !options.force {
        return Err(BuildError::OutputExists { path: out.clone() });
    }
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempdir_in(&parent)
        .map_err(io_error(&parent))?;
    let root = staging.path().join("bundle");
    let work = staging.path().join("work");
    for dir in [&root, &work] {
        fs::create_dir(dir).map_err(io_error(dir))?;
    }

    let mut components = gather_packages(
        &spec.packages,
        &options.cache,
        &root.join("debs"),
        &work,
        progress,
    )
    .map_err(BuildError::Packages)?;
    let downloads = LazyDownloader::new(&options.cache);
    components.extend(add_binaries(spec, &downloads, &root, progress)?);
    for (index, image) in spec.images.iter().enumerate() {
        let dest = root.join("images").join(&image.name);
        let scratch = work.join(format!("image-{index}"));
        let component =
            import_image(image, &dest, &scratch, &downloads, progress).map_err(|source| {
                BuildError::Image {
                    name: image.name.clone(),
                    tag: image.tag.clone(),
                    source: Box::new(source),
                }
            })?;
        components.push(component);
    }
    components.extend(add_manifests(spec, &downloads, &root, progress)?);
    fs::remove_dir_all(&work).map_err(io_error(&work))?;

    progress.step("hashing artifacts and signing the manifest");
    let mut manifest = build_manifest(&root, &spec.version, options.created, components)?;
    manifest.kubernetes_version = spec.kubernetes_version.clone();
    write_signed(&root, &manifest, &options.signing_key)?;

    let finished = match format {
        OutputFormat::Directory => root,
        OutputFormat::Archive => {
            progress.step(&format!("writing {}", out.display()));
            let archive = staging.path().join("bundle.tar.zst");
            let file = fs::File::create(&archive).map_err(io_error(&archive))?;
            let mut writer = BufWriter::new(file);
            write_archive(&root, &manifest, &mut writer)?;
            let file = writer
                .into_inner()
                .map_err(|error| io_error(&archive)(error.into_error()))?;
            file.sync_all().map_err(io_error(&archive))?;
            file.set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(io_error(&archive))?;
            archive
        }
    };
    if fs::symlink_metadata(out).is_ok() {
        if !options.force {
            return Err(BuildError::OutputExists { path: out.clone() });
        }
        // Moved into the staging directory, which is deleted below.
        let replaced = staging.path().join("replaced");
        fs::rename(out, &replaced).map_err(io_error(out))?;
    }
    fs::rename(&finished, out).map_err(io_error(out))?;
    staging.close().map_err(io_error(&parent))?;
    Ok(Built {
        out: out.clone(),
        format,
        manifest,
    })
}

fn add_binaries(
    spec: &BundleSpec,
    downloads: &LazyDownloader<'_>,
    root: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Component>, BuildError> {
    let mut components = Vec::new();
    if spec.binaries.is_empty() {
        return Ok(components);
    }
    let dir = root.join("bin");
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    for binary in &spec.binaries {
        let dest = dir.join(&binary.name);
        let origin = match &binary.source {
            BinarySource::Url { url, sha256 } => {
                let download_error = |source| BuildError::Download {
                    name: binary.name.clone(),
                    source,
                };
                let downloader = downloads.get().map_err(download_error)?;
                progress.step(&format!(
                    "binary {} {} from {url}",
                    binary.name, binary.version
                ));
                let cached = downloader
                    .fetch(url, sha256, progress)
                    .map_err(download_error)?;
                fs::copy(&cached, &dest).map_err(io_error(&cached))?;
                url.clone()
            }
            BinarySource::File { path, sha256 } => {
                progress.step(&format!(
                    "binary {} {} from {}",
                    binary.name, binary.version, path.written
                ));
                fs::copy(&path.resolved, &dest).map_err(io_error(&path.resolved))?;
                if let Some(expected) = sha256 {
                    let (_, actual) = sha256_file(&dest).map_err(io_error(&dest))?;
                    if actual != *expected {
                        return Err(BuildError::LocalChecksum {
                            name: binary.name.clone(),
                            path: path.resolved.clone(),
                            expected: expected.clone(),
                            actual,
                        });
                    }
                }
                format!("file:{}", path.written)
            }
        };
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).map_err(io_error(&dest))?;
        components.push(Component {
            name: binary.name.clone(),
            version: binary.version.clone(),
            origin,
        });
    }
    Ok(components)
}

fn add_manifests(
    spec: &BundleSpec,
    downloads: &LazyDownloader<'_>,
    root: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Component>, BuildError> {
    let mut components = Vec::new();
    for manifest in &spec.manifests {
        let dir = root.join("manifests");
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let dest = dir.join(manifest.file_name());
        let source = match &manifest.source {
            ManifestSource::File(path) => path.resolved.clone(),
            ManifestSource::Url { url, sha256 } => {
                let download_error = |source| BuildError::ManifestDownload {
                    name: manifest.name.clone(),
                    source,
                };
                let downloader = downloads.get().map_err(download_error)?;
                progress.step(&format!(
                    "manifest {} {} from {url}",
                    manifest.name, manifest.version
                ));
                downloader
                    .fetch(url, sha256, progress)
                    .map_err(download_error)?
            }
        };
        fs::copy(&source, &dest).map_err(io_error(&source))?;
        components.push(Component {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            origin: manifest.origin(),
        });
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::progress::Silent;

    const BODY: &[u8] = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: calico-config\n";

    /// A loopback HTTP server answering every request with `BODY`.
    fn serve() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/calico.yaml", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    BODY.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(BODY).unwrap();
            }
        });
        url
    }

    fn build(dir: &Path, url: &str, sha256: &str) -> Result<Built, BuildError> {
        let text = format!(
            "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 1.0.0\n\
             manifests:\n  - name: calico\n    version: 3.32.1\n    url: {url}\n    sha256: {sha256}\n"
        );
        let spec = crate::spec::parse_spec(&text, &dir.join("spec.yaml"), dir).unwrap();
        let options = BuildOptions {
            out: dir.join("out"),
            cache: dir.join("cache"),
            signing_key: SigningKey::from_bytes(&[7; 32]),
            created: OffsetDateTime::UNIX_EPOCH,
            force: true,
        };
        build_bundle(&spec, &options, &Silent)
    }

    #[test]
    fn a_manifest_by_url_is_downloaded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve();
        let sha256 = hex::encode(Sha256::digest(BODY));
        let built = build(dir.path(), &url, &sha256).unwrap();
        assert_eq!(
            fs::read(built.out.join("manifests/calico.yaml")).unwrap(),
            BODY
        );
        let component = built
            .manifest
            .components
            .iter()
            .find(|component| component.name == "calico")
            .unwrap();
        assert_eq!(component.version, "3.32.1");
        assert_eq!(component.origin, url);
    }

    #[test]
    fn a_manifest_with_a_wrong_sha256_is_refused_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve();
        let wrong = "0".repeat(64);
        let error = build(dir.path(), &url, &wrong).unwrap_err();
        assert!(
            matches!(
                &error,
                BuildError::ManifestDownload { name, source: DownloadError::Sha256Mismatch { .. } }
                    if name == "calico"
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "manifest calico");
        assert!(!dir.path().join("out").exists());
    }
}
