//! The secret-relay admission webhook: an AdmissionReview v1 server with `/validate`
//! and `/mutate` for core/v1 Secrets, `/healthz`, `/readyz` and `/metrics`, and the
//! policy reload that feeds it.
//!
//! It stands on `secret-relay-runtime`: its TLS accept loop (HTTP/1.1 only), its policy
//! state and sources, and its admin endpoints over one metrics registry.
//!
//! Handlers are thin: decode the review, take one policy snapshot, call the pure
//! decisions of `secret-relay-policy`, encode the answer echoing the uid.

mod metrics;
mod reload;
mod review;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

pub use metrics::{Metrics, RequestLabels};
pub use reload::{reload_file_once, watch_configmap, watch_file};
pub use review::{
    API_VERSION, DecodeReviewError, Endpoint, KIND, Reviewed, review, review_without_policy,
};
pub use secret_relay_runtime::{LoadOutcome, PolicySource, parse_policy, parse_policy_data};
pub use server::{MAX_BODY_BYTES, handle, serve};
pub use state::AppState;

/// How to run the webhook.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address.
    pub addr: SocketAddr,
    /// Where the policy comes from.
    pub policy: PolicySource,
}

/// Failed to run the webhook.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The listen address could not be bound.
    #[error("failed to bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Binds, starts the policy source and serves until `shutdown` is cancelled; the
/// policy source stops once open requests have drained.
///
/// `client` is required for [`PolicySource::ConfigMap`]; the TLS config is read on
/// every handshake, so a rotating one serves new certificates without a restart.
pub async fn run(
    config: Config,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    client: Option<kube::Client>,
    shutdown: secret_relay_runtime::CancellationToken,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.addr,
            source,
        })?;
    tracing::info!(addr = %config.addr, "webhook serving");
    let reload_stop = secret_relay_runtime::CancellationToken::new();
    let reload = tokio::spawn(secret_relay_runtime::run_policy_source(
        state.policy_state().clone(),
        config.policy,
        client,
        reload_stop.clone(),
    ));
    serve(listener, tls, state, shutdown).await;
    reload_stop.cancel();
    let _ = reload.await;
    Ok(())
}
