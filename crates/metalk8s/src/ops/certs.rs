//! `certs check`: every certificate metalk8s placed on every node, read back from the
//! node itself (what the services actually use), with its expiry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metalk8s_model::inventory::Inventory;
use metalk8s_model::report::error_chain;
use metalk8s_pki::{NODE_KUBERNETES_DIR, OffsetDateTime, RenewalDecision, renewal_decision};
use metalk8s_transport::{Command, ConnectOptions, Host};
use serde::Serialize;

/// One certificate file on one node.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateOnNode {
    pub node: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// `ok`, `expiring-soon`, `expired`, or `unreadable`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertsReport {
    pub certificates: Vec<CertificateOnNode>,
    /// Nodes that could not be read, and why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unreachable: BTreeMap<String, String>,
}

impl CertsReport {
    pub fn any_expired(&self) -> bool {
        self.certificates
            .iter()
            .any(|c| c.status == "expired" || c.status == "unreadable")
    }
}

pub async fn check(
    inventory: &Inventory,
    options: &ConnectOptions,
    warn_within: time::Duration,
) -> CertsReport {
    let connections = metalk8s_transport::connect_all(inventory, options).await;
    let now = OffsetDateTime::now_utc();
    let reads = connections
        .into_iter()
        .map(|(node, connection)| async move {
            let result = match connection {
                Ok(host) => read_node(&host).await,
                Err(error) => Err(error_chain(&error)),
            };
            (node, result)
        });
    let mut report = CertsReport {
        certificates: Vec::new(),
        unreachable: BTreeMap::new(),
    };
    for (node, result) in futures::future::join_all(reads).await {
        match result {
            Ok(files) => {
                for (path, text) in files {
                    report
                        .certificates
                        .push(judge(&node, path, &text, now, warn_within));
                }
            }
            Err(error) => {
                report.unreachable.insert(node, error);
            }
        }
    }
    report
}

/// Every `.crt` and kubeconfig under /etc/kubernetes, with its content.
async fn read_node(host: &Arc<dyn Host>) -> Result<Vec<(String, String)>, String> {
    let script = format!(
        "find {NODE_KUBERNETES_DIR} -type f \\( -name '*.crt' -o -name '*.conf' \\) 2>/dev/null | sort | while read -r f; do printf '@@file %s\\n' \"$f\"; cat -- \"$f\"; echo; done"
    );
    let output = host
        .run(
            &Command::new(script)
                .as_root()
                .timeout(Duration::from_secs(30)),
        )
        .await
        .map_err(|error| error_chain(&error))?;
    if !output.success() {
        return Err(output.stderr_text().trim().to_owned());
    }
    let text = output.stdout_text();
    let mut files = Vec::new();
    for chunk in text.split("@@file ").skip(1) {
        let (path, content) = chunk.split_once('\n').unwrap_or((chunk, ""));
        files.push((path.trim().to_owned(), content.to_owned()));
    }
    Ok(files)
}

fn judge(
    node: &str,
    path: String,
    text: &str,
    now: OffsetDateTime,
    warn_within: time::Duration,
) -> CertificateOnNode {
    match metalk8s_pki::certificate_in_file(text) {
        Ok(cert) => {
            let status = match renewal_decision(&cert, now, warn_within) {
                RenewalDecision::Ok => "ok",
                RenewalDecision::ExpiringSoon => "expiring-soon",
                RenewalDecision::Expired => "expired",
            };
            CertificateOnNode {
                node: node.to_owned(),
                path,
                subject: Some(cert.subject.clone()),
                issuer: Some(cert.issuer.clone()),
                not_after: Some(cert.not_after),
                days_left: Some(cert.days_left(now)),
                status: status.to_owned(),
                error: None,
            }
        }
        Err(error) => CertificateOnNode {
            node: node.to_owned(),
            path,
            subject: None,
            issuer: None,
            not_after: None,
            days_left: None,
            status: "unreadable".to_owned(),
            error: Some(error_chain(&error)),
        },
    }
}
