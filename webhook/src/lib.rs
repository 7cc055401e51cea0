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
mod review;
mod server;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secret_relay_certs::{ReloadTlsError, ReloadingServerTls, TlsFiles};
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_runtime::{Admin, BuildClientError, CancellationToken};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use metrics::{Metrics, RequestLabels};
pub use review::{
    API_VERSION, DecodeReviewError, Endpoint, KIND, Reviewed, review, review_without_policy,
};
pub use secret_relay_runtime::{
    LoadOutcome, LoadPolicyError, PolicySource, Rejection, parse_policy, parse_policy_data,
};
pub use server::{MAX_BODY_BYTES, handle, serve};
pub use state::AppState;

/// How to run the webhook.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address of `/validate`, `/mutate` and the admin endpoints.
    pub addr: SocketAddr,
    /// Serving certificate and key, re-read every `poll_interval` (no client CA).
    pub tls: TlsFiles,
    /// Kubeconfig for the policy ConfigMap watch; `None`: in-cluster or `$KUBECONFIG`.
    /// Only a [`PolicySource::ConfigMap`] talks to the API server.
    pub kubeconfig: Option<PathBuf>,
    /// Where the policy comes from.
    pub policy: PolicySource,
    /// Control plane or managed cluster.
    pub mode: Mode,
    /// The relay's service account identity.
    pub relay: RelayIdentity,
    /// How often the certificate files are checked for changes.
    pub poll_interval: Duration,
    /// Also serve `POST /baseline` (benchmarks only; see [`AppState::with_bench_baseline`]).
    pub bench_baseline: bool,
}

/// What a started webhook reports to its caller.
#[derive(Clone, Debug)]
pub struct Started {
    /// The bound address.
    pub addr: SocketAddr,
    /// The admin endpoints (readiness and metrics) of this webhook.
    pub admin: Admin,
    /// The webhook's state: the served policy, metrics and who it serves.
    pub state: AppState,
}

/// Failed to start the webhook.
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
    /// The TLS material could not be loaded.
    #[error("failed to load the webhook's TLS material")]
    Tls(#[source] ReloadTlsError),
    /// No client for the policy ConfigMap watch.
    #[error("failed to build the client for the policy ConfigMap watch")]
    Client(#[source] BuildClientError),
}

/// Binds `config.addr`, then as [`start_on`].
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<(Started, JoinHandle<()>), RunError> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.addr,
            source,
        })?;
    start_on(listener, config, shutdown).await
}

/// Starts the policy source and certificate rotation and serves on `listener` (bound
/// by the caller, who needs its address first; `config.addr` is not used) until
/// `shutdown`. Returns once serving has started; the returned handle resolves when
/// open requests have drained and the policy source and rotation have stopped.
pub async fn start_on(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(Started, JoinHandle<()>), RunError> {
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.addr,
        source,
    })?;
    let client = match config.policy {
        PolicySource::ConfigMap { .. } => Some(
            secret_relay_runtime::kube_client(config.kubeconfig.as_deref())
                .await
                .map_err(RunError::Client)?,
        ),
        PolicySource::File { .. } => None,
    };
    let tls = ReloadingServerTls::webhook(config.tls).map_err(RunError::Tls)?;
    let state = AppState::serving(config.relay, config.mode, config.bench_baseline, &tls);
    let stop = CancellationToken::new();
    let tls_watch = std::sync::Arc::clone(&tls)
        .spawn_watch(config.poll_interval, stop.clone().cancelled_owned());
    let reload = tokio::spawn(secret_relay_runtime::run_policy_source(
        state.policy_state().clone(),
        config.policy,
        client,
        stop.clone(),
    ));
    tracing::info!(%addr, "webhook serving");
    let serving = tokio::spawn(serve(listener, tls.config(), state.clone(), shutdown));
    let handle = tokio::spawn(async move {
        let _ = serving.await;
        // The policy source and rotation stop once open requests have drained.
        stop.cancel();
        let _ = reload.await;
        let _ = tls_watch.await;
    });
    let started = Started {
        addr,
        admin: state.admin().clone(),
        state,
    };
    Ok((started, handle))
}
