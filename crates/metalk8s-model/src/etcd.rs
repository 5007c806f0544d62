//! Where metalk8s puts etcd on a member node, and how members address each other. The
//! planner writes these paths and URLs into the node's configuration; `metalk8s etcd`
//! operations (status, backup, restore, member replace) find the member through them.

use std::net::IpAddr;

/// The systemd unit; metalk8s's own file in /etc/systemd/system overrides the package's.
pub const SERVICE: &str = "etcd.service";
/// The member's data directory (0700, owned by [`USER`]).
pub const DATA_DIR: &str = "/var/lib/etcd";
/// The account etcd runs as.
pub const USER: &str = "etcd";
/// The environment file that configures etcd (`ETCD_*` variables), written by deploy.
pub const ENV_FILE: &str = "/etc/metalk8s/etcd/etcd.env";
/// Read after [`ENV_FILE`], so its variables win: written by `etcd member replace` for a
/// member that joins a running cluster (`ETCD_INITIAL_CLUSTER_STATE=existing`).
pub const JOIN_ENV_FILE: &str = "/etc/metalk8s/etcd/join.env";
/// etcd's certificates, in kubeadm's layout.
pub const PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
pub const CA_FILE: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const SERVER_CERT: &str = "/etc/kubernetes/pki/etcd/server.crt";
pub const SERVER_KEY: &str = "/etc/kubernetes/pki/etcd/server.key";
pub const PEER_CERT: &str = "/etc/kubernetes/pki/etcd/peer.crt";
pub const PEER_KEY: &str = "/etc/kubernetes/pki/etcd/peer.key";
/// The client certificate metalk8s (and etcdctl on the node) uses to check and operate etcd.
pub const CLIENT_CERT: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.crt";
pub const CLIENT_KEY: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.key";

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
/// Plain-HTTP metrics and health, on 127.0.0.1 only.
pub const METRICS_PORT: u16 = 2381;

/// `https://IP:2379`.
pub fn client_url(ip: IpAddr) -> String {
    https_url(ip, CLIENT_PORT)
}

/// `https://IP:2380`.
pub fn peer_url(ip: IpAddr) -> String {
    https_url(ip, PEER_PORT)
}

/// The client URL a member serves on its own loopback.
pub fn local_client_url() -> String {
    format!("https://127.0.0.1:{CLIENT_PORT}")
}

fn https_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
    }
}

/// `name=peer-url,...` in member order: etcd's `--initial-cluster`.
pub fn initial_cluster<'a>(members: impl IntoIterator<Item = (&'a str, IpAddr)>) -> String {
    members
        .into_iter()
        .map(|(name, ip)| format!("{name}={}", peer_url(ip)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(
            client_url("10.0.0.1".parse().unwrap()),
            "https://10.0.0.1:2379"
        );
        assert_eq!(
            peer_url("fd00::1".parse().unwrap()),
            "https://[fd00::1]:2380"
        );
        assert_eq!(
            initial_cluster([
                ("a", "10.0.0.1".parse().unwrap()),
                ("b", "10.0.0.2".parse().unwrap())
            ]),
            "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380"
        );
    }
}
