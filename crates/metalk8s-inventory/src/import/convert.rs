//! From merged Ansible host variables to the JSON form of an inventory; `parse` then
//! applies the defaults and checks it like any other inventory.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use metalk8s_model::ByteSize;
use metalk8s_model::inventory::{API_VERSION, KIND};
use serde_json::{Map, Value as Json, json};

use super::ImportError;
use super::ini::AnsibleInventory;
use super::vars::Vars;
use crate::names;

const CONTROL_PLANE_GROUPS: [&str; 3] = ["kube_control_plane", "kube-master", "kube_master"];
const ETCD_GROUPS: [&str; 1] = ["etcd"];
const WORKER_GROUPS: [&str; 2] = ["kube_node", "kube-node"];
const STRUCTURE_GROUPS: [&str; 4] = ["all", "ungrouped", "k8s_cluster", "k8s-cluster"];

const MAPPED_VARIABLES: [&str; 21] = [
    "ansible_host",
    "ansible_ssh_host",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_become",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ip",
    "access_ip",
    "kube_pods_subnet",
    "kube_service_addresses",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "cluster_name",
    "node_labels",
    "node_taints",
    "metalk8s_lvm_default_vg",
    "metalk8s_lvm_vgs",
];
const DRIVES_PREFIX: &str = "metalk8s_lvm_drives_";
const LVS_PREFIX: &str = "metalk8s_lvm_lvs_";
/// The volume group MetalK8s 1.x managed unless `metalk8s_lvm_default_vg` was false.
const DEFAULT_VG: &str = "vg_metalk8s";

pub(crate) fn is_mapped(variable: &str) -> bool {
    MAPPED_VARIABLES.contains(&variable)
        || variable.starts_with(DRIVES_PREFIX)
        || variable.starts_with(LVS_PREFIX)
}

pub(crate) fn is_known_group(group: &str) -> bool {
    [
        &CONTROL_PLANE_GROUPS[..],
        &ETCD_GROUPS,
        &WORKER_GROUPS,
        &STRUCTURE_GROUPS,
    ]
    .iter()
    .any(|groups| groups.contains(&group))
}

/// The roles of each host, in inventory order; hosts with none are left out.
fn roles(
    ansible: &AnsibleInventory,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, Vec<&'static str>)>, ImportError> {
    let members = |groups: &[&str]| -> Vec<String> {
        let mut hosts: Vec<String> = groups.iter().flat_map(|g| ansible.members(g)).collect();
        hosts.sort_by_key(|host| ansible.hosts.iter().position(|h| h == host));
        hosts.dedup();
        hosts
    };
    let control_plane = members(&CONTROL_PLANE_GROUPS);
    let Some(bootstrap) = control_plane.first().cloned() else {
        return Err(ImportError::NoControlPlane);
    };
    let mut etcd = members(&ETCD_GROUPS);
    if etcd.is_empty() {
        notes.push("no `etcd` group: the control-plane hosts run etcd".to_owned());
        etcd = control_plane.clone();
    }
    let mut workers = members(&WORKER_GROUPS);
    if workers.is_empty() {
        notes.push("no `kube_node` group: the control-plane hosts also run workloads".to_owned());
        workers = control_plane.clone();
    }
    notes.push(format!(
        "`{bootstrap}`, the first control-plane host, is the bootstrap node (offline repository, registry, CA)"
    ));
    let mut nodes = Vec::new();
    for host in &ansible.hosts {
        let mut roles = Vec::new();
        for (role, hosts) in [
            ("bootstrap", std::slice::from_ref(&bootstrap)),
            ("etcd", &etcd[..]),
            ("control-plane", &control_plane[..]),
            ("worker", &workers[..]),
        ] {
            if hosts.contains(host) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            notes.push(format!(
                "host `{host}` is in no control-plane, etcd or node group: left out"
            ));
        } else {
            nodes.push((host.clone(), roles));
        }
    }
    Ok(nodes)
}

pub(crate) fn inventory(
    ansible: &AnsibleInventory,
    hosts: &[(String, Vars)],
    notes: &mut Vec<String>,
) -> Result<Json, ImportError> {
    let vars_of: BTreeMap<&str, &Vars> = hosts.iter().map(|(h, v)| (h.as_str(), v)).collect();
    let empty = Vars::new();
    let nodes: Vec<(String, Vec<&str>, &Vars)> = roles(ansible, notes)?
        .into_iter()
        .map(|(host, roles)| {
            let vars = vars_of.get(host.as_str()).copied().unwrap_or(&empty);
            (host, roles, vars)
        })
        .collect();
    let first_vars = nodes.first().map_or(&empty, |(_, _, vars)| *vars);

    let mut node_json = Vec::new();
    let mut plane_ips = Vec::new();
    for (host, roles, vars) in &nodes {
        let (node, ip) = node(host, roles, vars, notes);
        node_json.push(node);
        plane_ips.extend(ip);
    }
    let mut inventory = Map::new();
    inventory.insert("apiVersion".into(), json!(API_VERSION));
    inventory.insert("kind".into(), json!(KIND));
    inventory.insert("name".into(), json!(cluster_name(first_vars, notes)));
    inventory.insert("networks".into(), networks(&plane_ips, first_vars, notes)?);
    if let Some(proxy) = proxy(first_vars) {
        inventory.insert("proxy".into(), proxy);
    }
    let ssh = hoist_ssh(&mut node_json);
    if !ssh.is_empty() {
        inventory.insert("ssh".into(), Json::Object(ssh));
    }
    inventory.insert("nodes".into(), Json::Array(node_json));
    Ok(Json::Object(inventory))
}

/// The text of a variable: strings as they are, numbers and booleans as written.
fn text(vars: &Vars, key: &str) -> Option<String> {
    match vars.get(key)? {
        Json::String(text) => Some(text.trim().to_owned()).filter(|text| !text.is_empty()),
        Json::Number(number) => Some(number.to_string()),
        Json::Bool(value) => Some(value.to_string()),
        _ => None,
    }
}

fn first_text(vars: &Vars, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| text(vars, key))
}

fn ip_of(vars: &Vars, key: &str) -> Option<IpAddr> {
    text(vars, key)?.parse().ok()
}

/// Ansible's truthy strings.
fn boolean(vars: &Vars, key: &str) -> Option<bool> {
    match text(vars, key)?.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// One node, and the IP its networks are derived from.
fn node(
    host: &str,
    roles: &[&str],
    vars: &Vars,
    notes: &mut Vec<String>,
) -> (Json, Option<IpAddr>) {
    let name = node_name(host, notes);
    let address = first_text(
        vars,
        &["ansible_host", "ansible_ssh_host", "access_ip", "ip"],
    )
    .unwrap_or_else(|| host.to_owned());
    let control_plane_ip = ip_of(vars, "ip");
    let unused_access_ip = ip_of(vars, "access_ip").filter(|access| {
        control_plane_ip.is_some_and(|ip| ip != *access) && text(vars, "ansible_host").is_some()
    });
    if let Some(access) = unused_access_ip {
        notes.push(format!(
            "host `{host}`: access_ip `{access}` is not used (address from ansible_host, control-plane IP from ip)"
        ));
    }
    let mut node = Map::new();
    node.insert("name".into(), json!(name));
    node.insert("address".into(), json!(address));
    if let Some(ip) = control_plane_ip {
        node.insert("controlPlaneIP".into(), json!(ip.to_string()));
    }
    node.insert("roles".into(), json!(roles));
    if let Some(labels) = labels(host, vars, notes) {
        node.insert("labels".into(), labels);
    }
    if let Some(taints) = taints(host, vars, notes) {
        node.insert("taints".into(), taints);
    }
    let ssh = ssh_settings(vars);
    if !ssh.is_empty() {
        node.insert("ssh".into(), Json::Object(ssh));
    }
    let volumes = lvm_volumes(vars, notes);
    if !volumes.is_empty() {
        node.insert("storage".into(), json!({ "volumes": volumes }));
    }
    let plane_ip = control_plane_ip
        .or_else(|| ip_of(vars, "access_ip"))
        .or_else(|| address.parse().ok());
    (Json::Object(node), plane_ip)
}

fn node_name(host: &str, notes: &mut Vec<String>) -> String {
    if names::is_dns_label(host) {
        return host.to_owned();
    }
    let first_label = host.split('.').next().unwrap_or(host);
    let name = if names::is_dns_label(first_label) {
        first_label.to_owned()
    } else {
        names::dns_label_near(first_label).unwrap_or_else(|| first_label.to_owned())
    };
    notes.push(format!(
        "host `{host}` is named `{name}`: node names are DNS labels"
    ));
    name
}

fn labels(host: &str, vars: &Vars, notes: &mut Vec<String>) -> Option<Json> {
    let Json::Object(given) = vars.get("node_labels")? else {
        notes.push(format!(
            "host `{host}`: node_labels is not a mapping: ignored"
        ));
        return None;
    };
    let labels: Map<String, Json> = given
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Json::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), Json::String(value))
        })
        .collect();
    (!labels.is_empty()).then_some(Json::Object(labels))
}

/// Kubespray writes taints as `key=value:Effect` strings.
fn taints(host: &str, vars: &Vars, notes: &mut Vec<String>) -> Option<Json> {
    let Json::Array(given) = vars.get("node_taints")? else {
        notes.push(format!("host `{host}`: node_taints is not a list: ignored"));
        return None;
    };
    let taints: Vec<Json> = given
        .iter()
        .filter_map(|taint| {
            let (pair, effect) = taint.as_str()?.rsplit_once(':')?;
            let mut out = Map::new();
            match pair.split_once('=') {
                Some((key, value)) => {
                    out.insert("key".into(), json!(key));
                    out.insert("value".into(), json!(value));
                }
                None => {
                    out.insert("key".into(), json!(pair));
                }
            }
            out.insert("effect".into(), json!(effect));
            Some(Json::Object(out))
        })
        .collect();
    (!taints.is_empty()).then_some(Json::Array(taints))
}

fn ssh_settings(vars: &Vars) -> Map<String, Json> {
    let mut ssh = Map::new();
    if let Some(user) = first_text(vars, &["ansible_user", "ansible_ssh_user"]) {
        ssh.insert("user".into(), json!(user));
    }
    if let Some(port) = first_text(vars, &["ansible_port", "ansible_ssh_port"])
        .and_then(|port| port.parse::<u16>().ok())
    {
        ssh.insert("port".into(), json!(port));
    }
    if let Some(key) = first_text(
        vars,
        &["ansible_ssh_private_key_file", "ansible_private_key_file"],
    ) {
        ssh.insert("identityFile".into(), json!(key));
    }
    if let Some(sudo) = boolean(vars, "ansible_become") {
        ssh.insert("sudo".into(), json!(sudo));
    }
    ssh
}

/// SSH settings every node shares become cluster-wide; the rest stay per node.
fn hoist_ssh(nodes: &mut [Json]) -> Map<String, Json> {
    let mut shared = Map::new();
    for field in ["user", "port", "identityFile", "sudo"] {
        let values: Vec<Option<&Json>> = nodes
            .iter()
            .map(|node| node.pointer(&format!("/ssh/{field}")))
            .collect();
        let Some(Some(first)) = values.first() else {
            continue;
        };
        if values.iter().all(|value| *value == Some(*first)) {
            shared.insert(field.to_owned(), (*first).clone());
        }
    }
    for node in nodes.iter_mut() {
        let Some(Json::Object(ssh)) = node.get_mut("ssh") else {
            continue;
        };
        ssh.retain(|field, _| !shared.contains_key(field));
        let emptied = ssh.is_empty();
        if let Some(node) = node.as_object_mut().filter(|_| emptied) {
            node.remove("ssh");
        }
    }
    shared
}

fn cluster_name(vars: &Vars, notes: &mut Vec<String>) -> String {
    let given = text(vars, "cluster_name");
    let first_label = given
        .as_deref()
        .and_then(|name| name.split('.').next())
        .unwrap_or("cluster");
    let name = if names::is_dns_label(first_label) {
        first_label.to_owned()
    } else {
        names::dns_label_near(first_label).unwrap_or_else(|| "cluster".to_owned())
    };
    match given {
        Some(given) if given == name => {}
        Some(given) => notes.push(format!(
            "name: `{name}`, from cluster_name `{given}` (a DNS domain in Kubespray); rename it as you like"
        )),
        None => notes.push(format!("name: `{name}` (no cluster_name); rename it as you like")),
    }
    name
}

/// The /24 (IPv4) or /64 (IPv6) around each node IP, when nothing says better.
fn networks(ips: &[IpAddr], vars: &Vars, notes: &mut Vec<String>) -> Result<Json, ImportError> {
    let mut planes: Vec<IpNet> = Vec::new();
    for ip in ips {
        let prefix = if ip.is_ipv4() { 24 } else { 64 };
        let net = IpNet::new(*ip, prefix)
            .expect("24 and 64 are valid prefix lengths")
            .trunc();
        if !planes.contains(&net) {
            planes.push(net);
        }
    }
    if planes.is_empty() {
        return Err(ImportError::NoAddresses);
    }
    let listed: Vec<String> = planes.iter().map(ToString::to_string).collect();
    notes.push(format!(
        "networks: controlPlane and workloadPlane set to {}, around the node IPs; narrow or widen them to the real networks",
        listed.join(", ")
    ));
    let mut networks = json!({ "controlPlane": listed, "workloadPlane": listed });
    for (variable, field) in [
        ("kube_pods_subnet", "pods"),
        ("kube_service_addresses", "services"),
    ] {
        let Some(value) = text(vars, variable) else {
            continue;
        };
        match value.parse::<IpNet>() {
            Ok(net) => networks[field] = json!(net.to_string()),
            Err(_) => notes.push(format!(
                "{variable} `{value}` is not a CIDR (a template?): the default {field} range is used"
            )),
        }
    }
    Ok(networks)
}

fn proxy(vars: &Vars) -> Option<Json> {
    let mut proxy = Map::new();
    for (variable, field) in [("http_proxy", "http"), ("https_proxy", "https")] {
        if let Some(url) = text(vars, variable) {
            proxy.insert(field.into(), json!(url));
        }
    }
    if let Some(no_proxy) = text(vars, "no_proxy") {
        let hosts: Vec<&str> = no_proxy
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .collect();
        proxy.insert("noProxy".into(), json!(hosts));
    }
    (!proxy.is_empty()).then_some(Json::Object(proxy))
}

fn strings(value: Option<&Json>) -> Vec<String> {
    match value {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(Json::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The volume groups MetalK8s 1.x managed on a host: `metalk8s_lvm_vgs`, plus
/// `vg_metalk8s` unless `metalk8s_lvm_default_vg` is false.
fn volume_groups(vars: &Vars) -> Vec<String> {
    let mut groups = strings(vars.get("metalk8s_lvm_vgs"));
    if boolean(vars, "metalk8s_lvm_default_vg").unwrap_or(true)
        && !groups.iter().any(|g| g == DEFAULT_VG)
    {
        groups.insert(0, DEFAULT_VG.to_owned());
    }
    groups
}

fn lvm_volumes(vars: &Vars, notes: &mut Vec<String>) -> Vec<Json> {
    let groups = volume_groups(vars);
    for key in vars.keys() {
        let ignored_group = key
            .strip_prefix(DRIVES_PREFIX)
            .or_else(|| key.strip_prefix(LVS_PREFIX))
            .filter(|group| !groups.iter().any(|g| g == group));
        if let Some(group) = ignored_group {
            notes.push(format!(
                "{key}: `{group}` is not in metalk8s_lvm_vgs, so MetalK8s 1.x ignored it too: ignored"
            ));
        }
    }
    if vars.contains_key("metal_k8s_lvm") {
        notes.push("metal_k8s_lvm (MetalK8s 0.1 storage) is not converted: declare its volumes under `storage.volumes`".to_owned());
    }
    groups
        .iter()
        .flat_map(|group| group_volumes(group, vars, notes))
        .collect()
}

fn group_volumes(group: &str, vars: &Vars, notes: &mut Vec<String>) -> Vec<Json> {
    let devices = strings(vars.get(&format!("{DRIVES_PREFIX}{group}")));
    let Some(Json::Object(volumes)) = vars.get(&format!("{LVS_PREFIX}{group}")) else {
        if !devices.is_empty() {
            notes.push(format!(
                "{DRIVES_PREFIX}{group}: no {LVS_PREFIX}{group}, so no volume is declared on it; MetalK8s 1.x default volumes must be listed under `storage.volumes`"
            ));
        }
        return Vec::new();
    };
    volumes
        .iter()
        .filter_map(|(lv, spec)| logical_volume(group, lv, spec, &devices, notes))
        .collect()
}

fn logical_volume(
    group: &str,
    lv: &str,
    spec: &Json,
    devices: &[String],
    notes: &mut Vec<String>,
) -> Option<Json> {
    let spec = spec.as_object().cloned().unwrap_or_default();
    let size_text = text(&spec, "size").unwrap_or_default();
    let Some(size) = lvm_size(&size_text) else {
        notes.push(format!(
            "LV `{lv}` of `{group}`: size `{size_text}` is not a fixed size: left out"
        ));
        return None;
    };
    let mut lvm = json!({ "vg": group, "size": size.to_string() });
    if !devices.is_empty() {
        lvm["devices"] = json!(devices);
    }
    let mut volume = json!({ "name": volume_name(group, lv), "lvm": lvm });
    match text(&spec, "fstype").as_deref() {
        None => {}
        Some(fs @ ("ext4" | "xfs")) => volume["fsType"] = json!(fs),
        Some(other) => notes.push(format!(
            "LV `{lv}` of `{group}`: filesystem `{other}` is not supported: ext4 is used"
        )),
    }
    if let Some(options) = text(&spec, "fs_opts") {
        volume["mkfsOptions"] = json!(options.split_whitespace().collect::<Vec<_>>());
    }
    if let Some(options) = text(&spec, "mount_opts") {
        let options: Vec<&str> = options
            .split(',')
            .map(str::trim)
            .filter(|option| !option.is_empty() && *option != "defaults")
            .collect();
        if !options.is_empty() {
            volume["mountOptions"] = json!(options);
        }
    }
    let ignored: Vec<&str> = spec
        .keys()
        .map(String::as_str)
        .filter(|key| !matches!(*key, "size" | "fstype" | "fs_opts" | "mount_opts"))
        .collect();
    if !ignored.is_empty() {
        notes.push(format!(
            "LV `{lv}` of `{group}`: options not converted: {}",
            ignored.join(", ")
        ));
    }
    Some(volume)
}

/// Volume names must be unique on a node while LV names only are within their group, so
/// the group is part of the name.
fn volume_name(group: &str, lv: &str) -> String {
    let raw = format!("{group}-{lv}").to_ascii_lowercase();
    let mut name = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    name.trim_matches('-').to_owned()
}

/// LVM sizes (`lvcreate -L`, Ansible's `lvol`): a number with an optional unit letter in
/// either case, all binary (`G` is GiB), megabytes when there is none.
fn lvm_size(text: &str) -> Option<ByteSize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1,
        "s" => 512,
        "k" => 1 << 10,
        "" | "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        "e" => 1 << 60,
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    let bytes = number * multiplier as f64;
    (bytes >= 1.0 && bytes < u64::MAX as f64).then(|| ByteSize(bytes.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvm_sizes_are_binary() {
        assert_eq!(lvm_size("52G"), Some(ByteSize::gib(52)));
        assert_eq!(lvm_size("52g"), Some(ByteSize::gib(52)));
        assert_eq!(lvm_size("1.5G"), Some(ByteSize::mib(1536)));
        assert_eq!(lvm_size("512"), Some(ByteSize::mib(512)));
        assert_eq!(lvm_size("100%FREE"), None);
        assert_eq!(lvm_size("0"), None);
    }

    #[test]
    fn volume_names_keep_the_group() {
        assert_eq!(volume_name("vg_metalk8s", "lv01"), "vg-metalk8s-lv01");
        assert_eq!(volume_name("MyVG", "data__1"), "myvg-data-1");
    }

    #[test]
    fn shared_ssh_settings_become_cluster_wide() {
        let mut nodes = vec![
            json!({"name": "a", "ssh": {"user": "centos", "port": 22}}),
            json!({"name": "b", "ssh": {"user": "centos", "port": 2222}}),
        ];
        let shared = hoist_ssh(&mut nodes);
        assert_eq!(Json::Object(shared), json!({"user": "centos"}));
        assert_eq!(nodes[0], json!({"name": "a", "ssh": {"port": 22}}));
    }
}
