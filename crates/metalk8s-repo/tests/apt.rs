//! The APT repository as Debian's own apt sees it: `apt-get update` over HTTPS checks the
//! certificate against the test CA and `InRelease` against the keyring exported for the
//! nodes, then `apt-cache policy` and `apt-get download` find the package. apt runs with a
//! private configuration (APT_CONFIG naming every directory under a temporary one), so the
//! machine's own apt setup is neither read nor touched.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use common::Fixture;
use metalk8s_repo::{AptRepository, AptSigningKey, ImageStore, Repository};

const PACKAGE: &str = "metalk8s-test-hello";
const EPOCH_PACKAGE: &str = "metalk8s-test-epoch";

/// A private apt: its configuration, sources, keyring, lists and cache in one directory.
struct AptSandbox {
    dir: PathBuf,
    config: PathBuf,
}

impl AptSandbox {
    fn new(root: &Path, name: &str, address: SocketAddr, ca: &Path, keyring: &[u8]) -> Self {
        let dir = root.join(name);
        for sub in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "state/lists/partial",
            "cache/archives/partial",
            "download",
        ] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let keyring_path = dir.join("metalk8s.gpg");
        fs::write(&keyring_path, keyring).unwrap();
        fs::write(
            dir.join("etc/sources.list"),
            format!(
                "deb [signed-by={}] https://{address}/apt metalk8s main\n",
                keyring_path.display()
            ),
        )
        .unwrap();
        fs::write(dir.join("status"), "").unwrap();
        let d = dir.display();
        let config = dir.join("apt.conf");
        fs::write(
            &config,
            format!(
                r#"Dir::Etc::Parts "{d}/etc/apt.conf.d";
Dir::Etc::main "/dev/null";
Dir::Etc::SourceList "{d}/etc/sources.list";
Dir::Etc::SourceParts "{d}/etc/sources.list.d";
Dir::Etc::Preferences "{d}/etc/preferences";
Dir::Etc::PreferencesParts "{d}/etc/preferences.d";
Dir::Etc::Trusted "{d}/etc/trusted.gpg";
Dir::Etc::TrustedParts "{d}/etc/trusted.gpg.d";
Dir::State "{d}/state";
Dir::State::Lists "{d}/state/lists";
Dir::State::status "{d}/status";
Dir::Cache "{d}/cache";
Dir::Cache::archives "{d}/cache/archives";
Dir::Log "{d}/log";
Acquire::https::CaInfo "{ca}";
Acquire::http::Proxy "DIRECT";
Acquire::https::Proxy "DIRECT";
Acquire::Languages "none";
Acquire::Retries "0";
APT::Sandbox::User "root";
"#,
                ca = ca.display()
            ),
        )
        .unwrap();
        AptSandbox { dir, config }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = Command::new(program)
            .args(args)
            .current_dir(self.dir.join("download"))
            .env("APT_CONFIG", &self.config)
            .env("LC_ALL", "C")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .output()
            .unwrap_or_else(|error| panic!("{program} runs: {error}"));
        eprintln!(
            "{program} {}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    async fn run_async(&self, program: &'static str, args: &'static [&'static str]) -> Output {
        let sandbox = AptSandbox {
            dir: self.dir.clone(),
            config: self.config.clone(),
        };
        tokio::task::spawn_blocking(move || sandbox.run(program, args))
            .await
            .unwrap()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn fixture_with_package() -> (Fixture, PathBuf) {
    let fixture = Fixture::new();
    let deb = fixture.add_deb(PACKAGE, "1.0-1");
    (fixture, deb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apt_updates_from_the_repository_and_downloads_the_package() {
    if !common::have("apt-get") {
        return;
    }
    let (fixture, deb) = fixture_with_package();
    // A package with an epoch, its file named as APT's cache names it.
    let epoch_deb = fixture.add_deb(EPOCH_PACKAGE, "2:0.5-1");
    assert!(epoch_deb.ends_with(format!("debs/{EPOCH_PACKAGE}_2%3a0.5-1_all.deb")));
    let server = fixture.start().await;
    let address = server.local_addr();
    let keyring = fixture.apt_key.public_keyring().unwrap();
    let apt = AptSandbox::new(fixture.dir.path(), "apt", address, &fixture.ca, &keyring);

    let update = apt.run_async("apt-get", &["update"]).await;
    assert!(update.status.success(), "{}", text(&update));
    let output = text(&update);
    assert!(output.contains(&format!("https://{address}/apt metalk8s InRelease")));
    assert!(!output.contains("W:") && !output.contains("E:"), "{output}");

    let policy = apt.run_async("apt-cache", &["policy", PACKAGE]).await;
    let output = text(&policy);
    assert!(policy.status.success(), "{output}");
    assert!(output.contains("Candidate: 1.0-1"), "{output}");
    assert!(
        output.contains(&format!("https://{address}/apt metalk8s/main")),
        "{output}"
    );

    let download = apt.run_async("apt-get", &["download", PACKAGE]).await;
    assert!(download.status.success(), "{}", text(&download));
    let downloaded = apt
        .dir
        .join("download")
        .join(format!("{PACKAGE}_1.0-1_all.deb"));
    assert_eq!(fs::read(downloaded).unwrap(), fs::read(&deb).unwrap());
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apt_refuses_a_tampered_in_release() {
    if !common::have("apt-get") {
        return;
    }
    let (fixture, _) = fixture_with_package();
    let mut apt_repository = AptRepository::load(
        &fixture.bundle,
        &fixture.apt_key,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let in_release = "dists/metalk8s/InRelease";
    let original = std::str::from_utf8(&apt_repository.indexes.files[in_release])
        .unwrap()
        .to_owned();
    let tampered = original.replacen("Label: metalk8s", "Label: metalk8x", 1);
    assert_ne!(tampered, original);
    apt_repository
        .indexes
        .files
        .insert(in_release.to_owned(), Bytes::from(tampered));
    let images = ImageStore::load(&fixture.bundle).unwrap();
    let server = fixture
        .start_with(Repository::new(images, apt_repository))
        .await;
    let keyring = fixture.apt_key.public_keyring().unwrap();
    let apt = AptSandbox::new(
        fixture.dir.path(),
        "apt-tampered",
        server.local_addr(),
        &fixture.ca,
        &keyring,
    );

    let update = apt.run_async("apt-get", &["update"]).await;
    let output = text(&update);
    assert!(!update.status.success(), "{output}");
    assert!(output.contains("BADSIG"), "{output}");
    let policy = apt.run_async("apt-cache", &["policy", PACKAGE]).await;
    assert!(!text(&policy).contains("Candidate: 1.0-1"));
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apt_refuses_a_repository_signed_with_another_key() {
    if !common::have("apt-get") {
        return;
    }
    let (fixture, _) = fixture_with_package();
    let server = fixture.start().await;
    let stranger = AptSigningKey::generate("someone else <x@example.invalid>").unwrap();
    let apt = AptSandbox::new(
        fixture.dir.path(),
        "apt-other-key",
        server.local_addr(),
        &fixture.ca,
        &stranger.public_keyring().unwrap(),
    );
    let update = apt.run_async("apt-get", &["update"]).await;
    let output = text(&update);
    assert!(!update.status.success(), "{output}");
    assert!(output.contains("NO_PUBKEY"), "{output}");
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn indexes_and_packages_are_served_under_apt() {
    let (fixture, deb) = fixture_with_package();
    let server = fixture.start().await;
    let client = fixture.client();
    let base = format!("https://{}/apt", server.local_addr());
    let get = |path: &str| client.get(format!("{base}/{path}")).send();

    let packages = get("dists/metalk8s/main/binary-amd64/Packages")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let filename = format!("pool/{PACKAGE}_1.0-1_all.deb");
    assert!(
        packages.contains(&format!("Package: {PACKAGE}\n")),
        "{packages}"
    );
    assert!(
        packages.contains(&format!("Filename: {filename}\n")),
        "{packages}"
    );
    let release = get("dists/metalk8s/Release")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(release.contains("Components: main\n"), "{release}");

    let response = get(&filename).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.debian.binary-package"
    );
    assert_eq!(response.bytes().await.unwrap(), fs::read(&deb).unwrap());
    // apt quotes some characters of file names.
    let quoted = filename.replace('-', "%2d");
    assert_eq!(get(&quoted).await.unwrap().status(), 200);

    let keyring = get("metalk8s.gpg").await.unwrap().bytes().await.unwrap();
    assert_eq!(&keyring[..], &fixture.apt_key.public_keyring().unwrap()[..]);

    for missing in [
        "pool/../debs/x.deb",
        "../bundle/debs/metalk8s-test-hello_1.0-1_all.deb",
        "debs/metalk8s-test-hello_1.0-1_all.deb",
        "dists/metalk8s/Release.gpg",
    ] {
        assert_eq!(get(missing).await.unwrap().status(), 404, "{missing}");
    }
    let put = client
        .put(format!("{base}/{filename}"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);

    // A package file changed after startup no longer matches its index: refused.
    let mut content = fs::read(&deb).unwrap();
    let last = content.len() - 1;
    content[last] ^= 1;
    fs::write(&deb, content).unwrap();
    assert_eq!(get(&filename).await.unwrap().status(), 500);
    server.shutdown(Duration::from_secs(1)).await.unwrap();
}
