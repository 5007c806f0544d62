//! Plans of the fixture inventories (tests/fixtures/*/{inventory,facts}.yaml), reviewed as
//! snapshots, and the errors a plan can end in.

mod common;

use metalk8s_model::plan::{Resource, Step};
use metalk8s_plan::{PHASES, PlanError, plan};

#[test]
fn fixture_plans_match_their_snapshots() {
    let dirs = common::fixture_dirs();
    assert!(dirs.len() >= 3, "plan fixtures are missing");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (inventory, facts) = (common::inventory(&dir), common::facts(&dir));
        let plan =
            plan(&inventory, &facts, &[]).unwrap_or_else(|error| panic!("{name}: {error:?}"));
        let yaml = serde_saphyr::to_string(&plan).unwrap();
        insta::assert_snapshot!(name, yaml);
    }
}

#[test]
fn a_plan_reads_back_from_its_json() {
    let (inventory, facts) = common::fixture("mixed-5");
    let plan = plan(&inventory, &facts, &[]).unwrap();
    let json = serde_json::to_string(&plan).unwrap();
    let again: metalk8s_plan::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(again, plan);
}

#[test]
fn asking_for_every_phase_by_name_is_the_same_as_asking_for_none() {
    let (inventory, facts) = common::fixture("lab-3");
    assert_eq!(
        plan(&inventory, &facts, PHASES).unwrap(),
        plan(&inventory, &facts, &[]).unwrap()
    );
}

fn step<'p>(plan: &'p metalk8s_plan::Plan, node: &str, id: &str) -> &'p Step {
    let host = plan.phases[0]
        .hosts
        .iter()
        .find(|host| host.node == node)
        .unwrap_or_else(|| panic!("no host plan for {node}"));
    host.steps
        .iter()
        .find(|step| step.id == id)
        .unwrap_or_else(|| panic!("{node} has no step {id}"))
}

fn file_content<'p>(plan: &'p metalk8s_plan::Plan, node: &str, path: &str) -> &'p str {
    match &step(plan, node, &format!("file{path}")).resource {
        Resource::File(file) => &file.content,
        other => panic!("{path} is not a file: {other:?}"),
    }
}

#[test]
fn every_node_follows_the_bootstrap_node_which_follows_the_configured_servers() {
    let (inventory, facts) = common::fixture("mixed-5");
    let plan = plan(&inventory, &facts, &[]).unwrap();
    let server = file_content(&plan, "bootstrap", "/etc/chrony/chrony.conf");
    assert!(server.contains("\nserver ntp1.example.com iburst\nserver 10.0.0.123 iburst\n"));
    assert!(server.contains("\nallow 10.10.0.0/24\nallow 10.11.0.0/24\n"));
    assert!(server.contains("\nbindaddress 10.10.0.10\n"));
    assert!(!server.contains("local stratum"));
    let client = file_content(&plan, "worker-1", "/etc/chrony.conf");
    assert!(client.contains("\nserver 10.10.0.10 iburst prefer\n"));
    assert!(!client.contains("allow"));
}

#[test]
fn without_servers_the_bootstrap_node_serves_its_own_clock() {
    let (inventory, facts) = common::fixture("lab-3");
    let plan = plan(&inventory, &facts, &[]).unwrap();
    let server = file_content(&plan, "node1", "/etc/chrony/chrony.conf");
    assert!(server.contains("\nlocal stratum 10\n"));
    assert!(!server.contains("\nserver "));
    let client = file_content(&plan, "node3", "/etc/chrony/chrony.conf");
    assert!(client.contains("\nserver 172.29.7.11 iburst prefer\n"));
}

#[test]
fn a_node_without_facts_is_named() {
    let (inventory, mut facts) = common::fixture("lab-3");
    facts.remove("node2");
    let error = plan(&inventory, &facts, &[]).unwrap_err();
    assert!(matches!(&error, PlanError::MissingFacts { node } if node == "node2"));
    assert_eq!(
        error.to_string(),
        "no facts were gathered from node `node2`"
    );
}

#[test]
fn an_unknown_phase_is_refused_before_anything_else() {
    let (inventory, facts) = common::fixture("single");
    let error = plan(&inventory, &facts, &["os", "kubernetes"]).unwrap_err();
    assert!(
        matches!(&error, PlanError::UnknownPhase { phase, known } if phase == "kubernetes" && known == &["os"]),
        "{error:?}"
    );
}

#[test]
fn a_node_without_a_control_plane_address_is_named() {
    let (inventory, mut facts) = common::fixture("mixed-5");
    // cp-1 declares no controlPlaneIP: it is found from its interfaces, or not at all.
    let cp1 = facts.get_mut("cp-1").unwrap();
    cp1.addresses
        .retain(|address| !address.address.to_string().starts_with("10.10."));
    let error = plan(&inventory, &facts, &[]).unwrap_err();
    assert!(
        matches!(&error, PlanError::NoControlPlaneIp { node } if node == "cp-1"),
        "{error:?}"
    );
    // A second address in the network is as ambiguous as none.
    let (_, mut facts) = common::fixture("mixed-5");
    let mut second = facts["cp-1"].addresses[1].clone();
    second.address = "10.10.0.99".parse().unwrap();
    facts.get_mut("cp-1").unwrap().addresses.push(second);
    assert!(matches!(
        plan(&inventory, &facts, &[]).unwrap_err(),
        PlanError::NoControlPlaneIp { node } if node == "cp-1"
    ));
}

#[test]
fn a_node_on_an_unsupported_os_is_named() {
    let (inventory, mut facts) = common::fixture("lab-3");
    let node3 = facts.get_mut("node3").unwrap();
    node3.os.id = "centos".to_owned();
    node3.os.version_id = "7".to_owned();
    let error = plan(&inventory, &facts, &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "node `node3` runs `centos` version `7`, which metalk8s cannot prepare"
    );
}

#[test]
fn extra_facts_of_nodes_outside_the_inventory_are_ignored() {
    let (inventory, mut facts) = common::fixture("single");
    let expected = plan(&inventory, &facts, &[]).unwrap();
    facts.insert("stranger".to_owned(), facts["node-1"].clone());
    assert_eq!(plan(&inventory, &facts, &[]).unwrap(), expected);
}
