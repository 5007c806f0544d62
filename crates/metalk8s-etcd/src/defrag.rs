//! `etcd defrag`: gives each member's freed space back to the file system, one member at
//! a time (a member defragmenting answers nothing), the cluster checked healthy between.

use std::time::Duration;

use metalk8s_model::etcd;
use serde::Serialize;

use crate::ctl::{self, etcdctl};
use crate::error::EtcdError;
use crate::status::{status, wait_healthy};
use crate::{EtcdCluster, Progress};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Defragmented {
    pub member: String,
    pub db_size_before: Option<u64>,
    pub db_size_after: Option<u64>,
}

pub async fn defrag(
    cluster: &EtcdCluster,
    gate_timeout: Duration,
    progress: Progress<'_>,
) -> Result<Vec<Defragmented>, EtcdError> {
    let before = wait_healthy(cluster, gate_timeout, progress).await?;
    // A healthy cluster was seen by one of its members.
    let observer = before
        .observer
        .as_deref()
        .and_then(|name| cluster.member(name))
        .and_then(|m| m.host.clone())
        .expect("the observer is a connected member");
    let mut done = Vec::new();
    for member in &cluster.members {
        progress(&format!("defragmenting {}", member.name));
        ctl::run_checked(
            observer.as_ref(),
            &etcdctl(
                &etcd::client_url(member.ip),
                "defrag --command-timeout=300s",
            ),
            &format!("etcdctl defrag of {}", member.name),
            Duration::from_secs(360),
        )
        .await?;
        wait_healthy(cluster, gate_timeout, progress).await?;
        done.push(Defragmented {
            member: member.name.clone(),
            db_size_before: before
                .members
                .iter()
                .find(|m| m.name == member.name)
                .and_then(|m| m.db_size),
            db_size_after: None,
        });
    }
    let after = status(cluster).await?;
    for entry in &mut done {
        entry.db_size_after = after
            .members
            .iter()
            .find(|m| m.name == entry.member)
            .and_then(|m| m.db_size);
    }
    Ok(done)
}
