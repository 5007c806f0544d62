//! The command line without servers: help, completions, inventory commands, exit codes, and
//! an unreachable node reported by the pre-checks and by `kubeconfig`.

use std::io::Write;

use assert_cmd::Command;
use predicates::str::contains;

fn metalk8s() -> Command {
    let mut command = Command::cargo_bin("metalk8s").unwrap();
    command.env("NO_COLOR", "1");
    command
}

const VALID: &str = "\
apiVersion: metalk8s.io/v1alpha1
kind: Inventory
name: cli
networks:
  controlPlane: [127.0.0.0/8]
  workloadPlane: [127.0.0.0/8]
ssh:
  port: 1
  connectTimeoutSeconds: 3
nodes:
  - name: node1
    address: 127.0.0.1
    roles: [bootstrap, etcd, control-plane, worker]
";

fn inventory_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["inventory", "--help"],
        &["inventory", "validate", "--help"],
        &["inventory", "show", "--help"],
        &["inventory", "schema", "--help"],
        &["inventory", "import", "--help"],
        &["precheck", "--help"],
        &["lab", "--help"],
        &["lab", "up", "--help"],
        &["lab", "status", "--help"],
        &["lab", "down", "--help"],
        &["lab", "ssh", "--help"],
        &["lab", "inventory", "--help"],
        &["kubeconfig", "--help"],
        &["completions", "--help"],
    ] {
        metalk8s()
            .args(args)
            .assert()
            .success()
            .stdout(contains("Usage"));
    }
}

#[test]
fn usage_errors_exit_2() {
    metalk8s().arg("frobnicate").assert().code(2);
    metalk8s()
        .args(["lab", "up", "--nodes", "0"])
        .assert()
        .code(2);
    // `--force` only says what to do with the file of `--out`.
    metalk8s()
        .args(["kubeconfig", "-i", "inventory.yaml", "--force"])
        .assert()
        .code(2)
        .stderr(contains("--out"));
}

#[test]
fn completions_for_each_shell() {
    metalk8s()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(contains("_metalk8s"))
        .stdout(contains("kubeconfig"));
    metalk8s()
        .args(["completions", "zsh"])
        .assert()
        .success()
        .stdout(contains("#compdef metalk8s"));
    metalk8s()
        .args(["completions", "fish"])
        .assert()
        .success()
        .stdout(contains("complete -c metalk8s"));
}

#[test]
fn validate_accepts_a_valid_inventory() {
    let file = inventory_file(VALID);
    metalk8s()
        .args(["inventory", "validate"])
        .arg(file.path())
        .assert()
        .success()
        .stdout(contains("valid, cluster `cli` with 1 nodes"));
}

#[test]
fn validate_reports_every_problem_and_exits_2() {
    let broken = VALID
        .replace("name: node1", "name: node1\n    adress: typo")
        .replace(
            "roles: [bootstrap, etcd, control-plane, worker]",
            "roles: [etcd, etcd, worker]",
        );
    let file = inventory_file(&broken);
    let output = metalk8s()
        .args(["inventory", "validate"])
        .arg(file.path())
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("adress"), "{stderr}");
    assert!(stderr.contains("address"), "did you mean: {stderr}");
    assert!(stderr.contains("bootstrap"), "{stderr}");

    let json = metalk8s()
        .args(["inventory", "validate", "-o", "json"])
        .arg(file.path())
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(report["valid"], false);
    assert!(
        report["problems"].as_array().unwrap().len() >= 2,
        "{report}"
    );
}

#[test]
fn validate_names_a_missing_file() {
    metalk8s()
        .args(["inventory", "validate", "/nonexistent/inventory.yaml"])
        .assert()
        .code(2)
        .stderr(contains("/nonexistent/inventory.yaml"));
}

#[test]
fn show_fills_in_defaults() {
    let file = inventory_file(VALID);
    metalk8s()
        .args(["inventory", "show"])
        .arg(file.path())
        .assert()
        .success()
        .stdout(contains("10.233.0.0/16"))
        .stdout(contains("10.96.0.0/12"));
    let json = metalk8s()
        .args(["inventory", "show", "-o", "json"])
        .arg(file.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let inventory: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(inventory["ssh"]["user"], "root");
}

#[test]
fn schema_is_json_schema() {
    let output = metalk8s()
        .args(["inventory", "schema"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let schema: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert!(schema["properties"]["nodes"].is_object(), "{schema}");
}

#[test]
fn precheck_reports_an_unreachable_node_and_exits_1() {
    let file = inventory_file(VALID);
    let output = metalk8s()
        .args(["precheck", "-o", "json", "-i"])
        .arg(file.path())
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output).unwrap();
    let check = &report["nodes"][0]["checks"][0];
    assert_eq!(check["check"], "connection");
    assert_eq!(check["status"], "fail");
    assert!(
        check["message"].as_str().unwrap().contains("node1"),
        "{check}"
    );
    assert!(check["hint"].is_string(), "{check}");
}

#[test]
fn kubeconfig_names_the_unreachable_bootstrap_node_and_writes_nothing() {
    let file = inventory_file(VALID);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("admin.conf");
    metalk8s()
        .args(["kubeconfig", "-i"])
        .arg(file.path())
        .arg("--out")
        .arg(&out)
        .assert()
        .code(1)
        .stdout("")
        .stderr(contains("node1"));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
