//! The HTTPS server: routing, body limits, and the thin review handler.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::RequestLabels;
use crate::review::{Endpoint, review, review_without_policy};
use crate::state::AppState;

/// The largest AdmissionReview body accepted. A worst-case Secret UPDATE review (1 MiB of
/// data, base64 in object and oldObject) is about 3.5 MiB; anything above this is 413.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one HTTP request. Generic over the body so tests can call it in-process.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let endpoint = match (req.method(), req.uri().path()) {
        (&Method::POST, "/validate") => Some(Endpoint::Validate),
        (&Method::POST, "/mutate") => Some(Endpoint::Mutate),
        (&Method::POST, "/baseline") if state.bench_baseline() => None,
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n".to_owned()),
        (&Method::GET, "/readyz") => {
            let (ready, detail) = state.readiness();
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return text(code, detail);
        }
        (&Method::GET, "/metrics") => {
            let mut resp = text(StatusCode::OK, state.metrics().encode());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return resp;
        }
        (_, "/validate" | "/mutate") => {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST is served here\n".to_owned(),
            );
        }
        _ => return text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let started = Instant::now();
    let endpoint_name = match endpoint {
        Some(Endpoint::Validate) => "validate",
        Some(Endpoint::Mutate) => "mutate",
        None => "baseline",
    };
    let bad = |code: StatusCode, message: String| {
        state
            .metrics()
            .requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint_name,
                operation: "invalid".to_owned(),
                decision: "bad-request",
            })
            .inc();
        tracing::warn!(endpoint = endpoint_name, status = code.as_u16(), %message, "refused an admission request");
        text(code, message)
    };
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return bad(
            StatusCode::BAD_REQUEST,
            "an AdmissionReview must be sent with Content-Type: application/json\n".to_owned(),
        );
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an AdmissionReview may be at most {MAX_BODY_BYTES} bytes\n"),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an AdmissionReview may be at most {MAX_BODY_BYTES} bytes\n"),
            );
        }
        Err(err) => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!("failed to read the request body: {err}\n"),
            );
        }
    };
    let Some(endpoint) = endpoint else {
        return json(Bytes::from_static(BASELINE_REVIEW));
    };
    let reviewed = if state.is_ready() {
        // One snapshot per request: a request never sees two policies.
        let policy = state.policy();
        review(&policy, state.relay(), state.mode(), endpoint, &body)
    } else {
        // Before a valid policy loads, Kubernetes' own cleanup still passes, so a
        // namespace deletion never hangs on us; anything else is refused as not ready.
        match review_without_policy(endpoint, &body) {
            Ok(Some(reviewed)) => Ok(reviewed),
            Ok(None) => {
                return bad(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no valid policy loaded yet; see /readyz\n".to_owned(),
                );
            }
            Err(err) => Err(err),
        }
    };
    let reviewed = match reviewed {
        Ok(reviewed) => reviewed,
        Err(err) => return bad(StatusCode::BAD_REQUEST, format!("{err}\n")),
    };
    let decision = match (endpoint, reviewed.allowed, reviewed.patch_ops) {
        (Endpoint::Validate, true, _) => "allowed",
        (Endpoint::Validate, false, _) => "denied",
        (Endpoint::Mutate, _, 0) => "unchanged",
        (Endpoint::Mutate, _, _) => "patched",
    };
    state
        .metrics()
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint_name,
            operation: reviewed.operation.clone(),
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
                decision,
                rule = reviewed.rule,
                dry_run = reviewed.dry_run,
                "reviewed"
            )
        };
    }
    match decision {
        "denied" | "patched" => reviewed!(info),
        _ => reviewed!(debug),
    }
    state
        .metrics()
        .latency
        .observe(started.elapsed().as_secs_f64());
    json(Bytes::from(reviewed.body))
}

/// The fixed answer of `POST /baseline` (benchmarks only): an allowed review of a
/// typical size, so the baseline pays the same TLS, HTTP and body costs as a review.
const BASELINE_REVIEW: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

fn json(body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves HTTPS (HTTP/1.1, as kube-apiserver calls webhooks) on `listener` until
/// `shutdown` resolves, then lets open requests finish.
///
/// `tls` is read on every handshake, so a config built around a rotating resolver
/// serves new certificates without a restart.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "failed to accept a connection");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    // Give in-flight reviews a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}
