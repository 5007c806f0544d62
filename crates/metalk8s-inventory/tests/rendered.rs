//! Accepted values, written by the planner into the files the nodes read, read back the
//! way the programs that read those files do: apt's configuration parser (apt.conf.d),
//! systemd's for `Environment=` (containerd's drop-in), chrony's, dnf's (dnf.conf). Each
//! file must hold exactly the statements metalk8s means, with exactly the inventory's
//! values: no value can add a statement, end one early or change on the way.
//!
//! The planner is only called here (a dev-dependency), through its public `plan`.

mod common;

use metalk8s_model::PhaseName;
use std::collections::BTreeMap;

use common::hostile::{Field, hostile};
use metalk8s_model::plan::Resource;
use metalk8s_model::{Facts, Inventory};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

/// Every file and unit drop-in of the plan of `phases`, by path (`unit/drop-in` for units).
fn rendered(
    inventory: &Inventory,
    os: &str,
    phases: &[PhaseName],
) -> BTreeMap<String, (String, u32)> {
    let mut facts = serde_json::to_value(Facts::default()).unwrap();
    facts["hostname"] = "node-1".into();
    facts["os"] = match os {
        "debian" => {
            serde_json::json!({"id": "debian", "versionId": "12", "prettyName": "Debian 12"})
        }
        _ => {
            serde_json::json!({"id": "rocky", "versionId": "9.3", "prettyName": "Rocky Linux 9.3"})
        }
    };
    facts["addresses"] =
        serde_json::json!([{"interface": "eth0", "address": "10.10.0.11", "prefixLen": 24}]);
    let facts: Facts = serde_json::from_value(facts).unwrap();
    let facts = BTreeMap::from([(inventory.nodes[0].name.clone(), facts)]);
    let inputs = metalk8s_plan::Inputs {
        bundle: Some(metalk8s_plan::StagedBundle {
            version: "1.0.0".to_owned(),
            dir: "/var/lib/metalk8s/bundles/1.0.0".to_owned(),
            ..Default::default()
        }),
        agent_path: "/usr/local/bin/metalk8s".to_owned(),
        ..Default::default()
    };
    let plan = metalk8s_plan::plan(inventory, &facts, &inputs, phases)
        .unwrap_or_else(|error| panic!("{error:?}"));
    let mut files = BTreeMap::new();
    for step in plan
        .phases
        .iter()
        .flat_map(|phase| &phase.hosts)
        .flat_map(|host| &host.steps)
    {
        match &step.resource {
            Resource::File(file) => {
                files.insert(file.path.clone(), (file.content.clone(), file.mode));
            }
            Resource::Unit(unit) => {
                let name = format!("{}/{}", unit.name, unit.drop_in.as_deref().unwrap_or(""));
                files.insert(name, (unit.content.clone(), 0o644));
            }
            _ => {}
        }
    }
    files
}

fn file<'f>(files: &'f BTreeMap<String, (String, u32)>, ending: &str) -> &'f str {
    files
        .iter()
        .find(|(path, _)| path.ends_with(ending))
        .map(|(_, (content, _))| content.as_str())
        .unwrap_or_else(|| panic!("no file ending in {ending} in {:?}", files.keys()))
}

/// The `(item, value)` statements of an apt.conf file, as apt-pkg's `ReadConfigFile`
/// reads them: `//` and `#` comments outside quotes, statements ended by `;` outside
/// quotes, the value read by `ParseCWord` (verbatim inside quotes) unless it is 1024 bytes
/// or more, when `ParseQuoteWord` reads it instead (decoding `%XX`, cut at 1024 bytes).
fn apt_statements(content: &str) -> Result<Vec<(String, String)>, String> {
    let mut statements = Vec::new();
    let mut buffer = String::new();
    for line in content.lines() {
        let line = line.trim();
        let mut kept = String::new();
        let mut quotes = 0;
        let chars: Vec<char> = line.chars().collect();
        let mut at = 0;
        while at < chars.len() {
            let c = chars[at];
            if c == '"' {
                quotes += 1;
            }
            let outside = quotes % 2 == 0 && c != '"';
            if outside && (c == '#' || (c == '/' && chars.get(at + 1) == Some(&'/'))) {
                break;
            }
            if outside && c == '/' && chars.get(at + 1) == Some(&'*') {
                return Err("a /* comment".to_owned());
            }
            kept.push(c);
            at += 1;
        }
        let mut in_quote = false;
        for c in kept.chars() {
            if c == '"' {
                in_quote = !in_quote;
            }
            if !in_quote && matches!(c, '{' | '}') {
                return Err(format!("a block in {line:?}"));
            }
            if !in_quote && c == ';' {
                let statement = std::mem::take(&mut buffer);
                let statement = statement.trim();
                let (tag, rest) = statement
                    .split_once(' ')
                    .ok_or("a statement without value")?;
                let value = if rest.len() >= 1024 {
                    percent_decoded(&rest.replace('"', ""))
                } else {
                    c_word(rest)?
                };
                statements.push((tag.to_owned(), value));
                continue;
            }
            buffer.push(c);
        }
        if !buffer.trim().is_empty() {
            buffer.push(' ');
        }
    }
    if !buffer.trim().is_empty() {
        return Err(format!("junk at the end: {buffer:?}"));
    }
    Ok(statements)
}

/// apt's `ParseCWord`: quoted pieces joined, nothing outside quotes but spaces.
fn c_word(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.trim_start().chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some(c) => out.push(c),
                    None => return Err("an unterminated quote".to_owned()),
                }
            },
            c if c.is_whitespace() => out.push(' '),
            c => return Err(format!("{c:?} outside quotes")),
        }
    }
    Ok(out)
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match (bytes[at], bytes.get(at + 1..at + 3)) {
            (b'%', Some(pair)) if pair.iter().all(u8::is_ascii_hexdigit) => {
                out.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out[..out.len().min(1023)]).into_owned()
}

/// The variables a unit's `Environment=` lines set, as systemd reads them: specifiers
/// resolved first (`%%` is `%`; any other `%x` is a specifier, refused here since its
/// value is the host's), then words split on blanks, with `"` and `'` quoting and C
/// escapes.
fn unit_environment(content: &str) -> Result<BTreeMap<String, String>, String> {
    let mut environment = BTreeMap::new();
    for line in content.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) || line == "[Service]" {
            continue;
        }
        if line.ends_with('\\') {
            return Err("a continued line".to_owned());
        }
        let value = line
            .strip_prefix("Environment=")
            .ok_or_else(|| format!("an unexpected line {line:?}"))?;
        let resolved = specifiers_resolved(value)?;
        for word in systemd_words(&resolved)? {
            let (name, value) = word
                .split_once('=')
                .ok_or_else(|| format!("{word:?} is no assignment"))?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{name:?} is no variable name"));
            }
            environment.insert(name.to_owned(), value.to_owned());
        }
    }
    Ok(environment)
}

fn specifiers_resolved(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                other => return Err(format!("the specifier %{}", other.unwrap_or(' '))),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn systemd_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (_, '\\') => {
                    let escaped = chars.next().ok_or("a trailing backslash")?;
                    word.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
                (None, '"' | '\'') => quote = Some(c),
                (Some(open), c) if c == open => quote = None,
                (None, c) if c.is_ascii_whitespace() => break,
                (_, c) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("an unterminated quote".to_owned());
        }
        words.push(word);
    }
}

/// chrony's `server` directives: words split on blanks, comment lines skipped.
fn chrony_servers(content: &str) -> Vec<Vec<String>> {
    content
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '!', ';', '%']))
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|words| words[0] == "server")
        .collect()
}

/// dnf.conf's `proxy=` value: INI lines, `$` variables substituted (refused here).
fn dnf_proxy(content: &str) -> Result<Option<String>, String> {
    let mut proxy = None;
    for line in content.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("{line:?}"))?;
        if value.contains('$') {
            return Err(format!("a variable in {line:?}"));
        }
        if key.trim() == "proxy" {
            proxy = Some(value.trim().to_owned());
        }
    }
    Ok(proxy)
}

/// What the nodes read back from the files the planner writes for `inventory`.
fn check_rendered(inventory: &Inventory) -> Result<(), String> {
    let proxy = inventory.proxy.clone().unwrap_or_default();
    let debian = rendered(inventory, "debian", &[PhaseName::Os, PhaseName::Containerd]);

    let mut expected = Vec::new();
    for (scheme, url) in [("http", &proxy.http), ("https", &proxy.https)] {
        if let Some(url) = url {
            expected.push((format!("Acquire::{scheme}::Proxy"), url.clone()));
        }
    }
    let apt = apt_statements(file(&debian, "apt.conf.d/90-metalk8s-proxy.conf"))
        .map_err(|error| format!("apt.conf: {error}"))?;
    if apt != expected {
        return Err(format!("apt reads {apt:?}, want {expected:?}"));
    }

    let drop_in = file(&debian, "containerd.service/90-metalk8s-proxy");
    let has_percent = [&proxy.http, &proxy.https]
        .into_iter()
        .flatten()
        .any(|url| url.contains('%'));
    // Known planner bug (reported): `%` is not written `%%` in the drop-in; checked by
    // the ignored test `percent_encoded_credentials_survive_the_containerd_drop_in`.
    if !has_percent {
        let environment = unit_environment(drop_in).map_err(|error| format!("drop-in: {error}"))?;
        for (name, url) in [("HTTP_PROXY", &proxy.http), ("HTTPS_PROXY", &proxy.https)] {
            if environment.get(name) != url.as_ref() {
                return Err(format!(
                    "containerd gets {name}={:?}, want {url:?}",
                    environment.get(name)
                ));
            }
        }
        let no_proxy: Vec<&str> = environment["NO_PROXY"].split(',').collect();
        for item in &proxy.no_proxy {
            if !no_proxy.contains(&item.as_str()) {
                return Err(format!("NO_PROXY {no_proxy:?} lacks {item:?}"));
            }
        }
        let names: Vec<&String> = environment.keys().collect();
        let expected_names = ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"]
            .iter()
            .filter(|name| environment.contains_key(**name))
            .count();
        if names.len() != expected_names {
            return Err(format!("containerd gets the variables {names:?}"));
        }
    }

    let servers: Vec<Vec<String>> = chrony_servers(file(&debian, "chrony/chrony.conf"));
    let want: Vec<Vec<String>> = inventory
        .os
        .ntp
        .servers
        .iter()
        .map(|server| vec!["server".to_owned(), server.clone(), "iburst".to_owned()])
        .collect();
    if servers != want {
        return Err(format!("chrony reads {servers:?}, want {want:?}"));
    }

    let rocky = rendered(inventory, "rocky", &[PhaseName::Os]);
    let dnf = dnf_proxy(file(&rocky, "/etc/dnf/dnf.conf"))
        .map_err(|error| format!("dnf.conf: {error}"))?;
    if dnf != proxy.https.clone().or(proxy.http.clone()) {
        return Err(format!("dnf reads proxy={dnf:?}"));
    }
    Ok(())
}

fn accepted(field: Field, value: &str) -> Option<Inventory> {
    metalk8s_inventory::parse("hostile.yaml", &field.inventory(value)).ok()
}

/// Credentials of any characters, percent-encoded as the inventory asks.
fn encoded_credentials() -> impl Strategy<Value = String> {
    let encode = |text: String| -> String {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect()
    };
    (".{1,20}", ".{0,40}", proptest::bool::ANY).prop_map(move |(user, password, https)| {
        format!(
            "{}://{}:{}@proxy.example.com:3128",
            if https { "https" } else { "http" },
            encode(user),
            encode(password)
        )
    })
}

proptest! {
    #![proptest_config(Config { cases: 400, failure_persistence: None, ..Config::default() })]

    #[test]
    fn accepted_values_read_back_from_the_rendered_files(
        field in proptest::sample::select(&[Field::ProxyHttp, Field::ProxyHttps, Field::NoProxy, Field::NtpServer][..]),
        value in hostile(&["http://proxy.example.com:3128", "http://u:p@proxy:3128", ".example.com", "ntp.example.com"]),
    ) {
        if let Some(inventory) = accepted(field, &value) {
            check_rendered(&inventory).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn percent_encoded_credentials_reach_apt_and_dnf_unchanged(url in encoded_credentials()) {
        let inventory = accepted(Field::ProxyHttps, &url)
            .ok_or_else(|| TestCaseError::fail(format!("{url} was refused")))?;
        check_rendered(&inventory).map_err(TestCaseError::fail)?;
    }
}

/// The inventory's own examples of every accepted form.
#[test]
fn the_valid_fixture_reads_back() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/valid/proxy-and-options.yaml"
    );
    let inventory = metalk8s_inventory::load(path.as_ref()).unwrap();
    check_rendered(&inventory).unwrap();
}

/// systemd reads `%40` in `Environment=` as a specifier: the planner must write `%` as
/// `%%` in unit files.
#[test]
fn percent_encoded_credentials_survive_the_containerd_drop_in() {
    let url = "http://metalk8s:p%40ss@proxy.example.com:3128";
    let inventory = accepted(Field::ProxyHttps, url).unwrap();
    let debian = rendered(&inventory, "debian", &[PhaseName::Containerd]);
    let environment =
        unit_environment(file(&debian, "containerd.service/90-metalk8s-proxy")).unwrap();
    assert_eq!(environment["HTTPS_PROXY"], url);
}

/// Files that hold proxy credentials are readable by root only, and kept out of plans,
/// diffs and backups.
#[test]
fn proxy_credentials_are_stored_0600() {
    let inventory = accepted(
        Field::ProxyHttps,
        "http://metalk8s:s3cret@proxy.example.com:3128",
    )
    .unwrap();
    let debian = rendered(&inventory, "debian", &[PhaseName::Os]);
    let rocky = rendered(&inventory, "rocky", &[PhaseName::Os]);
    for (files, path) in [
        (&debian, "/etc/apt/apt.conf.d/90-metalk8s-proxy.conf"),
        (&rocky, "/etc/dnf/dnf.conf"),
    ] {
        let (_, mode) = &files[path];
        assert_eq!(*mode, 0o600, "{path}");
    }
}
