//! Connecting to every node of an inventory at once.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use metalk8s_model::Inventory;

use crate::ssh::{HostKeyPolicy, SshHost, SshTarget};
use crate::{Host, HostError};

/// Choices the command line makes over the inventory's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Replaces the inventory's `ssh.acceptNewHostKeys` (`--accept-new-host-keys`).
    pub host_keys: Option<HostKeyPolicy>,
    /// Keep connections open after this process for later runs to reuse, in this private
    /// directory (see [`SshHost::connect_reusing`]).
    pub reuse_connections: Option<std::path::PathBuf>,
}

/// Connects to every node of `inventory`, at most `ssh.parallelism` at a time, and returns
/// one result per node in inventory order, so that every unreachable node is reported at
/// once rather than the first one only.
pub async fn connect_all(
    inventory: &Inventory,
    options: &ConnectOptions,
) -> Vec<(String, Result<Arc<dyn Host>, HostError>)> {
    let targets = inventory.nodes.iter().map(|node| {
        let mut target = SshTarget::from_inventory(inventory, node);
        if let Some(policy) = options.host_keys {
            target.host_keys = policy;
        }
        target
    });
    let parallelism = usize::try_from(inventory.ssh.parallelism).unwrap_or(usize::MAX);
    let reuse = options.reuse_connections.as_deref();
    connect_bounded(targets, parallelism, |target| async move {
        let host = match reuse {
            Some(directory) => SshHost::connect_reusing(target, directory).await?,
            None => SshHost::connect(target).await?,
        };
        Ok(Arc::new(host) as Arc<dyn Host>)
    })
    .await
}

/// Runs `connect` for each target, no more than `parallelism` (at least one) at a time,
/// keeping the order of `targets` in the results.
pub(crate) async fn connect_bounded<T, F, Fut>(
    targets: impl IntoIterator<Item = SshTarget>,
    parallelism: usize,
    connect: F,
) -> Vec<(String, Result<T, HostError>)>
where
    F: Fn(SshTarget) -> Fut,
    Fut: Future<Output = Result<T, HostError>>,
{
    futures::stream::iter(targets)
        .map(|target| {
            let name = target.name.clone();
            let connecting = connect(target);
            async move { (name, connecting.await) }
        })
        .buffered(parallelism.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn target(name: &str) -> SshTarget {
        SshTarget {
            name: name.into(),
            address: format!("{name}.example"),
            port: 22,
            user: "root".into(),
            identity_file: None,
            known_hosts_file: None,
            host_keys: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(1),
            sudo: false,
        }
    }

    #[tokio::test]
    async fn never_more_than_parallelism_at_once_and_results_in_order() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let targets: Vec<_> = (0..7).map(|i| target(&format!("node{i}"))).collect();
        let results = connect_bounded(targets, 3, |target| {
            let (running, peak) = (&running, &peak);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Later nodes finish first: order must come from the inventory, not timing.
                let index: u64 = target.name[4..].parse().expect("index");
                tokio::time::sleep(Duration::from_millis(70 - 10 * index)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if index == 4 {
                    Err(HostError::Timeout {
                        host: target.name,
                        what: "connecting".into(),
                        seconds: 1,
                    })
                } else {
                    Ok(index)
                }
            }
        })
        .await;
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        let names: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node0", "node1", "node2", "node3", "node4", "node5", "node6"
            ]
        );
        assert!(matches!(results[4].1, Err(HostError::Timeout { .. })));
        assert_eq!(*results[6].1.as_ref().expect("connected"), 6);
    }

    #[tokio::test]
    async fn zero_parallelism_still_connects_one_at_a_time() {
        let results = connect_bounded(vec![target("a"), target("b")], 0, |target| async move {
            Ok(target.address)
        })
        .await;
        assert_eq!(results.len(), 2);
    }
}
