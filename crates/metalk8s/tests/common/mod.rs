//! What the end-to-end tests on lab nodes share: a lab that removes itself, the metalk8s
//! binary pointed at a private state directory, and commands on the nodes over SSH.
#![allow(dead_code)] // each test crate uses part of these helpers

use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// A lab of its own for one test; removed when dropped, whatever the test's outcome.
pub struct TestLab {
    pub name: String,
    /// `METALK8S_STATE_DIR` of every metalk8s command of the test.
    pub state: tempfile::TempDir,
    pub info: metalk8s_lab::LabInfo,
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(error) = metalk8s_lab::down(&self.name) {
            eprintln!("cleaning up lab {}: {error}", self.name);
        }
    }
}

impl TestLab {
    /// `nodes` servers, named `PREFIX<pid>` so that tests running at once never meet.
    pub fn up(prefix: &str, nodes: usize) -> TestLab {
        let name = format!("{prefix}{}", std::process::id());
        let info = metalk8s_lab::up(&metalk8s_lab::LabSpec::new(&name, nodes), &|m: &str| {
            eprintln!("{m}")
        })
        .expect("lab up");
        TestLab {
            name,
            state: tempfile::tempdir().unwrap(),
            info,
        }
    }

    /// The metalk8s binary with this test's state directory and no colour.
    pub fn metalk8s(&self) -> Command {
        let mut command = Command::cargo_bin("metalk8s").unwrap();
        command
            .env("METALK8S_STATE_DIR", self.state.path())
            .env("NO_COLOR", "1")
            .env_remove("METALK8S_INVENTORY")
            .env_remove("METALK8S_BUNDLE_PUBLIC_KEY");
        command
    }

    /// `metalk8s ARGUMENTS -o json -i INVENTORY`: its exit code and data.
    pub fn metalk8s_json(&self, arguments: &[&str]) -> (i32, Value) {
        let output = self
            .metalk8s()
            .args(arguments)
            .args(["-o", "json", "-i"])
            .arg(&self.info.inventory)
            .output()
            .unwrap();
        let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "`metalk8s {}` printed no JSON ({error}); status {:?}\nstdout:\n{}\nstderr:\n{}",
                arguments.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), value)
    }

    pub fn node(&self, node: &str) -> &metalk8s_lab::LabNode {
        self.info
            .nodes
            .iter()
            .find(|n| n.name == node)
            .unwrap_or_else(|| panic!("no {node} in lab {}", self.name))
    }

    pub fn ip(&self, node: &str) -> String {
        self.node(node).ip.to_string()
    }

    pub fn try_ssh(&self, node: &str, script: &str) -> Output {
        metalk8s_lab::ssh_command(&self.name, node)
            .unwrap()
            .arg(script)
            .output()
            .unwrap()
    }

    /// Runs `script` on `node`; the test fails, with its output, unless it succeeds.
    pub fn ssh(&self, node: &str, script: &str) -> String {
        succeeded(
            &format!("`{script}` on {node}"),
            &self.try_ssh(node, script),
        )
    }
}

/// The standard output of a command that must have succeeded.
pub fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
