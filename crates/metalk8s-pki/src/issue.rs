//! Key generation and signing with rcgen (aws-lc-rs underneath): the three CAs, the
//! service-account key pair and leaf certificates from a [`CertSpec`].
//!
//! Every certificate gets explicit `notBefore`/`notAfter` (rcgen would otherwise sign
//! until the year 4096) and a random serial number (rcgen's default derives it from the
//! public key, which would repeat if a key were ever reused).

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData,
    RsaKeySize, SanType, SerialNumber,
};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::error::{ParseError, PkiError};
use crate::inspect::{CertInfo, certificates_from_pem};
use crate::spec::{Authority, CertSpec, Purpose, SubjectAltName};

/// The kind of private key generated for CAs, leaves and the service-account signer.
///
/// ECDSA P-256 is the default: kubeadm supports it (`encryptionAlgorithm: ECDSA-P256`),
/// etcd, the API server (also for service-account tokens, ES256) and Go's TLS accept it,
/// and it is far cheaper to generate and sign with than RSA, which matters when a renewal
/// re-keys every certificate of a cluster on a small bootstrap node. RSA 2048 remains for
/// clients that only accept RSA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    Rsa2048,
}

impl KeyAlgorithm {
    fn generate(self, what: &str) -> Result<KeyPair, PkiError> {
        let generated = match self {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        };
        generated.map_err(|source| PkiError::GenerateKey {
            what: what.to_owned(),
            source,
        })
    }

    /// Leaf key usages for keys of this kind: `keyEncipherment` only means something for
    /// RSA key transport, and RFC 5480 forbids it on ECDSA certificates.
    fn leaf_key_usages(self) -> Vec<KeyUsagePurpose> {
        match self {
            KeyAlgorithm::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
            KeyAlgorithm::Rsa2048 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
        }
    }
}

/// How long certificates live and what keys they get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueOptions {
    pub key_algorithm: KeyAlgorithm,
    /// Lifetime of the CAs: 10 years, as kubeadm, because replacing a CA means touching
    /// every node and every kubeconfig handed out.
    #[serde(with = "duration_seconds")]
    pub ca_validity: Duration,
    /// Lifetime of leaf certificates: 1 year, renewed by `metalk8s certs renew`.
    #[serde(with = "duration_seconds")]
    pub leaf_validity: Duration,
    /// How far `notBefore` is set in the past, so that a node whose clock is slightly
    /// behind the bootstrap node's accepts a certificate issued a moment ago.
    #[serde(with = "duration_seconds")]
    pub backdate: Duration,
}

impl Default for IssueOptions {
    fn default() -> Self {
        IssueOptions {
            key_algorithm: KeyAlgorithm::default(),
            ca_validity: Duration::days(3650),
            leaf_validity: Duration::days(365),
            backdate: Duration::minutes(5),
        }
    }
}

mod duration_seconds {
    use serde::Serializer;
    use time::Duration;

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(duration.whole_seconds())
    }
}

/// A CA able to sign: its certificate and its private key.
pub struct CertificateAuthority {
    authority: Authority,
    cert_pem: String,
    info: CertInfo,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("CertificateAuthority")
            .field("authority", &self.authority)
            .field("subject", &self.info.subject)
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA valid from `now - backdate` to `now + ca_validity`.
    pub fn generate(
        authority: Authority,
        options: &IssueOptions,
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority, PkiError> {
        let key = options.key_algorithm.generate(authority.name())?;
        CertificateAuthority::self_sign(authority, key, options, now)
    }

    /// A new self-signed certificate for an existing CA key (its certificate was lost).
    /// Same key and same subject: whatever the key signed before still verifies.
    pub fn from_key(
        authority: Authority,
        key: PrivateKey,
        options: &IssueOptions,
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority, PkiError> {
        CertificateAuthority::self_sign(authority, key.0, options, now)
    }

    fn self_sign(
        authority: Authority,
        key: KeyPair,
        options: &IssueOptions,
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority, PkiError> {
        let mut params = base_params(options, now, options.ca_validity, None)?;
        params.distinguished_name = distinguished_name(authority.common_name(), &[]);
        // Path length 0: these CAs sign leaves only, never an intermediate CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(|source| PkiError::Sign {
            what: authority.name().to_owned(),
            source,
        })?;
        let info = CertInfo::from_der(cert.der()).expect("rcgen produces parseable DER");
        Ok(CertificateAuthority {
            authority,
            cert_pem: cert.pem(),
            info,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA from the PEM of its certificate (or of a bundle holding it) and of its key.
    ///
    /// In a bundle the signing certificate is the one whose public key matches the key, so
    /// that a bundle trusting an old and a new CA during a CA rotation keeps working.
    pub fn from_pem(
        authority: Authority,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<CertificateAuthority, LoadCaError> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|source| LoadCaError::Parse(ParseError::Key(source)))?;
        let public_key = key.subject_public_key_info();
        let info = certificates_from_pem(cert_pem)
            .map_err(LoadCaError::Parse)?
            .into_iter()
            .find(|cert| cert.public_key_der() == public_key)
            .ok_or(LoadCaError::NoMatchingCertificate)?;
        if !info.is_ca {
            return Err(LoadCaError::NotCa);
        }
        let issuer = Issuer::from_ca_cert_der(&info.der.clone().into(), key)
            .map_err(|source| LoadCaError::Parse(ParseError::Key(source)))?;
        Ok(CertificateAuthority {
            authority,
            cert_pem: cert_pem.to_owned(),
            info,
            issuer,
        })
    }

    pub fn authority(&self) -> Authority {
        self.authority
    }

    /// The PEM text of `<ca>.crt`: what nodes and kubeconfigs trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The PEM text of `<ca>.key` (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The signing certificate itself.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Issues `spec` with a freshly generated key.
    ///
    /// `notAfter` is `now + leaf_validity`, cut at the CA's own `notAfter`: a leaf
    /// outliving its CA would only fail verification while claiming days it does not have.
    pub fn issue(
        &self,
        spec: &CertSpec,
        options: &IssueOptions,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let key = options.key_algorithm.generate(&spec.to_string())?;
        let mut params = base_params(
            options,
            now,
            options.leaf_validity,
            Some(self.info.not_after),
        )?;
        params.distinguished_name = distinguished_name(&spec.common_name, &spec.organizations);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = options.key_algorithm.leaf_key_usages();
        params.extended_key_usages = extended_key_usages(spec.purpose);
        params.subject_alt_names = alt_names(spec)?;
        // Names the issuing key, so that chains are built unambiguously while two CAs with
        // the same subject are trusted side by side (CA rotation).
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Sign {
                what: spec.to_string(),
                source,
            })?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A parsed private key (PKCS#8, SEC1 or PKCS#1 PEM).
pub struct PrivateKey(KeyPair);

impl PrivateKey {
    pub fn from_pem(pem: &str) -> Result<PrivateKey, ParseError> {
        KeyPair::from_pem(pem)
            .map(PrivateKey)
            .map_err(ParseError::Key)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([elided])")
    }
}

/// Why a CA could not be loaded; the key store adds the paths.
#[derive(Debug, thiserror::Error)]
pub enum LoadCaError {
    #[error("the CA certificate or key cannot be read")]
    Parse(#[source] ParseError),
    #[error("no certificate matches the CA key")]
    NoMatchingCertificate,
    #[error("the certificate is not a CA")]
    NotCa,
}

/// A signed certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The key pair the API server signs service-account tokens with (`sa.key`) and checks
/// them against (`sa.pub`). Not a certificate: it never expires.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKeys {
    pub private_pem: String,
    pub public_pem: String,
}

impl fmt::Debug for ServiceAccountKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKeys")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKeys {
    pub fn generate(algorithm: KeyAlgorithm) -> Result<ServiceAccountKeys, PkiError> {
        let key = algorithm.generate("sa")?;
        Ok(ServiceAccountKeys {
            public_pem: key.public_key_pem(),
            private_pem: key.serialize_pem(),
        })
    }

    /// The public half of an existing `sa.key`.
    pub fn public_pem_of(private_pem: &str) -> Result<String, ParseError> {
        KeyPair::from_pem(private_pem)
            .map(|key| key.public_key_pem())
            .map_err(ParseError::Key)
    }
}

/// The DER SubjectPublicKeyInfo of a PEM private key, to match it against a certificate.
pub fn public_key_of(private_pem: &str) -> Result<Vec<u8>, ParseError> {
    KeyPair::from_pem(private_pem)
        .map(|key| key.subject_public_key_info())
        .map_err(ParseError::Key)
}

fn base_params(
    options: &IssueOptions,
    now: OffsetDateTime,
    validity: Duration,
    cap: Option<OffsetDateTime>,
) -> Result<CertificateParams, PkiError> {
    // X.509 times have whole seconds; truncating here makes notAfter exactly
    // `now + validity` as written, not one second off after encoding.
    let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
    let mut params = CertificateParams::default();
    params.not_before = now - options.backdate;
    let not_after = now + validity;
    params.not_after = cap.map_or(not_after, |cap| not_after.min(cap));
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// 16 random bytes, the top bit cleared so that the DER INTEGER stays positive and within
/// RFC 5280's 20 octets.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f;
    // A zero first byte would be dropped by the minimal DER encoding; a set low bit keeps
    // every serial 16 bytes long.
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn distinguished_name(common_name: &str, organizations: &[String]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    // Organizations first, as Go's crypto/x509 orders them, so that subjects read the same
    // as the ones kubeadm writes (`O = …, CN = …`).
    for organization in organizations {
        name.push(DnType::OrganizationName, organization.as_str());
    }
    name.push(DnType::CommonName, common_name);
    name
}

fn extended_key_usages(purpose: Purpose) -> Vec<ExtendedKeyUsagePurpose> {
    let mut usages = Vec::new();
    if purpose.server_auth() {
        usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if purpose.client_auth() {
        usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    usages
}

fn alt_names(spec: &CertSpec) -> Result<Vec<SanType>, PkiError> {
    spec.alt_names
        .iter()
        .map(|name| match name {
            SubjectAltName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            SubjectAltName::Dns(dns) => {
                dns.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|source| PkiError::Sign {
                        what: spec.to_string(),
                        source,
                    })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Output;

    fn client_spec() -> CertSpec {
        CertSpec {
            node: "n1".to_owned(),
            name: "front-proxy-client".to_owned(),
            issuer: Authority::FrontProxy,
            common_name: "front-proxy-client".to_owned(),
            organizations: Vec::new(),
            purpose: Purpose::Client,
            alt_names: Vec::new(),
            output: Output::Files {
                base_name: "front-proxy-client".to_owned(),
            },
        }
    }

    #[test]
    fn a_ca_reloaded_from_its_pem_signs_as_before() {
        let options = IssueOptions::default();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate(Authority::FrontProxy, &options, now).unwrap();
        let reloaded =
            CertificateAuthority::from_pem(Authority::FrontProxy, ca.cert_pem(), &ca.key_pem())
                .unwrap();
        assert_eq!(reloaded.info(), ca.info());
        let leaf = reloaded.issue(&client_spec(), &options, now).unwrap();
        assert!(
            CertInfo::from_pem(&leaf.cert_pem)
                .unwrap()
                .is_signed_by(ca.info())
        );
    }

    #[test]
    fn a_key_without_its_certificate_is_refused() {
        let options = IssueOptions::default();
        let now = OffsetDateTime::now_utc();
        let one = CertificateAuthority::generate(Authority::Etcd, &options, now).unwrap();
        let two = CertificateAuthority::generate(Authority::Etcd, &options, now).unwrap();
        assert!(matches!(
            CertificateAuthority::from_pem(Authority::Etcd, one.cert_pem(), &two.key_pem()),
            Err(LoadCaError::NoMatchingCertificate)
        ));
    }

    #[test]
    fn a_leaf_is_not_accepted_as_a_ca() {
        let options = IssueOptions::default();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate(Authority::FrontProxy, &options, now).unwrap();
        let leaf = ca.issue(&client_spec(), &options, now).unwrap();
        assert!(matches!(
            CertificateAuthority::from_pem(Authority::FrontProxy, &leaf.cert_pem, &leaf.key_pem),
            Err(LoadCaError::NotCa)
        ));
    }

    #[test]
    fn serials_are_random_positive_and_sixteen_bytes() {
        let serials: Vec<Vec<u8>> = (0..50)
            .map(|_| random_serial().unwrap().to_bytes())
            .collect();
        for serial in &serials {
            assert_eq!(serial.len(), 16);
            assert_eq!(serial[0] & 0x80, 0, "negative serial");
        }
        let mut unique = serials.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), serials.len());
    }

    #[test]
    fn debug_output_never_shows_private_keys() {
        let options = IssueOptions::default();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate(Authority::Kubernetes, &options, now).unwrap();
        let leaf = ca.issue(&client_spec(), &options, now).unwrap();
        let sa = ServiceAccountKeys::generate(KeyAlgorithm::EcdsaP256).unwrap();
        for printed in [format!("{ca:?}"), format!("{leaf:?}"), format!("{sa:?}")] {
            assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        }
    }
}
