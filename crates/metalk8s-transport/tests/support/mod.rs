//! A real `sshd` on 127.0.0.1 for the SSH tests: its own host key, a client key it
//! accepts, and a known_hosts file that records its key.
//!
//! Needs root (to log in as root and to create throwaway users) and the
//! `openssh-server` and `sudo` packages; sshd is started here, not as a service.

#![allow(dead_code)] // Each test binary uses its own part of the harness.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use metalk8s_transport::{HostKeyPolicy, SshTarget};
use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub port: u16,
    dir: TempDir,
    child: Child,
}

impl Sshd {
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install the openssh-server package to run the SSH tests"
        );
        assert_eq!(
            fs::metadata("/proc/self")
                .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta))
                .ok(),
            Some(0),
            "the SSH tests run sshd and log in as root: run them as root"
        );
        // sshd's privilege separation directory, normally made by its service unit.
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("metalk8s-sshd-")
            .tempdir()
            .expect("temp dir");
        // sshd reads authorized_keys as the user logging in, who may not be root.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        keygen(&dir.path().join("other_key"));
        fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        fs::set_permissions(
            dir.path().join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        // A free port may be taken between probing and sshd binding it: try a few.
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = launch(dir.path(), port) {
                let sshd = Sshd { port, dir, child };
                fs::write(sshd.known_hosts(), sshd.known_hosts_line()).expect("known_hosts");
                return sshd;
            }
        }
        panic!(
            "sshd did not start; see {}",
            dir.path().join("sshd.log").display()
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn client_key(&self) -> PathBuf {
        self.path("client_key")
    }

    /// A key sshd does not accept, and a host key it does not have.
    pub fn other_key(&self) -> PathBuf {
        self.path("other_key")
    }

    /// Records the real host key of this sshd.
    pub fn known_hosts(&self) -> PathBuf {
        self.path("known_hosts")
    }

    pub fn known_hosts_line(&self) -> String {
        format!(
            "[127.0.0.1]:{} {}\n",
            self.port,
            public_key(&self.path("host_key.pub"))
        )
    }

    /// Logs in as root with the accepted key, checking the recorded host key.
    pub fn target(&self, name: &str) -> SshTarget {
        SshTarget {
            name: name.to_owned(),
            address: "127.0.0.1".to_owned(),
            port: self.port,
            user: "root".to_owned(),
            identity_file: Some(self.client_key()),
            known_hosts_file: Some(self.known_hosts()),
            host_keys: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(5),
            sudo: false,
        }
    }

    /// Lets the client key of `other` log in here too.
    pub fn authorize_client_of(&self, other: &Sshd) {
        let key = fs::read_to_string(other.path("client_key.pub")).expect("public key");
        append(&self.path("authorized_keys"), &key);
    }

    /// How many logins sshd accepted so far.
    pub fn accepted_logins(&self) -> usize {
        let log = fs::read_to_string(self.path("sshd.log")).unwrap_or_default();
        log.matches("Accepted publickey").count()
    }

    /// Cuts every open connection by killing sshd's per-connection processes (its
    /// children), as a node reboot would; sshd itself keeps listening.
    pub fn drop_connections(&self) {
        let status = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status()
            .expect("pkill runs");
        assert!(status.success(), "no connection to drop");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(dir: &Path, port: u16) -> Option<Child> {
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_key\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PidFile none\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             MaxStartups 100\n\
             MaxSessions 100\n",
            dir = dir.display()
        ),
    )
    .expect("sshd_config");
    let log = fs::File::create(dir.join("sshd.log")).expect("log file");
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sshd");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if child.try_wait().expect("sshd status").is_some() {
            return None;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A port nothing listens on: probed free, then left closed.
pub fn closed_port() -> u16 {
    free_port()
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", ""])
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// `TYPE BASE64` of a public key file.
pub fn public_key(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A throwaway unprivileged user with no sudo rights, removed on drop.
pub struct TestUser {
    pub name: String,
}

impl TestUser {
    pub fn create() -> TestUser {
        let name = format!("mk8st{}", std::process::id());
        // A leftover of a killed run would make useradd fail.
        let _ = Command::new("userdel").args(["-f", &name]).status();
        // `*` as the password: no password login, but not "locked", which sshd refuses
        // even for key logins when PAM is off.
        let status = Command::new("useradd")
            .args(["-M", "-d", "/tmp", "-s", "/bin/sh", "-p", "*", &name])
            .status()
            .expect("useradd runs");
        assert!(status.success(), "useradd {name} failed");
        TestUser { name }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-f", &self.name]).status();
    }
}

/// Appends `line` to `path`.
pub fn append(path: &Path, line: &str) {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open");
    file.write_all(line.as_bytes()).expect("append");
}

/// Waits until no process has `marker` in its command line.
pub async fn process_gone(marker: &str, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        let pgrep = Command::new("pgrep")
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
