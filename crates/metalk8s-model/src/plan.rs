//! The plan: what every host must look like, phase by phase, as ordered steps.
//!
//! Produced by the planner (pure), rendered by `metalk8s plan` and `deploy --dry-run`,
//! executed by the engine. It is data only: each [`Resource`] says the desired state of one
//! thing on a host; the engine knows how to observe, compare and apply it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::phase::PhaseName;

pub const PLAN_KIND: &str = "Plan";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `metalk8s.io/v1alpha1`.
    pub api_version: String,
    /// `Plan`.
    pub kind: String,
    pub cluster: String,
    pub phases: Vec<Phase>,
}

impl Plan {
    /// The plan with the content of every secret file replaced by a note, for showing.
    pub fn redacted(&self) -> Plan {
        let mut plan = self.clone();
        for step in plan
            .phases
            .iter_mut()
            .flat_map(|phase| &mut phase.hosts)
            .flat_map(|host| &mut host.steps)
        {
            if let Resource::File(file) = &mut step.resource
                && file.secret
            {
                file.content = format!("(secret, {} bytes, not shown)", file.content.len());
            }
        }
        // A Secret's values, as a secret file's content.
        for object in plan
            .phases
            .iter_mut()
            .filter_map(|phase| phase.objects.as_mut())
            .flat_map(|set| &mut set.objects)
            .filter(|object| object["kind"] == "Secret")
        {
            for field in ["data", "stringData"] {
                if let Some(values) = object.get_mut(field).and_then(|v| v.as_object_mut()) {
                    for value in values.values_mut() {
                        let length = value.as_str().map_or(0, str::len);
                        *value = format!("(secret, {length} bytes, not shown)").into();
                    }
                }
            }
        }
        plan
    }
}

/// A barrier: every host finishes a phase before any host starts the next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// What `deploy --phase` selects.
    pub name: PhaseName,
    pub rollout: Rollout,
    pub hosts: Vec<HostPlan>,
    /// Kubernetes objects the phase puts into the cluster through its API once every
    /// host of the phase is done, before the phase's health gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectSet>,
}

/// Kubernetes objects applied together and tracked as one set: each carries the set's
/// name, so that an object a later plan no longer holds is deleted (pruned), and nothing
/// outside the set ever is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSet {
    /// The set's name, unique in the cluster (`metalk8s-networking`).
    pub name: String,
    /// Whole objects (`apiVersion`, `kind`, `metadata.name`, the namespace of namespaced
    /// ones), in any order: the apply engine orders them.
    pub objects: Vec<serde_json::Value>,
}

impl ObjectSet {
    /// `Kind namespace/name` (or `Kind name`) of each object, in plan order: what plans
    /// and reports show instead of whole objects.
    pub fn names(&self) -> Vec<String> {
        self.objects.iter().map(object_name).collect()
    }
}

/// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
pub fn object_name(object: &serde_json::Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("?");
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// How hosts go through a phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "strategy")]
pub enum Rollout {
    /// Every host at once (bounded by `ssh.parallelism`).
    #[default]
    Parallel,
    /// Hosts in groups of `size`, a group finishing before the next starts.
    Batches { size: u32 },
    /// The first host alone (the one the others depend on, e.g. the bootstrap node serving
    /// the repository), then every other at once; the phase's gate runs after each group.
    FirstAlone,
    /// The first `count` hosts one at a time (control planes, each checked before the next
    /// changes), then every other at once; the phase's gate runs after each group.
    OneAtATimeFirst { count: u32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPlan {
    /// Node name in the inventory.
    pub node: String,
    /// Run in this order; a step runs only once the steps it is `after` succeeded.
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Unique within the host plan, e.g. `sysctl/metalk8s`, `service/chrony`.
    pub id: String,
    pub resource: Resource,
    /// Steps that must have succeeded (changed or unchanged) before this one runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// When one of these steps changed, this step reacts (a service restarts, a command
    /// runs again), even if its own state already matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
}

/// The desired state of one thing on a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Resource {
    File(FileResource),
    Directory(DirectoryResource),
    Packages(PackagesResource),
    Service(ServiceResource),
    Unit(UnitResource),
    Sysctl(SysctlResource),
    KernelModule(KernelModuleResource),
    SwapOff(SwapOffResource),
    Mount(MountResource),
    Hostname(HostnameResource),
    HostsEntries(HostsEntriesResource),
    User(UserResource),
    Group(GroupResource),
    Command(CommandResource),
    Fetch(FetchResource),
}

impl Resource {
    /// The step id a resource that manages one named thing is known by: `file/etc/hosts`,
    /// `service/etcd`, `unit/etcd.service`, `kernel-module/br_netfilter`… The planner
    /// names its steps with it, so that a step's id says what it manages and the same
    /// thing gets the same id in every plan. `None` for resources that manage a set
    /// (packages, kernel parameters) or run a command: their planner names them.
    pub fn natural_id(&self) -> Option<String> {
        Some(match self {
            Resource::File(file) => format!("file{}", file.path),
            Resource::Fetch(fetch) => format!("fetch{}", fetch.path),
            Resource::Directory(directory) => format!("directory{}", directory.path),
            Resource::Service(service) => {
                format!("service/{}", service.name.trim_end_matches(".service"))
            }
            Resource::Unit(unit) => match &unit.drop_in {
                Some(drop_in) => format!("unit/{}/{drop_in}", unit.name),
                None => format!("unit/{}", unit.name),
            },
            Resource::KernelModule(module) => format!("kernel-module/{}", module.name),
            Resource::SwapOff(_) => "swap".to_owned(),
            Resource::Mount(mount) => format!("mount{}", mount.mount_point),
            Resource::Hostname(_) => "hostname".to_owned(),
            Resource::HostsEntries(_) => "hosts".to_owned(),
            Resource::User(user) => format!("user/{}", user.name),
            Resource::Group(group) => format!("group/{}", group.name),
            Resource::Packages(_) | Resource::Sysctl(_) | Resource::Command(_) => return None,
        })
    }
}

/// A regular file with exact content. The replaced file is kept as `PATH.metalk8s-backup`
/// (unless it is `secret`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileResource {
    pub path: String,
    pub content: String,
    /// Octal permission bits, e.g. 0o644.
    pub mode: u32,
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
    /// Private material (a key, a kubeconfig): its content is never shown in a diff or a
    /// plan, and no backup copy of the replaced file is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

fn root() -> String {
    "root".to_owned()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryResource {
    pub path: String,
    pub mode: u32,
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PackageManager {
    Apt,
    Dnf,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PackageState {
    #[default]
    Present,
    Absent,
}

/// OS packages, installed or removed in one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackagesResource {
    pub manager: PackageManager,
    pub names: Vec<String>,
    #[serde(default)]
    pub state: PackageState,
}

/// A systemd service; restarted when a watched step changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceResource {
    /// Unit name, e.g. `chrony.service`.
    pub name: String,
    pub enabled: bool,
    pub running: bool,
}

/// A systemd unit file, or a drop-in for a unit when `drop_in` is set; systemd is reloaded
/// when it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitResource {
    /// Unit name, e.g. `etcd.service`.
    pub name: String,
    /// Drop-in name (without `.conf`), written to `/etc/systemd/system/NAME.d/DROP_IN.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_in: Option<String>,
    pub content: String,
}

/// Kernel parameters, persisted in `file` (under /etc/sysctl.d) and applied live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SysctlResource {
    pub file: String,
    pub values: BTreeMap<String, String>,
}

/// A kernel module, loaded now and at boot (/etc/modules-load.d/NAME.conf).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelModuleResource {
    pub name: String,
}

/// No active swap, and no swap entry enabled in /etc/fstab.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapOffResource {}

/// A filesystem in /etc/fstab and mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountResource {
    /// Device path, `UUID=...` or `LABEL=...`.
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostnameResource {
    pub name: String,
}

/// A block of entries managed by metalk8s inside /etc/hosts; lines outside it are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostsEntriesResource {
    pub entries: Vec<HostsEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostsEntry {
    pub ip: String,
    pub names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserResource {
    pub name: String,
    #[serde(default)]
    pub system: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResource {
    pub name: String,
    #[serde(default)]
    pub system: bool,
}

/// A command, for what no other resource fits. It runs when `creates` does not exist and
/// `unless` fails (or when a watched step changed); otherwise it is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResource {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
    /// Run only when a watched step changed, never on its own.
    #[serde(default)]
    pub only_on_watch: bool,
}

/// A file too large for the plan (a binary of the bundle: kubelet is ~100 MB), downloaded
/// by the node from `url` and placed at `path` with `mode`, owned by root, once its content
/// hashes to `sha256`.
///
/// A converged node is checked without hashing the file again: the engine keeps, beside
/// what it fetched, the sha256, size and modification time it placed, and hashes the
/// file only when its size or modification time no longer match (docs/repository.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchResource {
    /// An `https://` URL on the bootstrap repository
    /// ([`crate::repository::file_url`]), checked with the cluster CA.
    pub url: String,
    /// Lower-case hex.
    pub sha256: String,
    /// Absolute path on the node.
    pub path: String,
    /// Octal permission bits, e.g. 0o755.
    pub mode: u32,
    /// The metalk8s binary on the node, which downloads (`metalk8s agent fetch`): nodes
    /// have no curl, and a resource learns nothing of the program that runs it, so the
    /// planner names the agent it placed (`Inputs::agent_path` of the planner).
    pub agent: String,
}

/// A file made off the node, by the controller or on the bootstrap node (a certificate, a
/// key, a kubeconfig from the PKI store), that the plan places on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFile {
    /// Absolute path on the node.
    pub path: String,
    pub content: String,
    /// Octal permission bits.
    pub mode: u32,
    /// A private key or a file embedding one.
    pub private: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, secret: bool) -> Step {
        Step {
            id: format!("file{path}"),
            resource: Resource::File(FileResource {
                path: path.to_owned(),
                content: "-----BEGIN PRIVATE KEY-----\nMIG...\n".to_owned(),
                mode: if secret { 0o600 } else { 0o644 },
                owner: "root".to_owned(),
                group: "root".to_owned(),
                secret,
            }),
            after: Vec::new(),
            watch: Vec::new(),
        }
    }

    #[test]
    fn a_fetched_file_is_known_by_its_path() {
        let fetch = Resource::Fetch(FetchResource {
            url: "https://10.0.0.1:8443/files/kubelet".to_owned(),
            sha256: "ab".repeat(32),
            path: "/usr/local/bin/kubelet".to_owned(),
            mode: 0o755,
            agent: "/var/lib/metalk8s/agent/metalk8s-0123".to_owned(),
        });
        assert_eq!(
            fetch.natural_id().as_deref(),
            Some("fetch/usr/local/bin/kubelet")
        );
        let json = serde_json::to_value(&fetch).unwrap();
        assert_eq!(json["type"], "fetch");
        assert_eq!(serde_json::from_value::<Resource>(json).unwrap(), fetch);
    }

    #[test]
    fn a_redacted_plan_hides_the_values_of_secret_objects_only() {
        let objects = ObjectSet {
            name: "metalk8s-test".to_owned(),
            objects: vec![
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "data": {"key": "c2VjcmV0"}}),
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"key": "plain"}}),
            ],
        };
        let plan = Plan {
            api_version: "metalk8s.io/v1alpha1".to_owned(),
            kind: PLAN_KIND.to_owned(),
            cluster: "lab".to_owned(),
            phases: vec![Phase {
                name: PhaseName::Kubernetes,
                rollout: Rollout::Parallel,
                hosts: Vec::new(),
                objects: Some(objects),
            }],
        };
        let shown = plan.redacted();
        let set = shown.phases[0].objects.as_ref().unwrap();
        assert_eq!(
            set.objects[0]["data"]["key"],
            "(secret, 8 bytes, not shown)"
        );
        assert_eq!(set.objects[1]["data"]["key"], "plain");
        assert_eq!(set.names(), ["Secret ns/s", "ConfigMap ns/c"]);
    }

    #[test]
    fn a_redacted_plan_hides_secret_content_only() {
        let plan = Plan {
            api_version: "metalk8s.io/v1alpha1".to_owned(),
            kind: PLAN_KIND.to_owned(),
            cluster: "lab".to_owned(),
            phases: vec![Phase {
                name: PhaseName::Etcd,
                rollout: Rollout::Parallel,
                hosts: vec![HostPlan {
                    node: "node1".to_owned(),
                    steps: vec![file("/k.key", true), file("/c.crt", false)],
                }],
                objects: None,
            }],
        };
        let shown = serde_json::to_string(&plan.redacted()).unwrap();
        assert_eq!(shown.matches("BEGIN PRIVATE KEY").count(), 1, "{shown}");
        assert!(shown.contains("(secret, 35 bytes, not shown)"), "{shown}");
        assert_eq!(
            plan.redacted().phases[0].hosts[0].steps[1],
            plan.phases[0].hosts[0].steps[1]
        );
    }
}
