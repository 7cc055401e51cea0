//! rustls server and client configs on the workspace's one crypto provider (aws-lc-rs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::issue::{LoadCertError, parse_certs_pem, parse_key_pem};

/// Whether a server asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is requested.
    None,
    /// A client certificate is requested and verified if sent (the sandbox: certs or tokens).
    Optional,
    /// A verified client certificate is required (the relay).
    Required,
}

/// Failed to build a TLS config.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A certificate or key did not load.
    #[error("failed to build TLS config")]
    Load(#[from] LoadCertError),
    /// rustls refused the material (for example a key that does not match the certificate).
    #[error("failed to build TLS config: {what}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// Client authentication was requested without a CA to verify against.
    #[error("failed to build TLS config: client authentication needs a client CA bundle")]
    MissingClientCa,
    /// The client verifier could not be built.
    #[error("failed to build TLS config: invalid client CA bundle")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// A certificate, key or CA file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The crypto provider every config in secret-relay uses: aws-lc-rs, with the key
/// exchange groups in this order of preference: the hybrid post-quantum
/// X25519MLKEM768 first, then the classical X25519, secp256r1 and secp384r1.
///
/// A client on it offers the hybrid first (with an X25519 key share beside it). A
/// server on it supports all four and, as rustls does in TLS 1.3, takes the first of
/// the client's groups that it supports: the hybrid for a client that lists it first
/// (rustls with aws-lc-rs, Go 1.24 and later: kube-apiserver, client-go, kubectl), a
/// classical group for the others (OpenSSL 3.0, older Go), so no client is turned
/// away. The list is set here rather than left to rustls' `prefer-post-quantum`
/// feature, so that a feature change elsewhere in the tree cannot demote the hybrid.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    Arc::new(CryptoProvider {
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..aws_lc_rs::default_provider()
    })
}

/// Builds a root store from a PEM bundle.
pub(crate) fn root_store(ca_pem: &str) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs_pem(ca_pem)? {
        roots.add(cert).map_err(|source| TlsConfigError::Rustls {
            what: "invalid CA certificate",
            source,
        })?;
    }
    Ok(roots)
}

/// A static server config from PEM material, on [`provider`].
///
/// `alpn` lists the protocols offered, most preferred first (the webhook offers
/// only `http/1.1`, as kube-apiserver calls webhooks over HTTP/1.1).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    server_config_with_provider(
        provider(),
        cert_pem,
        key_pem,
        client_ca_pem,
        client_auth,
        alpn,
    )
}

/// [`server_config`] on another crypto provider (benchmarks and tests compare providers
/// and key exchange groups with it; the servers use [`server_config`]).
pub fn server_config_with_provider(
    provider: Arc<CryptoProvider>,
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let certs = parse_certs_pem(cert_pem)?;
    let key = parse_key_pem(key_pem)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsConfigError::Rustls {
            what: "protocol versions",
            source,
        })?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let ca = client_ca_pem.ok_or(TlsConfigError::MissingClientCa)?;
            let roots = Arc::new(root_store(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(TlsConfigError::Verifier)?)
        }
    };
    let mut config =
        builder
            .with_single_cert(certs, key)
            .map_err(|source| TlsConfigError::Rustls {
                what: "server certificate and key",
                source,
            })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client config trusting only `ca_pem`, optionally presenting a client certificate,
/// on [`provider`].
pub fn client_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    client_config_with_provider(provider(), ca_pem, client, alpn)
}

/// [`client_config`] on another crypto provider (benchmarks and tests compare providers
/// and key exchange groups with it; the agent uses [`client_config`]).
pub fn client_config_with_provider(
    provider: Arc<CryptoProvider>,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let roots = root_store(ca_pem)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsConfigError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(parse_certs_pem(cert_pem)?, parse_key_pem(key_pem)?)
            .map_err(|source| TlsConfigError::Rustls {
                what: "client certificate and key",
                source,
            })?,
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The agent's client config from files (the `tls.crt`, `tls.key` and `ca.crt` of the
/// `secret-relay-agent-tls` Secret): trusts only the CA, presents the cluster
/// certificate, offers ALPN `h2` then `http/1.1`.
///
/// This reads files; from async code call it inside `tokio::task::spawn_blocking`.
pub fn agent_client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let (ca_pem, cert_pem, key_pem) = (read(ca)?, read(cert)?, read(key)?);
    client_config(&ca_pem, Some((&cert_pem, &key_pem)), &[b"h2", b"http/1.1"])
}
