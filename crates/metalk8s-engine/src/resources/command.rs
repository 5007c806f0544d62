//! `Command`: a command for what no other resource fits. Converged when `creates` exists
//! or `unless` succeeds; an `only_on_watch` command is always converged and only runs as
//! the reaction to a watched step's change. It runs as root; a non-zero exit is an error
//! with its standard error.

use async_trait::async_trait;
use metalk8s_model::plan::CommandResource;
use metalk8s_transport::Host;

use super::shell::{self, quote};
use crate::resource::{Apply, Observation, ResourceError};

pub(crate) struct Command<'a>(pub(crate) &'a CommandResource);

impl Command<'_> {
    async fn run(&self, host: &dyn Host) -> Result<(), ResourceError> {
        if self.0.command.trim().is_empty() {
            return Err(shell::invalid("a command resource has an empty command"));
        }
        shell::run_checked(host, &shell::root(&self.0.command), || {
            format!("command {}", shell::excerpt(&self.0.command))
        })
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Apply for Command<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let command = self.0;
        if command.only_on_watch {
            return Ok(Observation::converged());
        }
        let mut checks = Vec::new();
        if let Some(creates) = &command.creates {
            shell::check_path("`creates` path", creates)?;
            checks.push(format!(
                "if [ -e {} ]; then echo done; exit 0; fi",
                quote(creates)
            ));
        }
        if let Some(unless) = &command.unless {
            checks.push(format!(
                "if sh -c {} >/dev/null 2>&1 </dev/null; then echo done; exit 0; fi",
                quote(unless)
            ));
        }
        if !checks.is_empty() {
            checks.push("echo pending".to_owned());
            let output = shell::run_checked(host, &shell::root(&checks.join("\n")), || {
                format!(
                    "checking whether {} has run",
                    shell::excerpt(&command.command)
                )
            })
            .await?;
            if output.stdout_text().trim() == "done" {
                return Ok(Observation::converged());
            }
        }
        Ok(Observation::change("command has not run"))
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        self.run(host).await
    }

    async fn react(&self, host: &dyn Host) -> Result<Option<String>, ResourceError> {
        self.run(host).await?;
        Ok(Some(format!("ran {}", shell::excerpt(&self.0.command))))
    }
}

#[cfg(test)]
mod tests {
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;

    fn kubeadm() -> CommandResource {
        CommandResource {
            command: "kubeadm init --config /etc/kubernetes/kubeadm.yaml".into(),
            creates: Some("/etc/kubernetes/admin.conf".into()),
            unless: None,
            only_on_watch: false,
        }
    }

    #[tokio::test]
    async fn existing_creates_path_is_converged() {
        let host = RecordingHost::new("node1")
            .on("[ -e /etc/kubernetes/admin.conf ]", Output::ok("done\n"));
        let observed = Command(&kubeadm()).observe(&host).await.unwrap();
        assert!(observed.is_converged());
        assert_eq!(host.scripts().len(), 1);
    }

    #[tokio::test]
    async fn missing_creates_path_runs_the_command_as_root() {
        let host = RecordingHost::new("node1")
            .on("[ -e", Output::ok("pending\n"))
            .otherwise(Output::ok(""));
        let observed = Command(&kubeadm()).observe(&host).await.unwrap();
        assert_eq!(observed, Observation::change("command has not run"));
        Command(&kubeadm()).apply(&host, &observed).await.unwrap();
        let run = host.commands().pop().unwrap();
        assert!(run.become_root);
        assert!(
            run.script
                .ends_with("kubeadm init --config /etc/kubernetes/kubeadm.yaml")
        );
    }

    #[tokio::test]
    async fn unless_success_is_converged() {
        let resource = CommandResource {
            command: "touch /x".into(),
            creates: None,
            unless: Some("test -e /x && grep -q ok /x".into()),
            only_on_watch: false,
        };
        let host = RecordingHost::new("node1").on("if sh -c", Output::ok("done\n"));
        assert!(
            Command(&resource)
                .observe(&host)
                .await
                .unwrap()
                .is_converged()
        );
        let script = &host.scripts()[0];
        assert!(
            script.contains("sh -c 'test -e /x && grep -q ok /x'"),
            "{script}"
        );
    }

    #[tokio::test]
    async fn plain_command_has_not_run_without_asking_the_host() {
        let resource = CommandResource {
            command: "true".into(),
            creates: None,
            unless: None,
            only_on_watch: false,
        };
        let host = RecordingHost::new("node1");
        assert!(
            !Command(&resource)
                .observe(&host)
                .await
                .unwrap()
                .is_converged()
        );
        assert!(host.scripts().is_empty());
    }

    #[tokio::test]
    async fn only_on_watch_is_converged_and_runs_on_react() {
        let resource = CommandResource {
            command: "systemctl reload nginx".into(),
            creates: None,
            unless: None,
            only_on_watch: true,
        };
        let host = RecordingHost::new("node1").otherwise(Output::ok(""));
        assert!(
            Command(&resource)
                .observe(&host)
                .await
                .unwrap()
                .is_converged()
        );
        assert!(host.scripts().is_empty());
        let done = Command(&resource).react(&host).await.unwrap();
        assert_eq!(done.as_deref(), Some("ran `systemctl reload nginx`"));
        assert_eq!(host.scripts().len(), 1);
    }

    #[tokio::test]
    async fn failure_carries_stderr() {
        let host = RecordingHost::new("node1")
            .on("[ -e", Output::ok("pending\n"))
            .on("kubeadm", Output::failed(1, "error: port 6443 is in use\n"));
        let error = Command(&kubeadm())
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        let ResourceError::Command {
            what,
            status,
            stderr,
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(
            what,
            "command `kubeadm init --config /etc/kubernetes/kubeadm.yaml`"
        );
        assert_eq!(*status, 1);
        assert_eq!(stderr, "error: port 6443 is in use");
    }
}
