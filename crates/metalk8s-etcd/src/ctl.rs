//! `etcdctl` on a member node: how it is called (v3 API, the node's client certificate)
//! and what its JSON output means.

use std::time::Duration;

use metalk8s_model::etcd;
use metalk8s_transport::{Command, Host, Output, quote};
use serde::Deserialize;

use crate::error::EtcdError;

/// `etcdctl` with the node's CA and client certificate, against `endpoints`.
pub(crate) fn etcdctl(endpoints: &str, arguments: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --cacert={} --cert={} --key={} --endpoints={} {arguments}",
        etcd::CA_FILE,
        etcd::CLIENT_CERT,
        etcd::CLIENT_KEY,
        quote(endpoints),
    )
}

/// Runs `script` as root on `node`, failing with `what` unless it succeeds.
pub(crate) async fn run_checked(
    host: &dyn Host,
    script: &str,
    what: &str,
    timeout: Duration,
) -> Result<Output, EtcdError> {
    let output = run(host, script, timeout).await?;
    if !output.success() {
        return Err(EtcdError::Command {
            node: host.name().to_owned(),
            what: what.to_owned(),
            status: output.status,
            stderr: last_lines(&output.stderr_text()),
        });
    }
    Ok(output)
}

pub(crate) async fn run(
    host: &dyn Host,
    script: &str,
    timeout: Duration,
) -> Result<Output, EtcdError> {
    Ok(host
        .run(&Command::new(script).as_root().timeout(timeout))
        .await?)
}

/// etcdctl logs JSON lines to stderr; the last few carry the reason of a failure.
pub(crate) fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// `member list -w json`.
#[derive(Debug, Deserialize)]
pub(crate) struct MemberList {
    #[serde(default)]
    pub members: Vec<ListedMember>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ListedMember {
    #[serde(rename = "ID")]
    pub id: u64,
    /// Empty for a member added but not started yet.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
}

/// `endpoint status -w json`: one entry per endpoint that answered.
#[derive(Debug, Deserialize)]
pub(crate) struct EndpointStatus {
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    #[serde(rename = "Status")]
    pub status: StatusBody,
}

/// Fields at zero are left out by etcd's JSON (`leader` while an election runs).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct StatusBody {
    pub header: StatusHeader,
    pub version: String,
    pub db_size: u64,
    pub leader: u64,
    pub raft_index: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatusHeader {
    pub member_id: u64,
    pub revision: u64,
}

/// `endpoint health -w json`: one entry per endpoint asked.
#[derive(Debug, Deserialize)]
pub(crate) struct EndpointHealth {
    pub endpoint: String,
    pub health: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// `snapshot status -w json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SnapshotStatus {
    pub revision: u64,
    pub total_key: u64,
}

/// The hex form etcdctl's member commands take.
pub(crate) fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    node: &str,
    what: &str,
    text: &str,
) -> Result<T, EtcdError> {
    serde_json::from_str(text.trim()).map_err(|error| EtcdError::Output {
        node: node.to_owned(),
        what: what.to_owned(),
        detail: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Outputs captured from Debian's etcdctl 3.4.23.
    const MEMBERS: &str = r#"{"header":{"cluster_id":12101053776118486841,"member_id":15985099378392235387,"raft_term":2},"members":[{"ID":15985099378392235387,"name":"e1","peerURLs":["http://127.0.0.1:12380"],"clientURLs":["http://127.0.0.1:12379"]},{"ID":8727,"peerURLs":["http://127.0.0.1:13380"]}]}"#;
    const STATUS: &str = r#"[{"Endpoint":"http://127.0.0.1:12379","Status":{"header":{"cluster_id":12101053776118486841,"member_id":15985099378392235387,"revision":1,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":15985099378392235387,"raftIndex":4,"raftTerm":2,"raftAppliedIndex":4,"dbSizeInUse":16384}}]"#;
    const HEALTH: &str = r#"[{"endpoint":"http://127.0.0.1:12379","health":true,"took":"7.791477ms"},{"endpoint":"http://127.0.0.1:12999","health":false,"took":"2.001127112s","error":"context deadline exceeded"}]"#;

    #[test]
    fn etcdctl_outputs_parse_with_full_64_bit_ids() {
        let list: MemberList = parse("n", "members", MEMBERS).unwrap();
        assert_eq!(list.members[0].id, 15985099378392235387);
        assert_eq!(hex_id(list.members[0].id), "ddd67b312462fd7b");
        assert_eq!(list.members[1].name, "", "an unstarted member has no name");
        let status: Vec<EndpointStatus> = parse("n", "status", STATUS).unwrap();
        assert_eq!(status[0].status.leader, status[0].status.header.member_id);
        assert_eq!(status[0].status.db_size, 20480);
        let health: Vec<EndpointHealth> = parse("n", "health", HEALTH).unwrap();
        assert!(health[0].health && !health[1].health);
        assert_eq!(
            health[1].error.as_deref(),
            Some("context deadline exceeded")
        );
    }

    #[test]
    fn a_member_without_leader_omits_the_field() {
        let text = r#"[{"Endpoint":"https://10.0.0.3:2379","Status":{"header":{"cluster_id":1,"member_id":7,"revision":3,"raft_term":5},"version":"3.4.23","dbSize":20480,"raftIndex":9,"raftTerm":5}}]"#;
        let status: Vec<EndpointStatus> = parse("n", "status", text).unwrap();
        assert_eq!(status[0].status.leader, 0);
    }

    #[test]
    fn unreadable_output_names_the_node() {
        let error = parse::<MemberList>("node2", "member list", "Error: x").unwrap_err();
        assert!(error.to_string().contains("node2"), "{error}");
    }

    #[test]
    fn etcdctl_uses_the_node_client_certificate() {
        let script = etcdctl("https://10.0.0.1:2379", "member list -w json");
        assert!(script.starts_with("ETCDCTL_API=3 etcdctl "));
        assert!(script.contains("--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt"));
        assert!(script.contains("--endpoints=https://10.0.0.1:2379 member list"));
    }
}
