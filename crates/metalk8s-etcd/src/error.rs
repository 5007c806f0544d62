use metalk8s_transport::HostError;

/// Why an etcd operation failed. Each variant names the member or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{what} failed on {node} (exit status {status}): {stderr}")]
    Command {
        node: String,
        what: String,
        status: i32,
        stderr: String,
    },
    #[error("etcdctl on {node} printed what metalk8s cannot read ({what}): {detail}")]
    Output {
        node: String,
        what: String,
        detail: String,
    },
    #[error("no etcd member answers: {detail}")]
    NoMemberAnswers { detail: String },
    #[error("etcd is not healthy after {seconds}s: {summary}")]
    Unhealthy { seconds: u64, summary: String },
    #[error("these etcd members cannot be reached: {members}")]
    MembersUnreachable { members: String },
    #[error("`{node}` is not an etcd member of the inventory (members: {members})")]
    NotAMember { node: String, members: String },
    #[error("the snapshot {path} on {node} {problem}")]
    Snapshot {
        node: String,
        path: String,
        problem: String,
    },
}

impl EtcdError {
    /// What the operator can do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            EtcdError::Unhealthy { .. } => Some(
                "`metalk8s etcd status` shows each member; `journalctl -u etcd` on a failing member says why",
            ),
            EtcdError::MembersUnreachable { .. } => {
                Some("every member must be reachable over SSH for this operation")
            }
            EtcdError::NoMemberAnswers { .. } => Some(
                "check that etcd runs (`systemctl status etcd` on the members); a cluster that lost its data is brought back with `metalk8s etcd restore`",
            ),
            _ => None,
        }
    }
}
