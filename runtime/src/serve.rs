//! The TLS accept loop every server shares: handshake timeout, one span per
//! connection naming the peer, HTTP/1.1 and HTTP/2, and a bounded drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
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
    /// The cluster the client certificate names, when it names one.
    pub identity: Option<String>,
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            http1_only: false,
        }
    }
}

/// Accepts TLS connections on `listener` and serves `handler` on each until
/// `shutdown` is cancelled; then stops accepting and gives open connections
/// `drain_timeout` to finish (HTTP/1.1 connections close after their current
/// request, HTTP/2 ones get GOAWAY). The TLS config is read on every handshake, so a
/// rotating one serves new certificates without a restart.
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
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let watcher = graceful.watcher();
        let options = options.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp)).await {
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
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| c.clone().into_owned());
            let identity = client_cert
                .as_ref()
                .and_then(|c| secret_relay_certs::peer_identity(c).ok())
                .map(|id| id.name);
            let span = tracing::info_span!(
                "conn",
                %peer,
                identity = identity.as_deref().unwrap_or("-")
            );
            let info = Arc::new(ConnInfo {
                peer,
                client_cert,
                identity,
            });
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                let info = info.clone();
                async move { Ok::<_, std::convert::Infallible>(handler(req, info).await) }
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
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(conn.into_owned()).instrument(span).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(options.drain_timeout, graceful.shutdown()).await;
}
