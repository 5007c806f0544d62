//! Hostile strings in every inventory value that reaches a file or a command line on the
//! nodes (proxy URLs, `noProxy`, NTP servers, sysctl keys and values, names, labels and
//! taints, kernel modules, packages, device paths, `mkfs` and mount options, volume
//! groups). Each one is either refused, with the problem code of its field and at its
//! path, or accepted unchanged and a member of the field's grammar, as checked here by
//! parsers independent of the crate's own (the `url` crate, Kubernetes' regular
//! expressions, std's IP parsers). tests/rendered.rs then writes accepted values into the
//! files the nodes read and parses them back.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{LazyLock, Mutex};

use common::hostile::{FIELDS, Field, hostile};
use metalk8s_inventory::parse;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use regex::Regex;

/// Characters no accepted value holds: each one is special in at least one of the files
/// or command lines the values land in (quotes, separators, expansions, comments).
const NEVER: &[char] = &[
    '"', '\'', '`', ';', '{', '}', '$', '\\', '#', '|', '&', '<', '>', '!', '*', '?', '(', ')',
];

/// Each pattern compiled once.
fn regex(pattern: &'static str) -> Regex {
    static COMPILED: LazyLock<Mutex<HashMap<&'static str, Regex>>> =
        LazyLock::new(Default::default);
    let mut compiled = COMPILED.lock().unwrap();
    compiled
        .entry(pattern)
        .or_insert_with(|| Regex::new(pattern).unwrap())
        .clone()
}

/// Kubernetes' own patterns (apimachinery's validation package).
fn dns_label(text: &str) -> bool {
    text.len() <= 63 && regex(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").is_match(text)
}

fn dns_subdomain(text: &str) -> bool {
    text.len() <= 253
        && regex(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .is_match(text)
}

fn qualified_name(text: &str) -> bool {
    text.len() <= 63 && regex(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").is_match(text)
}

fn label_key(text: &str) -> bool {
    match text.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && qualified_name(name),
        None => qualified_name(text),
    }
}

fn label_value(text: &str) -> bool {
    text.is_empty() || qualified_name(text)
}

/// A host name of any case, as resolvers take it.
fn host_name(text: &str) -> bool {
    text.len() <= 253 && dns_subdomain(&text.to_ascii_lowercase())
}

fn ip(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

/// A proxy URL as the `url` crate (WHATWG) reads it: http(s), a host, no path, query or
/// fragment, and the user, password, host and port as written.
fn proxy_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|error| format!("url: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {}", url.scheme()));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("path, query or fragment".to_owned());
    }
    let rest = text.split_once("://").map_or("", |(_, rest)| rest);
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if url.username() != user || url.password().unwrap_or("") != password {
            return Err(format!(
                "credentials read as {:?}:{:?}",
                url.username(),
                url.password()
            ));
        }
    } else if !url.username().is_empty() {
        return Err("credentials appeared".to_owned());
    }
    let host = url.host_str().ok_or("no host")?;
    let written_host = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
            let port: u16 = port.parse().map_err(|_| "port".to_owned())?;
            if url.port_or_known_default() != Some(port) {
                return Err("port read differently".to_owned());
            }
            host
        }
        _ => host_port,
    };
    let same_host = host.eq_ignore_ascii_case(written_host)
        || written_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| host == format!("[{ip}]"));
    if !same_host {
        return Err(format!("host read as {host}"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~%:/@[]".contains(c);
    if !text.chars().all(allowed) {
        return Err("character outside the URL set".to_owned());
    }
    Ok(())
}

fn no_proxy(text: &str) -> bool {
    text == "*"
        || ip(text)
        || text.parse::<ipnet::IpNet>().is_ok()
        || host_name(text.strip_prefix('.').unwrap_or(text))
}

fn sysctl_key(text: &str) -> bool {
    regex(r"^[A-Za-z0-9_][A-Za-z0-9_-]*([./][A-Za-z0-9_-]+)+$").is_match(text)
}

fn sysctl_value(text: &str) -> bool {
    regex(r"^(-?[0-9]+([ \t]+-?[0-9]+)*|[A-Za-z0-9._:/,+@%-]+)$").is_match(text)
        && text.len() <= 1024
}

fn device_path(text: &str) -> bool {
    regex(r"^/dev(/[A-Za-z0-9._:+@=,-]+)+$").is_match(text)
        && !text.split('/').any(|part| part == "." || part == "..")
}

/// Whether an accepted `value` of `field` belongs to the field's grammar.
fn in_grammar(field: Field, value: &str) -> Result<(), String> {
    let blanks_allowed = field == Field::SysctlValue;
    if let Some(bad) = value.chars().find(|c| {
        NEVER.contains(c) && !(field == Field::NoProxy && value == "*")
            || !c.is_ascii()
            || c.is_ascii_control() && !(blanks_allowed && *c == '\t')
            || *c == ' ' && !blanks_allowed
    }) {
        return Err(format!("holds {bad:?}"));
    }
    let fits = match field {
        Field::ClusterName | Field::NodeName => dns_label(value),
        Field::VolumeName | Field::StorageClass => dns_subdomain(value),
        Field::ProxyHttp | Field::ProxyHttps => return proxy_url(value),
        Field::NoProxy => no_proxy(value),
        Field::SysctlKey => sysctl_key(value),
        Field::SysctlValue => sysctl_value(value),
        Field::KernelModule => regex(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$").is_match(value),
        Field::Package => regex(r"^[A-Za-z0-9][A-Za-z0-9+._:-]*$").is_match(value),
        Field::NtpServer | Field::Address => ip(value) || host_name(value),
        Field::LabelKey | Field::TaintKey | Field::VolumeLabelKey => label_key(value),
        Field::LabelValue | Field::TaintValue | Field::VolumeLabelValue => label_value(value),
        Field::RawDevice | Field::LvmDevice => device_path(value),
        Field::MkfsOption => regex(r"^[A-Za-z0-9._:/,=+^@-]+$").is_match(value),
        Field::MountOption => {
            regex(r"^[A-Za-z0-9][A-Za-z0-9._-]*(=[A-Za-z0-9._:/+@-]*)?$").is_match(value)
        }
        Field::VolumeGroup => {
            regex(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$").is_match(value)
                && value != "."
                && value != ".."
        }
    };
    if fits {
        Ok(())
    } else {
        Err("outside the field's grammar".to_owned())
    }
}

/// Either refused with the field's code at the field's path (and nothing else reported),
/// or accepted as written and inside the grammar.
fn check(field: Field, value: &str) -> Result<(), TestCaseError> {
    let text = field.inventory(value);
    match parse("hostile.yaml", &text) {
        Ok(inventory) => {
            let read = field.read(&inventory);
            prop_assert_eq!(
                read,
                vec![value.to_owned()],
                "{:?}: {:?} was not read back as written",
                field,
                value
            );
            if let Err(why) = in_grammar(field, value) {
                return Err(TestCaseError::fail(format!(
                    "{field:?}: {value:?} was accepted but {why}"
                )));
            }
        }
        Err(error) => {
            let problems = error.problems();
            prop_assert!(!problems.is_empty(), "{:?}: {:?}: no problem", field, value);
            for problem in problems {
                prop_assert!(
                    field.codes().contains(&problem.code) && problem.path.starts_with(field.path()),
                    "{:?}: {:?} refused for something else: {} at {}: {}",
                    field,
                    value,
                    problem.code,
                    problem.path,
                    problem.message
                );
                prop_assert!(
                    !problem.message.contains(['\n', '\r']),
                    "{:?}: the message breaks lines: {:?}",
                    field,
                    problem.message
                );
            }
        }
    }
    Ok(())
}

fn field_and_value() -> impl Strategy<Value = (Field, String)> {
    proptest::sample::select(FIELDS).prop_flat_map(|field| (Just(field), hostile(field.prefixes())))
}

proptest! {
    #![proptest_config(Config { cases: 6000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn hostile_values_are_refused_or_inert((field, value) in field_and_value()) {
        check(field, &value)?;
    }
}

/// The template itself is valid: each field's default is accepted.
#[test]
fn every_default_is_accepted() {
    for field in FIELDS {
        check(*field, field.default_value()).unwrap();
    }
}

/// The values the issue reported, and their kin.
#[test]
fn known_injections_are_refused() {
    let cases: &[(Field, &str)] = &[
        (
            Field::ProxyHttps,
            "http://p:3128\";APT::Update::Pre-Invoke{\"touch${IFS}/tmp/pwned\";};//",
        ),
        (
            Field::ProxyHttp,
            "http://p:3128\nAcquire::http::Proxy \"x\";",
        ),
        (Field::ProxyHttp, "http://p:3128\" \"BAD=1"),
        (Field::NoProxy, "a\nExecStartPre=/bin/touch /tmp/pwned"),
        (Field::NoProxy, "a\" \"LD_PRELOAD=/tmp/x.so"),
        (Field::SysctlValue, "32768 60999; x"),
        (Field::SysctlValue, "1\nkernel.core_pattern = |/tmp/x"),
        (
            Field::NtpServer,
            "pool.ntp.org iburst\nserver evil.example.com",
        ),
        (Field::MountOption, "defaults 0 0\n/dev/sda / ext4 defaults"),
        (Field::MkfsOption, "$(reboot)"),
        (Field::RawDevice, "/dev/vdb;reboot"),
        (Field::LvmDevice, "/dev/../etc/shadow"),
        (Field::LabelValue, "a\nb"),
    ];
    for (field, value) in cases {
        let error = parse("hostile.yaml", &field.inventory(value))
            .err()
            .unwrap_or_else(|| panic!("{field:?}: {value:?} was accepted"));
        assert!(
            error
                .problems()
                .iter()
                .all(|problem| field.codes().contains(&problem.code)),
            "{field:?}: {value:?}: {:?}",
            error.problems()
        );
    }
}
