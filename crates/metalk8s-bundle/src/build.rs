use std::path::Path;

use time::OffsetDateTime;

use crate::walk::{bundle_files, hash_file};
use crate::{API_VERSION, Artifact, ArtifactKind, BundleError, Component, KIND, Manifest};

/// Walks the bundle directory `dir` (sorted, so the result is deterministic), hashes every
/// file and returns the manifest listing them. The kind of each artifact comes from its
/// top-level directory (see the crate doc); a file elsewhere is an error. `created` is
/// passed in so that the same inputs always give the same bytes.
pub fn build_manifest(
    dir: &Path,
    version: &str,
    created: OffsetDateTime,
    components: Vec<Component>,
) -> Result<Manifest, BundleError> {
    let artifacts = bundle_files(dir)?
        .into_iter()
        .map(|path| artifact(dir, path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Manifest {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        version: version.to_owned(),
        kubernetes_version: None,
        created,
        components,
        artifacts,
    })
}

fn artifact(dir: &Path, path: String) -> Result<Artifact, BundleError> {
    let kind = ArtifactKind::from_path(&path)
        .ok_or_else(|| BundleError::UnknownLocation { path: path.clone() })?;
    let (size, sha256) = hash_file(&dir.join(&path))?;
    Ok(Artifact {
        path,
        kind,
        sha256,
        size,
    })
}
