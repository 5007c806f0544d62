//! `Unit`: a systemd unit file in /etc/systemd/system, or a drop-in for a unit; systemd is
//! reloaded when it changes. Restarting the service is the job of a `Service` step that
//! watches this one.

use async_trait::async_trait;
use metalk8s_model::plan::UnitResource;
use metalk8s_transport::Host;

use super::file::DesiredFile;
use super::shell;
use crate::resource::{Apply, Observation, ResourceError};

const UNIT_DIR: &str = "/etc/systemd/system";
const UNIT_MODE: u32 = 0o644;

pub(crate) struct Unit<'a>(pub(crate) &'a UnitResource);

impl Unit<'_> {
    fn path(&self) -> Result<String, ResourceError> {
        let unit = self.0;
        check_name("unit name", &unit.name)?;
        Ok(match &unit.drop_in {
            None => format!("{UNIT_DIR}/{}", unit.name),
            Some(drop_in) => {
                check_name("drop-in name", drop_in)?;
                format!("{UNIT_DIR}/{}.d/{drop_in}.conf", unit.name)
            }
        })
    }
}

/// A file name: one word without `/`.
fn check_name(what: &str, name: &str) -> Result<(), ResourceError> {
    shell::check_word(what, name)?;
    if name.contains('/') || name == "." || name == ".." {
        return Err(shell::invalid(format!(
            "{what} {name:?} must not contain `/`"
        )));
    }
    Ok(())
}

#[async_trait]
impl Apply for Unit<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let path = self.path()?;
        let desired = DesiredFile::root(&path, &self.0.content, UNIT_MODE);
        let state = desired.read(host).await?;
        Ok(Observation {
            changes: desired.changes(&state)?,
        })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let path = self.path()?;
        let desired = DesiredFile::root(&path, &self.0.content, UNIT_MODE);
        let state = desired.read(host).await?;
        if desired.converge(host, &state).await? {
            shell::run_checked(host, &shell::root("systemctl daemon-reload"), || {
                format!("reloading systemd after writing {path}")
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;
    use crate::resources::shell::{file_section, probe_output};

    const CONTENT: &str = "[Service]\nExecStart=/bin/true\n";

    fn host_with(section: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on("@@metalk8s", Output::ok(probe_output(&[("file", section)])))
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn drop_in_lives_in_the_units_d_directory() {
        let resource = UnitResource {
            name: "containerd.service".into(),
            drop_in: Some("metalk8s".into()),
            content: CONTENT.into(),
        };
        let host = host_with(&file_section(0o644, "root", "root", CONTENT));
        let observed = Unit(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        assert!(
            host.scripts()[0].contains("/etc/systemd/system/containerd.service.d/metalk8s.conf")
        );
    }

    #[tokio::test]
    async fn changed_unit_is_written_then_systemd_reloaded() {
        let resource = UnitResource {
            name: "demo.service".into(),
            drop_in: None,
            content: CONTENT.into(),
        };
        let host = host_with("absent\n");
        let observed = Unit(&resource).observe(&host).await.unwrap();
        assert_eq!(observed.changes.len(), 1);
        Unit(&resource).apply(&host, &observed).await.unwrap();
        let commands = host.commands();
        let write = &commands[commands.len() - 2];
        assert!(
            write
                .script
                .contains("target=/etc/systemd/system/demo.service")
        );
        assert!(write.script.contains("chmod 0644"));
        assert_eq!(write.stdin.as_deref(), Some(CONTENT.as_bytes()));
        assert!(
            commands
                .last()
                .unwrap()
                .script
                .ends_with("systemctl daemon-reload")
        );
    }

    #[tokio::test]
    async fn unchanged_unit_does_not_reload_systemd() {
        let resource = UnitResource {
            name: "demo.service".into(),
            drop_in: None,
            content: CONTENT.into(),
        };
        let host = host_with(&file_section(0o644, "root", "root", CONTENT));
        Unit(&resource)
            .apply(&host, &Observation::converged())
            .await
            .unwrap();
        assert!(!host.scripts().iter().any(|s| s.contains("daemon-reload")));
    }

    #[tokio::test]
    async fn names_with_slashes_are_invalid() {
        let resource = UnitResource {
            name: "../evil.service".into(),
            drop_in: None,
            content: CONTENT.into(),
        };
        let host = host_with("absent\n");
        let error = Unit(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
    }
}
