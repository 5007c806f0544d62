//! `etcd backup`: a snapshot taken from a healthy member, kept on the bootstrap node with
//! its sha256 beside it, and only the newest `keep` of them.

use std::time::Duration;

use metalk8s_model::etcd;
use metalk8s_transport::{Host, quote};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ctl::{self, SnapshotStatus, etcdctl};
use crate::error::EtcdError;
use crate::status::status;
use crate::{EtcdCluster, Progress};

/// Where the bootstrap node keeps snapshots.
pub const DEFAULT_BACKUP_DIR: &str = "/var/lib/metalk8s/backups/etcd";

/// Where a member writes a snapshot before it is moved or copied away.
const MEMBER_SNAPSHOT: &str = "/var/lib/metalk8s/etcd-snapshot.db";

const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

pub struct BackupOptions {
    /// Directory on the bootstrap node.
    pub dir: String,
    /// How many snapshots to keep there (the newest); at least 1.
    pub keep: usize,
    /// Part of the file name: when the snapshot was taken (`20261127T101500Z`).
    pub stamp: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// On the bootstrap node.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub revision: u64,
    pub keys: u64,
    /// The member it was taken from.
    pub member: String,
    /// Older snapshots removed by the retention.
    pub removed: Vec<String>,
}

/// Takes a snapshot from the first healthy member and stores it on `bootstrap`.
pub async fn backup(
    cluster: &EtcdCluster,
    bootstrap: &dyn Host,
    options: &BackupOptions,
    progress: Progress<'_>,
) -> Result<Backup, EtcdError> {
    let seen = status(cluster).await?;
    let source = seen
        .members
        .iter()
        .filter(|m| m.healthy)
        .find_map(|m| {
            let member = cluster.member(&m.name)?;
            Some((member, member.host.as_ref()?))
        })
        .ok_or_else(|| EtcdError::NoMemberAnswers {
            detail: seen.summary(),
        })?;
    let (member, host) = source;
    progress(&format!("taking a snapshot on {}", member.name));
    // etcdctl writes to a `.part` file and renames it when complete.
    let script = format!(
        "set -e\nmkdir -p -m 0700 /var/lib/metalk8s\nrm -f {MEMBER_SNAPSHOT}\n{save} >&2\nchmod 0600 {MEMBER_SNAPSHOT}\nETCDCTL_API=3 etcdctl snapshot status {MEMBER_SNAPSHOT} -w json",
        save = etcdctl(
            &etcd::local_client_url(),
            &format!("snapshot save {MEMBER_SNAPSHOT} --command-timeout=300s")
        ),
    );
    let output = ctl::run_checked(
        host.as_ref(),
        &script,
        "etcdctl snapshot save",
        SNAPSHOT_TIMEOUT,
    )
    .await?;
    let snapshot: SnapshotStatus =
        ctl::parse(&member.name, "snapshot status", &output.stdout_text())?;

    let name = format!("etcd-{}-{}.db", cluster.token, options.stamp);
    let path = format!("{}/{name}", options.dir.trim_end_matches('/'));
    let bytes = ctl::run_checked(
        host.as_ref(),
        &format!("cat {MEMBER_SNAPSHOT}"),
        "reading the snapshot",
        SNAPSHOT_TIMEOUT,
    )
    .await?
    .stdout;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    progress(&format!(
        "storing {} bytes on {} as {path}",
        bytes.len(),
        bootstrap.name()
    ));
    ctl::run_checked(
        bootstrap,
        &format!("mkdir -p -m 0700 {}", quote(&options.dir)),
        "making the backup directory",
        Duration::from_secs(30),
    )
    .await?;
    let part_path = format!("{path}.part");
    bootstrap.upload(&part_path, &bytes, 0o600, true).await?;
    // The checksum file is written and checked against the copy before the copy takes its
    // final name: a snapshot under its final name is always complete and verified.
    let check = format!(
        "set -e\ncd {dir}\nprintf '%s  %s\\n' {sha256} {name} > {name}.sha256\nsha256sum --status -c <(sed 's/ {name}$/ {name}.part/' {name}.sha256)\nmv {name}.part {name}",
        dir = quote(&options.dir),
        name = quote(&name),
    );
    ctl::run_checked(
        bootstrap,
        &format!("bash -c {}", quote(&check)),
        "verifying the stored snapshot",
        Duration::from_secs(300),
    )
    .await?;
    let _ = ctl::run(
        host.as_ref(),
        &format!("rm -f {MEMBER_SNAPSHOT}"),
        Duration::from_secs(30),
    )
    .await;
    let removed = retention(bootstrap, options, &cluster.token).await?;
    Ok(Backup {
        path,
        sha256,
        size: bytes.len() as u64,
        revision: snapshot.revision,
        keys: snapshot.total_key,
        member: member.name.clone(),
        removed,
    })
}

/// Removes all but the newest `keep` snapshots of this cluster (names sort by time).
async fn retention(
    bootstrap: &dyn Host,
    options: &BackupOptions,
    token: &str,
) -> Result<Vec<String>, EtcdError> {
    let keep = options.keep.max(1);
    let script = format!(
        "cd {dir} && ls -1 -- etcd-{token}-*.db 2>/dev/null | sort -r | tail -n +{first}",
        dir = quote(&options.dir),
        token = token,
        first = keep + 1,
    );
    let output = ctl::run_checked(
        bootstrap,
        &script,
        "listing snapshots",
        Duration::from_secs(30),
    )
    .await?;
    let old: Vec<String> = output
        .stdout_text()
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    if old.is_empty() {
        return Ok(Vec::new());
    }
    let files: Vec<String> = old
        .iter()
        .flat_map(|name| [quote(name), quote(&format!("{name}.sha256"))])
        .collect();
    ctl::run_checked(
        bootstrap,
        &format!("cd {} && rm -f -- {}", quote(&options.dir), files.join(" ")),
        "removing old snapshots",
        Duration::from_secs(30),
    )
    .await?;
    Ok(old
        .into_iter()
        .map(|name| format!("{}/{name}", options.dir.trim_end_matches('/')))
        .collect())
}

/// The systemd units of the scheduled backup on the bootstrap node.
pub const BACKUP_TIMER: &str = "metalk8s-etcd-backup.timer";
const BACKUP_SERVICE: &str = "metalk8s-etcd-backup.service";
const BACKUP_SCRIPT: &str = "/usr/local/lib/metalk8s/etcd-backup";

/// Installs (or updates) a systemd timer on `bootstrap` that takes a snapshot on the
/// `calendar` schedule (systemd's `OnCalendar=`, e.g. `daily`, `*-*-* 02:00:00`), kept in
/// `options.dir` with its sha256 and the same retention as [`backup`].
///
/// The bootstrap node runs it alone, without metalk8s: `etcdctl` asks each member in turn
/// over the control-plane network with the member's client certificate from the PKI store
/// there. `etcdctl` must be installed on the bootstrap node (it is on etcd members).
pub async fn schedule(
    cluster: &EtcdCluster,
    bootstrap: &dyn Host,
    options: &BackupOptions,
    calendar: &str,
) -> Result<(), EtcdError> {
    if calendar.is_empty() || calendar.contains(['\n', '\'', '"']) {
        return Err(EtcdError::Output {
            node: bootstrap.name().to_owned(),
            what: "the backup schedule".to_owned(),
            detail: format!("`{calendar}` is not a systemd calendar expression"),
        });
    }
    let check = ctl::run(bootstrap, "command -v etcdctl", Duration::from_secs(30)).await?;
    if !check.success() {
        return Err(EtcdError::Command {
            node: bootstrap.name().to_owned(),
            what: "finding etcdctl for the scheduled backup".to_owned(),
            status: check.status,
            stderr: "etcdctl is not installed on the bootstrap node (install etcd-client, or give it the etcd role)".to_owned(),
        });
    }
    let members: Vec<String> = cluster
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, etcd::client_url(m.ip)))
        .collect();
    let script = format!(
        r#"#!/bin/bash
# Managed by metalk8s (`metalk8s etcd backup --schedule`): an etcd snapshot, kept with its
# sha256, newest {keep} kept.
set -euo pipefail
dir={dir}
name=etcd-{token}-$(date -u +%Y%m%dT%H%M%SZ).db
store=/var/lib/metalk8s/pki
mkdir -p -m 0700 "$dir"
cd "$dir"
for member in {members}; do
  node=${{member%%=*}}
  url=${{member#*=}}
  pki=$store/nodes/$node/pki/etcd
  if ETCDCTL_API=3 etcdctl --cacert="$store/etcd/ca.crt" --cert="$pki/healthcheck-client.crt" \
      --key="$pki/healthcheck-client.key" --endpoints="$url" --command-timeout=300s \
      snapshot save "$name.part" >&2; then
    chmod 0600 "$name.part"
    sha256sum "$name.part" | sed "s/ $name.part\$/ $name/" > "$name.sha256"
    mv "$name.part" "$name"
    ls -1 -- etcd-{token}-*.db | sort -r | tail -n +{first} | while read -r old; do
      rm -f -- "$old" "$old.sha256"
    done
    echo "snapshot $dir/$name from $node"
    exit 0
  fi
  rm -f "$name.part"
done
echo "no etcd member answered" >&2
exit 1
"#,
        keep = options.keep.max(1),
        dir = quote(&options.dir),
        token = cluster.token,
        members = members.join(" "),
        first = options.keep.max(1) + 1,
    );
    let service = format!(
        "# Managed by metalk8s.\n[Unit]\nDescription=etcd snapshot of the {token} cluster\n\n[Service]\nType=oneshot\nExecStart={BACKUP_SCRIPT}\n",
        token = cluster.token
    );
    let timer = format!(
        "# Managed by metalk8s.\n[Unit]\nDescription=etcd snapshot of the {token} cluster, {calendar}\n\n[Timer]\nOnCalendar={calendar}\nPersistent=true\nRandomizedDelaySec=60\n\n[Install]\nWantedBy=timers.target\n",
        token = cluster.token
    );
    ctl::run_checked(
        bootstrap,
        "mkdir -p /usr/local/lib/metalk8s",
        "making the script directory",
        Duration::from_secs(30),
    )
    .await?;
    bootstrap
        .upload(BACKUP_SCRIPT, script.as_bytes(), 0o755, true)
        .await?;
    bootstrap
        .upload(
            &format!("/etc/systemd/system/{BACKUP_SERVICE}"),
            service.as_bytes(),
            0o644,
            true,
        )
        .await?;
    bootstrap
        .upload(
            &format!("/etc/systemd/system/{BACKUP_TIMER}"),
            timer.as_bytes(),
            0o644,
            true,
        )
        .await?;
    ctl::run_checked(
        bootstrap,
        &format!("systemctl daemon-reload && systemctl enable --now {BACKUP_TIMER} && systemctl restart {BACKUP_TIMER}"),
        "enabling the backup timer",
        Duration::from_secs(60),
    )
    .await?;
    Ok(())
}
