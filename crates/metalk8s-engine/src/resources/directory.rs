//! `Directory`: exists, with a mode, owner and group.

use async_trait::async_trait;
use metalk8s_model::plan::DirectoryResource;
use metalk8s_transport::Host;

use super::file::{metadata_changes, metadata_script};
use super::shell::{self, FileKind, FileState, Probe, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

pub(crate) struct Directory<'a>(pub(crate) &'a DirectoryResource);

impl Directory<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        shell::check_path("directory path", &self.0.path)?;
        shell::check_word("directory owner", &self.0.owner)?;
        shell::check_word("directory group", &self.0.group)?;
        if self.0.mode > 0o7777 {
            return Err(shell::invalid(format!(
                "directory mode {:o} of {} is not a permission mode",
                self.0.mode, self.0.path
            )));
        }
        Ok(())
    }

    async fn read(&self, host: &dyn Host) -> Result<FileState, ResourceError> {
        self.check()?;
        shell::run_probe(
            host,
            &Probe::new().metadata("dir", &self.0.path),
            &self.0.path,
        )
        .await?
        .file("dir", &self.0.path)
    }

    fn changes(&self, state: &FileState) -> Result<Vec<Change>, ResourceError> {
        let wanted = self.0;
        match state {
            FileState::Absent => Ok(vec![Change::new("directory does not exist")]),
            FileState::Present {
                kind: FileKind::Directory,
                mode,
                owner,
                group,
                ..
            } => Ok(metadata_changes(
                *mode,
                owner,
                group,
                wanted.mode,
                &wanted.owner,
                &wanted.group,
            )),
            FileState::Present { kind, .. } => {
                let kind = match kind {
                    FileKind::Other(kind) => kind.as_str(),
                    _ => "regular file",
                };
                Err(shell::invalid(format!(
                    "{} is a {kind}, want a directory",
                    wanted.path
                )))
            }
        }
    }
}

#[async_trait]
impl Apply for Directory<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let state = self.read(host).await?;
        Ok(Observation {
            changes: self.changes(&state)?,
        })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let state = self.read(host).await?;
        if self.changes(&state)?.is_empty() {
            return Ok(());
        }
        let wanted = self.0;
        let script = match &state {
            FileState::Present {
                mode, owner, group, ..
            } => metadata_script(
                &wanted.path,
                *mode,
                owner,
                group,
                wanted.mode,
                &wanted.owner,
                &wanted.group,
            ),
            FileState::Absent => format!(
                "set -e\nmkdir -p -- {path}\nchown -- {owner} {path}\nchmod {mode:04o} {path}",
                path = quote(&wanted.path),
                owner = quote(&format!("{}:{}", wanted.owner, wanted.group)),
                mode = wanted.mode,
            ),
        };
        shell::run_checked(host, &shell::root(&script), || {
            format!("creating directory {}", wanted.path)
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
    use crate::resources::shell::probe_output;

    fn resource() -> DirectoryResource {
        DirectoryResource {
            path: "/var/lib/etcd".into(),
            mode: 0o700,
            owner: "etcd".into(),
            group: "etcd".into(),
        }
    }

    fn host_with(section: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on("@@metalk8s", Output::ok(probe_output(&[("dir", section)])))
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn matching_directory_is_converged() {
        let resource = resource();
        let host = host_with("700 etcd etcd directory\n");
        let observed = Directory(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        assert_eq!(host.commands().len(), 1);
    }

    #[tokio::test]
    async fn missing_directory_is_created_with_mode_and_owner() {
        let resource = resource();
        let host = host_with("absent\n");
        let observed = Directory(&resource).observe(&host).await.unwrap();
        assert_eq!(
            observed.changes,
            vec![Change::new("directory does not exist")]
        );
        Directory(&resource).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        assert!(script.contains("mkdir -p -- /var/lib/etcd"), "{script}");
        assert!(
            script.contains("chown -- etcd:etcd /var/lib/etcd"),
            "{script}"
        );
        assert!(script.contains("chmod 0700 /var/lib/etcd"), "{script}");
    }

    #[tokio::test]
    async fn wrong_mode_is_fixed_with_chmod_only() {
        let resource = resource();
        let host = host_with("755 etcd etcd directory\n");
        let observed = Directory(&resource).observe(&host).await.unwrap();
        assert_eq!(
            observed.changes,
            vec![Change::new("mode is 0755, want 0700")]
        );
        Directory(&resource).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        assert!(script.contains("chmod 0700 /var/lib/etcd"), "{script}");
        assert!(!script.contains("chown"), "{script}");
        assert!(!script.contains("mkdir"), "{script}");
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_invalid() {
        let resource = resource();
        let host = host_with("644 root root regular file\n");
        let error = Directory(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
    }
}
