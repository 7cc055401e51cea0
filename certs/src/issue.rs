//! Certificate issuance with rcgen.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secret_relay_policy::is_valid_cluster_name;
use time::{Duration, OffsetDateTime};

/// The URI SAN prefix that names a cluster: `spiffe://secret-relay/cluster/<name>`.
pub const SPIFFE_CLUSTER_PREFIX: &str = "spiffe://secret-relay/cluster/";

/// How long a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from a minute ago (clock skew) for `days` days.
    pub fn days(days: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }

    /// Valid between two instants (tests use this for expired and not-yet-valid certificates).
    pub fn between(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Validity {
        Validity {
            not_before,
            not_after,
        }
    }

    /// The default for a CA: ten years.
    pub fn ca_default() -> Validity {
        Validity::days(3650)
    }
}

impl Default for Validity {
    /// The default for a leaf certificate: one year.
    fn default() -> Validity {
        Validity::days(365)
    }
}

/// Failed to issue a certificate.
#[derive(Debug, thiserror::Error)]
pub enum IssueCertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("failed to issue certificate for {subject:?}")]
    Rcgen {
        /// The certificate's common name.
        subject: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The name cannot appear in a certificate for this purpose.
    #[error("failed to issue certificate: invalid name {name:?}: {why}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it is invalid.
        why: &'static str,
    },
}

/// Failed to load certificates or keys from PEM.
#[derive(Debug, thiserror::Error)]
pub enum LoadCertError {
    /// The PEM text holds no certificate.
    #[error("failed to load certificate: no CERTIFICATE block in {what}")]
    NoCertificate {
        /// What was being read.
        what: String,
    },
    /// The PEM text could not be parsed.
    #[error("failed to load {what}: invalid PEM")]
    Pem {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The CA certificate or key was rejected by rcgen.
    #[error("failed to load CA: {what}")]
    Ca {
        /// What was wrong.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
}

/// A certificate and its private key, both PEM. `Debug` never shows the key.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl IssuedCert {
    /// The certificate as DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, LoadCertError> {
        first_cert(&self.cert_pem, "issued certificate")
    }

    /// The private key as DER.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, LoadCertError> {
        parse_key_pem(&self.key_pem)
    }
}

/// A certificate authority (ECDSA P-256) that issues every certificate of a deployment.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// Generates a new self-signed CA.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Ca, IssueCertError> {
        let rcgen_err = |source| IssueCertError::Rcgen {
            subject: common_name.to_owned(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
        params.distinguished_name = subject(common_name, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key).map_err(rcgen_err)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Ok(Ca {
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// Loads a CA from its certificate and PKCS#8 key, both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, LoadCertError> {
        let cert_der = first_cert(cert_pem, "CA certificate")?;
        let key = KeyPair::from_pem(key_pem).map_err(|source| LoadCertError::Ca {
            what: "invalid CA key",
            source,
        })?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| LoadCertError::Ca {
                what: "invalid CA certificate",
                source,
            })?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate, PEM (what clients trust; the webhook `caBundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Issues a server certificate (EKU serverAuth only) with the given DNS and IP SANs.
    pub fn issue_server(
        &self,
        common_name: &str,
        dns: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<IssuedCert, IssueCertError> {
        let mut sans = Vec::with_capacity(dns.len() + ips.len());
        for name in dns {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|source| IssueCertError::Rcgen {
                    subject: common_name.to_owned(),
                    source,
                })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        self.issue(
            common_name,
            &[],
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )
    }

    /// Issues a cluster's client certificate: CN = cluster and URI SAN
    /// `spiffe://secret-relay/cluster/<cluster>`, EKU clientAuth only.
    pub fn issue_cluster(
        &self,
        cluster: &str,
        validity: Validity,
    ) -> Result<IssuedCert, IssueCertError> {
        // The policy's rule: a certificate for a name no registry could hold is refused.
        if !is_valid_cluster_name(cluster) {
            return Err(IssueCertError::InvalidName {
                name: cluster.to_owned(),
                why: "a cluster name is 1 to 55 lowercase letters, digits or '-', starting and ending with a letter or digit",
            });
        }
        let uri = format!("{SPIFFE_CLUSTER_PREFIX}{cluster}")
            .try_into()
            .map_err(|source| IssueCertError::Rcgen {
                subject: cluster.to_owned(),
                source,
            })?;
        self.issue(
            cluster,
            &[],
            vec![SanType::URI(uri)],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    /// Issues a Kubernetes user's client certificate: CN = user, one O per group,
    /// EKU clientAuth only.
    pub fn issue_client(
        &self,
        common_name: &str,
        organizations: &[String],
        validity: Validity,
    ) -> Result<IssuedCert, IssueCertError> {
        self.issue(
            common_name,
            organizations,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    fn issue(
        &self,
        common_name: &str,
        organizations: &[String],
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<IssuedCert, IssueCertError> {
        let rcgen_err = |source| IssueCertError::Rcgen {
            subject: common_name.to_owned(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
        params.distinguished_name = subject(common_name, organizations);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn subject(common_name: &str, organizations: &[String]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for org in organizations {
        name.push(DnType::OrganizationName, org.as_str());
    }
    name.push(DnType::CommonName, common_name);
    name
}

/// Parses every certificate of a PEM bundle; an empty bundle is an error.
pub fn parse_certs_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, LoadCertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| LoadCertError::Pem {
            what: "certificate bundle".to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(LoadCertError::NoCertificate {
            what: "certificate bundle".to_owned(),
        });
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM text.
pub fn parse_key_pem(pem: &str) -> Result<PrivateKeyDer<'static>, LoadCertError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| LoadCertError::Pem {
        what: "private key".to_owned(),
        source,
    })
}

fn first_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>, LoadCertError> {
    parse_certs_pem(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| LoadCertError::NoCertificate {
            what: what.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::{GeneralName, parse_x509_certificate};

    use super::*;
    use crate::peer_identity;

    #[test]
    fn cluster_certificate_carries_cn_and_spiffe_uri() {
        let ca = Ca::generate("test ca", Validity::ca_default()).unwrap();
        let issued = ca.issue_cluster("cluster1", Validity::default()).unwrap();
        let der = issued.cert_der().unwrap();
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "cluster1");
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san.value.general_names.iter().any(|n| matches!(
            n,
            GeneralName::URI(u) if *u == "spiffe://secret-relay/cluster/cluster1"
        )));
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth && !eku.value.server_auth);
    }

    #[test]
    fn ca_round_trips_through_pem_and_keeps_issuing() {
        let ca = Ca::generate("test ca", Validity::ca_default()).unwrap();
        let loaded = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let issued = loaded
            .issue_server("srv", &["localhost".into()], &[], Validity::default())
            .unwrap();
        let der = issued.cert_der().unwrap();
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        let ca_der = ca.cert_der();
        let (_, ca_cert) = parse_x509_certificate(ca_der.as_ref()).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
    }

    include!("../../policy/tests/fixtures/cluster_names.rs");

    #[test]
    fn the_cluster_name_table_is_the_rule_for_issuing_and_for_naming_the_peer() {
        let ca = Ca::generate("test ca", Validity::ca_default()).unwrap();
        for &(name, valid) in CLUSTER_NAMES {
            let issued = ca.issue_cluster(name, Validity::default());
            assert_eq!(issued.is_ok(), valid, "issue_cluster({name:?})");
            if let Ok(issued) = issued {
                let id = peer_identity(&issued.cert_der().unwrap()).unwrap();
                assert_eq!(id.name, name);
            }
            // A certificate that names it anyway, by common name or by URI SAN.
            let by_cn = ca.issue_client(name, &[], Validity::default()).unwrap();
            assert_eq!(
                peer_identity(&by_cn.cert_der().unwrap()).is_ok(),
                valid,
                "common name {name:?}"
            );
            let Ok(uri) = format!("{SPIFFE_CLUSTER_PREFIX}{name}").try_into() else {
                continue; // not IA5 (non-ASCII): no such URI SAN can be written
            };
            let by_uri = ca
                .issue(
                    name,
                    &[],
                    vec![SanType::URI(uri)],
                    ExtendedKeyUsagePurpose::ClientAuth,
                    Validity::default(),
                )
                .unwrap();
            assert_eq!(
                peer_identity(&by_uri.cert_der().unwrap()).is_ok(),
                valid,
                "URI SAN {name:?}"
            );
        }
    }

    #[test]
    fn a_certificate_naming_two_clusters_names_none() {
        let ca = Ca::generate("test ca", Validity::ca_default()).unwrap();
        let uri = format!("{SPIFFE_CLUSTER_PREFIX}cluster1")
            .try_into()
            .unwrap();
        let two = ca
            .issue(
                "cluster2",
                &[],
                vec![SanType::URI(uri)],
                ExtendedKeyUsagePurpose::ClientAuth,
                Validity::default(),
            )
            .unwrap();
        assert!(matches!(
            peer_identity(&two.cert_der().unwrap()),
            Err(crate::IdentityError::Ambiguous)
        ));
    }

    #[test]
    fn invalid_cluster_name_is_refused() {
        let ca = Ca::generate("test ca", Validity::ca_default()).unwrap();
        let err = ca
            .issue_cluster("Bad/Name", Validity::default())
            .unwrap_err();
        assert!(matches!(err, IssueCertError::InvalidName { .. }));
    }

    #[test]
    fn debug_output_redacts_keys() {
        let ca = Ca::generate("test ca", Validity::ca_default()).unwrap();
        let issued = ca.issue_client("alice", &[], Validity::default()).unwrap();
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn garbage_pem_is_an_error() {
        assert!(parse_certs_pem("not pem").is_err());
        assert!(parse_key_pem("not pem").is_err());
    }
}
