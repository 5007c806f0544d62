//! The names a registry client sends: repository names, tags and digests, parsed with the
//! grammar of the OCI distribution specification. Everything that reaches the file system
//! has been through these parsers first, and none of them accepts `.`, `..`, `%` or `\`
//! as a path component.

use std::fmt;

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

/// Longest repository name accepted (the specification asks clients to stay under 255
/// characters with the registry's host name included).
pub const MAX_NAME_LENGTH: usize = 255;

/// Whether `name` is a repository name of the distribution specification:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn is_valid_repository_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LENGTH
        && name.split('/').all(is_valid_name_component)
}

fn is_valid_name_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alphanumeric = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let mut index = 0;
    loop {
        // A run of [a-z0-9]+ ...
        let start = index;
        while index < bytes.len() && alphanumeric(bytes[index]) {
            index += 1;
        }
        if index == start {
            return false;
        }
        if index == bytes.len() {
            return true;
        }
        // ... then a separator: `.`, `_`, `__` or `-+`, and another run must follow.
        match bytes[index] {
            b'.' => index += 1,
            b'_' => {
                index += 1;
                if bytes.get(index) == Some(&b'_') {
                    index += 1;
                }
            }
            b'-' => {
                while bytes.get(index) == Some(&b'-') {
                    index += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Whether `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    match bytes.next() {
        Some(first) if word(first) => {}
        _ => return false,
    }
    tag.len() <= 128 && bytes.all(|byte| word(byte) || byte == b'.' || byte == b'-')
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
        if is_valid_tag(text) {
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
    fn repository_names_follow_the_specification() {
        for good in [
            "nginx",
            "library/nginx",
            "a/b/c",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "k8s.gcr.io/pause",
            "0",
        ] {
            assert!(is_valid_repository_name(good), "{good:?} refused");
        }
        for bad in [
            "",
            "..",
            ".",
            "../etc",
            "a/../b",
            "a/./b",
            "/abs",
            "a//b",
            "a/",
            "Upper",
            "foo___bar",
            "foo-",
            "-foo",
            "foo.",
            "foo..bar",
            "foo_-bar",
            "%2e%2e",
            "a\\b",
            "_catalog",
        ] {
            assert!(!is_valid_repository_name(bad), "{bad:?} accepted");
        }
        assert!(!is_valid_repository_name(&"a".repeat(256)));
    }

    #[test]
    fn tags_follow_the_specification() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(is_valid_tag(good), "{good:?} refused");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "-x",
            "a/b",
            "a:b",
            "%2e",
            &"t".repeat(129),
        ] {
            assert!(!is_valid_tag(bad), "{bad:?} accepted");
        }
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
