use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
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

/// Writes a fresh signing key to `path` as a key file (hex of the 32-byte secret and a
/// newline), readable by its owner only; an existing file is never overwritten.
pub fn write_new_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    let key = generate_signing_key().map_err(BundleError::io("/dev/urandom"))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => BundleError::KeyExists {
                path: path.to_owned(),
            },
            _ => BundleError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    let text = format!("{}\n", hex::encode(key.to_bytes()));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(BundleError::io(path))?;
    Ok(key)
}

/// Reads a key file written by [`write_new_signing_key`].
pub fn read_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    let text = fs::read_to_string(path).map_err(BundleError::io(path))?;
    let seed: [u8; SECRET_KEY_LENGTH] =
        decode_hex_array(&text).map_err(|reason| BundleError::MalformedSigningKey {
            path: path.to_owned(),
            reason,
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key given as 64 hex digits, or as the path of a file holding them.
pub fn public_key_from_hex_or_file(text: &str) -> Result<VerifyingKey, BundleError> {
    let looks_like_hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if looks_like_hex {
        return public_key_from_hex(text);
    }
    let path = Path::new(text);
    let contents = fs::read_to_string(path).map_err(BundleError::io(path))?;
    public_key_from_hex(&contents)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_private_round_trips_and_is_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.key");
        let key = write_new_signing_key(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_new_signing_key(&path),
            Err(BundleError::KeyExists { .. })
        ));
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), key.to_bytes());

        let public = public_key_to_hex(&key.verifying_key());
        assert_eq!(
            public_key_from_hex_or_file(&public).unwrap(),
            key.verifying_key()
        );
        let public_file = dir.path().join("bundle.pub");
        fs::write(&public_file, format!("{public}\n")).unwrap();
        let from_file = public_key_from_hex_or_file(public_file.to_str().unwrap()).unwrap();
        assert_eq!(from_file, key.verifying_key());

        fs::write(&path, "zz").unwrap();
        let error = read_signing_key(&path).unwrap_err().to_string();
        assert!(
            error.contains("bundle.key: malformed signing key"),
            "{error}"
        );
    }
}
