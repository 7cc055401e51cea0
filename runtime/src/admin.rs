//! The admin endpoints every server process serves: `/healthz`, `/readyz` built
//! from the readiness of its parts, and `/metrics` from one registry.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::registry::Registry;

/// One named part of a process's readiness (the policy, a cache, a watch).
#[derive(Clone)]
pub struct Readiness {
    name: &'static str,
    check: Arc<dyn Fn() -> (bool, String) + Send + Sync>,
}

/// The admin endpoints of one process.
#[derive(Clone, Debug)]
pub struct Admin {
    inner: Arc<AdminInner>,
}

#[derive(Debug)]
struct AdminInner {
    registry: Registry,
    parts: Vec<Readiness>,
}

impl Readiness {
    /// A part named `name` whose check answers ready or not with a detail line.
    pub fn new(
        name: &'static str,
        check: impl Fn() -> (bool, String) + Send + Sync + 'static,
    ) -> Readiness {
        Readiness {
            name,
            check: Arc::new(check),
        }
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("name", &self.name)
            .finish()
    }
}

impl Admin {
    /// The endpoints over a finished registry and the parts readiness is made of.
    pub fn new(registry: Registry, parts: Vec<Readiness>) -> Admin {
        Admin {
            inner: Arc::new(AdminInner { registry, parts }),
        }
    }

    /// Ready when every part is; the detail has one line per part.
    pub fn readiness(&self) -> (bool, String) {
        let mut ready = true;
        let mut detail = String::new();
        if crate::shutdown::is_stopping() {
            ready = false;
            detail.push_str(
                "[-] shutdown: stop signal received, serving until the shutdown delay ends\n",
            );
        }
        for part in &self.inner.parts {
            let (ok, line) = (part.check)();
            ready &= ok;
            detail.push_str(if ok { "[+] " } else { "[-] " });
            detail.push_str(part.name);
            detail.push_str(": ");
            detail.push_str(&line);
            detail.push('\n');
        }
        detail.push_str(if ready { "ok\n" } else { "not ready\n" });
        (ready, detail)
    }

    /// The Prometheus text exposition of the registry.
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// Answers `GET /healthz`, `/readyz` and `/metrics`; `None` for any other request.
    pub fn handle(&self, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
        if method != Method::GET {
            return None;
        }
        match path {
            "/healthz" | "/livez" => Some(text_response(StatusCode::OK, "ok\n".to_owned())),
            "/readyz" => {
                let (ready, detail) = self.readiness();
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                Some(text_response(code, detail))
            }
            "/metrics" => {
                let mut resp = text_response(StatusCode::OK, self.encode_metrics());
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Some(resp)
            }
            _ => None,
        }
    }
}

/// Serves the admin endpoints over plain HTTP/1.1 on `listener` until `shutdown`
/// (probes and Prometheus scrape without client certificates).
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    admin: Admin,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // One accept loop for every server: the runtime's, over plain TCP.
    let options = crate::ServeOptions {
        header_read_timeout: std::time::Duration::from_secs(10),
        drain_timeout: std::time::Duration::from_secs(1),
        http1_only: true,
        ..crate::ServeOptions::default()
    };
    let handler = move |req: http::Request<hyper::body::Incoming>,
                        _conn: std::sync::Arc<crate::ConnInfo>| {
        let answer = admin
            .handle(req.method(), req.uri().path())
            .unwrap_or_else(|| text_response(StatusCode::NOT_FOUND, "not found\n".to_owned()));
        std::future::ready(answer)
    };
    crate::serve_http(listener, options, handler, shutdown).await;
}

/// A `text/plain` response.
pub fn text_response(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn readyz_is_ready_only_when_every_part_is_and_names_each() {
        let cache = Arc::new(AtomicBool::new(false));
        let flag = cache.clone();
        let admin = Admin::new(
            Registry::default(),
            vec![
                Readiness::new("policy", || (true, "generation 3".to_owned())),
                Readiness::new("cache", move || {
                    (flag.load(Ordering::Acquire), "synced".to_owned())
                }),
            ],
        );
        let resp = admin.handle(&Method::GET, "/readyz").unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let (_, detail) = admin.readiness();
        assert!(detail.contains("[+] policy: generation 3"), "{detail}");
        assert!(detail.contains("[-] cache: synced"), "{detail}");
        cache.store(true, Ordering::Release);
        assert_eq!(
            admin.handle(&Method::GET, "/readyz").unwrap().status(),
            StatusCode::OK
        );
        assert!(admin.handle(&Method::POST, "/readyz").is_none());
        assert!(admin.handle(&Method::GET, "/other").is_none());
    }
}
