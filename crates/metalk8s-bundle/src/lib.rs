//! The offline bundle's library core (DESIGN.md, "Offline bundle"; crate table row
//! `metalk8s-bundle`): the versioned [`Manifest`], [`build_manifest`] which walks a bundle
//! directory and hashes every file, ed25519 signing ([`sign`], [`write_signed`]) and
//! [`verify`], which checks the signature, then every artifact, then that no file is
//! unlisted. Downloading (`bundle build`) and serving (repository, registry) come later
//! and build on this.
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
//! [`build_manifest`], so a bundle never carries something nobody classified.

mod build;
mod error;
mod manifest;
mod sign;
mod verify;
mod walk;

pub use build::build_manifest;
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::BundleError;
pub use manifest::{API_VERSION, Artifact, ArtifactKind, Component, KIND, Manifest};
pub use sign::{generate_signing_key, public_key_from_hex, public_key_to_hex, sign, write_signed};
pub use verify::{VerifiedBundle, verify};

/// File name of the manifest at the bundle root.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the manifest's detached signature at the bundle root.
pub const SIGNATURE_FILE: &str = "manifest.json.sig";
