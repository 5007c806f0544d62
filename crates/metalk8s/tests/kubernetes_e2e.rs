//! End to end with real Kubernetes on a 3-node lab: `deploy` from a Kubernetes bundle, then
//! what an operator would check. It runs only when given such a bundle:
//!
//! ```sh
//! METALK8S_E2E_KUBERNETES_BUNDLE=/path/metalk8s-kubernetes-1.36.4-1.tar.zst \
//! METALK8S_E2E_KUBERNETES_BUNDLE_KEY=/path/bundle.pub \
//!   cargo test -p metalk8s --test kubernetes_e2e -- --ignored --nocapture
//! ```
//!
//! No registry reachable from the machines this project is built on carries the Kubernetes
//! server binaries, so a plain `cargo test` lists it as ignored with the reason, and run
//! with `--ignored` but without the variable it says it was skipped and why
//! (docs/kubernetes.md, "End-to-end test", says how to build the bundle and what a lab
//! node needs for a kubelet).
//!
//! Checked: the deploy succeeds with every gate passed (each control plane's `/readyz`
//! through its local proxy, every node registered); a second deploy changes nothing and
//! runs no kubeadm; the cluster objects are applied (kube-proxy's DaemonSet); with the
//! first control plane stopped, the others still answer through their local proxies.
//! Nodes `Ready`, a Deployment from the bootstrap registry and cluster DNS need the pod
//! network, which its own phase brings; they are checked once it exists.

use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::TestLab;

const BUNDLE: &str = "METALK8S_E2E_KUBERNETES_BUNDLE";
const BUNDLE_KEY: &str = "METALK8S_E2E_KUBERNETES_BUNDLE_KEY";

/// kubectl as cluster admin through the node's local API server proxy.
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://127.0.0.1:7443 --request-timeout=5s";

#[test]
#[ignore = "needs METALK8S_E2E_KUBERNETES_BUNDLE and _KEY: a real Kubernetes bundle, which cannot be built here (docs/kubernetes.md, End-to-end test)"]
fn kubernetes_from_a_real_bundle_on_three_lab_nodes() {
    let (Some(bundle), Some(key)) = (std::env::var_os(BUNDLE), std::env::var_os(BUNDLE_KEY)) else {
        eprintln!(
            "skipped: set {BUNDLE} to a Kubernetes bundle (built from bundles/kubernetes-<minor>.yaml \
             on a machine that reaches dl.k8s.io and registry.k8s.io) and {BUNDLE_KEY} to its public \
             key; no registry reachable here serves the Kubernetes server binaries (docs/kubernetes.md)"
        );
        return;
    };
    let lab = TestLab::up("k8s", 3);
    for node in ["node1", "node2", "node3"] {
        // What a kubelet needs of its (container) node; said plainly rather than failing
        // deep inside kubeadm.
        let missing = lab.ssh(
            node,
            "[ -e /dev/kmsg ] || echo 'no /dev/kmsg'; \
             touch /sys/fs/cgroup/.metalk8s-probe 2>/dev/null && rm /sys/fs/cgroup/.metalk8s-probe || echo 'a read-only cgroup filesystem'; \
             [ \"$(tail -n +2 /proc/swaps | wc -l)\" = 0 ] || echo 'swap on the host'",
        );
        assert!(
            missing.trim().is_empty(),
            "lab node {node} cannot run a kubelet: {}; docs/kubernetes.md, \"End-to-end test\"",
            missing.trim()
        );
    }

    let (code, report) = lab.metalk8s_json(&[
        "deploy",
        "--bundle",
        bundle.to_str().unwrap(),
        "--bundle-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report}");
    let kubernetes = phase(&report, "kubernetes");
    let gates = kubernetes["gates"].as_array().unwrap();
    // node1, node2, node3 are control planes of the lab: one at a time, each gated.
    assert_eq!(gates.len(), 3, "{kubernetes}");
    assert!(
        gates.iter().all(|gate| gate["passed"] == true),
        "{kubernetes}"
    );

    let nodes: Value =
        serde_json::from_str(&lab.ssh("node1", &format!("{KUBECTL} get nodes -o json"))).unwrap();
    let mut names: Vec<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["node1", "node2", "node3"]);
    let daemonset = lab.ssh(
        "node2",
        &format!("{KUBECTL} -n kube-system get daemonset kube-proxy -o name"),
    );
    assert_eq!(daemonset.trim(), "daemonset.apps/kube-proxy");

    // Converged: nothing changes, kubeadm is not run again.
    let (code, again) = lab.metalk8s_json(&["deploy"]);
    assert_eq!(code, 0, "{again}");
    assert!(
        !again.to_string().contains("\"status\":\"changed\""),
        "{again}"
    );

    // node1 stopped: node2 and node3 still reach an API server through their own proxy.
    let stopped = std::process::Command::new("docker")
        .args(["stop", &lab.node("node1").container])
        .status()
        .unwrap();
    assert!(stopped.success());
    for node in ["node2", "node3"] {
        let started = Instant::now();
        loop {
            let output = lab.try_ssh(node, &format!("{KUBECTL} get --raw=/readyz"));
            if output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "ok" {
                eprintln!(
                    "{node}: ready through its proxy {:?} after node1 stopped",
                    started.elapsed()
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{node} lost the API with node1 stopped: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|phase| phase["name"] == name)
        .unwrap_or_else(|| panic!("no {name} phase in {report}"))
}
