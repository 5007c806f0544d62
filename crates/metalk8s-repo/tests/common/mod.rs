//! Test fixtures: a bundle with OCI image layouts written by hand and .deb packages built
//! with `dpkg-deb`, a test CA and a server certificate for 127.0.0.1, and the server
//! running on a free loopback port.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use metalk8s_pki::{
    Authority, CertSpec, CertificateAuthority, IssueOptions, OffsetDateTime, Output, Purpose,
    SubjectAltName,
};
use metalk8s_repo::{AptSigningKey, Digest, Repository, RunningServer, Transport};
use tempfile::TempDir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A throw-away bundle, TLS material and APT key.
pub struct Fixture {
    pub dir: TempDir,
    pub bundle: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub apt_key_path: PathBuf,
    pub apt_key: AptSigningKey,
}

/// What a test image is made of.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub name: String,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layer: Vec<u8>,
    pub layer_digest: Digest,
}

impl TestImage {
    pub fn blob_path(&self, bundle: &Path, digest: &Digest) -> PathBuf {
        bundle
            .join("images")
            .join(&self.name)
            .join("blobs/sha256")
            .join(digest.hex())
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        fs::create_dir_all(&bundle).unwrap();
        let (ca, cert, key) = write_tls(dir.path());
        let apt_key_path = dir.path().join("apt-signing.key");
        let (apt_key, generated) = AptSigningKey::load_or_generate(&apt_key_path).unwrap();
        assert!(generated);
        Fixture {
            dir,
            bundle,
            ca,
            cert,
            key,
            apt_key_path,
            apt_key,
        }
    }

    pub fn transport(&self) -> Transport {
        Transport::Https {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    pub async fn start(&self) -> RunningServer {
        let repository = Repository::load(&self.bundle, &self.apt_key).unwrap();
        self.start_with(repository).await
    }

    pub async fn start_with(&self, repository: Repository) -> RunningServer {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        metalk8s_repo::start(repository, listen, &self.transport())
            .await
            .unwrap()
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(&self.ca).unwrap()
    }

    /// A reqwest client trusting only the test CA.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Writes an OCI image layout `images/<name>/` with one gzipped layer holding
    /// `files` (path, content), tagged `tag`.
    pub fn add_image(&self, name: &str, tag: &str, files: &[(&str, &[u8])]) -> TestImage {
        let dir = self.bundle.join("images").join(name);
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let write_blob = |content: &[u8]| {
            let digest = Digest::of(content);
            fs::write(blobs.join(digest.hex()), content).unwrap();
            digest
        };

        let mut tar = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, path, *content).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let diff_id = Digest::of(&tar);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&tar).unwrap();
        let layer = gzip.finish().unwrap();
        let layer_digest = write_blob(&layer);

        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Cmd": ["/hello"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        }))
        .unwrap();
        let config_digest = write_blob(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest.to_string(),
                "size": layer.len(),
            }],
        }))
        .unwrap();
        let manifest_digest = write_blob(&manifest);
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest.to_string(),
                "size": manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": tag },
            }],
        });
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        TestImage {
            name: name.to_owned(),
            tag: tag.to_owned(),
            manifest,
            manifest_digest,
            config_digest,
            layer,
            layer_digest,
        }
    }

    /// Builds `debs/<name>_<version>_all.deb` with `dpkg-deb --build`, an epoch's `:`
    /// written `%3a` as in APT's cache (and `bundle build`).
    pub fn add_deb(&self, name: &str, version: &str) -> PathBuf {
        let root = self.dir.path().join(format!("deb-{name}"));
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::create_dir_all(root.join(format!("usr/share/doc/{name}"))).unwrap();
        fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: all\n\
                 Maintainer: metalk8s tests <tests@metalk8s.invalid>\nSection: misc\n\
                 Priority: optional\nDescription: metalk8s repository test package\n \
                 Built by the metalk8s-repo tests.\n"
            ),
        )
        .unwrap();
        fs::write(
            root.join(format!("usr/share/doc/{name}/README")),
            format!("{name} {version}\n"),
        )
        .unwrap();
        let debs = self.bundle.join("debs");
        fs::create_dir_all(&debs).unwrap();
        let file_version = version.replace(':', "%3a");
        let out = debs.join(format!("{name}_{file_version}_all.deb"));
        let output = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&out)
            .output()
            .expect("dpkg-deb runs (Debian's dpkg package)");
        assert!(
            output.status.success(),
            "dpkg-deb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    }
}

impl Fixture {
    /// Writes `bin/<name>` and lists it in `manifest.json` (with any binary added before),
    /// as `bundle build` does; returns its path.
    pub fn add_binary(&self, name: &str, content: &[u8]) -> PathBuf {
        let bin = self.bundle.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let path = bin.join(name);
        fs::write(&path, content).unwrap();
        let manifest_path = self.bundle.join(metalk8s_bundle::MANIFEST_FILE);
        let mut manifest = match fs::read(&manifest_path) {
            Ok(bytes) => metalk8s_bundle::Manifest::from_json(&bytes).unwrap(),
            Err(_) => metalk8s_bundle::Manifest {
                api_version: metalk8s_bundle::API_VERSION.to_owned(),
                kind: metalk8s_bundle::KIND.to_owned(),
                version: "test".to_owned(),
                kubernetes_version: None,
                created: OffsetDateTime::now_utc(),
                components: Vec::new(),
                artifacts: Vec::new(),
            },
        };
        manifest.artifacts.push(metalk8s_bundle::Artifact {
            path: format!("bin/{name}"),
            kind: metalk8s_bundle::ArtifactKind::Binary,
            sha256: Digest::of(content).hex().to_owned(),
            size: content.len() as u64,
        });
        manifest.artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        fs::write(&manifest_path, manifest.to_json()).unwrap();
        path
    }
}

/// A test CA and a server certificate for 127.0.0.1 and localhost; returns the paths of
/// the CA certificate, the server certificate and its key.
fn write_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let options = IssueOptions::default();
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate(Authority::Kubernetes, &options, now).unwrap();
    let spec = CertSpec {
        node: "bootstrap".into(),
        name: "repository".into(),
        issuer: Authority::Kubernetes,
        common_name: "metalk8s-repository".into(),
        organizations: vec![],
        purpose: Purpose::Server,
        alt_names: vec![
            SubjectAltName::Ip("127.0.0.1".parse().unwrap()),
            SubjectAltName::Dns("localhost".into()),
        ],
        output: Output::Files {
            base_name: "repository".into(),
        },
    };
    let issued = ca.issue(&spec, &options, now).unwrap();
    let paths = (
        dir.join("ca.crt"),
        dir.join("repository.crt"),
        dir.join("repository.key"),
    );
    fs::write(&paths.0, ca.cert_pem()).unwrap();
    fs::write(&paths.1, &issued.cert_pem).unwrap();
    fs::write(&paths.2, &issued.key_pem).unwrap();
    (paths.0, paths.1, paths.2)
}

/// Whether `program` can be run; when not, says so loudly so a skipped test is seen.
pub fn have(program: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        eprintln!(
            "\n!!!!!!!! {program} is not installed: SKIPPING this test (CI installs it) !!!!!!!!\n"
        );
    }
    found
}
