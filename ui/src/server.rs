//! The HTTP side: the page and its assets (compiled in), the JSON API, the live
//! stream (Server-Sent Events), and the guards every request passes: the Host
//! header (DNS rebinding), the access token cookie, and for writes the CSRF
//! token, the Origin and `Sec-Fetch-Site`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, HeaderValue, LOCATION, ORIGIN, SET_COOKIE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use secret_relay_policy::{POLICY_KEY, Policy};
use secret_relay_runtime::{ConnInfo, ServeOptions, serve_http};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::edit::{self, CreateRequest, EditRequest, PreviewRequest};
use crate::explain::{self, ExplainRequest};
use crate::policy_edit::{self, PolicyChange};
use crate::state::Shared;
use crate::view;

type Body = UnsyncBoxBody<Bytes, Infallible>;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// Nothing but the binary's own script, styles and images; no inline code, no
/// frames, no plugins, forms only to itself, and DOM sinks only through
/// Trusted Types (the script builds the page with `textContent`).
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The field manager of the page's writes: "last change by secret-relay-ui".
const FIELD_MANAGER: &str = "secret-relay-ui";

/// Largest request body the API accepts.
const BODY_LIMIT: usize = 1 << 20;

/// The checks every request passes.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    token: String,
    csrf: String,
    cookie: String,
    /// Host header values accepted; empty when bound to a non-loopback address.
    hosts: Vec<String>,
}

impl Guard {
    pub(crate) fn new(addr: SocketAddr, token: String, csrf: String) -> Guard {
        let port = addr.port();
        let hosts = if addr.ip().is_loopback() {
            vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ]
        } else {
            Vec::new()
        };
        Guard {
            token,
            csrf,
            // Cookies ignore ports: one name per port keeps two pages apart.
            cookie: format!("secret_relay_ui_{port}"),
            hosts,
        }
    }
}

/// A random URL-safe token of 256 bits.
pub(crate) fn random_token() -> Option<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Serves HTTP/1.1 on `listener` through runtime's accept loop until `shutdown`,
/// then gives open requests a moment to finish (the live streams end at once).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    guard: Guard,
    shutdown: CancellationToken,
) {
    let guard = Arc::new(guard);
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(5),
        http1_only: true,
        ..ServeOptions::default()
    };
    let stop = shutdown.clone();
    let handler = move |req, _conn: Arc<ConnInfo>| {
        let shared = shared.clone();
        let guard = guard.clone();
        let stop = stop.clone();
        async move { handle(req, &shared, &guard, stop).await }
    };
    serve_http(listener, options, handler, shutdown).await;
}

async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    guard: &Guard,
    shutdown: CancellationToken,
) -> Response<Body> {
    let mut resp = route(req, shared, guard, shutdown).await;
    secure_headers(resp.headers_mut());
    resp
}

fn secure_headers(h: &mut http::HeaderMap) {
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), clipboard-read=()",
    );
    if !h.contains_key(CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
}

async fn route(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    guard: &Guard,
    shutdown: CancellationToken,
) -> Response<Body> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !guard.hosts.is_empty() && !guard.hosts.contains(&host) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "this page answers only on its loopback address (unexpected Host header)\n",
        );
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();

    // The address printed at start carries the token: trade it for a cookie.
    if method == Method::GET
        && path == "/"
        && let Some(offered) = query_param(req.uri().query(), "token")
    {
        if !same(&offered, &guard.token) {
            return page_error(
                StatusCode::FORBIDDEN,
                "This access token is not valid. Open the address that secret-relay ui printed when it started.",
            );
        }
        let mut resp = empty(StatusCode::SEE_OTHER);
        resp.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/"));
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            guard.cookie, guard.token
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(SET_COOKIE, v);
        }
        return resp;
    }
    // The static assets hold nothing of the user's: the error pages use the styles.
    let is_asset = method == Method::GET && path.starts_with("/assets/");
    if !is_asset && !has_cookie(&req, &guard.cookie, &guard.token) {
        return page_error(
            StatusCode::UNAUTHORIZED,
            "Open the address that secret-relay ui printed when it started: it carries the access token.",
        );
    }
    if method != Method::GET
        && method != Method::HEAD
        && let Err(why) = check_write(&req, guard, &host)
    {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": {"code": 403, "reason": "CSRF", "message": why}}),
        );
    }

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, [""]) => html(INDEX_HTML.replace("{{CSRF}}", &guard.csrf)),
        (Method::GET, ["assets", "app.js"]) => asset("text/javascript; charset=utf-8", APP_JS),
        (Method::GET, ["assets", "style.css"]) => asset("text/css; charset=utf-8", STYLE_CSS),
        (Method::GET, ["assets", "icon.svg"] | ["favicon.ico"]) => asset("image/svg+xml", ICON_SVG),
        (Method::GET, ["api", "state"]) => {
            json_response(StatusCode::OK, &view::build(&shared.snapshot()))
        }
        (Method::GET, ["api", "events"]) => events(shared.clone(), shutdown),
        (Method::POST, ["api", "preview"]) => match body::<PreviewRequest>(req).await {
            Ok(p) => {
                let existing = p.existing.as_deref().and_then(|n| shared.secret(n));
                let policy = shared.policy.policy();
                json_response(
                    StatusCode::OK,
                    &edit::preview(&policy, &p, existing.as_ref()),
                )
            }
            Err(resp) => resp,
        },
        (Method::GET, ["api", "policy"]) => policy_read(shared).await,
        (Method::POST, ["api", "policy", "plan"]) => match body::<PolicyChange>(req).await {
            Ok(c) => policy_plan(shared, &c).await,
            Err(resp) => resp,
        },
        (Method::PUT, ["api", "policy"]) => match body::<PolicyChange>(req).await {
            Ok(c) => policy_save(shared, &c).await,
            Err(resp) => resp,
        },
        (Method::POST, ["api", "explain"]) => match body::<ExplainRequest>(req).await {
            Ok(e) => explain_answer(shared, e),
            Err(resp) => resp,
        },
        (Method::POST, ["api", "secrets"]) => match body::<CreateRequest>(req).await {
            Ok(c) => create(shared, c).await,
            Err(resp) => resp,
        },
        (Method::PUT, ["api", "secrets", name]) if valid_name(name) => {
            let name = (*name).to_owned();
            match body::<EditRequest>(req).await {
                Ok(e) => update(shared, &name, e).await,
                Err(resp) => resp,
            }
        }
        (Method::DELETE, ["api", "secrets", name]) if valid_name(name) => {
            let api = secrets_api(shared);
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => json_response(StatusCode::OK, &json!({"deleted": name})),
                Err(err) => api_error(&err),
            }
        }
        (Method::POST, ["api", "secrets", name, "reveal"]) if valid_name(name) => {
            let name = (*name).to_owned();
            match body::<RevealRequest>(req).await {
                Ok(r) => reveal(shared, &name, &r.key).await,
                Err(resp) => resp,
            }
        }
        (Method::POST, ["api", "secrets", name, "take-over"]) if valid_name(name) => {
            let api = secrets_api(shared);
            match api
                .patch(
                    name,
                    &patch_params(),
                    &Patch::Merge(edit::take_over_patch()),
                )
                .await
            {
                Ok(_) => json_response(StatusCode::OK, &json!({"tookOver": name})),
                Err(err) => api_error(&err),
            }
        }
        (Method::GET | Method::POST | Method::PUT | Method::DELETE, _) => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": "not found"}}),
        ),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevealRequest {
    key: String,
}

/// A write must come from the page itself: the CSRF token it was served with,
/// a JSON body, and no cross-site Origin or `Sec-Fetch-Site`.
fn check_write(req: &Request<Incoming>, guard: &Guard, host: &str) -> Result<(), String> {
    let headers = req.headers();
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same(csrf, &guard.csrf) {
        return Err(
            "missing or wrong X-CSRF-Token: writes are accepted only from the page itself"
                .to_owned(),
        );
    }
    if let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok())
        && origin != format!("http://{host}")
    {
        return Err(format!("cross-origin write from {origin} refused"));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
    {
        return Err(format!("a {site} write is refused"));
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if req.method() != Method::DELETE && !json {
        return Err("writes must send application/json".to_owned());
    }
    Ok(())
}

fn has_cookie(req: &Request<Incoming>, name: &str, token: &str) -> bool {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == name && same(v, token))
}

/// Constant-time string equality (tokens).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A Secret name as Kubernetes allows it (a DNS subdomain's characters).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": {"code": 413, "message": "the request body is too large or broken"}}),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"code": 400, "message": format!("bad request: {e}")}}),
        )
    })
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn secrets_api(shared: &Shared) -> Api<Secret> {
    let policy = shared.policy.policy();
    Api::namespaced(shared.client.clone(), policy.control_plane_namespace())
}

async fn create(shared: &Shared, req: CreateRequest) -> Response<Body> {
    let policy = shared.policy.policy();
    let secret = match edit::new_secret(&policy, &req) {
        Ok(s) => s,
        Err(message) => return invalid(&message),
    };
    if let Some(refusal) = edit::refusal(&policy, &secret) {
        return refused(refusal);
    }
    match secrets_api(shared)
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            },
            &secret,
        )
        .await
    {
        Ok(s) => json_response(
            StatusCode::CREATED,
            &json!({"created": s.metadata.name, "resourceVersion": s.metadata.resource_version}),
        ),
        Err(err) => api_error(&err),
    }
}

async fn update(shared: &Shared, name: &str, req: EditRequest) -> Response<Body> {
    let policy = shared.policy.policy();
    // The page's copy (values dropped) is enough to judge blocking; the API
    // server and the webhook judge the write itself.
    let Some(current) = shared.secret(name) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": format!("secret {name} is not in the page's view of {}", policy.control_plane_namespace())}}),
        );
    };
    let (patch, after) = match edit::edit_patch(&req, &current) {
        Ok(p) => p,
        Err(message) => return invalid(&message),
    };
    if let Some(refusal) = edit::refusal(&policy, &after) {
        return refused(refusal);
    }
    match secrets_api(shared)
        .patch(name, &patch_params(), &Patch::Merge(patch))
        .await
    {
        Ok(s) => json_response(
            StatusCode::OK,
            &json!({"updated": s.metadata.name, "resourceVersion": s.metadata.resource_version}),
        ),
        Err(err) => api_error(&err),
    }
}

/// One value, read as the user at the moment they ask.
async fn reveal(shared: &Shared, name: &str, key: &str) -> Response<Body> {
    let secret = match secrets_api(shared).get(name).await {
        Ok(s) => s,
        Err(err) => return api_error(&err),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.clone().into_bytes())
        });
    let Some(bytes) = value else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": format!("secret {name} has no key {key}")}}),
        );
    };
    tracing::info!(%name, %key, "revealed one key to the page's user");
    let answer = match String::from_utf8(bytes) {
        Ok(text) => json!({"key": key, "value": text, "encoding": "utf-8"}),
        Err(e) => json!({
            "key": key,
            "value": base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            "encoding": "base64",
        }),
    };
    json_response(StatusCode::OK, &answer)
}

/// The policy ConfigMap, read as the user: `(namespace, name)`.
fn policy_configmap(shared: &Shared) -> (Api<ConfigMap>, String) {
    let (ns, name) = shared
        .policy_source
        .split_once('/')
        .unwrap_or(("secret-relay-system", "secret-relay-policy"));
    (Api::namespaced(shared.client.clone(), ns), name.to_owned())
}

/// The live document's text and resourceVersion, read as the user.
async fn live_policy(shared: &Shared) -> Result<(String, Option<String>), Response<Body>> {
    let (api, name) = policy_configmap(shared);
    match api.get(&name).await {
        Ok(cm) => Ok((
            cm.data
                .and_then(|d| d.get(POLICY_KEY).cloned())
                .unwrap_or_default(),
            cm.metadata.resource_version,
        )),
        Err(err) => Err(api_error(&err)),
    }
}

/// `GET /api/policy`: the clusters and Secret Sources as the editor starts from
/// them, and the resourceVersion a save must carry.
async fn policy_read(shared: &Shared) -> Response<Body> {
    let (text, resource_version) = match live_policy(shared).await {
        Ok(live) => live,
        Err(resp) => return resp,
    };
    let policy = match Policy::from_yaml(&text) {
        Ok(p) => p,
        Err(err) => return invalid(&format!("the live policy is not valid: {err}")),
    };
    let change = PolicyChange {
        clusters: policy
            .clusters()
            .map(|c| policy_edit::ClusterEdit {
                name: c.name.clone(),
                labels: c.labels.clone(),
            })
            .collect(),
        sources: policy
            .sources()
            .iter()
            .map(|s| policy_edit::SourceEdit {
                cluster_selector: s.cluster_selector.to_string(),
                label_selector: s.label_selector.to_string(),
            })
            .collect(),
        resource_version,
    };
    json_response(StatusCode::OK, &change)
}

/// `POST /api/policy/plan`: the problems of a change, or its plan over the live
/// hub copies.
async fn policy_plan(shared: &Shared, change: &PolicyChange) -> Response<Body> {
    let (text, _) = match live_policy(shared).await {
        Ok(live) => live,
        Err(resp) => return resp,
    };
    let old = shared.policy.policy();
    let hub: Vec<Secret> = shared
        .snapshot()
        .inner
        .secrets
        .items
        .into_values()
        .collect();
    json_response(
        StatusCode::OK,
        &policy_edit::check(&old, &text, change, &hub),
    )
}

/// `PUT /api/policy`: saves a valid change as the user, under the resourceVersion
/// the page read: a policy changed meanwhile is a conflict, never overwritten.
async fn policy_save(shared: &Shared, change: &PolicyChange) -> Response<Body> {
    let Some(read) = change.resource_version.clone() else {
        return invalid("a policy save carries the resourceVersion the page read");
    };
    let (api, name) = policy_configmap(shared);
    let mut cm = match api.get(&name).await {
        Ok(cm) => cm,
        Err(err) => return api_error(&err),
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(POLICY_KEY).cloned())
        .unwrap_or_default();
    let document = match policy_edit::document(&text, change) {
        Ok(d) => d,
        Err(message) => return invalid(&message),
    };
    if let Err(err) = Policy::from_yaml(&document) {
        return invalid(&format!("the policy is not valid: {err}"));
    }
    cm.metadata.resource_version = Some(read);
    cm.metadata.managed_fields = None;
    cm.data
        .get_or_insert_with(Default::default)
        .insert(POLICY_KEY.to_owned(), document);
    match api.replace(&name, &PostParams::default(), &cm).await {
        Ok(saved) => json_response(
            StatusCode::OK,
            &json!({"resourceVersion": saved.metadata.resource_version}),
        ),
        Err(kube::Error::Api(status)) if status.code == 409 => json_response(
            StatusCode::CONFLICT,
            &json!({"error": {"code": 409, "reason": "Conflict", "message": "the policy was changed by someone else since you opened it: reload it and make your change again (nothing was overwritten)"}}),
        ),
        Err(err) => api_error(&err),
    }
}

fn explain_answer(shared: &Shared, req: ExplainRequest) -> Response<Body> {
    let snap = shared.snapshot();
    let policy = &snap.policy;
    let (secret, pasted) = match (&req.manifest, &req.name) {
        (Some(text), _) if !text.trim().is_empty() => match explain::parse_manifest(text) {
            Ok(s) => (s, true),
            Err(message) => return invalid(&message),
        },
        (_, Some(name)) => match snap.inner.secrets.items.get(name) {
            Some(s) => (s.clone(), false),
            None => {
                return invalid(&format!(
                    "there is no Secret {name} in {}",
                    policy.control_plane_namespace()
                ));
            }
        },
        _ => return invalid("paste a Secret manifest or pick a Secret"),
    };
    let name = secret.metadata.name.clone().unwrap_or_default();
    let hub = snap.inner.secrets.items.get(&name);
    let locals = snap
        .inner
        .clusters
        .iter()
        .filter(|(_, r)| r.secrets_synced)
        .map(|(c, r)| (c.clone(), r.secrets.get(&name).cloned()))
        .collect();
    json_response(
        StatusCode::OK,
        &explain::explain(policy, &secret, pasted, hub, &locals),
    )
}

/// The live stream: the whole view on connect and after every change
/// (coalesced), a comment every 20 s to keep the connection open.
fn events(shared: Arc<Shared>, shutdown: CancellationToken) -> Response<Body> {
    struct Live {
        shared: Arc<Shared>,
        rx: tokio::sync::watch::Receiver<u64>,
        first: bool,
        shutdown: CancellationToken,
    }
    let rx = shared.subscribe();
    let live = Live {
        shared,
        rx,
        first: true,
        shutdown,
    };
    let stream = futures::stream::unfold(live, |mut live| async move {
        if live.first {
            live.first = false;
            live.rx.borrow_and_update();
            let frame = state_event(&live.shared);
            return Some((Ok::<_, Infallible>(Frame::data(frame)), live));
        }
        let next = tokio::select! {
            () = live.shutdown.cancelled() => None,
            changed = live.rx.changed() => match changed {
                Ok(()) => {
                    // Coalesce a burst (a list, a policy reload) into one message.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    live.rx.borrow_and_update();
                    Some(state_event(&live.shared))
                }
                Err(_) => None,
            },
            () = tokio::time::sleep(Duration::from_secs(20)) => Some(Bytes::from_static(b": keep-alive\n\n")),
        };
        next.map(|bytes| (Ok(Frame::data(bytes)), live))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    resp
}

fn state_event(shared: &Shared) -> Bytes {
    let view = view::build(&shared.snapshot());
    let json = serde_json::to_string(&view).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("retry: 2000\nevent: state\ndata: {json}\n\n"))
}

/// The API server's answer, verbatim: the webhook's denials are its messages.
fn api_error(err: &kube::Error) -> Response<Body> {
    match err {
        kube::Error::Api(status) => {
            let causes: Vec<_> = status
                .details
                .as_ref()
                .map(|d| {
                    d.causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect()
                })
                .unwrap_or_default();
            let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::BAD_GATEWAY);
            json_response(
                code,
                &json!({"error": {
                    "code": status.code,
                    "reason": status.reason,
                    "message": status.message,
                    "causes": causes,
                    "from": "api-server",
                }}),
            )
        }
        other => json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"error": {"code": 502, "message": format!("failed to reach the API server: {other}")}}),
        ),
    }
}

fn refused(refusal: view::DecisionView) -> Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"error": {
            "code": 422,
            "reason": "Refused",
            "rule": refusal.rule,
            "message": refusal.reason,
            "from": "page",
        }}),
    )
}

fn invalid(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"code": 400, "reason": "Invalid", "message": message, "from": "page"}}),
    )
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn empty(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn html(body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn page_error(code: StatusCode, message: &str) -> Response<Body> {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>secret-relay</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body><main class=\"gate\"><h1>secret-relay</h1><p>{}</p></main></body></html>",
        escape(message)
    );
    let mut resp = html(body);
    *resp.status_mut() = code;
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn json_response<T: Serialize>(code: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn names_outside_a_dns_subdomain_are_not_routed() {
        assert!(valid_name("argocd-notifications-secret"));
        assert!(valid_name("a.b-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("A"));
        assert!(!valid_name("a%2Fb"));
        assert!(!valid_name("../x"));
    }

    #[test]
    fn the_loopback_guard_accepts_only_its_own_host_names() {
        let g = Guard::new("127.0.0.1:8090".parse().unwrap(), "t".into(), "c".into());
        assert!(g.hosts.contains(&"localhost:8090".to_owned()));
        assert!(!g.hosts.contains(&"evil.example:8090".to_owned()));
        let open = Guard::new("0.0.0.0:8090".parse().unwrap(), "t".into(), "c".into());
        assert!(open.hosts.is_empty());
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token().unwrap());
    }
}
