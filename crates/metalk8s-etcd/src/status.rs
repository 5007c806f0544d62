//! The state of the etcd cluster as its members see it, and the health gate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use metalk8s_model::etcd;
use serde::Serialize;

use crate::ctl::{self, EndpointHealth, EndpointStatus, MemberList, etcdctl};
use crate::error::EtcdError;
use crate::{EtcdCluster, Member, Progress};

/// One member of the inventory, as the cluster sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub name: String,
    /// Its client URL.
    pub endpoint: String,
    /// etcd's member ID (hex), when the cluster lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// In the cluster's member list (a member removed or never added is not). When no
    /// member answers, the list cannot be read: every member of the inventory is taken as
    /// listed, and each is down with the reason in `error`.
    pub listed: bool,
    /// Answered a health check (a read through raft) in time.
    pub healthy: bool,
    pub leader: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// `systemctl is-active etcd` on the node, when it can be reached over SSH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Why it is not healthy, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub members: Vec<MemberStatus>,
    /// The member every healthy member follows, when they agree on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The member whose etcdctl gave this view; none when no member answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
    /// Members listed by etcd that the inventory does not name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_members: Vec<String>,
}

impl ClusterStatus {
    /// Every member listed and healthy, one leader, no member the inventory does not know.
    pub fn healthy(&self) -> bool {
        self.leader.is_some()
            && self.unknown_members.is_empty()
            && self.members.iter().all(|m| m.listed && m.healthy)
    }

    /// More than half of the members are healthy: writes go through.
    pub fn has_quorum(&self) -> bool {
        let healthy = self.members.iter().filter(|m| m.healthy).count();
        healthy * 2 > self.members.len()
    }

    /// One line: what is wrong, or that all is well.
    pub fn summary(&self) -> String {
        let problems: Vec<String> = self
            .members
            .iter()
            .filter(|m| !(m.listed && m.healthy))
            .map(|m| {
                let why = if !m.listed {
                    "not a member of the cluster".to_owned()
                } else {
                    m.error.clone().unwrap_or_else(|| "unhealthy".to_owned())
                };
                format!("{} {why}", m.name)
            })
            .chain(
                self.unknown_members
                    .iter()
                    .map(|m| format!("{m} is a member the inventory does not name")),
            )
            .chain(self.leader.is_none().then(|| "no leader".to_owned()))
            .collect();
        if problems.is_empty() {
            format!(
                "{} members healthy, leader {}",
                self.members.len(),
                self.leader.as_deref().unwrap_or("?")
            )
        } else {
            problems.join("; ")
        }
    }
}

/// How long one look at the cluster may take on a member.
const LOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// The cluster as the first member (in inventory order) that can answer sees it: member
/// list, each endpoint's status and health, and each reachable node's service state.
/// When no member answers, every member is reported down, each with why (its service
/// state, what etcdctl said, or that its node cannot be reached), so that the status has
/// one shape whatever happens.
pub async fn status(cluster: &EtcdCluster) -> Result<ClusterStatus, EtcdError> {
    let looks = futures::future::join_all(cluster.members.iter().map(|m| look(cluster, m))).await;
    let mut view = None;
    let mut services = BTreeMap::new();
    let mut unreachable = BTreeMap::new();
    let mut silent = BTreeMap::new();
    for (member, look) in cluster.members.iter().zip(looks) {
        match look {
            Ok(look) => {
                services.insert(member.name.clone(), look.service.clone());
                if look.members.is_none() {
                    silent.insert(member.name.clone(), ctl::last_lines(&look.stderr));
                } else if view.is_none() {
                    view = Some((member.name.clone(), look));
                }
            }
            Err(error) => {
                unreachable.insert(member.name.clone(), error.to_string());
            }
        }
    }
    Ok(match view {
        Some((observer, look)) => assemble(cluster, &observer, look, &services, &unreachable),
        None => nobody_answers(cluster, &services, &silent, &unreachable),
    })
}

/// Every member down, with why: etcdctl's last words and the service state for a node
/// reached over SSH, what failed on a node that was connected, or why its node could not
/// be reached.
fn nobody_answers(
    cluster: &EtcdCluster,
    services: &BTreeMap<String, String>,
    silent: &BTreeMap<String, String>,
    failed: &BTreeMap<String, String>,
) -> ClusterStatus {
    let members = cluster
        .members
        .iter()
        .map(|member| {
            let service = services.get(&member.name);
            let error = match (service, silent.get(&member.name)) {
                (Some(service), Some(said)) if !said.is_empty() => {
                    format!("{said} (service {service})")
                }
                (Some(service), _) => format!("does not answer (service {service})"),
                (None, _) if member.host.is_some() => format!(
                    "does not answer ({})",
                    failed
                        .get(&member.name)
                        .map_or("no answer over SSH", String::as_str)
                ),
                (None, _) => format!(
                    "does not answer (node unreachable over SSH: {})",
                    member.unreachable.as_deref().unwrap_or("no connection")
                ),
            };
            MemberStatus {
                name: member.name.clone(),
                endpoint: etcd::client_url(member.ip),
                id: None,
                listed: true,
                healthy: false,
                leader: false,
                version: None,
                db_size: None,
                raft_index: None,
                revision: None,
                service: service.cloned(),
                error: Some(error),
            }
        })
        .collect();
    ClusterStatus {
        members,
        leader: None,
        observer: None,
        unknown_members: Vec::new(),
    }
}

/// What one member's etcdctl saw.
struct Look {
    service: String,
    members: Option<MemberList>,
    statuses: Vec<EndpointStatus>,
    health: Vec<EndpointHealth>,
    stderr: String,
}

async fn look(cluster: &EtcdCluster, member: &Member) -> Result<Look, EtcdError> {
    let Some(host) = &member.host else {
        return Err(EtcdError::MembersUnreachable {
            members: format!(
                "{} ({})",
                member.name,
                member.unreachable.as_deref().unwrap_or("no connection")
            ),
        });
    };
    let endpoints = cluster.endpoints();
    let timeout = "--command-timeout=4s --dial-timeout=2s";
    // The three questions are asked at once, each to a file, so that a member that does
    // not answer costs one timeout, not three.
    let script = format!(
        "d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT\n\
         {members} >\"$d/m\" 2>\"$d/me\" & {status} >\"$d/s\" 2>\"$d/se\" & {health} >\"$d/h\" 2>\"$d/he\" &\n\
         echo \"@@service $(systemctl is-active {service})\"\n\
         wait\n\
         echo @@members; cat \"$d/m\"; echo; echo @@status; cat \"$d/s\"; echo; echo @@health; cat \"$d/h\"; echo\n\
         cat \"$d/me\" \"$d/se\" \"$d/he\" >&2",
        service = etcd::SERVICE,
        members = etcdctl(&endpoints, &format!("member list -w json {timeout}")),
        status = etcdctl(&endpoints, &format!("endpoint status -w json {timeout}")),
        health = etcdctl(&endpoints, &format!("endpoint health -w json {timeout}")),
    );
    let output = ctl::run(host.as_ref(), &script, LOOK_TIMEOUT).await?;
    let text = output.stdout_text();
    let sections = sections(&text);
    let section = |name: &str| sections.get(name).cloned().unwrap_or_default();
    let service = section("service");
    let members_text = section("members");
    let node = &member.name;
    let members = if members_text.starts_with('{') {
        Some(ctl::parse::<MemberList>(
            node,
            "member list",
            &members_text,
        )?)
    } else {
        None
    };
    let statuses_text = section("status");
    let statuses = if statuses_text.starts_with('[') {
        ctl::parse(node, "endpoint status", &statuses_text)?
    } else {
        Vec::new()
    };
    let health_text = section("health");
    let health = if health_text.starts_with('[') {
        ctl::parse(node, "endpoint health", &health_text)?
    } else {
        Vec::new()
    };
    Ok(Look {
        service,
        members,
        statuses,
        health,
        stderr: output.stderr_text(),
    })
}

/// The parts of a script's output, each started by a line `@@NAME [first words]`.
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("@@") {
            if let Some((name, body)) = current.take() {
                sections.insert(name, body.trim().to_owned());
            }
            let (name, rest) = header.split_once(' ').unwrap_or((header, ""));
            current = Some((name.to_owned(), format!("{rest}\n")));
        } else if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((name, body)) = current {
        sections.insert(name, body.trim().to_owned());
    }
    sections
}

fn assemble(
    cluster: &EtcdCluster,
    observer: &str,
    look: Look,
    services: &BTreeMap<String, String>,
    unreachable: &BTreeMap<String, String>,
) -> ClusterStatus {
    let listed = look.members.map(|list| list.members).unwrap_or_default();
    let leaders: Vec<u64> = look.statuses.iter().map(|s| s.status.leader).collect();
    let mut members = Vec::new();
    let mut leader = None;
    for member in &cluster.members {
        let endpoint = etcd::client_url(member.ip);
        let peer = etcd::peer_url(member.ip);
        let entry = listed
            .iter()
            .find(|m| m.name == member.name || m.peer_urls.contains(&peer));
        let status = look.statuses.iter().find(|s| s.endpoint == endpoint);
        let health = look.health.iter().find(|h| h.endpoint == endpoint);
        let healthy = health.is_some_and(|h| h.health) && status.is_some();
        let id = entry
            .map(|e| e.id)
            .or(status.map(|s| s.status.header.member_id));
        let is_leader =
            id.is_some_and(|id| !leaders.is_empty() && leaders.iter().all(|l| *l == id));
        if is_leader && healthy {
            leader = Some(member.name.clone());
        }
        let node_state = match services.get(&member.name) {
            Some(service) => format!("service {service}"),
            None if member.unreachable.is_some() || unreachable.contains_key(&member.name) => {
                "node unreachable over SSH".to_owned()
            }
            None => "node not checked".to_owned(),
        };
        let error = (!healthy).then(|| match health.and_then(|h| h.error.as_deref()) {
            Some(error) => format!("{error} ({node_state})"),
            None => format!("does not answer ({node_state})"),
        });
        members.push(MemberStatus {
            name: member.name.clone(),
            endpoint,
            id: id.map(ctl::hex_id),
            listed: entry.is_some(),
            healthy,
            leader: is_leader && healthy,
            version: status.map(|s| s.status.version.clone()),
            db_size: status.map(|s| s.status.db_size),
            raft_index: status.map(|s| s.status.raft_index),
            revision: status.map(|s| s.status.header.revision),
            service: services.get(&member.name).cloned(),
            error,
        });
    }
    let unknown_members = listed
        .iter()
        .filter(|listed| {
            !cluster
                .members
                .iter()
                .any(|m| m.name == listed.name || listed.peer_urls.contains(&etcd::peer_url(m.ip)))
        })
        .map(|listed| {
            if listed.name.is_empty() {
                format!("{} (unstarted)", ctl::hex_id(listed.id))
            } else {
                listed.name.clone()
            }
        })
        .collect();
    ClusterStatus {
        members,
        leader,
        observer: Some(observer.to_owned()),
        unknown_members,
    }
}

/// The health gate: waits until every member is healthy with one leader, up to `timeout`.
pub async fn wait_healthy(
    cluster: &EtcdCluster,
    timeout: Duration,
    progress: Progress<'_>,
) -> Result<ClusterStatus, EtcdError> {
    let started = Instant::now();
    loop {
        let looked = status(cluster).await;
        let last = match &looked {
            Ok(status) if status.healthy() => return looked,
            Ok(status) => status.summary(),
            Err(error) => error.to_string(),
        };
        if started.elapsed() >= timeout {
            return Err(EtcdError::Unhealthy {
                seconds: timeout.as_secs(),
                summary: last,
            });
        }
        progress(&format!("waiting for etcd to be healthy: {last}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metalk8s_transport::fake::RecordingHost;
    use metalk8s_transport::{Host, Output};

    use super::*;

    fn member(name: &str, ip: &str, host: Option<RecordingHost>) -> Member {
        let unreachable = host
            .is_none()
            .then(|| "ssh: connect to host: Connection refused".to_owned());
        Member {
            name: name.to_owned(),
            ip: ip.parse().unwrap(),
            host: host.map(|host| Arc::new(host) as Arc<dyn Host>),
            unreachable,
        }
    }

    /// What the look script prints on a node: the service state, then what each etcdctl
    /// question printed (empty when it got no answer), etcdctl's logs on stderr.
    fn answer(service: &str, members: &str, status: &str, health: &str, stderr: &str) -> Output {
        Output {
            status: 0,
            stdout: format!(
                "@@service {service}\n@@members\n{members}\n@@status\n{status}\n@@health\n{health}\n"
            )
            .into_bytes(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    fn node(name: &str, output: Output) -> RecordingHost {
        RecordingHost::new(name).on("etcdctl", output)
    }

    const TIMED_OUT: &str = "{\"level\":\"warn\",\"msg\":\"retrying of unary invoker failed\",\"error\":\"rpc error: code = DeadlineExceeded desc = context deadline exceeded\"}\nError: context deadline exceeded\n";

    #[tokio::test]
    async fn when_no_member_answers_every_member_is_reported_down_with_why() {
        let cluster = EtcdCluster {
            token: "demo".to_owned(),
            members: vec![
                member(
                    "node1",
                    "10.0.0.1",
                    Some(node("node1", answer("inactive", "", "", "", TIMED_OUT))),
                ),
                member("node2", "10.0.0.2", None),
                member(
                    "node3",
                    "10.0.0.3",
                    Some(node("node3", answer("active", "", "", "", ""))),
                ),
            ],
        };
        let status = status(&cluster).await.unwrap();
        assert!(!status.healthy());
        assert!(!status.has_quorum());
        assert_eq!(status.observer, None);
        assert_eq!(status.leader, None);
        let names: Vec<&str> = status.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["node1", "node2", "node3"]);
        for member in &status.members {
            assert!(
                member.listed && !member.healthy && !member.leader,
                "{member:?}"
            );
        }
        let errors: Vec<&str> = status
            .members
            .iter()
            .map(|m| m.error.as_deref().unwrap())
            .collect();
        assert!(
            errors[0].contains("context deadline exceeded"),
            "{}",
            errors[0]
        );
        assert!(errors[0].ends_with("(service inactive)"), "{}", errors[0]);
        assert_eq!(
            errors[1],
            "does not answer (node unreachable over SSH: ssh: connect to host: Connection refused)"
        );
        assert_eq!(errors[2], "does not answer (service active)");
        assert_eq!(status.members[0].service.as_deref(), Some("inactive"));
        assert_eq!(status.members[1].service, None);
        assert_eq!(status.members[0].endpoint, "https://10.0.0.1:2379");
        let summary = status.summary();
        assert!(summary.starts_with("node1 "), "{summary}");
        assert!(summary.ends_with("; no leader"), "{summary}");

        // `-o json` has the same shape as when a member answers.
        let json = serde_json::to_value(&status).unwrap();
        assert!(json.get("observer").is_none(), "{json}");
        assert_eq!(json["members"].as_array().unwrap().len(), 3);
        assert_eq!(json["members"][1]["healthy"], false);
        assert_eq!(json["members"][1]["name"], "node2");
    }

    #[tokio::test]
    async fn the_first_member_that_answers_gives_the_view() {
        let members = r#"{"header":{"cluster_id":1,"member_id":17},"members":[
            {"ID":17,"name":"node1","peerURLs":["https://10.0.0.1:2380"]},
            {"ID":18,"name":"node2","peerURLs":["https://10.0.0.2:2380"]}]}"#
            .replace('\n', "");
        let statuses = r#"[{"Endpoint":"https://10.0.0.1:2379","Status":{"header":{"member_id":17,"revision":42},"version":"3.5.9","dbSize":20480,"leader":17,"raftIndex":99}}]"#;
        let health = r#"[{"endpoint":"https://10.0.0.1:2379","health":true},{"endpoint":"https://10.0.0.2:2379","health":false,"error":"context deadline exceeded"}]"#;
        let cluster = EtcdCluster {
            token: "demo".to_owned(),
            members: vec![
                member(
                    "node1",
                    "10.0.0.1",
                    Some(node(
                        "node1",
                        answer("active", &members, statuses, health, ""),
                    )),
                ),
                member(
                    "node2",
                    "10.0.0.2",
                    Some(node("node2", answer("inactive", "", "", "", TIMED_OUT))),
                ),
            ],
        };
        let status = status(&cluster).await.unwrap();
        assert_eq!(status.observer.as_deref(), Some("node1"));
        assert_eq!(status.leader.as_deref(), Some("node1"));
        assert!(status.members[0].healthy && status.members[0].leader);
        assert_eq!(status.members[0].db_size, Some(20480));
        assert!(!status.members[1].healthy);
        assert_eq!(
            status.members[1].error.as_deref(),
            Some("context deadline exceeded (service inactive)")
        );
        assert!(!status.healthy());
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["observer"], "node1");
    }
}
