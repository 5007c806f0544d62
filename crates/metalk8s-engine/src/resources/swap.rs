//! `SwapOff`: no active swap, and no swap enabled in /etc/fstab. Swap lines of fstab are
//! commented out (the previous fstab kept as `/etc/fstab.metalk8s-backup`), systemd is
//! reloaded so that it forgets the swap units it generated from them, then `swapoff -a`.

use async_trait::async_trait;
use metalk8s_transport::Host;

use super::file::DesiredFile;
use super::fstab::{self, FSTAB};
use super::shell::{self, FileState, Probe};
use crate::resource::{Apply, Change, Observation, ResourceError};

/// Put before a swap line of fstab to disable it.
const DISABLED_MARK: &str = "# disabled by metalk8s (swap must be off): ";

/// `SwapOffResource` has no fields: there is only one way for swap to be off.
pub(crate) struct SwapOff;

struct SwapState {
    /// Active swap devices and files, from /proc/swaps.
    active: Vec<String>,
    fstab: FileState,
}

impl SwapState {
    fn fstab_swap_lines(&self) -> Vec<&str> {
        self.fstab
            .content()
            .unwrap_or("")
            .lines()
            .filter(|line| is_swap_line(line))
            .collect()
    }
}

fn is_swap_line(line: &str) -> bool {
    fstab::fields(line).is_some_and(|fields| fields.get(2) == Some(&"swap"))
}

async fn read(host: &dyn Host) -> Result<SwapState, ResourceError> {
    let sections = shell::run_probe(
        host,
        &Probe::new()
            .contents("swaps", "/proc/swaps")
            .file("fstab", FSTAB),
        "swap",
    )
    .await?;
    let active = sections
        .get("swaps")
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(fstab::unescape)
        .collect();
    Ok(SwapState {
        active,
        fstab: sections.file("fstab", FSTAB)?,
    })
}

#[async_trait]
impl Apply for SwapOff {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let state = read(host).await?;
        let mut changes: Vec<Change> = state
            .active
            .iter()
            .map(|device| Change::new(format!("swap is active on {device}")))
            .collect();
        changes.extend(
            state
                .fstab_swap_lines()
                .into_iter()
                .map(|line| Change::new(format!("{FSTAB} enables swap: `{}`", line.trim()))),
        );
        Ok(Observation { changes })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let state = read(host).await?;
        if let (false, FileState::Present { mode, content, .. }) =
            (state.fstab_swap_lines().is_empty(), &state.fstab)
        {
            let disabled: String = content
                .split_inclusive('\n')
                .map(|line| {
                    if is_swap_line(line) {
                        format!("{DISABLED_MARK}{line}")
                    } else {
                        line.to_owned()
                    }
                })
                .collect();
            DesiredFile::root(FSTAB, &disabled, *mode)
                .write(host)
                .await?;
            fstab::reload_systemd(host).await?;
        }
        if !state.active.is_empty() {
            shell::run_checked(host, &shell::root("swapoff -a"), || {
                format!("turning off swap on {}", state.active.join(", "))
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

    const HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

    fn host_with(swaps: &str, fstab: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[
                    ("swaps", &format!("{HEADER}{swaps}")),
                    ("fstab", &file_section(0o644, "root", "root", fstab)),
                ])),
            )
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn no_swap_is_converged() {
        let host = host_with(
            "",
            "UUID=1 / ext4 defaults 0 1\n# /dev/sda2 none swap sw 0 0\n",
        );
        let observed = SwapOff.observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
    }

    #[tokio::test]
    async fn active_swap_and_fstab_lines_are_turned_off_and_commented_out() {
        let fstab = "UUID=1 / ext4 defaults 0 1\nUUID=2 none swap sw 0 0\n";
        let host = host_with(
            "/dev/sda2                               partition\t1000\t0\t-2\n",
            fstab,
        );
        let observed = SwapOff.observe(&host).await.unwrap();
        let summaries: Vec<_> = observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "swap is active on /dev/sda2",
                "/etc/fstab enables swap: `UUID=2 none swap sw 0 0`"
            ]
        );
        SwapOff.apply(&host, &observed).await.unwrap();
        let commands = host.commands();
        let write = commands
            .iter()
            .find(|c| c.stdin.is_some())
            .expect("fstab rewritten");
        assert!(write.script.contains("target=/etc/fstab"));
        assert!(write.script.contains(".metalk8s-backup"));
        assert_eq!(
            String::from_utf8(write.stdin.clone().unwrap()).unwrap(),
            format!("UUID=1 / ext4 defaults 0 1\n{DISABLED_MARK}UUID=2 none swap sw 0 0\n")
        );
        assert!(commands.last().unwrap().script.ends_with("swapoff -a"));
    }

    #[tokio::test]
    async fn failing_swapoff_is_reported() {
        let host = RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[
                    ("swaps", &format!("{HEADER}/swapfile file 10 0 -2\n")),
                    ("fstab", "absent\n"),
                ])),
            )
            .on(
                "swapoff",
                Output::failed(255, "swapoff: /swapfile: Operation not permitted"),
            );
        let error = SwapOff
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("turning off swap on /swapfile"),
            "{error}"
        );
    }
}
