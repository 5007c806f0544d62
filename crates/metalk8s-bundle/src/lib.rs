//! The offline bundle (DESIGN.md, "Offline bundle"; crate table row `metalk8s-bundle`):
//! what `metalk8s bundle build | verify | inspect` do, and what the repository and
//! registry served from the bootstrap node read.
//!
//! - [`load_spec`] reads the bundle spec (YAML) that lists OS packages, binaries, images
//!   and rendered manifests; [`build_bundle`] gathers them (APT for packages and their
//!   dependencies, resumable pinned downloads, OCI layouts and `docker save` archives
//!   converted to OCI, images pulled from registries by pinned digest), then writes a
//!   signed directory or `.tar.zst`. A spec may declare the Kubernetes release it carries
//!   (`bundles/kubernetes-<minor>.yaml` are the ready ones).
//! - [`Manifest`] is the versioned table of contents; [`build_manifest`] walks a bundle
//!   directory and hashes every file; [`write_signed`] signs it with ed25519.
//! - [`verify_bundle`] checks the signature, then every artifact, then that no file is
//!   unlisted, for a directory or (streaming, nothing extracted) an archive; [`unpack`]
//!   unpacks an archive with the same checks of every entry.
//! - [`Manifest::images`], [`Manifest::packages`] and [`Manifest::kubernetes_version`] say
//!   what a bundle offers to the nodes.
//!
//! # Bundle layout
//!
//! ```text
//! BUNDLE/
//!   manifest.json        the Manifest, exactly the bytes that were signed
//!   manifest.json.sig    hex of the 64-byte ed25519 signature over manifest.json
//!   debs/…               kind `deb`
//!   rpms/…               kind `rpm`
//!   bin/…                kind `binary`
//!   images/<name>/…      kind `ociLayout` (every file of an OCI image layout)
//!   manifests/…          kind `manifest` (rendered Kubernetes manifests)
//! ```
//!
//! The top-level directory decides an artifact's kind; a file anywhere else is refused by
//! [`build_manifest`], so a bundle never carries something nobody classified. Each
//! `images/<name>/` holds one image: its `index.json` has a single manifest descriptor
//! annotated with [`REF_NAME_ANNOTATION`] = the tag.

mod apt;
mod archive;
mod build;
mod builder;
mod download;
mod error;
mod image;
mod manifest;
mod progress;
mod reference;
mod registry;
mod sign;
mod spec;
mod unpack;
mod verify;
mod walk;

pub use apt::AptError;
pub use archive::{unpack, write_archive};
pub use build::build_manifest;
pub use builder::{BuildError, BuildOptions, Built, OutputFormat, build_bundle};
pub use download::{DownloadError, Downloader};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::BundleError;
pub use image::{ImageError, REF_NAME_ANNOTATION};
pub use manifest::{
    API_VERSION, Artifact, ArtifactKind, BundledBinary, BundledImage, Component, KIND, Manifest,
};
pub use progress::{Progress, Silent, Transfer};
pub use registry::RegistryError;
pub use sign::{
    generate_signing_key, public_key_from_hex, public_key_from_hex_or_file, public_key_to_hex,
    read_signing_key, sign, write_new_signing_key, write_signed,
};
pub use spec::{
    BinarySource, BinarySpec, BundleSpec, CALICO_IMAGES, ImageReference, ImageSource, ImageSpec,
    KUBERNETES_ADDON_IMAGES, KUBERNETES_BINARIES, KUBERNETES_IMAGES, LocalPath, ManifestFileSpec,
    ManifestSource, PackageSource, Platform, RegistryImage, SPEC_KIND, SpecError, SpecProblem,
    load_spec, parse_spec,
};
pub use unpack::UnpackError;
pub use verify::{VerifiedBundle, read_manifest, verify, verify_bundle};

/// File name of the manifest at the bundle root.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the manifest's detached signature at the bundle root.
pub const SIGNATURE_FILE: &str = "manifest.json.sig";
