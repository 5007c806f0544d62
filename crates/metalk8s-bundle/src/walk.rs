//! Listing and hashing the files of a bundle directory.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{BundleError, MANIFEST_FILE, SIGNATURE_FILE};

/// Every regular file under `root`, as sorted `/`-separated relative paths, without the
/// manifest and its signature. Symlinks and special files are refused.
pub(crate) fn bundle_files(root: &Path) -> Result<Vec<String>, BundleError> {
    let mut files = Vec::new();
    walk_into(root, "", &mut files)?;
    files.retain(|path| path != MANIFEST_FILE && path != SIGNATURE_FILE);
    files.sort();
    Ok(files)
}

fn walk_into(root: &Path, prefix: &str, files: &mut Vec<String>) -> Result<(), BundleError> {
    let dir = root.join(prefix);
    let entries = fs::read_dir(&dir).map_err(BundleError::io(&dir))?;
    for entry in entries {
        let entry = entry.map_err(BundleError::io(&dir))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| BundleError::NonUtf8Path { path: entry.path() })?;
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let file_type = entry.file_type().map_err(BundleError::io(entry.path()))?;
        if file_type.is_dir() {
            walk_into(root, &relative, files)?;
        } else if file_type.is_file() {
            files.push(relative);
        } else {
            return Err(BundleError::NotRegularFile { path: relative });
        }
    }
    Ok(())
}

/// Size and lower-case hex sha256 of a file, read in a streaming fashion.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String), BundleError> {
    sha256_file(path).map_err(BundleError::io(path))
}

/// [`hash_file`] with the bare I/O error, for callers with their own error types.
pub(crate) fn sha256_file(path: &Path) -> io::Result<(u64, String)> {
    sha256_reader(File::open(path)?)
}

/// Size and lower-case hex sha256 of everything `reader` yields.
pub(crate) fn sha256_reader(mut reader: impl io::Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = io::copy(&mut reader, &mut hasher)?;
    Ok((size, hex::encode(hasher.finalize())))
}
