//! keepalived for the optional API server VIP (`networks.apiServerVIP`): the control-plane
//! nodes hold it in turn, for clients outside the cluster (`kubectl` on a workstation,
//! `admin.conf`); nodes themselves use their local proxy and never need it.
//!
//! - **Unicast VRRP.** Adverts go from the node's control-plane IP to the other control
//!   planes only (`unicast_src_ip`, `unicast_peer`), so nothing depends on multicast being
//!   routed or allowed, and adverts from any other source are dropped
//!   (`check_unicast_src`).
//! - **No VRRP authentication.** VRRPv2's password travels in clear and its AH variant is
//!   deprecated (VRRPv3 has none): it would protect nothing. The control-plane network is
//!   the trust boundary, as for etcd's peer traffic.
//! - **`virtual_router_id`** is derived from the cluster name ([`virtual_router_id`]): every
//!   node computes the same one without coordination. Two clusters can draw the same id
//!   (1 chance in 255); with unicast VRRP that only matters if one cluster's adverts reach
//!   the other's nodes from a listed peer address, which separate clusters never are.
//! - **Priorities** descend in the order of the control-plane nodes (150, 140, …), so a
//!   cold start elects the first one. **`nopreempt`**: when a node with a higher priority
//!   comes back, the VIP stays where it is; moving it again would cut every client's
//!   connection a second time for no gain.
//! - **Health**: a `track_script` asks the node's haproxy for its `/healthz` (connections
//!   to the VIP go through it: crate::apiserver_proxy) and the node's own API server for
//!   `/readyz` over TLS checked with the cluster CA (haproxy sends them there while it is
//!   ready); after 3 failures (2 s apart) the node goes to FAULT and gives the VIP up
//!   ([`TRACK_SCRIPT`]). Adverts go every second ([`ADVERT_INTERVAL_SECONDS`]): a node that
//!   stops keepalived hands the VIP over at once (it sends priority 0), one that dies
//!   silently loses it after 3 missed adverts.
//! - **A drop-in for Debian's unit** ([`KeepalivedFiles::drop_in`]): keepalived removes the
//!   VIP when it stops, but not when it is killed (SIGKILL, the OOM killer), and Debian's
//!   unit does not restart it. On the lab a killed holder kept the VIP while another node
//!   took it: two nodes answering ARP for one address. The drop-in removes the VIP after
//!   keepalived exits, however it exits, and restarts keepalived for ever.

use crate::apiserver_proxy;
use crate::cluster::{self, Cluster, HealthCheck, Node, paths};
use crate::error::InputError;

/// How keepalived runs the health-check script (`vrrp_script`): the script's two requests
/// take at most 1 s and 2 s.
pub const TRACK_SCRIPT: HealthCheck = HealthCheck {
    interval_seconds: 2,
    timeout_seconds: 4,
    fall: 3,
    rise: 2,
};

/// VRRP's `advert_int`: the holder's adverts, every second.
pub const ADVERT_INTERVAL_SECONDS: u32 = 1;

/// The files keepalived needs on a control-plane node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepalivedFiles {
    /// `/etc/keepalived/keepalived.conf`.
    pub config: String,
    /// `/etc/keepalived/check-apiserver.sh` (mode 0755, owned by root: keepalived's
    /// `enable_script_security` refuses a script others can write).
    pub check_script: String,
    /// `/etc/systemd/system/keepalived.service.d/10-metalk8s.conf`.
    pub drop_in: String,
}

/// The VRRP router id of a cluster: FNV-1a of its name, folded into 1–255.
pub fn virtual_router_id(cluster_name: &str) -> u8 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in cluster_name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % 255) as u8 + 1
}

/// keepalived's files for `node`, or `None` when the cluster has no VIP or the node is no
/// control plane.
pub fn files(cluster: &Cluster, node: &Node) -> Result<Option<KeepalivedFiles>, InputError> {
    cluster.validate()?;
    let Some(vip) = cluster.api_server_vip else {
        return Ok(None);
    };
    if !node.is_control_plane() {
        return Ok(None);
    }
    let interface =
        node.control_plane_interface
            .as_deref()
            .ok_or_else(|| InputError::NoInterface {
                node: node.name.clone(),
            })?;
    let position = cluster
        .control_planes()
        .position(|other| other.name == node.name)
        .unwrap_or(0);
    let priority = 150usize.saturating_sub(10 * position).max(1);
    let peers: String = cluster
        .control_planes()
        .filter(|other| other.name != node.name)
        .map(|other| format!("        {}\n", other.control_plane_ip))
        .collect();
    let prefix = if vip.is_ipv4() { 32 } else { 128 };
    let config = format!(
        "\
# Written by metalk8s: the API server VIP (docs/kubernetes.md).
global_defs {{
    router_id {name}
    enable_script_security
    script_user nobody nogroup
}}

vrrp_script apiserver {{
    script \"{script}\"
    interval {interval}
    timeout {timeout}
    fall {fall}
    rise {rise}
}}

vrrp_instance apiserver_vip {{
    state BACKUP
    nopreempt
    interface {interface}
    virtual_router_id {router_id}
    priority {priority}
    advert_int {advert}
    unicast_src_ip {ip}
    check_unicast_src
    unicast_peer {{
{peers}    }}
    virtual_ipaddress {{
        {vip}/{prefix} dev {interface}
    }}
    track_script {{
        apiserver
    }}
}}
",
        name = node.name,
        script = paths::KEEPALIVED_CHECK,
        router_id = virtual_router_id(&cluster.name),
        ip = node.control_plane_ip,
        interval = TRACK_SCRIPT.interval_seconds,
        timeout = TRACK_SCRIPT.timeout_seconds,
        fall = TRACK_SCRIPT.fall,
        rise = TRACK_SCRIPT.rise,
        advert = ADVERT_INTERVAL_SECONDS,
    );
    let check_script = format!(
        "\
#!/bin/sh
# Written by metalk8s: can this node serve the VIP? Its haproxy carries the VIP's connections,
# to this node's API server while that is ready. keepalived gives the VIP up when either fails.
curl --silent --show-error --fail --max-time 1 http://127.0.0.1:{health}/healthz -o /dev/null &&
exec curl --silent --show-error --fail --max-time 2 --cacert {ca} https://{address}/readyz -o /dev/null
",
        health = apiserver_proxy::HEALTH_PORT,
        ca = paths::CA_CERT,
        address = cluster::host_port(node.control_plane_ip, cluster::APISERVER_PORT),
    );
    let drop_in = format!(
        "\
# Written by metalk8s: keepalived comes back whatever happened, and never leaves the VIP behind.
[Unit]
StartLimitIntervalSec=0

[Service]
Restart=always
RestartSec=1s
# keepalived removes the VIP when it stops, not when it is killed: another node would take
# the VIP while this one still answers for it.
ExecStopPost=-ip address del {vip}/{prefix} dev {interface}
"
    );
    Ok(Some(KeepalivedFiles {
        config,
        check_script,
        drop_in,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_ids_are_stable_and_in_range() {
        assert_eq!(virtual_router_id("prod"), virtual_router_id("prod"));
        let ids: std::collections::BTreeSet<u8> = (0..2000)
            .map(|n| virtual_router_id(&format!("cluster-{n}")))
            .collect();
        assert!(!ids.contains(&0));
        // The fold reaches the whole range.
        assert_eq!(ids.len(), 255);
    }
}
