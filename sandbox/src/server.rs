//! The HTTPS server: connections, authentication, routing and the REST handlers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::admission::{AdmissionAttributes, AdmissionWebhooks, Operation, WebhookConfigs};
use crate::auth::{self, Authenticator, UserInfo};
use crate::fields;
use crate::gojson;
use crate::meta;
use crate::patch::{self, PatchType};
use crate::resource::{self, MUTATING, NAMESPACES, ResourceKind, VALIDATING};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{FieldError, Resource, Status};
use crate::store::{self, Db, WriteError, rv_of};
use crate::{discovery, table};

mod objects;
mod watch;

use objects::{
    before_create, meta_mut, meta_str, prepare, same_object, same_ownership, validate_object,
};

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
    let response = match route(shared, peer, req).await {
        Ok(response) => response,
        Err(status) => status_response(&status),
    };
    tracing::debug!(%method, %path, code = response.status().as_u16(), "request");
    response
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

fn status_response(status: &Status) -> Response<Body> {
    json_response(status.code, &status.to_json(), &[])
}

/// Query parameters, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (url_decode(k), url_decode(v))
            })
            .collect();
        Self(pairs)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        // runtime.Convert_Slice_string_To_bool: present and neither "0" nor "false" in any
        // case is true (the Python client sends `watch=True`; `watch=` is true too).
        self.get(key)
            .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An authenticated request with its body read.
struct Req {
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
    user: UserInfo,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Table rendering asked for by the Accept header, if any.
    fn table(&self) -> Option<table::IncludeObject> {
        table::wants_table(self.header("accept"))
            .then(|| table::IncludeObject::parse(self.query.get("includeObject")))
    }

    /// Whether the Accept header asks for metadata only.
    fn metadata_only(&self) -> bool {
        table::wants_metadata(self.header("accept"))
    }

    fn manager(&self) -> String {
        fields::manager_from(self.query.get("fieldManager"), self.header("user-agent"))
    }

    fn dry_run(&self) -> Result<bool, Status> {
        let values = self.query.all("dryRun");
        for v in &values {
            if *v != "All" {
                return Err(Status::bad_request(format!(
                    "Invalid dryRun value: {v:?}: supported values: \"All\""
                )));
            }
        }
        Ok(!values.is_empty())
    }

    fn field_validation(&self) -> Result<&str, Status> {
        match self.query.get("fieldValidation") {
            None | Some("") => Ok("Warn"),
            Some(v @ ("Strict" | "Warn" | "Ignore")) => Ok(v),
            Some(other) => Err(Status::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}; supported values are \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// What a resource path names.
struct Target {
    kind: ResourceKind,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_target(group: &str, rest: &[&str]) -> Result<Target, Status> {
    let lookup = |res: &str| ResourceKind::lookup(group, res).ok_or_else(Status::path_not_found);
    let target = match rest {
        [res] => Target {
            kind: lookup(res)?,
            namespace: None,
            name: None,
        },
        [res, name] => {
            let kind = lookup(res)?;
            if kind.namespaced {
                return Err(Status::path_not_found());
            }
            Target {
                kind,
                namespace: None,
                name: Some((*name).to_owned()),
            }
        }
        ["namespaces", ns, res] => {
            let kind = lookup(res)?;
            if !kind.namespaced {
                return Err(Status::path_not_found());
            }
            Target {
                kind,
                namespace: Some((*ns).to_owned()),
                name: None,
            }
        }
        ["namespaces", ns, res, name] => {
            let kind = lookup(res)?;
            if !kind.namespaced {
                return Err(Status::path_not_found());
            }
            Target {
                kind,
                namespace: Some((*ns).to_owned()),
                name: Some((*name).to_owned()),
            }
        }
        _ => return Err(Status::path_not_found()),
    };
    Ok(target)
}

async fn route(
    shared: Arc<Shared>,
    peer: Option<UserInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Status> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let ["healthz" | "livez" | "readyz"] = segments.as_slice() {
        return Ok(Response::new(full("ok")));
    }
    let principal = shared
        .auth
        .authenticate(&parts.headers, peer.as_ref())
        .ok_or_else(Status::unauthorized)?;
    let user = auth::impersonate(principal, &parts.headers)?;

    if parts.method == Method::GET && segments.as_slice() == ["openapi", "v2"] {
        // kubectl 1.27 and 1.28 read OpenAPI v2 (protobuf) before apply, diff and replace,
        // and give up on a 404. An empty document (zero bytes of protobuf) describes no
        // kind, so they compute patches from their built-in types and skip client-side
        // schema checks, as they do for any kind a server does not describe.
        let mut response = Response::new(full(Bytes::new()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(response);
    }
    if parts.method == Method::GET {
        let doc = match segments.as_slice() {
            ["version"] => Some(discovery::version()),
            ["api"] => Some(discovery::core_versions()),
            ["api", "v1"] => Some(discovery::resource_list("")),
            ["apis"] => Some(discovery::groups()),
            ["apis", group] if discovery::GROUPS.contains(group) => {
                Some(discovery::api_group(group))
            }
            ["apis", group, "v1"] if discovery::GROUPS.contains(group) => {
                Some(discovery::resource_list(group))
            }
            ["openapi", "v3"] => Some(discovery::openapi_index()),
            ["openapi", "v3", "api", "v1"] => Some(discovery::openapi_document("")),
            ["openapi", "v3", "apis", group, "v1"] if discovery::GROUPS.contains(group) => {
                Some(discovery::openapi_document(group))
            }
            _ => None,
        };
        if let Some(doc) = doc {
            return Ok(json_response(200, &doc, &[]));
        }
    }
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, "v1", rest @ ..]
            if !rest.is_empty() && discovery::GROUPS.contains(group) =>
        {
            (*group, rest)
        }
        _ => return Err(Status::path_not_found()),
    };
    let target = parse_target(group, rest)?;

    if parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > shared.max_body)
    {
        return Err(Status::request_entity_too_large(shared.max_body));
    }
    let body = match Limited::new(body, shared.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(Status::request_entity_too_large(shared.max_body));
            }
            return Err(Status::bad_request(format!(
                "failed to read request body: {err}"
            )));
        }
    };
    let req = Req {
        method: parts.method,
        query: Query::parse(parts.uri.query()),
        headers: parts.headers,
        body,
        user,
    };
    let Target {
        kind,
        namespace,
        name,
    } = target;
    let ns = namespace.as_deref();
    match (&req.method, name.as_deref()) {
        (&Method::GET, None) if req.query.flag("watch") => {
            watch::start_watch(shared, &req, kind, ns)
        }
        (&Method::GET, None) => list(&shared, &req, kind, ns),
        (&Method::POST, None) => match ns {
            Some(ns) => create(&shared, &req, kind, ns).await,
            None if !kind.namespaced => create(&shared, &req, kind, "").await,
            None => Err(Status::method_not_supported(kind.res(), "create")),
        },
        (&Method::DELETE, None) => delete_collection(&shared, &req, kind, ns).await,
        (&Method::GET, Some(name)) => get(&shared, &req, kind, ns.unwrap_or_default(), name),
        (&Method::PUT, Some(name)) => {
            update(&shared, &req, kind, ns.unwrap_or_default(), name).await
        }
        (&Method::PATCH, Some(name)) => {
            patch_object(&shared, &req, kind, ns.unwrap_or_default(), name).await
        }
        (&Method::DELETE, Some(name)) => {
            delete(&shared, &req, kind, ns.unwrap_or_default(), name).await
        }
        _ => Err(Status::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn write_error(err: WriteError, kind: &ResourceKind, ns: &str, name: &str) -> Status {
    match err {
        WriteError::Exists => Status::already_exists(kind.res(), name),
        WriteError::Missing => Status::not_found(kind.res(), name),
        WriteError::Stale => Status::conflict_modified(kind.res(), name),
        WriteError::NoNamespace => Status::not_found(NAMESPACES.res(), ns),
    }
}

/// Decodes a JSON or YAML body into an object of `kind` as kube-apiserver's decoder does,
/// with its strict decoding errors (unknown fields, which are dropped, and repeated keys)
/// answered per fieldValidation: a 400 for Strict, warnings for Warn (the default). `apply`:
/// the body of a server-side apply patch.
fn decode_object(
    req: &Req,
    kind: &ResourceKind,
    apply: bool,
) -> Result<(Value, Vec<String>), Status> {
    let content_type = req.header("content-type").unwrap_or("application/json");
    let base = content_type.split(';').next().unwrap_or_default().trim();
    let yaml = apply || base == "application/yaml";
    // goyaml's strict errors for a YAML body: the keys a mapping repeats.
    let mut yaml_errors = Vec::new();
    // The typed JSON decoder's strict errors, in document order.
    let mut strict: Option<Vec<String>> = None;
    let mut obj: Value = if yaml {
        match gojson::parse(&req.body) {
            // JSON is YAML: goyaml keeps a repeated key's later value (and its strict
            // decoder reports the key), where serde_yaml refuses the document.
            Ok(node) if node.has_repeated_keys() => {
                yaml_errors = gojson::yaml_repeated_keys(&node);
                node.into_value()
            }
            _ => {
                let v: serde_yaml::Value = serde_yaml::from_slice(&req.body).map_err(|e| {
                    Status::bad_request(format!("error converting YAML to JSON: {e}"))
                })?;
                serde_json::to_value(v).map_err(|e| {
                    Status::bad_request(format!("error converting YAML to JSON: {e}"))
                })?
            }
        }
    } else if base == "application/json" || base == "*/*" || base.is_empty() {
        let node = gojson::parse(&req.body).map_err(|e| {
            Status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?;
        let (obj, errors) = gojson::decode(node, kind.schema());
        strict = Some(errors);
        obj
    } else if base == "application/vnd.kubernetes.protobuf" {
        match crate::protobuf::decode(kind, &req.body) {
            Ok(Some(obj)) => obj,
            Ok(None) => return Err(Status::unsupported_media_type()),
            Err(e) => {
                return Err(Status::bad_request(format!(
                    "failed to decode protobuf body: {e}"
                )));
            }
        }
    } else {
        return Err(Status::unsupported_media_type());
    };
    if !obj.is_object() {
        return Err(Status::bad_request(
            "couldn't get version/kind; json parse error: the body is not a JSON object",
        ));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != kind.kind
    {
        return Err(Status::bad_request(format!(
            "the kind of the object ({k}) does not match the resource ({}) of the request",
            kind.kind
        )));
    }
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
        && !v.is_empty()
        && v != kind.api_version()
    {
        return Err(Status::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if !apply {
        gojson::normalize_nulls(&mut obj, kind.schema());
    }
    let messages = match strict {
        Some(errors) => errors,
        None => kind
            .prune_unknown(&mut obj)
            .iter()
            .map(|f| format!("unknown field {}", gojson::quote(f)))
            .collect(),
    };
    let yaml_error = format!("yaml: unmarshal errors:\n  {}", yaml_errors.join("\n  "));
    match req.field_validation()? {
        // create and update decode through the codec, which names the kind; apply does not
        "Strict" if !messages.is_empty() && apply => Err(Status::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
        // apply checks the YAML once the patch is applied (applyPatcher)
        "Strict" if !yaml_errors.is_empty() && apply => Err(Status::bad_request(format!(
            "error strict decoding patch: error converting YAML to JSON: {yaml_error}"
        ))),
        "Strict" if !messages.is_empty() || !yaml_errors.is_empty() => {
            // YAMLToJSONStrict's error comes before the JSON decoder's
            let mut errors = messages;
            if !yaml_errors.is_empty() {
                errors.insert(0, yaml_error);
            }
            Err(Status::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                errors.join(", "),
                kind = kind.kind,
                version = kind.version,
            )))
        }
        // A YAML error is one warning per line (parseYAMLWarnings).
        "Warn" if apply => Ok((obj, [messages, yaml_errors].concat())),
        "Warn" => Ok((obj, [yaml_errors, messages].concat())),
        _ => Ok((obj, Vec::new())),
    }
}

fn options(kind: &str, req: &Req, dry_run: bool) -> Value {
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if let Some(m) = req.query.get("fieldManager") {
        o["fieldManager"] = json!(m);
    }
    if dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if let Some(v) = req.query.get("fieldValidation").filter(|v| !v.is_empty()) {
        o["fieldValidation"] = json!(v);
    }
    o
}

#[allow(clippy::too_many_arguments)]
async fn admit(
    shared: &Shared,
    user: &UserInfo,
    operation: Operation,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
    object: Option<Value>,
    old_object: Option<Value>,
    dry_run: bool,
    options: Value,
    warnings: Option<&mut Vec<String>>,
    between: impl FnOnce(Option<Value>) -> Result<Option<Value>, Status>,
) -> Result<Option<Value>, Status> {
    let (configs, namespace_labels) = {
        let db = shared.db();
        let configs = WebhookConfigs {
            mutating: db.objects(&MUTATING),
            validating: db.objects(&VALIDATING),
        };
        let labels: BTreeMap<String, String> = db
            .get(&NAMESPACES, "", ns)
            .and_then(|n| n["metadata"]["labels"].as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        (configs, labels)
    };
    let mut attrs = AdmissionAttributes {
        operation,
        group: kind.group.to_owned(),
        version: kind.version.to_owned(),
        kind: kind.kind.to_owned(),
        resource: kind.resource.to_owned(),
        subresource: String::new(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        object,
        old_object,
        user: user.clone(),
        dry_run,
        options,
        namespace_labels,
    };
    let mut scratch = Vec::new();
    let warnings = warnings.unwrap_or(&mut scratch);
    // kube-apiserver runs the mutating webhooks in the handler, then the registry's
    // Before{Create,Update} (system fields, defaults, validation: `between`), then the
    // validating webhooks on that object.
    let mutated = shared
        .admission
        .mutate(&configs, attrs.clone(), warnings)
        .await?;
    attrs.object = between(mutated)?;
    if operation == Operation::Create {
        // The validating phase names the object as created (a generated name included).
        if let Some(name) = attrs.object.as_ref().map(|o| meta_str(o, "name")) {
            attrs.name = name.to_owned();
        }
    }
    shared
        .admission
        .validate(&configs, &attrs, warnings)
        .await?;
    Ok(attrs.object)
}

fn get(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    parse_resource_version(req.query.get("resourceVersion")).map_err(plain_error)?;
    let db = shared.db();
    let obj = db
        .get(&kind, ns, name)
        .ok_or_else(|| Status::not_found(kind.res(), name))?;
    if let Some(include) = req.table() {
        let meta = json!({"resourceVersion": meta_str(obj, "resourceVersion")});
        return Ok(json_response(
            200,
            &table::table(&kind, &[obj], meta, include, true),
            &[],
        ));
    }
    if req.metadata_only() {
        return Ok(json_response(200, &table::partial(obj), &[]));
    }
    Ok(json_response(200, obj, &[]))
}

/// Go's `strconv.ParseInt(s, 10, 64)` or `strconv.ParseUint(s, 10, 64)`, with its error text.
fn go_parse_int(s: &str, unsigned: bool) -> Result<i128, String> {
    let func = if unsigned { "ParseUint" } else { "ParseInt" };
    let digits = if unsigned {
        s
    } else {
        s.strip_prefix(['+', '-']).unwrap_or(s)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.{func}: parsing {s:?}: invalid syntax"));
    }
    let out_of_range = || format!("strconv.{func}: parsing {s:?}: value out of range");
    if unsigned {
        s.parse::<u64>().map(i128::from).map_err(|_| out_of_range())
    } else {
        s.parse::<i64>().map(i128::from).map_err(|_| out_of_range())
    }
}

/// The integer parameters of a list or watch, converted as the query decoding converts them
/// into ListOptions before anything else (`timeoutSeconds`, then `limit`): a 400 with
/// strconv's error.
fn list_query_conversion(req: &Req) -> Result<(), Status> {
    for key in ["timeoutSeconds", "limit"] {
        if let Some(v) = req.query.get(key) {
            go_parse_int(v, false).map_err(Status::bad_request)?;
        }
    }
    Ok(())
}

/// `ValidateListOptions` (staging/src/k8s.io/apimachinery/pkg/apis/meta/internalversion/
/// validation/validation.go): a 422 on ListOptions.meta.k8s.io.
fn validate_list_options(req: &Req, watch: bool) -> Result<(), Status> {
    let q = &req.query;
    let rv_match = q.get("resourceVersionMatch").unwrap_or_default();
    let has_continue = q.get("continue").is_some_and(|c| !c.is_empty());
    let send_initial = q.get("sendInitialEvents").is_some();
    let mut errs = Vec::new();
    let path = "resourceVersionMatch";
    if watch {
        if send_initial && rv_match != "NotOlderThan" {
            errs.push(FieldError::forbidden(
                path,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !rv_match.is_empty() {
            if !send_initial {
                errs.push(FieldError::forbidden(
                    path,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if rv_match != "NotOlderThan" {
                errs.push(FieldError::not_supported(path, rv_match, &["NotOlderThan"]));
            }
            if has_continue {
                errs.push(FieldError::forbidden(
                    path,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        let rv = q.get("resourceVersion").unwrap_or_default();
        if !rv_match.is_empty() {
            if rv.is_empty() {
                errs.push(FieldError::forbidden(
                    path,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if has_continue {
                errs.push(FieldError::forbidden(
                    path,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if rv_match != "Exact" && rv_match != "NotOlderThan" {
                errs.push(FieldError::not_supported(
                    path,
                    rv_match,
                    &["Exact", "NotOlderThan", ""],
                ));
            }
            if rv_match == "Exact" && rv == "0" {
                errs.push(FieldError::forbidden(
                    path,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if send_initial {
            errs.push(FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid("ListOptions", "meta.k8s.io", "", &errs))
    }
}

/// The storage's `ParseResourceVersion`: `None` for "" and "0", else the number, or its
/// InvalidError text.
fn parse_resource_version(rv: Option<&str>) -> Result<Option<u64>, String> {
    match rv {
        None | Some("" | "0") => Ok(None),
        Some(v) => go_parse_int(v, true)
            .map(|n| u64::try_from(n).ok())
            .map_err(|e| format!("resourceVersion: Invalid value: {v:?}: {e}")),
    }
}

/// An error that is not an API status, as kube-apiserver answers it: 500 with the error's
/// text and no reason (`ErrorToAPIStatus`).
fn plain_error(message: String) -> Status {
    Status::new(500, "", message)
}

fn field_extras(kind: &ResourceKind) -> &'static [&'static str] {
    match kind.index {
        1 => &["type"],
        0 => &["status.phase"],
        _ => &[],
    }
}

/// The `labelSelector` and `fieldSelector` of a list-like request.
fn selectors(req: &Req, kind: &ResourceKind) -> Result<(LabelSelector, FieldSelector), Status> {
    let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?;
    let field = FieldSelector::parse(
        req.query.get("fieldSelector").unwrap_or_default(),
        field_extras(kind),
    )?;
    Ok((labels, field))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: (String, String),
}

fn list(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: Option<&str>,
) -> Result<Response<Body>, Status> {
    list_query_conversion(req)?;
    let (labels, field) = selectors(req, &kind)?;
    validate_list_options(req, false)?;
    parse_resource_version(req.query.get("resourceVersion"))
        .map_err(|e| Status::bad_request(format!("invalid resource version: {e}")))?;
    let limit = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let token = match req.query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(c)
                .map_err(|_| {
                    Status::bad_request("continue key is not valid: illegal base64 data")
                })?;
            let token: ContinueToken = serde_json::from_slice(&bytes)
                .map_err(|e| Status::bad_request(format!("continue key is not valid: {e}")))?;
            Some(token)
        }
        None => None,
    };
    let db = shared.db();
    if let Some(t) = &token
        && t.rv < db.compacted(&kind)
    {
        return Err(Status::continue_expired());
    }
    let list_rv = token.as_ref().map_or(db.rv(), |t| t.rv);
    let mut items = Vec::new();
    let mut next: Option<store::Key> = None;
    let mut remaining = 0usize;
    for (key, obj) in db.range(&kind, ns, token.as_ref().map(|t| &t.start)) {
        if !labels.matches(obj) || !field.matches(obj) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            if next.is_none() {
                next = Some(key.clone());
            }
            remaining += 1;
            continue;
        }
        let mut item = obj.clone();
        if let Some(m) = item.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        items.push(item);
    }
    drop(db);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(start) = next {
        let token = ContinueToken {
            v: "meta.k8s.io/v1".into(),
            rv: list_rv,
            start,
        };
        // Strings and an integer: no failure case (an empty token would restart the list).
        let encoded = base64::engine::general_purpose::STANDARD.encode(
            serde_json::to_vec(&token).expect("a continue token always serializes to JSON"),
        );
        metadata["continue"] = json!(encoded);
        if labels.is_empty() && field.is_empty() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    if let Some(include) = req.table() {
        let refs: Vec<&Value> = items.iter().collect();
        return Ok(json_response(
            200,
            &table::table(&kind, &refs, metadata, include, true),
            &[],
        ));
    }
    if req.metadata_only() {
        let partials: Vec<Value> = items.iter().map(table::partial).collect();
        let doc = json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "items": partials,
        });
        return Ok(json_response(200, &doc, &[]));
    }
    let doc = json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(200, &doc, &[]))
}

async fn create(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
) -> Result<Response<Body>, Status> {
    let (mut obj, mut warnings) = decode_object(req, &kind, false)?;
    let dry_run = req.dry_run()?;
    {
        let meta = meta_mut(&mut obj);
        if kind.namespaced {
            let body_ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !body_ns.is_empty() && body_ns != ns {
                return Err(Status::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
    }
    prepare(&kind, &mut obj, None, false)?;
    // The field manager records the request before admission: what mutating webhooks add
    // is owned by no manager.
    fields::record_update(
        None,
        &mut obj,
        &req.manager(),
        &kind.api_version(),
        &meta::now(),
    );
    if kind.namespaced && !shared.db().namespace_exists(ns) {
        return Err(Status::not_found(NAMESPACES.res(), ns));
    }
    // The request's name: empty with generateName (until the validating phase).
    let request_name = meta_str(&obj, "name").to_owned();
    let admitted = admit(
        shared,
        &req.user,
        Operation::Create,
        &kind,
        ns,
        &request_name,
        Some(obj.clone()),
        None,
        dry_run,
        options("CreateOptions", req, dry_run),
        Some(&mut warnings),
        |mutated| {
            // rest.BeforeCreate: the generated name, uid and creationTimestamp, then
            // the strategy's validation.
            let mut obj = mutated.unwrap_or_default();
            before_create(&kind, &mut obj)?;
            validate_object(&kind, &obj, None)?;
            Ok(Some(obj))
        },
    )
    .await?;
    let obj = admitted.unwrap_or_default();
    let name = meta_str(&obj, "name").to_owned();
    if dry_run {
        let db = shared.db();
        if db.get(&kind, ns, &name).is_some() {
            return Err(Status::already_exists(kind.res(), &name));
        }
        return Ok(json_response(201, &obj, &warnings));
    }
    let stored = shared
        .db()
        .create(&kind, obj)
        .map_err(|e| write_error(e, &kind, ns, &name))?;
    tracing::debug!(resource = kind.resource, namespace = ns, name = %name, "created");
    Ok(json_response(201, &stored, &warnings))
}

/// The shared tail of PUT and PATCH: defaults, validation, admission, managed fields, store.
struct Write<'a> {
    kind: ResourceKind,
    ns: &'a str,
    name: &'a str,
    /// Whether the caller pinned a resourceVersion (then a race is a 409, not a retry).
    conditional: bool,
}

enum Outcome {
    Done(Response<Body>),
    Retry,
}

#[allow(clippy::too_many_arguments)]
async fn finish_write(
    shared: &Shared,
    req: &Req,
    w: &Write<'_>,
    mut obj: Value,
    old: Option<Value>,
    applied: bool,
    warnings: &[String],
) -> Result<Outcome, Status> {
    let kind = w.kind;
    let mut warnings = warnings.to_vec();
    let dry_run = req.dry_run()?;
    prepare(&kind, &mut obj, old.as_ref(), applied)?;
    if !applied {
        // As for a create, the field manager runs before admission.
        fields::record_update(
            old.as_ref(),
            &mut obj,
            &req.manager(),
            &kind.api_version(),
            &meta::now(),
        );
    }
    if kind.namespaced && old.is_none() && !shared.db().namespace_exists(w.ns) {
        return Err(Status::not_found(NAMESPACES.res(), w.ns));
    }
    let operation = if old.is_some() {
        Operation::Update
    } else {
        Operation::Create
    };
    let admitted = admit(
        shared,
        &req.user,
        operation,
        &kind,
        w.ns,
        w.name,
        Some(obj.clone()),
        old.clone(),
        dry_run,
        // kube converts PATCH options to the Create/UpdateOptions of the operation
        options(
            match operation {
                Operation::Create => "CreateOptions",
                _ => "UpdateOptions",
            },
            req,
            dry_run,
        ),
        Some(&mut warnings),
        |mutated| {
            let mut obj = mutated.unwrap_or_default();
            if old.is_none() {
                before_create(&kind, &mut obj)?;
            }
            validate_object(&kind, &obj, old.as_ref())?;
            Ok(Some(obj))
        },
    )
    .await?;
    let obj = admitted.unwrap_or_default();
    // An update that changes nothing is not written (the webhooks were still called).
    if let Some(old) = &old
        && same_object(&obj, old)
        && (!applied || same_ownership(&obj, old))
    {
        return Ok(Outcome::Done(json_response(200, old, &warnings)));
    }
    let code = if old.is_some() { 200 } else { 201 };
    if dry_run {
        return Ok(Outcome::Done(json_response(code, &obj, &warnings)));
    }
    let result = {
        let mut db = shared.db();
        match &old {
            Some(old) => db.update(&kind, obj, rv_of(old)),
            None => db.create(&kind, obj),
        }
    };
    match result {
        Ok(stored) => Ok(Outcome::Done(json_response(code, &stored, &warnings))),
        Err(WriteError::Stale | WriteError::Exists | WriteError::Missing) if !w.conditional => {
            Ok(Outcome::Retry)
        }
        Err(e) => Err(write_error(e, &kind, w.ns, w.name)),
    }
}

fn check_identity(
    kind: &ResourceKind,
    obj: &mut Value,
    ns: &str,
    name: &str,
) -> Result<(), Status> {
    let body_name = meta_str(obj, "name").to_owned();
    if body_name.is_empty() {
        meta_mut(obj).insert("name".into(), json!(name));
    } else if body_name != name {
        return Err(Status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if kind.namespaced {
        let body_ns = meta_str(obj, "namespace").to_owned();
        if !body_ns.is_empty() && body_ns != ns {
            return Err(Status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta_mut(obj).insert("namespace".into(), json!(ns));
    } else {
        meta_mut(obj).remove("namespace");
    }
    Ok(())
}

async fn update(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    let (mut obj, warnings) = decode_object(req, &kind, false)?;
    check_identity(&kind, &mut obj, ns, name)?;
    let requested_rv = meta_str(&obj, "resourceVersion").to_owned();
    let w = Write {
        kind,
        ns,
        name,
        conditional: !requested_rv.is_empty(),
    };
    for _ in 0..MAX_ATTEMPTS {
        let old = shared
            .db()
            .get(&kind, ns, name)
            .cloned()
            .ok_or_else(|| Status::not_found(kind.res(), name))?;
        if !requested_rv.is_empty() && requested_rv != meta_str(&old, "resourceVersion") {
            return Err(Status::conflict_modified(kind.res(), name));
        }
        match finish_write(shared, req, &w, obj.clone(), Some(old), false, &warnings).await? {
            Outcome::Done(r) => return Ok(r),
            Outcome::Retry => continue,
        }
    }
    Err(Status::conflict_modified(kind.res(), name))
}

async fn patch_object(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    let patch_type = PatchType::from_content_type(req.header("content-type").unwrap_or_default())?;
    patch::check_json(patch_type, &req.body)?;
    let mut warnings = Vec::new();
    let applied = if patch_type == PatchType::Apply {
        let manager = req.query.get("fieldManager").unwrap_or_default();
        if manager.is_empty() {
            return Err(Status::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                &[FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        let (mut applied, w) = decode_object(req, &kind, true)?;
        warnings = w;
        check_identity(&kind, &mut applied, ns, name)?;
        Some(applied)
    } else {
        None
    };
    let force = req.query.flag("force");
    if force && patch_type != PatchType::Apply {
        return Err(Status::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let mut conditional = false;
    for _ in 0..MAX_ATTEMPTS {
        let old = shared.db().get(&kind, ns, name).cloned();
        let new = match (&applied, &old) {
            (Some(applied), old) => {
                let requested = meta_str(applied, "resourceVersion");
                if let Some(old) = old
                    && !requested.is_empty()
                    && requested != meta_str(old, "resourceVersion")
                {
                    return Err(Status::conflict_modified(kind.res(), name));
                }
                conditional = !requested.is_empty();
                let mut applied = applied.clone();
                meta_mut(&mut applied).remove("resourceVersion");
                let manager = req.query.get("fieldManager").unwrap_or_default();
                fields::apply(
                    old.as_ref(),
                    &applied,
                    manager,
                    force,
                    &kind.api_version(),
                    &meta::now(),
                )?
            }
            (None, None) => return Err(Status::not_found(kind.res(), name)),
            (None, Some(old)) => {
                let mut target = old.clone();
                let patched =
                    patch::apply_patch(patch_type, &mut target, &req.body, kind.schema())?;
                if !target.is_object() {
                    return Err(Status::bad_request(
                        "the patched object is not a JSON object",
                    ));
                }
                warnings = patched_object_strict_errors(req, &kind, &mut target, patched)?;
                gojson::normalize_nulls(&mut target, kind.schema());
                // checkName, before the update compares resourceVersions
                let patched_name = meta_str(&target, "name");
                if patched_name.is_empty() {
                    return Err(Status::bad_request(format!(
                        "the name of the object ({name} based on URL) was undeterminable: name must be provided"
                    )));
                }
                if patched_name != name {
                    return Err(Status::bad_request(format!(
                        "the name of the object ({patched_name}) does not match the name on the URL ({name})"
                    )));
                }
                // rest.BeforeUpdate
                let patched_ns = meta_str(&target, "namespace");
                if kind.namespaced && !patched_ns.is_empty() && patched_ns != ns {
                    return Err(Status::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                if kind.namespaced {
                    meta_mut(&mut target).insert("namespace".into(), json!(ns));
                } else {
                    meta_mut(&mut target).remove("namespace");
                }
                let patched_rv = meta_str(&target, "resourceVersion");
                if patched_rv != meta_str(old, "resourceVersion") {
                    if !patched_rv.is_empty() {
                        return Err(Status::conflict_modified(kind.res(), name));
                    }
                    // a patch that removes resourceVersion is unconditional
                    meta_mut(&mut target).insert(
                        "resourceVersion".into(),
                        old["metadata"]["resourceVersion"].clone(),
                    );
                }
                target
            }
        };
        let w = Write {
            kind,
            ns,
            name,
            conditional,
        };
        match finish_write(shared, req, &w, new, old, applied.is_some(), &warnings).await? {
            Outcome::Done(r) => return Ok(r),
            Outcome::Retry => continue,
        }
    }
    Err(Status::conflict_modified(kind.res(), name))
}

/// The strict decoding errors of a merge, strategic merge or JSON patch: the patch body's
/// own, then the unknown fields of the patched object (dropped here), which kube-apiserver
/// finds decoding it into its type (sorted for a strategic merge patch,
/// `FromUnstructuredWithValidation`). With fieldValidation Strict any is a 422 whose value is
/// the patched object as JSON (the patch as Go prints a map for a strategic merge patch);
/// with Warn they are the warnings.
fn patched_object_strict_errors(
    req: &Req,
    kind: &ResourceKind,
    target: &mut Value,
    patched: patch::Applied,
) -> Result<Vec<String>, Status> {
    let mode = req.field_validation()?;
    let shown = match &patched.strategic {
        _ if mode != "Strict" => String::new(),
        Some(patch) => gojson::sprint(patch),
        None => gojson::marshal(target),
    };
    let mut unknown: Vec<String> = kind
        .prune_unknown(target)
        .iter()
        .map(|f| format!("unknown field {}", gojson::quote(f)))
        .collect();
    if patched.strategic.is_some() {
        unknown.sort();
    }
    let errors = [patched.strict, unknown].concat();
    match mode {
        "Strict" if !errors.is_empty() => Err(Status::invalid(
            "",
            "",
            "",
            &[FieldError::invalid_raw(
                "patch",
                &gojson::quote(&shown),
                &format!("strict decoding error: {}", errors.join(", ")),
            )],
        )),
        "Warn" => Ok(errors),
        _ => Ok(Vec::new()),
    }
}

fn delete_options(req: &Req) -> Result<Value, Status> {
    let mut opts = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| Status::bad_request(format!("failed to decode DeleteOptions: {e}")))?
    };
    opts["kind"] = json!("DeleteOptions");
    opts["apiVersion"] = json!("meta.k8s.io/v1");
    if let Some(p) = req.query.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(g) = req
        .query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse::<i64>().ok())
    {
        opts["gracePeriodSeconds"] = json!(g);
    }
    if req.dry_run()? {
        opts["dryRun"] = json!(["All"]);
    }
    Ok(opts)
}

async fn delete(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    let opts = delete_options(req)?;
    let dry_run = opts["dryRun"].is_array();
    let deleted = delete_one(shared, &req.user, kind, ns, name, &opts, dry_run).await?;
    if kind.index == NAMESPACES.index {
        // kube-apiserver answers a namespace DELETE with the namespace, now terminating;
        // here its contents are already gone.
        let mut ns_obj = deleted;
        meta_mut(&mut ns_obj).insert("deletionTimestamp".into(), json!(meta::now()));
        ns_obj["status"] = json!({"phase": "Terminating"});
        return Ok(json_response(200, &ns_obj, &[]));
    }
    let uid = meta_str(&deleted, "uid").to_owned();
    Ok(json_response(
        200,
        &Status::success_json(kind.res(), name, &uid),
        &[],
    ))
}

/// Deletes one object through admission; returns it as it was deleted.
async fn delete_one(
    shared: &Shared,
    user: &UserInfo,
    kind: ResourceKind,
    ns: &str,
    name: &str,
    opts: &Value,
    dry_run: bool,
) -> Result<Value, Status> {
    for _ in 0..MAX_ATTEMPTS {
        let old = shared
            .db()
            .get(&kind, ns, name)
            .cloned()
            .ok_or_else(|| Status::not_found(kind.res(), name))?;
        let uid = meta_str(&old, "uid").to_owned();
        // rest.BeforeDelete checks the preconditions first, naming the kind (not the
        // resource) as the conflicting "resource"
        // (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go).
        let by_kind = Resource {
            resource: kind.kind,
            group: kind.group,
        };
        let pre = &opts["preconditions"];
        if let Some(p) = pre["uid"].as_str()
            && p != uid
        {
            return Err(Status::conflict(
                by_kind,
                name,
                &format!(
                    "the UID in the precondition ({p}) does not match the UID in record ({uid}). \
                     The object might have been deleted and then recreated"
                ),
            ));
        }
        if let Some(p) = pre["resourceVersion"].as_str() {
            let actual = meta_str(&old, "resourceVersion");
            if p != actual {
                return Err(Status::conflict(
                    by_kind,
                    name,
                    &format!(
                        "the ResourceVersion in the precondition ({p}) does not match the \
                         ResourceVersion in record ({actual}). The object might have been modified"
                    ),
                ));
            }
        }
        admit(
            shared,
            user,
            Operation::Delete,
            &kind,
            ns,
            name,
            None,
            Some(old.clone()),
            dry_run,
            opts.clone(),
            None,
            Ok,
        )
        .await?;
        if dry_run {
            return Ok(old);
        }
        if kind.index == NAMESPACES.index {
            delete_namespace_contents(shared, name).await?;
        }
        let result = shared.db().delete(&kind, ns, name, rv_of(&old));
        match result {
            Ok(deleted) => {
                tracing::debug!(resource = kind.resource, namespace = ns, name, "deleted");
                return Ok(deleted);
            }
            Err(WriteError::Stale) if opts["preconditions"]["resourceVersion"].is_null() => {
                continue;
            }
            Err(e) => return Err(write_error(e, &kind, ns, name)),
        }
    }
    Err(Status::conflict_modified(kind.res(), name))
}

/// What kube's namespace controller does: delete everything in the namespace, as itself.
async fn delete_namespace_contents(shared: &Shared, ns: &str) -> Result<(), Status> {
    let controller = auth::namespace_controller();
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"});
    for kind in resource::KINDS.iter().filter(|k| k.namespaced) {
        let names: Vec<String> = shared
            .db()
            .range(kind, Some(ns), None)
            .map(|(k, _)| k.1.clone())
            .collect();
        for name in names {
            match Box::pin(delete_one(
                shared,
                &controller,
                *kind,
                ns,
                &name,
                &opts,
                false,
            ))
            .await
            {
                Ok(_) => {}
                Err(s) if s.code == 404 => {}
                Err(s) => return Err(s),
            }
        }
    }
    Ok(())
}

async fn delete_collection(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: Option<&str>,
) -> Result<Response<Body>, Status> {
    let (labels, field) = selectors(req, &kind)?;
    let opts = delete_options(req)?;
    let dry_run = opts["dryRun"].is_array();
    let targets: Vec<(String, String)> = shared
        .db()
        .range(&kind, ns, None)
        .filter(|(_, o)| labels.matches(o) && field.matches(o))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for (obj_ns, name) in targets {
        let obj = shared.db().get(&kind, &obj_ns, &name).cloned();
        match delete_one(shared, &req.user, kind, &obj_ns, &name, &opts, dry_run).await {
            Ok(_) => items.extend(obj),
            Err(s) if s.code == 404 => {}
            Err(s) => return Err(s),
        }
    }
    let rv = shared.db().rv();
    let doc = json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    });
    Ok(json_response(200, &doc, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_url_decoded() {
        let q = Query::parse(Some("labelSelector=a%3Db%2Cc+in+%28x%29&watch=1"));
        assert_eq!(q.get("labelSelector"), Some("a=b,c in (x)"));
        assert!(q.flag("watch"));
    }
}
