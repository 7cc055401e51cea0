//! The relay's request handler: authenticate the peer as a registered cluster, route,
//! then serve reads from the cache and decide writes before forwarding them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited, StreamBody};
use hyper::body::{Body, Frame};
use secret_relay_policy::{Decision, Policy, ReleaseAction, Secret, keys, release, up_sync};
use secret_relay_runtime::{ConnInfo, PolicyState};
use tokio::sync::Semaphore;

use crate::cache::HubCache;
use crate::metrics::{Metrics, WriteLabels};
use crate::patch::{PatchError, apply_patch};
use crate::route::{Route, RouteError, SecretsRequest, Verb, route};
use crate::status::{RelayBody, json, status, success};
use crate::watch::{ViewRequest, list, watch};

/// The user the relay impersonates for cluster `name`.
pub fn cluster_user(name: &str) -> String {
    format!("secret-relay:cluster:{name}")
}

/// The group every impersonated cluster is in.
pub const CLUSTERS_GROUP: &str = "secret-relay:clusters";

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
        }
    }
}

/// Everything a request needs; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<RelayInner>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

struct RelayInner {
    policy: PolicyState,
    cache: HubCache,
    upstream: kube::Client,
    metrics: Arc<Metrics>,
    limits: Limits,
    clusters: Mutex<HashMap<String, Arc<ClusterState>>>,
}

#[derive(Debug)]
struct ClusterState {
    watches: Arc<Semaphore>,
    bucket: Mutex<(f64, Instant)>,
}

impl Relay {
    /// A relay over a policy, a cache and the API server client (the relay's own identity).
    pub fn new(
        policy: PolicyState,
        cache: HubCache,
        upstream: kube::Client,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Relay {
        Relay {
            inner: Arc::new(RelayInner {
                policy,
                cache,
                upstream,
                metrics,
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
    let Some(cluster) = conn.identity.clone() else {
        metrics.refused("no-identity");
        tracing::info!(peer = %conn.peer, "refused a client certificate that names no cluster");
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the client certificate names no secret-relay cluster",
            None,
        );
    };
    if !relay.inner.policy.is_ready() {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the relay has not loaded a valid policy yet; see its /readyz",
            None,
        );
    }
    // One snapshot per request: a request never sees two policies.
    let policy = relay.inner.policy.policy();
    if policy.cluster(&cluster).is_none() {
        metrics.refused("unregistered-cluster");
        tracing::info!(%cluster, "refused a cluster that is not in the policy");
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "cluster {cluster} is not registered: add it to clusters in the secret-relay-policy ConfigMap"
            ),
            None,
        );
    }
    if let Some(header) = req
        .headers()
        .keys()
        .find(|k| k.as_str().starts_with("impersonate-"))
    {
        metrics.refused("impersonation-header");
        tracing::warn!(%cluster, header = %header, "refused a request with an impersonation header");
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("cluster {cluster} may not send {header}: the relay sets the identity itself"),
            None,
        );
    }
    let state = relay.cluster_state(&cluster);
    if !relay.take_token(&state) {
        metrics.refused("rate-limited");
        tracing::info!(%cluster, "refused a request over the cluster's rate");
        let mut resp = status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            &format!("cluster {cluster} is over its request rate; retry later"),
            None,
        );
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return resp;
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let namespace = policy.control_plane_namespace();
    let routed = route(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        content_type,
        namespace,
    );
    let routed = match routed {
        Ok(r) => r,
        Err(err) => {
            metrics.refused("route");
            tracing::info!(%cluster, method = %req.method(), path = req.uri().path(), error = %err, "refused a request outside the relay's surface");
            return route_error(&err);
        }
    };
    match routed {
        Route::Version => forward_get(relay, &req, None).await,
        Route::OpenApi => forward_get(relay, &req, Some(&cluster)).await,
        Route::ApiVersions => json(StatusCode::OK, API_VERSIONS),
        Route::ApiResources => json(StatusCode::OK, API_RESOURCES),
        Route::ApiGroups => json(StatusCode::OK, API_GROUPS),
        Route::Generation { after } => generation(relay, after).await,
        Route::Secrets(sr) => secrets(relay, &policy, &cluster, &state, sr, req).await,
    }
}

const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"secret-relay"}]}"#;
const API_RESOURCES: &str = r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{"name":"secrets","singularName":"secret","namespaced":true,"kind":"Secret","verbs":["create","delete","get","list","patch","update","watch"]}]}"#;
const API_GROUPS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;

/// How long a generation long poll is held open before answering with the current one.
const GENERATION_POLL: Duration = Duration::from_secs(55);

async fn generation(relay: &Relay, after: Option<u64>) -> Response<RelayBody> {
    let mut rx = relay.inner.policy.subscribe();
    if let Some(after) = after {
        // Another generation, the relay stopping (its cache closes) or the poll's end:
        // each answers with the current one. Another, not only a newer: generations
        // count per replica, and one started later may serve a lower number.
        let changed = rx.wait_for(|g| *g != after);
        tokio::select! {
            _ = tokio::time::timeout(GENERATION_POLL, changed) => {}
            () = relay.inner.cache.closed() => {}
        }
    }
    let current = *rx.borrow();
    json(
        StatusCode::OK,
        format!(
            r#"{{"kind":"PolicyGeneration","apiVersion":"secret-relay.io/v1","generation":{current}}}"#
        ),
    )
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
    };
    status(code, reason, &err.to_string(), None)
}

async fn secrets<B>(
    relay: &Relay,
    policy: &Policy,
    cluster: &str,
    state: &Arc<ClusterState>,
    sr: SecretsRequest,
    req: Request<B>,
) -> Response<RelayBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cache = &relay.inner.cache;
    let reads = matches!(sr.verb, Verb::Get | Verb::List | Verb::Watch);
    if reads && !cache.is_synced() {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the relay's cache of hub copies is not synced yet; retry",
            None,
        );
    }
    match sr.verb {
        Verb::Get => {
            let name = sr.name.unwrap_or_default();
            let view = ViewRequest {
                cluster: cluster.to_owned(),
                labels: None,
                name: None,
            };
            match cache.get(&name) {
                Some(entry) if view.sees(&entry) => json(StatusCode::OK, entry.json.clone()),
                _ => not_found(&name),
            }
        }
        Verb::List | Verb::Watch => {
            let view = match sr.query.view(cluster, policy.control_plane_namespace()) {
                Ok(v) => v,
                Err(err) => {
                    relay.inner.metrics.refused("route");
                    tracing::info!(%cluster, path = req.uri().path(), query = req.uri().query().unwrap_or(""), error = %err, "refused a list or watch it cannot serve");
                    return route_error(&err);
                }
            };
            if sr.verb == Verb::List {
                return json(StatusCode::OK, list(cache, &view));
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
            let params = sr
                .query
                .watch_params(limits.max_watch, limits.bookmark_interval);
            let rx = watch(cache, view, params, relay.inner.metrics.clone(), permit);
            relay.update_connected();
            let relay_for_end = relay.clone();
            let stream =
                futures::stream::unfold((rx, Some(relay_for_end)), |(mut rx, relay)| async move {
                    match rx.recv().await {
                        Some(line) => Some((
                            Ok::<_, std::convert::Infallible>(Frame::data(line)),
                            (rx, relay),
                        )),
                        None => {
                            if let Some(relay) = relay {
                                relay.update_connected();
                            }
                            None
                        }
                    }
                });
            let body = StreamBody::new(stream.boxed()).map_err(|never| match never {});
            let mut resp = Response::new(body.boxed_unsync());
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Verb::Create | Verb::Update | Verb::Patch(_) | Verb::Delete => {
            let (parts, body) = req.into_parts();
            let limit = relay.inner.limits.max_body_bytes;
            if parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n > limit)
            {
                return too_large(relay, cluster, limit);
            }
            let body = match Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                    return too_large(relay, cluster, limit);
                }
                Err(err) => {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("failed to read the request body: {err}"),
                        None,
                    );
                }
            };
            let request = WriteRequest {
                cluster,
                sr,
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
                body,
            };
            write(relay, policy, &request).await
        }
    }
}

fn too_large(relay: &Relay, cluster: &str, limit: usize) -> Response<RelayBody> {
    relay.inner.metrics.refused("body-too-large");
    tracing::info!(%cluster, limit, "refused a request body over the limit");
    status(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        &format!("the request body is larger than {limit} bytes"),
        None,
    )
}

fn not_found(name: &str) -> Response<RelayBody> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("secrets \"{name}\" not found"),
        Some((name, &[])),
    )
}

/// The written object as the cluster's own Secret, for the up-sync decision: the
/// relay trusts the agent for where it read the Secret (the agent namespace).
fn as_cluster_secret(policy: &Policy, secret: &Secret) -> Secret {
    let mut s = secret.clone();
    s.metadata.namespace = Some(policy.agent_namespace().to_owned());
    s
}

/// One write: decided, then forwarded. A create is first decided on the cache alone:
/// most creates are of names the hub does not hold, and cost the API server one
/// request. A name the cache has not seen yet (a control-plane secret created a
/// moment ago, which the cluster may adopt) comes back from the API server as 409
/// AlreadyExists without any change, and is then decided again on the API server's
/// own copy, counted once.
async fn write(relay: &Relay, policy: &Policy, request: &WriteRequest<'_>) -> Response<RelayBody> {
    match write_once(relay, policy, request, false).await {
        Ok(response) => response,
        Err(AlreadyExists) => {
            tracing::debug!(cluster = %request.cluster, name = ?request.sr.name, "a create met a name the cache had not seen; deciding on the API server's copy");
            write_once(relay, policy, request, true)
                .await
                .unwrap_or_else(|AlreadyExists| unreachable_conflict())
        }
    }
}

/// One write request, taken apart.
struct WriteRequest<'a> {
    cluster: &'a str,
    sr: SecretsRequest,
    method: &'a Method,
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
    body: Bytes,
}

/// A create decided on the cache alone met a name the API server holds.
struct AlreadyExists;

fn unreachable_conflict() -> Response<RelayBody> {
    // `write_once` with `ask_upstream` never asks for another pass.
    status(
        StatusCode::CONFLICT,
        "AlreadyExists",
        "the Secret already exists",
        None,
    )
}

async fn write_once(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
    ask_upstream: bool,
) -> Result<Response<RelayBody>, AlreadyExists> {
    let WriteRequest {
        cluster,
        sr,
        method,
        uri,
        headers,
        body,
    } = request;
    let (cluster, method, uri, headers) = (*cluster, *method, *uri, *headers);
    let body = body.clone();
    let cp = policy.control_plane_namespace();
    let hub = sr
        .name
        .as_deref()
        .and_then(|n| relay.inner.cache.get(n))
        .map(|e| e.secret.clone());
    let bad = |message: String| status(StatusCode::BAD_REQUEST, "BadRequest", &message, None);
    // The hub copy a create or an update was decided against.
    let mut decided_on = None;
    let (name, decision) = match sr.verb {
        Verb::Create | Verb::Update => {
            let secret: Secret = match serde_json::from_slice(&body) {
                Ok(s) => s,
                Err(e) => return Ok(bad(format!("failed to decode the Secret: {e}"))),
            };
            if secret
                .metadata
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != cp)
            {
                return Ok(bad(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .to_owned(),
                ));
            }
            let Some(name) = secret.metadata.name.clone().filter(|n| !n.is_empty()) else {
                return Ok(status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "a hub copy needs metadata.name (generateName is not used for hub copies)",
                    None,
                ));
            };
            if sr.name.as_deref().is_some_and(|n| n != name) {
                return Ok(bad(format!(
                    "the name of the object ({name}) does not match the name on the URL"
                )));
            }
            let hub = current_hub(relay, cp, &name, ask_upstream).await;
            let d = forged_stamp(cluster, &secret, hub.as_deref()).unwrap_or_else(|| {
                up_sync(
                    policy,
                    cluster,
                    &as_cluster_secret(policy, &secret),
                    hub.as_deref(),
                )
            });
            decided_on = hub;
            (name, d)
        }
        Verb::Patch(kind) => {
            let name = sr.name.clone().unwrap_or_default();
            let result = match apply_patch(hub.as_deref(), &name, cp, kind, &body) {
                Ok(s) => s,
                Err(PatchError::NotFound(name)) => return Ok(not_found(&name)),
                Err(PatchError::BadRequest(message)) => return Ok(bad(message)),
                Err(PatchError::Invalid(message)) => {
                    return Ok(status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        &message,
                        None,
                    ));
                }
            };
            let d = forged_stamp(cluster, &result, hub.as_deref()).unwrap_or_else(|| {
                up_sync(
                    policy,
                    cluster,
                    &as_cluster_secret(policy, &result),
                    hub.as_deref(),
                )
            });
            (name, d)
        }
        Verb::Delete => {
            let name = sr.name.clone().unwrap_or_default();
            let Some(hub) = hub else {
                return Ok(not_found(&name));
            };
            let r = release(policy, cluster, &hub);
            count_write(relay, &r.decision);
            if !r.decision.allowed {
                return Ok(denied(cluster, &name, "release", &r.decision));
            }
            tracing::info!(%cluster, %name, rule = %r.decision.rule, action = ?r.action, "release");
            return Ok(match r.action {
                Some(ReleaseAction::ReturnToControlPlane) => {
                    return_to_control_plane(relay, cp, &hub).await
                }
                _ => forward(relay, method, uri, headers, body, Some(cluster)).await,
            });
        }
        Verb::Get | Verb::List | Verb::Watch => unreachable_read(),
    };
    // A create decided without any hub copy, the cache's or the API server's: the
    // API server tells whether the name is free (see [`write`]); counted once decided.
    let optimistic = sr.verb == Verb::Create && !ask_upstream && decided_on.is_none();
    if !(optimistic && decision.allowed) {
        count_write(relay, &decision);
    }
    if !decision.allowed {
        return Ok(denied(cluster, &name, "up-sync", &decision));
    }
    // Allowed writes log at debug, as the webhook does: the API server audits them
    // (as the impersonated cluster), and a line per write costs about a tenth of its
    // CPU. Denials stay at info.
    tracing::debug!(%cluster, %name, rule = %decision.rule, "up-sync write");
    // Adopting a control-plane secret the cluster cannot see (it is not in its view)
    // arrives as a create: the relay, which sees the hub, makes it the update it is.
    // The hub copy is the one just decided against: read once, not again.
    if sr.verb == Verb::Create
        && let Some(hub) = decided_on
        && let Ok(mut adopt) = serde_json::from_slice::<Secret>(&body)
        && let Ok(put) = format!("/api/v1/namespaces/{cp}/secrets/{name}").parse::<http::Uri>()
    {
        adopt.metadata.resource_version = hub.metadata.resource_version.clone();
        let body = Bytes::from(serde_json::to_vec(&adopt).unwrap_or_default());
        return Ok(forward(relay, &Method::PUT, &put, headers, body, Some(cluster)).await);
    }
    let response = forward(relay, method, uri, headers, body, Some(cluster)).await;
    if optimistic {
        if response.status() == StatusCode::CONFLICT {
            return Err(AlreadyExists);
        }
        count_write(relay, &decision);
    }
    Ok(response)
}

/// A denial when a cluster's write sets a stamp only secret-relay sets: an owner
/// label other than its own, or an adopted annotation, that the hub copy does not
/// already carry. Absent stamps are fine (the webhook sets them), and so are the hub
/// copy's own (a patch keeps them; another cluster's copy is then refused by the
/// ownership rule). The webhook would overwrite a forged stamp; a cluster that sends
/// one is refused, visibly.
fn forged_stamp(cluster: &str, written: &Secret, hub: Option<&Secret>) -> Option<Decision> {
    let own = format!("{}{cluster}", keys::OWNER_CLUSTER_PREFIX);
    let label =
        |s: &Secret, key: &str| s.metadata.labels.as_ref().and_then(|l| l.get(key)).cloned();
    let annotation = |s: &Secret, key: &str| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    if let Some(v) = label(written, keys::OWNER_LABEL)
        && v != own
        && hub.and_then(|h| label(h, keys::OWNER_LABEL)).as_ref() != Some(&v)
    {
        return Some(Decision::deny(
            secret_relay_policy::Rule::OwnerLabelForged,
            format!(
                "cluster {cluster} may not set {}: {v}; secret-relay stamps ownership ({own} for this cluster), remove the label",
                keys::OWNER_LABEL
            ),
        ));
    }
    if let Some(v) = annotation(written, keys::ADOPTED_ANNOTATION)
        && hub
            .and_then(|h| annotation(h, keys::ADOPTED_ANNOTATION))
            .as_ref()
            != Some(&v)
    {
        return Some(Decision::deny(
            secret_relay_policy::Rule::OwnerLabelForged,
            format!(
                "cluster {cluster} may not set {}: {v}; secret-relay marks adoption, remove the annotation",
                keys::ADOPTED_ANNOTATION
            ),
        ));
    }
    None
}

/// The hub copy a write is decided against: the cache's, and with `ask_upstream`
/// (a create whose name the API server said it holds, see [`write`]) for a name the
/// cache does not hold yet, the API server's (the cache may lag a moment behind a
/// control-plane secret created just before). The read is bounded like a forwarded
/// request: an API server that holds it (its etcd away) fails it after
/// `upstream_timeout` instead of holding the cluster's write as long as it likes.
async fn current_hub(
    relay: &Relay,
    cp: &str,
    name: &str,
    ask_upstream: bool,
) -> Option<Arc<Secret>> {
    if let Some(entry) = relay.inner.cache.get(name) {
        return Some(entry.secret.clone());
    }
    if !ask_upstream {
        return None;
    }
    let api: kube::Api<Secret> = kube::Api::namespaced(relay.inner.upstream.clone(), cp);
    let read = tokio::time::timeout(relay.inner.limits.upstream_timeout, api.get_opt(name)).await;
    match read {
        Ok(Ok(found)) => found.map(Arc::new),
        Ok(Err(err)) => {
            tracing::warn!(%name, error = %err, "failed to read the hub copy; deciding on the cache");
            None
        }
        Err(_) => {
            tracing::warn!(%name, timeout = ?relay.inner.limits.upstream_timeout, "timed out reading the hub copy; deciding on the cache");
            None
        }
    }
}

fn unreachable_read() -> (String, Decision) {
    // `secrets` sends reads elsewhere; a read here is a bug, refused rather than forwarded.
    (
        String::new(),
        Decision::deny(
            secret_relay_policy::Rule::NotApplicable,
            "a read is not a write".to_owned(),
        ),
    )
}

fn count_write(relay: &Relay, decision: &Decision) {
    relay
        .inner
        .metrics
        .writes
        .get_or_create(&WriteLabels {
            decision: if decision.allowed {
                "allowed"
            } else {
                "denied"
            }
            .to_owned(),
            rule: decision.rule.to_string(),
        })
        .inc();
}

fn denied(cluster: &str, name: &str, what: &str, decision: &Decision) -> Response<RelayBody> {
    tracing::info!(%cluster, %name, rule = %decision.rule, "{what} denied");
    let rule = decision.rule.to_string();
    let message = format!(
        "secret-relay denied the request: {} (rule {rule})",
        decision.reason
    );
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &message,
        Some((name, &[(rule.as_str(), decision.reason.as_str())])),
    )
}

/// Returns an adopted secret to the control plane with its data kept, as the relay's
/// own account: the owner label and adopted annotation go, the data stays.
async fn return_to_control_plane(
    relay: &Relay,
    namespace: &str,
    hub: &Secret,
) -> Response<RelayBody> {
    let name = hub.metadata.name.clone().unwrap_or_default();
    let mut returned = hub.clone();
    if let Some(labels) = returned.metadata.labels.as_mut() {
        labels.remove(keys::OWNER_LABEL);
    }
    if let Some(annotations) = returned.metadata.annotations.as_mut() {
        annotations.remove(keys::ADOPTED_ANNOTATION);
    }
    returned.metadata.managed_fields = None;
    let body = serde_json::to_vec(&returned).unwrap_or_default();
    let uri: http::Uri = match format!("/api/v1/namespaces/{namespace}/secrets/{name}").parse() {
        Ok(u) => u,
        Err(_) => return not_found(&name),
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let resp = forward(relay, &Method::PUT, &uri, &headers, Bytes::from(body), None).await;
    if resp.status().is_success() {
        success(
            &name,
            &format!(
                "secret {namespace}/{name} was returned to the control plane with its data kept"
            ),
        )
    } else {
        resp
    }
}

async fn forward_get<B>(
    relay: &Relay,
    req: &Request<B>,
    impersonate: Option<&str>,
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
async fn forward(
    relay: &Relay,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Bytes,
    impersonate: Option<&str>,
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
            .header("Impersonate-User", cluster_user(cluster))
            .header("Impersonate-Group", CLUSTERS_GROUP);
    }
    let request = match builder.body(kube::client::Body::from(body)) {
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
        relay.inner.upstream.send(request),
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
            let (parts, body) = resp.into_parts();
            let mut out =
                Response::from_parts(parts, body.map_err(|e| Box::new(e) as _).boxed_unsync());
            // Hop-by-hop headers belong to the upstream connection.
            for h in ["connection", "keep-alive", "transfer-encoding", "audit-id"] {
                out.headers_mut().remove(h);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        s.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        s
    }

    #[test]
    fn a_cluster_setting_an_owner_or_adoption_it_does_not_have_is_forged() {
        let owner = keys::OWNER_LABEL;
        let adopted = keys::ADOPTED_ANNOTATION;
        let forged = |w: &Secret, hub: Option<&Secret>| {
            forged_stamp("c1", w, hub).map(|d| d.rule.to_string())
        };
        let theirs = written(&[(owner, "cluster.c2")], &[]);
        assert_eq!(forged(&theirs, None).as_deref(), Some("owner-label-forged"));
        assert_eq!(
            forged(&written(&[(owner, "control-plane")], &[]), None).as_deref(),
            Some("owner-label-forged")
        );
        assert_eq!(
            forged(&written(&[], &[(adopted, "true")]), None).as_deref(),
            Some("owner-label-forged")
        );
        // Absent stamps, its own owner, and what the hub copy already carries are not.
        assert_eq!(forged(&written(&[], &[]), None), None);
        assert_eq!(forged(&written(&[(owner, "cluster.c1")], &[]), None), None);
        assert_eq!(forged(&theirs, Some(&theirs)), None);
        let adopted_hub = written(&[(owner, "cluster.c1")], &[(adopted, "true")]);
        assert_eq!(forged(&adopted_hub, Some(&adopted_hub)), None);
    }

    /// The writes counted by decision and rule: `(decision, rule, count)`.
    fn counted_writes(registry: &prometheus_client::registry::Registry) -> Vec<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .filter(|l| l.starts_with("writes_total{"))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_the_cache_cannot_decide_is_decided_again_on_the_api_servers_copy_and_counted_once()
     {
        use k8s_openapi::ByteString;
        use kube::api::{Api, PostParams};
        use secret_relay_testkit::{Flavor, Options, TestCluster};
        let cluster = TestCluster::start(Flavor::Sandbox, Options::default()).await;
        let admin = cluster.client().await;
        cluster.create_namespace("argocd").await;
        let hub: Api<Secret> = Api::namespaced(admin.clone(), "argocd");
        let mut cp_secret = Secret::default();
        cp_secret.metadata.name = Some("argocd-notifications-secret".to_owned());
        cp_secret.data = Some([("v".to_owned(), ByteString(b"from-cp".to_vec()))].into());
        hub.create(&PostParams::default(), &cp_secret)
            .await
            .unwrap();

        let mut registry = prometheus_client::registry::Registry::default();
        let policy_state = PolicyState::new(&mut registry);
        policy_state.offer_policy(
            "test",
            "1",
            Policy::from_yaml("clusters:\n  - name: cluster1\nsecretSources:\n  - labelSelector: argocd.argoproj.io/secret-type=repository\n")
                .map_err(|e| e.to_string()),
        );
        // A cache that never hears of the hub: every create is decided on it first.
        let relay = Relay::new(
            policy_state.clone(),
            HubCache::new(10),
            admin,
            Arc::new(Metrics::new(&mut registry)),
            Limits::default(),
        );
        let policy = policy_state.policy();
        let create = |name: &str| {
            let body = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": "argocd",
                    "labels": {
                        "akuity.io/secret-sync": "true",
                        "argocd.argoproj.io/secret-type": "repository",
                    },
                },
                "data": {"v": "ZnJvbS1jbHVzdGVyMQ=="},
            });
            Bytes::from(serde_json::to_vec(&body).unwrap())
        };
        let uri: http::Uri = "/api/v1/namespaces/argocd/secrets".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        let sr = SecretsRequest {
            verb: Verb::Create,
            name: None,
            query: crate::route::Query::default(),
        };

        // A new name: one create, counted once as new.
        let request = |name: &str| WriteRequest {
            cluster: "cluster1",
            sr: sr.clone(),
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body: create(name),
        };
        let answer = write(&relay, &policy, &request("new-one")).await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(
            counted_writes(&registry),
            vec![r#"writes_total{decision="allowed",rule="up-sync-new"} 1"#]
        );

        // A name the API server holds: its 409 changes nothing, and the create is
        // decided again on the API server's copy, an adoption, counted once.
        let answer = write(&relay, &policy, &request("argocd-notifications-secret")).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let adopted = hub.get("argocd-notifications-secret").await.unwrap();
        assert_eq!(adopted.data.unwrap()["v"].0, b"from-cluster1");
        let mut counted = counted_writes(&registry);
        counted.sort();
        assert_eq!(
            counted,
            vec![
                r#"writes_total{decision="allowed",rule="adopt"} 1"#,
                r#"writes_total{decision="allowed",rule="up-sync-new"} 1"#,
            ]
        );
    }

    #[tokio::test]
    async fn a_hub_read_the_api_server_holds_ends_after_the_upstream_timeout() {
        // An API server that accepts connections and never answers (its etcd away).
        let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = hole.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = hole.accept().await {
                open.push(conn);
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let mut registry = prometheus_client::registry::Registry::default();
        let relay = Relay::new(
            PolicyState::new(&mut registry),
            HubCache::new(10),
            kube::Client::try_from(config).unwrap(),
            Arc::new(Metrics::new(&mut registry)),
            Limits {
                upstream_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
        );
        let started = Instant::now();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            current_hub(&relay, "argocd", "repo", true),
        )
        .await;
        assert!(
            matches!(read, Ok(None)),
            "the read should give up and decide on the cache"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        held.abort();
    }
}
