//! The HTTPS client that calls webhooks as kube-apiserver's REST client does: where a
//! webhook is (service or URL), its trust roots, the POST with its timeout, and Go's
//! wording of every way that can fail.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{AdmissionWebhooks, Hook, str_at, x509};

impl AdmissionWebhooks {
    /// POSTs the review to the webhook and returns the response body, or the error text
    /// Go's HTTP client would give.
    pub(super) async fn post(
        &self,
        hook: &Hook<'_>,
        review: &Value,
        timeout_seconds: u64,
    ) -> Result<Bytes, String> {
        let target = self.target(hook.spec)?;
        let timeout = go_duration(timeout_seconds);
        let url = format!("{}?timeout={timeout}", target.url);
        let body =
            serde_json::to_vec(review).map_err(|e| format!("failed to encode the review: {e}"))?;
        let exchange = exchange(&target, &url, body);
        match tokio::time::timeout(Duration::from_secs(timeout_seconds), exchange).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(ExchangeError::Transport(err))) => Err(format!("Post {url:?}: {err}")),
            Ok(Err(ExchangeError::Status(err))) => Err(err),
            Err(_) => Err(format!("Post {url:?}: context deadline exceeded")),
        }
    }

    /// Where and how to reach a webhook: from `clientConfig.service` or `clientConfig.url`.
    fn target(&self, spec: &Value) -> Result<Target, String> {
        let client = spec.get("clientConfig").unwrap_or(&Value::Null);
        let ca_bundle = client.get("caBundle").and_then(Value::as_str).unwrap_or("");
        let (roots, bundle) =
            root_store(ca_bundle).map_err(|e| format!("could not get REST client: {e}"))?;
        if let Some(service) = client.get("service").filter(|s| s.is_object()) {
            let name = str_at(service, "name").unwrap_or("");
            let namespace = str_at(service, "namespace").unwrap_or("");
            let port = service.get("port").and_then(Value::as_u64).unwrap_or(443);
            let path = str_at(service, "path").unwrap_or("");
            let server_name = format!("{name}.{namespace}.svc");
            let host = format!("{server_name}:{port}");
            return Ok(Target {
                dial: match self.services.get(&host) {
                    Some(addr) => Dial::Addr(*addr),
                    None => Dial::Unknown(server_name.clone()),
                },
                url: format!("https://{host}{path}"),
                path: if path.is_empty() {
                    "/".to_owned()
                } else {
                    path.to_owned()
                },
                host,
                server_name,
                roots,
                bundle,
            });
        }
        let url = str_at(client, "url")
            .ok_or_else(|| "could not get REST client: webhook has no clientConfig".to_owned())?;
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("could not get REST client: unsupported webhook url {url:?}"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (hostname, port) = split_host_port(authority)?;
        let host = format!("{hostname}:{port}");
        let dial = match self.services.get(&host) {
            Some(addr) => Dial::Addr(*addr),
            None => Dial::Host(hostname.to_owned(), port),
        };
        Ok(Target {
            dial,
            url: format!("https://{authority}{path}"),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            host: authority.to_owned(),
            server_name: hostname
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            roots,
            bundle,
        })
    }
}

/// How to reach a webhook.
struct Target {
    dial: Dial,
    /// The URL without the query, as Go prints it.
    url: String,
    /// The request path.
    path: String,
    /// The Host header.
    host: String,
    /// TLS server name (SNI and verification).
    server_name: String,
    roots: rustls::RootCertStore,
    /// The `caBundle`'s certificates, to word a verification failure as Go does.
    bundle: Vec<CertificateDer<'static>>,
}

/// The TCP address to dial.
enum Dial {
    Addr(SocketAddr),
    Host(String, u16),
    /// A service the service map does not know: like a failed DNS lookup.
    Unknown(String),
}

/// A failed exchange: a transport error (wrapped as Go's `url.Error`) or an HTTP error status.
enum ExchangeError {
    Transport(String),
    Status(String),
}

/// Dials, handshakes and sends one HTTP/1.1 POST; returns the 2xx body.
async fn exchange(target: &Target, url: &str, body: Vec<u8>) -> Result<Bytes, ExchangeError> {
    let tcp = dial(&target.dial).await?;
    let tls = tls_connect(target, tcp).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ExchangeError::Transport(e.to_string()))?;
    let driver = tokio::spawn(async move {
        // The connection ends with the exchange; its error, if any, surfaces on the request.
        let _ = connection.await;
    });
    let path_and_query = format!("{}{}", target.path, url.find('?').map_or("", |i| &url[i..]));
    let request = http::Request::post(path_and_query)
        .header(http::header::HOST, &target.host)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::USER_AGENT, "kube-apiserver-admission")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ExchangeError::Transport(e.to_string()))?;
    let result = send(&mut sender, request).await;
    driver.abort();
    result
}

/// The TCP connection to the webhook, with Go's wording of a failed dial or lookup.
async fn dial(dial: &Dial) -> Result<TcpStream, ExchangeError> {
    match dial {
        Dial::Addr(addr) => TcpStream::connect(addr)
            .await
            .map_err(|e| ExchangeError::Transport(format!("dial tcp {addr}: {}", io_reason(&e)))),
        Dial::Host(host, port) => TcpStream::connect((host.as_str(), *port))
            .await
            .map_err(|e| {
                ExchangeError::Transport(format!("dial tcp {host}:{port}: {}", io_reason(&e)))
            }),
        Dial::Unknown(host) => Err(ExchangeError::Transport(format!(
            "dial tcp: lookup {host}: no such host"
        ))),
    }
}

/// The TLS handshake, trusting only the webhook's `caBundle` and offering HTTP/1.1.
async fn tls_connect(
    target: &Target,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ExchangeError> {
    let provider = secret_relay_certs::provider();
    let verifier = x509::RecordingVerifier::new(target.roots.clone(), provider.clone());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExchangeError::Transport(format!("tls: {e}")))?;
    let mut config = match &verifier {
        Some(verifier) => builder
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth(),
        // No roots: every certificate is signed by an unknown authority.
        None => builder
            .with_root_certificates(target.roots.clone())
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| ExchangeError::Transport(format!("tls: invalid server name: {e}")))?;
    TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            let presented = verifier.as_ref().and_then(|v| v.presented());
            let unknown_authority = x509::unknown_authority(presented.as_deref(), &target.bundle);
            ExchangeError::Transport(tls_reason(&e, &target.server_name, &unknown_authority))
        })
}

/// Sends the request and reads the answer: the body of a 2xx, else the error client-go
/// would give.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<Bytes, ExchangeError> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ExchangeError::Transport(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ExchangeError::Transport(e.to_string()))?
        .to_bytes();
    if status.is_success() {
        Ok(body)
    } else {
        Err(ExchangeError::Status(http_error_message(
            status.as_u16(),
            &body,
        )))
    }
}

/// The error client-go's REST client gives for a non-2xx answer: the Status message when
/// the body is a Status, else a generic message naming the code.
fn http_error_message(code: u16, body: &[u8]) -> String {
    if let Ok(status) = serde_json::from_slice::<Value>(body)
        && status.get("kind").and_then(Value::as_str) == Some("Status")
        && let Some(message) = status.get("message").and_then(Value::as_str)
    {
        return message.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!(
            "the server responded with the status code {code} but did not return more information"
        )
    } else {
        format!("an error on the server ({text:?}) has prevented the request from succeeding")
    }
}

/// The reason of an I/O error as Go words the common ones.
fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "read: connection reset by peer".to_owned(),
        _ => err.to_string(),
    }
}

/// The reason of a failed TLS handshake, worded like Go's crypto/tls where it matters;
/// `unknown_authority` is Go's wording of a certificate no root signed.
fn tls_reason(err: &std::io::Error, server_name: &str, unknown_authority: &str) -> String {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
        )) => format!("tls: failed to verify certificate: {unknown_authority}"),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        )) => format!(
            "tls: failed to verify certificate: x509: certificate is not valid for {server_name}"
        ),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        )) => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
                .to_owned()
        }
        Some(other) => format!("tls: {other}"),
        None => io_reason(err),
    }
}

/// The trust roots of one webhook: only its `caBundle` (base64 of PEM certificates), as a
/// root store and as the certificates themselves.
fn root_store(
    ca_bundle: &str,
) -> Result<(rustls::RootCertStore, Vec<CertificateDer<'static>>), String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut bundle = Vec::new();
    if ca_bundle.is_empty() {
        return Ok((roots, bundle));
    }
    let pem = BASE64
        .decode(ca_bundle.trim())
        .map_err(|e| format!("invalid caBundle: {e}"))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("invalid caBundle: {e}"))?;
        roots
            .add(cert.clone())
            .map_err(|e| format!("invalid caBundle: {e}"))?;
        bundle.push(cert);
    }
    if roots.is_empty() {
        return Err("invalid caBundle: no certificates found".to_owned());
    }
    Ok((roots, bundle))
}

/// `host:port` with the default 443 (IPv6 hosts in brackets).
fn split_host_port(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(end) = authority.find(']') {
        let host = &authority[..=end];
        match authority[end + 1..].strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None => (host, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("could not get REST client: invalid port {p:?}"))?,
        None => 443,
    };
    if host.is_empty() {
        return Err("could not get REST client: webhook url has no host".to_owned());
    }
    Ok((host, port))
}

/// Go's `time.Duration.String()` for whole seconds: `10s`, `1m30s`.
pub(super) fn go_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds / 60) % 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}s");
    out
}
