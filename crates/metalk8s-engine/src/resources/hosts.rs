//! `HostsEntries`: a block of /etc/hosts between `# BEGIN metalk8s managed` and
//! `# END metalk8s managed`; the lines outside it are kept as they are. The file is
//! written like any other (a backup, then an atomic rename) and in place where it is a
//! bind mount, as docker makes it in lab nodes.

use async_trait::async_trait;
use metalk8s_model::plan::HostsEntriesResource;
use metalk8s_transport::Host;

use super::file::DesiredFile;
use super::shell::{self, FileState};
use crate::resource::{Apply, Observation, ResourceError};

const HOSTS: &str = "/etc/hosts";
const BEGIN: &str = "# BEGIN metalk8s managed";
const END: &str = "# END metalk8s managed";

pub(crate) struct HostsEntries<'a>(pub(crate) &'a HostsEntriesResource);

impl HostsEntries<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        for entry in &self.0.entries {
            shell::check_word("hosts entry address", &entry.ip)?;
            if entry.names.is_empty() {
                return Err(shell::invalid(format!(
                    "hosts entry {} has no name",
                    entry.ip
                )));
            }
            for name in &entry.names {
                shell::check_word("hosts entry name", name)?;
            }
        }
        Ok(())
    }

    fn block(&self) -> String {
        let mut block = format!("{BEGIN}\n");
        for entry in &self.0.entries {
            block.push_str(&format!("{} {}\n", entry.ip, entry.names.join(" ")));
        }
        block.push_str(END);
        block.push('\n');
        block
    }

    /// `current` with the managed block replaced, or appended when there is none.
    fn edited(&self, current: &str) -> Result<String, ResourceError> {
        let lines: Vec<&str> = current.split_inclusive('\n').collect();
        let is = |line: &str, mark: &str| line.trim_end() == mark;
        let begin = lines.iter().position(|line| is(line, BEGIN));
        let end = lines.iter().position(|line| is(line, END));
        let (before, after) = match (begin, end) {
            (Some(begin), Some(end)) if begin < end => (&lines[..begin], &lines[end + 1..]),
            (None, None) => (&lines[..], &lines[lines.len()..]),
            _ => {
                return Err(shell::invalid(format!(
                    "{HOSTS} has a `{BEGIN}` line without its `{END}` line (or the other way round); fix it by hand"
                )));
            }
        };
        let mut edited: String = before.concat();
        if !edited.is_empty() && !edited.ends_with('\n') {
            edited.push('\n');
        }
        edited.push_str(&self.block());
        edited.push_str(&after.concat());
        Ok(edited)
    }

    async fn desired_content(&self, host: &dyn Host) -> Result<(String, FileState), ResourceError> {
        self.check()?;
        let probe = DesiredFile::root(HOSTS, "", 0o644);
        let state = probe.read(host).await?;
        let content = self.edited(state.content().unwrap_or(""))?;
        Ok((content, state))
    }
}

/// The hosts file keeps its mode; a new one gets 0644.
fn desired<'a>(content: &'a str, state: &FileState) -> DesiredFile<'a> {
    DesiredFile::root(HOSTS, content, state.mode().unwrap_or(0o644))
}

#[async_trait]
impl Apply for HostsEntries<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let (content, state) = self.desired_content(host).await?;
        let mut changes = desired(&content, &state).changes(&state)?;
        for change in &mut changes {
            if change.diff.is_some() {
                change.summary = if state.content().unwrap_or("").contains(BEGIN) {
                    "the metalk8s block of /etc/hosts differs".to_owned()
                } else {
                    "/etc/hosts has no metalk8s block".to_owned()
                };
            }
        }
        Ok(Observation { changes })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let (content, state) = self.desired_content(host).await?;
        desired(&content, &state).converge(host, &state).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use metalk8s_model::plan::HostsEntry;
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;
    use crate::resources::shell::{file_section, probe_output};

    fn entries() -> HostsEntriesResource {
        HostsEntriesResource {
            entries: vec![
                HostsEntry {
                    ip: "10.0.0.1".into(),
                    names: vec!["node1".into(), "node1.lab".into()],
                },
                HostsEntry {
                    ip: "10.0.0.2".into(),
                    names: vec!["node2".into()],
                },
            ],
        }
    }

    const BLOCK: &str = "# BEGIN metalk8s managed\n10.0.0.1 node1 node1.lab\n10.0.0.2 node2\n# END metalk8s managed\n";

    fn host_with(content: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[(
                    "file",
                    &file_section(0o644, "root", "root", content),
                )])),
            )
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn block_in_place_is_converged() {
        let current = format!("127.0.0.1 localhost\n{BLOCK}::1 localhost\n");
        let host = host_with(&current);
        let observed = HostsEntries(&entries()).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
    }

    #[tokio::test]
    async fn missing_block_is_appended_keeping_other_lines() {
        let host = host_with("127.0.0.1 localhost\n172.30.0.2 node1");
        let observed = HostsEntries(&entries()).observe(&host).await.unwrap();
        assert_eq!(observed.changes.len(), 1);
        assert_eq!(
            observed.changes[0].summary,
            "/etc/hosts has no metalk8s block"
        );
        assert!(
            observed.changes[0]
                .diff
                .as_deref()
                .unwrap()
                .contains("+10.0.0.2 node2")
        );
        HostsEntries(&entries())
            .apply(&host, &observed)
            .await
            .unwrap();
        let write = host
            .commands()
            .into_iter()
            .find(|c| c.stdin.is_some())
            .unwrap();
        assert_eq!(
            String::from_utf8(write.stdin.unwrap()).unwrap(),
            format!("127.0.0.1 localhost\n172.30.0.2 node1\n{BLOCK}")
        );
    }

    #[tokio::test]
    async fn stale_block_is_replaced_where_it_is() {
        let current = "127.0.0.1 localhost\n# BEGIN metalk8s managed\n10.0.0.9 old\n# END metalk8s managed\n::1 localhost\n";
        let host = host_with(current);
        let observed = HostsEntries(&entries()).observe(&host).await.unwrap();
        assert_eq!(
            observed.changes[0].summary,
            "the metalk8s block of /etc/hosts differs"
        );
        HostsEntries(&entries())
            .apply(&host, &observed)
            .await
            .unwrap();
        let write = host
            .commands()
            .into_iter()
            .find(|c| c.stdin.is_some())
            .unwrap();
        assert_eq!(
            String::from_utf8(write.stdin.unwrap()).unwrap(),
            format!("127.0.0.1 localhost\n{BLOCK}::1 localhost\n")
        );
    }

    #[tokio::test]
    async fn bind_mounted_hosts_is_rewritten_in_place() {
        let host = RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[(
                    "file",
                    &file_section(0o644, "root", "root", "127.0.0.1 localhost\n"),
                )])),
            )
            .on(
                "mv -fT",
                Output::failed(
                    1,
                    "mv: cannot move 'x' to '/etc/hosts': Device or resource busy",
                ),
            )
            .otherwise(Output::ok(""));
        HostsEntries(&entries())
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap();
        let in_place = host.commands().pop().unwrap();
        assert!(in_place.script.contains("cat > \"$target\""));
        assert_eq!(
            String::from_utf8(in_place.stdin.unwrap()).unwrap(),
            format!("127.0.0.1 localhost\n{BLOCK}")
        );
    }

    #[tokio::test]
    async fn unbalanced_markers_are_invalid() {
        let host = host_with("# BEGIN metalk8s managed\n10.0.0.1 x\n");
        let error = HostsEntries(&entries()).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
    }
}
