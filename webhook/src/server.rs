//! The HTTPS server: routing, body limits, and the thin review handler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Body;
use secret_relay_runtime::{
    CancellationToken, ConnInfo, ServeOptions, declared_length, serve_tls, text_response as text,
};
use tokio::net::TcpListener;

use crate::metrics::RequestLabels;
use crate::review::{Endpoint, Reviewed, review, review_without_policy};
use crate::state::AppState;

/// The largest AdmissionReview body accepted. A worst-case Secret UPDATE review (1 MiB of
/// data, base64 in object and oldObject) is about 3.5 MiB; anything above this is 413.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Answers one HTTP request. Generic over the body so tests can call it in-process.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(resp) = state.admin().handle(req.method(), req.uri().path()) {
        // GET /healthz, /readyz and /metrics.
        return resp;
    }
    let endpoint = match route(state, req.method(), req.uri().path()) {
        Ok(endpoint) => endpoint,
        Err((code, message)) => return text(code, message.to_owned()),
    };
    let started = Instant::now();
    let endpoint_name = endpoint_name(endpoint);
    if let Err(refusal) = check_headers(req.headers()) {
        return refuse(state, endpoint_name, refusal);
    }
    // Held until the review is answered: its body and the copies made of it.
    let _budget = match take_budget(state, req.headers(), req.body().size_hint().exact()) {
        Ok(permit) => permit,
        Err(refusal) => return refuse(state, endpoint_name, refusal),
    };
    let body = match read_body(req.into_body()).await {
        Ok(body) => body,
        Err(refusal) => return refuse(state, endpoint_name, refusal),
    };
    let Some(endpoint) = endpoint else {
        return json(Bytes::from_static(BASELINE_REVIEW));
    };
    let reviewed = match decide(state, endpoint, &body) {
        Ok(reviewed) => reviewed,
        Err(refusal) => return refuse(state, endpoint_name, refusal),
    };
    let decision = decision(endpoint, &reviewed);
    record(state, endpoint_name, decision, &reviewed);
    state
        .metrics()
        .latency
        .observe(started.elapsed().as_secs_f64());
    json(Bytes::from(reviewed.body))
}

/// The fixed answer of `POST /baseline` (benchmarks only): an allowed review of a
/// typical size, so the baseline pays the same TLS, HTTP and body costs as a review.
const BASELINE_REVIEW: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

/// A request refused before a review: its status and message, counted and logged by
/// [`refuse`].
struct Refusal {
    code: StatusCode,
    message: String,
}

impl Refusal {
    fn new(code: StatusCode, message: String) -> Refusal {
        Refusal { code, message }
    }

    fn too_large() -> Refusal {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an AdmissionReview may be at most {MAX_BODY_BYTES} bytes\n"),
        )
    }
}

/// Which review a method and path ask for: `Some` endpoint, `None` for the benchmarks'
/// baseline, or the status and message of the 405 or 404 answer (not counted as reviews).
fn route(
    state: &AppState,
    method: &Method,
    path: &str,
) -> Result<Option<Endpoint>, (StatusCode, &'static str)> {
    match (method, path) {
        (&Method::POST, "/validate") => Ok(Some(Endpoint::Validate)),
        (&Method::POST, "/mutate") => Ok(Some(Endpoint::Mutate)),
        (&Method::POST, "/baseline") if state.bench_baseline() => Ok(None),
        (_, "/validate" | "/mutate") => {
            Err((StatusCode::METHOD_NOT_ALLOWED, "only POST is served here\n"))
        }
        _ => Err((StatusCode::NOT_FOUND, "not found\n")),
    }
}

/// The `endpoint` metric label and log field.
fn endpoint_name(endpoint: Option<Endpoint>) -> &'static str {
    match endpoint {
        Some(Endpoint::Validate) => "validate",
        Some(Endpoint::Mutate) => "mutate",
        None => "baseline",
    }
}

/// Refuses anything but JSON, and a declared length over [`MAX_BODY_BYTES`] before
/// reading the body.
fn check_headers(headers: &HeaderMap) -> Result<(), Refusal> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "an AdmissionReview must be sent with Content-Type: application/json\n".to_owned(),
        ));
    }
    if declared_length(headers).is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(Refusal::too_large());
    }
    Ok(())
}

/// How long a review's body may take to arrive: kube-apiserver gives a webhook call
/// at most 30 s, and ours 10.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes a review's share of the body budget (its Content-Length or known size, the
/// largest body when it has neither), or refuses it at once (503, which kube-apiserver treats
/// as the webhook's failure): reviews never outgrow the webhook's memory together,
/// and a small one is never queued behind a large one.
fn take_budget(
    state: &AppState,
    headers: &HeaderMap,
    exact: Option<u64>,
) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
    let declared = declared_length(headers)
        .or_else(|| exact.and_then(|n| usize::try_from(n).ok()))
        .unwrap_or(MAX_BODY_BYTES)
        .min(MAX_BODY_BYTES);
    state.bodies().try_take(declared).ok_or_else(|| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many AdmissionReview bodies in flight; retry\n".to_owned(),
        )
    })
}

/// Reads the whole body, at most [`MAX_BODY_BYTES`] of it, within [`BODY_TIMEOUT`].
async fn read_body<B>(body: B) -> Result<Bytes, Refusal>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect());
    let Ok(read) = read.await else {
        return Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the AdmissionReview body did not arrive within {} s\n",
                BODY_TIMEOUT.as_secs()
            ),
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(Refusal::too_large()),
        Err(err) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("failed to read the request body: {err}\n"),
        )),
    }
}

/// Reviews `body` against one policy snapshot, or without one while none is loaded.
fn decide(state: &AppState, endpoint: Endpoint, body: &[u8]) -> Result<Reviewed, Refusal> {
    let reviewed = if state.policy_state().is_ready() {
        // One snapshot per request: a request never sees two policies.
        let policy = state.policy_state().policy();
        review(&policy, state.relay(), state.mode(), endpoint, body)
    } else {
        // Before a valid policy loads, Kubernetes' own cleanup still passes, so a
        // namespace deletion never hangs on us; anything else is refused as not ready.
        match review_without_policy(endpoint, body) {
            Ok(Some(reviewed)) => Ok(reviewed),
            Ok(None) => {
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no valid policy loaded yet; see /readyz\n".to_owned(),
                ));
            }
            Err(err) => Err(err),
        }
    };
    reviewed.map_err(|err| Refusal::new(StatusCode::BAD_REQUEST, format!("{err}\n")))
}

/// The `decision` metric label and log field of a review.
fn decision(endpoint: Endpoint, reviewed: &Reviewed) -> &'static str {
    match (endpoint, reviewed.allowed, reviewed.patch_ops) {
        (Endpoint::Validate, true, _) => "allowed",
        (Endpoint::Validate, false, _) => "denied",
        (Endpoint::Mutate, _, 0) => "unchanged",
        (Endpoint::Mutate, _, _) => "patched",
    }
}

/// Counts and logs a refused request, and answers it.
fn refuse(
    state: &AppState,
    endpoint_name: &'static str,
    refusal: Refusal,
) -> Response<Full<Bytes>> {
    let Refusal { code, message } = refusal;
    state
        .metrics()
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint_name,
            operation: "invalid",
            decision: "bad-request",
        })
        .inc();
    tracing::warn!(endpoint = endpoint_name, status = code.as_u16(), %message, "refused an admission request");
    text(code, message)
}

/// Counts and logs a review, and a break-glass use in it.
fn record(
    state: &AppState,
    endpoint_name: &'static str,
    decision: &'static str,
    reviewed: &Reviewed,
) {
    state
        .metrics()
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint_name,
            operation: reviewed.operation,
            decision,
        })
        .inc();
    if let Some(user) = &reviewed.break_glass {
        state.metrics().break_glass.inc();
        tracing::warn!(
            uid = %reviewed.uid,
            namespace = %reviewed.namespace,
            name = %reviewed.name,
            operation = %reviewed.operation,
            user = %user,
            "break-glass identity bypassed secret-relay rules"
        );
    }
    // Denials and stamps are news; the common allowed review is logged at debug so a busy
    // control plane does not pay a log line per write.
    macro_rules! reviewed {
        ($level:ident) => {
            tracing::$level!(
                uid = %reviewed.uid,
                endpoint = endpoint_name,
                operation = %reviewed.operation,
                namespace = %reviewed.namespace,
                name = %reviewed.name,
                cluster = reviewed.cluster.as_deref(),
                decision,
                rule = reviewed.rule,
                dry_run = reviewed.dry_run,
                "reviewed"
            )
        };
    }
    // A cluster's write (a sync, through the relay) is logged at info even when
    // allowed, so each sync has its line in every component's log; others' allowed
    // writes are the API server's audit log's.
    match decision {
        "denied" | "patched" => reviewed!(info),
        "allowed" if reviewed.cluster.is_some() => reviewed!(info),
        _ => reviewed!(debug),
    }
}

fn json(body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves HTTPS (HTTP/1.1, as kube-apiserver calls webhooks) on `listener` until
/// `shutdown` is cancelled, then lets open requests finish.
///
/// `tls` is read on every handshake, so a config built around a rotating resolver
/// serves new certificates without a restart.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: CancellationToken,
) {
    let options = ServeOptions {
        http1_only: true,
        counters: Some(state.metrics().conn.clone()),
        ..ServeOptions::default()
    };
    let handler = move |req, _conn: Arc<ConnInfo>| {
        let state = state.clone();
        async move { handle(&state, req).await }
    };
    serve_tls(listener, tls, options, handler, shutdown).await;
}
