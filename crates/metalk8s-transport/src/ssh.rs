//! [`SshHost`]: a node reached through one multiplexed SSH connection.
//!
//! The system `ssh` binary holds the connection as a ControlMaster (through the `openssh`
//! crate); each command is a new session over it, so hundreds of commands cost one
//! handshake. Connection failures are read from ssh's own messages (OpenSSH 9) and turned
//! into the [`HostError`] the operator can act on.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use std::{fmt, io};

use async_trait::async_trait;
use metalk8s_model::inventory::{Inventory, Node};
use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Stdio};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::sync::Mutex;

use crate::OnLine;
use crate::shell;
use crate::stdio::{read_all, read_lines, write_ignoring_early_exit};
use crate::{Command, Host, HostError, Output};

/// How long an unused connection stays open. A master that outlives a crashed run would
/// otherwise stay forever; one that expired during a quiet phase is simply reopened.
const CONTROL_PERSIST_SECONDS: usize = 600;

/// What `ssh` does with a host key that is not in known_hosts yet. A key that differs from
/// the recorded one is refused by both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse hosts whose key is not recorded.
    #[default]
    Strict,
    /// Record keys never seen before and connect.
    AcceptNew,
}

/// Everything needed to open a connection to one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// The inventory name, used in every message.
    pub name: String,
    /// What `ssh` connects to: an IP address or a resolvable name.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The only key offered; the agent and `~/.ssh/config` decide when unset.
    pub identity_file: Option<PathBuf>,
    /// Where host keys are checked and recorded; the user's `~/.ssh/known_hosts` when unset.
    pub known_hosts_file: Option<PathBuf>,
    pub host_keys: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// Go through `sudo -n` for commands run as root even when logged in as root.
    pub sudo: bool,
}

impl SshTarget {
    /// The target for `node`, its SSH overrides merged with the cluster-wide settings.
    pub fn from_inventory(inventory: &Inventory, node: &Node) -> Self {
        let settings = &inventory.ssh;
        let node_ssh = node.ssh(settings);
        SshTarget {
            name: node.name.clone(),
            address: node.address.clone(),
            port: node_ssh.port,
            user: node_ssh.user,
            identity_file: node_ssh.identity_file.map(|path| expand_home(&path)),
            known_hosts_file: settings.known_hosts_file.as_deref().map(expand_home),
            host_keys: if settings.accept_new_host_keys {
                HostKeyPolicy::AcceptNew
            } else {
                HostKeyPolicy::Strict
            },
            connect_timeout: Duration::from_secs(settings.connect_timeout_seconds.into()),
            sudo: node_ssh.sudo,
        }
    }

    /// Whether commands run as root need `sudo`.
    fn sudo_for_root(&self) -> bool {
        self.sudo || self.user != "root"
    }

    fn known_hosts_display(&self) -> String {
        match &self.known_hosts_file {
            Some(path) => path.display().to_string(),
            None => "~/.ssh/known_hosts".to_owned(),
        }
    }

    fn session_builder(&self, control_dir: &std::path::Path) -> SessionBuilder {
        let mut builder = SessionBuilder::default();
        builder
            .user(self.user.clone())
            .port(self.port)
            .known_hosts_check(match self.host_keys {
                HostKeyPolicy::Strict => KnownHosts::Strict,
                HostKeyPolicy::AcceptNew => KnownHosts::Add,
            })
            // ssh reads 0 as "no timeout"; a connection must always give up eventually.
            .connect_timeout(self.connect_timeout.max(Duration::from_secs(1)))
            // Notices a node that vanished (a reboot, a cable) instead of hanging on it.
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(control_dir)
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(CONTROL_PERSIST_SECONDS).expect("non-zero"),
            ));
        if let Some(identity_file) = &self.identity_file {
            builder.keyfile(identity_file);
        }
        if let Some(known_hosts) = &self.known_hosts_file {
            builder.user_known_hosts_file(known_hosts);
        }
        builder
    }
}

/// `ssh` expands `~` itself, but the identity file is checked here first.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// A message from `ssh` or about the connection, carried as the cause of a [`HostError`].
#[derive(Debug)]
struct SshMessage(String);

impl fmt::Display for SshMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SshMessage {}

/// Reads why `ssh` could not open the connection from what it printed. The phrases are
/// those of OpenSSH 9 (Debian 12, RHEL 9) and are matched most specific first.
pub(crate) fn classify_connect_failure(target: &SshTarget, stderr: &str) -> HostError {
    const UNREACHABLE: [&str; 7] = [
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "timed out",
        "Could not resolve hostname",
        "Name or service not known",
        "connect to host",
    ];
    let host = target.name.clone();
    let address = target.address.clone();
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        let known_hosts = target.known_hosts_display();
        return HostError::HostKeyChanged {
            host,
            address,
            known_hosts,
        };
    }
    if stderr.contains("host key is known for") || stderr.contains("Host key verification failed") {
        let known_hosts = target.known_hosts_display();
        return HostError::HostKeyUnknown {
            host,
            address,
            known_hosts,
        };
    }
    if UNREACHABLE.iter().any(|phrase| stderr.contains(phrase)) {
        let source = Box::new(SshMessage(ssh_message(stderr)));
        return HostError::Unreachable {
            host,
            address,
            source,
        };
    }
    if stderr.contains("Permission denied") {
        let user = target.user.clone();
        return HostError::AuthRefused {
            host,
            address,
            user,
        };
    }
    let source = Box::new(SshMessage(ssh_message(stderr)));
    HostError::Connection { host, source }
}

/// ssh's output without its `ssh: ` prefix and the notes that are not the failure.
fn ssh_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(|line| line.trim().trim_start_matches("ssh: "))
        .filter(|line| !line.is_empty() && !line.starts_with("Warning: Permanently added"))
        .collect();
    if lines.is_empty() {
        "ssh exited without saying why".to_owned()
    } else {
        lines.join("\n")
    }
}

enum State {
    Open(Arc<Session>),
    Closed,
}

/// A node reached over SSH. Commands share one connection, reopened when it was lost (the
/// node rebooted, the connection stayed unused too long) before a command starts: a
/// command is never retried once it started.
pub struct SshHost {
    // Declared before `control_dir`: fields drop in order, and the master must be told to
    // stop while its socket still exists.
    state: Mutex<State>,
    target: SshTarget,
    control_dir: TempDir,
    /// Where masters that outlive this process are kept, when connections are reused.
    reuse: Option<PathBuf>,
}

impl fmt::Debug for SshHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshHost")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl SshHost {
    /// Opens the connection (with the timeout of the target) and checks the login.
    pub async fn connect(target: SshTarget) -> Result<SshHost, HostError> {
        SshHost::open(target, None).await
    }

    /// Like [`SshHost::connect`], but the connection outlives this process (for
    /// `CONTROL_PERSIST_SECONDS` of idleness) and later runs reuse it from `directory`
    /// instead of logging in again, as ssh's own ControlPersist does: a no-op run then
    /// costs no key exchange. `directory` must be private to the user (it is made 0700):
    /// its sockets run commands on the nodes without authentication.
    pub async fn connect_reusing(
        target: SshTarget,
        directory: &Path,
    ) -> Result<SshHost, HostError> {
        create_private_dir(directory).map_err(|error| connection_error(&target, error))?;
        SshHost::open(target, Some(directory.to_owned())).await
    }

    async fn open(target: SshTarget, reuse: Option<PathBuf>) -> Result<SshHost, HostError> {
        check_identity_file(&target)?;
        // Private (0700) so that no other local user can reach the control socket, which
        // runs commands on the node without authentication.
        let control_dir = tempfile::Builder::new()
            .prefix("metalk8s-ssh-")
            .tempdir()
            .map_err(|error| connection_error(&target, error))?;
        let session = launch(&target, &control_dir, reuse.as_deref()).await?;
        Ok(SshHost {
            state: Mutex::new(State::Open(Arc::new(session))),
            target,
            control_dir,
            reuse,
        })
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    async fn session(&self) -> Result<Arc<Session>, HostError> {
        match &*self.state.lock().await {
            State::Open(session) => Ok(Arc::clone(session)),
            State::Closed => Err(self.closed_error()),
        }
    }

    /// Replaces `lost` with a new connection, unless another command already did.
    async fn reconnect(&self, lost: &Arc<Session>) -> Result<Arc<Session>, HostError> {
        let mut state = self.state.lock().await;
        match &*state {
            State::Closed => Err(self.closed_error()),
            State::Open(current) if !Arc::ptr_eq(current, lost) => Ok(Arc::clone(current)),
            State::Open(_) => {
                let session =
                    Arc::new(launch(&self.target, &self.control_dir, self.reuse.as_deref()).await?);
                *state = State::Open(Arc::clone(&session));
                Ok(session)
            }
        }
    }

    async fn execute(
        &self,
        line: &str,
        stdin: Option<&[u8]>,
        on_line: Option<&OnLine<'_>>,
    ) -> Result<Output, HostError> {
        let session = self.session().await?;
        let child = match spawn(&session, line, stdin.is_some()).await {
            // The master is gone, so the command never started: safe to reopen and start it.
            Err(openssh::Error::Disconnected) => {
                let session = self.reconnect(&session).await?;
                spawn(&session, line, stdin.is_some()).await
            }
            spawned => spawned,
        }
        .map_err(|error| connection_error(&self.target, error))?;
        collect(child, stdin, on_line)
            .await
            .map_err(|error| connection_error(&self.target, error))
    }

    async fn run_with(
        &self,
        command: &Command,
        on_line: Option<&OnLine<'_>>,
    ) -> Result<Output, HostError> {
        let sudo = command.become_root && self.target.sudo_for_root();
        let line = shell::command_line(&shell::argv(&command.script, sudo, command.timeout));
        let what = || shell::describe(&command.script);
        let work = self.execute(&line, command.stdin.as_deref(), on_line);
        let output = shell::with_deadline(self.name(), what, command.timeout, work).await?;
        if sudo && shell::sudo_refused(&output) {
            return Err(HostError::SudoRefused {
                host: self.target.name.clone(),
                user: self.target.user.clone(),
            });
        }
        Ok(output)
    }

    fn closed_error(&self) -> HostError {
        let message = SshMessage("the connection was already closed".to_owned());
        connection_error(&self.target, message)
    }
}

#[async_trait]
impl Host for SshHost {
    fn name(&self) -> &str {
        &self.target.name
    }

    async fn run(&self, command: &Command) -> Result<Output, HostError> {
        self.run_with(command, None).await
    }

    async fn run_streaming(
        &self,
        command: &Command,
        on_line: &OnLine<'_>,
    ) -> Result<Output, HostError> {
        self.run_with(command, Some(on_line)).await
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

    /// A loopback port of this machine, forwarded by the SSH master to `remote` on the
    /// node. The port is picked free by binding it, then handed to ssh (another process
    /// taking it in between makes ssh's request fail, and the error says so); the forward
    /// lasts as long as the connection.
    async fn forward(&self, remote: SocketAddr) -> Result<SocketAddr, HostError> {
        let session = self.session().await?;
        let local = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|error| connection_error(&self.target, error))?;
        session
            .request_port_forward(ForwardType::Local, local, remote)
            .await
            .map_err(|error| HostError::Connection {
                host: self.target.name.clone(),
                source: format!("forwarding {local} to {remote} on the node: {error}").into(),
            })?;
        Ok(local)
    }

    async fn close(&self) -> Result<(), HostError> {
        let state = std::mem::replace(&mut *self.state.lock().await, State::Closed);
        let State::Open(session) = state else {
            return Ok(());
        };
        // While commands still run they hold the session; the last one to finish drops it,
        // and dropping a session stops its master too.
        let Ok(session) = Arc::try_unwrap(session) else {
            return Ok(());
        };
        if self.reuse.is_some() {
            // A reused master is left to expire on its own: the next run picks it up.
            return Ok(());
        }
        match session.close().await {
            // Already gone (the node rebooted, or the master expired): nothing to close.
            Ok(()) | Err(openssh::Error::Disconnected) => Ok(()),
            Err(error) => Err(connection_error(&self.target, error)),
        }
    }
}

/// Catches a missing identity file here: ssh only warns about it and then reports a
/// refused login, which points the operator at the wrong end.
fn check_identity_file(target: &SshTarget) -> Result<(), HostError> {
    let Some(path) = &target.identity_file else {
        return Ok(());
    };
    std::fs::File::open(path).map(drop).map_err(|error| {
        let message = format!("cannot read identity file {}: {error}", path.display());
        connection_error(target, SshMessage(message))
    })
}

async fn launch(
    target: &SshTarget,
    control_dir: &TempDir,
    reuse: Option<&Path>,
) -> Result<Session, HostError> {
    if let Some(directory) = reuse {
        return launch_reusable(target, directory).await;
    }
    let builder = target.session_builder(control_dir.path());
    match builder.connect_mux(&target.address).await {
        Ok(session) => Ok(session),
        // openssh reports what ssh printed as the message of this error.
        Err(openssh::Error::Connect(error)) => {
            Err(classify_connect_failure(target, &error.to_string()))
        }
        Err(error) => Err(connection_error(target, error)),
    }
}

fn connection_error(
    target: &SshTarget,
    source: impl std::error::Error + Send + Sync + 'static,
) -> HostError {
    HostError::Connection {
        host: target.name.clone(),
        source: Box::new(source),
    }
}

async fn spawn(
    session: &Arc<Session>,
    line: &str,
    with_stdin: bool,
) -> Result<openssh::Child<Arc<Session>>, openssh::Error> {
    Session::arc_raw_command(Arc::clone(session), line)
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await
}

/// Feeds standard input while reading both outputs, so that a script that writes before
/// it has read all its input cannot deadlock against us, then waits for the exit status.
async fn collect(
    mut child: openssh::Child<Arc<Session>>,
    stdin: Option<&[u8]>,
    on_line: Option<&OnLine<'_>>,
) -> Result<Output, openssh::Error> {
    let stdin_pipe = child.stdin().take();
    let stdout_pipe = child.stdout().take();
    let stderr_pipe = child.stderr().take();
    let feed = async {
        if let (Some(mut pipe), Some(input)) = (stdin_pipe, stdin) {
            write_ignoring_early_exit(&mut pipe, input).await?;
        }
        Ok(())
    };
    let stdout = async {
        match on_line {
            Some(on_line) => read_lines(stdout_pipe, on_line).await,
            None => read_all(stdout_pipe).await,
        }
    };
    let (stdout, stderr, ()) =
        tokio::try_join!(stdout, read_all(stderr_pipe), feed).map_err(openssh::Error::ChildIo)?;
    let status = match child.wait().await {
        Ok(status) => status.code().unwrap_or(-1),
        // openssh reports exit status 127 as "remote command not found"; the program it
        // started is always sh or sudo, so 127 came from the script: an ordinary status.
        Err(openssh::Error::Remote(error)) if error.kind() == io::ErrorKind::NotFound => 127,
        Err(error) => return Err(error),
    };
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// The file naming the control socket of a reusable master for `target`: everything that
/// decides how the login is made is part of its name, so a changed key, user or host-key
/// policy never reuses a master opened differently. So is the known_hosts content: a
/// reinstalled server (or a re-created lab node at the same address) has a new host key,
/// and must never be reached through a master of its predecessor.
fn reuse_record(target: &SshTarget, directory: &Path) -> PathBuf {
    let known_hosts = target
        .known_hosts_file
        .as_deref()
        .and_then(|path| std::fs::read(path).ok())
        .unwrap_or_default();
    let identity = format!(
        "{}@{}:{}|{:?}|{:?}|{:?}|{}",
        target.user,
        target.address,
        target.port,
        target.identity_file,
        target.known_hosts_file,
        target.host_keys,
        hex::encode(Sha256::digest(&known_hosts))
    );
    let digest = Sha256::digest(identity.as_bytes());
    directory.join(format!("{}.master", hex::encode(&digest[..12])))
}

/// Resumes the recorded master when it still answers; otherwise starts one that outlives
/// this process and records it.
/// How long a kept connection may take to run `true` before it is judged dead.
const REUSE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a kept master still reaches its node: one round trip on the live connection.
async fn answers(session: &Session) -> bool {
    let mut command = session.command("true");
    matches!(
        tokio::time::timeout(REUSE_PROBE_TIMEOUT, command.status()).await,
        Ok(Ok(status)) if status.success()
    )
}

async fn launch_reusable(target: &SshTarget, directory: &Path) -> Result<Session, HostError> {
    let record = reuse_record(target, directory);
    if let Ok(socket) = std::fs::read_to_string(&record) {
        let session = Session::resume_mux(PathBuf::from(socket.trim()).into_boxed_path(), None);
        if session.check().await.is_ok() {
            if answers(&session).await {
                return Ok(session);
            }
            // The master runs but its TCP connection is dead (a network change dropped it):
            // commands would hang until keep-alives give up. Stop it and log in again.
            let _ = session.close().await;
        }
        // Expired or killed: its directory is left over from an earlier run.
        if let Some(parent) = Path::new(socket.trim()).parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
    let builder = target.session_builder(directory);
    let master_dir = match builder.launch_master(&target.address).await {
        Ok(master_dir) => master_dir.keep(),
        Err(openssh::Error::Connect(error)) => {
            return Err(classify_connect_failure(target, &error.to_string()));
        }
        Err(error) => return Err(connection_error(target, error)),
    };
    let socket = master_dir.join("master");
    let temporary = record.with_extension("tmp");
    std::fs::write(&temporary, socket.display().to_string())
        .and_then(|()| std::fs::rename(&temporary, &record))
        .map_err(|error| connection_error(target, error))?;
    Ok(Session::resume_mux(
        socket.into_boxed_path(),
        Some(master_dir.join("log").into_boxed_path()),
    ))
}

fn create_private_dir(directory: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)?;
    std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            name: "node1".into(),
            address: "10.0.0.1".into(),
            port: 22,
            user: "deploy".into(),
            identity_file: None,
            known_hosts_file: Some("/etc/metalk8s/known_hosts".into()),
            host_keys: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            sudo: false,
        }
    }

    // The messages below are what OpenSSH 9.2 (Debian 12) prints, as openssh passes them on.

    #[test]
    fn refused_and_unresolvable_are_unreachable() {
        for stderr in [
            "connect to host 10.0.0.1 port 22: Connection refused",
            "connect to host 10.0.0.1 port 22: No route to host",
            "connect to host 10.0.0.1 port 22: Connection timed out",
            "Connection timed out during banner exchange",
            "Could not resolve hostname node1.example: Name or service not known",
        ] {
            let error = classify_connect_failure(&target(), stderr);
            assert!(
                matches!(&error, HostError::Unreachable { host, address, .. } if host == "node1" && address == "10.0.0.1"),
                "{stderr}: {error:?}"
            );
            let cause = std::error::Error::source(&error)
                .expect("cause")
                .to_string();
            assert_eq!(cause, stderr);
        }
    }

    #[test]
    fn permission_denied_is_auth_refused() {
        let stderr = "Warning: Permanently added '10.0.0.1' (ED25519) to the list of known hosts.\r\n\
                      deploy@10.0.0.1: Permission denied (publickey).";
        let error = classify_connect_failure(&target(), stderr);
        assert!(
            matches!(&error, HostError::AuthRefused { user, .. } if user == "deploy"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "node1 (10.0.0.1) refused the SSH login of user `deploy`"
        );
    }

    #[test]
    fn changed_key_is_host_key_changed() {
        let stderr = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
            Offending ED25519 key in /etc/metalk8s/known_hosts:1\n\
            Host key for 10.0.0.1 has changed and you have requested strict checking.\n\
            Host key verification failed.";
        let error = classify_connect_failure(&target(), stderr);
        assert!(
            matches!(&error, HostError::HostKeyChanged { known_hosts, .. } if known_hosts == "/etc/metalk8s/known_hosts"),
            "{error:?}"
        );
    }

    #[test]
    fn unrecorded_key_is_host_key_unknown() {
        let stderr = "No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.\n\
                      Host key verification failed.";
        let error = classify_connect_failure(&target(), stderr);
        assert!(
            matches!(&error, HostError::HostKeyUnknown { host, .. } if host == "node1"),
            "{error:?}"
        );
    }

    #[test]
    fn unknown_key_names_the_default_known_hosts_when_none_is_set() {
        let target = SshTarget {
            known_hosts_file: None,
            ..target()
        };
        let error = classify_connect_failure(&target, "Host key verification failed.");
        assert_eq!(
            error.to_string(),
            "the host key of node1 (10.0.0.1) is not in ~/.ssh/known_hosts"
        );
    }

    #[test]
    fn anything_else_is_a_connection_failure_carrying_ssh_message() {
        let stderr = "kex_exchange_identification: read: Connection reset by peer";
        let error = classify_connect_failure(&target(), stderr);
        assert!(matches!(error, HostError::Connection { .. }), "{error:?}");
        let cause = std::error::Error::source(&error)
            .expect("cause")
            .to_string();
        assert_eq!(cause, stderr);
    }

    #[test]
    fn from_inventory_merges_node_overrides() {
        let yaml_free_inventory = test_inventory();
        let node = &yaml_free_inventory.nodes[0];
        let target = SshTarget::from_inventory(&yaml_free_inventory, node);
        assert_eq!(target.name, "node1");
        assert_eq!(target.address, "192.0.2.10");
        assert_eq!(target.port, 2222);
        assert_eq!(target.user, "deploy");
        assert_eq!(target.identity_file, Some(PathBuf::from("/keys/node1")));
        assert_eq!(target.known_hosts_file, Some(PathBuf::from("/etc/kh")));
        assert_eq!(target.host_keys, HostKeyPolicy::AcceptNew);
        assert_eq!(target.connect_timeout, Duration::from_secs(7));
        assert!(target.sudo);
        assert!(target.sudo_for_root());
    }

    #[test]
    fn root_login_needs_no_sudo_unless_asked() {
        let root = SshTarget {
            user: "root".into(),
            ..target()
        };
        assert!(!root.sudo_for_root());
        assert!(SshTarget { sudo: true, ..root }.sudo_for_root());
        assert!(target().sudo_for_root());
    }

    #[test]
    fn missing_identity_file_is_reported_before_connecting() {
        let target = SshTarget {
            identity_file: Some("/nonexistent/metalk8s/id".into()),
            ..target()
        };
        let error = check_identity_file(&target).expect_err("missing file");
        let cause = std::error::Error::source(&error)
            .expect("cause")
            .to_string();
        assert!(
            cause.starts_with("cannot read identity file /nonexistent/metalk8s/id"),
            "{cause}"
        );
    }

    fn test_inventory() -> Inventory {
        use metalk8s_model::inventory::{Networks, Role, SshOverrides, SshSettings};
        Inventory {
            api_version: metalk8s_model::inventory::API_VERSION.into(),
            kind: metalk8s_model::inventory::KIND.into(),
            name: "test".into(),
            networks: Networks {
                control_plane: vec!["192.0.2.0/24".parse().expect("cidr")],
                workload_plane: vec!["192.0.2.0/24".parse().expect("cidr")],
                pods: "10.233.0.0/16".parse().expect("cidr"),
                services: "10.96.0.0/12".parse().expect("cidr"),
                api_server_vip: None,
                nameservers: Vec::new(),
                encapsulation: Default::default(),
                encryption: None,
            },
            proxy: None,
            ssh: SshSettings {
                user: "deploy".into(),
                port: 22,
                identity_file: Some("/keys/cluster".into()),
                sudo: true,
                known_hosts_file: Some("/etc/kh".into()),
                accept_new_host_keys: true,
                connect_timeout_seconds: 7,
                parallelism: 4,
            },
            prechecks: Default::default(),
            os: Default::default(),
            nodes: vec![Node {
                name: "node1".into(),
                address: "192.0.2.10".into(),
                control_plane_ip: None,
                workload_plane_ip: None,
                roles: vec![Role::Worker],
                labels: Default::default(),
                taints: Vec::new(),
                ssh: SshOverrides {
                    port: Some(2222),
                    identity_file: Some("/keys/node1".into()),
                    ..Default::default()
                },
                storage: Default::default(),
            }],
        }
    }
}
