//! The registry as a real client sees it: skopeo (containers/image, the Go library that
//! CRI-O and podman use; containerd's resolver speaks the same protocol) inspects and
//! copies an image over HTTPS, verifying the server certificate against the test CA.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::Fixture;

/// Runs skopeo with an empty credentials file of its own (no login is needed, and the
/// machine's files are not read).
fn skopeo(auth: &Path, args: &[&str]) -> Output {
    let output = Command::new("skopeo")
        .args(args)
        .env("REGISTRY_AUTH_FILE", auth)
        .output()
        .expect("skopeo runs");
    eprintln!(
        "skopeo {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A directory holding only the test CA as `ca.crt`: what `--cert-dir` wants.
fn cert_dir(fixture: &Fixture) -> std::path::PathBuf {
    let dir = fixture.dir.path().join("certs.d");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(&fixture.ca, dir.join("ca.crt")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_inspects_and_copies_an_image_over_verified_tls() {
    if !common::have("skopeo") {
        return;
    }
    let fixture = Fixture::new();
    let image = fixture.add_image(
        "library/hello",
        "1.0",
        &[("hello", b"hello from the bundle\n"), ("etc/motd", b"hi\n")],
    );
    let server = fixture.start().await;
    let certs = cert_dir(&fixture);
    let certs = certs.to_str().unwrap();
    let reference = format!("docker://{}/library/hello:1.0", server.local_addr());
    let auth = fixture.dir.path().join("auth.json");
    fs::write(&auth, r#"{"auths":{}}"#).unwrap();

    let inspect = tokio::task::spawn_blocking({
        let reference = reference.clone();
        let certs = certs.to_owned();
        let auth = auth.clone();
        move || {
            skopeo(
                &auth,
                &[
                    "inspect",
                    "--tls-verify=true",
                    "--cert-dir",
                    &certs,
                    &reference,
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(inspect.status.success());
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], image.manifest_digest.to_string());
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(
        inspected["Layers"],
        serde_json::json!([image.layer_digest.to_string()])
    );

    let destination = fixture.dir.path().join("copied");
    let policy = fixture.dir.path().join("policy.json");
    fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let copy = tokio::task::spawn_blocking({
        let destination = format!("oci:{}:1.0", destination.display());
        let policy = policy.to_str().unwrap().to_owned();
        let certs = certs.to_owned();
        let auth = auth.clone();
        move || {
            skopeo(
                &auth,
                &[
                    "copy",
                    "--policy",
                    &policy,
                    "--src-tls-verify=true",
                    "--src-cert-dir",
                    &certs,
                    &reference,
                    &destination,
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(copy.status.success());
    // The copy is byte for byte the bundle's image: same manifest, same layer.
    let blob = |digest: &metalk8s_repo::Digest| {
        fs::read(
            Path::new(&destination)
                .join("blobs/sha256")
                .join(digest.hex()),
        )
        .unwrap()
    };
    assert_eq!(blob(&image.manifest_digest), image.manifest);
    assert_eq!(blob(&image.layer_digest), image.layer);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(destination.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.to_string()
    );

    // Without the CA, verification fails: the test above did verify the certificate.
    let empty = fixture.dir.path().join("no-certs");
    fs::create_dir_all(&empty).unwrap();
    let refused = tokio::task::spawn_blocking({
        let reference = format!("docker://{}/library/hello:1.0", server.local_addr());
        let empty = empty.to_str().unwrap().to_owned();
        let auth = auth.clone();
        move || {
            skopeo(
                &auth,
                &[
                    "inspect",
                    "--tls-verify=true",
                    "--cert-dir",
                    &empty,
                    &reference,
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");

    server.shutdown(Duration::from_secs(1)).await.unwrap();
}
