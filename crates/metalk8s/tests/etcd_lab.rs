//! End to end on a 3-node lab with real etcd (Debian's etcd-server 3.4, our unit, TLS,
//! over SSH; needs root and docker): deploy and health gate, the operator's kubeconfig,
//! replication, security,
//! a member stopped and one cut off the network, certificates checked and renewed under
//! writes, backup and restore of a wiped cluster, a member whose data was lost replaced,
//! defragmentation.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::TestLab;

/// The lab, with what this test asks of etcd on it.
struct Lab(TestLab);

impl std::ops::Deref for Lab {
    type Target = TestLab;
    fn deref(&self) -> &TestLab {
        &self.0
    }
}

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// etcdctl on a node, with the client certificate metalk8s placed there.
fn etcdctl(endpoints: &str, arguments: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --cacert=/etc/kubernetes/pki/etcd/ca.crt \
         --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
         --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
         --endpoints={endpoints} --command-timeout=5s {arguments}"
    )
}

const LOCAL: &str = "https://127.0.0.1:2379";

impl Lab {
    fn inventory(&self) -> PathBuf {
        self.info.inventory.clone()
    }

    fn all_endpoints(&self) -> String {
        NODES
            .iter()
            .map(|n| format!("https://{}:2379", self.ip(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn put(&self, node: &str, key: &str, value: &str) {
        self.ssh(node, &etcdctl(LOCAL, &format!("put {key} {value}")));
    }

    fn get(&self, node: &str, key: &str) -> String {
        self.ssh(
            node,
            &etcdctl(LOCAL, &format!("get --print-value-only {key}")),
        )
        .trim()
        .to_owned()
    }

    fn status(&self) -> (i32, Value) {
        self.metalk8s_json(&["etcd", "status"])
    }

    fn member<'a>(status: &'a Value, node: &str) -> &'a Value {
        status["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == node)
            .unwrap_or_else(|| panic!("{node} in {status}"))
    }

    /// Polls `etcd status` until it is healthy (exit 0, one leader).
    fn wait_healthy(&self, why: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (code, status) = self.status();
            if code == 0 {
                assert!(status["leader"].is_string(), "{status}");
                return status;
            }
            assert!(Instant::now() < deadline, "{why}: never healthy: {status}");
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// `(node, path)` of every certificate `certs check` listed, with its fingerprint-ish
/// identity (notAfter) and status.
fn certificates(report: &Value) -> Vec<(String, String, String, String)> {
    report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["node"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
                c["notAfter"].as_str().unwrap_or("").to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn etcd_deploy_failures_security_certificates_backup_restore_and_replace() {
    let lab = Lab(TestLab::up("et", 3));

    // Deploy: every phase; the etcd phase ends with its health gate.
    let (code, report) = lab.metalk8s_json(&["deploy"]);
    assert_eq!(code, 0, "{report}");
    let etcd_phase = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "etcd")
        .unwrap();
    assert!(etcd_phase["completed"].as_bool().unwrap(), "{etcd_phase}");
    let gates = etcd_phase["gates"].as_array().unwrap();
    assert!(
        !gates.is_empty() && gates.iter().all(|g| g["passed"] == true),
        "{etcd_phase}"
    );
    let status = lab.wait_healthy("after deploy");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    let leaders: Vec<&Value> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["leader"] == true)
        .collect();
    assert_eq!(leaders.len(), 1, "{status}");

    // An admin kubeconfig from the bootstrap node's store: private, pointing at the first
    // control-plane node (no VIP in the lab), trusting the store's CA.
    let kubeconfig = lab.state.path().join("admin.conf");
    let output = lab
        .metalk8s()
        .args(["kubeconfig", "--out"])
        .arg(&kubeconfig)
        .arg("-i")
        .arg(&lab.info.inventory)
        .output()
        .unwrap();
    common::succeeded("metalk8s kubeconfig --out", &output);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("PRIVATE KEY"),
        "{output:?}"
    );
    let mode = std::fs::metadata(&kubeconfig).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let written = metalk8s_pki::kubeconfig::Kubeconfig::from_yaml(
        &std::fs::read_to_string(&kubeconfig).unwrap(),
    )
    .unwrap();
    assert_eq!(
        written.server(),
        Some(format!("https://{}:6443", lab.ip("node1")).as_str())
    );
    assert_eq!(
        written.certificate_authority_pem().unwrap(),
        lab.ssh("node1", "cat /var/lib/metalk8s/pki/ca.crt")
    );
    let client =
        metalk8s_pki::CertInfo::from_pem(&written.client_certificate_pem().unwrap()).unwrap();
    assert_eq!(client.organizations, [metalk8s_pki::CLUSTER_ADMINS_GROUP]);

    // A second deploy is a no-op: every member is observed converged in one round trip,
    // so none is touched and no gate is needed.
    let (code, again) = lab.metalk8s_json(&["deploy", "--phase", "etcd"]);
    assert_eq!(code, 0, "{again}");
    assert!(
        !again.to_string().contains("\"status\":\"changed\""),
        "{again}"
    );
    assert!(again["phases"][0].get("gates").is_none(), "{again}");

    // `plan` sees the running cluster as `deploy` does: members change one at a time (it
    // used to show a parallel rollout, never having probed etcd).
    let (code, plan) = lab.metalk8s_json(&["plan", "--phase", "etcd"]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(
        plan["phases"][0]["rollout"],
        serde_json::json!({"strategy": "batches", "size": 1}),
        "{plan}"
    );

    // Replication: written through node1, read through the others.
    lab.put("node1", "greeting", "hello");
    assert_eq!(lab.get("node2", "greeting"), "hello");
    assert_eq!(lab.get("node3", "greeting"), "hello");

    // Security.
    let ip1 = lab.ip("node1");
    let plaintext = lab.try_ssh("node2", &format!("curl -sS -m 5 http://{ip1}:2379/version"));
    assert!(
        !plaintext.status.success(),
        "plaintext answered: {plaintext:?}"
    );
    let no_client_cert = lab.try_ssh(
        "node2",
        &format!(
            "ETCDCTL_API=3 etcdctl --cacert=/etc/kubernetes/pki/etcd/ca.crt --endpoints=https://{ip1}:2379 --command-timeout=5s put intruder yes"
        ),
    );
    assert!(
        !no_client_cert.status.success(),
        "a client without certificate wrote: {no_client_cert:?}"
    );
    assert_eq!(lab.get("node1", "intruder"), "");
    for node in NODES {
        let modes = lab.ssh(node, "stat -c '%a %U %n' /etc/kubernetes/pki/etcd/*.key");
        for line in modes.lines() {
            assert!(line.starts_with("600 "), "{node}: {line}");
        }
        let listening = lab.ssh(
            node,
            "ss -Hltn '( sport = :2379 or sport = :2380 or sport = :2381 )' | awk '{print $4}'",
        );
        let ip = lab.ip(node);
        for address in listening.lines() {
            assert!(
                address.starts_with(&format!("{ip}:")) || address.starts_with("127.0.0.1:"),
                "{node} listens on {address}"
            );
        }
        assert!(listening.contains(&format!("{ip}:2379")) && listening.contains("127.0.0.1:2379"));
        assert!(listening.contains("127.0.0.1:2381") && !listening.contains(&format!("{ip}:2381")));
    }

    // One member stopped: writes go on, status names it; restarted, it rejoins.
    lab.ssh("node3", "systemctl stop etcd");
    lab.put("node1", "while-node3-stopped", "1");
    let (code, status) = lab.status();
    assert_eq!(code, 1, "{status}");
    let node3 = Lab::member(&status, "node3");
    assert_eq!(node3["healthy"], false, "{status}");
    assert_eq!(node3["service"], "inactive", "{status}");
    assert_eq!(Lab::member(&status, "node1")["healthy"], true);
    lab.ssh("node3", "systemctl start etcd");
    lab.wait_healthy("node3 restarted");
    assert_eq!(lab.get("node3", "while-node3-stopped"), "1");

    // One member cut off the network: quorum holds, status names it; reconnected, healthy.
    let network = &lab.info.network;
    let container = lab.node("node3").container.clone();
    let docker = |arguments: &[&str]| {
        let output = std::process::Command::new("docker")
            .args(arguments)
            .output()
            .unwrap();
        assert!(output.status.success(), "docker {arguments:?}: {output:?}");
    };
    docker(&["network", "disconnect", network, &container]);
    lab.put("node1", "while-node3-cut-off", "1");
    let (code, status) = lab.status();
    assert_eq!(code, 1, "{status}");
    assert_eq!(Lab::member(&status, "node3")["healthy"], false, "{status}");
    assert_eq!(Lab::member(&status, "node2")["healthy"], true, "{status}");
    docker(&[
        "network",
        "connect",
        "--ip",
        &lab.ip("node3"),
        network,
        &container,
    ]);
    lab.wait_healthy("node3 reconnected");
    assert_eq!(lab.get("node3", "while-node3-cut-off"), "1");

    // Certificates: every one listed; renewing them all keeps etcd writable throughout.
    let (code, before) = lab.metalk8s_json(&["certs", "check"]);
    assert_eq!(code, 0, "{before}");
    let before = certificates(&before);
    for node in NODES {
        for file in ["ca.crt", "server.crt", "peer.crt", "healthcheck-client.crt"] {
            let path = format!("/etc/kubernetes/pki/etcd/{file}");
            assert!(
                before
                    .iter()
                    .any(|(n, p, _, s)| n == node && *p == path && s == "ok"),
                "{node} {path} in {before:?}"
            );
        }
    }
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = Arc::clone(&writing);
        let lab_name = lab.name.clone();
        let endpoints = lab.all_endpoints();
        std::thread::spawn(move || {
            let mut results = Vec::new();
            let mut index = 0;
            while writing.load(Ordering::SeqCst) {
                let ok = metalk8s_lab::ssh_command(&lab_name, "node1")
                    .unwrap()
                    .arg(etcdctl(
                        &endpoints,
                        &format!("put during-renewal-{index} {index}"),
                    ))
                    .output()
                    .unwrap()
                    .status
                    .success();
                results.push(ok);
                index += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            results
        })
    };
    let (code, renewed) = lab.metalk8s_json(&["certs", "renew", "--all"]);
    writing.store(false, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    assert_eq!(code, 0, "{renewed}");
    assert!(
        writes.len() >= 5,
        "too few writes during renewal: {writes:?}"
    );
    assert!(
        !writes.windows(2).any(|pair| !pair[0] && !pair[1]),
        "two writes in a row failed during renewal: {writes:?}"
    );
    let renewals = renewed["renewals"].as_array().unwrap();
    assert!(
        renewals.iter().any(|r| r["name"] == "etcd-server"),
        "{renewed}"
    );
    let restarts = renewed
        .to_string()
        .matches("restarted etcd.service")
        .count();
    assert_eq!(restarts, 3, "one restart per member: {renewed}");
    let (code, after) = lab.metalk8s_json(&["certs", "check"]);
    assert_eq!(code, 0, "{after}");
    let after = certificates(&after);
    assert_eq!(after.len(), before.len());
    let changed = after.iter().filter(|cert| !before.contains(cert)).count();
    assert!(
        changed >= 9,
        "server, peer and client certificates renewed on 3 nodes: {after:?}"
    );
    lab.wait_healthy("after renewal");

    // Backup, wipe, restore.
    lab.put("node1", "backed-up", "before-the-disaster");
    let (code, backup) = lab.metalk8s_json(&["etcd", "backup", "--keep", "2"]);
    assert_eq!(code, 0, "{backup}");
    let snapshot = backup["path"].as_str().unwrap().to_owned();
    let sha256 = backup["sha256"].as_str().unwrap();
    let stored = lab.ssh(
        "node1",
        &format!("sha256sum {snapshot} && cat {snapshot}.sha256"),
    );
    assert!(stored.starts_with(sha256), "{stored}");
    lab.put("node1", "after-backup", "lost");
    for node in NODES {
        lab.ssh(node, "systemctl stop etcd && rm -rf /var/lib/etcd/member");
    }
    let (code, status) = lab.status();
    assert_eq!(code, 1, "a wiped cluster is not healthy: {status}");
    let (code, restored) = lab.metalk8s_json(&["etcd", "restore", "--snapshot", &snapshot]);
    assert_eq!(code, 0, "{restored}");
    lab.wait_healthy("after restore");
    for node in NODES {
        assert_eq!(lab.get(node, "backed-up"), "before-the-disaster");
        assert_eq!(lab.get(node, "greeting"), "hello");
        assert_eq!(
            lab.get(node, "after-backup"),
            "",
            "written after the snapshot"
        );
    }
    // Retention: with --keep 2, the third backup removes the first.
    let (_, second) = lab.metalk8s_json(&["etcd", "backup", "--keep", "2"]);
    std::thread::sleep(Duration::from_secs(1));
    let (code, third) = lab.metalk8s_json(&["etcd", "backup", "--keep", "2"]);
    assert_eq!(code, 0, "{third}");
    let kept = lab.ssh("node1", "ls /var/lib/metalk8s/backups/etcd/");
    assert!(
        !kept.contains(snapshot.rsplit('/').next().unwrap()),
        "{kept}"
    );
    for backup in [&second, &third] {
        let name = backup["path"].as_str().unwrap().rsplit('/').next().unwrap();
        assert!(kept.contains(name), "{name} kept: {kept}");
    }

    // A scheduled backup: a systemd timer on the bootstrap node, runnable on its own.
    let (code, scheduled) =
        lab.metalk8s_json(&["etcd", "backup", "--keep", "5", "--schedule", "hourly"]);
    assert_eq!(code, 0, "{scheduled}");
    assert_eq!(
        lab.ssh("node1", "systemctl is-enabled metalk8s-etcd-backup.timer")
            .trim(),
        "enabled"
    );
    let before_timer = lab.ssh(
        "node1",
        "ls /var/lib/metalk8s/backups/etcd/ | grep -c '\\.db$'",
    );
    std::thread::sleep(Duration::from_secs(1));
    lab.ssh("node1", "systemctl start metalk8s-etcd-backup.service");
    let after_timer = lab.ssh(
        "node1",
        "ls /var/lib/metalk8s/backups/etcd/ | grep -c '\\.db$'",
    );
    assert_eq!(
        after_timer.trim().parse::<u32>().unwrap(),
        before_timer.trim().parse::<u32>().unwrap() + 1,
        "the timer's service took a snapshot"
    );
    lab.ssh(
        "node1",
        "cd /var/lib/metalk8s/backups/etcd && sha256sum -c --quiet *.sha256",
    );

    // A member's data destroyed: replaced, the cluster has 3 healthy members again.
    lab.ssh(
        "node2",
        "systemctl stop etcd && rm -rf /var/lib/etcd/member",
    );
    let (code, replaced) = lab.metalk8s_json(&["etcd", "member", "replace", "node2"]);
    assert_eq!(code, 0, "{replaced}");
    let status = lab.wait_healthy("after replace");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    assert!(status["unknownMembers"].is_null(), "{status}");
    assert_eq!(lab.get("node2", "backed-up"), "before-the-disaster");
    let members = lab.ssh("node1", &etcdctl(LOCAL, "member list"));
    assert_eq!(members.lines().count(), 3, "{members}");

    // Defragmentation, one member at a time.
    let (code, defrag) = lab.metalk8s_json(&["etcd", "defrag"]);
    assert_eq!(code, 0, "{defrag}");
    assert_eq!(defrag.as_array().unwrap().len(), 3);
    lab.wait_healthy("after defrag");

    // Certificates that expired (as while a cluster is powered off): etcd stops working,
    // and `certs renew` brings it back.
    let short_lived = lab
        .metalk8s()
        .env("METALK8S_LEAF_VALIDITY_SECONDS", "60")
        .args(["certs", "renew", "--all", "-i"])
        .arg(lab.inventory())
        .output()
        .unwrap();
    assert!(short_lived.status.success(), "{short_lived:?}");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (code, status) = lab.status();
        if code == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd still healthy with expired certificates: {status}"
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    let (code, expired) = lab.metalk8s_json(&["certs", "check"]);
    assert_eq!(code, 1, "{expired}");
    assert!(
        certificates(&expired).iter().any(|c| c.3 == "expired"),
        "{expired}"
    );
    let (code, revived) = lab.metalk8s_json(&["certs", "renew", "--expiring-within", "30"]);
    assert_eq!(code, 0, "{revived}");
    lab.wait_healthy("after renewing expired certificates");
    assert_eq!(lab.get("node3", "backed-up"), "before-the-disaster");
}
