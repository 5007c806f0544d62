//! The local apiserver proxy: haproxy on every node, listening on 127.0.0.1:7443 and
//! passing TCP (TLS untouched) to every control-plane API server. kubelet, kube-proxy,
//! the controller-manager and scheduler's kubeadm endpoint, and metalk8s itself go
//! through it, so losing one control-plane node loses nothing and no load balancer is
//! needed.
//!
//! Choices (MetalK8s 2.x did the same with nginx: 127.0.0.1:7443, least connections, the
//! local API server preferred, a 10-minute idle timeout, a short connect timeout):
//!
//! - `balance leastconn`: connections are long-lived watches, so counting them spreads
//!   load better than round robin.
//! - The local API server first: on a control-plane node its own API server is the one
//!   regular server and the others are `backup` servers, all used at once
//!   (`option allbackups`) when it is down. Its traffic stays local while its API server
//!   is ready and spreads over the others when not. Weights cannot do this: leastconn
//!   compares connection counts before weights, so idle servers tie and take turns (on
//!   the lab, weights of 100 against 1 sent two new connections in three elsewhere).
//! - Health: `GET /readyz` over TLS every 2 s, the server certificate verified against the
//!   cluster CA and its name checked (`verifyhost` = the node name, which every API server
//!   certificate carries), 200 expected; 3 failures take a server out, 2 successes bring it
//!   back ([`HEALTH_CHECK`]). `/readyz` is readable anonymously (`system:public-info-viewer`)
//!   and turns 503 as soon as an API server shuts down or loses etcd.
//! - Timeouts: connect 3 s (a dead node fails fast and `option redispatch` retries
//!   another), client/server idle 10 min (clients ping their HTTP/2 connections every 30 s,
//!   so only dead ones reach it).
//! - `maxconn` [`MAX_CONNECTIONS`]: haproxy wants two file descriptors per connection and
//!   refuses to start when it cannot raise its limit that far (`strict-limits`, on by
//!   default). 20000 connections asked for 40044 descriptors and failed on hosts whose
//!   limit is 20000 (seen on the lab); a node's clients hold a few dozen connections
//!   (client-go multiplexes over one HTTP/2 connection per client), the VIP's a few
//!   hundred, so 4000 is ample and starts under any limit from ~8200 up.
//! - The VIP: kube-apiserver listens on its node's control-plane IP only (kubeadm's
//!   `--bind-address` patch), so nothing would answer on `VIP:6443` on the node holding
//!   the VIP. On control-plane nodes of a cluster with a VIP, haproxy also listens there,
//!   `transparent` (bound before keepalived brings the address, so whichever node takes
//!   the VIP serves it at once), and passes those connections on like the local ones.
//!   keepalived checks this haproxy too (crate::keepalived).
//! - Privileges: haproxy binds as root, then runs as Debian's `haproxy` user chrooted in
//!   `/var/lib/haproxy` (the package's unit mounts `/dev/log` there for it): it listens
//!   on the network once it serves the VIP.

use std::fmt::Write as _;

use crate::cluster::{self, Cluster, HealthCheck, Node, paths};
use crate::error::InputError;

/// haproxy answers `GET /healthz` here (monitor-uri): is the proxy itself up.
pub const HEALTH_PORT: u16 = 7080;

/// How haproxy checks each API server (`inter`, `timeout check`, `fall`, `rise`).
pub const HEALTH_CHECK: HealthCheck = HealthCheck {
    interval_seconds: 2,
    timeout_seconds: 2,
    fall: 3,
    rise: 2,
};

/// haproxy's `maxconn`; it needs about twice as many file descriptors.
pub const MAX_CONNECTIONS: u32 = 4000;

/// `/etc/haproxy/haproxy.cfg` for `node`.
pub fn config(cluster: &Cluster, node: &Node) -> Result<String, InputError> {
    cluster.validate()?;
    let mut binds = format!("    bind {}\n", crate::kubeadm::control_plane_endpoint());
    if let Some(vip) = cluster.api_server_vip.filter(|_| node.is_control_plane()) {
        let _ = writeln!(
            binds,
            "    bind {} transparent",
            cluster::host_port(vip, cluster::APISERVER_PORT)
        );
    }
    let mut text = String::new();
    let _ = write!(
        text,
        "\
# Written by metalk8s: the local apiserver proxy (docs/kubernetes.md).
global
    log /dev/log local0 notice
    maxconn {max_connections}
    user haproxy
    group haproxy
    chroot /var/lib/haproxy

defaults
    log global
    mode tcp
    option tcplog
    option dontlognull
    option redispatch
    retries 3
    timeout connect 3s
    timeout client 10m
    timeout server 10m
    timeout check {timeout}s

frontend health
    mode http
    bind 127.0.0.1:{health}
    monitor-uri /healthz

frontend apiserver
{binds}    default_backend apiservers

backend apiservers
    balance leastconn
    option allbackups
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter {interval}s fall {fall} rise {rise} check check-ssl verify required ca-file {ca}
",
        max_connections = MAX_CONNECTIONS,
        timeout = HEALTH_CHECK.timeout_seconds,
        health = HEALTH_PORT,
        interval = HEALTH_CHECK.interval_seconds,
        fall = HEALTH_CHECK.fall,
        rise = HEALTH_CHECK.rise,
        ca = paths::CA_CERT,
    );
    for server in cluster.control_planes() {
        // On a control plane every other API server is a backup of its own.
        let backup = if node.is_control_plane() && server.name != node.name {
            " backup"
        } else {
            ""
        };
        let _ = writeln!(
            text,
            "    server {name} {address} verifyhost {name}{backup}",
            name = server.name,
            address = cluster::host_port(server.control_plane_ip, cluster::APISERVER_PORT),
        );
    }
    Ok(text)
}

/// A drop-in for Debian's `haproxy.service`, which already restarts haproxy when it fails
/// (and haproxy refuses to start on a configuration `haproxy -c` would refuse): this only
/// makes systemd retry for ever instead of giving up after five quick failures (the proxy
/// must come back whatever happened), and orders it after the network is up.
pub fn drop_in() -> String {
    "\
# Written by metalk8s: the local apiserver proxy never stays down.
[Unit]
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Restart=always
RestartSec=2s
"
    .to_owned()
}
