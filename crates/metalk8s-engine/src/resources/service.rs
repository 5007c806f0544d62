//! `Service`: a systemd unit enabled (or not) and running (or not); restarted when a
//! watched step changed.
//!
//! A unit that systemd does not know is a change while observing (a dry run on a fresh
//! host shows it, since the package that brings it has not been installed yet) and an
//! error naming it when applying.

use async_trait::async_trait;
use metalk8s_model::plan::ServiceResource;
use metalk8s_transport::Host;

use super::shell::{self, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

/// Journal lines shown when a unit fails to start.
const JOURNAL_LINES: u32 = 20;

pub(crate) struct Service<'a>(pub(crate) &'a ServiceResource);

/// What systemd says of the unit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct UnitState {
    /// `LoadState`: `loaded`, `not-found`, `masked`…
    load: String,
    /// `UnitFileState`, as `systemctl is-enabled` says it: `enabled`, `disabled`,
    /// `static`, `masked`…
    enabled: String,
    /// `ActiveState`, as `systemctl is-active` says it: `active`, `inactive`, `failed`…
    active: String,
}

impl UnitState {
    fn exists(&self) -> bool {
        self.load != "not-found"
    }

    fn masked(&self) -> bool {
        self.enabled.starts_with("masked") || self.load == "masked"
    }

    /// Units that cannot be enabled (static, generated, transient, indirect) count as
    /// enabled: they start when something needs them, which is all systemd allows.
    fn is_enabled(&self) -> bool {
        matches!(
            self.enabled.as_str(),
            "enabled"
                | "enabled-runtime"
                | "static"
                | "alias"
                | "indirect"
                | "generated"
                | "transient"
        )
    }

    /// Enabled in a way `systemctl disable` undoes.
    fn is_disableable(&self) -> bool {
        matches!(self.enabled.as_str(), "enabled" | "enabled-runtime")
    }

    fn is_running(&self) -> bool {
        matches!(self.active.as_str(), "active" | "reloading")
    }

    fn is_stopped(&self) -> bool {
        matches!(self.active.as_str(), "inactive" | "failed" | "unknown" | "")
    }
}

impl Service<'_> {
    fn name(&self) -> &str {
        &self.0.name
    }

    async fn read(&self, host: &dyn Host) -> Result<UnitState, ResourceError> {
        shell::check_word("service name", self.name())?;
        let script = format!(
            "systemctl show -p LoadState -p UnitFileState -p ActiveState -- {}",
            quote(self.name())
        );
        let output = shell::run_checked(host, &shell::root(&script), || {
            format!("reading the state of {}", self.name())
        })
        .await?;
        let stdout = output.stdout_text();
        let property = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        Ok(UnitState {
            load: property("LoadState"),
            enabled: property("UnitFileState"),
            active: property("ActiveState"),
        })
    }

    fn changes(&self, state: &UnitState) -> Vec<Change> {
        let wanted = self.0;
        if !state.exists() {
            if !wanted.enabled && !wanted.running {
                return Vec::new();
            }
            return vec![Change::new(format!("{} does not exist", self.name()))];
        }
        let mut changes = Vec::new();
        if wanted.enabled && !state.is_enabled() {
            changes.push(Change::new(format!(
                "service is {}, want enabled",
                or_unknown(&state.enabled)
            )));
        }
        if !wanted.enabled && state.is_disableable() {
            changes.push(Change::new(format!(
                "service is {}, want disabled",
                state.enabled
            )));
        }
        if wanted.running && !state.is_running() {
            let active = match state.active.as_str() {
                "inactive" => "stopped",
                other => or_unknown(other),
            };
            changes.push(Change::new(format!("service is {active}, want running")));
        }
        if !wanted.running && !state.is_stopped() {
            let active = match state.active.as_str() {
                "active" => "running",
                other => other,
            };
            changes.push(Change::new(format!("service is {active}, want stopped")));
        }
        changes
    }

    /// The `systemctl` commands that bring `state` to the desired one.
    fn actions(&self, state: &UnitState) -> Vec<String> {
        let wanted = self.0;
        let unit = quote(self.name());
        let mut actions = Vec::new();
        if (wanted.enabled || wanted.running) && state.masked() {
            actions.push(format!("systemctl unmask -- {unit}"));
        }
        let enable = wanted.enabled && !state.is_enabled();
        let disable = !wanted.enabled && state.is_disableable();
        let start = wanted.running && !state.is_running();
        let stop = !wanted.running && !state.is_stopped();
        match (enable, disable, start, stop) {
            (true, _, true, _) => actions.push(format!("systemctl enable --now -- {unit}")),
            (_, true, _, true) => actions.push(format!("systemctl disable --now -- {unit}")),
            _ => {
                if enable {
                    actions.push(format!("systemctl enable -- {unit}"));
                }
                if disable {
                    actions.push(format!("systemctl disable -- {unit}"));
                }
                if start {
                    actions.push(format!("systemctl start -- {unit}"));
                }
                if stop {
                    actions.push(format!("systemctl stop -- {unit}"));
                }
            }
        }
        actions
    }

    /// Runs `script`; when it fails, the unit's last journal lines join the error.
    async fn systemctl(
        &self,
        host: &dyn Host,
        script: &str,
        what: String,
    ) -> Result<(), ResourceError> {
        let output = shell::run(host, &shell::root(script)).await?;
        if output.success() {
            return Ok(());
        }
        let mut error = shell::command_error(what, &output);
        let journal = format!(
            "journalctl -u {} -n {JOURNAL_LINES} --no-pager -o cat 2>/dev/null",
            quote(self.name())
        );
        if let Ok(journal) = shell::run(host, &shell::root(&journal)).await {
            let journal = journal.stdout_text();
            if let (ResourceError::Command { stderr, .. }, false) =
                (&mut error, journal.trim().is_empty())
            {
                stderr.push_str("\nlast lines of its journal:\n");
                stderr.push_str(journal.trim_end());
            }
        }
        Err(error)
    }
}

fn or_unknown(state: &str) -> &str {
    if state.is_empty() { "unknown" } else { state }
}

#[async_trait]
impl Apply for Service<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let state = self.read(host).await?;
        Ok(Observation {
            changes: self.changes(&state),
        })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let state = self.read(host).await?;
        if self.changes(&state).is_empty() {
            return Ok(());
        }
        if !state.exists() {
            return Err(shell::invalid(format!(
                "service {} does not exist on {}: is the package or unit that provides it installed?",
                self.name(),
                host.name()
            )));
        }
        let actions = self.actions(&state);
        let script = format!("set -e\n{}", actions.join("\n"));
        let what = actions
            .iter()
            .map(|action| action.trim_start_matches("systemctl ").replace(" -- ", " "))
            .collect::<Vec<_>>()
            .join(", ");
        self.systemctl(host, &script, what).await
    }

    async fn react(&self, host: &dyn Host) -> Result<Option<String>, ResourceError> {
        if !self.0.running {
            return Ok(None);
        }
        shell::check_word("service name", self.name())?;
        let script = format!("systemctl restart -- {}", quote(self.name()));
        self.systemctl(host, &script, format!("restarting {}", self.name()))
            .await?;
        Ok(Some(format!("restarted {}", self.name())))
    }
}

#[cfg(test)]
mod tests {
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;

    fn chrony(enabled: bool, running: bool) -> ServiceResource {
        ServiceResource {
            name: "chrony.service".into(),
            enabled,
            running,
        }
    }

    fn show(load: &str, enabled: &str, active: &str) -> Output {
        Output::ok(format!(
            "LoadState={load}\nActiveState={active}\nUnitFileState={enabled}\n"
        ))
    }

    fn host_with(load: &str, enabled: &str, active: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on("systemctl show", show(load, enabled, active))
            .otherwise(Output::ok(""))
    }

    fn summaries(observed: &Observation) -> Vec<&str> {
        observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect()
    }

    #[tokio::test]
    async fn enabled_and_running_is_converged_in_one_command() {
        let resource = chrony(true, true);
        let host = host_with("loaded", "enabled", "active");
        let observed = Service(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        let scripts = host.scripts();
        assert_eq!(scripts.len(), 1);
        assert!(scripts[0].contains("-p UnitFileState -p ActiveState -- chrony.service"));
    }

    #[tokio::test]
    async fn disabled_and_stopped_is_enabled_and_started_at_once() {
        let resource = chrony(true, true);
        let host = host_with("loaded", "disabled", "inactive");
        let observed = Service(&resource).observe(&host).await.unwrap();
        assert_eq!(
            summaries(&observed),
            [
                "service is disabled, want enabled",
                "service is stopped, want running"
            ]
        );
        Service(&resource).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        assert!(
            script.contains("systemctl enable --now -- chrony.service"),
            "{script}"
        );
    }

    #[tokio::test]
    async fn enabled_but_failed_is_started_only() {
        let resource = chrony(true, true);
        let host = host_with("loaded", "enabled", "failed");
        let observed = Service(&resource).observe(&host).await.unwrap();
        assert_eq!(summaries(&observed), ["service is failed, want running"]);
        Service(&resource).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        assert!(
            script.contains("systemctl start -- chrony.service"),
            "{script}"
        );
        assert!(!script.contains("enable"), "{script}");
    }

    #[tokio::test]
    async fn masked_unit_is_unmasked_before_enabling() {
        let resource = chrony(true, true);
        let host = host_with("masked", "masked", "inactive");
        let observed = Service(&resource).observe(&host).await.unwrap();
        Service(&resource).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        let unmask = script.find("unmask").expect("unmasks");
        let enable = script.find("enable --now").expect("enables");
        assert!(unmask < enable, "{script}");
    }

    #[tokio::test]
    async fn unwanted_service_is_disabled_and_stopped() {
        let resource = chrony(false, false);
        let host = host_with("loaded", "enabled", "active");
        let observed = Service(&resource).observe(&host).await.unwrap();
        assert_eq!(
            summaries(&observed),
            [
                "service is enabled, want disabled",
                "service is running, want stopped"
            ]
        );
        Service(&resource).apply(&host, &observed).await.unwrap();
        assert!(
            host.scripts()
                .pop()
                .unwrap()
                .contains("systemctl disable --now -- chrony.service")
        );
    }

    #[tokio::test]
    async fn static_units_count_as_enabled() {
        let resource = chrony(true, true);
        let host = host_with("loaded", "static", "active");
        assert!(
            Service(&resource)
                .observe(&host)
                .await
                .unwrap()
                .is_converged()
        );
    }

    #[tokio::test]
    async fn missing_unit_is_a_change_then_an_error_naming_it() {
        let resource = chrony(true, true);
        let host = host_with("not-found", "", "inactive");
        let observed = Service(&resource).observe(&host).await.unwrap();
        assert_eq!(summaries(&observed), ["chrony.service does not exist"]);
        let error = Service(&resource)
            .apply(&host, &observed)
            .await
            .unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("chrony.service does not exist on node1")
        );
        assert_eq!(host.scripts().len(), 2, "nothing but the reads ran");
    }

    #[tokio::test]
    async fn missing_unit_that_is_wanted_off_is_converged() {
        let resource = chrony(false, false);
        let host = host_with("not-found", "", "inactive");
        assert!(
            Service(&resource)
                .observe(&host)
                .await
                .unwrap()
                .is_converged()
        );
    }

    #[tokio::test]
    async fn failed_start_reports_the_journal() {
        let resource = chrony(true, true);
        let host = RecordingHost::new("node1")
            .on("systemctl show", show("loaded", "enabled", "inactive"))
            .on(
                "systemctl start",
                Output::failed(1, "Job for chrony.service failed.\n"),
            )
            .on(
                "journalctl",
                Output::ok("chronyd: fatal error: bad config\n"),
            );
        let error = Service(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("start chrony.service failed"), "{text}");
        assert!(text.contains("bad config"), "{text}");
    }

    #[tokio::test]
    async fn react_restarts_a_running_service_only() {
        let running = chrony(true, true);
        let host = RecordingHost::new("node1").otherwise(Output::ok(""));
        let done = Service(&running).react(&host).await.unwrap();
        assert_eq!(done.as_deref(), Some("restarted chrony.service"));
        assert!(host.scripts()[0].contains("systemctl restart -- chrony.service"));

        let stopped = chrony(true, false);
        let host = RecordingHost::new("node1").otherwise(Output::ok(""));
        assert_eq!(Service(&stopped).react(&host).await.unwrap(), None);
        assert!(host.scripts().is_empty());
    }
}
