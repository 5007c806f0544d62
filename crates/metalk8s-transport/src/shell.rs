//! The shell text that every `Host` implementation sends, so that a [`Command`] means the
//! same thing on every host: quoting, the `sudo` and `timeout` wrapping of a script, the
//! upload script, and the reading of sudo's refusals.

use std::future::Future;
use std::time::Duration;

use crate::{Command, CommandFailed, Host, HostError, Output};

/// Extra seconds the host-side `timeout` allows beyond our own deadline. Our deadline is
/// the one that reports; the host's only cleans up, so it must never win the race and turn
/// a timeout into an ordinary exit status 124.
const HOST_TIMEOUT_GRACE_SECONDS: u64 = 2;

/// How long the host-side `timeout` lets a terminated script exit before killing it.
const HOST_KILL_AFTER_SECONDS: u64 = 5;

/// Longest command excerpt quoted in a timeout message.
const DESCRIPTION_MAX_CHARS: usize = 60;

/// The program and arguments that run `script` with `sh -c`: through `sudo -n` when
/// `sudo`, and under coreutils `timeout` when a timeout is set. The SSH multiplexer cannot
/// signal a remote process, so without `timeout` a command we stopped waiting for would run
/// on; `timeout` kills its whole process group, so children of the script go too. It runs
/// inside sudo so that it may signal a script running as root.
pub(crate) fn argv(script: &str, sudo: bool, timeout: Option<Duration>) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    if sudo {
        argv.extend(["sudo".into(), "-n".into()]);
    }
    if let Some(timeout) = timeout {
        argv.extend([
            "timeout".into(),
            "-k".into(),
            format!("{HOST_KILL_AFTER_SECONDS}s"),
            format!("{}s", seconds(timeout) + HOST_TIMEOUT_GRACE_SECONDS),
        ]);
    }
    argv.extend(["sh".into(), "-c".into(), script.into()]);
    argv
}

/// `argv` as one line for the login shell of a remote user, which is what sshd runs.
pub(crate) fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|word| quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes `word` for a POSIX shell; words made only of characters no shell treats
/// specially are left bare, which keeps logged command lines readable.
pub fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Whole seconds, rounded up so that a sub-second timeout never reads as "0s".
pub(crate) fn seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// A short excerpt of a script for messages: its first non-blank line.
pub(crate) fn describe(script: &str) -> String {
    let line = script
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    let mut excerpt: String = line.chars().take(DESCRIPTION_MAX_CHARS).collect();
    if excerpt.len() < line.len() || script.trim().lines().nth(1).is_some() {
        excerpt.push('…');
    }
    format!("`{excerpt}`")
}

/// Runs `work`, giving up after `limit` with a timeout naming the host and `what`.
pub(crate) async fn with_deadline<T>(
    host: &str,
    what: impl FnOnce() -> String,
    limit: Option<Duration>,
    work: impl Future<Output = Result<T, HostError>>,
) -> Result<T, HostError> {
    let Some(limit) = limit else {
        return work.await;
    };
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_elapsed) => Err(HostError::Timeout {
            host: host.to_owned(),
            what: what(),
            seconds: seconds(limit),
        }),
    }
}

/// Whether sudo refused to run the command (rather than the command failing): sudo exits
/// with 1 before the script starts, so nothing reached standard output. The messages are
/// those of sudo 1.8 and 1.9 (Debian, RHEL), in English.
pub(crate) fn sudo_refused(output: &Output) -> bool {
    const REFUSALS: [&str; 5] = [
        "sudo: a password is required",
        "sudo: a terminal is required",
        "is not in the sudoers file",
        "is not allowed to execute",
        "you must have a tty to run sudo",
    ];
    let stderr = output.stderr_text();
    output.status == 1
        && output.stdout.is_empty()
        && REFUSALS.iter().any(|refusal| stderr.contains(refusal))
}

/// A script that replaces `path` atomically with its standard input: written to a
/// temporary file beside it (so the rename stays on one filesystem), checked against the
/// size and sha256 it must have (a connection cut half-way leaves a short file, which is
/// never installed), given its mode and synced to disk before it gets its final name (so
/// readers never see a partial file or loose permissions, even after a crash), and
/// removed if anything fails.
pub(crate) fn upload_script(path: &str, mode: u32, size: usize, sha256: &str) -> String {
    format!(
        r#"set -e
target={target}
tmp=$(mktemp "$(dirname -- "$target")/.metalk8s-upload.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
got=$(wc -c < "$tmp")
if [ "$got" -ne {size} ]; then echo "received $got of {size} bytes" >&2; exit 1; fi
if ! echo "{sha256}  $tmp" | sha256sum -c --status -; then echo "the content received does not have the sha256 sent" >&2; exit 1; fi
chmod {mode:04o} "$tmp"
sync -- "$tmp"
mv -fT -- "$tmp" "$target"
trap - EXIT"#,
        target = quote(path),
    )
}

/// [`Host::upload`] for hosts that can run commands: one command, the contents streamed
/// on its standard input.
pub(crate) async fn upload_through(
    host: &(impl Host + ?Sized),
    path: &str,
    contents: &[u8],
    mode: u32,
    become_root: bool,
) -> Result<(), HostError> {
    use sha2::{Digest, Sha256};
    let sha256 = hex::encode(Sha256::digest(contents));
    let mut command =
        Command::new(upload_script(path, mode, contents.len(), &sha256)).stdin(contents);
    command.become_root = become_root;
    let output = host.run(&command).await?;
    if output.success() {
        return Ok(());
    }
    Err(HostError::Upload {
        host: host.name().to_owned(),
        path: path.to_owned(),
        source: CommandFailed::from_output(&output),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_leaves_plain_words_bare_and_single_quotes_the_rest() {
        assert_eq!(quote("sh"), "sh");
        assert_eq!(
            quote("/etc/metalk8s/a-b_c.conf"),
            "/etc/metalk8s/a-b_c.conf"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn quoted_words_survive_a_real_shell() {
        let tricky = "echo \"$HOME\" 'quoted' `backticks` $(sub) \\ ; & | *\nsecond line";
        let line = format!("printf %s {}", quote(tricky));
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), tricky);
    }

    #[test]
    fn argv_is_plain_sh_without_sudo_or_timeout() {
        assert_eq!(argv("id -u", false, None), ["sh", "-c", "id -u"]);
    }

    #[test]
    fn argv_puts_timeout_inside_sudo_with_a_grace_period() {
        assert_eq!(
            argv("id -u", true, Some(Duration::from_millis(1500))),
            [
                "sudo", "-n", "timeout", "-k", "5s", "4s", "sh", "-c", "id -u"
            ]
        );
    }

    #[test]
    fn command_line_quotes_the_script_as_one_word() {
        let line = command_line(&argv("echo 'hi' > /tmp/x", true, None));
        assert_eq!(line, r"sudo -n sh -c 'echo '\''hi'\'' > /tmp/x'");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::from_secs(3)), 3);
        assert_eq!(seconds(Duration::from_millis(200)), 1);
        assert_eq!(seconds(Duration::from_millis(3001)), 4);
    }

    #[test]
    fn describe_shows_the_first_line_and_marks_what_is_cut() {
        assert_eq!(describe("apt-get update"), "`apt-get update`");
        assert_eq!(describe("\n  set -e\n  apt-get update\n"), "`set -e…`");
        let long = "x".repeat(100);
        assert_eq!(describe(&long), format!("`{}…`", "x".repeat(60)));
    }

    #[test]
    fn sudo_refusals_are_recognised() {
        for stderr in [
            "sudo: a password is required\n",
            "deploy is not in the sudoers file.  This incident will be reported.\n",
            "Sorry, user deploy is not allowed to execute '/bin/sh -c id' as root on node1.\n",
            "sudo: sorry, you must have a tty to run sudo\n",
            "sudo: unable to resolve host node1\nsudo: a password is required\n",
        ] {
            assert!(sudo_refused(&Output::failed(1, stderr)), "{stderr}");
        }
    }

    #[test]
    fn script_failures_are_not_sudo_refusals() {
        assert!(!sudo_refused(&Output::failed(
            1,
            "cat: /x: No such file or directory"
        )));
        assert!(!sudo_refused(&Output::failed(
            2,
            "sudo: a password is required"
        )));
        let mut printed = Output::failed(1, "sudo: a password is required");
        printed.stdout = b"the script ran\n".to_vec();
        assert!(!sudo_refused(&printed));
    }

    #[test]
    fn upload_script_quotes_the_path_and_sets_the_mode() {
        let script = upload_script("/etc/my file", 0o640, 3, "abc");
        assert!(script.contains("target='/etc/my file'\n"), "{script}");
        assert!(script.contains("chmod 0640 \"$tmp\""), "{script}");
    }

    /// The script under a real shell: what arrives whole is installed; what arrives cut
    /// short (a connection lost half-way) or altered is refused and leaves nothing behind.
    #[test]
    fn an_upload_cut_short_or_altered_is_never_installed() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("agent");
        let contents = b"#!/bin/sh\necho whole\n".repeat(1000);
        let sha256 = hex::encode(Sha256::digest(&contents));
        let run = |sent: &[u8]| {
            use std::io::Write;
            let script = upload_script(target.to_str().unwrap(), 0o755, contents.len(), &sha256);
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(sent).unwrap();
            child.wait_with_output().unwrap()
        };
        let cut = run(&contents[..contents.len() / 2]);
        assert!(!cut.status.success());
        assert!(
            String::from_utf8_lossy(&cut.stderr).contains(&format!(
                "received {} of {} bytes",
                contents.len() / 2,
                contents.len()
            )),
            "{cut:?}"
        );
        let mut altered = contents.clone();
        altered[10] ^= 1;
        assert!(!run(&altered).status.success());
        assert!(!target.exists(), "nothing installed");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no leftovers"
        );
        assert!(run(&contents).status.success());
        assert_eq!(std::fs::read(&target).unwrap(), contents);
    }

    #[tokio::test]
    async fn with_deadline_names_host_and_what() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let error = with_deadline(
            "node1",
            || "`sleep 5`".into(),
            Some(Duration::from_millis(50)),
            slow,
        )
        .await
        .expect_err("times out");
        assert_eq!(
            error.to_string(),
            "`sleep 5` on node1 did not finish within 1s"
        );
    }
}
