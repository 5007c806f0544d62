//! The rules single values follow: strings (names, labels, paths), booleans, numbers,
//! CIDRs, IPs, sizes, closed choices. Each failure says what is wrong and how to write it.

use std::net::IpAddr;

use ipnet::IpNet;
use metalk8s_model::ByteSize;
use metalk8s_model::size::SizeError;
use serde_json::Value as Json;

use crate::names;
use crate::paths::place;
use crate::shape::{Choice, Shape, Text};
use crate::suggest;
use crate::tree::Scalar;
use crate::values;

/// The JSON for `scalar` if it fits `shape`.
pub(crate) fn check(scalar: &Scalar, shape: &Shape, path: &str) -> Result<Json, Wrong> {
    match shape {
        Shape::Text(rule) => text(scalar, *rule, path),
        Shape::Bool => boolean(scalar, path),
        Shape::Integer { min, max } => integer(scalar, *min, *max, path),
        Shape::Seconds => seconds(scalar, path),
        Shape::Cidr => cidr(scalar, path),
        Shape::Ip => ip(scalar, path),
        Shape::Size => size(scalar, path),
        Shape::Choice(choice) => choose(scalar, choice, path),
        Shape::Constant(expected) => constant(scalar, expected, path),
        Shape::Struct(_)
        | Shape::List { .. }
        | Shape::Labels
        | Shape::RoleMap(_)
        | Shape::Sysctls => Err(Wrong::new(
            format!(
                "{} must be {}, not a single value",
                place(path),
                shape.expected()
            ),
            "a single value",
            format!("write {}", shape.expected()),
        )),
    }
}

/// Why a scalar does not fit.
pub(crate) struct Wrong {
    pub code: &'static str,
    pub message: String,
    pub label: String,
    pub help: String,
}

impl Wrong {
    fn new(message: impl Into<String>, label: impl Into<String>, help: impl Into<String>) -> Self {
        Wrong {
            code: "inventory::invalid-value",
            message: message.into(),
            label: label.into(),
            help: help.into(),
        }
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

fn text(scalar: &Scalar, rule: Text, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.as_str();
    let at = place(path);
    // For messages: a hostile value cannot break the report's lines.
    let value = values::shown(text);
    let value = value.as_str();
    let problem = match rule {
        Text::NonEmpty => text.trim().is_empty().then(|| {
            Wrong::new(
                format!("{at} is empty"),
                "empty",
                "give it a value, or remove the field to use the default",
            )
        }),
        Text::DnsLabel => (!names::is_dns_label(text)).then(|| {
            let near = names::dns_label_near(text)
                .map(|near| format!(" (did you mean `{near}`?)"))
                .unwrap_or_default();
            Wrong::new(
                format!("{at} is not a DNS-1123 label: `{value}`"),
                "not a DNS label",
                format!("use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit{near}"),
            )
            .code("inventory::bad-name")
        }),
        Text::DnsSubdomain => (!names::is_dns_subdomain(text)).then(|| {
            Wrong::new(
                format!("{at} is not a DNS-1123 subdomain: `{value}`"),
                "not a DNS subdomain",
                "use lowercase letters, digits, `-` and `.`; each dot-separated part starts and ends with a letter or digit",
            )
            .code("inventory::bad-name")
        }),
        Text::Address => (!names::is_address(text)).then(|| {
            Wrong::new(
                format!("{at} is neither an IP address nor a host name: `{value}`"),
                "not an address",
                "write the IP address or resolvable host name SSH connects to, for example `10.10.0.11`",
            )
        }),
        Text::LabelKey => names::label_key_error(text).map(|reason| {
            Wrong::new(
                format!("`{value}` is not a valid label key: {reason}"),
                "invalid label key",
                "label keys look like `rack` or `example.com/rack`",
            )
            .code("inventory::bad-label-key")
        }),
        Text::LabelValue => names::label_value_error(text).map(|reason| {
            Wrong::new(
                format!("{at} is not a valid label value: `{value}`"),
                "invalid label value",
                reason,
            )
            .code("inventory::bad-label-value")
        }),
        Text::DevicePath => values::device_path_error(text).map(|reason| {
            Wrong::new(
                format!("{at} is not a block device path: {reason}"),
                "not a device path",
                "write the block device's path, for example `/dev/vdb` or `/dev/disk/by-id/...` (letters, digits and `-._:+@=,` between the slashes)",
            )
            .code("inventory::bad-device-path")
        }),
        Text::VolumeGroup => (!names::is_volume_group_name(text)).then(|| {
            Wrong::new(
                format!("{at} is not a valid LVM volume group name: `{value}`"),
                "invalid VG name",
                "use letters, digits and `+_.-`, not starting with `-`",
            )
        }),
        Text::Url => values::proxy_url_error(text).map(|reason| {
            Wrong::new(
                format!("{at} is not a proxy URL metalk8s can write: {reason}"),
                "not a proxy URL",
                "write `http://host:port`, or `http://user:password@host:port` with every character of the user and password other than letters, digits and `-._~` percent-encoded (`@` is `%40`, `:` is `%3A`)",
            )
            .code("inventory::bad-proxy-url")
        }),
        Text::KernelVersion => (!is_kernel_version(text)).then(|| {
            Wrong::new(
                format!("{at} is not a `major.minor` kernel version: `{value}`"),
                "not major.minor",
                "write two numbers separated by a dot, for example `4.18`",
            )
        }),
        Text::KernelModule => (!names::is_kernel_module_name(text)).then(|| {
            Wrong::new(
                format!("{at} is not a kernel module name: `{value}`"),
                "not a module name",
                "write the name `modprobe` takes, for example `ip_vs`",
            )
        }),
        Text::PackageName => (!names::is_package_name(text)).then(|| {
            Wrong::new(
                format!("{at} is not a package name: `{value}`"),
                "not a package name",
                "write one package name per item, for example `nfs-common`",
            )
        }),
        Text::NtpServer => (!names::is_address(text)).then(|| {
            Wrong::new(
                format!("{at} is neither an IP address nor a host name: `{value}`"),
                "not an NTP server",
                "write the NTP server's host name or IP address alone, for example `ntp.example.com` (no scheme, port or options)",
            )
            .code("inventory::bad-ntp-server")
        }),
        Text::NoProxy => values::no_proxy_error(text).map(|reason| {
            Wrong::new(
                format!("{at} is not a host to reach without the proxy: {reason}"),
                "not a host, domain, IP or CIDR",
                "write a host name (`registry.local`), a domain with its leading dot (`.example.com`), an IP address, a CIDR (`10.0.0.0/8`) or `*`, one per item",
            )
            .code("inventory::bad-no-proxy")
        }),
        Text::MkfsOption => values::mkfs_option_error(text).map(|reason| {
            Wrong::new(
                format!("{at} is not an mkfs argument metalk8s passes: {reason}"),
                "not an mkfs argument",
                "write one argument per item, of letters, digits and `-._:/,=+^@`, for example `[-m, \"0\"]` or `[-O, ^has_journal]`",
            )
            .code("inventory::bad-mkfs-option")
        }),
        Text::MountOption => values::mount_option_error(text).map(|reason| {
            Wrong::new(
                format!("{at} is not a mount option: {reason}"),
                "not a mount option",
                "write one option per item, `name` or `name=value`, for example `[noatime, nodev]`",
            )
            .code("inventory::bad-mount-option")
        }),
    };
    match problem {
        Some(wrong) => Err(wrong),
        None => Ok(Json::String(text.to_owned())),
    }
}

/// A sysctl value: the text written after `=` in /etc/sysctl.d and given to `sysctl -w`:
/// whole numbers separated by spaces, or one word (see [`values::sysctl_value_error`]).
/// Booleans are refused because the kernel reads `1` and `0`.
pub(crate) fn sysctl_value(scalar: &Scalar, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.as_str();
    let at = place(path);
    let boolean = match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some("1"),
        "false" | "no" | "off" => Some("0"),
        _ => None,
    };
    if let Some(number) = boolean.filter(|_| scalar.plain) {
        return Err(Wrong::new(
            format!("{at} must be the value the kernel reads, not `{text}`"),
            "a boolean",
            format!("write `{number}`"),
        )
        .code("inventory::bad-sysctl-value"));
    }
    if let Some(reason) = values::sysctl_value_error(text) {
        return Err(Wrong::new(
            format!("{at} is not a kernel parameter value metalk8s writes: {reason}"),
            "not a sysctl value",
            "write whole numbers separated by spaces (`262144`, `\"32768 60999\"`) or one word of letters, digits and `._:/,+@%-` (`bbr`, `\"30000-32767\"`)",
        )
        .code("inventory::bad-sysctl-value"));
    }
    Ok(Json::String(text.to_owned()))
}

fn is_kernel_version(text: &str) -> bool {
    text.split_once('.').is_some_and(|(major, minor)| {
        [major, minor]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn boolean(scalar: &Scalar, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.as_str();
    if scalar.plain {
        match text {
            "true" | "True" | "TRUE" => return Ok(Json::Bool(true)),
            "false" | "False" | "FALSE" => return Ok(Json::Bool(false)),
            _ => {}
        }
    }
    let help = match text.to_ascii_lowercase().as_str() {
        "true" | "false" => format!("remove the quotes: `{}`", text.to_ascii_lowercase()),
        "yes" | "on" | "y" => "write `true`: YAML 1.2 reads `yes` and `on` as strings".to_owned(),
        "no" | "off" | "n" => "write `false`: YAML 1.2 reads `no` and `off` as strings".to_owned(),
        _ => "write `true` or `false`".to_owned(),
    };
    Err(Wrong::new(
        format!(
            "{} must be `true` or `false`, not `{}`",
            place(path),
            values::shown(text)
        ),
        "not a boolean",
        help,
    ))
}

fn integer(scalar: &Scalar, min: u64, max: u64, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.as_str();
    let digits = text.strip_prefix('+').unwrap_or(text);
    let parsed = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse::<u64>().ok())
        .flatten();
    match parsed {
        Some(number) if scalar.plain && (min..=max).contains(&number) => Ok(Json::from(number)),
        Some(_) if !scalar.plain => Err(Wrong::new(
            format!("{} must be a number, not a string", place(path)),
            "quoted",
            format!("remove the quotes: `{text}`"),
        )),
        _ => Err(Wrong::new(
            format!(
                "{} must be a whole number from {min} to {max}, not `{text}`",
                place(path)
            ),
            "out of range",
            format!("write a whole number from {min} to {max}"),
        )),
    }
}

fn seconds(scalar: &Scalar, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.as_str();
    let number = scalar
        .plain
        .then(|| text.parse::<f64>().ok())
        .flatten()
        .filter(|number| number.is_finite() && *number >= 0.0)
        .and_then(serde_json::Number::from_f64);
    number.map(Json::Number).ok_or_else(|| {
        Wrong::new(
            format!(
                "{} must be a number of seconds (zero or more), not `{text}`",
                place(path)
            ),
            "not a number of seconds",
            "write a number such as `2` or `0.5`",
        )
    })
}

fn cidr(scalar: &Scalar, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.trim();
    let at = place(path);
    match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(Json::String(net.to_string())),
        Ok(net) => Err(Wrong::new(
            format!("{at} has host bits set: `{}`", values::shown(text)),
            "host bits set",
            format!("write the network address: `{}`", net.trunc()),
        )
        .code("inventory::bad-cidr")),
        Err(_) => {
            let help = match text.parse::<IpAddr>() {
                Ok(IpAddr::V4(address)) => {
                    format!("add the prefix length, for example `{address}/24`")
                }
                Ok(IpAddr::V6(address)) => {
                    format!("add the prefix length, for example `{address}/64`")
                }
                Err(_) => {
                    "write an address and a prefix length, for example `10.10.0.0/16`".to_owned()
                }
            };
            Err(Wrong::new(
                format!("{at} is not a CIDR: `{}`", values::shown(text)),
                "not a CIDR",
                help,
            )
            .code("inventory::bad-cidr"))
        }
    }
}

fn ip(scalar: &Scalar, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.trim();
    match text.parse::<IpAddr>() {
        Ok(address) => Ok(Json::String(address.to_string())),
        Err(_) => {
            let help = match text.parse::<IpNet>() {
                Ok(net) => format!(
                    "write the address alone, without `/{}`: `{}`",
                    net.prefix_len(),
                    net.addr()
                ),
                Err(_) => "write an IPv4 or IPv6 address, for example `10.10.0.11`".to_owned(),
            };
            Err(Wrong::new(
                format!(
                    "{} is not an IP address: `{}`",
                    place(path),
                    values::shown(text)
                ),
                "not an IP address",
                help,
            )
            .code("inventory::bad-ip"))
        }
    }
}

fn size(scalar: &Scalar, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.as_str();
    match text.parse::<ByteSize>() {
        Ok(size) => Ok(Json::from(size.bytes())),
        Err(error) => {
            let help = match &error {
                SizeError::UnknownUnit(_) => size_unit_help(text),
                _ => SIZE_HELP.to_owned(),
            };
            Err(Wrong::new(
                format!("{} is not a valid size: {error}", place(path)),
                "invalid size",
                help,
            )
            .code("inventory::bad-size"))
        }
    }
}

const SIZE_HELP: &str = "write a number with an optional unit: `Ki`, `Mi`, `Gi`, `Ti`, `Pi` (powers of 1024) or `k`, `M`, `G`, `T`, `P` (powers of 1000), for example `10Gi`";

/// Sizes written the way `df` or a disk vendor does (`10GB`, `10 GiB`) are close to right:
/// say which Kubernetes spelling to use instead.
fn size_unit_help(text: &str) -> String {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let unit = unit.trim();
    let letter = unit.chars().next().map(|c| c.to_ascii_uppercase());
    let known = matches!(letter, Some('K' | 'M' | 'G' | 'T' | 'P'));
    let rest = unit.get(1..).unwrap_or_default();
    if !known || number.is_empty() {
        return SIZE_HELP.to_owned();
    }
    let letter = letter.unwrap_or('G');
    let decimal = if letter == 'K' { 'k' } else { letter };
    match rest {
        "iB" | "ib" | "i" => format!("write `{number}{letter}i`"),
        "B" | "b" | "" => format!(
            "write `{number}{decimal}` (powers of 1000) or `{number}{letter}i` (powers of 1024)"
        ),
        _ => SIZE_HELP.to_owned(),
    }
}

fn choose(scalar: &Scalar, choice: &Choice, path: &str) -> Result<Json, Wrong> {
    let text = scalar.text.as_str();
    if choice.values.contains(&text) {
        return Ok(Json::String(text.to_owned()));
    }
    let alias = choice
        .aliases
        .iter()
        .find(|(alias, _)| *alias == text)
        .map(|(_, value)| *value);
    let hint = match alias.or_else(|| suggest::closest(text, choice.values)) {
        Some(value) => format!("did you mean `{value}`? "),
        None => String::new(),
    };
    Err(Wrong::new(
        format!(
            "unknown {} `{}` in {}",
            choice.noun,
            values::shown(text),
            place(path)
        ),
        format!("unknown {}", choice.noun),
        format!(
            "{hint}{}s are {}",
            choice.noun,
            suggest::one_of(choice.values)
        ),
    )
    .code("inventory::unknown-value"))
}

fn constant(scalar: &Scalar, expected: &str, path: &str) -> Result<Json, Wrong> {
    if scalar.text == expected {
        return Ok(Json::String(expected.to_owned()));
    }
    Err(Wrong::new(
        format!("unsupported {path} `{}`", values::shown(&scalar.text)),
        format!("expected `{expected}`"),
        format!("this version of metalk8s reads `{path}: {expected}`"),
    )
    .code("inventory::unsupported-api"))
}
