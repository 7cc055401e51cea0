//! Dispatcher tests against tiny HTTPS webhook servers on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::client::go_duration;
use super::matching::selector_matches;
use super::*;

/// A throwaway CA.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        Self::named(&format!("test-ca-{}", new_uid()))
    }

    fn named(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// The `caBundle` value: base64 of the PEM.
    fn bundle(&self) -> String {
        BASE64.encode(self.issuer.pem())
    }

    fn server_config(&self, names: &[&str]) -> rustls::ServerConfig {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let provider = secret_relay_certs::provider();
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap()
    }
}

/// What the test server received in one call.
#[derive(Debug)]
struct Seen {
    sni: Option<String>,
    path_and_query: String,
    review: Value,
}

/// How the test server answers a review; `None` never answers.
type Reply = Arc<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

/// A webhook server presenting a certificate for `*.ns.svc` and `localhost`.
struct TestHook {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl TestHook {
    async fn start(
        ca: &TestCa,
        reply: impl Fn(&Value) -> Option<Value> + Send + Sync + 'static,
    ) -> Self {
        let reply: Reply = Arc::new(reply);
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config(&["*.ns.svc", "localhost"])));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let reply = reply.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_owned);
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let reply = reply.clone();
                        let tx = tx.clone();
                        let sni = sni.clone();
                        async move {
                            let path_and_query = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await?.to_bytes();
                            let review: Value =
                                serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let answer = reply(&review);
                            let _ = tx.send(Seen {
                                sni,
                                path_and_query,
                                review,
                            });
                            let Some(answer) = answer else {
                                std::future::pending::<()>().await;
                                unreachable!("a pending future never completes");
                            };
                            let response = http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(serde_json::to_vec(&answer).unwrap())))
                                .unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    /// The dispatcher with this server as service `hook.ns.svc:443`.
    fn dispatcher(&self) -> AdmissionWebhooks {
        AdmissionWebhooks::new(BTreeMap::from([("hook.ns.svc:443".to_owned(), self.addr)]))
    }

    fn next(&mut self) -> Seen {
        self.seen.try_recv().expect("the webhook was called")
    }

    fn was_called(&mut self) -> bool {
        self.seen.try_recv().is_ok()
    }
}

fn response(review: &Value, fields: Value) -> Value {
    let mut response = json!({ "uid": review["request"]["uid"], "allowed": true });
    if let (Some(target), Some(extra)) = (response.as_object_mut(), fields.as_object()) {
        target.extend(extra.clone());
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

fn allow(review: &Value) -> Option<Value> {
    Some(response(review, json!({})))
}

fn patch(review: &Value, ops: Value) -> Value {
    let encoded = BASE64.encode(serde_json::to_vec(&ops).unwrap());
    response(
        review,
        json!({ "patchType": "JSONPatch", "patch": encoded }),
    )
}

/// One webhook calling service `hook.ns.svc` at `path`, matching every Secret write,
/// with `extra` fields merged in.
fn hook(name: &str, ca: &TestCa, path: &str, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": {
            "service": { "name": "hook", "namespace": "ns", "path": path, "port": 443 },
            "caBundle": ca.bundle(),
        },
        "rules": [{ "operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"], "scope": "*" }],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(target), Some(extra)) = (hook.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    hook
}

fn config(name: &str, hooks: Vec<Value>) -> Value {
    json!({ "metadata": { "name": name }, "webhooks": hooks })
}

fn mutating(configs: Vec<Value>) -> WebhookConfigs {
    WebhookConfigs {
        mutating: configs,
        validating: Vec::new(),
    }
}

fn validating(configs: Vec<Value>) -> WebhookConfigs {
    WebhookConfigs {
        mutating: Vec::new(),
        validating: configs,
    }
}

fn secret(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": "default", "labels": labels },
        "type": "Opaque",
        "data": { "password": "czNjcjN0" },
    })
}

fn create(object: Value) -> AdmissionAttributes {
    AdmissionAttributes {
        operation: Operation::Create,
        group: String::new(),
        version: "v1".to_owned(),
        kind: "Secret".to_owned(),
        resource: "secrets".to_owned(),
        subresource: String::new(),
        namespace: "default".to_owned(),
        name: object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        object: Some(object),
        old_object: None,
        user: UserInfo {
            username: "alice".to_owned(),
            uid: String::new(),
            groups: vec!["devs".to_owned(), "system:authenticated".to_owned()],
            extra: BTreeMap::new(),
        },
        dry_run: false,
        options: json!({ "fieldManager": "kubectl" }),
        namespace_labels: BTreeMap::from([
            (
                "kubernetes.io/metadata.name".to_owned(),
                "default".to_owned(),
            ),
            ("team".to_owned(), "a".to_owned()),
        ]),
    }
}

fn delete(object: Value) -> AdmissionAttributes {
    let mut attrs = create(Value::Null);
    attrs.operation = Operation::Delete;
    attrs.name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
    attrs.object = None;
    attrs.old_object = Some(object);
    attrs.options = json!({ "propagationPolicy": "Background" });
    attrs
}

#[tokio::test]
async fn mutating_webhook_gets_a_v1_review_and_its_patch_is_applied() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, |review| {
        Some(patch(
            review,
            json!([{ "op": "add", "path": "/metadata/labels/mutated", "value": "yes" }]),
        ))
    })
    .await;
    let configs = mutating(vec![config(
        "m",
        vec![hook("m.example.com", &ca, "/mutate", json!({}))],
    )]);

    let object = server
        .dispatcher()
        .admit(&configs, create(secret("s", json!({ "app": "x" }))))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        object["metadata"]["labels"],
        json!({ "app": "x", "mutated": "yes" })
    );
    let seen = server.next();
    assert_eq!(seen.sni.as_deref(), Some("hook.ns.svc"));
    assert_eq!(seen.path_and_query, "/mutate?timeout=10s");
    let review = &seen.review;
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let request = &review["request"];
    assert_eq!(request["uid"].as_str().unwrap().len(), 36);
    assert_eq!(
        request["kind"],
        json!({ "group": "", "version": "v1", "kind": "Secret" })
    );
    assert_eq!(
        request["resource"],
        json!({ "group": "", "version": "v1", "resource": "secrets" })
    );
    assert_eq!(request["requestKind"], request["kind"]);
    assert_eq!(request["requestResource"], request["resource"]);
    assert_eq!(request["name"], "s");
    assert_eq!(request["namespace"], "default");
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(
        request["userInfo"],
        json!({ "username": "alice", "groups": ["devs", "system:authenticated"] })
    );
    assert_eq!(request["object"]["data"]["password"], "czNjcjN0");
    assert_eq!(request["oldObject"], Value::Null);
    assert_eq!(request["dryRun"], false);
    assert_eq!(
        request["options"],
        json!({ "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl" })
    );
    assert!(request.get("subResource").is_none());
}

#[tokio::test]
async fn each_call_gets_a_fresh_uid() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &ca, "/validate", json!({}))],
    )]);
    let dispatcher = server.dispatcher();

    dispatcher
        .admit(&configs, create(secret("a", json!({}))))
        .await
        .unwrap();
    dispatcher
        .admit(&configs, create(secret("b", json!({}))))
        .await
        .unwrap();

    let first = server.next().review["request"]["uid"].clone();
    let second = server.next().review["request"]["uid"].clone();
    assert_ne!(first, second);
}

#[tokio::test]
async fn delete_sends_the_old_object_and_delete_options() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &ca, "/validate", json!({}))],
    )]);

    let result = server
        .dispatcher()
        .admit(&configs, delete(secret("gone", json!({}))))
        .await
        .unwrap();

    assert_eq!(result, None);
    let request = server.next().review["request"].clone();
    assert_eq!(request["operation"], "DELETE");
    assert_eq!(request["object"], Value::Null);
    assert_eq!(request["oldObject"]["metadata"]["name"], "gone");
    assert_eq!(
        request["options"],
        json!({ "kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background" })
    );
}

#[tokio::test]
async fn mutating_configurations_run_by_name_then_validating_ones_see_the_result() {
    let ca = TestCa::new();
    let mut first = TestHook::start(&ca, |review| {
        Some(patch(
            review,
            json!([{ "op": "add", "path": "/metadata/annotations", "value": { "order": "a" } }]),
        ))
    })
    .await;
    let mut second = TestHook::start(&ca, |review| {
        let order = review["request"]["object"]["metadata"]["annotations"]["order"].as_str().unwrap_or("").to_owned();
        Some(patch(
            review,
            json!([{ "op": "replace", "path": "/metadata/annotations/order", "value": format!("{order},b") }]),
        ))
    })
    .await;
    let mut last = TestHook::start(&ca, allow).await;
    let services = BTreeMap::from([
        ("first.ns.svc:443".to_owned(), first.addr),
        ("second.ns.svc:443".to_owned(), second.addr),
        ("last.ns.svc:443".to_owned(), last.addr),
    ]);
    let to = |service: &str, name: &str| {
        let mut spec = hook(name, &ca, "/", json!({}));
        spec["clientConfig"]["service"]["name"] = json!(service);
        spec
    };
    // Configurations are listed out of order: "a-..." must still run before "b-...".
    let configs = WebhookConfigs {
        mutating: vec![
            config("b-config", vec![to("second", "second.example.com")]),
            config("a-config", vec![to("first", "first.example.com")]),
        ],
        validating: vec![config("v", vec![to("last", "last.example.com")])],
    };

    let object = AdmissionWebhooks::new(services)
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(object["metadata"]["annotations"]["order"], "a,b");
    assert!(
        first.next().review["request"]["object"]["metadata"]
            .get("annotations")
            .is_none()
    );
    assert_eq!(
        second.next().review["request"]["object"]["metadata"]["annotations"]["order"],
        "a"
    );
    assert_eq!(
        last.next().review["request"]["object"]["metadata"]["annotations"]["order"],
        "a,b"
    );
}

#[tokio::test]
async fn denial_is_worded_as_kube_apiserver_words_it() {
    let ca = TestCa::new();
    let server = TestHook::start(&ca, |review| {
        let name = review["request"]["name"].as_str().unwrap_or("");
        Some(match name {
            "plain" => response(review, json!({ "allowed": false, "status": { "message": "no way" } })),
            "coded" => response(
                review,
                json!({ "allowed": false, "status": { "code": 403, "reason": "Forbidden", "message": "owned by cluster c1" } }),
            ),
            "reason-only" => response(review, json!({ "allowed": false, "status": { "reason": "NotAllowed" } })),
            _ => response(review, json!({ "allowed": false })),
        })
    })
    .await;
    let configs = validating(vec![config(
        "v",
        vec![hook("deny.example.com", &ca, "/validate", json!({}))],
    )]);
    let dispatcher = server.dispatcher();
    let deny = |name: &'static str| dispatcher.admit(&configs, create(secret(name, json!({}))));

    let plain = deny("plain").await.unwrap_err();
    assert_eq!(plain.code, 400);
    assert_eq!(
        plain.message,
        "admission webhook \"deny.example.com\" denied the request: no way"
    );

    let coded = deny("coded").await.unwrap_err();
    assert_eq!((coded.code, coded.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        coded.message,
        "admission webhook \"deny.example.com\" denied the request: owned by cluster c1"
    );

    let reason_only = deny("reason-only").await.unwrap_err();
    assert_eq!(
        reason_only.message,
        "admission webhook \"deny.example.com\" denied the request: NotAllowed"
    );

    let bare = deny("bare").await.unwrap_err();
    assert_eq!(
        bare.message,
        "admission webhook \"deny.example.com\" denied the request without explanation"
    );
    assert_eq!(bare.code, 400);
}

#[tokio::test]
async fn a_mutating_denial_stops_before_validating_webhooks() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, |review| {
        Some(response(
            review,
            json!({ "allowed": false, "status": { "message": "stop" } }),
        ))
    })
    .await;
    let configs = WebhookConfigs {
        mutating: vec![config(
            "m",
            vec![hook("m.example.com", &ca, "/mutate", json!({}))],
        )],
        validating: vec![config(
            "v",
            vec![hook("v.example.com", &ca, "/validate", json!({}))],
        )],
    };

    let status = server
        .dispatcher()
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert_eq!(
        status.message,
        "admission webhook \"m.example.com\" denied the request: stop"
    );
    assert_eq!(server.next().path_and_query, "/mutate?timeout=10s");
    assert!(
        !server.was_called(),
        "the validating webhook must not run after a denial"
    );
}

/// Webhooks that a CREATE of a Secret labelled `app: x` in namespace `default` does
/// not reach: each misses by one rule field or selector.
fn hooks_not_matching_a_secret_create(ca: &TestCa) -> Vec<Value> {
    vec![
        hook(
            "configmaps",
            ca,
            "/",
            json!({ "rules": [{ "operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"] }] }),
        ),
        hook(
            "delete-only",
            ca,
            "/",
            json!({ "rules": [{ "operations": ["DELETE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"] }] }),
        ),
        hook(
            "apps",
            ca,
            "/",
            json!({ "rules": [{ "operations": ["*"], "apiGroups": ["apps"], "apiVersions": ["*"], "resources": ["*"] }] }),
        ),
        hook(
            "v2",
            ca,
            "/",
            json!({ "rules": [{ "operations": ["*"], "apiGroups": [""], "apiVersions": ["v2"], "resources": ["secrets"] }] }),
        ),
        hook(
            "cluster-scope",
            ca,
            "/",
            json!({ "rules": [{ "operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"], "scope": "Cluster" }] }),
        ),
        hook(
            "subresource-only",
            ca,
            "/",
            json!({ "rules": [{ "operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets/status"] }] }),
        ),
        hook(
            "other-namespace",
            ca,
            "/",
            json!({ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } } }),
        ),
        hook(
            "object-label",
            ca,
            "/",
            json!({ "objectSelector": { "matchExpressions": [{ "key": "sync", "operator": "In", "values": ["true"] }] } }),
        ),
        hook("no-rules", ca, "/", json!({ "rules": [] })),
    ]
}

#[tokio::test]
async fn webhooks_whose_rules_or_selectors_do_not_match_are_not_called() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, |review| {
        Some(response(
            review,
            json!({ "allowed": false, "status": { "message": "called" } }),
        ))
    })
    .await;
    let not_matching = hooks_not_matching_a_secret_create(&ca);
    let configs = validating(vec![config("v", not_matching)]);

    let result = server
        .dispatcher()
        .admit(&configs, create(secret("s", json!({ "app": "x" }))))
        .await;

    assert!(result.is_ok(), "{result:?}");
    assert!(!server.was_called());

    let matching = vec![hook(
        "everything",
        &ca,
        "/",
        json!({
            "rules": [{ "operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*", "*"], "scope": "Namespaced" }],
            "namespaceSelector": { "matchExpressions": [{ "key": "team", "operator": "Exists" }] },
            "objectSelector": { "matchLabels": { "app": "x" } },
        }),
    )];
    let status = server
        .dispatcher()
        .admit(
            &validating(vec![config("v", matching)]),
            create(secret("s", json!({ "app": "x" }))),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status.message,
        "admission webhook \"everything\" denied the request: called"
    );
}

#[tokio::test]
async fn object_selector_also_matches_the_old_object() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let selector = json!({ "objectSelector": { "matchLabels": { "sync": "true" } } });
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &ca, "/", selector)],
    )]);
    let mut update = create(secret("s", json!({})));
    update.operation = Operation::Update;
    update.old_object = Some(secret("s", json!({ "sync": "true" })));

    server.dispatcher().admit(&configs, update).await.unwrap();

    let request = server.next().review["request"].clone();
    assert_eq!(request["operation"], "UPDATE");
    assert_eq!(request["options"]["kind"], "UpdateOptions");
    assert_eq!(request["oldObject"]["metadata"]["labels"]["sync"], "true");
}

#[tokio::test]
async fn a_namespace_is_judged_by_its_own_labels() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let spec = hook(
        "ns.example.com",
        &ca,
        "/",
        json!({
            "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"] }],
            "namespaceSelector": { "matchLabels": { "watched": "yes" } },
        }),
    );
    let configs = validating(vec![config("v", vec![spec])]);
    let namespace = |labels: Value| {
        let mut attrs = create(
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "n1", "labels": labels } }),
        );
        attrs.kind = "Namespace".to_owned();
        attrs.resource = "namespaces".to_owned();
        attrs.namespace = String::new();
        attrs.namespace_labels = BTreeMap::new();
        attrs
    };
    let dispatcher = server.dispatcher();

    dispatcher
        .admit(&configs, namespace(json!({ "watched": "no" })))
        .await
        .unwrap();
    assert!(!server.was_called());
    dispatcher
        .admit(&configs, namespace(json!({ "watched": "yes" })))
        .await
        .unwrap();
    assert_eq!(server.next().review["request"]["kind"]["kind"], "Namespace");
}

#[tokio::test]
async fn a_namespace_update_carries_its_own_name_as_the_request_namespace() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let rules = json!({ "rules": [{ "operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"] }] });
    let configs = validating(vec![config(
        "v",
        vec![hook("ns.example.com", &ca, "/", rules)],
    )]);
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "n1" } });
    let mut attrs = create(namespace.clone());
    attrs.operation = Operation::Update;
    attrs.kind = "Namespace".to_owned();
    attrs.resource = "namespaces".to_owned();
    attrs.namespace = String::new();
    attrs.old_object = Some(namespace);

    server
        .dispatcher()
        .admit(&configs, attrs.clone())
        .await
        .unwrap();
    attrs.operation = Operation::Create;
    attrs.old_object = None;
    server.dispatcher().admit(&configs, attrs).await.unwrap();

    assert_eq!(server.next().review["request"]["namespace"], "n1");
    assert!(server.next().review["request"].get("namespace").is_none());
}

#[tokio::test]
async fn webhook_configurations_themselves_are_never_sent_to_webhooks() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, |review| {
        Some(response(review, json!({ "allowed": false })))
    })
    .await;
    let everything = json!({ "rules": [{ "operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"] }] });
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &ca, "/", everything)],
    )]);
    let mut attrs = create(json!({ "metadata": { "name": "v" }, "webhooks": [] }));
    attrs.group = "admissionregistration.k8s.io".to_owned();
    attrs.kind = "ValidatingWebhookConfiguration".to_owned();
    attrs.resource = "validatingwebhookconfigurations".to_owned();
    attrs.namespace = String::new();

    server.dispatcher().admit(&configs, attrs).await.unwrap();

    assert!(!server.was_called());
}

#[tokio::test]
async fn unreachable_webhook_fails_closed_by_default_and_open_when_ignored() {
    let ca = TestCa::new();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dispatcher = AdmissionWebhooks::new(BTreeMap::from([("hook.ns.svc:443".to_owned(), addr)]));
    let fail = validating(vec![config(
        "v",
        vec![hook("down.example.com", &ca, "/validate", json!({}))],
    )]);

    let status = dispatcher
        .admit(&fail, create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert_eq!(status.code, 500);
    assert_eq!(status.reason, "InternalError");
    assert_eq!(
        status.message,
        format!(
            "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: \
             Post \"https://hook.ns.svc:443/validate?timeout=10s\": dial tcp {addr}: connect: connection refused"
        )
    );

    let ignore = validating(vec![config(
        "v",
        vec![hook(
            "down.example.com",
            &ca,
            "/validate",
            json!({ "failurePolicy": "Ignore" }),
        )],
    )]);
    let object = dispatcher
        .admit(&ignore, create(secret("s", json!({}))))
        .await
        .unwrap();
    assert_eq!(object.unwrap()["metadata"]["name"], "s");
}

#[tokio::test]
async fn a_service_missing_from_the_service_map_is_a_lookup_failure() {
    let ca = TestCa::new();
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &ca, "/validate", json!({}))],
    )]);

    let status = AdmissionWebhooks::new(BTreeMap::new())
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert!(
        status
            .message
            .ends_with("dial tcp: lookup hook.ns.svc: no such host"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_webhook_that_never_answers_times_out_after_timeout_seconds() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, |_| None).await;
    let slow = |policy: &str| {
        validating(vec![config(
            "v",
            vec![hook(
                "slow.example.com",
                &ca,
                "/validate",
                json!({ "timeoutSeconds": 1, "failurePolicy": policy }),
            )],
        )])
    };
    let dispatcher = server.dispatcher();

    let status = dispatcher
        .admit(&slow("Fail"), create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert_eq!(status.code, 500);
    assert_eq!(
        status.message,
        "Internal error occurred: failed calling webhook \"slow.example.com\": failed to call webhook: \
         Post \"https://hook.ns.svc:443/validate?timeout=1s\": context deadline exceeded"
    );
    assert_eq!(server.next().path_and_query, "/validate?timeout=1s");

    dispatcher
        .admit(&slow("Ignore"), create(secret("s", json!({}))))
        .await
        .unwrap();
}

#[tokio::test]
async fn only_the_ca_bundle_is_trusted() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &other, "/validate", json!({}))],
    )]);

    let status = server
        .dispatcher()
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert_eq!(status.code, 500);
    assert!(
        status.message.ends_with(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        ),
        "{}",
        status.message
    );
    assert!(!server.was_called());
}

#[tokio::test]
async fn a_ca_bundle_of_the_same_name_but_another_key_is_named_in_gos_hint() {
    // What a replaced CA looks like: kube-apiserver's Go client names the candidate whose
    // signature check failed (crypto/x509 UnknownAuthorityError).
    let ca = TestCa::named("rotated CA");
    let other = TestCa::named("rotated CA");
    let mut server = TestHook::start(&ca, allow).await;
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &other, "/validate", json!({}))],
    )]);

    let status = server
        .dispatcher()
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert!(
        status.message.ends_with(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority \
             (possibly because of \"x509: ECDSA verification failure\" while trying to verify \
             candidate authority certificate \"rotated CA\")"
        ),
        "{}",
        status.message
    );
    assert!(!server.was_called());
}

#[test]
fn serial_numbers_print_in_decimal_as_go_prints_them() {
    assert_eq!(x509::decimal(&[]), "0");
    assert_eq!(x509::decimal(&[0x01, 0x00]), "256");
    assert_eq!(
        x509::decimal(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        "2361183241434822606847"
    );
}

#[tokio::test]
async fn the_server_name_must_match_the_service() {
    let ca = TestCa::new();
    let server = TestHook::start(&ca, allow).await;
    let mut spec = hook("v.example.com", &ca, "/validate", json!({}));
    spec["clientConfig"]["service"]["namespace"] = json!("other");
    let configs = validating(vec![config("v", vec![spec])]);
    let dispatcher = AdmissionWebhooks::new(BTreeMap::from([(
        "hook.other.svc:443".to_owned(),
        server.addr,
    )]));

    let status = dispatcher
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert!(
        status
            .message
            .contains("x509: certificate is not valid for hook.other.svc"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_url_client_config_is_called_directly() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let mut spec = hook("url.example.com", &ca, "/", json!({}));
    spec["clientConfig"] = json!({ "url": format!("https://localhost:{}/check", server.addr.port()), "caBundle": ca.bundle() });
    let configs = validating(vec![config("v", vec![spec])]);

    AdmissionWebhooks::new(BTreeMap::new())
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap();

    let seen = server.next();
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(seen.path_and_query, "/check?timeout=10s");
}

#[tokio::test]
async fn malformed_answers_are_call_failures() {
    let ca = TestCa::new();
    let server = TestHook::start(&ca, |review| {
        let name = review["request"]["name"].as_str().unwrap_or("");
        Some(match name {
            "wrong-uid" => json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": { "uid": "nope", "allowed": true } }),
            "v1beta1" => {
                let mut answer = response(review, json!({}));
                answer["apiVersion"] = json!("admission.k8s.io/v1beta1");
                answer
            }
            "no-response" => json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview" }),
            "validating-patch" => patch(review, json!([])),
            _ => response(review, json!({ "patch": BASE64.encode("[]") })),
        })
    })
    .await;
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &ca, "/validate", json!({}))],
    )]);
    let dispatcher = server.dispatcher();
    let reason = |status: Status| {
        status
            .message
            .strip_prefix("Internal error occurred: failed calling webhook \"v.example.com\": received invalid webhook response: ")
            .map(str::to_owned)
            .unwrap_or(status.message)
    };

    let wrong_uid = dispatcher
        .admit(&configs, create(secret("wrong-uid", json!({}))))
        .await
        .unwrap_err();
    assert!(reason(wrong_uid).starts_with("expected response.uid=\""));
    let v1beta1 = dispatcher
        .admit(&configs, create(secret("v1beta1", json!({}))))
        .await
        .unwrap_err();
    assert_eq!(
        reason(v1beta1),
        "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
    );
    let absent = dispatcher
        .admit(&configs, create(secret("no-response", json!({}))))
        .await
        .unwrap_err();
    assert_eq!(reason(absent), "webhook response was absent");
    let validating_patch = dispatcher
        .admit(&configs, create(secret("validating-patch", json!({}))))
        .await
        .unwrap_err();
    assert_eq!(
        reason(validating_patch),
        "validating webhook may not return patchType"
    );
    let untyped = dispatcher
        .admit(&configs, create(secret("untyped", json!({}))))
        .await
        .unwrap_err();
    assert_eq!(reason(untyped), "patch set without patchType");
}

#[tokio::test]
async fn a_patch_that_cannot_be_applied_is_an_internal_error_even_when_ignored() {
    let ca = TestCa::new();
    let server = TestHook::start(&ca, |review| {
        Some(patch(
            review,
            json!([{ "op": "test", "path": "/metadata/name", "value": "other" }]),
        ))
    })
    .await;
    let configs = mutating(vec![config(
        "m",
        vec![hook(
            "m.example.com",
            &ca,
            "/mutate",
            json!({ "failurePolicy": "Ignore" }),
        )],
    )]);

    let status = server
        .dispatcher()
        .admit(&configs, create(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );
    assert!(status.message.starts_with("Internal error occurred: "));
}

#[tokio::test]
async fn a_patch_on_delete_is_refused() {
    let ca = TestCa::new();
    let server = TestHook::start(&ca, |review| {
        Some(patch(
            review,
            json!([{ "op": "add", "path": "/metadata/labels", "value": {} }]),
        ))
    })
    .await;
    let configs = mutating(vec![config(
        "m",
        vec![hook("m.example.com", &ca, "/mutate", json!({}))],
    )]);

    let status = server
        .dispatcher()
        .admit(&configs, delete(secret("s", json!({}))))
        .await
        .unwrap_err();

    assert_eq!(
        status.message,
        "Internal error occurred: admission webhook \"m.example.com\" attempted to modify the object, \
         which is not supported for this operation"
    );
}

#[tokio::test]
async fn dry_run_needs_webhooks_without_side_effects() {
    let ca = TestCa::new();
    let mut server = TestHook::start(&ca, allow).await;
    let with_effects = |effects: &str| {
        validating(vec![config(
            "v",
            vec![hook(
                "v.example.com",
                &ca,
                "/",
                json!({ "sideEffects": effects }),
            )],
        )])
    };
    let dry = || {
        let mut attrs = create(secret("s", json!({})));
        attrs.dry_run = true;
        attrs
    };
    let dispatcher = server.dispatcher();

    let status = dispatcher
        .admit(&with_effects("Some"), dry())
        .await
        .unwrap_err();
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "admission webhook \"v.example.com\" does not support dry run"
    );
    assert!(!server.was_called());

    dispatcher
        .admit(&with_effects("NoneOnDryRun"), dry())
        .await
        .unwrap();
    assert_eq!(server.next().review["request"]["dryRun"], true);
}

#[tokio::test]
async fn warnings_are_collected() {
    let ca = TestCa::new();
    let server = TestHook::start(&ca, |review| {
        Some(response(review, json!({ "warnings": ["first", "second"] })))
    })
    .await;
    let configs = validating(vec![config(
        "v",
        vec![hook("v.example.com", &ca, "/", json!({}))],
    )]);
    let mut warnings = Vec::new();

    server
        .dispatcher()
        .admit_with_warnings(&configs, create(secret("s", json!({}))), &mut warnings)
        .await
        .unwrap();

    assert_eq!(warnings, ["first", "second"]);
}

#[test]
fn invalid_selectors_are_errors() {
    let labels = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
    assert!(
        selector_matches(
            &json!({ "matchExpressions": [{ "key": "a", "operator": "In", "values": [] }] }),
            &labels
        )
        .is_err()
    );
    assert!(
        selector_matches(
            &json!({ "matchExpressions": [{ "key": "a", "operator": "Near" }] }),
            &labels
        )
        .is_err()
    );
    assert_eq!(
        selector_matches(
            &json!({ "matchExpressions": [{ "key": "a", "operator": "NotIn", "values": ["2"] }] }),
            &labels
        ),
        Ok(true)
    );
    assert_eq!(
        selector_matches(
            &json!({ "matchExpressions": [{ "key": "b", "operator": "DoesNotExist" }] }),
            &labels
        ),
        Ok(true)
    );
    assert_eq!(
        selector_matches(&json!({ "matchLabels": { "a": "2" } }), &labels),
        Ok(false)
    );
}

#[test]
fn durations_are_printed_as_go_prints_them() {
    assert_eq!(go_duration(1), "1s");
    assert_eq!(go_duration(30), "30s");
    assert_eq!(go_duration(90), "1m30s");
}
