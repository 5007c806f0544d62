//! `registry:` images pulled from a real registry on loopback: Debian's `docker-registry`
//! (the CNCF distribution registry), filled by skopeo from OCI layouts made here. One
//! registry is anonymous; the other answers with the bearer-token challenge, its tokens
//! issued by a token server in this test (ES256 JWTs, as the registry's `auth: token`
//! verifies them).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use metalk8s_bundle::{
    BuildError, BuildOptions, Built, ImageError, Manifest, RegistryError, SigningKey, Silent,
    build_bundle, parse_spec, verify_bundle,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use time::OffsetDateTime;

const SERVICE: &str = "metalk8s-test-registry";
const ISSUER: &str = "metalk8s-test-issuer";

/// Whether `tool` runs here. CI installs every tool (scripts/prerequisites), so there a
/// missing one fails the test instead of skipping it.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing; scripts/prerequisites installs it"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

fn have_tools() -> bool {
    have("docker-registry") & have("skopeo")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A token server: answers every request with a token granting the scopes asked for, and
/// records the query strings.
struct TokenServer {
    url: String,
    queries: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    /// Starts on loopback; `dir` receives the certificate the registry trusts.
    fn start(dir: &Path) -> (TokenServer, PathBuf) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let certificate = rcgen::CertificateParams::new(vec![ISSUER.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let bundle = dir.join("token-root.pem");
        fs::write(&bundle, certificate.pem()).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
                .unwrap();
        let x5c = STANDARD.encode(certificate.der());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = queries.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request_line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut request_line).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                let target = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                let query = target.split_once('?').map_or("", |(_, q)| q).to_owned();
                seen.lock().unwrap().push(query.clone());
                let token = jwt(&signer, &x5c, &scopes(&query));
                let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).ok();
            }
        });
        (TokenServer { url, queries }, bundle)
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

/// The `scope=repository:NAME:ACTIONS` parameters of a token request.
fn scopes(query: &str) -> Vec<(String, Vec<String>)> {
    let url = reqwest::Url::parse(&format!("http://token.invalid/?{query}")).unwrap();
    url.query_pairs()
        .filter(|(key, _)| key == "scope")
        .filter_map(|(_, scope)| {
            let mut parts = scope.splitn(3, ':');
            let (Some("repository"), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            Some((
                name.to_owned(),
                actions.split(',').map(str::to_owned).collect(),
            ))
        })
        .collect()
}

fn jwt(signer: &EcdsaKeyPair, x5c: &str, scopes: &[(String, Vec<String>)]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .map(|(name, actions)| {
            serde_json::json!({"type": "repository", "name": name, "actions": actions})
        })
        .collect();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 60,
        "iat": now - 60, "jti": format!("{now}-{}", scopes.len()), "access": access,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// docker-registry on a free loopback port, storing into a temp directory.
struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
    tokens: Option<TokenServer>,
}

impl Registry {
    fn start(with_tokens: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (tokens, auth) = if with_tokens {
            let (server, bundle) = TokenServer::start(dir.path());
            let auth = format!(
                "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                server.url,
                bundle.display()
            );
            (Some(server), auth)
        } else {
            (None, String::new())
        };
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n  secret: test-secret\n{auth}",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = Registry {
            child,
            addr,
            dir,
            tokens,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            assert!(Instant::now() < deadline, "docker-registry does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn skopeo(&self, args: &[&str]) -> Vec<u8> {
        let auth = self.dir.path().join("auth.json");
        fs::write(&auth, r#"{"auths":{}}"#).unwrap();
        let output = Command::new("skopeo")
            .args(args)
            .env("REGISTRY_AUTH_FILE", &auth)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "skopeo {args:?}: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        output.stdout
    }

    /// Pushes the image tagged `v1` in `layout` as `repository:tag`; returns its digest as
    /// the registry serves it (hex).
    fn push(&self, layout: &Path, repository: &str, tag: &str) -> String {
        let destination = format!("docker://{}/{repository}:{tag}", self.addr);
        let source = format!("oci:{}:v1", layout.display());
        self.skopeo(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &source,
            &destination,
        ]);
        sha256(&self.skopeo(&["inspect", "--raw", "--tls-verify=false", &destination]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A gzipped layer holding one file.
fn layer(content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "hello", content).unwrap();
    let tar = builder.into_inner().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    gzip.finish().unwrap()
}

/// What a test image is made of, by platform.
struct Parts {
    manifest: String,
    config: String,
    layer: String,
}

/// An OCI layout tagged `v1`: one image for one architecture, an index of them for more.
fn layout(dir: &Path, architectures: &[&str]) -> (PathBuf, Vec<Parts>) {
    let root = dir.join(format!("layout-{}", architectures.join("-")));
    fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    let put = |value: serde_json::Value| {
        let bytes = value.to_string().into_bytes();
        let hex = sha256(&bytes);
        fs::write(root.join("blobs/sha256").join(&hex), &bytes).unwrap();
        (hex, bytes.len())
    };
    let mut parts = Vec::new();
    let mut descriptors = Vec::new();
    for architecture in architectures {
        let layer = layer(format!("hello from {architecture}\n").as_bytes());
        let layer_hex = sha256(&layer);
        fs::write(root.join("blobs/sha256").join(&layer_hex), &layer).unwrap();
        let (config, config_size) = put(serde_json::json!({
            "architecture": architecture, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}
        }));
        let (manifest, manifest_size) = put(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": format!("sha256:{layer_hex}"), "size": layer.len()}]
        }));
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest}"), "size": manifest_size,
            "platform": {"architecture": architecture, "os": "linux"}
        }));
        parts.push(Parts {
            manifest,
            config,
            layer: layer_hex,
        });
    }
    let mut tagged = if let [single] = descriptors.as_slice() {
        single.clone()
    } else {
        let (index, size) = put(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descriptors
        }));
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{index}"), "size": size
        })
    };
    tagged["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "v1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [tagged]});
    fs::write(root.join("index.json"), index.to_string()).unwrap();
    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (root, parts)
}

/// Builds a bundle from `images:` entries (YAML lines) in `dir/out-NAME`.
fn build(dir: &Path, name: &str, images: &str) -> Result<Built, BuildError> {
    let text = format!(
        "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 1.0.0\nimages:\n{images}"
    );
    let spec = parse_spec(&text, &dir.join("bundle.yaml"), dir).unwrap();
    let options = BuildOptions {
        out: dir.join(format!("out-{name}")),
        cache: dir.join("cache"),
        signing_key: SigningKey::from_bytes(&[5; 32]),
        created: OffsetDateTime::UNIX_EPOCH,
        force: false,
    };
    build_bundle(&spec, &options, &Silent)
}

fn registry_error(result: Result<Built, BuildError>) -> RegistryError {
    match result {
        Err(BuildError::Image { source, .. }) => match *source {
            ImageError::Registry(error) => error,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// The files of `images/<name>/blobs/sha256/` of a built bundle.
fn blobs(out: &Path, name: &str) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(out.join("images").join(name).join("blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

fn tagged_digest(out: &Path, name: &str) -> String {
    let index: serde_json::Value = serde_json::from_slice(
        &fs::read(out.join("images").join(name).join("index.json")).unwrap(),
    )
    .unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "v1.36.4"
    );
    entry["digest"].as_str().unwrap().to_owned()
}

#[test]
fn an_image_behind_a_token_challenge_is_pulled_and_checked_against_its_pin() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start(true);
    let work = tempfile::tempdir().unwrap();
    let (layout, parts) = layout(work.path(), &["amd64"]);
    let digest = registry.push(&layout, "kube-proxy", "v1.36.4");
    assert_eq!(digest, parts[0].manifest);
    let reference = format!("{}/kube-proxy:v1.36.4@sha256:{digest}", registry.addr);

    let built = build(work.path(), "good", &format!("  - registry: {reference}\n")).unwrap();
    let out = &built.out;
    assert_eq!(tagged_digest(out, "kube-proxy"), format!("sha256:{digest}"));
    let mut expected = vec![
        parts[0].manifest.clone(),
        parts[0].config.clone(),
        parts[0].layer.clone(),
    ];
    expected.sort();
    assert_eq!(blobs(out, "kube-proxy"), expected);
    let component = &built.manifest.components[0];
    assert_eq!(
        (component.name.as_str(), component.version.as_str()),
        ("kube-proxy", "v1.36.4")
    );
    assert_eq!(
        component.origin,
        format!(
            "registry:{}/kube-proxy:v1.36.4@sha256:{digest}",
            registry.addr
        )
    );
    verify_bundle(out, &SigningKey::from_bytes(&[5; 32]).verifying_key()).unwrap();
    let layer = fs::read(
        out.join("images/kube-proxy/blobs/sha256")
            .join(&parts[0].layer),
    )
    .unwrap();
    assert_eq!(sha256(&layer), parts[0].layer);

    // The client asked for a pull token, for that repository and service only.
    let ours: Vec<String> = registry
        .tokens
        .as_ref()
        .unwrap()
        .queries()
        .into_iter()
        .filter(|query| !query.contains("push"))
        .collect();
    assert!(!ours.is_empty(), "no token was asked for");
    for query in &ours {
        assert_eq!(
            scopes(query),
            [("kube-proxy".to_owned(), vec!["pull".to_owned()])]
        );
        assert!(query.contains(&format!("service={SERVICE}")), "{query}");
    }

    // A digest that is not what the tag names: refused, naming the image and both digests,
    // and nothing is left at the output.
    let wrong = "0".repeat(64);
    let error = registry_error(build(
        work.path(),
        "wrong",
        &format!(
            "  - registry: {}/kube-proxy:v1.36.4@sha256:{wrong}\n",
            registry.addr
        ),
    ));
    let message = error.to_string();
    assert!(
        matches!(error, RegistryError::DigestMismatch { .. }),
        "{error:?}"
    );
    assert!(
        message.contains(&format!(
            "{}/kube-proxy:v1.36.4@sha256:{wrong}",
            registry.addr
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "serves sha256:{digest} for the tag, but the spec pins sha256:{wrong}"
        )),
        "{message}"
    );
    assert!(!work.path().join("out-wrong").exists());
}

#[test]
fn an_index_gives_the_wanted_platform_and_a_missing_tag_is_named() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start(false);
    let work = tempfile::tempdir().unwrap();
    let (layout, parts) = layout(work.path(), &["amd64", "arm64"]);
    let digest = registry.push(&layout, "calico/node", "v1.36.4");
    let reference = format!("{}/calico/node:v1.36.4@sha256:{digest}", registry.addr);

    // By default linux/amd64: the index keeps its digest, only amd64's blobs come along.
    let built = build(
        work.path(),
        "amd64",
        &format!("  - registry: {reference}\n"),
    )
    .unwrap();
    assert_eq!(
        tagged_digest(&built.out, "calico/node"),
        format!("sha256:{digest}")
    );
    let only = |part: &Parts| {
        let mut expected = vec![
            digest.clone(),
            part.manifest.clone(),
            part.config.clone(),
            part.layer.clone(),
        ];
        expected.sort();
        expected
    };
    assert_eq!(blobs(&built.out, "calico/node"), only(&parts[0]));

    let built = build(
        work.path(),
        "arm64",
        &format!("  - registry: {reference}\n    platform: linux/arm64\n"),
    )
    .unwrap();
    assert_eq!(blobs(&built.out, "calico/node"), only(&parts[1]));
    let manifest =
        Manifest::from_json(&fs::read(built.out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.images()[0].name, "calico/node");

    let error = registry_error(build(
        work.path(),
        "s390x",
        &format!("  - registry: {reference}\n    platform: linux/s390x\n"),
    ));
    assert_eq!(
        error.to_string(),
        format!(
            "{reference}: no linux/s390x image in its index (found: linux/amd64, linux/arm64)\n    \
             hint: set `platform` to one of those"
        )
    );

    let missing = format!("{}/calico/node:v9.9.9@sha256:{digest}", registry.addr);
    let error = registry_error(build(
        work.path(),
        "missing",
        &format!("  - registry: {missing}\n"),
    ));
    let message = error.to_string();
    assert!(
        matches!(error, RegistryError::NoSuchTag { .. }),
        "{error:?}"
    );
    assert!(
        message.starts_with(&format!("{missing}: the registry has no such tag (")),
        "{message}"
    );
    assert!(
        message.contains("404 Not Found: MANIFEST_UNKNOWN"),
        "{message}"
    );
}
