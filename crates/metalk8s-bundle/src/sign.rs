use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use ed25519_dalek::{SECRET_KEY_LENGTH, Signature, Signer, SigningKey, VerifyingKey};

use crate::{BundleError, MANIFEST_FILE, Manifest, SIGNATURE_FILE};

/// A fresh signing key from 32 bytes of the kernel's random source.
pub fn generate_signing_key() -> std::io::Result<SigningKey> {
    let mut seed = [0u8; SECRET_KEY_LENGTH];
    File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The contents of `manifest.json.sig` for these exact manifest bytes: hex of the
/// signature and a newline.
pub fn sign(manifest_bytes: &[u8], key: &SigningKey) -> String {
    let signature = key.sign(manifest_bytes);
    format!("{}\n", hex::encode(signature.to_bytes()))
}

/// Writes `manifest.json` and `manifest.json.sig` at the root of `dir`.
pub fn write_signed(dir: &Path, manifest: &Manifest, key: &SigningKey) -> Result<(), BundleError> {
    let bytes = manifest.to_json();
    let manifest_path = dir.join(MANIFEST_FILE);
    fs::write(&manifest_path, &bytes).map_err(BundleError::io(manifest_path))?;
    let signature_path = dir.join(SIGNATURE_FILE);
    fs::write(&signature_path, sign(&bytes, key)).map_err(BundleError::io(signature_path))
}

/// Hex form of a public key, as nodes and `bundle verify` are given it.
pub fn public_key_to_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

pub fn public_key_from_hex(text: &str) -> Result<VerifyingKey, BundleError> {
    let malformed = |reason: String| BundleError::MalformedPublicKey { reason };
    let bytes: [u8; 32] = decode_hex_array(text).map_err(malformed)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| malformed(e.to_string()))
}

pub(crate) fn signature_from_file_text(text: &str) -> Result<Signature, BundleError> {
    let bytes: [u8; 64] =
        decode_hex_array(text).map_err(|reason| BundleError::MalformedSignature { reason })?;
    Ok(Signature::from_bytes(&bytes))
}

fn decode_hex_array<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| e.to_string())?;
    let found = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, found {found}"))
}
