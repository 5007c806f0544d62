//! `Fetch`: a file of the bundle (kubelet, kubeadm…) downloaded by the node from the
//! bootstrap repository and placed with a mode, once it hashes to the wanted sha256.
//!
//! Hashing a 100 MB kubelet on every deploy would make a no-op deploy slow, so whoever
//! places the file (`metalk8s agent fetch`) records, at [`record_path`], the sha256, size
//! and modification time it left there. Observing trusts that record while the file's size
//! and modification time still match it, and hashes the file only when they do not (a file
//! rewritten, even to the same size, has a new modification time). The probe decides on
//! the node, so observing stays one command either way.
//!
//! Applying runs the agent's `fetch` on the node (nodes have no curl): it downloads over
//! HTTPS checked with the cluster CA, beside the destination, checks the sha256, syncs,
//! sets the mode, renames into place and then writes the record; it downloads nothing when
//! the file already has the wanted content (a stale record, a mode change).

use async_trait::async_trait;
use metalk8s_model::plan::FetchResource;
use metalk8s_model::repository::CA_FILE;
use metalk8s_transport::Host;

use super::shell::{self, Probe, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

/// Where the records of fetched files are kept: the record of `/usr/bin/kubelet` is
/// `/var/lib/metalk8s/fetched/usr/bin/kubelet`.
pub const FETCHED_DIR: &str = "/var/lib/metalk8s/fetched";

/// The record of the file fetched to `path` (absolute).
pub fn record_path(path: &str) -> String {
    format!("{FETCHED_DIR}{path}")
}

/// What was placed: one line, `SHA256 SIZE MTIME_NS`, the modification time in
/// nanoseconds since the epoch as `stat -c %.9Y` prints it without its dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRecord {
    pub sha256: String,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FetchRecord {
    pub fn to_line(&self) -> String {
        format!("{} {} {}\n", self.sha256, self.size, self.mtime_ns)
    }

    pub fn parse(text: &str) -> Option<FetchRecord> {
        let mut fields = text.split_whitespace();
        let record = FetchRecord {
            sha256: fields.next()?.to_owned(),
            size: fields.next()?.parse().ok()?,
            mtime_ns: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(record)
    }
}

pub(crate) struct Fetch<'a>(pub(crate) &'a FetchResource);

/// The destination as the probe saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Placed {
    Absent,
    /// `stat`'s name for what is there instead of a regular file.
    NotAFile(String),
    File {
        mode: u32,
        size: u64,
        mtime_ns: i128,
        /// From the record when it matches the file, else hashed by the probe.
        sha256: String,
        /// The record did not match the file (or there was none).
        record_stale: bool,
    },
}

impl Fetch<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        let fetch = self.0;
        shell::check_path("fetch destination", &fetch.path)?;
        shell::check_path("agent", &fetch.agent)?;
        if fetch.mode > 0o7777 {
            return Err(shell::invalid(format!(
                "mode {:o} of {} is not a permission mode",
                fetch.mode, fetch.path
            )));
        }
        if fetch.sha256.len() != 64 || !fetch.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(shell::invalid(format!(
                "sha256 {:?} of {} is not 64 hex digits",
                fetch.sha256, fetch.path
            )));
        }
        if !fetch.url.starts_with("https://") || fetch.url.contains(char::is_whitespace) {
            return Err(shell::invalid(format!(
                "{} is fetched from {:?}, which is not an https:// URL",
                fetch.path, fetch.url
            )));
        }
        Ok(())
    }

    /// One read-only command: the file's mode, size and modification time, its record,
    /// and its sha256 only when the record does not match it.
    async fn read(&self, host: &dyn Host) -> Result<Placed, ResourceError> {
        self.check()?;
        let path = &self.0.path;
        let file = format!(
            r#"p={p}
if [ ! -e "$p" ]; then echo absent
elif [ ! -f "$p" ] || [ -L "$p" ]; then echo "other $(stat -c %F -- "$p")"
else
  set -- $(stat -c '%a %s %.9Y' -- "$p")
  size=$2 mtime=$(printf %s "$3" | tr -d .)
  echo "$1 $size $mtime"
fi"#,
            p = quote(path)
        );
        let record = format!(
            "cat -- {r} 2>/dev/null || true",
            r = quote(&record_path(path))
        );
        let hash = format!(
            r#"if [ -n "${{size:-}}" ]; then
  set -- $(cat -- {r} 2>/dev/null) '' '' ''
  if [ "$2 $3" != "$size $mtime" ]; then sha256sum -- "$p" | cut -d' ' -f1; fi
fi"#,
            r = quote(&record_path(path))
        );
        let probe = Probe::new()
            .section("file", &file)
            .section("record", &record)
            .section("hash", &hash);
        let sections = shell::run_probe(host, &probe, path).await?;
        parse(
            path,
            sections.get("file"),
            sections.get("record"),
            sections.get("hash"),
        )
    }

    fn changes(&self, placed: &Placed) -> Result<Vec<Change>, ResourceError> {
        let fetch = self.0;
        let (mode, sha256, record_stale) = match placed {
            Placed::Absent => {
                return Ok(vec![Change::new(format!(
                    "file does not exist, fetched from {}",
                    fetch.url
                ))]);
            }
            Placed::NotAFile(kind) => {
                return Err(shell::invalid(format!(
                    "{} is a {kind}, want a regular file",
                    fetch.path
                )));
            }
            Placed::File {
                mode,
                sha256,
                record_stale,
                ..
            } => (*mode, sha256, *record_stale),
        };
        let mut changes = Vec::new();
        if *sha256 != fetch.sha256 {
            changes.push(Change::new(format!(
                "content hashes to sha256:{sha256}, want sha256:{} from {}",
                fetch.sha256, fetch.url
            )));
        } else if record_stale {
            // The content is right, but without a matching record every observation
            // would hash it again: applying rewrites the record (nothing is downloaded).
            changes.push(Change::new(format!(
                "content is right but {} does not match the file; it is recorded again",
                record_path(&fetch.path)
            )));
        }
        if mode != fetch.mode {
            changes.push(Change::new(format!(
                "mode is {mode:04o}, want {:04o}",
                fetch.mode
            )));
        }
        Ok(changes)
    }

    /// `AGENT agent fetch …`, as root.
    fn command(&self) -> String {
        let fetch = self.0;
        format!(
            "{agent} agent fetch --url {url} --sha256 {sha256} --out {out} --mode {mode:04o} --ca {ca}",
            agent = quote(&fetch.agent),
            url = quote(&fetch.url),
            sha256 = quote(&fetch.sha256),
            out = quote(&fetch.path),
            mode = fetch.mode,
            ca = quote(CA_FILE),
        )
    }
}

/// Reads the probe's sections (see [`Fetch::read`]).
fn parse(path: &str, file: &str, record: &str, hash: &str) -> Result<Placed, ResourceError> {
    let unexpected = |what: &str, text: &str| ResourceError::Command {
        what: format!("reading {path}"),
        status: 0,
        stderr: format!("unexpected {what}: {text:?}"),
    };
    let file = file.trim();
    if file == "absent" {
        return Ok(Placed::Absent);
    }
    if let Some(kind) = file.strip_prefix("other ") {
        return Ok(Placed::NotAFile(kind.to_owned()));
    }
    let fields: Vec<&str> = file.split(' ').collect();
    let [mode, size, mtime_ns] = fields[..] else {
        return Err(unexpected("file state", file));
    };
    let (Ok(mode), Ok(size), Ok(mtime_ns)) = (
        u32::from_str_radix(mode, 8),
        size.parse::<u64>(),
        mtime_ns.parse::<i128>(),
    ) else {
        return Err(unexpected("file state", file));
    };
    let recorded = FetchRecord::parse(record)
        .filter(|record| record.size == size && record.mtime_ns == mtime_ns);
    let (sha256, record_stale) = match recorded {
        Some(record) => (record.sha256, false),
        None => {
            let hash = hash.trim();
            if hash.len() != 64 {
                return Err(unexpected("sha256", hash));
            }
            (hash.to_owned(), true)
        }
    };
    Ok(Placed::File {
        mode,
        size,
        mtime_ns,
        sha256,
        record_stale,
    })
}

#[async_trait]
impl Apply for Fetch<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let placed = self.read(host).await?;
        Ok(Observation {
            changes: self.changes(&placed)?,
        })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let placed = self.read(host).await?;
        if self.changes(&placed)?.is_empty() {
            return Ok(());
        }
        let command = shell::root(&self.command());
        shell::run_checked(host, &command, || {
            format!("fetching {} to {}", self.0.url, self.0.path)
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;
    use crate::resources::shell::probe_output;

    const SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const OTHER: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn resource() -> FetchResource {
        FetchResource {
            url: "https://10.0.0.1:8443/files/kubelet".into(),
            sha256: SHA.into(),
            path: "/usr/local/bin/kubelet".into(),
            mode: 0o755,
            agent: "/var/lib/metalk8s/agent/metalk8s-0123456789abcdef".into(),
        }
    }

    fn host_with(file: &str, record: &str, hash: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[
                    ("file", file),
                    ("record", record),
                    ("hash", hash),
                ])),
            )
            .otherwise(Output::ok(""))
    }

    fn summaries(observation: &Observation) -> Vec<&str> {
        observation
            .changes
            .iter()
            .map(|change| change.summary.as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_file_matching_its_record_is_converged_without_hashing() {
        let resource = resource();
        let host = host_with(
            "755 104857600 1700000000123456789\n",
            &format!("{SHA} 104857600 1700000000123456789\n"),
            "",
        );
        let observed = Fetch(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        Fetch(&resource).apply(&host, &observed).await.unwrap();
        let commands = host.commands();
        assert_eq!(commands.len(), 2, "two reads, no fetch");
        let probe = &commands[0];
        assert!(probe.become_root);
        assert!(
            probe
                .script
                .contains("/var/lib/metalk8s/fetched/usr/local/bin/kubelet")
        );
        assert!(
            probe.script.contains("sha256sum"),
            "the probe hashes on the node when the record is stale"
        );
        assert!(!probe.script.contains("agent fetch"));
    }

    #[tokio::test]
    async fn a_stale_record_means_the_probe_hashed_the_file() {
        let resource = resource();
        // Same size, new mtime: the file was rewritten; the probe's hash tells.
        let host = host_with(
            "755 104857600 1700000099000000000\n",
            &format!("{SHA} 104857600 1700000000123456789\n"),
            &format!("{OTHER}\n"),
        );
        let observed = Fetch(&resource).observe(&host).await.unwrap();
        assert_eq!(
            summaries(&observed),
            [format!(
                "content hashes to sha256:{OTHER}, want sha256:{SHA} from https://10.0.0.1:8443/files/kubelet"
            )]
        );

        // Rewritten with the same content (touched): only the record is renewed.
        let host = host_with(
            "755 104857600 1700000099000000000\n",
            &format!("{SHA} 104857600 1700000000123456789\n"),
            &format!("{SHA}\n"),
        );
        let observed = Fetch(&resource).observe(&host).await.unwrap();
        assert_eq!(
            summaries(&observed),
            [
                "content is right but /var/lib/metalk8s/fetched/usr/local/bin/kubelet does not match the file; it is recorded again"
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_file_or_mode_is_fetched_by_the_agent_as_root() {
        let resource = resource();
        let host = host_with("absent\n", "", "");
        let observed = Fetch(&resource).observe(&host).await.unwrap();
        assert_eq!(
            summaries(&observed),
            ["file does not exist, fetched from https://10.0.0.1:8443/files/kubelet"]
        );
        Fetch(&resource).apply(&host, &observed).await.unwrap();
        let fetch = host.commands().pop().unwrap();
        assert!(fetch.become_root);
        assert!(
            fetch.script.ends_with(&format!(
                "/var/lib/metalk8s/agent/metalk8s-0123456789abcdef agent fetch \
                 --url https://10.0.0.1:8443/files/kubelet --sha256 {SHA} \
                 --out /usr/local/bin/kubelet --mode 0755 --ca /etc/kubernetes/pki/ca.crt"
            )),
            "{}",
            fetch.script
        );

        let host = host_with(
            "644 10 1700000000000000000\n",
            &format!("{SHA} 10 1700000000000000000\n"),
            "",
        );
        let observed = Fetch(&resource).observe(&host).await.unwrap();
        assert_eq!(summaries(&observed), ["mode is 0644, want 0755"]);
    }

    #[tokio::test]
    async fn a_failed_download_names_the_url_and_says_why() {
        let resource = resource();
        let host = RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[("file", "absent\n"), ("record", ""), ("hash", "")])),
            )
            .on(
                "agent fetch",
                Output::failed(
                    1,
                    format!(
                        "Error: https://10.0.0.1:8443/files/kubelet: the download hashes to sha256:{OTHER}, the plan wants sha256:{SHA}\n  help: stage the bundle again\n"
                    ),
                ),
            );
        let error = Fetch(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        let ResourceError::Command { what, stderr, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            what,
            "fetching https://10.0.0.1:8443/files/kubelet to /usr/local/bin/kubelet"
        );
        assert!(
            stderr.contains(OTHER) && stderr.contains("stage the bundle again"),
            "{stderr}"
        );
    }

    #[tokio::test]
    async fn a_directory_in_the_way_or_a_bad_digest_is_invalid() {
        let resource = resource();
        let host = host_with("other directory\n", "", "");
        let error = Fetch(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");

        let bad = FetchResource {
            sha256: "abc".into(),
            ..resource
        };
        let host = host_with("absent\n", "", "");
        let error = Fetch(&bad).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Invalid(_)), "{error:?}");
        assert!(host.commands().is_empty());
    }

    #[test]
    fn a_record_reads_back_what_was_written() {
        let record = FetchRecord {
            sha256: SHA.into(),
            size: 3,
            mtime_ns: 1_700_000_000_123_456_789,
        };
        assert_eq!(FetchRecord::parse(&record.to_line()), Some(record));
        assert_eq!(FetchRecord::parse("abc 3"), None);
        assert_eq!(FetchRecord::parse(""), None);
        assert!(FETCHED_DIR.starts_with(crate::agent::NODE_STATE_DIR));
    }

    /// The probe's script as a node gets it, with its record path moved to `record`.
    async fn probe_script(fetch: &Fetch<'_>, record: &std::path::Path) -> String {
        let host = RecordingHost::new("node1").otherwise(Output::ok(""));
        let _unparsable = fetch.read(&host).await;
        host.commands()[0]
            .script
            .replace(&record_path(&fetch.0.path), record.to_str().unwrap())
    }

    #[tokio::test]
    async fn a_real_shell_hashes_only_when_the_record_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tool");
        std::fs::write(&file, b"hello").unwrap();
        let path = file.to_str().unwrap().to_owned();
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let resource = FetchResource {
            path: path.clone(),
            sha256: hello.into(),
            ..resource()
        };
        let record = dir.path().join("record");
        let probe = probe_script(&Fetch(&resource), &record).await;
        let observe = || {
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(&probe)
                .output()
                .unwrap();
            let sections = shell::Sections::parse(&String::from_utf8_lossy(&output.stdout))
                .expect("the probe ran to its end");
            match parse(
                &path,
                sections.get("file"),
                sections.get("record"),
                sections.get("hash"),
            )
            .unwrap()
            {
                Placed::File {
                    size,
                    mtime_ns,
                    sha256,
                    record_stale,
                    ..
                } => (size, mtime_ns, sha256, record_stale),
                other => panic!("{other:?}"),
            }
        };

        // No record: hashed.
        let (size, mtime_ns, sha256, stale) = observe();
        assert_eq!((size, sha256.as_str(), stale), (5, hello, true));
        // A record matching size and mtime is trusted without hashing: one claiming
        // another digest is believed (which is how a test can tell that no hash ran).
        let claimed = FetchRecord {
            sha256: OTHER.into(),
            size,
            mtime_ns,
        };
        std::fs::write(&record, claimed.to_line()).unwrap();
        let (_, _, sha256, stale) = observe();
        assert_eq!((sha256.as_str(), stale), (OTHER, false));
        // Rewritten with the same size: the mtime moved, so it is hashed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"jello").unwrap();
        let (size, _, sha256, stale) = observe();
        assert_eq!(size, 5);
        assert_ne!(sha256, OTHER);
        assert_ne!(sha256, hello);
        assert!(stale);
    }
}
