//! Admission: calls the mutating and validating webhooks configured through the API,
//! as kube-apiserver's webhook dispatcher does
//! (k8s.io/apiserver/pkg/admission/plugin/webhook/{generic,mutating,validating,predicates}).
//!
//! Differences from kube-apiserver, on purpose:
//! - `matchPolicy` is treated as `Equivalent` and there is one version per resource, so
//!   `requestKind`/`requestResource` always equal `kind`/`resource`;
//! - `reinvocationPolicy: IfNeeded` is not honoured: each mutating webhook runs once;
//! - `matchConditions` (CEL) are not evaluated;
//! - validating webhooks are called one after another, in order, rather than in parallel
//!   (the first denial in order wins, which is one of the outcomes kube-apiserver allows);
//! - a service is dialled at the address the sandbox's service map gives for
//!   `<name>.<namespace>.svc:<port>`, since there is no cluster DNS.

use std::collections::BTreeMap;
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
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::auth::UserInfo;
use crate::status::{Status, StatusCause};

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    /// The AdmissionReview spelling: `CREATE`, `UPDATE`, `DELETE`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    /// The kind of the options object sent with this operation.
    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// Everything admission needs to know about one write.
///
/// `object` is the object about to be stored (after defaulting; for Secrets with
/// `stringData` already merged into `data`), `None` on DELETE; `old_object` is the stored
/// object on UPDATE and DELETE. `namespace_labels` are the labels of the request's
/// namespace (including `kubernetes.io/metadata.name`); they are not used for Namespace
/// objects, whose own labels count.
#[derive(Clone)]
pub(crate) struct AdmissionAttributes {
    pub(crate) operation: Operation,
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) resource: String,
    pub(crate) subresource: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) object: Option<Value>,
    pub(crate) old_object: Option<Value>,
    pub(crate) user: UserInfo,
    pub(crate) dry_run: bool,
    pub(crate) options: Value,
    pub(crate) namespace_labels: BTreeMap<String, String>,
}

// Secret values must never reach logs: print only what identifies the request.
impl std::fmt::Debug for AdmissionAttributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionAttributes")
            .field("operation", &self.operation)
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("resource", &self.resource)
            .field("subresource", &self.subresource)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("user", &self.user.username)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the webhook configurations stored in the API.
#[derive(Debug, Clone, Default)]
pub(crate) struct WebhookConfigs {
    pub(crate) mutating: Vec<Value>,
    pub(crate) validating: Vec<Value>,
}

/// The webhook dispatcher.
#[derive(Debug)]
pub(crate) struct AdmissionWebhooks {
    services: BTreeMap<String, SocketAddr>,
}

/// Which dispatcher a webhook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookKind {
    Mutating,
    Validating,
}

/// One webhook of one configuration, read from its JSON.
struct Hook<'a> {
    name: String,
    spec: &'a Value,
}

/// Why a webhook could not be called or answered nonsense (`webhookutil.ErrCallingWebhook`):
/// subject to `failurePolicy`.
struct CallError {
    reason: String,
}

/// How a single webhook call ended, short of success.
enum HookError {
    /// A call failure, which `failurePolicy: Ignore` lets through.
    Call(CallError),
    /// A denial or an error that no failure policy overrides.
    Reject(Box<Status>),
}

impl AdmissionWebhooks {
    /// A dispatcher that dials services through `services` ("name.namespace.svc:port" -> address).
    pub(crate) fn new(services: BTreeMap<String, SocketAddr>) -> Self {
        Self { services }
    }

    /// Runs the matching mutating webhooks (configurations sorted by name, webhooks in
    /// order), then the matching validating ones. Returns the object to store, patched by
    /// the mutating webhooks (`None` on DELETE), or the Status kube-apiserver would answer.
    /// (The server runs the two phases itself, with the registry's work between them.)
    #[cfg(test)]
    pub(crate) async fn admit(
        &self,
        configs: &WebhookConfigs,
        attrs: AdmissionAttributes,
    ) -> Result<Option<Value>, Status> {
        let mut warnings = Vec::new();
        self.admit_with_warnings(configs, attrs, &mut warnings)
            .await
    }

    /// As [`AdmissionWebhooks::admit`], also collecting the webhooks' `warnings`, which the
    /// server returns as `Warning: 299 - "<text>"` response headers.
    #[cfg(test)]
    pub(crate) async fn admit_with_warnings(
        &self,
        configs: &WebhookConfigs,
        mut attrs: AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Value>, Status> {
        attrs.object = self.mutate(configs, attrs.clone(), warnings).await?;
        self.validate(configs, &attrs, warnings).await?;
        Ok(attrs.object)
    }

    /// The mutating phase alone: returns the object patched by the matching mutating
    /// webhooks. kube-apiserver validates the object between the two phases; a server that
    /// does the same calls [`AdmissionWebhooks::mutate`], validates, then
    /// [`AdmissionWebhooks::validate`].
    pub(crate) async fn mutate(
        &self,
        configs: &WebhookConfigs,
        attrs: AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Value>, Status> {
        if is_exempt_configuration_resource(&attrs) {
            return Ok(attrs.object);
        }
        let mut attrs = request_namespace(attrs);
        for hook in ordered_hooks(&configs.mutating) {
            self.dispatch(HookKind::Mutating, &hook, &mut attrs, warnings)
                .await?;
        }
        Ok(attrs.object)
    }

    /// The validating phase alone, on the final object.
    pub(crate) async fn validate(
        &self,
        configs: &WebhookConfigs,
        attrs: &AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<(), Status> {
        if is_exempt_configuration_resource(attrs) {
            return Ok(());
        }
        // Validating webhooks cannot change the object: they work on a copy.
        let mut attrs = request_namespace(attrs.clone());
        for hook in ordered_hooks(&configs.validating) {
            self.dispatch(HookKind::Validating, &hook, &mut attrs, warnings)
                .await?;
        }
        Ok(())
    }

    /// Calls one webhook if it matches and applies its failure policy.
    async fn dispatch(
        &self,
        kind: HookKind,
        hook: &Hook<'_>,
        attrs: &mut AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<(), Status> {
        match should_call(hook, attrs) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(message) => return Err(Status::internal_error(&message)),
        }
        match self.call_hook(kind, hook, attrs, warnings).await {
            Ok(()) => Ok(()),
            Err(HookError::Reject(status)) => Err(*status),
            Err(HookError::Call(err)) => {
                let message = format!("failed calling webhook {:?}: {}", hook.name, err.reason);
                if str_at(hook.spec, "failurePolicy") == Some("Ignore") {
                    tracing::warn!(webhook = %hook.name, error = %message, "failed calling webhook, failing open");
                    Ok(())
                } else {
                    tracing::warn!(webhook = %hook.name, error = %message, "failed calling webhook, failing closed");
                    Err(Status::internal_error(&message))
                }
            }
        }
    }

    /// One webhook call: the dry-run check, the review, the HTTPS POST, the response checks
    /// and, for a mutating webhook, the patch.
    async fn call_hook(
        &self,
        kind: HookKind,
        hook: &Hook<'_>,
        attrs: &mut AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<(), HookError> {
        if attrs.dry_run {
            match str_at(hook.spec, "sideEffects") {
                None => {
                    return Err(HookError::Call(CallError {
                        reason: "Webhook SideEffects is nil".to_owned(),
                    }));
                }
                Some("None" | "NoneOnDryRun") => {}
                Some(_) => {
                    return Err(HookError::Reject(Box::new(Status::bad_request(format!(
                        "admission webhook {:?} does not support dry run",
                        hook.name
                    )))));
                }
            }
        }
        let uid = new_uid();
        let review = admission_review(&uid, attrs);
        let timeout_seconds = hook
            .spec
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10);
        tracing::debug!(webhook = %hook.name, %uid, operation = attrs.operation.as_str(),
            namespace = %attrs.namespace, name = %attrs.name, "calling admission webhook");
        let body = self
            .post(hook, &review, timeout_seconds)
            .await
            .map_err(|reason| {
                HookError::Call(CallError {
                    reason: format!("failed to call webhook: {reason}"),
                })
            })?;
        let response = verify_response(&uid, kind, &body).map_err(|reason| {
            HookError::Call(CallError {
                reason: format!("received invalid webhook response: {reason}"),
            })
        })?;
        if let Some(list) = response.get("warnings").and_then(Value::as_array) {
            warnings.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if !response
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(HookError::Reject(Box::new(denial(
                &hook.name,
                response.get("status"),
            ))));
        }
        if kind == HookKind::Mutating {
            apply_patch(&hook.name, &response, attrs)?;
        }
        Ok(())
    }

    /// POSTs the review to the webhook and returns the response body, or the error text
    /// Go's HTTP client would give.
    async fn post(
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
    let tcp = match &target.dial {
        Dial::Addr(addr) => TcpStream::connect(addr)
            .await
            .map_err(|e| ExchangeError::Transport(format!("dial tcp {addr}: {}", io_reason(&e))))?,
        Dial::Host(host, port) => {
            TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| {
                    ExchangeError::Transport(format!("dial tcp {host}:{port}: {}", io_reason(&e)))
                })?
        }
        Dial::Unknown(host) => {
            return Err(ExchangeError::Transport(format!(
                "dial tcp: lookup {host}: no such host"
            )));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            let presented = verifier.as_ref().and_then(|v| v.presented());
            let unknown_authority = x509::unknown_authority(presented.as_deref(), &target.bundle);
            ExchangeError::Transport(tls_reason(&e, &target.server_name, &unknown_authority))
        })?;
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
    let result = async {
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
    .await;
    driver.abort();
    result
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
fn go_duration(seconds: u64) -> String {
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

/// A fresh random (version 4) UUID.
fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .is_err()
    {
        // No system randomness: fall back to time and a process-wide counter, which is
        // still unique per call, which is all the uid must be.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The AdmissionReview v1 request for one call.
fn admission_review(uid: &str, attrs: &AdmissionAttributes) -> Value {
    let kind = json!({ "group": attrs.group, "version": attrs.version, "kind": attrs.kind });
    let resource =
        json!({ "group": attrs.group, "version": attrs.version, "resource": attrs.resource });
    let mut request = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "operation": attrs.operation.as_str(),
        "userInfo": user_info(&attrs.user),
        "object": attrs.object.as_ref().map_or(Value::Null, |o| typed(o.clone(), attrs)),
        "oldObject": attrs.old_object.as_ref().map_or(Value::Null, |o| typed(o.clone(), attrs)),
        "dryRun": attrs.dry_run,
        "options": options(attrs),
    });
    if !attrs.subresource.is_empty() {
        request["subResource"] = json!(attrs.subresource);
        request["requestSubResource"] = json!(attrs.subresource);
    }
    if !attrs.name.is_empty() {
        request["name"] = json!(attrs.name);
    }
    if !attrs.namespace.is_empty() {
        request["namespace"] = json!(attrs.namespace);
    }
    json!({ "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request })
}

/// `authenticationv1.UserInfo`, empty fields omitted.
fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({});
    if !user.username.is_empty() {
        info["username"] = json!(user.username);
    }
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// An object as the versioned encoding carries it: with `apiVersion` and `kind`.
fn typed(mut object: Value, attrs: &AdmissionAttributes) -> Value {
    if let Some(map) = object.as_object_mut() {
        let api_version = if attrs.group.is_empty() {
            attrs.version.clone()
        } else {
            format!("{}/{}", attrs.group, attrs.version)
        };
        map.entry("apiVersion")
            .or_insert_with(|| json!(api_version));
        map.entry("kind").or_insert_with(|| json!(attrs.kind));
    }
    object
}

/// The operation's options with `kind` and `apiVersion: meta.k8s.io/v1`.
fn options(attrs: &AdmissionAttributes) -> Value {
    let mut options = match &attrs.options {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    options.insert("kind".into(), json!(attrs.operation.options_kind()));
    options.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    Value::Object(options)
}

/// Checks the envelope of a webhook's answer (`VerifyAdmissionResponse`) and returns its
/// `response`.
fn verify_response(uid: &str, kind: HookKind, body: &[u8]) -> Result<Value, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("failed to decode the response: {e}"))?;
    let response = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| "webhook response was absent".to_owned())?;
    let got_uid = str_at(response, "uid").unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let api_version = str_at(&review, "apiVersion").unwrap_or("");
    let review_kind = str_at(&review, "kind").unwrap_or("");
    if api_version != "admission.k8s.io/v1" || review_kind != "AdmissionReview" {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {group}/{version}, Kind={review_kind}"
        ));
    }
    let patch_type = str_at(response, "patchType").unwrap_or("");
    let has_patch = str_at(response, "patch").is_some_and(|p| !p.is_empty());
    if !patch_type.is_empty() {
        if kind == HookKind::Validating {
            return Err("validating webhook may not return patchType".to_owned());
        }
        if !has_patch {
            return Err("patchType set without patch".to_owned());
        }
        if patch_type != "JSONPatch" {
            return Err(format!("unsupported patchType: {patch_type:?}"));
        }
    } else if has_patch {
        return Err("patch set without patchType".to_owned());
    }
    Ok(response.clone())
}

/// A denial as `webhookerrors.ToStatusErr` words it: the webhook's status with the
/// message prefixed, a code of at least 400.
fn denial(webhook: &str, result: Option<&Value>) -> Status {
    let result = result.unwrap_or(&Value::Null);
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = str_at(result, "message").unwrap_or("");
    let reason = str_at(result, "reason").unwrap_or("");
    let message = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    let code = result
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let mut status = Status::new(code, reason, message);
    if let Some(details) = result.get("details").filter(|d| d.is_object()) {
        let text = |key: &str| str_at(details, key).map(str::to_owned);
        status.name = text("name");
        status.group = text("group");
        status.kind = text("kind");
        status.uid = text("uid");
        status.retry_after_seconds = details
            .get("retryAfterSeconds")
            .and_then(Value::as_u64)
            .and_then(|s| u32::try_from(s).ok());
        status.causes = details
            .get("causes")
            .and_then(Value::as_array)
            .map(|causes| {
                causes
                    .iter()
                    .map(|c| StatusCause {
                        reason: str_at(c, "reason").unwrap_or("").to_owned(),
                        message: str_at(c, "message").unwrap_or("").to_owned(),
                        field: str_at(c, "field").unwrap_or("").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    status
}

/// Applies a mutating webhook's JSON patch to the object, operations in order.
fn apply_patch(
    webhook: &str,
    response: &Value,
    attrs: &mut AdmissionAttributes,
) -> Result<(), HookError> {
    let Some(encoded) = str_at(response, "patch").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let undecodable = |e: String| {
        HookError::Call(CallError {
            reason: format!("received undecodable patch in webhook response: {e}"),
        })
    };
    let raw = BASE64
        .decode(encoded)
        .map_err(|e| undecodable(e.to_string()))?;
    let patch: json_patch::Patch =
        serde_json::from_slice(&raw).map_err(|e| undecodable(e.to_string()))?;
    if patch.0.is_empty() {
        return Ok(());
    }
    let Some(object) = attrs.object.as_mut() else {
        return Err(HookError::Reject(Box::new(Status::internal_error(
            &format!(
                "admission webhook {webhook:?} attempted to modify the object, which is not supported for this operation"
            ),
        ))));
    };
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch.0)
        .map_err(|e| HookError::Reject(Box::new(Status::internal_error(&e.to_string()))))?;
    if !patched.is_object() {
        return Err(HookError::Reject(Box::new(Status::internal_error(
            "the patched object is not a JSON object",
        ))));
    }
    *object = patched;
    Ok(())
}

/// The request namespace as kube-apiserver's request info has it: a request on
/// `/api/v1/namespaces/<name>` (a Namespace's own update or delete) carries `<name>` as its
/// namespace, which webhooks see in `request.namespace` and which rule scopes judge.
fn request_namespace(mut attrs: AdmissionAttributes) -> AdmissionAttributes {
    if attrs.group.is_empty()
        && attrs.resource == "namespaces"
        && attrs.namespace.is_empty()
        && attrs.operation != Operation::Create
    {
        attrs.namespace = attrs.name.clone();
    }
    attrs
}

/// Webhook configurations sorted by name, each one's webhooks in order.
fn ordered_hooks(configs: &[Value]) -> Vec<Hook<'_>> {
    let mut configs: Vec<&Value> = configs.iter().collect();
    configs.sort_by(|a, b| config_name(a).cmp(config_name(b)));
    configs
        .into_iter()
        .flat_map(|config| {
            config
                .get("webhooks")
                .and_then(Value::as_array)
                .map(|hooks| hooks.as_slice())
                .unwrap_or_default()
        })
        .map(|spec| Hook {
            name: str_at(spec, "name").unwrap_or("").to_owned(),
            spec,
        })
        .collect()
}

fn config_name(config: &Value) -> &str {
    config
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Admission never runs on the admission configuration resources themselves
/// (`rules.IsExemptAdmissionConfigurationResource`), so a bad webhook cannot lock itself in.
fn is_exempt_configuration_resource(attrs: &AdmissionAttributes) -> bool {
    attrs.group == "admissionregistration.k8s.io"
        && matches!(
            attrs.resource.as_str(),
            "validatingwebhookconfigurations"
                | "mutatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

/// `ShouldCallHook`: a rule matches, then the namespace selector, then the object selector.
/// A selector that cannot be parsed is an error (a 500, as kube-apiserver reports it).
fn should_call(hook: &Hook<'_>, attrs: &AdmissionAttributes) -> Result<bool, String> {
    let rules = hook.spec.get("rules").and_then(Value::as_array);
    if !rules.is_some_and(|rules| rules.iter().any(|rule| rule_matches(rule, attrs))) {
        return Ok(false);
    }
    let namespace_match = namespace_selector_matches(hook.spec.get("namespaceSelector"), attrs);
    if matches!(namespace_match, Ok(false)) {
        return Ok(false);
    }
    let object_match = object_selector_matches(hook.spec.get("objectSelector"), attrs);
    if matches!(object_match, Ok(false)) {
        return Ok(false);
    }
    namespace_match?;
    object_match?;
    Ok(true)
}

/// `rules.Matcher.Matches`: scope, operation, group, version, resource/subresource.
fn rule_matches(rule: &Value, attrs: &AdmissionAttributes) -> bool {
    let list = |key: &str| -> Vec<&str> {
        rule.get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let scope = match str_at(rule, "scope").unwrap_or("*") {
        "Namespaced" => !attrs.namespace.is_empty(),
        "Cluster" => attrs.namespace.is_empty(),
        _ => true,
    };
    let exact_or_wildcard =
        |items: &[&str], requested: &str| items.iter().any(|i| *i == "*" || *i == requested);
    let operation = list("operations")
        .iter()
        .any(|op| *op == "*" || *op == attrs.operation.as_str());
    let resource = list("resources").iter().any(|entry| {
        let (res, sub) = entry.split_once('/').unwrap_or((entry, ""));
        (res == "*" || res == attrs.resource) && (sub == "*" || sub == attrs.subresource)
    });
    scope
        && operation
        && exact_or_wildcard(&list("apiGroups"), &attrs.group)
        && exact_or_wildcard(&list("apiVersions"), &attrs.version)
        && resource
}

/// The namespace selector: cluster-scoped requests other than Namespaces always match;
/// a Namespace being created or updated is judged by its own labels.
fn namespace_selector_matches(
    selector: Option<&Value>,
    attrs: &AdmissionAttributes,
) -> Result<bool, String> {
    let is_namespace = attrs.resource == "namespaces" && attrs.subresource.is_empty();
    if attrs.namespace.is_empty() && !is_namespace {
        return Ok(true);
    }
    let Some(selector) = selector.filter(|s| !is_empty_selector(s)) else {
        return Ok(true);
    };
    let labels = if is_namespace {
        match attrs.operation {
            Operation::Create | Operation::Update => labels_of(attrs.object.as_ref()),
            Operation::Delete if attrs.namespace_labels.is_empty() => {
                labels_of(attrs.old_object.as_ref())
            }
            Operation::Delete => attrs.namespace_labels.clone(),
        }
    } else {
        attrs.namespace_labels.clone()
    };
    selector_matches(selector, &labels)
}

/// The object selector matches the new object or the old one; an absent object never matches
/// a non-empty selector.
fn object_selector_matches(
    selector: Option<&Value>,
    attrs: &AdmissionAttributes,
) -> Result<bool, String> {
    let Some(selector) = selector.filter(|s| !is_empty_selector(s)) else {
        return Ok(true);
    };
    for object in [attrs.object.as_ref(), attrs.old_object.as_ref()]
        .into_iter()
        .flatten()
    {
        if selector_matches(selector, &labels_of(Some(object)))? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_empty_selector(selector: &Value) -> bool {
    let empty = |key: &str| match selector.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    empty("matchLabels") && empty("matchExpressions")
}

fn labels_of(object: Option<&Value>) -> BTreeMap<String, String> {
    object
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A `metav1.LabelSelector` (matchLabels and matchExpressions) against a label set.
fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in match_labels {
            let value = value.as_str().ok_or_else(|| {
                format!("invalid label selector: matchLabels[{key:?}] is not a string")
            })?;
            if labels.get(key).map(String::as_str) != Some(value) {
                return Ok(false);
            }
        }
    }
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for expression in expressions {
        let key = str_at(expression, "key").unwrap_or("");
        let operator = str_at(expression, "operator").unwrap_or("");
        let values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let current = labels.get(key).map(String::as_str);
        let matched = match operator {
            "In" if !values.is_empty() => current.is_some_and(|c| values.contains(&c)),
            "NotIn" if !values.is_empty() => !current.is_some_and(|c| values.contains(&c)),
            "Exists" if values.is_empty() => current.is_some(),
            "DoesNotExist" if values.is_empty() => current.is_none(),
            "In" | "NotIn" => {
                return Err(
                    "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
                        .to_owned(),
                );
            }
            "Exists" | "DoesNotExist" => {
                return Err(format!(
                    "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                ));
            }
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests;
mod x509;
