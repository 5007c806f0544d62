//! `SshHost` and `connect_all` against real sshd processes on 127.0.0.1 (see `support`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metalk8s_model::Inventory;
use metalk8s_model::inventory::{Networks, Node, Role, SshOverrides, SshSettings};
use metalk8s_transport::{
    Command, ConnectOptions, Host, HostError, HostKeyPolicy, SshHost, SshTarget, connect_all,
};
use support::{Sshd, TestUser};

async fn connect(target: SshTarget) -> SshHost {
    let name = target.name.clone();
    SshHost::connect(target)
        .await
        .unwrap_or_else(|error| panic!("connect to {name}: {error:?}"))
}

async fn connect_err(target: SshTarget) -> HostError {
    SshHost::connect(target)
        .await
        .expect_err("the connection must fail")
}

#[tokio::test]
async fn run_returns_stdout_stderr_status_and_reads_stdin() {
    let sshd = Sshd::start();
    let host = connect(sshd.target("node1")).await;

    let output = host
        .run(&Command::new("printf out; printf err >&2; exit 7"))
        .await
        .expect("runs");
    assert_eq!(
        (output.stdout_text().as_str(), output.stderr_text().as_str()),
        ("out", "err")
    );
    assert_eq!(output.status, 7);

    let output = host
        .run(
            &Command::new("tr a-z A-Z")
                .stdin("through stdin\n")
                .timeout(Duration::from_secs(20)),
        )
        .await
        .expect("runs");
    assert_eq!(output.stdout_text(), "THROUGH STDIN\n");

    let quoting = r#"printf '%s|' "it's" "$((1 + 2))" '$HOME' "a  b"; echo"#;
    let output = host.run(&Command::new(quoting)).await.expect("runs");
    assert_eq!(output.stdout_text(), "it's|3|$HOME|a  b|\n");

    let output = host
        .run(&Command::new("no-such-command-metalk8s"))
        .await
        .expect("a missing command is an exit status, not a transport error");
    assert_eq!(output.status, 127);

    let output = host
        .run(&Command::new("head -c 3000000 /dev/zero"))
        .await
        .expect("runs");
    assert_eq!(output.stdout.len(), 3_000_000);

    host.close().await.expect("closes");
}

#[tokio::test]
async fn commands_share_one_connection() {
    let sshd = Sshd::start();
    let host = Arc::new(connect(sshd.target("node1")).await);
    let runs = (0..20).map(|i| {
        let host = Arc::clone(&host);
        async move { host.run(&Command::new(format!("echo {i}"))).await }
    });
    let outputs = futures::future::join_all(runs).await;
    for (i, output) in outputs.into_iter().enumerate() {
        assert_eq!(output.expect("runs").stdout_text(), format!("{i}\n"));
    }
    assert_eq!(sshd.accepted_logins(), 1);
}

#[tokio::test]
async fn upload_is_byte_exact_with_mode_and_replaces_files() {
    let sshd = Sshd::start();
    let host = connect(sshd.target("node1")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bundle part.bin");
    let path_text = path.to_str().expect("utf-8");
    let contents: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();

    host.upload(path_text, &contents, 0o600, true)
        .await
        .expect("uploads");
    assert_eq!(std::fs::read(&path).expect("read"), contents);
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);

    host.upload(path_text, b"#!/bin/sh\n", 0o755, false)
        .await
        .expect("replaces");
    assert_eq!(std::fs::read(&path).expect("read"), b"#!/bin/sh\n");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);

    let error = host
        .upload("/nonexistent/metalk8s/file", b"x", 0o644, true)
        .await
        .expect_err("no such directory");
    assert!(
        matches!(&error, HostError::Upload { host, path, .. } if host == "node1" && path == "/nonexistent/metalk8s/file"),
        "{error:?}"
    );
}

#[tokio::test]
async fn become_root_as_root_runs_as_root_with_or_without_sudo() {
    let sshd = Sshd::start();
    let plain = connect(sshd.target("node1")).await;
    let output = plain
        .run(&Command::new("id -u").as_root())
        .await
        .expect("runs");
    assert_eq!(output.stdout_text(), "0\n");

    let through_sudo = connect(SshTarget {
        sudo: true,
        ..sshd.target("node1")
    })
    .await;
    let output = through_sudo
        .run(&Command::new("echo \"$SUDO_USER\"; id -u").as_root())
        .await
        .expect("runs");
    assert_eq!(output.stdout_text(), "root\n0\n");
}

#[tokio::test]
async fn sudo_refusal_is_reported_for_a_user_without_sudo_rights() {
    let sshd = Sshd::start();
    let user = TestUser::create();
    let host = connect(SshTarget {
        user: user.name.clone(),
        ..sshd.target("node1")
    })
    .await;

    let output = host.run(&Command::new("id -un")).await.expect("runs");
    assert_eq!(output.stdout_text().trim(), user.name);

    let error = host
        .run(&Command::new("id -u").as_root())
        .await
        .expect_err("sudo refuses");
    assert!(
        matches!(&error, HostError::SudoRefused { host, user: who } if host == "node1" && who == &user.name),
        "{error:?}"
    );
    let error = host
        .upload("/tmp/metalk8s-sudo-refused", b"x", 0o644, true)
        .await
        .expect_err("sudo refuses");
    assert!(matches!(error, HostError::SudoRefused { .. }), "{error:?}");
    host.close().await.expect("closes");
}

#[tokio::test]
async fn timeout_names_host_and_command_and_stops_the_remote_command() {
    let sshd = Sshd::start();
    let host = connect(sshd.target("node1")).await;
    let marker = format!("metalk8s-ssh-timeout-{}", std::process::id());
    let script = format!("sleep 30; : {marker}");
    let started = Instant::now();
    let error = host
        .run(&Command::new(&script).timeout(Duration::from_secs(1)))
        .await
        .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&error, HostError::Timeout { host, what, seconds: 1 } if host == "node1" && what == &format!("`{script}`")),
        "{error:?}"
    );
    assert!(
        support::process_gone(&marker, Duration::from_secs(15)).await,
        "the remote command still runs"
    );
    let output = host
        .run(&Command::new("echo still usable"))
        .await
        .expect("runs");
    assert_eq!(output.stdout_text(), "still usable\n");
}

#[tokio::test]
async fn a_lost_connection_is_reopened_for_the_next_command() {
    let sshd = Sshd::start();
    let host = connect(sshd.target("node1")).await;
    host.run(&Command::new("true")).await.expect("runs");
    sshd.drop_connections();
    // Give the local master a moment to notice the connection is gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let output = host
        .run(&Command::new("echo back"))
        .await
        .expect("reconnects");
    assert_eq!(output.stdout_text(), "back\n");
    assert_eq!(sshd.accepted_logins(), 2);
}

#[tokio::test]
async fn commands_after_close_fail() {
    let sshd = Sshd::start();
    let host = connect(sshd.target("node1")).await;
    host.close().await.expect("closes");
    let error = host.run(&Command::new("true")).await.expect_err("closed");
    assert!(matches!(error, HostError::Connection { .. }), "{error:?}");
    host.close().await.expect("closing twice is harmless");
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let sshd = Sshd::start();
    let target = SshTarget {
        port: support::closed_port(),
        ..sshd.target("node1")
    };
    let error = connect_err(target).await;
    assert!(
        matches!(&error, HostError::Unreachable { host, address, .. } if host == "node1" && address == "127.0.0.1"),
        "{error:?}"
    );
    let cause = std::error::Error::source(&error)
        .expect("cause")
        .to_string();
    assert!(cause.contains("Connection refused"), "{cause}");
}

#[tokio::test]
async fn key_not_authorized_is_auth_refused() {
    let sshd = Sshd::start();
    let error = connect_err(SshTarget {
        identity_file: Some(sshd.other_key()),
        ..sshd.target("node1")
    })
    .await;
    assert!(
        matches!(&error, HostError::AuthRefused { host, user, .. } if host == "node1" && user == "root"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_different_recorded_key_is_host_key_changed_even_when_accepting_new_keys() {
    let sshd = Sshd::start();
    let forged = format!(
        "[127.0.0.1]:{} {}\n",
        sshd.port,
        support::public_key(&sshd.path("other_key.pub"))
    );
    std::fs::write(sshd.known_hosts(), forged).expect("write known_hosts");
    for host_keys in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let error = connect_err(SshTarget {
            host_keys,
            ..sshd.target("node1")
        })
        .await;
        assert!(
            matches!(&error, HostError::HostKeyChanged { host, known_hosts, .. } if host == "node1" && known_hosts == &sshd.known_hosts().display().to_string()),
            "{host_keys:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn an_unrecorded_key_is_refused_unless_new_keys_are_accepted() {
    let sshd = Sshd::start();
    std::fs::write(sshd.known_hosts(), "").expect("empty known_hosts");
    let error = connect_err(sshd.target("node1")).await;
    assert!(
        matches!(&error, HostError::HostKeyUnknown { host, .. } if host == "node1"),
        "{error:?}"
    );

    let host = connect(SshTarget {
        host_keys: HostKeyPolicy::AcceptNew,
        ..sshd.target("node1")
    })
    .await;
    host.close().await.expect("closes");
    let recorded = std::fs::read_to_string(sshd.known_hosts()).expect("read");
    let host_key = support::public_key(&sshd.path("host_key.pub"));
    assert!(recorded.contains(&host_key), "{recorded}");

    // Recorded now: strict checking accepts it.
    connect(sshd.target("node1")).await;
}

#[tokio::test]
async fn connect_all_connects_every_node_and_reports_each_failure() {
    // The bound itself is proven by the unit tests of `connect_bounded`, where timing is
    // under control; here, that it holds together with real connections and failures.
    let first = Sshd::start();
    let second = Sshd::start();
    second.authorize_client_of(&first);
    let known_hosts = first.known_hosts();
    support::append(&known_hosts, &second.known_hosts_line());
    let closed = support::closed_port();
    let nodes = [
        ("node1", first.port),
        ("node2", second.port),
        ("down1", closed),
        ("node3", first.port),
        ("node4", second.port),
        ("down2", closed),
        ("node5", first.port),
        ("node6", first.port),
        ("node7", first.port),
        ("node8", first.port),
    ];
    let inventory = inventory(
        &nodes,
        first.client_key().display().to_string(),
        known_hosts.display().to_string(),
    );

    let results = connect_all(&inventory, &ConnectOptions::default()).await;
    let names: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "node1", "node2", "down1", "node3", "node4", "down2", "node5", "node6", "node7",
            "node8"
        ]
    );
    for (name, result) in &results {
        match result {
            Ok(host) => {
                assert_eq!(host.name(), name);
                let output = host.run(&Command::new("echo up")).await.expect("runs");
                assert_eq!(output.stdout_text(), "up\n");
                host.close().await.expect("closes");
            }
            Err(error) => {
                assert!(name.starts_with("down"), "{name}: {error:?}");
                assert!(
                    matches!(error, HostError::Unreachable { host, .. } if host == name),
                    "{error:?}"
                );
            }
        }
    }
    assert_eq!(first.accepted_logins(), 6);
    assert_eq!(second.accepted_logins(), 2);
}

#[tokio::test]
async fn connect_all_host_key_option_overrides_the_inventory() {
    let sshd = Sshd::start();
    std::fs::write(sshd.known_hosts(), "").expect("empty known_hosts");
    let inventory = inventory(
        &[("node1", sshd.port)],
        sshd.client_key().display().to_string(),
        sshd.known_hosts().display().to_string(),
    );

    let strict = connect_all(&inventory, &ConnectOptions::default()).await;
    assert!(matches!(strict[0].1, Err(HostError::HostKeyUnknown { .. })));

    let accept_new = ConnectOptions {
        host_keys: Some(HostKeyPolicy::AcceptNew),
        ..ConnectOptions::default()
    };
    let accepted = connect_all(&inventory, &accept_new).await;
    assert!(accepted[0].1.is_ok(), "{:?}", accepted[0].1.as_ref().err());
}

/// Nodes on 127.0.0.1 at the given ports, logging in as root, two at a time.
fn inventory(nodes: &[(&str, u16)], identity_file: String, known_hosts_file: String) -> Inventory {
    let cidr = |text: &str| text.parse().expect("cidr");
    Inventory {
        api_version: metalk8s_model::inventory::API_VERSION.into(),
        kind: metalk8s_model::inventory::KIND.into(),
        name: "transport-test".into(),
        networks: Networks {
            control_plane: vec![cidr("127.0.0.0/8")],
            workload_plane: vec![cidr("127.0.0.0/8")],
            pods: cidr("10.233.0.0/16"),
            services: cidr("10.96.0.0/12"),
            api_server_vip: None,
            nameservers: Vec::new(),
            encapsulation: Default::default(),
            encryption: None,
        },
        proxy: None,
        ssh: SshSettings {
            identity_file: Some(identity_file),
            known_hosts_file: Some(known_hosts_file),
            connect_timeout_seconds: 5,
            parallelism: 2,
            ..SshSettings::default()
        },
        prechecks: Default::default(),
        os: Default::default(),
        nodes: nodes
            .iter()
            .map(|(name, port)| Node {
                name: (*name).into(),
                address: "127.0.0.1".into(),
                control_plane_ip: None,
                workload_plane_ip: None,
                roles: vec![Role::Worker],
                labels: Default::default(),
                taints: Vec::new(),
                ssh: SshOverrides {
                    port: Some(*port),
                    ..Default::default()
                },
                storage: Default::default(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn run_streaming_hands_over_each_line_before_the_command_ends() {
    let sshd = Sshd::start();
    let host = connect(sshd.target("node1")).await;
    let started = Instant::now();
    let seen: Arc<std::sync::Mutex<Vec<(String, Duration)>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let output = host
        .run_streaming(
            &Command::new("echo first; sleep 1; printf 'second\\nlast'"),
            &move |line: &str| {
                sink.lock()
                    .unwrap()
                    .push((line.to_owned(), started.elapsed()))
            },
        )
        .await
        .expect("runs");
    assert_eq!(output.stdout_text(), "first\nsecond\nlast");
    let seen = seen.lock().unwrap();
    let lines: Vec<&str> = seen.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(lines, ["first", "second", "last"]);
    // The first line arrived while the command was still sleeping.
    assert!(
        seen[0].1 + Duration::from_millis(500) < seen[1].1,
        "{seen:?}"
    );
}

#[tokio::test]
async fn reused_connections_outlive_the_host_and_log_in_once() {
    let sshd = Sshd::start();
    let directory = tempfile::tempdir().unwrap();
    let reuse = directory.path().join("ssh");
    for run in 0..3 {
        let host = SshHost::connect_reusing(sshd.target("node1"), &reuse)
            .await
            .expect("connects");
        let output = host
            .run(&Command::new(format!("echo {run}")))
            .await
            .unwrap();
        assert_eq!(output.stdout_text(), format!("{run}\n"));
        host.close().await.unwrap();
    }
    assert_eq!(
        sshd.accepted_logins(),
        1,
        "later runs reuse the first login"
    );
    let mode = std::fs::metadata(&reuse).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    // A master that went away (expired, killed) is replaced by a new login.
    sshd.drop_connections();
    let host = SshHost::connect_reusing(sshd.target("node1"), &reuse)
        .await
        .expect("reconnects");
    assert_eq!(
        host.run(&Command::new("echo again"))
            .await
            .unwrap()
            .stdout_text(),
        "again\n"
    );
    assert_eq!(sshd.accepted_logins(), 2);

    // Another user or key is another master, never the one above.
    let mut other = sshd.target("node1");
    other.identity_file = Some(sshd.other_key());
    assert!(matches!(
        SshHost::connect_reusing(other, &reuse).await,
        Err(HostError::AuthRefused { .. })
    ));
}

#[tokio::test]
async fn forward_reaches_a_port_on_the_node_through_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server on the "node" (sshd runs here, so its loopback is ours): it answers each
    // connection with what it received, upper-cased.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = server.accept().await {
            let mut buffer = [0u8; 5];
            if stream.read_exact(&mut buffer).await.is_ok() {
                let _ = stream.write_all(&buffer.to_ascii_uppercase()).await;
            }
        }
    });
    let sshd = Sshd::start();
    let host = connect(sshd.target("node1")).await;

    let local = host.forward(remote).await.expect("forwards");
    assert_ne!(local, remote, "a port of its own, forwarded by ssh");
    assert!(local.ip().is_loopback());
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(local)
            .await
            .expect("connects");
        stream.write_all(b"hello").await.unwrap();
        let mut answer = [0u8; 5];
        stream.read_exact(&mut answer).await.expect("an answer");
        assert_eq!(&answer, b"HELLO");
    }

    host.close().await.unwrap();
    let error = host
        .forward(remote)
        .await
        .expect_err("no forward on a closed connection");
    assert_eq!(error.host(), "node1");
}
