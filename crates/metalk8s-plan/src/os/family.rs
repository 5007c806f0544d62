//! What differs between the distributions metalk8s prepares: package manager, package
//! names, where chrony keeps its configuration and what its service is called.

use metalk8s_model::Facts;
use metalk8s_model::plan::PackageManager;

use crate::PlanError;

/// A family of distributions that package and configure things the same way.
pub(crate) struct Family {
    pub manager: PackageManager,
    /// What every node needs before Kubernetes: time (chrony), what kube-proxy and the CNI
    /// drive (conntrack, ipset, iptables and ebtables, iproute), what the kubelet and
    /// `kubectl port-forward` call (ethtool, socat), and the tools the engine's resources
    /// use (kmod for modprobe, procps for sysctl).
    pub packages: &'static [&'static str],
    pub chrony: Chrony,
}

pub(crate) struct Chrony {
    pub config: &'static str,
    pub service: &'static str,
    pub driftfile: &'static str,
}

const DEBIAN: Family = Family {
    manager: PackageManager::Apt,
    packages: &[
        "ca-certificates",
        "chrony",
        "conntrack",
        "curl",
        "ebtables",
        "ethtool",
        "iproute2",
        "ipset",
        "iptables",
        "kmod",
        "procps",
        "socat",
    ],
    chrony: Chrony {
        config: "/etc/chrony/chrony.conf",
        service: "chrony.service",
        driftfile: "/var/lib/chrony/chrony.drift",
    },
};

/// RHEL 8 and its rebuilds. `curl` is left out on the dnf family: minimal installs ship
/// `curl-minimal`, which conflicts with `curl` and provides the same command.
const RHEL_8: Family = Family {
    manager: PackageManager::Dnf,
    packages: &[
        "ca-certificates",
        "chrony",
        "conntrack-tools",
        "ethtool",
        "iproute",
        "iproute-tc",
        "ipset",
        "iptables",
        "iptables-ebtables",
        "kmod",
        "procps-ng",
        "socat",
    ],
    chrony: RHEL_CHRONY,
};

/// RHEL 9 and later: the nftables-based iptables, ebtables and arptables all come in
/// `iptables-nft` (there is no `ebtables` package any more).
const RHEL_9: Family = Family {
    manager: PackageManager::Dnf,
    packages: &[
        "ca-certificates",
        "chrony",
        "conntrack-tools",
        "ethtool",
        "iproute",
        "iproute-tc",
        "ipset",
        "iptables-nft",
        "kmod",
        "procps-ng",
        "socat",
    ],
    chrony: RHEL_CHRONY,
};

const RHEL_CHRONY: Chrony = Chrony {
    config: "/etc/chrony.conf",
    service: "chronyd.service",
    driftfile: "/var/lib/chrony/drift",
};

/// The family of the distribution a node runs, from `ID` and `VERSION_ID` of its
/// os-release.
pub(crate) fn family(node: &str, facts: &Facts) -> Result<&'static Family, PlanError> {
    let os = &facts.os;
    let major: Option<u32> = os.version_id.split('.').next().and_then(|m| m.parse().ok());
    match (os.id.as_str(), major) {
        ("debian" | "ubuntu", _) => Ok(&DEBIAN),
        ("rhel" | "rocky" | "almalinux", Some(8)) => Ok(&RHEL_8),
        ("rhel" | "rocky" | "almalinux", Some(major)) if major >= 9 => Ok(&RHEL_9),
        _ => Err(PlanError::UnsupportedOs {
            node: node.to_owned(),
            os_id: os.id.clone(),
            version: os.version_id.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::facts::OsRelease;

    fn family_of(id: &str, version: &str) -> Result<&'static Family, PlanError> {
        let facts = Facts {
            os: OsRelease {
                id: id.to_owned(),
                version_id: version.to_owned(),
                pretty_name: String::new(),
            },
            ..Facts::default()
        };
        family("n1", &facts)
    }

    #[test]
    fn distributions_map_to_their_family() {
        assert_eq!(
            family_of("debian", "12").unwrap().manager,
            PackageManager::Apt
        );
        assert_eq!(
            family_of("ubuntu", "24.04").unwrap().manager,
            PackageManager::Apt
        );
        let rocky = family_of("rocky", "9.4").unwrap();
        assert_eq!(rocky.manager, PackageManager::Dnf);
        assert!(rocky.packages.contains(&"iptables-nft"));
        assert!(
            family_of("almalinux", "8.10")
                .unwrap()
                .packages
                .contains(&"iptables-ebtables")
        );
        assert_eq!(
            family_of("rhel", "9.2").unwrap().chrony.service,
            "chronyd.service"
        );
    }

    #[test]
    fn other_distributions_are_refused_by_name() {
        for (id, version) in [
            ("centos", "7"),
            ("rhel", "7.9"),
            ("arch", ""),
            ("rocky", ""),
        ] {
            let error = family_of(id, version).err().unwrap();
            assert_eq!(
                error.to_string(),
                format!("node `n1` runs `{id}` version `{version}`, which metalk8s cannot prepare")
            );
        }
    }

    #[test]
    fn package_lists_are_sorted_and_distinct() {
        for family in [&DEBIAN, &RHEL_8, &RHEL_9] {
            assert!(family.packages.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
