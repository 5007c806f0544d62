//! `metalk8s bundle` end to end: a spec with a local .deb, a local binary, a binary
//! downloaded from a server on 127.0.0.1 (first interrupted, then resumed from the cache),
//! a hand-made OCI layout and, when docker runs, a `docker save` archive and a `docker:`
//! image. Built as a directory and as a .tar.zst, verified, inspected, then tampered with.
//! One test resolves real Debian packages with APT over the network.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use predicates::str::contains;
use sha2::{Digest, Sha256};

fn metalk8s() -> Command {
    let mut command = Command::cargo_bin("metalk8s").unwrap();
    command.env("NO_COLOR", "1");
    for variable in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SOURCE_DATE_EPOCH",
    ] {
        command.env_remove(variable);
    }
    command
}

/// `text` in output that miette may have wrapped (at 80 columns, inside long words too):
/// compared without any whitespace.
fn wrapped(text: impl Into<String>) -> impl predicates::Predicate<str> {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let expected = squash(&text.into());
    predicates::function::function(move |output: &str| squash(output).contains(&expected))
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// What the test server received: the request line and the `Range` header, if any.
#[derive(Debug, Clone)]
struct Request {
    line: String,
    range: Option<String>,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 serving one body at every path. With `truncate`,
/// the first request without `Range` announces the whole length, sends that many bytes
/// and hangs up. `Range: bytes=N-` is answered with a 206.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(body: Vec<u8>, truncate: Option<usize>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            let mut truncate = truncate;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut range = None;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("range:") {
                        range = Some(value.trim().to_owned());
                    }
                }
                seen.lock().unwrap().push(Request {
                    line: line.trim().to_owned(),
                    range: range.clone(),
                });
                let start: usize = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                let (head, data) = if start > 0 {
                    (
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                            body.len() - start,
                            body.len() - 1,
                            body.len()
                        ),
                        &body[start..],
                    )
                } else {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    match truncate.take() {
                        Some(cut) => (head, &body[..cut]),
                        None => (head, &body[..]),
                    }
                };
                stream.write_all(head.as_bytes()).ok();
                stream.write_all(data).ok();
                stream.flush().ok();
            }
        });
        Server { base, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn docker_available() -> bool {
    StdCommand::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|output| output.status.success())
}

fn run(command: &mut StdCommand) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A tiny `.deb` made with dpkg-deb.
fn make_deb(dir: &Path, name: &str, version: &str, depends: Option<&str>) -> PathBuf {
    let root = dir.join(format!("{name}-pkg"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/doc").join(name)).unwrap();
    let depends = depends
        .map(|d| format!("Depends: {d}\n"))
        .unwrap_or_default();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <test@example.com>\n{depends}Description: bundle test package\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("usr/share/doc").join(name).join("README"), name).unwrap();
    let deb = dir.join(format!("{name}.deb"));
    run(StdCommand::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .stdout(std::process::Stdio::null()));
    deb
}

/// A one-file uncompressed tar, as a layer.
fn layer(content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..9].copy_from_slice(b"hello.txt");
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(512 + content.len().div_ceil(512) * 512 + 1024, 0);
    tar
}

/// An OCI image layout written by hand, its image tagged `v1`.
fn make_oci_layout(dir: &Path) -> PathBuf {
    let root = dir.join("oci-layout");
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (hex, bytes.len())
    };
    let layer = layer(b"OCI-LAYER-CONTENT");
    let (layer_hex, layer_size) = put(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{layer_hex}"]}}}}"#
    );
    let (config_hex, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_hex}","size":{layer_size}}}]}}"#
    );
    let (manifest_hex, manifest_size) = put(manifest.as_bytes());
    std::fs::write(
        root.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    root
}

/// A docker image made with `docker import` of a tiny tar, removed on drop.
struct DockerImage {
    reference: String,
}

impl DockerImage {
    fn create(dir: &Path) -> DockerImage {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let reference = format!(
            "metalk8s-bundle-test/hello:{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let rootfs = dir.join("rootfs.tar");
        std::fs::write(&rootfs, layer(b"DOCKER-LAYER-CONTENT")).unwrap();
        run(StdCommand::new("docker")
            .args(["import", "--change", "CMD [\"/hello.txt\"]"])
            .arg(&rootfs)
            .arg(&reference));
        DockerImage { reference }
    }

    fn save(&self, archive: &Path) {
        run(StdCommand::new("docker")
            .args(["save", "--output"])
            .arg(archive)
            .arg(&self.reference));
    }
}

impl Drop for DockerImage {
    fn drop(&mut self) {
        StdCommand::new("docker")
            .args(["rmi", "--force", &self.reference])
            .output()
            .ok();
    }
}

/// Everything a build needs, in a temp dir.
struct Fixture {
    dir: tempfile::TempDir,
    public_key: String,
    tool: Vec<u8>,
    server: Server,
    docker: Option<DockerImage>,
}

impl Fixture {
    /// `truncate`: the server cuts the first download of the tool after that many bytes.
    /// `docker`: add the docker images (when docker runs).
    fn new(truncate: Option<usize>, docker: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let output = metalk8s()
            .args(["bundle", "keygen", "--out"])
            .arg(path.join("signing.key"))
            .output()
            .unwrap();
        assert!(output.status.success());
        let public_key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        assert_eq!(public_key.len(), 64);

        let tool: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 253).to_le_bytes())
            .collect::<Vec<u8>>()
            .into_iter()
            .chain(*b"TOOL-TAIL-MARKER")
            .collect();
        let server = Server::start(tool.clone(), truncate);
        make_deb(path, "metalk8s-test-tool", "1:2.5-1", None);
        std::fs::write(path.join("helper.sh"), b"#!/bin/sh\necho HELPER-CONTENT\n").unwrap();
        std::fs::write(path.join("calico.yaml"), b"kind: List\nitems: []\n").unwrap();
        make_oci_layout(path);
        let docker = if !docker {
            None
        } else if docker_available() {
            let image = DockerImage::create(path);
            image.save(&path.join("saved.tar"));
            Some(image)
        } else {
            eprintln!(
                "\n!!!!!!!! SKIPPING the docker parts of this test: docker is not available \
                 (CI has it: `docker info` must work) !!!!!!!!\n"
            );
            None
        };
        let docker_images = match &docker {
            Some(image) => format!(
                "  - name: saved\n    tag: imported\n    dockerArchive: saved.tar\n\
                 \x20 - name: library/daemon\n    tag: live\n    docker: {}\n",
                image.reference
            ),
            None => String::new(),
        };
        let spec = format!(
            "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 3.1.4\n\
             packages:\n  - path: metalk8s-test-tool.deb\n\
             binaries:\n  - name: tool\n    version: 2.0.0\n    url: {}/releases/tool\n    sha256: {}\n\
             \x20 - name: helper\n    version: 0.7.0\n    path: helper.sh\n\
             images:\n  - name: pause\n    tag: v1\n    ociLayout: oci-layout\n{docker_images}\
             manifests:\n  - path: calico.yaml\n    version: 3.27.0\n",
            server.base,
            sha256(&tool)
        );
        std::fs::write(path.join("bundle.yaml"), spec).unwrap();
        Fixture {
            dir,
            public_key,
            tool,
            server,
            docker,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn build(&self, out: &str) -> Command {
        let mut command = metalk8s();
        command
            .args(["bundle", "build", "--spec"])
            .arg(self.path().join("bundle.yaml"))
            .arg("--out")
            .arg(self.path().join(out))
            .arg("--signing-key")
            .arg(self.path().join("signing.key"))
            .arg("--cache")
            .arg(self.path().join("cache"));
        command
    }

    fn verify(&self, bundle: &Path) -> Command {
        let mut command = metalk8s();
        command
            .args(["bundle", "verify"])
            .arg(bundle)
            .args(["--public-key", &self.public_key]);
        command
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Rewrites a .tar.zst with `edit` applied to its uncompressed tar bytes.
fn edit_archive(from: &Path, to: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut tar = zstd::decode_all(std::fs::File::open(from).unwrap()).unwrap();
    edit(&mut tar);
    std::fs::write(to, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

#[test]
fn bundle_round_trip_resume_verify_inspect_and_tampering() {
    let fixture = Fixture::new(Some(100_000), true);
    let out = fixture.path().join("out");

    // The download is cut: the build fails, names the URL, leaves nothing at --out.
    fixture
        .build("out")
        .assert()
        .code(1)
        .stderr(wrapped("binary tool"))
        .stderr(wrapped(format!("{}/releases/tool", fixture.server.base)))
        .stderr(wrapped("resumes from the download cache"));
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(fixture.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".out"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The second run resumes where the first stopped.
    fixture
        .build("out")
        .assert()
        .success()
        .stderr(wrapped("resuming after"))
        .stderr(wrapped("bundle 3.1.4 written to"));
    let requests = fixture.server.requests();
    let ranges: Vec<_> = requests.iter().map(|r| r.range.clone()).collect();
    assert_eq!(ranges, vec![None, Some("bytes=100000-".to_owned())]);
    assert_eq!(std::fs::read(out.join("bin/tool")).unwrap(), fixture.tool);
    for path in [
        "manifest.json",
        "manifest.json.sig",
        "bin/helper",
        "debs/metalk8s-test-tool_1%3a2.5-1_all.deb",
        "images/pause/oci-layout",
        "manifests/calico.yaml",
    ] {
        assert!(out.join(path).is_file(), "{path} missing");
    }
    let index = std::fs::read_to_string(out.join("images/pause/index.json")).unwrap();
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name":"v1""#),
        "{index}"
    );
    if fixture.docker.is_some() {
        for image in ["saved", "library/daemon"] {
            let index =
                std::fs::read_to_string(out.join("images").join(image).join("index.json")).unwrap();
            assert!(
                index.contains("application/vnd.oci.image.manifest.v1+json"),
                "{index}"
            );
        }
    }

    fixture
        .verify(&out)
        .assert()
        .success()
        .stdout(contains("verified, bundle 3.1.4"));

    // inspect: versions of every component, sizes, totals.
    let mut inspect = metalk8s();
    inspect.args(["bundle", "inspect"]).arg(&out);
    inspect
        .assert()
        .success()
        .stdout(contains("bundle 3.1.4"))
        .stdout(contains("not verified"))
        .stdout(contains("metalk8s-test-tool"))
        .stdout(contains("1:2.5-1"))
        .stdout(contains("2.0.0"))
        .stdout(contains("0.7.0"))
        .stdout(contains("3.27.0"))
        .stdout(contains("bin/tool"))
        .stdout(contains("total"));
    let output = metalk8s()
        .args([
            "bundle",
            "inspect",
            "-o",
            "json",
            "--public-key",
            &fixture.public_key,
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["version"], "3.1.4");
    let components: Vec<(String, String)> = json["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("metalk8s-test-tool", "1:2.5-1"),
        ("tool", "2.0.0"),
        ("helper", "0.7.0"),
        ("pause", "v1"),
        ("calico", "3.27.0"),
    ] {
        assert!(
            components.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {components:?}"
        );
    }
    if fixture.docker.is_some() {
        assert!(components.contains(&("saved".to_owned(), "imported".to_owned())));
        assert!(components.contains(&("library/daemon".to_owned(), "live".to_owned())));
    }
    assert_eq!(json["totals"]["byKind"]["binary"]["artifacts"], 2);
    let tool_artifact = json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "bin/tool")
        .unwrap();
    assert_eq!(tool_artifact["sha256"], sha256(&fixture.tool));

    // One flipped byte in an artifact: rejected, naming it.
    let tampered = fixture.path().join("tampered");
    copy_dir(&out, &tampered);
    flip_byte(&tampered.join("bin/tool"), 12_345);
    fixture
        .verify(&tampered)
        .assert()
        .code(1)
        .stderr(wrapped("artifact bin/tool: sha256 mismatch"));
    // The same inside an image.
    let blobs = tampered.join("images/pause/blobs/sha256");
    copy_dir(&out.join("bin"), &tampered.join("bin"));
    let layer_blob = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(17)
                .any(|w| w == b"OCI-LAYER-CONTENT")
        })
        .unwrap();
    flip_byte(&layer_blob, 520);
    fixture
        .verify(&tampered)
        .assert()
        .code(1)
        .stderr(wrapped(format!(
            "artifact images/pause/blobs/sha256/{}: sha256 mismatch",
            layer_blob.file_name().unwrap().to_string_lossy()
        )));

    // An edited manifest: the signature no longer holds.
    let edited = fixture.path().join("edited");
    copy_dir(&out, &edited);
    let manifest = std::fs::read_to_string(edited.join("manifest.json")).unwrap();
    std::fs::write(
        edited.join("manifest.json"),
        manifest.replace("\"3.1.4\"", "\"3.1.5\""),
    )
    .unwrap();
    fixture
        .verify(&edited)
        .assert()
        .code(1)
        .stderr(wrapped("signature does not verify"));

    // Extra and missing files are named.
    let extra = fixture.path().join("extra");
    copy_dir(&out, &extra);
    std::fs::write(extra.join("bin/intruder"), b"x").unwrap();
    fixture.verify(&extra).assert().code(1).stderr(wrapped(
        "file bin/intruder: present in the bundle but not listed",
    ));
    std::fs::remove_file(extra.join("bin/intruder")).unwrap();
    std::fs::remove_file(extra.join("manifests/calico.yaml")).unwrap();
    fixture.verify(&extra).assert().code(1).stderr(wrapped(
        "artifact manifests/calico.yaml: missing from the bundle",
    ));

    // Another key does not verify it.
    let mut other_key = metalk8s();
    other_key
        .args(["bundle", "verify"])
        .arg(&out)
        .args(["--public-key", &"ab".repeat(32)]);
    other_key.assert().failure();

    // The .tar.zst form, from the cache (no new request), byte for byte reproducible.
    let archive = fixture.path().join("bundle.tar.zst");
    for name in ["bundle.tar.zst", "again.tar.zst"] {
        fixture
            .build(name)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .assert()
            .success()
            .stderr(wrapped("(archive)"));
    }
    assert_eq!(fixture.server.requests().len(), 2);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(fixture.path().join("again.tar.zst")).unwrap()
    );
    fixture
        .verify(&archive)
        .assert()
        .success()
        .stdout(contains("verified, bundle 3.1.4"));
    metalk8s()
        .args(["bundle", "inspect"])
        .arg(&archive)
        .assert()
        .success()
        .stdout(contains("2023-11-14T22:13:20Z"))
        .stdout(contains("metalk8s-test-tool"));

    let flipped = fixture.path().join("flipped.tar.zst");
    edit_archive(&archive, &flipped, |tar| {
        let at = position(tar, b"TOOL-TAIL-MARKER");
        tar[at] ^= 0x01;
    });
    fixture
        .verify(&flipped)
        .assert()
        .code(1)
        .stderr(wrapped("artifact bin/tool: sha256 mismatch"));
    let edited = fixture.path().join("edited.tar.zst");
    edit_archive(&archive, &edited, |tar| {
        let at = position(tar, b"\"version\": \"3.1.4\"");
        tar[at + 16] = b'5';
    });
    fixture
        .verify(&edited)
        .assert()
        .code(1)
        .stderr(wrapped("signature does not verify"));

    // An existing output is kept unless --force.
    fixture
        .build("bundle.tar.zst")
        .assert()
        .code(1)
        .stderr(wrapped("already exists"));
    fixture.build("out").arg("--force").assert().success();
    fixture.verify(&out).assert().success();
}

#[test]
fn a_wrong_pinned_checksum_names_url_expected_and_actual() {
    let fixture = Fixture::new(None, false);
    let spec = std::fs::read_to_string(fixture.path().join("bundle.yaml")).unwrap();
    let pinned = sha256(b"what the publisher announced");
    std::fs::write(
        fixture.path().join("bundle.yaml"),
        spec.replace(&sha256(&fixture.tool), &pinned),
    )
    .unwrap();
    fixture
        .build("out")
        .assert()
        .code(1)
        .stderr(wrapped(format!("{}/releases/tool", fixture.server.base)))
        .stderr(wrapped(format!("expected {pinned}")))
        .stderr(wrapped(format!("got {}", sha256(&fixture.tool))));
    assert!(!fixture.path().join("out").exists());
    let cached: Vec<_> = std::fs::read_dir(fixture.path().join("cache/sha256"))
        .unwrap()
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
}

#[test]
fn downloads_go_through_the_http_proxy() {
    let fixture = Fixture::new(None, false);
    let spec = std::fs::read_to_string(fixture.path().join("bundle.yaml")).unwrap();
    // A host that does not resolve: only the proxy can fetch it.
    let spec = spec.replace(&fixture.server.base, "http://bundle-source.invalid");
    std::fs::write(fixture.path().join("bundle.yaml"), spec).unwrap();
    fixture
        .build("out")
        .env("HTTP_PROXY", &fixture.server.base)
        .assert()
        .success();
    let requests = fixture.server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].line,
        "GET http://bundle-source.invalid/releases/tool HTTP/1.1"
    );
}

#[test]
fn spec_errors_name_the_file_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    metalk8s()
        .args(["bundle", "keygen", "--out"])
        .arg(&key)
        .assert()
        .success();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 1.0.0\n\
         binaries:\n  - name: kubeadm\n    version: 1.30.2\n    url: https://example.com/kubeadm\n",
    )
    .unwrap();
    let mut build = metalk8s();
    build
        .args(["bundle", "build", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--signing-key")
        .arg(&key);
    build
        .assert()
        .code(2)
        .stderr(wrapped("bad.yaml:5:5]"))
        .stderr(wrapped("binaries[0].sha256: is required with `url`"))
        .stderr(wrapped("5 |   - name: kubeadm"))
        .stderr(wrapped("help: pin the download"));

    std::fs::write(
        &spec,
        "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 1\nimage: []\n",
    )
    .unwrap();
    build
        .assert()
        .code(2)
        .stderr(wrapped("bad.yaml"))
        .stderr(wrapped("unknown field `image`"));
}

/// A spec declaring `kubernetesVersion` builds only with every Kubernetes piece, and the
/// bundle says which Kubernetes it carries.
#[test]
fn a_kubernetes_bundle_names_its_version_and_an_incomplete_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let key = path.join("key");
    metalk8s()
        .args(["bundle", "keygen", "--out"])
        .arg(&key)
        .assert()
        .success();
    make_oci_layout(path);
    let mut binaries = String::new();
    for name in ["kubeadm", "kubelet", "kubectl"] {
        std::fs::write(path.join(name), format!("#!/bin/sh\necho {name}\n")).unwrap();
        binaries.push_str(&format!(
            "  - name: {name}\n    version: 1.36.4\n    path: {name}\n"
        ));
    }
    let image = |name: &str, tag: &str| {
        format!("  - name: {name}\n    tag: {tag}\n    ociLayout: oci-layout\n")
    };
    let mut images: String = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .into_iter()
    .map(|name| image(name, "v1.36.4"))
    .collect();
    images.push_str(&image("pause", "3.10.2"));
    images.push_str(&image("coredns/coredns", "v1.14.2"));
    let spec = path.join("kubernetes.yaml");
    let write_spec = |images: &str| {
        std::fs::write(
            &spec,
            format!(
                "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 1.36.4-1\n\
                 kubernetesVersion: 1.36.4\nbinaries:\n{binaries}images:\n{images}"
            ),
        )
        .unwrap();
    };
    let build = || {
        let mut command = metalk8s();
        command
            .args(["bundle", "build", "--spec"])
            .arg(&spec)
            .arg("--out")
            .arg(path.join("out"))
            .arg("--signing-key")
            .arg(&key);
        command
    };

    write_spec(&images);
    build()
        .assert()
        .code(2)
        .stderr(wrapped("kubernetes.yaml: declares Kubernetes 1.36.4"))
        .stderr(wrapped("entry for kube-proxy"))
        .stderr(wrapped("each image its digest"));
    assert!(!path.join("out").exists());

    images.push_str(&image("kube-proxy", "v1.36.4"));
    write_spec(&images);
    build()
        .assert()
        .success()
        .stderr(contains("bundle 1.36.4-1 (Kubernetes 1.36.4) written to"));
    metalk8s()
        .args(["bundle", "inspect"])
        .arg(path.join("out"))
        .assert()
        .success()
        .stdout(contains("bundle 1.36.4-1 (Kubernetes 1.36.4) created"));
    let output = metalk8s()
        .args(["bundle", "inspect", "-o", "json"])
        .arg(path.join("out"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["kubernetesVersion"], "1.36.4");
    assert_eq!(inspection["version"], "1.36.4-1");
}

#[test]
fn keygen_never_overwrites_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    metalk8s()
        .args(["bundle", "keygen", "--out"])
        .arg(&key)
        .assert()
        .success();
    let before = std::fs::read(&key).unwrap();
    metalk8s()
        .args(["bundle", "keygen", "--out"])
        .arg(&key)
        .assert()
        .failure()
        .stderr(wrapped("already exists"));
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn every_bundle_command_has_help() {
    for args in [
        &["bundle", "--help"][..],
        &["bundle", "build", "--help"],
        &["bundle", "verify", "--help"],
        &["bundle", "inspect", "--help"],
        &["bundle", "keygen", "--help"],
    ] {
        metalk8s()
            .args(args)
            .assert()
            .success()
            .stdout(contains("Usage"));
    }
}

/// Whether this machine's APT lists know `package` (they are refreshed when root).
fn apt_knows(package: &str) -> bool {
    let knows = || {
        StdCommand::new("apt-cache")
            .args(["policy", package])
            .output()
            .is_ok_and(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.contains("Candidate:") && !text.contains("Candidate: (none)")
            })
    };
    if knows() {
        return true;
    }
    let root = StdCommand::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        StdCommand::new("apt-get")
            .args(["update", "-q"])
            .output()
            .ok();
    }
    knows()
}

/// Real Debian packages: `jq` by name and a local .deb that depends on `libyaml-0-2`;
/// APT resolves both closures (jq needs libjq1 and libonig5) from deb.debian.org.
#[test]
fn apt_fetches_packages_with_their_dependencies() {
    if !apt_knows("jq") {
        eprintln!(
            "\n!!!!!!!! SKIPPING apt_fetches_packages_with_their_dependencies: APT has no \
             package lists and they cannot be refreshed (not root) !!!!!!!!\n"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    let output = metalk8s()
        .args(["bundle", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    let public_key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    make_deb(dir.path(), "needs-yaml", "0.1", Some("libyaml-0-2"));
    std::fs::write(
        dir.path().join("bundle.yaml"),
        "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 0.0.1\n\
         packages:\n  - jq\n  - path: needs-yaml.deb\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    metalk8s()
        .args(["bundle", "build", "--spec"])
        .arg(dir.path().join("bundle.yaml"))
        .arg("--out")
        .arg(&out)
        .arg("--signing-key")
        .arg(&key)
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .assert()
        .success()
        .stderr(wrapped("apt: Get:"));
    let debs: Vec<String> = std::fs::read_dir(out.join("debs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for package in [
        "jq_",
        "libjq1_",
        "libonig5_",
        "libyaml-0-2_",
        "needs-yaml_0.1_all.deb",
    ] {
        assert!(
            debs.iter().any(|deb| deb.starts_with(package)),
            "{package} not in {debs:?}"
        );
    }
    let output = metalk8s()
        .args([
            "bundle",
            "inspect",
            "-o",
            "json",
            "--public-key",
            &public_key,
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let jq = json["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "jq")
        .unwrap();
    assert!(jq["origin"].as_str().unwrap().starts_with("http"), "{jq}");
    assert!(!jq["version"].as_str().unwrap().is_empty());
}
