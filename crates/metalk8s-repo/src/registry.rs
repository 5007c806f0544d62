//! The read-only OCI distribution API under `/v2/`: pulling manifests and blobs, listing
//! tags and repositories. Names contain `/`, so routing is done here on the raw request
//! path, which is never percent-decoded: names, tags and digests have no use for `%`, so a
//! path holding one is refused before anything else.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metalk8s_model::oci::is_repository_name;
use serde_json::json;

use crate::files::{file_response, header_value};
use crate::images::FetchError;
use crate::reference::{Digest, DigestError, Reference, ReferenceError};
use crate::server::Repository;

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const DIGEST_HEADER: &str = "docker-content-digest";

/// An error as the distribution specification words it: HTTP status, code, message,
/// detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid repository name {name:?}")]
    NameInvalid { name: String },
    #[error("percent-encoded characters are not allowed in names, tags or digests")]
    PercentEncoded { path: String },
    #[error("repository {name} is not in the bundle")]
    NameUnknown { name: String },
    #[error("manifest {reference} is not in repository {name}")]
    ManifestUnknown { name: String, reference: String },
    #[error("invalid tag {tag:?}")]
    TagInvalid { tag: String },
    #[error("blob {digest} is not in repository {name}")]
    BlobUnknown { name: String, digest: String },
    #[error("{0}")]
    DigestInvalid(DigestError),
    #[error("the content stored for {digest} does not match it; the bundle is corrupt")]
    DigestMismatch { name: String, digest: String },
    #[error("invalid pagination parameter n={value:?}")]
    PaginationInvalid { value: String },
    #[error("this registry is read-only: {method} is not supported")]
    Unsupported { method: String },
    #[error("no such registry endpoint")]
    NotFound,
    #[error("cannot read the bundle")]
    Internal,
}

impl RegistryError {
    fn status(&self) -> StatusCode {
        match self {
            RegistryError::NameInvalid { .. }
            | RegistryError::PercentEncoded { .. }
            | RegistryError::TagInvalid { .. }
            | RegistryError::DigestInvalid(_)
            | RegistryError::PaginationInvalid { .. } => StatusCode::BAD_REQUEST,
            RegistryError::NameUnknown { .. }
            | RegistryError::ManifestUnknown { .. }
            | RegistryError::BlobUnknown { .. }
            | RegistryError::NotFound => StatusCode::NOT_FOUND,
            RegistryError::Unsupported { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RegistryError::DigestMismatch { .. } | RegistryError::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The specification's error code.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::NameInvalid { .. } | RegistryError::PercentEncoded { .. } => {
                "NAME_INVALID"
            }
            RegistryError::NameUnknown { .. } => "NAME_UNKNOWN",
            RegistryError::ManifestUnknown { .. } => "MANIFEST_UNKNOWN",
            RegistryError::TagInvalid { .. } => "MANIFEST_INVALID",
            RegistryError::BlobUnknown { .. } => "BLOB_UNKNOWN",
            RegistryError::DigestInvalid(_) | RegistryError::DigestMismatch { .. } => {
                "DIGEST_INVALID"
            }
            RegistryError::PaginationInvalid { .. } => "PAGINATION_NUMBER_INVALID",
            RegistryError::Unsupported { .. } => "UNSUPPORTED",
            RegistryError::NotFound => "NOT_FOUND",
            RegistryError::Internal => "UNKNOWN",
        }
    }

    fn detail(&self) -> serde_json::Value {
        match self {
            RegistryError::NameInvalid { name } | RegistryError::NameUnknown { name } => {
                json!({ "name": name })
            }
            RegistryError::PercentEncoded { path } => json!({ "path": path }),
            RegistryError::ManifestUnknown { name, reference } => {
                json!({ "name": name, "reference": reference })
            }
            RegistryError::TagInvalid { tag } => json!({ "tag": tag }),
            RegistryError::BlobUnknown { name, digest }
            | RegistryError::DigestMismatch { name, digest } => {
                json!({ "name": name, "digest": digest })
            }
            RegistryError::DigestInvalid(error) => json!({ "digest": match error {
                DigestError::NoAlgorithm { digest }
                | DigestError::UnsupportedAlgorithm { digest, .. }
                | DigestError::MalformedHex { digest } => digest,
            }}),
            RegistryError::PaginationInvalid { value } => json!({ "n": value }),
            RegistryError::Unsupported { method } => json!({ "method": method }),
            RegistryError::NotFound | RegistryError::Internal => json!({}),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{
            "code": self.code(),
            "message": self.to_string(),
            "detail": self.detail(),
        }]});
        let content_type = [(header::CONTENT_TYPE, "application/json")];
        let mut response = (self.status(), content_type, body.to_string()).into_response();
        if matches!(self, RegistryError::Unsupported { .. }) {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// The endpoint a `/v2/…` path names; names and references not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Base,
    Catalog,
    Tags { name: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
}

/// Splits a `/v2/…` request path into its endpoint and checks the repository name.
pub fn parse_route(path: &str) -> Result<Route<'_>, RegistryError> {
    if path.contains('%') {
        return Err(RegistryError::PercentEncoded {
            path: path.to_owned(),
        });
    }
    if path == "/v2" || path == "/v2/" {
        return Ok(Route::Base);
    }
    let rest = path.strip_prefix("/v2/").ok_or(RegistryError::NotFound)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let (name, route) = if let Some(name) = rest.strip_suffix("/tags/list") {
        (name, Route::Tags { name })
    } else if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        (name, Route::Manifest { name, reference })
    } else if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        (name, Route::Blob { name, digest })
    } else {
        return Err(RegistryError::NotFound);
    };
    if !is_repository_name(name) {
        return Err(RegistryError::NameInvalid {
            name: name.to_owned(),
        });
    }
    Ok(route)
}

/// Serves every request under `/v2`.
pub(crate) async fn handle(
    State(repository): State<Arc<Repository>>,
    request: Request,
) -> Response {
    // Only the head is needed; the body (none for GET) is dropped.
    let (parts, _body) = request.into_parts();
    let mut response = match respond(&repository, &parts).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

async fn respond(repository: &Repository, request: &Parts) -> Result<Response, RegistryError> {
    let method = &request.method;
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return Err(RegistryError::Unsupported {
            method: method.to_string(),
        });
    }
    let images = &repository.images;
    let query = request.uri.query().unwrap_or("");
    match parse_route(request.uri.path())? {
        Route::Base => Ok(json_response(json!({}), HeaderMap::new())),
        Route::Catalog => {
            let names: Vec<&str> = images.repositories().map(|r| r.name.as_str()).collect();
            let page = paginate(&names, query)?;
            let link = page
                .next
                .map(|(n, last)| format!("/v2/_catalog?n={n}&last={last}"));
            Ok(json_response(
                json!({ "repositories": page.entries }),
                link_header(link),
            ))
        }
        Route::Tags { name } => {
            let repository = images
                .repository(name)
                .map_err(|error| fetch_error(name, error))?;
            let tags: Vec<&str> = repository.tags.keys().map(String::as_str).collect();
            let page = paginate(&tags, query)?;
            let link = page
                .next
                .map(|(n, last)| format!("/v2/{name}/tags/list?n={n}&last={last}"));
            Ok(json_response(
                json!({ "name": name, "tags": page.entries }),
                link_header(link),
            ))
        }
        Route::Manifest { name, reference } => {
            let reference = Reference::parse(reference).map_err(|error| match error {
                ReferenceError::Digest(error) => RegistryError::DigestInvalid(error),
                ReferenceError::Tag { tag } => RegistryError::TagInvalid { tag },
            })?;
            let manifest = images
                .manifest(name, &reference)
                .await
                .map_err(|error| fetch_error(name, error))?;
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, header_value(&manifest.media_type));
            headers.insert(DIGEST_HEADER, header_value(&manifest.digest.to_string()));
            headers.insert(
                header::CONTENT_LENGTH,
                header_value(&manifest.content.len().to_string()),
            );
            headers.insert(
                header::ETAG,
                header_value(&format!("\"{}\"", manifest.digest)),
            );
            let body = if head {
                Body::empty()
            } else {
                Body::from(manifest.content.clone())
            };
            Ok((StatusCode::OK, headers, body).into_response())
        }
        Route::Blob { name, digest } => {
            let digest = Digest::parse(digest).map_err(RegistryError::DigestInvalid)?;
            let verified = images
                .blob(name, &digest)
                .await
                .map_err(|error| fetch_error(name, error))?;
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(DIGEST_HEADER, header_value(&digest.to_string()));
            headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
            Ok(file_response(verified, &request.headers, head, headers))
        }
    }
}

fn fetch_error(name: &str, error: FetchError) -> RegistryError {
    match error {
        FetchError::NameUnknown { name } => RegistryError::NameUnknown { name },
        FetchError::ManifestUnknown { name, reference } => {
            RegistryError::ManifestUnknown { name, reference }
        }
        FetchError::BlobUnknown { name, digest } => RegistryError::BlobUnknown {
            name,
            digest: digest.to_string(),
        },
        FetchError::DigestMismatch { digest, .. } => RegistryError::DigestMismatch {
            // Logged with its path where it was found; the client gets the digest only.
            name: name.to_owned(),
            digest: digest.to_string(),
        },
        FetchError::Io { path, source } => {
            tracing::error!(path = %path.display(), error = %source, "cannot read bundle file");
            RegistryError::Internal
        }
    }
}

fn json_response(body: serde_json::Value, mut headers: HeaderMap) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, headers, body.to_string()).into_response()
}

fn link_header(link: Option<String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(link) = link {
        headers.insert(
            header::LINK,
            header_value(&format!("<{link}>; rel=\"next\"")),
        );
    }
    headers
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    pub entries: Vec<&'a str>,
    /// When more remain: the `n` and `last` of the next page.
    pub next: Option<(usize, String)>,
}

/// The page of a sorted list that the `n` and `last` query parameters select: the entries
/// after `last`, at most `n` of them.
pub fn paginate<'a>(sorted: &[&'a str], query: &str) -> Result<Page<'a>, RegistryError> {
    let mut limit = None;
    let mut last = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).unwrap_or_default();
        match key {
            "n" => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| RegistryError::PaginationInvalid { value })?,
                )
            }
            "last" => last = Some(value),
            _ => {}
        }
    }
    let start = match &last {
        Some(last) => sorted.partition_point(|entry| *entry <= last.as_str()),
        None => 0,
    };
    let rest = &sorted[start..];
    match limit {
        Some(limit) if limit < rest.len() => {
            let entries = rest[..limit].to_vec();
            let next = entries.last().map(|last| (limit, (*last).to_owned()));
            Ok(Page { entries, next })
        }
        _ => Ok(Page {
            entries: rest.to_vec(),
            next: None,
        }),
    }
}

/// Decodes `%XX` escapes (and `+` as a space, as in form data). `None`: a bad escape or
/// bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_names_containing_slashes() {
        assert_eq!(parse_route("/v2/").unwrap(), Route::Base);
        assert_eq!(parse_route("/v2").unwrap(), Route::Base);
        assert_eq!(parse_route("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            parse_route("/v2/library/nginx/tags/list").unwrap(),
            Route::Tags {
                name: "library/nginx"
            }
        );
        assert_eq!(
            parse_route("/v2/a/b/manifests/1.0").unwrap(),
            Route::Manifest {
                name: "a/b",
                reference: "1.0"
            }
        );
        // A repository may itself be called `manifests` or `blobs`.
        assert_eq!(
            parse_route("/v2/blobs/manifests/blobs").unwrap(),
            Route::Manifest {
                name: "blobs",
                reference: "blobs"
            }
        );
        assert_eq!(
            parse_route("/v2/x/blobs/sha256:00").unwrap(),
            Route::Blob {
                name: "x",
                digest: "sha256:00"
            }
        );
        assert_eq!(parse_route("/v2/x/y"), Err(RegistryError::NotFound));
    }

    #[test]
    fn traversal_and_encoding_are_refused() {
        for path in [
            "/v2/../../etc/passwd/blobs/sha256:00",
            "/v2/a/../b/manifests/latest",
            "/v2//etc/manifests/latest",
            "/v2/./x/tags/list",
        ] {
            assert!(
                matches!(parse_route(path), Err(RegistryError::NameInvalid { .. })),
                "{path}"
            );
        }
        for path in [
            "/v2/%2e%2e/blobs/sha256:00",
            "/v2/x/manifests/%2e%2e",
            "/v2/x%2Fy/tags/list",
        ] {
            assert!(
                matches!(parse_route(path), Err(RegistryError::PercentEncoded { .. })),
                "{path}"
            );
        }
    }

    #[test]
    fn pages_follow_n_and_last() {
        let tags = ["a", "b", "c", "d"];
        let page = |entries: &[&'static str], next: Option<(usize, &str)>| Page {
            entries: entries.to_vec(),
            next: next.map(|(n, last)| (n, last.to_owned())),
        };
        assert_eq!(paginate(&tags, "").unwrap(), page(&tags, None));
        assert_eq!(
            paginate(&tags, "n=2").unwrap(),
            page(&["a", "b"], Some((2, "b")))
        );
        assert_eq!(
            paginate(&tags, "n=2&last=b").unwrap(),
            page(&["c", "d"], None)
        );
        assert_eq!(paginate(&tags, "last=bb").unwrap(), page(&["c", "d"], None));
        assert_eq!(paginate(&tags, "n=0").unwrap(), page(&[], None));
        assert!(matches!(
            paginate(&tags, "n=x"),
            Err(RegistryError::PaginationInvalid { .. })
        ));
        let names = ["a/b", "a/c"];
        assert_eq!(paginate(&names, "last=a%2Fb").unwrap().entries, ["a/c"]);
    }

    #[test]
    fn errors_carry_the_specification_codes() {
        let cases = [
            (
                RegistryError::NameInvalid { name: "..".into() },
                400,
                "NAME_INVALID",
            ),
            (
                RegistryError::ManifestUnknown {
                    name: "a".into(),
                    reference: "x".into(),
                },
                404,
                "MANIFEST_UNKNOWN",
            ),
            (
                RegistryError::DigestMismatch {
                    name: "a".into(),
                    digest: "sha256:00".into(),
                },
                500,
                "DIGEST_INVALID",
            ),
            (
                RegistryError::Unsupported {
                    method: "PUT".into(),
                },
                405,
                "UNSUPPORTED",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status);
            assert_eq!(error.code(), code);
        }
    }
}
