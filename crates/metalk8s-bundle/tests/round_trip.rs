//! Build, sign and verify a small bundle in a temp dir, then tamper with it.

use std::fs;
use std::path::Path;

use metalk8s_bundle::{
    ArtifactKind, BundleError, Component, MANIFEST_FILE, Manifest, SIGNATURE_FILE, SigningKey,
    build_manifest, generate_signing_key, public_key_from_hex, public_key_to_hex, sign, verify,
    write_signed,
};
use tempfile::TempDir;
use time::OffsetDateTime;

const FILES: &[(&str, &[u8])] = &[
    ("debs/chrony.deb", b"not really a deb"),
    ("bin/kubeadm", b"#!/bin/true\n"),
    ("images/pause/index.json", b"{\"schemaVersion\":2}"),
    ("images/pause/blobs/sha256/aa", b"layer"),
    ("manifests/calico.yaml", b"kind: List\n"),
];

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A signed bundle with a few files, and its manifest.
fn signed_bundle() -> (TempDir, Manifest) {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in FILES {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }
    let components = vec![Component {
        name: "chrony".into(),
        version: "4.3".into(),
        origin: "http://deb.debian.org/debian".into(),
    }];
    let manifest =
        build_manifest(dir.path(), "0.1.0", OffsetDateTime::UNIX_EPOCH, components).unwrap();
    write_signed(dir.path(), &manifest, &key()).unwrap();
    (dir, manifest)
}

fn verify_err(dir: &Path) -> BundleError {
    verify(dir, &key().verifying_key()).unwrap_err()
}

/// Writes and signs an edited manifest, as a (compromised) signer would.
fn resign(dir: &Path, manifest: &Manifest) {
    let bytes = manifest.to_json();
    fs::write(dir.join(MANIFEST_FILE), &bytes).unwrap();
    fs::write(dir.join(SIGNATURE_FILE), sign(&bytes, &key())).unwrap();
}

#[test]
fn round_trip() {
    let (dir, manifest) = signed_bundle();
    let paths: Vec<_> = manifest.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "bin/kubeadm",
            "debs/chrony.deb",
            "images/pause/blobs/sha256/aa",
            "images/pause/index.json",
            "manifests/calico.yaml",
        ]
    );
    assert_eq!(manifest.artifacts[1].kind, ArtifactKind::Deb);
    assert_eq!(manifest.artifacts[2].kind, ArtifactKind::OciLayout);
    assert_eq!(manifest.artifacts[1].size, 16);

    let verified = verify(dir.path(), &key().verifying_key()).unwrap();
    assert_eq!(verified.manifest, manifest);

    let text = String::from_utf8(manifest.to_json()).unwrap();
    assert!(text.contains("\"apiVersion\": \"metalk8s.io/v1alpha1\""));
    assert!(text.contains("\"kind\": \"ociLayout\""));
    assert!(text.contains("\"created\": \"1970-01-01T00:00:00Z\""));
}

#[test]
fn build_is_deterministic() {
    let (dir, manifest) = signed_bundle();
    let again = build_manifest(
        dir.path(),
        "0.1.0",
        OffsetDateTime::UNIX_EPOCH,
        manifest.components.clone(),
    )
    .unwrap();
    assert_eq!(again.to_json(), manifest.to_json());
}

#[test]
fn flipped_byte_is_rejected_naming_the_artifact() {
    let (dir, _) = signed_bundle();
    let path = dir.path().join("debs/chrony.deb");
    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    let err = verify_err(dir.path());
    assert!(matches!(err, BundleError::Sha256Mismatch { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("artifact debs/chrony.deb: sha256 mismatch (expected "),
        "{message}"
    );
}

#[test]
fn truncated_artifact_is_a_size_mismatch() {
    let (dir, _) = signed_bundle();
    fs::write(dir.path().join("bin/kubeadm"), b"#!").unwrap();
    let err = verify_err(dir.path());
    assert_eq!(
        err.to_string(),
        "artifact bin/kubeadm: size mismatch (expected 12 bytes, found 2)"
    );
}

#[test]
fn modified_manifest_is_a_bad_signature() {
    let (dir, _) = signed_bundle();
    let path = dir.path().join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("\"0.1.0\"", "\"0.1.1\"")).unwrap();
    assert!(matches!(verify_err(dir.path()), BundleError::BadSignature));
}

#[test]
fn wrong_public_key_is_a_bad_signature() {
    let (dir, _) = signed_bundle();
    let other = generate_signing_key().unwrap().verifying_key();
    let err = verify(dir.path(), &other).unwrap_err();
    assert!(matches!(err, BundleError::BadSignature), "{err:?}");
}

#[test]
fn public_key_hex_round_trips() {
    let public = key().verifying_key();
    assert_eq!(
        public_key_from_hex(&public_key_to_hex(&public)).unwrap(),
        public
    );
    assert!(public_key_from_hex("abcd").is_err());
}

#[test]
fn malformed_signature_file_is_rejected() {
    let (dir, _) = signed_bundle();
    fs::write(dir.path().join(SIGNATURE_FILE), "zz\n").unwrap();
    let err = verify_err(dir.path());
    assert!(
        matches!(err, BundleError::MalformedSignature { .. }),
        "{err:?}"
    );
}

#[test]
fn missing_artifact_is_rejected() {
    let (dir, _) = signed_bundle();
    fs::remove_file(dir.path().join("manifests/calico.yaml")).unwrap();
    assert_eq!(
        verify_err(dir.path()).to_string(),
        "artifact manifests/calico.yaml: missing from the bundle"
    );
}

#[test]
fn extra_file_is_rejected() {
    let (dir, _) = signed_bundle();
    fs::write(dir.path().join("debs/evil.deb"), b"x").unwrap();
    let err = verify_err(dir.path());
    assert!(
        matches!(&err, BundleError::UnlistedFile { path } if path == "debs/evil.deb"),
        "{err:?}"
    );
}

#[test]
fn dot_dot_path_is_rejected_even_when_signed() {
    let (dir, mut manifest) = signed_bundle();
    manifest.artifacts[0].path = "../outside".into();
    resign(dir.path(), &manifest);
    let err = verify_err(dir.path());
    assert!(
        matches!(&err, BundleError::UnsafePath { path } if path == "../outside"),
        "{err:?}"
    );
    assert!(Manifest::from_json(&manifest.to_json()).is_err());
}

#[test]
fn absolute_path_is_rejected() {
    let (_, mut manifest) = signed_bundle();
    manifest.artifacts[0].path = "/etc/shadow".into();
    let err = Manifest::from_json(&manifest.to_json()).unwrap_err();
    assert!(matches!(err, BundleError::UnsafePath { .. }), "{err:?}");
}

#[test]
fn file_outside_known_locations_is_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    let err = build_manifest(dir.path(), "0.1.0", OffsetDateTime::UNIX_EPOCH, vec![]).unwrap_err();
    assert!(
        matches!(err, BundleError::UnknownLocation { .. }),
        "{err:?}"
    );
}
