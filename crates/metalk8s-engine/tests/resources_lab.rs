//! Every kind of resource against a real 1-node lab (systemd, apt, docker's bind-mounted
//! /etc/hosts; needs root and docker): each desired state is applied, reports changes,
//! and then observes as converged.

use std::time::{Duration, Instant};

use metalk8s_engine::resource::{Observation, ResourceError};
use metalk8s_engine::resources::implementation;
use metalk8s_model::plan::{
    CommandResource, DirectoryResource, FileResource, GroupResource, HostnameResource,
    HostsEntriesResource, HostsEntry, KernelModuleResource, MountResource, PackageManager,
    PackageState, PackagesResource, Resource, ServiceResource, SwapOffResource, SysctlResource,
    UnitResource, UserResource,
};
use metalk8s_transport::{Command, Host, SshHost, SshTarget};

struct Lab {
    name: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(error) = metalk8s_lab::down(&self.name) {
            eprintln!("cleaning up lab {}: {error}", self.name);
        }
    }
}

async fn sh(host: &dyn Host, script: &str) -> String {
    let output = host
        .run(&Command::new(script).as_root())
        .await
        .expect("runs");
    assert!(
        output.success(),
        "`{script}` failed: {}",
        output.stderr_text()
    );
    output.stdout_text()
}

async fn observe(host: &dyn Host, resource: &Resource) -> Result<Observation, ResourceError> {
    implementation(resource).observe(host).await
}

/// Applies `resource`, which must differ first, then must observe as converged. Returns
/// the change summaries.
async fn converge(host: &dyn Host, resource: &Resource) -> Vec<String> {
    let apply = implementation(resource);
    let before = apply
        .observe(host)
        .await
        .unwrap_or_else(|e| panic!("observe {resource:?}: {e}"));
    assert!(
        !before.is_converged(),
        "{resource:?} should differ at first"
    );
    apply
        .apply(host, &before)
        .await
        .unwrap_or_else(|e| panic!("apply {resource:?}: {e}"));
    let after = apply
        .observe(host)
        .await
        .unwrap_or_else(|e| panic!("observe again {resource:?}: {e}"));
    assert!(after.is_converged(), "{resource:?} after apply: {after:?}");
    before.changes.into_iter().map(|c| c.summary).collect()
}

fn file(path: &str, content: &str, mode: u32) -> Resource {
    Resource::File(FileResource {
        path: path.into(),
        content: content.into(),
        mode,
        owner: "root".into(),
        group: "root".into(),
        secret: false,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_resource_applies_then_is_converged_on_a_lab_node() {
    let lab = Lab {
        name: format!("res{}", std::process::id()),
    };
    let spec = metalk8s_lab::LabSpec {
        disks_per_node: 0,
        ..metalk8s_lab::LabSpec::new(&lab.name, 1)
    };
    let info = tokio::task::spawn_blocking(move || {
        metalk8s_lab::up(&spec, &|m: &str| eprintln!("{m}")).expect("lab up")
    })
    .await
    .unwrap();
    let inventory = metalk8s_inventory::load(&info.inventory).expect("lab inventory");
    let host = SshHost::connect(SshTarget::from_inventory(&inventory, &inventory.nodes[0]))
        .await
        .expect("ssh to node1");
    let host: &dyn Host = &host;
    // Older lab images keep docker's read-only /proc/sys.
    sh(host, "mount -o remount,rw /proc/sys").await;

    let mut all = Vec::new();

    // Group and user first: the directory below is owned by them.
    let group = Resource::Group(GroupResource {
        name: "metalk8s-test".into(),
        system: true,
    });
    assert_eq!(
        converge(host, &group).await,
        ["group metalk8s-test does not exist"]
    );
    let user = Resource::User(UserResource {
        name: "metalk8s-test".into(),
        system: true,
        home: Some("/var/lib/metalk8s-test".into()),
        shell: Some("/usr/sbin/nologin".into()),
        groups: vec!["adm".into()],
    });
    assert_eq!(
        converge(host, &user).await,
        ["user metalk8s-test does not exist"]
    );
    let user_changed = Resource::User(UserResource {
        name: "metalk8s-test".into(),
        system: true,
        home: Some("/var/lib/metalk8s-test".into()),
        shell: Some("/bin/sh".into()),
        groups: vec!["adm".into(), "staff".into()],
    });
    assert_eq!(
        converge(host, &user_changed).await,
        [
            "shell is /usr/sbin/nologin, want /bin/sh",
            "not in group staff"
        ]
    );
    assert!(
        sh(host, "id -Gn metalk8s-test")
            .await
            .contains("metalk8s-test adm staff")
    );
    all.extend([group, user_changed]);

    // File: created with its parent, then changed (diff + backup), then only its mode.
    let path = "/etc/metalk8s-test/app.conf";
    let created = file(path, "a = 1\nb = 2\n", 0o640);
    assert_eq!(converge(host, &created).await, ["file does not exist"]);
    let edited = file(path, "a = 1\nb = 3\n", 0o640);
    let observed = observe(host, &edited).await.unwrap();
    assert_eq!(
        observed.changes[0].summary,
        "content differs (2 lines changed)"
    );
    assert!(
        observed.changes[0]
            .diff
            .as_deref()
            .unwrap()
            .contains("-b = 2\n+b = 3\n")
    );
    converge(host, &edited).await;
    assert_eq!(
        sh(host, &format!("cat {path}.metalk8s-backup")).await,
        "a = 1\nb = 2\n"
    );
    let chmod = file(path, "a = 1\nb = 3\n", 0o600);
    assert_eq!(converge(host, &chmod).await, ["mode is 0640, want 0600"]);
    assert_eq!(sh(host, &format!("stat -c %a {path}")).await.trim(), "600");
    all.push(chmod);

    let directory = Resource::Directory(DirectoryResource {
        path: "/var/lib/metalk8s-test/data".into(),
        mode: 0o750,
        owner: "metalk8s-test".into(),
        group: "metalk8s-test".into(),
    });
    assert_eq!(
        converge(host, &directory).await,
        ["directory does not exist"]
    );
    all.push(directory);

    let started = Instant::now();
    let packages = Resource::Packages(PackagesResource {
        manager: PackageManager::Apt,
        names: vec!["jq".into()],
        state: PackageState::Present,
    });
    assert_eq!(converge(host, &packages).await, ["jq is not installed"]);
    eprintln!("installing jq took {:?}", started.elapsed());
    assert_eq!(sh(host, "echo '{\"a\":1}' | jq .a").await.trim(), "1");
    all.push(packages);

    // A unit, then its service; a restart changes its PID.
    let unit = Resource::Unit(UnitResource {
        name: "metalk8s-test.service".into(),
        drop_in: None,
        content: "[Unit]\nDescription=metalk8s test\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n".into(),
    });
    converge(host, &unit).await;
    let drop_in = Resource::Unit(UnitResource {
        name: "metalk8s-test.service".into(),
        drop_in: Some("metalk8s".into()),
        content: "[Service]\nEnvironment=METALK8S=1\n".into(),
    });
    converge(host, &drop_in).await;
    assert!(
        sh(
            host,
            "systemctl show -p Environment --value metalk8s-test.service"
        )
        .await
        .contains("METALK8S=1")
    );
    let service = Resource::Service(ServiceResource {
        name: "metalk8s-test.service".into(),
        enabled: true,
        running: true,
    });
    assert_eq!(
        converge(host, &service).await,
        [
            "service is disabled, want enabled",
            "service is stopped, want running"
        ]
    );
    let pid = sh(
        host,
        "systemctl show -p MainPID --value metalk8s-test.service",
    )
    .await;
    let reacted = implementation(&service).react(host).await.unwrap();
    assert_eq!(reacted.as_deref(), Some("restarted metalk8s-test.service"));
    assert_ne!(
        pid,
        sh(
            host,
            "systemctl show -p MainPID --value metalk8s-test.service"
        )
        .await
    );
    let missing_service = Resource::Service(ServiceResource {
        name: "metalk8s-nothing.service".into(),
        enabled: true,
        running: true,
    });
    let observed = observe(host, &missing_service).await.unwrap();
    let error = implementation(&missing_service)
        .apply(host, &observed)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("metalk8s-nothing.service does not exist"),
        "{error}"
    );
    all.extend([unit, drop_in, service]);

    // Kernel parameters: a live change, a multi-value key that already matches.
    let sysctl = Resource::Sysctl(SysctlResource {
        file: "/etc/sysctl.d/90-metalk8s-test.conf".into(),
        values: [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.tcp_keepalive_time", "600"),
            ("net.ipv4.ip_local_port_range", "32768 60999"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    });
    sh(
        host,
        "sysctl -q -w net.ipv4.tcp_keepalive_time=7200 net.ipv4.ip_local_port_range='32768 60999'",
    )
    .await;
    let changes = converge(host, &sysctl).await;
    assert!(
        changes.contains(&"net.ipv4.tcp_keepalive_time is 7200, want 600".to_owned()),
        "{changes:?}"
    );
    assert_eq!(
        sh(host, "cat /proc/sys/net/ipv4/tcp_keepalive_time")
            .await
            .trim(),
        "600"
    );
    all.push(sysctl.clone());
    // Read-only /proc/sys: unsupported, and nothing is claimed.
    sh(
        host,
        "sysctl -q -w net.ipv4.tcp_keepalive_time=7200 && mount -o remount,ro /proc/sys",
    )
    .await;
    let read_only = observe(host, &sysctl).await;
    sh(host, "mount -o remount,rw /proc/sys").await;
    match read_only {
        Err(ResourceError::Unsupported(reason)) => {
            assert!(reason.contains("/proc/sys is read-only"), "{reason}")
        }
        other => panic!("read-only /proc/sys: {other:?}"),
    }
    converge(host, &sysctl).await;
    // A value the kernel refuses: the step fails, the file keeps its content, and the value
    // set before the refused one (`ip_forward` sorts first) is put back.
    let persisted = sh(host, "cat /etc/sysctl.d/90-metalk8s-test.conf").await;
    let refused = Resource::Sysctl(SysctlResource {
        file: "/etc/sysctl.d/90-metalk8s-test.conf".into(),
        values: [
            ("net.ipv4.ip_forward", "0"),
            ("net.ipv4.ip_local_port_range", "32768 60999; x"),
            ("net.ipv4.tcp_keepalive_time", "600"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    });
    let observed = observe(host, &refused).await.unwrap();
    let error = implementation(&refused)
        .apply(host, &observed)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ResourceError::Command { stderr, .. } if stderr.contains("the kernel refused net.ipv4.ip_local_port_range")),
        "{error:?}"
    );
    assert_eq!(
        sh(host, "cat /etc/sysctl.d/90-metalk8s-test.conf").await,
        persisted
    );
    assert_eq!(
        sh(host, "cat /proc/sys/net/ipv4/ip_forward").await.trim(),
        "1"
    );
    assert!(observe(host, &sysctl).await.unwrap().is_converged());
    // A key this kernel does not have: the file is persisted, then unsupported.
    let unknown_key = Resource::Sysctl(SysctlResource {
        file: "/etc/sysctl.d/91-metalk8s-test.conf".into(),
        values: [("net.metalk8s.nothing".to_owned(), "1".to_owned())].into(),
    });
    let observed = observe(host, &unknown_key).await.unwrap();
    let error = implementation(&unknown_key)
        .apply(host, &observed)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ResourceError::Unsupported(r) if r.contains("/proc/sys/net/metalk8s does not exist")),
        "{error:?}"
    );
    assert!(
        sh(host, "cat /etc/sysctl.d/91-metalk8s-test.conf")
            .await
            .contains("net.metalk8s.nothing = 1")
    );
    assert!(matches!(
        observe(host, &unknown_key).await,
        Err(ResourceError::Unsupported(_))
    ));

    // Kernel modules: a lab node has no /lib/modules for the host's kernel.
    let no_modules = sh(host, "[ -d /lib/modules/$(uname -r) ] || echo none")
        .await
        .trim()
        == "none";
    let br_netfilter = Resource::KernelModule(KernelModuleResource {
        name: "br_netfilter".into(),
    });
    let bridge_built_in = sh(host, "[ -d /proc/sys/net/bridge ] && echo yes || true")
        .await
        .trim()
        == "yes";
    if bridge_built_in {
        assert_eq!(
            converge(host, &br_netfilter).await,
            ["/etc/modules-load.d/br_netfilter.conf: file does not exist"]
        );
        all.push(br_netfilter);
    } else if no_modules {
        let observed = observe(host, &br_netfilter).await.unwrap();
        let error = implementation(&br_netfilter)
            .apply(host, &observed)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ResourceError::Unsupported(r) if r.contains("/lib/modules/")),
            "{error:?}"
        );
    }
    if no_modules {
        let absent = Resource::KernelModule(KernelModuleResource {
            name: "metalk8s_absent".into(),
        });
        let observed = observe(host, &absent).await.unwrap();
        assert!(
            observed
                .changes
                .iter()
                .any(|c| c.summary == "metalk8s_absent is not loaded")
        );
        let error = implementation(&absent)
            .apply(host, &observed)
            .await
            .unwrap_err();
        let ResourceError::Unsupported(reason) = &error else {
            panic!("{error:?}")
        };
        assert!(
            reason.starts_with("cannot load kernel module metalk8s_absent: /lib/modules/"),
            "{reason}"
        );
        assert!(
            sh(host, "cat /etc/modules-load.d/metalk8s_absent.conf")
                .await
                .contains("metalk8s_absent")
        );
        assert!(matches!(
            observe(host, &absent).await,
            Err(ResourceError::Unsupported(_))
        ));
    }

    // Swap: a swap line in fstab is commented out (the lab has no active swap).
    sh(host, "echo '/swapfile none swap sw 0 0' >> /etc/fstab").await;
    let swap_off = Resource::SwapOff(SwapOffResource {});
    assert_eq!(
        converge(host, &swap_off).await,
        ["/etc/fstab enables swap: `/swapfile none swap sw 0 0`"]
    );
    assert!(
        sh(host, "cat /etc/fstab.metalk8s-backup")
            .await
            .contains("/swapfile none swap")
    );
    all.push(swap_off);

    let mount = Resource::Mount(MountResource {
        device: "tmpfs".into(),
        mount_point: "/mnt/metalk8s-test".into(),
        fs_type: "tmpfs".into(),
        options: vec!["size=16m".into(), "mode=0755".into()],
    });
    assert_eq!(
        converge(host, &mount).await,
        [
            "/etc/fstab has no entry for /mnt/metalk8s-test",
            "/mnt/metalk8s-test is not mounted"
        ]
    );
    assert!(
        sh(host, "findmnt -n -o FSTYPE /mnt/metalk8s-test")
            .await
            .contains("tmpfs")
    );
    all.push(mount);

    let hostname = Resource::Hostname(HostnameResource {
        name: inventory.nodes[0].name.clone(),
    });
    assert!(observe(host, &hostname).await.unwrap().is_converged());
    all.push(hostname);

    // /etc/hosts is bind-mounted by docker: written in place, still a mount afterwards.
    let hosts = Resource::HostsEntries(HostsEntriesResource {
        entries: vec![HostsEntry {
            ip: "10.9.8.7".into(),
            names: vec!["metalk8s-test".into(), "metalk8s-test.lab".into()],
        }],
    });
    let original = sh(host, "cat /etc/hosts").await;
    assert_eq!(
        converge(host, &hosts).await,
        ["/etc/hosts has no metalk8s block"]
    );
    let written = sh(host, "cat /etc/hosts").await;
    assert!(
        written.starts_with(&original),
        "lines outside the block are kept"
    );
    assert!(written.contains("# BEGIN metalk8s managed\n10.9.8.7 metalk8s-test metalk8s-test.lab\n# END metalk8s managed\n"));
    assert!(
        sh(host, "findmnt -n /etc/hosts >/dev/null && echo mounted")
            .await
            .contains("mounted")
    );
    assert_eq!(
        sh(host, "getent hosts metalk8s-test")
            .await
            .split_whitespace()
            .next(),
        Some("10.9.8.7")
    );
    all.push(hosts);

    let command = Resource::Command(CommandResource {
        command: "echo ran >> /etc/metalk8s-test/ran && touch /etc/metalk8s-test/created".into(),
        creates: Some("/etc/metalk8s-test/created".into()),
        unless: None,
        only_on_watch: false,
    });
    assert_eq!(converge(host, &command).await, ["command has not run"]);
    all.push(command);
    let failing = Resource::Command(CommandResource {
        command: "echo broken >&2; exit 3".into(),
        creates: None,
        unless: Some("false".into()),
        only_on_watch: false,
    });
    let observed = observe(host, &failing).await.unwrap();
    match implementation(&failing).apply(host, &observed).await {
        Err(ResourceError::Command {
            status: 3, stderr, ..
        }) => assert_eq!(stderr, "broken"),
        other => panic!("failing command: {other:?}"),
    }

    // A no-op pass over everything: one command each, all converged.
    let started = Instant::now();
    for resource in &all {
        let observed = observe(host, resource).await.unwrap();
        assert!(observed.is_converged(), "{resource:?}: {observed:?}");
    }
    let elapsed = started.elapsed();
    let baseline = Instant::now();
    for _ in &all {
        sh(host, "true").await;
    }
    eprintln!(
        "observing {} converged resources over ssh took {elapsed:?} ({:?} each; `true` takes {:?})",
        all.len(),
        elapsed / all.len() as u32,
        baseline.elapsed() / all.len() as u32
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}
