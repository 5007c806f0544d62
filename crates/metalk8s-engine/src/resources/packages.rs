//! `Packages`: OS packages installed (or removed) in one transaction.
//!
//! apt: observed with one `dpkg-query`; installed with `apt-get install`, after an
//! `apt-get update` only when the package lists are missing or more than an hour old (or
//! when apt cannot find a package, once). dnf: `rpm -q`, `dnf install -y`, best effort.

use std::collections::BTreeSet;

use async_trait::async_trait;
use metalk8s_model::plan::{PackageManager, PackageState, PackagesResource};
use metalk8s_transport::Host;

use super::shell::{self, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

/// Touched after each successful `apt-get update` (the stamp Debian's own periodic update
/// uses): apt leaves unchanged lists untouched, so their age alone would say "stale".
const APT_UPDATE_STAMP: &str = "/var/lib/apt/periodic/update-success-stamp";

/// A shell function that runs an apt command, retrying for up to five minutes while
/// another apt or dpkg holds its lock (an agent of an interrupted run, unattended
/// upgrades): `DPkg::Lock::Timeout` covers dpkg's lock but not the lists lock of an update.
const APT_RETRYING: &str = r#"apt_retrying() {
  tries=0
  while :; do
    out=$("$@" 2>&1) && { printf '%s\n' "$out"; return 0; }
    status=$?
    case "$out" in
      *"Could not get lock"*|*"Unable to lock"*) ;;
      *) printf '%s\n' "$out" >&2; return $status ;;
    esac
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ]; then printf '%s\n' "$out" >&2; return $status; fi
    sleep 1
  done
}"#;

/// Package lists older than this are refreshed before installing.
const APT_LISTS_MAX_AGE_MINUTES: u32 = 60;

/// What apt says when its lists do not know a package.
const APT_NOT_FOUND: [&str; 2] = ["Unable to locate package", "has no installation candidate"];

const APT_INSTALL: &str = "apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";

pub(crate) struct Packages<'a>(pub(crate) &'a PackagesResource);

impl Packages<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        if self.0.names.is_empty() {
            return Err(shell::invalid("a packages resource names no package"));
        }
        for name in &self.0.names {
            shell::check_word("package name", name)?;
        }
        Ok(())
    }

    fn names(&self) -> String {
        self.0
            .names
            .iter()
            .map(|name| quote(name))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The names that are installed now, with one command.
    async fn installed(&self, host: &dyn Host) -> Result<BTreeSet<String>, ResourceError> {
        self.check()?;
        let (tool, script) = match self.0.manager {
            PackageManager::Apt => (
                "dpkg-query",
                format!(
                    "dpkg-query -W -f '${{Package}} ${{db:Status-Abbrev}}\\n' {}",
                    self.names()
                ),
            ),
            PackageManager::Dnf => (
                "rpm",
                format!("rpm -q --qf '%{{NAME}} ii\\n' {}", self.names()),
            ),
        };
        let output = shell::run(host, &shell::root(&script)).await?;
        match (self.0.manager, output.status) {
            (_, 127) => {
                return Err(ResourceError::Unsupported(format!(
                    "{} packages cannot be managed on {}: {tool} is not installed",
                    manager_name(self.0.manager),
                    host.name()
                )));
            }
            // dpkg-query exits 1 when some package is unknown; rpm exits with the number
            // of packages that are not installed.
            (PackageManager::Apt, 0 | 1) | (PackageManager::Dnf, _) => {}
            _ => {
                return Err(shell::command_error("listing installed packages", &output));
            }
        }
        Ok(parse_installed(&output.stdout_text()))
    }

    /// The packages whose state differs from the desired one.
    fn drifted<'n>(&'n self, installed: &BTreeSet<String>) -> Vec<&'n str> {
        let present = self.0.state == PackageState::Present;
        self.0
            .names
            .iter()
            .map(String::as_str)
            .filter(|name| installed.contains(base_name(name)) != present)
            .collect()
    }

    async fn install_apt(&self, host: &dyn Host, names: &str) -> Result<(), ResourceError> {
        let script = format!(
            r#"set -e
export DEBIAN_FRONTEND=noninteractive
{APT_RETRYING}
if [ -n "$(find {APT_UPDATE_STAMP} -mmin -{APT_LISTS_MAX_AGE_MINUTES} 2>/dev/null)" ]; then
  : the package lists are fresh
else
  {update}
fi
apt_retrying {APT_INSTALL} {names}"#,
            update = apt_update(),
        );
        let output = shell::run(host, &shell::root(&script)).await?;
        if output.success() {
            return Ok(());
        }
        let said = format!("{}{}", output.stderr_text(), output.stdout_text());
        if !APT_NOT_FOUND.iter().any(|message| said.contains(message)) {
            return Err(shell::command_error(format!("installing {names}"), &output));
        }
        // The lists may be fresh but from before the repository got the package.
        let retry = format!(
            "set -e\nexport DEBIAN_FRONTEND=noninteractive\n{APT_RETRYING}\n{}\napt_retrying {APT_INSTALL} {names}",
            apt_update()
        );
        shell::run_checked(host, &shell::root(&retry), || {
            format!("installing {names} (after apt-get update)")
        })
        .await?;
        Ok(())
    }
}

/// `apt-get update`, then the stamp.
fn apt_update() -> String {
    format!(
        "apt_retrying apt-get update -q && mkdir -p \"$(dirname {APT_UPDATE_STAMP})\" && touch {APT_UPDATE_STAMP}"
    )
}

fn manager_name(manager: PackageManager) -> &'static str {
    match manager {
        PackageManager::Apt => "apt",
        PackageManager::Dnf => "dnf",
    }
}

/// `name` without an architecture qualifier (`libc6:amd64`), as dpkg-query prints it.
fn base_name(name: &str) -> &str {
    name.split_once(':').map_or(name, |(base, _)| base)
}

/// Lines `NAME STATUS`; installed when dpkg's status letter (the second) is `i`. Lines
/// that are not of this shape (`package x is not installed` from rpm) are skipped.
fn parse_installed(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (name, status) = (fields.next()?, fields.next()?);
            if fields.next().is_some() {
                return None;
            }
            (status.chars().nth(1) == Some('i')).then(|| name.to_owned())
        })
        .collect()
}

#[async_trait]
impl Apply for Packages<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let installed = self.installed(host).await?;
        let want = match self.0.state {
            PackageState::Present => "is not installed",
            PackageState::Absent => "is installed, want it absent",
        };
        Ok(Observation {
            changes: self
                .drifted(&installed)
                .into_iter()
                .map(|name| Change::new(format!("{name} {want}")))
                .collect(),
        })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let installed = self.installed(host).await?;
        let drifted = self.drifted(&installed);
        if drifted.is_empty() {
            return Ok(());
        }
        let names = drifted
            .iter()
            .map(|name| quote(name))
            .collect::<Vec<_>>()
            .join(" ");
        let (script, what) = match (self.0.manager, self.0.state) {
            (PackageManager::Apt, PackageState::Present) => {
                return self.install_apt(host, &names).await;
            }
            (PackageManager::Apt, PackageState::Absent) => (
                format!(
                    "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=300 {names}"
                ),
                "removing",
            ),
            (PackageManager::Dnf, PackageState::Present) => {
                (format!("dnf install -y -q {names}"), "installing")
            }
            (PackageManager::Dnf, PackageState::Absent) => {
                (format!("dnf remove -y -q {names}"), "removing")
            }
        };
        shell::run_checked(host, &shell::root(&script), || format!("{what} {names}")).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use metalk8s_transport::Output;
    use metalk8s_transport::fake::RecordingHost;

    use super::*;

    fn apt(names: &[&str], state: PackageState) -> PackagesResource {
        PackagesResource {
            manager: PackageManager::Apt,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            state,
        }
    }

    fn summaries(observed: &Observation) -> Vec<&str> {
        observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect()
    }

    #[tokio::test]
    async fn installed_packages_are_converged_with_one_dpkg_query() {
        let resource = apt(&["chrony", "jq"], PackageState::Present);
        let host = RecordingHost::new("node1").on("dpkg-query", Output::ok("chrony ii \njq ii \n"));
        let observed = Packages(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        let scripts = host.scripts();
        assert_eq!(scripts.len(), 1);
        assert!(scripts[0].contains("dpkg-query -W"));
        assert!(scripts[0].contains("chrony jq"));
    }

    #[tokio::test]
    async fn unknown_and_removed_packages_are_not_installed() {
        let resource = apt(&["chrony", "jq", "curl"], PackageState::Present);
        let mut unknown = Output::ok("chrony un \ncurl ii \n");
        unknown.status = 1;
        unknown.stderr = b"dpkg-query: no packages found matching jq\n".to_vec();
        let host = RecordingHost::new("node1").on("dpkg-query", unknown);
        let observed = Packages(&resource).observe(&host).await.unwrap();
        assert_eq!(
            summaries(&observed),
            ["chrony is not installed", "jq is not installed"]
        );
    }

    #[tokio::test]
    async fn apply_installs_only_the_missing_ones_updating_stale_lists_first() {
        let resource = apt(&["chrony", "jq"], PackageState::Present);
        let host = RecordingHost::new("node1")
            .on("dpkg-query", Output::ok("chrony ii \n"))
            .otherwise(Output::ok(""));
        Packages(&resource)
            .apply(&host, &Observation::change("jq is not installed"))
            .await
            .unwrap();
        let install = host.commands().pop().unwrap();
        assert!(install.become_root);
        let script = &install.script;
        assert!(script.contains("apt-get install -y"), "{script}");
        assert!(script.contains("--no-install-recommends"), "{script}");
        assert!(script.contains("--force-confold"), "{script}");
        assert!(
            script.contains("DEBIAN_FRONTEND=noninteractive"),
            "{script}"
        );
        assert!(
            script.ends_with(" jq"),
            "only the missing package: {script}"
        );
        // The update is conditional on the lists' age.
        assert!(script.contains("-mmin -60"), "{script}");
    }

    #[tokio::test]
    async fn unable_to_locate_package_updates_and_retries_once() {
        let resource = apt(&["jq"], PackageState::Present);
        let attempts = AtomicUsize::new(0);
        let host = RecordingHost::new("node1")
            .on(
                "dpkg-query",
                Output::failed(1, "no packages found matching jq"),
            )
            .on_with(move |command| {
                command.script.contains("apt-get install").then(|| {
                    Ok(if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                        Output::failed(100, "E: Unable to locate package jq\n")
                    } else {
                        Output::ok("")
                    })
                })
            });
        Packages(&resource)
            .apply(&host, &Observation::change("jq is not installed"))
            .await
            .unwrap();
        let scripts = host.scripts();
        assert_eq!(scripts.len(), 3, "query, install, update + install");
        assert!(scripts[2].contains("apt-get update"));
        assert!(
            !scripts[2].contains("-mmin"),
            "the retry updates unconditionally"
        );
    }

    #[tokio::test]
    async fn other_install_failures_are_reported_without_retry() {
        let resource = apt(&["jq"], PackageState::Present);
        let host = RecordingHost::new("node1")
            .on(
                "dpkg-query",
                Output::failed(1, "no packages found matching jq"),
            )
            .on(
                "apt-get install",
                Output::failed(100, "E: Could not get lock /var/lib/dpkg/lock-frontend\n"),
            );
        let error = Packages(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("Could not get lock"), "{error}");
        assert_eq!(host.scripts().len(), 2);
    }

    #[tokio::test]
    async fn absent_packages_are_removed_when_installed() {
        let resource = apt(&["ufw", "firewalld"], PackageState::Absent);
        let host = RecordingHost::new("node1")
            .on("dpkg-query", Output::ok("ufw ii \nfirewalld un \n"))
            .otherwise(Output::ok(""));
        let observed = Packages(&resource).observe(&host).await.unwrap();
        assert_eq!(summaries(&observed), ["ufw is installed, want it absent"]);
        Packages(&resource).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        assert!(script.contains("apt-get remove -y"), "{script}");
        assert!(script.ends_with(" ufw"), "{script}");
    }

    #[tokio::test]
    async fn missing_dpkg_query_is_unsupported() {
        let resource = apt(&["jq"], PackageState::Present);
        let host = RecordingHost::new("node1").on(
            "dpkg-query",
            Output::failed(127, "sh: dpkg-query: not found"),
        );
        let error = Packages(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Unsupported(_)), "{error:?}");
    }

    #[tokio::test]
    async fn dnf_uses_rpm_and_dnf_install() {
        let resource = PackagesResource {
            manager: PackageManager::Dnf,
            names: vec!["chrony".into(), "jq".into()],
            state: PackageState::Present,
        };
        let mut rpm = Output::ok("chrony ii\npackage jq is not installed\n");
        rpm.status = 1;
        let host = RecordingHost::new("node1")
            .on("rpm -q", rpm)
            .otherwise(Output::ok(""));
        let observed = Packages(&resource).observe(&host).await.unwrap();
        assert_eq!(summaries(&observed), ["jq is not installed"]);
        Packages(&resource).apply(&host, &observed).await.unwrap();
        assert!(
            host.scripts()
                .pop()
                .unwrap()
                .ends_with("dnf install -y -q jq")
        );
    }
}

#[cfg(test)]
mod lock_tests {
    use super::APT_RETRYING;

    /// The retry function, run by a real shell against a command that finds the lock
    /// taken twice, then succeeds; and one that fails for another reason at once.
    #[test]
    fn apt_commands_wait_for_a_lock_but_not_for_other_failures() {
        let directory = tempfile::tempdir().unwrap();
        let counter = directory.path().join("tries");
        let script = format!(
            r#"{APT_RETRYING}
flaky() {{ n=$(cat {c} 2>/dev/null || echo 0); echo $((n + 1)) > {c}
  if [ "$n" -lt 2 ]; then echo "E: Could not get lock /var/lib/apt/lists/lock" >&2; return 100; fi
  echo installed; }}
broken() {{ echo "E: Unable to locate package nope" >&2; return 100; }}
apt_retrying flaky || exit 1
apt_retrying broken; echo "broken:$?"
"#,
            c = counter.display()
        );
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stdout.contains("installed"), "{stdout}{stderr}");
        assert!(stdout.contains("broken:100"), "{stdout}");
        assert!(stderr.contains("Unable to locate package nope"), "{stderr}");
        assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
    }
}
