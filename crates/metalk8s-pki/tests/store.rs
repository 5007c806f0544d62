//! The key store on a real directory: layout, modes, idempotence, validity, usages,
//! chains, renewal and repair.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use metalk8s_pki::kubeconfig::Kubeconfig;
use metalk8s_pki::{
    Authority, CertInfo, ClusterAddresses, Duration, IssueOptions, KeyAlgorithm, Outcome, PkiError,
    PkiStore, Purpose, RenewScope, RenewalDecision, cluster_certificates, public_key_of,
    renewal_decision,
};

use common::{now, populated_store, spec};

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn ca_info(store: &PkiStore, authority: Authority) -> CertInfo {
    store
        .load_authority(authority)
        .unwrap()
        .expect("the CA exists")
        .info()
        .clone()
}

fn truncated(time: metalk8s_pki::OffsetDateTime) -> metalk8s_pki::OffsetDateTime {
    time.replace_nanosecond(0).unwrap()
}

#[test]
fn ensure_writes_kubeadm_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = PkiStore::new(dir.path().join("pki"), IssueOptions::default());
    let specs = common::all_specs(&common::lab_pki());
    let report = store.ensure(&specs, now()).unwrap();

    assert_eq!(report.entries.len(), 3 + 1 + specs.len());
    assert!(
        report
            .entries
            .iter()
            .all(|entry| entry.outcome == Outcome::Created),
        "{report:#?}"
    );
    let root = store.root();
    for file in [
        "ca.crt",
        "ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "sa.key",
        "sa.pub",
    ] {
        assert!(root.join(file).is_file(), "{file} missing");
    }
    for node in ["node1", "node2", "node3"] {
        for file in [
            "pki/apiserver.crt",
            "pki/apiserver.key",
            "pki/apiserver-kubelet-client.crt",
            "pki/apiserver-etcd-client.key",
            "pki/front-proxy-client.crt",
            "pki/etcd/server.crt",
            "pki/etcd/peer.key",
            "pki/etcd/healthcheck-client.crt",
            "admin.conf",
            "controller-manager.conf",
            "scheduler.conf",
        ] {
            assert!(
                store.node_dir(node).join(file).is_file(),
                "{node}: {file} missing"
            );
        }
    }
}

#[test]
fn keys_are_0600_certificates_0644_directories_0700() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = populated_store(dir.path(), IssueOptions::default(), now());
    let root = store.root();
    for private in [
        root.join("ca.key"),
        root.join("etcd/ca.key"),
        root.join("sa.key"),
        store.node_dir("node1").join("pki/apiserver.key"),
        store.node_dir("node2").join("pki/etcd/peer.key"),
        store.node_dir("node3").join("admin.conf"),
    ] {
        assert_eq!(mode(&private), 0o600, "{}", private.display());
    }
    for public in [
        root.join("ca.crt"),
        root.join("sa.pub"),
        store.node_dir("node1").join("pki/apiserver.crt"),
    ] {
        assert_eq!(mode(&public), 0o644, "{}", public.display());
    }
    for directory in [
        root.to_owned(),
        root.join("etcd"),
        root.join("nodes"),
        store.node_dir("node1"),
        store.node_dir("node1").join("pki/etcd"),
    ] {
        assert_eq!(mode(&directory), 0o700, "{}", directory.display());
    }
    // No temporary file is left behind by the atomic writes.
    let leftovers: Vec<_> = walk(root)
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(path: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found.sort();
    found
}

#[test]
fn a_root_made_wider_beforehand_is_narrowed_to_0700() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pki");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    PkiStore::new(&root, IssueOptions::default())
        .ensure(&[], now())
        .unwrap();
    assert_eq!(mode(&root), 0o700);
}

#[test]
fn ensure_twice_keeps_every_ca_key_and_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let files = walk(store.root());
    let before: Vec<Vec<u8>> = files.iter().map(|path| read_if_file(path)).collect();

    let report = store.ensure(&specs, now()).unwrap();

    assert!(
        report.is_noop(),
        "{:#?}",
        report.changed().collect::<Vec<_>>()
    );
    let after: Vec<Vec<u8>> = files.iter().map(|path| read_if_file(path)).collect();
    assert_eq!(before, after, "a second ensure rewrote files");
    assert_eq!(walk(store.root()), files);
}

fn read_if_file(path: &Path) -> Vec<u8> {
    if path.is_file() {
        fs::read(path).unwrap()
    } else {
        Vec::new()
    }
}

#[test]
fn every_leaf_is_signed_by_its_own_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    for spec in &specs {
        let cert = store.inspect(spec).unwrap();
        for authority in Authority::ALL {
            let signed = cert.is_signed_by(&ca_info(&store, authority));
            assert_eq!(
                signed,
                authority == spec.issuer,
                "{spec} against the {authority} CA"
            );
        }
        assert_eq!(cert.issuer, format!("CN={}", spec.issuer.common_name()));
    }
    for authority in Authority::ALL {
        let ca = ca_info(&store, authority);
        assert!(ca.is_signed_by(&ca), "{authority} is self-signed");
    }
}

#[test]
fn key_usages_follow_the_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    for spec in &specs {
        let cert = store.inspect(spec).unwrap();
        assert!(!cert.is_ca, "{spec}");
        // ECDSA keys: digitalSignature only (keyEncipherment is for RSA key transport).
        assert_eq!(cert.key_usages, ["digitalSignature"], "{spec}");
        let expected: &[&str] = match spec.purpose {
            Purpose::Server => &["serverAuth"],
            Purpose::Client => &["clientAuth"],
            Purpose::Peer => &["serverAuth", "clientAuth"],
        };
        assert_eq!(cert.extended_key_usages, expected, "{spec}");
        assert_eq!(cert.public_key, "ECDSA-256");
    }
    let specs_by_name = |name: &str| spec(&specs, "node1", name).purpose;
    assert_eq!(specs_by_name("apiserver"), Purpose::Server);
    assert_eq!(specs_by_name("etcd-server"), Purpose::Peer);
    assert_eq!(specs_by_name("apiserver-etcd-client"), Purpose::Client);

    for authority in Authority::ALL {
        let ca = ca_info(&store, authority);
        assert!(ca.is_ca);
        assert_eq!(
            ca.key_usages,
            ["digitalSignature", "keyCertSign", "cRLSign"]
        );
        assert!(ca.extended_key_usages.is_empty());
        assert_eq!(ca.common_name.as_deref(), Some(authority.common_name()));
    }
}

#[test]
fn rsa_keys_also_get_key_encipherment() {
    let dir = tempfile::tempdir().unwrap();
    let options = IssueOptions {
        key_algorithm: KeyAlgorithm::Rsa2048,
        ..IssueOptions::default()
    };
    let store = PkiStore::new(dir.path().join("pki"), options);
    let specs = common::all_specs(&common::lab_pki());
    let apiserver = spec(&specs, "node1", "apiserver").clone();
    store
        .ensure(std::slice::from_ref(&apiserver), now())
        .unwrap();
    let cert = store.inspect(&apiserver).unwrap();
    assert_eq!(cert.key_usages, ["digitalSignature", "keyEncipherment"]);
    assert_eq!(cert.public_key, "RSA-2048");
    assert!(cert.is_signed_by(&ca_info(&store, Authority::Kubernetes)));
}

#[test]
fn certificates_carry_the_names_of_their_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    for spec in &specs {
        let cert = store.inspect(spec).unwrap();
        assert_eq!(spec.difference(&cert), None, "{spec}");
    }
    let apiserver = store.inspect(spec(&specs, "node2", "apiserver")).unwrap();
    assert_eq!(apiserver.subject, "CN=kube-apiserver");
    assert!(
        apiserver
            .dns_names
            .contains(&"kubernetes.default.svc.cluster.local".to_owned())
    );
    assert!(
        apiserver
            .ip_addresses
            .contains(&"10.96.0.1".parse().unwrap())
    );
    assert!(
        apiserver
            .ip_addresses
            .contains(&"172.29.7.12".parse().unwrap())
    );
    let admin = store.inspect(spec(&specs, "node2", "admin.conf")).unwrap();
    assert_eq!(
        admin.subject,
        "O=kubeadm:cluster-admins, CN=kubernetes-admin"
    );
    let etcd = store.inspect(spec(&specs, "node3", "etcd-peer")).unwrap();
    assert_eq!(etcd.common_name.as_deref(), Some("node3"));
    assert!(etcd.ip_addresses.contains(&"::1".parse().unwrap()));
}

#[test]
fn validity_is_explicit_and_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let issued_at = now();
    let options = IssueOptions {
        leaf_validity: Duration::days(90),
        ..IssueOptions::default()
    };
    let (store, specs) = populated_store(dir.path(), options, issued_at);
    let start = truncated(issued_at);
    let ca = ca_info(&store, Authority::Kubernetes);
    assert_eq!(ca.not_after, start + Duration::days(3650));
    assert_eq!(ca.not_before, start - Duration::minutes(5));
    for spec in &specs {
        let cert = store.inspect(spec).unwrap();
        assert_eq!(cert.not_after, start + Duration::days(90), "{spec}");
        assert_eq!(cert.not_before, start - Duration::minutes(5), "{spec}");
        assert!(cert.not_after.year() < 2100, "rcgen's 4096 default leaked");
        assert_eq!(cert.days_left(issued_at), 89, "{spec}");
    }
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let issued_at = now();
    let options = IssueOptions {
        ca_validity: Duration::days(30),
        ..IssueOptions::default()
    };
    let (store, specs) = populated_store(dir.path(), options, issued_at);
    let cert = store.inspect(spec(&specs, "node1", "apiserver")).unwrap();
    assert_eq!(
        cert.not_after,
        ca_info(&store, Authority::Kubernetes).not_after
    );
}

#[test]
fn a_one_day_certificate_is_expiring_within_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let options = IssueOptions {
        leaf_validity: Duration::days(1),
        ..IssueOptions::default()
    };
    let (store, specs) = populated_store(dir.path(), options, now());
    let cert = store.inspect(spec(&specs, "node1", "apiserver")).unwrap();
    assert_eq!(
        renewal_decision(&cert, now(), Duration::days(30)),
        RenewalDecision::ExpiringSoon
    );
    assert_eq!(
        renewal_decision(&cert, now(), Duration::hours(1)),
        RenewalDecision::Ok
    );
    assert_eq!(cert.days_left(now()), 0);
}

#[test]
fn a_certificate_past_its_not_after_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    // Issued 400 days ago for 365 days: expired for 35 days.
    let (store, specs) = populated_store(
        dir.path(),
        IssueOptions::default(),
        now() - Duration::days(400),
    );
    let cert = store.inspect(spec(&specs, "node2", "etcd-server")).unwrap();
    assert!(cert.not_after < now());
    assert_eq!(
        renewal_decision(&cert, now(), Duration::days(30)),
        RenewalDecision::Expired
    );
    assert_eq!(cert.days_left(now()), -35);
    // The CA, valid 10 years, is fine.
    let ca = ca_info(&store, Authority::Etcd);
    assert_eq!(
        renewal_decision(&ca, now(), Duration::days(30)),
        RenewalDecision::Ok
    );
}

#[test]
fn renew_reissues_the_same_subject_and_names_with_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(
        dir.path(),
        IssueOptions::default(),
        now() - Duration::days(400),
    );
    let ca_before = fs::read(store.root().join("etcd/ca.crt")).unwrap();
    for name in ["etcd-server", "admin.conf"] {
        let spec = spec(&specs, "node1", name);
        let before = store.inspect(spec).unwrap();
        let renewed_at = now();

        let renewal = store.renew(spec, renewed_at).unwrap();

        let after = store.inspect(spec).unwrap();
        assert_eq!(renewal.decision, RenewalDecision::Expired);
        assert_eq!(renewal.previous_not_after, Some(before.not_after));
        assert_eq!(renewal.not_after, after.not_after);
        assert_eq!(after.not_after, truncated(renewed_at) + Duration::days(365));
        assert_eq!(after.subject, before.subject);
        assert_eq!(after.dns_names, before.dns_names);
        assert_eq!(after.ip_addresses, before.ip_addresses);
        assert_eq!(after.extended_key_usages, before.extended_key_usages);
        assert_ne!(after.serial, before.serial);
        assert_ne!(
            after.public_key_der(),
            before.public_key_der(),
            "key rotated"
        );
        assert!(after.is_signed_by(&ca_info(&store, spec.issuer)));
    }
    // The CA itself is left alone.
    assert_eq!(
        fs::read(store.root().join("etcd/ca.crt")).unwrap(),
        ca_before
    );
    // The renewed pair is consistent: ensure finds nothing to repair.
    assert!(store.ensure(&specs, now()).unwrap().is_noop());
}

#[test]
fn renew_expiring_renews_only_what_the_threshold_selects() {
    let dir = tempfile::tempdir().unwrap();
    let short = IssueOptions {
        leaf_validity: Duration::days(10),
        ..IssueOptions::default()
    };
    let (short_store, specs) = populated_store(dir.path(), short, now());
    let store = PkiStore::new(short_store.root(), IssueOptions::default());

    assert!(
        store
            .renew_expiring(&specs, now(), RenewScope::ExpiringWithin(Duration::days(5)))
            .unwrap()
            .is_empty()
    );
    let renewed = store
        .renew_expiring(
            &specs,
            now(),
            RenewScope::ExpiringWithin(Duration::days(30)),
        )
        .unwrap();
    assert_eq!(renewed.len(), specs.len());
    assert!(
        renewed
            .iter()
            .all(|renewal| renewal.decision == RenewalDecision::ExpiringSoon)
    );
    // Renewed for a year now: nothing left within 30 days, but `--all` still renews all.
    assert!(
        store
            .renew_expiring(
                &specs,
                now(),
                RenewScope::ExpiringWithin(Duration::days(30))
            )
            .unwrap()
            .is_empty()
    );
    let all = store
        .renew_expiring(&specs, now(), RenewScope::All)
        .unwrap();
    assert_eq!(all.len(), specs.len());
    assert!(
        all.iter()
            .all(|renewal| renewal.decision == RenewalDecision::Ok)
    );
}

#[test]
fn a_new_vip_reissues_what_names_or_points_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = populated_store(dir.path(), IssueOptions::default(), now());
    let inventory = common::inventory("lab-3");
    let mut addresses = ClusterAddresses::declared(&inventory);
    addresses.control_plane_vip = Some("172.29.7.100".parse().unwrap());
    let specs = common::all_specs(&cluster_certificates(&inventory, &addresses).unwrap());

    let report = store.ensure(&specs, now()).unwrap();

    let mut changed: Vec<(String, String, String)> = report
        .changed()
        .map(|entry| {
            let Outcome::Reissued { reason } = &entry.outcome else {
                panic!("{entry:?}");
            };
            (
                entry.node.clone().unwrap(),
                entry.name.clone(),
                reason.clone(),
            )
        })
        .collect();
    changed.sort();
    let names: Vec<(&str, &str)> = changed
        .iter()
        .map(|(node, name, _)| (node.as_str(), name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("node1", "admin.conf"),
            ("node1", "apiserver"),
            ("node2", "admin.conf"),
            ("node2", "apiserver"),
            ("node3", "admin.conf"),
            ("node3", "apiserver"),
        ]
    );
    assert!(changed[1].2.contains("172.29.7.100"), "{}", changed[1].2);
    let apiserver = store.inspect(spec(&specs, "node1", "apiserver")).unwrap();
    assert!(
        apiserver
            .ip_addresses
            .contains(&"172.29.7.100".parse().unwrap())
    );
}

#[test]
fn a_key_that_does_not_belong_to_its_certificate_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let node1 = store.node_dir("node1");
    fs::copy(
        node1.join("pki/front-proxy-client.key"),
        node1.join("pki/apiserver.key"),
    )
    .unwrap();

    let report = store.ensure(&specs, now()).unwrap();

    let changed: Vec<_> = report.changed().collect();
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0].name, "apiserver");
    assert_eq!(
        changed[0].outcome,
        Outcome::Reissued {
            reason: "its key does not belong to it".to_owned()
        }
    );
    let cert = store.inspect(spec(&specs, "node1", "apiserver")).unwrap();
    let key = fs::read_to_string(node1.join("pki/apiserver.key")).unwrap();
    assert_eq!(public_key_of(&key).unwrap(), cert.public_key_der());
}

#[test]
fn a_missing_or_corrupt_leaf_is_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let node2 = store.node_dir("node2");
    fs::remove_file(node2.join("pki/etcd/peer.crt")).unwrap();
    fs::write(node2.join("scheduler.conf"), "not: [a kubeconfig").unwrap();

    let report = store.ensure(&specs, now()).unwrap();

    let changed: Vec<_> = report
        .changed()
        .map(|entry| (entry.name.as_str(), entry.outcome.clone()))
        .collect();
    assert_eq!(changed.len(), 2, "{changed:#?}");
    assert!(changed.contains(&("etcd-peer", Outcome::Created)));
    assert!(matches!(
        &changed.iter().find(|(name, _)| *name == "scheduler.conf").unwrap().1,
        Outcome::Reissued { reason } if reason.starts_with("unreadable")
    ));
}

#[test]
fn leaves_of_a_replaced_ca_are_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    for file in ["front-proxy-ca.crt", "front-proxy-ca.key"] {
        fs::remove_file(store.root().join(file)).unwrap();
    }

    let report = store.ensure(&specs, now()).unwrap();

    let changed: Vec<_> = report
        .changed()
        .map(|entry| (entry.name.as_str(), entry.outcome.clone()))
        .collect();
    let reissued = Outcome::Reissued {
        reason: "not signed by the current front-proxy-ca CA".to_owned(),
    };
    assert_eq!(
        changed,
        [
            ("front-proxy-ca", Outcome::Created),
            ("front-proxy-client", reissued.clone()),
            ("front-proxy-client", reissued.clone()),
            ("front-proxy-client", reissued),
        ]
    );
}

#[test]
fn half_of_a_ca_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    fs::remove_file(store.root().join("etcd/ca.key")).unwrap();

    let error = store.ensure(&specs, now()).unwrap_err();

    assert!(matches!(error, PkiError::HalfPair { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("etcd/ca.crt") && message.contains("etcd/ca.key"),
        "{message}"
    );
    assert!(
        !store.root().join("etcd/ca.key").exists(),
        "nothing regenerated"
    );
}

#[test]
fn a_ca_key_whose_certificate_was_lost_is_re_signed_and_its_leaves_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let key_before = fs::read(store.root().join("ca.key")).unwrap();
    fs::remove_file(store.root().join("ca.crt")).unwrap();

    let report = store.ensure(&specs, now()).unwrap();

    let changed: Vec<_> = report.changed().map(|entry| entry.name.as_str()).collect();
    // The CA certificate, and the kubeconfigs embedding it; every leaf still verifies.
    assert_eq!(changed[0], "ca", "{changed:?}");
    assert!(
        changed[1..].iter().all(|name| name.ends_with(".conf")),
        "{changed:?}"
    );
    assert_eq!(fs::read(store.root().join("ca.key")).unwrap(), key_before);
    assert_eq!(mode(&store.root().join("ca.crt")), 0o644);
    let apiserver = store.inspect(spec(&specs, "node1", "apiserver")).unwrap();
    assert!(apiserver.is_signed_by(&ca_info(&store, Authority::Kubernetes)));
    assert!(store.ensure(&specs, now()).unwrap().is_noop());
}

#[test]
fn a_corrupt_ca_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    fs::write(
        store.root().join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    let error = store.ensure(&specs, now()).unwrap_err();

    assert!(error.to_string().contains("ca.crt"), "{error}");
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn a_ca_bundle_signs_with_the_certificate_of_its_key() {
    // During a CA rotation ca.crt trusts two CAs; the one matching ca.key signs.
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let other = tempfile::tempdir().unwrap();
    let (other_store, _) = populated_store(other.path(), IssueOptions::default(), now());
    let ca_path = store.root().join("ca.crt");
    let bundle = format!(
        "{}{}",
        fs::read_to_string(other_store.root().join("ca.crt")).unwrap(),
        fs::read_to_string(&ca_path).unwrap()
    );
    fs::write(&ca_path, &bundle).unwrap();

    let ca = store
        .load_authority(Authority::Kubernetes)
        .unwrap()
        .unwrap();
    assert_eq!(ca.cert_pem(), bundle);
    assert_eq!(
        ca.info().serial,
        metalk8s_pki::certificates_from_pem(&bundle).unwrap()[1].serial
    );
    let report = store.ensure(&specs, now()).unwrap();
    // The leaves still verify; only the kubeconfigs change, to trust the whole bundle.
    assert!(
        report.changed().all(|entry| entry.name.ends_with(".conf")),
        "{report:#?}"
    );
    let admin = fs::read_to_string(store.node_dir("node1").join("admin.conf")).unwrap();
    assert_eq!(
        Kubeconfig::from_yaml(&admin)
            .unwrap()
            .certificate_authority_pem()
            .unwrap(),
        bundle
    );
}

#[test]
fn kubeconfigs_embed_the_ca_the_server_and_a_matching_client_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = populated_store(dir.path(), IssueOptions::default(), now());
    let ca_pem = fs::read_to_string(store.root().join("ca.crt")).unwrap();
    for (file, user) in [
        ("admin.conf", "kubernetes-admin"),
        ("controller-manager.conf", "system:kube-controller-manager"),
        ("scheduler.conf", "system:kube-scheduler"),
    ] {
        let text = fs::read_to_string(store.node_dir("node3").join(file)).unwrap();
        let config = Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(config.current_context, format!("{user}@lab"));
        assert_eq!(config.server(), Some("https://172.29.7.13:6443"));
        assert_eq!(config.certificate_authority_pem().unwrap(), ca_pem);
        let cert = CertInfo::from_pem(&config.client_certificate_pem().unwrap()).unwrap();
        assert_eq!(cert.common_name.as_deref(), Some(user));
        assert_eq!(cert.extended_key_usages, ["clientAuth"]);
        assert_eq!(
            public_key_of(&config.client_key_pem().unwrap()).unwrap(),
            cert.public_key_der()
        );
    }
}

#[test]
fn service_account_public_key_is_derived_from_the_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let sa_pub = store.root().join("sa.pub");
    let original = fs::read_to_string(&sa_pub).unwrap();
    assert!(original.starts_with("-----BEGIN PUBLIC KEY-----"));
    fs::remove_file(&sa_pub).unwrap();

    let report = store.ensure(&specs, now()).unwrap();

    let sa = report
        .entries
        .iter()
        .find(|entry| entry.name == "sa")
        .unwrap();
    assert!(matches!(sa.outcome, Outcome::Reissued { .. }), "{sa:?}");
    assert_eq!(fs::read_to_string(&sa_pub).unwrap(), original);
    assert_eq!(mode(&sa_pub), 0o644);
}

#[test]
fn placements_give_ca_keys_to_control_planes_only() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = common::inventory("split-roles");
    let mut addresses = ClusterAddresses::declared(&inventory);
    addresses
        .control_plane_ips
        .insert("cp1".to_owned(), "10.10.0.11".parse().unwrap());
    let pki = cluster_certificates(&inventory, &addresses).unwrap();
    let store = PkiStore::new(dir.path().join("pki"), IssueOptions::default());
    let targets = |node: &str| -> Vec<(String, u32)> {
        let node = pki.iter().find(|pki| pki.node == node).unwrap();
        store
            .placements(node)
            .into_iter()
            .map(|placement| (placement.target.display().to_string(), placement.mode))
            .collect()
    };
    assert_eq!(targets("worker1"), [("pki/ca.crt".to_owned(), 0o644)]);
    let etcd = targets("etcd1");
    assert!(etcd.contains(&("pki/etcd/ca.crt".to_owned(), 0o644)));
    assert!(etcd.contains(&("pki/etcd/server.key".to_owned(), 0o600)));
    assert!(
        !etcd.iter().any(|(target, _)| target.ends_with("ca.key")),
        "{etcd:?}"
    );
    let control_plane = targets("cp1");
    for expected in [
        ("pki/ca.key", 0o600),
        ("pki/front-proxy-ca.key", 0o600),
        ("pki/sa.key", 0o600),
        ("pki/sa.pub", 0o644),
        ("pki/apiserver.crt", 0o644),
        ("pki/apiserver.key", 0o600),
        ("admin.conf", 0o600),
    ] {
        assert!(
            control_plane.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} missing from {control_plane:?}"
        );
    }
    assert!(!control_plane.contains(&("pki/etcd/ca.key".to_owned(), 0o600)));
}
