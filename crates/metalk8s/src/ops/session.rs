//! What `plan` and `deploy` share: connect to every node and gather its facts, reporting
//! every node that cannot be reached at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use metalk8s_model::Facts;
use metalk8s_model::inventory::Inventory;
use metalk8s_model::report::error_chain;
use metalk8s_precheck::GatherRequest;
use metalk8s_transport::{ConnectOptions, Host};

pub struct Session {
    pub hosts: BTreeMap<String, Arc<dyn Host>>,
    pub facts: BTreeMap<String, Facts>,
}

/// A connected node with its facts.
type Usable = (Arc<dyn Host>, Facts);

/// A node that could not be used, with what to do about it.
#[derive(Debug)]
pub struct Unusable {
    pub node: String,
    pub reason: String,
    pub hint: Option<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} of the inventory's nodes cannot be used:\n{}", unusable.len(), describe(unusable))]
pub struct NodesUnusable {
    pub unusable: Vec<Unusable>,
}

fn describe(unusable: &[Unusable]) -> String {
    unusable
        .iter()
        .map(|u| match &u.hint {
            Some(hint) => format!("  {}: {}\n    hint: {hint}", u.node, u.reason),
            None => format!("  {}: {}", u.node, u.reason),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn open(
    inventory: &Inventory,
    options: &ConnectOptions,
) -> Result<Session, NodesUnusable> {
    let connections = metalk8s_transport::connect_all(inventory, options).await;
    let parallelism = inventory.ssh.parallelism.max(1) as usize;
    let results: Vec<(String, Result<Usable, Unusable>)> = futures::stream::iter(connections)
        .map(|(node, connection)| async move {
            let result = match connection {
                Ok(host) => {
                    match metalk8s_precheck::gather(host.as_ref(), &GatherRequest::for_planning())
                        .await
                    {
                        Ok(facts) => Ok((host, facts)),
                        Err(error) => Err(Unusable {
                            node: node.clone(),
                            reason: error_chain(&error),
                            hint: None,
                        }),
                    }
                }
                Err(error) => Err(Unusable {
                    node: node.clone(),
                    reason: error_chain(&error),
                    hint: error.hint().map(str::to_owned),
                }),
            };
            (node, result)
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let mut session = Session {
        hosts: BTreeMap::new(),
        facts: BTreeMap::new(),
    };
    let mut unusable = Vec::new();
    for (node, result) in results {
        match result {
            Ok((host, facts)) => {
                session.hosts.insert(node.clone(), host);
                session.facts.insert(node, facts);
            }
            Err(problem) => unusable.push(problem),
        }
    }
    if unusable.is_empty() {
        Ok(session)
    } else {
        unusable.sort_by(|a, b| a.node.cmp(&b.node));
        Err(NodesUnusable { unusable })
    }
}
