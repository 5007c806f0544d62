//! `Mount`: a filesystem with its /etc/fstab entry (`DEVICE MOUNTPOINT FSTYPE OPTIONS 0 2`)
//! and mounted. An existing entry for the mount point is replaced; the previous fstab is
//! kept as `/etc/fstab.metalk8s-backup`.

use async_trait::async_trait;
use metalk8s_model::plan::MountResource;
use metalk8s_transport::Host;

use super::file::DesiredFile;
use super::fstab::{self, FSTAB};
use super::shell::{self, FileState, Probe, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

pub(crate) struct Mount<'a>(pub(crate) &'a MountResource);

struct MountState {
    fstab: FileState,
    mounted: bool,
}

impl Mount<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        let mount = self.0;
        shell::check_path("mount point", &mount.mount_point)?;
        shell::check_word("device", &mount.device)?;
        shell::check_word("filesystem type", &mount.fs_type)?;
        for option in &mount.options {
            shell::check_word("mount option", option)?;
        }
        Ok(())
    }

    /// The entry as written to fstab.
    fn entry(&self) -> String {
        let mount = self.0;
        let options = if mount.options.is_empty() {
            "defaults".to_owned()
        } else {
            mount.options.join(",")
        };
        format!(
            "{} {} {} {options} 0 2",
            fstab::escape(&mount.device),
            fstab::escape(&mount.mount_point),
            mount.fs_type,
        )
    }

    fn is_for_mount_point(&self, line: &str) -> bool {
        fstab::fields(line)
            .and_then(|fields| fields.get(1).map(|point| fstab::unescape(point)))
            .is_some_and(|point| point == self.0.mount_point)
    }

    /// The fstab entries for the mount point.
    fn entries<'s>(&self, state: &'s MountState) -> Vec<&'s str> {
        state
            .fstab
            .content()
            .unwrap_or("")
            .lines()
            .filter(|line| self.is_for_mount_point(line))
            .collect()
    }

    fn fstab_is_right(&self, state: &MountState) -> bool {
        let entry = self.entry();
        let want = fstab::fields(&entry);
        match self.entries(state).as_slice() {
            [line] => fstab::fields(line) == want,
            _ => false,
        }
    }

    async fn read(&self, host: &dyn Host) -> Result<MountState, ResourceError> {
        self.check()?;
        let sections = shell::run_probe(
            host,
            &Probe::new().file("fstab", FSTAB).section(
                "mounted",
                &format!(
                    "findmnt -n -o SOURCE --mountpoint {} 2>/dev/null || true",
                    quote(&self.0.mount_point)
                ),
            ),
            &format!("mount {}", self.0.mount_point),
        )
        .await?;
        Ok(MountState {
            fstab: sections.file("fstab", FSTAB)?,
            mounted: !sections.get("mounted").trim().is_empty(),
        })
    }

    /// fstab with the entry in place of the existing ones for the mount point, or added.
    fn edited_fstab(&self, current: &str) -> String {
        let mut edited = String::with_capacity(current.len() + 80);
        let mut placed = false;
        for line in current.split_inclusive('\n') {
            if !self.is_for_mount_point(line) {
                edited.push_str(line);
            } else if !placed {
                edited.push_str(&self.entry());
                edited.push('\n');
                placed = true;
            }
        }
        if !placed {
            if !edited.is_empty() && !edited.ends_with('\n') {
                edited.push('\n');
            }
            edited.push_str(&self.entry());
            edited.push('\n');
        }
        edited
    }
}

#[async_trait]
impl Apply for Mount<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let state = self.read(host).await?;
        let mut changes = Vec::new();
        if !self.fstab_is_right(&state) {
            let entries = self.entries(&state);
            changes.push(Change::new(match entries.as_slice() {
                [] => format!("{FSTAB} has no entry for {}", self.0.mount_point),
                entries => format!(
                    "{FSTAB} has `{}` for {}, want `{}`",
                    entries
                        .iter()
                        .map(|e| e.trim())
                        .collect::<Vec<_>>()
                        .join("` and `"),
                    self.0.mount_point,
                    self.entry()
                ),
            }));
        }
        if !state.mounted {
            changes.push(Change::new(format!(
                "{} is not mounted",
                self.0.mount_point
            )));
        }
        Ok(Observation { changes })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let state = self.read(host).await?;
        if !self.fstab_is_right(&state) {
            let edited = self.edited_fstab(state.fstab.content().unwrap_or(""));
            let mode = state.fstab.mode().unwrap_or(0o644);
            DesiredFile::root(FSTAB, &edited, mode).write(host).await?;
            fstab::reload_systemd(host).await?;
        }
        if !state.mounted {
            let point = quote(&self.0.mount_point);
            let script = format!("set -e\nmkdir -p -- {point}\nmount -- {point}");
            shell::run_checked(host, &shell::root(&script), || {
                format!("mounting {} on {}", self.0.device, self.0.mount_point)
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

    fn data() -> MountResource {
        MountResource {
            device: "/dev/vdb".into(),
            mount_point: "/var/lib/data".into(),
            fs_type: "ext4".into(),
            options: vec!["noatime".into()],
        }
    }

    fn host_with(fstab: &str, mounted: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[
                    ("fstab", &file_section(0o644, "root", "root", fstab)),
                    ("mounted", mounted),
                ])),
            )
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn entry_present_and_mounted_is_converged() {
        let resource = data();
        let host = host_with(
            "UUID=1 / ext4 defaults 0 1\n/dev/vdb\t/var/lib/data  ext4 noatime 0 2\n",
            "/dev/vdb\n",
        );
        let observed = Mount(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        assert!(host.scripts()[0].contains("findmnt -n -o SOURCE --mountpoint /var/lib/data"));
    }

    #[tokio::test]
    async fn missing_entry_is_added_and_mounted() {
        let resource = data();
        let host = host_with("UUID=1 / ext4 defaults 0 1", "");
        let observed = Mount(&resource).observe(&host).await.unwrap();
        let summaries: Vec<_> = observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "/etc/fstab has no entry for /var/lib/data",
                "/var/lib/data is not mounted"
            ]
        );
        Mount(&resource).apply(&host, &observed).await.unwrap();
        let commands = host.commands();
        let write = commands.iter().find(|c| c.stdin.is_some()).unwrap();
        assert_eq!(
            String::from_utf8(write.stdin.clone().unwrap()).unwrap(),
            "UUID=1 / ext4 defaults 0 1\n/dev/vdb /var/lib/data ext4 noatime 0 2\n"
        );
        let mount = commands.last().unwrap();
        assert!(mount.script.contains("mkdir -p -- /var/lib/data"));
        assert!(mount.script.contains("mount -- /var/lib/data"));
    }

    #[tokio::test]
    async fn a_different_entry_is_replaced_in_place_and_duplicates_dropped() {
        let resource = data();
        let fstab = "# comment\n/dev/vdc /var/lib/data xfs defaults 0 0\nUUID=1 / ext4 defaults 0 1\n/dev/vdd /var/lib/data ext4 defaults 0 2\n";
        let host = host_with(fstab, "/dev/vdc\n");
        let observed = Mount(&resource).observe(&host).await.unwrap();
        assert_eq!(observed.changes.len(), 1, "{observed:?}");
        assert!(
            observed.changes[0]
                .summary
                .contains("want `/dev/vdb /var/lib/data ext4 noatime 0 2`")
        );
        Mount(&resource).apply(&host, &observed).await.unwrap();
        let write = host
            .commands()
            .into_iter()
            .find(|c| c.stdin.is_some())
            .unwrap();
        assert_eq!(
            String::from_utf8(write.stdin.unwrap()).unwrap(),
            "# comment\n/dev/vdb /var/lib/data ext4 noatime 0 2\nUUID=1 / ext4 defaults 0 1\n"
        );
        assert!(
            !host.scripts().iter().any(|s| s.contains("mount --")),
            "already mounted"
        );
        assert!(host.scripts().iter().any(|s| s.contains("daemon-reload")));
    }

    #[tokio::test]
    async fn failed_mount_is_reported() {
        let resource = data();
        let host = RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[
                    (
                        "fstab",
                        &file_section(
                            0o644,
                            "root",
                            "root",
                            "/dev/vdb /var/lib/data ext4 noatime 0 2\n",
                        ),
                    ),
                    ("mounted", ""),
                ])),
            )
            .on(
                "mount --",
                Output::failed(32, "mount: /var/lib/data: wrong fs type"),
            );
        let error = Mount(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("mounting /dev/vdb on /var/lib/data"),
            "{error}"
        );
        assert!(error.to_string().contains("wrong fs type"), "{error}");
    }
}
