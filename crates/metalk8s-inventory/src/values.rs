//! The grammar of the values metalk8s writes into files and command lines on the nodes
//! as root: proxy URLs (apt.conf.d, dnf.conf, containerd's unit drop-in), `noProxy` items,
//! kernel parameter values (/etc/sysctl.d), `mkfs` and mount options, device paths.
//!
//! Each rule is a closed set of characters and a shape, never a list of forbidden
//! characters: a value that passes cannot carry a quote, a `;`, a line break, a `$` or a
//! brace into the file it lands in, whatever that file's syntax. What passes is written
//! as it was written, so that the file reads back to the same value.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use crate::names;

/// Longest proxy URL accepted: far more than a host, a port and credentials need, and
/// short enough for apt, which reads a quoted value of 1024 bytes or more differently
/// (it percent-decodes it, and cuts it at 1024 bytes).
pub(crate) const MAX_URL_LENGTH: usize = 512;

/// Longest sysctl value, mkfs option, mount option or device path accepted.
pub(crate) const MAX_VALUE_LENGTH: usize = 1024;

/// `text` fit for a message: control characters escaped, cut after 80 characters, so that a
/// hostile value cannot break the report's lines or flood it.
pub(crate) fn shown(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == 80 {
            out.push('…');
            break;
        }
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that change how the text around them is displayed (bidirectional
/// overrides, zero-width joiners, line and paragraph separators).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// How to name a character refused in a value.
pub(crate) fn character(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        '\t' => "a tab".to_owned(),
        '\n' | '\r' => "a line break".to_owned(),
        c if c.is_control() || is_invisible(c) => {
            format!("the control character `{}`", c.escape_unicode())
        }
        c => format!("`{c}`"),
    }
}

/// RFC 3986 unreserved characters: what a user name or password may hold unencoded.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// `c` as `%XX` escapes of its UTF-8 bytes.
fn percent_encoded(c: char) -> String {
    let mut buffer = [0; 4];
    c.encode_utf8(&mut buffer)
        .bytes()
        .map(|byte| format!("%{byte:02X}"))
        .collect()
}

/// Why `text` is not a proxy URL metalk8s writes, if it is not. The accepted form is
/// `http[s]://[user[:password]@]host[:port][/]`: the host a DNS name, an IPv4 address or a
/// bracketed IPv6 address; the user and password of unreserved characters and `%XX`
/// escapes.
pub(crate) fn proxy_url_error(text: &str) -> Option<String> {
    if text.len() > MAX_URL_LENGTH {
        return Some(format!("it is longer than {MAX_URL_LENGTH} characters"));
    }
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        let lower = text.to_ascii_lowercase();
        return Some(
            if lower.starts_with("http://") || lower.starts_with("https://") {
                "its scheme must be written in lowercase".to_owned()
            } else {
                "it does not start with `http://` or `https://`".to_owned()
            },
        );
    };
    // Every character a URL of this form can hold; anything else is refused before the
    // parts are looked at.
    if let Some(bad) = rest
        .chars()
        .find(|c| !(is_unreserved(*c) || matches!(c, '%' | ':' | '/' | '@' | '[' | ']')))
    {
        return Some(format!(
            "it contains {}, which a proxy URL cannot hold (in a user name or password, write it `{}`)",
            character(bad),
            percent_encoded(bad)
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Some("a proxy URL has no path: end it after the port".to_owned());
    }
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo
        && let Some(reason) = userinfo_error(userinfo)
    {
        return Some(reason);
    }
    host_port_error(host_port)
}

fn userinfo_error(userinfo: &str) -> Option<String> {
    if userinfo.contains('@') {
        return Some(
            "it has more than one `@`: write `@` in a user name or password as `%40`".to_owned(),
        );
    }
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    if user.is_empty() {
        return Some("its user name is empty".to_owned());
    }
    for (part, what) in [(Some(user), "user name"), (password, "password")] {
        let Some(part) = part else { continue };
        if let Some(bad) = part.chars().find(|c| !(is_unreserved(*c) || *c == '%')) {
            return Some(format!(
                "its {what} holds {}: write it `{}`",
                character(bad),
                percent_encoded(bad)
            ));
        }
        if !percent_escapes_complete(part) {
            return Some(format!(
                "its {what} has a `%` not followed by two hexadecimal digits: write `%` as `%25`"
            ));
        }
    }
    None
}

fn percent_escapes_complete(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let escape = bytes.get(at + 1..at + 3);
            if !escape.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            at += 3;
        } else {
            at += 1;
        }
    }
    true
}

fn host_port_error(host_port: &str) -> Option<String> {
    if !host_port.starts_with('[') && host_port.matches(':').count() > 1 {
        return Some("its IPv6 address must be in brackets: `http://[fd00::1]:3128`".to_owned());
    }
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Some("its IPv6 address has no closing `]`".to_owned());
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Some(format!("`[{inside}]` is not an IPv6 address"));
        }
        if !after.is_empty() && !after.starts_with(':') {
            return Some("only `:port` may follow its IPv6 address".to_owned());
        }
        (None, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(host_port), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Some("it has no host".to_owned());
        }
        if host.contains(['[', ']']) || !names::is_address(host) {
            return Some(format!(
                "its host `{host}` is neither a host name nor an IP address (an IPv6 address goes in brackets: `[fd00::1]`)"
            ));
        }
    }
    if let Some(port) = port {
        let number =
            (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
                .then(|| port.parse::<u32>().ok())
                .flatten();
        if !number.is_some_and(|number| (1..=65535).contains(&number)) {
            return Some(format!("its port `{port}` is not a number from 1 to 65535"));
        }
    }
    None
}

/// Why `text` is not a `noProxy` item, if it is not: a host name, `.domain` (the domain
/// and every name under it), an IP address, a CIDR, or `*` (everything).
pub(crate) fn no_proxy_error(text: &str) -> Option<String> {
    if text == "*" {
        return None;
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '/' | '*')))
    {
        return Some(format!("it contains {}", character(bad)));
    }
    if let Some(domain) = text.strip_prefix("*.") {
        return Some(format!(
            "write `.{domain}` to reach `{domain}` and every name under it directly"
        ));
    }
    if text.contains('*') {
        return Some("`*` stands alone: it sends nothing through the proxy".to_owned());
    }
    if text.contains('/') {
        return match text.parse::<IpNet>() {
            Ok(_) => None,
            Err(_) => Some("it is not a CIDR (`10.0.0.0/8`)".to_owned()),
        };
    }
    if text.parse::<IpAddr>().is_ok() {
        return None;
    }
    if text.contains(':') {
        return Some(
            "it is neither a host name nor an IP address (ports are not supported)".to_owned(),
        );
    }
    let name = text.strip_prefix('.').unwrap_or(text);
    if name.is_empty() || !names::is_address(name) {
        return Some("it is neither a host name, a `.domain`, an IP address nor a CIDR".to_owned());
    }
    None
}

/// Why `text` is not a kernel parameter value metalk8s writes, if it is not: whole numbers
/// separated by spaces or tabs (`32768 60999`), or one word of letters, digits and
/// `._:/,+@%-` (`bbr`, `30000-32767,8080`).
pub(crate) fn sysctl_value_error(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("it is empty".to_owned());
    }
    if text.len() > MAX_VALUE_LENGTH {
        return Some(format!("it is longer than {MAX_VALUE_LENGTH} characters"));
    }
    if text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']) {
        return Some("it starts or ends with a space".to_owned());
    }
    let is_word_char = |c: char| c.is_ascii_alphanumeric() || "._:/,+@%-".contains(c);
    let words: Vec<&str> = text.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let is_number = |word: &str| {
        let digits = word.strip_prefix('-').unwrap_or(word);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if let Some(bad) = text
        .chars()
        .find(|c| !(is_word_char(*c) || matches!(c, ' ' | '\t')))
    {
        return Some(format!("it contains {}", character(bad)));
    }
    if words.len() > 1 && !words.iter().all(|word| is_number(word)) {
        return Some(
            "only whole numbers may be separated by spaces (`32768 60999`); any other value is one word".to_owned(),
        );
    }
    None
}

/// Why `text` is not one `mkfs` argument metalk8s passes, if it is not: letters, digits
/// and `-._:/,=+^@` (`-m`, `0`, `-O`, `^has_journal`, `lazy_itable_init=0`).
pub(crate) fn mkfs_option_error(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("it is empty".to_owned());
    }
    if text.len() > MAX_VALUE_LENGTH {
        return Some(format!("it is longer than {MAX_VALUE_LENGTH} characters"));
    }
    text.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._:/,=+^@".contains(*c)))
        .map(|bad| format!("it contains {}", character(bad)))
}

/// Why `text` is not one mount option, if it is not: `name` or `name=value`, the name of
/// letters, digits and `-._`, the value of letters, digits and `-._:/+@`. One option per
/// item: a comma would be read as two.
pub(crate) fn mount_option_error(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("it is empty".to_owned());
    }
    if text.len() > MAX_VALUE_LENGTH {
        return Some(format!("it is longer than {MAX_VALUE_LENGTH} characters"));
    }
    if text.contains(',') {
        return Some("it holds a `,`: write one option per item (`[noatime, nodev]`)".to_owned());
    }
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (text, None),
    };
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("its name must start with a letter or a digit".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._".contains(*c)))
    {
        return Some(format!("its name contains {}", character(bad)));
    }
    let value = value?;
    value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._:/+@".contains(*c)))
        .map(|bad| format!("its value contains {}", character(bad)))
}

/// Why `text` is not a block device path, if it is not: `/dev/` then `/`-separated names of
/// letters, digits and `-._:+@=,` (`/dev/vdb`, `/dev/disk/by-id/nvme-eui.0025385b71b0`,
/// `/dev/disk/by-path/pci-0000:00:04.0`), none of them `.` or `..`.
pub(crate) fn device_path_error(text: &str) -> Option<String> {
    let Some(rest) = text.strip_prefix("/dev/") else {
        return Some("it is not under `/dev/`".to_owned());
    };
    if text.len() > MAX_VALUE_LENGTH {
        return Some(format!("it is longer than {MAX_VALUE_LENGTH} characters"));
    }
    if let Some(bad) = rest
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._:+@=,/".contains(*c)))
    {
        return Some(format!("it contains {}", character(bad)));
    }
    if rest
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Some("one of its `/`-separated parts is empty, `.` or `..`".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        for good in [
            "http://proxy.example.com:3128",
            "https://proxy.example.com",
            "http://proxy:3128/",
            "http://10.0.0.1:8080",
            "http://[fd00::1]:3128",
            "http://user:p%40ss%22w0rd@proxy.example.com:3128",
            "http://user@proxy:3128",
            "http://user:@proxy:3128",
            "http://PROXY.Example.com:3128",
        ] {
            assert_eq!(proxy_url_error(good), None, "{good}");
        }
        for bad in [
            "",
            "proxy.example.com:3128",
            "HTTP://proxy:3128",
            "ftp://proxy:3128",
            "http://",
            "http://:3128",
            "http://p:3128\";APT::Update::Pre-Invoke{\"touch${IFS}/tmp/pwned\";};//",
            "http://p:3128\nAcquire::x \"y\";",
            "http://p:3128 x",
            "http://p:3128/path",
            "http://p:3128?q",
            "http://p:3128#f",
            "http://p:0",
            "http://p:65536",
            "http://p:31a",
            "http://p:",
            "http://fd00::1:3128",
            "http://[fd00::1",
            "http://[zz]:1",
            "http://a@b@proxy:1",
            "http://:pass@proxy:1",
            "http://u:p%4@proxy:1",
            "http://u:p%zz@proxy:1",
            "http://pro_xy:1",
            "http://-proxy:1",
            "http://p$x:1",
            "http://p'x:1",
            "http://p\\x:1",
            "http://p%0a:1",
        ] {
            assert!(proxy_url_error(bad).is_some(), "{bad:?} accepted");
        }
        assert!(proxy_url_error(&format!("http://{}.com", "a.".repeat(1100))).is_some());
    }

    #[test]
    fn no_proxy_items() {
        for good in [
            "*",
            "example.com",
            ".example.com",
            "registry.local",
            "localhost",
            "10.0.0.1",
            "fd00::1",
            "10.0.0.0/8",
            "fd00::/64",
        ] {
            assert_eq!(no_proxy_error(good), None, "{good}");
        }
        for bad in [
            "",
            ".",
            "..example.com",
            "*.example.com",
            "a*",
            "example.com:443",
            "10.0.0.0/33",
            "a b",
            "a\nExecStartPre=/bin/touch /tmp/pwned",
            "a,b",
            "a\"",
            "-a.com",
        ] {
            assert!(no_proxy_error(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sysctl_values() {
        for good in [
            "1",
            "-1",
            "262144",
            "32768 60999",
            "32768\t60999",
            "4 4 1 7",
            "bbr",
            "fq_codel",
            "30000-32767,8080",
            "/sbin/modprobe",
        ] {
            assert_eq!(sysctl_value_error(good), None, "{good}");
        }
        for bad in [
            "",
            " 1",
            "1 ",
            "32768 60999; x",
            "1;reboot",
            "1\n2",
            "1 # comment",
            "a=b",
            "\"1\"",
            "'1'",
            "bbr cubic",
            "|/bin/sh -c x",
            "${IFS}",
        ] {
            assert!(sysctl_value_error(bad).is_some(), "{bad:?} accepted");
        }
        assert!(sysctl_value_error(&"1 ".repeat(600)).is_some());
    }

    #[test]
    fn mkfs_and_mount_options_and_devices() {
        for good in [
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-E",
            "lazy_itable_init=0,nodiscard",
        ] {
            assert_eq!(mkfs_option_error(good), None, "{good}");
        }
        for bad in ["", "-m 0", "a;b", "$(x)", "a\nb", "'a'"] {
            assert!(mkfs_option_error(bad).is_some(), "{bad:?} accepted");
        }
        for good in [
            "noatime",
            "discard",
            "x-systemd.automount",
            "uid=1000",
            "context=system_u:object_r:x_t:s0",
        ] {
            assert_eq!(mount_option_error(good), None, "{good}");
        }
        for bad in [
            "",
            "noatime,nodev",
            "a b",
            "a=b=c",
            "=x",
            "a\nb",
            "%n",
            "-o",
        ] {
            assert!(mount_option_error(bad).is_some(), "{bad:?} accepted");
        }
        for good in [
            "/dev/vdb",
            "/dev/disk/by-id/nvme-eui.0025385b71b0",
            "/dev/disk/by-path/pci-0000:00:04.0-scsi-0:0:0:0",
            "/dev/mapper/vg-lv",
        ] {
            assert_eq!(device_path_error(good), None, "{good}");
        }
        for bad in [
            "vdb",
            "/dev/",
            "/dev//vdb",
            "/dev/../etc/passwd",
            "/dev/vdb;reboot",
            "/dev/vdb x",
            "/dev/vdb\n",
            "/dev/vd$b",
            "/dev/vdb/",
        ] {
            assert!(device_path_error(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn shown_values_stay_on_one_line() {
        assert_eq!(shown("a\nb"), "a\\u{a}b");
        assert_eq!(shown("\u{202e}x"), "\\u{202e}x");
        assert_eq!(shown(&"x".repeat(100)).chars().count(), 81);
    }
}
