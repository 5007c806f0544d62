//! Approving kubelet serving certificates. With `serverTLSBootstrap` each kubelet asks
//! for its serving certificate through a CertificateSigningRequest
//! (`kubernetes.io/kubelet-serving`), which nothing in Kubernetes approves: a node could
//! otherwise obtain a certificate for any name or address. metalk8s approves one only when
//! it asks for exactly what the inventory says that node is: [`decide`] is that decision,
//! pure; reading the CSR (its PEM request parsed into names and addresses) and writing the
//! approval ([`with_decision`]) are the caller's.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Value, json};

pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";

/// What a kubelet serving CSR asks for: who asked (the API server fills `username` and
/// `groups` from the requester's credentials) and what the PEM request contains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServingRequest {
    pub signer_name: String,
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
}

/// What the inventory and facts say a node is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownNode {
    pub name: String,
    /// Its addresses (the control-plane IP, and the workload-plane IP if the kubelet
    /// reports it).
    pub addresses: Vec<IpAddr>,
    /// Host names the kubelet may report besides the node name (its `hostname`, FQDN).
    pub hostnames: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum Decision {
    Approve { reason: String },
    Deny { reason: String },
}

impl Decision {
    pub fn is_approved(&self) -> bool {
        matches!(self, Decision::Approve { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Approve { reason } | Decision::Deny { reason } => reason,
        }
    }
}

fn deny(reason: String) -> Decision {
    Decision::Deny { reason }
}

/// Whether to approve `request`, with the reason either way. `nodes` are the inventory's.
pub fn decide(request: &ServingRequest, nodes: &[KnownNode]) -> Decision {
    if request.signer_name != KUBELET_SERVING_SIGNER {
        return deny(format!(
            "signer {:?} is not {KUBELET_SERVING_SIGNER}: metalk8s approves only kubelet serving certificates",
            request.signer_name
        ));
    }
    let Some(node_name) = request.username.strip_prefix(NODE_USER_PREFIX) else {
        return deny(format!(
            "requested by {:?}, not by a node",
            request.username
        ));
    };
    if !request.groups.iter().any(|group| group == NODES_GROUP) {
        return deny(format!(
            "requester {:?} is not in group {NODES_GROUP}",
            request.username
        ));
    }
    if request.common_name != request.username {
        return deny(format!(
            "subject common name {:?} is not the requesting node's {:?}",
            request.common_name, request.username
        ));
    }
    if request.organizations != [NODES_GROUP] {
        return deny(format!(
            "subject organizations {:?} are not [{NODES_GROUP:?}]",
            request.organizations
        ));
    }
    let Some(node) = nodes.iter().find(|node| node.name == node_name) else {
        return deny(format!("node {node_name:?} is not in the inventory"));
    };
    let allowed_usages: BTreeSet<&str> =
        ["digital signature", "key encipherment", "server auth"].into();
    if let Some(usage) = request
        .usages
        .iter()
        .find(|usage| !allowed_usages.contains(usage.as_str()))
    {
        return deny(format!(
            "usage {usage:?} is not one a kubelet serving certificate has"
        ));
    }
    if !request.usages.iter().any(|usage| usage == "server auth") {
        return deny("the usages lack \"server auth\"".to_owned());
    }
    if !request.email_addresses.is_empty() || !request.uris.is_empty() {
        return deny("e-mail addresses and URIs are not names of a node".to_owned());
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return deny("the request names no host name and no address".to_owned());
    }
    if let Some(ip) = request
        .ip_addresses
        .iter()
        .find(|ip| !node.addresses.contains(ip))
    {
        return deny(format!(
            "address {ip} is not one of node {node_name}'s ({})",
            list(&node.addresses)
        ));
    }
    if let Some(dns) = request
        .dns_names
        .iter()
        .find(|dns| **dns != node.name && !node.hostnames.contains(dns))
    {
        return deny(format!("host name {dns:?} is not node {node_name}'s"));
    }
    Decision::Approve {
        reason: format!(
            "node {node_name} asks for its own names ({}) and addresses ({})",
            request.dns_names.join(", "),
            list(&request.ip_addresses)
        ),
    }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `csr` (a CertificateSigningRequest as read from the API) with the decision's condition
/// added: the body of the `/approval` subresource update.
pub fn with_decision(mut csr: Value, decision: &Decision) -> Value {
    let (kind, reason) = match decision {
        Decision::Approve { .. } => ("Approved", "MetalK8sApproved"),
        Decision::Deny { .. } => ("Denied", "MetalK8sDenied"),
    };
    let condition = json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": decision.reason(),
    });
    let status = csr
        .as_object_mut()
        .expect("a CertificateSigningRequest is an object")
        .entry("status")
        .or_insert_with(|| json!({}));
    let conditions = status
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    conditions
        .as_array_mut()
        .expect("conditions is a list")
        .push(condition);
    csr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> KnownNode {
        KnownNode {
            name: "cp-1".to_owned(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            hostnames: vec!["cp-1.example.com".to_owned()],
        }
    }

    fn request() -> ServingRequest {
        ServingRequest {
            signer_name: KUBELET_SERVING_SIGNER.to_owned(),
            username: "system:node:cp-1".to_owned(),
            groups: vec!["system:nodes".to_owned(), "system:authenticated".to_owned()],
            usages: vec!["digital signature".to_owned(), "server auth".to_owned()],
            common_name: "system:node:cp-1".to_owned(),
            organizations: vec!["system:nodes".to_owned()],
            dns_names: vec!["cp-1".to_owned(), "cp-1.example.com".to_owned()],
            ip_addresses: vec!["10.0.0.1".parse().unwrap()],
            ..Default::default()
        }
    }

    fn denied_because(request: ServingRequest, words: &str) {
        let decision = decide(&request, &[node()]);
        assert!(!decision.is_approved(), "approved: {request:?}");
        assert!(decision.reason().contains(words), "{}", decision.reason());
    }

    #[test]
    fn a_node_asking_for_its_own_names_is_approved() {
        let decision = decide(&request(), &[node()]);
        assert!(decision.is_approved(), "{decision:?}");
        assert!(decision.reason().contains("10.0.0.1"));
    }

    #[test]
    fn anything_else_is_denied_with_the_reason() {
        denied_because(
            ServingRequest {
                ip_addresses: vec!["10.0.0.2".parse().unwrap()],
                ..request()
            },
            "10.0.0.2",
        );
        denied_because(
            ServingRequest {
                dns_names: vec!["kubernetes.default".to_owned()],
                ..request()
            },
            "kubernetes.default",
        );
        denied_because(
            ServingRequest {
                signer_name: "kubernetes.io/kube-apiserver-client".to_owned(),
                ..request()
            },
            "signer",
        );
        denied_because(
            ServingRequest {
                username: "alice".to_owned(),
                ..request()
            },
            "not by a node",
        );
        denied_because(
            ServingRequest {
                groups: vec![],
                ..request()
            },
            "system:nodes",
        );
        denied_because(
            ServingRequest {
                common_name: "system:node:cp-2".to_owned(),
                ..request()
            },
            "common name",
        );
        denied_because(
            ServingRequest {
                organizations: vec!["system:masters".to_owned()],
                ..request()
            },
            "organizations",
        );
        denied_because(
            ServingRequest {
                usages: vec!["client auth".to_owned()],
                ..request()
            },
            "client auth",
        );
        denied_because(
            ServingRequest {
                usages: vec!["digital signature".to_owned()],
                ..request()
            },
            "server auth",
        );
        denied_because(
            ServingRequest {
                uris: vec!["spiffe://x".to_owned()],
                ..request()
            },
            "URIs",
        );
        denied_because(
            ServingRequest {
                dns_names: vec![],
                ip_addresses: vec![],
                ..request()
            },
            "no host name",
        );
        let stranger = ServingRequest {
            username: "system:node:intruder".to_owned(),
            common_name: "system:node:intruder".to_owned(),
            ..request()
        };
        denied_because(stranger, "not in the inventory");
    }

    #[test]
    fn the_decision_becomes_a_condition() {
        let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "csr-1"}});
        let approved = with_decision(csr, &decide(&request(), &[node()]));
        assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
        assert_eq!(
            approved["status"]["conditions"][0]["reason"],
            "MetalK8sApproved"
        );
    }
}
