//! The relay's request handler: authenticate the peer as a registered cluster, route,
//! then serve reads from the cache and decide writes before forwarding them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited, StreamBody};
use hyper::body::{Body, Frame};
use secret_relay_policy::{ClusterId, Policy, Rule, keys};
use secret_relay_runtime::{BodyBudget, ConnInfo, PolicyState, declared_length};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::cache::HubCache;
use crate::forwarder::Forwarder;
use crate::metrics::Metrics;
use crate::route::{Route, RouteError, SecretsRequest, Verb, route};
use crate::status::{RelayBody, json, status};
use crate::watch::{ViewRequest, list, watch};
use crate::write::{WriteRequest, not_found, write};

/// Per-cluster and per-request limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes (kube-apiserver's is 3 MiB).
    pub max_body_bytes: usize,
    /// Requests per second per cluster (a token bucket of `burst`).
    pub rate_per_second: f64,
    /// Burst of the per-cluster token bucket.
    pub burst: f64,
    /// Open watches per cluster.
    pub watches_per_cluster: usize,
    /// Timeout of a forwarded request.
    pub upstream_timeout: Duration,
    /// Longest watch (a client may ask for less with `timeoutSeconds`).
    pub max_watch: Duration,
    /// BOOKMARK interval on idle watches.
    pub bookmark_interval: Duration,
    /// How long a connection may take to send a complete request head (slowloris);
    /// after the first request it applies to HTTP/1.1 heads, idle time included.
    pub header_read_timeout: Duration,
    /// How long a hub copy the policy no longer admits waits before the relay
    /// releases it (a policy fixed within it revokes nothing).
    pub revocation_grace: Duration,
    /// The most hub copies one cluster may own: a create beyond is refused (rule
    /// `cluster-quota`), so that a compromised cluster cannot fill the
    /// control-plane namespace (and, through copies sent to `ALL`, every agent's).
    pub max_copies_per_cluster: usize,
    /// The most bytes of hub copies one cluster may own (as JSON): once reached, a
    /// cluster's creates and changes are refused until it deletes some.
    pub max_bytes_per_cluster: usize,
    /// How the policy ConfigMap confirms that the policy is current; a stale one
    /// judges nothing (every request is a 503, open watches end).
    pub policy_currency: secret_relay_runtime::Currency,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 3 * 1024 * 1024,
            rate_per_second: 100.0,
            burst: 200.0,
            watches_per_cluster: 8,
            upstream_timeout: Duration::from_secs(30),
            max_watch: Duration::from_secs(30 * 60),
            bookmark_interval: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            revocation_grace: Duration::from_secs(60),
            policy_currency: secret_relay_runtime::Currency::default(),
            max_copies_per_cluster: 10_000,
            max_bytes_per_cluster: 64 * 1024 * 1024,
        }
    }
}

/// Everything a request needs; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    pub(crate) inner: Arc<RelayInner>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

pub(crate) struct RelayInner {
    /// The served TLS material: its client CA judges every connection's chain
    /// again after a rotation.
    pub(crate) tls: Arc<secret_relay_certs::ReloadingServerTls>,
    pub(crate) policy: PolicyState,
    pub(crate) cache: HubCache,
    pub(crate) upstream: kube::Client,
    /// Forwards what the relay passes on: judged writes, revocations' deletes and
    /// the discovery reads (see [`Forwarder`]).
    pub(crate) forwarder: Forwarder,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    clusters: Mutex<HashMap<String, Arc<ClusterState>>>,
    /// The write bodies in flight, all clusters together ([`BODIES_IN_FLIGHT`] of
    /// the largest size).
    body_budget: BodyBudget,
}

#[derive(Debug)]
struct ClusterState {
    watches: Arc<Semaphore>,
    bucket: Mutex<(f64, Instant)>,
    /// This cluster's write bodies in flight ([`BODIES_IN_FLIGHT_PER_CLUSTER`] of the
    /// largest size).
    body_budget: BodyBudget,
}

/// How many write bodies of the largest size may be in flight at once, all clusters
/// together: with the decoded and re-encoded copies of each, what bounds the memory
/// writes take, whatever a cluster sends (64 MiB of bodies with the 3 MiB limit).
const BODIES_IN_FLIGHT: usize = 21;

/// How many of them one cluster may hold: a cluster that sends many large bodies, or
/// holds them back, waits for itself and leaves the rest to the others.
const BODIES_IN_FLIGHT_PER_CLUSTER: usize = 2;

/// How long a write's body may take to arrive once its head has.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Relay {
    /// A relay over a policy, a cache and the API server clients (the relay's own
    /// identity): kube's for its own reads, and the forwarder of what it passes on.
    pub(crate) fn new(
        policy: PolicyState,
        cache: HubCache,
        upstream: kube::Client,
        forwarder: Forwarder,
        metrics: Arc<Metrics>,
        limits: Limits,
        tls: Arc<secret_relay_certs::ReloadingServerTls>,
    ) -> Relay {
        Relay {
            inner: Arc::new(RelayInner {
                tls,
                policy,
                cache,
                upstream,
                forwarder,
                metrics,
                body_budget: BodyBudget::of_bodies(BODIES_IN_FLIGHT, limits.max_body_bytes),
                limits,
                clusters: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The served TLS material's rotation count, for the accept loop.
    pub fn tls_rotations(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.inner.tls.rotation_counter()
    }

    /// Whether the connection's client chain is trusted by the client CA served
    /// now. Verified again only after a rotation of the TLS material since it was
    /// last verified (the handshake's counts), so a connection made under a CA
    /// that was since replaced is refused from its next request on.
    fn still_trusted(&self, conn: &ConnInfo) -> bool {
        self.chain_trusted(&conn.client_chain, &conn.verified_at_rotation)
    }

    /// [`Relay::still_trusted`] of a chain and the rotation it was last verified under.
    fn chain_trusted(
        &self,
        chain: &[rustls::pki_types::CertificateDer<'static>],
        verified_at: &std::sync::atomic::AtomicU64,
    ) -> bool {
        use std::sync::atomic::Ordering;
        let rotation = self.inner.tls.rotations();
        if verified_at.load(Ordering::Acquire) == rotation {
            return true;
        }
        let trusted = self.inner.tls.verify_client_now(chain).is_ok();
        if trusted {
            verified_at.store(rotation, Ordering::Release);
        }
        trusted
    }

    fn cluster_state(&self, name: &str) -> Arc<ClusterState> {
        let mut clusters = self
            .inner
            .clusters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clusters
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(ClusterState {
                    watches: Arc::new(Semaphore::new(self.inner.limits.watches_per_cluster)),
                    bucket: Mutex::new((self.inner.limits.burst, Instant::now())),
                    body_budget: BodyBudget::of_bodies(
                        BODIES_IN_FLIGHT_PER_CLUSTER,
                        self.inner.limits.max_body_bytes,
                    ),
                })
            })
            .clone()
    }

    fn take_token(&self, state: &ClusterState) -> bool {
        let limits = &self.inner.limits;
        let mut bucket = state
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * limits.rate_per_second;
        bucket.0 = (bucket.0 + refill).min(limits.burst);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn update_connected(&self) {
        let clusters = self
            .inner
            .clusters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let max = self.inner.limits.watches_per_cluster;
        let connected = clusters
            .values()
            .filter(|c| c.watches.available_permits() < max)
            .count();
        self.inner
            .metrics
            .connected_clusters
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
    }
}

/// Answers one request from a peer.
pub async fn handle<B>(relay: &Relay, req: Request<B>, conn: &ConnInfo) -> Response<RelayBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let metrics = &relay.inner.metrics;
    // The cluster as the TLS accept named it, once, from the client certificate.
    let Some(Ok(cluster)) = &conn.identity else {
        return no_identity(metrics, conn);
    };
    // Checked on every request, as kube-apiserver does: a connection may outlive
    // its certificate, and what it carries after that is refused.
    let valid_for = conn.client_cert_valid_for().unwrap_or(Duration::ZERO);
    if valid_for.is_zero() {
        return expired(metrics, cluster);
    }
    if !relay.still_trusted(conn) {
        return untrusted(metrics, cluster);
    }
    if !relay.inner.policy.is_ready() {
        return service_unavailable("the relay has not loaded a valid policy yet; see its /readyz");
    }
    if !relay.inner.policy.is_current() {
        return stale(metrics);
    }
    // One snapshot per request: a request never sees two policies.
    let policy = relay.inner.policy.policy();
    if policy.cluster(cluster.as_str()).is_none() {
        return unregistered(metrics, cluster);
    }
    if let Some(answer) = impersonating(metrics, cluster, req.headers()) {
        return answer;
    }
    let state = relay.cluster_state(cluster.as_str());
    if !relay.take_token(&state) {
        return rate_limited(metrics, cluster);
    }
    let routed = match route_of(&req, policy.control_plane_namespace()) {
        Ok(r) => r,
        Err(err) => {
            metrics.refused("route");
            tracing::info!(%cluster, method = %req.method(), path = req.uri().path(), error = %err, "refused a request outside the relay's surface");
            return route_error(&err);
        }
    };
    match routed {
        Route::Version => forward_get(relay, &req, None).await,
        Route::OpenApi => openapi(relay, &req, cluster).await,
        Route::ApiVersions => json(StatusCode::OK, API_VERSIONS),
        Route::ApiResources => json(StatusCode::OK, API_RESOURCES),
        Route::ApiGroups => json(StatusCode::OK, API_GROUPS),
        Route::Generation { after, revision } => {
            generation(relay, after, revision, valid_for).await
        }
        Route::Secrets(sr) => secrets(relay, &policy, cluster, &state, sr, req, conn).await,
    }
}

/// The answer to a client certificate that names no cluster (or to no certificate).
fn no_identity(metrics: &Metrics, conn: &ConnInfo) -> Response<RelayBody> {
    metrics.refused("no-identity");
    if let Some(Err(err)) = &conn.identity {
        // Why, in words that quote nothing of the certificate.
        let why = err.reason();
        tracing::info!(peer = %conn.peer, reason = why, "refused a client certificate that names no cluster");
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("the client certificate names no secret-relay cluster: {why}"),
            None,
        );
    }
    tracing::info!(peer = %conn.peer, "refused a client certificate that names no cluster");
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "the client certificate names no secret-relay cluster",
        None,
    )
}

/// The answer while the relay cannot confirm that its policy is current: it judges
/// nothing, and above all never calls a cluster registered since unknown (its agent
/// would take that answer, held long enough, as its deregistration).
fn stale(metrics: &Metrics) -> Response<RelayBody> {
    metrics.refused("policy-stale");
    service_unavailable(
        "the relay cannot confirm that its policy is current (it has not read the policy ConfigMap lately); retry, another replica may serve",
    )
}

/// The answer to a request over a connection whose client certificate has expired
/// since its handshake.
fn expired(metrics: &Metrics, cluster: &ClusterId) -> Response<RelayBody> {
    metrics.refused("certificate-expired");
    tracing::info!(%cluster, "refused a request whose client certificate has expired");
    status(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "the client certificate has expired since this connection began: renew it and connect again",
        None,
    )
}

/// The answer to a request over a connection whose client certificate the client
/// CA served now does not trust (it was replaced since the handshake).
fn untrusted(metrics: &Metrics, cluster: &ClusterId) -> Response<RelayBody> {
    metrics.refused("certificate-untrusted");
    tracing::info!(%cluster, "refused a request whose client certificate the current client CA does not trust");
    status(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "the client certificate is not trusted by the relay's client CA since it changed: connect again with a certificate of the new CA",
        None,
    )
}

/// The answer to a cluster the loaded policy does not register.
fn unregistered(metrics: &Metrics, cluster: &ClusterId) -> Response<RelayBody> {
    metrics.refused("unregistered-cluster");
    tracing::info!(%cluster, "refused a cluster that is not in the policy");
    // A distinct answer, given only under a loaded policy and only over the
    // cluster's authenticated connection: its agent counts on it (and on nothing
    // else) before it deletes its down copies.
    let reason = format!(
        "cluster {cluster} is not registered: add it to clusters in the secret-relay-policy ConfigMap"
    );
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!("{reason} (rule {})", Rule::UnknownCluster),
        None,
    )
}

/// The answer to a request that carries an impersonation header of its own: the
/// relay sets the identity itself.
fn impersonating(
    metrics: &Metrics,
    cluster: &ClusterId,
    headers: &HeaderMap,
) -> Option<Response<RelayBody>> {
    let header = headers
        .keys()
        .find(|k| k.as_str().starts_with("impersonate-"))?;
    metrics.refused("impersonation-header");
    tracing::warn!(%cluster, header = %header, "refused a request with an impersonation header");
    Some(status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!("cluster {cluster} may not send {header}: the relay sets the identity itself"),
        None,
    ))
}

/// The answer to a request over the cluster's rate.
fn rate_limited(metrics: &Metrics, cluster: &ClusterId) -> Response<RelayBody> {
    metrics.refused("rate-limited");
    tracing::info!(%cluster, "refused a request over the cluster's rate");
    too_many_requests(&format!(
        "cluster {cluster} is over its request rate; retry later"
    ))
}

/// A 503 that asks the client to come back in a second (kube's and client-go's
/// clients wait as `Retry-After` says).
fn service_unavailable(message: &str) -> Response<RelayBody> {
    let mut resp = status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        message,
        None,
    );
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    resp
}

/// A 429 that asks the client to come back in a second.
fn too_many_requests(message: &str) -> Response<RelayBody> {
    let mut resp = status(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        message,
        None,
    );
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    resp
}

/// Where the request goes on the relay's surface, in control-plane namespace
/// `namespace`.
fn route_of<B>(req: &Request<B>, namespace: &str) -> Result<Route, RouteError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    route(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        content_type,
        namespace,
    )
}

const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"secret-relay"}]}"#;
const API_RESOURCES: &str = r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{"name":"secrets","singularName":"secret","namespaced":true,"kind":"Secret","verbs":["create","delete","get","list","patch","update","watch"]}]}"#;
const API_GROUPS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;

/// How long a generation long poll is held open before answering with the current one.
const GENERATION_POLL: Duration = Duration::from_secs(55);

async fn generation(
    relay: &Relay,
    after: Option<u64>,
    revision: Option<String>,
    valid_for: Duration,
) -> Response<RelayBody> {
    let policy = &relay.inner.policy;
    let mut rx = policy.subscribe();
    if after.is_some() || revision.is_some() {
        // Another revision (or, as older agents ask, another generation), the relay
        // stopping (its cache closes) or the poll's end: each answers with the
        // current one. Another generation, not only a newer: generations count per
        // replica, and one started later may serve a lower number.
        let changed = rx.wait_for(|g| match &revision {
            Some(r) => *policy.revision() != *r,
            None => Some(*g) != after,
        });
        tokio::select! {
            _ = tokio::time::timeout(GENERATION_POLL.min(valid_for), changed) => {}
            () = relay.inner.cache.closed() => {}
        }
    }
    drop(rx);
    if !relay.inner.policy.is_current() {
        // Gone stale while the poll was held: no generation to vouch for.
        return stale(&relay.inner.metrics);
    }
    // The revision before the policy: a racing reload pairs a newer policy with the
    // older revision (asked again at once), never the reverse.
    let revision = relay.inner.policy.revision();
    let (policy, current) = relay.inner.policy.snapshot();
    // What the agents strip from copies beside the built-in rule: part of the
    // policy they apply, so it comes with the generation it belongs to.
    let answer = serde_json::json!({
        "kind": "PolicyGeneration",
        "apiVersion": "secret-relay.io/v1",
        "generation": current,
        "revision": *revision,
        "controlPlaneNamespace": policy.control_plane_namespace(),
        "stripMetadata": policy.strip_metadata(),
    });
    json(StatusCode::OK, answer.to_string())
}

fn route_error(err: &RouteError) -> Response<RelayBody> {
    let (code, reason) = match err {
        RouteError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
        RouteError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        RouteError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        RouteError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        RouteError::UnsupportedMediaType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
        }
        RouteError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
    };
    status(code, reason, &err.to_string(), None)
}

async fn secrets<B>(
    relay: &Relay,
    policy: &Policy,
    cluster: &ClusterId,
    state: &Arc<ClusterState>,
    sr: SecretsRequest,
    req: Request<B>,
    conn: &ConnInfo,
) -> Response<RelayBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cache = &relay.inner.cache;
    let reads = matches!(sr.verb, Verb::Get | Verb::List | Verb::Watch);
    // Views are the cache's: read only once it has followed the policy in force (a
    // policy change reaches it a moment after the policy itself).
    if reads && (!cache.is_synced() || cache.generation() < relay.inner.policy.generation()) {
        return service_unavailable("the relay's cache of hub copies is not synced yet; retry");
    }
    match sr.verb {
        Verb::Get => get(cache, cluster, sr.name.as_deref().unwrap_or_default()),
        Verb::List | Verb::Watch => {
            list_or_watch(relay, policy, cluster, state, &sr, req.uri(), conn)
        }
        Verb::Create | Verb::Update | Verb::Patch(_) | Verb::Delete => {
            let (parts, body) = req.into_parts();
            // Held until the write is answered: its body and the copies made of it.
            let _budget = match take_body_budget(relay, state, &parts.headers) {
                Ok(permits) => permits,
                Err(short) => return over_body_budget(relay, cluster, short),
            };
            let body = match read_body(relay, cluster, &parts.headers, body).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let request = WriteRequest {
                cluster,
                sr,
                headers: &parts.headers,
                body,
            };
            write(relay, policy, &request).await
        }
    }
}

/// A GET of hub copy `name`: what the cache holds, if the cluster sees it; else
/// the same 404 as for a name that does not exist.
fn get(cache: &HubCache, cluster: &ClusterId, name: &str) -> Response<RelayBody> {
    let view = ViewRequest {
        cluster: cluster.as_str().to_owned(),
        labels: None,
        name: None,
    };
    match cache.get(name) {
        Some(entry) if view.sees(&entry) => json(StatusCode::OK, entry.json.clone()),
        _ => not_found(name),
    }
}

/// A LIST or a WATCH of the cluster's view, served from the cache.
fn list_or_watch(
    relay: &Relay,
    policy: &Policy,
    cluster: &ClusterId,
    state: &ClusterState,
    sr: &SecretsRequest,
    uri: &http::Uri,
    conn: &ConnInfo,
) -> Response<RelayBody> {
    let view = match sr
        .query
        .view(cluster.as_str(), policy.control_plane_namespace())
    {
        Ok(v) => v,
        Err(err) => {
            relay.inner.metrics.refused("route");
            tracing::info!(%cluster, path = uri.path(), query = uri.query().unwrap_or(""), error = %err, "refused a list or watch it cannot serve");
            return route_error(&err);
        }
    };
    if sr.verb == Verb::List {
        return json(StatusCode::OK, list(&relay.inner.cache, &view));
    }
    let Ok(permit) = state.watches.clone().try_acquire_owned() else {
        relay.inner.metrics.refused("too-many-watches");
        tracing::info!(
            %cluster,
            limit = relay.inner.limits.watches_per_cluster,
            "refused a watch over the cluster's limit"
        );
        return status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            &format!(
                "cluster {cluster} has {} open watches, the most allowed; close one first",
                relay.inner.limits.watches_per_cluster
            ),
            None,
        );
    };
    let limits = &relay.inner.limits;
    let mut params = sr
        .query
        .watch_params(limits.max_watch, limits.bookmark_interval);
    // A watch ends when its client certificate expires, or with the first line after
    // a change of the client CA that no longer trusts it; asked again, it is refused.
    params.timeout = params
        .timeout
        .min(conn.client_cert_valid_for().unwrap_or(Duration::ZERO));
    let rx = watch(
        &relay.inner.cache,
        view,
        params,
        relay.inner.metrics.clone(),
        permit,
    );
    relay.update_connected();
    let trust = (conn.client_chain.clone(), conn.verified_at_rotation.clone());
    watch_response(relay.clone(), rx, trust)
}

/// A connection's client chain and the rotation it was last verified under.
type Trust = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    Arc<std::sync::atomic::AtomicU64>,
);

/// The streamed answer to a watch: its lines as they come, while the client CA
/// trusts the connection's chain `trust` (checked again after a rotation); the
/// relay's count of connected clusters is updated when it ends.
fn watch_response(relay: Relay, rx: mpsc::Receiver<Bytes>, trust: Trust) -> Response<RelayBody> {
    let stream = futures::stream::unfold(
        (rx, Some(relay), trust),
        |(mut rx, relay, trust)| async move {
            let line = rx.recv().await;
            let trusted = relay
                .as_ref()
                .is_none_or(|r| r.chain_trusted(&trust.0, &trust.1));
            match line.filter(|_| trusted) {
                Some(line) => Some((
                    Ok::<_, std::convert::Infallible>(Frame::data(line)),
                    (rx, relay, trust),
                )),
                None => {
                    if let Some(relay) = relay {
                        relay.update_connected();
                    }
                    None
                }
            }
        },
    );
    let body = StreamBody::new(stream.boxed()).map_err(|never| match never {});
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Takes a write's share of the body budgets before its body is read: its
/// Content-Length (the largest body when it has none), from the cluster's budget
/// and then the relay's. Either one short is a 429: the body is not read.
fn take_body_budget(
    relay: &Relay,
    state: &ClusterState,
    headers: &HeaderMap,
) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), BudgetShort> {
    let limit = relay.inner.limits.max_body_bytes;
    let declared = declared_length(headers).unwrap_or(limit).min(limit);
    let own = state
        .body_budget
        .try_take(declared)
        .ok_or(BudgetShort::Cluster)?;
    let all = relay
        .inner
        .body_budget
        .try_take(declared)
        .ok_or(BudgetShort::Relay)?;
    Ok((own, all))
}

/// Which body budget a write found short.
#[derive(Clone, Copy, Debug)]
enum BudgetShort {
    /// The cluster's own.
    Cluster,
    /// The relay's, all clusters together.
    Relay,
}

fn over_body_budget(relay: &Relay, cluster: &ClusterId, short: BudgetShort) -> Response<RelayBody> {
    let message = match short {
        BudgetShort::Cluster => {
            format!("cluster {cluster} has too many request bodies in flight; retry later")
        }
        BudgetShort::Relay => {
            "the relay has too many request bodies in flight; retry later".to_owned()
        }
    };
    relay.inner.metrics.refused("body-budget");
    tracing::info!(%cluster, "refused a write over the body budget");
    too_many_requests(&message)
}

/// A write's body, up to the body limit.
async fn read_body<B>(
    relay: &Relay,
    cluster: &ClusterId,
    headers: &HeaderMap,
    body: B,
) -> Result<Bytes, Response<RelayBody>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = relay.inner.limits.max_body_bytes;
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large(relay, cluster, limit));
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    let Ok(read) = read.await else {
        relay.inner.metrics.refused("body-timeout");
        tracing::info!(%cluster, "refused a request body that did not arrive in time");
        return Err(status(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            &format!(
                "the request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
            None,
        ));
    };
    match read {
        Ok(c) => Ok(c.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(relay, cluster, limit))
        }
        Err(err) => Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("failed to read the request body: {err}"),
            None,
        )),
    }
}

fn too_large(relay: &Relay, cluster: &ClusterId, limit: usize) -> Response<RelayBody> {
    relay.inner.metrics.refused("body-too-large");
    tracing::info!(%cluster, limit, "refused a request body over the limit");
    status(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        &format!("the request body is larger than {limit} bytes"),
        None,
    )
}

/// The OpenAPI documents a cluster's client reads before it writes (kubectl's
/// apply and diff), cut to the core group, which is all the relay serves: the hub's
/// other API groups and its custom resources are the control plane's business.
///
/// - `/openapi/v3` lists `api/v1` only, with the API server's own link to it;
/// - `/openapi/v3/api/v1` is the API server's (the core group's kinds only);
/// - `/openapi/v2` holds every group in one document, so the relay answers it
///   itself with a document that describes no kind (an empty protobuf, or JSON
///   with no paths or definitions): kubectl then computes its patches from its
///   built-in types, as for any kind a server does not describe.
async fn openapi<B>(relay: &Relay, req: &Request<B>, cluster: &ClusterId) -> Response<RelayBody> {
    match req.uri().path() {
        "/openapi/v2" => openapi_v2(req.headers()),
        "/openapi/v3" => {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let answer = forward(
                relay,
                &Method::GET,
                req.uri(),
                &headers,
                Bytes::new(),
                Some(cluster),
            )
            .await;
            if !answer.status().is_success() {
                return answer;
            }
            let limits = &relay.inner.limits;
            let body = match crate::write::read_whole(
                answer.into_body(),
                OPENAPI_INDEX_CAP,
                limits.upstream_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(failed) => return failed,
            };
            match core_only_index(&body) {
                Some(index) => json(StatusCode::OK, index),
                None => status(
                    StatusCode::BAD_GATEWAY,
                    "ServiceUnavailable",
                    "the control plane's OpenAPI index did not read",
                    None,
                ),
            }
        }
        _ => forward_get(relay, req, Some(cluster)).await,
    }
}

/// The largest OpenAPI v3 index the relay reads (one link per group-version).
const OPENAPI_INDEX_CAP: usize = 1 << 20;

/// `/openapi/v3`'s index cut to the core group's link.
fn core_only_index(body: &[u8]) -> Option<String> {
    let mut index: serde_json::Value = serde_json::from_slice(body).ok()?;
    index
        .get_mut("paths")?
        .as_object_mut()?
        .retain(|path, _| path == "api/v1");
    Some(index.to_string())
}

/// `/openapi/v2` as the relay answers it: a document of no kind, in the form asked
/// for (protobuf unless the client takes JSON).
fn openapi_v2(headers: &HeaderMap) -> Response<RelayBody> {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        let mut resp = Response::new(crate::status::full(Bytes::new()));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            // What kube-apiserver answers for either of the two names clients ask by.
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        );
        return resp;
    }
    json(
        StatusCode::OK,
        r#"{"swagger":"2.0","info":{"title":"Kubernetes","version":"unversioned"},"paths":{},"definitions":{}}"#
            .to_owned(),
    )
}

async fn forward_get<B>(
    relay: &Relay,
    req: &Request<B>,
    impersonate: Option<&ClusterId>,
) -> Response<RelayBody> {
    forward(
        relay,
        &Method::GET,
        req.uri(),
        req.headers(),
        Bytes::new(),
        impersonate,
    )
    .await
}

/// Sends a request to the API server as the relay's own account, impersonating
/// `cluster` when given, and passes its answer back unchanged. Connection errors are
/// 502 and a timeout 504.
pub(crate) async fn forward(
    relay: &Relay,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Bytes,
    impersonate: Option<&ClusterId>,
) -> Response<RelayBody> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = Request::builder().method(method.clone()).uri(path);
    for name in [CONTENT_TYPE, ACCEPT] {
        if let Some(v) = headers.get(&name) {
            builder = builder.header(name, v.clone());
        }
    }
    if let Some(cluster) = impersonate {
        builder = builder
            .header("Impersonate-User", cluster.impersonated_user())
            .header("Impersonate-Group", keys::CLUSTERS_GROUP)
            .header("Impersonate-Group", keys::RELAY_STAMPED_GROUP);
    }
    let request = match builder.body(body) {
        Ok(r) => r,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("failed to build the upstream request: {e}"),
                None,
            );
        }
    };
    let started = Instant::now();
    let sent = tokio::time::timeout(
        relay.inner.limits.upstream_timeout,
        relay.inner.forwarder.send(request),
    )
    .await;
    relay
        .inner
        .metrics
        .upstream_latency
        .observe(started.elapsed().as_secs_f64());
    match sent {
        Err(_) => status(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            "the control plane's API server did not answer in time",
            None,
        ),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "failed to reach the control plane's API server");
            status(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                "failed to reach the control plane's API server",
                None,
            )
        }
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            parts.headers = answer_headers(&parts.headers);
            Response::from_parts(parts, body.map_err(|e| Box::new(e) as _).boxed_unsync())
        }
    }
}

/// The headers of an API server's answer that reach a cluster: those that say how
/// to read the body and when to come back. Every other one stays with the relay:
/// `Warning` (an admission warning can name registered clusters the cluster may not
/// know of), `Audit-Id`, the hub's flow-control identifiers
/// (`X-Kubernetes-PF-*`), cookies and challenges from whatever fronts the hub, and
/// the hop-by-hop headers of the upstream connection.
const ANSWER_HEADERS: [http::HeaderName; 9] = [
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::CONTENT_ENCODING,
    http::header::CACHE_CONTROL,
    http::header::ETAG,
    http::header::LAST_MODIFIED,
    http::header::EXPIRES,
    http::header::VARY,
    http::header::RETRY_AFTER,
];

fn answer_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in ANSWER_HEADERS {
        for value in upstream.get_all(&name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}
