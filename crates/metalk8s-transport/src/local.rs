//! [`LocalHost`]: the machine metalk8s itself runs on, with the same command semantics as
//! a node reached over SSH.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use async_trait::async_trait;

use crate::shell;
use crate::stdio::{read_all, write_ignoring_early_exit};
use crate::{Command, Host, HostError, Output};

/// This machine, under an inventory name.
#[derive(Clone, Debug)]
pub struct LocalHost {
    name: String,
    is_root: bool,
    user: String,
}

impl LocalHost {
    pub fn new(name: impl Into<String>) -> Self {
        LocalHost {
            name: name.into(),
            is_root: effective_uid() == Some(0),
            user: std::env::var("USER").unwrap_or_else(|_| "the current user".to_owned()),
        }
    }

    fn error(&self, source: std::io::Error) -> HostError {
        HostError::Connection {
            host: self.name.clone(),
            source: Box::new(source),
        }
    }

    async fn execute(&self, argv: &[String], stdin: Option<&[u8]>) -> Result<Output, HostError> {
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not `kill_on_drop`: killing the `timeout` wrapper of a command given up on
            // would orphan the script instead of stopping it; the wrapper kills the whole
            // process group itself, shortly after our deadline.
            .spawn()
            .map_err(|error| self.error(error))?;
        let stdin_pipe = child.stdin.take();
        let feed = async {
            if let (Some(mut pipe), Some(input)) = (stdin_pipe, stdin) {
                write_ignoring_early_exit(&mut pipe, input).await?;
            }
            Ok(())
        };
        let (stdout, stderr, ()) = tokio::try_join!(
            read_all(child.stdout.take()),
            read_all(child.stderr.take()),
            feed
        )
        .map_err(|error| self.error(error))?;
        let status = child.wait().await.map_err(|error| self.error(error))?;
        Ok(Output {
            status: status_code(status),
            stdout,
            stderr,
        })
    }
}

/// The effective uid owns `/proc/self`; reading it needs neither libc nor unsafe code.
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// A process killed by a signal reads as the shell would report it: 128 + the signal.
fn status_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

#[async_trait]
impl Host for LocalHost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, command: &Command) -> Result<Output, HostError> {
        let sudo = command.become_root && !self.is_root;
        let argv = shell::argv(&command.script, sudo, command.timeout);
        let what = || shell::describe(&command.script);
        let work = self.execute(&argv, command.stdin.as_deref());
        let output = shell::with_deadline(&self.name, what, command.timeout, work).await?;
        if sudo && shell::sudo_refused(&output) {
            return Err(HostError::SudoRefused {
                host: self.name.clone(),
                user: self.user.clone(),
            });
        }
        Ok(output)
    }

    async fn upload(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
        become_root: bool,
    ) -> Result<(), HostError> {
        shell::upload_through(self, path, contents, mode, become_root).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use super::*;

    fn local() -> LocalHost {
        LocalHost::new("local")
    }

    #[tokio::test]
    async fn run_captures_stdout_stderr_and_status() {
        let output = local()
            .run(&Command::new("echo out; echo err >&2; exit 3"))
            .await
            .expect("runs");
        assert_eq!(output.stdout_text(), "out\n");
        assert_eq!(output.stderr_text(), "err\n");
        assert_eq!(output.status, 3);
        assert!(!output.success());
    }

    #[tokio::test]
    async fn run_feeds_stdin() {
        let output = local()
            .run(&Command::new("tr a-z A-Z").stdin("hello\n"))
            .await
            .expect("runs");
        assert_eq!(output.stdout_text(), "HELLO\n");
    }

    #[tokio::test]
    async fn script_that_ignores_a_large_stdin_is_not_an_error() {
        let output = local()
            .run(&Command::new("echo done").stdin(vec![b'x'; 4 << 20]))
            .await
            .expect("runs");
        assert_eq!(output.stdout_text(), "done\n");
    }

    #[tokio::test]
    async fn a_killed_script_reports_128_plus_the_signal() {
        let output = local()
            .run(&Command::new("kill -9 $$"))
            .await
            .expect("runs");
        assert_eq!(output.status, 137);
    }

    #[tokio::test]
    async fn run_times_out_naming_host_and_command_then_stops_it() {
        let marker = format!("metalk8s-local-timeout-{}", std::process::id());
        let script = format!("sleep 20; : {marker}");
        let started = Instant::now();
        let error = local()
            .run(&Command::new(&script).timeout(Duration::from_millis(300)))
            .await
            .expect_err("times out");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&error, HostError::Timeout { host, what, seconds: 1 } if host == "local" && what == &format!("`{script}`")),
            "{error:?}"
        );
        assert!(
            gone_within(&marker, Duration::from_secs(10)).await,
            "{marker} still runs"
        );
    }

    async fn gone_within(marker: &str, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            let pgrep = std::process::Command::new("pgrep")
                .args(["-f", marker])
                .output()
                .expect("pgrep runs");
            if !pgrep.status.success() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    #[tokio::test]
    async fn become_root_as_root_runs_as_root() {
        let host = local();
        if !host.is_root {
            eprintln!("not root: LocalHost would go through sudo; covered by the SSH tests");
            return;
        }
        let output = host
            .run(&Command::new("id -u").as_root())
            .await
            .expect("runs");
        assert_eq!(output.stdout_text(), "0\n");
    }

    #[tokio::test]
    async fn upload_writes_exact_bytes_with_mode_and_replaces_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file with space");
        let path_text = path.to_str().expect("utf-8 path");
        std::fs::write(&path, "old contents that are longer").expect("seed");
        let contents: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        local()
            .upload(path_text, &contents, 0o640, false)
            .await
            .expect("uploads");
        assert_eq!(std::fs::read(&path).expect("read"), contents);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[tokio::test]
    async fn upload_into_a_missing_directory_names_host_and_path() {
        let error = local()
            .upload("/nonexistent/metalk8s/file", b"x", 0o644, false)
            .await
            .expect_err("fails");
        assert_eq!(
            error.to_string(),
            "cannot write /nonexistent/metalk8s/file on local"
        );
        let HostError::Upload { source, .. } = &error else {
            panic!("{error:?}");
        };
        assert_ne!(source.status, 0);
        assert!(source.stderr.contains("/nonexistent/metalk8s"), "{source}");
    }
}
