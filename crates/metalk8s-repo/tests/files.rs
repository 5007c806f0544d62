//! The bundle's binaries under `/files/<name>`: served by the name the manifest lists,
//! whole or by range, never unchecked, never from a path the request makes up; and the
//! node-side client that places one of them (`metalk8s agent fetch`).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::Fixture;
use metalk8s_repo::Digest;
use metalk8s_repo::client::{ClientError, FetchRequest, fetch_file};

const KUBELET: &[u8] = b"#!/bin/sh\necho kubelet stand-in\n";

#[tokio::test]
async fn binaries_are_served_by_name_whole_and_by_range() {
    let fixture = Fixture::new();
    fixture.add_binary("kubelet", KUBELET);
    fixture.add_binary("kubeadm", b"kubeadm");
    let server = fixture.start().await;
    let client = fixture.client();
    let url = format!("https://{}/files/kubelet", server.local_addr());

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(
        response.headers()["etag"],
        format!("\"{}\"", Digest::of(KUBELET)).as_str()
    );
    assert_eq!(&response.bytes().await.unwrap()[..], KUBELET);

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        KUBELET.len().to_string().as_str()
    );

    let range = client
        .get(&url)
        .header("range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(&range.bytes().await.unwrap()[..], &KUBELET[2..=5]);

    let put = client.put(&url).body("x").send().await.unwrap();
    assert_eq!(put.status(), 405);
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn only_names_the_manifest_lists_are_served() {
    let fixture = Fixture::new();
    fixture.add_binary("kubelet", KUBELET);
    // In the directory but not in the manifest: not served.
    fs::write(fixture.bundle.join("bin/unlisted"), b"x").unwrap();
    let server = fixture.start().await;
    let client = fixture.client();
    let base = format!("https://{}/files", server.local_addr());

    let missing = client.get(format!("{base}/kubectl")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.text().await.unwrap(),
        "no binary named \"kubectl\" in the bundle\n"
    );
    for name in [
        "unlisted",
        "bin%2Fkubelet",
        "%2e%2e%2fmanifest.json",
        "..%2F..%2Fca.crt",
        "kubelet%00",
    ] {
        let status = client
            .get(format!("{base}/{name}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{name}");
    }
    assert_eq!(
        client
            .get(format!("{base}/kubelet/x"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn a_binary_changed_after_startup_is_refused() {
    let fixture = Fixture::new();
    let path = fixture.add_binary("kubelet", KUBELET);
    let server = fixture.start().await;
    let client = fixture.client();
    let url = format!("https://{}/files/kubelet", server.local_addr());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    std::thread::sleep(Duration::from_millis(10));
    let mut content = KUBELET.to_vec();
    content[0] ^= 1;
    fs::write(&path, content).unwrap();
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 500);
    assert!(
        refused.text().await.unwrap().contains("stage it again"),
        "the body says what to do"
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_places_a_binary_checked_and_only_once() {
    let fixture = Fixture::new();
    fixture.add_binary("kubelet", KUBELET);
    let server = fixture.start().await;
    let url = format!("https://{}/files/kubelet", server.local_addr());
    let out = fixture.dir.path().join("node/usr/local/bin/kubelet");
    let sha256 = Digest::of(KUBELET).hex().to_owned();
    let ca = fixture.ca.clone();
    let fetch = move |url: String, sha256: String, out: std::path::PathBuf, mode: u32| {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || {
            fetch_file(&FetchRequest {
                url: &url,
                sha256: &sha256,
                out: &out,
                mode,
                ca: &ca,
            })
        })
    };

    let placed = fetch(url.clone(), sha256.clone(), out.clone(), 0o755)
        .await
        .unwrap()
        .unwrap();
    assert!(placed.downloaded);
    assert_eq!(placed.size, KUBELET.len() as u64);
    assert_eq!(fs::read(&out).unwrap(), KUBELET);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["kubelet"], "no temporary file left behind");

    // Already there: only the mode is fixed, nothing is downloaded.
    let again = fetch(url.clone(), sha256.clone(), out.clone(), 0o700)
        .await
        .unwrap()
        .unwrap();
    assert!(!again.downloaded);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o7777,
        0o700
    );

    // The plan wants other content than the repository has: refused, the file kept.
    let other = Digest::of(b"another kubelet").hex().to_owned();
    let error = fetch(url.clone(), other.clone(), out.clone(), 0o755)
        .await
        .unwrap()
        .unwrap_err();
    let ClientError::Mismatch {
        url: named,
        expected,
        actual,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((named, expected, actual), (&url, &other, &sha256));
    assert_eq!(fs::read(&out).unwrap(), KUBELET);

    let unknown = format!("https://{}/files/kubectl", server.local_addr());
    let error = fetch(unknown, sha256, fixture.dir.path().join("kubectl"), 0o755)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Status { status, body, .. }
            if status.as_u16() == 404 && body.contains("no binary named")),
        "{error:?}"
    );
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}
