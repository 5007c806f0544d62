//! The deploy lock: one run at a time per cluster, held on the bootstrap node (the one
//! place every controller machine reaches) as a directory created atomically with `mkdir`.
//!
//! The lock names its holder. A holder on this same machine whose process is gone (killed
//! halfway) is stale and taken over; a holder elsewhere is never broken automatically.
//! "This same machine" is the same machine-id, boot and hostname (containers made from one
//! image share a machine-id and, on one kernel, a boot id, but not a hostname), and "its
//! process" is its pid with the start time it had (a pid reused after a reboot or by
//! another program is not the holder). Every look at the lock and every change to it runs
//! under one `flock` on the bootstrap node, so two controllers taking over the same stale
//! lock cannot both win.

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
    /// /proc/sys/kernel/random/boot_id of the controller machine (empty from holders
    /// written before it was recorded).
    #[serde(default)]
    pub boot: String,
    /// The holder process's start time, in clock ticks after boot (/proc/PID/stat).
    #[serde(default)]
    pub started: u64,
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

/// Runs `body` with the lock's guard held: one look or change at a time.
fn guarded(body: &str) -> String {
    format!(
        "mkdir -p {state} && exec 9>{state}/deploy.lock.guard && flock -w 30 9 && {{ {body}; }}",
        state = NODE_STATE_DIR
    )
}

/// A held lock; release it with [`DeployLock::release`] (a killed run leaves it behind,
/// which is what lets the next run see it was interrupted).
pub struct DeployLock {
    holder: Holder,
    /// Set when a stale lock was taken over.
    pub took_over: Option<Holder>,
}

/// Takes the lock on `host` for `me`. `alive` says whether a holder's process still runs
/// on this machine (so that a lock left by a killed run here can be taken over).
pub async fn acquire(
    host: &dyn Host,
    me: Holder,
    alive: &dyn Fn(&Holder) -> bool,
) -> Result<DeployLock, LockError> {
    let dir = lock_dir();
    let mine = serde_json::to_string(&me).expect("holders serialize");
    let script = guarded(&format!(
        "if mkdir {dir} 2>/dev/null; then printf %s {mine} > {dir}/holder && echo acquired; \
         else echo held; cat {dir}/holder 2>/dev/null; fi",
        mine = quote(&mine),
    ));
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
    let same_machine = theirs.machine == me.machine
        && theirs.boot == me.boot
        && !me.boot.is_empty()
        && theirs.who == me.who;
    if !same_machine || alive(&theirs) {
        return Err(LockError::Held {
            node: host.name().to_owned(),
            holder: theirs,
        });
    }
    // Compare and swap: replace the holder only if it is still the stale one we saw.
    let script = guarded(&format!(
        "if [ \"$(cat {dir}/holder)\" = {stale} ]; then printf %s {mine} > {dir}/holder && echo acquired; \
         else echo held; fi",
        stale = quote(rest.trim()),
        mine = quote(&mine),
    ));
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
        let script = guarded(&format!(
            "if [ \"$(cat {dir}/holder 2>/dev/null)\" = {mine} ]; then rm -rf {dir}; fi",
            mine = quote(&mine)
        ));
        host.run(&Command::new(script).as_root()).await.map(drop)
    }
}

/// Whether `holder`'s process still runs on this machine: its pid is there with the start
/// time it had (a holder that did not record one counts as alive while its pid exists).
pub fn process_alive(holder: &Holder) -> bool {
    match process_start(holder.pid) {
        Some(started) => holder.started == 0 || started == holder.started,
        None => false,
    }
}

/// When process `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// This machine's boot id.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
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
            boot: "boot-1".into(),
            started: 1000 + u64::from(pid),
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
        let everyone_alive = |_: &Holder| true;
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
        let nobody_alive = |_: &Holder| false;
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

    /// Two containers made from one image share a machine-id (and, on one kernel, a boot
    /// id): a controller in one used to take over the live lock of the other.
    #[tokio::test]
    async fn a_holder_in_another_container_is_never_taken_over() {
        let scratch = tempfile::tempdir().unwrap();
        let host = ScratchHost {
            inner: LocalHost::new("bootstrap"),
            root: scratch.path().join("state"),
        };
        let _held = acquire(&host, holder("m1", 10, "r1"), &|_| true)
            .await
            .unwrap();
        let mut twin = holder("m1", 10, "r2");
        twin.who = "root@other-container".into();
        // Its pid 10 is not in this container's /proc: still, not ours to break.
        let error = acquire(&host, twin, &|_| false).await.err().unwrap();
        assert!(matches!(error, LockError::Held { .. }), "{error}");
        // Nor a holder of an earlier boot of a machine whose pids tell nothing any more…
        let mut rebooted = holder("m1", 11, "r3");
        rebooted.boot = "boot-2".into();
        assert!(acquire(&host, rebooted, &|_| false).await.is_err());
    }

    /// Two controllers finding the same stale lock at once: exactly one takes it over.
    #[tokio::test]
    async fn a_stale_lock_is_taken_over_by_one_controller_only() {
        let scratch = tempfile::tempdir().unwrap();
        let host = ScratchHost {
            inner: LocalHost::new("bootstrap"),
            root: scratch.path().join("state"),
        };
        acquire(&host, holder("m1", 10, "r1"), &|_| true)
            .await
            .unwrap();
        let takers = (0..8).map(|n| acquire(&host, holder("m1", 20 + n, "rx"), &|h| h.pid >= 20));
        let results = futures::future::join_all(takers).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            won,
            1,
            "{:?}",
            results.iter().map(|r| r.is_ok()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn this_process_is_alive_with_its_start_time_and_not_with_another() {
        let me = std::process::id();
        let started = process_start(me).unwrap();
        let mut holder = holder("m", me, "r");
        holder.started = started;
        assert!(process_alive(&holder));
        holder.started = started + 1;
        assert!(!process_alive(&holder), "a reused pid is not the holder");
        assert!(!boot_id().is_empty());
    }
}
