use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::archive::read_archive_manifest;
use crate::sign::signature_from_file_text;
use crate::walk::{bundle_files, hash_file};
use crate::{Artifact, BundleError, MANIFEST_FILE, Manifest, SIGNATURE_FILE};

/// A bundle whose signature, artifacts and file list all checked out.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The bundle directory, or the `.tar.zst` archive.
    pub root: PathBuf,
    pub manifest: Manifest,
}

/// Verifies the bundle in `dir` against the trusted `public_key`: the signature over the
/// exact bytes of `manifest.json` first (nothing unsigned is parsed), then the size and
/// sha256 of every artifact, then that no file in `dir` is missing from the manifest.
pub fn verify(dir: &Path, public_key: &VerifyingKey) -> Result<VerifiedBundle, BundleError> {
    let manifest = read_signed_manifest(dir, public_key)?;
    for artifact in &manifest.artifacts {
        let path = dir.join(&artifact.path);
        let is_file = fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file());
        let observed = if is_file {
            Some(hash_file(&path)?)
        } else {
            None
        };
        check_artifact(artifact, observed)?;
    }
    check_no_unlisted(bundle_files(dir)?, &manifest)?;
    Ok(VerifiedBundle {
        root: dir.to_owned(),
        manifest,
    })
}

/// [`verify`] for a bundle directory or a `.tar.zst` bundle archive. An archive is read
/// once, as a stream, and nothing of it is written to disk; its manifest and signature
/// come first and are checked before anything else is read, then each entry is refused
/// as soon as it is unlisted or longer than its signed size, and hashed on the way.
pub fn verify_bundle(
    path: &Path,
    public_key: &VerifyingKey,
) -> Result<VerifiedBundle, BundleError> {
    if path.is_dir() {
        return verify(path, public_key);
    }
    let manifest = crate::archive::verify_archive(path, public_key)?;
    Ok(VerifiedBundle {
        root: path.to_owned(),
        manifest,
    })
}

/// The manifest of a bundle directory or archive, parsed but NOT verified: for showing
/// what a bundle claims to hold. Only an archive's manifest is read, not its artifacts.
pub fn read_manifest(path: &Path) -> Result<Manifest, BundleError> {
    let bytes = if path.is_dir() {
        let manifest_path = path.join(MANIFEST_FILE);
        fs::read(&manifest_path).map_err(BundleError::io(manifest_path))?
    } else {
        read_archive_manifest(path)?
    };
    Manifest::from_json(&bytes)
}

fn read_signed_manifest(dir: &Path, public_key: &VerifyingKey) -> Result<Manifest, BundleError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&manifest_path).map_err(BundleError::io(manifest_path))?;
    let signature_path = dir.join(SIGNATURE_FILE);
    let text = fs::read_to_string(&signature_path).map_err(BundleError::io(signature_path))?;
    check_signed(&bytes, &text, public_key)
}

pub(crate) fn check_signed(
    bytes: &[u8],
    signature_text: &str,
    public_key: &VerifyingKey,
) -> Result<Manifest, BundleError> {
    let signature = signature_from_file_text(signature_text)?;
    public_key
        .verify_strict(bytes, &signature)
        .map_err(|_| BundleError::BadSignature)?;
    Manifest::from_json(bytes)
}

/// Compares what the manifest says of an artifact with the (size, sha256) found, if any.
pub(crate) fn check_artifact(
    artifact: &Artifact,
    observed: Option<(u64, String)>,
) -> Result<(), BundleError> {
    let Some((size, sha256)) = observed else {
        return Err(BundleError::MissingArtifact {
            path: artifact.path.clone(),
        });
    };
    if size != artifact.size {
        return Err(BundleError::SizeMismatch {
            path: artifact.path.clone(),
            expected: artifact.size,
            found: size,
        });
    }
    if sha256 != artifact.sha256 {
        return Err(BundleError::Sha256Mismatch {
            path: artifact.path.clone(),
            expected: artifact.sha256.clone(),
            found: sha256,
        });
    }
    Ok(())
}

fn check_no_unlisted(found: Vec<String>, manifest: &Manifest) -> Result<(), BundleError> {
    let listed: BTreeSet<&str> = manifest.artifacts.iter().map(|a| a.path.as_str()).collect();
    match found
        .into_iter()
        .find(|path| !listed.contains(path.as_str()))
    {
        Some(path) => Err(BundleError::UnlistedFile { path }),
        None => Ok(()),
    }
}
