//! Reading certificates back: what a PEM certificate says, how long it has left, whether it
//! must be renewed, and whether a CA signed it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::ParseError;

/// What one certificate says, in the terms `metalk8s certs check` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// The subject as OpenSSL prints it in one line (`CN=kube-apiserver`).
    pub subject: String,
    pub common_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    pub issuer: String,
    /// Hexadecimal, as `openssl x509 -serial` prints it.
    pub serial: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<IpAddr>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    /// `ECDSA-256`, `RSA-2048`…
    pub public_key: String,
    /// RFC 5280 names: `digitalSignature`, `keyEncipherment`, `keyCertSign`…
    pub key_usages: Vec<String>,
    /// `serverAuth`, `clientAuth`, or the OID of any other usage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extended_key_usages: Vec<String>,
    pub sha256_fingerprint: String,
    /// The DER certificate, kept to verify signatures and compare keys later.
    #[serde(skip)]
    pub der: Vec<u8>,
}

impl CertInfo {
    /// The first certificate of a PEM text (a bundle may hold several).
    pub fn from_pem(pem: &str) -> Result<CertInfo, ParseError> {
        certificates_from_pem(pem)?
            .into_iter()
            .next()
            .ok_or(ParseError::NoPemBlock {
                label: "CERTIFICATE",
            })
    }

    pub fn from_der(der: &[u8]) -> Result<CertInfo, ParseError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(ParseError::X509)?;
        describe(&cert, der)
    }

    /// Whole days until `notAfter`, negative once expired; what `certs check` prints.
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }

    /// The DER SubjectPublicKeyInfo, to tell whether a private key belongs to this
    /// certificate.
    pub fn public_key_der(&self) -> Vec<u8> {
        X509Certificate::from_der(&self.der)
            .map(|(_, cert)| cert.public_key().raw.to_vec())
            .unwrap_or_default()
    }

    /// kubeadm's pin of a CA (`caCertHashes`, `--discovery-token-ca-cert-hash`): `sha256:`
    /// and the hex sha256 of the certificate's DER SubjectPublicKeyInfo.
    pub fn kubeadm_pin(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.public_key_der()))
        )
    }

    /// Whether `authority`'s key produced this certificate's signature (and its issuer
    /// name is the authority's subject): a cryptographic check, not a path validation.
    pub fn is_signed_by(&self, authority: &CertInfo) -> bool {
        let (Ok((_, leaf)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&authority.der),
        ) else {
            return false;
        };
        leaf.issuer().as_raw() == ca.subject().as_raw()
            && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }
}

/// Every certificate of a PEM text, in order; other blocks (keys) are skipped.
pub fn certificates_from_pem(pem: &str) -> Result<Vec<CertInfo>, ParseError> {
    Pem::iter_from_buffer(pem.as_bytes())
        .filter(|block| !matches!(block, Ok(block) if block.label != "CERTIFICATE"))
        .map(|block| CertInfo::from_der(&block.map_err(ParseError::Pem)?.contents))
        .collect()
}

fn describe(cert: &X509Certificate<'_>, der: &[u8]) -> Result<CertInfo, ParseError> {
    let attribute_strings = |values: Vec<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        values
            .into_iter()
            .filter_map(|value| value.as_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let (dns_names, ip_addresses) = alt_names(cert)?;
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        common_name: attribute_strings(cert.subject().iter_common_name().collect())
            .into_iter()
            .next(),
        organizations: attribute_strings(cert.subject().iter_organization().collect()),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        dns_names,
        ip_addresses,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
        public_key: public_key_name(cert),
        key_usages: key_usages(cert)?,
        extended_key_usages: extended_key_usages(cert)?,
        sha256_fingerprint: hex::encode(Sha256::digest(der)),
        der: der.to_vec(),
    })
}

fn alt_names(cert: &X509Certificate<'_>) -> Result<(Vec<String>, Vec<IpAddr>), ParseError> {
    let extension = cert
        .subject_alternative_name()
        .map_err(|source| ParseError::Extension {
            extension: "subjectAltName",
            source,
        })?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    for name in extension.iter().flat_map(|ext| &ext.value.general_names) {
        match name {
            GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => ip_addresses.extend(ip_from_bytes(bytes)),
            _ => {}
        }
    }
    Ok((dns_names, ip_addresses))
}

pub(crate) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

fn public_key_name(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA-{}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => format!("ECDSA-{}", point.key_size()),
        Ok(other) => format!("other-{}", other.key_size()),
        Err(_) => "unknown".to_owned(),
    }
}

fn key_usages(cert: &X509Certificate<'_>) -> Result<Vec<String>, ParseError> {
    let Some(usage) = cert.key_usage().map_err(|source| ParseError::Extension {
        extension: "keyUsage",
        source,
    })?
    else {
        return Ok(Vec::new());
    };
    let usage = usage.value;
    let flags = [
        (usage.digital_signature(), "digitalSignature"),
        (usage.non_repudiation(), "nonRepudiation"),
        (usage.key_encipherment(), "keyEncipherment"),
        (usage.data_encipherment(), "dataEncipherment"),
        (usage.key_agreement(), "keyAgreement"),
        (usage.key_cert_sign(), "keyCertSign"),
        (usage.crl_sign(), "cRLSign"),
        (usage.encipher_only(), "encipherOnly"),
        (usage.decipher_only(), "decipherOnly"),
    ];
    Ok(flags
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name.to_owned())
        .collect())
}

fn extended_key_usages(cert: &X509Certificate<'_>) -> Result<Vec<String>, ParseError> {
    let Some(usage) = cert
        .extended_key_usage()
        .map_err(|source| ParseError::Extension {
            extension: "extendedKeyUsage",
            source,
        })?
    else {
        return Ok(Vec::new());
    };
    let usage = usage.value;
    let known = [
        (usage.any, "any"),
        (usage.server_auth, "serverAuth"),
        (usage.client_auth, "clientAuth"),
        (usage.code_signing, "codeSigning"),
        (usage.email_protection, "emailProtection"),
        (usage.time_stamping, "timeStamping"),
        (usage.ocsp_signing, "OCSPSigning"),
    ];
    Ok(known
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name.to_owned())
        .chain(usage.other.iter().map(|oid| oid.to_id_string()))
        .collect())
}

/// What to do about a certificate at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenewalDecision {
    /// Valid for longer than the threshold: leave it.
    Ok,
    /// Still valid, but expires within the threshold: renew it.
    ExpiringSoon,
    /// `notAfter` has passed: every TLS peer already refuses it.
    Expired,
}

/// Whether `cert` must be renewed at `now` when certificates are renewed `threshold`
/// before they expire (`--expiring-within 30d`).
pub fn renewal_decision(
    cert: &CertInfo,
    now: OffsetDateTime,
    threshold: Duration,
) -> RenewalDecision {
    if now >= cert.not_after {
        RenewalDecision::Expired
    } else if cert.not_after - now <= threshold {
        RenewalDecision::ExpiringSoon
    } else {
        RenewalDecision::Ok
    }
}

/// The certificate a file holds, whether a PEM certificate (`apiserver.crt`) or a
/// kubeconfig embedding a client certificate (`admin.conf`): what `certs check` reads on
/// every node.
pub fn certificate_in_file(text: &str) -> Result<CertInfo, ParseError> {
    if text.contains("-----BEGIN CERTIFICATE-----") {
        CertInfo::from_pem(text)
    } else {
        let kubeconfig = crate::kubeconfig::Kubeconfig::from_yaml(text)?;
        CertInfo::from_pem(&kubeconfig.client_certificate_pem()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{CertificateAuthority, IssueOptions};
    use crate::spec::Authority;

    fn ca_issued_at(now: OffsetDateTime, validity_days: i64) -> CertInfo {
        let options = IssueOptions {
            ca_validity: Duration::days(validity_days),
            ..IssueOptions::default()
        };
        CertificateAuthority::generate(Authority::Kubernetes, &options, now)
            .unwrap()
            .info()
            .clone()
    }

    /// The pin kubeadm computes (`openssl x509 -pubkey | openssl pkey -pubin -outform der
    /// | sha256sum`, kubeadm's documented recipe) when openssl is there to ask.
    #[test]
    fn the_kubeadm_pin_is_the_sha256_of_the_public_key_info() {
        let authority = CertificateAuthority::generate(
            Authority::Kubernetes,
            &IssueOptions::default(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let pin = authority.info().kubeadm_pin();
        assert!(pin.starts_with("sha256:") && pin.len() == 7 + 64, "{pin}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, authority.cert_pem()).unwrap();
        let script = format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
            path.display()
        );
        let Ok(output) = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
        else {
            eprintln!("skipped the comparison with openssl: no shell");
            return;
        };
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || text.trim().is_empty() {
            eprintln!("skipped the comparison with openssl: not installed");
            return;
        }
        assert_eq!(
            pin,
            format!("sha256:{}", text.split_whitespace().next().unwrap())
        );
    }

    #[test]
    fn renewal_decision_at_the_boundaries() {
        let issued = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let cert = ca_issued_at(issued, 40);
        let not_after = issued + Duration::days(40);
        let threshold = Duration::days(30);
        let at = |time| renewal_decision(&cert, time, threshold);
        assert_eq!(at(issued), RenewalDecision::Ok);
        assert_eq!(
            at(not_after - threshold - Duration::seconds(1)),
            RenewalDecision::Ok
        );
        assert_eq!(at(not_after - threshold), RenewalDecision::ExpiringSoon);
        assert_eq!(
            at(not_after - Duration::seconds(1)),
            RenewalDecision::ExpiringSoon
        );
        assert_eq!(at(not_after), RenewalDecision::Expired);
        assert_eq!(cert.days_left(not_after + Duration::days(3)), -3);
    }

    #[test]
    fn a_bundle_yields_every_certificate_in_order() {
        let now = OffsetDateTime::now_utc();
        let one = ca_issued_at(now, 10);
        let two = ca_issued_at(now, 20);
        let pem = |info: &CertInfo| {
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64_lines(&info.der)
            )
        };
        let bundle = format!("{}junk between blocks\n{}", pem(&one), pem(&two));
        let parsed = certificates_from_pem(&bundle).unwrap();
        assert_eq!(parsed, [one, two]);
    }

    fn base64_lines(der: &[u8]) -> String {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        text.as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn text_without_a_certificate_is_an_error() {
        assert!(matches!(
            CertInfo::from_pem("nothing here"),
            Err(ParseError::NoPemBlock { .. })
        ));
        assert!(
            certificate_in_file(
                "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"
            )
            .is_err()
        );
    }
}
