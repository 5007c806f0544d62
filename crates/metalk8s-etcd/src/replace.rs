//! `etcd member replace NODE`: a member whose data was lost (a disk replaced, a data
//! directory destroyed) leaves the cluster and joins it again, empty, catching up from the
//! others. What was left of its data is kept aside.
//!
//! Re-running after a failure picks up where it stopped: a member already removed is not
//! removed again, a member added but not started is not added twice.

use std::time::Duration;

use metalk8s_model::etcd;
use metalk8s_transport::quote;
use serde::Serialize;

use crate::ctl::{self, MemberList, etcdctl};
use crate::error::EtcdError;
use crate::status::{ClusterStatus, status, wait_healthy};
use crate::{EtcdCluster, Progress};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replaced {
    pub node: String,
    /// Where the member's previous data directory was kept.
    pub previous_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_id: Option<String>,
    pub status: ClusterStatus,
}

pub async fn replace_member(
    cluster: &EtcdCluster,
    node: &str,
    stamp: &str,
    gate_timeout: Duration,
    progress: Progress<'_>,
) -> Result<Replaced, EtcdError> {
    let member = cluster.member(node).ok_or_else(|| EtcdError::NotAMember {
        node: node.to_owned(),
        members: cluster
            .members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let Some(host) = &member.host else {
        return Err(EtcdError::MembersUnreachable {
            members: format!(
                "{node} ({})",
                member.unreachable.as_deref().unwrap_or("no connection")
            ),
        });
    };
    // The others act: the view must come from a member that is not the one replaced.
    let others = EtcdCluster {
        token: cluster.token.clone(),
        members: cluster
            .members
            .iter()
            .filter(|m| m.name != node)
            .cloned()
            .collect(),
    };
    let seen = status(&others).await?;
    let Some(observer_name) = seen.observer.clone() else {
        return Err(EtcdError::NoMemberAnswers {
            detail: seen.summary(),
        });
    };
    let observer = others
        .member(&observer_name)
        .and_then(|m| m.host.clone())
        .expect("the observer is a connected member");
    let endpoints = others.endpoints();

    progress(&format!(
        "stopping etcd on {node} and setting its data aside"
    ));
    let aside = format!("{}.replaced-{stamp}", etcd::DATA_DIR);
    let wipe = format!(
        "set -e\nsystemctl stop {service}\nif [ -e {data} ]; then mv -T {data} {aside}; fi\ninstall -d -m 0700 -o {user} -g {user} {data}",
        service = etcd::SERVICE,
        data = etcd::DATA_DIR,
        user = etcd::USER,
    );
    ctl::run_checked(
        host.as_ref(),
        &wipe,
        "wiping the member",
        Duration::from_secs(120),
    )
    .await?;

    let peer = etcd::peer_url(member.ip);
    let list_script = etcdctl(&endpoints, "member list -w json --command-timeout=10s");
    let list = ctl::run_checked(
        observer.as_ref(),
        &list_script,
        "etcdctl member list",
        Duration::from_secs(30),
    )
    .await?;
    let list: MemberList = ctl::parse(&observer_name, "member list", &list.stdout_text())?;
    let existing = list
        .members
        .iter()
        .find(|m| m.name == node || m.peer_urls.contains(&peer));
    let mut removed_id = None;
    let already_added = existing.is_some_and(|m| m.name.is_empty());
    if let Some(old) = existing.filter(|m| !m.name.is_empty()) {
        progress(&format!("removing member {node} ({})", ctl::hex_id(old.id)));
        ctl::run_checked(
            observer.as_ref(),
            &etcdctl(
                &endpoints,
                &format!(
                    "member remove {} --command-timeout=30s",
                    ctl::hex_id(old.id)
                ),
            ),
            "etcdctl member remove",
            Duration::from_secs(60),
        )
        .await?;
        removed_id = Some(ctl::hex_id(old.id));
    }
    if !already_added {
        progress(&format!("adding member {node} at {peer}"));
        ctl::run_checked(
            observer.as_ref(),
            &etcdctl(
                &endpoints,
                &format!(
                    "member add {} --peer-urls={} --command-timeout=30s",
                    quote(node),
                    quote(&peer)
                ),
            ),
            "etcdctl member add",
            Duration::from_secs(60),
        )
        .await?;
    }

    // It joins the members there are now: the others as listed, itself by its peer URL.
    let initial_cluster = cluster.initial_cluster();
    let join = format!(
        "# Written by `metalk8s etcd member replace`: this member joined a running cluster.\nETCD_INITIAL_CLUSTER_STATE=existing\nETCD_INITIAL_CLUSTER={initial_cluster}\n"
    );
    host.upload(etcd::JOIN_ENV_FILE, join.as_bytes(), 0o644, true)
        .await?;
    progress(&format!("starting etcd on {node}"));
    ctl::run_checked(
        host.as_ref(),
        &format!("systemctl start --no-block {}", etcd::SERVICE),
        "starting etcd",
        Duration::from_secs(60),
    )
    .await?;
    let status = wait_healthy(cluster, gate_timeout, progress).await?;
    Ok(Replaced {
        node: node.to_owned(),
        previous_data: aside,
        removed_id,
        status,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metalk8s_transport::fake::RecordingHost;
    use metalk8s_transport::{Host, Output};

    use super::*;
    use crate::Member;

    const HEALTHY_MEMBERS: &str = r#"{"header":{"cluster_id":1,"member_id":17},"members":[{"ID":17,"name":"node1","peerURLs":["https://10.0.0.1:2380"]},{"ID":18,"name":"node2","peerURLs":["https://10.0.0.2:2380"]},{"ID":19,"name":"node3","peerURLs":["https://10.0.0.3:2380"]}]}"#;
    const STATUSES: &str = r#"[{"Endpoint":"https://10.0.0.1:2379","Status":{"header":{"member_id":17,"revision":42},"version":"3.4.23","dbSize":20480,"leader":17,"raftIndex":99}},{"Endpoint":"https://10.0.0.2:2379","Status":{"header":{"member_id":18,"revision":42},"version":"3.4.23","dbSize":20480,"leader":17,"raftIndex":99}},{"Endpoint":"https://10.0.0.3:2379","Status":{"header":{"member_id":19,"revision":42},"version":"3.4.23","dbSize":20480,"leader":17,"raftIndex":99}}]"#;
    const HEALTH: &str = r#"[{"endpoint":"https://10.0.0.1:2379","health":true},{"endpoint":"https://10.0.0.2:2379","health":true},{"endpoint":"https://10.0.0.3:2379","health":true}]"#;
    /// The member list after an interrupted replace: node2 was added again (it has no
    /// name until it starts) but never started.
    const ADDED_NOT_STARTED: &str = r#"{"header":{"cluster_id":1,"member_id":17},"members":[{"ID":17,"name":"node1","peerURLs":["https://10.0.0.1:2380"]},{"ID":20,"peerURLs":["https://10.0.0.2:2380"]},{"ID":19,"name":"node3","peerURLs":["https://10.0.0.3:2380"]}]}"#;

    /// What the status look prints on a node of a healthy three-member cluster.
    fn healthy_look() -> Output {
        Output::ok(format!(
            "@@service active\n@@members\n{HEALTHY_MEMBERS}\n@@status\n{STATUSES}\n@@health\n{HEALTH}\n"
        ))
    }

    fn node(name: &str) -> Arc<RecordingHost> {
        Arc::new(
            RecordingHost::new(name)
                // The replace's own member list (the look asks with a 4 s timeout).
                .on("--command-timeout=10s", Output::ok(ADDED_NOT_STARTED))
                .on("mktemp -d", healthy_look())
                .otherwise(Output::ok("")),
        )
    }

    #[tokio::test]
    async fn a_rerun_after_the_member_was_added_neither_removes_nor_adds_it_again() {
        let hosts: Vec<(&str, &str, Arc<RecordingHost>)> = vec![
            ("node1", "10.0.0.1", node("node1")),
            ("node2", "10.0.0.2", node("node2")),
            ("node3", "10.0.0.3", node("node3")),
        ];
        let cluster = EtcdCluster {
            token: "demo".to_owned(),
            members: hosts
                .iter()
                .map(|(name, ip, host)| Member {
                    name: (*name).to_owned(),
                    ip: ip.parse().unwrap(),
                    host: Some(host.clone() as Arc<dyn Host>),
                    unreachable: None,
                })
                .collect(),
        };
        let quiet = |_: &str| {};
        let replaced = replace_member(
            &cluster,
            "node2",
            "20261204T170000Z",
            Duration::from_secs(5),
            &quiet,
        )
        .await
        .unwrap();
        assert_eq!(replaced.removed_id, None, "nothing left to remove");
        assert!(replaced.status.healthy());
        let everything: Vec<String> = hosts.iter().flat_map(|(_, _, h)| h.scripts()).collect();
        assert!(
            !everything
                .iter()
                .any(|s| s.contains("member remove") || s.contains("member add")),
            "{everything:#?}"
        );
        // The member itself was wiped, told to join, and started.
        let node2 = hosts[1].2.scripts();
        assert!(node2.iter().any(|s| s.contains("systemctl stop")));
        assert!(
            node2
                .iter()
                .any(|s| s.contains("systemctl start --no-block"))
        );
        assert!(hosts[1].2.uploaded(etcd::JOIN_ENV_FILE).is_some());
    }
}
