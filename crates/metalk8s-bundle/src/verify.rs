use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::sign::signature_from_file_text;
use crate::walk::{bundle_files, hash_file};
use crate::{Artifact, BundleError, MANIFEST_FILE, Manifest, SIGNATURE_FILE};

/// A bundle whose signature, artifacts and file list all checked out.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub root: PathBuf,
    pub manifest: Manifest,
}

/// Verifies the bundle in `dir` against the trusted `public_key`: the signature over the
/// exact bytes of `manifest.json` first (nothing unsigned is parsed), then the size and
/// sha256 of every artifact, then that no file in `dir` is missing from the manifest.
pub fn verify(dir: &Path, public_key: &VerifyingKey) -> Result<VerifiedBundle, BundleError> {
    let manifest = read_signed_manifest(dir, public_key)?;
    for artifact in &manifest.artifacts {
        check_artifact(dir, artifact)?;
    }
    check_no_unlisted(dir, &manifest)?;
    Ok(VerifiedBundle {
        root: dir.to_owned(),
        manifest,
    })
}

fn read_signed_manifest(dir: &Path, public_key: &VerifyingKey) -> Result<Manifest, BundleError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&manifest_path).map_err(BundleError::io(manifest_path))?;
    let signature_path = dir.join(SIGNATURE_FILE);
    let text = fs::read_to_string(&signature_path).map_err(BundleError::io(signature_path))?;
    let signature = signature_from_file_text(&text)?;
    public_key
        .verify_strict(&bytes, &signature)
        .map_err(|_| BundleError::BadSignature)?;
    Manifest::from_json(&bytes)
}

fn check_artifact(dir: &Path, artifact: &Artifact) -> Result<(), BundleError> {
    let path = dir.join(&artifact.path);
    let is_file = fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file());
    if !is_file {
        return Err(BundleError::MissingArtifact {
            path: artifact.path.clone(),
        });
    }
    let (size, sha256) = hash_file(&path)?;
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

fn check_no_unlisted(dir: &Path, manifest: &Manifest) -> Result<(), BundleError> {
    let listed: BTreeSet<&str> = manifest.artifacts.iter().map(|a| a.path.as_str()).collect();
    match bundle_files(dir)?
        .into_iter()
        .find(|path| !listed.contains(path.as_str()))
    {
        Some(path) => Err(BundleError::UnlistedFile { path }),
        None => Ok(()),
    }
}
