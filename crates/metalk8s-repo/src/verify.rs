//! Checking bundle files against their digests before serving them.
//!
//! Nothing is served that does not hash to its digest. Verification is lazy: the first
//! request for a blob hashes the whole file (on a blocking thread, before any byte is
//! sent) and the verdict is kept, keyed by the file's identity (device, inode, size,
//! mtime and ctime, read with `fstat` on the very descriptor the bytes are then sent
//! from). A later request whose file has the same identity skips the hash; a file that
//! was modified or replaced since gets hashed again. Startup therefore costs nothing
//! however big the bundle, only the first pull of each blob pays one read of it, and a
//! blob tampered with after startup is refused like one tampered with before. Concurrent
//! first requests for one blob wait for a single hash. The same applies to the packages
//! of the APT pool, checked against the SHA256 their index lists.
//!
//! A file modified in place while it is being sent cannot be caught before the bytes
//! leave; the next request sees its new identity and refuses it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::images::FetchError;
use crate::reference::Digest;

/// A file whose content was checked against its digest, opened for sending.
#[derive(Debug)]
pub struct VerifiedFile {
    pub file: File,
    pub length: u64,
    pub path: PathBuf,
}

/// What identifies a file's content without reading it: if any of these changed, the file
/// may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    fn of(metadata: &fs::Metadata) -> FileIdentity {
        FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone)]
struct Verdict {
    identity: FileIdentity,
    /// Hex sha256 of the content.
    sha256: String,
}

/// The hash verdicts of the files checked so far (see the module documentation).
#[derive(Debug, Default)]
pub struct Verifier {
    #[allow(clippy::type_complexity)] // One lock per file, each holding its last verdict.
    slots: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<Option<Verdict>>>>>,
}

impl Verifier {
    /// Opens `path` and checks that its content hashes to `digest`. `None`: no such file.
    pub async fn open(
        &self,
        path: &Path,
        digest: &Digest,
    ) -> Result<Option<VerifiedFile>, FetchError> {
        let owned = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || open_regular(&owned))
            .await
            .map_err(|join| io_error(path, io::Error::other(join)))??;
        let Some((file, identity)) = opened else {
            return Ok(None);
        };
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(path.to_owned())
            .or_default()
            .clone();
        let mut verdict = slot.lock().await;
        let (sha256, identity) = match verdict.as_ref() {
            Some(known) if known.identity == identity => (known.sha256.clone(), identity),
            _ => {
                let reader = file.try_clone().map_err(|error| io_error(path, error))?;
                let owned = path.to_owned();
                let (sha256, identity) =
                    tokio::task::spawn_blocking(move || hash_file(&reader, &owned))
                        .await
                        .map_err(|join| io_error(path, io::Error::other(join)))??;
                if sha256 != digest.hex() {
                    tracing::error!(
                        path = %path.display(),
                        %digest,
                        found = %sha256,
                        "bundle file does not hash to its digest; refusing to serve it"
                    );
                }
                *verdict = Some(Verdict {
                    identity,
                    sha256: sha256.clone(),
                });
                (sha256, identity)
            }
        };
        if sha256 != digest.hex() {
            return Err(FetchError::DigestMismatch {
                path: path.to_owned(),
                digest: digest.clone(),
                found: sha256,
            });
        }
        Ok(Some(VerifiedFile {
            file,
            length: identity.size,
            path: path.to_owned(),
        }))
    }
}

fn io_error(path: &Path, source: io::Error) -> FetchError {
    FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

fn open_regular(path: &Path) -> Result<Option<(File, FileIdentity)>, FetchError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path, error)),
    };
    let metadata = file.metadata().map_err(|error| io_error(path, error))?;
    if !metadata.is_file() {
        return Ok(None);
    }
    Ok(Some((file, FileIdentity::of(&metadata))))
}

/// Hashes the whole file with positioned reads (the descriptor's offset is left alone)
/// and returns the hash with the file's identity, which must be the same before and
/// after the read: a file that changed meanwhile is an error, and no verdict is kept.
fn hash_file(file: &File, path: &Path) -> Result<(String, FileIdentity), FetchError> {
    let before = FileIdentity::of(&file.metadata().map_err(|e| io_error(path, e))?);
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut offset = 0u64;
    loop {
        let read = file
            .read_at(&mut buffer, offset)
            .map_err(|error| io_error(path, error))?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
        offset += read as u64;
    }
    let after = FileIdentity::of(&file.metadata().map_err(|e| io_error(path, e))?);
    let sha256 = hex::encode(context.finish().as_ref());
    if before != after || offset != after.size {
        // Changed under our feet: refuse it now; no verdict is kept, so the next request
        // hashes it again.
        return Err(FetchError::Io {
            path: path.to_owned(),
            source: io::Error::other("the file changed while it was being verified"),
        });
    }
    Ok((sha256, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_verdict_is_reused_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, b"hello").unwrap();
        let digest = Digest::of(b"hello");
        let verifier = Verifier::default();
        let opened = verifier.open(&path, &digest).await.unwrap().unwrap();
        assert_eq!(opened.length, 5);
        assert!(verifier.open(&path, &digest).await.unwrap().is_some());

        // Same size, new content: the changed ctime forces a new hash, which fails.
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(&path, b"jello").unwrap();
        assert!(matches!(
            verifier.open(&path, &digest).await,
            Err(FetchError::DigestMismatch { found, .. }) if found == Digest::of(b"jello").hex()
        ));
        assert!(
            verifier
                .open(&dir.path().join("missing"), &digest)
                .await
                .unwrap()
                .is_none()
        );
    }
}
