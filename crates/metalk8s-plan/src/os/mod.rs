//! The `os` phase: what every node needs from its operating system before anything of
//! Kubernetes is installed. All nodes go through it at once.
//!
//! Per node, in order: kernel modules, each followed by the kernel parameters it provides,
//! then the other kernel parameters; swap
//! off; /etc/hosts, then the hostname it resolves; the package manager's proxy (when
//! there is one), then the required packages; chrony's configuration and service; a
//! persistent, bounded journal; open-files limits for logins and services.

mod chrony;
mod config;
mod family;

use crate::phases::{HealthGate, Needs, PhaseUnit};
use metalk8s_model::PhaseName;
use metalk8s_model::plan::{
    HostPlan, HostnameResource, HostsEntriesResource, HostsEntry, KernelModuleResource,
    PackageManager, PackageState, PackagesResource, Phase, Resource, Rollout, SwapOffResource,
    SysctlResource,
};
use std::collections::BTreeMap;

use crate::steps::{Steps, directory, file, named, reaction, service};
use crate::{Cluster, PlanError, PlannedNode};
use family::Family;

pub(crate) const UNIT: PhaseUnit = PhaseUnit {
    name: PhaseName::Os,
    summary: "kernel modules and parameters, swap, names, packages, time, journal, limits",
    needs: Needs {
        pki: false,
        staged_bundle: false,
        etcd_state: false,
        join_token: false,
    },
    gate: HealthGate::StepsOnly {
        why: "every step is observed again after it is applied, and no service of the phase is used by another node",
    },
    plan: phase,
};

/// The package manager of a node's distribution family.
pub(crate) fn family_of(
    node: &str,
    facts: &metalk8s_model::Facts,
) -> Result<metalk8s_model::plan::PackageManager, PlanError> {
    Ok(family::family(node, facts)?.manager)
}

/// 90 sorts after what packages install (10-50), so these values win over theirs; an
/// administrator's /etc/sysctl.conf (99-sysctl.conf) still has the last word at boot.
const SYSCTL_FILE: &str = "/etc/sysctl.d/90-metalk8s.conf";
const JOURNAL_DIRECTORY: &str = "/var/log/journal";
const JOURNALD_DROP_INS: &str = "/etc/systemd/journald.conf.d";
const JOURNALD_FILE: &str = "/etc/systemd/journald.conf.d/90-metalk8s.conf";
const LOGIN_LIMITS_FILE: &str = "/etc/security/limits.d/90-metalk8s.conf";
const MANAGER_DROP_INS: &str = "/etc/systemd/system.conf.d";
const MANAGER_FILE: &str = "/etc/systemd/system.conf.d/90-metalk8s.conf";
const APT_PROXY_FILE: &str = "/etc/apt/apt.conf.d/90-metalk8s-proxy.conf";
const DNF_CONF: &str = "/etc/dnf/dnf.conf";

pub(crate) fn phase(cluster: &Cluster, _inputs: &crate::Inputs) -> Result<Phase, PlanError> {
    let hosts = cluster
        .nodes
        .iter()
        .map(|node| host_plan(cluster, node))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Phase {
        name: PhaseName::Os,
        rollout: Rollout::Parallel,
        hosts,
        objects: None,
    })
}

fn host_plan(cluster: &Cluster, node: &PlannedNode) -> Result<HostPlan, PlanError> {
    let family = family::family(&node.node.name, node.facts)?;
    let mut steps = Steps::default();
    kernel(&mut steps, cluster);
    steps.add(named(Resource::SwapOff(SwapOffResource {})));
    names(&mut steps, cluster, node);
    let packages = packages(&mut steps, cluster, family);
    time(&mut steps, cluster, node, family, &packages);
    journal(&mut steps, cluster);
    open_files(&mut steps, cluster.inventory.os.nofile);
    Ok(HostPlan {
        node: node.node.name.clone(),
        steps: steps.into_vec(),
    })
}

/// Kernel parameters that exist only once a module is loaded, by key prefix.
const MODULE_PARAMETERS: &[(&str, &str)] = &[
    ("net.bridge.", "br_netfilter"),
    ("net.netfilter.", "nf_conntrack"),
];

/// Modules first; the parameters a module provides are a step of their own after it, so
/// that a module the host cannot load (a container without modules) only holds back its
/// own parameters, never the others (`net.ipv4.ip_forward` must still be enforced).
fn kernel(steps: &mut Steps, cluster: &Cluster) {
    let mut modules: Vec<String> = Vec::new();
    for name in &cluster.inventory.os.kernel_modules {
        let (id, module) = named(Resource::KernelModule(KernelModuleResource {
            name: name.clone(),
        }));
        // Read inventories list each module once; one built in code may not.
        if !modules.contains(&id) {
            modules.push(steps.add((id, module)));
        }
    }
    let mut general = config::sysctls(cluster.inventory);
    for (prefix, module) in MODULE_PARAMETERS {
        let owned: BTreeMap<String, String> = general
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if owned.is_empty() {
            continue;
        }
        general.retain(|key, _| !key.starts_with(prefix));
        let module_step = format!("kernel-module/{module}");
        let after: Vec<&String> = modules.iter().filter(|id| **id == module_step).collect();
        let sysctl = Resource::Sysctl(SysctlResource {
            file: format!("/etc/sysctl.d/91-metalk8s-{module}.conf"),
            values: owned,
        });
        steps.add_with((format!("sysctl/{module}"), sysctl), &after, &[]);
    }
    let sysctl = Resource::Sysctl(SysctlResource {
        file: SYSCTL_FILE.to_owned(),
        values: general,
    });
    steps.add(("sysctl".to_owned(), sysctl));
}

/// Every node knows every other by name on the control-plane network, without DNS. The
/// entries come first so that the new hostname resolves the moment it is set (sudo and
/// many daemons look their own name up).
fn names(steps: &mut Steps, cluster: &Cluster, node: &PlannedNode) {
    let entries = cluster
        .nodes
        .iter()
        .map(|other| HostsEntry {
            ip: other.control_plane_ip.to_string(),
            names: vec![other.node.name.clone()],
        })
        .collect();
    let hosts = steps.add(named(Resource::HostsEntries(HostsEntriesResource {
        entries,
    })));
    let hostname = Resource::Hostname(HostnameResource {
        name: node.node.name.clone(),
    });
    steps.add_with(named(hostname), &[&hosts], &[]);
}

/// The required packages and `os.packages`, in one transaction; returns the step id.
fn packages(steps: &mut Steps, cluster: &Cluster, family: &Family) -> String {
    let proxy = package_proxy(steps, cluster, family);
    let mut names: Vec<String> = family
        .packages
        .iter()
        .map(|name| (*name).to_owned())
        .chain(cluster.inventory.os.packages.iter().cloned())
        .collect();
    names.sort_unstable();
    names.dedup();
    let resource = Resource::Packages(PackagesResource {
        manager: family.manager,
        names,
        state: PackageState::Present,
    });
    let after: Vec<&String> = proxy.iter().collect();
    steps.add_with(("packages".to_owned(), resource), &after, &[])
}

/// The proxy the package manager goes through, when the inventory has one.
fn package_proxy(steps: &mut Steps, cluster: &Cluster, family: &Family) -> Option<String> {
    let proxy = cluster.inventory.proxy.as_ref()?;
    let (path, content) = match family.manager {
        PackageManager::Apt => (APT_PROXY_FILE, config::apt_proxy(proxy)?),
        PackageManager::Dnf => (DNF_CONF, config::dnf_conf(proxy)?),
    };
    let (id, mut resource) = file(path, content, 0o644);
    // A proxy password is readable by root only, and never shown, diffed or backed up.
    if let Resource::File(file) = &mut resource
        && proxy.has_credentials()
    {
        file.mode = 0o600;
        file.secret = true;
    }
    Some(steps.add((id, resource)))
}

/// chrony's configuration comes after the package: dpkg would otherwise find a changed
/// conffile at install time and stop to ask about it.
fn time(
    steps: &mut Steps,
    cluster: &Cluster,
    node: &PlannedNode,
    family: &Family,
    packages: &String,
) {
    let chrony = &family.chrony;
    let content = chrony::config(cluster, node, chrony);
    let config = steps.add_with(file(chrony.config, content, 0o644), &[packages], &[]);
    steps.add_with(
        service(chrony.service, true),
        &[packages, &config],
        &[&config],
    );
}

/// A journal kept on disk across reboots and bounded in size.
fn journal(steps: &mut Steps, cluster: &Cluster) {
    // The group and setgid bit systemd-tmpfiles gives it, so that members of
    // systemd-journal read the logs.
    let storage = steps.add(directory(JOURNAL_DIRECTORY, 0o2755, "systemd-journal"));
    let drop_ins = steps.add(directory(JOURNALD_DROP_INS, 0o755, "root"));
    let content = config::journald(cluster.inventory.os.journald.system_max_use);
    let settings = steps.add_with(file(JOURNALD_FILE, content, 0o644), &[&drop_ins], &[]);
    // `enabled: false` means "do not enable", not "disable": systemd-journald.service is
    // a static unit (no [Install] section, started through its sockets), which
    // `systemctl enable` refuses. It restarts when its settings or storage change.
    steps.add_with(
        service("systemd-journald.service", false),
        &[&storage, &settings],
        &[&storage, &settings],
    );
}

/// One open-files limit for logins and for services. Only a re-exec makes every systemd
/// version take new manager defaults (`daemon-reload` does on recent ones only); services
/// started afterwards (containerd and the kubelet, in later phases) get the new limit.
fn open_files(steps: &mut Steps, nofile: u64) {
    steps.add(file(LOGIN_LIMITS_FILE, config::login_limits(nofile), 0o644));
    let drop_ins = steps.add(directory(MANAGER_DROP_INS, 0o755, "root"));
    let manager = steps.add_with(
        file(MANAGER_FILE, config::service_limits(nofile), 0o644),
        &[&drop_ins],
        &[],
    );
    steps.add_with(
        reaction("systemd-daemon-reexec", "systemctl daemon-reexec"),
        &[&manager],
        &[&manager],
    );
}
