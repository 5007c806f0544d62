//! `File`: a regular file with exact content, mode and ownership; also the file logic the
//! other resources that write files (units, sysctl, modules-load.d, fstab, hosts) share.
//!
//! A content change is written atomically: to a temporary file beside the target, given
//! its mode and owner, the old file copied to `PATH.metalk8s-backup`, then renamed over
//! the target. A target that is a bind mount (docker's /etc/hosts, /etc/hostname,
//! /etc/resolv.conf) cannot be renamed over (`EBUSY`); it is then rewritten in place.

use async_trait::async_trait;
use metalk8s_model::plan::FileResource;
use metalk8s_transport::Host;
use similar::{ChangeTag, TextDiff};

use super::shell::{self, FileKind, FileState, Probe, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

/// Suffix of the copy of a replaced file.
pub(crate) const BACKUP_SUFFIX: &str = ".metalk8s-backup";

/// What `rename(2)` says when the target is a mount point.
const BUSY: &str = "Device or resource busy";

pub(crate) struct File<'a>(pub(crate) &'a FileResource);

impl File<'_> {
    fn desired(&self) -> DesiredFile<'_> {
        DesiredFile {
            path: &self.0.path,
            content: &self.0.content,
            mode: self.0.mode,
            owner: &self.0.owner,
            group: &self.0.group,
            secret: self.0.secret,
        }
    }
}

#[async_trait]
impl Apply for File<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let desired = self.desired();
        let state = desired.read(host).await?;
        Ok(Observation {
            changes: desired.changes(&state)?,
        })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let desired = self.desired();
        let state = desired.read(host).await?;
        desired.converge(host, &state).await?;
        Ok(())
    }
}

/// A file as it should be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DesiredFile<'a> {
    pub(crate) path: &'a str,
    pub(crate) content: &'a str,
    pub(crate) mode: u32,
    pub(crate) owner: &'a str,
    pub(crate) group: &'a str,
    /// Never diffed, never backed up.
    pub(crate) secret: bool,
}

impl<'a> DesiredFile<'a> {
    /// Owned by root:root.
    pub(crate) fn root(path: &'a str, content: &'a str, mode: u32) -> Self {
        DesiredFile {
            path,
            content,
            mode,
            owner: "root",
            group: "root",
            secret: false,
        }
    }

    pub(crate) fn check(&self) -> Result<(), ResourceError> {
        shell::check_path("file path", self.path)?;
        shell::check_word("file owner", self.owner)?;
        shell::check_word("file group", self.group)?;
        if self.mode > 0o7777 {
            return Err(shell::invalid(format!(
                "file mode {:o} of {} is not a permission mode",
                self.mode, self.path
            )));
        }
        Ok(())
    }

    /// Reads the file with one command of its own.
    pub(crate) async fn read(&self, host: &dyn Host) -> Result<FileState, ResourceError> {
        self.check()?;
        shell::run_probe(host, &Probe::new().file("file", self.path), self.path)
            .await?
            .file("file", self.path)
    }

    /// What differs, said for people; a content change carries a unified diff.
    pub(crate) fn changes(&self, state: &FileState) -> Result<Vec<Change>, ResourceError> {
        self.check()?;
        let (mode, owner, group, kind, content) = match state {
            FileState::Absent => {
                return Ok(vec![
                    Change::new("file does not exist").with_diff(self.diff("")),
                ]);
            }
            FileState::Present {
                mode,
                owner,
                group,
                kind,
                content,
            } => (*mode, owner, group, kind, content),
        };
        match kind {
            FileKind::Regular => {}
            FileKind::Directory => {
                return Err(shell::invalid(format!(
                    "{} is a directory, want a regular file",
                    self.path
                )));
            }
            FileKind::Other(kind) => {
                return Err(shell::invalid(format!(
                    "{} is a {kind}, want a regular file",
                    self.path
                )));
            }
        }
        let mut changes = Vec::new();
        if content != self.content {
            let lines = changed_lines(content, self.content);
            let plural = if lines == 1 { "" } else { "s" };
            changes.push(
                Change::new(format!("content differs ({lines} line{plural} changed)"))
                    .with_diff(self.diff(content)),
            );
        }
        changes.extend(metadata_changes(
            mode, owner, group, self.mode, self.owner, self.group,
        ));
        Ok(changes)
    }

    /// [`DesiredFile::changes`], each summary prefixed with the path: for resources that
    /// manage a file among other things.
    pub(crate) fn named_changes(&self, state: &FileState) -> Result<Vec<Change>, ResourceError> {
        let mut changes = self.changes(state)?;
        for change in &mut changes {
            change.summary = format!("{}: {}", self.path, change.summary);
        }
        Ok(changes)
    }

    fn diff(&self, current: &str) -> String {
        if self.secret {
            return format!("{}: secret content, not shown\n", self.path);
        }
        TextDiff::from_lines(current, self.content)
            .unified_diff()
            .header(
                &format!("{} (current)", self.path),
                &format!("{} (desired)", self.path),
            )
            .to_string()
    }

    /// Does what `state` calls for: nothing, a chmod/chown, or a full write. Returns
    /// whether anything was done.
    pub(crate) async fn converge(
        &self,
        host: &dyn Host,
        state: &FileState,
    ) -> Result<bool, ResourceError> {
        let changes = self.changes(state)?;
        if changes.is_empty() {
            return Ok(false);
        }
        match state {
            FileState::Present {
                mode,
                owner,
                group,
                content,
                ..
            } if content == self.content => {
                let script = metadata_script(
                    self.path, *mode, owner, group, self.mode, self.owner, self.group,
                );
                let command = shell::root(&script);
                shell::run_checked(host, &command, || {
                    format!("setting the mode and owner of {}", self.path)
                })
                .await?;
            }
            _ => self.write(host).await?,
        }
        Ok(true)
    }

    /// Writes the whole file: atomically when possible, in place when the target is a
    /// bind mount. The previous file, if any, is kept as `PATH.metalk8s-backup`.
    pub(crate) async fn write(&self, host: &dyn Host) -> Result<(), ResourceError> {
        self.check()?;
        let target = quote(self.path);
        let owner = quote(&format!("{}:{}", self.owner, self.group));
        let mode = format!("{:04o}", self.mode);
        // A secret's old content is not worth a copy lying around.
        let backup = if self.secret {
            String::new()
        } else {
            format!(r#"if [ -e "$target" ]; then cp -p -- "$target" "$target{BACKUP_SUFFIX}"; fi"#)
        };
        let atomic = format!(
            r#"set -e
target={target}
dir=$(dirname -- "$target")
mkdir -p -- "$dir"
tmp=$(mktemp "$dir/.metalk8s-write.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chown -- {owner} "$tmp"
chmod {mode} "$tmp"
{backup}
mv -fT -- "$tmp" "$target""#
        );
        let command = shell::root(&atomic).stdin(self.content.as_bytes());
        let output = shell::run(host, &command).await?;
        if output.success() {
            return Ok(());
        }
        if !output.stderr_text().contains(BUSY) {
            return Err(shell::command_error(
                format!("writing {}", self.path),
                &output,
            ));
        }
        // A bind-mounted target: the backup is made, write through the mount.
        let in_place = format!(
            r#"set -e
target={target}
cat > "$target"
chown -- {owner} "$target"
chmod {mode} "$target""#
        );
        let command = shell::root(&in_place).stdin(self.content.as_bytes());
        shell::run_checked(host, &command, || {
            format!("writing {} in place (it is a mount point)", self.path)
        })
        .await?;
        Ok(())
    }
}

/// The lines removed plus the lines added.
fn changed_lines(current: &str, desired: &str) -> usize {
    TextDiff::from_lines(current, desired)
        .iter_all_changes()
        .filter(|change| change.tag() != ChangeTag::Equal)
        .count()
}

/// Mode, owner and group changes of an existing file or directory.
pub(crate) fn metadata_changes(
    mode: u32,
    owner: &str,
    group: &str,
    want_mode: u32,
    want_owner: &str,
    want_group: &str,
) -> Vec<Change> {
    let mut changes = Vec::new();
    if mode != want_mode {
        changes.push(Change::new(format!(
            "mode is {mode:04o}, want {want_mode:04o}"
        )));
    }
    if owner != want_owner {
        changes.push(Change::new(format!("owner is {owner}, want {want_owner}")));
    }
    if group != want_group {
        changes.push(Change::new(format!("group is {group}, want {want_group}")));
    }
    changes
}

/// chown and chmod, each only when needed; chown first, since it clears set-id bits.
pub(crate) fn metadata_script(
    path: &str,
    mode: u32,
    owner: &str,
    group: &str,
    want_mode: u32,
    want_owner: &str,
    want_group: &str,
) -> String {
    let path = quote(path);
    let mut lines = vec!["set -e".to_owned()];
    let owner_changed = owner != want_owner || group != want_group;
    if owner_changed {
        lines.push(format!(
            "chown -- {} {path}",
            quote(&format!("{want_owner}:{want_group}"))
        ));
    }
    if mode != want_mode || owner_changed {
        lines.push(format!("chmod {want_mode:04o} {path}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;
    use crate::resources::shell::{file_section, probe_output};

    fn resource(content: &str) -> FileResource {
        FileResource {
            path: "/etc/metalk8s/app.conf".into(),
            content: content.into(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            secret: false,
        }
    }

    fn host_with(section: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on("@@metalk8s", Output::ok(probe_output(&[("file", section)])))
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn matching_file_is_converged_and_apply_writes_nothing() {
        let resource = resource("a = 1\n");
        let host = host_with(&file_section(0o644, "root", "root", "a = 1\n"));
        let observed = File(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        File(&resource).apply(&host, &observed).await.unwrap();
        assert_eq!(host.commands().len(), 2, "two reads, no write");
        assert!(host.commands().iter().all(|c| c.stdin.is_none()));
    }

    #[tokio::test]
    async fn observe_is_one_read_only_command_as_root() {
        let resource = resource("a\n");
        let host = host_with("absent\n");
        File(&resource).observe(&host).await.unwrap();
        let commands = host.commands();
        assert_eq!(commands.len(), 1);
        assert!(commands[0].become_root);
        assert!(commands[0].script.contains("cat -- /etc/metalk8s/app.conf"));
        assert!(host.uploads().is_empty());
    }

    #[tokio::test]
    async fn changed_content_is_diffed_then_written_atomically_with_a_backup() {
        let resource = resource("a = 1\nb = 2\n");
        let host = host_with(&file_section(0o644, "root", "root", "a = 1\nb = 3\n"));
        let observed = File(&resource).observe(&host).await.unwrap();
        assert_eq!(observed.changes.len(), 1);
        let change = &observed.changes[0];
        assert_eq!(change.summary, "content differs (2 lines changed)");
        let diff = change.diff.as_deref().unwrap();
        assert!(
            diff.contains("--- /etc/metalk8s/app.conf (current)"),
            "{diff}"
        );
        assert!(
            diff.contains("+++ /etc/metalk8s/app.conf (desired)"),
            "{diff}"
        );
        assert!(diff.contains("-b = 3\n+b = 2\n"), "{diff}");

        File(&resource).apply(&host, &observed).await.unwrap();
        let write = host.commands().pop().unwrap();
        assert_eq!(write.stdin.as_deref(), Some(&b"a = 1\nb = 2\n"[..]));
        assert!(write.become_root);
        assert!(write.script.contains("mkdir -p"));
        assert!(write.script.contains(".metalk8s-backup"));
        assert!(write.script.contains("mv -fT"));
        assert!(write.script.contains("chmod 0644"));
        assert!(write.script.contains("chown -- root:root"));
    }

    #[tokio::test]
    async fn a_secret_is_never_diffed_nor_backed_up() {
        let mut secret = resource("-----BEGIN PRIVATE KEY-----\nnew\n");
        secret.secret = true;
        secret.mode = 0o600;
        let host = host_with(&file_section(
            0o600,
            "root",
            "root",
            "-----BEGIN PRIVATE KEY-----\nold\n",
        ));
        let observed = File(&secret).observe(&host).await.unwrap();
        let diff = observed.changes[0].diff.as_deref().unwrap();
        assert!(!diff.contains("old") && !diff.contains("new"), "{diff}");
        assert!(diff.contains("secret content, not shown"), "{diff}");
        File(&secret).apply(&host, &observed).await.unwrap();
        let write = host.commands().last().unwrap().script.clone();
        assert!(!write.contains(BACKUP_SUFFIX), "{write}");
    }

    #[tokio::test]
    async fn missing_file_diffs_against_empty() {
        let resource = resource("x\n");
        let host = host_with("absent\n");
        let observed = File(&resource).observe(&host).await.unwrap();
        assert_eq!(observed.changes.len(), 1);
        assert_eq!(observed.changes[0].summary, "file does not exist");
        assert!(
            observed.changes[0]
                .diff
                .as_deref()
                .unwrap()
                .contains("+x\n")
        );
    }

    #[tokio::test]
    async fn only_mode_and_owner_differ_so_only_chmod_and_chown_run() {
        let resource = resource("x\n");
        let host = host_with(&file_section(0o600, "daemon", "root", "x\n"));
        let observed = File(&resource).observe(&host).await.unwrap();
        let summaries: Vec<_> = observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            ["mode is 0600, want 0644", "owner is daemon, want root"]
        );
        assert!(observed.changes.iter().all(|c| c.diff.is_none()));

        File(&resource).apply(&host, &observed).await.unwrap();
        let fix = host.commands().pop().unwrap();
        assert!(fix.stdin.is_none(), "no content is written");
        assert!(
            fix.script
                .contains("chown -- root:root /etc/metalk8s/app.conf")
        );
        assert!(fix.script.contains("chmod 0644 /etc/metalk8s/app.conf"));
        assert!(!fix.script.contains("mv "));
    }

    #[tokio::test]
    async fn bind_mounted_target_falls_back_to_an_in_place_write() {
        let resource = FileResource {
            path: "/etc/hosts".into(),
            ..resource("127.0.0.1 localhost\n")
        };
        let host = RecordingHost::new("node1")
            .on("@@metalk8s", Output::ok(probe_output(&[("file", "absent\n")])))
            .on(
                "mv -fT",
                Output::failed(
                    1,
                    "mv: cannot move '/etc/.metalk8s-write.x' to '/etc/hosts': Device or resource busy\n",
                ),
            )
            .otherwise(Output::ok(""));
        File(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap();
        let commands = host.commands();
        assert_eq!(commands.len(), 3, "read, atomic attempt, in-place write");
        let in_place = &commands[2];
        assert!(in_place.script.contains("cat > \"$target\""));
        assert!(in_place.script.contains("target=/etc/hosts"));
        assert_eq!(
            in_place.stdin.as_deref(),
            Some(&b"127.0.0.1 localhost\n"[..])
        );
    }

    #[tokio::test]
    async fn other_write_failures_are_reported_with_stderr() {
        let resource = resource("x\n");
        let host = RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[("file", "absent\n")])),
            )
            .on("mv -fT", Output::failed(1, "mv: Read-only file system\n"));
        let error = File(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        let ResourceError::Command { what, stderr, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(what, "writing /etc/metalk8s/app.conf");
        assert!(stderr.contains("Read-only file system"));
        assert_eq!(host.commands().len(), 2, "no in-place attempt");
    }

    #[tokio::test]
    async fn a_directory_in_the_way_is_invalid() {
        let resource = resource("x\n");
        let host = host_with("755 root root directory\n");
        let error = File(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
    }

    #[tokio::test]
    async fn relative_paths_are_invalid_before_anything_runs() {
        let resource = FileResource {
            path: "etc/x".into(),
            ..resource("x")
        };
        let host = host_with("absent\n");
        let error = File(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
        assert!(host.commands().is_empty());
    }
}
