//! Running the external programs the lab drives (docker, losetup, debootstrap, ssh…).
//!
//! The lab shells out rather than speaking the docker API: the CLI tools are what an
//! operator would type, so every failure can be reproduced by hand from its message.

use std::env;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{CommandError, LabError};

/// Runs `command` to completion and returns its stdout, trimmed.
pub(crate) fn run(command: &mut Command) -> Result<String, CommandError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            command: describe(command),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(CommandError::Failed {
            command: describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The command line as a person would type it, for error messages.
pub(crate) fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|arg| {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            format!("'{arg}'")
        } else {
            arg.into_owned()
        }
    }));
    words.join(" ")
}

/// Fails with an actionable message when `program` cannot be found on PATH, so a missing
/// tool is reported up front instead of as an obscure failure halfway through `up`.
pub(crate) fn require(program: &'static str, hint: &'static str) -> Result<(), LabError> {
    let found = env::var_os("PATH")
        .map(|path| env::split_paths(&path).any(|dir| is_executable(&dir.join(program))))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(LabError::ToolMissing { program, hint })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs a long `command` with its stdout and stderr appended to `log`, so a failure
/// halfway through minutes of work can be read in full; the error quotes the log's tail.
pub(crate) fn run_logged(command: &mut Command, log: &Path) -> Result<(), CommandError> {
    let spawn_error = |command: &Command, source| CommandError::Spawn {
        command: describe(command),
        source,
    };
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    };
    let stdout = open().map_err(|source| spawn_error(command, source))?;
    let stderr = open().map_err(|source| spawn_error(command, source))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(|source| spawn_error(command, source))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    Err(CommandError::Failed {
        command: describe(command),
        status,
        stderr: tail,
    })
}
