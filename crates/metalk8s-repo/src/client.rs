//! The node's side of [`crate::binaries`]: placing one bundle binary fetched from the
//! bootstrap repository (what `metalk8s agent fetch` runs; nodes have no curl).
//!
//! The repository is inside the cluster, so no proxy is used, and it is trusted through
//! the cluster CA only, not the system's roots. The file is written beside its
//! destination, checked against the sha256 the plan wants, synced, given its mode and
//! renamed into place, so the destination is always either the old file or the whole new
//! one. A destination that already has the wanted content is not downloaded again.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};

/// What to place.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest<'a> {
    /// `https://BOOTSTRAP:8443/files/<name>`.
    pub url: &'a str,
    /// Lower-case hex.
    pub sha256: &'a str,
    pub out: &'a Path,
    /// Permission bits.
    pub mode: u32,
    /// The PEM CA certificate the repository's certificate is checked against.
    pub ca: &'a Path,
}

/// The destination once placed: what the engine records to tell later that it has not
/// changed without hashing it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub size: u64,
    /// Modification time, in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Whether it was downloaded (false: it already had the wanted content).
    pub downloaded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the CA certificate {}", path.display())]
    Ca {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the CA certificate {} is not PEM", path.display())]
    CaPem {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot make an HTTPS client")]
    Client(#[source] reqwest::Error),
    #[error("cannot download {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot download {url}: the transfer broke off")]
    Transfer {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}: the repository answered {status}: {body}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("{url}: the download hashes to sha256:{actual}, the plan wants sha256:{expected}")]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{}: cannot write", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Places `request.url` at `request.out` (see the module documentation).
pub fn fetch_file(request: &FetchRequest<'_>) -> Result<Placed, ClientError> {
    let out = request.out;
    let io_error = |source| ClientError::Io {
        path: out.to_owned(),
        source,
    };
    let downloaded = match sha256_of(out) {
        Ok(Some(current)) if current == request.sha256 => false,
        Ok(_) => {
            download(request)?;
            true
        }
        Err(source) => return Err(io_error(source)),
    };
    let metadata = fs::metadata(out).map_err(io_error)?;
    if metadata.mode() & 0o7777 != request.mode {
        fs::set_permissions(out, fs::Permissions::from_mode(request.mode)).map_err(io_error)?;
    }
    Ok(Placed {
        size: metadata.size(),
        mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
        downloaded,
    })
}

/// The hex sha256 of a regular file; `None` when there is none at `path`.
fn sha256_of(path: &Path) -> io::Result<Option<String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    match copy_hashing(file, &mut io::sink()) {
        Ok(sha256) => Ok(Some(sha256)),
        Err(Copy::Read(error) | Copy::Write(error)) => Err(error),
    }
}

/// Which side of a copy failed.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to`, returning the hex sha256 of what went by.
fn copy_hashing(mut from: impl Read, to: &mut impl Write) -> Result<String, Copy> {
    let mut context = Context::new(&SHA256);
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Copy::Read(error)),
        };
        context.update(&buffer[..read]);
        to.write_all(&buffer[..read]).map_err(Copy::Write)?;
    }
    Ok(hex::encode(context.finish().as_ref()))
}

fn client(ca: &Path) -> Result<reqwest::blocking::Client, ClientError> {
    let pem = fs::read(ca).map_err(|source| ClientError::Ca {
        path: ca.to_owned(),
        source,
    })?;
    let certificate =
        reqwest::Certificate::from_pem(&pem).map_err(|source| ClientError::CaPem {
            path: ca.to_owned(),
            source,
        })?;
    reqwest::blocking::Client::builder()
        .user_agent(concat!("metalk8s/", env!("CARGO_PKG_VERSION")))
        .tls_certs_only([certificate])
        // The bootstrap node is on the cluster's own network: a proxy set for the
        // internet must not be asked for it.
        .no_proxy()
        .connect_timeout(Duration::from_secs(30))
        // Bounds each wait (headers, then every read), not the whole transfer.
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(ClientError::Client)
}

fn download(request: &FetchRequest<'_>) -> Result<(), ClientError> {
    let out = request.out;
    let io_error = |source| ClientError::Io {
        path: out.to_owned(),
        source,
    };
    let request_error = |source| ClientError::Request {
        url: request.url.to_owned(),
        source,
    };
    let mut response = client(request.ca)?
        .get(request.url)
        .send()
        .map_err(request_error)?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let body = response.text().unwrap_or_default();
        return Err(ClientError::Status {
            url: request.url.to_owned(),
            status,
            body: body.trim().to_owned(),
        });
    }
    let dir = out.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(io_error)?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".metalk8s-fetch.")
        .tempfile_in(dir)
        .map_err(io_error)?;
    let actual =
        copy_hashing(&mut response, temporary.as_file_mut()).map_err(|failed| match failed {
            Copy::Read(source) => ClientError::Transfer {
                url: request.url.to_owned(),
                source,
            },
            Copy::Write(source) => io_error(source),
        })?;
    if actual != request.sha256 {
        return Err(ClientError::Mismatch {
            url: request.url.to_owned(),
            expected: request.sha256.to_owned(),
            actual,
        });
    }
    let file = temporary.as_file();
    file.set_permissions(fs::Permissions::from_mode(request.mode))
        .map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    temporary
        .persist(out)
        .map_err(|error| io_error(error.error))?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error)?;
    Ok(())
}
