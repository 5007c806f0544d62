//! `registry:` images: pulled over the OCI distribution API by tag, and refused unless
//! they are what the spec pinned.
//!
//! The manifest (or image index) the tag names is fetched and hashed: its digest must be
//! the pinned one. Of an index, the manifest of the wanted platform is fetched by digest and
//! checked against its descriptor. The config and layers go through the download cache
//! (resumable, kept across builds) and are checked against their digests and sizes. The
//! image lands as an OCI layout whose `index.json` names the pinned manifest or index under
//! the tag, so the bundle's registry serves it with the upstream digest; of an index, only
//! the chosen platform's blobs are in the layout.
//!
//! Pulls are anonymous. A registry that answers `401` with `WWW-Authenticate: Bearer
//! realm=…,service=…,scope=…` is asked for an (anonymous) token at its realm, which is then
//! sent to the host that asked for it only. Redirects are followed (registry.k8s.io
//! redirects to regional mirrors, blobs often to object storage); the repository is then
//! read where the manifest was found.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, DigestAlgorithm, ImageIndex, ImageManifest, MediaType};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE,
};
use serde::Deserialize;

use crate::download::{DownloadError, Downloader};
use crate::image::{ImageError, LayoutWriter, digest_of};
use crate::progress::Progress;
use crate::reference::Platform;
use crate::spec::RegistryImage;
use crate::walk::sha256_reader;

/// Largest manifest accepted (what the distribution specification lets registries refuse
/// above).
const MAX_MANIFEST_SIZE: u64 = 4 << 20;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_TYPES: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];
/// `Accept` of a manifest request: the four types above.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Why an image could not be pulled. Each names the image or the URL.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: request failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{image}: the registry has no such tag ({url} answered {status}{detail})\n    \
         hint: check the repository and the tag; `skopeo list-tags docker://HOST/REPOSITORY` \
         lists the tags"
    )]
    NoSuchTag {
        image: String,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{url}: the registry answered {status}{detail}")]
    Status {
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error(
        "{url}: the registry wants credentials ({challenge}); only anonymous pulls are \
         supported\n    hint: pull the image with your credentials (`skopeo copy … \
         oci:DIR:TAG`) and use `ociLayout: DIR`"
    )]
    Unauthorized { url: String, challenge: String },
    #[error("{realm}: no token for {scope} ({reason})")]
    Token {
        realm: String,
        scope: String,
        reason: String,
    },
    #[error(
        "{image}: the registry serves sha256:{found} for the tag, but the spec pins \
         sha256:{pinned}\n    hint: the tag was moved or the pin is wrong; if you trust \
         the image the tag names now, pin its digest"
    )]
    DigestMismatch {
        image: String,
        pinned: String,
        found: String,
    },
    #[error(
        "{url}: content hashes to sha256:{found} ({size} bytes), not {digest} ({expected_size} bytes)"
    )]
    ContentMismatch {
        url: String,
        digest: String,
        found: String,
        size: u64,
        expected_size: u64,
    },
    #[error(
        "{image}: no {wanted} image in its index (found: {})\n    hint: set `platform` to \
         one of those",
        if found.is_empty() { "none".to_owned() } else { found.join(", ") }
    )]
    NoPlatform {
        image: String,
        wanted: String,
        found: Vec<String>,
    },
    #[error(
        "{image}: the image is for {found}, not {wanted}\n    hint: pin the digest of the \
         {wanted} image or of the index, or set `platform`"
    )]
    WrongPlatform {
        image: String,
        wanted: String,
        found: String,
    },
    #[error("{url}: {what} is not supported")]
    Unsupported { url: String, what: String },
    #[error("{url}: not a valid {what}")]
    Json {
        url: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url}: a manifest larger than {MAX_MANIFEST_SIZE} bytes")]
    TooLarge { url: String },
    #[error("{realm}: the registry sends token requests over plain HTTP")]
    PlainHttpRealm { realm: String },
    #[error("{url}: cannot read the answer")]
    Read {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Download(#[from] DownloadError),
}

/// Pulls `image` as `tag` into the layout `writer` makes; returns the pinned digest.
pub(crate) fn pull(
    image: &RegistryImage,
    tag: &str,
    writer: &LayoutWriter,
    downloader: &Downloader,
    progress: &dyn Progress,
) -> Result<String, ImageError> {
    let reference = &image.reference;
    let name = reference.to_string();
    let root = reference.api_base(image.insecure);
    let mut session = Session {
        client: downloader.client(),
        plain_http: root.starts_with("http:"),
        default_scope: format!("repository:{}:pull", reference.repository),
        token: None,
    };
    let top = session
        .manifest(&format!("{root}/manifests/{}", reference.tag))
        .map_err(|error| match error {
            RegistryError::Status {
                url,
                status: StatusCode::NOT_FOUND,
                detail,
            } => RegistryError::NoSuchTag {
                image: name.clone(),
                url,
                status: StatusCode::NOT_FOUND,
                detail,
            },
            other => other,
        })?;
    if top.sha256 != reference.digest {
        return Err(RegistryError::DigestMismatch {
            image: name,
            pinned: reference.digest.clone(),
            found: top.sha256,
        }
        .into());
    }
    // The repository is read where the tag was found, after any redirect.
    let base = top
        .url
        .strip_suffix(&format!("/manifests/{}", reference.tag))
        .unwrap_or(&root)
        .to_owned();
    let (manifest, single) = if is_index(&top.media_type) {
        let index: ImageIndex = parse(&top, "image index")?;
        let chosen = select_platform(index.manifests(), &image.platform, &name)?;
        let url = format!("{base}/manifests/{}", chosen.digest());
        let child = session.manifest(&url)?;
        check_content(&child, chosen)?;
        if is_index(&child.media_type) {
            return Err(RegistryError::Unsupported {
                url,
                what: "an image index inside an image index".into(),
            }
            .into());
        }
        writer.put_bytes(&child.bytes)?;
        (parse::<ImageManifest>(&child, "image manifest")?, false)
    } else {
        (parse::<ImageManifest>(&top, "image manifest")?, true)
    };
    let config = session.blob(&base, manifest.config(), writer, downloader, progress)?;
    if single {
        let bytes = fs::read(&config).map_err(io_error(&config))?;
        check_config_platform(&bytes, &image.platform, &name, &top.url)?;
    }
    for layer in manifest.layers() {
        session.blob(&base, layer, writer, downloader, progress)?;
    }
    writer.put_bytes(&top.bytes)?;
    let descriptor = Descriptor::new(
        MediaType::from(top.media_type.as_str()),
        top.bytes.len() as u64,
        digest_of(&top.sha256),
    );
    writer.finish(descriptor, tag)?;
    Ok(reference.pinned())
}

/// A manifest as the registry served it.
struct Fetched {
    /// Where it was found, after redirects.
    url: String,
    media_type: String,
    bytes: Vec<u8>,
    sha256: String,
}

/// Requests to one registry, and the token it asked for.
struct Session<'a> {
    client: &'a Client,
    /// Plain HTTP is allowed (loopback, or `insecure`): token realms may use it too.
    plain_http: bool,
    /// The scope asked for when a challenge names none.
    default_scope: String,
    /// The origin (`scheme://host:port`) a token was issued for, the challenge, the token.
    token: Option<(String, Challenge, String)>,
}

impl Session<'_> {
    fn manifest(&mut self, url: &str) -> Result<Fetched, RegistryError> {
        let response = self.get(url)?;
        let url = response.url().to_string();
        let header_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or("").trim().to_owned());
        let mut bytes = Vec::new();
        response
            .take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| RegistryError::Read {
                url: url.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge { url });
        }
        let media_type = media_type(header_type.as_deref(), &bytes).ok_or_else(|| {
            RegistryError::Unsupported {
                url: url.clone(),
                what: format!(
                    "a manifest of type {}",
                    header_type.as_deref().unwrap_or("unknown")
                ),
            }
        })?;
        let (_, sha256) = sha256_reader(&bytes[..]).expect("hashing bytes in memory cannot fail");
        Ok(Fetched {
            url,
            media_type,
            bytes,
            sha256,
        })
    }

    /// Stores the blob `descriptor` of the repository at `base` in the layout, through the
    /// download cache; returns where it is in the layout.
    fn blob(
        &mut self,
        base: &str,
        descriptor: &Descriptor,
        writer: &LayoutWriter,
        downloader: &Downloader,
        progress: &dyn Progress,
    ) -> Result<PathBuf, ImageError> {
        let url = format!("{base}/blobs/{}", descriptor.digest());
        if *descriptor.digest().algorithm() != DigestAlgorithm::Sha256 {
            return Err(RegistryError::Unsupported {
                url,
                what: format!("digest {}", descriptor.digest()),
            }
            .into());
        }
        let hex = descriptor.digest().digest();
        let fetch = |session: &Self| {
            downloader.fetch_with(&url, &session.authorization(&url), hex, progress)
        };
        let cached = match fetch(self) {
            // A token outlived: ask for another one, once.
            Err(DownloadError::Status {
                status: StatusCode::UNAUTHORIZED,
                ..
            }) if self.token.is_some() => {
                self.renew_token()?;
                fetch(self).map_err(RegistryError::from)?
            }
            other => other.map_err(RegistryError::from)?,
        };
        let size = fs::metadata(&cached).map_err(io_error(&cached))?.len();
        if size != descriptor.size() {
            return Err(RegistryError::ContentMismatch {
                url,
                digest: descriptor.digest().to_string(),
                found: hex.to_owned(),
                size,
                expected_size: descriptor.size(),
            }
            .into());
        }
        let dest = writer.blob_path(hex);
        fs::copy(&cached, &dest).map_err(io_error(&dest))?;
        Ok(dest)
    }

    /// GET the manifest at `url`, answering a bearer challenge once.
    fn get(&mut self, url: &str) -> Result<Response, RegistryError> {
        let send = |session: &Self, url: &str| {
            let mut headers = session.authorization(url);
            headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
            let response = session
                .client
                .get(url)
                .headers(headers)
                .send()
                .map_err(|source| RegistryError::Request {
                    url: url.to_owned(),
                    source,
                })?;
            Ok::<_, RegistryError>(response)
        };
        let mut response = send(self, url)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let answered = response.url().to_string();
            let header = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let challenge =
                Challenge::parse(&header).ok_or_else(|| RegistryError::Unauthorized {
                    url: answered.clone(),
                    challenge: if header.is_empty() {
                        "no challenge".into()
                    } else {
                        header.clone()
                    },
                })?;
            let token = self.fetch_token(&challenge)?;
            self.token = Some((origin(&answered), challenge, token));
            response = send(self, &answered)?;
            if response.status() == StatusCode::UNAUTHORIZED {
                return Err(RegistryError::Unauthorized {
                    url: answered,
                    challenge: header,
                });
            }
        }
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = response.url().to_string();
        Err(RegistryError::Status {
            url,
            status,
            detail: error_detail(response),
        })
    }

    /// `Authorization: Bearer` for `url` when a token was issued for its origin.
    fn authorization(&self, url: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some((token_origin, _, token)) = &self.token
            && *token_origin == origin(url)
            && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    fn renew_token(&mut self) -> Result<(), RegistryError> {
        if let Some((origin, challenge, _)) = self.token.take() {
            let token = self.fetch_token(&challenge)?;
            self.token = Some((origin, challenge, token));
        }
        Ok(())
    }

    /// An anonymous token from the challenge's realm.
    fn fetch_token(&self, challenge: &Challenge) -> Result<String, RegistryError> {
        let scope = challenge
            .scope
            .clone()
            .unwrap_or_else(|| self.default_scope.clone());
        let failed = |reason: String| RegistryError::Token {
            realm: challenge.realm.clone(),
            scope: scope.clone(),
            reason,
        };
        if challenge.realm.starts_with("http://") && !self.plain_http {
            return Err(RegistryError::PlainHttpRealm {
                realm: challenge.realm.clone(),
            });
        }
        let mut url = reqwest::Url::parse(&challenge.realm)
            .map_err(|error| failed(format!("not a URL: {error}")))?;
        url.query_pairs_mut().append_pair("scope", &scope);
        if let Some(service) = &challenge.service {
            url.query_pairs_mut().append_pair("service", service);
        }
        let response = self
            .client
            .get(url)
            .send()
            .map_err(|source| RegistryError::Request {
                url: challenge.realm.clone(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_reader(response.take(1 << 20))
            .map_err(|error| failed(format!("not a token answer: {error}")))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| failed("an answer without a token".into()))
    }
}

/// A `WWW-Authenticate: Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

impl Challenge {
    /// `Bearer realm="…",service="…",scope="…"`; `None` for any other scheme.
    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, mut rest) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let (mut realm, mut service, mut scope) = (None, None, None);
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let (value, remaining) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let mut value = String::new();
                    let mut chars = quoted.char_indices();
                    let mut end = quoted.len();
                    while let Some((at, c)) = chars.next() {
                        match c {
                            '\\' => value.extend(chars.next().map(|(_, c)| c)),
                            '"' => {
                                end = at + 1;
                                break;
                            }
                            c => value.push(c),
                        }
                    }
                    (value, &quoted[end..])
                }
                None => {
                    let end = after.find(',').unwrap_or(after.len());
                    (after[..end].trim().to_owned(), &after[end..])
                }
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "service" => service = Some(value),
                "scope" => scope = Some(value),
                _ => {}
            }
            rest = remaining;
        }
        Some(Challenge {
            realm: realm
                .filter(|realm| realm.starts_with("https://") || realm.starts_with("http://"))?,
            service,
            scope,
        })
    }
}

/// `scheme://host[:port]` of a URL, what a token is bound to.
fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
}

/// The media type of a manifest: the `Content-Type` the registry sent when it is one of
/// the four manifest types, else the document's own `mediaType`, else its shape.
fn media_type(header: Option<&str>, bytes: &[u8]) -> Option<String> {
    if let Some(header) = header.filter(|header| MANIFEST_TYPES.contains(header)) {
        return Some(header.to_owned());
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let shape: Shape = serde_json::from_slice(bytes).ok()?;
    if shape.schema_version != Some(2) {
        return None;
    }
    match shape.media_type {
        Some(declared) => MANIFEST_TYPES
            .contains(&declared.as_str())
            .then_some(declared),
        None if shape.manifests.is_some() => Some(OCI_INDEX.to_owned()),
        None if shape.layers.is_some() => Some(OCI_MANIFEST.to_owned()),
        None => None,
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

fn parse<T: serde::de::DeserializeOwned>(
    fetched: &Fetched,
    what: &'static str,
) -> Result<T, RegistryError> {
    serde_json::from_slice(&fetched.bytes).map_err(|source| RegistryError::Json {
        url: fetched.url.clone(),
        what,
        source,
    })
}

/// A manifest fetched by digest must be what its descriptor says.
fn check_content(fetched: &Fetched, descriptor: &Descriptor) -> Result<(), RegistryError> {
    let size = fetched.bytes.len() as u64;
    if descriptor.digest().digest() == fetched.sha256 && size == descriptor.size() {
        return Ok(());
    }
    Err(RegistryError::ContentMismatch {
        url: fetched.url.clone(),
        digest: descriptor.digest().to_string(),
        found: fetched.sha256.clone(),
        size,
        expected_size: descriptor.size(),
    })
}

/// The manifest of an index for `wanted` (any variant when it names none).
fn select_platform<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
    image: &str,
) -> Result<&'a Descriptor, RegistryError> {
    let platforms: Vec<(Platform, &Descriptor)> = manifests
        .iter()
        .filter_map(|descriptor| {
            let platform = descriptor.platform().as_ref()?;
            Some((
                Platform {
                    os: platform.os().to_string(),
                    architecture: platform.architecture().to_string(),
                    variant: platform.variant().clone(),
                },
                descriptor,
            ))
        })
        .collect();
    platforms
        .iter()
        .find(|(platform, _)| {
            platform.os == wanted.os
                && platform.architecture == wanted.architecture
                && (wanted.variant.is_none() || platform.variant == wanted.variant)
        })
        .map(|(_, descriptor)| *descriptor)
        .ok_or_else(|| RegistryError::NoPlatform {
            image: image.to_owned(),
            wanted: wanted.to_string(),
            found: platforms
                .iter()
                .map(|(platform, _)| platform.to_string())
                .collect(),
        })
}

/// A single-platform image must be for the wanted platform.
fn check_config_platform(
    config: &[u8],
    wanted: &Platform,
    image: &str,
    url: &str,
) -> Result<(), RegistryError> {
    #[derive(Deserialize)]
    struct ConfigPlatform {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    let found: ConfigPlatform =
        serde_json::from_slice(config).map_err(|source| RegistryError::Json {
            url: url.to_owned(),
            what: "image config",
            source,
        })?;
    let matches = found.os == wanted.os
        && found.architecture == wanted.architecture
        && (wanted.variant.is_none() || found.variant == wanted.variant);
    if matches {
        return Ok(());
    }
    Err(RegistryError::WrongPlatform {
        image: image.to_owned(),
        wanted: wanted.to_string(),
        found: Platform {
            os: found.os,
            architecture: found.architecture,
            variant: found.variant,
        }
        .to_string(),
    })
}

/// `: CODE: message` from a registry's error body, when it has one.
fn error_detail(response: Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let mut body = Vec::new();
    if response.take(64 << 10).read_to_end(&mut body).is_err() {
        return String::new();
    }
    let Ok(errors) = serde_json::from_slice::<Errors>(&body) else {
        return String::new();
    };
    errors
        .errors
        .iter()
        .map(|entry| {
            let code = entry.code.as_deref().unwrap_or("");
            let message = entry.message.as_deref().unwrap_or("");
            format!(
                ": {code}{}{message}",
                if code.is_empty() { "" } else { " " }
            )
        })
        .collect()
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_give_realm_service_and_scope() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            challenge,
            Challenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
            }
        );
        let bare = Challenge::parse(r#"bearer realm="http://127.0.0.1:1/t""#).unwrap();
        assert_eq!(bare.service, None);
        assert_eq!(Challenge::parse(r#"Basic realm="registry""#), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
        assert_eq!(Challenge::parse(r#"Bearer realm="ftp://x""#), None);
    }

    #[test]
    fn media_types_come_from_the_header_or_the_document() {
        assert_eq!(
            media_type(Some(DOCKER_MANIFEST), b"{}").as_deref(),
            Some(DOCKER_MANIFEST)
        );
        assert_eq!(
            media_type(
                Some("application/json"),
                br#"{"schemaVersion":2,"manifests":[]}"#
            )
            .as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            media_type(None, br#"{"schemaVersion":2,"layers":[]}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
        // Schema 1 manifests are not pulled.
        assert_eq!(
            media_type(
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                br#"{"schemaVersion":1,"fsLayers":[]}"#
            ),
            None
        );
    }

    #[test]
    fn tokens_go_to_the_origin_that_asked_for_them() {
        let client = Client::new();
        let mut session = Session {
            client: &client,
            plain_http: false,
            default_scope: "repository:x:pull".into(),
            token: None,
        };
        assert!(session.authorization("https://a.example/v2/x").is_empty());
        session.token = Some((
            origin("https://a.example/v2/x/manifests/1"),
            Challenge {
                realm: "https://auth.example/token".into(),
                service: None,
                scope: None,
            },
            "secret".into(),
        ));
        assert_eq!(
            session.authorization("https://a.example/v2/x/blobs/sha256:00")[AUTHORIZATION],
            "Bearer secret"
        );
        assert!(session.authorization("https://b.example/v2/x").is_empty());
        assert!(session.authorization("http://a.example/v2/x").is_empty());
    }
}
