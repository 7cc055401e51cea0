//! The secret-relay admission webhook: an AdmissionReview v1 server with `/validate`
//! and `/mutate` for core/v1 Secrets, `/healthz`, `/readyz` and `/metrics`, and the
//! policy reload that feeds it.
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

pub use metrics::{Metrics, ReloadLabels, RequestLabels};
pub use reload::{PolicySource, reload_file_once, watch_configmap, watch_file};
pub use review::{
    API_VERSION, DecodeReviewError, Endpoint, KIND, Reviewed, review, review_without_policy,
};
pub use server::{MAX_BODY_BYTES, handle, serve};
pub use state::{AppState, LoadOutcome, parse_policy, parse_policy_data};

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

/// Binds, starts the policy reload and serves until `shutdown` resolves.
///
/// `client` is required for [`PolicySource::ConfigMap`]; the TLS config is read on
/// every handshake, so a rotating one serves new certificates without a restart.
pub async fn run(
    config: Config,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    client: Option<kube::Client>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.addr,
            source,
        })?;
    tracing::info!(addr = %config.addr, "webhook serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let reload = match (config.policy, client) {
        (PolicySource::File { path, interval }, _) => {
            tokio::spawn(watch_file(state.clone(), path, interval, stopped()))
        }
        (PolicySource::ConfigMap { namespace, name }, Some(client)) => tokio::spawn(
            watch_configmap(state.clone(), client, namespace, name, stopped()),
        ),
        (PolicySource::ConfigMap { namespace, name }, None) => {
            state.source_problem(
                &format!("configmap {namespace}/{name}"),
                "no Kubernetes client configured to watch the policy ConfigMap".to_owned(),
            );
            tokio::spawn(async {})
        }
    };
    serve(listener, tls, state, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = reload.await;
    Ok(())
}
