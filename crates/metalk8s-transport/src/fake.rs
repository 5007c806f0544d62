//! A [`Host`] for the unit tests of the layers above: it answers commands from a script
//! of responses and records every call for assertions. Tests construct it and pass it
//! explicitly, as an `Arc<dyn Host>` or `&dyn Host`, wherever a real host would go.
//!
//! ```
//! # tokio_test_block_on(async {
//! use metalk8s_transport::fake::RecordingHost;
//! use metalk8s_transport::{Command, Host, Output};
//!
//! let host = RecordingHost::new("node1").on("uname -r", Output::ok("6.1.0-18-amd64\n"));
//! let output = host.run(&Command::new("uname -r")).await.unwrap();
//! assert_eq!(output.stdout_text(), "6.1.0-18-amd64\n");
//! assert_eq!(host.scripts(), ["uname -r"]);
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::sync::Mutex;

use async_trait::async_trait;

use crate::{Command, Host, HostError, Output};

type Responder = Box<dyn Fn(&Command) -> Option<Result<Output, HostError>> + Send + Sync>;
type UploadResponder = Box<dyn Fn(&Upload) -> Result<(), HostError> + Send + Sync>;

/// A file written through [`Host::upload`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    pub become_root: bool,
}

/// One call made on a [`RecordingHost`], in the order the calls were made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Run(Command),
    Upload(Upload),
    /// A port forward to this remote address.
    Forward(std::net::SocketAddr),
    Close,
}

/// A scripted host. Each command is answered by the first response whose rule matches
/// it; a command no rule matches gets the fallback answer, by default exit status 127 and
/// a message naming the command, so that an unexpected command shows in the test's failure.
pub struct RecordingHost {
    name: String,
    responders: Vec<Responder>,
    fallback: Option<Output>,
    upload_responder: Option<UploadResponder>,
    calls: Mutex<Vec<Call>>,
}

impl RecordingHost {
    pub fn new(name: impl Into<String>) -> Self {
        RecordingHost {
            name: name.into(),
            responders: Vec::new(),
            fallback: None,
            upload_responder: None,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Answers `output` to every command whose script contains `script_part`.
    pub fn on(self, script_part: &str, output: Output) -> Self {
        let script_part = script_part.to_owned();
        self.on_with(move |command| {
            command
                .script
                .contains(&script_part)
                .then(|| Ok(output.clone()))
        })
    }

    /// Answers with `respond` for the commands it returns `Some` for; the way to script
    /// errors, or answers that depend on the command's input.
    pub fn on_with(
        mut self,
        respond: impl Fn(&Command) -> Option<Result<Output, HostError>> + Send + Sync + 'static,
    ) -> Self {
        self.responders.push(Box::new(respond));
        self
    }

    /// Answers `output` to commands no rule matches.
    pub fn otherwise(mut self, output: Output) -> Self {
        self.fallback = Some(output);
        self
    }

    /// Decides the outcome of uploads (by default they all succeed).
    pub fn on_upload(
        mut self,
        respond: impl Fn(&Upload) -> Result<(), HostError> + Send + Sync + 'static,
    ) -> Self {
        self.upload_responder = Some(Box::new(respond));
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().clone()
    }

    /// The commands run so far, in order.
    pub fn commands(&self) -> Vec<Command> {
        self.lock()
            .iter()
            .filter_map(|call| match call {
                Call::Run(command) => Some(command.clone()),
                _ => None,
            })
            .collect()
    }

    /// The scripts of the commands run so far, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.commands()
            .into_iter()
            .map(|command| command.script)
            .collect()
    }

    /// The uploads made so far, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.lock()
            .iter()
            .filter_map(|call| match call {
                Call::Upload(upload) => Some(upload.clone()),
                _ => None,
            })
            .collect()
    }

    /// What the last upload to `path` wrote.
    pub fn uploaded(&self, path: &str) -> Option<Vec<u8>> {
        self.uploads()
            .into_iter()
            .rev()
            .find(|upload| upload.path == path)
            .map(|upload| upload.contents)
    }

    pub fn closed(&self) -> bool {
        self.lock().contains(&Call::Close)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        // A panicking test thread poisons the lock; the record is still worth reading.
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unmatched(&self, command: &Command) -> Output {
        self.fallback.clone().unwrap_or_else(|| {
            let message = format!(
                "RecordingHost {}: no scripted response for: {}\n",
                self.name, command.script
            );
            Output::failed(127, message)
        })
    }
}

#[async_trait]
impl Host for RecordingHost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, command: &Command) -> Result<Output, HostError> {
        self.lock().push(Call::Run(command.clone()));
        self.responders
            .iter()
            .find_map(|respond| respond(command))
            .unwrap_or_else(|| Ok(self.unmatched(command)))
    }

    async fn upload(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
        become_root: bool,
    ) -> Result<(), HostError> {
        let upload = Upload {
            path: path.to_owned(),
            contents: contents.to_vec(),
            mode,
            become_root,
        };
        self.lock().push(Call::Upload(upload.clone()));
        match &self.upload_responder {
            Some(respond) => respond(&upload),
            None => Ok(()),
        }
    }

    /// Recorded; the answer is `remote` itself, as on the local machine (a test that
    /// needs a listener there starts one).
    async fn forward(
        &self,
        remote: std::net::SocketAddr,
    ) -> Result<std::net::SocketAddr, HostError> {
        self.lock().push(Call::Forward(remote));
        Ok(remote)
    }

    async fn close(&self) -> Result<(), HostError> {
        self.lock().push(Call::Close);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn first_matching_rule_answers_and_every_call_is_recorded() {
        let host = RecordingHost::new("node1")
            .on("hostname", Output::ok("node1\n"))
            .on("host", Output::ok("never reached for hostname\n"))
            .on_with(|command| {
                command.script.starts_with("cat").then(|| {
                    let input = command.stdin.clone().unwrap_or_default();
                    Ok(Output::ok(input))
                })
            });
        let host: Arc<dyn Host> = Arc::new(host);
        let hostname = host.run(&Command::new("hostname")).await.expect("runs");
        assert_eq!(hostname.stdout_text(), "node1\n");
        let echoed = host
            .run(&Command::new("cat").stdin("abc").as_root())
            .await
            .expect("runs");
        assert_eq!(echoed.stdout, b"abc");
    }

    #[tokio::test]
    async fn unmatched_commands_fail_visibly_unless_a_fallback_is_set() {
        let strict = RecordingHost::new("node1");
        let output = strict.run(&Command::new("reboot")).await.expect("runs");
        assert_eq!(output.status, 127);
        assert!(output.stderr_text().contains("reboot"));

        let lenient = RecordingHost::new("node1").otherwise(Output::ok(""));
        let output = lenient.run(&Command::new("reboot")).await.expect("runs");
        assert!(output.success());
    }

    #[tokio::test]
    async fn scripted_errors_are_returned() {
        let host = RecordingHost::new("node1").on_with(|_| {
            Some(Err(HostError::SudoRefused {
                host: "node1".into(),
                user: "deploy".into(),
            }))
        });
        let error = host
            .run(&Command::new("id").as_root())
            .await
            .expect_err("scripted error");
        assert!(matches!(error, HostError::SudoRefused { .. }));
    }

    #[tokio::test]
    async fn uploads_and_close_are_recorded_in_order() {
        let host = RecordingHost::new("node1").on_upload(|upload| {
            if upload.path.starts_with("/readonly") {
                Err(HostError::Upload {
                    host: "node1".into(),
                    path: upload.path.clone(),
                    source: crate::CommandFailed {
                        status: 1,
                        stderr: "Read-only file system".into(),
                    },
                })
            } else {
                Ok(())
            }
        });
        host.upload("/etc/a", b"one", 0o644, true)
            .await
            .expect("uploads");
        host.run(&Command::new("true")).await.expect("runs");
        host.upload("/etc/a", b"two", 0o600, false)
            .await
            .expect("uploads");
        assert!(host.upload("/readonly/b", b"x", 0o644, true).await.is_err());
        host.close().await.expect("closes");

        assert_eq!(host.uploaded("/etc/a"), Some(b"two".to_vec()));
        assert_eq!(host.uploads()[0].mode, 0o644);
        assert!(host.uploads()[0].become_root);
        let calls = host.calls();
        assert_eq!(calls.len(), 5);
        assert!(matches!(&calls[1], Call::Run(command) if command.script == "true"));
        assert_eq!(calls[4], Call::Close);
        assert!(host.closed());
    }
}
