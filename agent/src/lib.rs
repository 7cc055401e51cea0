//! The managed-cluster side of secret-relay.
//!
//! An agent watches the Secrets of its namespace on its own API server and the
//! relay's view of the hub copies (both with kube-runtime reflectors, which back off
//! and resume by themselves), and keeps both directions converged with one
//! level-triggered reconciler:
//!
//! - up-sync: an opted-in Secret is pushed to the relay when it differs from its hub
//!   copy (data compared in memory: the agent holds both sides' values); the relay's
//!   decision is shown as an Event on the Secret, a log line and a metric; a denial is
//!   retried when the relay's policy generation changes, and one that waits on the hub
//!   (another party's copy) also with backoff; a denial of a Secret synced before is a
//!   revocation (`UpSyncRevoked`); an API error is an error (`UpSyncFailed`), retried;
//! - release: a hub copy this cluster owns whose Secret is gone (or no longer opted
//!   in) is released through the relay, only after complete lists on both sides;
//! - down-sync: a hub copy in the view that another party owns is written as a down
//!   copy (the metadata `secret_relay_policy::carry` lets cross, the owner label
//!   naming its origin, and `secret-relay.io/source` naming the hub copy's uid and
//!   resourceVersion it was written from, nothing of the values); drift (of data,
//!   compared in memory, or metadata) is reverted; a copy that cannot be updated
//!   (type, immutable) is replaced; a local Secret the agent did not write is
//!   never overwritten (a conflict Event instead); a down copy whose hub copy left the
//!   view is deleted only after a complete list of the view, a grace, and within a
//!   deletion budget ([`Deletion`]; beyond it, held until a cluster admin confirms);
//!   after the relay has refused the cluster as unregistered, and nothing else, for a
//!   grace, every down copy goes.

mod metrics;
mod relay;
mod sync;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use metrics::Metrics;
pub use relay::{RelayClientError, relay_client};
pub use sync::{
    Agent, CONCURRENCY, Deletion, Fingerprint, down_copy, hub_copy_body, needs_replacing,
};

use secret_relay_runtime::CancellationToken;

/// How to run an agent.
#[derive(Clone, Debug)]
pub struct Config {
    /// Kubeconfig of the managed cluster; `None`: in-cluster or `$KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// The agent namespace.
    pub namespace: String,
    /// The relay's URL, `https://host:port`.
    pub relay: String,
    /// The cluster's client certificate and key, and the CA of the relay's serving
    /// certificate.
    pub tls_cert: PathBuf,
    /// The client key.
    pub tls_key: PathBuf,
    /// The relay's CA.
    pub relay_ca: PathBuf,
    /// Plain-HTTP address of `/healthz`, `/readyz` and `/metrics`; `None`: not served.
    pub admin_addr: Option<SocketAddr>,
    /// A full reconcile runs at least this often (a safety net; changes are
    /// reconciled as they arrive).
    pub resync: Duration,
    /// How down copies are deleted: the grace, the budget, and the wait before an
    /// unregistered cluster's copies go.
    pub deletion: Deletion,
}

/// Failed to start the agent.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The relay client could not be built.
    #[error("failed to build the relay client")]
    Relay(#[from] RelayClientError),
    /// The local client could not be built.
    #[error("failed to build the managed cluster's client")]
    Local(#[source] secret_relay_runtime::BuildClientError),
    /// The admin address could not be bound.
    #[error("failed to bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a started agent reports.
#[derive(Clone, Debug)]
pub struct Started {
    /// The cluster this agent is (from its certificate).
    pub cluster: String,
    /// The admin endpoints.
    pub admin: secret_relay_runtime::Admin,
    /// The bound admin address, when served.
    pub admin_addr: Option<SocketAddr>,
    /// The agent's state, for tests and the demo.
    pub agent: Arc<Agent>,
}

/// Starts the agent; it runs until `shutdown`. The returned handle resolves when it
/// has stopped.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<(Started, tokio::task::JoinHandle<()>), StartError> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("secret_relay_agent");
    let metrics = Arc::new(Metrics::new(&mut registry));
    let (relay, cluster) = relay_client(
        &config.relay,
        &config.tls_cert,
        &config.tls_key,
        &config.relay_ca,
    )
    .await?;
    let mut local_config = secret_relay_runtime::kube_config(config.kubeconfig.as_deref())
        .await
        .map_err(StartError::Local)?;
    // As for the relay client: the agent's own retries are the only ones.
    local_config.default_retry = false;
    let local = kube::Client::try_from(local_config)
        .map_err(|e| StartError::Local(secret_relay_runtime::BuildClientError::Build(e)))?;
    let agent = Arc::new(Agent::new(
        cluster.clone(),
        config.namespace.clone(),
        config.deletion.clone(),
        local,
        relay,
        metrics,
    ));
    let ready = agent.clone();
    let admin = secret_relay_runtime::Admin::new(
        registry,
        vec![secret_relay_runtime::Readiness::new("sync", move || {
            ready.readiness()
        })],
    );
    let admin_listener = match config.admin_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(l) = admin_listener {
        tasks.spawn(secret_relay_runtime::serve_admin(
            l,
            admin.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(agent.clone().run(config.resync, shutdown));
    tracing::info!(%cluster, namespace = %config.namespace, relay = %config.relay, "agent started");
    let all = tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
    Ok((
        Started {
            cluster,
            admin,
            admin_addr,
            agent,
        },
        all,
    ))
}
