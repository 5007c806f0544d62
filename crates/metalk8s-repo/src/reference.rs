//! The references a registry client sends: tags and digests, parsed with the grammar of
//! the OCI distribution specification (repository names and tags: `metalk8s_model::oci`,
//! shared with the bundle spec). Everything that reaches the file system has been through
//! these parsers first, and none of them accepts `.`, `..`, `%` or `\` as a path
//! component.

use std::fmt;

use metalk8s_model::oci::is_tag;

/// The only digest algorithm served; the bundle's layouts store `blobs/sha256/<hex>`.
pub const SHA256: &str = "sha256";

/// A `sha256:<64 lower-case hex>` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// Why a string is not a digest this registry serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {digest:?} has no `algorithm:` prefix")]
    NoAlgorithm { digest: String },
    #[error("digest {digest:?} uses algorithm {algorithm:?}; only sha256 is served")]
    UnsupportedAlgorithm { digest: String, algorithm: String },
    #[error("digest {digest:?} is not sha256 followed by 64 lower-case hex digits")]
    MalformedHex { digest: String },
}

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(DigestError::NoAlgorithm {
                digest: text.to_owned(),
            });
        };
        if algorithm != SHA256 {
            return Err(DigestError::UnsupportedAlgorithm {
                digest: text.to_owned(),
                algorithm: algorithm.to_owned(),
            });
        }
        Digest::from_hex(hex).ok_or_else(|| DigestError::MalformedHex {
            digest: text.to_owned(),
        })
    }

    /// A digest from its 64 lower-case hex digits (a file name under `blobs/sha256/`).
    pub fn from_hex(hex: &str) -> Option<Digest> {
        let valid = hex.len() == 64
            && hex
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        valid.then(|| Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Digest {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        Digest {
            hex: hex::encode(digest.as_ref()),
        }
    }

    /// The 64 hex digits, which are also the blob's file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256}:{}", self.hex)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// Why a manifest reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("tag {tag:?} is not [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag { tag: String },
}

impl Reference {
    /// A reference with a `:` is a digest (tags cannot hold one), anything else a tag.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if text.contains(':') {
            return Ok(Reference::Digest(Digest::parse(text)?));
        }
        if is_tag(text) {
            Ok(Reference::Tag(text.to_owned()))
        } else {
            Err(ReferenceError::Tag {
                tag: text.to_owned(),
            })
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_are_sha256_and_64_lower_case_hex() {
        let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(digest.hex(), HEX);
        assert_eq!(digest.to_string(), format!("sha256:{HEX}"));

        let upper = format!("sha256:{}", HEX.to_uppercase());
        let short = format!("sha256:{}", &HEX[1..]);
        let long = format!("sha256:{HEX}0");
        let traversal = format!("sha256:../../{}", &HEX[6..]);
        for bad in [
            upper.as_str(),
            &short,
            &long,
            &traversal,
            "sha256:",
            "sha256",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Digest::parse(&format!("sha512:{HEX}{HEX}")),
            Err(DigestError::UnsupportedAlgorithm {
                digest: format!("sha512:{HEX}{HEX}"),
                algorithm: "sha512".into()
            })
        );
    }

    #[test]
    fn digest_of_bytes_matches_the_known_value() {
        assert_eq!(
            Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("1.0").unwrap(),
            Reference::Tag("1.0".into())
        );
        assert!(matches!(
            Reference::parse(&format!("sha256:{HEX}")).unwrap(),
            Reference::Digest(_)
        ));
        assert!(matches!(
            Reference::parse("sha256:abc"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse(".."),
            Err(ReferenceError::Tag { .. })
        ));
    }
}
