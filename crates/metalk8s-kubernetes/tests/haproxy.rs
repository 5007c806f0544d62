//! The real haproxy accepts the generated apiserver proxy configuration (`haproxy -c`).
//! haproxy comes from Debian (scripts/prerequisites installs it); under CI (`CI=true`) a
//! missing haproxy fails the test, elsewhere it is skipped with a message. The CA file the
//! configuration names must exist and hold a certificate, so the test points it at one it
//! makes with openssl.

mod common;

use std::process::Command;

use metalk8s_kubernetes::apiserver_proxy;

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn haproxy_accepts_the_generated_configuration() {
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !have("haproxy") || !openssl {
        let message = "haproxy or openssl not found (scripts/prerequisites installs both)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        eprintln!("skipped: {message}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kubernetes",
        ])
        .arg("-keyout")
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for nodes in [1, 3, 5] {
        let cluster = common::cluster(nodes, 36, nodes > 1, false);
        for node in &cluster.nodes {
            let config = apiserver_proxy::config(&cluster, node)
                .unwrap()
                .replace("/etc/kubernetes/pki/ca.crt", ca.to_str().unwrap())
                // No syslog socket in a test sandbox.
                .replace("log /dev/log local0 notice", "log stdout format raw local0");
            let path = dir.path().join(format!("{nodes}-{}.cfg", node.name));
            std::fs::write(&path, &config).unwrap();
            let output = Command::new("haproxy")
                .arg("-c")
                .arg("-f")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "haproxy -c refused {}:\n{}{}\n{config}",
                path.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
