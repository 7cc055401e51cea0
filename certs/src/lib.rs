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
//! # Crypto provider: ring
//!
//! ring is the default provider of both kube and rcgen, it builds with a C compiler
//! only (no cmake, no NASM), which keeps a fresh machine's build short, and using one
//! provider everywhere means one crypto stack to audit. Configs are built with
//! [`provider`] explicitly; no process-wide default is installed.

mod config;
mod identity;
mod issue;
mod reload;

pub use config::{
    ClientAuth, TlsConfigError, agent_client_config, client_config, provider, server_config,
};
pub use identity::{ClusterIdentity, IdentityError, IdentitySource, peer_identity};
pub use issue::{
    Ca, IssueCertError, IssuedCert, LoadCertError, SPIFFE_CLUSTER_PREFIX, Validity,
    parse_certs_pem, parse_key_pem,
};
pub use reload::{ReloadOutcome, ReloadTlsError, ReloadingServerTls, TlsFiles};
