//! Reading a certificate signing request (PKCS #10) back: the subject and the names it
//! asks for. Kubelets file their serving requests through the Kubernetes CSR API, whose
//! `spec.request` is the PEM request, base64-encoded ([`RequestInfo::from_api`]); the
//! `kubernetes` phase's gate judges what this returns with
//! `metalk8s_kubernetes::csr::decide`.
//!
//! A request is read strictly: a name of a kind no node has (a directory name, an
//! "other name"…), a subject with several common names, an extension that cannot be
//! parsed or a signature that does not verify is an error rather than something skipped,
//! so that nothing a request asks for goes unseen by the decision.

use std::net::IpAddr;

use base64::Engine;
use serde::Serialize;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

use crate::error::ParseError;
use crate::inspect::ip_from_bytes;

const PEM_LABEL: &str = "CERTIFICATE REQUEST";

/// What a certificate signing request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    /// Empty when the subject has none.
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
}

impl RequestInfo {
    /// The request of a Kubernetes CertificateSigningRequest's `spec.request`: base64 of
    /// the PEM text.
    pub fn from_api(request: &str) -> Result<RequestInfo, ParseError> {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(request.trim())
            .map_err(|source| ParseError::Base64 {
                field: "spec.request",
                source,
            })?;
        let pem = String::from_utf8(pem).map_err(|_| ParseError::NotText {
            field: "spec.request",
        })?;
        RequestInfo::from_pem(&pem)
    }

    /// The first certificate request of a PEM text.
    pub fn from_pem(pem: &str) -> Result<RequestInfo, ParseError> {
        let block = Pem::iter_from_buffer(pem.as_bytes())
            .find(|block| !matches!(block, Ok(block) if block.label != PEM_LABEL))
            .ok_or(ParseError::NoPemBlock { label: PEM_LABEL })?
            .map_err(ParseError::Pem)?;
        RequestInfo::from_der(&block.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<RequestInfo, ParseError> {
        let (_, request) = X509CertificationRequest::from_der(der).map_err(ParseError::Request)?;
        // The API server checks the signature when the request is created; checked again
        // here because approving is trusting that the requester holds the key.
        request
            .verify_signature()
            .map_err(ParseError::RequestSignature)?;
        let subject = &request.certification_request_info.subject;
        let strings = |values: Vec<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
            values
                .into_iter()
                .map(|value| {
                    value.as_str().map(str::to_owned).map_err(|_| {
                        ParseError::RequestContent("a subject attribute is not a string".into())
                    })
                })
                .collect::<Result<Vec<String>, ParseError>>()
        };
        let mut common_names = strings(subject.iter_common_name().collect())?;
        if common_names.len() > 1 {
            return Err(ParseError::RequestContent(format!(
                "the subject has {} common names",
                common_names.len()
            )));
        }
        let mut info = RequestInfo {
            common_name: common_names.pop().unwrap_or_default(),
            organizations: strings(subject.iter_organization().collect())?,
            ..RequestInfo::default()
        };
        for extension in request.requested_extensions().into_iter().flatten() {
            match extension {
                ParsedExtension::SubjectAlternativeName(names) => {
                    for name in &names.general_names {
                        info.add(name)?;
                    }
                }
                ParsedExtension::ParseError { error } => {
                    return Err(ParseError::RequestContent(format!(
                        "a requested extension cannot be read ({error})"
                    )));
                }
                _ => {}
            }
        }
        Ok(info)
    }

    fn add(&mut self, name: &GeneralName<'_>) -> Result<(), ParseError> {
        match name {
            GeneralName::DNSName(dns) => self.dns_names.push((*dns).to_owned()),
            GeneralName::RFC822Name(email) => self.email_addresses.push((*email).to_owned()),
            GeneralName::URI(uri) => self.uris.push((*uri).to_owned()),
            GeneralName::IPAddress(bytes) => {
                let ip = ip_from_bytes(bytes).ok_or_else(|| {
                    ParseError::RequestContent(format!(
                        "an IP address of {} bytes is neither IPv4 nor IPv6",
                        bytes.len()
                    ))
                })?;
                self.ip_addresses.push(ip);
            }
            other => {
                return Err(ParseError::RequestContent(format!(
                    "it asks for a name of a kind no node has: {other}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn request_pem(edit: impl FnOnce(&mut CertificateParams)) -> String {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "system:node:cp-1");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        params.subject_alt_names = vec![
            SanType::DnsName("cp-1".try_into().unwrap()),
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
            SanType::IpAddress("fd00::1".parse().unwrap()),
        ];
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_kubelet_serving_request_reads_back() {
        let pem = request_pem(|params| {
            params
                .subject_alt_names
                .push(SanType::Rfc822Name("root@cp-1".try_into().unwrap()));
            params
                .subject_alt_names
                .push(SanType::URI("spiffe://cluster/node".try_into().unwrap()));
        });
        let info = RequestInfo::from_pem(&pem).unwrap();
        assert_eq!(
            info,
            RequestInfo {
                common_name: "system:node:cp-1".to_owned(),
                organizations: vec!["system:nodes".to_owned()],
                dns_names: vec!["cp-1".to_owned()],
                ip_addresses: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
                email_addresses: vec!["root@cp-1".to_owned()],
                uris: vec!["spiffe://cluster/node".to_owned()],
            }
        );
    }

    #[test]
    fn the_api_carries_the_pem_in_base64() {
        let pem = request_pem(|_| {});
        let encoded = base64::engine::general_purpose::STANDARD.encode(&pem);
        assert_eq!(
            RequestInfo::from_api(&encoded).unwrap(),
            RequestInfo::from_pem(&pem).unwrap()
        );
        assert!(matches!(
            RequestInfo::from_api("not base64!"),
            Err(ParseError::Base64 { .. })
        ));
    }

    #[test]
    fn what_cannot_be_judged_is_an_error() {
        assert!(matches!(
            RequestInfo::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(ParseError::NoPemBlock { .. })
        ));
        let other_name = request_pem(|params| {
            params.subject_alt_names.push(SanType::OtherName((
                vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                "admin@example.com".into(),
            )));
        });
        let Err(ParseError::RequestContent(problem)) = RequestInfo::from_pem(&other_name) else {
            panic!("an other name is not a node's name");
        };
        assert!(problem.contains("no node has"), "{problem}");
    }

    #[test]
    fn a_tampered_request_does_not_verify() {
        let pem = request_pem(|_| {});
        let block = Pem::iter_from_buffer(pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let mut der = block.contents;
        // The last byte belongs to the signature.
        *der.last_mut().unwrap() ^= 0x01;
        assert!(matches!(
            RequestInfo::from_der(&der),
            Err(ParseError::RequestSignature(_))
        ));
    }
}
