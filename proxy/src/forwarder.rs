//! The client the relay forwards with (judged writes, revocations' deletes, the
//! discovery reads it passes on): a plain hyper client over the kubeconfig's TLS and
//! credentials, without the `Buffer`, retry and trace layers of kube's `Client`.
//!
//! A forwarded request needs none of them: the relay bounds each request itself,
//! never retries a write it judged (the API server's answer goes back to the
//! cluster), and logs what it decided. The `Buffer` hands every request to a worker
//! task and back, and the trace layer opens a span per request: 16,000 instructions
//! of a relayed PUT's 202,000, and 0.03 to 0.04 of nginx's CPU per PUT in the same
//! runs, on the one-thread runtime a one-CPU relay runs (BENCHMARKS.md, "The relay's
//! forward without kube's client stack"). On the multi-thread runtime it had cost
//! more CPU than it saved. The cache's watch, the gate's reads and the hand-back
//! records keep kube's `Client`.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt as _;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

/// Sends one request to the control plane's API server, authenticated as the relay.
#[derive(Clone)]
pub(crate) struct Forwarder {
    service: BoxCloneSyncService<Request<Full<Bytes>>, Response<Incoming>, BoxError>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder to `config`'s API server, with its TLS, credentials (refreshed
    /// tokens included) and extra headers, as kube's `Client` would send.
    pub(crate) fn new(config: &kube::Config) -> Result<Forwarder, kube::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = config.rustls_https_connector_with_connector(http)?;
        // The kubeconfig's timeouts, as kube's `Client` applies them: the connect
        // timeout bounds the TLS handshake too, not only TCP's.
        let mut connector = TimeoutConnector::new(https);
        connector.set_connect_timeout(config.connect_timeout);
        connector.set_read_timeout(config.read_timeout);
        connector.set_write_timeout(config.write_timeout);
        connector.set_reset_reader_on_write(config.reset_reader_on_write);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let service = ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .option_layer(config.auth_layer()?)
            .layer(config.extra_headers_layer()?)
            .map_err(BoxError::from)
            .service(client);
        Ok(Forwarder {
            service: BoxCloneSyncService::new(service),
        })
    }

    /// Sends `request` (a path-only URI; the API server's base is added).
    pub(crate) async fn send(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Incoming>, BoxError> {
        self.service.clone().oneshot(request.map(Full::new)).await
    }
}
