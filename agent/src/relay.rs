//! The client of the relay: mTLS with the cluster's certificate.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Failed to build the relay client.
#[derive(Debug, thiserror::Error)]
pub enum RelayClientError {
    /// A file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate names no cluster.
    #[error("failed to read the cluster name from {path}: {reason}")]
    Identity {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The client could not be configured.
    #[error("failed to configure the relay client: {0}")]
    Config(String),
}

/// A kube client that reaches the relay at `url` as the cluster named by the
/// certificate, and that name.
pub async fn relay_client(
    url: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Result<(kube::Client, String), RelayClientError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| RelayClientError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let (cert_pem, key_pem, ca_pem) = (read(cert)?, read(key)?, read(ca)?);
    let identity_error = |reason: String| RelayClientError::Identity {
        path: cert.to_owned(),
        reason,
    };
    let leaf = secret_relay_certs::parse_certs_pem(&String::from_utf8_lossy(&cert_pem))
        .map_err(|e| identity_error(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| identity_error("no certificate in the file".to_owned()))?;
    let cluster = secret_relay_certs::peer_identity(&leaf)
        .map_err(|e| identity_error(e.to_string()))?
        .name
        .into_string();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    // A kubeconfig in memory: kube's own loader then builds the TLS client.
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "relay", "cluster": {"server": url, "certificate-authority-data": b64(&ca_pem)}}],
        "users": [{"name": cluster, "user": {"client-certificate-data": b64(&cert_pem), "client-key-data": b64(&key_pem)}}],
        "contexts": [{"name": "relay", "context": {"cluster": "relay", "user": cluster}}],
        "current-context": "relay",
    });
    let kc: kube::config::Kubeconfig =
        serde_json::from_value(kubeconfig).map_err(|e| RelayClientError::Config(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| RelayClientError::Config(e.to_string()))?;
    // The agent retries a failed write itself, per name, with backoff. kube's own
    // retry (a 429, 503 or 504 sent again up to 15 times over minutes) would hide an
    // unreachable control plane from the agent's status and hold a reconcile slot.
    config.default_retry = false;
    let client =
        kube::Client::try_from(config).map_err(|e| RelayClientError::Config(e.to_string()))?;
    Ok((client, cluster))
}
