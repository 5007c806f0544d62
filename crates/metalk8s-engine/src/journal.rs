//! The controller's journal: every run and every step result, one JSON line each. A run
//! without its `runFinished` line was interrupted; the next run resumes it: completed steps are verified (observed again, cheap) rather than
//! trusted or redone, and the report says which ones were resumed.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use metalk8s_model::plan::Step;
use metalk8s_model::report::StepOutcome;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agent::append_line;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Entry {
    RunStarted {
        run: String,
        time: u64,
        phases: Vec<String>,
        holder: String,
    },
    Step {
        run: String,
        phase: String,
        node: String,
        step: String,
        fingerprint: String,
        outcome: StepOutcome,
    },
    RunFinished {
        run: String,
        time: u64,
        succeeded: bool,
    },
}

/// A step identified across runs: the same place in the plan with the same desired state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StepKey {
    pub phase: String,
    pub node: String,
    pub step: String,
    pub fingerprint: String,
}

/// What an interrupted run had completed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interrupted {
    pub run: String,
    pub completed: BTreeSet<StepKey>,
}

pub struct Journal {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot use the journal {path}")]
#[diagnostic(help(
    "the journal lives under $METALK8S_STATE_DIR (default ~/.local/state/metalk8s); check that this user may write there"
))]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The desired state of a step, hashed: a step whose resource changed in the plan is not
/// the step that an earlier run completed.
pub fn fingerprint(step: &Step) -> String {
    let bytes = serde_json::to_vec(step).expect("steps serialize");
    hex::encode(&Sha256::digest(bytes)[..12])
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory).map_err(|source| JournalError {
                path: path.to_owned(),
                source,
            })?;
        }
        let journal = Journal {
            path: path.to_owned(),
        };
        journal.end_torn_line().map_err(|source| JournalError {
            path: path.to_owned(),
            source,
        })?;
        Ok(journal)
    }

    /// A run killed while writing leaves a line without its newline; end it so the next
    /// entry starts on a line of its own (the torn one is then skipped when read).
    fn end_torn_line(&self) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        if file.metadata()?.len() == 0 {
            return Ok(());
        }
        file.seek(SeekFrom::End(-1))?;
        let mut last = [0u8];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record(&self, entry: &Entry) -> Result<(), JournalError> {
        let value = serde_json::to_value(entry).expect("journal entries serialize");
        let durable = !matches!(entry, Entry::Step { .. });
        append_line(&self.path, &value, durable).map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })
    }

    /// The last run, if it never finished, with the steps it completed. A torn last line
    /// (the process died while writing it) is ignored.
    pub fn interrupted(&self) -> Result<Option<Interrupted>, JournalError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(JournalError {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut last: Option<Interrupted> = None;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|source| JournalError {
                path: self.path.clone(),
                source,
            })?;
            let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
                continue;
            };
            match entry {
                Entry::RunStarted { run, .. } => {
                    last = Some(Interrupted {
                        run,
                        completed: BTreeSet::new(),
                    })
                }
                Entry::Step {
                    run,
                    phase,
                    node,
                    step,
                    fingerprint,
                    outcome,
                } => {
                    if let Some(current) = last.as_mut().filter(|l| l.run == run)
                        && matches!(
                            outcome,
                            StepOutcome::Changed { .. } | StepOutcome::Unchanged
                        )
                    {
                        current.completed.insert(StepKey {
                            phase,
                            node,
                            step,
                            fingerprint,
                        });
                    }
                }
                Entry::RunFinished { run, .. } => {
                    if last.as_ref().is_some_and(|l| l.run == run) {
                        last = None;
                    }
                }
            }
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_entry(run: &str, step: &str, outcome: StepOutcome) -> Entry {
        Entry::Step {
            run: run.into(),
            phase: "os".into(),
            node: "node1".into(),
            step: step.into(),
            fingerprint: "f".into(),
            outcome,
        }
    }

    fn started(run: &str) -> Entry {
        Entry::RunStarted {
            run: run.into(),
            time: 1,
            phases: vec!["os".into()],
            holder: "test".into(),
        }
    }

    #[test]
    fn an_unfinished_run_is_interrupted_with_its_completed_steps() {
        let directory = tempfile::tempdir().unwrap();
        let journal = Journal::open(&directory.path().join("j/journal.jsonl")).unwrap();
        assert_eq!(journal.interrupted().unwrap(), None);
        journal.record(&started("r1")).unwrap();
        journal
            .record(&step_entry("r1", "a", StepOutcome::Unchanged))
            .unwrap();
        journal
            .record(&Entry::RunFinished {
                run: "r1".into(),
                time: 2,
                succeeded: true,
            })
            .unwrap();
        assert_eq!(journal.interrupted().unwrap(), None);

        journal.record(&started("r2")).unwrap();
        journal
            .record(&step_entry(
                "r2",
                "a",
                StepOutcome::Changed { changes: vec![] },
            ))
            .unwrap();
        journal
            .record(&step_entry(
                "r2",
                "b",
                StepOutcome::Failed {
                    error: "boom".into(),
                },
            ))
            .unwrap();
        // A line torn by a crash while it was written.
        std::fs::OpenOptions::new()
            .append(true)
            .open(journal.path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"type\":\"st"))
            .unwrap();
        let interrupted = journal.interrupted().unwrap().unwrap();
        // Reopened after the crash, the journal takes new entries on lines of their own.
        let journal = Journal::open(journal.path()).unwrap();
        journal.record(&started("r3")).unwrap();
        assert_eq!(journal.interrupted().unwrap().unwrap().run, "r3");
        assert_eq!(interrupted.run, "r2");
        let steps: Vec<&str> = interrupted
            .completed
            .iter()
            .map(|k| k.step.as_str())
            .collect();
        assert_eq!(steps, ["a"]);
    }
}
