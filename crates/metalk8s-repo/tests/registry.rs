//! The registry over real HTTPS on loopback: every route, every error case, tampered
//! content and path traversal attempts.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, OCI_MANIFEST, TestImage};
use metalk8s_repo::{Digest, Repository, Transport};
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UNKNOWN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn fixture_with_images() -> (Fixture, TestImage, TestImage) {
    let fixture = Fixture::new();
    let hello = fixture.add_image("library/hello", "1.0", &[("hello", b"hello world\n")]);
    let pause = fixture.add_image("pause", "3.9", &[("pause", &[7u8; 3000])]);
    (fixture, hello, pause)
}

/// The `errors[0].code` of a registry error body.
async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    let code = body["errors"][0]["code"].as_str().unwrap().to_owned();
    assert!(body["errors"][0]["message"].as_str().is_some(), "{body}");
    (status, code)
}

#[tokio::test]
async fn base_endpoint_says_registry_v2() {
    let (fixture, _, _) = fixture_with_images();
    let server = fixture.start().await;
    let url = format!("https://{}/v2/", server.local_addr());
    let response = fixture.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn manifests_are_served_by_tag_and_by_digest() {
    let (fixture, hello, _) = fixture_with_images();
    let server = fixture.start().await;
    let client = fixture.client();
    let base = format!("https://{}/v2/library/hello/manifests", server.local_addr());
    for reference in [hello.tag.clone(), hello.manifest_digest.to_string()] {
        for method in [Method::GET, Method::HEAD] {
            let response = client
                .request(method.clone(), format!("{base}/{reference}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{method} {reference}");
            let headers = response.headers().clone();
            assert_eq!(headers["content-type"], OCI_MANIFEST);
            assert_eq!(
                headers["docker-content-digest"],
                hello.manifest_digest.to_string().as_str()
            );
            assert_eq!(
                headers["content-length"],
                hello.manifest.len().to_string().as_str()
            );
            let body = response.bytes().await.unwrap();
            if method == Method::GET {
                assert_eq!(&body[..], &hello.manifest[..]);
            } else {
                assert!(body.is_empty());
            }
        }
    }
    // A blob that is not a manifest is not served as one.
    let response = client
        .get(format!("{base}/{}", hello.layer_digest))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn blobs_are_served_whole_and_by_range() {
    let (fixture, _, pause) = fixture_with_images();
    let server = fixture.start().await;
    let client = fixture.client();
    let url = format!(
        "https://{}/v2/pause/blobs/{}",
        server.local_addr(),
        pause.layer_digest
    );
    let length = pause.layer.len();

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    assert_eq!(
        response.headers()["docker-content-digest"],
        pause.layer_digest.to_string().as_str()
    );
    assert_eq!(&response.bytes().await.unwrap()[..], &pause.layer[..]);

    let response = client.head(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        length.to_string().as_str()
    );
    assert!(response.bytes().await.unwrap().is_empty());

    let range = |header: String| client.get(&url).header("range", header).send();
    let response = range("bytes=0-9".into()).await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 0-9/{length}").as_str()
    );
    assert_eq!(&response.bytes().await.unwrap()[..], &pause.layer[..10]);

    let response = range("bytes=-5".into()).await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        &pause.layer[length - 5..]
    );

    let response = range(format!("bytes={}-", length - 3)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        &pause.layer[length - 3..]
    );

    let response = range(format!("bytes={length}-")).await.unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{length}").as_str()
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn tags_and_catalog_are_listed_and_paginated() {
    let (fixture, _, _) = fixture_with_images();
    // A second tag for pause, added to its index.json.
    let index_path = fixture.bundle.join("images/pause/index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let mut second = index["manifests"][0].clone();
    second["annotations"]["org.opencontainers.image.ref.name"] = "latest".into();
    index["manifests"].as_array_mut().unwrap().push(second);
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let server = fixture.start().await;
    let client = fixture.client();
    let base = format!("https://{}", server.local_addr());
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let response = get("/v2/_catalog").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "repositories": ["library/hello", "pause"] })
    );

    let response = get("/v2/_catalog?n=1").await.unwrap();
    assert_eq!(
        response.headers()["link"],
        "</v2/_catalog?n=1&last=library/hello>; rel=\"next\""
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["library/hello"]));
    let body: serde_json::Value = get("/v2/_catalog?n=1&last=library%2Fhello")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["pause"]));

    let body: serde_json::Value = get("/v2/pause/tags/list")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "name": "pause", "tags": ["3.9", "latest"] })
    );
    let body: serde_json::Value = get("/v2/pause/tags/list?n=1&last=3.9")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["latest"]));

    let response = get("/v2/nothing/tags/list").await.unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn errors_use_the_specification_codes() {
    let (fixture, hello, _) = fixture_with_images();
    let server = fixture.start().await;
    let client = fixture.client();
    let base = format!("https://{}/v2", server.local_addr());
    let hex = hello.layer_digest.hex();
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "/nothing/manifests/1.0".to_owned(),
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        (
            "/library/hello/manifests/2.0".to_owned(),
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/library/hello/manifests/{UNKNOWN}"),
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/library/hello/blobs/{UNKNOWN}"),
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        ),
        // A blob of another repository is not in this one.
        (
            format!("/pause/blobs/{}", hello.layer_digest),
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        ),
        (
            format!("/library/hello/blobs/sha256:{}", &hex[1..]),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            format!("/library/hello/blobs/sha256:{}", hex.to_uppercase()),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            format!("/library/hello/blobs/sha512:{hex}{hex}"),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            format!("/library/hello/blobs/{hex}"),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/library/hello/manifests/sha256:xyz".to_owned(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/library/hello/manifests/-bad-tag".to_owned(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "/Library/Hello/manifests/1.0".to_owned(),
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
    ];
    for (path, status, code) in cases {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(
            error_code(response).await,
            (status, code.to_owned()),
            "{path}"
        );
    }

    let writes = [
        (Method::POST, "/library/hello/blobs/uploads/".to_owned()),
        (Method::PUT, "/library/hello/manifests/1.0".to_owned()),
        (Method::PATCH, "/library/hello/blobs/uploads/x".to_owned()),
        (
            Method::DELETE,
            format!("/library/hello/blobs/{}", hello.layer_digest),
        ),
        (Method::DELETE, "/library/hello/manifests/1.0".to_owned()),
    ];
    for (method, path) in writes {
        let response = client
            .request(method.clone(), format!("{base}{path}"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        assert_eq!(
            error_code(response).await,
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into()),
            "{method} {path}"
        );
    }
    // Still intact after the write attempts.
    let response = client
        .get(format!("{base}/library/hello/manifests/1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn tampered_content_is_never_served() {
    let (fixture, hello, pause) = fixture_with_images();
    let server = fixture.start().await;
    let client = fixture.client();
    let base = format!("https://{}/v2", server.local_addr());

    // Tampered before it was ever requested.
    flip_a_byte(&hello.blob_path(&fixture.bundle, &hello.layer_digest));
    let url = format!("{base}/library/hello/blobs/{}", hello.layer_digest);
    for method in [Method::GET, Method::HEAD] {
        let response = client.request(method, &url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get("docker-content-digest").is_none());
    }
    let response = client.get(&url).send().await.unwrap();
    let body = response.text().await.unwrap();
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    assert!(!body.contains("hello world"));

    // Tampered after it was served (and its verdict cached) once.
    let url = format!("{base}/pause/blobs/{}", pause.layer_digest);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    flip_a_byte(&pause.blob_path(&fixture.bundle, &pause.layer_digest));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let ranged = client
        .get(&url)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // A tampered manifest, by tag and by digest.
    flip_a_byte(&hello.blob_path(&fixture.bundle, &hello.manifest_digest));
    for reference in [hello.tag.clone(), hello.manifest_digest.to_string()] {
        let response = client
            .get(format!("{base}/library/hello/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::INTERNAL_SERVER_ERROR, "DIGEST_INVALID".into())
        );
    }
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

fn flip_a_byte(path: &std::path::Path) {
    let mut content = fs::read(path).unwrap();
    let middle = content.len() / 2;
    content[middle] ^= 0x01;
    fs::write(path, content).unwrap();
}

/// Sends `request_line` as is (no client-side normalisation of `..`) over TLS and returns
/// the status code and the whole response.
async fn raw_request(fixture: &Fixture, address: SocketAddr, target: &str) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&fixture.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::IpAddress(address.ip().into());
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // The server may close without a TLS close_notify once it has answered.
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    (status, response)
}

#[tokio::test]
async fn path_traversal_is_refused() {
    let (fixture, hello, _) = fixture_with_images();
    // A file outside the bundle that the attempts below aim at, named like a blob.
    let secret = "top secret, never to be served";
    let secret_digest = Digest::of(secret.as_bytes());
    fs::write(fixture.dir.path().join(secret_digest.hex()), secret).unwrap();
    fs::write(fixture.dir.path().join("secret"), secret).unwrap();
    let server = fixture.start().await;
    let address = server.local_addr();
    let hex = secret_digest.hex();
    let targets = [
        format!("/v2/../../../secret/blobs/{secret_digest}"),
        format!("/v2/library/hello/../../../../blobs/{secret_digest}"),
        format!("/v2/library/../../blobs/sha256/manifests/{secret_digest}"),
        format!("/v2/%2e%2e/%2e%2e/%2e%2e/blobs/{secret_digest}"),
        format!(
            "/v2/library/hello/blobs/sha256:..%2f..%2f..%2f..%2f{}",
            &hex[12..]
        ),
        format!(
            "/v2/library/hello/blobs/sha256:../../../../../../{}",
            &hex[18..]
        ),
        "/v2/library/hello/manifests/..%2f..%2f..%2fsecret".to_owned(),
        "/v2/library/hello/manifests/../../../../secret".to_owned(),
        "/v2//etc/passwd/tags/list".to_owned(),
        "/v2/%2fetc%2fpasswd/tags/list".to_owned(),
        format!("/v2/library%2fhello/blobs/{}", hello.layer_digest),
    ];
    for target in &targets {
        let (status, response) = raw_request(&fixture, address, target).await;
        assert_eq!(status, 400, "{target}: {response}");
        assert!(!response.contains(secret), "{target}");
        assert!(
            response.contains("NAME_INVALID")
                || response.contains("DIGEST_INVALID")
                || response.contains("MANIFEST_INVALID"),
            "{target}: {response}"
        );
    }
    // Outside /v2 and /apt there is nothing at all.
    for target in ["/../secret", "/secret", "/images/library/hello/index.json"] {
        let (status, response) = raw_request(&fixture, address, target).await;
        assert_eq!(status, 404, "{target}: {response}");
        assert!(!response.contains(secret));
    }
    // The same request, well-formed, works.
    let (status, _) = raw_request(
        &fixture,
        address,
        &format!("/v2/library/hello/blobs/{}", hello.layer_digest),
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn https_by_default_plain_http_only_when_asked() {
    let (fixture, _, _) = fixture_with_images();
    let server = fixture.start().await;
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        plain
            .get(format!("http://{}/v2/", server.local_addr()))
            .send()
            .await
            .is_err()
    );
    // A client that does not trust the cluster CA refuses the server.
    let stranger = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .no_proxy()
        .build()
        .unwrap();
    assert!(
        stranger
            .get(format!("https://{}/v2/", server.local_addr()))
            .send()
            .await
            .is_err()
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();

    let repository = Repository::load(&fixture.bundle, &fixture.apt_key).unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = metalk8s_repo::start(repository, listen, &Transport::InsecureHttp)
        .await
        .unwrap();
    let response = plain
        .get(format!("http://{}/v2/", server.local_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}
