//! The sandbox's PKI: a throwaway CA, the serving certificate (IP SAN 127.0.0.1, DNS
//! localhost) and one client certificate per certificate user (CN = user, O = groups).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::{StartError, UserConfig};

/// A client certificate and its key, PEM.
pub(crate) struct ClientCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// Everything TLS a sandbox needs.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) client_certs: BTreeMap<String, ClientCert>,
}

fn certs_error(e: impl std::fmt::Display) -> StartError {
    StartError::Certs(e.to_string())
}

impl Pki {
    /// Issues the CA, the serving certificate and the users' client certificates.
    pub(crate) fn issue(users: &[UserConfig]) -> Result<Self, StartError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(certs_error)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "secret-relay-sandbox-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(certs_error)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(certs_error)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned()]).map_err(certs_error)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().map_err(certs_error)?;
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .map_err(certs_error)?;

        let mut client_certs = BTreeMap::new();
        for user in users.iter().filter(|u| u.token.is_none()) {
            let mut params = CertificateParams::new(Vec::<String>::new()).map_err(certs_error)?;
            params
                .distinguished_name
                .push(DnType::CommonName, user.name.as_str());
            for group in &user.groups {
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, group.as_str());
            }
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().map_err(certs_error)?;
            let cert = params.signed_by(&key, &issuer).map_err(certs_error)?;
            client_certs.insert(
                user.name.clone(),
                ClientCert {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                },
            );
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).map_err(certs_error)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(certs_error)?;
        let chain = vec![
            CertificateDer::from_pem_slice(server_cert.pem().as_bytes()).map_err(certs_error)?,
        ];
        let key = PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes())
            .map_err(certs_error)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(certs_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(certs_error)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            client_certs,
        })
    }
}
