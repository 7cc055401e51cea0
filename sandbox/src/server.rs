//! The HTTPS server: shared state, the accept loop and one connection's requests. Parsing,
//! routing and the REST handlers live in the submodules, one concern each.

use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::admission::AdmissionWebhooks;
use crate::auth::{self, Authenticator, UserInfo};
use crate::store::Db;

mod admit;
mod body;
mod delete;
mod objects;
mod patching;
mod read;
mod request;
mod response;
mod route;
mod validation;
mod watch;
mod write;

/// Response body: a full JSON document or a watch stream.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Write attempts for unconditional updates that race with other writers.
const MAX_ATTEMPTS: usize = 8;
/// A watch without `timeoutSeconds` ends after this long (kube-apiserver: 30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// State shared by all connections of one sandbox.
pub(crate) struct Shared {
    pub(crate) db: Mutex<Db>,
    pub(crate) auth: Authenticator,
    pub(crate) admission: AdmissionWebhooks,
    pub(crate) max_body: usize,
    pub(crate) bookmark_interval: Duration,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Watches started so far (a test hook to await reconnects).
    pub(crate) watches_started: AtomicU64,
}

impl Shared {
    /// The database; a poisoned lock still holds consistent data (every write is one insert).
    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, acceptor.clone(), shared.clone()));
                }
                Err(err) => tracing::warn!(error = %err, "failed to accept connection"),
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "failed TLS handshake");
            return;
        }
        Err(_) => return,
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| auth::user_from_cert(cert.as_ref()));
    let mut shutdown = shared.shutdown.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handle(shared, peer, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    peer: Option<UserInfo>,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match route::route(shared, peer, req).await {
        Ok(response) => response,
        Err(status) => response::status_response(&status),
    };
    tracing::debug!(%method, %path, code = response.status().as_u16(), "request");
    response
}
