//! `Hostname`: the kernel's host name and /etc/hostname. The name is set with
//! `hostnamectl` where it works, `hostname` otherwise; /etc/hostname is rewritten in place
//! (lab nodes have it bind-mounted), its previous content kept as a backup.

use async_trait::async_trait;
use metalk8s_model::plan::HostnameResource;
use metalk8s_transport::Host;

use super::file::BACKUP_SUFFIX;
use super::shell::{self, FileState, Probe, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

const HOSTNAME_FILE: &str = "/etc/hostname";

/// The kernel's host name (of the node's UTS namespace), what `hostname` prints; read as a
/// file, it costs no process on the node.
const KERNEL_HOSTNAME: &str = "/proc/sys/kernel/hostname";

pub(crate) struct Hostname<'a>(pub(crate) &'a HostnameResource);

impl Hostname<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        let name = &self.0.name;
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(shell::invalid(format!("{name:?} is not a valid host name")));
        }
        Ok(())
    }
}

#[async_trait]
impl Apply for Hostname<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        self.check()?;
        let sections = shell::run_probe(
            host,
            &Probe::new()
                .contents("live", KERNEL_HOSTNAME)
                .file("file", HOSTNAME_FILE),
            "the host name",
        )
        .await?;
        let want = &self.0.name;
        let mut changes = Vec::new();
        let live = sections.get("live").trim();
        if live != want {
            changes.push(Change::new(format!("hostname is {live}, want {want}")));
        }
        match sections.file("file", HOSTNAME_FILE)? {
            FileState::Absent => {
                changes.push(Change::new(format!("{HOSTNAME_FILE} does not exist")));
            }
            FileState::Present { content, .. } if content.trim() != want => {
                changes.push(Change::new(format!(
                    "{HOSTNAME_FILE} says {}, want {want}",
                    content.trim()
                )));
            }
            FileState::Present { .. } => {}
        }
        Ok(Observation { changes })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        self.check()?;
        // One script that does only what differs; /etc/hostname is written through a
        // possible bind mount (hostnamectl may already have written it).
        let script = format!(
            r#"set -e
name={name}
if [ "$(hostname)" != "$name" ]; then
  if ! {{ command -v hostnamectl >/dev/null 2>&1 && hostnamectl set-hostname "$name" 2>/dev/null; }}; then
    hostname "$name"
  fi
fi
file={HOSTNAME_FILE}
if [ "$(cat "$file" 2>/dev/null)" != "$name" ]; then
  if [ -e "$file" ]; then cp -p -- "$file" "$file{BACKUP_SUFFIX}"; fi
  printf '%s\n' "$name" > "$file"
fi"#,
            name = quote(&self.0.name),
        );
        shell::run_checked(host, &shell::root(&script), || {
            format!("setting the host name to {}", self.0.name)
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;
    use crate::resources::shell::{file_section, probe_output};

    fn host_with(live: &str, file: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[("live", live), ("file", file)])),
            )
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn same_name_is_converged() {
        let resource = HostnameResource {
            name: "node1".into(),
        };
        let host = host_with("node1\n", &file_section(0o644, "root", "root", "node1\n"));
        let observed = Hostname(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        assert_eq!(host.scripts().len(), 1);
    }

    #[tokio::test]
    async fn other_name_is_set_live_and_in_the_file_in_place() {
        let resource = HostnameResource {
            name: "cp-1".into(),
        };
        let host = host_with(
            "localhost\n",
            &file_section(0o644, "root", "root", "localhost\n"),
        );
        let observed = Hostname(&resource).observe(&host).await.unwrap();
        let summaries: Vec<_> = observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "hostname is localhost, want cp-1",
                "/etc/hostname says localhost, want cp-1"
            ]
        );
        Hostname(&resource).apply(&host, &observed).await.unwrap();
        let apply = host.commands().pop().unwrap();
        assert!(apply.become_root);
        assert!(apply.script.contains("name=cp-1"));
        assert!(apply.script.contains("hostname \"$name\""));
        assert!(apply.script.contains("> \"$file\""), "written in place");
        assert!(!apply.script.contains("mv "), "never renamed over");
    }

    #[tokio::test]
    async fn invalid_names_are_rejected() {
        let resource = HostnameResource {
            name: "bad name;".into(),
        };
        let host = host_with("", "absent\n");
        let error = Hostname(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
    }
}
