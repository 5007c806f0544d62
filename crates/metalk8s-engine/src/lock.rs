//! The deploy lock: one run at a time per cluster, held on the bootstrap node (the one
//! place every controller machine reaches) as a directory created atomically with `mkdir`.
//!
//! The lock names its holder. A holder on this same machine whose process is gone (killed
//! halfway) is stale and taken over; a holder elsewhere is never broken automatically.

use metalk8s_transport::{Command, Host, HostError, quote};
use serde::{Deserialize, Serialize};

use crate::agent::NODE_STATE_DIR;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// `user@hostname` of the controller machine.
    pub who: String,
    /// /etc/machine-id of the controller machine (hostnames are not unique enough).
    pub machine: String,
    pub pid: u32,
    pub run: String,
    pub since: u64,
}

impl Holder {
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {}, run {}, since {} UTC)",
            self.who,
            self.pid,
            self.run,
            crate::report::format_time(self.since)
        )
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Host(#[from] HostError),
    #[error("another deploy holds the lock on {node}: {}", holder.describe())]
    #[diagnostic(help(
        "wait for that deploy to finish; if its machine died, remove /var/lib/metalk8s/deploy.lock on {node}"
    ))]
    Held { node: String, holder: Holder },
    #[error("the deploy lock on {node} is unreadable: {detail}")]
    #[diagnostic(help(
        "look at /var/lib/metalk8s/deploy.lock/holder on {node}; remove the directory when no deploy runs"
    ))]
    Unreadable { node: String, detail: String },
}

fn lock_dir() -> String {
    format!("{NODE_STATE_DIR}/deploy.lock")
}

/// A held lock; release it with [`DeployLock::release`] (a killed run leaves it behind,
/// which is what lets the next run see it was interrupted).
pub struct DeployLock {
    holder: Holder,
    /// Set when a stale lock was taken over.
    pub took_over: Option<Holder>,
}

/// Takes the lock on `host` for `me`. `alive` says whether a process of this machine
/// still runs (so that a lock left by a killed run here can be taken over).
pub async fn acquire(
    host: &dyn Host,
    me: Holder,
    alive: &dyn Fn(u32) -> bool,
) -> Result<DeployLock, LockError> {
    let dir = lock_dir();
    let mine = serde_json::to_string(&me).expect("holders serialize");
    let script = format!(
        "mkdir -p {state} && if mkdir {dir} 2>/dev/null; then printf %s {mine} > {dir}/holder && echo acquired; \
         else echo held; cat {dir}/holder 2>/dev/null; fi",
        state = NODE_STATE_DIR,
        mine = quote(&mine),
    );
    let output = host.run(&Command::new(script).as_root()).await?;
    let text = output.stdout_text();
    let (status, rest) = text.split_once('\n').unwrap_or((text.trim(), ""));
    if status == "acquired" {
        return Ok(DeployLock {
            holder: me,
            took_over: None,
        });
    }
    let theirs: Holder = serde_json::from_str(rest.trim()).map_err(|_| LockError::Unreadable {
        node: host.name().to_owned(),
        detail: format!("{dir}/holder holds `{}`", rest.trim()),
    })?;
    if theirs.machine != me.machine || alive(theirs.pid) {
        return Err(LockError::Held {
            node: host.name().to_owned(),
            holder: theirs,
        });
    }
    // Compare and swap: replace the holder only if it is still the stale one we saw.
    let script = format!(
        "if [ \"$(cat {dir}/holder)\" = {stale} ]; then printf %s {mine} > {dir}/holder && echo acquired; \
         else echo held; fi",
        stale = quote(rest.trim()),
        mine = quote(&mine),
    );
    let output = host.run(&Command::new(script).as_root()).await?;
    if output.stdout_text().trim() == "acquired" {
        Ok(DeployLock {
            holder: me,
            took_over: Some(theirs),
        })
    } else {
        Err(LockError::Held {
            node: host.name().to_owned(),
            holder: theirs,
        })
    }
}

impl DeployLock {
    pub async fn release(self, host: &dyn Host) -> Result<(), HostError> {
        let dir = lock_dir();
        let mine = serde_json::to_string(&self.holder).expect("holders serialize");
        let script = format!(
            "if [ \"$(cat {dir}/holder 2>/dev/null)\" = {mine} ]; then rm -rf {dir}; fi",
            mine = quote(&mine)
        );
        host.run(&Command::new(script).as_root()).await.map(drop)
    }
}

/// Whether a process of this machine runs.
pub fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_transport::LocalHost;

    // The lock scripts run for real against a local shell, in a scratch directory standing
    // in for /var/lib/metalk8s (the paths are rewritten before running).
    struct ScratchHost {
        inner: LocalHost,
        root: std::path::PathBuf,
    }

    #[async_trait::async_trait]
    impl Host for ScratchHost {
        fn name(&self) -> &str {
            "bootstrap"
        }
        async fn run(&self, command: &Command) -> Result<metalk8s_transport::Output, HostError> {
            let script = command
                .script
                .replace(NODE_STATE_DIR, &self.root.display().to_string());
            self.inner.run(&Command::new(script)).await
        }
        async fn upload(&self, _: &str, _: &[u8], _: u32, _: bool) -> Result<(), HostError> {
            unreachable!("the lock uploads nothing")
        }
    }

    fn holder(machine: &str, pid: u32, run: &str) -> Holder {
        Holder {
            who: "root@controller".into(),
            machine: machine.into(),
            pid,
            run: run.into(),
            since: 0,
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_stale_local_holders_are_taken_over() {
        let scratch = tempfile::tempdir().unwrap();
        let host = ScratchHost {
            inner: LocalHost::new("bootstrap"),
            root: scratch.path().join("state"),
        };
        let everyone_alive = |_| true;
        let first = acquire(&host, holder("m1", 10, "r1"), &everyone_alive)
            .await
            .unwrap();
        assert!(first.took_over.is_none());

        // A live holder, here or elsewhere, is never broken.
        let error = acquire(&host, holder("m1", 11, "r2"), &everyone_alive)
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("run r1"), "{error}");
        let nobody_alive = |_| false;
        let elsewhere = acquire(&host, holder("m2", 12, "r3"), &nobody_alive).await;
        assert!(matches!(elsewhere, Err(LockError::Held { .. })));

        // Its process is gone on this same machine: stale, taken over.
        let second = acquire(&host, holder("m1", 13, "r4"), &nobody_alive)
            .await
            .unwrap();
        assert_eq!(second.took_over.as_ref().unwrap().run, "r1");

        // Releasing a lock one no longer holds leaves the new holder's lock alone.
        first.release(&host).await.unwrap();
        assert!(
            acquire(&host, holder("m1", 14, "r5"), &everyone_alive)
                .await
                .is_err()
        );
        second.release(&host).await.unwrap();
        acquire(&host, holder("m1", 15, "r6"), &everyone_alive)
            .await
            .unwrap();
    }
}
