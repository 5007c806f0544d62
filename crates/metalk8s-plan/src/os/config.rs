//! The content of the configuration files the `os` phase writes, and the kernel
//! parameters it sets.

use std::collections::BTreeMap;
use std::fmt::Write;

use metalk8s_model::ByteSize;
use metalk8s_model::inventory::{Inventory, Proxy};

use crate::steps::managed_content;

/// The kernel's default `fs.nr_open`: the highest open-files limit it allows unless raised.
const KERNEL_NR_OPEN: u64 = 1 << 20;

/// The inventory's kernel parameters, plus those other settings imply.
pub(crate) fn sysctls(inventory: &Inventory) -> BTreeMap<String, String> {
    let mut sysctls = inventory.os.sysctls.clone();
    let networks = &inventory.networks;
    if networks.pods.addr().is_ipv6() || networks.services.addr().is_ipv6() {
        // Pod traffic over IPv6 is routed by the node, as `net.ipv4.ip_forward` does for
        // IPv4. Not a default: it turns off router advertisements on IPv6-only hosts
        // that may rely on them.
        sysctls
            .entry("net.ipv6.conf.all.forwarding".to_owned())
            .or_insert_with(|| "1".to_owned());
    }
    let nofile = inventory.os.nofile;
    let nr_open = sysctls
        .get("fs.nr_open")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(KERNEL_NR_OPEN);
    if nofile > nr_open {
        // A limit above `fs.nr_open` makes pam_limits refuse every login, root's included.
        sysctls.insert("fs.nr_open".to_owned(), nofile.to_string());
    }
    sysctls
}

/// A persistent journal of bounded size: logs survive reboots, for post-mortems.
pub(crate) fn journald(max_use: ByteSize) -> String {
    managed_content(
        "#",
        &format!(
            "[Journal]\nStorage=persistent\nSystemMaxUse={}\n",
            journald_size(max_use)
        ),
    )
}

/// journald reads `K`, `M`, `G`, `T`, `P` as powers of 1024; a size that is no whole
/// number of them is written in bytes.
fn journald_size(size: ByteSize) -> String {
    let bytes = size.bytes();
    for (suffix, shift) in [("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Open-files limits for login sessions (pam_limits). `*` does not match root there,
/// hence root's own lines.
pub(crate) fn login_limits(nofile: u64) -> String {
    let mut body = String::new();
    for domain in ["*", "root"] {
        for kind in ["soft", "hard"] {
            let _ = writeln!(body, "{domain:<4} {kind} nofile {nofile}");
        }
    }
    managed_content("#", &body)
}

/// Open-files limit of every systemd service (containerd, kubelet, etcd...).
pub(crate) fn service_limits(nofile: u64) -> String {
    managed_content("#", &format!("[Manager]\nDefaultLimitNOFILE={nofile}\n"))
}

/// apt's proxy settings, when the inventory has a proxy.
pub(crate) fn apt_proxy(proxy: &Proxy) -> Option<String> {
    let mut body = String::new();
    for (scheme, url) in [("http", &proxy.http), ("https", &proxy.https)] {
        if let Some(url) = url {
            let _ = writeln!(body, "Acquire::{scheme}::Proxy \"{url}\";");
        }
    }
    (!body.is_empty()).then(|| managed_content("//", &body))
}

/// dnf reads its proxy from dnf.conf's `[main]` only (no drop-in directory), so the file is
/// written whole: the defaults RHEL 8 and 9 ship, plus the proxy. dnf has one proxy for
/// every scheme: the HTTPS one, since repositories are reached over HTTPS.
pub(crate) fn dnf_conf(proxy: &Proxy) -> Option<String> {
    let url = proxy.https.as_ref().or(proxy.http.as_ref())?;
    Some(managed_content(
        "#",
        &format!(
            "[main]\ngpgcheck=1\ninstallonly_limit=3\nclean_requirements_on_remove=True\n\
             best=True\nskip_if_unavailable=False\nproxy={url}\n"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(networks: serde_json::Value, os: serde_json::Value) -> Inventory {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metalk8s.io/v1alpha1",
            "kind": "Inventory",
            "name": "test",
            "networks": networks,
            "os": os,
            "nodes": [],
        }))
        .unwrap()
    }

    fn ipv4() -> serde_json::Value {
        serde_json::json!({"controlPlane": ["10.0.0.0/24"], "workloadPlane": ["10.0.0.0/24"]})
    }

    #[test]
    fn ipv6_pods_turn_ipv6_forwarding_on() {
        let plain = sysctls(&inventory(ipv4(), serde_json::json!({})));
        assert_eq!(plain, inventory(ipv4(), serde_json::json!({})).os.sysctls);
        let mut networks = ipv4();
        networks["pods"] = "fd00:10:233::/56".into();
        let dual = sysctls(&inventory(networks.clone(), serde_json::json!({})));
        assert_eq!(dual["net.ipv6.conf.all.forwarding"], "1");
        let kept = sysctls(&inventory(
            networks,
            serde_json::json!({"sysctls": {"net.ipv6.conf.all.forwarding": 0}}),
        ));
        assert_eq!(kept["net.ipv6.conf.all.forwarding"], "0");
    }

    #[test]
    fn nr_open_is_raised_to_the_open_files_limit_only_when_below() {
        let nr_open =
            |os: serde_json::Value| sysctls(&inventory(ipv4(), os)).get("fs.nr_open").cloned();
        assert_eq!(nr_open(serde_json::json!({})), None);
        assert_eq!(
            nr_open(serde_json::json!({"nofile": 4194304})).as_deref(),
            Some("4194304")
        );
        assert_eq!(
            nr_open(serde_json::json!({"nofile": 4194304, "sysctls": {"fs.nr_open": 8388608}}))
                .as_deref(),
            Some("8388608")
        );
        assert_eq!(
            nr_open(serde_json::json!({"nofile": 4194304, "sysctls": {"fs.nr_open": 1024}}))
                .as_deref(),
            Some("4194304")
        );
    }

    #[test]
    fn journald_sizes_use_exact_binary_units() {
        assert_eq!(journald_size(ByteSize::gib(2)), "2G");
        assert_eq!(journald_size(ByteSize::mib(1536)), "1536M");
        assert_eq!(journald_size(ByteSize(500_000_000)), "500000000");
        assert_eq!(journald_size(ByteSize(4 << 40)), "4T");
    }

    #[test]
    fn login_limits_cover_root_too() {
        let limits = login_limits(65536);
        for line in [
            "*    soft nofile 65536",
            "*    hard nofile 65536",
            "root soft nofile 65536",
            "root hard nofile 65536",
        ] {
            assert!(limits.contains(line), "{limits}");
        }
    }

    #[test]
    fn proxies_are_written_only_when_set() {
        let none = Proxy::default();
        assert_eq!(apt_proxy(&none), None);
        assert_eq!(dnf_conf(&none), None);
        let http_only = Proxy {
            http: Some("http://proxy:3128".to_owned()),
            ..Proxy::default()
        };
        let apt = apt_proxy(&http_only).unwrap();
        assert!(apt.contains("Acquire::http::Proxy \"http://proxy:3128\";"));
        assert!(!apt.contains("https"));
        assert!(
            dnf_conf(&http_only)
                .unwrap()
                .contains("\nproxy=http://proxy:3128\n")
        );
    }
}
