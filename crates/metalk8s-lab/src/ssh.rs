//! The lab's SSH key, its known_hosts file and the `ssh` command that uses both.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use crate::cmd;
use crate::error::LabError;

/// Generates the lab's ed25519 key pair (no passphrase: the lab is throw-away and tests
/// log in unattended).
pub(crate) fn generate_key(identity_file: &Path, lab: &str) -> Result<(), LabError> {
    cmd::run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .args(["-C", &format!("metalk8s-lab-{lab}")])
            .arg("-f")
            .arg(identity_file),
    )
    .map(drop)
    .map_err(|source| LabError::KeyGen {
        path: identity_file.to_owned(),
        source,
    })
}

/// A known_hosts line for a node, from its public host key file's content
/// (`ssh-ed25519 AAAA… comment`).
pub(crate) fn known_hosts_line(ip: Ipv4Addr, public_key: &str) -> String {
    let mut fields = public_key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let key = fields.next().unwrap_or_default();
    format!("{ip} {kind} {key}")
}

/// `ssh … root@ip`, trusting only the lab's known_hosts: the host keys were read from the
/// nodes through docker, so nothing is accepted on first sight.
pub(crate) fn command(
    identity_file: &Path,
    known_hosts: &Path,
    ip: Ipv4Addr,
    extra_options: &[&str],
) -> Command {
    let mut ssh = Command::new("ssh");
    ssh.arg("-i").arg(identity_file);
    for option in [
        "IdentitiesOnly=yes",
        &format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null",
        "StrictHostKeyChecking=yes",
        "BatchMode=yes",
        "LogLevel=ERROR",
    ]
    .into_iter()
    .chain(extra_options.iter().copied())
    {
        ssh.args(["-o", option]);
    }
    ssh.arg(format!("root@{ip}"));
    ssh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_line_drops_the_comment() {
        let line = known_hosts_line(
            Ipv4Addr::new(172, 30, 1, 11),
            "ssh-ed25519 AAAAC3Nza root@node1\n",
        );
        assert_eq!(line, "172.30.1.11 ssh-ed25519 AAAAC3Nza");
    }

    #[test]
    fn command_checks_host_keys_strictly() {
        let ssh = command(
            Path::new("/lab/id_ed25519"),
            Path::new("/lab/known_hosts"),
            Ipv4Addr::new(172, 30, 1, 11),
            &["ConnectTimeout=5"],
        );
        let line = cmd::describe(&ssh);
        assert!(line.starts_with("ssh -i /lab/id_ed25519 "), "{line}");
        assert!(
            line.contains("-o UserKnownHostsFile=/lab/known_hosts"),
            "{line}"
        );
        assert!(line.contains("-o StrictHostKeyChecking=yes"), "{line}");
        assert!(line.contains("-o ConnectTimeout=5"), "{line}");
        assert!(line.ends_with(" root@172.30.1.11"), "{line}");
    }
}
