//! Converts Ansible INI inventories (Kubespray, MetalK8s 1.x) into an inventory.
//!
//! Groups map to roles (`kube_control_plane`/`kube-master` → control-plane, `etcd` → etcd,
//! `kube_node`/`kube-node` → worker; the first control-plane host also becomes the
//! bootstrap node), host variables to addresses and SSH settings, Kubespray cluster
//! variables to networks and proxy, and MetalK8s 1.x `metalk8s_lvm_*` variables (from
//! `group_vars/` and `host_vars/`) to LVM volumes. Whatever has no equivalent is listed in
//! [`Imported::unmapped`] rather than dropped silently, and the result is checked exactly
//! like a hand-written inventory.

mod convert;
mod ini;
mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use metalk8s_model::Inventory;

use crate::InventoryError;
use ini::AnsibleInventory;
use vars::{Vars, VarsFile};

/// The converted inventory and what could not be carried over.
#[derive(Debug)]
pub struct Imported {
    pub inventory: Inventory,
    /// One human-readable line per group, variable or setting that was left out.
    pub unmapped: Vec<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    #[error("INI inventory, line {line}: {message}")]
    #[diagnostic(
        code(import::ini),
        help("the file must be an Ansible INI inventory: `[group]` sections of host lines")
    )]
    Ini { line: usize, message: String },

    #[error("cannot read Ansible variables from {}", path.display())]
    #[diagnostic(code(import::read_vars))]
    ReadVars {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("Ansible variables file {} is not valid YAML", path.display())]
    #[diagnostic(code(import::parse_vars))]
    ParseVars {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },

    #[error("no host is in a control-plane group (`kube_control_plane` or `kube-master`)")]
    #[diagnostic(
        code(import::no_control_plane),
        help("put the control-plane hosts in a `[kube_control_plane]` group")
    )]
    NoControlPlane,

    #[error("cannot derive the node networks: no host has an IP address")]
    #[diagnostic(
        code(import::no_addresses),
        help("set `ip` or `ansible_host` to each host's IP address in the INI inventory")
    )]
    NoAddresses,

    #[error("the imported inventory is not valid")]
    #[diagnostic(
        code(import::invalid),
        help("fix the Ansible inventory, or save the converted YAML and edit it")
    )]
    Invalid {
        /// The converted inventory, to save and fix by hand.
        yaml: String,
        #[source]
        #[diagnostic_source]
        source: InventoryError,
    },
}

/// Converts the INI inventory `text`, with the `group_vars/` and `host_vars/` directories
/// next to it when there are any.
pub fn import_ini(
    text: &str,
    group_vars: Option<&Path>,
    host_vars: Option<&Path>,
) -> Result<Imported, ImportError> {
    let ansible = ini::parse(text)?;
    let mut unmapped = Vec::new();
    let group_files = read_vars_dir(&ansible, group_vars, Kind::Group, &mut unmapped)?;
    let host_files = read_vars_dir(&ansible, host_vars, Kind::Host, &mut unmapped)?;
    let hosts: Vec<(String, Vars)> = ansible
        .hosts
        .iter()
        .map(|host| {
            let merged = merged_vars(&ansible, host, &group_files, &host_files);
            (host.clone(), merged)
        })
        .collect();
    let json = convert::inventory(&ansible, &hosts, &mut unmapped)?;
    unmapped.extend(ignored_variables(&ansible, &group_files, &host_files));
    unmapped.extend(ignored_groups(&ansible));
    dedupe(&mut unmapped);

    let yaml = serde_saphyr::to_string(&json).expect("JSON values always serialize to YAML");
    match crate::parse("imported inventory", &yaml) {
        Ok(inventory) => Ok(Imported {
            inventory,
            unmapped,
        }),
        Err(source) => Err(ImportError::Invalid { yaml, source }),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Group,
    Host,
}

/// Variable files by group or host name.
type FilesByName = BTreeMap<String, Vec<VarsFile>>;

fn read_vars_dir(
    ansible: &AnsibleInventory,
    dir: Option<&Path>,
    kind: Kind,
    notes: &mut Vec<String>,
) -> Result<FilesByName, ImportError> {
    let Some(dir) = dir else {
        return Ok(FilesByName::new());
    };
    let mut files = FilesByName::new();
    for name in vars::names_in(dir)? {
        let known = match kind {
            Kind::Group => ansible.groups.contains_key(&name),
            Kind::Host => ansible.hosts.contains(&name),
        };
        if !known {
            let what = if kind == Kind::Group { "group" } else { "host" };
            notes.push(format!(
                "{}/{name}: no {what} `{name}` in the INI inventory: ignored",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ));
            continue;
        }
        files.insert(name.clone(), vars::files_for(dir, &name, notes)?);
    }
    Ok(files)
}

/// A host's variables with Ansible's precedence: INI group variables, then group_vars
/// files, then INI host variables, then host_vars files; among groups, deeper ones win.
fn merged_vars(
    ansible: &AnsibleInventory,
    host: &str,
    group_files: &FilesByName,
    host_files: &FilesByName,
) -> Vars {
    let groups = ansible.groups_of(host);
    let mut merged = Vars::new();
    for group in &groups {
        for (key, value) in &ansible.groups[group].vars {
            merged.insert(key.clone(), serde_json::Value::String(value.clone()));
        }
    }
    for group in &groups {
        for file in group_files.get(group).into_iter().flatten() {
            merged.extend(file.vars.clone());
        }
    }
    for (key, value) in ansible.host_vars.get(host).into_iter().flatten() {
        merged.insert(key.clone(), serde_json::Value::String(value.clone()));
    }
    for file in host_files.get(host).into_iter().flatten() {
        merged.extend(file.vars.clone());
    }
    merged
}

fn ignored_variables(
    ansible: &AnsibleInventory,
    group_files: &FilesByName,
    host_files: &FilesByName,
) -> Vec<String> {
    let mut notes = Vec::new();
    let mut note = |origin: String, keys: Vec<&str>| {
        if !keys.is_empty() {
            notes.push(format!(
                "{origin}: no metalk8s equivalent, ignored: {}",
                keys.join(", ")
            ));
        }
    };
    for (name, group) in &ansible.groups {
        note(
            format!("[{name}:vars]"),
            unmapped_keys(group.vars.iter().map(|(k, _)| k.as_str())),
        );
    }
    for (host, vars) in &ansible.host_vars {
        note(
            format!("host `{host}`"),
            unmapped_keys(vars.iter().map(|(k, _)| k.as_str())),
        );
    }
    for file in group_files.values().chain(host_files.values()).flatten() {
        note(
            file.origin.clone(),
            unmapped_keys(file.vars.keys().map(String::as_str)),
        );
    }
    notes
}

fn unmapped_keys<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.filter(|key| !convert::is_mapped(key)).collect();
    keys.dedup();
    keys
}

fn ignored_groups(ansible: &AnsibleInventory) -> Vec<String> {
    ansible
        .groups
        .keys()
        .filter(|name| !convert::is_known_group(name))
        .filter_map(|name| {
            let members = ansible.members(name);
            (!members.is_empty()).then(|| {
                let why = if name.replace('-', "_") == "calico_rr" {
                    "Calico route reflectors are not managed by metalk8s"
                } else {
                    "no metalk8s role"
                };
                format!("group `{name}` ({}): {why}, ignored", members.join(", "))
            })
        })
        .collect()
}

fn dedupe(lines: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    lines.retain(|line| seen.insert(line.clone()));
}
