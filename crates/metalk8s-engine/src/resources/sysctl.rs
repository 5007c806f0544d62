//! `Sysctl`: kernel parameters persisted in a file under /etc/sysctl.d and set live.
//!
//! Values are set live first and persisted only once the kernel took them all: a value the
//! kernel refuses fails the step with the file left as it was (and the values already set
//! by that step put back), so that it is never applied, and refused, again at every boot.
//!
//! What cannot be set live is `Unsupported`: a key whose /proc/sys entry does not exist
//! (its module is not loaded: `/proc/sys/net/bridge` without br_netfilter), or a value that
//! differs while /proc/sys is read-only (a container). The file is persisted regardless
//! (those values cannot be tried; the inventory checks their shape): when that is the only
//! problem, `observe` returns the `Unsupported` error; otherwise it reports the changes
//! (the unsupported part among them) and `apply` sets what it can, writes the file, then
//! returns the `Unsupported` error. A re-run says the same until the host can take the
//! values, so a step never reads as converged while a value is not live.

use std::collections::BTreeMap;

use async_trait::async_trait;
use metalk8s_model::plan::SysctlResource;
use metalk8s_transport::Host;

use super::file::DesiredFile;
use super::shell::{self, FileState, Probe, Sections, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

const HEADER: &str =
    "# Kernel parameters managed by metalk8s: changes made here are overwritten.\n";

pub(crate) struct Sysctl<'a>(pub(crate) &'a SysctlResource);

/// A key as the host has it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Live {
    Writable(String),
    ReadOnly(String),
    /// `path` is the first missing component of the key's /proc/sys path.
    Missing {
        path: String,
    },
}

/// What observe and apply both need: what differs and what cannot be helped.
struct Assessment<'a> {
    file_changes: Vec<Change>,
    /// Keys to set live, with their current values.
    to_set: Vec<(&'a str, &'a str, String)>,
    /// Why some keys cannot be set live.
    unsupported: Option<String>,
}

impl Sysctl<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        shell::check_path("sysctl file", &self.0.file)?;
        if self.0.values.is_empty() {
            return Err(shell::invalid(format!(
                "sysctl file {} sets no parameter",
                self.0.file
            )));
        }
        for (key, value) in &self.0.values {
            let valid_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
            if key.is_empty()
                || !key.chars().all(valid_char)
                || key.split(['.', '/']).any(str::is_empty)
            {
                return Err(shell::invalid(format!("{key:?} is not a sysctl key")));
            }
            if value.contains(|c: char| c.is_control() && c != '\t') {
                return Err(shell::invalid(format!(
                    "the value of sysctl {key} has a line break or a control character"
                )));
            }
        }
        Ok(())
    }

    fn content(&self) -> String {
        let mut content = HEADER.to_owned();
        for (key, value) in &self.0.values {
            content.push_str(&format!("{key} = {value}\n"));
        }
        content
    }

    async fn read(
        &self,
        host: &dyn Host,
    ) -> Result<(FileState, BTreeMap<String, Live>), ResourceError> {
        self.check()?;
        let mut probe = Probe::new().file("file", &self.0.file);
        for key in self.0.values.keys() {
            probe = probe.section(&format!("key {key}"), &key_body(key));
        }
        let paths: Vec<String> = self.0.values.keys().map(|k| quote(&proc_path(k))).collect();
        let sections = shell::run_probe(
            host,
            &probe.section("values", &values_body(&paths)),
            "kernel parameters",
        )
        .await?;
        let file = sections.file("file", &self.0.file)?;
        let values = parse_values(sections.get("values"));
        let mut live = BTreeMap::new();
        for key in self.0.values.keys() {
            live.insert(key.clone(), parse_live(&sections, &values, key)?);
        }
        Ok((file, live))
    }

    fn assess<'a>(
        &'a self,
        desired: &DesiredFile<'_>,
        file: &FileState,
        live: &BTreeMap<String, Live>,
    ) -> Result<Assessment<'a>, ResourceError> {
        let mut to_set = Vec::new();
        let mut read_only = Vec::new();
        let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, want) in &self.0.values {
            match &live[key] {
                Live::Writable(current) if normalise(current) != normalise(want) => {
                    to_set.push((key.as_str(), want.as_str(), normalise(current)));
                }
                Live::ReadOnly(current) if normalise(current) != normalise(want) => {
                    read_only.push(format!(
                        "{key} is {}, want {}",
                        normalise(current),
                        normalise(want)
                    ));
                }
                Live::Missing { path } => missing.entry(path).or_default().push(key),
                Live::Writable(_) | Live::ReadOnly(_) => {}
            }
        }
        let mut reasons = Vec::new();
        for (path, keys) in &missing {
            reasons.push(format!(
                "{} cannot be set: {path} does not exist: {}",
                keys.join(", "),
                missing_hint(path, keys)
            ));
        }
        if !read_only.is_empty() {
            reasons.push(format!(
                "{} but /proc/sys is read-only on this host (a container?)",
                read_only.join(", ")
            ));
        }
        let unsupported = (!reasons.is_empty())
            .then(|| format!("{} (persisted in {})", reasons.join("; "), self.0.file));
        Ok(Assessment {
            file_changes: desired.named_changes(file)?,
            to_set,
            unsupported,
        })
    }
}

/// Prints `rw` or `ro` for a key that exists, `missing PATH` with the first missing
/// component of its path otherwise; shell builtins only.
fn key_body(key: &str) -> String {
    let path = proc_path(key);
    let mut ancestors = Vec::new();
    let mut prefix = String::from("/proc/sys");
    for part in path.trim_start_matches("/proc/sys/").split('/') {
        prefix.push('/');
        prefix.push_str(part);
        ancestors.push(quote(&prefix));
    }
    format!(
        r#"p={p}
if [ -w "$p" ]; then echo rw
elif [ -e "$p" ]; then echo ro
else
  for a in {ancestors}; do if [ ! -e "$a" ]; then echo "missing $a"; break; fi; done
fi"#,
        p = quote(&path),
        ancestors = ancestors.join(" "),
    )
}

/// Prints `PATH:VALUE` lines for the keys that exist, with one process for them all. Not
/// the shell's `read`: /proc/sys answers its one-byte reads with the first byte only.
fn values_body(paths: &[String]) -> String {
    format!(
        r#"set --
for p in {}; do if [ -e "$p" ]; then set -- "$@" "$p"; fi; done
if [ $# -gt 0 ]; then grep -H '' -- "$@" 2>/dev/null || true; fi"#,
        paths.join(" ")
    )
}

/// The values by /proc/sys path; a value on several lines is joined by spaces.
fn parse_values(section: &str) -> BTreeMap<&str, String> {
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for line in section.lines() {
        if let Some((path, value)) = line.split_once(':') {
            let joined = values.entry(path).or_default();
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(value);
        }
    }
    values
}

fn parse_live(
    sections: &Sections,
    values: &BTreeMap<&str, String>,
    key: &str,
) -> Result<Live, ResourceError> {
    let section = sections.get(&format!("key {key}"));
    let line = section.lines().next().unwrap_or("");
    let (state, rest) = line.split_once(' ').unwrap_or((line, ""));
    let value = || {
        values
            .get(proc_path(key).as_str())
            .cloned()
            .unwrap_or_default()
    };
    match state {
        "rw" => Ok(Live::Writable(value())),
        "ro" => Ok(Live::ReadOnly(value())),
        "missing" => Ok(Live::Missing {
            path: rest.to_owned(),
        }),
        _ => Err(ResourceError::Command {
            what: format!("reading kernel parameter {key}"),
            status: 0,
            stderr: format!("unexpected output: {section:?}"),
        }),
    }
}

/// The /proc/sys path of a key; like sysctl(8), a key with `/` in it (a VLAN interface,
/// `net.ipv4.conf.eth0/100.rp_filter`) has its `.` and `/` swapped.
fn proc_path(key: &str) -> String {
    let relative: String = if key.contains('/') {
        key.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    } else {
        key.replace('.', "/")
    };
    format!("/proc/sys/{relative}")
}

/// Multi-value keys read back with tabs (`32768\t60999`).
fn normalise(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sets each `(key, wanted, current)` live, in order. When the kernel refuses one, the
/// keys set before it get their current values back, in reverse order, and the script
/// fails naming the refused value.
fn set_live_script(to_set: &[(&str, &str, String)]) -> String {
    let mut script = String::new();
    for (index, (key, want, _)) in to_set.iter().enumerate() {
        script.push_str(&format!(
            "if ! sysctl -q -w {}; then\n",
            quote(&format!("{key}={want}"))
        ));
        for (earlier, _, current) in to_set[..index].iter().rev() {
            script.push_str(&format!(
                "  sysctl -q -w {} || true\n",
                quote(&format!("{earlier}={current}"))
            ));
        }
        script.push_str(&format!(
            "  echo {} >&2\n  exit 1\nfi\n",
            quote(&format!("the kernel refused {key} = {want}"))
        ));
    }
    script
}

fn missing_hint(path: &str, keys: &[&str]) -> &'static str {
    match path {
        "/proc/sys/net/bridge" => "is br_netfilter loaded?",
        "/proc/sys/net/netfilter" => "is nf_conntrack loaded?",
        "/proc/sys/net/ipv4/vs" => "is ip_vs loaded?",
        _ if keys.len() == 1 && proc_path(keys[0]) == path => "this kernel does not have it",
        _ => "is the module that provides it loaded?",
    }
}

#[async_trait]
impl Apply for Sysctl<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let (file, live) = self.read(host).await?;
        let content = self.content();
        let desired = DesiredFile::root(&self.0.file, &content, 0o644);
        let assessment = self.assess(&desired, &file, &live)?;
        let mut changes = assessment.file_changes;
        changes.extend(assessment.to_set.iter().map(|(key, want, current)| {
            Change::new(format!("{key} is {current}, want {}", normalise(want)))
        }));
        match assessment.unsupported {
            Some(reason) if changes.is_empty() => Err(ResourceError::Unsupported(reason)),
            Some(reason) => {
                changes.push(Change::new(reason));
                Ok(Observation { changes })
            }
            None => Ok(Observation { changes }),
        }
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let (file, live) = self.read(host).await?;
        let content = self.content();
        let desired = DesiredFile::root(&self.0.file, &content, 0o644);
        let assessment = self.assess(&desired, &file, &live)?;
        if !assessment.to_set.is_empty() {
            let keys: Vec<&str> = assessment.to_set.iter().map(|(key, ..)| *key).collect();
            let script = set_live_script(&assessment.to_set);
            shell::run_checked(host, &shell::root(&script), || {
                format!(
                    "setting {} ({} is left as it was)",
                    keys.join(", "),
                    self.0.file
                )
            })
            .await?;
        }
        desired.converge(host, &file).await?;
        match assessment.unsupported {
            Some(reason) => Err(ResourceError::Unsupported(reason)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;
    use crate::resources::shell::{file_section, probe_output};

    const FILE: &str = "/etc/sysctl.d/90-metalk8s.conf";

    fn resource(values: &[(&str, &str)]) -> SysctlResource {
        SysctlResource {
            file: FILE.into(),
            values: values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// `keys`: `rw VALUE`, `ro VALUE` or `missing PATH` for each key.
    fn host_with(file: &str, keys: &[(&str, &str)]) -> RecordingHost {
        let mut sections = vec![("file".to_owned(), file.to_owned())];
        let mut values = String::new();
        for (key, live) in keys {
            let (state, rest) = live.split_once(' ').unwrap();
            if state == "missing" {
                sections.push((format!("key {key}"), format!("{live}\n")));
            } else {
                sections.push((format!("key {key}"), format!("{state}\n")));
                values.push_str(&format!("{}:{rest}\n", proc_path(key)));
            }
        }
        sections.push(("values".to_owned(), values));
        let borrowed: Vec<(&str, &str)> = sections
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect();
        RecordingHost::new("node1")
            .on("@@metalk8s", Output::ok(probe_output(&borrowed)))
            .otherwise(Output::ok(""))
    }

    fn persisted(resource: &SysctlResource) -> String {
        file_section(0o644, "root", "root", &Sysctl(resource).content())
    }

    fn summaries(observed: &Observation) -> Vec<&str> {
        observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect()
    }

    #[test]
    fn file_is_sorted_with_a_header() {
        let resource = resource(&[("vm.swappiness", "0"), ("net.ipv4.ip_forward", "1")]);
        assert_eq!(
            Sysctl(&resource).content(),
            format!("{HEADER}net.ipv4.ip_forward = 1\nvm.swappiness = 0\n")
        );
    }

    #[test]
    fn values_on_several_lines_are_joined() {
        let values = parse_values("/proc/sys/a/b:1\n/proc/sys/c:x y\n/proc/sys/c:z\n");
        assert_eq!(values["/proc/sys/a/b"], "1");
        assert_eq!(values["/proc/sys/c"], "x y z");
    }

    #[test]
    fn keys_map_to_proc_sys_paths() {
        assert_eq!(
            proc_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            proc_path("net.ipv4.conf.eth0/100.rp_filter"),
            "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
        );
    }

    #[tokio::test]
    async fn persisted_and_live_is_converged_with_multi_value_whitespace() {
        let resource = resource(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ip_local_port_range", "32768 60999"),
        ]);
        let host = host_with(
            &persisted(&resource),
            &[
                ("net.ipv4.ip_forward", "rw 1 "),
                ("net.ipv4.ip_local_port_range", "rw 32768\t60999 "),
            ],
        );
        let observed = Sysctl(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        assert_eq!(host.scripts().len(), 1);
    }

    #[tokio::test]
    async fn drifted_value_and_file_are_fixed() {
        let resource = resource(&[("net.ipv4.ip_forward", "1")]);
        let host = host_with("absent\n", &[("net.ipv4.ip_forward", "rw 0 ")]);
        let observed = Sysctl(&resource).observe(&host).await.unwrap();
        assert_eq!(
            summaries(&observed),
            [
                "/etc/sysctl.d/90-metalk8s.conf: file does not exist",
                "net.ipv4.ip_forward is 0, want 1"
            ]
        );
        Sysctl(&resource).apply(&host, &observed).await.unwrap();
        let commands = host.commands();
        // Set live first, persisted after.
        let set = &commands[commands.len() - 2];
        assert!(
            set.script.contains("sysctl -q -w net.ipv4.ip_forward=1"),
            "{}",
            set.script
        );
        let write = commands.last().unwrap();
        assert_eq!(
            write.stdin.as_deref(),
            Some(Sysctl(&resource).content().as_bytes())
        );
    }

    #[tokio::test]
    async fn a_value_the_kernel_refuses_is_never_persisted() {
        let resource = resource(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ip_local_port_range", "32768 60999; x"),
        ]);
        let previous = "# Kernel parameters managed by metalk8s\nnet.ipv4.ip_forward = 0\n";
        let host = host_with(
            &file_section(0o644, "root", "root", previous),
            &[
                ("net.ipv4.ip_forward", "rw 0"),
                ("net.ipv4.ip_local_port_range", "rw 32768\t60999"),
            ],
        )
        .on(
            "sysctl -q -w",
            Output::failed(
                1,
                "sysctl: setting key \"net.ipv4.ip_local_port_range\": Invalid argument\nthe kernel refused net.ipv4.ip_local_port_range = 32768 60999; x\n",
            ),
        );
        let observed = Sysctl(&resource).observe(&host).await.unwrap();
        let error = Sysctl(&resource).apply(&host, &observed).await.unwrap_err();
        let ResourceError::Command { what, stderr, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(
            what.contains("/etc/sysctl.d/90-metalk8s.conf is left as it was"),
            "{what}"
        );
        assert!(stderr.contains("the kernel refused"), "{stderr}");
        assert!(
            host.commands()
                .iter()
                .all(|command| command.stdin.is_none()),
            "the file was written: {:?}",
            host.commands()
        );
    }

    /// Runs the set script with a `sysctl` that records its arguments and refuses values
    /// holding `;`, as the kernel does for a port range.
    fn run_set_script(to_set: &[(&str, &str, String)]) -> (bool, Vec<String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let fake = dir.path().join("sysctl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$3\" >> {}\ncase \"$3\" in *\\;*) echo refused >&2; exit 255;; esac\n",
                log.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&fake)
            .status()
            .unwrap();
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(set_live_script(to_set))
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        (
            output.status.success(),
            calls,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    #[test]
    fn a_refused_value_puts_back_the_values_set_before_it() {
        let (ok, calls, stderr) = run_set_script(&[
            ("vm.swappiness", "10", "60".to_owned()),
            ("kernel.pid_max", "4194304", "32768".to_owned()),
            (
                "net.ipv4.ip_local_port_range",
                "1 2; x",
                "32768 60999".to_owned(),
            ),
            ("vm.max_map_count", "262144", "65530".to_owned()),
        ]);
        assert!(!ok);
        assert_eq!(
            calls,
            [
                "vm.swappiness=10",
                "kernel.pid_max=4194304",
                "net.ipv4.ip_local_port_range=1 2; x",
                "kernel.pid_max=32768",
                "vm.swappiness=60",
            ]
        );
        assert!(
            stderr.contains("the kernel refused net.ipv4.ip_local_port_range = 1 2; x"),
            "{stderr}"
        );
        let (ok, calls, _) = run_set_script(&[
            ("vm.swappiness", "10", "60".to_owned()),
            (
                "net.ipv4.ip_local_port_range",
                "1024 65000",
                "32768 60999".to_owned(),
            ),
        ]);
        assert!(ok);
        assert_eq!(
            calls,
            [
                "vm.swappiness=10",
                "net.ipv4.ip_local_port_range=1024 65000"
            ]
        );
    }

    #[tokio::test]
    async fn only_live_drift_does_not_rewrite_the_file() {
        let resource = resource(&[("net.ipv4.ip_forward", "1")]);
        let host = host_with(&persisted(&resource), &[("net.ipv4.ip_forward", "rw 0 ")]);
        Sysctl(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap();
        assert!(host.commands().iter().all(|c| c.stdin.is_none()));
        assert!(host.scripts().last().unwrap().contains("sysctl -q -w"));
    }

    #[tokio::test]
    async fn missing_bridge_keys_alone_are_unsupported_naming_br_netfilter() {
        let resource = resource(&[
            ("net.bridge.bridge-nf-call-iptables", "1"),
            ("net.ipv4.ip_forward", "1"),
        ]);
        let host = host_with(
            &persisted(&resource),
            &[
                (
                    "net.bridge.bridge-nf-call-iptables",
                    "missing /proc/sys/net/bridge",
                ),
                ("net.ipv4.ip_forward", "rw 1"),
            ],
        );
        let error = Sysctl(&resource).observe(&host).await.unwrap_err();
        let ResourceError::Unsupported(reason) = &error else {
            panic!("{error:?}")
        };
        assert!(
            reason.contains("net.bridge.bridge-nf-call-iptables"),
            "{reason}"
        );
        assert!(
            reason.contains("/proc/sys/net/bridge does not exist: is br_netfilter loaded?"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn missing_key_with_a_stale_file_persists_the_file_then_is_unsupported() {
        let resource = resource(&[("net.bridge.bridge-nf-call-iptables", "1")]);
        let host = host_with(
            "absent\n",
            &[(
                "net.bridge.bridge-nf-call-iptables",
                "missing /proc/sys/net/bridge",
            )],
        );
        let observed = Sysctl(&resource).observe(&host).await.unwrap();
        assert_eq!(observed.changes.len(), 2, "{observed:?}");
        let error = Sysctl(&resource).apply(&host, &observed).await.unwrap_err();
        assert!(matches!(error, ResourceError::Unsupported(_)), "{error:?}");
        assert_eq!(
            host.commands().last().unwrap().stdin.as_deref(),
            Some(Sysctl(&resource).content().as_bytes()),
            "the file was written"
        );
        assert!(!host.scripts().iter().any(|s| s.contains("sysctl -q -w")));
    }

    #[tokio::test]
    async fn read_only_proc_sys_is_unsupported() {
        let resource = resource(&[("net.ipv4.ip_forward", "1")]);
        let host = host_with(&persisted(&resource), &[("net.ipv4.ip_forward", "ro 0")]);
        let error = Sysctl(&resource).observe(&host).await.unwrap_err();
        let ResourceError::Unsupported(reason) = &error else {
            panic!("{error:?}")
        };
        assert!(
            reason.contains("net.ipv4.ip_forward is 0, want 1"),
            "{reason}"
        );
        assert!(reason.contains("/proc/sys is read-only"), "{reason}");
    }

    #[tokio::test]
    async fn read_only_but_matching_is_converged() {
        let resource = resource(&[("net.ipv4.ip_forward", "1")]);
        let host = host_with(&persisted(&resource), &[("net.ipv4.ip_forward", "ro 1")]);
        assert!(
            Sysctl(&resource)
                .observe(&host)
                .await
                .unwrap()
                .is_converged()
        );
    }

    /// The file as systemd-sysctl and `sysctl --system` read it: `#` and `;` comment lines,
    /// `key = value` with blanks around both trimmed.
    fn read_back(content: &str) -> BTreeMap<String, String> {
        content
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with(['#', ';']))
            .map(|line| {
                let (key, value) = line.split_once('=').expect("a key = value line");
                (key.trim().to_owned(), value.trim().to_owned())
            })
            .collect()
    }

    /// Whatever the inventory accepts as a sysctl value is written on one line and read
    /// back unchanged; the hostile values it refuses never reach this resource.
    #[test]
    fn accepted_values_read_back_from_the_file() {
        let hostile = [
            "1",
            "-1",
            "32768 60999",
            "4096\t87380 6291456",
            "30000-32767,8080",
            "bbr",
            "32768 60999; x",
            "1\nkernel.core_pattern = |/tmp/x",
            "1 # comment",
            "a=b",
            " 1",
            "\"1\"",
            "1\r",
            "%n",
            "x\u{2028}y",
        ];
        let mut accepted = 0;
        for value in hostile {
            let inventory = format!(
                "apiVersion: metalk8s.io/v1alpha1\nkind: Inventory\nname: demo\nnetworks: {{controlPlane: [10.0.0.0/24], workloadPlane: [10.0.0.0/24]}}\nos: {{sysctls: {{net.core.somaxconn: {}}}}}\nnodes: [{{name: n, address: 10.0.0.1, roles: [bootstrap, etcd, control-plane, worker]}}]\n",
                serde_json::to_string(value).unwrap()
            );
            let Ok(inventory) = metalk8s_inventory::parse("x.yaml", &inventory) else {
                continue;
            };
            accepted += 1;
            let values = inventory.os.sysctls;
            let resource = SysctlResource {
                file: FILE.into(),
                values: values.clone(),
            };
            Sysctl(&resource).check().unwrap();
            let read = read_back(&Sysctl(&resource).content());
            let want: BTreeMap<String, String> = values
                .iter()
                .map(|(key, value)| (key.clone(), normalise(value)))
                .collect();
            let read: BTreeMap<String, String> = read
                .iter()
                .map(|(key, value)| (key.clone(), normalise(value)))
                .collect();
            assert_eq!(read, want, "{value:?}");
        }
        assert_eq!(accepted, 7);
    }

    #[tokio::test]
    async fn invalid_keys_are_rejected() {
        let resource = resource(&[("net..x; reboot", "1")]);
        let host = host_with("absent\n", &[]);
        let error = Sysctl(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
        assert!(host.commands().is_empty());
    }
}
