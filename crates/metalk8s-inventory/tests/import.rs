//! Ansible INI inventories converted: the YAML produced and what could not be mapped are
//! snapshotted, and the result is itself a valid inventory.

mod common;

use std::path::Path;

use metalk8s_inventory::import::{ImportError, import_ini};
use metalk8s_inventory::{parse, to_yaml};

fn case_dir(case: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ini")
        .join(case)
}

fn import_case(case: &str) -> String {
    let dir = case_dir(case);
    let text = std::fs::read_to_string(dir.join("hosts.ini")).unwrap();
    let group_vars = dir.join("group_vars");
    let host_vars = dir.join("host_vars");
    let imported = import_ini(
        &text,
        group_vars.is_dir().then_some(group_vars.as_path()),
        host_vars.is_dir().then_some(host_vars.as_path()),
    )
    .unwrap_or_else(|error| panic!("{case}: {}", common::render(&error)));
    let yaml = to_yaml(&imported.inventory);
    let reread = parse("imported.yaml", &yaml)
        .unwrap_or_else(|error| panic!("{case}: {}", common::render(&error)));
    assert_eq!(reread, imported.inventory);
    let unmapped: String = imported
        .unmapped
        .iter()
        .map(|line| format!("# - {line}\n"))
        .collect();
    format!("{yaml}\n# unmapped:\n{unmapped}")
}

#[test]
fn kubespray_inventory() {
    insta::assert_snapshot!("import-kubespray", import_case("kubespray"));
}

#[test]
fn legacy_dashed_groups() {
    insta::assert_snapshot!("import-legacy", import_case("legacy"));
}

#[test]
fn metalk8s_1_storage() {
    insta::assert_snapshot!("import-metalk8s-1", import_case("metalk8s-1"));
}

#[test]
fn no_control_plane_is_refused() {
    let error = import_ini("[kube_node]\nnode1 ip=10.0.0.1\n", None, None).unwrap_err();
    assert!(matches!(error, ImportError::NoControlPlane), "{error}");
}

#[test]
fn hosts_without_any_ip_are_refused() {
    let error = import_ini("[kube_control_plane]\nnode1\n", None, None).unwrap_err();
    assert!(matches!(error, ImportError::NoAddresses), "{error}");
}

#[test]
fn ini_mistakes_name_their_line() {
    let error = import_ini("[kube_control_plane]\nnode1\n[oops:other]\n", None, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "INI inventory, line 3: unknown section type `:other` (Ansible knows `:vars` and `:children`)"
    );
}

#[test]
fn an_inventory_that_cannot_validate_comes_back_as_yaml_with_its_problems() {
    let text = "[kube_control_plane]\nnode1 ip=10.0.0.1\nnode2 ip=10.0.0.2\n[etcd]\nnode1\nnode2\n";
    let error = import_ini(text, None, None).unwrap_err();
    let ImportError::Invalid { yaml, source } = error else {
        panic!("expected an invalid import, got {error}");
    };
    assert!(yaml.contains("node2"));
    let codes: Vec<&str> = source.problems().iter().map(|p| p.code).collect();
    assert_eq!(codes, ["inventory::etcd-count"]);
}

#[test]
fn unreadable_vars_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yml"), "key: [unclosed\n").unwrap();
    let error = import_ini(
        "[kube_control_plane]\nnode1 ip=10.0.0.1\n",
        Some(dir.path()),
        None,
    )
    .unwrap_err();
    assert!(matches!(error, ImportError::ParseVars { .. }), "{error}");
    assert!(error.to_string().contains("all.yml"));
}
