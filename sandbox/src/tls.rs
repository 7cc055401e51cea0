//! The sandbox's PKI, from `secret-relay-certs`: a throwaway CA, the serving certificate
//! (IP SAN 127.0.0.1, DNS localhost) and one client certificate per certificate user
//! (CN = user, O = groups).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use secret_relay_certs::{Ca, ClientAuth, IssuedCert, Validity, server_config};
use tokio_rustls::TlsAcceptor;

use crate::{StartError, UserConfig};

/// Everything TLS a sandbox needs.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) client_certs: BTreeMap<String, IssuedCert>,
}

fn certs_error(e: impl std::error::Error) -> StartError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    StartError::Certs(message)
}

impl Pki {
    /// Issues the CA, the serving certificate and the users' client certificates.
    pub(crate) fn issue(users: &[UserConfig]) -> Result<Self, StartError> {
        let validity = Validity::days(30);
        let ca =
            Ca::generate("secret-relay-sandbox-ca", Validity::ca_default()).map_err(certs_error)?;
        let serving = ca
            .issue_server(
                "kube-apiserver",
                &["localhost".to_owned()],
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
                validity,
            )
            .map_err(certs_error)?;
        let mut client_certs = BTreeMap::new();
        for user in users.iter().filter(|u| u.token.is_none()) {
            let cert = ca
                .issue_client(&user.name, &user.groups, validity)
                .map_err(certs_error)?;
            client_certs.insert(user.name.clone(), cert);
        }
        let config = server_config(
            &serving.cert_pem,
            &serving.key_pem,
            Some(ca.cert_pem()),
            ClientAuth::Optional,
            &[b"h2", b"http/1.1"],
        )
        .map_err(certs_error)?;
        Ok(Self {
            ca_pem: ca.cert_pem().to_owned(),
            acceptor: TlsAcceptor::from(config),
            client_certs,
        })
    }
}
