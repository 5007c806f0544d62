//! End to end on a 3-node lab (real systemd, sshd and disks; needs root and docker): the
//! pre-checks pass, then fail on exactly the node and check that were broken.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

struct Lab {
    name: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(error) = metalk8s_lab::down(&self.name) {
            eprintln!("cleaning up lab {}: {error}", self.name);
        }
    }
}

fn lab_ssh(lab: &str, node: &str, script: &str) {
    let status = metalk8s_lab::ssh_command(lab, node)
        .expect("lab ssh command")
        .arg(script)
        .status()
        .expect("ssh runs");
    assert!(status.success(), "`{script}` failed on {node}");
}

fn precheck(inventory: &Path, format: &str) -> Output {
    Command::cargo_bin("metalk8s")
        .unwrap()
        .args(["precheck", "-i"])
        .arg(inventory)
        .args(["-o", format])
        .output()
        .expect("metalk8s runs")
}

/// `(node, check)` of every failed check in a JSON report.
fn failures(output: &Output) -> BTreeSet<(String, String)> {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "precheck printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let mut found = BTreeSet::new();
    for node in report["nodes"].as_array().unwrap() {
        for check in node["checks"].as_array().unwrap() {
            if check["status"] == "fail" {
                found.insert((
                    node["node"].as_str().unwrap().to_owned(),
                    check["check"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    found
}

#[test]
fn precheck_passes_then_names_the_broken_port_and_disk() {
    let lab = Lab {
        name: format!("pc{}", std::process::id()),
    };
    let info = metalk8s_lab::up(&metalk8s_lab::LabSpec::new(&lab.name, 3), &|m: &str| {
        eprintln!("{m}")
    })
    .expect("lab up");
    let inventory = info.inventory;

    let clean = precheck(&inventory, "json");
    assert_eq!(failures(&clean), BTreeSet::new());
    assert_eq!(clean.status.code(), Some(0));

    lab_ssh(
        &lab.name,
        "node1",
        "systemd-run --unit=squatter python3 -m http.server --bind 127.0.0.1 2379 && \
         for i in $(seq 50); do ss -Hltn 'sport = :2379' | grep -q . && exit 0; sleep 0.1; done; exit 1",
    );
    lab_ssh(&lab.name, "node2", "mkfs.ext4 -q -F /dev/vdb");

    let broken = precheck(&inventory, "json");
    assert_eq!(broken.status.code(), Some(1));
    assert_eq!(
        failures(&broken),
        BTreeSet::from([
            ("node1".to_owned(), "ports".to_owned()),
            ("node2".to_owned(), "disk /dev/vdb".to_owned()),
        ])
    );

    let table = precheck(&inventory, "table");
    assert_eq!(table.status.code(), Some(1));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("2379 (etcd client) is in use on 127.0.0.1 by python3"),
        "{text}"
    );
    assert!(text.contains("wipefs -a /dev/vdb"), "{text}");
    assert!(text.contains("failed (on node1, node2)"), "{text}");
}
