//! `KernelModule`: a module loaded now and at boot (/etc/modules-load.d/NAME.conf).
//!
//! Loaded means: /sys/module/NAME exists, or the module is built into the kernel
//! (modules.builtin lists it, or, for the few modules that leave no /sys/module entry when
//! built in, the interface they provide exists: /proc/sys/net/bridge for br_netfilter). A
//! module that is not loaded on a host without loadable modules for its kernel (no
//! /lib/modules/KVER: a container) is `Unsupported`, after the boot configuration is
//! written; observe says so directly once that file is in place. It never reads as
//! converged while the module is not loaded.

use async_trait::async_trait;
use metalk8s_model::plan::KernelModuleResource;
use metalk8s_transport::Host;

use super::file::DesiredFile;
use super::shell::{self, FileState, Probe, quote};
use crate::resource::{Apply, Change, Observation, ResourceError};

pub(crate) struct KernelModule<'a>(pub(crate) &'a KernelModuleResource);

/// What the probe found.
struct ModuleState {
    loaded: bool,
    kernel: String,
    /// /lib/modules/KVER exists.
    loadable: bool,
    conf: FileState,
}

/// Evidence that a built-in module without a /sys/module entry is there.
fn builtin_evidence(name: &str) -> Option<&'static str> {
    match name {
        "br_netfilter" => Some("[ -d /proc/sys/net/bridge ]"),
        "overlay" => Some("grep -qw overlay /proc/filesystems"),
        "ip_vs" => Some("[ -e /proc/net/ip_vs ]"),
        "nf_conntrack" => Some("[ -d /proc/sys/net/netfilter ]"),
        _ => None,
    }
}

impl KernelModule<'_> {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn check(&self) -> Result<(), ResourceError> {
        let name = self.name();
        let valid = !name.is_empty()
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(shell::invalid(format!(
                "{name:?} is not a kernel module name"
            )));
        }
        Ok(())
    }

    fn conf_path(&self) -> String {
        format!("/etc/modules-load.d/{}.conf", self.name())
    }

    fn conf_content(&self) -> String {
        format!(
            "# Loaded at boot by systemd-modules-load; managed by metalk8s.\n{}\n",
            self.name()
        )
    }

    async fn read(&self, host: &dyn Host) -> Result<ModuleState, ResourceError> {
        self.check()?;
        // The kernel names modules with `_` in /sys/module; files may use `-`.
        let sys_name = self.name().replace('-', "_");
        let file_names = format!("{}|{}", sys_name, self.name().replace('_', "-"));
        let mut loaded = format!(
            "if [ -d /sys/module/{sys} ]; then echo yes\n\
             elif [ -e \"/lib/modules/$kernel/modules.builtin\" ] \
             && grep -qE '/({file_names})\\.ko' \"/lib/modules/$kernel/modules.builtin\"; then echo yes\n",
            sys = quote(&sys_name),
        );
        if let Some(evidence) = builtin_evidence(&sys_name) {
            loaded.push_str(&format!("elif {evidence}; then echo yes\n"));
        }
        loaded.push_str("else echo no; fi");
        let conf_path = self.conf_path();
        let sections = shell::run_probe(
            host,
            &Probe::new()
                .section("kernel", "kernel=$(uname -r); echo \"$kernel\"")
                .section("loaded", &loaded)
                .section(
                    "loadable",
                    "if [ -d \"/lib/modules/$kernel\" ]; then echo yes; else echo no; fi",
                )
                .file("conf", &conf_path),
            &format!("kernel module {}", self.name()),
        )
        .await?;
        Ok(ModuleState {
            loaded: sections.get("loaded").trim() == "yes",
            kernel: sections.get("kernel").trim().to_owned(),
            loadable: sections.get("loadable").trim() == "yes",
            conf: sections.file("conf", &conf_path)?,
        })
    }

    fn unsupported(&self, state: &ModuleState) -> ResourceError {
        ResourceError::Unsupported(format!(
            "cannot load kernel module {}: /lib/modules/{} does not exist on this host (a container?)",
            self.name(),
            state.kernel
        ))
    }
}

#[async_trait]
impl Apply for KernelModule<'_> {
    async fn observe(&self, host: &dyn Host) -> Result<Observation, ResourceError> {
        let state = self.read(host).await?;
        let (path, content) = (self.conf_path(), self.conf_content());
        let mut changes = DesiredFile::root(&path, &content, 0o644).named_changes(&state.conf)?;
        if !state.loaded {
            if !state.loadable && changes.is_empty() {
                return Err(self.unsupported(&state));
            }
            changes.push(Change::new(format!("{} is not loaded", self.name())));
        }
        Ok(Observation { changes })
    }

    async fn apply(&self, host: &dyn Host, _observed: &Observation) -> Result<(), ResourceError> {
        let state = self.read(host).await?;
        let (path, content) = (self.conf_path(), self.conf_content());
        DesiredFile::root(&path, &content, 0o644)
            .converge(host, &state.conf)
            .await?;
        if state.loaded {
            return Ok(());
        }
        if !state.loadable {
            return Err(self.unsupported(&state));
        }
        let script = format!(
            "modprobe -- {name}\n\
             if [ ! -d /sys/module/{sys} ]; then echo 'modprobe succeeded but /sys/module/{sys} does not exist' >&2; exit 1; fi",
            name = quote(self.name()),
            sys = self.name().replace('-', "_"),
        );
        shell::run_checked(host, &shell::root(&format!("set -e\n{script}")), || {
            format!("loading kernel module {}", self.name())
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
    use crate::resources::shell::{file_section, probe_output};

    fn module() -> KernelModuleResource {
        KernelModuleResource {
            name: "br_netfilter".into(),
        }
    }

    fn persisted() -> String {
        file_section(
            0o644,
            "root",
            "root",
            &KernelModule(&module()).conf_content(),
        )
    }

    fn host_with(loaded: bool, loadable: bool, conf: &str) -> RecordingHost {
        let yes_no = |b: bool| if b { "yes\n" } else { "no\n" };
        RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[
                    ("loaded", yes_no(loaded)),
                    ("kernel", "6.1.0-18-amd64\n"),
                    ("loadable", yes_no(loadable)),
                    ("conf", conf),
                ])),
            )
            .otherwise(Output::ok(""))
    }

    #[tokio::test]
    async fn loaded_and_persisted_is_converged() {
        let resource = module();
        let host = host_with(true, true, &persisted());
        let observed = KernelModule(&resource).observe(&host).await.unwrap();
        assert!(observed.is_converged(), "{observed:?}");
        let script = &host.scripts()[0];
        assert!(script.contains("/sys/module/br_netfilter"), "{script}");
        assert!(
            script.contains("/proc/sys/net/bridge"),
            "built-in evidence: {script}"
        );
    }

    #[tokio::test]
    async fn unloaded_module_is_persisted_and_loaded() {
        let resource = module();
        let host = host_with(false, true, "absent\n");
        let observed = KernelModule(&resource).observe(&host).await.unwrap();
        let summaries: Vec<_> = observed
            .changes
            .iter()
            .map(|c| c.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "/etc/modules-load.d/br_netfilter.conf: file does not exist",
                "br_netfilter is not loaded"
            ]
        );
        KernelModule(&resource)
            .apply(&host, &observed)
            .await
            .unwrap();
        let commands = host.commands();
        assert!(
            commands
                .iter()
                .any(|c| c.stdin.as_deref()
                    == Some(KernelModule(&resource).conf_content().as_bytes()))
        );
        assert!(
            commands
                .last()
                .unwrap()
                .script
                .contains("modprobe -- br_netfilter")
        );
    }

    #[tokio::test]
    async fn no_lib_modules_is_unsupported_after_persisting() {
        let resource = module();
        let host = host_with(false, false, "absent\n");
        let observed = KernelModule(&resource).observe(&host).await.unwrap();
        assert!(!observed.is_converged());
        let error = KernelModule(&resource)
            .apply(&host, &observed)
            .await
            .unwrap_err();
        let ResourceError::Unsupported(reason) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            reason,
            "cannot load kernel module br_netfilter: /lib/modules/6.1.0-18-amd64 does not exist on this host (a container?)"
        );
        assert!(!host.scripts().iter().any(|s| s.contains("modprobe")));
        assert!(
            host.commands().iter().any(|c| c.stdin.is_some()),
            "conf written"
        );
    }

    #[tokio::test]
    async fn persisted_but_unloadable_is_unsupported_when_observed() {
        let resource = module();
        let host = host_with(false, false, &persisted());
        let error = KernelModule(&resource).observe(&host).await.unwrap_err();
        assert!(matches!(error, ResourceError::Unsupported(_)), "{error:?}");
    }

    #[tokio::test]
    async fn failed_modprobe_is_an_error_not_a_success() {
        let resource = module();
        let host = RecordingHost::new("node1")
            .on(
                "@@metalk8s",
                Output::ok(probe_output(&[
                    ("loaded", "no\n"),
                    ("kernel", "6.1.0\n"),
                    ("loadable", "yes\n"),
                    ("conf", &persisted()),
                ])),
            )
            .on(
                "modprobe",
                Output::failed(1, "modprobe: FATAL: Module br_netfilter not found\n"),
            );
        let error = KernelModule(&resource)
            .apply(&host, &Observation::change("x"))
            .await
            .unwrap_err();
        assert!(matches!(error, ResourceError::Command { .. }), "{error:?}");
        assert!(error.to_string().contains("Module br_netfilter not found"));
    }
}
