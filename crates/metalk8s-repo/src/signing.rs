//! The cluster's APT signing key: an OpenPGP v4 EdDSA (ed25519) key made with rpgp, kept
//! on the bootstrap node as an armored secret key file (mode 0600), exported as a binary
//! keyring for the nodes (`signed-by=/etc/apt/keyrings/metalk8s.gpg`), and used to make the
//! cleartext signature of `InRelease`. Debian 12's gpgv (2.2) verifies EdDSA v4 keys;
//! v6 keys and the newer Ed25519 algorithm id would not be understood by it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, KeyType, SecretKeyParamsBuilder,
    SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password, Timestamp};

/// Mode of the secret key file.
pub const SECRET_KEY_MODE: u32 = 0o600;

/// User ID of generated keys.
pub const DEFAULT_USER_ID: &str = "metalk8s cluster APT repository <apt@metalk8s.invalid>";

/// How far key creation and signature times are set in the past. APT runs on the nodes
/// before chrony has synchronised their clocks, and gpgv refuses a key "created in the
/// future" of a node whose clock is behind the bootstrap node's.
const KEY_BACKDATE_SECONDS: u32 = 24 * 3600;
const SIGNATURE_BACKDATE_SECONDS: u32 = 3600;

/// What can go wrong generating, storing, loading or using the APT signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate the APT signing key")]
    Generate(#[source] Box<pgp::errors::Error>),
    #[error("invalid parameters for the APT signing key")]
    Parameters(#[source] Box<pgp::composed::SecretKeyParamsBuilderError>),
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not an armored OpenPGP secret key", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<pgp::errors::Error>,
    },
    #[error("{}: the key's self-signatures do not verify", path.display())]
    Bindings {
        path: PathBuf,
        #[source]
        source: Box<pgp::errors::Error>,
    },
    #[error(
        "{}: secret key file is readable by others (mode {mode:o}); expected {SECRET_KEY_MODE:o}",
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{}: already exists; refusing to replace a signing key", path.display())]
    Exists { path: PathBuf },
    #[error("cannot serialize the APT signing key")]
    Serialize(#[source] Box<pgp::errors::Error>),
    #[error("cannot sign the APT Release file")]
    Sign(#[source] Box<pgp::errors::Error>),
}

/// The APT repository's signing key (secret part included).
#[derive(Clone)]
pub struct AptSigningKey {
    key: SignedSecretKey,
}

impl std::fmt::Debug for AptSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret key.
        f.debug_struct("AptSigningKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl AptSigningKey {
    /// A new ed25519 signing key with `user_id` (see [`DEFAULT_USER_ID`]).
    pub fn generate(user_id: &str) -> Result<AptSigningKey, KeyError> {
        let created = Timestamp::from_secs(Timestamp::now().as_secs() - KEY_BACKDATE_SECONDS);
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .created_at(created)
            .primary_user_id(user_id.to_owned())
            .preferred_hash_algorithms(
                [HashAlgorithm::Sha512, HashAlgorithm::Sha256]
                    .into_iter()
                    .collect(),
            )
            .build()
            .map_err(|error| KeyError::Parameters(Box::new(error)))?;
        let key = params
            .generate(rand::thread_rng())
            .map_err(|error| KeyError::Generate(Box::new(error)))?;
        Ok(AptSigningKey { key })
    }

    /// Loads the armored secret key at `path`, refusing a file others can read.
    pub fn load(path: &Path) -> Result<AptSigningKey, KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(io_error)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(io_error)?;
        let (key, _headers) =
            SignedSecretKey::from_string(&text).map_err(|source| KeyError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
        key.verify_bindings().map_err(|source| KeyError::Bindings {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Ok(AptSigningKey { key })
    }

    /// Writes the armored secret key to a new file `path` with mode 0600. An existing file
    /// is never replaced: losing the key would make every node's keyring useless.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let armored = self
            .key
            .to_armored_string(ArmorOptions::default())
            .map_err(|error| KeyError::Serialize(Box::new(error)))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(SECRET_KEY_MODE)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => KeyError::Exists {
                    path: path.to_owned(),
                },
                _ => KeyError::Io {
                    path: path.to_owned(),
                    source,
                },
            })?;
        file.write_all(armored.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Io {
                path: path.to_owned(),
                source,
            })
    }

    /// Loads the key at `path`, or generates and saves one there when there is no file.
    /// The boolean says whether a key was generated.
    pub fn load_or_generate(path: &Path) -> Result<(AptSigningKey, bool), KeyError> {
        match AptSigningKey::load(path) {
            Ok(key) => Ok((key, false)),
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let key = AptSigningKey::generate(DEFAULT_USER_ID)?;
                key.save(path)?;
                Ok((key, true))
            }
            Err(error) => Err(error),
        }
    }

    /// The public key as a binary OpenPGP keyring, the format of
    /// `/etc/apt/keyrings/metalk8s.gpg` (`signed-by=`).
    pub fn public_keyring(&self) -> Result<Vec<u8>, KeyError> {
        self.key
            .to_public_key()
            .to_bytes()
            .map_err(|error| KeyError::Serialize(Box::new(error)))
    }

    /// The public key, ASCII-armored: what a text file carries (APT reads an armored
    /// keyring named `*.asc`).
    pub fn armored_public_key(&self) -> Result<String, KeyError> {
        self.key
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .map_err(|error| KeyError::Serialize(Box::new(error)))
    }

    /// Writes [`Self::public_keyring`] to `path` (mode 0644, replacing the file).
    pub fn write_public_keyring(&self, path: &Path) -> Result<(), KeyError> {
        let keyring = self.public_keyring()?;
        let io_error = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        fs::write(path, keyring).map_err(io_error)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(io_error)
    }

    /// Upper-case hex fingerprint, as gpg prints it.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.fingerprint())
    }

    /// The OpenPGP cleartext signature of `text` (the `InRelease` form of a `Release`).
    pub fn clearsign(&self, text: &str) -> Result<String, KeyError> {
        let created = Timestamp::from_secs(
            Timestamp::now()
                .as_secs()
                .saturating_sub(SIGNATURE_BACKDATE_SECONDS)
                .max(self.key.created_at().as_secs()),
        );
        let subpacket =
            |data| Subpacket::regular(data).map_err(|error| KeyError::Sign(Box::new(error)));
        let mut config = SignatureConfig::v4(
            SignatureType::Text,
            self.key.algorithm(),
            HashAlgorithm::Sha512,
        );
        config.hashed_subpackets = vec![
            subpacket(SubpacketData::SignatureCreationTime(created))?,
            subpacket(SubpacketData::IssuerFingerprint(self.key.fingerprint()))?,
        ];
        config.unhashed_subpackets = vec![subpacket(SubpacketData::IssuerKeyId(
            self.key.legacy_key_id(),
        ))?];
        let message =
            CleartextSignedMessage::new(text, config, &self.key.primary_key, &Password::empty())
                .map_err(|error| KeyError::Sign(Box::new(error)))?;
        message
            .to_armored_string(ArmorOptions::default())
            .map_err(|error| KeyError::Sign(Box::new(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgp::composed::SignedPublicKey;

    #[test]
    fn keys_round_trip_through_their_file_and_sign_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apt.key");
        let (key, generated) = AptSigningKey::load_or_generate(&path).unwrap();
        assert!(generated);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, generated) = AptSigningKey::load_or_generate(&path).unwrap();
        assert!(!generated);
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert!(matches!(key.save(&path), Err(KeyError::Exists { .. })));

        let public = SignedPublicKey::from_bytes(key.public_keyring().unwrap().as_slice()).unwrap();
        public.verify_bindings().unwrap();
        let armored = key.armored_public_key().unwrap();
        assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        let (from_armor, _) = SignedPublicKey::from_string(&armored).unwrap();
        assert_eq!(from_armor, public);

        let text = "Suite: metalk8s\nSHA256:\n abc 1 main/Packages\n-dash line\n";
        let signed = again.clearsign(text).unwrap();
        assert!(signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n"));
        let (message, _) = CleartextSignedMessage::from_string(&signed).unwrap();
        message.verify(&public).unwrap();
        assert_eq!(message.signed_text(), text.replace('\n', "\r\n"));

        let tampered = signed.replace("abc 1", "abd 1");
        let (message, _) = CleartextSignedMessage::from_string(&tampered).unwrap();
        assert!(message.verify(&public).is_err());
    }

    #[test]
    fn a_secret_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apt.key");
        AptSigningKey::generate(DEFAULT_USER_ID)
            .unwrap()
            .save(&path)
            .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AptSigningKey::load(&path),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
    }
}
