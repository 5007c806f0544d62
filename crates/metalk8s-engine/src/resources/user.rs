//! `User` and `Group`: local accounts, observed with `getent`, made with `useradd` /
//! `groupadd` and corrected with `usermod`. Supplementary groups are added, never removed;
//! `system` only matters when the account is created.

use async_trait::async_trait;
use metalk8s_model::plan::{GroupResource, UserResource};
use metalk8s_transport::Host;

use super::shell::{self, Probe, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

pub(crate) struct User<'a>(pub(crate) &'a UserResource);

pub(crate) struct Group<'a>(pub(crate) &'a GroupResource);

/// An account as `getent passwd` and `id -Gn` show it.
struct Account {
    home: String,
    shell: String,
    groups: Vec<String>,
}

impl User<'_> {
    fn check(&self) -> Result<(), ResourceError> {
        let user = self.0;
        shell::check_word("user name", &user.name)?;
        if let Some(home) = &user.home {
            shell::check_path("home directory", home)?;
        }
        if let Some(login_shell) = &user.shell {
            shell::check_path("login shell", login_shell)?;
        }
        for group in &user.groups {
            shell::check_word("group name", group)?;
        }
        Ok(())
    }

    async fn read(&self, host: &dyn Host) -> Result<Option<Account>, ResourceError> {
        self.check()?;
        let name = quote(&self.0.name);
        let sections = shell::run_probe(
            host,
            &Probe::new()
                .section("passwd", &format!("getent passwd -- {name} || true"))
                .section("groups", &format!("id -Gn -- {name} 2>/dev/null || true")),
            &format!("user {}", self.0.name),
        )
        .await?;
        let passwd = sections.get("passwd").trim();
        if passwd.is_empty() {
            return Ok(None);
        }
        // name:password:uid:gid:gecos:home:shell
        let fields: Vec<&str> = passwd.split(':').collect();
        if fields.len() < 7 {
            return Err(ResourceError::Command {
                what: format!("reading user {}", self.0.name),
                status: 0,
                stderr: format!("unexpected getent output: {passwd:?}"),
            });
        }
        Ok(Some(Account {
            home: fields[5].to_owned(),
            shell: fields[6].to_owned(),
            groups: sections
                .get("groups")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        }))
    }

    fn missing_groups<'a>(&'a self, account: &Account) -> Vec<&'a str> {
        self.0
            .groups
            .iter()
            .map(String::as_str)
            .filter(|group| !account.groups.iter().any(|g| g == group))
            .collect()
    }

    fn changes(&self, account: Option<&Account>) -> Vec<Change> {
        let user = self.0;
        let Some(account) = account else {
            return vec![Change::new(format!("user {} does not exist", user.name))];
        };
        let mut changes = Vec::new();
        if let Some(home) = user.home.as_ref().filter(|home| **home != account.home) {
            changes.push(Change::new(format!(
                "home is {}, want {home}",
                account.home
            )));
        }
        if let Some(login_shell) = user.shell.as_ref().filter(|s| **s != account.shell) {
            changes.push(Change::new(format!(
                "shell is {}, want {login_shell}",
                account.shell
            )));
        }
        let missing = self.missing_groups(account);
        if !missing.is_empty() {
            changes.push(Change::new(format!(
                "not in group{} {}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            )));
        }
        changes
    }

    fn useradd(&self) -> String {
        let user = self.0;
        let name = quote(&user.name);
        let mut options = Vec::new();
        if user.system {
            options.push("--system".to_owned());
        }
        if let Some(home) = &user.home {
            options.push(format!("--home-dir {}", quote(home)));
        }
        // A person's account gets its home made from /etc/skel; a system account's
        // directories are resources of their own.
        options.push(
            if user.system {
                "--no-create-home"
            } else {
                "--create-home"
            }
            .to_owned(),
        );
        if let Some(login_shell) = &user.shell {
            options.push(format!("--shell {}", quote(login_shell)));
        }
        if !user.groups.is_empty() {
            options.push(format!("--groups {}", quote(&user.groups.join(","))));
        }
        let options = options.join(" ");
        // The user's own group may exist already (a Group step): join it rather than fail.
        format!(
            "if getent group -- {name} >/dev/null; then\n  useradd --gid {name} {options} -- {name}\nelse\n  useradd --user-group {options} -- {name}\nfi"
        )
    }

    fn usermod(&self, account: &Account) -> Option<String> {
        let user = self.0;
        let mut options = Vec::new();
        if let Some(home) = user.home.as_ref().filter(|home| **home != account.home) {
            options.push(format!("--home {}", quote(home)));
        }
        if let Some(login_shell) = user.shell.as_ref().filter(|s| **s != account.shell) {
            options.push(format!("--shell {}", quote(login_shell)));
        }
        let missing = self.missing_groups(account);
        if !missing.is_empty() {
            options.push(format!("--append --groups {}", quote(&missing.join(","))));
        }
        (!options.is_empty())
            .then(|| format!("usermod {} -- {}", options.join(" "), quote(&user.name)))
    }
}

#[async_trait]
impl Apply for User<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let account = self.read(host).await?;
        Ok(Observation {
            changes: self.changes(account.as_ref()),
        })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let account = self.read(host).await?;
        let (script, what) = match &account {
            None => (self.useradd(), "creating user"),
            Some(account) => match self.usermod(account) {
                Some(script) => (script, "changing user"),
                None => return Ok(()),
            },
        };
        shell::run_checked(host, &shell::root(&format!("set -e\n{script}")), || {
            format!("{what} {}", self.0.name)
        })
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Apply for Group<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        shell::check_word("group name", &self.0.name)?;
        let script = format!("getent group -- {} || true", quote(&self.0.name));
        let output = shell::run_checked(host, &shell::root(&script), || {
            format!("reading group {}", self.0.name)
        })
        .await?;
        if output.stdout_text().trim().is_empty() {
            Ok(Observation::change(format!(
                "group {} does not exist",
                self.0.name
            )))
        } else {
            Ok(Observation::converged())
        }
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        shell::check_word("group name", &self.0.name)?;
        let name = quote(&self.0.name);
        let system = if self.0.system { "--system " } else { "" };
        let script = format!("getent group -- {name} >/dev/null || groupadd {system}-- {name}");
        shell::run_checked(host, &shell::root(&script), || {
            format!("creating group {}", self.0.name)
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

    fn etcd() -> UserResource {
        UserResource {
            name: "etcd".into(),
            system: true,
            home: Some("/var/lib/etcd".into()),
            shell: Some("/usr/sbin/nologin".into()),
            groups: vec!["metalk8s".into()],
        }
    }

    fn host_with(passwd: &str, groups: &str) -> RecordingHost {
        RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[("passwd", passwd), ("groups", groups)])),
            )
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn matching_user_is_converged() {
        let host = host_with(
            "etcd:x:998:998::/var/lib/etcd:/usr/sbin/nologin\n",
            "etcd metalk8s\n",
        );
        let observed = User(&etcd()).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        assert!(host.scripts()[0].contains("getent passwd -- etcd"));
    }

    #[tokio::test]
    async fn missing_user_is_created_as_a_system_user() {
        let host = host_with("", "");
        let observed = User(&etcd()).observe(&host).await.unwrap();
        assert_eq!(
            observed.changes,
            vec![Change::new("user etcd does not exist")]
        );
        User(&etcd()).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        for part in [
            "useradd --user-group --system --home-dir /var/lib/etcd --no-create-home",
            "--shell /usr/sbin/nologin --groups metalk8s -- etcd",
            "useradd --gid etcd",
        ] {
            assert!(script.contains(part), "{part} in {script}");
        }
    }

    #[tokio::test]
    async fn drifted_user_is_modified_adding_groups() {
        let host = host_with("etcd:x:998:998::/home/etcd:/bin/bash\n", "etcd\n");
        let observed = User(&etcd()).observe(&host).await.unwrap();
        let summaries: Vec<_> = observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "home is /home/etcd, want /var/lib/etcd",
                "shell is /bin/bash, want /usr/sbin/nologin",
                "not in group metalk8s"
            ]
        );
        User(&etcd()).apply(&host, &observed).await.unwrap();
        let script = host.scripts().pop().unwrap();
        assert!(
            script.contains(
                "usermod --home /var/lib/etcd --shell /usr/sbin/nologin --append --groups metalk8s -- etcd"
            ),
            "{script}"
        );
    }

    #[tokio::test]
    async fn failing_useradd_is_reported() {
        let host = RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[("passwd", ""), ("groups", "")])),
            )
            .on(
                "useradd",
                Output::failed(6, "useradd: group 'metalk8s' does not exist"),
            );
        let error = User(&etcd())
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("creating user etcd"), "{error}");
        assert!(
            error
                .to_string()
                .contains("group 'metalk8s' does not exist"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn group_is_created_when_missing() {
        let group = GroupResource {
            name: "metalk8s".into(),
            system: true,
        };
        let host = RecordingHost::new("node1").otherwise(Output::ok(""));
        let observed = Group(&group).observe(&host).await.unwrap();
        assert_eq!(
            observed.changes,
            vec![Change::new("group metalk8s does not exist")]
        );
        Group(&group).apply(&host, &observed).await.unwrap();
        assert!(
            host.scripts()
                .pop()
                .unwrap()
                .contains("groupadd --system -- metalk8s")
        );

        let host = RecordingHost::new("node1").on("getent group", Output::ok("metalk8s:x:997:\n"));
        assert!(Group(&group).observe(&host).await.unwrap().is_converged());
    }
}
