//! Operating the cluster's external etcd: what `metalk8s etcd` does and what the deploy's
//! health gate asks. Every action goes through the members' [`Host`] connections (SSH):
//! `etcdctl` runs on a member node with the client certificate metalk8s placed there, so
//! nothing but SSH has to reach the nodes from where metalk8s runs.
//!
//! - [`status`]: every member with its health, the leader, version and database size, as
//!   seen by the first member that can answer; [`wait_healthy`] is the health gate.
//! - [`backup`]: a snapshot from a healthy member, kept on the bootstrap node with its
//!   sha256 and a retention.
//! - [`restore`]: the whole cluster rebuilt from a snapshot (disaster recovery).
//! - [`replace_member`]: a member whose data was lost, removed, wiped and re-added.
//! - [`defrag`]: every member defragmented, one at a time, health-gated.
//!
//! Where etcd lives on a node is [`metalk8s_model::etcd`], which the planner also uses.

mod backup;
mod ctl;
mod defrag;
mod error;
mod replace;
mod restore;
mod status;

use std::net::IpAddr;
use std::sync::Arc;

use metalk8s_transport::Host;

pub use backup::{BACKUP_TIMER, Backup, BackupOptions, DEFAULT_BACKUP_DIR, backup, schedule};
pub use defrag::{Defragmented, defrag};
pub use error::EtcdError;
pub use replace::{Replaced, replace_member};
pub use restore::{Restored, restore};
pub use status::{ClusterStatus, MemberStatus, status, wait_healthy};

/// A node with the `etcd` role.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    /// Its address on the control-plane network (etcd listens there).
    pub ip: IpAddr,
    /// Its connection; `None` when it could not be reached, with why in `unreachable`.
    pub host: Option<Arc<dyn Host>>,
    pub unreachable: Option<String>,
}

/// A member with its connection.
type Connected<'a> = (&'a Member, &'a Arc<dyn Host>);

/// The etcd members of the inventory, in inventory order.
#[derive(Clone)]
pub struct EtcdCluster {
    /// The inventory's name, etcd's initial cluster token.
    pub token: String,
    pub members: Vec<Member>,
}

impl EtcdCluster {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.name == name)
    }

    /// Every member's client URL, for etcdctl's `--endpoints`.
    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|member| metalk8s_model::etcd::client_url(member.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn initial_cluster(&self) -> String {
        metalk8s_model::etcd::initial_cluster(
            self.members
                .iter()
                .map(|member| (member.name.as_str(), member.ip)),
        )
    }

    /// Every member's connection, or an error naming those that have none.
    fn all_hosts(&self) -> Result<Vec<Connected<'_>>, EtcdError> {
        let missing: Vec<String> = self
            .members
            .iter()
            .filter(|member| member.host.is_none())
            .map(|member| {
                format!(
                    "{} ({})",
                    member.name,
                    member.unreachable.as_deref().unwrap_or("no connection")
                )
            })
            .collect();
        if !missing.is_empty() {
            return Err(EtcdError::MembersUnreachable {
                members: missing.join(", "),
            });
        }
        Ok(self
            .members
            .iter()
            .filter_map(|member| member.host.as_ref().map(|host| (member, host)))
            .collect())
    }
}

/// Tells what a long operation is doing (a line each).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);
