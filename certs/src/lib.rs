//! The secret-relay PKI and TLS configuration.
//!
//! - [`Ca`] issues ECDSA P-256 certificates with rcgen: server certificates for the
//!   webhook, the relay and the sandbox, cluster client certificates (CN = cluster,
//!   URI SAN `spiffe://secret-relay/cluster/<name>`) and Kubernetes user certificates
//!   (CN = user, O = groups).
//! - [`server_config`] and [`client_config`] build rustls configs on the one crypto
//!   provider of the workspace.
//! - [`ReloadingServerTls`] serves certificates and client CA bundles read from files
//!   and rotated without a restart.
//! - [`peer_identity`] names the cluster of a verified client certificate.
//!
//! # Async callers
//!
//! Issuing certificates (rcgen key generation and signing) and [`ReloadingServerTls::reload`]
//! are blocking CPU and file work: from async code run them inside
//! `tokio::task::spawn_blocking` (as [`ReloadingServerTls::spawn_watch`] does).
//!
//! # Crypto provider: aws-lc-rs
//!
//! aws-lc-rs brings the hybrid post-quantum key exchange X25519MLKEM768, which Go 1.24
//! and later (kube-apiserver, client-go) offer by default and ring lacks: a relay
//! carrying long-lived credentials between clusters must not be recordable now and
//! decryptable later. Our servers prefer it and still accept classical clients
//! (X25519, secp256r1); our clients offer it first. The same provider serves rustls,
//! rcgen and kube, one crypto stack to audit. Configs are built with [`provider`]
//! explicitly; no process-wide default is installed. The cost and the handshake figures
//! are in BENCHMARKS.md, "TLS providers".

mod config;
mod identity;
mod issue;
mod reload;

pub use config::{
    ClientAuth, TlsConfigError, agent_client_config, client_config, client_config_with_provider,
    provider, server_config, server_config_with_provider,
};
pub use identity::{ClusterIdentity, IdentityError, IdentitySource, peer_identity};
pub use issue::{
    Ca, IssueCertError, IssuedCert, LoadCertError, SPIFFE_CLUSTER_PREFIX, Validity,
    parse_certs_pem, parse_key_pem,
};
pub use reload::{ReloadOutcome, ReloadTlsError, ReloadingServerTls, TlsFiles, not_after};
