//! The API server's audit policy (`audit.k8s.io/v1` Policy), placed at
//! [`crate::cluster::paths::AUDIT_POLICY`] on every control-plane node and named by
//! `--audit-policy-file`.
//!
//! What it records: every write with its request body (who changed what), every read at
//! metadata level, and never a body of a Secret, ConfigMap or token review (they carry
//! credentials). Left out: health and version probes, events, and the steady watch/get
//! traffic of the node agents and controllers, which would drown the log without telling
//! anyone anything.

use serde_json::{Value, json};

/// The policy document.
pub fn policy() -> Value {
    json!({
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {
                "level": "None",
                "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version", "/metrics"],
            },
            {
                "level": "None",
                "resources": [{"group": "", "resources": ["events"]}, {"group": "events.k8s.io", "resources": ["events"]}],
            },
            {
                "level": "None",
                "users": ["system:kube-proxy"],
                "verbs": ["watch"],
                "resources": [
                    {"group": "", "resources": ["endpoints", "services", "services/status", "nodes"]},
                    {"group": "discovery.k8s.io", "resources": ["endpointslices"]},
                ],
            },
            {
                "level": "None",
                "userGroups": ["system:nodes"],
                "verbs": ["get", "list", "watch"],
                "resources": [{"group": "", "resources": ["nodes", "nodes/status", "pods", "configmaps", "secrets", "services"]}],
            },
            {
                "level": "None",
                "users": ["system:kube-controller-manager", "system:kube-scheduler", "system:serviceaccount:kube-system:endpoint-controller"],
                "verbs": ["get", "update"],
                "namespaces": ["kube-system"],
                "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}, {"group": "", "resources": ["endpoints"]}],
            },
            {
                "level": "Metadata",
                "resources": [
                    {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                    {"group": "authentication.k8s.io", "resources": ["tokenreviews"]},
                ],
            },
            {
                "level": "Metadata",
                "verbs": ["get", "list", "watch"],
            },
            {
                "level": "Request",
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_never_logged_with_their_bodies() {
        let policy = policy();
        let rules = policy["rules"].as_array().unwrap();
        let first_secret_rule = rules
            .iter()
            .find(|rule| {
                rule["resources"].as_array().is_some_and(|resources| {
                    resources.iter().any(|group| {
                        group["resources"]
                            .as_array()
                            .unwrap()
                            .contains(&json!("secrets"))
                    })
                }) && rule.get("userGroups").is_none()
            })
            .unwrap();
        assert_eq!(first_secret_rule["level"], "Metadata");
        // The catch-all comes last.
        assert_eq!(rules.last().unwrap(), &json!({"level": "Request"}));
    }
}
