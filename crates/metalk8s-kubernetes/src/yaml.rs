//! Multi-document YAML, as kubeadm's `--config` and `kubectl apply -f` read it.

use serde_json::Value;

/// The documents, each introduced by `---`.
pub fn documents(documents: &[Value]) -> String {
    let mut text = String::new();
    for document in documents {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(document).expect("JSON values serialize to YAML"));
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

/// Parses multi-document YAML back into JSON values (tests, and callers that diff).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, serde_saphyr::Error> {
    serde_saphyr::from_multiple(text)
}
