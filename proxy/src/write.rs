//! The write path: every create, update, patch and delete a cluster sends.
//!
//! Two properties hold by construction here:
//!
//! - **Nothing outside the view.** A write reaches a hub copy only through
//!   [`gate`], the one place that looks it up. A copy outside the cluster's view
//!   answers exactly as GET does (404) for every verb on its name, and a create of
//!   its name is refused as `name-taken`, without anything of it evaluated or
//!   quoted. The one exception is adoption: a create or update of an adoptable name
//!   ([`ADOPTABLE_NAMES`](secret_relay_policy::ADOPTABLE_NAMES)) that the control
//!   plane owns and that is not blocked, which the rules allow by name.
//! - **What is judged is what is stored.** The relay forwards the object it judged,
//!   never the client's bytes: a create or update is re-encoded from the decoded
//!   Secret; a merge, strategic-merge or JSON patch becomes a full-object PUT of the
//!   patched copy with the judged resourceVersion as a precondition (a concurrent
//!   change gives 409 upstream, and the patch is judged again on the new copy, as
//!   kube-apiserver retries its own patches); a delete carries the judged
//!   resourceVersion and uid as preconditions. A server-side apply is forwarded as
//!   the re-encoded apply patch with the judged resourceVersion as precondition:
//!   field ownership is the API server's, so its result is judged by the hub's
//!   validating webhook, which judges every write on the stored object anyway.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use secret_relay_policy::{
    ClusterId, Decision, Owner, Policy, ReleaseAction, Rule, Secret, blocked_decision,
    forged_stamp, is_adoptable, keys, owner, release, stamp_cluster_write, up_sync,
};

use crate::body::{BodyError, decode_patch_value, decode_secret};
use crate::cache::targets;
use crate::metrics::WriteLabels;
use crate::patch::{PatchError, apply_patch_value};
use crate::route::{PatchKind, SecretsRequest, Verb};
use crate::server::{Relay, forward};
use crate::status::{RelayBody, status, success};

/// How many times a patch or delete is judged again after the API server says the
/// judged copy changed underneath (409).
const CONFLICT_RETRIES: usize = 3;

/// One write request, taken apart.
pub(crate) struct WriteRequest<'a> {
    /// The cluster, as the TLS accept named it from its certificate.
    pub(crate) cluster: &'a ClusterId,
    pub(crate) sr: SecretsRequest,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: Bytes,
}

/// A hub copy a write may be judged against: only [`gate`] makes one.
pub(crate) enum Target {
    /// No hub copy of that name.
    Absent,
    /// A hub copy in the cluster's view: its own, or one the control plane sends it.
    Visible(Arc<Secret>),
    /// A control-plane secret of an adoptable name, outside the cluster's view: only
    /// its name, that the control plane owns it, that it is not blocked and its
    /// resourceVersion (the adoption's precondition) are used.
    Adoptable(Arc<Secret>),
}

impl Target {
    fn hub(&self) -> Option<&Arc<Secret>> {
        match self {
            Target::Absent => None,
            Target::Visible(h) | Target::Adoptable(h) => Some(h),
        }
    }
}

/// Where the gate reads the hub copy from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The shared cache (falls back to the API server for a name it does not hold).
    Cache,
    /// The API server: the cache may lag behind a change the API server reported.
    Upstream,
}

/// The one door to a hub copy for a write: looks it up and answers for a copy
/// outside the cluster's view. `Err` is the whole answer to the client.
async fn gate(
    relay: &Relay,
    policy: &Policy,
    cluster: &ClusterId,
    name: &str,
    verb: Verb,
    source: Source,
) -> Result<Target, Response<RelayBody>> {
    let cached = match source {
        Source::Cache => relay.inner.cache.get(name),
        Source::Upstream => None,
    };
    let hub = match cached {
        Some(entry) => Some(entry.secret.clone()),
        // Most creates are of names the hub does not hold: decided as new, and the
        // API server answers 409 without any change when the cache lagged (see
        // [`write_object`]).
        None if source == Source::Cache && verb == Verb::Create => None,
        None => read_upstream(relay, policy, name).await?,
    };
    let Some(hub) = hub else {
        return match verb {
            Verb::Create | Verb::Patch(PatchKind::Apply) => Ok(Target::Absent),
            _ => Err(not_found(name)),
        };
    };
    if targets(policy, &hub).iter().any(|t| t == cluster.as_str()) {
        return Ok(Target::Visible(hub));
    }
    if matches!(verb, Verb::Create | Verb::Update)
        && owner(&hub) == Owner::ControlPlane
        && is_adoptable(name)
        && policy.blocked(&hub).is_none()
    {
        return Ok(Target::Adoptable(hub));
    }
    if verb == Verb::Create {
        return Err(name_taken(relay, cluster, name));
    }
    Err(not_found(name))
}

/// The API server's copy of hub copy `name`, read as the relay's own account. The
/// read is bounded like a forwarded request. An error is an error (503), never a
/// decision on a guess.
async fn read_upstream(
    relay: &Relay,
    policy: &Policy,
    name: &str,
) -> Result<Option<Arc<Secret>>, Response<RelayBody>> {
    let api: kube::Api<Secret> = kube::Api::namespaced(
        relay.inner.upstream.clone(),
        policy.control_plane_namespace(),
    );
    let read = tokio::time::timeout(relay.inner.limits.upstream_timeout, api.get_opt(name)).await;
    match read {
        Ok(Ok(found)) => Ok(found.map(|mut s| {
            s.metadata.managed_fields = None;
            Arc::new(s)
        })),
        Ok(Err(err)) => {
            tracing::warn!(%name, error = %err, "failed to read the hub copy");
            Err(unavailable())
        }
        Err(_) => {
            tracing::warn!(%name, timeout = ?relay.inner.limits.upstream_timeout, "timed out reading the hub copy");
            Err(unavailable())
        }
    }
}

fn unavailable() -> Response<RelayBody> {
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the relay could not read the control plane's copy to decide the write; retry",
        None,
    )
}

/// One write: decoded, passed through the [`gate`], judged, forwarded.
pub(crate) async fn write(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
) -> Response<RelayBody> {
    match request.sr.verb {
        Verb::Create | Verb::Update => write_object(relay, policy, request).await,
        Verb::Patch(kind) => write_patch(relay, policy, request, kind).await,
        Verb::Delete => delete(relay, policy, request).await,
        Verb::Get | Verb::List | Verb::Watch => {
            // `secrets` sends reads elsewhere; a read here is a bug, refused.
            status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "a read is not a write",
                None,
            )
        }
    }
}

fn body_error(err: &BodyError) -> Response<RelayBody> {
    match err {
        BodyError::BadRequest(m) => status(StatusCode::BAD_REQUEST, "BadRequest", m, None),
        BodyError::UnsupportedMediaType(m) => status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            m,
            None,
        ),
    }
}

/// The request's Content-Type; one that is not visible ASCII stays a (refused) media
/// type, never "none" (which reads as JSON).
fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not visible ASCII)").to_owned())
}

fn bad(message: &str) -> Response<RelayBody> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// A create or an update: the decoded Secret is judged and forwarded re-encoded.
async fn write_object(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
) -> Response<RelayBody> {
    let WriteRequest {
        cluster, sr, body, ..
    } = request;
    let content_type = content_type(request.headers);
    let decoded = off_worker(body, move |b| decode_secret(content_type.as_deref(), b)).await;
    let secret = match decoded {
        Ok(s) => s,
        Err(e) => return body_error(&e),
    };
    let cp = policy.control_plane_namespace();
    if secret
        .metadata
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != cp)
    {
        return bad(
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let Some(name) = secret.metadata.name.clone().filter(|n| !n.is_empty()) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "a hub copy needs metadata.name (generateName is not used for hub copies)",
            None,
        );
    };
    if sr.name.as_deref().is_some_and(|n| n != name) {
        return bad("the name of the object does not match the name on the URL");
    }
    if let Some(d) = blocked_request(policy, &name, Some(&secret)) {
        count_write(relay, &d);
        return denied(cluster, &name, "up-sync", &d, false);
    }
    for source in [Source::Cache, Source::Upstream] {
        let target = match gate(relay, policy, cluster, &name, sr.verb, source).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let decision = judge(policy, cluster, &secret, &target);
        // A create decided on no copy at all: the API server tells whether the name
        // is free; it is counted once decided.
        let optimistic =
            sr.verb == Verb::Create && source == Source::Cache && matches!(target, Target::Absent);
        if !(optimistic && decision.allowed) {
            count_write(relay, &decision);
        }
        if !decision.allowed {
            return denied(cluster, &name, "up-sync", &decision, false);
        }
        // Allowed writes log at debug, as the webhook does: the API server audits
        // them (as the impersonated cluster). Denials stay at info.
        tracing::debug!(%cluster, %name, rule = %decision.rule, "up-sync write");
        if let Err(answer) = keep_for_handback(relay, cp, &decision, &target).await {
            return answer;
        }
        let mut stored = secret.clone();
        stored.metadata.namespace = Some(cp.to_owned());
        // Stamped here as the mutating webhook would: the API server does not call
        // it for the clusters' writes (matchConditions); the validating webhook
        // checks every stamp on what it stores.
        stamp_cluster_write(
            cluster.as_str(),
            &name,
            &mut stored,
            target.hub().map(AsRef::as_ref),
        );
        let (method, path) = match (&target, sr.verb) {
            // Adopting a control-plane secret the cluster cannot see arrives as a
            // create: the relay, which sees the hub, makes it the update it is, on
            // the copy it judged.
            (Target::Adoptable(hub) | Target::Visible(hub), Verb::Create) => {
                stored
                    .metadata
                    .resource_version
                    .clone_from(&hub.metadata.resource_version);
                (Method::PUT, object_path(cp, &name))
            }
            (_, Verb::Create) => (Method::POST, collection_path(cp)),
            _ => (Method::PUT, object_path(cp, &name)),
        };
        let json = encode_off_worker(stored, body.len()).await;
        let answer = send_json(relay, &method, &path, sr, json, cluster).await;
        if optimistic {
            if answer.status() == StatusCode::CONFLICT {
                tracing::debug!(%cluster, %name, "a create met a name the cache had not seen; deciding on the API server's copy");
                continue;
            }
            count_write(relay, &decision);
        }
        return answer;
    }
    conflict(&name)
}

/// Before an adoption: records the control plane's own metadata of the copy, to be
/// restored when it returns ([`crate::handback`]). Without the record there is no
/// adoption (503, retried by the agent).
async fn keep_for_handback(
    relay: &Relay,
    cp: &str,
    decision: &Decision,
    target: &Target,
) -> Result<(), Response<RelayBody>> {
    let Some(hub) = target.hub().filter(|_| decision.rule == Rule::Adopt) else {
        return Ok(());
    };
    crate::handback::record(relay, cp, hub).await.map_err(|err| {
        tracing::warn!(error = %err, "an adoption waits for its hand-back record");
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the relay could not record the control plane's metadata of the secret before its adoption; retry",
            None,
        )
    })
}

/// A write refused on the request alone, before any hub copy is looked up: a name
/// the policy blocks (`argocd-secret`, ...), or a create or update body blocked by
/// its type or labels. Blocked names are the policy's, not the hub's: the answer is
/// the same whether such a Secret exists or not.
fn blocked_request(policy: &Policy, name: &str, written: Option<&Secret>) -> Option<Decision> {
    let mut named = Secret::default();
    named.metadata.name = Some(name.to_owned());
    blocked_decision(policy, written.unwrap_or(&named), &format!("secret {name}"))
}

/// The up-sync decision of `written` (the object as it will be stored) against the
/// gated hub copy.
fn judge(policy: &Policy, cluster: &ClusterId, written: &Secret, target: &Target) -> Decision {
    let hub = target.hub().map(AsRef::as_ref);
    forged_stamp(cluster.as_str(), written, hub).unwrap_or_else(|| {
        let mut as_cluster = written.clone();
        // The relay trusts the agent for where it read the Secret (the agent namespace).
        as_cluster.metadata.namespace = Some(policy.agent_namespace().to_owned());
        up_sync(policy, cluster.as_str(), &as_cluster, hub)
    })
}

/// A patch: judged on the patched gated copy, forwarded as what was judged.
async fn write_patch(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
    kind: PatchKind,
) -> Response<RelayBody> {
    let WriteRequest {
        cluster, sr, body, ..
    } = request;
    let cp = policy.control_plane_namespace();
    let name = sr.name.clone().unwrap_or_default();
    let patch = match off_worker(body, move |b| decode_patch_value(kind, b)).await {
        Ok(p) => p,
        Err(e) => return body_error(&e),
    };
    if let Some(d) = blocked_request(policy, &name, None) {
        count_write(relay, &d);
        return denied(cluster, &name, "up-sync", &d, false);
    }
    let mut source = Source::Cache;
    for _ in 0..=CONFLICT_RETRIES {
        let target = match gate(relay, policy, cluster, &name, sr.verb, source).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let hub = target.hub().cloned();
        let patched = match apply_patch_value(hub.as_deref(), &name, cp, kind, &patch) {
            Ok(s) => s,
            Err(PatchError::NotFound(name)) => return not_found(&name),
            Err(PatchError::BadRequest(message)) => return bad(&message),
            Err(PatchError::Invalid(message)) => {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &message, None);
            }
        };
        let decision = judge(policy, cluster, &patched, &target);
        count_write(relay, &decision);
        if !decision.allowed {
            return denied(cluster, &name, "up-sync", &decision, true);
        }
        tracing::debug!(%cluster, %name, rule = %decision.rule, "up-sync patch");
        if let Err(answer) = keep_for_handback(relay, cp, &decision, &target).await {
            return answer;
        }
        let judged_rv = hub
            .as_ref()
            .and_then(|h| h.metadata.resource_version.clone());
        let answer = if kind == PatchKind::Apply {
            // Field ownership is the API server's: the apply goes as an apply, on the
            // copy judged (resourceVersion as its precondition).
            let mut apply = patch.clone();
            // The stamps go in the applied configuration, as the cluster's fields.
            let mut stamped = patched;
            stamp_cluster_write(cluster.as_str(), &name, &mut stamped, hub.as_deref());
            if let Some(meta) = apply
                .as_object_mut()
                .and_then(|o| o.get_mut("metadata"))
                .and_then(|m| m.as_object_mut())
            {
                if let Some(rv) = judged_rv.as_ref() {
                    meta.insert("resourceVersion".to_owned(), rv.clone().into());
                }
                let stamps = [
                    (
                        "labels",
                        stamped.metadata.labels.as_ref(),
                        keys::OWNER_LABEL,
                    ),
                    (
                        "annotations",
                        stamped.metadata.annotations.as_ref(),
                        keys::ADOPTED_ANNOTATION,
                    ),
                ];
                for (field, map, key) in stamps {
                    if let Some(value) = map.and_then(|m| m.get(key))
                        && let Some(applied) = meta
                            .entry(field)
                            .or_insert_with(|| serde_json::json!({}))
                            .as_object_mut()
                    {
                        applied.insert(key.to_owned(), value.clone().into());
                    }
                }
            }
            let json =
                serde_json::to_vec(&apply).expect("a serde_json::Value always serializes to JSON");
            let mut headers = request.headers.clone();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/apply-patch+yaml"),
            );
            let path = with_query(&object_path(cp, &name), sr);
            forward_to(relay, &Method::PATCH, &path, &headers, json, cluster, None).await
        } else {
            let mut stored = patched;
            stamp_cluster_write(cluster.as_str(), &name, &mut stored, hub.as_deref());
            stored.metadata.resource_version = judged_rv;
            let json = encode_off_worker(stored, body.len()).await;
            let query = without_force(sr);
            send_json(
                relay,
                &Method::PUT,
                &object_path(cp, &name),
                &query,
                json,
                cluster,
            )
            .await
        };
        if hub.is_some() {
            match unless_stale(answer).await {
                // The copy changed after it was judged: judge the patch again on
                // the API server's copy.
                None => source = Source::Upstream,
                Some(answer) => return answer,
            }
            continue;
        }
        return answer;
    }
    conflict(&name)
}

/// A 409 that says the judged copy changed underneath (its resourceVersion
/// precondition failed) gives `None`: judge again. Any other answer, another 409
/// (server-side apply's field-manager conflicts) among them, is given back.
async fn unless_stale(answer: Response<RelayBody>) -> Option<Response<RelayBody>> {
    use http_body_util::BodyExt as _;
    if answer.status() != StatusCode::CONFLICT {
        return Some(answer);
    }
    let (parts, body) = answer.into_parts();
    let bytes = body.collect().await.ok()?.to_bytes();
    let stale = STALE
        .iter()
        .any(|marker| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()));
    (!stale).then(|| Response::from_parts(parts, crate::status::full(bytes)))
}

/// What kube-apiserver says when a resourceVersion or uid precondition fails: an
/// update's (`the object has been modified`), and a delete's (`the ResourceVersion
/// in the precondition ... does not match`, from rest.BeforeDelete).
const STALE: [&str; 2] = ["the object has been modified", "in the precondition"];

/// A delete is the cluster's release of its own hub copy.
async fn delete(relay: &Relay, policy: &Policy, request: &WriteRequest<'_>) -> Response<RelayBody> {
    let WriteRequest {
        cluster, sr, body, ..
    } = request;
    let cp = policy.control_plane_namespace();
    let name = sr.name.clone().unwrap_or_default();
    let options = match delete_options(content_type(request.headers).as_deref(), body) {
        Ok(o) => o,
        Err(answer) => return *answer,
    };
    if let Some(d) = blocked_request(policy, &name, None) {
        count_write(relay, &d);
        return denied(cluster, &name, "release", &d, false);
    }
    let mut source = Source::Cache;
    for _ in 0..=CONFLICT_RETRIES {
        let hub = match gate(relay, policy, cluster, &name, sr.verb, source).await {
            Ok(Target::Visible(hub)) => hub,
            Ok(_) => return not_found(&name),
            Err(answer) => return answer,
        };
        let r = release(policy, cluster.as_str(), &hub);
        count_write(relay, &r.decision);
        if !r.decision.allowed {
            return denied(cluster, &name, "release", &r.decision, false);
        }
        tracing::info!(%cluster, %name, rule = %r.decision.rule, action = ?r.action, "release");
        let answer = match r.action {
            Some(ReleaseAction::ReturnToControlPlane) => {
                return_to_control_plane(relay, cp, &hub).await
            }
            _ => {
                let mut options = options.clone();
                if let Err(answer) = set_preconditions(&mut options, &hub) {
                    return *answer;
                }
                let json = serde_json::to_vec(&options)
                    .expect("a serde_json::Value always serializes to JSON");
                let mut headers = request.headers.clone();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let path = with_query(&object_path(cp, &name), sr);
                let judged = (
                    name.as_str(),
                    crate::cache::parse_rv(hub.metadata.resource_version.as_deref()),
                );
                forward_to(
                    relay,
                    &Method::DELETE,
                    &path,
                    &headers,
                    json,
                    cluster,
                    Some(judged),
                )
                .await
            }
        };
        match unless_stale(answer).await {
            None => source = Source::Upstream,
            Some(answer) => return answer,
        }
    }
    conflict(&name)
}

/// Bodies up to this size are decoded on the request's task (microseconds); larger
/// ones on tokio's blocking pool, so the async workers that serve every cluster's
/// reads never wait on one cluster's large body.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// How many large bodies are decoded at once, relay-wide: more wait their turn (a
/// cluster's rate limit and body limit bound how many it can send).
static LARGE_DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `work` inline, or on the blocking pool when `large` (two at a time,
/// relay-wide); `None` only if the pool task could not run (shutdown).
async fn on_blocking_pool<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if !large {
        return Some(work());
    }
    let _permit = LARGE_DECODES.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// Runs `decode` over `body`: inline when small, else on the blocking pool.
async fn off_worker<T: Send + 'static>(
    body: &Bytes,
    decode: impl FnOnce(&[u8]) -> Result<T, BodyError> + Send + 'static,
) -> Result<T, BodyError> {
    let body = body.clone();
    on_blocking_pool(body.len() > INLINE_DECODE_BYTES, move || decode(&body))
        .await
        .unwrap_or_else(|| {
            Err(BodyError::BadRequest(
                "the request body could not be decoded".to_owned(),
            ))
        })
}

/// Encodes the judged object for forwarding: on the blocking pool when its body
/// was large (see [`off_worker`]).
async fn encode_off_worker(secret: Secret, body_len: usize) -> Vec<u8> {
    // The closure cannot panic (see `encode`); a pool cancelled at shutdown leaves
    // an empty body, which the API server refuses.
    on_blocking_pool(body_len > INLINE_DECODE_BYTES, move || encode(&secret))
        .await
        .unwrap_or_default()
}

/// The client's DeleteOptions (an empty body is none), as a JSON object.
fn delete_options(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<serde_json::Value, Box<Response<RelayBody>>> {
    crate::body::decode_delete_options(content_type, body).map_err(|e| Box::new(body_error(&e)))
}

/// Sets the judged copy's resourceVersion and uid as the delete's preconditions. A
/// client's own precondition that names another version is answered as the API
/// server would (409).
fn set_preconditions(
    options: &mut serde_json::Value,
    hub: &Secret,
) -> Result<(), Box<Response<RelayBody>>> {
    let name = hub.metadata.name.as_deref().unwrap_or("");
    let want = [
        ("resourceVersion", hub.metadata.resource_version.as_deref()),
        ("uid", hub.metadata.uid.as_deref()),
    ];
    let Some(object) = options.as_object_mut() else {
        return Err(Box::new(bad("the body of a DELETE must be DeleteOptions")));
    };
    let preconditions = object
        .entry("preconditions")
        .or_insert_with(|| serde_json::json!({}));
    let Some(preconditions) = preconditions.as_object_mut() else {
        return Err(Box::new(bad("preconditions must be an object")));
    };
    for (key, value) in want {
        let Some(value) = value else { continue };
        match preconditions.get(key) {
            Some(serde_json::Value::String(theirs)) if theirs != value => {
                return Err(Box::new(status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on secrets \"{name}\": the precondition on {key} does not hold"
                    ),
                    Some((name, &[])),
                )));
            }
            _ => {
                preconditions.insert(key.to_owned(), value.into());
            }
        }
    }
    Ok(())
}

fn without_force(sr: &SecretsRequest) -> SecretsRequest {
    let mut sr = sr.clone();
    sr.query.other.remove("force");
    sr
}

fn collection_path(cp: &str) -> String {
    format!("/api/v1/namespaces/{cp}/secrets")
}

pub(crate) fn object_path(cp: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{cp}/secrets/{name}")
}

fn encode(secret: &Secret) -> Vec<u8> {
    // k8s-openapi's Serialize of a Secret has no failure case (string maps, byte
    // strings and plain fields), so this cannot fail for a decoded Secret.
    serde_json::to_vec(secret).expect("a Secret always serializes to JSON")
}

/// Forwards a JSON object body (the judged object) with the request's write
/// parameters, impersonating `cluster`.
async fn send_json(
    relay: &Relay,
    method: &Method,
    path: &str,
    sr: &SecretsRequest,
    json: Vec<u8>,
    cluster: &ClusterId,
) -> Response<RelayBody> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let path = with_query(path, sr);
    forward_to(relay, method, &path, &headers, json, cluster, None).await
}

/// `path` with the write parameters of the request (`?` only when there are some).
fn with_query(path: &str, sr: &SecretsRequest) -> String {
    let query = sr.query.forwarded();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

async fn forward_to(
    relay: &Relay,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
    cluster: &ClusterId,
    deleting: Option<(&str, u64)>,
) -> Response<RelayBody> {
    let Ok(uri) = path.parse::<http::Uri>() else {
        return bad("the request path is not a valid URI");
    };
    // Answers come back as JSON whatever the client accepts (every Kubernetes
    // client accepts JSON): the relay reads the written resourceVersion from them.
    let mut headers = headers.clone();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let headers = &headers;
    let answer = forward(
        relay,
        method,
        &uri,
        headers,
        Bytes::from(body),
        Some(cluster),
    )
    .await;
    settle(relay, answer, deleting).await
}

/// How long a write's answer waits for the cache to hold the write.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Holds a successful write's answer until the cache holds the write (or, for a
/// delete, no longer holds the object), so a client that reads right after its
/// write reads its write, as from kube-apiserver: the relay serves GET, LIST and the
/// next patch's judgement from the cache. Bounded by [`SETTLE_TIMEOUT`]: a cache that
/// lags longer answers anyway (the next write's precondition still holds).
async fn settle(
    relay: &Relay,
    answer: Response<RelayBody>,
    deleting: Option<(&str, u64)>,
) -> Response<RelayBody> {
    use http_body_util::BodyExt as _;
    #[derive(serde::Deserialize)]
    struct Meta {
        name: Option<String>,
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Written {
        metadata: Option<Meta>,
    }
    if !answer.status().is_success() {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::warn!(error = %err, "failed to read the API server's answer to a write");
            return status(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                "failed to read the control plane's answer",
                None,
            );
        }
    };
    let cache = &relay.inner.cache;
    let held = async {
        if let Some((name, judged)) = deleting {
            // A delete answers with a Status (or the last object), not with the
            // deletion's resourceVersion: wait until the cache no longer holds the
            // version that was deleted.
            loop {
                match cache.get(name) {
                    Some(entry) if entry.rv <= judged => {}
                    _ => return,
                }
                cache.reached(cache.resource_version() + 1).await;
            }
        }
        let written = serde_json::from_slice::<Written>(&bytes)
            .ok()
            .and_then(|w| w.metadata)
            .and_then(|m| {
                m.name
                    .map(|_| crate::cache::parse_rv(m.resource_version.as_deref()))
            });
        if let Some(rv) = written.filter(|rv| *rv > 0) {
            cache.reached(rv).await;
        }
    };
    if tokio::time::timeout(SETTLE_TIMEOUT, held).await.is_err() {
        tracing::debug!("the cache did not hold a write in time; answering anyway");
    }
    Response::from_parts(parts, crate::status::full(bytes))
}

pub(crate) fn count_write(relay: &Relay, decision: &Decision) {
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

/// A denial as the cluster gets it. A patch's result mixes the request with the hub
/// copy, so its denial names the rule and what to do, never a value or label of the
/// patched object (`patched`); a create or update quotes only the cluster's own
/// object back.
fn denied(
    cluster: &ClusterId,
    name: &str,
    what: &str,
    decision: &Decision,
    patched: bool,
) -> Response<RelayBody> {
    tracing::info!(%cluster, %name, rule = %decision.rule, "{what} denied");
    let rule = decision.rule.to_string();
    let reason = if patched {
        patch_advice(decision.rule).to_owned()
    } else {
        decision.reason.clone()
    };
    let message = format!("secret-relay denied the request: {reason} (rule {rule})");
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &message,
        Some((name, &[(rule.as_str(), reason.as_str())])),
    )
}

/// What a denied patch's answer says, per rule: the rule's meaning and the way
/// forward, with nothing of the patched object.
fn patch_advice(rule: Rule) -> &'static str {
    match rule {
        Rule::BlockedName | Rule::BlockedType | Rule::BlockedLabel => {
            "the patched Secret would be a blocked secret, which is never synced or changed by a cluster"
        }
        Rule::NotOptedIn => {
            "the patched Secret would lose the opt-in label akuity.io/secret-sync: \"true\"; keep it, or delete the Secret on the cluster to release it"
        }
        Rule::NoMatchingSource => {
            "no Secret Source would allow the patched Secret from this cluster; keep the labels a Secret Source selects, or ask the control-plane admin for a Secret Source"
        }
        Rule::OwnerLabelForged => {
            "the patch sets an ownership stamp only secret-relay sets (secret-relay.io/owner, secret-relay.io/adopted); remove it from the patch"
        }
        Rule::OwnedByControlPlane | Rule::OwnedByOtherCluster | Rule::InvalidOwner => {
            "the hub copy is not this cluster's; only its owner changes it"
        }
        Rule::UnknownCluster => "this cluster is not registered in the secret-relay policy",
        _ => {
            "the patched Secret breaks a secret-relay rule; see `secret-relay explain` on the control plane"
        }
    }
}

/// The answer for a create whose name a hub copy outside the view holds: nothing of
/// that copy is said, not even who owns it.
fn name_taken(relay: &Relay, cluster: &ClusterId, name: &str) -> Response<RelayBody> {
    let decision = Decision::deny(
        Rule::NameTaken,
        format!(
            "the name {name} is taken on the control plane by a Secret outside cluster {cluster}'s view: rename the Secret on this cluster, or ask the control-plane admin (`secret-relay explain` shows who holds it)"
        ),
    );
    count_write(relay, &decision);
    denied(cluster, name, "up-sync", &decision, false)
}

pub(crate) fn not_found(name: &str) -> Response<RelayBody> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("secrets \"{name}\" not found"),
        Some((name, &[])),
    )
}

fn conflict(name: &str) -> Response<RelayBody> {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on secrets \"{name}\": the object kept changing while the relay judged the write; try again"
        ),
        Some((name, &[])),
    )
}

/// Returns an adopted secret to the control plane with its data kept, as the relay's
/// own account: its labels and annotations become the control plane's own from
/// before the adoption ([`crate::handback`]), so nothing of the cluster's (its
/// opt-in label, its target annotations, the owner and adopted stamps) stays; the
/// data stays. The PUT carries the judged copy's resourceVersion.
pub(crate) async fn return_to_control_plane(
    relay: &Relay,
    cp: &str,
    hub: &Secret,
) -> Response<RelayBody> {
    let name = hub.metadata.name.clone().unwrap_or_default();
    let kept = match crate::handback::recorded(relay, cp, hub).await {
        Ok(kept) => kept,
        Err(err) => {
            tracing::warn!(%name, error = %err, "a return waits for its hand-back record");
            return unavailable();
        }
    };
    let mut returned = hub.clone();
    returned.metadata.labels = Some(kept.labels);
    returned.metadata.annotations = Some(kept.annotations);
    returned.metadata.managed_fields = None;
    let Ok(uri) = object_path(cp, &name).parse::<http::Uri>() else {
        return not_found(&name);
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let resp = forward(
        relay,
        &Method::PUT,
        &uri,
        &headers,
        Bytes::from(encode(&returned)),
        None,
    )
    .await;
    let resp = settle(relay, resp, None).await;
    if resp.status().is_success() {
        crate::handback::forget(relay, cp, &name).await;
        success(
            &name,
            &format!("secret {cp}/{name} was returned to the control plane with its data kept"),
        )
    } else {
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_precondition_on_another_version_is_a_conflict_and_ours_are_set() {
        let mut hub = Secret::default();
        hub.metadata.name = Some("a".to_owned());
        hub.metadata.resource_version = Some("7".to_owned());
        hub.metadata.uid = Some("u-1".to_owned());
        let mut options = serde_json::json!({"propagationPolicy": "Background"});
        set_preconditions(&mut options, &hub).unwrap();
        assert_eq!(
            options["preconditions"],
            serde_json::json!({"resourceVersion": "7", "uid": "u-1"})
        );
        assert_eq!(options["propagationPolicy"], "Background");
        let mut theirs = serde_json::json!({"preconditions": {"resourceVersion": "6"}});
        let answer = set_preconditions(&mut theirs, &hub).unwrap_err();
        assert_eq!(answer.status(), StatusCode::CONFLICT);
        assert!(delete_options(None, b"").unwrap().is_object());
        assert_eq!(
            delete_options(None, b"[1]").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
