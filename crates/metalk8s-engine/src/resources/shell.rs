//! What every resource needs to talk to a host: quoting, running a script as root, turning
//! a failed command into a [`ResourceError`], and running a [`Probe`] (one read-only
//! script per observation, which a local host answers mostly without a process) and
//! cutting its output into named sections.

use std::collections::BTreeMap;

use metalk8s_transport::{Command, END_SECTION, Host, Output, SCRIPT_PRELUDE, SECTION_MARK};

use crate::resource::ResourceError;

/// Longest excerpt of a script quoted in a message.
const EXCERPT_MAX_CHARS: usize = 60;

pub(crate) use metalk8s_transport::{Probe, quote};

/// `script`, run as root with the common prelude.
pub(crate) fn root(script: &str) -> Command {
    Command::new(format!("{SCRIPT_PRELUDE}{script}")).as_root()
}

/// Runs `command`; a non-zero exit is the caller's to judge.
pub(crate) async fn run(host: &dyn Host, command: &Command) -> Result<Output, ResourceError> {
    Ok(host.run(command).await?)
}

/// Runs `command` and fails, saying `what` it was doing, when it exits non-zero.
pub(crate) async fn run_checked(
    host: &dyn Host,
    command: &Command,
    what: impl FnOnce() -> String,
) -> Result<Output, ResourceError> {
    let output = run(host, command).await?;
    if output.success() {
        Ok(output)
    } else {
        Err(command_error(what(), &output))
    }
}

pub(crate) fn command_error(what: impl Into<String>, output: &Output) -> ResourceError {
    let mut stderr = output.stderr_text().trim().to_owned();
    if stderr.is_empty() {
        // Some tools (apt, systemctl status) say why on standard output.
        stderr = last_lines(&output.stdout_text(), 10);
    }
    ResourceError::Command {
        what: what.into(),
        status: output.status,
        stderr,
    }
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The first line of a script, shortened, for messages: `` `apt-get update…` ``.
pub(crate) fn excerpt(script: &str) -> String {
    let line = script
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    let mut excerpt: String = line.chars().take(EXCERPT_MAX_CHARS).collect();
    if excerpt.len() < line.len() || script.trim().lines().nth(1).is_some() {
        excerpt.push('…');
    }
    format!("`{excerpt}`")
}

/// Runs `probe` on `host` (see [`Host::probe`]: a local host reads its paths without a
/// process) and cuts its output into sections; `what` names what it reads, for messages.
pub(crate) async fn run_probe(
    host: &dyn Host,
    probe: &Probe,
    what: &str,
) -> Result<Sections, ResourceError> {
    let output = host.probe(probe).await?;
    Sections::parse(&output.stdout_text()).ok_or_else(|| {
        let mut error = command_error(format!("reading {what}"), &output);
        match &mut error {
            ResourceError::Command { stderr, .. } if stderr.is_empty() => {
                "the script stopped before printing everything".clone_into(stderr);
            }
            _ => {}
        }
        error
    })
}

/// A probe's output, by section name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sections {
    sections: BTreeMap<String, String>,
}

impl Sections {
    /// `None` when the output does not end with the end section.
    pub(crate) fn parse(stdout: &str) -> Option<Self> {
        let mut sections = BTreeMap::new();
        let mut pieces = stdout.split(SECTION_MARK);
        let _before_the_first_mark = pieces.next();
        let mut ended = false;
        for piece in pieces {
            let (name, content) = piece.split_once('\n').unwrap_or((piece, ""));
            if name == END_SECTION {
                ended = true;
                break;
            }
            sections.insert(name.to_owned(), content.to_owned());
        }
        ended.then_some(Sections { sections })
    }

    /// The content of a section; empty when the probe had no such section.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.sections.get(name).map_or("", String::as_str)
    }

    /// The state of a file read by [`Probe::file`] or [`Probe::metadata`].
    pub(crate) fn file(&self, name: &str, path: &str) -> Result<FileState, ResourceError> {
        FileState::parse(self.get(name)).ok_or_else(|| ResourceError::Command {
            what: format!("reading {path}"),
            status: 0,
            stderr: format!("unexpected output: {:?}", self.get(name)),
        })
    }
}

/// What a path is on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileState {
    Absent,
    Present {
        mode: u32,
        owner: String,
        group: String,
        kind: FileKind,
        /// Empty when only the metadata was read.
        content: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Directory,
    /// As `stat` names it: `symbolic link`, `socket`…
    Other(String),
}

impl FileState {
    fn parse(section: &str) -> Option<Self> {
        if section.trim_end() == "absent" {
            return Some(FileState::Absent);
        }
        let (header, content) = section.split_once('\n').unwrap_or((section, ""));
        let mut fields = header.splitn(4, ' ');
        let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
        let owner = fields.next()?.to_owned();
        let group = fields.next()?.to_owned();
        let kind = match fields.next()? {
            kind if kind.starts_with("regular") => FileKind::Regular,
            "directory" => FileKind::Directory,
            other => FileKind::Other(other.to_owned()),
        };
        Some(FileState::Present {
            mode,
            owner,
            group,
            kind,
            content: content.to_owned(),
        })
    }

    pub(crate) fn content(&self) -> Option<&str> {
        match self {
            FileState::Absent => None,
            FileState::Present { content, .. } => Some(content),
        }
    }

    pub(crate) fn mode(&self) -> Option<u32> {
        match self {
            FileState::Absent => None,
            FileState::Present { mode, .. } => Some(*mode),
        }
    }
}

/// The message for a desired state that cannot be valid.
pub(crate) fn invalid(message: impl Into<String>) -> ResourceError {
    ResourceError::Invalid(message.into())
}

/// Checks that `path` is absolute and has no line breaks or `..`.
pub(crate) fn check_path(what: &str, path: &str) -> Result<(), ResourceError> {
    if !path.starts_with('/') {
        return Err(invalid(format!("{what} `{path}` is not an absolute path")));
    }
    if path.contains(['\n', '\0']) || path.split('/').any(|part| part == "..") {
        return Err(invalid(format!(
            "{what} {path:?} has a line break, a NUL or a `..` component"
        )));
    }
    Ok(())
}

/// Checks that `name` is one word usable as a command argument.
pub(crate) fn check_word(what: &str, name: &str) -> Result<(), ResourceError> {
    if name.is_empty()
        || name.starts_with('-')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "{what} {name:?} must be one word that does not start with `-`"
        )));
    }
    Ok(())
}

/// Test support: the output a probe prints for these sections.
#[cfg(test)]
pub(crate) fn probe_output(sections: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, content) in sections {
        out.push_str(SECTION_MARK);
        out.push_str(name);
        out.push('\n');
        out.push_str(content);
    }
    out.push_str(SECTION_MARK);
    out.push_str(END_SECTION);
    out.push('\n');
    out
}

/// Test support: what a probe prints for a regular file.
#[cfg(test)]
pub(crate) fn file_section(mode: u32, owner: &str, group: &str, content: &str) -> String {
    format!("{mode:o} {owner} {group} regular file\n{content}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_shell_prints_sections_that_parse_back() {
        let dir = std::env::temp_dir().join(format!("metalk8s-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with_newline = dir.join("a file");
        std::fs::write(&with_newline, "one\ntwo\n").unwrap();
        let without_newline = dir.join("b");
        std::fs::write(&without_newline, "no newline").unwrap();
        let probe = Probe::new()
            .file("a", with_newline.to_str().unwrap())
            .file("b", without_newline.to_str().unwrap())
            .file("missing", dir.join("missing").to_str().unwrap())
            .metadata("dir", dir.to_str().unwrap())
            .section("empty", "true");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&probe.command().script)
            .output()
            .expect("sh runs");
        std::fs::remove_dir_all(&dir).unwrap();
        let sections = Sections::parse(&String::from_utf8_lossy(&output.stdout)).expect("ended");
        let a = sections.file("a", "a").unwrap();
        assert_eq!(a.content(), Some("one\ntwo\n"));
        assert!(matches!(
            a,
            FileState::Present {
                kind: FileKind::Regular,
                ..
            }
        ));
        assert_eq!(
            sections.file("b", "b").unwrap().content(),
            Some("no newline")
        );
        assert_eq!(sections.file("missing", "m").unwrap(), FileState::Absent);
        assert!(matches!(
            sections.file("dir", "d").unwrap(),
            FileState::Present {
                kind: FileKind::Directory,
                ..
            }
        ));
        assert_eq!(sections.get("empty"), "");
    }

    #[test]
    fn output_cut_short_does_not_parse() {
        assert_eq!(Sections::parse("\n@@metalk8s:a\nx"), None);
        let full = probe_output(&[("a", "x\n")]);
        assert_eq!(Sections::parse(&full).unwrap().get("a"), "x\n");
    }

    #[test]
    fn excerpt_shows_the_first_line() {
        assert_eq!(excerpt("apt-get update"), "`apt-get update`");
        assert_eq!(excerpt("set -e\nfoo"), "`set -e…`");
    }
}
