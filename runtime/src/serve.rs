//! The accept loop every server shares, over TLS ([`serve_tls`]) or plain TCP
//! ([`serve_http`], the ui on loopback): handshake timeout, one span per
//! connection naming the peer, HTTP/1.1 and HTTP/2, a deadline for the first request
//! head (slowloris), and a bounded drain on shutdown. Failed handshakes and slow
//! connections are logged and, when the caller passes [`ConnCounters`], counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;
use secret_relay_certs::IdentityError;
use secret_relay_policy::ClusterId;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// What a handler knows about the connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The verified client certificate (leaf), when the TLS config asked for one.
    pub client_cert: Option<CertificateDer<'static>>,
    /// The cluster the client certificate names, made once here, or why it names
    /// none; `None` when the peer sent no certificate.
    pub identity: Option<Result<ClusterId, IdentityError>>,
    /// When the client certificate expires, in seconds since the Unix epoch: the
    /// connection may outlive it, its requests may not.
    pub client_cert_not_after: Option<i64>,
    /// The client certificate chain as presented, leaf first (empty without one).
    pub client_chain: Vec<CertificateDer<'static>>,
    /// The TLS material's rotation (see [`ServeOptions::tls_rotations`]) the chain
    /// was last verified under; a handler that verifies it again after a rotation
    /// notes the new one here.
    pub verified_at_rotation: Arc<AtomicU64>,
}

impl ConnInfo {
    /// How much longer the client certificate is valid: `None` without one,
    /// zero once it has expired.
    pub fn client_cert_valid_for(&self) -> Option<Duration> {
        let not_after = self.client_cert_not_after?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left = u64::try_from(not_after).unwrap_or(0).saturating_sub(now);
        Some(Duration::from_secs(left))
    }
}

/// Limits of the accept loop.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 client may take to send a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// How long in-flight requests get to finish after shutdown.
    pub drain_timeout: Duration,
    /// Serve HTTP/1.1 only (kube-apiserver calls webhooks over HTTP/1.1).
    pub http1_only: bool,
    /// Where failed handshakes and slow connections are counted; `None`: only logged.
    pub counters: Option<ConnCounters>,
    /// The rotation count of the TLS material, noted before each handshake into
    /// [`ConnInfo::verified_at_rotation`].
    pub tls_rotations: Option<Arc<AtomicU64>>,
}

/// The label of a [`ConnCounters`] counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnReasonLabels {
    /// Why: for handshakes `unknown-ca`, `expired`, `not-yet-valid`, `revoked`,
    /// `bad-certificate`, `no-certificate`, `client-alert`, `protocol`, `timeout`,
    /// `closed` (the peer left before a TLS message) or `io`; for request heads
    /// `first-request` (a connection that never completed a request head in time:
    /// slowloris) or `later-request` (an HTTP/1.1 connection idle or slow after a
    /// request; idle keep-alive connections end this way too).
    pub reason: &'static str,
}

/// Counters of connections the accept loop ended before a handler saw a request.
#[derive(Clone, Debug, Default)]
pub struct ConnCounters {
    /// TLS handshakes that failed, by reason.
    pub tls_handshake_failures: Family<ConnReasonLabels, Counter>,
    /// Connections closed because a request head did not arrive in time, by reason.
    pub request_head_timeouts: Family<ConnReasonLabels, Counter>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            http1_only: false,
            counters: None,
            tls_rotations: None,
        }
    }
}

impl ConnCounters {
    /// Registers `tls_handshake_failures` and `request_head_timeouts` (both
    /// `_total`, labelled `reason`) into `registry`.
    pub fn register(registry: &mut Registry) -> ConnCounters {
        let counters = ConnCounters::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason",
            counters.tls_handshake_failures.clone(),
        );
        registry.register(
            "request_head_timeouts",
            "Connections closed because a request head did not arrive in time, by reason",
            counters.request_head_timeouts.clone(),
        );
        counters
    }
}

/// Why a handshake failed, as a metric label: the rustls error under the I/O error.
fn handshake_reason(err: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return if err.kind() == std::io::ErrorKind::UnexpectedEof {
            "closed"
        } else {
            "io"
        };
    };
    match tls {
        Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => "unknown-ca",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not-yet-valid"
            }
            CertificateError::Revoked => "revoked",
            _ => "bad-certificate",
        },
        Error::NoCertificatesPresented => "no-certificate",
        Error::AlertReceived(_) => "client-alert",
        _ => "protocol",
    }
}

impl ServeOptions {
    fn count_handshake_failure(&self, reason: &'static str) {
        if let Some(c) = &self.counters {
            c.tls_handshake_failures
                .get_or_create(&ConnReasonLabels { reason })
                .inc();
        }
    }

    fn count_head_timeout(&self, reason: &'static str) {
        if let Some(c) = &self.counters {
            c.request_head_timeouts
                .get_or_create(&ConnReasonLabels { reason })
                .inc();
        }
    }
}

/// Resolves when `timeout` has passed and no request head has arrived yet; never
/// after one has (later heads are hyper's `header_read_timeout`'s).
async fn first_request_overdue(timeout: Duration, seen: Arc<AtomicBool>) {
    tokio::time::sleep(timeout).await;
    if seen.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

/// Accepts TLS connections on `listener` and serves `handler` on each until
/// `shutdown` is cancelled; then stops accepting and gives open connections
/// `drain_timeout` to finish (HTTP/1.1 connections close after their current
/// request, HTTP/2 ones get GOAWAY). The TLS config is read on every handshake, so a
/// rotating one serves new certificates without a restart.
///
/// A connection that has not sent a complete request head `header_read_timeout`
/// after its handshake is closed, whatever the protocol (HTTP/1.1, HTTP/2, or
/// nothing at all); failed handshakes and such closes are logged at info (the TLS
/// error and the peer address, never request data) and counted in
/// `options.counters`.
pub async fn serve_tls<H, F, B>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    options: ServeOptions,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = TlsAcceptor::from(tls);
    let drain_timeout = options.drain_timeout;
    accept_loop(listener, drain_timeout, shutdown, move |tcp, peer, watcher| {
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let options = options.clone();
        tokio::spawn(async move {
            // Before the handshake: a rotation during it is noted as not yet
            // verified against, so the handler checks the chain again.
            let rotation = options
                .tls_rotations
                .as_ref()
                .map_or(0, |r| r.load(Ordering::Acquire));
            let tls = match tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    let reason = handshake_reason(&err);
                    options.count_handshake_failure(reason);
                    // A peer that leaves before any TLS message (a TCP probe) is
                    // not news; a refused certificate or a broken handshake is.
                    if reason == "closed" {
                        tracing::debug!(%peer, reason, error = %err, "TLS handshake failed");
                    } else {
                        tracing::info!(%peer, reason, error = %err, "TLS handshake failed");
                    }
                    return;
                }
                Err(_) => {
                    options.count_handshake_failure("timeout");
                    tracing::info!(%peer, reason = "timeout", timeout = ?options.handshake_timeout, "TLS handshake failed");
                    return;
                }
            };
            let client_chain: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let client_cert = client_chain.first().cloned();
            let identity = client_cert
                .as_ref()
                .map(|c| secret_relay_certs::peer_identity(c).map(|id| id.name));
            // Unparsable: rustls verified it, so this does not happen; taken as
            // expired, never as unbounded.
            let client_cert_not_after = client_cert
                .as_ref()
                .map(|c| secret_relay_certs::not_after(c).unwrap_or(0));
            let info = ConnInfo {
                peer,
                client_cert,
                identity,
                client_cert_not_after,
                client_chain,
                verified_at_rotation: Arc::new(AtomicU64::new(rotation)),
            };
            serve_connection(TokioIo::new(tls), info, handler, watcher, options).await;
        });
    })
    .await;
}

/// Like [`serve_tls`], over plain TCP (a server on loopback, such as the ui): the
/// same request head deadline and drain; `handshake_timeout` does not apply, and
/// [`ConnInfo`] names no certificate.
pub async fn serve_http<H, F, B>(
    listener: TcpListener,
    options: ServeOptions,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let drain_timeout = options.drain_timeout;
    accept_loop(
        listener,
        drain_timeout,
        shutdown,
        move |tcp, peer, watcher| {
            let info = ConnInfo {
                peer,
                client_cert: None,
                identity: None,
                client_cert_not_after: None,
                client_chain: Vec::new(),
                verified_at_rotation: Arc::new(AtomicU64::new(0)),
            };
            tokio::spawn(serve_connection(
                TokioIo::new(tcp),
                info,
                handler.clone(),
                watcher,
                options.clone(),
            ));
        },
    )
    .await;
}

/// Accepts on `listener` until `shutdown`, handing each connection to `accepted`
/// with a watcher of the drain; then stops accepting and gives the watched
/// connections `drain_timeout` to finish.
async fn accept_loop(
    listener: TcpListener,
    drain_timeout: Duration,
    shutdown: CancellationToken,
    mut accepted: impl FnMut(TcpStream, SocketAddr, Watcher),
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "failed to accept a connection");
                    // Out of file descriptors and the like: give the system a moment.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        accepted(tcp, peer, graceful.watcher());
    }
    drop(listener);
    let _ = tokio::time::timeout(drain_timeout, graceful.shutdown()).await;
}

/// Serves `handler` on one accepted connection, in a span naming the peer, closing
/// it when no complete request head arrives in time.
async fn serve_connection<I, H, F, B>(
    io: TokioIo<I>,
    info: ConnInfo,
    handler: H,
    watcher: Watcher,
    options: ServeOptions,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = info.peer;
    let span = tracing::info_span!(
        "conn",
        %peer,
        identity = match &info.identity {
            Some(Ok(cluster)) => cluster.as_str(),
            _ => "-",
        }
    );
    let info = Arc::new(info);
    let seen = Arc::new(AtomicBool::new(false));
    let seen_by_service = seen.clone();
    let service = hyper::service::service_fn(move |req| {
        seen_by_service.store(true, Ordering::Release);
        let handler = handler.clone();
        let info = info.clone();
        let http1 = req.version() < http::Version::HTTP_2;
        async move {
            let resp = handler(req, info).await;
            Ok::<_, std::convert::Infallible>(close_when_stopping(resp, http1))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = if options.http1_only {
        builder.http1_only()
    } else {
        builder
    };
    let conn = builder.serve_connection(io, service);
    let conn = watcher.watch(conn.into_owned()).instrument(span.clone());
    let timeout = options.header_read_timeout;
    // hyper's header_read_timeout covers HTTP/1.1 heads once the protocol is
    // known; this also covers a peer that sends nothing, part of the HTTP/2
    // preface, or an HTTP/2 connection without a request.
    let ended = tokio::select! {
        ended = conn => ended,
        () = first_request_overdue(timeout, seen.clone()) => {
            options.count_head_timeout("first-request");
            span.in_scope(|| tracing::info!(%peer, reason = "first-request", ?timeout, "closed a connection that sent no complete request head in time"));
            return;
        }
    };
    let Err(err) = ended else {
        return;
    };
    let head_timeout = err
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout);
    match (head_timeout, seen.load(Ordering::Acquire)) {
        (true, false) => {
            options.count_head_timeout("first-request");
            span.in_scope(|| tracing::info!(%peer, reason = "first-request", ?timeout, "closed a connection that sent no complete request head in time"));
        }
        (true, true) => {
            options.count_head_timeout("later-request");
            span.in_scope(|| tracing::debug!(%peer, reason = "later-request", ?timeout, "closed an idle or slow HTTP/1.1 connection"));
        }
        (false, _) => {
            tracing::debug!(%peer, error = %err, "connection ended with an error");
        }
    }
}

/// In the shutdown delay, an HTTP/1.1 answer tells its client to leave the
/// connection, so the client opens its next one to a replica that stays. Closing the
/// connection idle later would race the client's next request (kube-apiserver's
/// webhook calls then fail with EOF); HTTP/2 has GOAWAY for this.
fn close_when_stopping<B>(mut resp: Response<B>, http1: bool) -> Response<B> {
    if http1 && crate::shutdown::is_stopping() {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_are_named_by_their_rustls_error() {
        use rustls::{CertificateError, Error};
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let cases = [
            (
                io(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                "unknown-ca",
            ),
            (
                io(Error::InvalidCertificate(CertificateError::Expired)),
                "expired",
            ),
            (
                io(Error::InvalidCertificate(CertificateError::BadSignature)),
                "bad-certificate",
            ),
            (io(Error::NoCertificatesPresented), "no-certificate"),
            (io(Error::DecryptError), "protocol"),
            (
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                "closed",
            ),
            (
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                "io",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(handshake_reason(&err), want, "{err}");
        }
    }
}
