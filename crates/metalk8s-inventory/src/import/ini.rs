//! Ansible's INI inventory format: `[group]` sections of host lines with `key=value`
//! variables, `[group:vars]` and `[group:children]` sections.

use std::collections::{BTreeMap, BTreeSet};

use super::ImportError;

/// An Ansible inventory as written, before variables are merged.
#[derive(Debug, Default)]
pub(crate) struct AnsibleInventory {
    pub groups: BTreeMap<String, Group>,
    /// Hosts in the order they first appear.
    pub hosts: Vec<String>,
    /// Variables set on host lines, by host, in the order written.
    pub host_vars: BTreeMap<String, Vec<(String, String)>>,
}

#[derive(Debug, Default)]
pub(crate) struct Group {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vec<(String, String)>,
}

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

pub(crate) fn parse(text: &str) -> Result<AnsibleInventory, ImportError> {
    let mut inventory = AnsibleInventory::default();
    let mut section = Section::Hosts("ungrouped".to_owned());
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') || content.starts_with(';') {
            continue;
        }
        if let Some(header) = content.strip_prefix('[') {
            section = parse_header(header, line)?;
            let (Section::Hosts(name) | Section::Vars(name) | Section::Children(name)) = &section;
            inventory.groups.entry(name.clone()).or_default();
            continue;
        }
        match &section {
            Section::Hosts(group) => inventory.add_host_line(group, content, line)?,
            Section::Vars(group) => {
                let (key, value) = key_value(content, line)?;
                inventory.group(group).vars.push((key, value));
            }
            Section::Children(group) => {
                let child = content.split_whitespace().next().unwrap_or_default();
                inventory.group(group).children.push(child.to_owned());
                inventory.groups.entry(child.to_owned()).or_default();
            }
        }
    }
    inventory.groups.entry("all".to_owned()).or_default();
    Ok(inventory)
}

fn parse_header(header: &str, line: usize) -> Result<Section, ImportError> {
    let name = header
        .split_once(']')
        .map(|(name, _)| name.trim())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ini_error(line, "a section header must look like `[group]`"))?;
    Ok(match name.split_once(':') {
        None => Section::Hosts(name.to_owned()),
        Some((group, "vars")) => Section::Vars(group.to_owned()),
        Some((group, "children")) => Section::Children(group.to_owned()),
        Some((_, other)) => {
            return Err(ini_error(
                line,
                format!("unknown section type `:{other}` (Ansible knows `:vars` and `:children`)"),
            ));
        }
    })
}

impl AnsibleInventory {
    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_owned()).or_default()
    }

    fn add_host_line(
        &mut self,
        group: &str,
        content: &str,
        line: usize,
    ) -> Result<(), ImportError> {
        let words = split_words(content, line)?;
        let Some((pattern, assignments)) = words.split_first() else {
            return Ok(());
        };
        let (pattern, port) = split_port(pattern);
        let mut vars = Vec::new();
        if let Some(port) = port {
            vars.push(("ansible_port".to_owned(), port.to_owned()));
        }
        for assignment in assignments {
            vars.push(key_value(assignment, line)?);
        }
        for host in expand_range(pattern, line)? {
            if !self.hosts.contains(&host) {
                self.hosts.push(host.clone());
            }
            self.host_vars
                .entry(host.clone())
                .or_default()
                .extend(vars.iter().cloned());
            let members = &mut self.group(group).hosts;
            if !members.contains(&host) {
                members.push(host);
            }
        }
        Ok(())
    }

    /// Every host of `group`, its children's included, in inventory order.
    pub fn members(&self, group: &str) -> Vec<String> {
        let mut found = BTreeSet::new();
        let mut pending = vec![group.to_owned()];
        let mut visited = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !visited.insert(name.clone()) {
                continue;
            }
            if name == "all" {
                found.extend(self.hosts.iter().cloned());
                continue;
            }
            if let Some(group) = self.groups.get(&name) {
                found.extend(group.hosts.iter().cloned());
                pending.extend(group.children.iter().cloned());
            }
        }
        self.hosts
            .iter()
            .filter(|host| found.contains(*host))
            .cloned()
            .collect()
    }

    /// The groups `host` belongs to, shallowest first (Ansible's variable precedence):
    /// `all`, then each group by its depth below `all`, then by name.
    pub fn groups_of(&self, host: &str) -> Vec<String> {
        let depths = self.depths();
        let mut groups: Vec<(usize, &String)> = self
            .groups
            .keys()
            .filter(|name| name.as_str() == "all" || self.members(name).iter().any(|h| h == host))
            .map(|name| (depths.get(name).copied().unwrap_or(1), name))
            .collect();
        groups.sort();
        groups.into_iter().map(|(_, name)| name.clone()).collect()
    }

    fn depths(&self) -> BTreeMap<String, usize> {
        let mut depths: BTreeMap<String, usize> = self
            .groups
            .keys()
            .map(|name| (name.clone(), usize::from(name != "all")))
            .collect();
        // A child sits one level below its deepest parent; bounded so cycles end.
        for _ in 0..self.groups.len() {
            let mut changed = false;
            for (parent, group) in &self.groups {
                let below = depths.get(parent).copied().unwrap_or(1) + 1;
                for child in &group.children {
                    let depth = depths.entry(child.clone()).or_insert(1);
                    if *depth < below {
                        *depth = below;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        depths
    }
}

/// `host:port` in a host pattern; IPv6 addresses keep their colons.
fn split_port(pattern: &str) -> (&str, Option<&str>) {
    match pattern.rsplit_once(':') {
        Some((host, port))
            if !host.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (host, Some(port))
        }
        _ => (pattern, None),
    }
}

/// Expands Ansible host ranges: `node[01:03]` is node01, node02 and node03; `[a:c]` letters.
fn expand_range(pattern: &str, line: usize) -> Result<Vec<String>, ImportError> {
    let Some((head, rest)) = pattern.split_once('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let (range, tail) = rest
        .split_once(']')
        .ok_or_else(|| ini_error(line, format!("unclosed host range in `{pattern}`")))?;
    let bounds: Vec<&str> = range.split(':').collect();
    let (first, last, step) = match bounds.as_slice() {
        [first, last] => (*first, *last, 1),
        [first, last, step] => (
            *first,
            *last,
            step.parse::<usize>()
                .ok()
                .filter(|step| *step > 0)
                .ok_or_else(|| ini_error(line, format!("bad range step in `{pattern}`")))?,
        ),
        _ => return Err(ini_error(line, format!("bad host range in `{pattern}`"))),
    };
    let names = range_items(first, last, step)
        .ok_or_else(|| ini_error(line, format!("bad host range in `{pattern}`")))?;
    let mut hosts = Vec::new();
    for name in names {
        for expanded in expand_range(&format!("{head}{name}{tail}"), line)? {
            hosts.push(expanded);
        }
    }
    Ok(hosts)
}

/// Hosts a range may expand to: enough for any real cluster, few enough to stay small.
const MAX_RANGE_ITEMS: usize = 10_000;

fn range_items(first: &str, last: &str, step: usize) -> Option<Vec<String>> {
    if let (Ok(start), Ok(end)) = (first.parse::<usize>(), last.parse::<usize>()) {
        if end < start || (end - start) / step >= MAX_RANGE_ITEMS {
            return None;
        }
        let width = first.len();
        return Some(
            (start..=end)
                .step_by(step)
                .map(|number| format!("{number:0width$}"))
                .collect(),
        );
    }
    let (&[start], &[end]) = (first.as_bytes(), last.as_bytes()) else {
        return None;
    };
    (start.is_ascii_alphabetic() && end.is_ascii_alphabetic() && start <= end).then(|| {
        (start..=end)
            .step_by(step)
            .map(|letter| char::from(letter).to_string())
            .collect()
    })
}

/// Splits a host line into words as Ansible does (shell-like): quotes group, `#` starts a
/// comment.
fn split_words(content: &str, line: usize) -> Result<Vec<String>, ImportError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in content.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(ini_error(line, "unclosed quote"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn key_value(text: &str, line: usize) -> Result<(String, String), ImportError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| ini_error(line, format!("expected `key=value`, found `{text}`")))?;
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Ok((key.trim().to_owned(), value.to_owned()))
}

fn ini_error(line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Ini {
        line,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBESPRAY: &str = "\
node1 ansible_host=10.0.0.1 ip=10.0.0.1 # a comment
node2 ansible_host=\"10.0.0.2\"

[kube_control_plane]
node1

[etcd]
node1

[kube_node]
node[2:3]

[k8s_cluster:children]
kube_control_plane
kube_node

[k8s_cluster:vars]
kube_pods_subnet = 10.233.64.0/18
";

    #[test]
    fn reads_hosts_groups_children_and_vars() {
        let inventory = parse(KUBESPRAY).unwrap();
        assert_eq!(inventory.hosts, ["node1", "node2", "node3"]);
        assert_eq!(
            inventory.members("k8s_cluster"),
            ["node1", "node2", "node3"]
        );
        assert_eq!(inventory.members("kube_node"), ["node2", "node3"]);
        assert_eq!(
            inventory.host_vars["node2"],
            [("ansible_host".to_owned(), "10.0.0.2".to_owned())]
        );
        assert_eq!(
            inventory.groups["k8s_cluster"].vars,
            [("kube_pods_subnet".to_owned(), "10.233.64.0/18".to_owned())]
        );
    }

    #[test]
    fn orders_groups_by_depth() {
        let inventory = parse(KUBESPRAY).unwrap();
        assert_eq!(
            inventory.groups_of("node1"),
            [
                "all",
                "etcd",
                "k8s_cluster",
                "ungrouped",
                "kube_control_plane"
            ]
        );
    }

    #[test]
    fn expands_ranges_and_ports() {
        assert_eq!(
            expand_range("web[01:03].example.com", 1).unwrap(),
            [
                "web01.example.com",
                "web02.example.com",
                "web03.example.com"
            ]
        );
        assert_eq!(
            expand_range("db-[a:c]", 1).unwrap(),
            ["db-a", "db-b", "db-c"]
        );
        assert_eq!(split_port("node1:2222"), ("node1", Some("2222")));
        assert_eq!(split_port("fd00::1"), ("fd00::1", None));
        assert!(expand_range("n[1:99999999]", 1).is_err());
    }

    #[test]
    fn reports_the_line_of_a_mistake() {
        let error = parse("[group:hosts]\n").unwrap_err();
        assert!(matches!(error, ImportError::Ini { line: 1, .. }));
        let error = parse("[all:vars]\njust_a_word\n").unwrap_err();
        assert!(matches!(error, ImportError::Ini { line: 2, .. }));
    }
}
