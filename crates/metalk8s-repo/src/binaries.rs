//! The bundle's binaries (kubeadm, kubelet, kubectl…), served by name under
//! [`FILES_PREFIX`] so that every node can fetch them from the bootstrap node (the engine's
//! `fetch` resource, through `metalk8s agent fetch`).
//!
//! What is served is the manifest's list, not a directory listing: each `bin/<name>`
//! artifact is the file `<name>`, checked against the manifest's sha256 before it is sent
//! (lazily, like blobs: see [`crate::verify`]). A request names an entry of that list or
//! gets 404; nothing from the request reaches the file system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use metalk8s_bundle::{ArtifactKind, Manifest};

use crate::images::FetchError;
use crate::reference::Digest;
use crate::verify::{VerifiedFile, Verifier};

/// URL prefix of the binaries: `https://HOST:PORT/files/<name>`.
pub const FILES_PREFIX: &str = "/files";

/// The bundle directory the binaries are in.
const BIN_DIR: &str = "bin/";

/// One binary of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleBinary {
    pub path: PathBuf,
    pub digest: Digest,
}

/// The binaries a bundle manifest lists, by name, with the verdicts of their hashes.
#[derive(Debug, Default)]
pub struct Binaries {
    files: BTreeMap<String, BundleBinary>,
    verifier: Verifier,
}

impl Binaries {
    /// The `bin/<name>` artifacts of `manifest`, in `bundle`. An artifact whose sha256 is
    /// not hex cannot be in a manifest that was verified; it is left out rather than
    /// served unchecked.
    pub fn from_manifest(bundle: &Path, manifest: &Manifest) -> Binaries {
        let files = manifest
            .artifacts
            .iter()
            .filter(|artifact| artifact.kind == ArtifactKind::Binary)
            .filter_map(|artifact| {
                let name = artifact.path.strip_prefix(BIN_DIR)?;
                if name.is_empty() || name.contains('/') {
                    return None;
                }
                let digest = Digest::from_hex(&artifact.sha256)?;
                Some((
                    name.to_owned(),
                    BundleBinary {
                        path: bundle.join(&artifact.path),
                        digest,
                    },
                ))
            })
            .collect();
        Binaries {
            files,
            verifier: Verifier::default(),
        }
    }

    /// The names served, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&BundleBinary> {
        self.files.get(name)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The binary `name`, opened and checked against its digest. `Ok(None)`: the bundle
    /// lists no such binary, or its file is gone.
    pub async fn open(&self, name: &str) -> Result<Option<VerifiedFile>, FetchError> {
        let Some(binary) = self.files.get(name) else {
            return Ok(None);
        };
        self.verifier.open(&binary.path, &binary.digest).await
    }
}
