//! The webhook's server certificate as kube-apiserver's Go TLS client judges it: rustls
//! verifies, and when it finds no trusted issuer, the failure is worded as Go's
//! `x509.UnknownAuthorityError`, hint included.
//!
//! Go names the first candidate authority that failed to verify the certificate: a
//! `caBundle` certificate whose subject is the certificate's issuer (ordered by how well
//! its subject key id matches the authority key id), e.g. after a CA was replaced by one
//! with the same name:
//!
//! `x509: certificate signed by unknown authority (possibly because of "x509: ECDSA
//! verification failure" while trying to verify candidate authority certificate "my CA")`
//!
//! (crypto/x509/verify.go: `buildChains`, `UnknownAuthorityError.Error`; crypto/x509/cert_pool.go:
//! `findPotentialParents`; crypto/x509/x509.go: `CheckSignatureFrom`, `checkSignature`.)
//! Only the certificate the server presents first is judged against the roots; the hint of
//! a chain through presented intermediates is not reproduced.

use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::X509Version;

/// Go's `UnknownAuthorityError` text without a hint.
pub(super) const UNKNOWN_AUTHORITY: &str = "x509: certificate signed by unknown authority";

/// A rustls verifier over the `caBundle` that keeps the certificate the server presented,
/// so a failure can be worded with it.
#[derive(Debug)]
pub(super) struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    presented: Mutex<Option<CertificateDer<'static>>>,
}

impl RecordingVerifier {
    /// `None` when the roots are empty (rustls refuses a verifier without anchors).
    pub(super) fn new(
        roots: rustls::RootCertStore,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Option<Arc<Self>> {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .ok()?;
        Some(Arc::new(Self {
            inner,
            presented: Mutex::new(None),
        }))
    }

    /// The end-entity certificate of the last handshake, if one got that far.
    pub(super) fn presented(&self) -> Option<CertificateDer<'static>> {
        self.presented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self
            .presented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Go's `UnknownAuthorityError.Error()` for a server certificate no root of `bundle` signed.
pub(super) fn unknown_authority(presented: Option<&[u8]>, bundle: &[CertificateDer<'_>]) -> String {
    match presented.and_then(|der| hint(der, bundle)) {
        Some((err, name)) => format!(
            "{UNKNOWN_AUTHORITY} (possibly because of {err:?} while trying to verify candidate \
             authority certificate {name:?})"
        ),
        None => UNKNOWN_AUTHORITY.to_owned(),
    }
}

/// The first candidate parent in `bundle` that fails to verify `leaf`: its error and name.
fn hint(leaf: &[u8], bundle: &[CertificateDer<'_>]) -> Option<(String, String)> {
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let aki = authority_key_id(&leaf);
    let mut candidates: Vec<(u8, X509Certificate<'_>)> = bundle
        .iter()
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c)
        })
        .filter(|c| c.subject().as_raw() == leaf.issuer().as_raw())
        .map(|c| {
            let ski = subject_key_id(&c);
            // cert_pool.go: AKID and SKID match, then one of them missing, then a mismatch.
            let rank = if ski == aki {
                0
            } else if ski.is_none() != aki.is_none() {
                1
            } else {
                2
            };
            (rank, c)
        })
        .collect();
    // Stable: within a rank, the caBundle's order (the pool's order).
    candidates.sort_by_key(|(rank, _)| *rank);
    candidates.iter().find_map(|(_, parent)| {
        check_signature_from(&leaf, parent)
            .err()
            .map(|err| (err, certificate_name(parent)))
    })
}

fn authority_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        })
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        })
}

/// How Go names the candidate: its CommonName, else its first Organization, else its serial.
fn certificate_name(cert: &X509Certificate<'_>) -> String {
    let subject = cert.subject();
    // pkix.Name keeps the last CommonName and every Organization in order.
    if let Some(cn) = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .last()
        .filter(|cn| !cn.is_empty())
    {
        return cn.to_owned();
    }
    if let Some(o) = subject.iter_organization().find_map(|a| a.as_str().ok()) {
        return o.to_owned();
    }
    format!("serial:{}", decimal(cert.raw_serial()))
}

/// A big-endian unsigned integer in decimal, as big.Int prints it.
pub(super) fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::new(); // little-endian base-10 digits
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for d in &mut digits {
            let v = u32::from(*d) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    if digits.is_empty() {
        return "0".to_owned();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

/// The public key algorithm a signature algorithm needs, as Go's `PublicKeyAlgorithm` prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyAlgorithm {
    Rsa,
    Ecdsa,
    Ed25519,
}

impl KeyAlgorithm {
    fn go_name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::Ecdsa => "ECDSA",
            Self::Ed25519 => "Ed25519",
        }
    }

    /// `%T` of the parsed key.
    fn go_type(self) -> &'static str {
        match self {
            Self::Rsa => "*rsa.PublicKey",
            Self::Ecdsa => "*ecdsa.PublicKey",
            Self::Ed25519 => "ed25519.PublicKey",
        }
    }

    /// The error of a signature that does not verify.
    fn verification_failure(self) -> &'static str {
        match self {
            Self::Rsa => "crypto/rsa: verification error",
            Self::Ecdsa => "x509: ECDSA verification failure",
            Self::Ed25519 => "x509: Ed25519 verification failure",
        }
    }
}

const UNSUPPORTED: &str = "x509: cannot verify signature: algorithm unimplemented";

/// The aws-lc-rs algorithms (ring's API) that may verify a signature.
type VerifyAlgorithms = Vec<&'static dyn aws_lc_rs::signature::VerificationAlgorithm>;

/// Go's `Certificate.CheckSignatureFrom`: `Ok` when `parent` may sign and signed `cert`.
fn check_signature_from(
    cert: &X509Certificate<'_>,
    parent: &X509Certificate<'_>,
) -> Result<(), String> {
    check_can_sign(parent)?;
    let (wanted, algorithms) =
        signature_algorithm(&cert.signature_algorithm.algorithm.to_id_string())?;
    let spki = parent.public_key();
    let have = match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => KeyAlgorithm::Rsa,
        "1.2.840.10045.2.1" => KeyAlgorithm::Ecdsa,
        "1.3.101.112" => KeyAlgorithm::Ed25519,
        _ => return Err(UNSUPPORTED.to_owned()),
    };
    if have != wanted {
        return Err(format!(
            "x509: signature algorithm specifies an {} public key, but have public key of type {}",
            wanted.go_name(),
            have.go_type()
        ));
    }
    let key: &[u8] = &spki.subject_public_key.data;
    let message = cert.tbs_certificate.as_ref();
    let signature: &[u8] = &cert.signature_value.data;
    // The curve decides which ECDSA algorithm applies; trying each is equivalent, since a
    // key of the other curve does not parse.
    let verified = algorithms.iter().any(|algorithm| {
        aws_lc_rs::signature::UnparsedPublicKey::new(*algorithm, key)
            .verify(message, signature)
            .is_ok()
    });
    if verified {
        Ok(())
    } else {
        // Also for the few algorithms left unchecked here (ECDSA with SHA-512, RSA-PSS): rustls
        // refused the chain, so the signature is taken as not verifying.
        Err(wanted.verification_failure().to_owned())
    }
}

/// A parent that is no CA (a v3 certificate without basic constraints counts as none) or
/// whose key usage leaves out certificate signing cannot sign.
fn check_can_sign(parent: &X509Certificate<'_>) -> Result<(), String> {
    let constraints = parent.basic_constraints().ok().flatten();
    let cannot_sign = match constraints {
        None => parent.version() == X509Version::V3,
        Some(bc) => !bc.value.ca,
    };
    let usage = parent
        .key_usage()
        .ok()
        .flatten()
        .map_or(0, |ku| ku.value.flags);
    // KeyUsageCertSign is bit 5 (x509-parser's flags follow the DER bit string).
    if cannot_sign || (usage != 0 && usage & (1 << 5) == 0) {
        return Err(
            "x509: invalid signature: parent certificate cannot sign this kind of certificate"
                .to_owned(),
        );
    }
    Ok(())
}

/// The key algorithm a signature algorithm (by OID) needs and the aws-lc-rs algorithms that
/// check it (none for those the sandbox leaves unchecked).
fn signature_algorithm(oid: &str) -> Result<(KeyAlgorithm, VerifyAlgorithms), String> {
    let algorithms: (KeyAlgorithm, VerifyAlgorithms) = match oid {
        "1.2.840.10045.4.3.2" => (
            KeyAlgorithm::Ecdsa,
            vec![
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                &aws_lc_rs::signature::ECDSA_P384_SHA256_ASN1,
            ],
        ),
        "1.2.840.10045.4.3.3" => (
            KeyAlgorithm::Ecdsa,
            vec![
                &aws_lc_rs::signature::ECDSA_P256_SHA384_ASN1,
                &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1,
            ],
        ),
        "1.2.840.10045.4.3.4" => (KeyAlgorithm::Ecdsa, Vec::new()),
        "1.2.840.113549.1.1.11" => (
            KeyAlgorithm::Rsa,
            vec![&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256],
        ),
        "1.2.840.113549.1.1.12" => (
            KeyAlgorithm::Rsa,
            vec![&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384],
        ),
        "1.2.840.113549.1.1.13" => (
            KeyAlgorithm::Rsa,
            vec![&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512],
        ),
        "1.2.840.113549.1.1.10" => (KeyAlgorithm::Rsa, Vec::new()),
        "1.3.101.112" => (KeyAlgorithm::Ed25519, vec![&aws_lc_rs::signature::ED25519]),
        _ => return Err(UNSUPPORTED.to_owned()),
    };
    Ok(algorithms)
}
