//! [`LocalHost`]: the machine metalk8s itself runs on, with the same command semantics as
//! a node reached over SSH. It answers the path sections of a [`Probe`] in-process, with
//! the text the probe's script would print: the agent observes a node with it, and on a
//! converged node spawning `sh`, `stat` and `cat` for every file was most of the time.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use async_trait::async_trait;

use crate::probe::{END_SECTION, Probe, Section, section_start};
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

/// What a path section of a probe prints, read in this process: `None` when only the
/// shell can say it as the script would (an owner without a line in /etc/passwd, left to
/// NSS; a special file, which `cat` could block on; a file that cannot be read).
/// `[ -e ]` is false whenever the path cannot be followed, so any error of `stat` reads as
/// absent, as in the script. Blocking reads, not `tokio::fs`: they are a few small files,
/// and a thread hand-off per file would cost more than the read.
fn read_path(path: &str, with_content: bool) -> Option<Vec<u8>> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Some(b"absent\n".to_vec());
    };
    let kind = if metadata.is_dir() {
        "directory"
    } else if !metadata.is_file() {
        return None;
    } else if metadata.len() == 0 {
        "regular empty file"
    } else {
        "regular file"
    };
    let owner = name_of(ACCOUNTS, metadata.uid())?;
    let group = name_of(GROUPS, metadata.gid())?;
    let mode = metadata.mode() & 0o7777;
    let mut text = format!("{mode:o} {owner} {group} {kind}\n").into_bytes();
    // `cat` of a directory prints nothing (and fails, which the script ignores).
    if with_content && metadata.is_file() {
        text.extend(std::fs::read(path).ok()?);
    }
    Some(text)
}

/// What `cat` prints of `path`: `None` when it would fail (its message is the shell's
/// to give) or when it is not a regular file, which `cat` could block on.
fn read_contents(path: &str) -> Option<Vec<u8>> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    std::fs::read(path).ok()
}

const ACCOUNTS: &str = "/etc/passwd";
const GROUPS: &str = "/etc/group";

/// The name of `id` in `database` (/etc/passwd or /etc/group: `name:password:id:…`), the
/// first line that has it winning as with NSS's `files`. Read again at every lookup: an
/// observation after a step that created a user must see it.
fn name_of(database: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(database).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id_field = fields.nth(1)?;
        (id_field.parse() == Ok(id)).then(|| name.to_owned())
    })
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

    /// The local machine reaches `remote` itself.
    async fn forward(
        &self,
        remote: std::net::SocketAddr,
    ) -> Result<std::net::SocketAddr, HostError> {
        Ok(remote)
    }

    /// Path sections read here, shell sections (if any) in one script, in their order:
    /// shell sections only depend on each other. Not root: the reads would not be root's,
    /// so the whole script runs through sudo.
    async fn probe(&self, probe: &Probe) -> Result<Output, HostError> {
        if !self.is_root {
            return self.run(&probe.command()).await;
        }
        let mut read_here = Vec::new();
        let mut shell_part = Probe::new();
        for (name, section) in probe.sections() {
            let text = match section {
                Section::Shell(body) => {
                    shell_part = shell_part.section(name, body);
                    continue;
                }
                Section::File(path) => read_path(path, true),
                Section::Metadata(path) => read_path(path, false),
                Section::Contents(path) => read_contents(path),
            };
            let Some(text) = text else {
                return self.run(&probe.command()).await;
            };
            read_here.extend(section_start(name).into_bytes());
            read_here.extend(text);
        }
        let mut output = if shell_part.sections().is_empty() {
            Output::ok(section_start(END_SECTION))
        } else {
            self.run(&shell_part.command()).await?
        };
        read_here.append(&mut output.stdout);
        output.stdout = read_here;
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

    /// This machine, when the tests run as root; otherwise `None`, after saying on
    /// standard error why the test has nothing to check.
    fn local_as_root(otherwise: &str) -> Option<LocalHost> {
        let host = local();
        if !host.is_root {
            eprintln!("not root: {otherwise}");
            return None;
        }
        Some(host)
    }

    #[tokio::test]
    async fn become_root_as_root_runs_as_root() {
        let Some(host) = local_as_root("LocalHost would go through sudo; covered by the SSH tests")
        else {
            return;
        };
        let output = host
            .run(&Command::new("id -u").as_root())
            .await
            .expect("runs");
        assert_eq!(output.stdout_text(), "0\n");
    }

    /// A probe's output cut into its sections, for comparing outputs whose sections come
    /// in another order.
    fn sections_of(stdout: &[u8]) -> Vec<String> {
        let mut sections: Vec<String> = String::from_utf8_lossy(stdout)
            .split(crate::SECTION_MARK)
            .map(str::to_owned)
            .collect();
        sections.sort();
        sections
    }

    #[tokio::test]
    async fn a_probe_read_in_process_says_what_its_script_says() {
        let Some(host) = local_as_root("LocalHost runs the probe's script itself") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
        std::fs::write(path("text"), "one\ntwo\n").expect("seed");
        std::fs::write(path("no newline"), "x").expect("seed");
        std::fs::write(path("empty"), "").expect("seed");
        std::fs::write(path("binary"), [0xff, 0xfe, b'\n']).expect("seed");
        std::fs::create_dir(path("setgid")).expect("mkdir");
        std::fs::set_permissions(path("setgid"), std::fs::Permissions::from_mode(0o2755))
            .expect("chmod");
        std::fs::set_permissions(path("empty"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::os::unix::fs::symlink(path("text"), path("link")).expect("symlink");
        std::os::unix::fs::symlink(path("nowhere"), path("dangling")).expect("symlink");
        // uid 1 is `daemon` on Debian: an owner that is not the one running the test.
        std::os::unix::fs::chown(path("no newline"), Some(1), Some(1)).expect("chown");
        let mut probe = Probe::new();
        for name in [
            "text",
            "no newline",
            "empty",
            "binary",
            "setgid",
            "link",
            "dangling",
        ] {
            probe = probe
                .file(&format!("file {name}"), &path(name))
                .metadata(&format!("metadata {name}"), &path(name));
        }
        let probe = probe
            .file("missing", &path("missing"))
            .metadata("under a file", &format!("{}/child", path("text")))
            .file("proc", "/proc/sys/kernel/osrelease")
            .contents("contents", &path("text"))
            .contents("proc contents", "/proc/swaps")
            .section("shell", "kernel=$(uname -r); echo \"$kernel\"")
            .section("shell again", "echo \"$kernel\"; echo err >&2");

        let in_process = host.probe(&probe).await.expect("probes");
        let scripted = host.run(&probe.command()).await.expect("runs");
        assert_eq!(
            sections_of(&in_process.stdout),
            sections_of(&scripted.stdout)
        );
        assert_eq!(in_process.stderr_text(), "err\n");
        assert_eq!(in_process.status, scripted.status);

        let paths_only = Probe::new()
            .file("text", &path("text"))
            .metadata("setgid", &path("setgid"));
        let in_process = host.probe(&paths_only).await.expect("probes");
        let scripted = host.run(&paths_only.command()).await.expect("runs");
        assert_eq!(in_process.stdout_text(), scripted.stdout_text());
        assert!(
            in_process
                .stdout_text()
                .contains("2755 root root directory\n")
        );
    }

    #[tokio::test]
    async fn a_probe_of_an_owner_without_a_name_is_left_to_the_shell() {
        let Some(host) = local_as_root("LocalHost runs the probe's script itself") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("orphan");
        std::fs::write(&file, "x\n").expect("seed");
        std::os::unix::fs::chown(&file, Some(54_321), Some(54_321)).expect("chown");
        let probe = Probe::new().file("orphan", file.to_str().expect("utf-8"));
        let output = host.probe(&probe).await.expect("probes");
        assert_eq!(
            output.stdout_text(),
            host.run(&probe.command())
                .await
                .expect("runs")
                .stdout_text()
        );
        assert!(
            output
                .stdout_text()
                .contains("644 UNKNOWN UNKNOWN regular file\nx\n")
        );
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
