//! End to end on a 3-node lab (needs root, docker and `busybox-static` on the host): a
//! bundle built with `metalk8s bundle build` from APT packages and an image made without any
//! registry, deployed with `deploy --bundle`; every node's APT then uses the bootstrap
//! repository only, signed and checked; and with every node cut off from everything but the
//! lab network, `apt-get install` and a containerd pull + run through the mirror still
//! work. docker on the host pulls from the registry too. A second deploy changes nothing.
//! `certs renew --all` then renews the repository's certificate as well as etcd's, and the
//! registry serves the new one. A binary of the bundle is placed on a node by a one-step
//! plan (`fetch`) through the real agent, from the repository's `/files/`: a re-run
//! changes nothing, a byte changed in place is found and repaired, a wrong digest is
//! refused with its hint.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::cargo::CommandCargoExt;
use metalk8s_engine::agent::AgentRequest;
use metalk8s_model::plan::{FetchResource, Resource, Step};
use serde_json::Value;
use sha2::{Digest, Sha256};

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const IMAGE: &str = "metalk8s-test/busybox";
const TAG: &str = "1";
/// The repository's server certificate on the bootstrap node.
const REPOSITORY_CERT: &str = "/etc/kubernetes/pki/metalk8s-repository.crt";
/// A small package of the bundle that no phase installs.
const EXTRA_PACKAGE: &str = "tree";
/// A binary of the bundle (generated), fetched onto a node.
const FETCHED: &str = "metalk8s-fetch-test";
const FETCHED_PATH: &str = "/usr/local/bin/metalk8s-fetch-test";

mod common;

use common::{TestLab, succeeded};

/// The lab, and what the test leaves on the host to remove with it.
struct Lab {
    lab: TestLab,
    /// docker's CA directory for the lab's registry.
    docker_certs: Option<PathBuf>,
    /// The image docker pulled from it.
    pulled: Option<String>,
}

impl std::ops::Deref for Lab {
    type Target = TestLab;
    fn deref(&self) -> &TestLab {
        &self.lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(dir) = &self.docker_certs {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(image) = &self.pulled {
            let _ = docker(&["rmi", "-f", image]);
        }
        // The lab itself goes when `lab` is dropped, right after.
    }
}

/// Removes the image `docker import` made for the bundle.
struct ImportedImage;

impl Drop for ImportedImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &format!("{IMAGE}:{TAG}")]);
    }
}

fn docker(arguments: &[&str]) -> Output {
    std::process::Command::new("docker")
        .args(arguments)
        .output()
        .unwrap()
}

fn metalk8s(state: &Path) -> std::process::Command {
    let mut command = std::process::Command::cargo_bin("metalk8s").unwrap();
    command
        .env("METALK8S_STATE_DIR", state)
        .env("NO_COLOR", "1")
        .env_remove("METALK8S_BUNDLE_PUBLIC_KEY");
    command
}

impl Lab {
    fn up() -> Lab {
        Lab {
            lab: TestLab::up("rp", 3),
            docker_certs: None,
            pulled: None,
        }
    }

    /// `deploy ARGS -o json`: exit code and report.
    fn deploy(&self, arguments: &[&str]) -> (i32, Value) {
        let mut deploy = vec!["deploy"];
        deploy.extend(arguments);
        self.metalk8s_json(&deploy)
    }
}

/// A registry-free image: busybox-static's binary and `sh`, imported into docker.
fn import_busybox(dir: &Path) {
    let root = dir.join("busybox-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "install busybox-static on this machine (scripts/prerequisites does)"
    );
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let tar = dir.join("busybox.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    succeeded(
        "docker import",
        &docker(&["import", tar.to_str().unwrap(), &format!("{IMAGE}:{TAG}")]),
    );
}

/// The generated binary [`FETCHED`]: a script that says so, padded to 256 KiB so that a
/// byte changed in the padding still runs.
fn fetched_binary() -> Vec<u8> {
    let mut content = b"#!/bin/sh\necho fetched-ok\nexit 0\n".to_vec();
    content.resize(256 * 1024, b'#');
    content
}

/// Builds the test bundle (`.tar.zst`) and returns it with its public key file.
fn build_bundle(dir: &Path, state: &Path) -> (PathBuf, PathBuf) {
    import_busybox(dir);
    std::fs::write(dir.join(FETCHED), fetched_binary()).unwrap();
    std::fs::write(
        dir.join("bundle.yaml"),
        format!(
            "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 0.1.0-test\n\
             packages: [containerd, runc, etcd-server, etcd-client, {EXTRA_PACKAGE}]\n\
             binaries:\n  - name: {FETCHED}\n    version: 1.0.0\n    path: {FETCHED}\n\
             images:\n  - name: {IMAGE}\n    tag: \"{TAG}\"\n    docker: {IMAGE}:{TAG}\n"
        ),
    )
    .unwrap();
    let key = dir.join("bundle.key");
    let public = succeeded(
        "bundle keygen",
        &metalk8s(state)
            .args(["bundle", "keygen", "--out"])
            .arg(&key)
            .output()
            .unwrap(),
    );
    let public_file = dir.join("bundle.pub");
    std::fs::write(&public_file, public.trim()).unwrap();
    let archive = dir.join("bundle.tar.zst");
    succeeded(
        "bundle build",
        &metalk8s(state)
            .args(["bundle", "build", "--spec"])
            .arg(dir.join("bundle.yaml"))
            .arg("--out")
            .arg(&archive)
            .arg("--signing-key")
            .arg(&key)
            .output()
            .unwrap(),
    );
    (archive, public_file)
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {report}"))
}

#[test]
fn nodes_install_and_pull_from_the_bootstrap_repository_offline() {
    let work = tempfile::tempdir().unwrap();
    let build_state = tempfile::tempdir().unwrap();
    let _imported = ImportedImage;
    let (bundle, public_key) = build_bundle(work.path(), build_state.path());
    let mut lab = Lab::up();
    let bootstrap = lab.ip("node1");
    let registry = format!("{bootstrap}:8443");

    // Deploy every phase from the bundle.
    let (code, report) = lab.deploy(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--bundle-key",
        public_key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report}");
    let repository = phase(&report, "repository");
    let gates = repository["gates"].as_array().unwrap();
    assert!(
        gates.len() == 2 && gates.iter().all(|g| g["passed"] == true),
        "the bootstrap node alone, then the others, each gated: {repository}"
    );
    assert_eq!(gates[0]["after"], serde_json::json!(["node1"]));
    let staged = lab.ssh("node1", "readlink /var/lib/metalk8s/bundles/current");
    assert_eq!(staged.trim(), "0.1.0-test");

    // Every node's APT uses the bootstrap repository only, signed and checked.
    for node in NODES {
        let active = lab.ssh(
            node,
            "cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | grep -E '^[[:space:]]*(deb|URIs:|Signed-By:)' || true",
        );
        let lines: Vec<&str> = active.lines().collect();
        assert_eq!(
            lines,
            [
                format!("URIs: https://{registry}/apt"),
                "Signed-By: /etc/apt/keyrings/metalk8s.asc".to_owned()
            ],
            "{node}"
        );
        let everything = lab.ssh(node, "cat /etc/apt/sources.list.d/* /etc/apt/apt.conf.d/*");
        assert!(!everything.contains("trusted=yes"), "{node}");
        let policy = lab.ssh(node, "apt-cache policy containerd");
        assert!(
            policy.contains(&format!("https://{registry}/apt metalk8s/main")),
            "{node}: {policy}"
        );
        assert_eq!(
            lab.ssh(node, "systemctl is-active containerd").trim(),
            "active"
        );
        let config = lab.ssh(node, "containerd config dump");
        assert!(config.contains("SystemdCgroup = true"), "{node}");
        assert!(
            config.contains("config_path = \"/etc/containerd/certs.d\""),
            "{node}"
        );
    }
    assert_eq!(
        lab.ssh(
            "node1",
            "stat -c %a /etc/metalk8s/repository/apt-signing.key"
        )
        .trim(),
        "600"
    );
    // The server runs without any capability and cannot see the PKI store.
    let pid = lab.ssh("node1", "systemctl show -p MainPID --value metalk8s-repo");
    let pid = pid.trim();
    let capabilities = lab.ssh("node1", &format!("grep CapEff /proc/{pid}/status"));
    assert!(
        capabilities.trim().ends_with("0000000000000000"),
        "{capabilities}"
    );
    // In its mount namespace the store is an empty, inaccessible node (root with
    // capabilities, as nsenter runs, could list it; there is nothing to list).
    assert!(
        !lab.ssh("node1", "ls /var/lib/metalk8s/pki")
            .trim()
            .is_empty()
    );
    let seen = lab.ssh(
        "node1",
        &format!("nsenter -t {pid} -m sh -c 'stat -c %a /var/lib/metalk8s/pki; ls -A /var/lib/metalk8s/pki'"),
    );
    assert_eq!(seen.trim(), "0", "{seen}");

    // Offline: every node opens connections to the lab network (the cluster's own traffic,
    // as in an air-gapped site: etcd peers talk to each other) and nothing else; replies
    // (SSH from this machine) pass.
    let subnet = lab.info.subnet.to_string();
    for node in NODES {
        let allowed = &subnet;
        lab.ssh(
            node,
            &format!(
                "iptables -I OUTPUT 1 -o lo -j ACCEPT \
                 && iptables -I OUTPUT 2 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT \
                 && iptables -I OUTPUT 3 -d {allowed} -j ACCEPT && iptables -I OUTPUT 4 -j REJECT"
            ),
        );
    }
    for node in NODES {
        let outside = lab.try_ssh(node, "curl -sS -m 5 -o /dev/null http://deb.debian.org/");
        assert!(
            !outside.status.success(),
            "{node} still reaches the internet"
        );
    }
    lab.ssh(
        "node2",
        &format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q {EXTRA_PACKAGE}"),
    );
    assert!(
        lab.ssh("node2", &format!("{EXTRA_PACKAGE} --version"))
            .contains(EXTRA_PACKAGE)
    );
    let reference = format!("{registry}/{IMAGE}:{TAG}");
    lab.ssh(
        "node3",
        &format!("ctr images pull --hosts-dir /etc/containerd/certs.d {reference}"),
    );
    let ran = lab.ssh(
        "node3",
        &format!("ctr run --rm {reference} offline-test /bin/busybox echo offline-ok"),
    );
    assert_eq!(ran.trim(), "offline-ok");
    // Through the mirror: an image named on another registry (unreachable now) comes from
    // the bootstrap registry, as `_default/hosts.toml` says.
    let mirrored = format!("docker.io/{IMAGE}:{TAG}");
    lab.ssh(
        "node2",
        &format!("ctr images pull --hosts-dir /etc/containerd/certs.d {mirrored}"),
    );
    let ran = lab.ssh(
        "node2",
        &format!("ctr run --rm {mirrored} mirror-test /bin/busybox echo mirrored-ok"),
    );
    assert_eq!(ran.trim(), "mirrored-ok");

    fetch_a_bundle_binary(&lab, "node3");

    // docker on this machine pulls from the registry, trusting the cluster CA.
    let ca = lab.ssh("node1", "cat /var/lib/metalk8s/pki/ca.crt");
    let certs = PathBuf::from(format!("/etc/docker/certs.d/{registry}"));
    std::fs::create_dir_all(&certs).unwrap();
    lab.docker_certs = Some(certs.clone());
    std::fs::write(certs.join("ca.crt"), ca).unwrap();
    lab.pulled = Some(reference.clone());
    succeeded("docker pull", &docker(&["pull", &reference]));
    let ran = succeeded(
        "docker run",
        &docker(&[
            "run",
            "--rm",
            &reference,
            "/bin/busybox",
            "echo",
            "docker-ok",
        ]),
    );
    assert_eq!(ran.trim(), "docker-ok");

    // A second deploy, without --bundle, serves the staged bundle and changes nothing
    // (still offline).
    let (code, again) = lab.deploy(&[]);
    assert_eq!(code, 0, "{again}");
    assert!(
        !again.to_string().contains("\"status\":\"changed\""),
        "{again}"
    );
    assert!(
        !phase(&again, "containerd")["hosts"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // `certs renew --all` renews the repository's certificate too, and the bootstrap node
    // then serves the new one (renewal used to deploy etcd only, leaving the registry on
    // the old certificate), through which the nodes still pull.
    let placed = || lab.ssh("node1", &format!("cat {}", REPOSITORY_CERT));
    let served = || {
        lab.ssh(
            "node1",
            &format!(
                "python3 -c 'import ssl; print(ssl.get_server_certificate((\"{bootstrap}\", 8443)))'"
            ),
        )
    };
    let before = placed();
    assert_eq!(pem_body(&served()), pem_body(&before));
    let (code, renewed) = lab.metalk8s_json(&["certs", "renew", "--all"]);
    assert_eq!(code, 0, "{renewed}");
    assert!(
        renewed["renewals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "metalk8s-repository"),
        "{renewed}"
    );
    let deployed: Vec<&str> = renewed["deploy"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(deployed, ["repository", "etcd"], "{renewed}");
    let after = placed();
    assert_ne!(
        pem_body(&after),
        pem_body(&before),
        "the certificate was renewed"
    );
    assert_eq!(pem_body(&served()), pem_body(&after), "and is served");
    lab.ssh("node3", &format!("ctr images rm {reference}"));
    lab.ssh(
        "node3",
        &format!("ctr images pull --hosts-dir /etc/containerd/certs.d {reference}"),
    );
    let (code, check) = lab.deploy(&["--dry-run"]);
    assert_eq!(code, 0, "{check}");
    assert!(
        !check.to_string().contains("wouldChange"),
        "nothing left to place after the renewal: {check}"
    );
}

/// Runs a one-step plan placing [`FETCHED`] on `node` through the agent deploy left there
/// (`agent apply`, as deploy runs it); returns the step's outcome.
fn apply_fetch(lab: &TestLab, node: &str, path: &str, sha256: &str) -> Value {
    let agent = lab.ssh(node, "ls /var/lib/metalk8s/agent/metalk8s-*");
    let agent = agent.trim();
    assert!(!agent.contains('\n'), "one agent on {node}: {agent}");
    let bootstrap = lab.ip("node1").parse().unwrap();
    let resource = Resource::Fetch(FetchResource {
        url: metalk8s_model::repository::file_url(bootstrap, FETCHED),
        sha256: sha256.to_owned(),
        path: path.to_owned(),
        mode: 0o755,
        agent: agent.to_owned(),
    });
    let request = AgentRequest {
        api_version: metalk8s_model::inventory::API_VERSION.to_owned(),
        run: "fetch-test".to_owned(),
        phase: "fetch-test".to_owned(),
        node: node.to_owned(),
        dry_run: false,
        steps: vec![Step {
            id: resource.natural_id().unwrap(),
            resource,
            after: Vec::new(),
            watch: Vec::new(),
        }],
    };
    let request = serde_json::to_string(&request).unwrap();
    let events = lab.ssh(
        node,
        &format!("{agent} agent apply <<'REQUEST'\n{request}\nREQUEST"),
    );
    let finished: Vec<Value> = events
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event"] == "finished")
        .collect();
    assert_eq!(finished.len(), 1, "{events}");
    finished[0]["outcome"].clone()
}

/// The bundle's binary, fetched from the bootstrap repository onto `node` (offline by
/// now): placed with its mode, recorded, unchanged when run again, repaired when a byte
/// of it is changed in place; a plan wanting another digest is refused.
fn fetch_a_bundle_binary(lab: &TestLab, node: &str) {
    let content = fetched_binary();
    let sha256 = hex::encode(Sha256::digest(&content));

    let placed = apply_fetch(lab, node, FETCHED_PATH, &sha256);
    assert_eq!(placed["status"], "changed", "{placed}");
    assert_eq!(lab.ssh(node, FETCHED_PATH).trim(), "fetched-ok");
    assert_eq!(
        lab.ssh(node, &format!("stat -c '%a %s' {FETCHED_PATH}"))
            .trim(),
        format!("755 {}", content.len())
    );
    assert_eq!(
        lab.ssh(node, &format!("sha256sum {FETCHED_PATH}"))
            .split_whitespace()
            .next(),
        Some(sha256.as_str())
    );
    let record = lab.ssh(
        node,
        &format!("cat /var/lib/metalk8s/fetched{FETCHED_PATH}"),
    );
    assert!(
        record.starts_with(&format!("{sha256} {} ", content.len())),
        "{record}"
    );

    let again = apply_fetch(lab, node, FETCHED_PATH, &sha256);
    assert_eq!(again["status"], "unchanged", "{again}");

    // One byte of the padding changed in place: same size, new mtime.
    lab.ssh(
        node,
        &format!("printf X | dd of={FETCHED_PATH} bs=1 seek=1000 conv=notrunc status=none"),
    );
    let repaired = apply_fetch(lab, node, FETCHED_PATH, &sha256);
    assert_eq!(repaired["status"], "changed", "{repaired}");
    assert!(
        repaired["changes"][0]
            .as_str()
            .unwrap()
            .starts_with("content hashes to sha256:"),
        "{repaired}"
    );
    assert_eq!(
        lab.ssh(node, &format!("sha256sum {FETCHED_PATH}"))
            .split_whitespace()
            .next(),
        Some(sha256.as_str())
    );
    assert_eq!(
        apply_fetch(lab, node, FETCHED_PATH, &sha256)["status"],
        "unchanged"
    );

    // A plan made from another bundle: the download does not match and nothing is placed.
    let wrong = hex::encode(Sha256::digest(b"another build"));
    let refused = apply_fetch(lab, node, "/usr/local/bin/metalk8s-fetch-wrong", &wrong);
    assert_eq!(refused["status"], "failed", "{refused}");
    // As the agent printed it, wrapped for a terminal.
    let error = refused["error"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        error.contains(&format!("/files/{FETCHED}"))
            && error.contains(&sha256)
            && error.contains(&wrong)
            && error.contains("stage the bundle again"),
        "{error}"
    );
    assert!(
        !lab.try_ssh(node, "test -e /usr/local/bin/metalk8s-fetch-wrong")
            .status
            .success()
    );
}

/// The base64 body of a PEM certificate, whatever its line breaks.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>()
}
