//! Plans of the fixture inventories (tests/fixtures/*/{inventory,facts}.yaml), reviewed as
//! snapshots, and the errors a plan can end in.

mod common;

use metalk8s_model::PhaseName;
use metalk8s_model::plan::{Resource, Step};
use metalk8s_plan::{PlanError, plan};

#[test]
fn fixture_plans_match_their_snapshots() {
    let dirs = common::fixture_dirs();
    assert!(dirs.len() >= 3, "plan fixtures are missing");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (inventory, facts) = (common::inventory(&dir), common::facts(&dir));
        let plan = plan(
            &inventory,
            &facts,
            &common::inputs_for(&inventory, &facts),
            &[],
        )
        .unwrap_or_else(|error| panic!("{name}: {error:?}"));
        let yaml = serde_saphyr::to_string(&plan).unwrap();
        insta::assert_snapshot!(name, yaml);
    }
}

#[test]
fn a_plan_reads_back_from_its_json() {
    let (inventory, facts) = common::fixture("mixed-5");
    let plan = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap();
    let json = serde_json::to_string(&plan).unwrap();
    let again: metalk8s_plan::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(again, plan);
}

#[test]
fn asking_for_every_phase_by_name_is_the_same_as_asking_for_none() {
    // With a Kubernetes bundle staged: without one, the `kubernetes` phase asked for by
    // name refuses (tests/kubernetes.rs).
    let (inventory, facts) = common::fixture("lab-3");
    let inputs = common::bundled(&inventory);
    assert_eq!(
        plan(&inventory, &facts, &inputs, &PhaseName::ALL).unwrap(),
        plan(&inventory, &facts, &inputs, &[]).unwrap()
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
    let plan = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap();
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
    let plan = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap();
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
    let error = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap_err();
    assert!(matches!(&error, PlanError::MissingFacts { node } if node == "node2"));
    assert_eq!(
        error.to_string(),
        "no facts were gathered from node `node2`"
    );
}

#[test]
fn a_node_without_a_control_plane_address_is_named() {
    let (inventory, mut facts) = common::fixture("mixed-5");
    // cp-1 declares no controlPlaneIP: it is found from its interfaces, or not at all.
    let cp1 = facts.get_mut("cp-1").unwrap();
    cp1.addresses
        .retain(|address| !address.address.to_string().starts_with("10.10."));
    let error = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap_err();
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
        plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap_err(),
        PlanError::NoControlPlaneIp { node } if node == "cp-1"
    ));
}

#[test]
fn a_node_on_an_unsupported_os_is_named() {
    let (inventory, mut facts) = common::fixture("lab-3");
    let node3 = facts.get_mut("node3").unwrap();
    node3.os.id = "centos".to_owned();
    node3.os.version_id = "7".to_owned();
    let error = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "node `node3` runs `centos` version `7`, which metalk8s cannot prepare"
    );
}

#[test]
fn extra_facts_of_nodes_outside_the_inventory_are_ignored() {
    let (inventory, mut facts) = common::fixture("single");
    let expected = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap();
    facts.insert("stranger".to_owned(), facts["node-1"].clone());
    assert_eq!(
        plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap(),
        expected
    );
}

#[test]
fn etcd_members_get_their_certificates_config_unit_packages_and_a_watched_service() {
    let (inventory, facts) = common::fixture("lab-3");
    let plan = plan(
        &inventory,
        &facts,
        &common::inputs(&inventory),
        &[PhaseName::Etcd],
    )
    .unwrap();
    let phase = &plan.phases[0];
    assert_eq!(phase.rollout, metalk8s_model::plan::Rollout::Parallel);
    for host in &phase.hosts {
        let ids: Vec<&str> = host.steps.iter().map(|s| s.id.as_str()).collect();
        let position = |id: &str| {
            ids.iter()
                .position(|s| *s == id)
                .unwrap_or_else(|| panic!("{id} in {ids:?}"))
        };
        // The unit is ours before the package's first start; the service comes last.
        assert!(position("unit/etcd.service") < position("packages/etcd"));
        assert_eq!(*ids.last().unwrap(), "service/etcd");
        let service = host.steps.last().unwrap();
        for watched in [
            "file/etc/kubernetes/pki/etcd/server.key",
            "file/etc/metalk8s/etcd/etcd.env",
            "unit/etcd.service",
        ] {
            assert!(service.watch.iter().any(|w| w == watched), "{watched}");
        }
        let key = host
            .steps
            .iter()
            .find(|s| s.id == "file/etc/kubernetes/pki/etcd/peer.key")
            .unwrap();
        let Resource::File(key) = &key.resource else {
            panic!()
        };
        assert!(key.secret && key.mode == 0o600 && key.owner == "etcd");
        let env = host
            .steps
            .iter()
            .find(|s| s.id == "file/etc/metalk8s/etcd/etcd.env")
            .unwrap();
        let Resource::File(env) = &env.resource else {
            panic!()
        };
        let ip = inventory
            .node(&host.node)
            .unwrap()
            .control_plane_ip
            .unwrap();
        assert!(
            env.content.contains(&format!(
                "ETCD_LISTEN_CLIENT_URLS=https://{ip}:2379,https://127.0.0.1:2379\n"
            )),
            "{}",
            env.content
        );
        assert!(env.content.contains("ETCD_CLIENT_CERT_AUTH=true\n"));
        assert!(env.content.contains("ETCD_PEER_CLIENT_CERT_AUTH=true\n"));
        assert!(
            env.content
                .contains("ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:2381\n")
        );
    }
    // A running cluster changes one member at a time.
    let mut running = common::inputs(&inventory);
    running.etcd_running = true;
    let plan = metalk8s_plan::plan(&inventory, &facts, &running, &[PhaseName::Etcd]).unwrap();
    assert_eq!(
        plan.phases[0].rollout,
        metalk8s_model::plan::Rollout::Batches { size: 1 }
    );
}

#[test]
fn an_etcd_member_without_certificates_is_named() {
    let (inventory, facts) = common::fixture("lab-3");
    let mut inputs = common::inputs(&inventory);
    inputs.pki.remove("node2");
    let error = plan(&inventory, &facts, &inputs, &[PhaseName::Etcd]).unwrap_err();
    assert!(
        matches!(&error, PlanError::MissingPki { node } if node == "node2"),
        "{error:?}"
    );
}

fn phase(plan: &metalk8s_plan::Plan, name: PhaseName) -> &metalk8s_model::plan::Phase {
    plan.phases
        .iter()
        .find(|phase| phase.name == name)
        .unwrap_or_else(|| panic!("no phase {name}"))
}

fn host_step<'p>(host: &'p metalk8s_model::plan::HostPlan, id: &str) -> &'p Step {
    host.steps
        .iter()
        .find(|step| step.id == id)
        .unwrap_or_else(|| panic!("{} has no step {id}", host.node))
}

#[test]
fn without_a_bundle_the_repository_and_containerd_phases_touch_no_node() {
    let (inventory, facts) = common::fixture("lab-3");
    let plan = plan(&inventory, &facts, &common::inputs(&inventory), &[]).unwrap();
    assert!(phase(&plan, PhaseName::Repository).hosts.is_empty());
    assert!(phase(&plan, PhaseName::Containerd).hosts.is_empty());
}

#[test]
fn the_bootstrap_node_serves_first_then_every_node_uses_only_the_repository() {
    use metalk8s_model::plan::Rollout;
    let (inventory, facts) = common::fixture("lab-3");
    let plan = plan(
        &inventory,
        &facts,
        &common::bundled(&inventory),
        &[PhaseName::Repository],
    )
    .unwrap();
    let repository = phase(&plan, PhaseName::Repository);
    assert_eq!(repository.rollout, Rollout::FirstAlone);
    let nodes: Vec<&str> = repository.hosts.iter().map(|h| h.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["node1", "node2", "node3"],
        "the bootstrap node first"
    );

    let bootstrap = &repository.hosts[0];
    for key in [
        "file/etc/kubernetes/pki/metalk8s-repository.key",
        "file/etc/metalk8s/repository/apt-signing.key",
    ] {
        let Resource::File(file) = &host_step(bootstrap, key).resource else {
            panic!("{key} is not a file")
        };
        assert!(file.secret && file.mode == 0o600, "{key}");
    }
    let service = host_step(bootstrap, "service/metalk8s-repo");
    for watched in [
        "file/etc/kubernetes/pki/metalk8s-repository.crt",
        "file/etc/kubernetes/pki/metalk8s-repository.key",
        "file/etc/metalk8s/repository/apt-signing.key",
        "unit/metalk8s-repo.service",
    ] {
        assert!(service.watch.iter().any(|w| w == watched), "{watched}");
    }
    let Resource::Unit(unit) = &host_step(bootstrap, "unit/metalk8s-repo.service").resource else {
        panic!()
    };
    assert!(unit.content.contains(
        "ExecStart=/var/lib/metalk8s/agent/metalk8s-0123456789abcdef repo serve \
         --bundle /var/lib/metalk8s/bundles/current --listen 172.29.7.11:8443 "
    ));
    assert!(
        unit.content
            .contains("Environment=METALK8S_BUNDLE_VERSION=1.36.4-1\n")
    );
    // The server runs (and answers) before this node's own APT switches to it.
    let ids: Vec<&str> = bootstrap.steps.iter().map(|s| s.id.as_str()).collect();
    let position = |id: &str| ids.iter().position(|s| *s == id).unwrap();
    assert!(position("file/etc/kubernetes/pki/ca.crt") < position("command/wait-for-repository"));
    assert!(
        position("command/wait-for-repository") < position("command/disable-other-apt-sources")
    );

    for host in &repository.hosts {
        let Resource::File(source) =
            &host_step(host, "file/etc/apt/sources.list.d/metalk8s.sources").resource
        else {
            panic!()
        };
        assert!(
            source
                .content
                .contains("URIs: https://172.29.7.11:8443/apt\n")
        );
        assert!(
            source
                .content
                .contains("Signed-By: /etc/apt/keyrings/metalk8s.asc\n")
        );
        let update = host_step(host, "command/apt-get-update");
        let Resource::Command(command) = &update.resource else {
            panic!()
        };
        assert!(command.only_on_watch);
        for watched in [
            "file/etc/apt/sources.list.d/metalk8s.sources",
            "file/etc/apt/keyrings/metalk8s.asc",
            "command/disable-other-apt-sources",
        ] {
            assert!(update.watch.iter().any(|w| w == watched), "{watched}");
        }
        if host.node != "node1" {
            assert!(
                !host
                    .steps
                    .iter()
                    .any(|s| s.id.contains("pki/metalk8s-repository")
                        || s.id.contains("apt-signing")
                        || s.id.starts_with("unit/")),
                "only the bootstrap node holds the server's keys"
            );
        }
    }
    let yaml = serde_saphyr::to_string(&plan).unwrap();
    assert!(!yaml.contains("trusted=yes") && !yaml.contains("Trusted:"));
}

#[test]
fn containerd_mirrors_through_the_bootstrap_registry_and_gets_the_proxy_only_with_one() {
    let (mut inventory, facts) = common::fixture("lab-3");
    let plan_of = |inventory: &metalk8s_model::Inventory| {
        plan(
            inventory,
            &facts,
            &common::bundled(inventory),
            &[PhaseName::Containerd],
        )
        .unwrap()
    };
    let without = plan_of(&inventory);
    let containerd = phase(&without, PhaseName::Containerd);
    assert_eq!(containerd.hosts.len(), 3);
    for host in &containerd.hosts {
        assert!(!host.steps.iter().any(|s| s.id.starts_with("unit/")));
        let Resource::File(config) = &host_step(host, "file/etc/containerd/config.toml").resource
        else {
            panic!()
        };
        assert!(config.content.contains("SystemdCgroup = true"));
        assert!(
            config
                .content
                .contains("sandbox_image = \"172.29.7.11:8443/pause:3.10.2\"")
        );
        assert!(
            config
                .content
                .contains("config_path = \"/etc/containerd/certs.d\"")
        );
        for hosts_file in [
            "file/etc/containerd/certs.d/_default/hosts.toml",
            "file/etc/containerd/certs.d/172.29.7.11:8443/hosts.toml",
        ] {
            let Resource::File(file) = &host_step(host, hosts_file).resource else {
                panic!()
            };
            assert!(file.content.contains(
                "[host.\"https://172.29.7.11:8443\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"/etc/kubernetes/pki/ca.crt\"\n"
            ));
        }
        let service = host_step(host, "service/containerd");
        assert_eq!(service.watch, ["file/etc/containerd/config.toml"]);
    }

    inventory.proxy = Some(metalk8s_model::inventory::Proxy {
        http: Some("http://proxy:3128".to_owned()),
        https: None,
        no_proxy: vec![".example.com".to_owned()],
    });
    let with = plan_of(&inventory);
    for host in &phase(&with, PhaseName::Containerd).hosts {
        let id = "unit/containerd.service/90-metalk8s-proxy";
        let Resource::Unit(unit) = &host_step(host, id).resource else {
            panic!()
        };
        assert!(
            unit.content
                .contains("Environment=\"HTTP_PROXY=http://proxy:3128\"\n")
        );
        assert!(!unit.content.contains("HTTPS_PROXY"));
        let no_proxy = unit
            .content
            .lines()
            .find(|l| l.contains("NO_PROXY="))
            .unwrap();
        for direct in [
            ".example.com",
            "localhost",
            "127.0.0.1",
            "172.29.7.11",
            "10.233.0.0/16",
            "10.96.0.0/12",
        ] {
            assert!(no_proxy.contains(direct), "{direct} in {no_proxy}");
        }
        assert!(
            host_step(host, "service/containerd")
                .watch
                .iter()
                .any(|w| w == id)
        );
    }

    // No `pause` in the bundle: containerd keeps its own sandbox image setting.
    let mut inputs = common::bundled(&inventory);
    inputs.bundle.as_mut().unwrap().images.clear();
    let plan = plan(&inventory, &facts, &inputs, &[PhaseName::Containerd]).unwrap();
    let Resource::File(config) = &host_step(
        &phase(&plan, PhaseName::Containerd).hosts[0],
        "file/etc/containerd/config.toml",
    )
    .resource
    else {
        panic!()
    };
    assert!(!config.content.contains("sandbox_image"));
}

#[test]
fn a_dnf_node_cannot_use_the_bundle_repository() {
    let (inventory, facts) = common::fixture("mixed-5");
    let error = plan(&inventory, &facts, &common::bundled(&inventory), &[]).unwrap_err();
    assert!(
        matches!(&error, PlanError::NoBundleRepository { node } if node == "worker-1"),
        "{error:?}"
    );
}

#[test]
fn the_repository_phase_names_a_missing_signing_key() {
    let (inventory, facts) = common::fixture("lab-3");
    let mut inputs = common::bundled(&inventory);
    inputs
        .pki
        .get_mut("node1")
        .unwrap()
        .retain(|file| !file.path.ends_with("apt-signing.key"));
    let error = plan(&inventory, &facts, &inputs, &[PhaseName::Repository]).unwrap_err();
    assert!(
        matches!(&error, PlanError::MissingNodeFile { node, path } if node == "node1" && path == "/etc/metalk8s/repository/apt-signing.key"),
        "{error:?}"
    );
}
