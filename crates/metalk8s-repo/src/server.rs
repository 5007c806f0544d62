//! The HTTPS server: what is loaded at startup ([`Repository`]), the routes, TLS with
//! rustls on aws-lc-rs, and the serve loop `metalk8s repo serve` runs until SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::apt::{AptError, AptRepository, KEYRING_FILE};
use crate::binaries::{Binaries, FILES_PREFIX};
use crate::files::{file_response, header_value};
use crate::images::{FetchError, ImageError, ImageStore};
use crate::reference::Digest;
use crate::registry::{self, percent_decode};
use crate::signing::{AptSigningKey, KeyError};
use crate::verify::Verifier;

/// URL prefix of the APT repository: nodes use
/// `deb [signed-by=/etc/apt/keyrings/metalk8s.gpg] https://HOST:PORT/apt metalk8s main`.
pub const APT_PREFIX: &str = "/apt";

/// What `metalk8s repo serve` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// The (verified) bundle directory.
    pub bundle: PathBuf,
    pub listen: SocketAddr,
    pub transport: Transport,
    /// The armored secret key that signs `InRelease` (see [`AptSigningKey::load`]).
    pub apt_key: PathBuf,
}

/// HTTPS with a certificate from the cluster CA, or plain HTTP when explicitly asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Https { cert: PathBuf, key: PathBuf },
    InsecureHttp,
}

/// A bundle that cannot be served as it is.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bundle {}: cannot load its images", bundle.display())]
    Images {
        bundle: PathBuf,
        #[source]
        source: ImageError,
    },
    #[error("bundle {}: cannot build its APT repository", bundle.display())]
    Apt {
        bundle: PathBuf,
        #[source]
        source: AptError,
    },
    #[error("bundle {}: cannot read its manifest", bundle.display())]
    Manifest {
        bundle: PathBuf,
        #[source]
        source: metalk8s_bundle::BundleError,
    },
}

/// Why the server did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("APT signing key {}", path.display())]
    AptKey {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("TLS certificate {}: cannot read PEM certificates", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS key {}: cannot read a PEM private key", path.display())]
    PrivateKey {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate {} and key {}: unusable together", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server stopped")]
    Server(#[source] std::io::Error),
}

/// Everything served, loaded once at startup.
#[derive(Debug)]
pub struct Repository {
    pub(crate) images: ImageStore,
    pub(crate) apt: AptRepository,
    /// Verdicts for the package files of the APT pool.
    packages: Verifier,
    pub(crate) binaries: Binaries,
}

impl Repository {
    /// A repository serving no binaries (see [`Repository::with_binaries`]).
    pub fn new(images: ImageStore, apt: AptRepository) -> Repository {
        Repository {
            images,
            apt,
            packages: Verifier::default(),
            binaries: Binaries::default(),
        }
    }

    /// The same repository, serving `binaries` under [`FILES_PREFIX`].
    pub fn with_binaries(self, binaries: Binaries) -> Repository {
        Repository { binaries, ..self }
    }

    /// Finds the images of `bundle`, builds its APT repository, signed with `key`, and
    /// lists the binaries its manifest carries. The Release file is dated with the bundle
    /// manifest's `created` when there is a `manifest.json` (so the same bundle always
    /// gives the same indexes, and a node whose clock is behind does not see a Release
    /// from its future), else with the current time; without a manifest no binary is
    /// served, since none has a digest to be checked against.
    pub fn load(bundle: &Path, key: &AptSigningKey) -> Result<Repository, LoadError> {
        let images = ImageStore::load(bundle).map_err(|source| LoadError::Images {
            bundle: bundle.to_owned(),
            source,
        })?;
        let manifest = read_manifest(bundle)?;
        let date = manifest
            .as_ref()
            .map_or_else(OffsetDateTime::now_utc, |manifest| manifest.created);
        let apt = AptRepository::load(bundle, key, date).map_err(|source| LoadError::Apt {
            bundle: bundle.to_owned(),
            source,
        })?;
        let binaries = manifest
            .map(|manifest| Binaries::from_manifest(bundle, &manifest))
            .unwrap_or_default();
        Ok(Repository::new(images, apt).with_binaries(binaries))
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    pub fn apt(&self) -> &AptRepository {
        &self.apt
    }

    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }
}

/// The bundle's manifest; `None` when it has no `manifest.json`.
fn read_manifest(bundle: &Path) -> Result<Option<metalk8s_bundle::Manifest>, LoadError> {
    let path = bundle.join(metalk8s_bundle::MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LoadError::Manifest {
                bundle: bundle.to_owned(),
                source: metalk8s_bundle::BundleError::Io { path, source },
            });
        }
    };
    metalk8s_bundle::Manifest::from_json(&bytes)
        .map(Some)
        .map_err(|source| LoadError::Manifest {
            bundle: bundle.to_owned(),
            source,
        })
}

/// The routes: the registry under `/v2`, the APT repository under [`APT_PREFIX`], the
/// bundle's binaries under [`FILES_PREFIX`], one debug line logged per request.
pub fn router(repository: Arc<Repository>) -> Router {
    Router::new()
        .route("/v2", any(registry::handle))
        .route("/v2/", any(registry::handle))
        .route("/v2/{*path}", any(registry::handle))
        .route("/apt/{*path}", any(apt_handle))
        .route("/files/{name}", any(files_handle))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(log_request))
        .with_state(repository)
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Why a request is not a read of something under a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Not a GET nor a HEAD: the repository is read-only.
    Method,
    /// The path does not percent-decode.
    MalformedPath,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Method => {
                let mut response =
                    (StatusCode::METHOD_NOT_ALLOWED, "read-only repository\n").into_response();
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                response
            }
            Refused::MalformedPath => (StatusCode::BAD_REQUEST, "malformed path\n").into_response(),
        }
    }
}

/// A read request for something under `prefix`: whether it is a HEAD (else a GET) and
/// the rest of its path after `prefix` and a `/`, percent-decoded.
fn read_request(request: &Request, prefix: &str) -> Result<(bool, String), Refused> {
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        return Err(Refused::Method);
    }
    let path = request
        .uri()
        .path()
        .strip_prefix(prefix)
        .and_then(|path| path.strip_prefix('/'))
        .and_then(percent_decode)
        .ok_or(Refused::MalformedPath)?;
    Ok((head, path))
}

async fn apt_handle(State(repository): State<Arc<Repository>>, request: Request) -> Response {
    let (head, path) = match read_request(&request, APT_PREFIX) {
        Ok(read) => read,
        Err(refused) => return refused.into_response(),
    };
    // Only exact names of generated files and listed packages are served: nothing from
    // the request reaches the file system.
    let apt = &repository.apt;
    if let Some(content) = apt.indexes.files.get(&path) {
        let content_type = if path.ends_with(".gz") {
            "application/gzip"
        } else {
            "text/plain; charset=utf-8"
        };
        return memory_response(content.clone(), content_type, head);
    }
    if path == KEYRING_FILE {
        return memory_response(apt.keyring.clone(), "application/pgp-keys", head);
    }
    let Some(package) = apt.pool.get(&path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let Some(digest) = Digest::from_hex(&package.sha256) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match repository.packages.open(&package.path, &digest).await {
        Ok(Some(verified)) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.debian.binary-package"),
            );
            file_response(verified, request.headers(), head, headers)
        }
        Ok(None) => {
            tracing::error!(path = %package.path.display(), "package file disappeared from the bundle");
            (StatusCode::NOT_FOUND, "not found\n").into_response()
        }
        Err(FetchError::DigestMismatch { .. }) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "package file does not match its index; the bundle is corrupt\n",
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot serve package");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /files/<name>`: a binary of the bundle, by the name its manifest lists it under.
async fn files_handle(State(repository): State<Arc<Repository>>, request: Request) -> Response {
    let (head, name) = match read_request(&request, FILES_PREFIX) {
        Ok(read) => read,
        Err(refused) => return refused.into_response(),
    };
    // Only names the manifest lists are looked up: nothing from the request reaches the
    // file system.
    match repository.binaries.open(&name).await {
        Ok(Some(verified)) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Some(binary) = repository.binaries.get(&name) {
                headers.insert(
                    header::ETAG,
                    header_value(&format!("\"{}\"", binary.digest)),
                );
            }
            file_response(verified, request.headers(), head, headers)
        }
        Ok(None) if repository.binaries.get(&name).is_some() => {
            tracing::error!(name, "binary listed in the manifest is missing from the bundle");
            (
                StatusCode::NOT_FOUND,
                format!("binary {name} is listed in the bundle manifest but its file is missing; stage the bundle again\n"),
            )
                .into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("no binary named {name:?} in the bundle\n"),
        )
            .into_response(),
        Err(FetchError::DigestMismatch { .. }) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("binary {name} does not match its sha256 in the bundle manifest; the bundle is corrupt, stage it again\n"),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot serve binary");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn memory_response(content: bytes::Bytes, content_type: &'static str, head: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_LENGTH,
        header_value(&content.len().to_string()),
    );
    if head {
        return (StatusCode::OK, headers).into_response();
    }
    (StatusCode::OK, headers, content).into_response()
}

/// The rustls configuration for a PEM certificate chain and key, with the aws-lc-rs
/// provider (the only one compiled in), HTTP/2 and HTTP/1.1 offered by ALPN.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| ServeError::Certificate {
            path: cert.to_owned(),
            source,
        })?;
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|source| ServeError::PrivateKey {
            path: key.to_owned(),
            source,
        })?;
    let tls_error = |source| ServeError::Tls {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A server running in the background of the current tokio runtime.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish for up to `grace`, then stops.
    pub async fn shutdown(self, grace: Duration) -> Result<(), ServeError> {
        self.handle.graceful_shutdown(Some(grace));
        self.wait().await
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(result) => result.map_err(ServeError::Server),
            Err(join) => Err(ServeError::Server(std::io::Error::other(join))),
        }
    }
}

/// Listens on `listen` and serves `repository` in the background.
pub async fn start(
    repository: Repository,
    listen: SocketAddr,
    transport: &Transport,
) -> Result<RunningServer, ServeError> {
    let tls = match transport {
        Transport::Https { cert, key } => Some(tls_config(cert, key)?),
        Transport::InsecureHttp => None,
    };
    let bind_error = |source| ServeError::Bind {
        address: listen,
        source,
    };
    let listener = std::net::TcpListener::bind(listen).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let app = router(Arc::new(repository)).into_make_service();
    let handle = Handle::new();
    let task = match tls {
        Some(config) => {
            let server =
                axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(config)))
                    .map_err(bind_error)?
                    .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(bind_error)?
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
    };
    Ok(RunningServer {
        local_addr,
        handle,
        task,
    })
}

/// `metalk8s repo serve`: loads the key and the bundle, serves them until SIGINT or
/// SIGTERM, then drains requests in flight for up to 10 seconds.
pub async fn serve(config: &ServeConfig) -> Result<(), ServeError> {
    let key = AptSigningKey::load(&config.apt_key).map_err(|source| ServeError::AptKey {
        path: config.apt_key.clone(),
        source,
    })?;
    let bundle = config.bundle.clone();
    let started = Instant::now();
    let repository = tokio::task::spawn_blocking(move || Repository::load(&bundle, &key))
        .await
        .map_err(|join| ServeError::Server(std::io::Error::other(join)))??;
    let repositories = repository.images.repositories().count();
    let packages = repository.apt.pool.len();
    let binaries = repository.binaries.len();
    let server = start(repository, config.listen, &config.transport).await?;
    let scheme = match config.transport {
        Transport::Https { .. } => "https",
        Transport::InsecureHttp => "http",
    };
    tracing::info!(
        bundle = %config.bundle.display(),
        repositories,
        packages,
        binaries,
        load_ms = started.elapsed().as_millis() as u64,
        "serving on {scheme}://{}",
        server.local_addr()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(10)).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
