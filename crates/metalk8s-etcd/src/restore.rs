//! `etcd restore`: disaster recovery. Every member's data is rebuilt from one snapshot
//! and the cluster restarted from it. The data each member had is kept aside, never
//! deleted.
//!
//! The new data directories are prepared while etcd still runs (no downtime yet), then
//! every member is stopped, its data swapped, and all are started together: a member's
//! start waits for a quorum.

use std::time::Duration;

use futures::future::try_join_all;
use metalk8s_model::etcd;
use metalk8s_transport::{Host, quote};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ctl::{self, SnapshotStatus};
use crate::error::EtcdError;
use crate::status::{ClusterStatus, wait_healthy};
use crate::{EtcdCluster, Progress};

/// Where each member receives the snapshot.
const RESTORE_DIR: &str = "/var/lib/metalk8s/etcd-restore";

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub snapshot: String,
    pub sha256: String,
    pub revision: u64,
    /// By member, where its previous data directory was kept.
    pub previous_data: Vec<(String, String)>,
    pub status: ClusterStatus,
}

/// Rebuilds every member from `snapshot`, a file on `bootstrap`.
pub async fn restore(
    cluster: &EtcdCluster,
    bootstrap: &dyn Host,
    snapshot: &str,
    stamp: &str,
    gate_timeout: Duration,
    progress: Progress<'_>,
) -> Result<Restored, EtcdError> {
    let members = cluster.all_hosts()?;
    progress(&format!("reading {snapshot} on {}", bootstrap.name()));
    let (bytes, sha256) = read_snapshot(bootstrap, snapshot).await?;

    let prepared = format!("{}.restored-{stamp}", etcd::DATA_DIR);
    let initial_cluster = cluster.initial_cluster();
    let mut revision = 0;
    for (member, host) in &members {
        progress(&format!("preparing the restored data on {}", member.name));
        let file = format!("{RESTORE_DIR}/snapshot.db");
        ctl::run_checked(
            host.as_ref(),
            &format!("mkdir -p -m 0700 {RESTORE_DIR}"),
            "making the restore directory",
            Duration::from_secs(30),
        )
        .await?;
        host.upload(&file, &bytes, 0o600, true).await?;
        let script = format!(
            "set -e\nrm -rf {prepared}\nETCDCTL_API=3 etcdctl snapshot status {file} -w json\nETCDCTL_API=3 etcdctl snapshot restore {file} --name {name} --initial-cluster {ic} --initial-cluster-token {token} --initial-advertise-peer-urls {peer} --data-dir {prepared} >&2\nchown -R {user}:{user} {prepared}\nchmod 0700 {prepared}\nrm -f {file}",
            name = quote(&member.name),
            ic = quote(&initial_cluster),
            token = quote(&cluster.token),
            peer = quote(&etcd::peer_url(member.ip)),
            user = etcd::USER,
        );
        let output = ctl::run_checked(
            host.as_ref(),
            &script,
            "etcdctl snapshot restore",
            Duration::from_secs(600),
        )
        .await?;
        let status: SnapshotStatus =
            ctl::parse(&member.name, "snapshot status", &output.stdout_text())?;
        revision = status.revision;
    }

    progress("stopping etcd on every member");
    let stop = format!("systemctl stop {}", etcd::SERVICE);
    on_every_member(&members, &stop, "stopping etcd", Duration::from_secs(120)).await?;
    let aside = format!("{}.before-restore-{stamp}", etcd::DATA_DIR);
    progress("swapping in the restored data");
    let swap = format!(
        "set -e\nif [ -e {data} ]; then mv -T {data} {aside}; fi\nmv -T {prepared} {data}\nrm -f {join}",
        data = etcd::DATA_DIR,
        join = etcd::JOIN_ENV_FILE,
    );
    on_every_member(
        &members,
        &swap,
        "swapping the data directory",
        Duration::from_secs(120),
    )
    .await?;
    progress("starting etcd on every member");
    let start = format!("systemctl start --no-block {}", etcd::SERVICE);
    on_every_member(&members, &start, "starting etcd", Duration::from_secs(60)).await?;
    let status = wait_healthy(cluster, gate_timeout, progress).await?;
    Ok(Restored {
        snapshot: snapshot.to_owned(),
        sha256,
        revision,
        previous_data: members
            .iter()
            .map(|(member, _)| (member.name.clone(), aside.clone()))
            .collect(),
        status,
    })
}

/// Runs `script` on every member at once.
async fn on_every_member(
    members: &[crate::Connected<'_>],
    script: &str,
    what: &str,
    timeout: Duration,
) -> Result<(), EtcdError> {
    try_join_all(
        members
            .iter()
            .map(|(_, host)| ctl::run_checked(host.as_ref(), script, what, timeout)),
    )
    .await?;
    Ok(())
}

/// The snapshot's bytes and sha256, checked against `FILE.sha256` when there is one.
async fn read_snapshot(host: &dyn Host, path: &str) -> Result<(Vec<u8>, String), EtcdError> {
    let problem = |problem: String| EtcdError::Snapshot {
        node: host.name().to_owned(),
        path: path.to_owned(),
        problem,
    };
    let output = ctl::run(
        host,
        &format!("cat -- {}", quote(path)),
        Duration::from_secs(600),
    )
    .await?;
    if !output.success() {
        return Err(problem(format!(
            "cannot be read: {}",
            output.stderr_text().trim()
        )));
    }
    let bytes = output.stdout;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let recorded = ctl::run(
        host,
        &format!("cat -- {} 2>/dev/null", quote(&format!("{path}.sha256"))),
        Duration::from_secs(30),
    )
    .await?;
    if recorded.success() {
        let expected = recorded.stdout_text();
        let expected = expected.split_whitespace().next().unwrap_or("");
        if expected != sha256 {
            return Err(problem(format!(
                "does not match its checksum file (sha256 {sha256}, recorded {expected}): it is damaged or was changed"
            )));
        }
    }
    Ok((bytes, sha256))
}
