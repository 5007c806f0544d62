//! The naming rules Kubernetes, DNS and LVM impose on values written in an inventory.

use std::net::IpAddr;

use crate::values::{character, shown};

/// RFC 1123 label as Kubernetes uses it for node names: lowercase letters, digits and `-`,
/// at most 63 characters, starting and ending with a letter or digit.
pub(crate) fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// RFC 1123 subdomain as Kubernetes uses it for object names: dot-separated labels, at most
/// 253 characters.
pub(crate) fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// What SSH can connect to: an IP address or a host name (any case). A name whose last
/// label is a number (`10.1`, `0x7f`, `0`) is not one: resolvers and URL parsers read it
/// as an IPv4 address in a short or hexadecimal form, each their own way.
pub(crate) fn is_address(text: &str) -> bool {
    if text.parse::<IpAddr>().is_ok() {
        return true;
    }
    let numeric = |label: &str| {
        let hex = label
            .strip_prefix("0x")
            .or_else(|| label.strip_prefix("0X"));
        match hex {
            Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
            None => label.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    text.len() <= 253
        && text
            .split('.')
            .all(|label| is_dns_label(&label.to_ascii_lowercase()))
        && !text.rsplit('.').next().is_some_and(numeric)
}

/// The closest DNS label to `text`, offered as a fix when `text` is not one.
pub(crate) fn dns_label_near(text: &str) -> Option<String> {
    let near: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c == '_' || c == '.' || c == ' ' {
                '-'
            } else {
                c
            }
        })
        .collect();
    let near = near.trim_matches('-').to_owned();
    (near != text && is_dns_label(&near)).then_some(near)
}

/// The name part of a label key, or a label value: at most 63 characters of letters,
/// digits, `-`, `_` and `.`, starting and ending with a letter or digit.
fn is_qualified_name_part(text: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_alphanumeric();
    text.len() <= 63
        && text.starts_with(alphanumeric)
        && text.ends_with(alphanumeric)
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why a label key breaks the Kubernetes rules, if it does.
pub(crate) fn label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix.filter(|prefix| !is_dns_subdomain(prefix)) {
        return Some(format!(
            "its prefix `{}` is not a DNS subdomain (lowercase, like `example.com`)",
            shown(prefix)
        ));
    }
    if name.is_empty() {
        return Some("its name part is empty".to_owned());
    }
    if !is_qualified_name_part(name) {
        return Some(format!(
            "its name `{}` must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit",
            shown(name)
        ));
    }
    None
}

/// Why a label value breaks the Kubernetes rules, if it does (an empty value is allowed).
pub(crate) fn label_value_error(value: &str) -> Option<String> {
    (!value.is_empty() && !is_qualified_name_part(value)).then(|| {
        "a label value must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit".to_owned()
    })
}

/// LVM volume group names: letters, digits and `+_.-`, not starting with `-`, and neither
/// `.` nor `..`.
pub(crate) fn is_volume_group_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 127
        && !text.starts_with('-')
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-'))
}

/// Why a sysctl name is not one, if it is not: dot-separated parts (`/` also separates,
/// as in `net.ipv4.conf.eth0/100.rp_filter` for an interface with a dot in its name) of
/// letters, digits, `_` and `-`, at least two of them.
pub(crate) fn sysctl_key_error(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split(['.', '/']).collect();
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
    {
        return Some(format!("it contains {}", character(bad)));
    }
    if parts.iter().any(|part| part.is_empty()) {
        return Some("one of its dot-separated parts is empty".to_owned());
    }
    if parts.len() < 2 {
        return Some("it is not a full dotted name".to_owned());
    }
    if key.starts_with('-') {
        return Some("it starts with `-`".to_owned());
    }
    None
}

/// Module names as modprobe takes them: letters, digits, `_` and `-`.
pub(crate) fn is_kernel_module_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        && !text.starts_with('-')
}

/// Package names as apt and dnf take them, optionally with an architecture
/// (`libfoo:amd64`, `foo.x86_64`). A leading `-` would read as an option.
pub(crate) fn is_package_name(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("node-1"));
        assert!(!is_dns_label("Node-1"));
        assert!(!is_dns_label("-node"));
        assert!(!is_dns_label("node_1"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert_eq!(dns_label_near("Node_1").as_deref(), Some("node-1"));
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(label_key_error("topology.kubernetes.io/zone"), None);
        assert_eq!(label_key_error("rack"), None);
        assert!(label_key_error("Example.com/rack").is_some());
        assert!(label_key_error("example.com/").is_some());
        assert!(label_key_error("-rack").is_some());
        assert_eq!(label_value_error(""), None);
        assert_eq!(label_value_error("eu-west_1.a"), None);
        assert!(label_value_error("a b").is_some());
    }

    #[test]
    fn addresses_devices_and_volume_groups() {
        assert!(is_address("10.0.0.1"));
        assert!(is_address("fd00::1"));
        assert!(is_address("Node1.Example.com"));
        assert!(!is_address("node 1"));
        assert!(!is_address("10.1"));
        assert!(!is_address("0"));
        assert!(!is_address("example.0x7f"));
        assert!(!is_address("010.0.0.1"));
        assert!(is_address("1a.example.com"));
        assert!(is_volume_group_name("vg_metalk8s"));
        assert!(!is_volume_group_name("-vg"));
    }

    #[test]
    fn sysctl_keys_modules_and_packages() {
        assert_eq!(sysctl_key_error("net.ipv4.ip_forward"), None);
        assert_eq!(sysctl_key_error("net.ipv4.conf.eth0/100.rp_filter"), None);
        assert_eq!(sysctl_key_error("net.bridge.bridge-nf-call-iptables"), None);
        assert!(sysctl_key_error("ip_forward").is_some());
        assert!(sysctl_key_error("vm..max_map_count").is_some());
        assert!(sysctl_key_error("net.ipv4.ip_forward = 1").is_some());
        assert!(sysctl_key_error("net.ipv4.conf.*.rp_filter").is_some());
        assert!(is_kernel_module_name("br_netfilter"));
        assert!(is_kernel_module_name("nf-conntrack"));
        assert!(!is_kernel_module_name("ip vs"));
        assert!(!is_kernel_module_name("-r"));
        assert!(is_package_name("nfs-common"));
        assert!(is_package_name("libstdc++6:amd64"));
        assert!(is_package_name("lvm2.x86_64"));
        assert!(!is_package_name("-y"));
        assert!(!is_package_name("vim nano"));
    }
}
