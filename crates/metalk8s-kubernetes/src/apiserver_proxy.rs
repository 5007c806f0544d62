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
//!   load better than round robin; on a control-plane node its own API server is weighted
//!   100 against 1 for the others, so its traffic stays local while it is healthy.
//! - Health: `GET /readyz` over TLS every 2 s, the server certificate verified against the
//!   cluster CA and its name checked (`verifyhost` = the node name, which every API server
//!   certificate carries), 200 expected; 3 failures take a server out, 2 successes bring it
//!   back. `/readyz` is readable anonymously (`system:public-info-viewer`) and turns 503 as
//!   soon as an API server shuts down or loses etcd.
//! - Timeouts: connect 3 s (a dead node fails fast and `option redispatch` retries
//!   another), client/server idle 10 min (clients ping their HTTP/2 connections every 30 s,
//!   so only dead ones reach it).

use std::fmt::Write as _;

use crate::cluster::{self, Cluster, Node, paths};
use crate::error::InputError;

/// haproxy answers `GET /healthz` here (monitor-uri): is the proxy itself up.
pub const HEALTH_PORT: u16 = 7080;

/// `/etc/haproxy/haproxy.cfg` for `node`.
pub fn config(cluster: &Cluster, node: &Node) -> Result<String, InputError> {
    cluster.validate()?;
    let mut text = String::new();
    let _ = write!(
        text,
        "\
# Written by metalk8s: the local apiserver proxy (docs/kubernetes.md).
global
    log /dev/log local0 notice
    maxconn 20000

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
    timeout check 2s

frontend health
    mode http
    bind 127.0.0.1:{health}
    monitor-uri /healthz

frontend apiserver
    bind {listen}
    default_backend apiservers

backend apiservers
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter 2s fall 3 rise 2 check check-ssl verify required ca-file {ca}
",
        health = HEALTH_PORT,
        listen = crate::kubeadm::control_plane_endpoint(),
        ca = paths::CA_CERT,
    );
    for server in cluster.control_planes() {
        let weight = if node.is_control_plane() && server.name == node.name {
            100
        } else {
            1
        };
        let _ = writeln!(
            text,
            "    server {name} {address} weight {weight} verifyhost {name}",
            name = server.name,
            address = cluster::host_port(server.control_plane_ip, cluster::APISERVER_PORT),
        );
    }
    Ok(text)
}

/// A drop-in for Debian's `haproxy.service`: its unit already checks the configuration
/// before starting (`haproxy -c`) and restarts on failure; this only makes systemd retry
/// for ever instead of giving up after five quick failures (the proxy must come back
/// whatever happened), and orders it after the network is up.
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
