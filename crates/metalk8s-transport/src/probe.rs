//! [`Probe`]: one read-only script that gathers everything an observation needs, its
//! output cut into named sections. Observing a converged node is almost only probes, so
//! a host may answer one without a process: [`Host::probe`] runs the script, and
//! [`LocalHost`](crate::LocalHost) reads the path sections itself (see `local`). Either
//! way the output is the same text, read by the same parser above this crate.

use crate::{Command, quote};

/// Every script run as root by the layers above starts here: tools in the sbin
/// directories are found even from a minimal environment, and messages are in English,
/// since some are read (`Device or resource busy`, `Unable to locate package`).
pub const SCRIPT_PRELUDE: &str =
    "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n";

/// Starts each section of a probe's output, followed by the section's name and a newline.
pub const SECTION_MARK: &str = "\n@@metalk8s:";

/// The last section of every probe: its absence means the script was cut short.
pub const END_SECTION: &str = "end";

/// What one section prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Section {
    /// What a shell script prints.
    Shell(String),
    /// `absent`, or the path's `stat -L -c '%a %U %G %F'` line followed by its content.
    File(String),
    /// Like [`Section::File`] without the content.
    Metadata(String),
    /// What `cat -- PATH` prints: the content alone, for files that are always there
    /// (/proc/swaps, /proc/sys/kernel/hostname).
    Contents(String),
}

/// A read-only script run as root, in named sections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    sections: Vec<(String, Section)>,
}

impl Probe {
    pub fn new() -> Self {
        Probe::default()
    }

    /// Adds a section whose content is what the shell script `body` prints. Later shell
    /// sections see the variables earlier ones set.
    pub fn section(self, name: &str, body: &str) -> Self {
        self.with(name, Section::Shell(body.trim_end().to_owned()))
    }

    /// Adds a section describing `path`, followed as `stat -L` does: `absent`, or its
    /// mode, owner, group and kind on one line, then its content.
    pub fn file(self, name: &str, path: &str) -> Self {
        self.with(name, Section::File(path.to_owned()))
    }

    /// Adds a section with only the metadata line of `path` (no content).
    pub fn metadata(self, name: &str, path: &str) -> Self {
        self.with(name, Section::Metadata(path.to_owned()))
    }

    /// Adds a section with only the content of `path`, as `cat` prints it.
    pub fn contents(self, name: &str, path: &str) -> Self {
        self.with(name, Section::Contents(path.to_owned()))
    }

    fn with(mut self, name: &str, section: Section) -> Self {
        self.sections.push((name.to_owned(), section));
        self
    }

    /// The sections, in the order they were added.
    pub fn sections(&self) -> &[(String, Section)] {
        &self.sections
    }

    /// The script that prints every section then the end mark, as root.
    pub fn command(&self) -> Command {
        let mut script = SCRIPT_PRELUDE.to_owned();
        for (name, section) in &self.sections {
            script.push_str(&mark(name));
            script.push_str(&body(section));
            script.push('\n');
        }
        script.push_str(&mark(END_SECTION));
        Command::new(script).as_root()
    }
}

/// `printf` of a section mark: a newline first, so that a section whose content does not
/// end with one still ends where the mark starts.
fn mark(name: &str) -> String {
    format!("printf '\\n@@metalk8s:%s\\n' {}\n", quote(name))
}

fn body(section: &Section) -> String {
    match section {
        Section::Shell(body) => body.clone(),
        Section::File(path) => format!(
            "if [ -e {p} ]; then stat -L -c '%a %U %G %F' -- {p} && cat -- {p}; else echo absent; fi",
            p = quote(path)
        ),
        Section::Metadata(path) => format!(
            "if [ -e {p} ]; then stat -L -c '%a %U %G %F' -- {p}; else echo absent; fi",
            p = quote(path)
        ),
        Section::Contents(path) => format!("cat -- {}", quote(path)),
    }
}

/// How section `name` starts in a probe's output.
pub(crate) fn section_start(name: &str) -> String {
    format!("{SECTION_MARK}{name}\n")
}
