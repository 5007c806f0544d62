//! The apiserver proxy (haproxy) and the VIP (keepalived) as this crate configures them,
//! running for real on a 3-node lab (root and docker, like every lab test): Debian's
//! haproxy and keepalived, installed on the nodes with apt, each node given the files the
//! `kubernetes` phase places (`apiserver_proxy::config` and `drop_in`, `keepalived::files`,
//! the kubelet's unit and drop-in), its API server certificate issued by metalk8s-pki.
//!
//! kube-apiserver itself cannot run on lab nodes (no kubelet, no control-plane images, no
//! cluster), so a small TLS server stands in for it on every node: `lab/apiserver-stand-in.py`,
//! listening where kube-apiserver listens under metalk8s (the node's IP, port 6443, never
//! 0.0.0.0), with the node's real API server certificate, answering `/readyz` with 200, or
//! 503 while a flag file exists, and naming its node in every answer.
//!
//! What it shows, with time bounds derived from the health-check settings the crate
//! renders (`apiserver_proxy::HEALTH_CHECK`, `keepalived::TRACK_SCRIPT`,
//! `keepalived::ADVERT_INTERVAL_SECONDS`):
//! - `haproxy -c` accepts each node's configuration, and haproxy runs with it under
//!   systemd with the drop-in; TLS goes through untouched (curl verifies the API server's
//!   own certificate through 127.0.0.1:7443);
//! - a control plane sends everything to its own API server, to the others once that
//!   fails `/readyz`, and comes back after it recovers; a worker's configuration spreads
//!   over all three and stops sending to an unready one;
//! - exactly one control plane holds the VIP, which answers from outside; it moves to
//!   another node when its holder's keepalived stops or is killed (systemd then restarts
//!   it, and the killed one leaves no VIP behind), when its API server turns unready and
//!   when its haproxy stops, and a returning node does not take it back (`nopreempt`);
//! - the kubelet unit and drop-in, and haproxy's and keepalived's drop-ins, pass
//!   `systemd-analyze verify`.
//!
//! `METALK8S_VIP_FAILOVERS=N` repeats the three VIP failovers N times and prints their
//! times as a table (bench/vip-failover.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metalk8s_kubernetes::cluster::{self, Cluster, HealthCheck, Node, paths};
use metalk8s_kubernetes::version::SUPPORTED;
use metalk8s_kubernetes::{KeyAlgorithm, KubernetesVersion, apiserver_proxy, keepalived, kubelet};
use metalk8s_model::inventory::Inventory;
use metalk8s_pki::{
    Authority, CertificateAuthority, ClusterAddresses, IssueOptions, OffsetDateTime,
};

const STAND_IN: &str = include_str!("lab/apiserver-stand-in.py");
const ANSWERS: &str = include_str!("lab/answers.sh");
/// Where the test's own scripts go on a node.
const TEST_DIR: &str = "/usr/local/lib/metalk8s-test";
const UNREADY_FLAG: &str = "/run/apiserver-stand-in.unready";
const API_SERVER_CERT: &str = "/etc/kubernetes/pki/apiserver.crt";
const API_SERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";
/// Added to every time bound: SSH round trips, and scheduling on a loaded 2-core CI machine.
const MARGIN_SECONDS: f64 = 5.0;

/// Removes the lab `0` when dropped, whatever the test's outcome (even a failed `up`).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(error) = metalk8s_lab::down(&self.0) {
            eprintln!("cleaning up lab {}: {error}", self.0);
        }
    }
}

struct Lab {
    name: String,
    info: metalk8s_lab::LabInfo,
}

impl Lab {
    fn names(&self) -> Vec<String> {
        self.info
            .nodes
            .iter()
            .map(|node| node.name.clone())
            .collect()
    }

    fn try_ssh(&self, node: &str, script: &str, stdin: Option<&str>) -> Output {
        let mut command = metalk8s_lab::ssh_command(&self.name, node).unwrap();
        command.arg(script);
        let Some(input) = stdin else {
            return command.output().unwrap();
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `script` on `node`; the test fails, with its output, unless it succeeds.
    fn ssh(&self, node: &str, script: &str) -> String {
        succeeded(
            &format!("`{script}` on {node}"),
            &self.try_ssh(node, script, None),
        )
    }

    /// Writes `files` (path, mode, content) on `node` in one round trip.
    fn put(&self, node: &str, files: &[(&str, u32, &str)]) {
        let mut script = String::from("set -e\n");
        for (path, mode, content) in files {
            assert!(!content.contains("METALK8S_TEST_EOF") && content.ends_with('\n'));
            script.push_str(&format!(
                "mkdir -p \"$(dirname {path})\"\ncat > {path}.new <<'METALK8S_TEST_EOF'\n{content}METALK8S_TEST_EOF\nchmod {mode:o} {path}.new\nmv {path}.new {path}\n"
            ));
        }
        succeeded(
            &format!("writing files on {node}"),
            &self.try_ssh(node, "sh -s", Some(&script)),
        );
    }

    /// `work` on every node at once.
    fn on_every_node<T: Send>(&self, work: impl Fn(&str) -> T + Sync) -> BTreeMap<String, T> {
        let names = self.names();
        thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| (name.clone(), scope.spawn(|| work(name))))
                .collect();
            handles
                .into_iter()
                .map(|(name, handle)| (name, handle.join().unwrap()))
                .collect()
        })
    }
}

fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Seconds since the epoch. Lab nodes are containers: they read the host's clock, so times
/// taken on different nodes and on the host compare directly.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn parse_time(text: &str) -> f64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a time: {text:?}"))
}

/// The longest a failure can go unnoticed by `check`: the first failing run starts at most
/// one interval after it, `fall` runs are needed, the last may take its whole timeout.
fn detection_seconds(check: HealthCheck) -> f64 {
    f64::from(check.fall * check.interval_seconds + check.timeout_seconds)
}

/// The same for a recovery, `rise` runs.
fn recovery_seconds(check: HealthCheck) -> f64 {
    f64::from(check.rise * check.interval_seconds + check.timeout_seconds)
}

/// How long backups wait for a silent holder (VRRP's master-down interval: 3 adverts plus a
/// skew under one advert).
fn master_down_seconds() -> f64 {
    f64::from(4 * keepalived::ADVERT_INTERVAL_SECONDS)
}

/// One answer of `lab/answers.sh`: when it came and what it said (`node2 ok`,
/// `node2 unready`, or curl's error).
#[derive(Debug)]
struct Answer {
    at: f64,
    text: String,
}

impl Answer {
    /// The node whose API server answered.
    fn node(&self) -> Option<&str> {
        let (node, word) = self.text.split_once(' ')?;
        ["ok", "unready"].contains(&word).then_some(node)
    }
}

/// Parses `EPOCH-SECONDS ANSWER` lines (what `lab/answers.sh` prints).
fn parse_answers(lines: &str) -> Vec<Answer> {
    lines
        .lines()
        .map(|line| {
            let (at, text) = line.split_once(' ').unwrap_or((line, ""));
            Answer {
                at: parse_time(at),
                text: text.to_owned(),
            }
        })
        .collect()
}

/// `lab/answers.sh` on node1, asking its proxy until `count` answers in a row match
/// `stop`.
fn watch_node1_proxy(lab: &Lab, seconds: f64, stop: &str, count: u32) -> Vec<Answer> {
    parse_answers(&lab.ssh(
        "node1",
        &format!(
            "bash {TEST_DIR}/answers.sh {ca} https://127.0.0.1:7443/readyz {seconds} '{stop}' {count}",
            ca = paths::CA_CERT,
            seconds = seconds.ceil(),
        ),
    ))
}

fn count_by_node(answers: &[Answer]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        *counts
            .entry(answer.node().unwrap_or(&answer.text).to_owned())
            .or_default() += 1;
    }
    counts
}

/// `count` requests through the local proxy of `node`, one after the other.
fn proxied_answers(lab: &Lab, node: &str, count: u32) -> BTreeMap<String, usize> {
    let output = lab.ssh(
        node,
        &format!(
            "for i in $(seq {count}); do echo \"$(date +%s.%N) $(curl -sS --max-time 2 --cacert {ca} https://127.0.0.1:7443/readyz 2>&1)\"; done",
            ca = paths::CA_CERT,
        ),
    );
    count_by_node(&parse_answers(&output))
}

fn the_lab_cluster(
    inventory: &Inventory,
    interfaces: &BTreeMap<String, String>,
    vip: IpAddr,
) -> Cluster {
    let nodes: Vec<Node> = inventory
        .nodes
        .iter()
        .map(|node| Node {
            name: node.name.clone(),
            control_plane_ip: node.control_plane_ip.expect("the lab declares it"),
            roles: node.roles.iter().copied().collect(),
            labels: node.labels.clone(),
            taints: node.taints.clone(),
            cpus: 2,
            memory_bytes: 4 << 30,
            control_plane_interface: Some(interfaces[&node.name].clone()),
        })
        .collect();
    let minor = SUPPORTED.last().unwrap().minor;
    Cluster {
        name: inventory.name.clone(),
        version: KubernetesVersion::new(minor.major, minor.minor, 0),
        pods: inventory.networks.pods,
        services: inventory.networks.services,
        workload_plane: inventory.networks.workload_plane.clone(),
        dns_domain: "cluster.local".to_owned(),
        api_server_vip: Some(vip),
        extra_api_server_names: Vec::new(),
        registry: nodes[0].control_plane_ip,
        etcd_members: nodes.iter().map(|node| node.control_plane_ip).collect(),
        oidc: None,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        nodes,
    }
}

/// Every node's API server certificate and key, as metalk8s-pki issues them (names: the
/// node's name and IP, 127.0.0.1, the VIP…), and the cluster CA.
fn api_server_certificates(
    inventory: &Inventory,
    vip: IpAddr,
) -> (String, BTreeMap<String, (String, String)>) {
    let mut addresses = ClusterAddresses::declared(inventory);
    addresses.control_plane_vip = Some(vip);
    let options = IssueOptions::default();
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate(Authority::Kubernetes, &options, now).unwrap();
    let certificates = metalk8s_pki::cluster_certificates(inventory, &addresses)
        .unwrap()
        .into_iter()
        .map(|node| {
            let spec = node
                .certificates
                .iter()
                .find(|spec| spec.name == "apiserver")
                .expect("control planes have an API server certificate");
            let issued = ca.issue(spec, &options, now).unwrap();
            (node.node, (issued.cert_pem, issued.key_pem))
        })
        .collect();
    (ca.cert_pem().to_owned(), certificates)
}

#[test]
fn haproxy_and_keepalived_serve_and_fail_over_on_lab_nodes() {
    let started = Instant::now();
    let name = format!("proxy{}", std::process::id());
    let spec = metalk8s_lab::LabSpec {
        disks_per_node: 0,
        ..metalk8s_lab::LabSpec::new(&name, 3)
    };
    let _cleanup = Cleanup(name.clone());
    let info = metalk8s_lab::up(&spec, &|m: &str| eprintln!("{m}")).expect("lab up");
    let lab = Lab { name, info };
    let inventory = metalk8s_inventory::load(&lab.info.inventory).expect("the lab's inventory");
    // The lab layout keeps .2–.10 of its /24 free below node1 (.11), for a VIP.
    let vip = IpAddr::V4(Ipv4Addr::from(u32::from(lab.info.subnet.network()) + 10));

    // What a real deploy takes from the bundle; here from Debian through the lab's NAT.
    // The interface holding each node's IP is what facts would report.
    let interfaces = lab.on_every_node(|node| {
        let ip = lab.info.nodes.iter().find(|n| n.name == node).unwrap().ip;
        lab.ssh(
            node,
            &format!(
                "set -e; export DEBIAN_FRONTEND=noninteractive
                 apt-get -o Acquire::Retries=3 update -q >&2
                 apt-get -o Acquire::Retries=3 install -y -q --no-install-recommends haproxy keepalived >&2
                 ip -o -4 addr show to {ip} | awk '{{print $2}}'"
            ),
        )
        .trim()
        .to_owned()
    });
    eprintln!(
        "haproxy and keepalived installed ({:.0?}); interfaces {interfaces:?}",
        started.elapsed()
    );
    let cluster = the_lab_cluster(&inventory, &interfaces, vip);
    cluster.validate().expect("a valid lab cluster");
    let (ca, certificates) = api_server_certificates(&inventory, vip);

    place_and_start(&lab, &cluster, &ca, &certificates);
    units_pass_systemd_analyze_verify(&lab, &cluster);
    the_proxy_prefers_its_own_api_server_and_fails_over(&lab);
    a_worker_proxy_spreads_and_drops_an_unready_api_server(&lab, &cluster);

    let dir = tempfile::tempdir().unwrap();
    let host_ca = dir.path().join("ca.crt");
    std::fs::write(&host_ca, &ca).unwrap();
    let mut holder = keepalived_elects_one_holder_and_the_vip_answers(&lab, vip, &host_ca);

    let rounds: usize = std::env::var("METALK8S_VIP_FAILOVERS")
        .ok()
        .map(|text| text.parse().expect("METALK8S_VIP_FAILOVERS is a number"))
        .unwrap_or(1);
    let mut measured: Vec<Failover> = Vec::new();
    for round in 0..rounds {
        for kind in Kind::ALL {
            let first = round == 0 && kind == Kind::KeepalivedStopped;
            let failover = fail_over(&lab, vip, &host_ca, &holder, kind, first);
            eprintln!(
                "{}: the VIP moved from {} to {} in {:.2} s and answered again after {:.2} s",
                failover.kind.describe(),
                failover.from,
                failover.to,
                failover.moved_seconds,
                failover.answered_seconds
            );
            holder = failover.to.clone();
            measured.push(failover);
        }
    }
    print_failovers(&measured, rounds);
    eprintln!("lab test done in {:.0?}", started.elapsed());
}

/// The stand-in API server, haproxy with its configuration and drop-in (checked with
/// `haproxy -c` first), keepalived's files (started later), on every node.
fn place_and_start(
    lab: &Lab,
    cluster: &Cluster,
    ca: &str,
    certificates: &BTreeMap<String, (String, String)>,
) {
    lab.on_every_node(|name| {
        let node = cluster.node(name).unwrap();
        let (cert, key) = &certificates[name];
        let haproxy = apiserver_proxy::config(cluster, node).unwrap();
        let keepalived = keepalived::files(cluster, node).unwrap().expect("a VIP");
        lab.put(
            name,
            &[
                (paths::CA_CERT, 0o644, ca),
                (API_SERVER_CERT, 0o644, cert),
                (API_SERVER_KEY, 0o600, key),
                (&format!("{TEST_DIR}/apiserver-stand-in.py"), 0o755, STAND_IN),
                (&format!("{TEST_DIR}/answers.sh"), 0o755, ANSWERS),
                (paths::HAPROXY_CONFIG, 0o644, &haproxy),
                (paths::HAPROXY_DROP_IN, 0o644, &apiserver_proxy::drop_in()),
                (paths::KEEPALIVED_CONFIG, 0o644, &keepalived.config),
                (paths::KEEPALIVED_CHECK, 0o755, &keepalived.check_script),
                (paths::KEEPALIVED_DROP_IN, 0o644, &keepalived.drop_in),
            ],
        );
        let check = lab.try_ssh(name, "haproxy -c -f /etc/haproxy/haproxy.cfg", None);
        assert!(
            check.status.success(),
            "haproxy -c refused the configuration of {name}:\n{}{}\n{haproxy}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        lab.ssh(
            name,
            &format!(
                "set -e
                 systemctl daemon-reload
                 systemctl restart haproxy
                 # As in a deploy, the API server starts while haproxy holds VIP:6443. Port
                 # 6443 of every address is taken (what kubeadm's Port-6443 check listens
                 # on, with SO_REUSEADDR like Go), the node's IP is not.
                 if python3 -c 'import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"\", {port}))'; then
                   echo 'port {port} of every address is free beside haproxy' >&2; exit 1
                 fi
                 systemd-run --quiet --unit apiserver-stand-in --property Restart=always \
                   python3 {TEST_DIR}/apiserver-stand-in.py {ip} {port} {name} {API_SERVER_CERT} {API_SERVER_KEY} {UNREADY_FLAG}
                 for i in $(seq 50); do
                   curl -sf --cacert {ca} https://{ip}:{port}/readyz >/dev/null && break
                   sleep 0.2
                 done
                 curl -sSf --cacert {ca} https://{ip}:{port}/readyz >/dev/null",
                ip = node.control_plane_ip,
                port = cluster::APISERVER_PORT,
                ca = paths::CA_CERT,
            ),
        );
    });
    for name in lab.names() {
        // The drop-in took effect; haproxy dropped root (it listens on the VIP).
        let shown = lab.ssh(
            &name,
            "systemctl show haproxy -p ActiveState -p Restart -p StartLimitIntervalUSec; ps -o user= -C haproxy | sort -u; curl -sS -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:7080/healthz",
        );
        for expected in [
            "ActiveState=active",
            "Restart=always",
            "StartLimitIntervalUSec=0",
            "\nhaproxy\n",
            "\n200\n",
        ] {
            assert!(
                shown.contains(expected),
                "{name}: no {expected:?} in\n{shown}"
            );
        }
    }
}

/// The units the crate renders, placed where it says, pass `systemd-analyze verify` —
/// except that /usr/bin/kubelet does not exist on a lab node (the bundle brings it), which
/// systemd reports and this tolerates, and only that. What it cannot check without a
/// kubelet: that the kubelet accepts the flags the drop-in's variables expand to.
fn units_pass_systemd_analyze_verify(lab: &Lab, cluster: &Cluster) {
    let node = &cluster.nodes[2];
    lab.put(
        &node.name,
        &[
            (paths::KUBELET_UNIT, 0o644, &kubelet::unit()),
            (paths::KUBELET_DROP_IN, 0o644, &kubelet::drop_in(node)),
        ],
    );
    // --man=no: Debian's haproxy.service names man pages, and lab nodes have no `man`.
    let verify = "systemd-analyze verify --man=no kubelet.service haproxy.service keepalived.service 2>&1; true";
    let missing_kubelet = format!(
        "kubelet.service: Command {} is not executable: No such file or directory",
        paths::KUBELET_BIN
    );
    let output = lab.ssh(&node.name, verify);
    let complaints: Vec<&str> = output
        .lines()
        .filter(|line| !line.trim().is_empty() && *line != missing_kubelet)
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify:\n{output}");
    assert!(output.contains(&missing_kubelet), "{output}");
    // It does read the drop-ins: a misspelt key in one is reported.
    let bogus = "/etc/systemd/system/kubelet.service.d/99-bogus.conf";
    lab.put(&node.name, &[(bogus, 0o644, "[Service]\nEnvironmnt=A=1\n")]);
    let output = lab.ssh(&node.name, &format!("{verify}; rm {bogus}"));
    assert!(
        output.contains("Unknown key 'Environmnt' in section [Service]"),
        "{output}"
    );
}

/// node1 is a control plane: its proxy sends to its own API server only, to the two
/// others once that one fails `/readyz`, and to it again once it recovers.
fn the_proxy_prefers_its_own_api_server_and_fails_over(lab: &Lab) {
    // haproxy started before the API servers (as in a deploy), so its first checks failed;
    // node1's own comes into use `rise` checks after it listens.
    let check = apiserver_proxy::HEALTH_CHECK;
    watch_node1_proxy(
        lab,
        recovery_seconds(check) + MARGIN_SECONDS,
        "^node1 ok$",
        3,
    );
    let only_node1 = BTreeMap::from([("node1".to_owned(), 20)]);
    assert_eq!(proxied_answers(lab, "node1", 20), only_node1);
    let (out, back) = unready_then_ready(lab, "node1");
    assert_eq!(proxied_answers(lab, "node1", 20), only_node1);
    eprintln!(
        "control-plane proxy: its own API server out {out:.1} s after it turned unready, back {back:.1} s after it recovered"
    );
}

/// The configuration a worker gets (a fourth, worker-only node of the same cluster), run
/// on node1 for a while: new connections go to all three API servers in turn, none to one
/// that fails `/readyz`, and to it again once it recovers.
fn a_worker_proxy_spreads_and_drops_an_unready_api_server(lab: &Lab, cluster: &Cluster) {
    let mut with_worker = cluster.clone();
    let mut worker = cluster.nodes[0].clone();
    worker.name = "worker".to_owned();
    worker.roles = BTreeSet::from([metalk8s_model::inventory::Role::Worker]);
    worker.control_plane_ip = IpAddr::V4(Ipv4Addr::from(u32::from(lab.info.subnet.network()) + 9));
    with_worker.nodes.push(worker.clone());
    let worker_config = apiserver_proxy::config(&with_worker, &worker).unwrap();
    lab.put("node1", &[(paths::HAPROXY_CONFIG, 0o644, &worker_config)]);
    lab.ssh(
        "node1",
        "haproxy -c -q -f /etc/haproxy/haproxy.cfg && systemctl restart haproxy",
    );

    let answers = proxied_answers(lab, "node1", 30);
    for node in ["node1", "node2", "node3"] {
        assert!(answers.get(node) >= Some(&5), "{answers:?}");
    }
    let (out, back) = unready_then_ready(lab, "node2");
    eprintln!(
        "worker proxy: {answers:?} over 30 requests; unready node2 out after {out:.1} s, back {back:.1} s after it recovered"
    );

    let own_config = apiserver_proxy::config(cluster, &cluster.nodes[0]).unwrap();
    lab.put("node1", &[(paths::HAPROXY_CONFIG, 0o644, &own_config)]);
    lab.ssh("node1", "systemctl restart haproxy");
}

/// Turns `node`'s API server unready, then ready again, watching node1's proxy: it stops
/// sending to `node` within the health check's detection time, sends to both others
/// meanwhile, and sends to `node` again within its recovery time. Returns both times: from
/// the change to the last answer from `node`, and to its first answer again.
fn unready_then_ready(lab: &Lab, node: &str) -> (f64, f64) {
    let check = apiserver_proxy::HEALTH_CHECK;
    let others: Vec<&str> = ["node1", "node2", "node3"]
        .into_iter()
        .filter(|other| *other != node)
        .collect();
    let tail = 12;

    let bound = detection_seconds(check) + MARGIN_SECONDS;
    let unready = parse_time(&lab.ssh(node, &format!("date +%s.%N; touch {UNREADY_FLAG}")));
    let seen = watch_node1_proxy(
        lab,
        bound + 5.0,
        &format!("^({}) ok$", others.join("|")),
        tail,
    );
    let last = seen
        .iter()
        .rev()
        .find(|answer| answer.node() == Some(node))
        .map_or(unready, |answer| answer.at);
    let out = last - unready;
    assert!(
        out <= bound,
        "{node} still answered {out:.1} s after it turned unready (bound {bound} s): {seen:#?}"
    );
    let served = count_by_node(&seen[seen.len() - tail as usize..]);
    for other in &others {
        assert!(
            served.get(*other) >= Some(&3),
            "both others serve: {served:?}"
        );
    }

    let bound = recovery_seconds(check) + MARGIN_SECONDS;
    let ready = parse_time(&lab.ssh(node, &format!("date +%s.%N; rm {UNREADY_FLAG}")));
    let seen = watch_node1_proxy(lab, bound + 5.0, &format!("^{node} ok$"), 1);
    let back = seen.last().unwrap().at - ready;
    assert!(
        back <= bound,
        "{node} answered {back:.1} s after it recovered (bound {bound} s): {seen:#?}"
    );
    (out, back)
}

/// The nodes holding the VIP now.
fn holders(lab: &Lab, vip: IpAddr) -> Vec<String> {
    lab.on_every_node(|node| {
        !lab.ssh(node, &format!("ip -o addr show to {vip}/32"))
            .trim()
            .is_empty()
    })
    .into_iter()
    .filter_map(|(node, holds)| holds.then_some(node))
    .collect()
}

/// What answers `https://VIP:6443/readyz` from the host (a client outside the cluster).
fn vip_answer(vip: IpAddr, ca: &Path) -> String {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "2", "--cacert"])
        .arg(ca)
        .arg(format!("https://{vip}:6443/readyz"))
        .output()
        .expect("curl on the host (scripts/prerequisites installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// keepalived's log lines on `node` from `since` on, with their times.
fn keepalived_log(lab: &Lab, node: &str, since: f64) -> Vec<(f64, String)> {
    lab.ssh(
        node,
        &format!(
            "journalctl -u keepalived -o short-unix --no-pager --since @{}",
            since.floor()
        ),
    )
    .lines()
    .filter_map(|line| {
        let (at, text) = line.split_once(' ')?;
        let at: f64 = at.parse().ok()?;
        (at >= since).then(|| (at, text.to_owned()))
    })
    .collect()
}

/// Waits for `pattern` in keepalived's log of any of `nodes` after `since`: (node, time).
fn wait_for_keepalived(
    lab: &Lab,
    nodes: &[&str],
    since: f64,
    pattern: &str,
    seconds: f64,
) -> (String, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    loop {
        let found = thread::scope(|scope| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|node| {
                    scope.spawn(move || (node.to_string(), keepalived_log(lab, node, since)))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|handle| {
                    let (node, log) = handle.join().unwrap();
                    log.into_iter()
                        .find(|(_, text)| text.contains(pattern))
                        .map(|(at, _)| (node, at))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no `{pattern}` from {nodes:?} within {seconds:.0} s"
        );
        thread::sleep(Duration::from_millis(300));
    }
}

/// Starts keepalived everywhere: exactly one node takes the VIP, which answers from the
/// host and from another node, through the holder's haproxy to its own API server.
fn keepalived_elects_one_holder_and_the_vip_answers(lab: &Lab, vip: IpAddr, ca: &Path) -> String {
    // Debian 12's keepalived 2.2.7 ends `-t` with SIGTERM whenever `script_user` is set
    // (acassen/keepalived#2617, fixed in 2.2.8), so its status says nothing; what it prints
    // does, as a misspelt keyword shows.
    let test = "keepalived -t -f /etc/keepalived/keepalived.conf 2>&1; echo status $?";
    let output = lab.ssh("node1", test);
    assert!(
        output.trim() == "status 0" || output.trim() == "status 143",
        "keepalived -t: {output}"
    );
    let output = lab.ssh(
        "node1",
        "cp /etc/keepalived/keepalived.conf /tmp/bad.conf && sed -i 's/nopreempt/nopreempted/' /tmp/bad.conf && keepalived -t -f /tmp/bad.conf 2>&1; true",
    );
    assert!(output.contains("Unknown keyword 'nopreempted'"), "{output}");

    let since = now();
    lab.on_every_node(|node| lab.ssh(node, "systemctl start keepalived"));
    let (holder, _) = wait_for_keepalived(
        lab,
        &["node1", "node2", "node3"],
        since,
        "Entering MASTER STATE",
        20.0,
    );
    assert_eq!(holders(lab, vip), std::slice::from_ref(&holder));
    for node in lab.names() {
        let log = keepalived_log(lab, &node, since);
        let worrying: Vec<_> = log
            .iter()
            .filter(|(_, text)| {
                let lower = text.to_lowercase();
                ["warning", "error", "unknown", "security", "fault"]
                    .iter()
                    .any(|word| lower.contains(word))
            })
            .collect();
        assert!(worrying.is_empty(), "{node}'s keepalived: {worrying:#?}");
    }
    assert_eq!(vip_answer(vip, ca), format!("{holder} ok"));
    let other = lab
        .names()
        .into_iter()
        .find(|node| *node != holder)
        .unwrap();
    let from_other = lab.ssh(
        &other,
        &format!(
            "curl -sS --max-time 2 --cacert {} https://{vip}:6443/readyz",
            paths::CA_CERT
        ),
    );
    assert_eq!(from_other.trim(), format!("{holder} ok"));
    eprintln!("{holder} holds the VIP {vip}; it answers from the host and from {other}");
    holder
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `systemctl stop keepalived` on the holder.
    KeepalivedStopped,
    /// keepalived killed on the holder (SIGKILL, as by the OOM killer): no goodbye advert.
    KeepalivedKilled,
    /// The holder's API server answers 503 on `/readyz`.
    ApiServerUnready,
    /// `systemctl stop haproxy` on the holder: nothing serves VIP:6443 there any more.
    HaproxyStopped,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::KeepalivedStopped,
        Kind::KeepalivedKilled,
        Kind::ApiServerUnready,
        Kind::HaproxyStopped,
    ];

    fn describe(self) -> &'static str {
        match self {
            Kind::KeepalivedStopped => "holder's keepalived stopped",
            Kind::KeepalivedKilled => "holder's keepalived killed",
            Kind::ApiServerUnready => "holder's API server unready",
            Kind::HaproxyStopped => "holder's haproxy stopped",
        }
    }

    fn break_command(self) -> String {
        match self {
            Kind::KeepalivedStopped => "systemctl stop keepalived".to_owned(),
            // One signal to its whole process group at once. Killed one by one (`systemctl
            // kill`), the VRRP process may see its parent die first and leave gracefully,
            // handing the VIP over with a priority-0 advert as a stop does.
            Kind::KeepalivedKilled => {
                "kill -KILL -- -$(systemctl show --property MainPID --value keepalived)".to_owned()
            }
            Kind::ApiServerUnready => format!("touch {UNREADY_FLAG}"),
            Kind::HaproxyStopped => "systemctl stop haproxy".to_owned(),
        }
    }

    /// `None` when systemd repairs it: the drop-in restarts a killed keepalived.
    fn repair_command(self) -> Option<String> {
        match self {
            Kind::KeepalivedStopped => Some("systemctl start keepalived".to_owned()),
            Kind::KeepalivedKilled => None,
            Kind::ApiServerUnready => Some(format!("rm {UNREADY_FLAG}")),
            Kind::HaproxyStopped => Some("systemctl start haproxy".to_owned()),
        }
    }

    /// The longest the VIP may take to move: a stopped keepalived hands it over at once
    /// (priority 0), a killed one costs the master-down interval; a failed check costs its
    /// detection, then the hand-over.
    fn bound_seconds(self) -> f64 {
        let detection = match self {
            Kind::KeepalivedStopped | Kind::KeepalivedKilled => 0.0,
            Kind::ApiServerUnready | Kind::HaproxyStopped => {
                detection_seconds(keepalived::TRACK_SCRIPT)
            }
        };
        detection + master_down_seconds() + MARGIN_SECONDS
    }
}

#[derive(Debug)]
struct Failover {
    kind: Kind,
    from: String,
    to: String,
    /// From the failure to the new holder's `Entering MASTER STATE`.
    moved_seconds: f64,
    /// From the failure to the first 200 through the VIP from an API server other than
    /// the failed holder's, seen from the host.
    answered_seconds: f64,
}

/// Breaks the VIP's holder `from` in the way `kind` says and measures how long the VIP
/// takes to move and to answer again; then repairs it, and waits until it is a backup
/// again (in the first round, checking it does not take the VIP back).
fn fail_over(
    lab: &Lab,
    vip: IpAddr,
    ca: &Path,
    from: &str,
    kind: Kind,
    check_nopreempt: bool,
) -> Failover {
    let bound = kind.bound_seconds();
    let others: Vec<String> = lab
        .names()
        .into_iter()
        .filter(|node| node != from)
        .collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let stop = format!("^({}) ok$", others.join("|"));
    // The host asks the VIP from before the failure until another API server answers.
    let watch = {
        let ca = ca.to_owned();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/answers.sh");
        thread::spawn(move || {
            let output = Command::new("bash")
                .arg(script)
                .arg(ca)
                .arg(format!("https://{vip}:6443/readyz"))
                .arg(format!("{}", (bound + 10.0).ceil()))
                .arg(stop)
                .arg("1")
                .output()
                .unwrap();
            succeeded("asking the VIP from the host", &output)
        })
    };
    let broken = parse_time(&lab.ssh(from, &format!("date +%s.%N; {}", kind.break_command())));
    let (to, master_at) =
        wait_for_keepalived(lab, &others, broken, "Entering MASTER STATE", bound + 10.0);
    let seen = parse_answers(&watch.join().unwrap());
    let answered = seen.last().unwrap().at;
    let failover = Failover {
        kind,
        from: from.to_owned(),
        to: to.clone(),
        moved_seconds: master_at - broken,
        answered_seconds: answered - broken,
    };
    assert!(
        failover.moved_seconds <= bound,
        "{failover:?}: the VIP took more than {bound:.0} s to move"
    );
    assert!(
        failover.answered_seconds <= bound + 1.0,
        "{failover:?}: the VIP took more than {bound:.0} s to answer again: {seen:#?}"
    );
    assert_eq!(holders(lab, vip), std::slice::from_ref(&to), "{failover:?}");
    assert_eq!(vip_answer(vip, ca), format!("{to} ok"));

    let repaired = match kind.repair_command() {
        Some(command) => parse_time(&lab.ssh(from, &format!("date +%s.%N; {command}"))),
        None => broken,
    };
    wait_for_keepalived(lab, &[from], repaired, "Entering BACKUP STATE", 20.0);
    if check_nopreempt {
        // It has the highest priority when it is node1; it still leaves the VIP where it is.
        thread::sleep(Duration::from_secs_f64(master_down_seconds() + 1.0));
        assert_eq!(
            holders(lab, vip),
            std::slice::from_ref(&to),
            "{from} took the VIP back"
        );
    }
    failover
}

/// The failover times as a Markdown table (bench/README.md).
fn print_failovers(measured: &[Failover], rounds: usize) {
    println!("\nVIP failovers, {rounds} round(s):\n");
    println!(
        "| failure | VIP moved: mean | min | max | VIP answers again: mean | min | max | bound |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for kind in Kind::ALL {
        let of_kind: Vec<&Failover> = measured.iter().filter(|f| f.kind == kind).collect();
        let stats = |values: Vec<f64>| {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(0.0, f64::max);
            format!("{mean:.2} s | {min:.2} s | {max:.2} s")
        };
        println!(
            "| {} (n={}) | {} | {} | {:.0} s |",
            kind.describe(),
            of_kind.len(),
            stats(of_kind.iter().map(|f| f.moved_seconds).collect()),
            stats(of_kind.iter().map(|f| f.answered_seconds).collect()),
            kind.bound_seconds()
        );
    }
}
