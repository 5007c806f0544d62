//! `metalk8s agent fetch`, on a node: places one bundle binary from the bootstrap
//! repository (`metalk8s_repo::client`), then writes the record the engine's `fetch`
//! resource observes it by (`metalk8s_engine::resources::record_path`), so that later
//! deploys know it unchanged without hashing it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use metalk8s_engine::resources::{FetchRecord, record_path};
use metalk8s_repo::client::{ClientError, FetchRequest, fetch_file};

use crate::cli::AgentFetchArgs;

/// Why a binary could not be placed, with what to do about it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FetchFailure {
    #[error("{}: destination is not an absolute path", path.display())]
    #[diagnostic(help("the plan names every fetched file by its absolute path"))]
    Relative { path: PathBuf },
    #[error(transparent)]
    #[diagnostic(help(
        "the bootstrap repository serves another file than the staged bundle's manifest lists, or the plan was made from another bundle: stage the bundle again (`metalk8s deploy --bundle PATH --bundle-key KEY`)"
    ))]
    Mismatch(ClientError),
    #[error(transparent)]
    #[diagnostic(help(
        "the bootstrap repository (metalk8s-repo.service on the bootstrap node) must be running and serve the staged bundle: see `journalctl -u metalk8s-repo` there, and stage the bundle again if it lacks this binary"
    ))]
    Repository(ClientError),
    #[error(transparent)]
    Client(ClientError),
    #[error("cannot record the fetch of {} in {}", path.display(), record.display())]
    #[diagnostic(help("the file is in place; the next deploy hashes it and records it again"))]
    Record {
        path: PathBuf,
        record: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<ClientError> for FetchFailure {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Mismatch { .. } => FetchFailure::Mismatch(error),
            ClientError::Request { .. }
            | ClientError::Transfer { .. }
            | ClientError::Status { .. } => FetchFailure::Repository(error),
            _ => FetchFailure::Client(error),
        }
    }
}

/// Places `args.url` at `args.out` and records what was placed.
pub fn place(args: &AgentFetchArgs) -> Result<(), FetchFailure> {
    let Some(out) = args.out.to_str().filter(|out| out.starts_with('/')) else {
        return Err(FetchFailure::Relative {
            path: args.out.clone(),
        });
    };
    let placed = fetch_file(&FetchRequest {
        url: &args.url,
        sha256: &args.sha256,
        out: &args.out,
        mode: args.mode,
        ca: &args.ca,
    })?;
    let record = FetchRecord {
        sha256: args.sha256.clone(),
        size: placed.size,
        mtime_ns: placed.mtime_ns,
    };
    let record_file = PathBuf::from(record_path(out));
    write_atomically(&record_file, record.to_line().as_bytes()).map_err(|source| {
        FetchFailure::Record {
            path: args.out.clone(),
            record: record_file.clone(),
            source,
        }
    })
}

/// Writes `content` beside `path`, syncs it and renames it into place: a record is whole
/// or absent (then the file is hashed again), never half-written.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".metalk8s-record.")
        .tempfile_in(dir)?;
    temporary.write_all(content)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    fs::File::open(dir)?.sync_all()
}
