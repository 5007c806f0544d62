//! What the phase places for a 3-node cluster (three control planes that are also workers,
//! a VIP, OIDC), file by file, so that any change to a rendered config shows in review.

mod common;

use metalk8s_kubernetes::{
    apiserver_proxy, audit, keepalived, kube_proxy, kubeadm, kubelet, objects, yaml,
};

fn rendered() -> String {
    let cluster = common::cluster(3, 36, true, true);
    let token = common::token();
    let mut out = String::new();
    let mut file = |name: &str, content: &str| {
        out.push_str(&format!("##### {name}\n{content}"));
        if !content.ends_with('\n') {
            out.push('\n');
        }
    };
    let first = &cluster.nodes[0];
    let init = kubeadm::init_files(&cluster, first, &token, "15m").unwrap();
    file(&format!("{} kubeadm init config", first.name), &init.config);
    for (name, content) in &init.patches {
        file(&format!("{} patches/{name}", first.name), content);
    }
    let second = &cluster.nodes[1];
    let join = kubeadm::join_files(&cluster, second, &token).unwrap();
    file(
        &format!("{} kubeadm join config", second.name),
        &join.config,
    );
    file(&format!("{} kubelet.service", first.name), &kubelet::unit());
    file(
        &format!("{} 10-kubeadm.conf", first.name),
        &kubelet::drop_in(first),
    );
    file(
        &format!("{} kubelet config (as merged by kubeadm)", first.name),
        &yaml::documents(&[kubelet::node_configuration(&cluster, first).unwrap()]),
    );
    file(
        &format!("{} kube-proxy config", first.name),
        &kube_proxy::configuration_file(&cluster, first).unwrap(),
    );
    file(
        &format!("{} haproxy.cfg", first.name),
        &apiserver_proxy::config(&cluster, first).unwrap(),
    );
    file(
        "haproxy.service.d/10-metalk8s.conf",
        &apiserver_proxy::drop_in(),
    );
    let keepalived = keepalived::files(&cluster, first).unwrap().unwrap();
    file(
        &format!("{} keepalived.conf", first.name),
        &keepalived.config,
    );
    file(
        &format!("{} check-apiserver.sh", first.name),
        &keepalived.check_script,
    );
    file(
        &format!("{} keepalived.service.d/10-metalk8s.conf", first.name),
        &keepalived.drop_in,
    );
    file("audit policy", &yaml::documents(&[audit::policy()]));
    file(
        "objects",
        &yaml::documents(&objects::all(&cluster, &common::dns(&cluster)).unwrap()),
    );
    out
}

#[test]
fn three_node_cluster() {
    insta::assert_snapshot!(rendered());
}

#[test]
fn five_node_worker_join_and_labels() {
    let cluster = common::cluster(5, 37, false, false);
    let worker = &cluster.nodes[4];
    let join = kubeadm::join_files(&cluster, worker, &common::token()).unwrap();
    let infra = &cluster.nodes[3];
    let text = format!(
        "##### {} kubeadm join config\n{}##### {} 10-kubeadm.conf\n{}##### {} haproxy.cfg\n{}",
        worker.name,
        join.config,
        infra.name,
        kubelet::drop_in(infra),
        worker.name,
        apiserver_proxy::config(&cluster, worker).unwrap(),
    );
    insta::assert_snapshot!(text);
}
