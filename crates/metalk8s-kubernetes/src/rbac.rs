//! The RBAC bindings metalk8s makes sure exist, whatever kubeadm version ran: kubeadm
//! creates them during `init` in current releases, but the cluster's access depends on
//! them, so the phase applies them too (server-side apply; they are identical to
//! kubeadm's, so applying them is a no-op on a fresh cluster).
//!
//! - `kubeadm:cluster-admins` binds the group of `admin.conf` (`kubeadm:cluster-admins`,
//!   metalk8s-pki's admin kubeconfig) to `cluster-admin`. Unlike `system:masters`, that
//!   group's rights live in this binding, which can be edited or removed.
//! - `kubeadm:apiserver-kubelet-client` binds the API server's kubelet client
//!   (`kube-apiserver-kubelet-client`, a certificate without group since kubeadm's
//!   v1.36.1 / v1.35.5 patch releases, kubernetes/kubernetes#138957) to
//!   `system:kubelet-api-admin`. Without it `kubectl logs` and `exec` get 403 from the
//!   kubelet.

use serde_json::{Value, json};

pub const CLUSTER_ADMINS: &str = "kubeadm:cluster-admins";
pub const APISERVER_KUBELET_CLIENT_BINDING: &str = "kubeadm:apiserver-kubelet-client";
pub const APISERVER_KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
pub const KUBELET_API_ADMIN_ROLE: &str = "system:kubelet-api-admin";

fn cluster_role_binding(name: &str, role: &str, subject: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    })
}

/// `kubeadm:cluster-admins`: group `kubeadm:cluster-admins` → `cluster-admin`.
pub fn cluster_admins() -> Value {
    cluster_role_binding(
        CLUSTER_ADMINS,
        "cluster-admin",
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": CLUSTER_ADMINS}),
    )
}

/// `kubeadm:apiserver-kubelet-client`: user `kube-apiserver-kubelet-client` →
/// `system:kubelet-api-admin`.
pub fn apiserver_kubelet_client() -> Value {
    cluster_role_binding(
        APISERVER_KUBELET_CLIENT_BINDING,
        KUBELET_API_ADMIN_ROLE,
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": APISERVER_KUBELET_CLIENT_USER}),
    )
}

/// Both bindings.
pub fn bindings() -> Vec<Value> {
    vec![cluster_admins(), apiserver_kubelet_client()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_name_kubeadm_subjects_and_roles() {
        let admins = cluster_admins();
        assert_eq!(admins["metadata"]["name"], "kubeadm:cluster-admins");
        assert_eq!(admins["roleRef"]["name"], "cluster-admin");
        assert_eq!(admins["subjects"][0]["kind"], "Group");
        assert_eq!(admins["subjects"][0]["name"], "kubeadm:cluster-admins");
        let kubelet = apiserver_kubelet_client();
        assert_eq!(kubelet["roleRef"]["name"], "system:kubelet-api-admin");
        assert_eq!(kubelet["subjects"][0]["kind"], "User");
        assert_eq!(
            kubelet["subjects"][0]["name"],
            "kube-apiserver-kubelet-client"
        );
    }
}
