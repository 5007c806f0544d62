//! The issued PKI as other implementations see it: OpenSSL's verifier and text dump, and a
//! real TLS handshake between rustls peers (webpki path validation, names, usages, time).
//!
//! OpenSSL must be installed (Debian package `openssl`); these tests fail, saying so, when
//! it is not.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output as ProcessOutput};
use std::sync::Arc;

use metalk8s_pki::kubeconfig::Kubeconfig;
use metalk8s_pki::{
    Authority, CertSpec, Duration, IssueOptions, KeyAlgorithm, Output, PkiStore, Purpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use common::{now, populated_store, spec};

fn openssl(args: &[&str]) -> ProcessOutput {
    Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `openssl` ({error}): these interoperability tests need it; \
             install the Debian package `openssl`"
            )
        })
}

fn openssl_ok(args: &[&str]) -> String {
    let output = openssl(args);
    assert!(
        output.status.success(),
        "openssl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The PEM certificate of `spec` as a file: its `.crt`, or extracted from its kubeconfig.
fn certificate_file(store: &PkiStore, spec: &CertSpec, scratch: &Path) -> PathBuf {
    match spec.output {
        Output::Files { .. } => store.cert_path(spec),
        Output::Kubeconfig { .. } => {
            let config =
                Kubeconfig::from_yaml(&fs::read_to_string(store.cert_path(spec)).unwrap()).unwrap();
            let path = scratch.join(format!("{}-{}.crt", spec.node, spec.name));
            fs::write(&path, config.client_certificate_pem().unwrap()).unwrap();
            path
        }
    }
}

fn key_file(store: &PkiStore, spec: &CertSpec, scratch: &Path) -> PathBuf {
    match spec.output {
        Output::Files { .. } => store.cert_path(spec).with_extension("key"),
        Output::Kubeconfig { .. } => {
            let config =
                Kubeconfig::from_yaml(&fs::read_to_string(store.cert_path(spec)).unwrap()).unwrap();
            let path = scratch.join(format!("{}-{}.key", spec.node, spec.name));
            fs::write(&path, config.client_key_pem().unwrap()).unwrap();
            path
        }
    }
}

fn ca_file(store: &PkiStore, authority: Authority) -> String {
    store
        .root()
        .join(authority.cert_path())
        .display()
        .to_string()
}

#[test]
fn openssl_verifies_every_leaf_for_its_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    for spec in &specs {
        let leaf = certificate_file(&store, spec, dir.path())
            .display()
            .to_string();
        let ca = ca_file(&store, spec.issuer);
        let verified = openssl_ok(&["verify", "-CAfile", &ca, &leaf]);
        assert!(verified.trim_end().ends_with(": OK"), "{spec}: {verified}");

        // OpenSSL's purpose checks read the key usage and extended key usage.
        for (purpose, allowed) in [
            ("sslserver", spec.purpose.server_auth()),
            ("sslclient", spec.purpose.client_auth()),
        ] {
            let output = openssl(&["verify", "-purpose", purpose, "-CAfile", &ca, &leaf]);
            assert_eq!(output.status.success(), allowed, "{spec} as {purpose}");
        }
        // Another CA does not vouch for it.
        let other = Authority::ALL
            .into_iter()
            .find(|authority| *authority != spec.issuer)
            .unwrap();
        let output = openssl(&["verify", "-CAfile", &ca_file(&store, other), &leaf]);
        assert!(!output.status.success(), "{spec} verified by {other}");
    }
}

#[test]
fn openssl_reads_subjects_names_usages_and_validity() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let text = |path: &Path| {
        openssl_ok(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            &path.display().to_string(),
        ])
    };

    let apiserver = text(&store.cert_path(spec(&specs, "node1", "apiserver")));
    for expected in [
        "Issuer: CN = kubernetes",
        "Subject: CN = kube-apiserver",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "X509v3 Authority Key Identifier",
        "DNS:node1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, \
         DNS:kubernetes.default.svc.cluster.local, IP Address:172.29.7.11, \
         IP Address:10.96.0.1, IP Address:127.0.0.1",
        "ASN1 OID: prime256v1",
    ] {
        assert!(
            apiserver.contains(expected),
            "{expected:?} missing:\n{apiserver}"
        );
    }
    assert!(!apiserver.contains("Key Encipherment"), "{apiserver}");
    assert!(
        !apiserver.contains("4096"),
        "rcgen's default notAfter leaked:\n{apiserver}"
    );

    let admin_path = certificate_file(&store, spec(&specs, "node1", "admin.conf"), dir.path());
    let admin = text(&admin_path);
    assert!(
        admin.contains("Subject: O = kubeadm:cluster-admins, CN = kubernetes-admin"),
        "{admin}"
    );
    assert!(admin.contains("TLS Web Client Authentication"), "{admin}");

    let peer = text(&store.cert_path(spec(&specs, "node2", "etcd-peer")));
    assert!(
        peer.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{peer}"
    );
    assert!(peer.contains("IP Address:0:0:0:0:0:0:0:1"), "{peer}");

    let ca = text(&store.root().join("etcd/ca.crt"));
    for expected in [
        "Subject: CN = etcd-ca",
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(ca.contains(expected), "{expected:?} missing:\n{ca}");
    }

    // notAfter as OpenSSL reads it: one year from now, not 4096.
    let end = openssl_ok(&[
        "x509",
        "-noout",
        "-enddate",
        "-in",
        &store
            .cert_path(spec(&specs, "node3", "apiserver"))
            .display()
            .to_string(),
    ]);
    let year = (now() + Duration::days(365)).year().to_string();
    assert!(end.trim_end().ends_with(&format!("{year} GMT")), "{end}");
}

#[test]
fn openssl_sees_expired_certificates_as_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(
        dir.path(),
        IssueOptions::default(),
        now() - Duration::days(400),
    );
    let leaf = store
        .cert_path(spec(&specs, "node1", "etcd-server"))
        .display()
        .to_string();
    assert!(
        !openssl(&["x509", "-checkend", "0", "-noout", "-in", &leaf])
            .status
            .success()
    );
    let ca = ca_file(&store, Authority::Etcd);
    let verify = openssl(&["verify", "-CAfile", &ca, &leaf]);
    assert!(!verify.status.success());
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("certificate has expired")
            || String::from_utf8_lossy(&verify.stderr).contains("certificate has expired")
    );
    // Renewed, it verifies again.
    store
        .renew(spec(&specs, "node1", "etcd-server"), now())
        .unwrap();
    assert!(openssl(&["verify", "-CAfile", &ca, &leaf]).status.success());
    assert!(
        openssl(&["x509", "-checkend", "0", "-noout", "-in", &leaf])
            .status
            .success()
    );
}

#[test]
fn openssl_matches_every_key_to_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let root = dir.path().join(format!("{algorithm:?}"));
        let options = IssueOptions {
            key_algorithm: algorithm,
            ..IssueOptions::default()
        };
        let store = PkiStore::new(root.join("pki"), options);
        let specs = common::all_specs(&common::lab_pki());
        let node1: Vec<CertSpec> = specs
            .into_iter()
            .filter(|spec| spec.node == "node1")
            .collect();
        store.ensure(&node1, now()).unwrap();
        let public_of_key =
            |key: &Path| openssl_ok(&["pkey", "-pubout", "-in", &key.display().to_string()]);
        let public_of_cert = |cert: &Path| {
            openssl_ok(&[
                "x509",
                "-noout",
                "-pubkey",
                "-in",
                &cert.display().to_string(),
            ])
        };
        for spec in &node1 {
            assert_eq!(
                public_of_key(&key_file(&store, spec, dir.path())),
                public_of_cert(&certificate_file(&store, spec, dir.path())),
                "{spec} ({algorithm:?})"
            );
        }
        for authority in Authority::ALL {
            assert_eq!(
                public_of_key(&store.root().join(authority.key_path())),
                public_of_cert(&store.root().join(authority.cert_path())),
                "{authority}"
            );
        }
        assert_eq!(
            public_of_key(&store.root().join("sa.key")),
            fs::read_to_string(store.root().join("sa.pub")).unwrap(),
        );
        // OpenSSL parses the keys as sound, not merely as PEM.
        openssl_ok(&[
            "pkey",
            "-check",
            "-noout",
            "-in",
            &store.root().join("sa.key").display().to_string(),
        ]);
    }
}

#[test]
fn openssl_verifies_leaves_against_a_two_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let other = tempfile::tempdir().unwrap();
    let (other_store, _) = populated_store(other.path(), IssueOptions::default(), now());
    // Both CAs are named CN=kubernetes: OpenSSL must pick the right one by key identifier.
    let bundle = dir.path().join("bundle.crt");
    fs::write(
        &bundle,
        format!(
            "{}{}",
            fs::read_to_string(other_store.root().join("ca.crt")).unwrap(),
            fs::read_to_string(store.root().join("ca.crt")).unwrap()
        ),
    )
    .unwrap();
    let leaf = store
        .cert_path(spec(&specs, "node1", "apiserver"))
        .display()
        .to_string();
    openssl_ok(&["verify", "-CAfile", &bundle.display().to_string(), &leaf]);
    let other_leaf = other_store
        .cert_path(spec(&specs, "node1", "apiserver"))
        .display()
        .to_string();
    openssl_ok(&[
        "verify",
        "-CAfile",
        &bundle.display().to_string(),
        &other_leaf,
    ]);
}

// --- rustls: a real TLS 1.3 handshake with mutual authentication --------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca_pem: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(roots)
}

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn identity(store: &PkiStore, spec: &CertSpec, scratch: &Path) -> Identity {
    let cert = certificate_file(store, spec, scratch);
    let key = key_file(store, spec, scratch);
    Identity {
        chain: CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(Result::unwrap)
            .collect(),
        key: PrivateKeyDer::from_pem_file(&key).unwrap(),
    }
}

/// Handshakes a client presenting `client` to a server presenting `server` that requires
/// a client certificate from `client_ca`, the client trusting `server_ca` and dialing
/// `name`.
fn handshake(
    server: Identity,
    client_ca: &Path,
    client: Identity,
    server_ca: &Path,
    name: &str,
) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(client_ca), provider())
        .build()
        .unwrap();
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server.chain, server.key)
        .unwrap();
    let client_config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(server_ca))
        .with_client_auth_cert(client.chain, client.key)
        .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut client =
        Connection::from(ClientConnection::new(Arc::new(client_config), name).unwrap());
    let mut server = Connection::from(ServerConnection::new(Arc::new(server_config)).unwrap());
    for _ in 0..10 {
        transfer(&mut client, &mut server)?;
        transfer(&mut server, &mut client)?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut reader = &bytes[..];
    while !reader.is_empty() {
        to.read_tls(&mut reader).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

#[test]
fn rustls_clients_reach_the_api_server_by_every_name() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let ca = store.root().join("ca.crt");
    for name in [
        "node1",
        "kubernetes",
        "kubernetes.default.svc.cluster.local",
        "172.29.7.11",
        "10.96.0.1",
        "127.0.0.1",
    ] {
        handshake(
            identity(&store, spec(&specs, "node1", "apiserver"), dir.path()),
            &ca,
            identity(&store, spec(&specs, "node1", "admin.conf"), dir.path()),
            &ca,
            name,
        )
        .unwrap_or_else(|error| panic!("dialing {name}: {error}"));
    }
    // Another node's address is not in node1's certificate.
    let error = handshake(
        identity(&store, spec(&specs, "node1", "apiserver"), dir.path()),
        &ca,
        identity(&store, spec(&specs, "node1", "admin.conf"), dir.path()),
        &ca,
        "172.29.7.12",
    )
    .unwrap_err();
    assert!(error.to_string().contains("not valid for"), "{error}");
}

#[test]
fn rustls_refuses_a_client_of_another_ca_or_without_client_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let ca = store.root().join("ca.crt");
    let apiserver = || identity(&store, spec(&specs, "node1", "apiserver"), dir.path());
    // Signed by the etcd CA: not a Kubernetes client.
    let other_ca = handshake(
        apiserver(),
        &ca,
        identity(
            &store,
            spec(&specs, "node1", "apiserver-etcd-client"),
            dir.path(),
        ),
        &ca,
        "kubernetes",
    );
    assert!(other_ca.is_err());
    // The right CA but a serving certificate: no clientAuth usage.
    let server_as_client = handshake(
        apiserver(),
        &ca,
        identity(&store, spec(&specs, "node2", "apiserver"), dir.path()),
        &ca,
        "kubernetes",
    );
    assert!(
        server_as_client.unwrap_err().to_string().contains("usage"),
        "a server certificate was accepted as a client"
    );
}

#[test]
fn rustls_etcd_members_and_clients_authenticate_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(dir.path(), IssueOptions::default(), now());
    let etcd_ca = store.root().join("etcd/ca.crt");
    for (server, client, name) in [
        (
            ("node1", "etcd-server"),
            ("node1", "apiserver-etcd-client"),
            "127.0.0.1",
        ),
        (
            ("node1", "etcd-server"),
            ("node2", "etcd-healthcheck-client"),
            "localhost",
        ),
        (
            ("node1", "etcd-peer"),
            ("node2", "etcd-peer"),
            "172.29.7.11",
        ),
        (("node3", "etcd-peer"), ("node1", "etcd-peer"), "node3"),
    ] {
        let server_spec = spec(&specs, server.0, server.1);
        let client_spec = spec(&specs, client.0, client.1);
        assert!(matches!(
            server_spec.purpose,
            Purpose::Peer | Purpose::Server
        ));
        handshake(
            identity(&store, server_spec, dir.path()),
            &etcd_ca,
            identity(&store, client_spec, dir.path()),
            &etcd_ca,
            name,
        )
        .unwrap_or_else(|error| panic!("{client_spec} to {server_spec} as {name}: {error}"));
    }
}

#[test]
fn rustls_refuses_an_expired_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (store, specs) = populated_store(
        dir.path(),
        IssueOptions::default(),
        now() - Duration::days(400),
    );
    let ca = store.root().join("etcd/ca.crt");
    let error = handshake(
        identity(&store, spec(&specs, "node1", "etcd-server"), dir.path()),
        &ca,
        identity(
            &store,
            spec(&specs, "node1", "apiserver-etcd-client"),
            dir.path(),
        ),
        &ca,
        "localhost",
    )
    .unwrap_err();
    assert!(error.to_string().contains("expired"), "{error}");
}
