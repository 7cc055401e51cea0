//! The HTTP side: the page and its assets (compiled in), the JSON API, the live
//! stream (Server-Sent Events), and the guards every request passes: the Host
//! header (DNS rebinding), the access token cookie, the page's session token on
//! every `/api/` request, and for writes the Origin and `Sec-Fetch-Site`.
//!
//! This file serves and routes; the guards are in `guard`, the page and its assets
//! in `assets`, the handlers in `secrets`, `policy`, `what_if` and `live`, and the
//! request bodies and responses they share in `wire`.

mod assets;
mod guard;
mod live;
mod policy;
mod secrets;
mod what_if;
mod wire;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use secret_relay_runtime::{ConnInfo, ServeOptions, serve_http};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::edit::{CreateRequest, EditRequest, PreviewRequest};
use crate::explain::ExplainRequest;
use crate::policy_edit::PolicyChange;
use crate::state::Shared;

use self::assets::{APP_JS, ICON_SVG, STYLE_CSS, asset};
use self::wire::{body, json_response, text};

pub(crate) use self::guard::{Guard, random_token};

type Body = UnsyncBoxBody<Bytes, Infallible>;

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
    guard::secure_headers(resp.headers_mut());
    resp
}

/// The guards first, then the route's handler.
async fn route(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    guard: &Guard,
    shutdown: CancellationToken,
) -> Response<Body> {
    if let Some(stopped) = guard::check(&req, guard) {
        return stopped;
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::GET, [""]) => assets::index(),
        (Method::GET, ["assets", "app.js"]) => asset("text/javascript; charset=utf-8", APP_JS),
        (Method::GET, ["assets", "style.css"]) => asset("text/css; charset=utf-8", STYLE_CSS),
        (Method::GET, ["assets", "icon.svg"] | ["favicon.ico"]) => asset("image/svg+xml", ICON_SVG),
        (Method::GET, ["api", "state"]) => live::state(shared),
        (Method::GET, ["api", "events"]) => live::events(shared.clone(), shutdown),
        (Method::POST, ["api", "preview"]) => match body::<PreviewRequest>(req).await {
            Ok(p) => what_if::preview(shared, &p),
            Err(resp) => resp,
        },
        (Method::GET, ["api", "policy"]) => policy::read(shared).await,
        (Method::POST, ["api", "policy", "plan"]) => match body::<PolicyChange>(req).await {
            Ok(c) => policy::plan(shared, &c).await,
            Err(resp) => resp,
        },
        (Method::PUT, ["api", "policy"]) => match body::<PolicyChange>(req).await {
            Ok(c) => policy::save(shared, &c).await,
            Err(resp) => resp,
        },
        (Method::POST, ["api", "explain"]) => match body::<ExplainRequest>(req).await {
            Ok(e) => what_if::explain(shared, e),
            Err(resp) => resp,
        },
        (Method::POST, ["api", "secrets"]) => match body::<CreateRequest>(req).await {
            Ok(c) => secrets::create(shared, c).await,
            Err(resp) => resp,
        },
        (Method::PUT, ["api", "secrets", name]) if valid_name(name) => {
            let name = (*name).to_owned();
            match body::<EditRequest>(req).await {
                Ok(e) => secrets::update(shared, &name, e).await,
                Err(resp) => resp,
            }
        }
        (Method::DELETE, ["api", "secrets", name]) if valid_name(name) => {
            secrets::delete(shared, name).await
        }
        (Method::POST, ["api", "secrets", name, "reveal"]) if valid_name(name) => {
            let name = (*name).to_owned();
            match body::<secrets::RevealRequest>(req).await {
                Ok(r) => secrets::reveal(shared, &name, &r.key).await,
                Err(resp) => resp,
            }
        }
        (Method::POST, ["api", "secrets", name, "take-over"]) if valid_name(name) => {
            secrets::take_over(shared, name).await
        }
        (Method::GET | Method::POST | Method::PUT | Method::DELETE, _) => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": "not found"}}),
        ),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// A Secret name as Kubernetes allows it (a DNS subdomain's characters).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_a_dns_subdomain_are_not_routed() {
        assert!(valid_name("argocd-notifications-secret"));
        assert!(valid_name("a.b-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("A"));
        assert!(!valid_name("a%2Fb"));
        assert!(!valid_name("../x"));
    }
}
