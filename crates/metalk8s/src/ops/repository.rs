//! The `repository` phase's health gate, and the gate of a whole deploy, which asks each
//! phase's own gate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metalk8s_engine::executor::Gate;
use metalk8s_model::repository as repo;
use metalk8s_transport::{Command, Host};

/// How long the gate waits for the registry to answer.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(60);

/// The bundle repository answers `GET /v2/` with 200 over TLS checked with the cluster
/// CA, asked from the bootstrap node itself (the nodes' view: the control-plane address).
pub struct RepositoryGate {
    pub bootstrap: Arc<dyn Host>,
    pub ip: IpAddr,
}

impl RepositoryGate {
    async fn answered(&self) -> Result<String, String> {
        let url = repo::registry_url(self.ip);
        let command = Command::new(format!(
            "curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert {ca} {url}",
            ca = repo::CA_FILE
        ))
        .as_root();
        let output = self
            .bootstrap
            .run(&command)
            .await
            .map_err(|error| metalk8s_model::report::error_chain(&error))?;
        let code = output.stdout_text().trim().to_owned();
        if output.success() && code == "200" {
            Ok(format!("{url} answered 200 on {}", self.bootstrap.name()))
        } else {
            Err(format!(
                "{url} did not answer 200 on {} (HTTP {code}): {}",
                self.bootstrap.name(),
                output.stderr_text().trim()
            ))
        }
    }
}

#[async_trait::async_trait]
impl Gate for RepositoryGate {
    async fn check(&self, phase: &str) -> Option<Result<String, String>> {
        if phase != "repository" {
            return None;
        }
        let deadline = Instant::now() + GATE_TIMEOUT;
        loop {
            let result = self.answered().await;
            if result.is_ok() || Instant::now() >= deadline {
                return Some(result);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Every phase's gate: the first that has one for the phase answers.
pub struct PhaseGates(pub Vec<Box<dyn Gate>>);

#[async_trait::async_trait]
impl Gate for PhaseGates {
    async fn check(&self, phase: &str) -> Option<Result<String, String>> {
        for gate in &self.0 {
            if let Some(result) = gate.check(phase).await {
                return Some(result);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    #[tokio::test]
    async fn the_gate_passes_on_200_and_ignores_other_phases() {
        let host = RecordingHost::new("node1").on("curl", Output::ok("200"));
        let gate = PhaseGates(vec![Box::new(RepositoryGate {
            bootstrap: Arc::new(host),
            ip: "10.0.0.10".parse().unwrap(),
        })]);
        assert_eq!(gate.check("os").await, None);
        let passed = gate.check("repository").await.unwrap().unwrap();
        assert!(passed.contains("https://10.0.0.10:8443/v2/"), "{passed}");
    }
}
