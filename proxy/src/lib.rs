//! The relay: the control-plane endpoint agents talk to. It terminates mTLS from
//! managed clusters, maps each client certificate to a registered cluster, serves
//! each cluster a filtered view of the hub copies from one shared watch cache, and
//! decides up-sync writes and releases before forwarding them to the API server as
//! its own account impersonating the cluster.
//!
//! Layers, outermost first: the TLS accept loop of `secret-relay-runtime` (a span per
//! connection naming the peer), authentication (peer certificate to cluster, refused
//! when not in the live policy), refusal of client impersonation headers, a
//! per-cluster rate limit, routing (Secrets in the control-plane namespace only),
//! then reads from the cache or a policy decision and forwarding.

pub mod body;
mod cache;
mod forwarder;
mod handback;
mod metrics;
mod patch;
mod revoke;
mod route;
mod server;
mod status;
mod watch;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;

pub use cache::{CacheEvent, Entry, HubCache, Resume, Snapshot, parse_rv, run_upstream, targets};
pub use metrics::{Metrics, RefusalLabels, WriteLabels};
pub use patch::{PatchError, apply_patch, apply_patch_value};
pub use route::{PatchKind, Query, Route, RouteError, SecretsRequest, Verb, route};
pub use server::{Limits, Relay, handle};
pub use status::{BoxError, RelayBody};
pub use watch::{POLICY_GENERATION_ANNOTATION, ViewRequest, WatchParams, error_line, list, watch};

use secret_relay_runtime::{CancellationToken, ConnInfo, ServeOptions, serve_tls};

/// How many cache events are kept for watch resumes.
pub const DEFAULT_HISTORY: usize = 10_000;

/// Serves the relay on `listener` until `shutdown`: the caller has started the
/// policy source and [`run_upstream`] for `relay`'s cache.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    relay: Relay,
    shutdown: CancellationToken,
) {
    let options = ServeOptions {
        header_read_timeout: relay.limits().header_read_timeout,
        counters: Some(relay.metrics().conn.clone()),
        tls_rotations: Some(relay.tls_rotations()),
        ..ServeOptions::default()
    };
    let handler = move |req, conn: Arc<ConnInfo>| {
        let relay = relay.clone();
        async move {
            let method = req_method(&req);
            let resp = handle(&relay, req, &conn).await;
            tracing::debug!(peer = %conn.peer, %method, status = resp.status().as_u16(), "request");
            resp
        }
    };
    serve_tls(listener, tls, options, handler, shutdown).await;
}

fn req_method<B>(req: &http::Request<B>) -> http::Method {
    req.method().clone()
}

/// How to run a relay process.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address of the mTLS API surface.
    pub addr: SocketAddr,
    /// Serving certificate, key and the CA client certificates must chain to.
    pub tls: secret_relay_certs::TlsFiles,
    /// Kubeconfig for the control plane's API server; `None`: in-cluster or `$KUBECONFIG`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Where the policy comes from.
    pub policy: secret_relay_runtime::PolicySource,
    /// Plain-HTTP address of `/healthz`, `/readyz` and `/metrics`; `None`: not served.
    pub admin_addr: Option<SocketAddr>,
    /// How often certificate files (and a policy file) are checked for changes.
    pub poll_interval: std::time::Duration,
    /// Limits.
    pub limits: Limits,
}

/// What a started relay reports to its caller.
#[derive(Clone, Debug)]
pub struct Started {
    /// The bound API address.
    pub addr: SocketAddr,
    /// The bound admin address, when served.
    pub admin_addr: Option<SocketAddr>,
    /// The admin endpoints (readiness and metrics) of this relay.
    pub admin: secret_relay_runtime::Admin,
    /// The served policy.
    pub policy: secret_relay_runtime::PolicyState,
    /// The cache.
    pub cache: HubCache,
    /// The served TLS material (re-read from its files every poll interval).
    pub tls: Arc<secret_relay_certs::ReloadingServerTls>,
}

/// Failed to start the relay.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An address could not be bound.
    #[error("failed to bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS material could not be loaded.
    #[error("failed to load the relay's TLS material")]
    Tls(#[source] secret_relay_certs::ReloadTlsError),
    /// No client for the control plane.
    #[error("failed to build the control plane client")]
    Client(#[source] secret_relay_runtime::BuildClientError),
}

/// Binds, starts the policy source, the upstream watch, certificate rotation and the
/// admin endpoints, and serves until `shutdown`. Returns once serving has started;
/// the returned handle resolves when everything has stopped.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<(Started, tokio::task::JoinHandle<()>), RunError> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("secret_relay_relay");
    let policy = secret_relay_runtime::PolicyState::new(&mut registry);
    policy.set_currency(config.limits.policy_currency);
    let metrics = Arc::new(Metrics::new(&mut registry));
    let cache = HubCache::new(DEFAULT_HISTORY);
    let kube_config = secret_relay_runtime::kube_config(config.kubeconfig.as_deref())
        .await
        .map_err(RunError::Client)?;
    let build = |e| RunError::Client(secret_relay_runtime::BuildClientError::Build(e));
    let client = kube::Client::try_from(kube_config.clone()).map_err(build)?;
    let forwarder = forwarder::Forwarder::new(&kube_config).map_err(build)?;
    let tls =
        secret_relay_certs::ReloadingServerTls::relay(config.tls.clone()).map_err(RunError::Tls)?;
    let listener = bind(config.addr).await?;
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.addr,
        source,
    })?;
    let admin_listener = match config.admin_addr {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    secret_relay_runtime::register_tls_metrics(&mut registry, &tls);
    let mut parts = readiness(&policy, &cache, &metrics, config.limits.revocation_grace);
    parts.push(secret_relay_runtime::tls_readiness(&tls));
    let admin = secret_relay_runtime::Admin::new(registry, parts);
    let relay = Relay::new(
        policy.clone(),
        cache.clone(),
        client.clone(),
        forwarder,
        metrics.clone(),
        config.limits.clone(),
        tls.clone(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    spawn_sources(&mut tasks, &config, &policy, &cache, client, &shutdown);
    let rotation_stop = shutdown.clone();
    let rotation = tls.clone().spawn_watch(config.poll_interval, async move {
        rotation_stop.cancelled().await;
    });
    tasks.spawn(async move {
        let _ = rotation.await;
    });
    if let Some(l) = admin_listener {
        tasks.spawn(secret_relay_runtime::serve_admin(
            l,
            admin.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(revoke::run(relay.clone(), shutdown.clone()));
    tasks.spawn(serve(listener, tls.config(), relay, shutdown.clone()));
    tracing::info!(%addr, admin = ?admin_addr, "relay serving");
    let started = Started {
        addr,
        admin_addr,
        admin,
        policy,
        cache,
        tls,
    };
    let all = tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
    Ok((started, all))
}

/// Binds `addr`.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// The relay's readiness: a valid policy and a synced cache; the revocations that
/// wait for their grace are a detail that never makes it unready.
fn readiness(
    policy: &secret_relay_runtime::PolicyState,
    cache: &HubCache,
    metrics: &Arc<Metrics>,
    grace: std::time::Duration,
) -> Vec<secret_relay_runtime::Readiness> {
    let policy_ready = policy.clone();
    let policy_current = policy.clone();
    let cache_ready = cache.clone();
    let revoked = metrics.clone();
    vec![
        secret_relay_runtime::Readiness::new("policy", move || policy_ready.readiness()),
        secret_relay_runtime::Readiness::new("policy-current", move || {
            policy_current.currency_readiness()
        }),
        secret_relay_runtime::Readiness::new("cache", move || {
            let synced = cache_ready.is_synced();
            let detail = if synced {
                format!(
                    "{} hub copies at resourceVersion {}",
                    cache_ready.len(),
                    cache_ready.resource_version()
                )
            } else if !cache_ready.is_serving() {
                "not served while the policy is stale (see policy-current)".to_owned()
            } else {
                "the first list of hub copies has not completed".to_owned()
            };
            (synced, detail)
        }),
        // Never unready: a detail of what waits to be revoked.
        secret_relay_runtime::Readiness::new("revocation", move || {
            let n = revoked.revocations_pending.get();
            (
                true,
                format!(
                    "{n} hub copies the policy no longer admits, released after the {grace:?} grace"
                ),
            )
        }),
    ]
}

/// Spawns the policy source (reading the ConfigMap with `client` when that is the
/// source) and the upstream watch that fills the cache.
fn spawn_sources(
    tasks: &mut tokio::task::JoinSet<()>,
    config: &Config,
    policy: &secret_relay_runtime::PolicyState,
    cache: &HubCache,
    client: kube::Client,
    shutdown: &CancellationToken,
) {
    let source_client = matches!(
        config.policy,
        secret_relay_runtime::PolicySource::ConfigMap { .. }
    )
    .then(|| client.clone());
    tasks.spawn(secret_relay_runtime::run_policy_source(
        policy.clone(),
        config.policy.clone(),
        source_client,
        shutdown.clone(),
    ));
    tasks.spawn(run_upstream(
        cache.clone(),
        client,
        policy.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(serve_while_current(
        policy.clone(),
        cache.clone(),
        shutdown.clone(),
    ));
}

/// Serves the cache while the policy is current, and stops serving it (its watches
/// end, reads are refused) while it is stale.
async fn serve_while_current(
    policy: secret_relay_runtime::PolicyState,
    cache: HubCache,
    shutdown: CancellationToken,
) {
    let mut currency = policy.subscribe_currency();
    loop {
        let current = *currency.borrow_and_update();
        if current != cache.is_serving() {
            if current {
                tracing::info!("the policy is confirmed current again: serving");
            } else {
                tracing::warn!(
                    "the policy ConfigMap has not confirmed the policy for too long: serving nothing until it does"
                );
            }
            cache.set_serving(current);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = currency.changed() => if changed.is_err() { return },
        }
    }
}
