//! chrony's configuration. The bootstrap node is the cluster's time server: it follows the
//! upstream servers of `os.ntp.servers`, or its own clock when there are none, and serves
//! the control-plane networks; every other node follows it. Nodes then agree with one
//! another (what etcd leases and certificate checks need) even with no upstream at all.

use std::fmt::Write;

use crate::os::family::Chrony;
use crate::steps::managed_content;
use crate::{Cluster, PlannedNode};

pub(crate) fn config(cluster: &Cluster, node: &PlannedNode, chrony: &Chrony) -> String {
    let mut body = if node.node.name == cluster.bootstrap().node.name {
        time_server(cluster, node)
    } else {
        time_client(cluster)
    };
    // The command port stays on loopback (chrony's default, written out so it cannot
    // change under us); `chronyc` as root uses its Unix socket anyway.
    body.push_str("bindcmdaddress 127.0.0.1\nbindcmdaddress ::1\n");
    let _ = writeln!(body, "driftfile {}", chrony.driftfile);
    // Step the clock when it is more than a second off in the first three updates (a
    // fresh or long-stopped node), slew it afterwards; keep the hardware clock in sync.
    body.push_str("makestep 1.0 3\nrtcsync\n");
    managed_content("#", &body)
}

fn time_server(cluster: &Cluster, node: &PlannedNode) -> String {
    let servers = &cluster.inventory.os.ntp.servers;
    let mut body = String::from("# This node is the cluster's time server.\n");
    if servers.is_empty() {
        body.push_str(
            "# No upstream server is configured (os.ntp.servers): serve this node's own clock.\n\
             local stratum 10\n",
        );
    }
    for server in servers {
        let _ = writeln!(body, "server {server} iburst");
    }
    for network in &cluster.inventory.networks.control_plane {
        let _ = writeln!(body, "allow {network}");
    }
    // Serve NTP on the control-plane address only, not on every interface.
    let _ = writeln!(body, "bindaddress {}", node.control_plane_ip);
    body
}

fn time_client(cluster: &Cluster) -> String {
    let bootstrap = cluster.bootstrap();
    // With no `allow`, chrony opens no NTP server port: this node only asks.
    format!(
        "# Time comes from the cluster's time server, the bootstrap node {}.\nserver {} iburst prefer\n",
        bootstrap.node.name, bootstrap.control_plane_ip
    )
}
