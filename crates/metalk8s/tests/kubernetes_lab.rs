//! The `kubernetes` phase on a 2-node lab, as far as it goes without Kubernetes binaries
//! (needs root and docker): a bundle that carries Kubernetes 1.36.4 is built here with
//! stand-ins for kubeadm, the kubelet and kubectl (shell scripts that say they are
//! stand-ins and fail: no registry reachable here serves the real ones) and one small
//! image under the six names kubeadm pulls. The deploy installs everything before
//! kubeadm for real (haproxy from the bundle's packages, in front of the node's API
//! server address, with the cluster's certificates; the binaries fetched from the
//! bootstrap repository; the kubelet's unit; kubeadm's configuration and token), then
//! stops at `kubeadm init` on the first control plane, naming it, without touching the
//! second node. tests/kubernetes_e2e.rs goes further when given real binaries.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

use common::{TestLab, succeeded};

const VERSION: &str = "1.36.4";
const STAND_IN: &str = "#!/bin/sh\necho \"stand-in $(basename \"$0\"): no Kubernetes binaries can be had here\" >&2\nexit 1\n";
const IMAGE: &str = "metalk8s-test/k8s-stand-in";

/// Removes the docker images the test made, whatever its outcome.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .arg("rmi")
            .args(&self.0)
            .output();
    }
}

fn docker(arguments: &[&str]) {
    succeeded(
        &format!("docker {}", arguments.join(" ")),
        &std::process::Command::new("docker")
            .args(arguments)
            .output()
            .unwrap(),
    );
}

/// One image (an empty root with a marker file) tagged as each image the phase needs:
/// (name in the bundle, tag, local docker name) of each.
fn images(dir: &Path) -> (Images, Vec<(&'static str, String, String)>) {
    let root = dir.join("image-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("stand-in"),
        "an image standing in for Kubernetes'\n",
    )
    .unwrap();
    let tar = dir.join("image.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let base = format!("{IMAGE}:base");
    docker(&["import", tar.to_str().unwrap(), &base]);
    let mut made = vec![base.clone()];
    let mut images = Vec::new();
    for (name, tag) in [
        ("kube-apiserver", format!("v{VERSION}")),
        ("kube-controller-manager", format!("v{VERSION}")),
        ("kube-scheduler", format!("v{VERSION}")),
        ("kube-proxy", format!("v{VERSION}")),
        ("pause", "3.10.2".to_owned()),
        ("coredns/coredns", "v1.13.1".to_owned()),
    ] {
        let local = format!("{IMAGE}-{}:{tag}", name.replace('/', "-"));
        docker(&["tag", &base, &local]);
        made.push(local.clone());
        images.push((name, tag, local));
    }
    (Images(made), images)
}

/// The bundle (`.tar.zst`) and its public key file.
fn build_bundle(lab: &TestLab, dir: &Path) -> (PathBuf, PathBuf, Images) {
    std::fs::write(dir.join("stand-in"), STAND_IN).unwrap();
    let (made, images) = images(dir);
    let mut spec = format!(
        "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: {VERSION}-stand-in\n\
         kubernetesVersion: {VERSION}\n\
         packages: [containerd, runc, etcd-server, etcd-client, haproxy, conntrack, socat, ethtool, ebtables, iptables]\n\
         binaries:\n"
    );
    for binary in ["kubeadm", "kubelet", "kubectl"] {
        spec.push_str(&format!(
            "  - {{name: {binary}, version: {VERSION}, path: stand-in}}\n"
        ));
    }
    spec.push_str("images:\n");
    for (name, tag, local) in &images {
        spec.push_str(&format!(
            "  - {{name: {name}, tag: \"{tag}\", docker: \"{local}\"}}\n"
        ));
    }
    std::fs::write(dir.join("bundle.yaml"), spec).unwrap();
    let key = dir.join("bundle.key");
    let public = succeeded(
        "bundle keygen",
        &lab.metalk8s()
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
        &lab.metalk8s()
            .args(["bundle", "build", "--spec"])
            .arg(dir.join("bundle.yaml"))
            .arg("--out")
            .arg(&archive)
            .arg("--signing-key")
            .arg(&key)
            .output()
            .unwrap(),
    );
    (archive, public_file, made)
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|phase| phase["name"] == name)
        .unwrap_or_else(|| panic!("no {name} phase in {report}"))
}

#[test]
fn everything_before_kubeadm_is_installed_for_real_and_the_rollout_stops_at_its_failure() {
    let lab = TestLab::up("k8", 2);
    let work = tempfile::tempdir().unwrap();
    let (bundle, key, _images) = build_bundle(&lab, work.path());

    let (code, report) = lab.metalk8s_json(&[
        "deploy",
        "--bundle",
        bundle.to_str().unwrap(),
        "--bundle-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{report}");
    let kubernetes = phase(&report, "kubernetes");
    let hosts = kubernetes["hosts"].as_array().unwrap();
    // The first control plane alone: the rollout stops with it.
    assert_eq!(hosts.len(), 1, "{kubernetes}");
    assert_eq!(hosts[0]["node"], "node1");
    let steps = hosts[0]["steps"].as_array().unwrap();
    let step = |id: &str| {
        steps
            .iter()
            .find(|step| step["step"] == id)
            .unwrap_or_else(|| panic!("no step {id} in {kubernetes}"))
    };
    let init = step("command/kubeadm-init");
    assert_eq!(init["outcome"]["status"], "failed", "{init}");
    assert!(
        init["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("stand-in kubeadm"),
        "{init}"
    );
    for id in [
        "packages/kubernetes",
        "fetch/usr/bin/kubeadm",
        "fetch/usr/bin/kubelet",
        "fetch/usr/bin/kubectl",
        "service/haproxy",
        "unit/kubelet.service",
        "file/etc/kubernetes/kubeadm/init.yaml",
        "file/etc/kubernetes/kubeadm/bootstrap-token",
    ] {
        assert_eq!(step(id)["outcome"]["status"], "changed", "{id}");
    }

    // What is on the node: the proxy runs with the cluster's CA, the binaries are the
    // bundle's, the kubelet is enabled, kubeadm's files are root's alone and no copy of
    // the token is left; nothing says the node joined.
    let node1 = lab.ssh(
        "node1",
        "systemctl is-active haproxy; \
         curl -s -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:7080/healthz; \
         stat -c '%a' /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl; \
         systemctl is-enabled kubelet; \
         stat -c '%a' /etc/kubernetes/kubeadm/init.yaml /etc/kubernetes/kubeadm/bootstrap-token; \
         ls /etc/kubernetes/kubeadm; \
         systemd-analyze verify --man=no kubelet.service haproxy.service 2>&1",
    );
    let lines: Vec<&str> = node1.lines().collect();
    assert_eq!(
        lines,
        [
            "active",
            "200",
            "755",
            "755",
            "755",
            "enabled",
            "600",
            "600",
            "bootstrap-token",
            "init.yaml",
            "patches"
        ],
        "{node1}"
    );
    let fetched = lab.ssh("node1", "sha256sum /usr/bin/kubelet");
    assert!(
        fetched.starts_with(&hex_sha256(STAND_IN.as_bytes())),
        "{fetched}"
    );
    let config = lab.ssh("node1", "cat /etc/kubernetes/kubeadm/init.yaml");
    assert!(
        config.contains("token: \"@METALK8S_BOOTSTRAP_TOKEN@\""),
        "{config}"
    );
    assert!(
        config.contains("controlPlaneEndpoint: 127.0.0.1:7443"),
        "{config}"
    );

    // node2 was left alone by the phase.
    let node2 = lab.try_ssh(
        "node2",
        "test -e /etc/haproxy/haproxy.cfg && grep -c metalk8s /etc/haproxy/haproxy.cfg",
    );
    assert!(!node2.status.success(), "node2's proxy was configured");

    // Planned again: node1 has still not joined, so kubeadm is still due there.
    let (code, plan) = lab.metalk8s_json(&["plan", "--phase", "kubernetes"]);
    assert_eq!(code, 0, "{plan}");
    let text = plan.to_string();
    assert!(text.contains("command/kubeadm-init"), "{text}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
